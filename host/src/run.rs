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

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use panther_plugin_api::{
    DeploymentPlan, Event, ProcessState, Role, RunResult, RunStatus, ServiceCommand, ServiceResult,
    ServiceSpec,
};

use crate::{
    context::{InstanceContext, RunServices},
    dispatch::extension::{Extensions, Outcome},
    events::{JsonlWriter, Observer},
    experiment::{Experiment, ServiceDef},
    isolate::{self, CallLimit, Isolation, Placement},
    loader::LoadedPlugin,
    plan::{self, Layer, Plan, PlanOptions, ServicePlan},
    registry::Registry,
    scope::{Owned, Scope, ScopeLevel, ScopeSettings, Slot},
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

/// A service on its way through the run.
struct Deployed {
    def: ServiceDef,
    spec: ServiceSpec,
    /// Execution environments of this service, in wrapping order (slots in the scope).
    extensions: Extensions<Slot>,
    slowdown: f64,
    deployed: bool,
    state: ProcessState,
    stopped_by_host: bool,
    monitoring: BTreeMap<String, serde_json::Value>,
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
    let output_root = &plan.output.0;
    let started = Instant::now();
    let started_at = crate::time::now_rfc3339();
    // Exclusive: a folder (and the run id made from it) belongs to this run alone.
    let made = crate::run_dir::create(output_root, &experiment.name).map_err(|source| {
        RunError::Output {
            path: output_root.join(&experiment.name),
            source,
        }
    })?;
    let output_dir = made.path;
    let mkdir = |path: &PathBuf| {
        std::fs::create_dir_all(path).map_err(|source| RunError::Output {
            path: path.clone(),
            source,
        })
    };
    // Absolute, so reports and plugins name files that can be opened from anywhere.
    let output_dir = std::fs::canonicalize(&output_dir).unwrap_or(output_dir);
    let services_dir = output_dir.join("services");
    mkdir(&services_dir)?;
    let run_id = made.run_id;
    // Every process of the run carries this id, and sits in the run's cgroup where possible.
    options.services.processes.contain(&run_id);
    let ports = crate::ports::Ports::pick(&experiment.services).map_err(RunError::Ports)?;
    if !ports.is_empty() {
        let file = output_dir.join("ports.json");
        let json = serde_json::to_vec_pretty(&ports).unwrap_or_default();
        std::fs::write(&file, json).map_err(|source| RunError::Output { path: file, source })?;
    }

    let bus = Arc::clone(&options.services.bus);
    let events = JsonlWriter::create(&output_dir.join("events.jsonl")).map_err(|source| {
        RunError::Output {
            path: output_dir.join("events.jsonl"),
            source,
        }
    })?;
    bus.subscribe(Arc::new(events));
    for observer in &options.observers {
        bus.subscribe(Arc::clone(observer));
    }

    let mut scope = Scope::new(ScopeLevel::Experiment, &experiment.name, plan.scope.clone())
        .with_bus(Arc::clone(&bus));
    let scope_name = scope.name.clone();
    bus.emit(
        &scope_name,
        "host",
        &Event::ExperimentStarted {
            experiment: experiment.name.clone(),
            run_id: run_id.clone(),
        },
    );

    let mut run = Run {
        plan,
        experiment,
        options: &options,
        output_dir: output_dir.clone(),
        scope_name,
        errors: Vec::new(),
        interrupted: false,
        timed_out: None,
        not_ready: false,
        call_limit: CallLimit::new(Run::call_limit_for(experiment, &options, 1.0)),
    };
    let ctx = |plugin: &str, instance: &str, dir: PathBuf| {
        InstanceContext::new(
            plugin,
            instance,
            &run_name(experiment),
            dir,
            options.services.clone(),
        )
        .into_ffi()
    };

    // 1. Instances. Reporters first: a broken reporter config is known before anything runs.
    let mut reporters = Vec::new();
    for report in plan.active_reporters() {
        let instance = &report.instance;
        // Report paths may name sub-folders of the results folder (checked to stay inside).
        if let Err(err) = crate::results_path::prepare(&output_dir, &report.files) {
            run.fail(format!(
                "creating the folders of the report `{}`: {err}",
                instance.name
            ));
        }
        match report.plugin.start_reporter(
            &run.placement(&report.plugin),
            &instance.name,
            &instance.config,
            ctx(&instance.plugin, &instance.name, output_dir.clone()),
        ) {
            Ok(reporter) => reporters.push(scope.adopt(Owned::Reporter(reporter))),
            Err(err) => run.fail(err),
        }
    }
    let network_plan = &plan.network;
    let network = match network_plan.plugin.start_network_environment(
        &run.placement(&network_plan.plugin),
        &network_plan.instance.name,
        &network_plan.instance.config,
        ctx(
            &network_plan.instance.plugin,
            &network_plan.instance.name,
            output_dir.clone(),
        ),
    ) {
        Ok(network) => Some(scope.adopt(Owned::Network(network))),
        Err(err) => {
            run.fail(err);
            None
        }
    };
    let execution = run.execution_instances(&mut scope);

    // 2. Wrap, with this run's ports in place of the placeholders, each service knowing
    //    where it will run.
    let sites = run.sites(&plan.network.plugin);
    let mut deployed: Vec<Deployed> = plan
        .services
        .iter()
        .map(|service| {
            let site = sites.get(&service.def.name).cloned().unwrap_or_default();
            run.wrap(&mut scope, &execution, service, &ports, site, &services_dir)
        })
        .collect();
    let slowdown = deployed.iter().map(|d| d.slowdown).fold(1.0, f64::max);
    run.call_limit
        .set(Run::call_limit_for(experiment, &options, slowdown));

    // 3–5. Deploy, run, stop, collect.
    if let Some(network) = network {
        if run.errors.is_empty() {
            run.deploy_and_run(&mut scope, network, &mut deployed, &run_id);
            run.stop_and_collect(&mut scope, network, &mut deployed);
        }
        // 6. Teardown, always.
        if let Err(err) = scope.release(network) {
            run.fail(err);
        }
    }
    let (leftovers, strays) = options.services.processes.stop_all(STOP_GRACE);
    if leftovers > 0 {
        run.errors.push(format!(
            "{leftovers} process(es) were still running after teardown and were killed"
        ));
    }
    if !strays.is_empty() {
        // What the services left behind (daemons, children still in their group): ended and
        // recorded, not held against the run.
        let list: Vec<String> = strays
            .iter()
            .map(|s| format!("{} ({})", s.pid, s.comm))
            .collect();
        tracing::info!(
            "ended {} process(es) the services of run {run_id} left behind: {}",
            strays.len(),
            list.join(", ")
        );
        bus.emit(
            &run.scope_name,
            "host",
            &Event::Custom {
                name: "strays_ended".into(),
                data: serde_json::json!(strays),
            },
        );
    }

    // 7. Judge and report.
    let mut result = run.judge(&deployed, &run_id, &started_at, started);
    for slot in reporters {
        let reporter = scope.reporter(slot).expect("adopted");
        let instance = reporter.id.instance.clone();
        match reporter.report(&result) {
            Ok(()) => bus.emit(
                &run.scope_name,
                &instance,
                &Event::ReportWritten {
                    instance: instance.clone(),
                },
            ),
            Err(err) => {
                bus.emit(
                    &run.scope_name,
                    &instance,
                    &Event::Error {
                        message: err.to_string(),
                    },
                );
                result.errors.push(err.to_string());
            }
        }
    }
    if !result.errors.is_empty() && result.status == RunStatus::Passed {
        result.status = RunStatus::Error;
    }
    for err in scope.end() {
        result.errors.push(err.to_string());
    }
    bus.emit(
        &run.scope_name,
        "host",
        &Event::ExperimentFinished {
            status: result.status,
            duration_ms: started.elapsed().as_millis() as u64,
        },
    );
    Ok(result)
}

fn run_name(experiment: &Experiment) -> String {
    format!("experiment:{}", experiment.name)
}

struct Run<'a> {
    plan: &'a Plan,
    experiment: &'a Experiment,
    options: &'a RunOptions,
    output_dir: PathBuf,
    scope_name: String,
    errors: Vec<String>,
    interrupted: bool,
    timed_out: Option<String>,
    not_ready: bool,
    /// The limit of isolated calls, raised once the slowdowns are known.
    call_limit: CallLimit,
}

