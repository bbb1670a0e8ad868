//! `run`: one experiment, or several as a job; the signals that stop them.

use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use panther_plugin_api::{ProcessState, Role, RunResult, RunStatus};

use super::{check::print_warnings, report_error, report_experiment_error, resolver::Resolver};
use crate::{
    context::RunServices,
    events::{Observer, TracingObserver},
    exit_code::{self, INTERNAL_ERROR, INVALID_INPUT},
    isolate::Isolation,
    job::{Job, Runner},
    plan::{self, Plan},
    registry::Registry,
    run::{self, RunOptions},
    settings::Settings,
};

pub(super) fn options(
    settings: &Settings,
    isolation: &Isolation,
    output: PathBuf,
    timeout: Option<Duration>,
    verbose: u8,
) -> RunOptions {
    let cancelled = Arc::new(AtomicBool::new(false));
    for signal in STOP_SIGNALS {
        let _ = signal_hook::flag::register(signal, Arc::clone(&cancelled));
    }
    count_stop_signals();
    let observers: Vec<Arc<dyn Observer>> = if verbose > 0 {
        vec![Arc::new(TracingObserver)]
    } else {
        Vec::new()
    };
    RunOptions {
        output_root: output,
        timeout,
        services: RunServices::new(cancelled),
        observers,
        outer_scopes: vec![settings.scope.clone()],
        isolation: isolation.clone(),
    }
}

/// Ctrl-C, `kill` and a closed terminal all stop a run the same way: teardown, reports, 130.
const STOP_SIGNALS: [i32; 3] = [
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
];

/// A second stop signal (of any of [`STOP_SIGNALS`]) ends the grace periods: kill now.
fn count_stop_signals() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    static FIRST_SEEN: AtomicBool = AtomicBool::new(false);
    REGISTERED.call_once(|| {
        for signal in STOP_SIGNALS {
            // SAFETY: the handler only does atomic operations, which are async-signal-safe.
            let _ = unsafe {
                signal_hook::low_level::register(signal, || {
                    if FIRST_SEEN.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        crate::command::hurry();
                    }
                })
            };
        }
    });
}

/// What `run` was asked to do.
pub(super) struct RunRequest<'a> {
    pub(super) files: &'a [PathBuf],
    pub(super) output: Option<PathBuf>,
    pub(super) timeout: Option<Duration>,
    pub(super) jobs: usize,
    pub(super) verbose: u8,
    pub(super) quiet: bool,
    pub(super) isolation: Isolation,
}

pub(super) fn run_files(
    registry: &Arc<Registry>,
    settings: &Settings,
    resolver: &Resolver<'_>,
    request: RunRequest<'_>,
) -> u8 {
    // Validate and resolve everything before starting anything.
    let mut plans = Vec::new();
    let mut invalid = false;
    for file in request.files {
        match resolver.resolve(file) {
            Ok(plan) => {
                if !request.quiet {
                    print_warnings(&plan);
                }
                plans.push(plan)
            }
            Err(err) => invalid = report_experiment_error(&err) == INVALID_INPUT || invalid,
        }
    }
    if invalid {
        return INVALID_INPUT;
    }
    // Orphans of the services (double forks, daemons) come back to the host, not init.
    if crate::contain::reap::become_subreaper() {
        crate::contain::reap::start_reaper();
    } else {
        tracing::debug!("cannot become a child subreaper; orphaned service processes go to init");
    }
    if plans.len() == 1 {
        let plan = plans.remove(0);
        let opts = options(
            settings,
            &request.isolation,
            plan.output.0.clone(),
            request.timeout,
            request.verbose,
        );
        return match run::run_plan(&plan, opts) {
            Ok(result) => {
                // Quiet runs speak only when something went wrong.
                if !request.quiet || result.status != RunStatus::Passed {
                    print_summary(&result);
                }
                exit_code::for_status(result.status)
            }
            Err(err) => report_error(&err, INTERNAL_ERROR),
        };
    }
    run_job(registry, settings, plans, &request)
}

