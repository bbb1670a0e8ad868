//! Shared valgrind support for the `memcheck` and `helgrind` execution environments: [`xml`]
//! reads valgrind's XML reports, [`Valgrind`] wraps a service's command and turns what valgrind
//! wrote into the monitoring data the host stores and judges, and [`ValgrindPlugin`] is the
//! execution environment itself, around one tool's [`ToolConfig`].
//!
//! # How a service runs under valgrind
//!
//! [`Valgrind::wrap`] turns the service's argv into
//!
//! ```text
//! /usr/bin/valgrind --tool=memcheck --xml=yes --xml-file=DIR/valgrind.xml
//!     --log-file=DIR/valgrind.log --child-silent-after-fork=yes --trace-children=no
//!     [tool options] [--suppressions=FILE]... [extra_args]... -- ARGV...
//! ```
//!
//! where `DIR` is the folder the host reserves for the instance's files about the service
//! (`results/.../monitoring/<service>/<instance>/`). Every option is its own argv element.
//!
//! # In a container
//!
//! The image has no valgrind: the launcher is carried in with its libraries
//! ([`panther_toolmount`]), valgrind's tool folder (`memcheck-amd64-linux`, the preloaded
//! `vgpreload_*.so`, the default suppressions) is mounted read-only and named by
//! `VALGRIND_LIB`, and the output folder and suppressions files appear at the same paths.
//! Valgrind runs inside, so it reads the debug information of the container's binaries, and
//! its preloaded libraries use the container's C library.
//!
//! # Child processes
//!
//! Valgrind runs the program in its own process, so the pid the host monitors is the
//! program's. What happens to processes the program starts:
//!
//! - **fork without exec** (worker processes): the child is still under valgrind, and without
//!   `--child-silent-after-fork=yes` it would write its own `<valgrindoutput>` document into
//!   the parent's XML file, which then holds two interleaved documents (measured with
//!   valgrind 3.19, also with `%p` in the file name). The plugins always silence such children:
//!   the parent's report stays intact, the children's errors are not reported.
//! - **exec** (`sh -c`, launcher scripts): valgrind follows only with `--trace-children=yes`.
//!   Off by default (`trace_children = false`): one process, one report, and a wrapper that
//!   forks helpers (`sleep`, `cat`) is not slowed down twenty times. With `trace_children =
//!   true` the files are named `valgrind.<pid>.xml`/`.log`, every process that valgrind
//!   followed writes its own, and [`Valgrind::collect`] reads them all. A process that execs
//!   keeps its pid, so its file is replaced by the report of the program it became.
//!
//! # Stopping
//!
//! Servers are stopped by the host with SIGTERM to their process group (SIGKILL after the
//! network environment's grace period, `[network] stop_grace`, 3 s by default). Valgrind
//! catches the signal for the program; when the program does not handle it, valgrind
//! reports `<fatal_signal>` SIGTERM, **still runs its end-of-run work** — memcheck's leak
//! check included — closes the XML, and only then dies of the signal (measured with valgrind
//! 3.19: a complete report about 30 ms after SIGTERM for the echo server, 0.6 s for a heap of
//! one million blocks). A program that handles SIGTERM and exits gets the same complete
//! report. Only a program still running when the grace period ends is SIGKILLed: valgrind
//! cannot write anything more, the XML ends in the middle, and the leak records — written
//! last — are missing. The parser keeps every complete record and the data says
//! `truncated: true`.

pub mod xml;

mod args;
mod carry;
mod collect;
mod plugin;

use std::{collections::HashMap, path::PathBuf};

use panther_plugin_api::ServiceCommand;

pub use args::{check_extra_args, check_suppressions, locate, Options, Tool};
pub use collect::{collect, ProcessReport, RawFiles, ReportedError, ServiceReport};
pub use plugin::{ToolConfig, ValgrindPlugin};

/// One plugin instance's valgrind: the tool, its options, the thresholds, and the folders
/// of the services it wrapped.
#[derive(Debug)]
pub struct Valgrind {
    tool: Tool,
    options: Options,
    thresholds: xml::Thresholds,
    output_dirs: HashMap<String, PathBuf>,
}

impl Valgrind {
    /// A valgrind for `tool` with these options and thresholds.
    pub fn new(tool: Tool, options: Options, thresholds: xml::Thresholds) -> Self {
        Valgrind {
            tool,
            options,
            thresholds,
            output_dirs: HashMap::new(),
        }
    }

    /// How much slower a service runs under the tool; see [`Tool::slowdown`].
    pub fn slowdown(&self) -> f64 {
        self.tool.slowdown()
    }

    /// Prefixes the service's argv with valgrind (found on the host's `PATH`, as an absolute
    /// path) and its options, writing into `command.output_dir`.
    pub fn wrap(&mut self, mut command: ServiceCommand) -> anyhow::Result<ServiceCommand> {
        let program = locate(std::env::var_os("PATH").as_deref())?;
        if command.site.is_container() {
            command.output_dir = std::path::absolute(&command.output_dir)?;
        }
        let argv = self.options.argv(
            self.tool,
            &program,
            &command.output_dir,
            command.cwd.as_deref(),
            &command.argv,
        )?;
        command.argv = if command.site.is_container() {
            carry::into_container(&program, argv, &mut command)?
        } else {
            argv
        };
        self.output_dirs
            .insert(command.service.clone(), command.output_dir.clone());
        Ok(command)
    }

    /// Reads what valgrind wrote about `service` and judges it against the thresholds.
    pub fn collect(&mut self, service: &str) -> anyhow::Result<serde_json::Value> {
        let dir = self
            .output_dirs
            .get(service)
            .ok_or_else(|| anyhow::anyhow!("service `{service}` was never wrapped"))?;
        let report = collect(dir, self.tool, &self.thresholds)
            .map_err(|e| e.context(format!("collecting valgrind's report about `{service}`")))?;
        if report.truncated {
            tracing::warn!(
                service,
                "valgrind's output is truncated: the service was killed before valgrind \
                 finished its report (records written last, such as leaks, are missing)"
            );
        }
        Ok(serde_json::to_value(report)?)
    }
}
