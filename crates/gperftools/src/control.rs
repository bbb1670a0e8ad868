//! Running a profiled service so that it leaves a complete profile behind.
//!
//! gperftools writes profiles from exit handlers: libprofiler's CPU profile
//! (everything but a possible partial buffer) and the heap profiler's final
//! dump are only written when the process calls `exit()`. A service stopped
//! with SIGTERM or SIGINT whose default action is in force dies *without*
//! running them: the CPU profile file is left empty (it was created, then
//! truncated, at start) and the final heap dump is never written. SIGKILL
//! has the same effect, whatever the program does.
//!
//! The remedy used here is to flush with a dedicated signal before
//! terminating:
//!
//! * CPU: run with `CPUPROFILESIGNAL=<sig>`. Profiling is then *off* at
//!   start; the first `<sig>` starts it into `CPUPROFILE.0`, the second stops
//!   it and writes the complete file (the next pair writes `.1`, …).
//! * Heap: run with `HEAPPROFILESIGNAL=<sig>`; each `<sig>` writes one more
//!   `prefix.NNNN.heap` dump. The handler silently skips the dump when the
//!   program holds the profiler lock (it is inside malloc), so the signal
//!   is repeated until a new dump appears.
//!
//! Both handlers are installed by the library's initialisation code, a
//! moment after the process starts. Until then `<sig>` still has its default
//! action, which for SIGUSR1/SIGUSR2 is to kill the process, so the handler
//! must be seen in `/proc/<pid>/status` (`SigCgt`) before signalling.
//! A file is considered complete once the process no longer has it open,
//! since both profilers close the file when they have finished writing it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::heap::dump_files;
use crate::process::ProcessId;

/// Signal conventionally used as the profiling switch (SIGUSR2).
pub const DEFAULT_SWITCH_SIGNAL: i32 = libc::SIGUSR2;

/// How often `/proc` and the file system are polled while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How long to wait for a heap dump before repeating its signal.
const HEAP_SIGNAL_RETRY: Duration = Duration::from_millis(200);

/// Signals that may serve as a profiling switch or dump trigger: SIGUSR1, SIGUSR2 and the
/// real-time signals glibc leaves to programs (SIGRTMIN to SIGRTMAX, 34 to 64). Their default
/// action ends the process, so the handler must be installed before one is sent.
pub fn check_switch_signal(signal: i32) -> std::result::Result<(), String> {
    if signal == libc::SIGUSR1 || signal == libc::SIGUSR2 || (34..=64).contains(&signal) {
        Ok(())
    } else {
        Err(format!(
            "signal {signal} cannot be used: choose 10 (SIGUSR1), 12 (SIGUSR2) or a real-time \
             signal from 34 to 64 that the program does not use"
        ))
    }
}

/// Environment for a CPU-profiled process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuProfilerEnv {
    /// `libprofiler.so` to preload.
    pub library: PathBuf,
    /// `CPUPROFILE` value.
    pub output: PathBuf,
    /// `CPUPROFILE_FREQUENCY` (interrupts per second; default 100).
    pub frequency_hz: Option<u32>,
    /// `CPUPROFILESIGNAL`: when set, profiling is off until the first signal.
    pub switch_signal: Option<i32>,
}

impl CpuProfilerEnv {
    /// Variables to add to the process environment.
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut vars = vec![
            ("LD_PRELOAD".into(), self.library.display().to_string()),
            ("CPUPROFILE".into(), self.output.display().to_string()),
        ];
        if let Some(hz) = self.frequency_hz {
            vars.push(("CPUPROFILE_FREQUENCY".into(), hz.to_string()));
        }
        if let Some(signal) = self.switch_signal {
            vars.push(("CPUPROFILESIGNAL".into(), signal.to_string()));
        }
        vars
    }

    /// File holding the profile of the `cycle`-th start/stop pair when a
    /// switch signal is used, or `output` itself otherwise.
    pub fn profile_path(&self, cycle: u32) -> PathBuf {
        match self.switch_signal {
            Some(_) => crate::cpu::signal_profile_path(&self.output, cycle),
            None => self.output.clone(),
        }
    }
}

/// Environment for a heap-profiled process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeapProfilerEnv {
    /// `libtcmalloc.so` to preload.
    pub library: PathBuf,
    /// `HEAPPROFILE` prefix.
    pub prefix: PathBuf,
    /// `HEAP_PROFILE_ALLOCATION_INTERVAL`: dump every N bytes allocated.
    pub allocation_interval: Option<u64>,
    /// `HEAP_PROFILE_INUSE_INTERVAL`: dump when the high-water mark grows by
    /// N bytes.
    pub inuse_interval: Option<u64>,
    /// `HEAPPROFILESIGNAL`: dump on this signal.
    pub dump_signal: Option<i32>,
}

impl HeapProfilerEnv {
    /// Variables to add to the process environment.
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut vars = vec![
            ("LD_PRELOAD".into(), self.library.display().to_string()),
            ("HEAPPROFILE".into(), self.prefix.display().to_string()),
        ];
        let optional = [
            ("HEAP_PROFILE_ALLOCATION_INTERVAL", self.allocation_interval),
            ("HEAP_PROFILE_INUSE_INTERVAL", self.inuse_interval),
            ("HEAPPROFILESIGNAL", self.dump_signal.map(|s| s as u64)),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                vars.push((name.into(), value.to_string()));
            }
        }
        vars
    }
}

