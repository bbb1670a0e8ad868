//! `panther-host clean` for local processes: ends what killed hosts left running.
//!
//! A process is stale when its run mark names an owner (pid and start time) that no longer
//! runs, or when it sits in a run cgroup under the folder of such a host. A process whose
//! host still runs is never touched, whichever run it belongs to. Stale processes get SIGKILL
//! at once: their run is over and nobody collects what they would flush. Empty cgroups of
//! gone hosts are removed.

use std::{collections::BTreeMap, fs, time::Duration};

use super::{cgroup, mark};

/// One process `clean` ended.
#[derive(Debug, Clone)]
pub struct Ended {
    /// Its pid.
    pub pid: u32,
    /// Its program name.
    pub comm: String,
    /// The run it belonged to.
    pub run_id: String,
}

/// What `clean` did.
#[derive(Debug, Default)]
pub struct Cleaned {
    /// Processes ended.
    pub ended: Vec<Ended>,
    /// Cgroup folders removed (their processes are in `ended`; an empty one is not worth a
    /// line of output).
    pub cgroups: Vec<String>,
}

impl Cleaned {
    /// One line per process ended, for `clean`'s output.
    pub fn lines(&self) -> Vec<String> {
        self.ended
            .iter()
            .map(|e| format!("ended process {} ({}) of run {}", e.pid, e.comm, e.run_id))
            .collect()
    }
}

/// Ends every stale process and removes the cgroups of gone hosts.
pub fn clean() -> Cleaned {
    let mut stale: BTreeMap<u32, Ended> = BTreeMap::new();
    for m in mark::scan() {
        if m.owner.is_some_and(|owner| !owner.is_alive()) {
            stale.insert(
                m.pid,
                Ended {
                    pid: m.pid,
                    comm: m.comm,
                    run_id: m.run_id,
                },
            );
        }
    }
    let mut groups = Vec::new();
    for hierarchy in cgroup::candidates() {
        let Ok(hosts) = fs::read_dir(&hierarchy.top) else {
            continue;
        };
        for host in hosts.flatten() {
            let name = host.file_name().to_string_lossy().into_owned();
            let Some(owner) = cgroup::parse_host_dir_name(&name) else {
                continue;
            };
            if owner.is_alive() {
                continue;
            }
            for run in fs::read_dir(host.path()).into_iter().flatten().flatten() {
                if !run.path().is_dir() {
                    continue;
                }
                let run_id = run.file_name().to_string_lossy().into_owned();
                for pid in cgroup::members(&run.path()) {
                    stale.entry(pid).or_insert_with(|| Ended {
                        pid,
                        comm: mark::stat(pid).map(|s| s.comm).unwrap_or_default(),
                        run_id: run_id.clone(),
                    });
                }
                groups.push((run.path(), hierarchy.v2));
            }
            groups.push((host.path(), hierarchy.v2));
        }
    }
    // Kill until none is left: a stale process may be forking right now.
    let left = || -> Vec<u32> {
        stale
            .keys()
            .copied()
            .filter(|&pid| mark::stat(pid).is_some_and(|s| s.state != 'Z'))
            .collect()
    };
    super::kill::until_none(100, Duration::from_millis(2), left, |&pid| pid);
    let mut cleaned = Cleaned {
        ended: stale.into_values().collect(),
        cgroups: Vec::new(),
    };
    // Run folders first, then their host's folder.
    for (dir, v2) in groups {
        cgroup::kill_members(&dir, v2);
        cgroup::remove_dir(&dir);
        if !dir.exists() {
            cleaned.cgroups.push(dir.display().to_string());
        }
    }
    cleaned
}
