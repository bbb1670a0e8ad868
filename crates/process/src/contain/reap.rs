//! The host as a child subreaper, and reaping only what is a run's.
//!
//! With `PR_SET_CHILD_SUBREAPER`, a process whose parent exits (a double fork, a daemon's
//! first child) is re-parented to the host instead of init: while the host lives, every
//! descendant stays in its tree. The host then owes those orphans a `waitpid`, but it must
//! not reap a process someone else waits for: the leaders the command processor started
//! (their `Child` waits for them) and any child a plugin starts itself. So [`reap`] only
//! reaps pids it is given (processes found by the run mark or in the run's cgroup) and never
//! a registered leader.
//!
//! Orphans that end on their own while the run goes on (a daemon's short-lived helper) are
//! collected by [`start_reaper`]'s thread: every half second it notes the host's children
//! that carry a mark owned by this host (adopted orphans: plugins' own children carry none)
//! and reaps those of them that have ended. It and the command processor's spawns take
//! [`spawn_lock`] in turn, so a leader is registered before the thread can see it.

use std::{
    collections::HashSet,
    sync::{Mutex, MutexGuard, Once, OnceLock},
    thread,
    time::Duration,
};

use nix::{
    sys::wait::{waitpid, WaitPidFlag},
    unistd::Pid,
};

use super::mark::Owner;

/// Taken around a spawn and its leader's registration, and by the reaper thread's rounds.
pub fn spawn_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts (once) the thread that reaps adopted orphans of this host's runs.
pub fn start_reaper() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        let spawned = thread::Builder::new()
            .name("panther-reaper".into())
            .spawn(|| {
                let mut adopted = HashSet::new();
                loop {
                    reap_adopted(&mut adopted);
                    thread::sleep(Duration::from_millis(500));
                }
            });
        if let Err(err) = spawned {
            tracing::debug!("no reaper thread: {err}");
        }
    });
}

/// One round: notes adopted orphans, reaps those that ended.
fn reap_adopted(adopted: &mut HashSet<u32>) {
    let _spawning = spawn_lock();
    let me = Owner::current();
    let leaders = leaders().lock().unwrap_or_else(|e| e.into_inner());
    for pid in children() {
        if leaders.contains(&pid) {
            continue;
        }
        let Some(stat) = super::mark::stat(pid) else {
            continue;
        };
        if stat.ppid != me.pid {
            continue;
        }
        if stat.state == 'Z' {
            if adopted.remove(&pid) {
                let _ = waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG));
            }
        } else if super::mark::read_mark(pid).is_some_and(|m| m.owner == Some(me)) {
            adopted.insert(pid);
        }
    }
    // Pids that are gone (reaped by a sweep) are forgotten.
    adopted.retain(|&pid| super::mark::stat(pid).is_some());
}

/// This process's children: from `/proc/self/task/*/children` (cheap), else every process.
fn children() -> Vec<u32> {
    let parse = |text: &str| -> Vec<u32> {
        text.split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    let tasks = std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten();
    let mut found = Vec::new();
    let mut readable = false;
    for task in tasks {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            readable = true;
            found.extend(parse(&text));
        }
    }
    if readable {
        return found;
    }
    super::mark::all_pids()
}

fn leaders() -> &'static Mutex<HashSet<u32>> {
    static LEADERS: OnceLock<Mutex<HashSet<u32>>> = OnceLock::new();
    LEADERS.get_or_init(Mutex::default)
}

/// Makes this process the subreaper of its descendants; says whether the kernel agreed.
pub fn become_subreaper() -> bool {
    nix::sys::prctl::set_child_subreaper(true).is_ok()
}

/// Registers a process whose exit status belongs to its `Child` handle.
pub fn register_leader(pid: u32) {
    leaders()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(pid);
}

/// Forgets a leader once its `Child` has collected it.
pub fn forget_leader(pid: u32) {
    leaders()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&pid);
}

/// Collects the exit of each given process that is a zombie child of this host, except
/// registered leaders. Processes that are not children (or still run) are left alone.
pub fn reap(pids: &[u32]) {
    // A leader is registered under this lock right after its spawn: holding it here means a
    // leader that was just started is known before it is looked at, so its exit status
    // stays its `Child`'s.
    let _spawning = spawn_lock();
    let leaders = leaders().lock().unwrap_or_else(|e| e.into_inner());
    let me = std::process::id();
    for &pid in pids {
        if leaders.contains(&pid) {
            continue;
        }
        if super::mark::stat(pid).is_some_and(|s| s.ppid == me && s.state == 'Z') {
            let _ = waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG));
        }
    }
}
