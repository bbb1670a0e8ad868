//! `strace`: runs every service under `strace -f -tt -T` and summarises what it did —
//! calls, failures and time per system call, failures per errno, per process, signals, socket
//! traffic — from the trace file, which stays in the results folder.
//!
//! The service's argv is prefixed with
//! `strace -f -tt -T -s N [-k] -e trace=EXPR -o <output_dir>/strace.txt --`, keeping its
//! environment and working directory. Each instance writes into its own output folder, so
//! two stacked instances never overwrite each other's trace.
//!
//! strace writes a line and flushes it as soon as a call returns, so the trace is complete up
//! to the moment the service ends, however it ends (even by SIGKILL). strace declares itself
//! a parent wrapper ([`ServiceCommand::runs_as_parent`]): when the host stops a service, the
//! service itself (and any wrapper strace runs, such as GNU `time`) receives the signal, and
//! strace exits after it. (With `-o FILE` strace would also ignore a SIGTERM of its own.)
//!
//! In a container (a [`ServiceSite::Container`] service) the image has no strace: the host's
//! is carried in with its libraries ([`panther_toolmount`]) and started through the mounted
//! loader, and the instance's output folder is mounted at the same path, so the trace file,
//! the summary and the JSON are the same as on localhost. The process ids in the trace are
//! the container's.
//!
//! Stacking: a process can have only one tracer. An instance that follows forks and wraps a
//! command already run under strace would take the inner strace's child for itself and the
//! inner strace could not start; such a stack is refused in [`ExecutionEnvironment::wrap`]
//! with a message saying to set `follow_forks = false` on the outer instance, which then
//! traces the inner strace process alone.

pub mod parse;
pub mod syscalls;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    ffi::OsStr,
    fs::File,
    io::BufReader,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use panther_plugin_api::{prelude::*, serde_json};
use parse::{parse_reader, Summary};

/// The name of the trace file in the instance's output folder.
pub const TRACE_FILE: &str = "strace.txt";

/// PANTHER's default exclusions: calls about clocks, timers and sleeping, which a busy
/// service makes constantly and which say nothing about its protocol.
pub const DEFAULT_EXCLUDE: &[&str] = &[
    "nanosleep",
    "getitimer",
    "alarm",
    "setitimer",
    "gettimeofday",
    "times",
    "rt_sigtimedwait",
    "utime",
    "adjtimex",
    "settimeofday",
    "time",
];

/// How much slower a service runs under strace, for the host's timeouts.
///
/// Every traced system call stops the service twice (at entry and at exit) and switches to
/// strace, which decodes the arguments and writes a line. A program that mostly computes
/// barely notices; one that does nothing but small system calls runs tens of times slower
/// (copying a file one byte per call: about 70 times). Network services sit in between: they
/// block in `accept`/`poll`/`recv` most of the time, and a factor of 2 on the readiness and
/// run timeouts covers their start-up (the dynamic loader alone makes a few dozen calls)
/// without hiding real hangs.
pub const SLOWDOWN: f64 = 2.0;

/// A class of system calls, as strace names them (`-e trace=%network`, ...).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Every system call.
    All,
    /// Sockets (`%network`).
    Network,
    /// Calls that take a file name (`%file`).
    File,
    /// Process lifecycle: fork, exec, exit, wait (`%process`).
    Process,
    /// Signals (`%signal`).
    Signal,
    /// System V IPC (`%ipc`).
    Ipc,
    /// Memory mapping (`%memory`).
    Memory,
    /// Calls on file descriptors (`%desc`).
    Desc,
}

impl Class {
    /// strace's name for the class, without the `%`.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::All => "all",
            Class::Network => "network",
            Class::File => "file",
            Class::Process => "process",
            Class::Signal => "signal",
            Class::Ipc => "ipc",
            Class::Memory => "memory",
            Class::Desc => "desc",
        }
    }

    fn mask(self) -> u8 {
        match self {
            Class::All => u8::MAX,
            Class::Network => syscalls::NETWORK,
            Class::File => syscalls::FILE,
            Class::Process => syscalls::PROCESS,
            Class::Signal => syscalls::SIGNAL,
            Class::Ipc => syscalls::IPC,
            Class::Memory => syscalls::MEMORY,
            Class::Desc => syscalls::DESC,
        }
    }
}

