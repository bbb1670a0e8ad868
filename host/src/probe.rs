//! Reading a plugin file's manifest in a short-lived child process, so that whatever the
//! file does while it is opened (a constructor that exits, aborts, crashes or hangs) costs
//! that file, never the host.
//!
//! The child is `panther-plugin-probe FILE` (a binary of this crate, see [`probe_binary`]).
//! Before dlopen it keeps its stdout for the protocol and points fd 1 at stderr (which the
//! parent discards), so nothing the plugin prints can be mistaken for an answer. It writes
//! one `stage …` line before each step ([`Stage`]) and ends with one `result {json}` line
//! ([`Answer`]). The parent ([`probe`]) turns an exit code, a signal, the time limit or an
//! unreadable answer into that file's [`LoadError`], naming the stage it happened in. A
//! hung child is killed with its whole process group.

use std::{
    io::{BufReader, Write},
    os::unix::process::{CommandExt, ExitStatusExt},
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    sync::{mpsc, Mutex},
    time::{Duration, Instant},
};

use panther_plugin_api::{abi, Manifest};
use serde::{Deserialize, Serialize};

use crate::{
    bounded_lines::MAX_LINE,
    loader::{self, LoadError, LoadErrorKind, Stage},
};

/// The probe binary's file name.
pub const PROBE_NAME: &str = "panther-plugin-probe";
/// Overrides where the probe binary is.
pub const PROBE_ENV: &str = "PANTHER_PROBE";
/// Overrides the time a probe may take (e.g. `500ms`, `10s`).
pub const PROBE_TIMEOUT_ENV: &str = "PANTHER_PROBE_TIMEOUT";
/// The time a probe may take unless [`PROBE_TIMEOUT_ENV`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How many probes run at once.
const PARALLEL: usize = 4;

const STAGE_PREFIX: &str = "stage ";
const LAYOUT_PREFIX: &str = "layout ";
const RESULT_PREFIX: &str = "result ";

/// A manifest read by a probe child.
#[derive(Debug, Clone)]
pub struct Probed {
    /// What the plugin says about itself.
    pub manifest: Manifest,
    /// The layout fingerprint the child checked the library against (its
    /// [`panther_plugin_api::abi::LAYOUT_FINGERPRINT`]), when it said so.
    pub layout: Option<u64>,
}

/// What the child answers on its `result` line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Answer {
    /// The file is a plugin and this is its manifest.
    Manifest(Manifest),
    /// The file is not a usable plugin.
    Error {
        /// The plugin's name, when its manifest could be read.
        plugin: Option<String>,
        /// Why.
        kind: LoadErrorKind,
    },
}

/// The probe binary: `$PANTHER_PROBE`, else `panther-plugin-probe` beside the running
/// executable, else one folder up (test binaries run from `target/debug/deps`). Programs
/// that embed the host ship the probe next to their own executable.
pub fn probe_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(PROBE_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{PROBE_ENV} names {}, which is not a file",
                path.display()
            ))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let candidates = [
        Some(dir.join(PROBE_NAME)),
        dir.parent().map(|d| d.join(PROBE_NAME)),
    ];
    candidates
        .iter()
        .flatten()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            format!(
                "{PROBE_NAME} is not beside {} nor one folder up; install it there or set {PROBE_ENV}",
                exe.display()
            )
        })
}

/// The time limit for one probe: [`PROBE_TIMEOUT_ENV`] when set and readable, else
/// [`DEFAULT_TIMEOUT`].
pub fn timeout_from_env() -> Duration {
    std::env::var(PROBE_TIMEOUT_ENV)
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// Probes every file, a few at a time; the results are in the order of `files`.
pub fn probe_all(
    files: &[PathBuf],
    probe_bin: &Path,
    timeout: Duration,
) -> Vec<Result<Probed, LoadError>> {
    let results: Vec<Mutex<Option<Result<Probed, LoadError>>>> =
        files.iter().map(|_| Mutex::new(None)).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = PARALLEL.min(files.len());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(file) = files.get(i) else { break };
                let result = probe(file, probe_bin, timeout);
                *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
            });
        }
    });
    results
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("every file was probed")
        })
        .collect()
}

/// What the parent saw of one child.
enum Line {
    Stage(String),
    Layout(u64),
    Result(String),
}

