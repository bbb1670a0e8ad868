//! The Job API: what an integrator uses to drive the host from Rust.
//!
//! A [`Job`] owns experiments, runners and the job-level reports. Each [`Runner`] is a
//! worker with its own activation scope (settings between the job's and each experiment's);
//! [`Job::run_parallel`] spreads the experiments over the runners, one thread each, and every
//! experiment runs in its own scope with its own results folder, event bus and processes.
//! Nothing is shared between two experiments but the loaded plugin libraries and the
//! cancellation flag (Ctrl-C stops the whole job; each experiment tears down its own scope).
//! [`Job::run_plans`] runs experiments already resolved into [`Plan`]s (what the command line
//! does after `check`): their scopes are resolved, so runner scopes do not apply to them.
//!
//! ```no_run
//! use std::sync::Arc;
//! use panther_host::{job::{Job, Runner}, registry::Registry, experiment};
//!
//! let registry = Arc::new(Registry::load(&["target/debug".into()]));
//! let experiments = ["a.toml", "b.toml"]
//!     .iter()
//!     .map(|f| experiment::load(f.as_ref(), &registry))
//!     .collect::<Result<Vec<_>, _>>()?;
//! let mut job = Job::new("nightly", Arc::clone(&registry), "results".into());
//! job.add_runner(Runner::new("left"));
//! job.add_runner(Runner::new("right"));
//! let result = job.run_parallel(experiments);
//! for outcome in &result.outcomes {
//!     println!("{}: {:?}", outcome.experiment, outcome.status());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::{
    collections::VecDeque,
    panic::{catch_unwind, AssertUnwindSafe},
    path::PathBuf,
    sync::{atomic::AtomicBool, Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use panther_plugin_api::{RunResult, RunStatus};
use serde::Serialize;

use crate::{
    context::RunServices,
    events::Observer,
    experiment::Experiment,
    isolate::Isolation,
    plan::Plan,
    registry::Registry,
    run::{self, RunOptions},
    scope::ScopeSettings,
};

/// A worker of a job, with its own activation scope.
#[derive(Debug, Clone, Default)]
pub struct Runner {
    /// Its name, for progress and reports.
    pub name: String,
    /// Settings between the job's and each experiment's.
    pub scope: ScopeSettings,
}

impl Runner {
    /// A runner with no settings of its own.
    pub fn new(name: &str) -> Self {
        Runner {
            name: name.to_string(),
            scope: ScopeSettings::default(),
        }
    }

    /// A runner with its own settings.
    pub fn with_scope(mut self, scope: ScopeSettings) -> Self {
        self.scope = scope;
        self
    }
}

/// What became of one experiment of a job.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The experiment's name.
    pub experiment: String,
    /// The runner that ran it.
    pub runner: String,
    /// Its result, when it ran.
    pub result: Option<RunResult>,
    /// Why it could not run (its results folder could not be made, the host panicked).
    pub error: Option<String>,
}

impl Outcome {
    /// Its status; an experiment that could not run counts as an error.
    pub fn status(&self) -> RunStatus {
        self.result.as_ref().map_or(RunStatus::Error, |r| r.status)
    }
}

/// The result of a whole job.
#[derive(Debug, Clone, Serialize)]
pub struct JobResult {
    /// The job's name.
    pub job: String,
    /// Wall time.
    pub duration_ms: u64,
    /// One per experiment, in the order they were given.
    pub outcomes: Vec<Outcome>,
}

impl JobResult {
    /// Passed when every experiment passed; otherwise the worst status.
    pub fn status(&self) -> RunStatus {
        let rank = |s: RunStatus| match s {
            RunStatus::Passed => 0,
            RunStatus::Failed => 1,
            RunStatus::TimedOut => 2,
            RunStatus::Error => 3,
            RunStatus::Interrupted => 4,
        };
        self.outcomes
            .iter()
            .map(Outcome::status)
            .max_by_key(|s| rank(*s))
            .unwrap_or(RunStatus::Passed)
    }
}

/// Called as experiments start and end, e.g. to draw progress.
pub trait Progress: Send + Sync {
    /// `runner` started `experiment`.
    fn started(&self, runner: &str, experiment: &str);
    /// `runner` finished `experiment` with `status`.
    fn finished(&self, runner: &str, experiment: &str, status: RunStatus);
}

/// A job: experiments, runners, and where the results go.
pub struct Job {
    name: String,
    registry: Arc<Registry>,
    output_root: PathBuf,
    outer_scopes: Vec<ScopeSettings>,
    runners: Vec<Runner>,
    timeout: Option<Duration>,
    cancelled: Arc<AtomicBool>,
    observers: Vec<Arc<dyn Observer>>,
    progress: Option<Arc<dyn Progress>>,
    isolation: Isolation,
}

impl Job {
    /// A job with no runners yet (one is added if none are when it runs).
    pub fn new(name: &str, registry: Arc<Registry>, output_root: PathBuf) -> Self {
        Job {
            name: name.to_string(),
            registry,
            output_root,
            outer_scopes: Vec::new(),
            runners: Vec::new(),
            timeout: None,
            cancelled: Arc::new(AtomicBool::new(false)),
            observers: Vec::new(),
            progress: None,
            isolation: Isolation::default(),
        }
    }

