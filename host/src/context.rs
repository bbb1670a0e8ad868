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
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, ROption, RResult, RStr, RString},
};
use panther_plugin_api::{
    abi::{HostContextBox, HostContextFfi, HostContextFfi_TO},
    Event,
};
use panther_process::PluginCalls;
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
        let processes = Arc::new(CommandProcessor::new(Arc::clone(&cancelled), bus.clone()));
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

    /// The process calls, answered by the run's processor on behalf of this instance.
    fn processes(&self) -> PluginCalls<'_> {
        PluginCalls {
            processor: &self.services.processes,
            capture: Capture {
                default_dir: &self.output_dir,
                scope: &self.scope,
                source: &self.instance,
            },
        }
    }
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
        self.processes().run_command(command)
    }

    fn spawn(&self, command: RStr<'_>) -> RResult<u64, RString> {
        self.processes().spawn(command)
    }

    fn process_id(&self, handle: u64) -> RResult<u32, RString> {
        self.processes().process_id(handle)
    }

    fn call(&self, name: RStr<'_>, payload: RStr<'_>) -> RResult<ROption<RString>, RString> {
        self.processes().call(name, payload)
    }

    fn process_status(&self, handle: u64) -> RResult<RString, RString> {
        self.processes().process_status(handle)
    }

    fn stop(&self, handle: u64, grace_ms: u64) -> RResult<RString, RString> {
        self.processes().stop(handle, grace_ms)
    }
}
