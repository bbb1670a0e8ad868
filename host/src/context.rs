//! The host side of [`HostContextFfi`]: what a plugin instance can ask of the host.
//!
//! One [`InstanceContext`] per instance. It knows the instance's name (for events), its
//! output folder, the run's cancellation flag, the shared command processor and event bus.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, RErr, RNone, ROk, ROption, RResult, RSome, RStr, RString},
};
use panther_plugin_api::{
    abi::{HostContextBox, HostContextFfi, HostContextFfi_TO},
    Command, Event,
};
use tracing::level_filters::LevelFilter;

use crate::{
    command::{Capture, CommandProcessor},
    events::EventBus,
};

/// Everything a run shares among its plugin instances.
#[derive(Clone)]
pub struct RunServices {
    /// The event bus.
    pub bus: Arc<EventBus>,
    /// The command processor.
    pub processes: Arc<CommandProcessor>,
    /// Set on Ctrl-C, SIGTERM or timeout.
    pub cancelled: Arc<AtomicBool>,
}

impl RunServices {
    /// Fresh services with their own cancellation flag.
    pub fn new(cancelled: Arc<AtomicBool>) -> Self {
        let bus = Arc::new(EventBus::new());
        let processes = Arc::new(CommandProcessor::new(
            Arc::clone(&cancelled),
            Arc::clone(&bus),
        ));
        RunServices {
            bus,
            processes,
            cancelled,
        }
    }
}

/// The context of one plugin instance.
#[derive(Clone)]
pub struct InstanceContext {
    plugin: Arc<str>,
    instance: Arc<str>,
    scope: Arc<str>,
    output_dir: PathBuf,
    services: RunServices,
}

impl InstanceContext {
    /// The context for instance `instance` of `plugin` in `scope`, writing to `output_dir`.
    pub fn new(
        plugin: &str,
        instance: &str,
        scope: &str,
        output_dir: PathBuf,
        services: RunServices,
    ) -> Self {
        InstanceContext {
            plugin: plugin.into(),
            instance: instance.into(),
            scope: scope.into(),
            output_dir,
            services,
        }
    }

    /// The ABI object handed to the plugin.
    pub fn into_ffi(self) -> HostContextBox {
        HostContextFfi_TO::from_ptr(RArc::new(self), TD_Opaque)
    }

    fn capture(&self) -> Capture<'_> {
        Capture {
            default_dir: &self.output_dir,
            scope: &self.scope,
            source: &self.instance,
        }
    }
}

fn parse_command(json: RStr<'_>) -> Result<Command, RString> {
    serde_json::from_str(json.as_str())
        .map_err(|e| RString::from(format!("unreadable command: {e}")))
}

/// A network environment's request to stop a service it started outside the command
/// processor (in a container): SIGTERM to what is below its wrappers
/// ([`contain::wrappers::below`](crate::contain::wrappers::below)), but not twice.
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
            let target = nix::unistd::Pid::from_raw(pid as i32);
            match nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM) {
                Ok(()) => answer.signalled.push(pid),
                Err(nix::errno::Errno::EPERM) => answer.refused.push(pid),
                // Gone meanwhile.
                Err(_) => {}
            }
        }
        answer
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> RString {
    RString::from(serde_json::to_string(value).unwrap_or_default())
}

impl HostContextFfi for InstanceContext {
    fn log(&self, level: u8, target: RStr<'_>, message: RStr<'_>) {
        let (plugin, target, message) = (&*self.plugin, target.as_str(), message.as_str());
        match level {
            1 => {
                tracing::error!(target: "panther::plugin", plugin, plugin_target = target, "{message}")
            }
            2 => {
                tracing::warn!(target: "panther::plugin", plugin, plugin_target = target, "{message}")
            }
            3 => {
                tracing::info!(target: "panther::plugin", plugin, plugin_target = target, "{message}")
            }
            4 => {
                tracing::debug!(target: "panther::plugin", plugin, plugin_target = target, "{message}")
            }
            _ => {
                tracing::trace!(target: "panther::plugin", plugin, plugin_target = target, "{message}")
            }
        }
    }

    fn max_log_level(&self) -> u8 {
        match LevelFilter::current() {
            LevelFilter::OFF => 0,
            LevelFilter::ERROR => 1,
            LevelFilter::WARN => 2,
            LevelFilter::INFO => 3,
            LevelFilter::DEBUG => 4,
            _ => 5,
        }
    }

    fn emit_event(&self, event: RStr<'_>) {
        match serde_json::from_str::<Event>(event.as_str()) {
            Ok(event) => self.services.bus.emit(&self.scope, &self.instance, &event),
            Err(err) => {
                tracing::warn!(plugin = &*self.plugin, "dropped an unreadable event: {err}")
            }
        }
    }

    fn output_dir(&self) -> RString {
        RString::from(self.output_dir.to_string_lossy().into_owned())
    }

    fn is_cancelled(&self) -> bool {
        self.services.cancelled.load(Ordering::Relaxed)
    }

    fn run_command(&self, command: RStr<'_>) -> RResult<RString, RString> {
        let command = match parse_command(command) {
            Ok(c) => c,
            Err(e) => return RErr(e),
        };
        match self.services.processes.run(&command, &self.capture()) {
            Ok(output) => ROk(to_json(&output)),
            Err(err) => RErr(RString::from(err.to_string())),
        }
    }

    fn spawn(&self, command: RStr<'_>) -> RResult<u64, RString> {
        let command = match parse_command(command) {
            Ok(c) => c,
            Err(e) => return RErr(e),
        };
        self.services
            .processes
            .spawn(&command, &self.capture())
            .map_err(|e| RString::from(e.to_string()))
            .into()
    }

    fn process_id(&self, handle: u64) -> RResult<u32, RString> {
        match self.services.processes.pid(handle) {
            Some(pid) => ROk(pid),
            None => RErr(RString::from(format!("no process with handle {handle}"))),
        }
    }

    fn call(&self, name: RStr<'_>, payload: RStr<'_>) -> RResult<ROption<RString>, RString> {
        match name.as_str() {
            // since 1.5
            panther_plugin_api::context::SIGNAL_BELOW_WRAPPERS => {
                match serde_json::from_str::<SignalBelowWrappers>(payload.as_str()) {
                    Ok(request) => ROk(RSome(to_json(&request.carry_out()))),
                    Err(err) => RErr(RString::from(format!("unreadable request: {err}"))),
                }
            }
            _ => ROk(RNone),
        }
    }

    fn process_status(&self, handle: u64) -> RResult<RString, RString> {
        self.services
            .processes
            .status(handle)
            .map(|s| to_json(&s))
            .map_err(|e| RString::from(e.to_string()))
            .into()
    }

    fn stop(&self, handle: u64, grace_ms: u64) -> RResult<RString, RString> {
        self.services
            .processes
            .stop(handle, Duration::from_millis(grace_ms))
            .map(|s| to_json(&s))
            .map_err(|e| RString::from(e.to_string()))
            .into()
    }
}
