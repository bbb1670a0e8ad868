//! Phase 1: the plugin instances of the run, each adopted by the experiment scope (which
//! tears them down however the run ends). A failure to start one is recorded, not fatal
//! here: the run goes on far enough to report it.

use std::path::PathBuf;

use panther_plugin_api::abi::HostContextBox;

use super::state::{ExecutionHandle, Run};
use crate::{
    context::InstanceContext,
    experiment::PluginUse,
    instance::{NetworkEnvironment, PluginError, Reporter},
    isolate::Placement,
    loader::LoadedPlugin,
    scope::{Adoptable, Adopted, Scope},
};

/// How an instance of one kind is started from its plugin (one of `LoadedPlugin::start_*`).
type Start<T> = fn(
    &LoadedPlugin,
    &Placement,
    &str,
    &serde_json::Value,
    HostContextBox,
) -> Result<T, PluginError>;

impl Run<'_> {
    /// Starts the active reporters, their report folders made first.
    pub fn start_reporters(&mut self, scope: &mut Scope) -> Vec<Adopted<Reporter>> {
        let plan = self.plan;
        let mut reporters = Vec::new();
        for report in plan.active_reporters() {
            // Report paths may name sub-folders of the results folder (checked to stay
            // inside).
            if let Err(err) = crate::results_path::prepare(&self.output_dir, &report.files) {
                self.fail(format!(
                    "creating the folders of the report `{}`: {err}",
                    report.instance.name
                ));
            }
            let dir = self.output_dir.clone();
            let start: Start<Reporter> = LoadedPlugin::start_reporter;
            reporters.extend(self.start(scope, &report.plugin, &report.instance, dir, start));
        }
        reporters
    }

    /// Starts the network environment; `None` when it failed to start.
    pub fn start_network(&mut self, scope: &mut Scope) -> Option<Adopted<NetworkEnvironment>> {
        let plan = self.plan;
        let network = &plan.network;
        let dir = self.output_dir.clone();
        let start: Start<NetworkEnvironment> = LoadedPlugin::start_network_environment;
        self.start(scope, &network.plugin, &network.instance, dir, start)
    }

    /// Instantiates every execution environment of the plan (each is used by at least one
    /// service); the handle of each, by its index in the plan, `None` when it failed to
    /// start.
    pub fn execution_instances(&mut self, scope: &mut Scope) -> Vec<Option<ExecutionHandle>> {
        let plan = self.plan;
        plan.execution
            .iter()
            .map(|exec| {
                let dir = self.output_dir.join("monitoring");
                let start = LoadedPlugin::start_execution_environment;
                self.start(scope, &exec.plugin, &exec.instance, dir, start)
            })
            .collect()
    }

    /// Starts one instance of `plugin`, writing to `dir`, and hands it to the scope.
    fn start<T: Adoptable>(
        &mut self,
        scope: &mut Scope,
        plugin: &LoadedPlugin,
        instance: &PluginUse,
        dir: PathBuf,
        start: Start<T>,
    ) -> Option<Adopted<T>> {
        let ctx = InstanceContext::new(
            &instance.plugin,
            &instance.name,
            &self.scope_name,
            dir,
            self.options.services.clone(),
        )
        .into_ffi();
        match start(
            plugin,
            &self.placement(plugin),
            &instance.name,
            &instance.config,
            ctx,
        ) {
            Ok(started) => Some(scope.adopt(started)),
            Err(err) => {
                self.fail(err);
                None
            }
        }
    }
}
