//! The binary interface between `panther-host` and a plugin library.
//!
//! Plugin authors never touch this module: [`export_plugin!`](crate::export_plugin) generates
//! the root module and the adapters. It is public because the host is built against it.
//!
//! Everything here is `StableAbi`. Structured payloads (configs, plans, results, events) cross
//! as JSON text so that adding a field to them never changes the layout; small calls on hot
//! paths ([`ExecutionEnvironmentFfi::slowdown`]) stay typed.
//!
//! # Compatibility
//!
//! abi_stable checks every layout when a library is loaded, and it accepts a library whose
//! prefix types have *at least* the fields the host knows: a plugin built against a newer
//! minor version loads into an older host, but a plugin built against an older one would be
//! refused if the host's layouts had grown. So within a major version the typed layouts
//! here are **frozen**, and what a minor version adds goes through the `call` entry points
//! (a method name and a JSON payload), which every layout has had from 1.0 on. A side that
//! does not know a name answers `RNone`, and the caller falls back to the default. Both
//! directions keep working: older plugins in newer hosts, newer plugins in older hosts.
//!
//! Named calls by version: 1.1 added `validate` (module) and `clean_stale` (network
//! environment); 1.3 added `sites` (module of a network environment: where each service
//! runs). Data that crosses as JSON grows the same way, with defaults: 1.3 added
//! `ServiceCommand::site` and `mounts`, `ServiceSpec::mounts`, `ValidationContext::commands`
//! and `sites`, and the manifest's key aliases; 1.4 added `ServiceSite::Container::libc` and
//! warnings among `validate`'s answers (entries made with `warning`).

// `#[sabi_trait]` expands to impls inside a const block, which rustc flags; the code is
// abi_stable's, not ours.
#![allow(non_local_definitions)]

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RArc, RBox, ROption, RResult, RStr, RString},
    StableAbi,
};

/// A fingerprint of this file, which defines every type that crosses the boundary typed (the
/// rest crosses as JSON). Two programs built with the same fingerprint and the same abi_stable
/// minor version check a library's layout alike: a host may trust a check made by its probe
/// when their fingerprints agree, instead of checking again in its own process.
pub const LAYOUT_FINGERPRINT: u64 = fnv1a(include_bytes!("abi.rs"));

/// FNV-1a, 64 bits: enough to tell two versions of one file apart, and computable at compile
/// time.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// An error crossing the boundary: the whole cause chain, already formatted.
pub type FfiError = RString;

/// The host services handed to a plugin instance, as the plugin sees them.
pub type HostContextBox = HostContextFfi_TO<'static, RArc<()>>;
/// A network environment instance living in a plugin library.
pub type NetworkEnvironmentBox = NetworkEnvironmentFfi_TO<'static, RBox<()>>;
/// An execution environment instance living in a plugin library.
pub type ExecutionEnvironmentBox = ExecutionEnvironmentFfi_TO<'static, RBox<()>>;
/// A reporter instance living in a plugin library.
pub type ReporterBox = ReporterFfi_TO<'static, RBox<()>>;

