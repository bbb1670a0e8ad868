//! The host side of one plugin server: starting it, calling it, serving what it asks of the
//! host, and noticing how it ended.
//!
//! One reader thread per server reads its stdout: answers are routed by id to the waiting
//! call, requests from the plugin (its context calls, from any of its threads and at any
//! time) are served by the instance's real host context. Calls that can block (running a
//! command, stopping a process) are served on a thread of their own so the answers to other
//! requests keep flowing. When the server's output ends, the reader reaps it and records why
//! it ended; every waiting call and every later call fails with that reason.

use std::{
    collections::HashMap,
    fs::File,
    io::{BufReader, Write},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    os::unix::process::{CommandExt, ExitStatusExt},
    path::Path,
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::{mpsc, Arc, Mutex, MutexGuard},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use abi_stable::std_types::{ROption, RResult, RStr, RString};
use panther_plugin_api::abi::HostContextBox;

use super::{
    wire::{self, ContextCall, Frame, InstanceKind, PluginCall, Reply},
    Limits, SERVE_COMMAND,
};
use crate::{bounded_lines::MAX_LINE, cache::FileKey};

/// The descriptor a server writes its frames to ([`super::serve`] reads it).
pub(super) const ANSWER_FD: i32 = 3;

/// How often a waiting call looks at the run's cancellation flag.
const CANCEL_POLL: Duration = Duration::from_millis(100);

/// How long a call may still take once the run is cancelled (Ctrl-C, SIGTERM). Teardown
/// calls made after the cancellation get as long, which covers a container engine's.
pub const CANCEL_GRACE: Duration = Duration::from_secs(15);

/// How long a server gets to exit after its instance was dropped and its input closed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// A plugin instance living in a plugin server.
pub struct Remote {
    shared: Arc<Shared>,
    limits: Limits,
    reader: Option<JoinHandle<()>>,
}

/// What the caller, the reader thread and the threads serving context calls share.
struct Shared {
    state: Mutex<State>,
    /// The server's stdin; `None` once closed.
    input: Mutex<Option<ChildStdin>>,
    child: Mutex<Child>,
    /// The instance's context, serving its requests; none while the server only answers
    /// module calls.
    ctx: Mutex<Option<HostContextBox>>,
}

struct State {
    next_id: u64,
    pending: HashMap<u64, mpsc::SyncSender<Reply>>,
    /// Why the server is gone, once it is: "was killed by SIGSEGV".
    ended: Option<String>,
}

impl Remote {
    /// Starts a server for the library `file` and builds the instance in it, with
    /// `config` (JSON) and `ctx` serving its requests.
    pub fn start(
        file: &Path,
        key: Option<FileKey>,
        kind: InstanceKind,
        instance: &str,
        config: &serde_json::Value,
        ctx: HostContextBox,
        limits: &Limits,
    ) -> Result<Remote, String> {
        let output_dir = ctx.output_dir().into_string();
        let max_log_level = ctx.max_log_level();
        // A server that answered module calls for this file has the library loaded already.
        let mut remote = match limits.pool.take(file) {
            Some(remote) => remote,
            None => Remote::connect(file, key, instance, limits)?,
        };
        remote.limits = limits.clone();
        *lock(&remote.shared.ctx) = Some(ctx);
        remote.call(PluginCall::New {
            kind,
            instance: instance.to_string(),
            config: config.to_string(),
            output_dir,
            max_log_level,
        })?;
        Ok(remote)
    }

    /// Makes one module call ([`PluginCall::Claims`], [`PluginCall::Validate`]) in a server
    /// with no instance for the library `file`: an idle one from the pool, else a new one,
    /// which goes back to the pool afterwards for the next question or the instance.
    pub fn module_call(
        file: &Path,
        key: Option<FileKey>,
        call: PluginCall,
        limits: &Limits,
    ) -> Reply {
        let mut remote = match limits.pool.take(file) {
            Some(remote) => remote,
            None => {
                let name = file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Remote::connect(file, key, &name, limits)?
            }
        };
        remote.limits = limits.clone();
        let reply = remote.call(call);
        if !remote.has_ended() {
            limits.pool.put(file, remote);
        }
        reply
    }

    /// Starts the server process and its reader thread. Until a context is set, the
    /// plugin's requests are refused (module calls get none).
    fn connect(
        file: &Path,
        key: Option<FileKey>,
        name: &str,
        limits: &Limits,
    ) -> Result<Remote, String> {
        let parent = std::process::id();
        // The server answers on descriptor 3 so that its stdout stays the host's: a plugin
        // printing (or a reporter writing to `-`) behaves as it does in process.
        let (answers, answer_end) =
            pipe().map_err(|e| format!("could not make a pipe for its plugin server: {e}"))?;
        let answer_fd = answer_end.as_raw_fd();
        let mut command = Command::new(&limits.server);
        command
            .arg(SERVE_COMMAND)
            .arg(file)
            .stdin(Stdio::piped())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            // Ctrl-C reaches the host, which tears down through the server; the server
            // itself must not die of it first.
            .process_group(0);
        // The server opens the file only if it is still the one whose manifest was read.
        if let Some(key) = key {
            command.arg(super::EXPECT_FLAG).arg(key.to_arg());
        }
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let moved = if answer_fd == ANSWER_FD {
                    libc::fcntl(ANSWER_FD, libc::F_SETFD, 0)
                } else {
                    libc::dup2(answer_fd, ANSWER_FD)
                };
                if moved < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The server dies with the host, and a crash leaves no core file behind.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != parent as libc::pid_t {
                    libc::_exit(1);
                }
                let none = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &none);
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| {
            format!(
                "could not start its plugin server {}: {e}",
                limits.server.display()
            )
        })?;
        // Only the server may hold the writing end, or its death would never show as EOF.
        drop(answer_end);
        let input = child.stdin.take();
        let output = File::from(answers);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next_id: 1,
                pending: HashMap::new(),
                ended: None,
            }),
            input: Mutex::new(input),
            child: Mutex::new(child),
            ctx: Mutex::new(None),
        });
        let reader = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("plugin-server-{name}"))
                .spawn(move || read(&shared, output))
                .map_err(|e| format!("could not start a thread for its plugin server: {e}"))?
        };
        Ok(Remote {
            shared,
            limits: limits.clone(),
            reader: Some(reader),
        })
    }

    /// Sends one call and waits for its answer, serving the instance's requests meanwhile
    /// (on the reader thread). A server that does not answer within the call limit is killed.
    pub fn call(&mut self, call: PluginCall) -> Reply {
        let (tx, rx) = mpsc::sync_channel(1);
        let id = {
            let mut state = lock(&self.shared.state);
            if let Some(why) = &state.ended {
                return Err(format!("its plugin server had already ended: it {why}"));
            }
            let id = state.next_id;
            state.next_id += 1;
            state.pending.insert(id, tx);
            id
        };
        let frame = Frame {
            id,
            call: Some(call),
            reply: None,
        };
        // A failed write means the server is gone: the reader notices and drops `tx`.
        let _ = send(&self.shared, &wire::line(&frame));
        let started = Instant::now();
        let mut deadline = started + self.limits.call.get();
        let mut cancelled = false;
        loop {
            let now = Instant::now();
            if now >= deadline {
                let waited = humantime::format_duration(Duration::from_secs(
                    (now - started).as_secs_f64().round() as u64,
                ));
                let why = if cancelled {
                    format!(
                        "did not answer within {waited} of the run being cancelled and was killed"
                    )
                } else {
                    format!("did not answer within {waited} and was killed")
                };
                self.kill(&why);
                return Err(format!("its plugin server {why}"));
            }
            match rx.recv_timeout((deadline - now).min(CANCEL_POLL)) {
                Ok(reply) => return reply,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // A cancelled run waits for a plugin that does not answer only so long.
                    let ctx = lock(&self.shared.ctx).clone();
                    if !cancelled && ctx.is_some_and(|c| c.is_cancelled()) {
                        cancelled = true;
                        deadline = deadline.min(Instant::now() + CANCEL_GRACE);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let state = lock(&self.shared.state);
                    let why = state.ended.as_deref().unwrap_or("ended");
                    return Err(format!("its plugin server {why}"));
                }
            }
        }
    }

    /// Kills the server, recording `why` as the reason it ended.
    fn kill(&self, why: &str) {
        {
            let mut state = lock(&self.shared.state);
            state.ended.get_or_insert_with(|| why.to_string());
            state.pending.clear();
        }
        // The whole group: what the plugin started itself goes with it. Nothing is sent
        // once the reader has reaped the server, so a reused pid is never signalled.
        crate::child_group::kill_group(&lock(&self.shared.child));
    }

    /// Whether the server is gone.
    pub fn has_ended(&self) -> bool {
        lock(&self.shared.state).ended.is_some()
    }
}

