//! The `panther-host` command line.
//!
//! Machine output (`--format json`, reports to `-`) goes to stdout alone; logs, progress and
//! summaries go to stderr. Listing and `info` open no plugin library when the manifest cache
//! is warm; `check` opens only the plugins an experiment uses (to ask them to validate);
//! none of them touches an engine or runs a tool.
//!
//! One module per subcommand: [`list`], [`info`], [`doctor`], [`clean`], [`check`], [`run`]
//! (and its [`dry_run`]); [`resolver`] turns experiment files into plans for the last three.

mod check;
mod clean;
mod doctor;
mod dry_run;
mod info;
mod list;
mod resolver;
mod run;

use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use panther_plugin_api::PluginKind;
use tracing_subscriber::EnvFilter;

use crate::{
    exit_code::{self, INVALID_INPUT, OK},
    experiment::ExperimentError,
    isolate::Isolation,
    loader::{self, LoadErrorKind, PLUGIN_PATH_ENV},
    plan::ReportRequest,
    plugin_defaults::PluginDefaults,
    registry::{LoadOptions, Registry},
    settings::Settings,
};
use resolver::Resolver;

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
        Command::List { format } => list::list(&registry, format),
        Command::Info { plugin, format } => info::info(&registry, &plugin, format),
        Command::Check { files, reports } => {
            // A plugin's own `validate` and `claims` are its code: `check` asks them in
            // plugin servers, so checking a file runs no plugin code in the host.
            let isolation = isolation.clone().everything();
            let resolver = Resolver::new(&registry, &settings, &isolation, reports, None, None);
            check::check(&resolver, &files, cli.global.verbose)
        }
        Command::Doctor { format } => doctor::doctor(&registry, format),
        Command::Clean { network } => clean::clean(&registry, network.as_deref(), &isolation),
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
                dry_run::plan(&resolver, &files, format)
            } else {
                run::run_files(
                    &registry,
                    &settings,
                    &resolver,
                    run::RunRequest {
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
    let _ = write!(std::io::stderr().lock(), "{}", render_error(err));
    code
}

/// `error: <message>`, then a `caused by:` line for each cause the messages before it do not
/// already say: many errors name their cause in their own message and also return it as
/// their source, and a cause is worth reading once.
fn render_error(err: &dyn std::error::Error) -> String {
    let mut said = err.to_string();
    let mut text = format!("error: {said}\n");
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !said.contains(&cause_text) {
            text.push_str(&format!("  caused by: {cause_text}\n"));
            said.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn report_experiment_error(err: &ExperimentError) -> u8 {
    eprintln!("error: {err}");
    INVALID_INPUT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_said_once() {
        let os = std::io::Error::from_raw_os_error(2);
        let named = crate::run::RunError::Output {
            path: "/proc/nope".into(),
            source: std::io::Error::from_raw_os_error(2),
        };
        assert_eq!(
            render_error(&named),
            format!("error: cannot create the results folder /proc/nope: {os}\n")
        );
        let wrapped = anyhow::Error::new(os).context("reading the plan");
        let wrapped: &dyn std::error::Error = wrapped.as_ref();
        assert_eq!(
            render_error(wrapped),
            "error: reading the plan\n  caused by: No such file or directory (os error 2)\n"
        );
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
