//! Test support: run a plugin in-process, through the same entry points the host calls,
//! without a host binary. Enable the `testing` feature in your dev-dependencies:
//!
//! ```toml
//! [dev-dependencies]
//! panther-plugin-api = { version = "1.1", features = ["testing"] }
//! ```
//!
//! ```text
//! let host = TestHost::new();
//! let mut reporter = host.reporter::<MyReporter>(serde_json::json!({ "path": "out.md" }))?;
//! reporter.report(&TestHost::sample_result())?;
//! assert!(host.output_dir().join("out.md").exists());
//! ```
//!
//! Commands started through the context run for real (without a shell, output captured to
//! files in the output folder); processes still running when the `TestHost` is dropped are
//! killed.

use std::{
    collections::HashMap,
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, RErr, RNone, ROk, ROption, RResult, RStr, RString},
};
use anyhow::anyhow;

use crate::{
    abi::{
        ExecutionEnvironmentBox, HostContextBox, HostContextFfi, HostContextFfi_TO,
        NetworkEnvironmentBox, ReporterBox,
    },
    export, Command, CommandOutput, Deployment, DeploymentPlan, EnvironmentStatus, Event,
    ExecutionEnvironment, NetworkEnvironment, Plugin, ProcessState, Reporter, Resource, Role,
    RunResult, RunStatus, ServiceCommand, ServiceResult, ServiceSpec,
};

/// An in-process host for one test.
pub struct TestHost {
    recorder: Arc<Recorder>,
    _dir: tempfile::TempDir,
}

struct Recorder {
    output_dir: PathBuf,
    events: Mutex<Vec<Event>>,
    cancelled: AtomicBool,
    processes: Mutex<HashMap<u64, (Child, u32)>>,
    next: AtomicU64,
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
        let recorder = Recorder {
            output_dir: dir.path().to_path_buf(),
            events: Mutex::new(Vec::new()),
            cancelled: AtomicBool::new(false),
            processes: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
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

    /// The events instances emitted, in order.
    pub fn events(&self) -> Vec<Event> {
        self.recorder
            .events
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
        experiment: &crate::ValidationContext,
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
    fn drop(&mut self) {
        for (_, (mut child, _)) in self
            .recorder
            .processes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn check<T>(r: RResult<T, RString>) -> anyhow::Result<T> {
    r.into_result().map_err(failed)
}

/// What a plugin's failed call says, as the host would say it ([`crate::failure::Failure`]).
fn failed(error: RString) -> anyhow::Error {
    let failure = crate::failure::Failure::read(error.as_str(), "");
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

impl Recorder {
    fn start(&self, command: &Command) -> std::io::Result<(Child, PathBuf, PathBuf)> {
        let dir = command
            .log_dir
            .clone()
            .unwrap_or_else(|| self.output_dir.clone());
        std::fs::create_dir_all(&dir)?;
        let name = command.log_name.clone().unwrap_or_else(|| {
            Path::new(&command.program)
                .file_name()
                .map_or("command".into(), |n| n.to_string_lossy().into_owned())
        });
        let (out, err) = (
            dir.join(format!("{name}.stdout")),
            dir.join(format!("{name}.stderr")),
        );
        let mut process = std::process::Command::new(&command.program);
        process
            .args(&command.args)
            .envs(&command.env)
            .stdin(Stdio::null())
            .stdout(File::create(&out)?)
            .stderr(File::create(&err)?);
        if let Some(cwd) = &command.cwd {
            process.current_dir(cwd);
        }
        Ok((process.spawn()?, out, err))
    }
}

fn state_of(status: std::process::ExitStatus) -> ProcessState {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ProcessState::Exited { code },
        (None, Some(signal)) => ProcessState::Signaled { signal },
        _ => ProcessState::Failed {
            reason: format!("{status:?}"),
        },
    }
}

fn json_of<T: serde::Serialize>(value: &T) -> RString {
    RString::from(serde_json::to_string(value).unwrap_or_default())
}

impl HostContextFfi for Shared {
    fn log(&self, _level: u8, _target: RStr<'_>, _message: RStr<'_>) {}

    fn max_log_level(&self) -> u8 {
        0
    }

    fn emit_event(&self, event: RStr<'_>) {
        if let Ok(event) = serde_json::from_str(event.as_str()) {
            self.0
                .events
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(event);
        }
    }

    fn output_dir(&self) -> RString {
        RString::from(self.0.output_dir.to_string_lossy().into_owned())
    }

    fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::Relaxed)
    }

    fn run_command(&self, command: RStr<'_>) -> RResult<RString, RString> {
        let run = || -> anyhow::Result<CommandOutput> {
            let command: Command = serde_json::from_str(command.as_str())?;
            let started = Instant::now();
            let (mut child, stdout_path, stderr_path) = self.0.start(&command)?;
            let status = child.wait()?;
            Ok(CommandOutput {
                argv: command.argv(),
                state: state_of(status),
                timed_out: false,
                duration_ms: started.elapsed().as_millis() as u64,
                stdout_path,
                stderr_path,
            })
        };
        match run() {
            Ok(output) => ROk(json_of(&output)),
            Err(err) => RErr(RString::from(format!("{err:#}"))),
        }
    }

    fn spawn(&self, command: RStr<'_>) -> RResult<u64, RString> {
        let start = || -> anyhow::Result<u64> {
            let command: Command = serde_json::from_str(command.as_str())?;
            let (child, _, _) = self.0.start(&command)?;
            let handle = self.0.next.fetch_add(1, Ordering::Relaxed);
            let pid = child.id();
            self.0
                .processes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(handle, (child, pid));
            Ok(handle)
        };
        start().map_err(|e| RString::from(format!("{e:#}"))).into()
    }

    fn process_id(&self, handle: u64) -> RResult<u32, RString> {
        match self
            .0
            .processes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&handle)
        {
            Some((_, pid)) => ROk(*pid),
            None => RErr(RString::from(format!("no process with handle {handle}"))),
        }
    }

    fn process_status(&self, handle: u64) -> RResult<RString, RString> {
        let mut processes = self.0.processes.lock().unwrap_or_else(|e| e.into_inner());
        match processes.get_mut(&handle) {
            Some((child, pid)) => match child.try_wait() {
                Ok(Some(status)) => ROk(json_of(&state_of(status))),
                _ => ROk(json_of(&ProcessState::Running { pid: *pid })),
            },
            None => RErr(RString::from(format!("no process with handle {handle}"))),
        }
    }

    fn stop(&self, handle: u64, _grace_ms: u64) -> RResult<RString, RString> {
        let mut processes = self.0.processes.lock().unwrap_or_else(|e| e.into_inner());
        match processes.get_mut(&handle) {
            Some((child, _)) => {
                if let Ok(Some(status)) = child.try_wait() {
                    return ROk(json_of(&state_of(status)));
                }
                let _ = child.kill();
                match child.wait() {
                    Ok(status) => ROk(json_of(&state_of(status))),
                    Err(err) => RErr(RString::from(err.to_string())),
                }
            }
            None => RErr(RString::from(format!("no process with handle {handle}"))),
        }
    }

    fn call(&self, _name: RStr<'_>, _payload: RStr<'_>) -> RResult<ROption<RString>, RString> {
        ROk(RNone)
    }
}
