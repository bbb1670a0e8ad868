//! The data that flows between the host and plugins: commands, services, their states, and
//! the result of a run. All of it is plain serde data; it crosses the ABI as JSON, so adding a
//! field (with a default) never breaks an existing plugin.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

/// A program for the host's command processor to run. Never passed through a shell: every
/// argument reaches the program exactly as written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// The program, looked up on `PATH` when it has no `/`.
    pub program: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Working directory; the host's when absent.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Variables added to (or replacing those of) the host's environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Kill the process group when it runs longer than this.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Base name of the files its stdout and stderr are captured to (`<name>.stdout`,
    /// `<name>.stderr` in the output folder); the program's file name when absent.
    #[serde(default)]
    pub log_name: Option<String>,
    /// Folder the captured output goes to; the instance's output folder when absent.
    #[serde(default)]
    pub log_dir: Option<PathBuf>,
    /// The tools at the top of this command that start the rest as their child process,
    /// outermost first (see [`ServiceCommand::parent_wrappers`]). When it is not empty,
    /// [`Context::stop`](crate::Context::stop) stops the process that many generations below
    /// the one it started first, and lets the wrappers end by themselves. Since 1.5.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent_wrappers: Vec<String>,
}

impl Command {
    /// A command running `program` with no arguments.
    pub fn new(program: impl Into<String>) -> Self {
        Command {
            program: program.into(),
            ..Command::default()
        }
    }

    /// Builds a command from an argv (program first). `None` when argv is empty.
    pub fn from_argv(argv: &[String]) -> Option<Self> {
        let (program, args) = argv.split_first()?;
        Some(Command {
            program: program.clone(),
            args: args.to_vec(),
            ..Command::default()
        })
    }

    /// The command that starts `service` on this machine, as a network environment spawns it:
    /// its argv, variables and working directory, its output captured to
    /// `<log_dir>/<name>.stdout` and `.stderr`, and the wrappers the host leaves to end when it
    /// stops the service. `None` when its argv is empty.
    pub fn for_service(service: &ServiceSpec) -> Option<Self> {
        let mut command = Command::from_argv(&service.argv)?;
        command.env = service.env.clone();
        command.cwd = service.cwd.clone();
        command.log_name = Some(service.name.clone());
        command.log_dir = Some(service.log_dir.clone());
        command.parent_wrappers = service.parent_wrappers.clone();
        Some(command)
    }

    /// This command started through `launcher` (a program and its arguments that `exec` the
    /// rest in the same process, such as `ip netns exec NS`), keeping everything else.
    pub fn launched_by(mut self, launcher: &[String]) -> Self {
        let Some((program, args)) = launcher.split_first() else {
            return self;
        };
        let mut argv: Vec<String> = args.to_vec();
        argv.push(std::mem::replace(&mut self.program, program.clone()));
        argv.append(&mut self.args);
        self.args = argv;
        self
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds several arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the base name of the captured output files.
    pub fn log_name(mut self, name: impl Into<String>) -> Self {
        self.log_name = Some(name.into());
        self
    }

    /// The whole argv, program first.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.program.clone())
            .chain(self.args.iter().cloned())
            .collect()
    }
}

/// How a command or process ended, or that it still runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ProcessState {
    /// Not started yet.
    Pending,
    /// Running with this process id.
    Running {
        /// Process id (also the process group id).
        pid: u32,
    },
    /// Exited on its own.
    Exited {
        /// Exit code.
        code: i32,
    },
    /// Killed by a signal.
    Signaled {
        /// Signal number.
        signal: i32,
    },
    /// Could not be started or followed.
    Failed {
        /// Why.
        reason: String,
    },
}

impl ProcessState {
    /// Whether the process has ended (or never will run).
    pub fn is_finished(&self) -> bool {
        !matches!(self, ProcessState::Pending | ProcessState::Running { .. })
    }

    /// The exit code, when it exited on its own.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            ProcessState::Exited { code } => Some(*code),
            _ => None,
        }
    }
}

impl std::fmt::Display for ProcessState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProcessState::Pending => f.write_str("not started"),
            ProcessState::Running { pid } => write!(f, "running as pid {pid}"),
            ProcessState::Exited { code } => write!(f, "exited with code {code}"),
            ProcessState::Signaled { signal } => write!(f, "killed by signal {signal}"),
            ProcessState::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}

