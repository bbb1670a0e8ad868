//! One resolution, one plan.
//!
//! [`build`] resolves a validated [`Experiment`] once, against the registry, the scopes
//! around it and the command line, into a typed [`Plan`]: the chosen network driver, the
//! execution environments of each service in calling order, the reporter instances with their
//! claims, the services in dependency order, and every setting with the scope it came from.
//! `check` reports what building it finds; `run` and `run --dry-run` consume it and never look
//! a plugin up by name again.
//!
//! Scopes govern everything they name: claims and declared incompatibilities are checked
//! among the instances that are *active* for each service (after host, job, experiment and
//! service `enable`/`disable`), reporters obey the same lists, and a name in those lists (or
//! in `order`) that names nothing is refused with a suggestion.

mod describe;
mod names;
mod origin;
mod reporters;
mod stacks;
#[cfg(test)]
mod tests;

use std::{path::PathBuf, sync::Arc, time::Duration};

use panther_plugin_api::{PluginKind, Resource};

pub use names::unknown_name;
pub use origin::{Layer, Origin, Setting};
pub use reporters::ReportRequest;

use crate::{
    dispatch::{driver, extension::Extensions, proxy::Proxy},
    experiment::{Experiment, ExperimentError, PluginUse, Problem, ServiceDef},
    isolate::{CallLimit, Isolation, Placement},
    loader::LoadedPlugin,
    plugin_defaults::PluginDefaults,
    registry::Registry,
    scope::{resolve, Resolved, ScopeSettings},
};

/// How long an isolated plugin may take to describe its claims.
const MODULE_CALL_LIMIT: Duration = Duration::from_secs(30);

/// The results root when nothing else names one.
pub const DEFAULT_OUTPUT: &str = "results";

/// The reporters every run gets unless a scope disables them or the settings name others
/// (`reporters = [...]`): like Avocado's `results.json` and `results.xml`.
pub const DEFAULT_REPORTERS: [&str; 2] = ["json", "junit"];

/// What a plan is built from, besides the experiment and the registry.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// The scopes around the experiment, outermost first (host, then job).
    pub outer: Vec<Layer>,
    /// Which plugins answer from plugin servers.
    pub isolation: Isolation,
    /// Reporters asked for on the command line (`--report json=-`).
    pub reports: Vec<ReportRequest>,
    /// The reporters added when no instance of their plugin is configured: the settings'
    /// `reporters` (with [`Origin::Settings`]), else [`DEFAULT_REPORTERS`].
    pub default_reporters: Option<Vec<String>>,
    /// Per-plugin default configuration from the settings file.
    pub plugin_defaults: PluginDefaults,
    /// `-o` (or the results root an embedding program chose).
    pub output: Option<PathBuf>,
    /// The settings file's `output`.
    pub settings_output: Option<PathBuf>,
    /// `--timeout`, which replaces the experiment's (shown in the plan's settings; the run
    /// takes it from its options).
    pub timeout: Option<Duration>,
}

/// The chosen network environment.
#[derive(Debug, Clone)]
pub struct NetworkPlan {
    /// The instance as configured.
    pub instance: PluginUse,
    /// Its plugin.
    pub plugin: Arc<LoadedPlugin>,
    /// Who chose it.
    pub origin: Origin,
}

/// An execution environment instance that at least one service uses.
#[derive(Debug, Clone)]
pub struct ExecutionPlan {
    /// The instance as configured.
    pub instance: PluginUse,
    /// Its plugin.
    pub plugin: Arc<LoadedPlugin>,
    /// What it claims.
    pub claims: Vec<Resource>,
}

/// One service and the execution environments that wrap it.
#[derive(Debug)]
pub struct ServicePlan {
    /// The service.
    pub def: ServiceDef,
    /// Indexes into [`Plan::execution`], in wrapping order (innermost first).
    pub extensions: Extensions<usize>,
    /// The settings in force for it (host, job, experiment, service).
    pub settings: Resolved,
}

