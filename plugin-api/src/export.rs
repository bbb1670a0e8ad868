//! What [`export_plugin!`](crate::export_plugin) expands to: adapters from the author's plain
//! Rust traits to the ABI in [`abi`](crate::abi), each call guarded so that a panic in a plugin
//! becomes an error for the host instead of aborting it.
//!
//! Nothing here is meant to be called by hand.

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RErr, RNone, ROk, ROption, RResult, RSome, RStr, RString},
};
use anyhow::Context as _;

use crate::{
    abi::{
        ExecutionEnvironmentBox, ExecutionEnvironmentFfi, ExecutionEnvironmentFfi_TO, FfiError,
        HostContextBox, NetworkEnvironmentBox, NetworkEnvironmentFfi, NetworkEnvironmentFfi_TO,
        ReporterBox, ReporterFfi, ReporterFfi_TO,
    },
    context::Context,
    failure::Failure,
    log_bridge,
    manifest::{Manifest, PluginKind},
    plugin::{ExecutionEnvironment, NetworkEnvironment, Plugin, Reporter},
};

/// Facts about the crate that exports the plugin, captured by the macro with `env!`.
pub trait PackageInfo {
    /// `CARGO_PKG_VERSION` of the plugin crate.
    const VERSION: &'static str;
    /// `CARGO_PKG_DESCRIPTION` of the plugin crate.
    const DESCRIPTION: &'static str;
    /// Which interface the plugin implements.
    const KIND: PluginKind;
}

thread_local! {
    /// Where the last panic on this thread happened, recorded by [`quiet_panic_hook`].
    static PANIC_LOCATION: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// A plugin library has its own copy of `std`, hence its own panic hook. The default hook
/// would print the panic to stderr in the middle of the host's output; this one only records
/// where it happened, and [`guard`] puts that into the error the host reports.
fn quiet_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            PANIC_LOCATION.with(|cell| *cell.borrow_mut() = location);
        }));
    });
}