impl Run<'_> {
    fn fail(&mut self, err: impl std::fmt::Display) {
        let message = err.to_string();
        tracing::error!("{message}");
        self.options.services.bus.emit(
            &self.scope_name,
            "host",
            &Event::Error {
                message: message.clone(),
            },
        );
        self.errors.push(message);
    }

    /// Where an instance of `plugin` lives.
    fn placement(&self, plugin: &LoadedPlugin) -> Placement {
        self.options
            .isolation
            .placement(&plugin.path, &self.call_limit)
    }

    /// The limit of one isolated call: derived from the run's timeout and its longest
    /// readiness check, scaled like them by the slowdown of the execution environments.
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

    fn cancelled(&self) -> bool {
        self.options.services.cancelled.load(Ordering::Relaxed)
    }

    /// Instantiates every execution environment of the plan (each is used by at least one
    /// service); the slot of each, by its index in the plan, `None` when it failed to start.
    fn execution_instances(&mut self, scope: &mut Scope) -> Vec<Option<Slot>> {
        let mut instances = Vec::with_capacity(self.plan.execution.len());
        for exec in &self.plan.execution {
            let use_ = &exec.instance;
            let ctx = InstanceContext::new(
                &use_.plugin,
                &use_.name,
                &self.scope_name,
                self.output_dir.join("monitoring"),
                self.options.services.clone(),
            )
            .into_ffi();
            let placement = self.placement(&exec.plugin);
            match exec
                .plugin
                .start_execution_environment(&placement, &use_.name, &use_.config, ctx)
            {
                Ok(instance) => instances.push(Some(scope.adopt(Owned::Execution(instance)))),
                Err(err) => {
                    self.fail(err);
                    instances.push(None);
                }
            }
        }
        instances
    }

    /// Where the network environment runs each service, as `check` saw it.
    fn sites(
        &mut self,
        network: &LoadedPlugin,
    ) -> BTreeMap<String, panther_plugin_api::ServiceSite> {
        let experiment = panther_plugin_api::ValidationContext {
            base_dir: self
                .experiment
                .path
                .parent()
                .map(PathBuf::from)
                .unwrap_or_default(),
            services: self
                .experiment
                .services
                .iter()
                .map(|s| s.name.clone())
                .collect(),
            commands: (self.experiment.services.iter())
                .map(|s| (s.name.clone(), s.command.clone()))
                .collect(),
            sites: BTreeMap::new(),
        };
        let config = &self.plan.network.instance.config;
        match network.sites_in(&self.placement(network), config, &experiment) {
            Ok(sites) => sites,
            Err(err) => {
                self.fail(err);
                BTreeMap::new()
            }
        }
    }

    /// Wraps a service's command with the execution environments that apply to it.
    fn wrap(
        &mut self,
        scope: &mut Scope,
        execution: &[Option<Slot>],
        service: &ServicePlan,
        ports: &crate::ports::Ports,
        site: panther_plugin_api::ServiceSite,
        services_dir: &std::path::Path,
    ) -> Deployed {
        // This run's ports in place of the placeholders.
        let def = &ports.apply(&service.def);
        let settings = &service.settings;
        let mut extensions = service
            .extensions
            .filter_map(|index| execution.get(*index).copied().flatten());

        let mut command = ServiceCommand {
            service: def.name.clone(),
            argv: def.command.clone(),
            env: def.env.clone(),
            cwd: Some(def.cwd.clone()),
            output_dir: PathBuf::new(),
            experiment_dir: self
                .experiment
                .path
                .parent()
                .map(std::path::Path::to_path_buf),
            site,
            mounts: Vec::new(),
            parent_wrappers: Vec::new(),
        };
        let mut slowdown = 1.0;
        let outcomes = extensions.map(settings.failure_policy(), |slot| {
            let instance = scope.execution(*slot).expect("adopted");
            command.output_dir = self
                .output_dir
                .join("monitoring")
                .join(&def.name)
                .join(&instance.id.instance);
            std::fs::create_dir_all(&command.output_dir).ok();
            // Stacked factors multiply; the product is held to the same ceiling as one
            // factor, so no timeout it scales can overflow.
            slowdown = (slowdown * instance.checked_slowdown()?)
                .min(*crate::instance::SLOWDOWN_RANGE.end());
            instance.wrap(&command).map(|wrapped| command = wrapped)
        });
        for outcome in outcomes {
            if let Outcome::Failed(err) = outcome {
                self.fail(err);
            }
        }
        let ready = def.ready.clone().map(|mut r| {
            r.timeout = r.timeout.mul_f64(slowdown);
            r
        });
        let spec = ServiceSpec {
            name: def.name.clone(),
            argv: command.argv,
            env: command.env,
            cwd: command.cwd,
            depends_on: def.depends_on.clone(),
            ready,
            role: def.role,
            log_dir: services_dir.to_path_buf(),
            stop_grace: Some(STOP_GRACE.mul_f64(slowdown)),
            mounts: command.mounts,
            parent_wrappers: command.parent_wrappers,
        };
        Deployed {
            def: def.clone(),
            spec,
            extensions,
            slowdown,
            deployed: false,
            state: ProcessState::Pending,
            stopped_by_host: false,
            monitoring: BTreeMap::new(),
        }
    }

    fn deploy_and_run(
        &mut self,
        scope: &mut Scope,
        network: Slot,
        deployed: &mut [Deployed],
        run_id: &str,
    ) {
        let bus = Arc::clone(&self.options.services.bus);
        let plan = DeploymentPlan {
            experiment: self.experiment.name.clone(),
            run_id: run_id.to_string(),
            output_dir: self.output_dir.clone(),
            base_dir: self
                .experiment
                .path
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default(),
            services: deployed.iter().map(|d| d.spec.clone()).collect(),
        };
        let env = scope.network(network).expect("adopted");
        if let Err(err) = env.setup_environment(&plan) {
            return self.fail(err);
        }
        bus.emit(
            &self.scope_name,
            "host",
            &Event::EnvironmentSetup {
                environment: self.experiment.network.name.clone(),
            },
        );

        for service in deployed.iter_mut() {
            if self.cancelled() {
                self.interrupted = true;
                return;
            }
            let deploy_started = Instant::now();
            let env = scope.network(network).expect("adopted");
            let pid = match env.deploy_service(&service.spec) {
                Ok(deployment) => deployment.pid,
                Err(err) => return self.fail(err),
            };
            service.deployed = true;
            let name = service.spec.name.clone();
            bus.emit(
                &self.scope_name,
                "host",
                &Event::ServiceDeployed {
                    service: name.clone(),
                    pid,
                },
            );
            if let Some(pid) = pid {
                self.start_monitoring(scope, service, pid);
            }
            let env = scope.network(network).expect("adopted");
            if let Err(err) = env.wait_ready(&name) {
                if self.cancelled() {
                    self.interrupted = true;
                    return;
                }
                let stacked = stacked_names(service);
                self.not_ready = true;
                return self.fail(format!("{err}{stacked}"));
            }
            if service.spec.ready.is_some() {
                let after_ms = deploy_started.elapsed().as_millis() as u64;
                bus.emit(
                    &self.scope_name,
                    "host",
                    &Event::ServiceReady {
                        service: name,
                        after_ms,
                    },
                );
            }
        }
        self.wait_for_clients(scope, network, deployed);
    }

    fn start_monitoring(&mut self, scope: &mut Scope, service: &mut Deployed, pid: u32) {
        let bus = Arc::clone(&self.options.services.bus);
        let name = service.spec.name.clone();
        let outcomes = service
            .extensions
            .map(scope.settings.failure_policy(), |slot| {
                let instance = scope.execution(*slot).expect("adopted");
                instance
                    .start_monitoring(&name, pid)
                    .map(|()| instance.id.instance.clone())
            });
        for outcome in outcomes {
            match outcome {
                Outcome::Done(instance) => bus.emit(
                    &self.scope_name,
                    &instance,
                    &Event::MonitoringStarted {
                        service: name.clone(),
                        instance: instance.clone(),
                    },
                ),
                Outcome::Failed(err) => self.fail(err),
                Outcome::Skipped => {}
            }
        }
    }

    /// Polls the environment until every client has exited (or, with no clients, every
    /// service has), the timeout passes, or the run is cancelled.
    fn wait_for_clients(&mut self, scope: &mut Scope, network: Slot, deployed: &mut [Deployed]) {
        let slowdown = deployed.iter().map(|d| d.slowdown).fold(1.0, f64::max);
        let timeout = self
            .options
            .timeout
            .unwrap_or(self.experiment.timeout)
            .mul_f64(slowdown);
        let deadline = Instant::now() + timeout;
        let has_clients = deployed.iter().any(|d| d.def.role == Role::Client);
        let mut pause = Duration::from_millis(1);
        loop {
            // Before asking: an exit after this wakes the sleep below at once.
            let seen = crate::child_exit::generation();
            let env = scope.network(network).expect("adopted");
            match env.get_environment_status() {
                Ok(status) => {
                    for d in deployed.iter_mut() {
                        if let Some(state) = status.services.get(&d.spec.name) {
                            if state.is_finished() && !d.state.is_finished() {
                                self.options.services.bus.emit(
                                    &self.scope_name,
                                    "host",
                                    &Event::ServiceExited {
                                        service: d.spec.name.clone(),
                                        state: state.clone(),
                                    },
                                );
                            }
                            d.state = state.clone();
                        }
                    }
                }
                Err(err) => return self.fail(err),
            }
            let waited_for = deployed
                .iter()
                .filter(|d| !has_clients || d.def.role == Role::Client);
            if waited_for.clone().all(|d| d.state.is_finished()) {
                return;
            }
            if self.cancelled() {
                self.interrupted = true;
                return;
            }
            if Instant::now() >= deadline {
                if has_clients {
                    let running: Vec<&str> = deployed
                        .iter()
                        .filter(|d| d.def.role == Role::Client && !d.state.is_finished())
                        .map(|d| d.spec.name.as_str())
                        .collect();
                    let stacked = deployed
                        .iter()
                        .map(stacked_names)
                        .find(|s| !s.is_empty())
                        .unwrap_or_default();
                    self.timed_out = Some(format!(
                        "the experiment timeout of {} passed while {} still ran{stacked}",
                        humantime::format_duration(timeout),
                        running.join(", ")
                    ));
                }
                return;
            }
            crate::child_exit::wait_after(
                seen,
                pause.min(deadline.saturating_duration_since(Instant::now())),
            );
            pause = (pause * 2).min(Duration::from_millis(25));
        }
    }

    /// Stops monitoring (so that tools can flush while their service still runs), stops the
    /// services in reverse order, then collects what the execution environments gathered.
    fn stop_and_collect(&mut self, scope: &mut Scope, network: Slot, deployed: &mut [Deployed]) {
        let bus = Arc::clone(&self.options.services.bus);
        let policy = scope.settings.failure_policy();
        // The run may have ended before the last poll (a readiness failure, Ctrl-C): only a
        // service that is still running now counts as stopped by the host.
        if let Ok(status) = scope
            .network(network)
            .expect("adopted")
            .get_environment_status()
        {
            for d in deployed.iter_mut() {
                if let Some(state) = status.services.get(&d.spec.name) {
                    d.state = state.clone();
                }
            }
        }
        for d in deployed.iter_mut().rev().filter(|d| d.deployed) {
            let name = d.spec.name.clone();
            let stopped = d.extensions.map(policy, |slot| {
                let instance = scope.execution(*slot).expect("adopted");
                instance
                    .stop_monitoring(&name)
                    .map(|()| instance.id.instance.clone())
            });
            for outcome in stopped {
                match outcome {
                    Outcome::Done(instance) => bus.emit(
                        &self.scope_name,
                        &instance,
                        &Event::MonitoringStopped {
                            service: name.clone(),
                            instance: instance.clone(),
                        },
                    ),
                    Outcome::Failed(err) => self.fail(err),
                    Outcome::Skipped => {}
                }
            }
        }
        for d in deployed.iter_mut().rev().filter(|d| d.deployed) {
            let env = scope.network(network).expect("adopted");
            let was_running = !d.state.is_finished();
            match env.stop_service(&d.spec.name) {
                Ok(state) => {
                    if was_running {
                        d.stopped_by_host = true;
                        bus.emit(
                            &self.scope_name,
                            "host",
                            &Event::ServiceExited {
                                service: d.spec.name.clone(),
                                state: state.clone(),
                            },
                        );
                    }
                    d.state = state;
                }
                Err(err) => self.fail(err),
            }
        }
        for d in deployed.iter_mut().filter(|d| d.deployed) {
            let name = d.spec.name.clone();
            let collected = d.extensions.map(policy, |slot| {
                let instance = scope.execution(*slot).expect("adopted");
                instance
                    .get_monitoring_data(&name)
                    .map(|data| (instance.id.instance.clone(), data))
            });
            for outcome in collected {
                match outcome {
                    Outcome::Done((instance, data)) => {
                        let file = self
                            .output_dir
                            .join("monitoring")
                            .join(&name)
                            .join(format!("{instance}.json"));
                        if let Some(dir) = file.parent() {
                            let _ = std::fs::create_dir_all(dir);
                        }
                        if let Err(err) = std::fs::write(
                            &file,
                            serde_json::to_vec_pretty(&data).unwrap_or_default(),
                        ) {
                            self.fail(format!("writing {}: {err}", file.display()));
                        }
                        bus.emit(
                            &self.scope_name,
                            &instance,
                            &Event::MetricsCollected {
                                service: name.clone(),
                                instance: instance.clone(),
                                summary: summary_of(&data),
                            },
                        );
                        d.monitoring.insert(instance, data);
                    }
                    Outcome::Failed(err) => self.fail(err),
                    Outcome::Skipped => {}
                }
            }
        }
    }

    fn judge(
        &self,
        deployed: &[Deployed],
        run_id: &str,
        started_at: &str,
        started: Instant,
    ) -> RunResult {
        let services: Vec<ServiceResult> = deployed.iter().map(judge_service).collect();
        let mut errors = self.errors.clone();
        if let Some(reason) = &self.timed_out {
            errors.push(reason.clone());
        }
        let status = if self.interrupted {
            RunStatus::Interrupted
        } else if self.timed_out.is_some() {
            RunStatus::TimedOut
        } else if self.not_ready {
            RunStatus::Failed
        } else if !self.errors.is_empty() {
            RunStatus::Error
        } else if services.iter().all(|s| s.passed) {
            RunStatus::Passed
        } else {
            RunStatus::Failed
        };
        let execution = self
            .experiment
            .execution
            .iter()
            .map(|e| e.name.clone())
            .collect();
        RunResult {
            experiment: self.experiment.name.clone(),
            run_id: run_id.to_string(),
            status,
            started_at: started_at.to_string(),
            duration_ms: started.elapsed().as_millis() as u64,
            output_dir: self.output_dir.clone(),
            network: self.experiment.network.name.clone(),
            execution,
            services,
            errors,
        }
    }
}

