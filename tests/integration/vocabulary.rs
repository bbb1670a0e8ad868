//! PANTHER's vocabulary through the real binary: every key of PANTHER's environment plugins
//! (read from its configuration schemas), written in an experiment file, is either read under
//! this host's name (a note in `check -v`, and the file checks) or refused with a hint of its
//! own, never with the schema's bare "additional properties" error. The lists below are
//! PANTHER's keys, kept here independently of the plugins' declarations, and
//! docs/experiments.md must have a row for each.

use crate::support::{code, root, stderr, stdout, time_plugin_dir, Sandbox};

/// A PANTHER environment and its keys.
struct Environment {
    /// Our plugin of the same name.
    plugin: &'static str,
    /// `[network]` or `[[execution]]`.
    network: bool,
    /// Keys our plugin reads under its own name: (PANTHER's key, a TOML value, our key).
    /// `{lib}` in a value is replaced by the path of an existing file.
    aliases: &'static [(&'static str, &'static str, &'static str)],
    /// Keys refused with a hint.
    refused: &'static [&'static str],
}

/// The `[network]` section execution environments are checked under: a container engine
/// network, so that `check` needs no tool installed (it touches no engine either).
const CONTAINERS: &str =
    "[network]\nplugin = \"docker_compose\"\nimage = \"panther-vocabulary:none\"\n";

/// What every section needs besides the keys under test.
fn base(plugin: &str) -> &'static str {
    match plugin {
        "docker_compose" | "localhost_single_container" => "image = \"panther-vocabulary:none\"\n",
        "shadow_ns" => "hosts.a = [\"s\"]\n",
        _ => "",
    }
}

const GPERF_GENERATOR: [&str; 11] = [
    "input_file",
    "output_file",
    "language",
    "keyword_only",
    "readonly_tables",
    "switch",
    "compare_strncmp",
    "hash_function",
    "compare_function",
    "includes",
    "other_flags",
];

/// Keys of PANTHER's environment base classes (`EnvironmentConfig`, `BasePluginConfig`,
/// `ExecutionEnvironmentPluginConfig`), which every environment accepts there.
const COMMON: &[&str] = &[
    "type",
    "enabled",
    "priority",
    "version",
    "plugin_config",
    "enable_background_monitoring",
    "monitoring_interval_seconds",
    "failure_threshold_count",
    "allow_partial_deployment",
    "critical_services",
    "collect_metrics",
    "output_format",
    "incompatibility",
];

