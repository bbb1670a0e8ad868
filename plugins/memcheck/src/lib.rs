//! `memcheck`: runs a service under valgrind's memcheck and reports its memory errors
//! (invalid reads and writes, uses of uninitialised values, bad frees) and leaks, each with
//! its symbolized stacks; optional thresholds fail the service.
//!
//! The command becomes `valgrind --tool=memcheck --xml=yes --xml-file=... -- ARGV`; the XML
//! is read after the service has ended. How children, SIGTERM and truncated output are
//! handled is described in `panther-valgrind` and in this plugin's README.

use std::path::PathBuf;

use panther_plugin_api::prelude::*;
use panther_valgrind::{
    check_extra_args, check_suppressions, xml::Thresholds, Options, Tool, ToolConfig,
    ValgrindPlugin,
};

/// `--leak-check`: whether and how leaks are searched when the program ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LeakCheck {
    /// No leak search.
    No,
    /// Leak search; with XML output valgrind still writes one record per leak.
    Summary,
    /// Leak search with one record per leak and its allocation stack.
    #[default]
    Full,
}

/// A kind of leaked block (`--show-leak-kinds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LeakKind {
    /// No pointer to the block is left.
    Definite,
    /// Only pointed to from other lost blocks.
    Indirect,
    /// Only pointed to into its middle.
    Possible,
    /// Still pointed to at exit.
    Reachable,
}

impl LeakKind {
    fn name(self) -> &'static str {
        match self {
            LeakKind::Definite => "definite",
            LeakKind::Indirect => "indirect",
            LeakKind::Possible => "possible",
            LeakKind::Reachable => "reachable",
        }
    }
}

/// The `[[execution]]` section of `memcheck`. Without any `max_*` key the plugin only
/// reports; each `max_*` key set fails the service when it is exceeded.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `--leak-check`: "no", "summary" or "full".
    #[serde(default)]
    pub leak_check: LeakCheck,
    /// `--show-leak-kinds`: which leaks are reported (and so can be counted by the
    /// thresholds). `[]` reports none.
    #[serde(default = "default_leak_kinds")]
    pub show_leak_kinds: Vec<LeakKind>,
    /// `--track-origins=yes`: say where uninitialised values come from (slower).
    #[serde(default)]
    pub track_origins: bool,
    /// `--trace-children=yes`: follow `exec` into child processes, one report each.
    #[serde(default)]
    pub trace_children: bool,
    /// Suppression files (`--suppressions=`); relative paths are relative to the service's
    /// working directory.
    #[serde(default)]
    pub suppressions: Vec<PathBuf>,
    /// Further valgrind options, one option per element, e.g. `["--num-callers=30"]`.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// Fail when there are more error records than this (leaks included).
    #[serde(default)]
    pub max_errors: Option<u64>,
    /// Fail when there are more memory-error records (invalid accesses, uninitialised
    /// values, bad frees...; leaks excluded) than this.
    #[serde(default)]
    pub max_memory_errors: Option<u64>,
    /// Fail when there are more invalid-read records than this.
    #[serde(default)]
    pub max_invalid_reads: Option<u64>,
    /// Fail when there are more invalid-write records than this.
    #[serde(default)]
    pub max_invalid_writes: Option<u64>,
    /// Fail when more bytes than this are definitely lost (needs "definite" shown).
    #[serde(default)]
    pub max_definitely_lost_bytes: Option<u64>,
    /// Fail when more bytes than this are indirectly lost (needs "indirect" shown).
    #[serde(default)]
    pub max_indirectly_lost_bytes: Option<u64>,
    /// Fail when more bytes than this are possibly lost (needs "possible" shown).
    #[serde(default)]
    pub max_possibly_lost_bytes: Option<u64>,
    /// Fail when valgrind's output is truncated (the service was killed before valgrind
    /// finished: its leak report is missing).
    #[serde(default)]
    pub fail_on_truncated: bool,
}

fn default_leak_kinds() -> Vec<LeakKind> {
    vec![LeakKind::Definite, LeakKind::Possible]
}

impl Default for Config {
    fn default() -> Self {
        serde_json::from_value(serde_json::json!({})).expect("every key has a default")
    }
}

/// memcheck's keys, options and thresholds.
impl ToolConfig for Config {
    const TOOL: Tool = Tool::Memcheck;