/// Several experiments: a job with `--jobs` runners, a job-level report, progress bars when
/// stderr is a terminal.
fn run_job(
    registry: &Arc<Registry>,
    settings: &Settings,
    experiments: Vec<Plan>,
    request: &RunRequest<'_>,
) -> u8 {
    // The job's own report goes where no experiment file decides: -o, the settings' output.
    let root = request
        .output
        .clone()
        .or_else(|| settings.output.clone())
        .unwrap_or_else(|| PathBuf::from(plan::DEFAULT_OUTPUT));
    let template = options(
        settings,
        &request.isolation,
        root.clone(),
        request.timeout,
        request.verbose,
    );
    let mut job = Job::new("job", Arc::clone(registry), root.clone())
        .with_scopes(template.outer_scopes.clone())
        .with_timeout(request.timeout)
        .with_cancellation(Arc::clone(&template.services.cancelled))
        .with_isolation(template.isolation.clone());
    for observer in template.observers {
        job.observe(observer);
    }
    let runners = request.jobs.max(1).min(experiments.len());
    for i in 1..=runners {
        job.add_runner(Runner::new(&format!("runner-{i}")));
    }
    // The bars draw on stderr: they belong wherever stderr is a terminal, also when stdout
    // goes to a file or a pipe.
    if std::io::stderr().is_terminal() && !request.quiet {
        job = job.with_progress(Arc::new(crate::progress::Bars::new(
            runners,
            experiments.len(),
        )));
    }
    let result = job.run_plans(experiments);
    let mut codes = Vec::new();
    for outcome in &result.outcomes {
        match (&outcome.result, &outcome.error) {
            (Some(run), _) => {
                if !request.quiet || run.status != RunStatus::Passed {
                    print_summary(run);
                }
            }
            (None, Some(error)) => eprintln!("error: {}: {error}", outcome.experiment),
            (None, None) => {}
        }
        codes.push(exit_code::for_status(outcome.status()));
    }
    // Exclusive, like a run's: jobs started at once never share a report folder.
    let written = crate::run_dir::create_unique(&root, "job-")
        .and_then(|dir| crate::job_report::write(&result, &dir).map(|()| dir));
    match written {
        Ok(dir) if !request.quiet => eprintln!(
            "job: {} experiments in {:.2}s, report in {}",
            result.outcomes.len(),
            result.duration_ms as f64 / 1000.0,
            dir.display()
        ),
        Ok(_) => {}
        Err(err) => codes.push(report_error(&err, INTERNAL_ERROR)),
    }
    exit_code::worst(codes)
}

fn print_summary(result: &RunResult) {
    let mut err = std::io::stderr().lock();
    let verdict = match result.status {
        RunStatus::Passed => "passed",
        RunStatus::Failed => "FAILED",
        RunStatus::TimedOut => "TIMED OUT",
        RunStatus::Interrupted => "INTERRUPTED",
        RunStatus::Error => "ERROR",
    };
    let _ = writeln!(
        err,
        "{}: {verdict} in {:.2}s, results in {}",
        result.experiment,
        result.duration_ms as f64 / 1000.0,
        result.output_dir.display()
    );
    let width = result
        .services
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0);
    for s in &result.services {
        let status = if s.passed { "ok" } else { "FAILED" };
        let detail = match (&s.message, &s.state) {
            (Some(message), _) => message.clone(),
            (None, ProcessState::Signaled { signal }) if s.role == Role::Server => {
                format!("stopped by the host at the end of the run (signal {signal})")
            }
            (None, state) => state.to_string(),
        };
        let _ = writeln!(err, "  {:<width$}  {status:<6}  {detail}", s.name);
    }
    for e in &result.errors {
        let _ = writeln!(err, "  error: {e}");
    }
}