const ENVIRONMENTS: &[Environment] = &[
    Environment {
        plugin: "strace",
        network: false,
        aliases: &[
            ("excluded_syscalls", "[\"read\"]", "exclude"),
            ("include_kernel_stack", "true", "kernel_stacks"),
            ("stack_traces", "true", "kernel_stacks"),
            ("trace_children", "false", "follow_forks"),
            ("string_limit", "128", "string_size"),
        ],
        refused: &[
            "additional_parameters",
            "strace_binary",
            "trace_all_syscalls",
            "trace_network_syscalls",
            "trace_file_syscalls",
            "network_focus",
            "timeout",
            "output_file",
            "output_dir",
            "sampling_rate",
            "monitored_process",
            "output_format",
            "decode_fds",
            "timestamps",
            "timestamp_format",
            "buffer_size",
            "inject_errors",
        ],
    },
    Environment {
        plugin: "gperf_cpu",
        network: false,
        aliases: &[
            ("sampling_frequency", "200", "frequency"),
            ("profile_frequency", "200", "frequency"),
            ("profiler_library", "\"{lib}\"", "library"),
            ("use_realtime_signal", "true", "realtime"),
        ],
        refused: &[
            "output_format",
            "generate_pdf",
            "profile_children",
            "start_profiling_delay",
            "exclude_functions",
            "include_only_functions",
            "pprof_options",
        ],
    },
    Environment {
        plugin: "gperf_heap",
        network: false,
        aliases: &[
            ("tcmalloc_library", "\"{lib}\"", "library"),
            (
                "heap_profile_allocation_interval",
                "1048576",
                "allocation_interval",
            ),
            ("heap_profile_inuse_interval", "1048576", "inuse_interval"),
        ],
        refused: &[
            "heap_profile_time_interval",
            "heap_check_type",
            "output_format",
            "generate_pdf",
            "generate_text_report",
            "enable_leak_check",
            "leak_check_at_exit",
            "profile_mmap",
            "only_mmap_profile",
            "deep_heap_profile",
            "exclude_functions",
            "include_only_functions",
            "pprof_options",
        ],
    },
    Environment {
        plugin: "memcheck",
        network: false,
        aliases: &[(
            "additional_parameters",
            "[\"--num-callers=30\"]",
            "extra_args",
        )],
        refused: &[
            "leak_resolution",
            "errors_for_leak_kinds",
            "leak_check_heuristics",
            "show_reachable",
            "show_possibly_lost",
            "xtree_leak",
            "xtree_leak_file",
            "undef_value_errors",
            "partial_loads_ok",
            "expensive_definedness_checks",
            "keep_stacktraces",
            "freelist_vol",
            "freelist_big_blocks",
            "workaround_gcc296_bugs",
            "ignore_range_below_sp",
            "show_mismatched_frees",
            "show_realloc_size_zero",
            "ignore_ranges",
            "malloc_fill",
            "free_fill",
            "output_format",
            "generate_suppressions",
            "suppression_file",
            "xml_user_comment",
        ],
    },
    Environment {
        plugin: "helgrind",
        network: false,
        aliases: &[(
            "additional_parameters",
            "[\"--num-callers=30\"]",
            "extra_args",
        )],
        refused: &[
            "valgrind_binary",
            "output_format",
            "conflict_cache_size",
            "track_lockorders",
            "check_stack_refs",
            "ignore_thread_creation",
            "free_is_write",
            "cache_size",
            "suppression_file",
            "show_below_main",
            "track_fds",
            "time_stamp",
            "verbosity",
        ],
    },
    Environment {
        plugin: "docker_compose",
        network: true,
        aliases: &[("service_prefix", "\"vocab\"", "project_name")],
        refused: &[
            "version",
            "network_name",
            "subnet",
            "enable_ipv6",
            "volumes",
            "environment",
        ],
    },
    Environment {
        plugin: "localhost_single_container",
        network: true,
        aliases: &[("volumes", "[\".\"]", "mounts")],
        refused: &[
            "version",
            "network_name",
            "subnet",
            "enable_ipv6",
            "service_prefix",
            "environment",
        ],
    },
    Environment {
        plugin: "localhost",
        network: true,
        aliases: &[],
        refused: &["network_name", "subnet", "enable_ipv6"],
    },
    Environment {
        plugin: "shadow_ns",
        network: true,
        aliases: &[("general.stop_time", "\"30s\"", "stop_time")],
        refused: &[
            "general.model_unblocked_syscall_latency",
            "experimental.strace_logging_mode",
            "network.latency",
            "network.jitter",
            "network.packet_loss",
            "host_option_defaults.pcap_enabled",
            "hosts.server.network_node_id",
            "hosts.server.ip_addr",
            "hosts.server.start_time",
            "hosts.client.network_node_id",
            "hosts.client.ip_addr",
            "hosts.client.start_time",
            "network_name",
            "subnet",
            "enable_ipv6",
        ],
    },
];

/// Keys of PANTHER's experiment and test configuration that this host keeps elsewhere,
/// written in `[experiment]`.
const EXPERIMENT: &[&str] = &[
    "environment_name",
    "network_environment",
    "execution_environment",
    "execution_environments",
    "network_name",
    "logging_level",
    "cleanup_on_exit",
    "service_dependencies",
    "monitoring_duration",
    "target_process",
    "iterations",
    "steps",
    "fast_fail_enabled",
    "continue_on_failure",
    "collect_artifacts",
    "metadata",
    "author",
    "tags",
];

/// An experiment with one section under test. Execution environments are checked under a
/// container network, where every shipped one reaches its services.
fn experiment(env: &Environment, keys: &str) -> String {
    let section = if env.network {
        format!(
            "[network]\nplugin = \"{}\"\n{}{keys}",
            env.plugin,
            base(env.plugin)
        )
    } else {
        format!(
            "{CONTAINERS}\n[[execution]]\nplugin = \"{}\"\n{}{keys}",
            env.plugin,
            base(env.plugin)
        )
    };
    format!(
        "[experiment]\nname = \"vocabulary\"\n\n{section}\n[[service]]\nname = \"s\"\ncommand = [\"/bin/true\"]\n"
    )
}

/// The line of `err` that answers `key` in `plugin`'s section, and its hint.
fn answer<'a>(err: &'a str, plugin: &str, key: &str) -> Option<&'a str> {
    let prefix = format!("`{plugin}` ({plugin}): `{key}`: ");
    err.lines()
        .find_map(|line| line.split_once(&prefix).map(|(_, hint)| hint.trim()))
}

