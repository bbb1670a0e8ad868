//! The command processor: runs structured commands for the host and for plugins.
//!
//! Commands never go through a shell: the argv reaches the program verbatim, so `; rm -rf x`
//! or `$(...)` are plain arguments. Each process starts in its own process group, so stopping
//! it (timeout, cancellation, teardown) reaches everything it started: SIGTERM to the group,
//! then SIGKILL after a grace period. Standard output and error are captured line by line to
//! `<log_dir>/<name>.stdout` / `.stderr` and handed, line by line, to the [`EventSink`].
//!
//! Every process the processor started is remembered until it has been reaped, and
//! [`CommandProcessor::stop_all`] is the host's last line of defence at teardown.
//!
//! Processes that leave their group (`setsid`, a double fork) are still found: every process
//! carries the run's mark in its environment and joins the run's cgroup where there is one
//! (see [`crate::contain`]). Stopping a process ends what it started too; stopping the run
//! ends everything with the run's mark or in its cgroup. Teardown never waits on a pipe a
//! stray process holds: once the processes are gone, the output readers get
//! [`READER_DRAIN`] to finish and are left behind after that.

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    io::{BufRead, BufReader, Read, Write},
    os::{
        fd::AsRawFd,
        unix::process::{CommandExt, ExitStatusExt},
    },
    path::{Path, PathBuf},
    process::{Child, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc, Mutex, RwLock,
    },
    thread,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{killpg, Signal},
    unistd::Pid,
};
use panther_plugin_api::{Command, CommandOutput, Event, ProcessState};

use crate::{
    contain::{
        cgroup::{self, RunCgroup},
        kill,
        mark::{self, Owner},
        reap, wrappers,
    },
    sink::{EventSink, Stream},
};

/// How long a process gets between SIGTERM and SIGKILL when nobody says otherwise: what is
/// still running at the end of a run, a service without a `stop_grace`.
pub const STOP_GRACE: Duration = Duration::from_secs(3);
/// How long the output readers get to finish once every process that could write to their
/// pipes is gone; after that they are left behind (a process outside the run's reach still
/// holds the pipe) and teardown goes on.
pub const READER_DRAIN: Duration = Duration::from_secs(1);
/// How long [`CommandProcessor::status`] waits for an ended process's output to be written
/// out before it reports the end.
const OUTPUT_SETTLE: Duration = Duration::from_millis(200);

/// Set by a second Ctrl-C (or SIGTERM, SIGHUP): grace periods end at once.
static HURRY: AtomicBool = AtomicBool::new(false);

/// Ends every grace period now and from now on (async-signal-safe: one atomic store).
pub fn hurry() {
    HURRY.store(true, Ordering::SeqCst);
}

/// Whether grace periods were cut short.
pub fn in_a_hurry() -> bool {
    HURRY.load(Ordering::SeqCst)
}

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

/// A thread copying one pipe; `done` disconnects when it ends.
/// An output reader thread. It is detached, not joined: a finished thread then frees its
/// stack at once, where an unjoined handle would keep it mapped until the process ends (a
/// run of thousands of short services ran out of mappings that way). Its end is seen on
/// `done`.
struct Reader {
    done: mpsc::Receiver<()>,
    /// The capture name of the process whose output it copies.
    process: String,
}

struct Managed {
    child: Child,
    pid: u32,
    /// The number in `PANTHER_RUN_PROCESS` of the process and its descendants.
    seq: u64,
    /// How many wrappers at the top of it start the rest as their child
    /// ([`Command::parent_wrappers`]).
    wrappers: usize,
    state: ProcessState,
    readers: Vec<Reader>,
}

/// What the processes of this processor are marked with.
struct RunMark {
    run_id: String,
    /// Created when a run starts, where this host can create one.
    cgroup: Option<RunCgroup>,
}

/// A process of the run found outside the process it descends from, and ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stray {
    /// Its pid.
    pub pid: u32,
    /// Its program name.
    pub comm: String,
}

/// Runs and tracks processes. Shared by the host and every plugin instance of a run.
pub struct CommandProcessor {
    processes: Mutex<HashMap<u64, Managed>>,
    next_handle: AtomicU64,
    cancelled: Arc<AtomicBool>,
    events: Arc<dyn EventSink>,
    mark: RwLock<RunMark>,
    /// Processes found still running after the process they descend from had ended.
    left_behind: Mutex<Vec<Stray>>,
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
    /// A processor that watches `cancelled` and reports to `events`.
    pub fn new(cancelled: Arc<AtomicBool>, events: Arc<dyn EventSink>) -> Self {
        static PROCESSORS: AtomicU64 = AtomicU64::new(0);
        // Until a run names it, the mark is unique to this processor.
        let run_id = format!(
            "host-{}-{}",
            std::process::id(),
            PROCESSORS.fetch_add(1, Ordering::Relaxed)
        );
        CommandProcessor {
            processes: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            cancelled,
            events,
            mark: RwLock::new(RunMark {
                run_id,
                cgroup: None,
            }),
            left_behind: Mutex::new(Vec::new()),
        }
    }