impl Drop for Remote {
    /// Drops the instance in the server (its own cleanup may still call the host), closes
    /// the server's input and waits for it to exit, killing it when it does not.
    fn drop(&mut self) {
        if !self.has_ended() {
            let _ = self.call(PluginCall::Drop);
        }
        lock(&self.shared.input).take();
        let deadline = Instant::now() + EXIT_GRACE;
        while !self.has_ended() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
        if !self.has_ended() {
            self.kill("did not exit after its instance was dropped and was killed");
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// A pipe whose ends are both closed on exec: (reading end, writing end).
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors, which are ours alone afterwards.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn send(shared: &Shared, line: &[u8]) -> std::io::Result<()> {
    match lock(&shared.input).as_mut() {
        Some(input) => input.write_all(line).and_then(|()| input.flush()),
        None => Err(std::io::ErrorKind::BrokenPipe.into()),
    }
}

/// The reader thread: routes answers, serves requests, and records how the server ended.
fn read(shared: &Arc<Shared>, output: File) {
    let mut garbage = None;
    let mut output = BufReader::new(output);
    loop {
        let line = match crate::bounded_lines::read_line(&mut output, MAX_LINE) {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(err) if err.kind() == std::io::ErrorKind::InvalidData => {
                garbage = Some(format!("wrote {err} on the plugin protocol and was killed"));
                break;
            }
            Err(_) => break,
        };
        let frame: Frame<ContextCall> = match serde_json::from_str(&line) {
            Ok(frame) => frame,
            Err(_) => {
                let shown: String = line.chars().take(80).collect();
                garbage = Some(format!(
                    "wrote something that is not the plugin protocol ({shown:?}) and was killed"
                ));
                break;
            }
        };
        match (frame.reply, frame.call) {
            (Some(reply), _) => {
                if let Some(waiting) = lock(&shared.state).pending.remove(&frame.id) {
                    let _ = waiting.send(reply);
                }
            }
            (None, Some(call)) => match lock(&shared.ctx).clone() {
                Some(ctx) => serve_context(shared, &ctx, frame.id, call),
                None => respond(
                    shared,
                    frame.id,
                    Err("the host offers no context while it describes a plugin".to_string()),
                ),
            },
            (None, None) => {}
        }
    }
    if let Some(why) = garbage {
        lock(&shared.state).ended.get_or_insert(why);
        crate::child_group::kill_group(&lock(&shared.child));
    }
    let status = reap(shared);
    let mut state = lock(&shared.state);
    state.ended.get_or_insert_with(|| describe(status));
    state.pending.clear();
}

/// Waits for the server to exit without holding its lock for long, so that a caller can
/// still kill it; a server that closed its output but lives on is killed after a while.
fn reap(shared: &Shared) -> Option<ExitStatus> {
    let deadline = Instant::now() + EXIT_GRACE;
    loop {
        {
            let mut child = lock(&shared.child);
            match crate::child_group::has_exited(&child) {
                // Exited, not reaped yet: end what it left in its group, then reap it.
                Some(true) => {
                    crate::child_group::kill_group(&child);
                    return child.wait().ok();
                }
                Some(false) if Instant::now() >= deadline => {
                    crate::child_group::kill_group(&child);
                    return child.wait().ok();
                }
                Some(false) => {}
                None => return None,
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// "was killed by SIGSEGV", "exited with code 7", "exited".
fn describe(status: Option<ExitStatus>) -> String {
    let Some(status) = status else {
        return "ended".to_string();
    };
    if let Some(signal) = status.signal() {
        let name = crate::child_group::signal_name(signal);
        return format!("was killed by {name}");
    }
    match status.code() {
        Some(0) => "exited".to_string(),
        Some(code) => format!("exited with code {code}"),
        None => "ended".to_string(),
    }
}

/// Serves one request of the plugin with its real context. Notifications (id 0) and quick
/// calls are served in order on the reader thread; calls that may block get a thread.
fn serve_context(shared: &Arc<Shared>, ctx: &HostContextBox, id: u64, call: ContextCall) {
    let blocking = matches!(
        call,
        ContextCall::RunCommand(_) | ContextCall::Stop(..) | ContextCall::Named(..)
    );
    if !blocking {
        if let Some(reply) = answer(ctx, call) {
            respond(shared, id, reply);
        }
        return;
    }
    let (waiting, ctx) = (Arc::clone(shared), ctx.clone());
    let spawned = thread::Builder::new()
        .name("plugin-context".to_string())
        .spawn(move || {
            if let Some(reply) = answer(&ctx, call) {
                respond(&waiting, id, reply);
            }
        });
    if let Err(err) = spawned {
        // The plugin waits for this answer: it gets one, rather than waiting out its limit.
        respond(
            shared,
            id,
            Err(format!(
                "the host could not serve the request: no thread: {err}"
            )),
        );
    }
}

fn respond(shared: &Shared, id: u64, reply: Reply) {
    if id == 0 {
        return;
    }
    let frame: Frame<PluginCall> = Frame {
        id,
        call: None,
        reply: Some(reply),
    };
    let _ = send(shared, &wire::line(&frame));
}

/// What the real context answers; `None` for notifications.
fn answer(ctx: &HostContextBox, call: ContextCall) -> Option<Reply> {
    fn text(r: RResult<RString, RString>) -> Reply {
        r.into_result()
            .map(|s| Some(s.into_string()))
            .map_err(RString::into_string)
    }
    Some(match call {
        ContextCall::Log(level, target, message) => {
            ctx.log(level, RStr::from_str(&target), RStr::from_str(&message));
            return None;
        }
        ContextCall::EmitEvent(event) => {
            ctx.emit_event(RStr::from_str(&event));
            return None;
        }
        ContextCall::IsCancelled => Ok(Some(ctx.is_cancelled().to_string())),
        ContextCall::RunCommand(command) => text(ctx.run_command(RStr::from_str(&command))),
        ContextCall::Spawn(command) => ctx
            .spawn(RStr::from_str(&command))
            .into_result()
            .map(|h| Some(h.to_string()))
            .map_err(RString::into_string),
        ContextCall::ProcessId(handle) => ctx
            .process_id(handle)
            .into_result()
            .map(|pid| Some(pid.to_string()))
            .map_err(RString::into_string),
        ContextCall::ProcessStatus(handle) => text(ctx.process_status(handle)),
        ContextCall::Stop(handle, grace_ms) => text(ctx.stop(handle, grace_ms)),
        ContextCall::Named(name, payload) => ctx
            .call(RStr::from_str(&name), RStr::from_str(&payload))
            .into_result()
            .map(|o| match o {
                ROption::RSome(s) => Some(s.into_string()),
                ROption::RNone => None,
            })
            .map_err(RString::into_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings_are_named() {
        assert_eq!(
            describe(Some(ExitStatus::from_raw(libc::SIGSEGV))),
            "was killed by SIGSEGV"
        );
        assert_eq!(
            describe(Some(ExitStatus::from_raw(7 << 8))),
            "exited with code 7"
        );
        assert_eq!(describe(None), "ended");
    }
}

/// Idle plugin servers with no instance, by library: what validation started, kept for the
/// next question about the same plugin and for its first instance, so an isolated run starts
/// one server per instance rather than one per call. Dropping the pool stops them.
#[derive(Default)]
pub struct Pool {
    /// By plugin file and by the thread that started the server: a server dies with the
    /// thread that forked it (`PR_SET_PDEATHSIG`), so it must not serve another thread's
    /// run, which could outlive it (a job's runners end one by one).
    idle: Mutex<HashMap<(std::path::PathBuf, thread::ThreadId), Vec<Remote>>>,
}

impl Pool {
    fn take(&self, file: &Path) -> Option<Remote> {
        let mut idle = lock(&self.idle);
        let remote = idle
            .get_mut(&(file.to_path_buf(), thread::current().id()))?
            .pop();
        remote.filter(|r| !r.has_ended())
    }

    fn put(&self, file: &Path, mut remote: Remote) {
        // An idle server holds no reference to the pool it waits in, or neither would ever
        // be dropped (and the server never stopped); `take` gives it the caller's limits.
        remote.limits.pool = Arc::default();
        lock(&self.idle)
            .entry((file.to_path_buf(), thread::current().id()))
            .or_default()
            .push(remote);
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = lock(&self.idle);
        f.debug_struct("Pool")
            .field("idle", &idle.values().map(Vec::len).sum::<usize>())
            .finish()
    }
}
