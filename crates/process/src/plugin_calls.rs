//! The process calls of a plugin's host context (`run_command`, `spawn`, `process_id`,
//! `process_status`, `stop` of [`HostContextFfi`](panther_plugin_api::abi::HostContextFfi),
//! and the named call `signal_below_wrappers`), answered by a [`CommandProcessor`]: the host
//! and the test host answer them alike, JSON in and out, errors as text.

use std::time::Duration;

use abi_stable::std_types::{RErr, RNone, ROk, ROption, RResult, RSome, RStr, RString};
use nix::{errno::Errno, sys::signal::Signal, unistd::Pid};
use panther_plugin_api::{context::SIGNAL_BELOW_WRAPPERS, Command};

use crate::command::{Capture, CommandProcessor};

/// One plugin instance's view of the processor: where its commands' output goes.
pub struct PluginCalls<'a> {
    /// The processor that runs the commands.
    pub processor: &'a CommandProcessor,
    /// Where the instance's commands are captured, and how they are reported.
    pub capture: Capture<'a>,
}

impl PluginCalls<'_> {
    /// Runs a command (JSON [`Command`]) to completion; answers its `CommandOutput`.
    pub fn run_command(&self, command: RStr<'_>) -> RResult<RString, RString> {
        let command = match parse_command(command) {
            Ok(c) => c,
            Err(e) => return RErr(e),
        };
        match self.processor.run(&command, &self.capture) {
            Ok(output) => ROk(to_json(&output)),
            Err(err) => RErr(RString::from(err.to_string())),
        }
    }

    /// Starts a command (JSON [`Command`]); answers its handle.
    pub fn spawn(&self, command: RStr<'_>) -> RResult<u64, RString> {
        let command = match parse_command(command) {
            Ok(c) => c,
            Err(e) => return RErr(e),
        };
        self.processor
            .spawn(&command, &self.capture)
            .map_err(|e| RString::from(e.to_string()))
            .into()
    }

    /// The process id of a spawned process.
    pub fn process_id(&self, handle: u64) -> RResult<u32, RString> {
        match self.processor.pid(handle) {
            Some(pid) => ROk(pid),
            None => RErr(RString::from(format!("no process with handle {handle}"))),
        }
    }

    /// The state of a spawned process, as JSON `ProcessState`.
    pub fn process_status(&self, handle: u64) -> RResult<RString, RString> {
        self.processor
            .status(handle)
            .map(|s| to_json(&s))
            .map_err(|e| RString::from(e.to_string()))
            .into()
    }

    /// Stops a spawned process, `grace_ms` between SIGTERM and SIGKILL; answers its final
    /// state as JSON `ProcessState`.
    pub fn stop(&self, handle: u64, grace_ms: u64) -> RResult<RString, RString> {
        self.processor
            .stop(handle, Duration::from_millis(grace_ms))
            .map(|s| to_json(&s))
            .map_err(|e| RString::from(e.to_string()))
            .into()
    }
}

impl PluginCalls<'_> {
    /// Answers the named calls about processes; `None` for any other name, as a host that
    /// predates it would.
    pub fn call(&self, name: RStr<'_>, payload: RStr<'_>) -> RResult<ROption<RString>, RString> {
        match name.as_str() {
            // since plugin-api 1.5
            SIGNAL_BELOW_WRAPPERS => {
                match serde_json::from_str::<SignalBelowWrappers>(payload.as_str()) {
                    Ok(request) => ROk(RSome(to_json(&request.carry_out()))),
                    Err(err) => RErr(RString::from(format!("unreadable request: {err}"))),
                }
            }
            _ => ROk(RNone),
        }
    }
}

/// A network environment's request to stop a service it started outside the command
/// processor (in a container): SIGTERM to what is below its wrappers
/// ([`wrappers::below`](crate::contain::wrappers::below)), but not twice.
#[derive(serde::Deserialize)]
struct SignalBelowWrappers {
    pid: u32,
    wrappers: usize,
    #[serde(default)]
    skip: Vec<u32>,
}

#[derive(serde::Serialize)]
struct Signalled {
    signalled: Vec<u32>,
    refused: Vec<u32>,
}

impl SignalBelowWrappers {
    fn carry_out(&self) -> Signalled {
        let mut answer = Signalled {
            signalled: Vec::new(),
            refused: Vec::new(),
        };
        for pid in crate::contain::wrappers::below(self.pid, self.wrappers) {
            if self.skip.contains(&pid) {
                continue;
            }
            match nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGTERM) {
                Ok(()) => answer.signalled.push(pid),
                Err(Errno::EPERM) => answer.refused.push(pid),
                // Gone meanwhile.
                Err(_) => {}
            }
        }
        answer
    }
}

fn parse_command(json: RStr<'_>) -> Result<Command, RString> {
    serde_json::from_str(json.as_str())
        .map_err(|e| RString::from(format!("unreadable command: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> RString {
    RString::from(serde_json::to_string(value).unwrap_or_default())
}
