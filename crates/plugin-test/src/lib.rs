//! Test a plugin in-process: instantiate it through the same exported entry points the host
//! calls, without a host binary. Add the crate to your dev-dependencies:
//!
//! ```toml
//! [dev-dependencies]
//! panther-plugin-test = "0.1"
//! ```
//!
//! ```text
//! let host = TestHost::new();
//! let mut reporter = host.reporter::<MyReporter>(serde_json::json!({ "path": "out.md" }))?;
//! reporter.report(&TestHost::sample_result())?;
//! assert!(host.output_dir().join("out.md").exists());
//! ```
//!
//! Commands started through the context run through the host's own command processor
//! ([`panther_process`]), as in a run: without a shell, each in a process group of its own
//! and carrying the run's mark, stopped with SIGTERM and then SIGKILL after the grace the
//! plugin asks for, ended at their timeout, their output captured to files in the output
//! folder. What the host does for a whole run and not per process is left out: no cgroup,
//! and the test process does not become the subreaper of what it starts. Processes still
//! running when the `TestHost` is dropped are stopped as at the end of a run.
//!
//! The crate is apart from `panther-plugin-api` because it runs the processor, which itself
//! builds on the API's types.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, ROption, RResult, RStr, RString},
};
use anyhow::anyhow;
use panther_plugin_api::{
    __private as export,
    abi::{
        ExecutionEnvironmentBox, HostContextBox, HostContextFfi, HostContextFfi_TO,
        NetworkEnvironmentBox, ReporterBox,
    },
    failure::Failure,
    Deployment, DeploymentPlan, EnvironmentStatus, Event, ExecutionEnvironment, NetworkEnvironment,
    Plugin, ProcessState, Reporter, Resource, Role, RunResult, RunStatus, ServiceCommand,
    ServiceResult, ServiceSpec, ValidationContext,
};
use panther_process::{
    command::STOP_GRACE, Capture, CommandProcessor, EventSink, PluginCalls, Stream,
};

/// The scope the processor's events are tagged with.
const SCOPE: &str = "test";
/// The source the processor's events are tagged with.
const SOURCE: &str = "plugin";

/// An in-process host for one test.
pub struct TestHost {
    recorder: Arc<Recorder>,
    _dir: tempfile::TempDir,
}

struct Recorder {
    output_dir: PathBuf,
    events: Arc<Events>,
    cancelled: Arc<AtomicBool>,
    processes: CommandProcessor,
}

/// The events of the test, in order: those the instances emitted and the processor's.
#[derive(Default)]
struct Events(Mutex<Vec<Event>>);

impl Events {
    fn push(&self, event: Event) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(event);
    }
}

impl EventSink for Events {
    fn event(&self, _scope: &str, _source: &str, event: &Event) {
        self.push(event.clone());
    }

    /// Output is in the capture files already; the host only logs it live.
    fn output(&self, _process: &str, _stream: Stream, _line: &str) {}
}

impl Default for TestHost {
    fn default() -> Self {
        Self::new()
    }
}

