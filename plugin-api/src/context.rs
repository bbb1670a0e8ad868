//! [`Context`]: what the host offers a plugin instance, in plain Rust.

use std::{path::PathBuf, time::Duration};

use abi_stable::std_types::RStr;
use anyhow::{anyhow, Context as _};

use crate::{
    abi::HostContextBox,
    event::Event,
    model::{Command, CommandOutput, ProcessState},
};

/// A process started with [`Context::spawn`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcessHandle(pub u64);

/// The host's services for one plugin instance: events, the command processor, its output
/// folder and the run's cancellation flag. Cheap to clone.
///
/// Logging needs no context: `tracing::info!` and friends inside a plugin reach the host's
/// output, tagged with the plugin's name.
#[derive(Clone)]
pub struct Context {
    host: HostContextBox,
}

impl Context {
    #[doc(hidden)]
    pub fn from_ffi(host: HostContextBox) -> Self {
        Context { host }
    }

    #[doc(hidden)]
    pub fn ffi(&self) -> &HostContextBox {
        &self.host
    }

    /// The folder this instance may write its results to (created by the host).
    pub fn output_dir(&self) -> PathBuf {
        PathBuf::from(self.host.output_dir().into_string())
    }

    /// Whether the run was cancelled; long work should stop early.
    pub fn is_cancelled(&self) -> bool {
        self.host.is_cancelled()
    }

    /// Records an event in the run's event log and hands it to observers.
    pub fn emit(&self, event: &Event) {
        if let Ok(json) = serde_json::to_string(event) {
            self.host.emit_event(RStr::from_str(&json));
        }
    }

    /// Runs a command to completion through the host's command processor (no shell, output
    /// captured to files, killed on timeout or cancellation).
    pub fn run(&self, command: &Command) -> anyhow::Result<CommandOutput> {
        let json = serde_json::to_string(command)?;
        let out = self
            .host
            .run_command(RStr::from_str(&json))
            .into_result()
            .map_err(|e| anyhow!(e.into_string()))?;
        serde_json::from_str(&out).context("reading the host's command output")
    }

    /// Starts a long-running command in its own process group; the host stops it at teardown
    /// at the latest.
    pub fn spawn(&self, command: &Command) -> anyhow::Result<ProcessHandle> {
        let json = serde_json::to_string(command)?;
        self.host
            .spawn(RStr::from_str(&json))
            .into_result()
            .map(ProcessHandle)
            .map_err(|e| anyhow!(e.into_string()))
    }

    /// The process id of a spawned process, known even after it has exited.
    pub fn pid(&self, handle: ProcessHandle) -> anyhow::Result<u32> {
        self.host
            .process_id(handle.0)
            .into_result()
            .map_err(|e| anyhow!(e.into_string()))
    }

    /// The state of a spawned process.
    pub fn status(&self, handle: ProcessHandle) -> anyhow::Result<ProcessState> {
        let out = self
            .host
            .process_status(handle.0)
            .into_result()
            .map_err(|e| anyhow!(e.into_string()))?;
        serde_json::from_str(&out).context("reading the host's process state")
    }

    /// Stops a spawned process group: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&self, handle: ProcessHandle, grace: Duration) -> anyhow::Result<ProcessState> {
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        let out = self
            .host
            .stop(handle.0, grace_ms)
            .into_result()
            .map_err(|e| anyhow!(e.into_string()))?;
        serde_json::from_str(&out).context("reading the host's process state")
    }
}