    /// The keys of valgrind's own leak options, which `show_leak_kinds` and the thresholds
    /// replace.
    const REFUSED_KEYS: &'static [(&'static str, &'static str)] = &[
        (
            "show_reachable",
            "write `show_leak_kinds = [\"definite\", \"possible\", \"reachable\"]`",
        ),
        (
            "show_possibly_lost",
            "write `show_leak_kinds = [\"definite\", \"possible\"]` (or without \"possible\")",
        ),
        (
            "errors_for_leak_kinds",
            "what fails the service is set by the `max_*_lost_bytes` and `max_errors` thresholds",
        ),
    ];

    const EXTRA_ARGS_KEYS: &'static [(&'static str, &'static str)] = &[
        ("leak_resolution", "--leak-resolution=high"),
        ("leak_check_heuristics", "--leak-check-heuristics=all"),
        ("xtree_leak", "--xtree-leak=yes"),
        ("xtree_leak_file", "--xtree-leak-file=xtleak.kcg.%p"),
        ("undef_value_errors", "--undef-value-errors=no"),
        ("partial_loads_ok", "--partial-loads-ok=yes"),
        (
            "expensive_definedness_checks",
            "--expensive-definedness-checks=yes",
        ),
        ("keep_stacktraces", "--keep-stacktraces=alloc-and-free"),
        ("freelist_vol", "--freelist-vol=20000000"),
        ("freelist_big_blocks", "--freelist-big-blocks=1000000"),
        ("workaround_gcc296_bugs", "--workaround-gcc296-bugs=yes"),
        ("ignore_range_below_sp", "--ignore-range-below-sp=8192-8189"),
        ("show_mismatched_frees", "--show-mismatched-frees=no"),
        ("show_realloc_size_zero", "--show-realloc-size-zero=no"),
        ("ignore_ranges", "--ignore-ranges=0xPP-0xQQ"),
        ("malloc_fill", "--malloc-fill=0xAB"),
        ("free_fill", "--free-fill=0xCD"),
        ("xml_user_comment", "--xml-user-comment=TEXT"),
        ("generate_suppressions", "--gen-suppressions=all"),
    ];

    fn thresholds(&self) -> Thresholds {
        Thresholds {
            max_errors: self.max_errors,
            max_memory_errors: self.max_memory_errors,
            max_invalid_reads: self.max_invalid_reads,
            max_invalid_writes: self.max_invalid_writes,
            max_definitely_lost_bytes: self.max_definitely_lost_bytes,
            max_indirectly_lost_bytes: self.max_indirectly_lost_bytes,
            max_possibly_lost_bytes: self.max_possibly_lost_bytes,
            fail_on_truncated: self.fail_on_truncated,
            ..Thresholds::default()
        }
    }

    fn options(&self) -> Options {
        let kinds = if self.show_leak_kinds.is_empty() {
            "none".to_string()
        } else {
            let names: Vec<&str> = self.show_leak_kinds.iter().map(|k| k.name()).collect();
            names.join(",")
        };
        let leak_check = match self.leak_check {
            LeakCheck::No => "no",
            LeakCheck::Summary => "summary",
            LeakCheck::Full => "full",
        };
        Options {
            tool_args: vec![
                format!("--leak-check={leak_check}"),
                format!("--show-leak-kinds={kinds}"),
                format!(
                    "--track-origins={}",
                    if self.track_origins { "yes" } else { "no" }
                ),
            ],
            suppressions: self.suppressions.clone(),
            extra_args: self.extra_args.clone(),
            trace_children: self.trace_children,
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = check_extra_args(
            &self.extra_args,
            &[
                ("--leak-check", "leak_check"),
                ("--show-leak-kinds", "show_leak_kinds"),
                ("--track-origins", "track_origins"),
            ],
        );
        problems.extend(check_suppressions(&self.suppressions));
        // Valgrind writes a record only for the leak kinds it shows: a limit on another kind
        // would always see zero bytes.
        let limits = [
            (
                self.max_definitely_lost_bytes,
                LeakKind::Definite,
                "max_definitely_lost_bytes",
            ),
            (
                self.max_indirectly_lost_bytes,
                LeakKind::Indirect,
                "max_indirectly_lost_bytes",
            ),
            (
                self.max_possibly_lost_bytes,
                LeakKind::Possible,
                "max_possibly_lost_bytes",
            ),
        ];
        for (_, kind, key) in limits.iter().filter(|(limit, _, _)| limit.is_some()) {
            if self.leak_check == LeakCheck::No {
                problems.push(format!(
                    "`{key}` needs a leak check, but `leak_check` is \"no\""
                ));
            } else if !self.show_leak_kinds.contains(kind) {
                problems.push(format!(
                    "`{key}` needs \"{}\" in `show_leak_kinds`: valgrind reports only the leak \
                     kinds it shows",
                    kind.name()
                ));
            }
        }
        problems
    }
}