fn judge_service(d: &Deployed) -> ServiceResult {
    let expected = d.def.expect_exit;
    let (passed, message) = match (&d.state, d.def.role) {
        (ProcessState::Pending, _) => (false, Some("never started".to_string())),
        (_, Role::Server) if d.stopped_by_host => (true, None),
        (ProcessState::Exited { code }, _) if *code == expected => (true, None),
        (ProcessState::Exited { code }, _) => (
            false,
            Some(format!("exited with code {code}, expected {expected}")),
        ),
        (ProcessState::Signaled { signal }, Role::Client) if d.stopped_by_host => (
            false,
            Some(format!(
                "still running at the end of the run; stopped by signal {signal}"
            )),
        ),
        (state, _) => (
            false,
            Some(format!("{state}, expected exit code {expected}")),
        ),
    };
    // Execution environments judge too: thresholds they were given (e.g. "no definite
    // leaks") come back as `violations` in their monitoring data.
    let violations: Vec<String> = d
        .monitoring
        .iter()
        .flat_map(|(instance, data)| {
            data.get("violations")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
                .map(move |v| format!("{instance}: {v}"))
        })
        .collect();
    let (passed, message) = if violations.is_empty() {
        (passed, message)
    } else {
        let mut reasons: Vec<String> = message.into_iter().collect();
        reasons.extend(violations);
        (false, Some(reasons.join("; ")))
    };
    ServiceResult {
        name: d.spec.name.clone(),
        role: d.def.role,
        argv: d.spec.argv.clone(),
        expected_exit: expected,
        state: d.state.clone(),
        passed,
        message,
        stdout_log: d.spec.log_dir.join(format!("{}.stdout", d.spec.name)),
        stderr_log: d.spec.log_dir.join(format!("{}.stderr", d.spec.name)),
        monitoring: d.monitoring.clone(),
    }
}