fn refused_with_hints(sandbox: &Sandbox, env: &Environment, keys: &[&str]) {
    let body: String = keys.iter().map(|k| format!("{k} = \"x\"\n")).collect();
    let file = format!("{}-refused.toml", env.plugin);
    sandbox.write(&file, &experiment(env, &body));
    let out = sandbox.host(&["check", &file]);
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{}: {err}", env.plugin);
    for key in keys {
        let hint = answer(&err, env.plugin, key)
            .unwrap_or_else(|| panic!("{}: no hint for `{key}`:\n{err}", env.plugin));
        assert!(
            hint.len() > 10,
            "{}: `{key}`: a hint says something: {hint}",
            env.plugin
        );
    }
    assert!(
        !err.contains("Additional properties"),
        "{}: a PANTHER key met the bare schema error:\n{err}",
        env.plugin
    );
    assert!(
        err.contains(&format!("error: {} problems in", keys.len())),
        "{}: one problem per key and nothing else:\n{err}",
        env.plugin
    );
}

#[test]
fn every_panther_key_of_an_environment_is_refused_with_a_hint_or_read_under_our_name() {
    let sandbox = Sandbox::new();
    let lib = sandbox.write("lib/libprofiler-stand-in.so", "");
    let lib = lib.canonicalize().unwrap().display().to_string();
    for env in ENVIRONMENTS {
        refused_with_hints(&sandbox, env, env.refused);
        if env.plugin.starts_with("gperf_") {
            refused_with_hints(&sandbox, env, &GPERF_GENERATOR);
        }

        for (key, value, to) in env.aliases {
            let value = value.replace("{lib}", &lib);
            let file = format!("{}-{}.toml", env.plugin, key.replace('.', "-"));
            sandbox.write(&file, &experiment(env, &format!("{key} = {value}\n")));
            let out = sandbox.host(&["-v", "check", &file]);
            let err = stderr(&out);
            assert_eq!(code(&out), 0, "{} `{key}`: {err}", env.plugin);
            let note = format!(
                "`{}` ({}): `{key}` read as `{to}`: ",
                env.plugin, env.plugin
            );
            assert!(
                err.lines()
                    .any(|l| l.starts_with("note: ") && l.contains(&note)),
                "{} `{key}`: no note in check -v:\n{err}",
                env.plugin
            );
            // Without -v the file checks quietly.
            let quiet = sandbox.host(&["check", &file]);
            assert_eq!(code(&quiet), 0);
            assert!(!stderr(&quiet).contains(&note), "{}", stderr(&quiet));
        }
    }
}

#[test]
fn the_keys_every_panther_environment_shares_get_hints_in_every_section() {
    let sandbox = Sandbox::new();
    for plugin in ["strace", "docker_compose"] {
        let env = ENVIRONMENTS.iter().find(|e| e.plugin == plugin).unwrap();
        refused_with_hints(&sandbox, env, COMMON);
    }
}

