//! The wrappers above a service: the tools that start the service as their child process and
//! report when it exits (GNU `time`, `strace`, `perf stat`).
//!
//! A service runs as `tool₁ … -- tool₂ … -- program`: the process the host started is
//! `tool₁`, its child is `tool₂`, and the service's own process is `depth` generations below
//! the first. Stopping the service means signalling what is below the chain and letting the
//! chain end by itself: each wrapper sees its child exit, writes its report and exits. A
//! signal to the whole process group would end the wrappers before they write anything.

use std::fs;

use super::mark;

/// The children of `pid`, oldest first (`/proc/<pid>/task/*/children`: a child may have been
/// started by any thread). Empty when `pid` is gone or has none.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut children: Vec<(u64, u32)> = tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|child| child.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .filter_map(|child| Some((mark::stat(child)?.start, child)))
        .collect();
    children.sort_unstable();
    children.into_iter().map(|(_, child)| child).collect()
}

/// The wrapper processes of a chain `depth` deep that starts at `leader`, outermost first:
/// `leader`, its oldest child, that one's oldest child… Shorter than `depth` while a wrapper
/// has not started its child yet (or when the chain has already ended below it).
pub fn chain(leader: u32, depth: usize) -> Vec<u32> {
    let mut chain = Vec::with_capacity(depth);
    let mut current = leader;
    while chain.len() < depth {
        if mark::stat(current).is_none_or(|s| s.state == 'Z') {
            break;
        }
        chain.push(current);
        match children(current).first() {
            Some(&child) => current = child,
            None => break,
        }
    }
    chain
}

/// The live processes below a chain of `depth` wrappers that starts at `leader`: every
/// descendant of `leader` (itself included) that is not one of the wrappers. For a service
/// whose processes are not in a process group of the host's (a container's, seen from this
/// machine); an orphan of the service belongs to it when it was reparented inside the tree
/// (to a container's init).
pub fn below(leader: u32, depth: usize) -> Vec<u32> {
    let chain = chain(leader, depth);
    let mut found = Vec::new();
    let mut pending = vec![leader];
    while let Some(pid) = pending.pop() {
        let live = mark::stat(pid).is_some_and(|s| s.state != 'Z');
        if live && !chain.contains(&pid) {
            found.push(pid);
        }
        pending.extend(children(pid));
    }
    found
}

#[cfg(test)]
mod tests {
    use std::{
        os::unix::process::CommandExt,
        process::{Command, Stdio},
        time::{Duration, Instant},
    };

    use super::*;

    /// `sh → sh → sleep`: a chain of two wrappers above the program.
    #[test]
    fn walks_down_the_oldest_child_of_each_wrapper() {
        let mut outer = Command::new("/bin/sh")
            .args(["-c", "/bin/sh -c 'sleep 30; :' & sleep 30 & wait"])
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let leader = outer.id();
        let deadline = Instant::now() + Duration::from_secs(5);
        let found = loop {
            let found = chain(leader, 2);
            // A forked child is a copy of its shell until it has `exec`ed `sleep`.
            let sleeping = |pid: &u32| mark::stat(*pid).is_some_and(|s| s.comm == "sleep");
            let inner_started = found
                .get(1)
                .is_some_and(|&inner| children(inner).iter().any(sleeping));
            // Both of the outer shell's children, and the inner shell's one, have started
            // their programs.
            let outer = children(leader);
            let all_started = inner_started && outer.len() == 2 && sleeping(&outer[1]);
            if (found.len() == 2 && all_started) || Instant::now() > deadline {
                break found;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0], leader);
        // The oldest child is the inner shell, started before the outer shell's own sleep.
        let inner = found[1];
        assert_eq!(mark::stat(inner).unwrap().comm, "sh");
        assert_eq!(children(leader).len(), 2);
        let innermost = children(inner);
        assert_eq!(innermost.len(), 1);
        assert_eq!(mark::stat(innermost[0]).unwrap().comm, "sleep");
        // Below one wrapper: the inner shell and both sleeps; below two: the sleeps.
        assert_eq!(below(leader, 1).len(), 3);
        let mut under_two = below(leader, 2);
        under_two.sort_unstable();
        let mut sleeps = [children(leader)[1], innermost[0]];
        sleeps.sort_unstable();
        assert_eq!(under_two, sleeps);
        // A chain deeper than the processes stops where they do.
        assert_eq!(chain(leader, 5).len(), 3);
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(leader as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = outer.kill();
        outer.wait().unwrap();
        assert!(chain(leader, 2).is_empty());
    }
}
