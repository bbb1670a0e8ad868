//! The plugin server: `panther-host __serve-plugin FILE`, one plugin instance in a process of
//! its own.
//!
//! The host's calls arrive on stdin and the server answers on descriptor 3; stdout and stderr
//! are the host's own, so a plugin that prints (or a reporter that writes to `-`) behaves as
//! it does in process. Before anything is loaded both protocol descriptors move to private
//! numbers that are closed on exec, and stdin becomes `/dev/null`: nothing the plugin starts
//! can read the protocol or keep it open after the server died. A reader thread routes the
//! host's answers to the plugin threads waiting for them and hands calls to the main thread,
//! which runs them one after the other on the instance.

use std::{
    collections::HashMap,
    fs::File,
    io::{BufRead, Write},
    os::fd::FromRawFd,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex, MutexGuard,
    },
    thread,
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, RErr, RNone, ROk, ROption, RResult, RSome, RStr, RString},
};
use panther_plugin_api::abi::{HostContextBox, HostContextFfi, HostContextFfi_TO};

use super::wire::{self, ContextCall, Frame, InstanceKind, PluginCall, Reply};
use crate::{
    cache::FileKey,
    exit_code::{INTERNAL_ERROR, OK},
    instance::{ExecutionEnvironment, NetworkEnvironment, Reporter},
    loader::{self, LoadError, LoadErrorKind, LoadedPlugin},
};
use panther_plugin_api::__private::ValidateRequest;

/// Serves the plugin in `file` until the host drops the instance or closes the connection;
/// returns the exit code.
pub fn serve(file: &Path, expected: Option<FileKey>) -> u8 {
    let Some((input, protocol)) = private_descriptors() else {
        eprintln!(
            "panther-host plugin server: no protocol descriptors \
             (it is started by `panther-host run --isolate`, not by hand)"
        );
        return INTERNAL_ERROR;
    };
    let link = Arc::new(Link {
        output: Mutex::new(protocol),
        state: Mutex::new(LinkState {
            next_id: 1,
            pending: HashMap::new(),
        }),
        closed: AtomicBool::new(false),
    });
    let (calls, incoming) = mpsc::channel::<(u64, PluginCall)>();
    {
        let link = Arc::clone(&link);
        thread::spawn(move || read(&link, input, &calls));
    }
    let mut instance: Option<Served> = None;
    let mut plugin: Option<LoadedPlugin> = None;
    for (id, call) in incoming {
        let reply = match call {
            PluginCall::Claims(config) => module(file, expected, &mut plugin).and_then(|plugin| {
                let config = parse(&config, "configuration")?;
                let claims = plugin.claims(&config).map_err(|e| e.message)?;
                Ok(Some(to_json(&claims)))
            }),
            PluginCall::Validate(request) => {
                module(file, expected, &mut plugin).and_then(|plugin| {
                    let request: ValidateRequest = parse(&request, "validation request")?;
                    let problems = plugin
                        .validate(&request.config, &request.experiment)
                        .map_err(|e| e.message)?;
                    Ok(Some(to_json(&problems)))
                })
            }
            PluginCall::Sites(request) => module(file, expected, &mut plugin).and_then(|plugin| {
                let request: ValidateRequest = parse(&request, "validation request")?;
                let sites = plugin
                    .sites(&request.config, &request.experiment)
                    .map_err(|e| e.message)?;
                Ok(Some(to_json(&sites)))
            }),
            PluginCall::New {
                kind,
                instance: name,
                config,
                output_dir,
                max_log_level,
            } => {
                let ctx = RemoteContext {
                    link: Arc::clone(&link),
                    output_dir,
                    max_log_level,
                };
                module(file, expected, &mut plugin)
                    .and_then(|plugin| build(plugin, kind, &name, &config, ctx))
                    .map(|served| {
                        instance = Some(served);
                        None
                    })
            }
            PluginCall::Drop => {
                drop(instance.take());
                link.reply(id, Ok(None));
                return OK;
            }
            call => match instance.as_mut() {
                Some(served) => served.serve(call),
                None => Err("no instance was built in this plugin server".to_string()),
            },
        };
        link.reply(id, reply);
    }
    OK
}

