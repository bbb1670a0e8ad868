//! Named network namespaces (`/run/netns/NAME`, as `ip netns` makes them), entering them
//! from a thread, TUN devices inside them, and removing them — also those of runs that were
//! killed.
//!
//! Names are `psns-<pid>.<start>-<seq>-<host>`: the process id and start time (in clock ticks
//! since boot) of the `panther-host` that made them, a counter of its runs, and the host.
//! A namespace whose owner is gone is stale.

use std::{
    fs::File,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{bail, Context as _};
use nix::{
    mount::{umount2, MntFlags},
    sched::{setns, CloneFlags},
    sys::signal::{kill, Signal},
    unistd::Pid,
};

/// Every namespace this plugin makes starts with this.
pub const PREFIX: &str = "psns-";
/// Where named namespaces live.
pub const NETNS_DIR: &str = "/run/netns";
/// Files bind-mounted over `/etc` inside a namespace by `ip netns exec`.
pub const ETC_NETNS_DIR: &str = "/etc/netns";
/// The TUN device in each namespace.
pub const TUN_NAME: &str = "psns0";

static RUNS: AtomicU32 = AtomicU32::new(0);

/// The owner part of this process's namespace names: `<pid>.<start>`.
pub fn owner_tag() -> String {
    let pid = std::process::id();
    format!("{pid}.{}", start_time(pid).unwrap_or(0))
}

/// The name prefix for one run of this process: `psns-<pid>.<start>-<seq>-`.
pub fn run_prefix() -> String {
    format!(
        "{PREFIX}{}-{}-",
        owner_tag(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    )
}

/// A process's start time in clock ticks since boot (field 22 of `/proc/PID/stat`), and
/// whether it has ended (a zombie counts as ended).
fn stat(pid: u32) -> Option<(u64, bool)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    // After the command: state is field 3, start time field 22.
    let state = *fields.first()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state == "Z" || state == "X"))
}

fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|(start, _)| start)
}

/// The owner of a namespace of ours: `(pid, start)`, from its name.
pub fn owner_of(name: &str) -> Option<(u32, u64)> {
    let rest = name.strip_prefix(PREFIX)?;
    let (owner, _) = rest.split_once('-')?;
    let (pid, start) = owner.split_once('.')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

/// Whether the process that made a namespace still runs.
pub fn owner_alive(pid: u32, start: u64) -> bool {
    matches!(stat(pid), Some((s, false)) if s == start)
}

/// Every namespace whose name starts with `prefix`.
pub fn list(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(NETNS_DIR)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The path of a named namespace.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Runs `f` on a new thread that has entered the namespace, and returns its result. The
/// calling thread's namespace is untouched.
pub fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
    let ns = File::open(path(name)).with_context(|| format!("opening namespace {name}"))?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("entering namespace {name}"))?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|_| bail!("a thread in namespace {name} panicked"))
    })
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// Creates the TUN device `ifname` inside namespace `name` (layer 3, no packet information
/// header) and returns its non-blocking file descriptor. The device goes away when the
/// descriptor is closed.
pub fn open_tun(name: &str, ifname: &str) -> anyhow::Result<OwnedFd> {
    let device = ifname.to_string();
    let ifname = device.clone();
    in_netns(name, move || -> anyhow::Result<OwnedFd> {
        // The device belongs to the namespace the descriptor was opened in.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .context("opening /dev/net/tun")?;
        let fd: OwnedFd = file.into();
        // SAFETY: `ifreq` is plain data; zeroed is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(ifname.bytes().take(15)) {
            *dst = src as libc::c_char;
        }
        req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads an `ifreq` through the pointer, which outlives the call.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error()).context("TUNSETIFF");
        }
        // SAFETY: plain fcntl calls on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        Ok(fd)
    })?
    .with_context(|| format!("creating TUN device {device} in namespace {name}"))
}

