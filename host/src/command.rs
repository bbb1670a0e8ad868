//! The command processor: runs structured commands for the host and for plugins.
//!
//! Commands never go through a shell: the argv reaches the program verbatim, so `; rm -rf x`
//! or `$(...)` are plain arguments. Each process starts in its own process group, so stopping
//! it (timeout, cancellation, teardown) reaches everything it started: SIGTERM to the group,
//! then SIGKILL after a grace period. Standard output and error are captured line by line to
//! `<log_dir>/<name>.stdout` / `.stderr` and streamed to the event bus's observers.
//!
//! Every process the processor started is remembered until it has been reaped, and
//! [`CommandProcessor::stop_all`] is the host's last line of defence at teardown.

use std::{
    collections::HashMap,
    fs::File,
    io::{BufRead, BufReader, Read, Write},
    os::unix::process::{CommandExt, ExitStatusExt},
    path::{Path, PathBuf},
    process::{Child, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{killpg, Signal},
    unistd::Pid,
};
use panther_plugin_api::{Command, CommandOutput, Event, ProcessState};

use crate::events::{EventBus, Stream};

/// Why a command could not be run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The argv was empty.
    #[error("empty command: no program given")]
    Empty,
    /// The program could not be started (not found, not executable, bad cwd).
    #[error("failed to start `{argv}`{cwd}: {source}")]
    Spawn {
        /// The argv, space-separated for reading.
        argv: String,
        /// The working directory, when one was given.
        cwd: String,
        /// The operating system's answer.
        source: std::io::Error,
    },
    /// A capture file could not be created.
    #[error("failed to create the capture file {}: {source}", path.display())]
    Capture {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// No process has that handle.
    #[error("no process with handle {0}")]
    UnknownHandle(u64),
    /// The run was cancelled before the command started.
    #[error("cancelled before `{0}` could start")]
    Cancelled(String),
}

struct Managed {
    child: Child,
    pid: u32,
    state: ProcessState,
    readers: Vec<thread::JoinHandle<()>>,
}

/// Runs and tracks processes. Shared by the host and every plugin instance of a run.
pub struct CommandProcessor {
    processes: Mutex<HashMap<u64, Managed>>,
    next_handle: AtomicU64,
    cancelled: Arc<AtomicBool>,
    bus: Arc<EventBus>,
}

/// Where a command's output is captured, and under which name it is reported.
pub struct Capture<'a> {
    /// The folder for the capture files when the command names none.
    pub default_dir: &'a Path,
    /// The scope events are tagged with.
    pub scope: &'a str,
    /// The source events are tagged with.
    pub source: &'a str,
}

impl CommandProcessor {
    /// A processor that watches `cancelled` and reports to `bus`.
    pub fn new(cancelled: Arc<AtomicBool>, bus: Arc<EventBus>) -> Self {
        CommandProcessor {
            processes: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            cancelled,
            bus,
        }
    }

    /// Whether the run was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Runs a command to completion, killing its group on timeout or cancellation.
    pub fn run(
        &self,
        command: &Command,
        capture: &Capture<'_>,
    ) -> Result<CommandOutput, CommandError> {
        let started = Instant::now();
        let (mut child, stdout_path, stderr_path, readers) = self.start(command, capture)?;
        let pid = child.id();
        let mut timed_out = false;
        let mut pause = Duration::from_micros(200);
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            let over_time = command.timeout.is_some_and(|t| started.elapsed() >= t);
            if over_time || self.is_cancelled() {
                timed_out = over_time;
                break terminate_group(&mut child, pid, Duration::from_secs(2));
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        };
        // The group may hold processes the leader left behind; they go too.
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        for reader in readers {
            let _ = reader.join();
        }
        let output = CommandOutput {
            argv: command.argv(),
            state: state_of(status),
            timed_out,
            duration_ms: started.elapsed().as_millis() as u64,
            stdout_path,
            stderr_path,
        };
        self.bus.emit(
            capture.scope,
            capture.source,
            &Event::CommandExecuted {
                argv: output.argv.clone(),
                state: output.state.clone(),
                duration_ms: output.duration_ms,
            },
        );
        Ok(output)
    }

    /// Starts a long-running command and returns its handle.
    pub fn spawn(&self, command: &Command, capture: &Capture<'_>) -> Result<u64, CommandError> {
        let started = Instant::now();
        let (child, _, _, readers) = self.start(command, capture)?;
        let pid = child.id();
        let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let managed = Managed {
            child,
            pid,
            state: ProcessState::Running { pid },
            readers,
        };
        self.lock().insert(handle, managed);
        self.bus.emit(
            capture.scope,
            capture.source,
            &Event::CommandExecuted {
                argv: command.argv(),
                state: ProcessState::Running { pid },
                duration_ms: started.elapsed().as_millis() as u64,
            },
        );
        Ok(handle)
    }

    /// The current state of a spawned process (reaping it when it has ended).
    pub fn status(&self, handle: u64) -> Result<ProcessState, CommandError> {
        let mut processes = self.lock();
        let managed = processes
            .get_mut(&handle)
            .ok_or(CommandError::UnknownHandle(handle))?;
        if !managed.state.is_finished() {
            if let Ok(Some(status)) = managed.child.try_wait() {
                managed.state = state_of(status);
            }
        }
        Ok(managed.state.clone())
    }

    /// The process id of a spawned process.
    pub fn pid(&self, handle: u64) -> Option<u32> {
        self.lock().get(&handle).map(|m| m.pid)
    }