/// Moves stdin and descriptor 3 to private descriptors closed on exec, and points stdin at
/// `/dev/null`: (calls in, answers out).
fn private_descriptors() -> Option<(File, File)> {
    // SAFETY: plain descriptor calls before any other thread exists; each new descriptor
    // is owned by one `File`.
    unsafe {
        // Above descriptor 3, which is closed below.
        let output = libc::fcntl(super::remote::ANSWER_FD, libc::F_DUPFD_CLOEXEC, 4);
        if output < 0 {
            return None;
        }
        let input = libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 4);
        if input < 0 {
            libc::close(output);
            return None;
        }
        libc::close(super::remote::ANSWER_FD);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::close(null);
        }
        Some((File::from_raw_fd(input), File::from_raw_fd(output)))
    }
}

/// The one instance of a server.
enum Served {
    Network(NetworkEnvironment),
    Execution(ExecutionEnvironment),
    Reporter(Reporter),
}

impl Served {
    fn serve(&mut self, call: PluginCall) -> Reply {
        match self {
            Served::Network(i) => i.serve(call),
            Served::Execution(i) => i.serve(call),
            Served::Reporter(i) => i.serve(call),
        }
    }
}

/// The server's plugin, loaded on first use.
/// The plugin, opened on first use; a file that is no longer the one the host read the
/// manifest of (`expected`) is refused before it is opened, as in the host.
fn module<'a>(
    file: &Path,
    expected: Option<FileKey>,
    plugin: &'a mut Option<LoadedPlugin>,
) -> Result<&'a LoadedPlugin, String> {
    if plugin.is_none() {
        if let Some(expected) = expected {
            if FileKey::of(file).ok() != Some(expected) {
                return Err(LoadError::new(file, LoadErrorKind::Changed).to_string());
            }
        }
        *plugin = Some(loader::load(file).map_err(|e| e.to_string())?);
    }
    Ok(plugin.as_ref().expect("loaded"))
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| format!("unreadable {what}: {e}"))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plugin answers always serialize")
}

fn build(
    plugin: &LoadedPlugin,
    kind: InstanceKind,
    name: &str,
    config: &str,
    ctx: RemoteContext,
) -> Result<Served, String> {
    let config: serde_json::Value = parse(config, "configuration")?;
    let ctx: HostContextBox = HostContextFfi_TO::from_ptr(RArc::new(ctx), TD_Opaque);
    // The error already names the instance and plugin; the host adds them again, so only
    // the plugin's own message crosses.
    match kind {
        InstanceKind::NetworkEnvironment => plugin
            .new_network_environment(name, &config, ctx)
            .map(Served::Network),
        InstanceKind::ExecutionEnvironment => plugin
            .new_execution_environment(name, &config, ctx)
            .map(Served::Execution),
        InstanceKind::Reporter => plugin
            .new_reporter(name, &config, ctx)
            .map(Served::Reporter),
    }
    .map_err(|e| e.message)
}

/// The server's end of the connection, shared by the main thread, the reader and every
/// plugin thread that calls its context.
struct Link {
    output: Mutex<File>,
    state: Mutex<LinkState>,
    /// Set when the host closed the connection: context calls fail at once.
    closed: AtomicBool,
}