#[test]
fn an_alias_written_next_to_our_key_is_refused() {
    let sandbox = Sandbox::new();
    let env = ENVIRONMENTS
        .iter()
        .find(|e| e.plugin == "gperf_cpu")
        .unwrap();
    sandbox.write(
        "both.toml",
        &experiment(env, "sampling_frequency = 200\nfrequency = 100\n"),
    );
    let out = sandbox.host(&["check", "both.toml"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(
        err.contains("`sampling_frequency` and `frequency` are the same setting"),
        "{err}"
    );
    assert!(err.contains("keep one"), "{err}");
}

#[test]
fn panther_keys_in_the_experiment_table_say_where_the_setting_lives() {
    let sandbox = Sandbox::new();
    let keys: String = EXPERIMENT
        .iter()
        .map(|k| format!("{k} = \"x\"\n"))
        .collect();
    sandbox.write(
        "experiment.toml",
        &format!(
            "[experiment]\nname = \"vocabulary\"\n{keys}\n[[service]]\nname = \"s\"\ncommand = [\"/bin/true\"]\n"
        ),
    );
    let out = sandbox.host(&["check", "experiment.toml"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    for key in EXPERIMENT {
        let line = err
            .lines()
            .find(|l| l.contains(&format!("unknown field `{key}`")))
            .unwrap_or_else(|| panic!("`{key}` not reported:\n{err}"));
        assert!(
            !line.contains("expected one of"),
            "`{key}` got the bare unknown-key error: {line}"
        );
    }
    // The table still reads: `environment_name` names where the plugin goes.
    assert!(err.contains("`[network]`"), "{err}");
}

/// The table of docs/experiments.md has a row for every key above, under its plugin.
#[test]
fn the_documentation_maps_every_panther_key() {
    let docs = std::fs::read_to_string(root().join("docs/experiments.md")).unwrap();
    let section = |title: &str| -> String {
        let start = docs
            .find(&format!("### {title}"))
            .unwrap_or_else(|| panic!("docs/experiments.md has no `### {title}`"));
        let rest = &docs[start + 4..];
        let end = rest.find("\n#").map_or(rest.len(), |e| e + 1);
        rest[..end].to_string()
    };
    let documented = |text: &str, key: &str| {
        text.lines()
            .any(|l| l.starts_with("| ") && l.contains(&format!("`{key}`")))
    };
    for env in ENVIRONMENTS {
        let text = section(&format!("`{}`", env.plugin));
        let keys = env
            .aliases
            .iter()
            .map(|(k, _, _)| *k)
            .chain(env.refused.iter().copied());
        for key in keys {
            assert!(
                documented(&text, key),
                "`{key}` of `{}` is not in the table",
                env.plugin
            );
        }
    }
    let gperf = section("`gperf_cpu`") + &section("`gperf_heap`");
    for key in GPERF_GENERATOR {
        assert!(
            documented(&gperf, key),
            "gperf's `{key}` is not in the table"
        );
    }
    let common = section("Every environment");
    for key in COMMON {
        assert!(documented(&common, key), "`{key}` is not in the table");
    }
    let experiment = section("Experiment");
    for key in EXPERIMENT {
        assert!(documented(&experiment, key), "`{key}` is not in the table");
    }
}

/// A plugin built outside the workspace declares aliases of its own, and the host applies
/// them as it does the shipped plugins'.
#[test]
fn an_out_of_tree_plugin_declares_its_own_aliases() {
    let plugins = time_plugin_dir().display().to_string();

    let sandbox = Sandbox::new();
    // `info` lists them; its JSON carries them whole.
    let out = sandbox.host(&["info", "time", "--plugin-dir", &plugins]);
    assert!(
        stdout(&out).contains("aliases:       max_rss_kb as max_rss_kib"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("refused keys:  output_file"),
        "{}",
        stdout(&out)
    );
    let out = sandbox.host(&["info", "time", "--format", "json", "--plugin-dir", &plugins]);
    let manifest: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(manifest["key_aliases"][0]["key"], "max_rss_kb");
    assert_eq!(manifest["key_aliases"][0]["to"], "max_rss_kib");

    let experiment = |name: &str, key: &str| {
        format!(
            "[experiment]\nname = \"{name}\"\n\n[[service]]\nname = \"s\"\ncommand = [\"/bin/true\"]\n\n[[execution]]\nplugin = \"time\"\n{key}\n"
        )
    };
    sandbox.write("alias.toml", &experiment("alias", "max_rss_kb = 1000"));
    let out = sandbox.host(&["-v", "check", "alias.toml", "--plugin-dir", &plugins]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`time` (time): `max_rss_kb` read as `max_rss_kib`: "),
        "{}",
        stderr(&out)
    );

    sandbox.write(
        "refused.toml",
        &experiment("refused", "output_file = \"t.txt\""),
    );
    let out = sandbox.host(&["check", "refused.toml", "--plugin-dir", &plugins]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        answer(&stderr(&out), "time", "output_file").is_some_and(|hint| hint.contains("time.txt")),
        "{}",
        stderr(&out)
    );
}

/// PANTHER names an environment's plugin with `type`; a section written so lacks `plugin`,
/// and the error says which key to use.
#[test]
fn a_section_that_names_its_plugin_with_type_is_told_to_use_plugin() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "type.toml",
        "[experiment]\nname = \"vocabulary\"\n\n[[execution]]\ntype = \"strace\"\n\n[[service]]\nname = \"s\"\ncommand = [\"/bin/true\"]\n",
    );
    let out = sandbox.host(&["check", "type.toml"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(
        err.contains("type.toml:4:1: missing field `plugin`"),
        "{err}"
    );
    assert!(err.contains("where PANTHER writes `type`"), "{err}");
}

/// An accepted alias is what the plugin instance gets at run time: strace traces with the
/// exclusions written under PANTHER's name.
#[test]
fn an_alias_reaches_the_running_plugin() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "run.toml",
        "[experiment]\nname = \"aliased\"\n\n[[execution]]\nplugin = \"strace\"\nexcluded_syscalls = [\"write\"]\n\n[[service]]\nname = \"s\"\ncommand = [\"/bin/echo\", \"hi\"]\nrole = \"client\"\n",
    );
    let out = sandbox.host(&["run", "run.toml"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let data: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(sandbox.results("aliased").join("monitoring/s/strace.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(data["trace_expression"], "!?write", "{data:#}");
}