/// " (stacked execution environments: a ×2, b ×3)" for timeout messages, or "".
fn stacked_names(d: &Deployed) -> String {
    if d.extensions.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = d.extensions.names().collect();
    format!(
        " (service `{}` runs under {}; timeouts were scaled ×{:.1} for their slowdown)",
        d.spec.name,
        names.join(" + "),
        d.slowdown
    )
}

/// The top-level scalar fields of monitoring data, for the `metrics_collected` event.
fn summary_of(data: &serde_json::Value) -> serde_json::Value {
    match data {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_object() && !v.is_array())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other if !other.is_array() => other.clone(),
        _ => serde_json::Value::Null,
    }
}

/// One service as it would be deployed: for `--dry-run`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedService {
    /// The spec the network environment would receive.
    pub spec: ServiceSpec,
    /// The execution environments wrapping it, innermost first.
    pub execution: Vec<String>,
    /// The product of their slowdowns.
    pub slowdown: f64,
    /// The ports picked for its `{port:NAME}` placeholders (a real run picks its own).
    pub ports: BTreeMap<String, u16>,
}

/// Shows what a plan would deploy, without deploying anything: the execution environments
/// are instantiated and wrap each command, the network environment is not touched.
pub fn dry_run(plan: &Plan, options: RunOptions) -> Result<Vec<PlannedService>, Vec<String>> {
    let experiment = &plan.experiment;
    let scratch = std::env::temp_dir().join(format!("panther-dry-run-{}", std::process::id()));
    let mut scope = Scope::new(ScopeLevel::Experiment, &experiment.name, plan.scope.clone());
    let mut run = Run {
        plan,
        experiment,
        options: &options,
        output_dir: scratch.clone(),
        scope_name: scope.name.clone(),
        errors: Vec::new(),
        interrupted: false,
        timed_out: None,
        not_ready: false,
        call_limit: CallLimit::new(Run::call_limit_for(experiment, &options, 1.0)),
    };
    let execution = run.execution_instances(&mut scope);
    let services_dir = scratch.join("services");
    let ports = match crate::ports::Ports::pick(&experiment.services) {
        Ok(ports) => ports,
        Err(err) => return Err(vec![RunError::Ports(err).to_string()]),
    };
    let sites = run.sites(&plan.network.plugin);
    let planned = plan
        .services
        .iter()
        .map(|service| {
            let site = sites.get(&service.def.name).cloned().unwrap_or_default();
            let d = run.wrap(&mut scope, &execution, service, &ports, site, &services_dir);
            PlannedService {
                execution: d.extensions.names().map(String::from).collect(),
                slowdown: d.slowdown,
                spec: d.spec,
                ports: ports.of(&service.def),
            }
        })
        .collect();
    drop(scope);
    let _ = std::fs::remove_dir_all(&scratch);
    if run.errors.is_empty() {
        Ok(planned)
    } else {
        Err(run.errors)
    }
}