/// Runs services under memcheck.
pub type Memcheck = ValgrindPlugin<Config>;

export_plugin!(ExecutionEnvironment: Memcheck);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> Result<Config, serde_json::Error> {
        serde_json::from_value(json)
    }

    #[test]
    fn defaults_check_full_leaks_and_fail_on_nothing() {
        let config = Config::default();
        assert_eq!(
            config.options().tool_args,
            [
                "--leak-check=full",
                "--show-leak-kinds=definite,possible",
                "--track-origins=no"
            ]
        );
        assert_eq!(config.thresholds(), Thresholds::default());
        assert!(!config.options().trace_children);
        assert!(config.problems().is_empty());
    }

    #[test]
    fn keys_map_to_options_and_thresholds() {
        let config = config(serde_json::json!({
            "leak_check": "summary",
            "show_leak_kinds": [],
            "track_origins": true,
            "extra_args": ["--num-callers=40"],
            "max_invalid_reads": 0,
            "fail_on_truncated": true,
        }))
        .unwrap();
        let options = config.options();
        assert_eq!(
            options.tool_args,
            [
                "--leak-check=summary",
                "--show-leak-kinds=none",
                "--track-origins=yes"
            ]
        );
        assert_eq!(options.extra_args, ["--num-callers=40"]);
        let thresholds = config.thresholds();
        assert_eq!(thresholds.max_invalid_reads, Some(0));
        assert!(thresholds.fail_on_truncated);
    }

    #[test]
    fn unknown_keys_and_other_tools_limits_are_refused() {
        let err = config(serde_json::json!({ "max_races": 0 })).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `max_races`"),
            "{err}"
        );
        let err = config(serde_json::json!({ "leak_check": "yes" })).unwrap_err();
        assert!(err.to_string().contains("unknown variant `yes`"), "{err}");
    }

    #[test]
    fn leak_limits_need_their_kind_shown() {
        let limits = config(serde_json::json!({
            "max_indirectly_lost_bytes": 0,
            "max_definitely_lost_bytes": 0,
            "extra_args": ["--show-leak-kinds=all"],
        }))
        .unwrap();
        assert_eq!(
            limits.problems(),
            [
                "`extra_args` element \"--show-leak-kinds=all\" sets `--show-leak-kinds`: use \
                 the `show_leak_kinds` key instead",
                "`max_indirectly_lost_bytes` needs \"indirect\" in `show_leak_kinds`: valgrind \
                 reports only the leak kinds it shows",
            ]
        );
        let no_check = config(serde_json::json!({
            "leak_check": "no",
            "max_possibly_lost_bytes": 10,
        }))
        .unwrap();
        assert_eq!(
            no_check.problems(),
            ["`max_possibly_lost_bytes` needs a leak check, but `leak_check` is \"no\""]
        );
    }

    #[test]
    fn refuses_other_valgrind_tools_and_ld_preload_profilers() {
        let memcheck = Memcheck::manifest();
        assert_eq!(memcheck.tools[0].package, "valgrind");
        let helgrind = Manifest::new("helgrind").capability("valgrind");
        assert_eq!(
            memcheck.conflict_with(&helgrind).as_deref(),
            Some(
                "`memcheck` declares it cannot run with `valgrind` plugins, and `helgrind` is one"
            )
        );
        let profiler = Manifest::new("gperf_heap").capability("ld_preload");
        assert_eq!(
            memcheck.conflict_with(&profiler).as_deref(),
            Some("`memcheck` declares it cannot run with `ld_preload` plugins, and `gperf_heap` is one")
        );
        assert_eq!(
            memcheck.conflict_with(&Manifest::new("resource_metrics").capability("sampler")),
            None
        );
    }
}
