//! The host as a child subreaper, and reaping only what is a run's.
//!
//! With `PR_SET_CHILD_SUBREAPER`, a process whose parent exits (a double fork, a daemon's
//! first child) is re-parented to the host instead of init: while the host lives, every
//! descendant stays in its tree. The host then owes those orphans a `waitpid`, but it must
//! not reap a process someone else waits for: the leaders the command processor started
//! (their `Child` waits for them) and any child a plugin starts itself. So [`reap`] only
//! reaps pids it is given (processes found by the run mark or in the run's cgroup) and never
//! a registered leader.

use std::{
    collections::HashSet,
    sync::{Mutex, OnceLock},
};

use nix::{
    sys::wait::{waitpid, WaitPidFlag},
    unistd::Pid,
};

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
