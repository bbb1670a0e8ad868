//! The execution environment every valgrind tool's plugin is: one [`ValgrindPlugin`] around
//! the tool's own configuration ([`ToolConfig`]). What differs between `memcheck` and
//! `helgrind` is their options, thresholds and manifest keys; how a service is checked,
//! wrapped and judged is the same, and lives here once.

use std::marker::PhantomData;

use panther_plugin_api::{
    prelude::*, serde::de::DeserializeOwned, ServiceCommand, ValidationContext,
};

use crate::{args::Options, xml::Thresholds, Tool, Valgrind};

/// One valgrind tool's `[[execution]]` section, and what the plugin built around it needs to
/// know about the tool.
pub trait ToolConfig: DeserializeOwned + JsonSchema + Send + 'static {
    /// The tool valgrind runs; its name is also the plugin's.
    const TOOL: Tool;

    /// PANTHER's keys this tool refuses, with the hint that says what to write instead.
    const REFUSED_KEYS: &'static [(&'static str, &'static str)];

    /// PANTHER's keys for valgrind options this plugin leaves to `extra_args`, with an
    /// example of the option (`("track_fds", "--track-fds=yes")`).
    const EXTRA_ARGS_KEYS: &'static [(&'static str, &'static str)];

    /// How valgrind is run.
    fn options(&self) -> Options;

    /// The thresholds in the parser's terms.
    fn thresholds(&self) -> Thresholds;

    /// What is wrong with the configuration beyond its schema.
    fn problems(&self) -> Vec<String>;
}

/// Runs services under the valgrind tool `C` configures.
pub struct ValgrindPlugin<C> {
    valgrind: Valgrind,
    config: PhantomData<fn() -> C>,
}

impl<C: ToolConfig> Plugin for ValgrindPlugin<C> {
    type Config = C;

    fn manifest() -> Manifest {
        let manifest = Manifest::new(C::TOOL.name())
            .capability(capability::VALGRIND)
            .capability(capability::IN_CONTAINERS)
            // One valgrind per process; and valgrind replaces malloc (helgrind also
            // intercepts pthreads) itself, so an LD_PRELOAD profiler would either be
            // bypassed or break it.
            .conflicts_with(capability::VALGRIND)
            .conflicts_with(capability::LD_PRELOAD)
            // Innermost: valgrind must run the program itself, not another wrapper.
            .priority(-50)
            .tool("valgrind", "valgrind");
        tool_keys::<C>(manifest)
    }

    fn validate(config: &C, experiment: &ValidationContext) -> Vec<String> {
        let mut problems = config.problems();
        problems.extend(panther_toolmount::refuse::needs_dynamic(
            C::TOOL.name(),
            &format!("vgpreload_{}", C::TOOL.name()),
            experiment,
        ));
        problems
    }

    fn new(config: C, _ctx: Context) -> anyhow::Result<Self> {
        let problems = config.problems();
        if !problems.is_empty() {
            bail!("{}", problems.join("; "));
        }
        Ok(ValgrindPlugin {
            valgrind: Valgrind::new(C::TOOL, config.options(), config.thresholds()),
            config: PhantomData,
        })
    }
}

impl<C: ToolConfig> ExecutionEnvironment for ValgrindPlugin<C> {
    fn slowdown(&self) -> f64 {
        self.valgrind.slowdown()
    }

    fn wrap(&mut self, command: ServiceCommand) -> anyhow::Result<ServiceCommand> {
        self.valgrind.wrap(command)
    }

    fn get_monitoring_data(&mut self, service: &str) -> anyhow::Result<serde_json::Value> {
        self.valgrind.collect(service)
    }
}

/// PANTHER's keys of the tool `C`: the ones every valgrind plugin shares, the ones the tool
/// refuses, and the valgrind options it leaves to `extra_args`, in that order.
fn tool_keys<C: ToolConfig>(manifest: Manifest) -> Manifest {
    let manifest = C::REFUSED_KEYS
        .iter()
        .fold(shared_keys(manifest), |m, (key, hint)| {
            m.refuse_key(*key, *hint)
        });
    C::EXTRA_ARGS_KEYS
        .iter()
        .fold(manifest, |m, (key, option)| via_extra_args(m, key, option))
}

/// PANTHER's keys that its `memcheck` and `helgrind` environments share, declared on
/// `manifest` (see [`panther_plugin_api::KeyAlias`]).
fn shared_keys(manifest: Manifest) -> Manifest {
    manifest
        .alias_key(
            "additional_parameters",
            "extra_args",
            "PANTHER's name for the same list of valgrind options",
        )
        .refuse_key(
            "suppression_file",
            "write `suppressions = [\"FILE\"]`, a list of files",
        )
        .refuse_key(
            "valgrind_binary",
            "the host finds valgrind itself (`panther-host doctor` shows where)",
        )
        .refuse_key(
            "output_format",
            "valgrind always writes XML here: the report is built from it",
        )
        .refuse_key(
            "verbosity",
            "valgrind's own log is `valgrind.log` in the instance's folder; the host's output is set with -v/-vv",
        )
}

/// Refuses PANTHER's `key`, a valgrind option this plugin does not model, with the hint to
/// pass `option` in `extra_args`.
fn via_extra_args(manifest: Manifest, key: &str, option: &str) -> Manifest {
    manifest.refuse_key(
        key,
        format!("pass valgrind's option in `extra_args`: `extra_args = [\"{option}\"]`"),
    )
}