/// The processes whose network namespace is `name`.
pub fn pids_in(name: &str) -> Vec<u32> {
    let Ok(target) = std::fs::metadata(path(name)) else {
        return Vec::new();
    };
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| {
                    std::fs::metadata(format!("/proc/{pid}/ns/net"))
                        .is_ok_and(|m| m.ino() == target.ino() && m.dev() == target.dev())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Kills every process left in a namespace; returns how many there were.
pub fn kill_all_in(name: &str) -> usize {
    let pids = pids_in(name);
    for &pid in &pids {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    pids.len()
}

/// Removes a named namespace the way `ip netns delete` does (detach its bind mount, remove
/// the file) and its `/etc/netns` folder. Nothing to do is not an error.
pub fn delete(name: &str) -> anyhow::Result<()> {
    if name.contains('/') || !name.starts_with(PREFIX) {
        bail!("refusing to delete namespace `{name}`: not one of ours");
    }
    let p = path(name);
    match umount2(&p, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e).with_context(|| format!("unmounting {}", p.display())),
    }
    match std::fs::remove_file(&p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
    }
    let etc = Path::new(ETC_NETNS_DIR).join(name);
    match std::fs::remove_dir_all(&etc) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", etc.display())),
    }
    Ok(())
}

/// Writes `/etc/netns/<name>/hosts`, which `ip netns exec` mounts over `/etc/hosts` for the
/// processes it starts: every host's name resolves to its address.
pub fn write_hosts_file(
    name: &str,
    entries: &[(String, std::net::Ipv4Addr)],
) -> anyhow::Result<()> {
    let dir = Path::new(ETC_NETNS_DIR).join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut text =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (host, addr) in entries {
        text.push_str(&format!("{addr}\t{host}\n"));
    }
    std::fs::write(dir.join("hosts"), text)
        .with_context(|| format!("writing {}/hosts", dir.display()))
}

/// Finds a program on `PATH`, then in the usual system folders (`ip` is in `/usr/sbin`,
/// which a user's `PATH` may lack).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Why this process cannot build namespaces, or `None` when it can. Creates nothing: reads
/// its capabilities, opens `/dev/net/tun` without attaching a device, looks for `ip`.
pub fn emulation_unavailable() -> Option<String> {
    let mut missing = Vec::new();
    let caps = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    for (bit, name) in [
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
    ] {
        if caps & (1 << bit) == 0 {
            missing.push(format!("the {name} capability (run as root)"));
        }
    }
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
    {
        Ok(_) => {}
        Err(e) => missing.push(format!(
            "a usable /dev/net/tun ({e}; in a container: --device /dev/net/tun)"
        )),
    }
    if find_program("ip").is_none() {
        missing.push("the `ip` program (apt-get install iproute2)".into());
    }
    if missing.is_empty() {
        None
    } else {
        Some(missing.join(", "))
    }
}

/// The raw descriptor's duplicate as a `File`, for reading and writing packets.
pub fn as_file(fd: &OwnedFd) -> anyhow::Result<File> {
    let dup = fd.try_clone().context("duplicating a TUN descriptor")?;
    // SAFETY: `dup` is a fresh descriptor we own; the File takes it over.
    Ok(unsafe { File::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(dup)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_read_back_from_names() {
        let prefix = run_prefix();
        let name = format!("{prefix}host-1");
        let (pid, start) = owner_of(&name).unwrap();
        assert_eq!(pid, std::process::id());
        assert!(owner_alive(pid, start));
        assert!(
            !owner_alive(pid, start + 1),
            "another start time is another process"
        );
        assert_eq!(owner_of("psns-x"), None);
        assert_eq!(owner_of("other-1.2-0-a"), None);
    }

    #[test]
    fn only_our_namespaces_are_deleted() {
        assert!(delete("lo").is_err());
        assert!(delete("psns-../../etc").is_err());
        delete("psns-0.0-0-never-made").unwrap();
    }
}
