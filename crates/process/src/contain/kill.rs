//! Ending a set of processes that may still be growing.

use std::{thread, time::Duration};

use nix::{sys::signal::Signal, unistd::Pid};

/// SIGKILLs whatever `alive` finds, and asks again, until it finds nothing: a process may
/// be forking while its siblings are killed, and its child only shows up on the next look.
/// Bounded to `rounds` looks, `pause` apart: a fork bomb outpacing SIGKILL is not a race
/// this loop can win alone (a cgroup's `cgroup.kill` can). Zombie children of the host
/// among them are collected ([`super::reap::reap`]). Returns everything it found, each
/// process once, in the order first seen.
pub fn until_none<T>(
    rounds: usize,
    pause: Duration,
    mut alive: impl FnMut() -> Vec<T>,
    pid_of: impl Fn(&T) -> u32,
) -> Vec<T> {
    let mut found: Vec<T> = Vec::new();
    for _ in 0..rounds {
        let now = alive();
        if now.is_empty() {
            break;
        }
        let pids: Vec<u32> = now.iter().map(&pid_of).collect();
        for &pid in &pids {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        for item in now {
            if !found.iter().any(|f| pid_of(f) == pid_of(&item)) {
                found.push(item);
            }
        }
        thread::sleep(pause);
        super::reap::reap(&pids);
    }
    let pids: Vec<u32> = found.iter().map(&pid_of).collect();
    super::reap::reap(&pids);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process that keeps starting children is ended with every child it started, also
    /// those started while the others were being killed, each reported once.
    #[test]
    fn a_forking_parent_and_its_children_are_all_ended() {
        use std::os::unix::process::CommandExt;
        let mut parent = std::process::Command::new("sh")
            .args(["-c", "while :; do sleep 30 & done"])
            .process_group(0)
            .spawn()
            .unwrap();
        thread::sleep(Duration::from_millis(100));
        let group = parent.id();
        // Found by process group, which orphans keep.
        let members = || -> Vec<u32> {
            super::super::mark::all_pids()
                .into_iter()
                .filter(|&p| {
                    super::super::mark::stat(p).is_some_and(|s| s.pgrp == group && s.state != 'Z')
                })
                .collect()
        };
        assert!(members().len() > 1, "the parent started children");
        let ended = until_none(200, Duration::from_millis(2), members, |&p| p);
        // Collected already, with the others (it is a zombie child of this process).
        let _ = parent.wait();
        assert!(ended.contains(&group));
        let mut unique = ended.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ended.len(), "each process reported once");
        assert!(members().is_empty(), "nothing of the group is left");
    }
}