    /// Settings of the scopes around the job (host first, then the job's own).
    pub fn with_scopes(mut self, outer: Vec<ScopeSettings>) -> Self {
        self.outer_scopes = outer;
        self
    }

    /// Replaces every experiment's timeout.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Shares a cancellation flag (set it to stop the job; Ctrl-C handlers set it).
    pub fn with_cancellation(mut self, cancelled: Arc<AtomicBool>) -> Self {
        self.cancelled = cancelled;
        self
    }

    /// Runs the plugin instances that `isolation` names in child processes.
    pub fn with_isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }

    /// Adds an observer to every experiment's event bus.
    pub fn observe(&mut self, observer: Arc<dyn Observer>) {
        self.observers.push(observer);
    }

    /// Reports progress as experiments start and end.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Adds a runner; N runners run N experiments at once.
    pub fn add_runner(&mut self, runner: Runner) {
        self.runners.push(runner);
    }

    /// The runners.
    pub fn runners(&self) -> &[Runner] {
        &self.runners
    }

    /// Runs the experiments over the runners and waits for all of them.
    pub fn run_parallel(&self, experiments: Vec<Experiment>) -> JobResult {
        let names = experiments.iter().map(|e| e.name.clone()).collect();
        self.spread(experiments, names, |runner, experiment| {
            let mut outer = self.outer_scopes.clone();
            outer.push(runner.scope.clone());
            let options = RunOptions {
                output_root: experiment
                    .output
                    .clone()
                    .unwrap_or_else(|| self.output_root.clone()),
                outer_scopes: outer,
                ..self.options()
            };
            run::run(&self.registry, experiment, options)
        })
    }

    /// Runs resolved plans over the runners (each into the results root its plan names) and
    /// waits for all of them.
    pub fn run_plans(&self, plans: Vec<Plan>) -> JobResult {
        let names = plans.iter().map(|p| p.experiment.name.clone()).collect();
        self.spread(plans, names, |_, plan| run::run_plan(plan, self.options()))
    }

    /// The options every experiment of the job shares.
    fn options(&self) -> RunOptions {
        RunOptions {
            output_root: self.output_root.clone(),
            timeout: self.timeout,
            services: RunServices::new(Arc::clone(&self.cancelled)),
            observers: self.observers.clone(),
            outer_scopes: self.outer_scopes.clone(),
            isolation: self.isolation.clone(),
        }
    }

    /// Spreads `items` over the runners, one thread each, and collects one outcome per item
    /// in their order.
    fn spread<T: Send>(
        &self,
        items: Vec<T>,
        names: Vec<String>,
        run: impl Fn(&Runner, &T) -> Result<RunResult, run::RunError> + Sync,
    ) -> JobResult {
        let started = Instant::now();
        let default = [Runner::new("runner-1")];
        let runners: &[Runner] = if self.runners.is_empty() {
            &default
        } else {
            &self.runners
        };
        let count = items.len();
        let queue: Mutex<VecDeque<(usize, T)>> =
            Mutex::new(items.into_iter().enumerate().collect());
        let slots: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; count]);
        thread::scope(|scope| {
            for runner in runners {
                let (queue, slots, run, names) = (&queue, &slots, &run, &names);
                thread::Builder::new()
                    .name(format!("runner {}", runner.name))
                    .spawn_scoped(scope, move || loop {
                        let Some((index, item)) =
                            queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
                        else {
                            break;
                        };
                        let outcome = self.run_one(runner, &names[index], || run(runner, &item));
                        slots.lock().unwrap_or_else(|e| e.into_inner())[index] = Some(outcome);
                    })
                    .expect("a runner thread starts");
            }
        });
        let outcomes = slots
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .flatten()
            .collect();
        JobResult {
            job: self.name.clone(),
            duration_ms: started.elapsed().as_millis() as u64,
            outcomes,
        }
    }

    /// Runs one experiment in its own scope; a panic of the host code is caught and becomes
    /// this experiment's error, so the other runners go on.
    fn run_one(
        &self,
        runner: &Runner,
        experiment: &str,
        run: impl FnOnce() -> Result<RunResult, run::RunError>,
    ) -> Outcome {
        if let Some(progress) = &self.progress {
            progress.started(&runner.name, experiment);
        }
        let ran = catch_unwind(AssertUnwindSafe(run));
        let (result, error) = match ran {
            Ok(Ok(result)) => (Some(result), None),
            Ok(Err(err)) => (None, Some(err.to_string())),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                (
                    None,
                    Some(format!("the host panicked while running it: {message}")),
                )
            }
        };
        let outcome = Outcome {
            experiment: experiment.to_string(),
            runner: runner.name.clone(),
            result,
            error,
        };
        if let Some(progress) = &self.progress {
            progress.finished(&runner.name, experiment, outcome.status());
        }
        outcome
    }
}