/// What running a [`Command`] to completion gave.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandOutput {
    /// The argv that ran.
    pub argv: Vec<String>,
    /// How it ended.
    pub state: ProcessState,
    /// Whether the timeout killed it.
    pub timed_out: bool,
    /// Wall time.
    pub duration_ms: u64,
    /// Where its stdout was captured.
    pub stdout_path: PathBuf,
    /// Where its stderr was captured.
    pub stderr_path: PathBuf,
}

impl CommandOutput {
    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        self.state == ProcessState::Exited { code: 0 }
    }
}

/// A service's command as an execution environment sees it, before and after wrapping.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceCommand {
    /// The service's name.
    pub service: String,
    /// The argv to run, program first.
    pub argv: Vec<String>,
    /// Environment variables to set for it.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Its working directory.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// A folder reserved for this execution environment's files about this service.
    pub output_dir: PathBuf,
    /// The experiment file's folder: relative paths in the plugin's configuration (a
    /// suppressions file, a library) are relative to it. Since 1.1.
    #[serde(default)]
    pub experiment_dir: Option<PathBuf>,
    /// Where the service will run, as the network environment describes it: a wrapper that
    /// starts a host tool must bring that tool into a container (see [`ServiceSite`]). Set
    /// by the host before wrapping. Since 1.2.
    #[serde(default)]
    pub site: ServiceSite,
    /// Host files and folders the wrapped command needs where the service runs: the
    /// network environment mounts them (a local process sees them already). A wrapper adds
    /// the tool it starts and the folders it writes to. Since 1.2.
    #[serde(default)]
    pub mounts: Vec<HostMount>,
    /// The tools prefixed to `argv` that start the rest as their child process and report
    /// when it exits (GNU `time`, `strace`, `perf stat`), outermost first. The host stops a
    /// service by signalling the service's own processes, which sit that many generations
    /// below the first process, and gives these wrappers the grace period to write their
    /// reports; a signal to the whole process group would end them with the service. A
    /// wrapper that becomes the service's process (valgrind, `exec`) or adds only variables
    /// (`LD_PRELOAD`) is not one. Add yours with [`ServiceCommand::runs_as_parent`]. Since 1.5.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent_wrappers: Vec<String>,
}

// since 1.5: begin
impl ServiceCommand {
    /// Records that `tool`, just prefixed to `argv`, starts the rest as its child process:
    /// the host will stop the service below it first and let `tool` finish its report.
    pub fn runs_as_parent(&mut self, tool: &str) {
        self.parent_wrappers.insert(0, tool.to_string());
    }
}
// since 1.5: end

/// Where a service's process runs. Network environments say it for each service
/// ([`NetworkEnvironment::sites`](crate::NetworkEnvironment::sites)); execution environments
/// read it in [`ValidationContext::sites`] (to refuse what cannot work) and in
/// [`ServiceCommand::site`] (to wrap accordingly). Since 1.2.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServiceSite {
    /// A process on this machine, with this machine's files: host tools run as they are.
    #[default]
    Host,
    /// A container on this machine's engine: its own root file system, which has none of
    /// the host's tools, and the host's view of its processes (the host can read their
    /// `/proc` entries and trace them).
    Container {
        /// The network environment that runs it (its plugin name), for messages.
        environment: String,
        /// The image, as the configuration names it (a store name or a build folder).
        image: String,
        /// How the service's program is linked, when that can be told without the engine.
        #[serde(default)]
        linkage: Linkage,
        /// The image's GNU C library, when the image's files can be read without the engine
        /// (an image built from a local folder that holds its C library): a library
        /// preloaded into the program runs on it. Since 1.4.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        libc: Option<ImageLibc>,
    },
}

/// The GNU C library of an image, as its files tell ([`ServiceSite::Container`]). Since 1.4.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageLibc {
    /// The highest version its `libc.so.6` defines (`GLIBC_2.36`).
    pub version: String,
    /// The C library's files next to `libc.so.6` (`libc.so.6`, `libm.so.6`, …).
    #[serde(default)]
    pub files: Vec<String>,
    /// The other shared libraries next to `libc.so.6` that define symbol versions, by file
    /// name, with those versions (`libstdc++.so.6` → `GLIBCXX_3.4`, …, `GLIBCXX_3.4.30`): a
    /// library preloaded into the image's program shares them with it. Since 1.5.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub libraries: BTreeMap<String, Vec<String>>,
}

impl ServiceSite {
    /// Whether the service runs in a container.
    pub fn is_container(&self) -> bool {
        matches!(self, ServiceSite::Container { .. })
    }
}

