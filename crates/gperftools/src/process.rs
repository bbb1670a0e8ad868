//! What `/proc` tells about the processes of a profiled service: the process tree, where a
//! library is mapped, and which file name gperftools will pick in each process.
//!
//! gperftools names its output after an environment variable (`CPUPROFILE`, `HEAPPROFILE`).
//! The first process that reads it uses the name as is and sets the high bit of the value's
//! first byte in its own environment; processes started from there inherit the marked value
//! and append `_<pid>` instead. The mark is visible in `/proc/PID/environ`, so the name a
//! process will write to can be known before it writes anything.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use crate::library::LibraryMatcher;
use crate::maps::parse_maps;

/// One incarnation of a process: a pid with the kernel's start time (ticks after boot), so a
/// reused pid is never taken for the process that had it before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessId {
    /// Process id.
    pub pid: u32,
    /// Start time, clock ticks after boot.
    pub start_time: u64,
}

impl ProcessId {
    /// The process with this pid now, if there is one that has not ended.
    pub fn of(pid: u32) -> Option<Self> {
        let stat = Stat::read(pid)?;
        (stat.state != 'Z').then_some(ProcessId {
            pid,
            start_time: stat.start_time,
        })
    }

    /// Whether this very process still runs (not ended, not a zombie, pid not reused).
    pub fn alive(&self) -> bool {
        ProcessId::of(self.pid).is_some_and(|now| now == *self)
    }
}

/// The fields of `/proc/PID/stat` used here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// State letter (`R`, `S`, `Z`, …).
    pub state: char,
    /// Parent pid.
    pub ppid: u32,
    /// Start time, clock ticks after boot.
    pub start_time: u64,
}

impl Stat {
    /// Reads `/proc/PID/stat`; `None` when the process is gone.
    pub fn read(pid: u32) -> Option<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Self::parse(&text)
    }

    fn parse(text: &str) -> Option<Self> {
        // The command name is in parentheses and may contain anything, even ") ".
        let mut fields = text.rsplit_once(')')?.1.split_whitespace();
        let state = fields.next()?.chars().next()?;
        let ppid = fields.next()?.parse().ok()?;
        // Fields 5 to 21 (1-based) come before the start time, field 22.
        let start_time = fields.nth(17)?.parse().ok()?;
        Some(Stat {
            state,
            ppid,
            start_time,
        })
    }
}

/// The direct children of `pid` (of every thread of it).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out: Vec<u32> = tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// `root` and all its descendants, parents before their children, each with its parent in
/// the tree (`None` for the root).
pub fn tree(root: u32) -> Vec<(u32, Option<u32>)> {
    let mut out = vec![(root, None)];
    let mut next = 0;
    while let Some(&(pid, _)) = out.get(next) {
        next += 1;
        for child in children(pid) {
            if !out.iter().any(|(p, _)| *p == child) {
                out.push((child, Some(pid)));
            }
        }
    }
    out
}

/// Whether `ancestor` is a (strict) ancestor of `pid`, following parent links.
pub fn is_ancestor(ancestor: u32, pid: u32) -> bool {
    let mut current = pid;
    for _ in 0..4096 {
        match Stat::read(current) {
            Some(stat) if stat.ppid == ancestor => return true,
            Some(stat) if stat.ppid > 1 && stat.ppid != current => current = stat.ppid,
            _ => return false,
        }
    }
    false
}

/// The command line of a process, one element per argument; `None` when it is gone (or a
/// zombie, whose command line is empty).
pub fn cmdline(pid: u32) -> Option<Vec<Vec<u8>>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let raw = raw.strip_suffix(&[0]).unwrap_or(&raw);
    (!raw.is_empty()).then(|| raw.split(|&b| b == 0).map(<[u8]>::to_vec).collect())
}

/// How a process runs a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runs {
    /// Its command line is the command.
    Exactly,
    /// Its command line is one more word followed by the command: an interpreter running a
    /// script with a `#!` line (or a one-word wrapper such as `nice` before it replaced
    /// itself with the command).
    AfterOneWord,
}

/// Whether a process runs `argv`, and how. A wrapper that runs `argv` as its child (`strace
/// -f -o trace -- prog`, `env X=1 prog`) has more words of its own, so it does not.
pub fn runs_argv(pid: u32, argv: &[String]) -> Option<Runs> {
    let line = cmdline(pid)?;
    let same = |line: &[Vec<u8>]| {
        line.len() == argv.len() && line.iter().zip(argv).all(|(a, b)| a == b.as_bytes())
    };
    if argv.is_empty() {
        None
    } else if same(&line) {
        Some(Runs::Exactly)
    } else if line.split_first().is_some_and(|(_, rest)| same(rest)) {
        Some(Runs::AfterOneWord)
    } else {
        None
    }
}

/// The process of the tree under `root` that runs `argv`: the first (parents before
/// children) that runs it exactly, else the first that runs it after one word.
pub fn find_running(root: u32, argv: &[String]) -> Option<u32> {
    let mut after_one_word = None;
    for (pid, _) in tree(root) {
        match runs_argv(pid, argv) {
            Some(Runs::Exactly) => return Some(pid),
            Some(Runs::AfterOneWord) if after_one_word.is_none() => after_one_word = Some(pid),
            _ => {}
        }
    }
    after_one_word
}

