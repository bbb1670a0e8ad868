//! What the command processor reports, and to whom: an [`EventSink`] the caller implements,
//! so that the processor needs neither the host's event bus nor its observers.

use panther_plugin_api::Event;

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Receives what the command processor reports: a `CommandExecuted` event per command
/// started or run, and every line its processes print. Called from the processor's threads
/// (output readers among them), hence `Send + Sync`.
pub trait EventSink: Send + Sync {
    /// An event, tagged with the scope and source of the command that caused it.
    fn event(&self, scope: &str, source: &str, event: &Event);
    /// One line (without its line ending) that `process` printed on `stream`.
    fn output(&self, process: &str, stream: Stream, line: &str);
}