/// The `[[execution]]` section of `strace`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Classes of system calls to trace; `all` traces every call.
    #[serde(default = "default_trace")]
    #[schemars(length(min = 1))]
    pub trace: Vec<Class>,
    /// System calls not to trace (by name, as strace prints them).
    #[serde(default = "default_exclude")]
    pub exclude: Vec<String>,
    /// Print the traced program's stack below every call (`strace -k`).
    #[serde(default)]
    pub kernel_stacks: bool,
    /// Longest string argument strace prints, in bytes (`-s`); longer ones end in `...`.
    #[serde(default = "default_string_size")]
    #[schemars(range(max = 1048576))]
    pub string_size: u32,
    /// Trace the children and threads the service starts too (`-f`).
    #[serde(default = "default_true")]
    pub follow_forks: bool,
    /// Fail the service when more than this many system calls failed.
    #[serde(default)]
    pub max_errors: Option<u64>,
    /// Fail the service when more calls than allowed failed with a given errno, e.g.
    /// `{ ECONNRESET = 0 }`.
    #[serde(default)]
    pub max_errors_by_errno: BTreeMap<String, u64>,
}

fn default_trace() -> Vec<Class> {
    vec![Class::All]
}

fn default_exclude() -> Vec<String> {
    DEFAULT_EXCLUDE.iter().map(|s| s.to_string()).collect()
}

fn default_string_size() -> u32 {
    64
}

fn default_true() -> bool {
    true
}

impl Default for Config {
    fn default() -> Self {
        Config {
            trace: default_trace(),
            exclude: default_exclude(),
            kernel_stacks: false,
            string_size: default_string_size(),
            follow_forks: true,
            max_errors: None,
            max_errors_by_errno: BTreeMap::new(),
        }
    }
}

/// The value of `-e trace=` for these classes and exclusions.
///
/// strace keeps only the last `-e trace=` it is given, and a set can be negated as a whole
/// but not subtracted from, so everything has to fit in one expression:
///
/// - `all`: `all`, or `!?a,?b,...` with exclusions (`?`: no error for a name this
///   architecture lacks, e.g. `alarm` on arm64);
/// - classes none of whose calls are excluded: strace's own `%network,%file`;
/// - classes with an excluded call: the classes' calls, listed by name, without the excluded
///   ones (`none` when nothing is left).
pub fn expression(trace: &[Class], exclude: &[String]) -> String {
    let excluded: BTreeSet<&str> = exclude.iter().map(String::as_str).collect();
    let classes: BTreeSet<Class> = trace.iter().copied().collect();
    if classes.is_empty() || classes.contains(&Class::All) {
        if excluded.is_empty() {
            return "all".into();
        }
        let names: Vec<String> = excluded.iter().map(|n| format!("?{n}")).collect();
        return format!("!{}", names.join(","));
    }
    let mask = classes.iter().fold(0, |m, c| m | c.mask());
    let overlaps = excluded
        .iter()
        .any(|n| syscalls::classes(n).is_some_and(|c| c & mask != 0));
    if !overlaps {
        let names: Vec<String> = classes.iter().map(|c| format!("%{}", c.as_str())).collect();
        return names.join(",");
    }
    let names: Vec<String> = syscalls::members(mask)
        .filter(|n| !excluded.contains(n))
        .map(|n| format!("?{n}"))
        .collect();
    if names.is_empty() {
        return "none".into();
    }
    names.join(",")
}

/// The absolute path of `strace` on `path` (a `PATH` value).
pub fn locate_strace(path: Option<&OsStr>) -> anyhow::Result<PathBuf> {
    let found = path
        .into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("strace"))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        });
    match found {
        Some(strace) => Ok(std::path::absolute(&strace).unwrap_or(strace)),
        None => bail!(
            "`strace` was not found on PATH: install the Debian package `strace` \
             (`apt-get install strace`)"
        ),
    }
}

