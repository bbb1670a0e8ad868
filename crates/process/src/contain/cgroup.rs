//! One cgroup per run, where the host may create one.
//!
//! Candidates, first usable wins: cgroup v2 mounted at `/sys/fs/cgroup`; the v1 `pids`
//! controller; the v1 `freezer` controller; a hybrid v2 hierarchy at `/sys/fs/cgroup/unified`.
//! Under the candidate's mount and the host's own cgroup there, a run's cgroup is
//! `panther/<host pid>.<host start time>/<run id>`: `clean` recognises the groups of hosts
//! that are gone by that name. A child starts in the run's cgroup (on v1 it is spawned from a
//! thread of the host that sits in the group, see [`super::spawner`]) or joins it before it
//! executes its program (it writes `0` into `cgroup.procs` between fork and exec), so
//! nothing it starts can be outside. Where no candidate is writable (not root, no delegation) the run goes on without
//! a cgroup and relies on the mark and the process group.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock, RwLock},
    thread,
    time::Duration,
};

use super::mark::Owner;

/// The folder, under a hierarchy's root, that holds every host's groups.
const TOP: &str = "panther";

/// A cgroup hierarchy the host can create groups in.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    /// `<mount>/<the host's own cgroup>/panther`.
    pub top: PathBuf,
    /// `true` for cgroup v2 (has `cgroup.kill` on Linux 5.14+).
    pub v2: bool,
}

/// Set to `0` to run without cgroups (the mark and the process group still apply): on
/// cgroup v1, moving a process into a group waits for an RCU grace period, several
/// milliseconds per service started (see docs/performance.md).
pub const SWITCH: &str = "PANTHER_RUN_CGROUP";

/// The hierarchy this host uses, found once per process; none when [`SWITCH`] is `0`.
pub fn hierarchy() -> Option<&'static Hierarchy> {
    static FOUND: OnceLock<Option<Hierarchy>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            if std::env::var_os(SWITCH).is_some_and(|v| v == "0") {
                return None;
            }
            find()
        })
        .as_ref()
}

/// Every hierarchy that exists here, usable or not (`clean` looks in all of them).
pub fn candidates() -> Vec<Hierarchy> {
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    // Lines are `id:controllers:path`; v2 is `0::path`.
    let own_path = |controller: &str| {
        own.lines().find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
            let matches = if controller.is_empty() {
                list.is_empty()
            } else {
                list.split(',').any(|c| c == controller)
            };
            matches.then(|| path.trim_start_matches('/').to_string())
        })
    };
    let mut found = Vec::new();
    let mut add = |mount: &str, controller: &str, v2: bool| {
        if let Some(path) = own_path(controller) {
            found.push(Hierarchy {
                top: Path::new(mount).join(path).join(TOP),
                v2,
            });
        }
    };
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        add("/sys/fs/cgroup", "", true);
    }
    for controller in ["pids", "freezer"] {
        let mount = format!("/sys/fs/cgroup/{controller}");
        if Path::new(&mount).join("cgroup.procs").exists() {
            add(&mount, controller, false);
        }
    }
    if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
        add("/sys/fs/cgroup/unified", "", true);
    }
    found
}

fn find() -> Option<Hierarchy> {
    candidates().into_iter().find(|h| {
        // Usable when this host can make its own folder there.
        let dir = h.top.join(host_dir_name(Owner::current()));
        fs::create_dir_all(&dir).is_ok()
    })
}

/// `<pid>.<start>`: the folder of one host's run groups.
pub fn host_dir_name(owner: Owner) -> String {
    format!("{}.{}", owner.pid, owner.start)
}

/// Reads a host folder's name back.
pub fn parse_host_dir_name(name: &str) -> Option<Owner> {
    let (pid, start) = name.split_once('.')?;
    Some(Owner {
        pid: pid.parse().ok()?,
        start: start.parse().ok()?,
    })
}

/// The cgroup of one run.
#[derive(Debug)]
pub struct RunCgroup {
    /// Its folder; renamed once for a group made before its run ([`prepare`]).
    dir: RwLock<PathBuf>,
    /// The run's name for a group made before its run was known. Renaming waits while the
    /// spawner's move into the group is under way, so it is done after the first spawn,
    /// which waited for that move anyway.
    rename_to: Mutex<Option<String>>,
    v2: bool,
    /// On v1, the thread the run's processes are spawned from (see [`super::spawner`]).
    spawner: Option<super::spawner::Spawner>,
}

/// The name of a group made before its run is known ([`prepare`]).
const PREPARED_NAME: &str = "starting";

/// A group made when a `run` command starts, taken by its first run.
static PREPARED: Mutex<Option<RunCgroup>> = Mutex::new(None);

/// Makes a group for the next run now, before the run's id is known, where that saves time:
/// on cgroup v1 the spawner's one move into it ([`super::spawner`]) waits for an RCU grace
/// period (about 5 ms here), which then passes while the host reads its plugins and the
/// experiment instead of before the first service starts. The first [`RunCgroup::create`]
/// takes it and renames it after its run (v1 allows renaming a group in place). Call
/// [`discard_prepared`] before the process ends.
pub fn prepare() {
    let Some(hierarchy) = hierarchy().filter(|h| !h.v2) else {
        return;
    };
    let group = RunCgroup::make(hierarchy, PREPARED_NAME);
    *PREPARED.lock().unwrap_or_else(|e| e.into_inner()) = group;
}

