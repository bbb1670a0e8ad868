//! Readiness checks for network environments: a TCP connection, a line of the captured
//! output, a file, a delay. `localhost`, `shadow_ns` and the Docker environments all wait for
//! their services with a [`Probe`]; only where a TCP connection is made from differs, and the
//! caller says that.

use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    net::{TcpStream, ToSocketAddrs},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::{Context, ProcessHandle, ReadyCheck, ServiceSpec};

/// One readiness check being polled.
pub struct Probe {
    check: ReadyCheck,
    started: Instant,
    log: LogWatch,
    pattern: Option<regex::Regex>,
    cwd: Option<PathBuf>,
}

impl Probe {
    /// A probe of `check` for `spec`, started now.
    pub fn new(spec: &ServiceSpec, check: &ReadyCheck) -> anyhow::Result<Probe> {
        let pattern = match check {
            ReadyCheck::Log { pattern } => {
                Some(regex::Regex::new(pattern).context("invalid `ready.log` pattern")?)
            }
            _ => None,
        };
        Ok(Probe {
            check: check.clone(),
            started: Instant::now(),
            log: LogWatch::new(&spec.log_dir, &spec.name),
            pattern,
            cwd: spec.cwd.clone(),
        })
    }

    /// Whether the check passes now. `tcp` decides a TCP check from its host and port (the
    /// environment knows where a host name leads).
    pub fn passes(&mut self, mut tcp: impl FnMut(&str, u16) -> bool) -> bool {
        match &self.check {
            ReadyCheck::Tcp { host, port } => tcp(host, *port),
            ReadyCheck::Log { .. } => self
                .log
                .matches(self.pattern.as_ref().expect("a log check has a pattern")),
            ReadyCheck::File { path } => match &self.cwd {
                Some(cwd) if path.is_relative() => cwd.join(path).exists(),
                _ => path.exists(),
            },
            ReadyCheck::Delay { delay } => self.started.elapsed() >= *delay,
        }
    }

    /// How long it has been polled.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The stderr capture file, for messages.
    pub fn stderr(&self) -> &Path {
        &self.log.stderr
    }

    /// Polls the check every 10 ms, with `tcp` deciding TCP checks as in [`Probe::passes`]
    /// (an error from it ends the wait), until it passes, the service's process `handle`
    /// ends, the run is cancelled or `timeout` has passed. The loop every environment whose
    /// services are processes of the host's command processor runs; the caller words a
    /// timeout, since only it knows where the check was made from.
    pub fn wait(
        &mut self,
        ctx: &Context,
        handle: ProcessHandle,
        service: &str,
        timeout: Duration,
        mut tcp: impl FnMut(&str, u16) -> anyhow::Result<bool>,
    ) -> anyhow::Result<Waited> {
        loop {
            let mut failed = None;
            let ready = self.passes(|host, port| {
                tcp(host, port).unwrap_or_else(|err| {
                    failed = Some(err);
                    false
                })
            });
            if let Some(err) = failed {
                return Err(err.context(format!("checking whether service `{service}` is ready")));
            }
            if ready {
                tracing::debug!(service, after = ?self.elapsed(), "ready");
                return Ok(Waited::Ready);
            }
            let state = ctx.status(handle)?;
            if state.is_finished() {
                anyhow::bail!(
                    "service `{service}` {state} before it was ready (see {})",
                    self.stderr().display()
                );
            }
            if ctx.is_cancelled() {
                anyhow::bail!("cancelled while waiting for service `{service}`");
            }
            if self.elapsed() >= timeout {
                return Ok(Waited::TimedOut);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// How [`Probe::wait`] ended, when neither the service's end nor a cancellation ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// The check passed.
    Ready,
    /// The timeout passed first.
    TimedOut,
}

/// Whether something accepts TCP connections on `host:port`.
pub fn tcp_open(host: &str, port: u16) -> bool {
    (host, port)
        .to_socket_addrs()
        .into_iter()
        .flatten()
        .any(|addr| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok())
}

/// What a failed check waited for, for messages.
pub fn describe(check: &ReadyCheck) -> String {
    match check {
        ReadyCheck::Tcp { host, port } => {
            format!("nothing accepted TCP connections on {host}:{port}")
        }
        ReadyCheck::Log { pattern } => format!("no output line matched `{pattern}`"),
        ReadyCheck::File { path } => format!("{} did not appear", path.display()),
        ReadyCheck::Delay { delay } => format!("delay of {delay:?}"),
    }
}

/// Reads a service's capture files as they grow, looking for a line that matches.
pub struct LogWatch {
    stdout: PathBuf,
    stderr: PathBuf,
    offsets: [u64; 2],
    partial: [String; 2],
}

impl LogWatch {
    /// Watches `<dir>/<name>.stdout` and `.stderr`.
    pub fn new(dir: &Path, name: &str) -> Self {
        LogWatch {
            stdout: dir.join(format!("{name}.stdout")),
            stderr: dir.join(format!("{name}.stderr")),
            offsets: [0, 0],
            partial: [String::new(), String::new()],
        }
    }

    /// Whether a complete line written since the last call matches.
    pub fn matches(&mut self, pattern: &regex::Regex) -> bool {
        let paths = [self.stdout.clone(), self.stderr.clone()];
        paths.iter().enumerate().any(|(i, path)| {
            let Ok(mut file) = File::open(path) else {
                return false;
            };
            if file.seek(SeekFrom::Start(self.offsets[i])).is_err() {
                return false;
            }
            let mut fresh = Vec::new();
            let Ok(n) = file.read_to_end(&mut fresh) else {
                return false;
            };
            self.offsets[i] += n as u64;
            self.partial[i].push_str(&String::from_utf8_lossy(&fresh));
            let text = std::mem::take(&mut self.partial[i]);
            let (complete, rest) = match text.rfind('\n') {
                Some(end) => text.split_at(end + 1),
                None => ("", text.as_str()),
            };
            let found = complete.lines().any(|line| pattern.is_match(line));
            self.partial[i] = rest.to_string();
            found
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_match_only_once_complete() {
        let dir = std::env::temp_dir().join(format!("panther-ready-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("s.stdout"), "starting\nlisten").unwrap();
        let mut watch = LogWatch::new(&dir, "s");
        let pattern = regex::Regex::new("^listening on").unwrap();
        assert!(!watch.matches(&pattern));
        std::fs::write(dir.join("s.stdout"), "starting\nlistening on 1\n").unwrap();
        assert!(watch.matches(&pattern));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
