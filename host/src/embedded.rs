//! Plugins compiled into the program that uses the host library, registered without a
//! plugin file: for embedders that ship their own plugins, and for tests of the host that
//! need real plugins but no build of a `cdylib`.
//!
//! The module is assembled from the same entry points `export_plugin!` puts in a library, so
//! an embedded plugin behaves exactly like a loaded one (manifest with its schema, claims,
//! validation, instances). It always runs in the host process: a plugin server opens files,
//! and there is none.

use std::path::PathBuf;

use abi_stable::std_types::{RResult, RString};
use panther_plugin_api::{
    __private::{self as export, PackageInfo},
    abi::{FfiError, PluginModule, PluginModuleRef},
    ExecutionEnvironment, NetworkEnvironment, PluginKind, Reporter,
};

use crate::{loader::LoadedPlugin, registry::Registry};

/// What the package of an embedded plugin says about it.
struct Embedded<const KIND: u8>;

const NETWORK: u8 = 0;
const EXECUTION: u8 = 1;
const REPORTER: u8 = 2;

impl<const KIND: u8> PackageInfo for Embedded<KIND> {
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "";
    const KIND: PluginKind = match KIND {
        NETWORK => PluginKind::NetworkEnvironment,
        EXECUTION => PluginKind::ExecutionEnvironment,
        _ => PluginKind::Reporter,
    };
}

/// The path an embedded plugin is shown with: it has no file.
fn pseudo_path(name: &str) -> PathBuf {
    PathBuf::from(format!("<embedded>/{name}"))
}

fn register<const KIND: u8, P: panther_plugin_api::Plugin>(
    registry: &mut Registry,
    module: PluginModule,
) {
    let manifest = export::full_manifest::<P, Embedded<KIND>>();
    keep_panic_messages(module.manifest);
    let module: PluginModuleRef = export::leak_root_module(module);
    registry.insert(LoadedPlugin::from_module(
        pseudo_path(&manifest.name),
        manifest,
        module,
    ));
}

/// The plugin API's guard installs a panic hook that only records where a plugin panicked
/// (a library has its own `std`, and so its own hook). An embedded plugin shares this
/// program's `std`: the program's own hook is kept and called after the recording one, so
/// that its panics still print.
fn keep_panic_messages(describe: extern "C" fn() -> RResult<RString, FfiError>) {
    static KEPT: std::sync::Once = std::sync::Once::new();
    KEPT.call_once(|| {
        let program = std::panic::take_hook();
        let _ = describe(); // installs the recording hook
        let recording = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            recording(info);
            program(info);
        }));
    });
}

impl Registry {
    /// Registers the network environment `P`, compiled into this program.
    pub fn insert_network_environment<P: NetworkEnvironment>(&mut self) {
        register::<NETWORK, P>(
            self,
            PluginModule {
                manifest: export::manifest::<P, Embedded<NETWORK>>,
                claims: export::claims::<P>,
                new_network_environment: export::new_network_environment::<P>,
                new_execution_environment: export::not_an_execution_environment::<Embedded<NETWORK>>,
                new_reporter: export::not_a_reporter::<Embedded<NETWORK>>,
                call: export::module_call::<P>,
            },
        );
    }

    /// Registers the execution environment `P`, compiled into this program.
    pub fn insert_execution_environment<P: ExecutionEnvironment>(&mut self) {
        register::<EXECUTION, P>(
            self,
            PluginModule {
                manifest: export::manifest::<P, Embedded<EXECUTION>>,
                claims: export::claims::<P>,
                new_network_environment: export::not_a_network_environment::<Embedded<EXECUTION>>,
                new_execution_environment: export::new_execution_environment::<P>,
                new_reporter: export::not_a_reporter::<Embedded<EXECUTION>>,
                call: export::module_call::<P>,
            },
        );
    }

    /// Registers the reporter `P`, compiled into this program.
    pub fn insert_reporter<P: Reporter>(&mut self) {
        register::<REPORTER, P>(
            self,
            PluginModule {
                manifest: export::manifest::<P, Embedded<REPORTER>>,
                claims: export::claims::<P>,
                new_network_environment: export::not_a_network_environment::<Embedded<REPORTER>>,
                new_execution_environment: export::not_an_execution_environment::<Embedded<REPORTER>>,
                new_reporter: export::new_reporter::<P>,
                call: export::module_call::<P>,
            },
        );
    }
}