/// The root module every plugin library exports.
///
/// Each constructor takes the instance's configuration as JSON and a host context. A library
/// holds exactly one plugin, so only the constructor of its own kind succeeds; the others
/// answer with an error naming the kind the plugin really is.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// The plugin's [`Manifest`](crate::Manifest), as JSON.
    pub manifest: extern "C" fn() -> RResult<RString, FfiError>,
    /// The resources an instance with this configuration (JSON) would claim, as a JSON list of
    /// [`Resource`](crate::Resource). Called before anything is instantiated.
    pub claims: extern "C" fn(config: RStr<'_>) -> RResult<RString, FfiError>,
    /// Builds a network environment instance.
    pub new_network_environment: extern "C" fn(
        config: RStr<'_>,
        ctx: HostContextBox,
    ) -> RResult<NetworkEnvironmentBox, FfiError>,
    /// Builds an execution environment instance.
    pub new_execution_environment: extern "C" fn(
        config: RStr<'_>,
        ctx: HostContextBox,
    ) -> RResult<ExecutionEnvironmentBox, FfiError>,
    /// Builds a reporter instance.
    pub new_reporter:
        extern "C" fn(config: RStr<'_>, ctx: HostContextBox) -> RResult<ReporterBox, FfiError>,
    /// A named call added after 1.0 (see the module documentation): `RNone` when the plugin
    /// does not know the name.
    #[sabi(last_prefix_field)]
    pub call:
        extern "C" fn(name: RStr<'_>, payload: RStr<'_>) -> RResult<ROption<RString>, FfiError>,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "panther_plugin";
    const NAME: &'static str = "panther-plugin-api";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// What the host offers every plugin instance. Implemented by the host.
#[sabi_trait]
pub trait HostContextFfi: Send + Sync + Clone {
    /// Forwards one log record to the host's `tracing` output. `level` is 1 (error) to 5 (trace).
    fn log(&self, level: u8, target: RStr<'_>, message: RStr<'_>);
    /// The most verbose level the host will print, 0 (off) to 5 (trace).
    fn max_log_level(&self) -> u8;
    /// Emits an [`Event`](crate::Event) given as JSON.
    fn emit_event(&self, event: RStr<'_>);
    /// The folder this instance may write its results to.
    fn output_dir(&self) -> RString;
    /// Whether the run was cancelled (Ctrl-C, timeout): long work should stop early.
    fn is_cancelled(&self) -> bool;
    /// Runs a [`Command`](crate::Command) (JSON) to completion, returning its
    /// [`CommandOutput`](crate::CommandOutput) as JSON.
    fn run_command(&self, command: RStr<'_>) -> RResult<RString, FfiError>;
    /// Starts a long-running [`Command`](crate::Command) (JSON) and returns its handle.
    fn spawn(&self, command: RStr<'_>) -> RResult<u64, FfiError>;
    /// The process id of a spawned process (also its process group id), known even after it
    /// has exited.
    fn process_id(&self, handle: u64) -> RResult<u32, FfiError>;
    /// The [`ProcessState`](crate::ProcessState) of a spawned process, as JSON.
    fn process_status(&self, handle: u64) -> RResult<RString, FfiError>;
    /// Stops a spawned process group (TERM, then KILL after `grace_ms`) and returns its final
    /// [`ProcessState`](crate::ProcessState) as JSON.
    fn stop(&self, handle: u64, grace_ms: u64) -> RResult<RString, FfiError>;
    /// A named host service added after 1.0: `RNone` when the host does not know it.
    #[sabi(last_prefix_field)]
    fn call(&self, name: RStr<'_>, payload: RStr<'_>) -> RResult<ROption<RString>, FfiError>;
}

/// A network environment: where the services of an experiment are deployed.
#[sabi_trait]
pub trait NetworkEnvironmentFfi: Send {
    /// Prepares the environment for a [`DeploymentPlan`](crate::DeploymentPlan) (JSON).
    fn setup_environment(&mut self, plan: RStr<'_>) -> RResult<(), FfiError>;
    /// Starts one [`ServiceSpec`](crate::ServiceSpec) (JSON), returning its
    /// [`Deployment`](crate::Deployment) as JSON.
    fn deploy_service(&mut self, service: RStr<'_>) -> RResult<RString, FfiError>;
    /// Blocks until the named service is ready or its readiness timeout passes.
    fn wait_ready(&mut self, service: RStr<'_>) -> RResult<(), FfiError>;
    /// The [`EnvironmentStatus`](crate::EnvironmentStatus) of every deployed service, as JSON.
    fn get_environment_status(&mut self) -> RResult<RString, FfiError>;
    /// Stops one service and returns its final [`ProcessState`](crate::ProcessState) as JSON.
    fn stop_service(&mut self, service: RStr<'_>) -> RResult<RString, FfiError>;
    /// Removes everything the environment created. Called always, also after failures.
    fn teardown_environment(&mut self) -> RResult<(), FfiError>;
    /// A named call added after 1.0: `RNone` when the plugin does not know the name.
    #[sabi(last_prefix_field)]
    fn call(&mut self, name: RStr<'_>, payload: RStr<'_>) -> RResult<ROption<RString>, FfiError>;
}

/// An execution environment: wraps a service's command to trace or profile it.
#[sabi_trait]
pub trait ExecutionEnvironmentFfi: Send {
    /// How much slower a wrapped service typically runs (1.0: no slowdown).
    fn slowdown(&self) -> f64;
    /// Wraps a [`ServiceCommand`](crate::ServiceCommand) (JSON), returning the wrapped one.
    fn wrap_command(&mut self, command: RStr<'_>) -> RResult<RString, FfiError>;
    /// The wrapped service is running as `pid`.
    fn start_monitoring(&mut self, service: RStr<'_>, pid: u32) -> RResult<(), FfiError>;
    /// The service has stopped or is about to be stopped.
    fn stop_monitoring(&mut self, service: RStr<'_>) -> RResult<(), FfiError>;
    /// What was learned about the service, as JSON.
    fn get_monitoring_data(&mut self, service: RStr<'_>) -> RResult<RString, FfiError>;
    /// A named call added after 1.0: `RNone` when the plugin does not know the name.
    #[sabi(last_prefix_field)]
    fn call(&mut self, name: RStr<'_>, payload: RStr<'_>) -> RResult<ROption<RString>, FfiError>;
}

/// A reporter: writes the result of a run somewhere.
#[sabi_trait]
pub trait ReporterFfi: Send {
    /// Writes a [`RunResult`](crate::RunResult) given as JSON.
    fn report(&mut self, result: RStr<'_>) -> RResult<(), FfiError>;
    /// A named call added after 1.0: `RNone` when the plugin does not know the name.
    #[sabi(last_prefix_field)]
    fn call(&mut self, name: RStr<'_>, payload: RStr<'_>) -> RResult<ROption<RString>, FfiError>;
}
