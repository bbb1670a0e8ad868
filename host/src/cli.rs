//! The `panther-host` command line.
//!
//! Machine output (`--format json`, reports to `-`) goes to stdout alone; logs, progress and
//! summaries go to stderr. Listing and `info` open no plugin library when the manifest cache
//! is warm; `check` opens only the plugins an experiment uses (to ask them to validate);
//! none of them touches an engine or runs a tool.

use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
    process::ExitCode,
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use panther_plugin_api::{Manifest, PluginKind, ProcessState, Role, RunResult, RunStatus};
use serde_json::json;
use tracing_subscriber::EnvFilter;

use crate::{
    context::RunServices,
    events::{Observer, TracingObserver},
    exit_code::{self, INTERNAL_ERROR, INVALID_INPUT, OK},
    experiment::{ExperimentError, LoadDefaults},
    isolate::{CallLimit, Isolation},
    job::{Job, Runner},
    loader::{self, LoadErrorKind, PLUGIN_PATH_ENV},
    plan::{self, Layer, Plan, PlanOptions, ReportRequest},
    plugin_defaults::PluginDefaults,
    registry::{LoadOptions, Registry},
    run::{self, RunOptions},
    settings::Settings,
    tools,
};

/// Load protocol-testing plugins from shared libraries and run experiments with them.
///
/// Exit codes: 0 success, 1 a test failed (or timed out), 2 invalid input, 3 internal error,
/// 130 interrupted.
#[derive(Debug, Parser)]
#[command(name = "panther-host", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalOptions,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
struct GlobalOptions {
    /// Load plugins from DIR (repeatable); searched before PANTHER_PLUGIN_PATH, which is
    /// searched before the folder of the panther-host executable (the shipped plugins).
    #[arg(
        long = "plugin-dir",
        value_name = "DIR",
        global = true,
        help_heading = "Plugins"
    )]
    plugin_dirs: Vec<PathBuf>,

    /// Do not search the folder of the panther-host executable.
    #[arg(long, global = true, help_heading = "Plugins")]
    no_default_plugins: bool,

    /// Run every plugin instance in a child process of its own: a plugin that crashes,
    /// exits or hangs fails alone (settings: `isolate`, `isolate_plugin_dirs`).
    #[arg(long, global = true, help_heading = "Plugins")]
    isolate: bool,

    /// Read host settings from FILE instead of the user's config file.
    #[arg(
        long,
        value_name = "FILE",
        global = true,
        env = "PANTHER_CONFIG",
        help_heading = "Settings"
    )]
    config: Option<PathBuf>,

    /// Show events live (-v), and debug output including every line services print (-vv).
    #[arg(short, long, action = ArgAction::Count, global = true, help_heading = "Output")]
    verbose: u8,

    /// Print only errors.
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        help_heading = "Output"
    )]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List every plugin found, the ones shadowed by a folder searched earlier, and every
    /// file that cannot be used with the reason. Exits 2 when a file cannot be used.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show a plugin's manifest and configuration schema.
    Info {
        /// The plugin's name.
        plugin: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Check that every plugin's external tools are installed and usable, and say which
    /// Debian package to install when one is not. Exits 0 when all are, 2 otherwise.
    Doctor {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Remove what earlier runs left behind (processes, containers, networks, namespaces),
    /// e.g. after the host was killed: every network environment cleans up its own, and the
    /// processes of runs whose host is gone are ended. Live runs are never touched.
    Clean {
        /// Only this network environment.
        #[arg(long, value_name = "PLUGIN")]
        network: Option<String>,
    },
    /// Write a ready-to-build plugin project.
    New {
        /// The plugin type.
        #[arg(value_enum)]
        kind: KindArg,
        /// The plugin's name (lowercase letters, digits, `_`).
        name: String,
        /// Where to write it (default: ./NAME).
        #[arg(long, value_name = "DIR")]
        path: Option<PathBuf>,
        /// Depend on the panther-plugin-api source at DIR (default: this host's checkout,
        /// when it was built from one).
        #[arg(long, value_name = "DIR")]
        api_path: Option<PathBuf>,
    },
    /// Validate experiment files without running anything. With -v, also lists the keys
    /// written in PANTHER's vocabulary that were read under this host's names.
    Check {
        /// Experiment files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Check these command-line reporters too (as `run --report`).
        #[arg(long = "report", value_name = "PLUGIN[=PATH]")]
        reports: Vec<ReportRequest>,
    },
    /// Run experiments.
    Run {
        /// Experiment files, run one after the other.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Results go to DIR/<experiment>/<timestamp>/ for every file (default: the file's
        /// `output`, else the settings' `output`, else `results`).
        #[arg(long, short, value_name = "DIR")]
        output: Option<PathBuf>,
        /// Also write a report: `json=-` (stdout), `junit=out/junit.xml` (inside the results
        /// folder), or a plugin name alone for its default path (repeatable). Replaces the
        /// file's `[[report]]` of the same name; claims are checked as for the file's.
        #[arg(long = "report", value_name = "PLUGIN[=PATH]")]
        reports: Vec<ReportRequest>,
        /// Replace every experiment's timeout, e.g. `30s` or `2m` (at most 30 days).
        #[arg(long, value_name = "DURATION", value_parser = crate::limits::parse_timeout)]
        timeout: Option<Duration>,
        /// Print the plan (services in order with their wrapped commands, reporters, results
        /// folder; with `--format json` every setting and where it came from) and run nothing.
        #[arg(long)]
        dry_run: bool,
        /// Run up to N experiments at once, each in its own scope and results folder.
        #[arg(long, short, value_name = "N", default_value_t = 1)]
        jobs: usize,
        /// Format of the dry-run plan.
        #[arg(long, value_enum, default_value_t = Format::Table, requires = "dry_run")]
        format: Format,
    },
    /// Serve one plugin instance: calls on stdin, answers on descriptor 3 (what `--isolate`
    /// starts).
    #[command(name = crate::isolate::SERVE_COMMAND, hide = true)]
    ServePlugin {
        /// The plugin library.
        file: PathBuf,
        /// The file as it was when the host read its manifest (`size:mtime:ctime:inode:dev`):
        /// a file that differs is not opened.
        #[arg(long = "expect")]
        expect: Option<String>,
    },
}

/// A plugin type, as `new` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum KindArg {
    /// Deploys services (a driver).
    NetworkEnvironment,
    /// Wraps services to trace or profile them (an extension).
    ExecutionEnvironment,
    /// Writes the result of a run (a proxy).
    Reporter,
}