/// Sends `signal` to `pid`.
pub fn send_signal(pid: u32, signal: i32) -> Result<()> {
    let signal_error = |source| Error::Signal {
        pid,
        signal,
        source,
    };
    let target = libc::pid_t::try_from(pid)
        .map_err(|_| signal_error(std::io::Error::from(std::io::ErrorKind::InvalidInput)))?;
    // SAFETY: kill(2) takes plain integers and has no memory effects here.
    let rc = unsafe { libc::kill(target, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(signal_error(std::io::Error::last_os_error()))
    }
}

/// Whether `pid` has a handler installed for `signal` (`SigCgt` in
/// `/proc/<pid>/status`).
pub fn signal_handler_installed(pid: u32, signal: i32) -> Result<bool> {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    let status = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let bit = signal
        .checked_sub(1)
        .and_then(|b| u32::try_from(b).ok())
        .filter(|b| *b < 64);
    Ok(bit.is_some_and(|b| mask & (1u64 << b) != 0))
}

/// Waits until `pid` has installed its handler for `signal`, so that the
/// signal cannot take its default (fatal) action.
pub fn wait_for_signal_handler(pid: u32, signal: i32, timeout: Duration) -> Result<()> {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    poll_until(
        &path,
        timeout,
        &format!("a handler for signal {signal}"),
        || signal_handler_installed(pid, signal),
    )
}

/// Whether `pid` currently has `path` open. A process that has gone away
/// has nothing open.
pub fn file_open_in_process(pid: u32, path: &Path) -> Result<bool> {
    let Ok(target) = path.canonicalize() else {
        return Ok(false);
    };
    let fd_dir = PathBuf::from(format!("/proc/{pid}/fd"));
    let entries = match std::fs::read_dir(&fd_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(&fd_dir, e)),
    };
    Ok(entries
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .any(|link| link == target))
}

/// Waits until `path` is non-empty and no longer open in `pid`, i.e. the
/// profiler has finished writing it.
pub fn wait_until_written(pid: u32, path: &Path, timeout: Duration) -> Result<()> {
    poll_until(
        path,
        timeout,
        "the profile to be written and closed",
        || is_written(pid, path),
    )
}

fn is_written(pid: u32, path: &Path) -> Result<bool> {
    let non_empty = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
    Ok(non_empty && !file_open_in_process(pid, path)?)
}

/// Waits until `process` no longer has `path` open, because it finished writing it or
/// because it ended, and returns the file's size then (0 when there is no file). Unlike
/// [`wait_until_written`], a process that dies without writing ends the wait at once.
pub fn wait_until_closed(process: ProcessId, path: &Path, timeout: Duration) -> Result<u64> {
    poll_until(
        path,
        timeout,
        "the profile to be written and closed",
        || Ok(!process.alive() || !file_open_in_process(process.pid, path)?),
    )?;
    Ok(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0))
}

/// Stops a CPU profiling cycle started with the switch signal and waits for
/// the profile to be complete; after this the process can be terminated.
pub fn flush_cpu_profile(pid: u32, signal: i32, profile: &Path, timeout: Duration) -> Result<()> {
    send_signal(pid, signal)?;
    wait_until_written(pid, profile, timeout)
}

/// Requests one more heap dump with the dump signal, repeating the signal
/// when the profiler skipped it, and returns the new dump once written.
pub fn flush_heap_profile(
    pid: u32,
    signal: i32,
    prefix: &Path,
    timeout: Duration,
) -> Result<PathBuf> {
    let before = dump_files(prefix)?.len();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        send_signal(pid, signal)?;
        let attempt_end = (Instant::now() + HEAP_SIGNAL_RETRY).min(deadline);
        while Instant::now() < attempt_end {
            if let Some(dump) = dump_files(prefix)?.get(before) {
                wait_until_written(
                    pid,
                    dump,
                    deadline.saturating_duration_since(Instant::now()),
                )?;
                return Ok(dump.clone());
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
    Err(Error::Timeout {
        path: prefix.into(),
        waited_ms: timeout.as_millis(),
        what: "a new heap dump".into(),
    })
}

/// Polls `ready` until it returns true or `timeout` passes.
fn poll_until(
    path: &Path,
    timeout: Duration,
    what: &str,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let start = Instant::now();
    loop {
        if ready()? {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(Error::Timeout {
                path: path.into(),
                waited_ms: timeout.as_millis(),
                what: what.into(),
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_env_lists_switch_and_cycle_paths() {
        let env = CpuProfilerEnv {
            library: "/l/libprofiler.so".into(),
            output: "/t/p.prof".into(),
            frequency_hz: Some(1000),
            switch_signal: Some(12),
        };
        let vars = env.vars();
        assert!(vars.contains(&("CPUPROFILESIGNAL".into(), "12".into())));
        assert!(vars.contains(&("CPUPROFILE_FREQUENCY".into(), "1000".into())));
        assert_eq!(env.profile_path(1), PathBuf::from("/t/p.prof.1"));
    }

    #[test]
    fn heap_env_skips_unset_options() {
        let env = HeapProfilerEnv {
            library: "/l/libtcmalloc.so".into(),
            prefix: "/t/h".into(),
            allocation_interval: None,
            inuse_interval: Some(10),
            dump_signal: None,
        };
        let names: Vec<String> = env.vars().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            ["LD_PRELOAD", "HEAPPROFILE", "HEAP_PROFILE_INUSE_INTERVAL"]
        );
    }

    #[test]
    fn own_process_state_is_visible() {
        let pid = std::process::id();
        // The Rust test harness does not handle SIGUSR2.
        assert!(!signal_handler_installed(pid, libc::SIGUSR2).expect("status"));
        let exe = std::env::current_exe().expect("exe");
        assert!(!file_open_in_process(pid, &exe).expect("fds"));
    }
}