struct LinkState {
    next_id: u64,
    pending: HashMap<u64, mpsc::SyncSender<Reply>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Link {
    fn write<C: serde::Serialize>(&self, frame: &Frame<C>) {
        let line = wire::line(frame);
        let mut output = lock(&self.output);
        let _ = output.write_all(&line).and_then(|()| output.flush());
    }

    fn reply(&self, id: u64, reply: Reply) {
        self.write::<ContextCall>(&Frame {
            id,
            call: None,
            reply: Some(reply),
        });
    }

    /// A context call that needs no answer.
    fn notify(&self, call: ContextCall) {
        self.write(&Frame {
            id: 0,
            call: Some(call),
            reply: None,
        });
    }

    /// A context call, waiting for the host's answer.
    fn request(&self, call: ContextCall) -> Reply {
        let (tx, rx) = mpsc::sync_channel(1);
        let id = {
            let mut state = lock(&self.state);
            if self.closed.load(Ordering::Acquire) {
                return Err("the host closed the connection".to_string());
            }
            let id = state.next_id;
            state.next_id += 1;
            state.pending.insert(id, tx);
            id
        };
        self.write(&Frame {
            id,
            call: Some(call),
            reply: None,
        });
        rx.recv()
            .unwrap_or_else(|_| Err("the host closed the connection".to_string()))
    }
}

/// The reader thread: answers to the plugin's requests go to the waiting thread, calls go
/// to the main thread.
fn read(link: &Link, input: File, calls: &mpsc::Sender<(u64, PluginCall)>) {
    for line in std::io::BufReader::new(input).lines() {
        let Ok(line) = line else { break };
        let Ok(frame) = serde_json::from_str::<Frame<PluginCall>>(&line) else {
            eprintln!("panther-host plugin server: unreadable request {line:?}");
            break;
        };
        match (frame.reply, frame.call) {
            (Some(reply), _) => {
                if let Some(waiting) = lock(&link.state).pending.remove(&frame.id) {
                    let _ = waiting.send(reply);
                }
            }
            (None, Some(call)) => {
                if calls.send((frame.id, call)).is_err() {
                    break;
                }
            }
            (None, None) => {}
        }
    }
    let mut state = lock(&link.state);
    link.closed.store(true, Ordering::Release);
    state.pending.clear();
}

/// The host context as the plugin in a server sees it: every call crosses to the host.
#[derive(Clone)]
struct RemoteContext {
    link: Arc<Link>,
    output_dir: String,
    max_log_level: u8,
}

fn text(reply: Reply) -> RResult<RString, RString> {
    match reply {
        Ok(text) => ROk(RString::from(text.unwrap_or_default())),
        Err(e) => RErr(RString::from(e)),
    }
}

fn number<T: std::str::FromStr>(reply: Reply) -> RResult<T, RString> {
    match reply {
        Ok(Some(text)) => match text.parse() {
            Ok(n) => ROk(n),
            Err(_) => RErr(RString::from(format!("the host answered {text:?}"))),
        },
        Ok(None) => RErr(RString::from("the host answered nothing")),
        Err(e) => RErr(RString::from(e)),
    }
}

impl HostContextFfi for RemoteContext {
    fn log(&self, level: u8, target: RStr<'_>, message: RStr<'_>) {
        self.link.notify(ContextCall::Log(
            level,
            target.as_str().to_string(),
            message.as_str().to_string(),
        ));
    }

    fn max_log_level(&self) -> u8 {
        self.max_log_level
    }

    fn emit_event(&self, event: RStr<'_>) {
        self.link
            .notify(ContextCall::EmitEvent(event.as_str().to_string()));
    }

    fn output_dir(&self) -> RString {
        RString::from(self.output_dir.as_str())
    }

    fn is_cancelled(&self) -> bool {
        // A host that went away cancelled the run.
        !matches!(self.link.request(ContextCall::IsCancelled), Ok(Some(ref s)) if s == "false")
    }

    fn run_command(&self, command: RStr<'_>) -> RResult<RString, RString> {
        text(
            self.link
                .request(ContextCall::RunCommand(command.as_str().to_string())),
        )
    }

    fn spawn(&self, command: RStr<'_>) -> RResult<u64, RString> {
        number(
            self.link
                .request(ContextCall::Spawn(command.as_str().to_string())),
        )
    }

    fn process_id(&self, handle: u64) -> RResult<u32, RString> {
        number(self.link.request(ContextCall::ProcessId(handle)))
    }

    fn process_status(&self, handle: u64) -> RResult<RString, RString> {
        text(self.link.request(ContextCall::ProcessStatus(handle)))
    }

    fn stop(&self, handle: u64, grace_ms: u64) -> RResult<RString, RString> {
        text(self.link.request(ContextCall::Stop(handle, grace_ms)))
    }

    fn call(&self, name: RStr<'_>, payload: RStr<'_>) -> RResult<ROption<RString>, RString> {
        match self.link.request(ContextCall::Named(
            name.as_str().to_string(),
            payload.as_str().to_string(),
        )) {
            Ok(Some(text)) => ROk(RSome(RString::from(text))),
            Ok(None) => ROk(RNone),
            Err(e) => RErr(RString::from(e)),
        }
    }
}