    /// Marks every process started from now on with `run_id`, and puts them in a cgroup of
    /// their own where this host can create one. The group is made now, so that on cgroup v1
    /// the one costly move into it ([`crate::contain::spawner`]) happens while the run is
    /// being prepared rather than before its first process starts.
    pub fn contain(&self, run_id: &str) {
        let mut mark = self.mark.write().unwrap_or_else(|e| e.into_inner());
        mark.run_id = run_id.to_string();
        if let Some(old) = mark.cgroup.take() {
            old.remove();
        }
        mark.cgroup = RunCgroup::create(run_id);
    }

    /// The run id the processes are marked with.
    pub fn run_id(&self) -> String {
        self.read_mark().run_id.clone()
    }

    fn read_mark(&self) -> std::sync::RwLockReadGuard<'_, RunMark> {
        self.mark.read().unwrap_or_else(|e| e.into_inner())
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
        let (mut child, seq, stdout_path, stderr_path, readers) = self.start(command, capture)?;
        let pid = child.id();
        let mut timed_out = false;
        let mut pause = Duration::from_micros(200);
        let status = loop {
            let seen = crate::child_exit::generation();
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            let over_time = command.timeout.is_some_and(|t| started.elapsed() >= t);
            if over_time || self.is_cancelled() {
                timed_out = over_time;
                break self.terminate(
                    &mut child,
                    pid,
                    seq,
                    command.parent_wrappers.len(),
                    Duration::from_secs(2),
                );
            }
            crate::child_exit::wait_after(seen, pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        };
        // The group, and whatever left it, may hold processes the leader left behind.
        reap::forget_leader(pid);
        self.sweep(Some(seq), Some(pid));
        drain(readers);
        let output = CommandOutput {
            argv: command.argv(),
            state: state_of(status),
            timed_out,
            duration_ms: started.elapsed().as_millis() as u64,
            stdout_path,
            stderr_path,
        };
        self.events.event(
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
        let (child, handle, _, _, readers) = self.start(command, capture)?;
        let pid = child.id();
        let managed = Managed {
            child,
            pid,
            seq: handle,
            wrappers: command.parent_wrappers.len(),
            state: ProcessState::Running { pid },
            readers,
        };
        self.lock().insert(handle, managed);
        self.events.event(
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
                reap::forget_leader(managed.pid);
                managed.state = state_of(status);
                // What it wrote reaches its files before anyone hears that it ended: the
                // caller may read them next.
                settle(&managed.readers);
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
        let state = self.finish(&mut managed, grace);
        // Keep the final state answerable.
        managed.state = state.clone();
        self.lock().insert(handle, managed);
        Ok(state)
    }

    /// Stops every process still running, then ends every process with the run's mark or in
    /// its cgroup (and removes the cgroup). Returns how many managed processes had to be
    /// stopped, and every process that was still running after the one it descends from had
    /// ended (since the last call).
    pub fn stop_all(&self, grace: Duration) -> (usize, Vec<Stray>) {
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
        // Whatever carries the mark or sits in the cgroup, whoever started it. (Not by
        // process group: the group of a leader reaped long ago may be someone else's now.)
        let mut strays = self.sweep(None, None);
        let mut mark = self.mark.write().unwrap_or_else(|e| e.into_inner());
        if let Some(cgroup) = mark.cgroup.take() {
            for pid in cgroup.remove() {
                strays.push(Stray {
                    pid,
                    comm: mark::stat(pid).map(|s| s.comm).unwrap_or_default(),
                });
            }
        }
        strays.append(&mut self.left_behind.lock().unwrap_or_else(|e| e.into_inner()));
        strays.sort_by_key(|s| s.pid);
        strays.dedup_by_key(|s| s.pid);
        (stopped, strays)
    }

    /// SIGKILLs, until none is left, the live processes of process group `group` and those
    /// marked with this run (and with process number `seq`, when given); reaps the ones that
    /// became the host's children. Returns the processes it found.
    fn sweep(&self, seq: Option<u64>, group: Option<u32>) -> Vec<Stray> {
        let run_id = self.run_id();
        kill::until_none(
            200,
            Duration::from_millis(1),
            || self.find(&run_id, seq, group),
            |stray| stray.pid,
        )
    }

    /// Where the processes of one process `seq` can be: the members of the run's cgroup,
    /// where there is one (every descendant joined it before its program started; a read
    /// of one small file), else every process. The sweep at the end of the run reads every
    /// process in any case, for what left the cgroup.
    fn candidates(&self, seq: Option<u64>) -> Vec<u32> {
        if seq.is_some() {
            if let Some(cgroup) = &self.read_mark().cgroup {
                return cgroup::members(&cgroup.path());
            }
        }
        mark::all_pids()
    }

    /// Live processes in `group` (when given) or marked with `run_id` (and `seq`).
    fn find(&self, run_id: &str, seq: Option<u64>, group: Option<u32>) -> Vec<Stray> {
        let me = std::process::id();
        let host_start = Owner::current().start;
        self.candidates(seq)
            .into_iter()
            .filter(|&pid| pid != me)
            .filter_map(|pid| {
                let stat = mark::stat(pid)?;
                if stat.state == 'Z' {
                    // An ended member of the group that came back to the host: collected.
                    if group == Some(stat.pgrp) {
                        reap::reap(&[pid]);
                    }
                    return None;
                }
                // A process older than this host cannot carry the mark of one of its runs:
                // its environment (costly to read from another process) is skipped.
                let mark = (stat.start >= host_start)
                    .then(|| mark::read_mark(pid))
                    .flatten();
                let marked_ours = mark
                    .as_ref()
                    .is_some_and(|m| m.run_id == run_id && (seq.is_none() || m.process == seq));
                // A group member marked by another run is in a group whose id was reused.
                let in_group =
                    group == Some(stat.pgrp) && mark.as_ref().is_none_or(|m| m.run_id == run_id);
                let ours = marked_ours || in_group;
                ours.then_some(Stray {
                    pid,
                    comm: stat.comm,
                })
            })
            .collect()
    }

    /// Signals the processes marked as descendants of process `seq` outside its group.
    fn signal_marked(&self, seq: u64, signal: Signal) {
        let run_id = self.run_id();
        for marked in mark::scan() {
            if marked.run_id == run_id && marked.process == Some(seq) {
                let _ = nix::sys::signal::kill(Pid::from_raw(marked.pid as i32), signal);
            }
        }
    }

    /// Ends a managed process (if it still runs), kills what is left of its group and of its
    /// marked descendants, and waits (a bounded time) for its output to be written out.
    fn finish(&self, managed: &mut Managed, grace: Duration) -> ProcessState {
        let state = if managed.state.is_finished() {
            managed.state.clone()
        } else {
            let status = match managed.child.try_wait() {
                Ok(Some(status)) => status,
                _ => self.terminate(
                    &mut managed.child,
                    managed.pid,
                    managed.seq,
                    managed.wrappers,
                    grace,
                ),
            };
            state_of(status)
        };
        reap::forget_leader(managed.pid);
        let left = self.sweep(Some(managed.seq), Some(managed.pid));
        self.left_behind
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(left);
        drain(std::mem::take(&mut managed.readers));
        state
    }

    /// SIGTERM to the group and to the marked descendants, wait up to `grace` (less after a
    /// second Ctrl-C), then SIGKILL; returns how the leader ended.
    ///
    /// Under `wrappers` tools that start the service as their child (GNU `time`, `strace`),
    /// the signal goes to everything *but* those tools, which then see the service end, write
    /// their reports and exit by themselves within the same grace period. What the service
    /// starts while it stops (and a wrapper's child not started yet) is signalled as it
    /// appears.
    fn terminate(
        &self,
        child: &mut Child,
        pid: u32,
        seq: u64,
        wrappers: usize,
        grace: Duration,
    ) -> ExitStatus {
        let group = Pid::from_raw(pid as i32);
        let mut below_wrappers = HashSet::new();
        if wrappers == 0 {
            let _ = killpg(group, Signal::SIGTERM);
            self.signal_marked(seq, Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        let mut pause = Duration::from_millis(2);
        while Instant::now() < deadline && !in_a_hurry() {
            if wrappers > 0 {
                self.signal_below_wrappers(pid, seq, wrappers, &mut below_wrappers);
            }
            let seen = crate::child_exit::generation();
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            crate::child_exit::wait_after(seen, pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = nix::sys::signal::kill(group, Signal::SIGKILL);
        child.wait().unwrap_or_else(|_| ExitStatus::from_raw(9))
    }

    /// SIGTERMs, once each, the processes of process `seq` (group `leader`, and those marked)
    /// that are not among the `depth` wrappers at its top.
    fn signal_below_wrappers(
        &self,
        leader: u32,
        seq: u64,
        depth: usize,
        signalled: &mut HashSet<u32>,
    ) {
        let chain = wrappers::chain(leader, depth);
        for process in self.find(&self.run_id(), Some(seq), Some(leader)) {
            if !chain.contains(&process.pid) && signalled.insert(process.pid) {
                let _ = nix::sys::signal::kill(Pid::from_raw(process.pid as i32), Signal::SIGTERM);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Managed>> {
        self.processes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a process with the run's mark, in the run's cgroup; returns it with its number.
    #[allow(clippy::type_complexity)]
    fn start(
        &self,
        command: &Command,
        capture: &Capture<'_>,
    ) -> Result<(Child, u64, PathBuf, PathBuf, Vec<Reader>), CommandError> {
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

        let seq = self.next_handle.fetch_add(1, Ordering::Relaxed);
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
        let mark = self.read_mark();
        process
            .env(mark::RUN_ID, &mark.run_id)
            .env(mark::OWNER, Owner::current().to_string())
            .env(mark::PROCESS, seq.to_string());
        let spawning = reap::spawn_lock();
        // Born in the run's cgroup where a thread of the host sits in it (v1), else joining
        // it by itself.
        let spawned = match &mark.cgroup {
            Some(cgroup) => match cgroup.spawn_inside(process) {
                Ok(spawned) => spawned,
                Err(process) => spawn_joining(*process, Some(cgroup)),
            },
            None => spawn_joining(process, None),
        };
        drop(mark);
        if let Ok(child) = &spawned {
            reap::register_leader(child.id());
        }
        drop(spawning);
        let mut child = spawned.map_err(|source| CommandError::Spawn {
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
        Ok((child, seq, stdout_path, stderr_path, readers))
    }

    /// Copies a pipe to its capture file line by line, handing each line to the sink.
    fn pump(
        &self,
        pipe: impl Read + Send + 'static,
        mut file: File,
        process: String,
        stream: Stream,
    ) -> Reader {
        let events = Arc::clone(&self.events);
        let name = process.clone();
        let (done_tx, done) = mpsc::channel::<()>();
        thread::spawn(move || {
            // Dropped when the thread ends, however it ends: `done` disconnects.
            let _done = done_tx;
            let mut reader = BufReader::new(pipe);
            let mut line = Vec::with_capacity(256);
            while let Ok(n) = reader.read_until(b'\n', &mut line) {
                if n == 0 {
                    break;
                }
                // Unbuffered on purpose: readiness checks read the file while it grows.
                let _ = file.write_all(&line);
                let text = String::from_utf8_lossy(&line);
                events.output(&process, stream, text.trim_end_matches(['\n', '\r']));
                line.clear();
            }
        });
        Reader {
            done,
            process: name,
        }
    }
}

impl Drop for CommandProcessor {
    fn drop(&mut self) {
        self.stop_all(Duration::from_millis(500));
    }
}

/// Waits for the output readers, at most [`READER_DRAIN`] in all; a reader still blocked
/// after that (its pipe held by a process out of reach) is left to end on its own.
/// Waits, briefly, for the output readers of a process that just ended to write out what
/// is left in its pipes. Bounded and silent: a process it left behind may hold a pipe open,
/// and then the output is not complete anyway (teardown [`drain`]s it later).
fn settle(readers: &[Reader]) {
    let deadline = Instant::now() + OUTPUT_SETTLE;
    for reader in readers {
        let left = deadline.saturating_duration_since(Instant::now());
        // The reader never sends: the channel disconnects when it is done.
        let _ = reader.done.recv_timeout(left);
    }
}

fn drain(readers: Vec<Reader>) {
    let deadline = Instant::now() + READER_DRAIN;
    let mut held = None;
    for reader in readers {
        let left = deadline.saturating_duration_since(Instant::now());
        match reader.done.recv_timeout(left) {
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
            _ => held = Some(reader.process),
        }
    }
    if let Some(process) = held {
        tracing::warn!(
            "the output of `{process}` is still held open by a process outside the run (without \
             the run's mark, outside its cgroup); teardown goes on without waiting for it"
        );
    }
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

/// Spawns `process`, which joins `cgroup` (when given) between fork and exec: nothing the
/// child runs can start outside the group.
fn spawn_joining(
    mut process: std::process::Command,
    cgroup: Option<&RunCgroup>,
) -> std::io::Result<Child> {
    // Opened here, written in the child: close-on-exec, so the program never sees it.
    let procs = cgroup.and_then(|c| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(c.procs_file())
            .ok()
    });
    if let Some(procs) = &procs {
        let fd = procs.as_raw_fd();
        // SAFETY: the closure only calls write(2), which is async-signal-safe, on a
        // descriptor that stays open until `spawn` returns; a failure leaves the child
        // outside the cgroup, still marked and in its process group.
        unsafe {
            process.pre_exec(move || {
                libc::write(fd, b"0".as_ptr().cast(), 1);
                Ok(())
            });
        }
    }
    process.spawn()
}
