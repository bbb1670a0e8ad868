//! Finding the processes of a service that run libprofiler, starting their profiles, and
//! flushing them before the host stops the service.
//!
//! The service runs with `CPUPROFILESIGNAL`, so libprofiler installs a switch for that signal
//! and does not profile until it arrives: the first signal starts a profile into
//! `<CPUPROFILE>.0`, the second one writes it completely and closes it. A process that exits
//! while profiling writes its profile from its exit handler; one killed by SIGTERM would
//! leave an empty file, which is why [`Watch::flush`] runs before the host stops anything.
//!
//! A [`Watch`] polls the process tree of the service (the pid the host gives may be a
//! wrapper's, e.g. strace's): each process that has libprofiler mapped and its switch
//! installed is started once. The signal is never sent before the handler is in
//! `/proc/PID/status` (`SigCgt`), since its default action would end the process.
//!
//! Every process whose environment holds `LD_PRELOAD` runs libprofiler, wrappers that other
//! execution environments put around the command included (strace). The process whose
//! command line is the command this plugin wrapped is the service; the processes above it
//! are wrappers, which are not profiled (or, when one was started before the service's
//! process could be told apart, marked so the report leaves them out).
//!
//! The file each process will write is read from its environment
//! ([`process::profile_path_in`]): the first process that read `CPUPROFILE` uses the name as
//! is, processes started from it afterwards get `_<pid>` names. Two processes that would
//! write the same file never profile at once: when the one already profiling is an ancestor
//! of the newcomer (a wrapper that started the program before its own profile was started),
//! it is stopped first and its complete profile is renamed to its own `_<pid>` name;
//! otherwise the newcomer is skipped.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use panther_gperftools::{
    control::{file_open_in_process, send_signal, signal_handler_installed, wait_until_closed},
    cpu::signal_profile_path,
    library::LibraryMatcher,
    process::{self, ProcessId},
};
use serde::Serialize;

/// How long a process must have run its program with the switch installed before its
/// profile is started. Wrappers such as `env` or `sh -c` replace themselves (`exec`) with the
/// program within a millisecond or two; a profile started just before that would be lost,
/// and the profiling timer, which survives `exec`, could end the new program before its own
/// libprofiler installs a handler for it.
const SETTLE: Duration = Duration::from_millis(10);

/// How long a process gets to open its profile after the start signal.
const START_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a process gets to write its profile after the stop signal.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// What happened to the profile of one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileState {
    /// Started; not stopped yet.
    Profiling,
    /// Stopped with the signal while the process ran; the file is complete.
    Flushed,
    /// The process ended while profiling; its exit handler wrote the file (unless it was
    /// killed).
    Exited,
    /// The process replaced its program (`exec`) while profiling: no exit handler ran.
    Replaced,
    /// Stopped early because a descendant needed the same file name; the file is complete.
    Yielded,
}

impl ProfileState {
    /// The name used in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileState::Profiling => "profiling",
            ProfileState::Flushed => "flushed",
            ProfileState::Exited => "exited",
            ProfileState::Replaced => "replaced",
            ProfileState::Yielded => "yielded",
        }
    }
}

/// One profiled process.
#[derive(Debug, Clone, Serialize)]
pub struct Profiled {
    /// Process id.
    pub pid: u32,
    /// Its program, when it could be read.
    pub exe: Option<PathBuf>,
    /// The profile file.
    pub path: PathBuf,
    /// Where the profile stands.
    pub state: ProfileState,
    /// Whether the process turned out to be a wrapper around the service's command (it was
    /// profiled before the command's own process could be told apart): its profile is listed
    /// but left out of the report's tables.
    pub wrapper: bool,
    #[serde(skip)]
    id: ProcessId,
    #[serde(skip)]
    base: u64,
}

/// What is known about one process of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// libprofiler is not mapped (yet: the dynamic loader may still be at work).
    NoLibrary,
    /// Mapped, but the switch handler is not installed yet.
    WaitingForHandler,
    /// Ready since then; started once it has kept its program for [`SETTLE`].
    Settling(Instant),
    /// A fork of a profiled or examined process that has not called `exec`: it shares its
    /// parent's profiler state and file, so it is left alone.
    ForkCopy,
    /// libprofiler is there but `CPUPROFILE` is not set in its environment.
    NotConfigured,
    /// Not profiled (a note says why).
    Skipped,
    /// A wrapper around the service's command (an ancestor of the process running it), e.g.
    /// strace: not profiled.
    Wrapper,
    /// Profiled: index into [`Watch::profiled`].
    Profiled(usize),
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    id: ProcessId,
    base: Option<u64>,
    status: Status,
}

