//! Containment: every process a run starts is found and ended, whatever it does.
//!
//! Three kernel mechanisms, each covering what the others miss:
//!
//! - [`mark`]: every process the [`CommandProcessor`](crate::command::CommandProcessor)
//!   starts carries `PANTHER_RUN_ID`, `PANTHER_RUN_OWNER` (the host's pid and start time) and
//!   `PANTHER_RUN_PROCESS` in its environment. Children inherit it through `setsid`, double
//!   forks and closed pipes, and `/proc/<pid>/environ` shows it to the host and to
//!   `panther-host clean` (which ends marked processes whose host is gone).
//! - [`cgroup`]: where the host may create one, every run gets a cgroup (v2, or v1's `pids`
//!   or `freezer` controller); a process that clears its environment is still in it.
//! - [`reap`]: the host is a child subreaper, so orphaned descendants become its children
//!   (not init's) and their exit can be collected; it reaps only processes it knows to be a
//!   run's.
//!
//! [`spawner`]: on cgroup v1, the run's processes are spawned from a thread of the host that
//! sits in the run's cgroup, so they are born in it (one move per run, not per process).
//!
//! [`wrappers`] tells the tools that wrap a service (and report when it exits) from the
//! service's own processes, which are stopped first.
//!
//! [`kill`] ends a set of processes that may still be forking, for all of them.
//!
//! [`stale`] is the `clean` side: processes and cgroups of hosts that no longer run.

pub mod cgroup;
pub mod kill;
pub mod mark;
pub mod reap;
pub mod spawner;
pub mod stale;
pub mod wrappers;
