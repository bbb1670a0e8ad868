//! `helgrind`: runs a service under valgrind's helgrind and reports data races, lock-order
//! violations and misuse of the pthread API, each with the stacks of the threads involved
//! and where those threads were created; optional thresholds fail the service.
//!
//! The command becomes `valgrind --tool=helgrind --xml=yes --xml-file=... -- ARGV`; the XML
//! is read after the service has ended. How children, SIGTERM and truncated output are
//! handled is described in `panther-valgrind` and in this plugin's README.

use std::path::PathBuf;

use panther_plugin_api::prelude::*;
use panther_valgrind::{
    check_extra_args, check_suppressions, xml::Thresholds, Options, Tool, ToolConfig,
    ValgrindPlugin,
};

/// `--history-level`: how much helgrind remembers about earlier accesses, which decides
/// whether a race report shows the other thread's stack.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HistoryLevel {
    /// Both stacks of every race (the slowest, valgrind's default).
    #[default]
    Full,
    /// The other access only as a range of its thread's history.
    Approx,
    /// Only the stack of the access that raced.
    None,
}

/// The `[[execution]]` section of `helgrind`. Without any `max_*` key the plugin only
/// reports; each `max_*` key set fails the service when it is exceeded.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `--history-level`: "full", "approx" or "none".
    #[serde(default)]
    pub history_level: HistoryLevel,
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
    /// Fail when there are more error records than this, of any kind.
    #[serde(default)]
    pub max_errors: Option<u64>,
    /// Fail when there are more data-race records than this.
    #[serde(default)]
    pub max_races: Option<u64>,
    /// Fail when there are more lock-order violations than this.
    #[serde(default)]
    pub max_lock_order_violations: Option<u64>,
    /// Fail when there are more pthread API misuses (unlocking a lock not held, a failing
    /// pthread call, waiting without the mutex...) than this.
    #[serde(default)]
    pub max_pthread_misuse: Option<u64>,
    /// Fail when valgrind's output is truncated (the service was killed before valgrind
    /// finished).
    #[serde(default)]
    pub fail_on_truncated: bool,
}

impl Default for Config {
    fn default() -> Self {
        serde_json::from_value(serde_json::json!({})).expect("every key has a default")
    }
}

/// helgrind's keys, options and thresholds.
impl ToolConfig for Config {
    const TOOL: Tool = Tool::Helgrind;

    const REFUSED_KEYS: &'static [(&'static str, &'static str)] = &[(
        "cache_size",
        "helgrind has no such option; there is nothing to set",
    )];

    const EXTRA_ARGS_KEYS: &'static [(&'static str, &'static str)] = &[
        ("conflict_cache_size", "--conflict-cache-size=1000000"),
        ("track_lockorders", "--track-lockorders=no"),
        ("check_stack_refs", "--check-stack-refs=no"),
        ("ignore_thread_creation", "--ignore-thread-creation=yes"),
        ("free_is_write", "--free-is-write=yes"),
        ("show_below_main", "--show-below-main=yes"),
        ("track_fds", "--track-fds=yes"),
        ("time_stamp", "--time-stamp=yes"),
    ];

    fn thresholds(&self) -> Thresholds {
        Thresholds {
            max_errors: self.max_errors,
            max_races: self.max_races,
            max_lock_order_violations: self.max_lock_order_violations,
            max_pthread_misuse: self.max_pthread_misuse,
            fail_on_truncated: self.fail_on_truncated,
            ..Thresholds::default()
        }
    }

    fn options(&self) -> Options {
        let level = match self.history_level {
            HistoryLevel::Full => "full",
            HistoryLevel::Approx => "approx",
            HistoryLevel::None => "none",
        };
        Options {
            tool_args: vec![format!("--history-level={level}")],
            suppressions: self.suppressions.clone(),
            extra_args: self.extra_args.clone(),
            trace_children: self.trace_children,
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut problems =
            check_extra_args(&self.extra_args, &[("--history-level", "history_level")]);
        problems.extend(check_suppressions(&self.suppressions));
        problems
    }
}

/// Runs services under helgrind.
pub type Helgrind = ValgrindPlugin<Config>;

export_plugin!(ExecutionEnvironment: Helgrind);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> Result<Config, serde_json::Error> {
        serde_json::from_value(json)
    }

    #[test]
    fn defaults_keep_full_history_and_fail_on_nothing() {
        let config = Config::default();
        assert_eq!(config.options().tool_args, ["--history-level=full"]);
        assert_eq!(config.thresholds(), Thresholds::default());
        assert!(config.problems().is_empty());
    }

    #[test]
    fn keys_map_to_options_and_thresholds() {
        let config = config(serde_json::json!({
            "history_level": "approx",
            "trace_children": true,
            "max_races": 0,
            "max_lock_order_violations": 1,
            "max_pthread_misuse": 2,
        }))
        .unwrap();
        assert_eq!(config.options().tool_args, ["--history-level=approx"]);
        assert!(config.options().trace_children);
        let thresholds = config.thresholds();
        assert_eq!(
            (
                thresholds.max_races,
                thresholds.max_lock_order_violations,
                thresholds.max_pthread_misuse
            ),
            (Some(0), Some(1), Some(2))
        );
    }

    #[test]
    fn memcheck_keys_and_managed_options_are_refused() {
        let err = config(serde_json::json!({ "max_definitely_lost_bytes": 0 })).unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown field `max_definitely_lost_bytes`"),
            "{err}"
        );
        let config = config(serde_json::json!({ "extra_args": ["--history-level=none"] })).unwrap();
        assert_eq!(
            config.problems(),
            [
                "`extra_args` element \"--history-level=none\" sets `--history-level`: use the \
              `history_level` key instead"
            ]
        );
    }

    #[test]
    fn refuses_other_valgrind_tools_and_ld_preload_profilers() {
        let helgrind = Helgrind::manifest();
        let memcheck = Manifest::new("memcheck")
            .capability("valgrind")
            .conflicts_with("valgrind");
        assert!(helgrind.conflict_with(&memcheck).is_some());
        let profiler = Manifest::new("gperf_cpu").capability("ld_preload");
        assert_eq!(
            helgrind.conflict_with(&profiler).as_deref(),
            Some("`helgrind` declares it cannot run with `ld_preload` plugins, and `gperf_cpu` is one")
        );
    }
}
