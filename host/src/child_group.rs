//! Children started in a process group of their own (plugin probes, plugin servers), ended
//! together with whatever they started in that group.
//!
//! A group may only be signalled while its leader's pid is still taken: once the leader is
//! reaped, the pid (and so the group id) can be handed to an unrelated process. These helpers
//! therefore look at the leader without reaping it (`waitid` with `WNOWAIT`): a leader that
//! has exited stays a zombie, holding its pid, until the caller reaps it with `Child::wait`.

use std::process::Child;

use nix::{
    sys::{
        signal::{killpg, Signal},
        wait::{waitid, Id, WaitPidFlag, WaitStatus},
    },
    unistd::Pid,
};

/// Whether the leader has exited: `Some(false)` while it runs, `Some(true)` once it has
/// exited (not reaped yet), `None` when it was already reaped.
pub fn has_exited(child: &Child) -> Option<bool> {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::WNOHANG;
    match waitid(Id::Pid(leader(child)), flags) {
        Ok(WaitStatus::StillAlive) => Some(false),
        Ok(_) => Some(true),
        Err(_) => None,
    }
}

/// SIGKILL to the child's whole group, unless the child was reaped already (then its group
/// id may belong to someone else, and nothing is sent).
pub fn kill_group(child: &Child) {
    if has_exited(child).is_some() {
        let _ = killpg(leader(child), Signal::SIGKILL);
    }
}

/// `SIGSEGV`, or `signal 64` for a number the system does not name: how the host says what
/// killed a child.
pub fn signal_name(signal: i32) -> String {
    Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

fn leader(child: &Child) -> Pid {
    Pid::from_raw(child.id() as i32)
}