/// Whether `program` (an argv[0]) is strace.
fn is_strace(program: &str) -> bool {
    Path::new(program).file_name() == Some(OsStr::new("strace"))
}

/// What the plugin returns for a service: the summary, where the trace is, how it was
/// taken, and the thresholds it broke.
#[derive(Serialize)]
struct Report<'a> {
    #[serde(flatten)]
    summary: &'a Summary,
    /// The trace file.
    raw: &'a Path,
    /// The `-e trace=` expression it was taken with.
    trace_expression: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    violations: Vec<String>,
}

/// Traces services with strace.
pub struct Strace {
    ctx: Context,
    config: Config,
    expression: String,
    /// The trace file of every wrapped service.
    traces: HashMap<String, PathBuf>,
}

impl Plugin for Strace {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("strace")
            .description(
                "Runs each service under strace and summarises its system calls: counts, \
                 failures by errno, time, processes, signals and socket traffic",
            )
            .capability(capability::PTRACE)
            .capability(capability::IN_CONTAINERS)
            .tool("strace", "strace")
            .alias_key(
                "excluded_syscalls",
                "exclude",
                "PANTHER's name for the system calls not traced",
            )
            .alias_key(
                "include_kernel_stack",
                "kernel_stacks",
                "PANTHER's name for strace -k",
            )
            .alias_key(
                "stack_traces",
                "kernel_stacks",
                "PANTHER's name for strace -k, the stack after each call",
            )
            .alias_key(
                "trace_children",
                "follow_forks",
                "PANTHER's name for strace -f",
            )
            .alias_key(
                "string_limit",
                "string_size",
                "PANTHER's name for strace -s",
            )
            .refuse_key(
                "trace_all_syscalls",
                "write `trace = [\"all\"]` (the default)",
            )
            .refuse_key(
                "trace_network_syscalls",
                "write `trace = [\"network\"]`",
            )
            .refuse_key("network_focus", "write `trace = [\"network\"]`")
            .refuse_key("trace_file_syscalls", "write `trace = [\"file\"]`, next to other classes")
            .refuse_key(
                "additional_parameters",
                "the plugin sets strace's options so that the summary can read the trace: `trace`, `exclude`, `kernel_stacks`, `string_size` and `follow_forks` cover -e, -k, -s and -f",
            )
            .refuse_key(
                "strace_binary",
                "the host finds strace itself (`panther-host doctor` shows where)",
            )
            .refuse_key(
                "timeout",
                "strace lasts as long as the service; bound the run with `timeout` in `[experiment]`",
            )
            .refuse_key("output_file", "each instance writes into its own folder of the results (`monitoring/<service>/<instance>/`)")
            .refuse_key("output_dir", "each instance writes into its own folder of the results (`monitoring/<service>/<instance>/`)")
            .refuse_key(
                "monitored_process",
                "the environment applies to the services named in its `services` key; `follow_forks` follows their children",
            )
            .refuse_key(
                "output_format",
                "the trace is written in the one format the summary reads (`strace.json` and the raw trace)",
            )
            .refuse_key(
                "decode_fds",
                "the trace is written in the one format the summary reads; there is nothing to choose",
            )
            .refuse_key(
                "timestamps",
                "the trace is written in the one format the summary reads; there is nothing to choose",
            )
            .refuse_key(
                "timestamp_format",
                "the trace is written in the one format the summary reads; there is nothing to choose",
            )
            .refuse_key(
                "buffer_size",
                "strace has no such option; there is nothing to set",
            )
            .refuse_key(
                "inject_errors",
                "fault injection changes what the test means and is not offered",
            )
            .refuse_key(
                "sampling_rate",
                "strace records every call and does not sample; `resource_metrics` has `sampling_rate`",
            )
    }

    fn validate(config: &Config, _experiment: &ValidationContext) -> Vec<String> {
        let mut problems = Vec::new();
        for name in &config.exclude {
            if !syscalls::is_known(name) {
                let hint = syscalls::closest(name)
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                problems.push(format!(
                    "exclude: `{name}` is not a system call strace knows{hint}"
                ));
            }
        }
        for errno in config.max_errors_by_errno.keys() {
            let looks_right = errno.len() > 1
                && errno.starts_with('E')
                && errno
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if !looks_right {
                problems.push(format!(
                    "max_errors_by_errno: `{errno}` is not an errno name such as ECONNRESET"
                ));
            }
        }
        problems
    }

    fn new(config: Config, ctx: Context) -> anyhow::Result<Self> {
        let expression = expression(&config.trace, &config.exclude);
        Ok(Strace {
            ctx,
            config,
            expression,
            traces: HashMap::new(),
        })
    }
}

