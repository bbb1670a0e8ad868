//! From experiment files to plans, with the settings and the command line.

use std::{path::PathBuf, time::Duration};

use crate::{
    experiment::{ExperimentError, LoadDefaults},
    isolate::Isolation,
    plan::{self, Layer, Plan, PlanOptions, ReportRequest},
    plugin_defaults::PluginDefaults,
    registry::Registry,
    settings::Settings,
};

/// Turns experiment files into plans, with what the settings and the command line give.
pub(super) struct Resolver<'a> {
    registry: &'a Registry,
    load: LoadDefaults,
    pub(super) plan: PlanOptions,
}

impl<'a> Resolver<'a> {
    pub(super) fn new(
        registry: &'a Registry,
        settings: &Settings,
        isolation: &Isolation,
        reports: Vec<ReportRequest>,
        output: Option<PathBuf>,
        timeout: Option<Duration>,
    ) -> Self {
        let source = settings.source();
        let defaults = PluginDefaults::new(source.clone(), &settings.plugins);
        let network = settings
            .scope
            .drivers
            .get(panther_plugin_api::PluginKind::NetworkEnvironment.as_str())
            .map(|name| (name.clone(), source.clone()));
        Resolver {
            registry,
            load: LoadDefaults {
                network,
                plugins: defaults.clone(),
            },
            plan: PlanOptions {
                outer: vec![Layer::host(source, settings.scope.clone())],
                isolation: isolation.clone(),
                reports,
                default_reporters: settings.reporters.clone(),
                plugin_defaults: defaults,
                output,
                settings_output: settings.output.clone(),
                timeout,
            },
        }
    }

    /// Loads, validates and resolves one file: every problem, with its file and line.
    pub(super) fn resolve(&self, file: &std::path::Path) -> Result<Plan, ExperimentError> {
        plan::load(file, self.registry, &self.load, &self.plan)
    }
}
