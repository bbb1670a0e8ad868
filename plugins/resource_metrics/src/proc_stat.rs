//! Reading one process tree's resource usage from `/proc`.

use std::fs;

/// The summed usage of a process tree at one instant.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Usage {
    /// Live processes in the tree.
    pub processes: u32,
    /// User + system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// `read_bytes` from `/proc/PID/io`.
    pub read_bytes: u64,
    /// `write_bytes` from `/proc/PID/io`.
    pub write_bytes: u64,
    /// Threads.
    pub threads: u32,
    /// Open file descriptors.
    pub open_fds: u32,
    /// Bytes received on the namespace's interfaces.
    pub net_rx: u64,
    /// Bytes sent on the namespace's interfaces.
    pub net_tx: u64,
}

/// The usage of `root` and all its descendants, or `None` once `root` is gone.
pub fn tree_usage(root: u32) -> Option<Usage> {
    let ticks = clock_ticks();
    let page = page_size();
    let mut usage = Usage::default();
    let mut pending = vec![root];
    let mut root_seen = false;
    while let Some(pid) = pending.pop() {
        let Some(stat) = Stat::read(pid) else {
            continue;
        };
        if stat.state == 'Z' {
            continue;
        }
        root_seen |= pid == root;
        usage.processes += 1;
        usage.cpu_seconds += (stat.utime + stat.stime) as f64 / ticks;
        usage.rss_bytes += stat.rss_pages * page;
        usage.threads += stat.threads;
        let (read, write) = io_bytes(pid);
        usage.read_bytes += read;
        usage.write_bytes += write;
        usage.open_fds += fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count() as u32)
            .unwrap_or(0);
        pending.extend(children(pid));
    }
    if !root_seen {
        return None;
    }
    let (rx, tx) = net_dev(root);
    usage.net_rx = rx;
    usage.net_tx = tx;
    Some(usage)
}

struct Stat {
    state: char,
    utime: u64,
    stime: u64,
    threads: u32,
    rss_pages: u64,
}

impl Stat {
    /// Parses `/proc/PID/stat`; the command name may contain spaces and parentheses, so
    /// fields are counted from the last `)`.
    fn read(pid: u32) -> Option<Stat> {
        let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &text[text.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
        // After the name: state(0) ppid(1) ... utime(11) stime(12) ... num_threads(17) ... rss(21)
        Some(Stat {
            state: fields.first()?.chars().next()?,
            utime: fields.get(11)?.parse().ok()?,
            stime: fields.get(12)?.parse().ok()?,
            threads: fields.get(17)?.parse().ok()?,
            rss_pages: fields.get(21)?.parse().ok()?,
        })
    }
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_ascii_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

fn io_bytes(pid: u32) -> (u64, u64) {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/io")) else {
        return (0, 0);
    };
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("read_bytes:"), field("write_bytes:"))
}

/// Bytes received and sent on every interface but `lo` of the process's namespace.
fn net_dev(pid: u32) -> (u64, u64) {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/net/dev")) else {
        return (0, 0);
    };
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            if name.trim() == "lo" {
                return None;
            }
            let c: Vec<u64> = counters
                .split_ascii_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            Some((*c.first()?, *c.get(8)?))
        })
        .fold((0, 0), |(rx, tx), (r, t)| (rx + r, tx + t))
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_tree() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let usage = tree_usage(std::process::id()).expect("this process exists");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            usage.processes >= 2,
            "this test process and its sleep: {usage:?}"
        );
        assert!(usage.rss_bytes > 1024 * 1024, "{usage:?}");
        assert!(usage.threads >= 2, "{usage:?}");
        assert!(usage.open_fds >= 3, "{usage:?}");
        assert!(tree_usage(u32::MAX - 1).is_none());
    }
}