    /// Stops a spawned process group: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&self, handle: u64, grace: Duration) -> Result<ProcessState, CommandError> {
        let mut managed = self
            .lock()
            .remove(&handle)
            .ok_or(CommandError::UnknownHandle(handle))?;
        let state = finish(&mut managed, grace);
        // Keep the final state answerable.
        managed.state = state.clone();
        self.lock().insert(handle, managed);
        Ok(state)
    }

    /// Stops every process still running. Returns how many had to be stopped.
    pub fn stop_all(&self, grace: Duration) -> usize {
        let handles: Vec<u64> = self
            .lock()
            .iter()
            .filter(|(_, m)| !m.state.is_finished())
            .map(|(h, _)| *h)
            .collect();
        let stopped = handles.len();
        // Stop them in parallel so that N stubborn processes cost one grace period.
        thread::scope(|scope| {
            for handle in handles {
                scope.spawn(move || self.stop(handle, grace));
            }
        });
        // Groups whose leader already exited may still hold children.
        for managed in self.lock().values() {
            let _ = killpg(Pid::from_raw(managed.pid as i32), Signal::SIGKILL);
        }
        stopped
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Managed>> {
        self.processes.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[allow(clippy::type_complexity)]
    fn start(
        &self,
        command: &Command,
        capture: &Capture<'_>,
    ) -> Result<(Child, PathBuf, PathBuf, Vec<thread::JoinHandle<()>>), CommandError> {
        if command.program.is_empty() {
            return Err(CommandError::Empty);
        }
        let argv = command.argv();
        if self.is_cancelled() {
            return Err(CommandError::Cancelled(argv.join(" ")));
        }
        let dir = command.log_dir.as_deref().unwrap_or(capture.default_dir);
        let name = command.log_name.clone().unwrap_or_else(|| {
            Path::new(&command.program)
                .file_name()
                .map_or("command".into(), |n| n.to_string_lossy().into_owned())
        });
        let _ = std::fs::create_dir_all(dir);
        let stdout_path = dir.join(format!("{name}.stdout"));
        let stderr_path = dir.join(format!("{name}.stderr"));
        let create = |path: &Path| {
            File::create(path).map_err(|source| CommandError::Capture {
                path: path.to_path_buf(),
                source,
            })
        };
        let (stdout_file, stderr_file) = (create(&stdout_path)?, create(&stderr_path)?);

        let mut process = std::process::Command::new(&command.program);
        process
            .args(&command.args)
            .envs(&command.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(cwd) = &command.cwd {
            process.current_dir(cwd);
        }
        let mut child = process.spawn().map_err(|source| CommandError::Spawn {
            argv: argv.join(" "),
            cwd: command
                .cwd
                .as_ref()
                .map_or(String::new(), |c| format!(" in {}", c.display())),
            source,
        })?;
        let mut readers = Vec::with_capacity(2);
        if let Some(out) = child.stdout.take() {
            readers.push(self.pump(out, stdout_file, name.clone(), Stream::Stdout));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(self.pump(err, stderr_file, name, Stream::Stderr));
        }
        Ok((child, stdout_path, stderr_path, readers))
    }

    /// Copies a pipe to its capture file line by line, handing each line to observers.
    fn pump(
        &self,
        pipe: impl Read + Send + 'static,
        mut file: File,
        process: String,
        stream: Stream,
    ) -> thread::JoinHandle<()> {
        let bus = Arc::clone(&self.bus);
        thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = Vec::with_capacity(256);
            while let Ok(n) = reader.read_until(b'\n', &mut line) {
                if n == 0 {
                    break;
                }
                // Unbuffered on purpose: readiness checks read the file while it grows.
                let _ = file.write_all(&line);
                let text = String::from_utf8_lossy(&line);
                bus.output(&process, stream, text.trim_end_matches(['\n', '\r']));
                line.clear();
            }
        })
    }
}

impl Drop for CommandProcessor {
    fn drop(&mut self) {
        self.stop_all(Duration::from_millis(500));
    }
}

/// Ends a managed process (if it still runs), kills what is left of its group, and waits
/// for its output to be written out completely.
fn finish(managed: &mut Managed, grace: Duration) -> ProcessState {
    let state = if managed.state.is_finished() {
        managed.state.clone()
    } else {
        let status = match managed.child.try_wait() {
            Ok(Some(status)) => status,
            _ => terminate_group(&mut managed.child, managed.pid, grace),
        };
        state_of(status)
    };
    let _ = killpg(Pid::from_raw(managed.pid as i32), Signal::SIGKILL);
    for reader in managed.readers.drain(..) {
        let _ = reader.join();
    }
    state
}

/// SIGTERM to the group, wait up to `grace`, then SIGKILL; returns how the leader ended.
fn terminate_group(child: &mut Child, pid: u32, grace: Duration) -> ExitStatus {
    let group = Pid::from_raw(pid as i32);
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        thread::sleep(Duration::from_millis(5));
    }
    let _ = killpg(group, Signal::SIGKILL);
    child.wait().unwrap_or_else(|_| ExitStatus::from_raw(9))
}

fn state_of(status: ExitStatus) -> ProcessState {
    match (status.code(), status.signal()) {
        (Some(code), _) => ProcessState::Exited { code },
        (None, Some(signal)) => ProcessState::Signaled { signal },
        (None, None) => ProcessState::Failed {
            reason: format!("unknown exit status {status:?}"),
        },
    }
}