/// Reads one file's manifest in a `probe_bin` child, within `timeout`.
pub fn probe(file: &Path, probe_bin: &Path, timeout: Duration) -> Result<Probed, LoadError> {
    let fail = |kind| LoadError::new(file, kind);
    let mut command = Command::new(probe_bin);
    command
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Its own group, so a constructor's children are killed with it.
        .process_group(0);
    let parent = std::process::id();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // A probe dies with the host (a killed host leaves no hung constructor behind).
            // The thread that starts it waits for it, so the thread's end never comes first.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent as libc::pid_t {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|e| {
        fail(LoadErrorKind::NoProbe(format!(
            "cannot start {}: {}",
            probe_bin.display(),
            loader::io_reason(&e)
        )))
    })?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    // Not joined: a grandchild holding the pipe open must not block the host.
    std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        // A line past the cap ends the conversation: the answer is missing, and the child's
        // ending (or the time limit) says what happened.
        while let Ok(Some(line)) = crate::bounded_lines::read_line(&mut stdout, MAX_LINE) {
            let parsed = if let Some(stage) = line.strip_prefix(STAGE_PREFIX) {
                Line::Stage(stage.to_string())
            } else if let Some(Ok(layout)) = line.strip_prefix(LAYOUT_PREFIX).map(str::parse) {
                Line::Layout(layout)
            } else if let Some(json) = line.strip_prefix(RESULT_PREFIX) {
                Line::Result(json.to_string())
            } else {
                continue;
            };
            if tx.send(parsed).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut stage: Option<String> = None;
    let mut answer: Option<String> = None;
    let mut layout: Option<u64> = None;
    let timed_out = loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Line::Stage(s)) => stage = Some(s),
            Ok(Line::Layout(l)) => layout = Some(l),
            Ok(Line::Result(json)) => {
                answer = Some(json);
                break false;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break false,
            Err(mpsc::RecvTimeoutError::Timeout) => break true,
        }
    };
    if timed_out {
        crate::child_group::kill_group(&child);
        let _ = child.wait();
        return Err(fail(LoadErrorKind::Probe(format!(
            "did not answer within {}{}; it was stopped",
            seconds(timeout),
            while_in(stage.as_deref())
        ))));
    }
    let ended = wait_until(&child, deadline);
    // Whatever the plugin started is not ours to keep.
    crate::child_group::kill_group(&child);
    let status = match ended.then(|| child.wait().ok()).flatten() {
        Some(status) => status,
        None => {
            // Answered, then lingered: the answer stands.
            let _ = child.wait();
            if answer.is_none() {
                return Err(fail(LoadErrorKind::Probe(format!(
                    "did not exit within {}{}; it was stopped",
                    seconds(timeout),
                    while_in(stage.as_deref())
                ))));
            }
            std::process::ExitStatus::from_raw(0)
        }
    };
    if let Some(json) = answer {
        return match serde_json::from_str::<Answer>(&json) {
            Ok(Answer::Manifest(manifest)) => Ok(Probed { manifest, layout }),
            Ok(Answer::Error { plugin, kind }) => Err(LoadError {
                path: file.to_path_buf(),
                plugin,
                kind: Box::new(kind),
            }),
            Err(_) => Err(fail(LoadErrorKind::Probe(format!(
                "the probe answered something unreadable: {}",
                json.chars().take(80).collect::<String>()
            )))),
        };
    }
    let during = while_in(stage.as_deref());
    let constructor = if stage.as_deref() == Some(Stage::Loading.as_str()) {
        "its constructor "
    } else {
        ""
    };
    let what = if let Some(signal) = status.signal() {
        let name = crate::child_group::signal_name(signal);
        format!("killed by {name}{during}")
    } else {
        match status.code() {
            Some(code) => format!("{constructor}exited with code {code}{during}"),
            None => format!("ended without an answer{during}"),
        }
    };
    let what = if stage.is_none() {
        format!("the probe {what} before opening it")
    } else {
        what
    };
    Err(fail(LoadErrorKind::Probe(what)))
}

/// ` while loading`, or nothing before the first stage.
fn while_in(stage: Option<&str>) -> String {
    stage.map(|s| format!(" while {s}")).unwrap_or_default()
}

/// `5 s`, `500 ms`.
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Waits until the child has ended or `deadline` passed, without reaping it (see
/// [`crate::child_group`]).
fn wait_until(child: &std::process::Child, deadline: Instant) -> bool {
    loop {
        match crate::child_group::has_exited(child) {
            Some(false) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Some(false) => return false,
            Some(true) | None => return true,
        }
    }
}

/// The child's side: `panther-plugin-probe FILE`. Exits 0 after writing its answer, 2 on a
/// bad command line; any other ending is the plugin's doing.
pub fn serve() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(file), None) = (args.next(), args.next()) else {
        eprintln!("usage: {PROBE_NAME} FILE (run by panther-host to read a plugin's manifest)");
        return ExitCode::from(crate::exit_code::INVALID_INPUT);
    };
    // Keep the real stdout for the protocol; whatever the plugin prints goes to stderr.
    // Close-on-exec: a process the plugin starts must not hold the protocol pipe open.
    let Ok(protocol) = nix::fcntl::fcntl(1, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3)) else {
        return ExitCode::from(crate::exit_code::INTERNAL_ERROR);
    };
    if nix::unistd::dup2(2, 1).is_err() {
        return ExitCode::from(crate::exit_code::INTERNAL_ERROR);
    }
    // SAFETY: `protocol` is a fresh descriptor owned by nothing else.
    let mut out = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(protocol) };
    let path = PathBuf::from(file);
    let answer = {
        let mut stage = |s: Stage| {
            let _ = writeln!(out, "{STAGE_PREFIX}{}", s.as_str());
            let _ = out.flush();
        };
        match loader::open_and_describe(&path, &mut stage) {
            Ok(manifest) => {
                // The library's layout was checked against this program's.
                let _ = writeln!(out, "{LAYOUT_PREFIX}{}", abi::LAYOUT_FINGERPRINT);
                Answer::Manifest(manifest)
            }
            Err(err) => Answer::Error {
                plugin: err.plugin,
                kind: *err.kind,
            },
        }
    };
    let json = serde_json::to_string(&answer).expect("answers serialize");
    let _ = writeln!(out, "{RESULT_PREFIX}{json}");
    let _ = out.flush();
    // No exit handlers and no library destructors: the answer is given, nothing of the
    // plugin's needs to run any more.
    // SAFETY: `_exit` ends the process at once; nothing is left to be kept consistent.
    unsafe { libc::_exit(0) }
}
