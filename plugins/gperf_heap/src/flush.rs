//! The final heap dump of processes that are still running when the run ends.
//!
//! tcmalloc's heap profiler writes its last dump from an exit handler, which a process
//! stopped by SIGTERM never runs. With `HEAPPROFILESIGNAL` set, each signal makes it write
//! one more dump, so before the host stops the service every process of its tree that runs
//! the profiler is asked for one, and the dump is awaited.
//!
//! Which processes: those that have libtcmalloc mapped, the dump handler installed (checked in
//! `/proc/PID/status`; before that the signal would end them) and `HEAPPROFILE` in their
//! environment, minus forks that did not call `exec` (they share their parent's profiler and
//! file names). Each writes to the prefix it read from its environment when it started: the
//! first process that read `HEAPPROFILE` uses it as is, processes started from it get
//! `_<pid>` (see [`panther_gperftools::process::path_read_at_start`]).

use std::{path::PathBuf, time::Duration};

use panther_gperftools::{
    control::{flush_heap_profile, signal_handler_installed},
    library::LibraryMatcher,
    process::{self, ProcessId},
};

/// How long a process gets to write its dump.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// One process asked for a final dump.
#[derive(Debug, Clone)]
pub struct Flushed {
    /// Process id.
    pub pid: u32,
    /// The prefix it writes its dumps to.
    pub prefix: PathBuf,
    /// The dump it wrote, or why there is none.
    pub dump: Result<PathBuf, String>,
}

/// Asks every heap-profiled process of the tree under `root` but the `wrappers` for one more
/// dump and waits for each. Returns what happened, and notes about processes that were left
/// out.
pub fn flush_tree(
    root: u32,
    wrappers: &[u32],
    library: &LibraryMatcher,
    signal: i32,
    timeout: Duration,
) -> (Vec<Flushed>, Vec<String>) {
    let mut notes = Vec::new();
    let mut bases: Vec<(u32, u64)> = Vec::new();
    // The process that writes each prefix; a later (deeper) one replaces an earlier one.
    let mut writers: Vec<(PathBuf, ProcessId)> = Vec::new();
    for (pid, parent) in process::tree(root) {
        let (Some(id), Some(base)) = (ProcessId::of(pid), process::library_base(pid, library))
        else {
            continue;
        };
        bases.push((pid, base));
        let fork_copy = parent.is_some_and(|p| bases.contains(&(p, base)));
        if fork_copy || wrappers.contains(&pid) {
            continue;
        }
        let Some(prefix) = process::path_read_at_start(pid, parent, "HEAPPROFILE") else {
            continue;
        };
        if !signal_handler_installed(pid, signal).unwrap_or(false) {
            notes.push(format!(
                "process {pid} runs tcmalloc but has no handler for signal {signal}: no final dump"
            ));
            continue;
        }
        match writers.iter_mut().find(|(p, _)| *p == prefix) {
            Some(writer) => {
                notes.push(format!(
                    "processes {} and {pid} both write {}: only {pid} was asked for a final dump",
                    writer.1.pid,
                    prefix.display()
                ));
                writer.1 = id;
            }
            None => writers.push((prefix, id)),
        }
    }
    let flushed = writers
        .into_iter()
        .map(|(prefix, id)| {
            let dump =
                flush_heap_profile(id.pid, signal, &prefix, timeout).map_err(|e| e.to_string());
            if let Err(err) = &dump {
                notes.push(format!("process {}: no final dump: {err}", id.pid));
            }
            Flushed {
                pid: id.pid,
                prefix,
                dump,
            }
        })
        .collect();
    (flushed, notes)
}