/// A reporter instance.
#[derive(Debug, Clone)]
pub struct ReporterPlan {
    /// The instance as configured (its configuration merged over the plugin's defaults).
    pub instance: PluginUse,
    /// Its plugin.
    pub plugin: Arc<LoadedPlugin>,
    /// The files it writes, relative to the results folder and normalised.
    pub files: Vec<PathBuf>,
    /// Who asked for it.
    pub origin: Origin,
}

/// An experiment resolved once: what the run does, and why.
#[derive(Debug)]
pub struct Plan {
    /// The experiment.
    pub experiment: Experiment,
    /// The network driver.
    pub network: NetworkPlan,
    /// The execution environments some service uses, in order of first use.
    pub execution: Vec<ExecutionPlan>,
    /// The services in dependency order, each with its extensions.
    pub services: Vec<ServicePlan>,
    /// The reporter instances; disabled ones are inactive.
    pub reporters: Proxy<ReporterPlan>,
    /// The settings in force at the experiment's scope.
    pub scope: Resolved,
    /// The results root and who chose it.
    pub output: (PathBuf, Origin),
    /// Every setting in force and where it came from.
    pub settings: Vec<Setting>,
}

impl Plan {
    /// The plan as JSON, for `run --dry-run --format json`.
    pub fn describe(&self) -> serde_json::Value {
        describe::plan(self)
    }

    /// The active reporters, in the order they were added.
    pub fn active_reporters(&self) -> impl Iterator<Item = &ReporterPlan> {
        self.reporters.active().map(|i| &i.item)
    }
}

/// Reads, validates and resolves an experiment file: the loader's problems and the plan's
/// together, each once (a section the loader found wrong is not reported again).
pub fn load(
    path: &std::path::Path,
    registry: &Registry,
    defaults: &crate::experiment::LoadDefaults,
    options: &PlanOptions,
) -> Result<Plan, ExperimentError> {
    let (experiment, mut problems) =
        crate::experiment::load_partial(path, registry, &options.isolation, defaults)?;
    match build(registry, &experiment, options) {
        Ok(plan) if problems.is_empty() => return Ok(plan),
        Ok(_) => {}
        Err(ExperimentError::Invalid { problems: more, .. }) => {
            // The plan checks what the loader checked too (plugins, schemas), for
            // experiments built in code: the same problem is reported once.
            let quiet = !problems.is_empty();
            for problem in more {
                if !problems.contains(&problem) && (!quiet || !problem.location.is_empty()) {
                    problems.push(problem);
                }
            }
        }
        Err(other) => return Err(other),
    }
    Err(ExperimentError::Invalid {
        path: path.to_path_buf(),
        problems,
        warnings: experiment.warnings,
    })
}

/// Resolves `experiment` into a plan; every problem is listed, each with the file (and line)
/// that caused it.
pub fn build(
    registry: &Registry,
    experiment: &Experiment,
    options: &PlanOptions,
) -> Result<Plan, ExperimentError> {
    let mut builder = Builder {
        registry,
        experiment,
        options,
        problems: Vec::new(),
    };
    let plan = builder.plan();
    match plan {
        Some(plan) if builder.problems.is_empty() => Ok(plan),
        _ => Err(ExperimentError::Invalid {
            path: experiment.path.clone(),
            problems: builder.problems,
            // The loader reports the file's warnings with its problems.
            warnings: Vec::new(),
        }),
    }
}

struct Builder<'a> {
    registry: &'a Registry,
    experiment: &'a Experiment,
    options: &'a PlanOptions,
    problems: Vec<Problem>,
}