/// The strace options for a configuration, without the trace file and the program.
pub fn options(config: &Config, expression: &str) -> Vec<String> {
    let mut options = Vec::new();
    if config.follow_forks {
        options.push("-f".to_string());
    }
    options.extend(["-tt", "-T", "-s"].map(String::from));
    options.push(config.string_size.to_string());
    if config.kernel_stacks {
        options.push("-k".into());
    }
    options.push("-e".into());
    options.push(format!("trace={expression}"));
    options
}

/// The thresholds of `config` that `summary` breaks, as reasons for the host.
pub fn violations(config: &Config, summary: &Summary) -> Vec<String> {
    let mut violations = Vec::new();
    if let Some(max) = config.max_errors {
        if summary.totals.errors > max {
            let mut by_errno: Vec<(&String, &u64)> = summary.errors_by_errno.iter().collect();
            by_errno.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let detail: Vec<String> = by_errno
                .iter()
                .take(5)
                .map(|(errno, n)| format!("{errno} {n}"))
                .collect();
            violations.push(format!(
                "{} system calls failed, more than max_errors = {max} ({})",
                summary.totals.errors,
                detail.join(", ")
            ));
        }
    }
    for (errno, max) in &config.max_errors_by_errno {
        let seen = summary.errors_by_errno.get(errno).copied().unwrap_or(0);
        if seen > *max {
            let calls: Vec<String> = summary
                .syscalls
                .iter()
                .filter_map(|(name, s)| s.errors_by_errno.get(errno).map(|n| format!("{name} {n}")))
                .collect();
            violations.push(format!(
                "{seen} system calls failed with {errno}, more than the {max} allowed by \
                 max_errors_by_errno ({})",
                calls.join(", ")
            ));
        }
    }
    violations
}

impl ExecutionEnvironment for Strace {
    fn slowdown(&self) -> f64 {
        SLOWDOWN
    }

    fn wrap(&mut self, command: ServiceCommand) -> anyhow::Result<ServiceCommand> {
        let strace = locate_strace(std::env::var_os("PATH").as_deref())?;
        let program = panther_toolmount::program_of(&command.argv);
        if self.config.follow_forks && program.is_some_and(is_strace) {
            bail!(
                "service `{}` already runs under strace (an execution environment applied \
                 before this one); a process has only one tracer, so with follow_forks = true \
                 this instance would take the inner strace's child and the inner strace could \
                 not start: set `follow_forks = false` on this instance to trace the inner \
                 strace process alone",
                command.service
            );
        }
        let dir = std::path::absolute(&command.output_dir)
            .with_context(|| format!("resolving {}", command.output_dir.display()))?;
        let file = dir.join(TRACE_FILE);
        let mut mounts = command.mounts.clone();
        let mut argv = if command.site.is_container() {
            // The image has no strace: bring the host's, and make the trace file's folder
            // the same path inside, so the trace lands where it does on localhost.
            let carried = panther_toolmount::carry("strace", &strace).with_context(|| {
                format!(
                    "bringing {} into the container of service `{}`",
                    strace.display(),
                    command.service
                )
            })?;
            panther_toolmount::merge_mounts(&mut mounts, &carried.mounts)?;
            panther_toolmount::merge_mounts(&mut mounts, &[HostMount::same_path(&dir)])?;
            carried.argv
        } else {
            vec![strace.display().to_string()]
        };
        argv.extend(options(&self.config, &self.expression));
        argv.push("-o".into());
        argv.push(file.display().to_string());
        argv.push("--".into());
        argv.extend(command.argv);
        tracing::debug!(
            service = %command.service,
            trace = %file.display(),
            "wrapping with strace"
        );
        self.traces.insert(command.service.clone(), file);
        let mut command = ServiceCommand {
            argv,
            mounts,
            ..command
        };
        // strace starts the service as its child: the host stops the service, and strace
        // writes the end of the trace and exits after it.
        command.runs_as_parent("strace");
        Ok(command)
    }