/// The processes from `root` down to the parent of `pid`: the wrappers around it.
pub fn ancestors_below(root: u32, pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut current = pid;
    while current != root {
        match Stat::read(current) {
            Some(stat) if stat.ppid > 1 && !out.contains(&stat.ppid) => {
                out.push(stat.ppid);
                current = stat.ppid;
            }
            _ => return Vec::new(),
        }
    }
    out.reverse();
    out
}

/// The lowest address at which the library is mapped in `pid`, or `None` when it is not
/// (yet) mapped or the process is gone. A forked child that has not called `exec` has the
/// library at the same address as its parent; after `exec` it is almost surely elsewhere.
pub fn library_base(pid: u32, library: &LibraryMatcher) -> Option<u64> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    parse_maps(&maps)
        .iter()
        .filter(|m| library.matches(&m.path))
        .map(|m| m.start)
        .min()
}

/// The program a process runs (`/proc/PID/exe`).
pub fn exe(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// The raw value of a variable in the environment the process was started with, as it is now
/// in its memory (with gperftools' mark, when set).
pub fn environ_var(pid: u32, name: &str) -> Option<Vec<u8>> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{name}=");
    environ
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
        .map(<[u8]>::to_vec)
}

/// The path gperftools' `GetUniquePathFromEnv` makes of a variable's raw value in process
/// `pid`: the value itself when unmarked, else the value without its mark, then `_<pid>`.
pub fn unique_path(raw: &[u8], pid: u32) -> Option<PathBuf> {
    let (&first, rest) = raw.split_first()?;
    let mut bytes = Vec::with_capacity(raw.len() + 11);
    bytes.push(first & 0x7f);
    bytes.extend_from_slice(rest);
    if first & 0x80 != 0 {
        bytes.extend_from_slice(format!("_{pid}").as_bytes());
    }
    Some(PathBuf::from(OsString::from_vec(bytes)))
}

/// The path gperftools will use in `pid` for the variable `name`, when it is set there and
/// the process has not read it yet (the CPU profiler with `CPUPROFILESIGNAL` reads it at the
/// first signal).
pub fn profile_path_in(pid: u32, name: &str) -> Option<PathBuf> {
    unique_path(&environ_var(pid, name)?, pid)
}

/// The path used by a process that read the variable when it started, as the heap profiler
/// does: its own mark is then no clue (it set it itself), but the mark it inherited is the one
/// its parent has now. A process that runs the profiler marks its value before its `main`, so
/// before it can start any child; one that does not never changes it. Without a parent in the
/// tree (the service's first process, started by the host), the value was unmarked.
pub fn path_read_at_start(pid: u32, parent: Option<u32>, name: &str) -> Option<PathBuf> {
    let mut raw = environ_var(pid, name)?;
    let inherited_mark = parent
        .and_then(|parent| environ_var(parent, name))
        .is_some_and(|value| is_marked(&value));
    let first = raw.first_mut()?;
    if inherited_mark {
        *first |= 0x80;
    } else {
        *first &= 0x7f;
    }
    unique_path(&raw, pid)
}

/// Whether the environment variable's value has been marked by gperftools in that process
/// (it read it, so processes started from it from now on get `_<pid>` names).
pub fn is_marked(raw: &[u8]) -> bool {
    raw.first().is_some_and(|b| b & 0x80 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_survives_odd_command_names() {
        let text = "42 (a) b (c) S 7 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        let stat = Stat::parse(text).expect("parses");
        assert_eq!(
            stat,
            Stat {
                state: 'S',
                ppid: 7,
                start_time: 12345
            }
        );
    }

    #[test]
    fn unique_paths_follow_the_mark() {
        assert_eq!(
            unique_path(b"/t/cpu.prof", 9),
            Some(PathBuf::from("/t/cpu.prof"))
        );
        let mut marked = b"/t/cpu.prof".to_vec();
        marked[0] |= 0x80;
        assert!(is_marked(&marked));
        assert_eq!(
            unique_path(&marked, 9),
            Some(PathBuf::from("/t/cpu.prof_9"))
        );
        assert_eq!(unique_path(b"", 9), None);
    }

    #[test]
    fn this_process_is_alive_and_in_its_own_tree() {
        let me = ProcessId::of(std::process::id()).expect("self");
        assert!(me.alive());
        let stale = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!stale.alive(), "another incarnation of the pid");
        let child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep");
        let found = tree(std::process::id());
        assert!(found.contains(&(child.id(), Some(std::process::id()))));
        assert!(is_ancestor(std::process::id(), child.id()));
        // Right after the spawn, the command line may not be readable yet.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while cmdline(child.id()).is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let argv = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        assert_eq!(
            runs_argv(child.id(), &argv(&["sleep", "5"])),
            Some(Runs::Exactly)
        );
        assert_eq!(
            runs_argv(child.id(), &argv(&["5"])),
            Some(Runs::AfterOneWord)
        );
        assert_eq!(runs_argv(child.id(), &argv(&["sleep"])), None);
        assert_eq!(runs_argv(child.id(), &[]), None);
        assert_eq!(
            ancestors_below(std::process::id(), child.id()),
            [std::process::id()]
        );
        assert_eq!(ancestors_below(child.id(), child.id()), Vec::<u32>::new());
        let mut child = child;
        child.kill().ok();
        child.wait().ok();
        let path = environ_var(std::process::id(), "PATH").expect("PATH");
        assert_eq!(
            path_read_at_start(std::process::id(), None, "PATH"),
            Some(PathBuf::from(OsString::from_vec(path)))
        );
        assert!(exe(std::process::id()).is_some());
    }
}
