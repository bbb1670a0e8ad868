//! Write plugins for `panther-host`.
//!
//! A plugin is a `cdylib` crate that implements [`Plugin`] plus one of [`NetworkEnvironment`],
//! [`ExecutionEnvironment`] or [`Reporter`], and exports it with [`export_plugin!`]. Build it,
//! drop the `.so` into a folder given to `panther-host --plugin-dir`, and it is listed, checked
//! and used like the plugins that ship with the host.
//!
//! # A complete plugin
//!
//! A reporter that writes one line per service to a file:
//!
//! ```
//! use std::{fs, path::PathBuf};
//!
//! use panther_plugin_api::prelude::*;
//!
//! /// The plugin's section in `experiment.toml`, e.g. `[[report]] plugin = "lines"`.
//! #[derive(Deserialize, JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     /// Where to write the summary.
//!     path: PathBuf,
//! }
//!
//! struct Lines {
//!     path: PathBuf,
//! }
//!
//! impl Plugin for Lines {
//!     type Config = Config;
//!
//!     fn manifest() -> Manifest {
//!         Manifest::new("lines").description("One line per service")
//!     }
//!
//!     fn claims(config: &Config) -> Vec<Resource> {
//!         vec![Resource::File(config.path.clone())]
//!     }
//!
//!     fn new(config: Config, _ctx: Context) -> anyhow::Result<Self> {
//!         Ok(Lines { path: config.path })
//!     }
//! }
//!
//! impl Reporter for Lines {
//!     fn report(&mut self, run: &RunResult) -> anyhow::Result<()> {
//!         let text: String = run
//!             .services
//!             .iter()
//!             .map(|s| format!("{} {}\n", s.name, if s.passed { "ok" } else { "FAILED" }))
//!             .collect();
//!         tracing::info!(path = %self.path.display(), "writing the summary");
//!         fs::write(&self.path, text)
//!             .with_context(|| format!("writing {}", self.path.display()))
//!     }
//! }
//!
//! export_plugin!(Reporter: Lines);
//! # fn main() {}
//! ```
//!
//! with this `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "lines"
//! version = "0.1.0"
//! edition = "2021"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! panther-plugin-api = "1"
//! serde = { version = "1", features = ["derive"] }
//! schemars = "1"
//! tracing = "0.1"
//! anyhow = "1"
//! ```
//!
//! # What the host guarantees
//!
//! - The configuration is validated against the JSON Schema derived from `Config` before the
//!   experiment starts, and [`Plugin::claims`] is checked against every other instance.
//! - Every call is made from a plain (non-async) thread: a plugin that needs async I/O runs
//!   its own runtime and blocks on it.
//! - A panic inside any method is caught at the boundary and reported as that plugin's error;
//!   the host and the other plugins go on.
//! - `tracing` records reach the host's output, tagged with the plugin's name.
//!
//! # Compatibility
//!
//! The ABI lives in [`abi`]. A plugin built against `panther-plugin-api` 1.x loads into any
//! host built against 1.y, older or newer: within a major version the typed layouts of the
//! root module and the interfaces are frozen (abi_stable refuses a library whose prefix types
//! have fewer fields than the loader's), and minor versions add *named calls* (`call(name,
//! payload)`, answered `None` by a side that predates them) and optional fields in the JSON
//! payloads. A plugin built against another major version is refused when
//! it is loaded, with both versions in the error. Libraries are never unloaded (see the
//! host's documentation): loading a new build of a plugin means starting a new process.

#![warn(missing_docs)]

pub mod abi;
pub mod context;
mod event;
mod export;
pub mod failure;
mod log_bridge;
mod manifest;
mod model;
mod plugin;
pub mod readiness;
// since 1.5: begin
pub mod capability;
pub mod suggest;
// since 1.5: end

pub use context::{Context, ProcessHandle};
pub use event::Event;
pub use manifest::{Manifest, PluginKind, Resource, Tool};
// since 1.3: begin
pub use manifest::KeyAlias;
// since 1.3: end
pub use model::{
    Command, CommandOutput, Deployment, DeploymentPlan, EnvironmentStatus, HostMount, ImageLibc,
    Linkage, ProcessState, Readiness, ReadyCheck, Role, RunResult, RunStatus, ServiceCommand,
    ServiceResult, ServiceSite, ServiceSpec, ValidationContext,
};
pub use plugin::{ExecutionEnvironment, NetworkEnvironment, Plugin, Reporter};
// since 1.4: begin
pub use plugin::{warning, WARNING_PREFIX};
// since 1.4: end

pub use anyhow;
pub use schemars;
pub use serde;
pub use serde_json;
pub use tracing;

/// The version of this crate a plugin was built against.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything a plugin usually needs, in one import.
pub mod prelude {
    pub use crate::{
        export_plugin, Command, CommandOutput, Context, Deployment, DeploymentPlan,
        EnvironmentStatus, Event, ExecutionEnvironment, HostMount, Linkage, Manifest,
        NetworkEnvironment, Plugin, ProcessHandle, ProcessState, Readiness, ReadyCheck, Reporter,
        Resource, Role, RunResult, RunStatus, ServiceCommand, ServiceResult, ServiceSite,
        ServiceSpec, ValidationContext,
    };
    pub use anyhow::{self, bail, Context as _};
    pub use schemars::{self, JsonSchema};
    pub use serde::{self, Deserialize, Serialize};
    pub use tracing;
    // since 1.5: begin
    pub use crate::capability;
    // since 1.5: end
}

#[doc(hidden)]
pub mod __private {
    pub use crate::export::*;
    pub use abi_stable::library::{
        __call_root_module_loader as call_root_module_loader, CheckTypeLayout, LibHeader,
        RootModuleResult,
    };

    /// Leaks the root module into a prefix reference, as abi_stable expects.
    pub fn leak_root_module(module: crate::abi::PluginModule) -> crate::abi::PluginModuleRef {
        use abi_stable::prefix_type::PrefixTypeTrait;
        module.leak_into_prefix()
    }
}

#[cfg(test)]
mod tests {
    /// `export_plugin!` spells out the root-module symbol abi_stable looks for; it must not
    /// drift from abi_stable's own name.
    #[test]
    fn exported_symbol_matches_abi_stable() {
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            "_1as_0lib_1header_0root_bmodule_bloader"
        );
    }
}