    fn get_monitoring_data(&mut self, service: &str) -> anyhow::Result<serde_json::Value> {
        let file = self
            .traces
            .get(service)
            .with_context(|| format!("service `{service}` was never wrapped by strace"))?;
        let input = match File::open(file) {
            Ok(input) => input,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => bail!(
                "no strace output for service `{service}` at {}: the service was probably \
                 never started under strace (did it fail to start, or did a later execution \
                 environment replace its command?)",
                file.display()
            ),
            Err(err) => {
                return Err(err).with_context(|| format!("opening {}", file.display()));
            }
        };
        let summary = parse_reader(BufReader::with_capacity(1 << 20, input))
            .with_context(|| format!("reading {}", file.display()))?;
        if summary.lines.total == 0 {
            tracing::warn!(
                service,
                trace = %file.display(),
                "the trace is empty: strace could not start the program (see the service's stderr)"
            );
        }
        if summary.lines.unparsed > 0 {
            tracing::warn!(
                service,
                lines = summary.lines.unparsed,
                trace = %file.display(),
                "strace output had lines that could not be parsed"
            );
        }
        let violations = violations(&self.config, &summary);
        self.ctx.emit(&Event::Custom {
            name: "strace_summary".into(),
            data: event_data(service, file, &summary, &violations),
        });
        Ok(serde_json::to_value(Report {
            summary: &summary,
            raw: file,
            trace_expression: &self.expression,
            violations,
        })?)
    }
}

/// The short form of a summary for the event log: totals and the busiest calls.
fn event_data(
    service: &str,
    file: &Path,
    summary: &Summary,
    violations: &[String],
) -> serde_json::Value {
    let mut busiest: Vec<(&String, u64)> = summary
        .syscalls
        .iter()
        .map(|(name, s)| (name, s.calls))
        .collect();
    busiest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let busiest: Vec<serde_json::Value> = busiest
        .into_iter()
        .take(5)
        .map(|(name, calls)| serde_json::json!({ "syscall": name, "calls": calls }))
        .collect();
    serde_json::json!({
        "service": service,
        "raw": file,
        "calls": summary.totals.calls,
        "errors": summary.totals.errors,
        "unreturned": summary.totals.unreturned,
        "processes": summary.processes.len(),
        "busiest": busiest,
        "errors_by_errno": summary.errors_by_errno,
        "unparsed_lines": summary.lines.unparsed,
        "violations": violations,
    })
}