/// The profiling of one service's process tree.
#[derive(Debug)]
pub struct Watch {
    root: u32,
    /// The service's command, as this plugin left it: the process running it is the service,
    /// processes above it are wrappers added by other execution environments.
    argv: Vec<String>,
    /// The wrappers, once the process running the command has been seen.
    wrappers: Option<Vec<u32>>,
    library: LibraryMatcher,
    signal: i32,
    /// `CPUPROFILE` as set in the service's environment.
    cpuprofile: PathBuf,
    seen: HashMap<u32, Seen>,
    /// Every process profiled, in the order they were started.
    pub profiled: Vec<Profiled>,
    /// What went wrong or was left out, for the report.
    pub notes: Vec<String>,
}

impl Watch {
    /// A watch of the tree under `root`, whose service runs `argv`.
    pub fn new(
        root: u32,
        argv: Vec<String>,
        library: LibraryMatcher,
        signal: i32,
        cpuprofile: PathBuf,
    ) -> Self {
        Watch {
            root,
            argv,
            wrappers: None,
            library,
            signal,
            cpuprofile,
            seen: HashMap::new(),
            profiled: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Examines the tree once and starts the profiles of processes that are ready.
    pub fn tick(&mut self) {
        if self.wrappers.is_none() {
            self.find_wrappers();
        }
        let mut tree = process::tree(self.root);
        // Profiled processes whose parent went away are no longer under the root.
        for p in &self.profiled {
            if p.state == ProfileState::Profiling && !tree.iter().any(|(pid, _)| *pid == p.pid) {
                tree.extend(process::tree(p.pid));
            }
        }
        for (pid, parent) in tree {
            self.examine(pid, parent);
        }
    }

    /// Looks for the process running the service's command; its ancestors are wrappers.
    fn find_wrappers(&mut self) {
        let Some(service) = process::find_running(self.root, &self.argv) else {
            return;
        };
        let wrappers = process::ancestors_below(self.root, service);
        for p in &mut self.profiled {
            p.wrapper = wrappers.contains(&p.pid);
        }
        for pid in &wrappers {
            if let Some(seen) = self.seen.get_mut(pid) {
                if !matches!(seen.status, Status::Profiled(_)) {
                    seen.status = Status::Wrapper;
                }
            }
        }
        self.wrappers = Some(wrappers);
    }

    fn examine(&mut self, pid: u32, parent: Option<u32>) {
        let Some(id) = ProcessId::of(pid) else { return };
        let base = process::library_base(pid, &self.library);
        if let Some(seen) = self.seen.get(&pid).copied() {
            let same = seen.id == id && seen.base == base;
            let settled = !matches!(
                seen.status,
                Status::NoLibrary | Status::WaitingForHandler | Status::Settling(_)
            );
            if same && settled {
                return;
            }
            // No library while profiling: the process is exiting (its memory is already
            // gone) or has just replaced its program and the loader is at work; the next
            // look tells.
            if seen.id == id && base.is_none() && matches!(seen.status, Status::Profiled(_)) {
                return;
            }
            let replaced = seen.id == id && base.is_some() && seen.base != base;
            if let (true, Status::Profiled(index)) = (replaced, seen.status) {
                // The program was replaced (`exec`) while profiling.
                let profile = &mut self.profiled[index];
                if profile.state == ProfileState::Profiling {
                    profile.state = ProfileState::Replaced;
                    self.notes.push(format!(
                        "process {pid} replaced its program while profiling: {} is incomplete",
                        profile.path.display()
                    ));
                }
            }
        }
        let settling = self
            .seen
            .get(&pid)
            .filter(|seen| seen.id == id && seen.base == base)
            .and_then(|seen| match seen.status {
                Status::Settling(since) => Some(since),
                _ => None,
            });
        let status = self.classify(pid, id, base, parent, settling);
        self.seen.insert(pid, Seen { id, base, status });
    }

    fn classify(
        &mut self,
        pid: u32,
        id: ProcessId,
        base: Option<u64>,
        parent: Option<u32>,
        settling: Option<Instant>,
    ) -> Status {
        if self.wrappers.as_ref().is_some_and(|w| w.contains(&pid)) {
            return Status::Wrapper;
        }
        let Some(base) = base else {
            return Status::NoLibrary;
        };
        let forked = parent
            .and_then(|p| self.seen.get(&p))
            .is_some_and(|p| p.base == Some(base));
        if forked {
            return Status::ForkCopy;
        }
        if !signal_handler_installed(pid, self.signal).unwrap_or(false) {
            return Status::WaitingForHandler;
        }
        match settling {
            Some(since) if since.elapsed() >= SETTLE => {}
            Some(since) => return Status::Settling(since),
            None => return Status::Settling(Instant::now()),
        }
        let Some(unique) = process::profile_path_in(pid, "CPUPROFILE") else {
            return Status::NotConfigured;
        };
        let path = signal_profile_path(&unique, 0);
        if !self.make_room(pid, &path) {
            return Status::Skipped;
        }
        match self.start(id, &path) {
            Ok(()) => {
                tracing::debug!(pid, path = %path.display(), "CPU profile started");
                self.profiled.push(Profiled {
                    pid,
                    exe: process::exe(pid),
                    path,
                    state: ProfileState::Profiling,
                    wrapper: false,
                    id,
                    base,
                });
                Status::Profiled(self.profiled.len() - 1)
            }
            Err(note) => {
                self.notes.push(note);
                Status::Skipped
            }
        }
    }

    /// Makes sure nothing else writes to `path` once `pid` starts: a finished profile there is
    /// moved to its writer's own name, a profiling ancestor is stopped first. False when
    /// `pid` has to be skipped.
    fn make_room(&mut self, pid: u32, path: &Path) -> bool {
        let Some(index) = self.profiled.iter().position(|p| p.path == path) else {
            return true;
        };
        let holder = self.profiled[index].clone();
        if holder.state == ProfileState::Profiling {
            if !(holder.id.alive() && process::is_ancestor(holder.pid, pid)) {
                self.notes.push(format!(
                    "process {pid} was not profiled: process {} already writes {}",
                    holder.pid,
                    path.display()
                ));
                return false;
            }
            let _ = send_signal(holder.pid, self.signal);
            if let Err(err) = wait_until_closed(holder.id, path, FLUSH_TIMEOUT) {
                self.notes.push(format!(
                    "process {pid} was not profiled: process {} did not finish {}: {err}",
                    holder.pid,
                    path.display()
                ));
                return false;
            }
            self.profiled[index].state = ProfileState::Yielded;
        }
        let moved = self.own_name(holder.pid);
        match std::fs::rename(path, &moved) {
            Ok(()) => {
                self.profiled[index].path = moved;
                true
            }
            Err(err) => {
                self.notes.push(format!(
                    "process {pid} was not profiled: {} could not be moved away: {err}",
                    path.display()
                ));
                false
            }
        }
    }

    /// The file libprofiler would have given process `pid` had it inherited a marked
    /// `CPUPROFILE`: `<CPUPROFILE>_<pid>.0`.
    fn own_name(&self, pid: u32) -> PathBuf {
        let mut name = self.cpuprofile.clone().into_os_string();
        name.push(format!("_{pid}"));
        signal_profile_path(PathBuf::from(name), 0)
    }

    /// Sends the start signal and waits until the profile is open (or the process is gone).
    fn start(&self, id: ProcessId, path: &Path) -> Result<(), String> {
        send_signal(id.pid, self.signal).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if file_open_in_process(id.pid, path).unwrap_or(false) {
                return Ok(());
            }
            if !id.alive() {
                // A short process may have written its whole profile already.
                return if path.exists() {
                    Ok(())
                } else {
                    Err(format!(
                        "process {} ended before its profile {} was started",
                        id.pid,
                        path.display()
                    ))
                };
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "process {} did not open {} within {START_TIMEOUT:?} of the start signal",
                    id.pid,
                    path.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Stops every profile still running so that its file is complete, and waits for the
    /// files. Processes that ended wrote theirs on exit.
    pub fn flush(&mut self) {
        let mut signalled = Vec::new();
        for (index, p) in self.profiled.iter_mut().enumerate() {
            if p.state != ProfileState::Profiling {
                continue;
            }
            let same_program =
                p.id.alive() && process::library_base(p.pid, &self.library) == Some(p.base);
            if same_program && send_signal(p.pid, self.signal).is_ok() {
                signalled.push(index);
            } else {
                p.state = ProfileState::Exited;
            }
        }
        for index in signalled {
            let p = &mut self.profiled[index];
            match wait_until_closed(p.id, &p.path, FLUSH_TIMEOUT) {
                Ok(_) => {
                    p.state = if p.id.alive() {
                        ProfileState::Flushed
                    } else {
                        ProfileState::Exited
                    }
                }
                Err(err) => self.notes.push(format!("process {}: {err}", p.pid)),
            }
        }
        for p in &mut self.profiled {
            if p.state == ProfileState::Profiling {
                p.state = ProfileState::Exited;
            }
        }
        let waiting: Vec<u32> = self
            .seen
            .iter()
            .filter(|(_, s)| s.status == Status::WaitingForHandler && s.id.alive())
            .map(|(pid, _)| *pid)
            .collect();
        for pid in waiting {
            self.notes.push(format!(
                "process {pid} has libprofiler loaded but never installed its signal {} switch",
                self.signal
            ));
        }
    }

    /// Keeps examining the tree (for at most `limit`) until no live process is on its way to
    /// being profiled: the run may end before the watch thread has started a profile (a
    /// short run on a loaded machine), and a service that ran the whole run must still get
    /// its profile.
    pub fn catch_up(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            self.tick();
            let pending = self.seen.values().any(|s| {
                s.id.alive()
                    && matches!(
                        s.status,
                        Status::NoLibrary | Status::WaitingForHandler | Status::Settling(_)
                    )
            });
            if !pending || Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Whether any process of the tree ever had libprofiler mapped.
    pub fn saw_library(&self) -> bool {
        self.seen.values().any(|s| s.base.is_some())
    }
}
