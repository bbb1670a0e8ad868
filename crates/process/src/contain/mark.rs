//! The run mark: environment variables set on every process a run starts, inherited by
//! everything it starts in turn, and readable in `/proc/<pid>/environ`.
//!
//! A mark names the run (`PANTHER_RUN_ID`), the host that owns it (`PANTHER_RUN_OWNER`,
//! `<pid>:<start time in clock ticks>`, so that a reused pid is not mistaken for the host) and
//! the process of the run it descends from (`PANTHER_RUN_PROCESS`), so that stopping one
//! service ends its daemonized children and nothing of its neighbours.

use std::{fs, sync::OnceLock};

/// The run's unique id.
pub const RUN_ID: &str = "PANTHER_RUN_ID";
/// `<pid>:<start time>` of the host that owns the run.
pub const OWNER: &str = "PANTHER_RUN_OWNER";
/// The number the command processor gave the process the marked one descends from.
pub const PROCESS: &str = "PANTHER_RUN_PROCESS";

/// A process, identified by pid and start time (immune to pid reuse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// Its pid.
    pub pid: u32,
    /// Its start time, in clock ticks since boot (`/proc/<pid>/stat`, field 22).
    pub start: u64,
}

impl Owner {
    /// This process.
    pub fn current() -> Owner {
        static CURRENT: OnceLock<Owner> = OnceLock::new();
        *CURRENT.get_or_init(|| {
            let pid = std::process::id();
            Owner {
                pid,
                start: stat(pid).map_or(0, |s| s.start),
            }
        })
    }

    /// Reads `<pid>:<start>`.
    pub fn parse(text: &str) -> Option<Owner> {
        let (pid, start) = text.split_once(':')?;
        Some(Owner {
            pid: pid.parse().ok()?,
            start: start.parse().ok()?,
        })
    }

    /// Whether this very process still runs (a zombie does not).
    pub fn is_alive(&self) -> bool {
        stat(self.pid).is_some_and(|s| s.start == self.start && s.state != 'Z')
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.pid, self.start)
    }
}

/// What `/proc/<pid>/stat` says that matters here.
#[derive(Debug, Clone)]
pub struct Stat {
    /// The program name (at most 15 bytes).
    pub comm: String,
    /// `R`, `S`, `Z`, …
    pub state: char,
    /// The parent's pid.
    pub ppid: u32,
    /// The process group.
    pub pgrp: u32,
    /// Start time in clock ticks since boot.
    pub start: u64,
}

/// Reads `/proc/<pid>/stat`; `None` when the process is gone.
pub fn stat(pid: u32) -> Option<Stat> {
    // One read: a stat line is a few hundred bytes, and `/proc` reports no size to size a
    // buffer by.
    let mut text = String::with_capacity(1024);
    fs::File::open(format!("/proc/{pid}/stat"))
        .and_then(|mut file| std::io::Read::read_to_string(&mut file, &mut text))
        .ok()?;
    // The name may hold spaces and parentheses: it ends at the last `)`.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = text.get(close + 2..)?.split(' ').collect();
    // Fields from 3 on: state(3) ppid(4) pgrp(5) … starttime(22).
    Some(Stat {
        comm,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// A process that carries a run mark.
#[derive(Debug, Clone)]
pub struct Marked {
    /// Its pid.
    pub pid: u32,
    /// Its program name.
    pub comm: String,
    /// `PANTHER_RUN_ID`.
    pub run_id: String,
    /// `PANTHER_RUN_OWNER`, when readable.
    pub owner: Option<Owner>,
    /// `PANTHER_RUN_PROCESS`, when readable.
    pub process: Option<u64>,
}

/// The pid of every process, as `/proc` lists them now.
pub fn all_pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// Every live process (zombies have no readable environment) that carries a run mark,
/// except this process itself.
pub fn scan() -> Vec<Marked> {
    let me = std::process::id();
    all_pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter_map(read_mark)
        .collect()
}

/// The mark of one process, if it has one.
pub fn read_mark(pid: u32) -> Option<Marked> {
    let environ = fs::read(format!("/proc/{pid}/environ")).ok()?;
    let mut run_id = None;
    let mut owner = None;
    let mut process = None;
    for var in environ.split(|&b| b == 0) {
        let Some(eq) = var.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (key, value) = (&var[..eq], &var[eq + 1..]);
        let value = String::from_utf8_lossy(value);
        match key {
            k if k == RUN_ID.as_bytes() => run_id = Some(value.into_owned()),
            k if k == OWNER.as_bytes() => owner = Owner::parse(&value),
            k if k == PROCESS.as_bytes() => process = value.parse().ok(),
            _ => {}
        }
    }
    Some(Marked {
        pid,
        comm: stat(pid).map(|s| s.comm).unwrap_or_default(),
        run_id: run_id?,
        owner,
        process,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_started_with_the_mark_is_found_with_it() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env(RUN_ID, "unit-mark")
            .env(OWNER, Owner::current().to_string())
            .env(PROCESS, "7")
            .spawn()
            .unwrap();
        let found = scan()
            .into_iter()
            .find(|m| m.pid == child.id())
            .expect("the marked child");
        assert_eq!(found.run_id, "unit-mark");
        assert_eq!(found.owner, Some(Owner::current()));
        assert_eq!(found.process, Some(7));
        assert_eq!(found.comm, "sleep");
        assert!(Owner::current().is_alive());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(read_mark(child.id()).is_none());
    }
}
