//! On cgroup v1, the run's processes are born in the run's cgroup instead of being moved
//! there one by one.
//!
//! Moving a process into a v1 cgroup makes the kernel wait for an RCU grace period (it
//! switches the cgroups' thread-group lock to its writer mode), several milliseconds each
//! time, paid by every service before its program starts. But on v1 a *thread* may sit in
//! a cgroup of its own, and a process it forks starts in that thread's cgroup. So one thread
//! of the host joins the run's cgroup (one move, made while the host still prepares the run)
//! and every process of the run is spawned from it.
//!
//! The thread is a member of the cgroup, so the host's pid appears in the group's
//! `cgroup.procs`: [`super::cgroup::members`] leaves the host out. The thread leaves the group
//! by ending, before the group is removed.

use std::{
    fs,
    io::{self, Write},
    path::Path,
    process::{Child, Command},
    sync::mpsc,
    thread::{self, JoinHandle},
};

/// What the thread answers: the spawn's result, or the command back when the thread is not
/// in the cgroup (the caller then has the child join by itself).
pub type Answer = Result<io::Result<Child>, Box<Command>>;
type Job = (Command, mpsc::SyncSender<Answer>);

/// A thread in the run's cgroup that spawns the run's processes.
#[derive(Debug)]
pub struct Spawner {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Spawner {
    /// Starts the thread, which first moves itself into the cgroup whose v1 `tasks` file is
    /// `tasks` (spawns asked for meanwhile wait for it). The file is opened here, so the
    /// group may be renamed as soon as this returns.
    pub fn start(tasks: &Path) -> Option<Spawner> {
        let shown = tasks.display().to_string();
        let file = fs::OpenOptions::new().write(true).open(tasks);
        let (jobs, incoming) = mpsc::channel::<Job>();
        let thread = thread::Builder::new()
            .name("panther-spawner".into())
            .spawn(move || {
                let tid = nix::unistd::gettid().to_string();
                let joined = match file.and_then(|mut f| f.write_all(tid.as_bytes())) {
                    Ok(()) => true,
                    Err(err) => {
                        tracing::debug!("the spawner cannot join {shown}: {err}");
                        false
                    }
                };
                for (mut command, answer) in incoming {
                    let _ = answer.send(if joined {
                        Ok(command.spawn())
                    } else {
                        Err(Box::new(command))
                    });
                }
            })
            .ok()?;
        Some(Spawner {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Spawns `command` from the thread in the cgroup; gives the command back when that
    /// thread is not in the cgroup.
    pub fn spawn(&self, command: Command) -> Answer {
        let Some(jobs) = &self.jobs else {
            return Err(Box::new(command));
        };
        let (answer, answered) = mpsc::sync_channel(1);
        if let Err(mpsc::SendError((command, _))) = jobs.send((command, answer)) {
            return Err(Box::new(command));
        }
        answered.recv().unwrap_or_else(|_| {
            Ok(Err(io::Error::other(
                "the spawner thread ended while spawning",
            )))
        })
    }
}

impl Drop for Spawner {
    /// Ends the thread, which takes it out of the cgroup.
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
