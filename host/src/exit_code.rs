//! The exit codes of `panther-host`, one per kind of outcome, so scripts can tell a failing
//! test from a broken setup.

use std::process::ExitCode;

use panther_plugin_api::RunStatus;

/// Success: the command did what was asked; every experiment passed.
pub const OK: u8 = 0;
/// A test failed: a service missed its expectation or the experiment timed out.
pub const TEST_FAILED: u8 = 1;
/// Invalid input: bad arguments, settings, experiment file, unknown or broken plugin.
pub const INVALID_INPUT: u8 = 2;
/// An internal error: the host or a plugin failed while running.
pub const INTERNAL_ERROR: u8 = 3;
/// Interrupted by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
pub const INTERRUPTED: u8 = 130;

/// The exit code for a run's status.
pub fn for_status(status: RunStatus) -> u8 {
    match status {
        RunStatus::Passed => OK,
        RunStatus::Failed | RunStatus::TimedOut => TEST_FAILED,
        RunStatus::Interrupted => INTERRUPTED,
        RunStatus::Error => INTERNAL_ERROR,
    }
}

/// The worst of several codes: interrupted, then internal error, invalid input, failed.
pub fn worst(codes: impl IntoIterator<Item = u8>) -> u8 {
    let rank = |c: u8| match c {
        INTERRUPTED => 4,
        INTERNAL_ERROR => 3,
        INVALID_INPUT => 2,
        TEST_FAILED => 1,
        _ => 0,
    };
    codes.into_iter().max_by_key(|&c| rank(c)).unwrap_or(OK)
}

/// Converts to the process exit code.
pub fn exit(code: u8) -> ExitCode {
    ExitCode::from(code)
}