export_plugin!(ExecutionEnvironment: Strace);

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn expression_for_all() {
        assert_eq!(expression(&[Class::All], &[]), "all");
        assert_eq!(
            expression(&[Class::All, Class::Network], &names(&["time", "alarm"])),
            "!?alarm,?time"
        );
        assert_eq!(expression(&[], &names(&["time"])), "!?time");
    }

    #[test]
    fn expression_for_classes_keeps_strace_classes_when_nothing_is_excluded_from_them() {
        let defaults = default_exclude();
        assert_eq!(expression(&[Class::Network], &defaults), "%network");
        assert_eq!(
            expression(&[Class::Process, Class::Network, Class::Network], &[]),
            "%network,%process"
        );
    }

    #[test]
    fn expression_for_classes_lists_names_when_an_excluded_call_is_in_them() {
        // rt_sigtimedwait is in %signal, utime in %file: both are excluded by default.
        let signal = expression(&[Class::Signal], &default_exclude());
        let listed: Vec<&str> = signal.split(',').collect();
        assert!(listed.contains(&"?rt_sigaction"), "{signal}");
        assert!(listed.contains(&"?kill"), "{signal}");
        assert!(!listed.contains(&"?rt_sigtimedwait"), "{signal}");
        assert!(!listed.iter().any(|n| !n.starts_with('?')), "{signal}");

        let every_ipc_call: Vec<String> =
            syscalls::members(syscalls::IPC).map(String::from).collect();
        assert_eq!(expression(&[Class::Ipc], &every_ipc_call), "none");

        let net = expression(&[Class::Network], &names(&["connect"]));
        assert!(
            net.contains("?accept4") && !net.contains("?connect,"),
            "{net}"
        );
        assert!(!net.contains("?read,"), "{net}");
    }

    #[test]
    fn options_follow_the_config() {
        let plain = Config {
            exclude: Vec::new(),
            ..Config::default()
        };
        assert_eq!(
            options(&plain, "all"),
            ["-f", "-tt", "-T", "-s", "64", "-e", "trace=all"]
        );
        let custom = Config {
            kernel_stacks: true,
            follow_forks: false,
            string_size: 8,
            ..Config::default()
        };
        assert_eq!(
            options(&custom, "%network"),
            ["-tt", "-T", "-s", "8", "-k", "-e", "trace=%network"]
        );
    }

    #[test]
    fn thresholds() {
        let mut summary = Summary::default();
        summary.totals.errors = 4;
        summary.errors_by_errno = [("ENOENT".into(), 3), ("EAGAIN".into(), 1)].into();
        summary.syscalls.insert(
            "open".into(),
            parse::SyscallStats {
                calls: 3,
                errors: 3,
                errors_by_errno: [("ENOENT".into(), 3)].into(),
                ..Default::default()
            },
        );
        assert!(violations(&Config::default(), &summary).is_empty());
        let strict = Config {
            max_errors: Some(3),
            max_errors_by_errno: [("ENOENT".into(), 2), ("ECONNRESET".into(), 0)].into(),
            ..Config::default()
        };
        assert_eq!(
            violations(&strict, &summary),
            [
                "4 system calls failed, more than max_errors = 3 (ENOENT 3, EAGAIN 1)",
                "3 system calls failed with ENOENT, more than the 2 allowed by \
                 max_errors_by_errno (open 3)"
            ]
        );
        let loose = Config {
            max_errors: Some(4),
            ..Config::default()
        };
        assert!(violations(&loose, &summary).is_empty());
    }

    #[test]
    fn missing_strace_names_the_package() {
        let err = locate_strace(Some(OsStr::new("/nonexistent:/also/not/here")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("Debian package `strace`"), "{err}");
        let err = locate_strace(None).unwrap_err().to_string();
        assert!(err.contains("apt-get install strace"), "{err}");
    }

    #[test]
    fn strace_on_path_is_found_as_an_absolute_path() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("strace");
        std::fs::write(&fake, "#!/bin/sh\n").unwrap();
        // Not executable yet: not a candidate.
        assert!(locate_strace(Some(dir.path().as_os_str())).is_err());
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths([Path::new("/nonexistent"), dir.path()]).unwrap();
        assert_eq!(locate_strace(Some(&path)).unwrap(), fake);
    }

    #[test]
    fn validation_catches_misspelt_calls_and_errnos() {
        let config = Config {
            exclude: names(&["nanoslep", "time"]),
            max_errors_by_errno: [("ECONNRESET".into(), 0), ("enoent".into(), 1)].into(),
            ..Config::default()
        };
        let problems = Strace::validate(&config, &ValidationContext::default());
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("did you mean `nanosleep`"),
            "{problems:?}"
        );
        assert!(problems[1].contains("`enoent`"), "{problems:?}");
        assert!(Strace::validate(&Config::default(), &ValidationContext::default()).is_empty());
    }

    #[test]
    fn stacked_strace_is_recognised() {
        assert!(is_strace("/usr/bin/strace"));
        assert!(is_strace("strace"));
        assert!(!is_strace("/usr/bin/strace-log-merge"));
        assert!(!is_strace("/opt/strace/bin/server"));
    }
}
