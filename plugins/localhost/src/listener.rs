//! Whose is the socket a TCP readiness check connected to?
//!
//! A server left running by an earlier run (its host was killed) may still listen on the
//! port; the new server then cannot bind, and a bare connection test would pass against the
//! old one. The host marks every process of a run with `PANTHER_RUN_ID` in its environment,
//! so the listening socket can be traced (`/proc/net/tcp*` gives its inode, `/proc/*/fd` the
//! processes holding it) to processes whose mark is, or is not, the service's own run.

use std::fs;

const RUN_ID: &str = "PANTHER_RUN_ID";

/// What is known about the listener on a port.
#[derive(Debug, PartialEq, Eq)]
pub enum Owner {
    /// Held by a process of the same run as `leader`, or by an unmarked program, or it
    /// cannot be told (another network namespace, unreadable `/proc`, an unmarked service).
    OursOrUnknown,
    /// Held only by processes of other runs: these pids.
    Others(Vec<u32>),
    /// The service's process has ended (whatever listens, it is not the service).
    LeaderEnded,
}

/// Who holds the listening socket on `port`, seen from the service led by `leader`.
pub fn owner(port: u16, leader: u32) -> Owner {
    if !running(leader) {
        return Owner::LeaderEnded;
    }
    // Right after it was started, the leader may still be inside `execve`, when its
    // environment reads empty: it is read again for a moment.
    let mut run = run_of(leader);
    for _ in 0..50 {
        if run.is_some() {
            break;
        }
        if !running(leader) {
            return Owner::LeaderEnded;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
        run = run_of(leader);
    }
    let Some(run) = run else {
        return if running(leader) {
            Owner::OursOrUnknown
        } else {
            Owner::LeaderEnded
        };
    };
    // `/proc/net/tcp*` is read in chunks and may miss a socket while others come and go (a
    // busy machine): a listener that was just connected to is looked for a few times.
    let mut holders = Vec::new();
    for _ in 0..5 {
        let inodes = listening_inodes(port);
        if !inodes.is_empty() {
            holders = self::holders(&inodes);
            if !holders.is_empty() {
                break;
            }
        }
    }
    // An unmarked holder may be the service's own doing (a proxy such as docker-proxy):
    // only a listener held by other runs alone is refused.
    let refused = !holders.is_empty()
        && holders
            .iter()
            .all(|&pid| run_of(pid).is_some_and(|other| other != run));
    if refused {
        Owner::Others(holders)
    } else {
        Owner::OursOrUnknown
    }
}

/// Whether a process exists and has not ended (a zombie has ended, and reads no environment).
fn running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X')
    })
}

/// The run mark of a process.
fn run_of(pid: u32) -> Option<String> {
    let environ = fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ.split(|&b| b == 0).find_map(|var| {
        let text = std::str::from_utf8(var).ok()?;
        text.strip_prefix(RUN_ID)?
            .strip_prefix('=')
            .map(String::from)
    })
}

/// Inodes of the sockets in LISTEN state on `port`, IPv4 and IPv6.
fn listening_inodes(port: u16) -> Vec<u64> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if *state == "0A" && local_port == Some(port) {
                if let Ok(inode) = inode.parse() {
                    inodes.push(inode);
                }
            }
        }
    }
    inodes
}

/// Processes that hold one of these socket inodes.
fn holders(inodes: &[u64]) -> Vec<u32> {
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|fd| {
                    fs::read_link(fd.path())
                        .is_ok_and(|target| wanted.iter().any(|w| target.as_os_str() == w.as_str()))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn a_listener_of_an_unmarked_program_is_not_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // The test process holds the socket and carries no mark (as a proxy would not).
        let mut service = std::process::Command::new("sleep")
            .arg("30")
            .env(RUN_ID, "unit-listener")
            .spawn()
            .unwrap();
        assert_eq!(owner(port, service.id()), Owner::OursOrUnknown);
        service.kill().unwrap();
        service.wait().unwrap();
    }
}