impl Builder<'_> {
    fn problem(&mut self, location: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            location: location.into(),
            message: message.into(),
        });
    }

    fn placement(&self, plugin: &LoadedPlugin) -> Placement {
        self.options
            .isolation
            .placement(&plugin.path, &CallLimit::new(MODULE_CALL_LIMIT))
    }

    /// The scopes from the outermost to the experiment's.
    fn chain(&self) -> Vec<&ScopeSettings> {
        self.options
            .outer
            .iter()
            .map(|l| &l.settings)
            .chain([&self.experiment.scope])
            .collect()
    }

    fn plan(&mut self) -> Option<Plan> {
        let experiment = self.experiment;
        let scope = resolve(self.chain());
        let network = self.network();
        let execution_all = self.execution_claims();
        let (execution, services) = stacks::build(self, &execution_all);
        let reporters = reporters::build(self, &scope);
        names::check(self, &reporters);
        let output = self.output();
        let network = network?;
        let settings = describe::settings(self, &network, &reporters, &output);
        Some(Plan {
            experiment: experiment.clone(),
            network,
            execution,
            services,
            reporters,
            scope,
            output,
            settings,
        })
    }

    /// The results root: `-o` > the experiment's `output` > the settings' > `results`.
    fn output(&self) -> (PathBuf, Origin) {
        if let Some(dir) = &self.options.output {
            (dir.clone(), Origin::Cli)
        } else if let Some(dir) = &self.experiment.output {
            (dir.clone(), Origin::Experiment)
        } else if let Some(dir) = &self.options.settings_output {
            (dir.clone(), Origin::Settings)
        } else {
            (PathBuf::from(DEFAULT_OUTPUT), Origin::BuiltIn)
        }
    }

    /// The driver: the experiment's `[network]`, else the nearest scope's `drivers`, else
    /// the built-in default.
    fn network(&mut self) -> Option<NetworkPlan> {
        let experiment = self.experiment;
        let mut instance = experiment.network.clone();
        let mut origin = experiment.network_origin;
        if origin == Origin::BuiltIn {
            // A scope around the experiment may choose another driver.
            let chosen = self.options.outer.iter().rev().find_map(|layer| {
                layer
                    .settings
                    .drivers
                    .get(PluginKind::NetworkEnvironment.as_str())
                    .map(|name| (name.clone(), layer))
            });
            if let Some((name, layer)) = chosen {
                if name != instance.plugin {
                    let config = self
                        .options
                        .plugin_defaults
                        .merge(&name, &serde_json::json!({}));
                    instance = PluginUse {
                        plugin: name.clone(),
                        name,
                        services: None,
                        config,
                        location: layer.source.clone(),
                    };
                }
                origin = Origin::of_level(layer.level);
            }
        }
        match driver::choose(
            self.registry,
            PluginKind::NetworkEnvironment,
            &instance.plugin,
        ) {
            Ok(plugin) => Some(NetworkPlan {
                instance,
                plugin: Arc::clone(plugin),
                origin,
            }),
            Err(err) => {
                let location = instance.location.clone();
                self.problem(location, format!("choosing the network environment: {err}"));
                None
            }
        }
    }

    /// The plugin of an instance whose configuration its schema accepts; otherwise the
    /// problem, in the loader's words (see [`load`]).
    fn usable(&mut self, kind: PluginKind, instance: &PluginUse) -> Option<Arc<LoadedPlugin>> {
        let plugin = match driver::choose(self.registry, kind, &instance.plugin) {
            Ok(plugin) => Arc::clone(plugin),
            Err(err) => {
                self.problem(instance.location.clone(), err.to_string());
                return None;
            }
        };
        if let Err(errors) =
            crate::config_schema::validate(&plugin.manifest.config_schema, &instance.config)
        {
            for error in errors {
                self.problem(
                    instance.location.clone(),
                    format!("`{}` ({}): {error}", instance.name, instance.plugin),
                );
            }
            return None;
        }
        Some(plugin)
    }

    /// Every configured execution environment with its plugin and claims (`None` when its
    /// plugin is missing or its configuration is refused: the loader reported it).
    fn execution_claims(&mut self) -> Vec<Option<ExecutionPlan>> {
        let mut all = Vec::with_capacity(self.experiment.execution.len());
        for exec in &self.experiment.execution {
            let Some(plugin) = self.usable(PluginKind::ExecutionEnvironment, exec) else {
                all.push(None);
                continue;
            };
            let claims = match plugin.claims_in(&self.placement(&plugin), &exec.config) {
                Ok(claims) => claims,
                Err(err) => {
                    self.problem(exec.location.clone(), err.to_string());
                    all.push(None);
                    continue;
                }
            };
            all.push(Some(ExecutionPlan {
                instance: exec.clone(),
                plugin,
                claims,
            }));
        }
        all
    }
}
