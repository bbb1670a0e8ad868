//! The run lifecycle of one experiment:
//!
//! 1. start the experiment scope and instantiate its plugins (network driver, execution
//!    extensions, reporter instances);
//! 2. wrap every service's command with its execution environments, in order;
//! 3. set up the network environment, then deploy each service in dependency order, start
//!    monitoring it and wait for its readiness;
//! 4. run until every client has exited, the timeout passes, or the run is cancelled;
//! 5. stop the services (reverse order), stop monitoring, collect the monitoring data;
//! 6. tear down the network environment and stop any process left — always;
//! 7. judge every service, write the reports, end the scope.
//!
//! Timeouts (readiness and run) are multiplied by the product of the slowdowns that the
//! execution environments stacked on a service declare, and a timeout names them.
//!
//! Each phase is a module of its own; [`run_plan`] calls them in this order.

mod deploy;
mod dry_run;
mod folder;
mod instances;
mod judge;
mod report;
mod state;
mod stop;
mod wait;
mod wrap;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use panther_plugin_api::{Event, RunResult, RunStatus};

pub use self::dry_run::{dry_run, PlannedService};
use self::{folder::RunFolder, state::Run};
use crate::{
    context::RunServices,
    events::Observer,
    experiment::Experiment,
    isolate::Isolation,
    plan::{self, Layer, Plan, PlanOptions},
    registry::Registry,
    scope::{Scope, ScopeLevel, ScopeSettings},
};

/// How long a service gets between SIGTERM and SIGKILL.
pub use crate::command::STOP_GRACE;

/// What the caller decides about a run.
#[derive(Clone)]
pub struct RunOptions {
    /// Results go to `<output_root>/<experiment>/<timestamp>/` ([`run`] only: a [`Plan`]
    /// carries its own).
    pub output_root: PathBuf,
    /// Replaces the experiment's timeout.
    pub timeout: Option<Duration>,
    /// The services of the run: its cancellation flag, event bus and command processor.
    pub services: RunServices,
    /// Observers besides `events.jsonl`.
    pub observers: Vec<Arc<dyn Observer>>,
    /// Settings of the enclosing scopes (host, job), outermost first ([`run`] only: a
    /// [`Plan`] has them resolved).
    pub outer_scopes: Vec<ScopeSettings>,
    /// Which plugin instances live in child processes.
    pub isolation: Isolation,
}

/// Why a run could not even start (everything later ends up in the [`RunResult`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A name would make a path outside the results folder.
    #[error("refusing to run {experiment}: {reason}")]
    Unsafe {
        /// The experiment file.
        experiment: PathBuf,
        /// The name or path refused.
        reason: String,
    },
    /// The results folder could not be created.
    #[error("cannot create the results folder {}: {source}", path.display())]
    Output {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// No free port could be picked for the `{port:NAME}` placeholders.
    #[error("cannot pick free ports for the experiment's `{{port:NAME}}` placeholders: {0}")]
    Ports(#[source] std::io::Error),
}

/// Runs one validated experiment: resolves it into a [`Plan`] (host scope first in
/// `outer_scopes`, the rest job scopes; results under `output_root`), then [`run_plan`].
pub fn run(
    registry: &Registry,
    experiment: &Experiment,
    options: RunOptions,
) -> Result<RunResult, RunError> {
    let outer = options
        .outer_scopes
        .iter()
        .enumerate()
        .map(|(i, s)| match i {
            0 => Layer::host("the host scope", s.clone()),
            _ => Layer::job(s.clone()),
        })
        .collect();
    let plan_options = PlanOptions {
        outer,
        isolation: options.isolation.clone(),
        output: Some(options.output_root.clone()),
        ..PlanOptions::default()
    };
    let plan = plan::build(registry, experiment, &plan_options).map_err(|err| {
        let reason = match err {
            crate::experiment::ExperimentError::Invalid { problems, .. } => problems
                .iter()
                .map(|p| p.message.clone())
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        };
        RunError::Unsafe {
            experiment: experiment.path.clone(),
            reason,
        }
    })?;
    run_plan(&plan, options)
}

/// Runs one plan. Teardown always happens; the result says how it went.
pub fn run_plan(plan: &Plan, options: RunOptions) -> Result<RunResult, RunError> {
    let experiment = &plan.experiment;
    experiment
        .check_paths()
        .map_err(|reason| RunError::Unsafe {
            experiment: experiment.path.clone(),
            reason,
        })?;
    let started = Instant::now();
    let started_at = crate::time::now_rfc3339();
    let folder = RunFolder::create(&plan.output.0, &experiment.name)?;
    let run_id = &folder.run_id;
    // Every process of the run carries this id, and sits in the run's cgroup where possible.
    options.services.processes.contain(run_id);
    let ports = folder.pick_ports(&experiment.services)?;
    let bus = &options.services.bus;
    folder.record_events(bus, &options.observers)?;

    let mut scope = Scope::new(ScopeLevel::Experiment, &experiment.name, plan.scope.clone())
        .with_bus(Arc::clone(bus));
    let mut run = Run::new(plan, &options, folder.dir.clone(), scope.name.clone());
    run.emit(
        "host",
        &Event::ExperimentStarted {
            experiment: experiment.name.clone(),
            run_id: run_id.clone(),
        },
    );

    // 1. Instances. Reporters first: a broken reporter config is known before anything runs.
    let reporters = run.start_reporters(&mut scope);
    let network = run.start_network(&mut scope);
    let execution = run.execution_instances(&mut scope);

    // 2. Wrap, with this run's ports in place of the placeholders, each service knowing
    //    where it will run.
    let mut deployed = run.wrap_services(&mut scope, &execution, &ports, &folder.services);
    run.raise_call_limit(&deployed);

    if let Some(network) = network {
        if run.errors.is_empty() {
            // 3–4. Deploy, run.
            if run.deploy(&mut scope, &network, &mut deployed, run_id) {
                run.wait_for_clients(&mut scope, &network, &mut deployed);
            }
            // 5. Stop, collect.
            run.stop_and_collect(&mut scope, &network, &mut deployed);
        }
        // 6. Teardown, always.
        if let Err(err) = scope.release(network) {
            run.fail(err);
        }
    }
    run.stop_leftovers(run_id);

    // 7. Judge and report.
    let mut result = run.judge(&deployed, run_id, &started_at, started);
    run.report(&mut scope, reporters, &mut result);
    if !result.errors.is_empty() && result.status == RunStatus::Passed {
        result.status = RunStatus::Error;
    }
    for err in scope.end() {
        result.errors.push(err.to_string());
    }
    run.emit(
        "host",
        &Event::ExperimentFinished {
            status: result.status,
            duration_ms: started.elapsed().as_millis() as u64,
        },
    );
    Ok(result)
}