/// How a program is linked: a wrapper that preloads a library (`LD_PRELOAD`) needs a
/// dynamically linked one. Since 1.2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Linkage {
    /// Started through a dynamic loader (`PT_INTERP`): preloading works.
    Dynamic,
    /// Statically linked: no loader, nothing can be preloaded.
    Static,
    /// Not known before the run (an image only the engine holds).
    #[default]
    Unknown,
}

impl Linkage {
    /// How it reads in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Linkage::Dynamic => "dynamically linked",
            Linkage::Static => "statically linked",
            Linkage::Unknown => "of unknown linkage",
        }
    }
}

/// A host path a wrapped command needs where it runs (see [`ServiceCommand::mounts`]).
/// Since 1.2.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostMount {
    /// The file or folder on this machine.
    pub source: PathBuf,
    /// Where it appears inside the container.
    pub target: PathBuf,
    /// Mounted read-only (tools) or writable (folders the tool writes its results to).
    pub read_only: bool,
}

impl HostMount {
    /// `source` at `target`, read-only.
    pub fn read_only(source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Self {
        HostMount {
            source: source.into(),
            target: target.into(),
            read_only: true,
        }
    }

    /// A writable folder at the same path inside as outside, so that the paths a tool
    /// writes mean the same on both sides.
    pub fn same_path(folder: impl Into<PathBuf>) -> Self {
        let folder = folder.into();
        HostMount {
            source: folder.clone(),
            target: folder,
            read_only: false,
        }
    }
}

/// When a service counts as ready.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReadyCheck {
    /// A TCP connection to `host:port` succeeds.
    Tcp {
        /// Host to connect to.
        host: String,
        /// Port to connect to.
        port: u16,
    },
    /// A line of the service's stdout or stderr matches a regular expression.
    Log {
        /// The regular expression.
        pattern: String,
    },
    /// A file exists.
    File {
        /// The file.
        path: PathBuf,
    },
    /// A fixed time has passed since the start.
    Delay {
        /// How long.
        #[serde(with = "humantime_serde")]
        delay: Duration,
    },
}

/// A readiness check and how long to wait for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Readiness {
    /// What to wait for.
    pub check: ReadyCheck,
    /// Give up after this long (already scaled by the slowdown of the execution environments).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

/// Whether the run waits for a service or the service waits for the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs until the end of the experiment, then is stopped.
    #[default]
    Server,
    /// The run ends when every client has exited.
    Client,
}

/// One service to deploy, its command already wrapped by the execution environments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Unique name within the experiment.
    pub name: String,
    /// The argv to run, program first.
    pub argv: Vec<String>,
    /// Environment variables to set.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Services that must be ready first.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// When the service counts as ready.
    #[serde(default)]
    pub ready: Option<Readiness>,
    /// Server or client.
    #[serde(default)]
    pub role: Role,
    /// Where its stdout and stderr go (`<log_dir>/<name>.stdout`, `.stderr`).
    pub log_dir: PathBuf,
    /// How long it gets between SIGTERM and SIGKILL at least: the host scales its default by
    /// the slowdown of the execution environments wrapping it, whose tools may need the time
    /// to write their reports. Since 1.1.
    #[serde(default, with = "humantime_serde")]
    pub stop_grace: Option<Duration>,
    /// Host paths its wrapped command needs where it runs, collected from the execution
    /// environments' [`ServiceCommand::mounts`]: a network environment that runs services
    /// in containers mounts them; one that runs local processes ignores them. Since 1.2.
    #[serde(default)]
    pub mounts: Vec<HostMount>,
    /// The tools at the top of `argv` that start the rest as their child, outermost first
    /// ([`ServiceCommand::parent_wrappers`]): a network environment stops the process below
    /// them first. One that starts the command with [`Context::spawn`](crate::Context::spawn)
    /// passes them on in [`Command::parent_wrappers`]. Since 1.5.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent_wrappers: Vec<String>,
}

/// Everything a network environment is asked to deploy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeploymentPlan {
    /// The experiment's name.
    pub experiment: String,
    /// A unique id for this run (used to label what the environment creates).
    pub run_id: String,
    /// The run's results folder.
    pub output_dir: PathBuf,
    /// The experiment file's folder: relative paths in plugin configurations are relative
    /// to it.
    #[serde(default)]
    pub base_dir: PathBuf,
    /// The services in dependency order.
    pub services: Vec<ServiceSpec>,
}

/// What a network environment tells the host about a service it just started.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// The process id on this machine, when the service is a process the host can see
    /// (execution environments get it in `start_monitoring`).
    #[serde(default)]
    pub pid: Option<u32>,
    /// The environment's own id for it (a container id, a simulated host name).
    #[serde(default)]
    pub id: Option<String>,
}