/// Runs `f`, turning an error into a [`Failure`] with its causes and a panic into one that
/// says where it happened; the host, which knows what it asked for, says the rest.
pub fn guard<T>(f: impl FnOnce() -> anyhow::Result<T>) -> RResult<T, FfiError> {
    quiet_panic_hook();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => ROk(value),
        Ok(Err(err)) => RErr(RString::from(Failure::from_error(&err).to_json())),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string panic payload".to_string());
            let location = PANIC_LOCATION.with(|cell| cell.borrow_mut().take());
            RErr(RString::from(
                Failure::Panic { message, location }.to_json(),
            ))
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(json: RStr<'_>, what: &str) -> anyhow::Result<T> {
    serde_json::from_str(json.as_str()).with_context(|| format!("reading the {what} from the host"))
}

fn to_json<T: serde::Serialize>(value: &T) -> anyhow::Result<RString> {
    Ok(RString::from(serde_json::to_string(value)?))
}

/// The full manifest: the author's, plus what only the build knows.
pub fn full_manifest<P: Plugin, I: PackageInfo>() -> Manifest {
    let mut manifest = P::manifest();
    manifest.kind = I::KIND;
    manifest.version = I::VERSION.to_string();
    manifest.api_version = crate::API_VERSION.to_string();
    if manifest.description.is_empty() {
        manifest.description = I::DESCRIPTION.to_string();
    }
    let schema = schemars::schema_for!(P::Config);
    manifest.config_schema = serde_json::to_value(schema).unwrap_or_default();
    manifest
}

/// `PluginModule::manifest`.
pub extern "C" fn manifest<P: Plugin, I: PackageInfo>() -> RResult<RString, FfiError> {
    guard(|| to_json(&full_manifest::<P, I>()))
}

/// `PluginModule::claims`.
pub extern "C" fn claims<P: Plugin>(config: RStr<'_>) -> RResult<RString, FfiError> {
    guard(|| {
        let config: P::Config = parse(config, "configuration")?;
        to_json(&P::claims(&config))
    })
}

/// `PluginModule::call`: the named module-level calls this version knows.
pub extern "C" fn module_call<P: Plugin>(
    name: RStr<'_>,
    payload: RStr<'_>,
) -> RResult<ROption<RString>, FfiError> {
    match name.as_str() {
        // since 1.1: begin
        VALIDATE => guard(|| {
            let request: ValidateRequest = parse(payload, "validation request")?;
            let config: P::Config =
                serde_json::from_value(request.config).context("invalid configuration")?;
            Ok(RSome(to_json(&P::validate(&config, &request.experiment))?))
        }),
        // since 1.1: end
        _ => ROk(RNone),
    }
}

/// `PluginModule::call` of a network environment: [`module_call`] plus [`SITES`].
pub extern "C" fn network_module_call<P: NetworkEnvironment>(
    name: RStr<'_>,
    payload: RStr<'_>,
) -> RResult<ROption<RString>, FfiError> {
    match name.as_str() {
        // since 1.3: begin
        SITES => guard(|| {
            let request: ValidateRequest = parse(payload, "validation request")?;
            let config: P::Config =
                serde_json::from_value(request.config).context("invalid configuration")?;
            Ok(RSome(to_json(&P::sites(&config, &request.experiment))?))
        }),
        // since 1.3: end
        _ => module_call::<P>(name, payload),
    }
}

/// The name of the module call that validates a configuration (since 1.1).
pub const VALIDATE: &str = "validate";
/// The name of the network-environment module call that says where each service runs,
/// with a [`ValidateRequest`] as payload (since 1.3).
pub const SITES: &str = "sites";
/// The name of the network-environment call that cleans up after earlier runs (since 1.1).
pub const CLEAN_STALE: &str = "clean_stale";

/// The payload of [`VALIDATE`].
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ValidateRequest {
    /// The plugin's configuration.
    pub config: serde_json::Value,
    /// What the plugin may know of the experiment.
    #[serde(flatten)]
    pub experiment: crate::ValidationContext,
}

fn instantiate<P: Plugin>(config: RStr<'_>, host: HostContextBox) -> anyhow::Result<P> {
    log_bridge::install(&host);
    let config: P::Config =
        serde_json::from_str(config.as_str()).context("invalid configuration")?;
    P::new(config, Context::from_ffi(host))
}

fn wrong_kind<T, I: PackageInfo>(wanted: PluginKind) -> RResult<T, FfiError> {
    RErr(RString::from(format!(
        "this plugin is a {}, not a {wanted}",
        I::KIND
    )))
}

/// `PluginModule::new_network_environment` for a network environment.
pub extern "C" fn new_network_environment<P: NetworkEnvironment>(
    config: RStr<'_>,
    host: HostContextBox,
) -> RResult<NetworkEnvironmentBox, FfiError> {
    guard(|| {
        let plugin = instantiate::<P>(config, host)?;
        Ok(NetworkEnvironmentFfi_TO::from_value(
            Adapter(plugin),
            TD_Opaque,
        ))
    })
}

/// `PluginModule::new_execution_environment` for an execution environment.
pub extern "C" fn new_execution_environment<P: ExecutionEnvironment>(
    config: RStr<'_>,
    host: HostContextBox,
) -> RResult<ExecutionEnvironmentBox, FfiError> {
    guard(|| {
        let plugin = instantiate::<P>(config, host)?;
        Ok(ExecutionEnvironmentFfi_TO::from_value(
            Adapter(plugin),
            TD_Opaque,
        ))
    })
}

/// `PluginModule::new_reporter` for a reporter.
pub extern "C" fn new_reporter<P: Reporter>(
    config: RStr<'_>,
    host: HostContextBox,
) -> RResult<ReporterBox, FfiError> {
    guard(|| {
        let plugin = instantiate::<P>(config, host)?;
        Ok(ReporterFfi_TO::from_value(Adapter(plugin), TD_Opaque))
    })
}

/// The constructor slot of a kind this plugin is not.
pub extern "C" fn not_a_network_environment<I: PackageInfo>(
    _: RStr<'_>,
    _: HostContextBox,
) -> RResult<NetworkEnvironmentBox, FfiError> {
    wrong_kind::<_, I>(PluginKind::NetworkEnvironment)
}

/// The constructor slot of a kind this plugin is not.
pub extern "C" fn not_an_execution_environment<I: PackageInfo>(
    _: RStr<'_>,
    _: HostContextBox,
) -> RResult<ExecutionEnvironmentBox, FfiError> {
    wrong_kind::<_, I>(PluginKind::ExecutionEnvironment)
}

/// The constructor slot of a kind this plugin is not.
pub extern "C" fn not_a_reporter<I: PackageInfo>(
    _: RStr<'_>,
    _: HostContextBox,
) -> RResult<ReporterBox, FfiError> {
    wrong_kind::<_, I>(PluginKind::Reporter)
}

/// Wraps an author's plugin so it implements the ABI traits.
pub struct Adapter<P>(pub P);

impl<P: NetworkEnvironment> NetworkEnvironmentFfi for Adapter<P> {
    fn setup_environment(&mut self, plan: RStr<'_>) -> RResult<(), FfiError> {
        guard(|| self.0.setup_environment(&parse(plan, "deployment plan")?))
    }

    fn deploy_service(&mut self, service: RStr<'_>) -> RResult<RString, FfiError> {
        guard(|| to_json(&self.0.deploy_service(&parse(service, "service")?)?))
    }

    fn wait_ready(&mut self, service: RStr<'_>) -> RResult<(), FfiError> {
        guard(|| self.0.wait_ready(service.as_str()))
    }

    fn get_environment_status(&mut self) -> RResult<RString, FfiError> {
        guard(|| to_json(&self.0.get_environment_status()?))
    }

    fn stop_service(&mut self, service: RStr<'_>) -> RResult<RString, FfiError> {
        guard(|| to_json(&self.0.stop_service(service.as_str())?))
    }

    fn call(&mut self, name: RStr<'_>, _payload: RStr<'_>) -> RResult<ROption<RString>, FfiError> {
        match name.as_str() {
            // since 1.1: begin
            CLEAN_STALE => guard(|| Ok(RSome(to_json(&self.0.clean_stale()?)?))),
            // since 1.1: end
            _ => ROk(RNone),
        }
    }

    fn teardown_environment(&mut self) -> RResult<(), FfiError> {
        guard(|| self.0.teardown_environment())
    }
}

impl<P: ExecutionEnvironment> ExecutionEnvironmentFfi for Adapter<P> {
    fn call(&mut self, _name: RStr<'_>, _payload: RStr<'_>) -> RResult<ROption<RString>, FfiError> {
        ROk(RNone)
    }

    fn slowdown(&self) -> f64 {
        // A typed hot path: no payload, no allocation. A panic here is caught and reads as
        // "no slowdown".
        catch_unwind(AssertUnwindSafe(|| self.0.slowdown())).unwrap_or(1.0)
    }

    fn wrap_command(&mut self, command: RStr<'_>) -> RResult<RString, FfiError> {
        guard(|| to_json(&self.0.wrap(parse(command, "command")?)?))
    }

    fn start_monitoring(&mut self, service: RStr<'_>, pid: u32) -> RResult<(), FfiError> {
        guard(|| self.0.start_monitoring(service.as_str(), pid))
    }

    fn stop_monitoring(&mut self, service: RStr<'_>) -> RResult<(), FfiError> {
        guard(|| self.0.stop_monitoring(service.as_str()))
    }

    fn get_monitoring_data(&mut self, service: RStr<'_>) -> RResult<RString, FfiError> {
        guard(|| to_json(&self.0.get_monitoring_data(service.as_str())?))
    }
}

impl<P: Reporter> ReporterFfi for Adapter<P> {
    fn call(&mut self, _name: RStr<'_>, _payload: RStr<'_>) -> RResult<ROption<RString>, FfiError> {
        ROk(RNone)
    }

    fn report(&mut self, result: RStr<'_>) -> RResult<(), FfiError> {
        guard(|| self.0.report(&parse(result, "run result")?))
    }
}

/// Exports a plugin type from a `cdylib`, generating its root module.
///
/// Name the interface the type implements, then the type:
///
/// ```text
/// export_plugin!(Reporter: JsonReporter);
/// export_plugin!(ExecutionEnvironment: Strace);
/// export_plugin!(NetworkEnvironment: Localhost);
/// ```
///
/// Call it once per crate, at the top level. The crate's `Cargo.toml` needs
/// `crate-type = ["cdylib"]` (add `"rlib"` to unit-test the plugin in-process).
#[macro_export]
macro_rules! export_plugin {
    (NetworkEnvironment: $plugin:ty) => {
        $crate::__export_root_module!(
            $plugin,
            NetworkEnvironment,
            $crate::__private::new_network_environment::<$plugin>,
            $crate::__private::not_an_execution_environment::<__PantherPackage>,
            $crate::__private::not_a_reporter::<__PantherPackage>,
            $crate::__private::network_module_call::<$plugin>
        );
    };
    (ExecutionEnvironment: $plugin:ty) => {
        $crate::__export_root_module!(
            $plugin,
            ExecutionEnvironment,
            $crate::__private::not_a_network_environment::<__PantherPackage>,
            $crate::__private::new_execution_environment::<$plugin>,
            $crate::__private::not_a_reporter::<__PantherPackage>,
            $crate::__private::module_call::<$plugin>
        );
    };
    (Reporter: $plugin:ty) => {
        $crate::__export_root_module!(
            $plugin,
            Reporter,
            $crate::__private::not_a_network_environment::<__PantherPackage>,
            $crate::__private::not_an_execution_environment::<__PantherPackage>,
            $crate::__private::new_reporter::<$plugin>,
            $crate::__private::module_call::<$plugin>
        );
    };
}

/// The part of [`export_plugin!`] shared by every kind.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_root_module {
    ($plugin:ty, $kind:ident, $net:expr, $exec:expr, $report:expr, $call:expr) => {
        #[doc(hidden)]
        pub struct __PantherPackage;

        impl $crate::__private::PackageInfo for __PantherPackage {
            const VERSION: &'static str = env!("CARGO_PKG_VERSION");
            const DESCRIPTION: &'static str = env!("CARGO_PKG_DESCRIPTION");
            const KIND: $crate::PluginKind = $crate::PluginKind::$kind;
        }

        /// Used by tests that drive the plugin in-process.
        #[doc(hidden)]
        pub type __PantherPlugin = $plugin;

        // What abi_stable's `#[export_root_module]` generates, spelled out so that plugin
        // crates need no direct `abi_stable` dependency. The symbol name is checked against
        // abi_stable's own constant by this crate's tests.
        #[doc(hidden)]
        #[export_name = "_1as_0lib_1header_0root_bmodule_bloader"]
        pub static __PANTHER_ROOT_MODULE: $crate::__private::LibHeader = {
            fn root_module() -> $crate::abi::PluginModuleRef {
                $crate::__private::leak_root_module($crate::abi::PluginModule {
                    manifest: $crate::__private::manifest::<$plugin, __PantherPackage>,
                    claims: $crate::__private::claims::<$plugin>,
                    new_network_environment: $net,
                    new_execution_environment: $exec,
                    new_reporter: $report,
                    call: $call,
                })
            }
            extern "C" fn erased_root_module() -> $crate::__private::RootModuleResult {
                $crate::__private::call_root_module_loader(root_module)
            }
            unsafe {
                $crate::__private::LibHeader::from_constructor::<$crate::abi::PluginModuleRef>(
                    erased_root_module,
                    $crate::__private::CheckTypeLayout::Yes,
                )
            }
        };
    };
}