impl From<KindArg> for PluginKind {
    fn from(kind: KindArg) -> PluginKind {
        match kind {
            KindArg::NetworkEnvironment => PluginKind::NetworkEnvironment,
            KindArg::ExecutionEnvironment => PluginKind::ExecutionEnvironment,
            KindArg::Reporter => PluginKind::Reporter,
        }
    }
}

/// How to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// For people.
    Table,
    /// For programs: JSON on stdout and nothing else.
    Json,
}

/// Parses the command line, runs the command and returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.global);
    let code = dispatch(cli);
    crate::contain::cgroup::discard_prepared();
    exit_code::exit(code)
}

fn init_logging(global: &GlobalOptions) {
    let default = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (_, 0 | 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

fn dispatch(cli: Cli) -> u8 {
    // A plugin server loads its one library and nothing else.
    if let Command::ServePlugin { file, expect } = &cli.command {
        let expected = match expect.as_deref().map(crate::cache::FileKey::from_arg) {
            Some(None) => {
                eprintln!("panther-host plugin server: unreadable --expect value");
                return exit_code::INVALID_INPUT;
            }
            Some(key) => key,
            None => None,
        };
        return crate::isolate::serve(file, expected);
    }
    // `new` needs no settings and no plugins.
    if let Command::New {
        kind,
        name,
        path,
        api_path,
    } = &cli.command
    {
        let dir = path.clone().unwrap_or_else(|| PathBuf::from(name));
        let api = api_path.clone().or_else(crate::scaffold::default_api_path);
        return match crate::scaffold::create((*kind).into(), name, &dir, api.as_deref()) {
            Ok(files) => {
                for file in files {
                    println!("created {}", file.display());
                }
                OK
            }
            Err(err) => report_error(&err, INVALID_INPUT),
        };
    }
    // The run's cgroup is made now, so that the slow part of joining it passes while the
    // plugins and the files are read (see `contain::cgroup::prepare`).
    if matches!(cli.command, Command::Run { dry_run: false, .. }) {
        crate::contain::cgroup::prepare();
    }
    let settings = match Settings::load(cli.global.config.as_deref()) {
        Ok(settings) => settings,
        Err(err) => return report_error(&err, INVALID_INPUT),
    };
    let mut cli_dirs = cli.global.plugin_dirs.clone();
    cli_dirs.extend(settings.plugin_dirs.iter().cloned());
    let env_path = std::env::var(PLUGIN_PATH_ENV).ok();
    let dirs = loader::plugin_dirs(
        &cli_dirs,
        env_path.as_deref(),
        !cli.global.no_default_plugins,
    );
    let registry = Arc::new(Registry::load_with(&LoadOptions {
        trusted_dirs: settings.trust_plugin_dirs.clone(),
        ..LoadOptions::new(&dirs)
    }));
    // A folder the user named must be there, whatever the command.
    let missing: Vec<_> = registry
        .failures()
        .iter()
        .filter(|f| matches!(*f.kind, LoadErrorKind::Folder(_)) && cli_dirs.contains(&f.path))
        .collect();
    if !missing.is_empty() {
        for f in missing {
            eprintln!("error: {f} (given with --plugin-dir or in the settings file)");
        }
        return INVALID_INPUT;
    }
    // Commands that use plugins say which files cannot be used; `list` and `info` show it.
    if !matches!(cli.command, Command::List { .. } | Command::Info { .. }) && !cli.global.quiet {
        for f in registry.failures() {
            eprintln!("warning: {f}");
        }
    }
    let isolation = Isolation::new(
        cli.global.isolate || settings.isolate,
        &settings.isolate_plugin_dirs,
    );
    // The settings' plugin defaults are checked once, against the plugins' schemas.
    let defaults = PluginDefaults::new(settings.source(), &settings.plugins);
    if matches!(cli.command, Command::Check { .. } | Command::Run { .. }) {
        let problems = defaults.check(&registry);
        if !problems.is_empty() {
            for problem in problems {
                eprintln!("error: {problem}");
            }
            return INVALID_INPUT;
        }
    }
    match cli.command {
        Command::List { format } => list(&registry, format),
        Command::Info { plugin, format } => info(&registry, &plugin, format),
        Command::Check { files, reports } => {
            // A plugin's own `validate` and `claims` are its code: `check` asks them in
            // plugin servers, so checking a file runs no plugin code in the host.
            let isolation = isolation.clone().everything();
            let resolver = Resolver::new(&registry, &settings, &isolation, reports, None, None);
            check(&resolver, &files, cli.global.verbose)
        }
        Command::Doctor { format } => doctor(&registry, format),
        Command::Clean { network } => clean(&registry, network.as_deref(), &isolation),
        Command::New { .. } | Command::ServePlugin { .. } => {
            unreachable!("handled before the plugins are loaded")
        }
        Command::Run {
            files,
            output,
            reports,
            timeout,
            dry_run,
            format,
            jobs,
        } => {
            let resolver = Resolver::new(
                &registry,
                &settings,
                &isolation,
                reports,
                output.clone(),
                timeout,
            );
            if dry_run {
                plan(&resolver, &files, format)
            } else {
                run_files(
                    &registry,
                    &settings,
                    &resolver,
                    RunRequest {
                        files: &files,
                        output,
                        timeout,
                        jobs,
                        verbose: cli.global.verbose,
                        quiet: cli.global.quiet,
                        isolation,
                    },
                )
            }
        }
    }
}

fn report_error(err: &dyn std::error::Error, code: u8) -> u8 {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {err}");
    let mut source = err.source();
    while let Some(cause) = source {
        let _ = writeln!(stderr, "  caused by: {cause}");
        source = cause.source();
    }
    code
}

fn list(registry: &Registry, format: Format) -> u8 {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if format == Format::Json {
        let plugins: Vec<_> = registry
            .plugins()
            .map(|p| {
                json!({
                    "name": p.manifest.name,
                    "kind": p.manifest.kind,
                    "version": p.manifest.version,
                    "api_version": p.manifest.api_version,
                    "description": p.manifest.description,
                    "path": p.path,
                    "status": "ok",
                })
            })
            .collect();
        let shadowed: Vec<_> = registry
            .shadowed()
            .iter()
            .map(|s| {
                json!({
                    "name": s.plugin.manifest.name,
                    "kind": s.plugin.manifest.kind,
                    "version": s.plugin.manifest.version,
                    "path": s.plugin.path,
                    "status": "shadowed",
                    "shadowed_by": s.by,
                })
            })
            .collect();
        let errors: Vec<_> = registry
            .failures()
            .iter()
            .map(|f| json!({ "path": f.path, "plugin": f.plugin, "error": f.kind.to_string() }))
            .collect();
        let _ = writeln!(
            out,
            "{:#}",
            json!({ "plugins": plugins, "shadowed": shadowed, "errors": errors })
        );
        return list_code(registry);
    }
    let mut rows = vec![[
        "NAME".to_string(),
        "TYPE".into(),
        "VERSION".into(),
        "STATUS".into(),
        "FILE".into(),
    ]];
    for p in registry.plugins() {
        rows.push([
            p.manifest.name.clone(),
            p.manifest.kind.to_string(),
            p.manifest.version.clone(),
            "ok".into(),
            p.path.display().to_string(),
        ]);
    }
    for s in registry.shadowed() {
        rows.push([
            s.plugin.manifest.name.clone(),
            s.plugin.manifest.kind.to_string(),
            s.plugin.manifest.version.clone(),
            format!("shadowed by {}", s.by.display()),
            s.plugin.path.display().to_string(),
        ]);
    }
    for f in registry.failures() {
        rows.push([
            "-".into(),
            "-".into(),
            "-".into(),
            "error".into(),
            f.path.display().to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    if !registry.failures().is_empty() {
        let _ = writeln!(out, "\nFiles that failed to load:");
        for f in registry.failures() {
            let _ = writeln!(out, "  {f}");
        }
    }
    list_code(registry)
}

/// `list` exits 2 when a file or folder cannot be used, so scripts can tell.
fn list_code(registry: &Registry) -> u8 {
    if registry.failures().is_empty() {
        OK
    } else {
        INVALID_INPUT
    }
}

fn info(registry: &Registry, name: &str, format: Format) -> u8 {
    let found = registry.find(name);
    if found.is_empty() {
        if let Some(failure) = registry.failure_for(name) {
            eprintln!("error: the plugin `{name}` cannot be used: {failure}");
            return INVALID_INPUT;
        }
        let known: Vec<String> = registry
            .plugins()
            .map(|p| p.manifest.name.clone())
            .collect();
        let hint = crate::dispatch::driver::closest(name, &known)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        eprintln!(
            "error: no plugin named `{name}`{hint}; known: {}",
            known.join(", ")
        );
        return INVALID_INPUT;
    }
    let matrix = crate::matrix::of(registry);
    let mut out = std::io::stdout().lock();
    for plugin in found {
        // Where an execution environment works on this machine, or what works in a network
        // environment: its row or column of `doctor`'s matrix.
        let cells = matrix.cells_of(&plugin.manifest.name);
        if format == Format::Json {
            let mut value = serde_json::to_value(&plugin.manifest).unwrap_or_default();
            value["path"] = json!(plugin.path);
            if !cells.is_empty() {
                value["works_with"] = cells
                    .iter()
                    .map(|(name, cell)| (name.to_string(), json!(cell)))
                    .collect();
            }
            let _ = writeln!(out, "{value:#}");
            continue;
        }
        let m: &Manifest = &plugin.manifest;
        let _ = writeln!(out, "{} {} ({})", m.name, m.version, m.kind);
        let _ = writeln!(out, "  {}", m.description);
        let _ = writeln!(out, "  file:          {}", plugin.path.display());
        let _ = writeln!(out, "  plugin API:    {}", m.api_version);
        let _ = writeln!(out, "  priority:      {}", m.priority);
        let list = |v: &[String]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join(", ")
            }
        };
        let _ = writeln!(out, "  capabilities:  {}", list(&m.capabilities));
        let _ = writeln!(out, "  conflicts:     {}", list(&m.conflicts_with));
        let tools: Vec<String> = m
            .tools
            .iter()
            .map(|t| format!("{} (Debian: {})", t.program, t.package))
            .collect();
        let _ = writeln!(out, "  tools:         {}", list(&tools));
        // Keys of other vocabularies (PANTHER's): what is read as what, and what is refused
        // (`check` prints each refusal's hint).
        let read: Vec<String> = m
            .key_aliases
            .iter()
            .filter_map(|a| a.to.as_ref().map(|to| format!("{} as {to}", a.key)))
            .collect();
        let refused: Vec<String> = m
            .key_aliases
            .iter()
            .filter(|a| a.to.is_none())
            .map(|a| a.key.clone())
            .collect();
        let _ = writeln!(out, "  aliases:       {}", list(&read));
        let _ = writeln!(out, "  refused keys:  {}", list(&refused));
        if !cells.is_empty() {
            let other = match m.kind {
                PluginKind::ExecutionEnvironment => "in network environments",
                _ => "execution environments here",
            };
            let _ = writeln!(out, "  {other} (this machine):");
            for (name, cell) in &cells {
                let _ = writeln!(out, "    {name}: {cell}");
            }
        }
        let _ = writeln!(out, "  configuration schema:\n{:#}", m.config_schema);
    }
    OK
}

/// How long an isolated network environment may take to clean up after earlier runs.
const CLEAN_CALL_LIMIT: Duration = Duration::from_secs(120);

fn clean(registry: &Registry, only: Option<&str>, isolation: &Isolation) -> u8 {
    let names: Vec<String> = match only {
        Some(name) => {
            match crate::dispatch::driver::choose(registry, PluginKind::NetworkEnvironment, name) {
                Ok(plugin) => vec![plugin.manifest.name.clone()],
                Err(err) => return report_error(&err, INVALID_INPUT),
            }
        }
        None => registry
            .names(PluginKind::NetworkEnvironment)
            .into_iter()
            .map(String::from)
            .collect(),
    };
    let services = RunServices::new(Arc::new(AtomicBool::new(false)));
    let scratch = std::env::temp_dir().join(format!("panther-clean-{}", std::process::id()));
    // Processes of killed hosts carry the run mark (or sit in a run cgroup) that says whose
    // they were; the host ends them and reports them with the local environment.
    let mut processes = only
        .is_none_or(|n| n == "localhost")
        .then(|| crate::contain::stale::clean().lines());
    let mut code = OK;
    for name in names {
        let plugin = registry
            .get(PluginKind::NetworkEnvironment, &name)
            .expect("listed");
        let ctx = crate::context::InstanceContext::new(
            &name,
            &name,
            "host",
            scratch.clone(),
            services.clone(),
        );
        let placement = isolation.placement(&plugin.path, &CallLimit::new(CLEAN_CALL_LIMIT));
        let removed = plugin
            .start_network_environment(&placement, &name, &json!({}), ctx.into_ffi())
            .and_then(|mut env| env.clean_stale());
        let ended = if name == "localhost" {
            processes.take().unwrap_or_default()
        } else {
            Vec::new()
        };
        match removed {
            Ok(removed) if removed.is_empty() && ended.is_empty() => {
                println!("{name}: nothing to clean")
            }
            Ok(removed) => {
                for item in removed {
                    println!("{name}: removed {item}");
                }
            }
            Err(err) => code = report_error(&err, INTERNAL_ERROR),
        }
        for line in ended {
            println!("{name}: {line}");
        }
    }
    // Without the localhost plugin loaded, its processes are still cleaned.
    for line in processes.unwrap_or_default() {
        println!("localhost: {line}");
    }
    let _ = std::fs::remove_dir_all(&scratch);
    code
}

fn doctor(registry: &Registry, format: Format) -> u8 {
    let mut rows = Vec::new();
    for plugin in registry.plugins() {
        for tool in &plugin.manifest.tools {
            let found = tools::locate(tool);
            let mut status = match &found {
                Some(path) => format!("ok ({})", path.display()),
                None => format!(
                    "MISSING: apt-get install {}{}",
                    tool.package,
                    tools::or_configure(tool)
                ),
            };
            // A tracer is only useful where ptrace is allowed (Yama, seccomp): try it.
            if let (Some(path), true) = (&found, tool.program == "strace") {
                if let Err(why) = ptrace_usable(path) {
                    status = format!("UNUSABLE: {why}");
                }
            }
            rows.push((
                plugin.manifest.name.clone(),
                tool.program.clone(),
                tool.package.clone(),
                status,
            ));
        }
    }
    let healthy = rows.iter().all(|r| r.3.starts_with("ok"));
    let mut out = std::io::stdout().lock();
    if format == Format::Json {
        let value: Vec<_> = rows
            .iter()
            .map(|(plugin, tool, package, status)| json!({ "plugin": plugin, "tool": tool, "package": package, "ok": status.starts_with("ok"), "status": status }))
            .collect();
        let _ = writeln!(out, "{:#}", serde_json::Value::Array(value));
    } else {
        let _ = writeln!(
            out,
            "{:<18} {:<20} {:<24} STATUS",
            "PLUGIN", "TOOL", "PACKAGE"
        );
        for (plugin, tool, package, status) in &rows {
            let _ = writeln!(out, "{plugin:<18} {tool:<20} {package:<24} {status}");
        }
        // Where each execution environment works on this machine.
        let _ = write!(out, "\n{}", crate::matrix::of(registry).table());
    }
    if healthy {
        OK
    } else {
        INVALID_INPUT
    }
}

/// Whether `strace` may trace a child here (ptrace can be forbidden by Yama or a seccomp
/// profile): traces `/bin/true` once.
fn ptrace_usable(strace: &std::path::Path) -> Result<(), String> {
    let output = std::process::Command::new(strace)
        .args(["-f", "-o", "/dev/null", "--", "/bin/true"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", strace.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ptrace is not allowed here: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Turns experiment files into plans, with what the settings and the command line give.
struct Resolver<'a> {
    registry: &'a Registry,
    load: LoadDefaults,
    plan: PlanOptions,
}

impl<'a> Resolver<'a> {
    fn new(
        registry: &'a Registry,
        settings: &Settings,
        isolation: &Isolation,
        reports: Vec<ReportRequest>,
        output: Option<PathBuf>,
        timeout: Option<Duration>,
    ) -> Self {
        let source = settings.source();
        let defaults = PluginDefaults::new(source.clone(), &settings.plugins);
        let network = settings
            .scope
            .drivers
            .get(panther_plugin_api::PluginKind::NetworkEnvironment.as_str())
            .map(|name| (name.clone(), source.clone()));
        Resolver {
            registry,
            load: LoadDefaults {
                network,
                plugins: defaults.clone(),
            },
            plan: PlanOptions {
                outer: vec![Layer::host(source, settings.scope.clone())],
                isolation: isolation.clone(),
                reports,
                default_reporters: settings.reporters.clone(),
                plugin_defaults: defaults,
                output,
                settings_output: settings.output.clone(),
                timeout,
            },
        }
    }

    /// Loads, validates and resolves one file: every problem, with its file and line.
    fn resolve(&self, file: &std::path::Path) -> Result<Plan, ExperimentError> {
        plan::load(file, self.registry, &self.load, &self.plan)
    }
}

fn check(resolver: &Resolver<'_>, files: &[PathBuf], verbose: u8) -> u8 {
    let mut code = OK;
    for file in files {
        match resolver.resolve(file) {
            Ok(plan) => {
                print_warnings(&plan);
                if verbose > 0 {
                    for note in &plan.experiment.notes {
                        eprintln!("note: {note}");
                    }
                }
                let reports = plan.active_reporters().count();
                println!(
                    "{}: ok ({} service{}, network {}, {} execution environment{}, {} report{})",
                    file.display(),
                    plan.services.len(),
                    plural(plan.services.len()),
                    plan.network.instance.plugin,
                    plan.execution.len(),
                    plural(plan.execution.len()),
                    reports,
                    plural(reports),
                );
            }
            Err(err) => code = exit_code::worst([code, report_experiment_error(&err)]),
        }
    }
    code
}

/// What the plugins warned about while validating the experiment, one `warning:` line each.
fn print_warnings(plan: &Plan) {
    for warning in &plan.experiment.warnings {
        eprintln!("warning: {warning}");
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn report_experiment_error(err: &ExperimentError) -> u8 {
    eprintln!("error: {err}");
    INVALID_INPUT
}

fn options(
    settings: &Settings,
    isolation: &Isolation,
    output: PathBuf,
    timeout: Option<Duration>,
    verbose: u8,
) -> RunOptions {
    let cancelled = Arc::new(AtomicBool::new(false));
    for signal in STOP_SIGNALS {
        let _ = signal_hook::flag::register(signal, Arc::clone(&cancelled));
    }
    count_stop_signals();
    let observers: Vec<Arc<dyn Observer>> = if verbose > 0 {
        vec![Arc::new(TracingObserver)]
    } else {
        Vec::new()
    };
    RunOptions {
        output_root: output,
        timeout,
        services: RunServices::new(cancelled),
        observers,
        outer_scopes: vec![settings.scope.clone()],
        isolation: isolation.clone(),
    }
}

/// Ctrl-C, `kill` and a closed terminal all stop a run the same way: teardown, reports, 130.
const STOP_SIGNALS: [i32; 3] = [
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
];

/// A second stop signal (of any of [`STOP_SIGNALS`]) ends the grace periods: kill now.
fn count_stop_signals() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    static FIRST_SEEN: AtomicBool = AtomicBool::new(false);
    REGISTERED.call_once(|| {
        for signal in STOP_SIGNALS {
            // SAFETY: the handler only does atomic operations, which are async-signal-safe.
            let _ = unsafe {
                signal_hook::low_level::register(signal, || {
                    if FIRST_SEEN.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        crate::command::hurry();
                    }
                })
            };
        }
    });
}

fn plan(resolver: &Resolver<'_>, files: &[PathBuf], format: Format) -> u8 {
    let mut code = OK;
    let mut all = Vec::new();
    for file in files {
        let plan = match resolver.resolve(file) {
            Ok(plan) => plan,
            Err(err) => {
                code = exit_code::worst([code, report_experiment_error(&err)]);
                continue;
            }
        };
        let options = options(
            &Settings::default(),
            &resolver.plan.isolation,
            PathBuf::new(),
            None,
            0,
        );
        match run::dry_run(&plan, options) {
            Ok(planned) => all.push((plan, planned)),
            Err(errors) => {
                for e in errors {
                    eprintln!("error: {e}");
                }
                code = exit_code::worst([code, INTERNAL_ERROR]);
            }
        }
    }
    let mut out = std::io::stdout().lock();
    if format == Format::Json {
        let value: Vec<_> = all
            .iter()
            .map(|(plan, planned)| {
                json!({
                    "experiment": plan.experiment.name,
                    "network": plan.network.instance.plugin,
                    "services": planned,
                    "plan": plan.describe(),
                })
            })
            .collect();
        let _ = writeln!(out, "{:#}", serde_json::Value::Array(value));
        return code;
    }
    for (plan, planned) in &all {
        let exp = &plan.experiment;
        let _ = writeln!(
            out,
            "experiment {} on {} (timeout {})",
            exp.name,
            plan.network.instance.plugin,
            humantime::format_duration(exp.timeout)
        );
        let _ = writeln!(
            out,
            "  results: {} ({})",
            plan.output.0.display(),
            plan.output.1.as_str()
        );
        let reports: Vec<String> = plan
            .active_reporters()
            .map(|r| format!("{} ({})", r.instance.name, r.origin.as_str()))
            .collect();
        if !reports.is_empty() {
            let _ = writeln!(out, "  reports: {}", reports.join(", "));
        }
        for (i, p) in planned.iter().enumerate() {
            let role = match p.spec.role {
                panther_plugin_api::Role::Server => "server",
                panther_plugin_api::Role::Client => "client",
            };
            let _ = writeln!(out, "  {}. {} ({role})", i + 1, p.spec.name);
            if !p.spec.depends_on.is_empty() {
                let _ = writeln!(out, "     after:   {}", p.spec.depends_on.join(", "));
            }
            if !p.ports.is_empty() {
                let ports: Vec<String> = p.ports.iter().map(|(n, v)| format!("{n}={v}")).collect();
                let _ = writeln!(out, "     ports:   {}", ports.join(", "));
            }
            if !p.execution.is_empty() {
                let _ = writeln!(
                    out,
                    "     wrapped: {} (slowdown ×{:.1})",
                    p.execution.join(" + "),
                    p.slowdown
                );
            }
            let env: Vec<String> = p
                .spec
                .env
                .iter()
                .map(|(k, v)| format!("{k}={}", shell_quote(v)))
                .collect();
            let argv: Vec<String> = p.spec.argv.iter().map(|a| shell_quote(a)).collect();
            let _ = writeln!(
                out,
                "     command: {}{}",
                if env.is_empty() {
                    String::new()
                } else {
                    format!("{} ", env.join(" "))
                },
                argv.join(" ")
            );
        }
    }
    code
}

/// Quotes an argument for display so that what is printed can be pasted into a shell.
fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// What `run` was asked to do.
struct RunRequest<'a> {
    files: &'a [PathBuf],
    output: Option<PathBuf>,
    timeout: Option<Duration>,
    jobs: usize,
    verbose: u8,
    quiet: bool,
    isolation: Isolation,
}

fn run_files(
    registry: &Arc<Registry>,
    settings: &Settings,
    resolver: &Resolver<'_>,
    request: RunRequest<'_>,
) -> u8 {
    // Validate and resolve everything before starting anything.
    let mut plans = Vec::new();
    let mut invalid = false;
    for file in request.files {
        match resolver.resolve(file) {
            Ok(plan) => {
                if !request.quiet {
                    print_warnings(&plan);
                }
                plans.push(plan)
            }
            Err(err) => invalid = report_experiment_error(&err) == INVALID_INPUT || invalid,
        }
    }
    if invalid {
        return INVALID_INPUT;
    }
    // Orphans of the services (double forks, daemons) come back to the host, not init.
    if crate::contain::reap::become_subreaper() {
        crate::contain::reap::start_reaper();
    } else {
        tracing::debug!("cannot become a child subreaper; orphaned service processes go to init");
    }
    if plans.len() == 1 {
        let plan = plans.remove(0);
        let opts = options(
            settings,
            &request.isolation,
            plan.output.0.clone(),
            request.timeout,
            request.verbose,
        );
        return match run::run_plan(&plan, opts) {
            Ok(result) => {
                // Quiet runs speak only when something went wrong.
                if !request.quiet || result.status != RunStatus::Passed {
                    print_summary(&result);
                }
                exit_code::for_status(result.status)
            }
            Err(err) => report_error(&err, INTERNAL_ERROR),
        };
    }
    run_job(registry, settings, plans, &request)
}

/// Several experiments: a job with `--jobs` runners, a job-level report, progress bars when
/// stderr is a terminal.
fn run_job(
    registry: &Arc<Registry>,
    settings: &Settings,
    experiments: Vec<Plan>,
    request: &RunRequest<'_>,
) -> u8 {
    // The job's own report goes where no experiment file decides: -o, the settings' output.
    let root = request
        .output
        .clone()
        .or_else(|| settings.output.clone())
        .unwrap_or_else(|| PathBuf::from(plan::DEFAULT_OUTPUT));
    let template = options(
        settings,
        &request.isolation,
        root.clone(),
        request.timeout,
        request.verbose,
    );
    let mut job = Job::new("job", Arc::clone(registry), root.clone())
        .with_scopes(template.outer_scopes.clone())
        .with_timeout(request.timeout)
        .with_cancellation(Arc::clone(&template.services.cancelled))
        .with_isolation(template.isolation.clone());
    for observer in template.observers {
        job.observe(observer);
    }
    let runners = request.jobs.max(1).min(experiments.len());
    for i in 1..=runners {
        job.add_runner(Runner::new(&format!("runner-{i}")));
    }
    // The bars draw on stderr: they belong wherever stderr is a terminal, also when stdout
    // goes to a file or a pipe.
    if std::io::stderr().is_terminal() && !request.quiet {
        job = job.with_progress(Arc::new(crate::progress::Bars::new(
            runners,
            experiments.len(),
        )));
    }
    let result = job.run_plans(experiments);
    let mut codes = Vec::new();
    for outcome in &result.outcomes {
        match (&outcome.result, &outcome.error) {
            (Some(run), _) => {
                if !request.quiet || run.status != RunStatus::Passed {
                    print_summary(run);
                }
            }
            (None, Some(error)) => eprintln!("error: {}: {error}", outcome.experiment),
            (None, None) => {}
        }
        codes.push(exit_code::for_status(outcome.status()));
    }
    // Exclusive, like a run's: jobs started at once never share a report folder.
    let written = crate::run_dir::create_unique(&root, "job-")
        .and_then(|dir| crate::job_report::write(&result, &dir).map(|()| dir));
    match written {
        Ok(dir) if !request.quiet => eprintln!(
            "job: {} experiments in {:.2}s, report in {}",
            result.outcomes.len(),
            result.duration_ms as f64 / 1000.0,
            dir.display()
        ),
        Ok(_) => {}
        Err(err) => codes.push(report_error(&err, INTERNAL_ERROR)),
    }
    exit_code::worst(codes)
}

fn print_summary(result: &RunResult) {
    let mut err = std::io::stderr().lock();
    let verdict = match result.status {
        RunStatus::Passed => "passed",
        RunStatus::Failed => "FAILED",
        RunStatus::TimedOut => "TIMED OUT",
        RunStatus::Interrupted => "INTERRUPTED",
        RunStatus::Error => "ERROR",
    };
    let _ = writeln!(
        err,
        "{}: {verdict} in {:.2}s, results in {}",
        result.experiment,
        result.duration_ms as f64 / 1000.0,
        result.output_dir.display()
    );
    let width = result
        .services
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0);
    for s in &result.services {
        let status = if s.passed { "ok" } else { "FAILED" };
        let detail = match (&s.message, &s.state) {
            (Some(message), _) => message.clone(),
            (None, ProcessState::Signaled { signal }) if s.role == Role::Server => {
                format!("stopped by the host at the end of the run (signal {signal})")
            }
            (None, state) => state.to_string(),
        };
        let _ = writeln!(err, "  {:<width$}  {status:<6}  {detail}", s.name);
    }
    for e in &result.errors {
        let _ = writeln!(err, "  error: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn quoting_keeps_metacharacters_visible() {
        assert_eq!(shell_quote("; rm -rf x"), "'; rm -rf x'");
        assert_eq!(shell_quote("plain"), "plain");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
