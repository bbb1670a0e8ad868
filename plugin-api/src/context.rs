//! [`Context`]: what the host offers a plugin instance, in plain Rust.

use std::{path::PathBuf, time::Duration};

use abi_stable::std_types::RStr;
use anyhow::{anyhow, Context as _};

use crate::{
    abi::HostContextBox,
    event::Event,
    model::{Command, CommandOutput, ProcessState},
};

// since 1.5: begin
/// The host call behind [`Context::stop_below_wrappers`]: payload
/// `{"pid": N, "wrappers": K, "skip": [pids]}`, answer
/// `{"signalled": [pids], "refused": [pids]}` (refused: not this host's to signal). Since 1.5.
pub const SIGNAL_BELOW_WRAPPERS: &str = "signal_below_wrappers";

/// What the host answers to [`SIGNAL_BELOW_WRAPPERS`].
#[derive(serde::Deserialize)]
struct SignalAnswer {
    signalled: Vec<u32>,
    #[serde(default)]
    refused: Vec<u32>,
}
// since 1.5: end

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

    // since 1.5: begin
    /// Stops a service whose processes the host did not start (a container's, seen from this
    /// machine by their host pids) the way [`Context::stop`] stops a spawned one: SIGTERM,
    /// once each, to every process below its `wrappers` parent wrappers
    /// ([`ServiceSpec::parent_wrappers`](crate::ServiceSpec::parent_wrappers), plus a
    /// container's init when it has one) under `pid`, also to those that appear meanwhile,
    /// until `ended()` says it is over or `grace` has passed. The wrappers see the service end
    /// and write their reports. Returns whether it ended; `false` as well when the host is
    /// older than 1.5 or may not signal a process: the caller then stops it its own way.
    pub fn stop_below_wrappers(
        &self,
        pid: u32,
        wrappers: usize,
        grace: Duration,
        mut ended: impl FnMut() -> bool,
    ) -> bool {
        let deadline = std::time::Instant::now() + grace;
        let mut signalled: Vec<u32> = Vec::new();
        let mut pause = Duration::from_millis(2);
        while std::time::Instant::now() < deadline {
            if ended() {
                return true;
            }
            let payload =
                serde_json::json!({ "pid": pid, "wrappers": wrappers, "skip": signalled });
            let answer = self
                .host
                .call(
                    RStr::from_str(SIGNAL_BELOW_WRAPPERS),
                    RStr::from_str(&payload.to_string()),
                )
                .into_result();
            let answer = match answer {
                Ok(abi_stable::std_types::RSome(text)) => {
                    serde_json::from_str::<SignalAnswer>(&text).ok()
                }
                _ => None,
            };
            match answer {
                // Processes it may not signal (another user's): the caller's own way can.
                Some(answer) if answer.refused.is_empty() => signalled.extend(answer.signalled),
                // An older host, or an unreadable answer.
                _ => return false,
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
        ended()
    }
    // since 1.5: end
}
