//! What the phases of a run share: the run's state, the services on their way through it,
//! and the few things every phase does (record a failure, place an instance, notice a
//! cancellation).

use std::{collections::BTreeMap, path::PathBuf, sync::atomic::Ordering, time::Duration};

use panther_plugin_api::{Event, ProcessState, ServiceSpec};

use super::RunOptions;
use crate::{
    dispatch::extension::{Extensions, Outcome},
    experiment::{Experiment, ServiceDef},
    instance::{ExecutionEnvironment, PluginError},
    isolate::{self, CallLimit, Placement},
    loader::LoadedPlugin,
    plan::Plan,
    scope::{Adopted, Scope},
};

/// An execution environment of the run, as the services share it.
pub(super) type ExecutionHandle = Adopted<ExecutionEnvironment>;

/// A service on its way through the run.
pub(super) struct Deployed<'e> {
    pub def: ServiceDef,
    pub spec: ServiceSpec,
    /// Execution environments of this service, in wrapping order (handles in the scope).
    pub extensions: Extensions<&'e ExecutionHandle>,
    pub slowdown: f64,
    pub deployed: bool,
    pub state: ProcessState,
    pub stopped_by_host: bool,
    pub monitoring: BTreeMap<String, serde_json::Value>,
}

impl Deployed<'_> {
    /// " (service `x` runs under a + b; timeouts were scaled ×6.0 …)" for timeout messages,
    /// or "".
    pub fn stacked_names(&self) -> String {
        if self.extensions.is_empty() {
            return String::new();
        }
        let names: Vec<&str> = self.extensions.names().collect();
        format!(
            " (service `{}` runs under {}; timeouts were scaled ×{:.1} for their slowdown)",
            self.spec.name,
            names.join(" + "),
            self.slowdown
        )
    }
}

/// The largest slowdown among the services: the one that scales the run's timeout.
pub(super) fn slowest(deployed: &[Deployed]) -> f64 {
    deployed.iter().map(|d| d.slowdown).fold(1.0, f64::max)
}

/// The state of one run, carried from phase to phase.
pub(super) struct Run<'a> {
    pub plan: &'a Plan,
    pub experiment: &'a Experiment,
    pub options: &'a RunOptions,
    pub output_dir: PathBuf,
    pub scope_name: String,
    pub errors: Vec<String>,
    pub interrupted: bool,
    pub timed_out: Option<String>,
    pub not_ready: bool,
    /// The limit of isolated calls, raised once the slowdowns are known.
    pub call_limit: CallLimit,
}

impl<'a> Run<'a> {
    /// A run of `plan` that writes to `output_dir` and reports as the scope `scope_name`.
    pub fn new(
        plan: &'a Plan,
        options: &'a RunOptions,
        output_dir: PathBuf,
        scope_name: String,
    ) -> Self {
        let experiment = &plan.experiment;
        Run {
            plan,
            experiment,
            options,
            output_dir,
            scope_name,
            errors: Vec::new(),
            interrupted: false,
            timed_out: None,
            not_ready: false,
            call_limit: CallLimit::new(call_limit_for(experiment, options, 1.0)),
        }
    }

    /// Records a failure: logged, sent as an event, and kept for the result.
    pub fn fail(&mut self, err: impl std::fmt::Display) {
        let message = err.to_string();
        tracing::error!("{message}");
        self.emit(
            "host",
            &Event::Error {
                message: message.clone(),
            },
        );
        self.errors.push(message);
    }

    /// Sends `event` from `source` in the run's scope.
    pub fn emit(&self, source: &str, event: &Event) {
        self.options
            .services
            .bus
            .emit(&self.scope_name, source, event);
    }

    /// Announces that `service` ended in `state`.
    pub fn service_exited(&self, service: &str, state: &ProcessState) {
        self.emit(
            "host",
            &Event::ServiceExited {
                service: service.to_string(),
                state: state.clone(),
            },
        );
    }

    /// Where an instance of `plugin` lives.
    pub fn placement(&self, plugin: &LoadedPlugin) -> Placement {
        self.options
            .isolation
            .placement(&plugin.path, &self.call_limit)
    }

    /// Scales the limit of isolated calls by the slowest service, now that the wrapping
    /// told the slowdowns.
    pub fn raise_call_limit(&self, deployed: &[Deployed]) {
        self.call_limit.set(call_limit_for(
            self.experiment,
            self.options,
            slowest(deployed),
        ));
    }

    /// Asks each execution environment of `service`, in order and under the scope's failure
    /// policy, to `act` on it; a success is announced with the event `announce` makes from
    /// the service's and the instance's names, a failure recorded.
    pub fn for_each_monitor(
        &mut self,
        scope: &mut Scope,
        service: &mut Deployed,
        mut act: impl FnMut(&mut ExecutionEnvironment, &str) -> Result<(), PluginError>,
        announce: impl Fn(String, String) -> Event,
    ) {
        let name = service.spec.name.clone();
        let outcomes = service
            .extensions
            .map(scope.settings.failure_policy(), |handle| {
                let instance = scope.get(*handle);
                act(instance, &name).map(|()| instance.id.instance.clone())
            });
        for outcome in outcomes {
            match outcome {
                Outcome::Done(instance) => {
                    self.emit(&instance, &announce(name.clone(), instance.clone()))
                }
                Outcome::Failed(err) => self.fail(err),
                Outcome::Skipped => {}
            }
        }
    }

    /// The folder of the experiment file, against which its relative paths resolve.
    pub fn experiment_dir(&self) -> Option<PathBuf> {
        self.experiment.path.parent().map(PathBuf::from)
    }

    /// Whether the run was cancelled (Ctrl-C): checked between steps, so it ends early.
    pub fn cancelled(&self) -> bool {
        self.options.services.cancelled.load(Ordering::Relaxed)
    }
}

/// The limit of one isolated call: derived from the run's timeout and its longest readiness
/// check, scaled like them by the slowdown of the execution environments.
fn call_limit_for(experiment: &Experiment, options: &RunOptions, slowdown: f64) -> Duration {
    let timeout = options.timeout.unwrap_or(experiment.timeout);
    let readiness = experiment
        .services
        .iter()
        .filter_map(|s| s.ready.as_ref().map(|r| r.timeout))
        .max()
        .unwrap_or_default();
    isolate::call_limit(timeout, readiness).mul_f64(slowdown.max(1.0))
}
