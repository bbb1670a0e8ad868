//! Plugin instances in child processes (`--isolate`).
//!
//! An isolated instance lives in its own plugin server: the host binary started as
//! `panther-host __serve-plugin FILE`, which loads the one library, builds the one instance
//! and answers calls over its stdin/stdout in line-delimited JSON ([`wire`]). What the
//! instance asks of the host (spawn, stop, run_command, events, logs) travels the other way
//! and is served in the host by the instance's real context, so every process a plugin
//! starts stays owned by the host's command processor: a server that dies never orphans a
//! service.
//!
//! A plugin that crashes, aborts, exits or hangs then fails alone: the call returns an error
//! naming what happened to the process ([`Remote`]), later calls fail at once, and the run
//! tears down and reports as after any other plugin error.
//!
//! - [`Isolation`]: which plugins are isolated (all of them, or those of given folders);
//! - [`Placement`]: where one instance goes, with its [`Limits`];
//! - [`wire`]: the frames both sides exchange;
//! - [`Remote`]: the host side of one server; [`serve`]: the server side.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

mod remote;
mod server;
pub mod wire;

pub use remote::{Pool, Remote};
pub use server::serve;

/// The hidden subcommand that turns the host binary into a plugin server.
pub const SERVE_COMMAND: &str = "__serve-plugin";
/// The plugin server's option naming the file as it was when its manifest was read.
pub const EXPECT_FLAG: &str = "--expect";

/// Which plugins a run isolates: none (the default), all, or those loaded from given folders.
#[derive(Debug, Clone, Default)]
pub struct Isolation {
    all: bool,
    /// Canonical folders whose plugins are isolated.
    dirs: Vec<PathBuf>,
    /// The plugin server binary (the host binary itself unless set).
    server: Option<PathBuf>,
    /// Servers that answered questions about a plugin, kept for its instances.
    pool: Arc<Pool>,
}

impl Isolation {
    /// Every plugin in a child process when `all`, else only the plugins in `dirs`.
    pub fn new(all: bool, dirs: &[PathBuf]) -> Self {
        Isolation {
            all,
            dirs: dirs
                .iter()
                .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()))
                .collect(),
            server: None,
            pool: Arc::default(),
        }
    }

    /// Uses `binary` (a `panther-host`) as the plugin server, e.g. when the host library is
    /// embedded in another program.
    pub fn with_server(mut self, binary: PathBuf) -> Self {
        self.server = Some(binary);
        self
    }

    /// The same, with every plugin isolated: what `check` uses, so that checking a file runs
    /// no plugin code in the host (a plugin's own `validate` and `claims` are its code).
    pub fn everything(mut self) -> Self {
        self.all = true;
        self
    }

    /// Whether anything is isolated at all.
    pub fn is_active(&self) -> bool {
        self.all || !self.dirs.is_empty()
    }

    /// Whether the plugin loaded from `file` is isolated.
    pub fn applies(&self, file: &Path) -> bool {
        if self.all {
            return true;
        }
        if self.dirs.is_empty() {
            return false;
        }
        let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        self.dirs.iter().any(|dir| file.starts_with(dir))
    }

    /// Where an instance of the plugin loaded from `file` goes; isolated calls may take up
    /// to `call_limit` (as it is when each call starts).
    pub fn placement(&self, file: &Path, call_limit: &CallLimit) -> Placement {
        if !self.applies(file) {
            return Placement::InProcess;
        }
        Placement::Isolated(Limits {
            call: call_limit.clone(),
            server: self.server.clone().unwrap_or_else(default_server),
            pool: Arc::clone(&self.pool),
        })
    }
}

/// Where one plugin instance lives.
#[derive(Debug, Clone)]
pub enum Placement {
    /// In the host process: calls are plain function calls.
    InProcess,
    /// In a plugin server of its own.
    Isolated(Limits),
}

/// What an isolated instance is allowed.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How long one call may take before the server is killed.
    pub call: CallLimit,
    /// The plugin server binary.
    pub server: PathBuf,
    /// Where idle servers wait for their next call.
    pool: Arc<Pool>,
}

/// How long one isolated call may take, shared by the instances of a run so that the run
/// can raise it once it knows the slowdowns of its execution environments.
#[derive(Debug, Clone)]
pub struct CallLimit(Arc<AtomicU64>);

impl CallLimit {
    /// A limit of `limit`.
    pub fn new(limit: Duration) -> Self {
        CallLimit(Arc::new(AtomicU64::new(millis(limit))))
    }

    /// The limit now.
    pub fn get(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::Relaxed))
    }

    /// Changes the limit of every instance sharing it, for the calls that start afterwards.
    pub fn set(&self, limit: Duration) {
        self.0.store(millis(limit), Ordering::Relaxed);
    }
}

fn millis(limit: Duration) -> u64 {
    u64::try_from(limit.as_millis()).unwrap_or(u64::MAX)
}

/// The time limit of one isolated call for a run whose clients get `run_timeout` and whose
/// slowest readiness check gets `readiness`: a call never legitimately outlasts both
/// together, so twice that (plus a margin for slow machines) only catches a plugin that
/// hangs.
pub fn call_limit(run_timeout: Duration, readiness: Duration) -> Duration {
    (run_timeout + readiness) * 2 + Duration::from_secs(5)
}

/// The host binary: the running executable when it is `panther-host`, else a
/// `panther-host` beside it or one folder up (a bench or test binary in `target/*/deps`).
fn default_server() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("panther-host"));
    if exe.file_name().is_some_and(|n| n == "panther-host") {
        return exe;
    }
    let beside = exe.with_file_name("panther-host");
    if beside.is_file() {
        return beside;
    }
    exe.parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("panther-host"))
        .filter(|p| p.is_file())
        .unwrap_or(beside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_named_folders_are_isolated() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("libx.so");
        std::fs::write(&inside, b"").unwrap();
        let policy = Isolation::new(false, &[dir.path().to_path_buf()]);
        assert!(policy.applies(&inside));
        assert!(!policy.applies(Path::new("/usr/lib/liby.so")));
        let limit = CallLimit::new(Duration::from_secs(1));
        assert!(matches!(
            policy.placement(Path::new("/usr/lib/liby.so"), &limit),
            Placement::InProcess
        ));
        let Placement::Isolated(limits) = policy.placement(&inside, &limit) else {
            panic!("a plugin of the folder is isolated");
        };
        limit.set(Duration::from_secs(5));
        assert_eq!(limits.call.get(), Duration::from_secs(5));
        assert!(Isolation::new(true, &[]).applies(Path::new("/usr/lib/liby.so")));
        assert!(!Isolation::default().is_active());
    }

    #[test]
    fn the_call_limit_outlasts_the_run() {
        let limit = call_limit(Duration::from_secs(30), Duration::from_secs(5));
        assert!(limit > Duration::from_secs(35));
    }
}