/// Removes the group [`prepare`] made if no run took it.
pub fn discard_prepared() {
    let unused = PREPARED.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(group) = unused {
        group.remove();
    }
}

/// A run id as a group's name: one path component.
fn group_name(run_id: &str) -> String {
    run_id
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '/' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl RunCgroup {
    /// Creates the run's group (or takes the one [`prepare`] made); `None` where this host
    /// cannot have cgroups.
    pub fn create(run_id: &str) -> Option<RunCgroup> {
        let hierarchy = hierarchy()?;
        let name = group_name(run_id);
        let prepared = PREPARED.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(group) = prepared {
            *group.rename_to.lock().unwrap_or_else(|e| e.into_inner()) = Some(name);
            return Some(group);
        }
        RunCgroup::make(hierarchy, &name)
    }

    /// Creates the group `name` in this host's folder of `hierarchy`.
    fn make(hierarchy: &Hierarchy, name: &str) -> Option<RunCgroup> {
        let dir = hierarchy
            .top
            .join(host_dir_name(Owner::current()))
            .join(name);
        // Another run of this host may be removing the (then empty) host folder right now.
        for _ in 0..3 {
            match fs::create_dir_all(&dir) {
                Ok(()) => {
                    let spawner = if hierarchy.v2 {
                        None
                    } else {
                        super::spawner::Spawner::start(&dir.join("tasks"))
                    };
                    return Some(RunCgroup {
                        dir: RwLock::new(dir),
                        rename_to: Mutex::new(None),
                        v2: hierarchy.v2,
                        spawner,
                    });
                }
                Err(err) => tracing::debug!("cannot create the cgroup {}: {err}", dir.display()),
            }
        }
        None
    }

    /// The group's folder.
    pub fn path(&self) -> PathBuf {
        self.dir.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The file a child writes `0` into to join (open it before forking).
    pub fn procs_file(&self) -> PathBuf {
        self.path().join("cgroup.procs")
    }

    /// Kills every process in the group and returns their pids; see [`kill_members`].
    pub fn kill_all(&self) -> Vec<u32> {
        kill_members(&self.path(), self.v2)
    }

    /// Gives a group made before its run the run's name (see [`RunCgroup::rename_to`]).
    fn take_run_name(&self) {
        let Some(name) = self
            .rename_to
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        let mut dir = self.dir.write().unwrap_or_else(|e| e.into_inner());
        let renamed = dir.with_file_name(&name);
        match fs::rename(&*dir, &renamed) {
            Ok(()) => *dir = renamed,
            Err(err) => tracing::debug!("cannot rename the cgroup {}: {err}", dir.display()),
        }
    }

    /// Spawns `command` from inside the group (v1), so that its process starts in it; gives
    /// the command back where no thread of the host is in the group, and the child must join
    /// by itself ([`RunCgroup::procs_file`]).
    pub fn spawn_inside(&self, command: std::process::Command) -> super::spawner::Answer {
        let answer = match &self.spawner {
            Some(spawner) => spawner.spawn(command),
            None => Err(Box::new(command)),
        };
        self.take_run_name();
        answer
    }

    /// Kills what is left and removes the group.
    pub fn remove(mut self) -> Vec<u32> {
        // The spawner thread leaves the group by ending.
        drop(self.spawner.take());
        let killed = self.kill_all();
        let dir = self.path();
        remove_dir(&dir);
        // The host folder goes with its last run (it stays while other runs use it).
        if let Some(parent) = dir.parent() {
            let _ = fs::remove_dir(parent);
        }
        killed
    }
}

/// The pids in a group, this host left out (on v1 a thread of the host may be a member;
/// see [`super::spawner`]).
pub fn members(dir: &Path) -> Vec<u32> {
    let me = std::process::id();
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|&pid| pid != me)
        .collect()
}

/// SIGKILLs every process in a group until it is empty (`cgroup.kill` where v2 has it,
/// which also reaches processes forking at that moment); returns the pids it saw.
pub fn kill_members(dir: &Path, v2: bool) -> Vec<u32> {
    let mut seen = Vec::new();
    if v2 {
        if let Ok(mut kill) = fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.kill"))
        {
            seen = members(dir);
            let _ = kill.write_all(b"1");
        }
    }
    // Zombies stay listed until reaped; they cannot run again, so they do not count.
    let running = || -> Vec<u32> {
        members(dir)
            .into_iter()
            .filter(|&pid| super::mark::stat(pid).is_some_and(|s| s.state != 'Z'))
            .collect()
    };
    for pid in super::kill::until_none(200, Duration::from_millis(2), running, |&pid| pid) {
        if !seen.contains(&pid) {
            seen.push(pid);
        }
    }
    seen
}

/// Removes an empty group, retrying while the kernel finishes taking processes out.
pub fn remove_dir(dir: &Path) {
    // Usually at once; a thread of the host that just left may take a moment longer.
    let mut pause = Duration::from_micros(500);
    for _ in 0..60 {
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => {
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(10));
            }
        }
    }
    tracing::debug!("the cgroup {} could not be removed", dir.display());
}