impl TestHost {
    /// A host with a fresh temporary output folder.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let events = Arc::new(Events::default());
        let cancelled = Arc::new(AtomicBool::new(false));
        let recorder = Recorder {
            output_dir: dir.path().to_path_buf(),
            processes: CommandProcessor::new(Arc::clone(&cancelled), events.clone()),
            events,
            cancelled,
        };
        TestHost {
            recorder: Arc::new(recorder),
            _dir: dir,
        }
    }

    /// The folder instances write to.
    pub fn output_dir(&self) -> &Path {
        &self.recorder.output_dir
    }

    /// The events of the test, in order, as the host's event log would have them: those the
    /// instances emitted and the processor's `CommandExecuted`.
    pub fn events(&self) -> Vec<Event> {
        self.recorder
            .events
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets the cancellation flag instances see.
    pub fn cancel(&self) {
        self.recorder.cancelled.store(true, Ordering::Relaxed);
    }

    fn ctx(&self) -> HostContextBox {
        HostContextFfi_TO::from_ptr(RArc::new(Shared(Arc::clone(&self.recorder))), TD_Opaque)
    }

    /// The claims an instance with `config` would make.
    pub fn claims<P: Plugin>(&self, config: serde_json::Value) -> anyhow::Result<Vec<Resource>> {
        let json = export::claims::<P>(RStr::from_str(&config.to_string()))
            .into_result()
            .map_err(failed)?;
        Ok(serde_json::from_str(&json)?)
    }

    /// What the plugin's validation finds in `config` for an experiment like `experiment`.
    pub fn validate<P: Plugin>(
        &self,
        config: serde_json::Value,
        experiment: &ValidationContext,
    ) -> anyhow::Result<Vec<String>> {
        let request = export::ValidateRequest {
            config,
            experiment: experiment.clone(),
        };
        let payload = serde_json::to_string(&request)?;
        let answer =
            export::module_call::<P>(RStr::from_str(export::VALIDATE), RStr::from_str(&payload));
        match answer.into_result().map_err(failed)?.into_option() {
            Some(json) => Ok(serde_json::from_str(&json)?),
            None => Ok(Vec::new()),
        }
    }

    /// Instantiates a reporter with `config`, as the host would.
    pub fn reporter<P: Reporter>(&self, config: serde_json::Value) -> anyhow::Result<TestReporter> {
        let inner = export::new_reporter::<P>(RStr::from_str(&config.to_string()), self.ctx())
            .into_result()
            .map_err(failed)?;
        Ok(TestReporter { inner })
    }

    /// Instantiates an execution environment with `config`, as the host would.
    pub fn execution_environment<P: ExecutionEnvironment>(
        &self,
        config: serde_json::Value,
    ) -> anyhow::Result<TestExecution> {
        let inner =
            export::new_execution_environment::<P>(RStr::from_str(&config.to_string()), self.ctx())
                .into_result()
                .map_err(failed)?;
        Ok(TestExecution { inner })
    }

    /// Instantiates a network environment with `config`, as the host would.
    pub fn network_environment<P: NetworkEnvironment>(
        &self,
        config: serde_json::Value,
    ) -> anyhow::Result<TestNetwork> {
        let inner =
            export::new_network_environment::<P>(RStr::from_str(&config.to_string()), self.ctx())
                .into_result()
                .map_err(failed)?;
        Ok(TestNetwork { inner })
    }

    /// A service spec for `argv` whose output goes to the output folder.
    pub fn service(&self, name: &str, argv: &[&str]) -> ServiceSpec {
        ServiceSpec {
            name: name.to_string(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
            env: Default::default(),
            cwd: None,
            depends_on: Vec::new(),
            ready: None,
            role: Role::Client,
            log_dir: self.output_dir().to_path_buf(),
            stop_grace: None,
            mounts: Vec::new(),
            parent_wrappers: Vec::new(),
        }
    }

    /// A plausible result of a passed run with one server and one client.
    pub fn sample_result() -> RunResult {
        let service = |name: &str, role: Role, state: ProcessState| ServiceResult {
            name: name.to_string(),
            role,
            argv: vec![name.to_string()],
            expected_exit: 0,
            state,
            passed: true,
            message: None,
            stdout_log: PathBuf::from(format!("services/{name}.stdout")),
            stderr_log: PathBuf::from(format!("services/{name}.stderr")),
            monitoring: Default::default(),
        };
        RunResult {
            experiment: "sample".into(),
            run_id: "sample-1".into(),
            status: RunStatus::Passed,
            started_at: "2026-01-01T00:00:00Z".into(),
            duration_ms: 1234,
            output_dir: PathBuf::from("results/sample/1"),
            network: "localhost".into(),
            execution: Vec::new(),
            services: vec![
                service(
                    "server",
                    Role::Server,
                    ProcessState::Signaled { signal: 15 },
                ),
                service("client", Role::Client, ProcessState::Exited { code: 0 }),
            ],
            errors: Vec::new(),
        }
    }
}

impl Drop for TestHost {
    /// Stops what still runs as the host does at the end of a run, before the output folder
    /// goes.
    fn drop(&mut self) {
        self.recorder.processes.stop_all(STOP_GRACE);
    }
}

fn check<T>(r: RResult<T, RString>) -> anyhow::Result<T> {
    r.into_result().map_err(failed)
}

/// What a plugin's failed call says, as the host would say it ([`Failure`]).
fn failed(error: RString) -> anyhow::Error {
    let failure = Failure::read(error.as_str(), "");
    match failure.is_panic() {
        true => anyhow!("panicked: {failure}"),
        false => anyhow!("{failure}"),
    }
}

fn decode<T: serde::de::DeserializeOwned>(r: RResult<RString, RString>) -> anyhow::Result<T> {
    Ok(serde_json::from_str(&check(r)?)?)
}

/// A reporter instance under test.
pub struct TestReporter {
    inner: ReporterBox,
}

impl TestReporter {
    /// Calls `report`.
    pub fn report(&mut self, result: &RunResult) -> anyhow::Result<()> {
        check(
            self.inner
                .report(RStr::from_str(&serde_json::to_string(result)?)),
        )
    }
}

/// An execution environment instance under test.
pub struct TestExecution {
    inner: ExecutionEnvironmentBox,
}

impl TestExecution {
    /// Calls `slowdown`.
    pub fn slowdown(&self) -> f64 {
        self.inner.slowdown()
    }
    /// Calls `wrap`.
    pub fn wrap(&mut self, command: &ServiceCommand) -> anyhow::Result<ServiceCommand> {
        decode(
            self.inner
                .wrap_command(RStr::from_str(&serde_json::to_string(command)?)),
        )
    }
    /// Calls `start_monitoring`.
    pub fn start_monitoring(&mut self, service: &str, pid: u32) -> anyhow::Result<()> {
        check(self.inner.start_monitoring(RStr::from_str(service), pid))
    }
    /// Calls `stop_monitoring`.
    pub fn stop_monitoring(&mut self, service: &str) -> anyhow::Result<()> {
        check(self.inner.stop_monitoring(RStr::from_str(service)))
    }
    /// Calls `get_monitoring_data`.
    pub fn get_monitoring_data(&mut self, service: &str) -> anyhow::Result<serde_json::Value> {
        decode(self.inner.get_monitoring_data(RStr::from_str(service)))
    }
}

/// A network environment instance under test.
pub struct TestNetwork {
    inner: NetworkEnvironmentBox,
}

impl TestNetwork {
    /// Calls `setup_environment`.
    pub fn setup_environment(&mut self, plan: &DeploymentPlan) -> anyhow::Result<()> {
        check(
            self.inner
                .setup_environment(RStr::from_str(&serde_json::to_string(plan)?)),
        )
    }
    /// Calls `deploy_service`.
    pub fn deploy_service(&mut self, service: &ServiceSpec) -> anyhow::Result<Deployment> {
        decode(
            self.inner
                .deploy_service(RStr::from_str(&serde_json::to_string(service)?)),
        )
    }
    /// Calls `wait_ready`.
    pub fn wait_ready(&mut self, service: &str) -> anyhow::Result<()> {
        check(self.inner.wait_ready(RStr::from_str(service)))
    }
    /// Calls `get_environment_status`.
    pub fn get_environment_status(&mut self) -> anyhow::Result<EnvironmentStatus> {
        decode(self.inner.get_environment_status())
    }
    /// Polls `get_environment_status` until `service` has ended or `timeout` passes.
    pub fn wait_for_exit(
        &mut self,
        service: &str,
        timeout: Duration,
    ) -> anyhow::Result<ProcessState> {
        let deadline = Instant::now() + timeout;
        loop {
            let state = self
                .get_environment_status()?
                .services
                .get(service)
                .cloned()
                .unwrap_or(ProcessState::Pending);
            if state.is_finished() || Instant::now() >= deadline {
                return Ok(state);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    /// Calls `stop_service`.
    pub fn stop_service(&mut self, service: &str) -> anyhow::Result<ProcessState> {
        decode(self.inner.stop_service(RStr::from_str(service)))
    }
    /// Calls `teardown_environment`.
    pub fn teardown_environment(&mut self) -> anyhow::Result<()> {
        check(self.inner.teardown_environment())
    }
}

#[derive(Clone)]
struct Shared(Arc<Recorder>);

impl Shared {
    /// The process calls, answered by the test's processor as the host answers them.
    fn processes(&self) -> PluginCalls<'_> {
        PluginCalls {
            processor: &self.0.processes,
            capture: Capture {
                default_dir: &self.0.output_dir,
                scope: SCOPE,
                source: SOURCE,
            },
        }
    }
}

impl HostContextFfi for Shared {
    fn log(&self, _level: u8, _target: RStr<'_>, _message: RStr<'_>) {}

    fn max_log_level(&self) -> u8 {
        0
    }

    fn emit_event(&self, event: RStr<'_>) {
        if let Ok(event) = serde_json::from_str(event.as_str()) {
            self.0.events.push(event);
        }
    }

    fn output_dir(&self) -> RString {
        RString::from(self.0.output_dir.to_string_lossy().into_owned())
    }

    fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::Relaxed)
    }

    fn run_command(&self, command: RStr<'_>) -> RResult<RString, RString> {
        self.processes().run_command(command)
    }

    fn spawn(&self, command: RStr<'_>) -> RResult<u64, RString> {
        self.processes().spawn(command)
    }

    fn process_id(&self, handle: u64) -> RResult<u32, RString> {
        self.processes().process_id(handle)
    }

    fn process_status(&self, handle: u64) -> RResult<RString, RString> {
        self.processes().process_status(handle)
    }

    fn stop(&self, handle: u64, grace_ms: u64) -> RResult<RString, RString> {
        self.processes().stop(handle, grace_ms)
    }

    fn call(&self, name: RStr<'_>, payload: RStr<'_>) -> RResult<ROption<RString>, RString> {
        self.processes().call(name, payload)
    }
}