/// What [`Plugin::validate`](crate::Plugin::validate) knows of the experiment besides the
/// plugin's own section.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ValidationContext {
    /// The experiment file's folder: relative paths resolve against it.
    pub base_dir: PathBuf,
    /// The names of the experiment's services.
    #[serde(default)]
    pub services: Vec<String>,
    /// Each service's command (program first), as the experiment gives it: what a network
    /// environment runs, and what it looks at to say how the program is linked. Since 1.2.
    #[serde(default)]
    pub commands: BTreeMap<String, Vec<String>>,
    /// Where each service runs, as the network environment says (absent: on this machine).
    /// Execution environments refuse here what cannot work there. Since 1.2.
    #[serde(default)]
    pub sites: BTreeMap<String, ServiceSite>,
}

impl ValidationContext {
    /// Where `service` runs.
    pub fn site(&self, service: &str) -> ServiceSite {
        self.sites.get(service).cloned().unwrap_or_default()
    }
}

/// The state of every deployed service.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentStatus {
    /// By service name.
    pub services: BTreeMap<String, ProcessState>,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every service met its expectation.
    Passed,
    /// At least one service did not.
    Failed,
    /// The experiment's timeout passed before the clients finished.
    TimedOut,
    /// Stopped by Ctrl-C or SIGTERM.
    Interrupted,
    /// The host or a plugin failed before the services could be judged.
    Error,
}

impl RunStatus {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Passed => "passed",
            RunStatus::Failed => "failed",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Error => "error",
        }
    }
}

/// What happened to one service, judged against its expectation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceResult {
    /// The service's name.
    pub name: String,
    /// Server or client.
    pub role: Role,
    /// The argv that ran, after wrapping.
    pub argv: Vec<String>,
    /// The exit code it was expected to end with (servers stopped by the host pass too).
    pub expected_exit: i32,
    /// How it ended.
    pub state: ProcessState,
    /// Whether it met its expectation.
    pub passed: bool,
    /// Why it did not, when it did not.
    #[serde(default)]
    pub message: Option<String>,
    /// Its captured stdout.
    pub stdout_log: PathBuf,
    /// Its captured stderr.
    pub stderr_log: PathBuf,
    /// Monitoring data by execution-environment instance.
    #[serde(default)]
    pub monitoring: BTreeMap<String, serde_json::Value>,
}

/// The whole result of one experiment run, as reporters receive it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// The experiment's name.
    pub experiment: String,
    /// This run's id.
    pub run_id: String,
    /// How it ended.
    pub status: RunStatus,
    /// Start time, RFC 3339.
    pub started_at: String,
    /// Wall time of the whole run.
    pub duration_ms: u64,
    /// The results folder.
    pub output_dir: PathBuf,
    /// The network environment that deployed the services.
    pub network: String,
    /// The execution-environment instances, in the order they wrapped.
    #[serde(default)]
    pub execution: Vec<String>,
    /// Every service, in deployment order.
    pub services: Vec<ServiceResult>,
    /// Problems that are not about one service (setup, teardown, plugins).
    #[serde(default)]
    pub errors: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_command_keeps_its_wrappers_under_a_launcher() {
        let service = ServiceSpec {
            name: "server".into(),
            argv: vec![
                "/usr/bin/time".into(),
                "-v".into(),
                "--".into(),
                "srv".into(),
            ],
            env: [("A".to_string(), "1".to_string())].into(),
            cwd: Some("/work".into()),
            depends_on: Vec::new(),
            ready: None,
            role: Role::Server,
            log_dir: "/logs".into(),
            stop_grace: None,
            mounts: Vec::new(),
            parent_wrappers: vec!["time".into()],
        };
        let launcher = ["ip", "netns", "exec", "ns0"].map(String::from);
        let command = Command::for_service(&service)
            .unwrap()
            .launched_by(&launcher);
        assert_eq!(
            command.argv(),
            [
                "ip",
                "netns",
                "exec",
                "ns0",
                "/usr/bin/time",
                "-v",
                "--",
                "srv"
            ]
        );
        assert_eq!(command.parent_wrappers, ["time"]);
        assert_eq!(command.log_name.as_deref(), Some("server"));
        assert_eq!(command.env["A"], "1");
        let empty = ServiceSpec {
            argv: Vec::new(),
            ..service
        };
        assert!(Command::for_service(&empty).is_none());
    }
}
