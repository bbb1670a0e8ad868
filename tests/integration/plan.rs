//! One resolution into a plan: scopes that govern claims and reporters, names checked at
//! every scope, the settings file's drivers, default reporters, plugin defaults and output,
//! and reporters from the command line.

use std::path::{Path, PathBuf};

use crate::support::*;

/// The host with `settings` as its settings file.
fn with_settings(sandbox: &Sandbox, settings: &str, args: &[&str]) -> std::process::Output {
    let file = sandbox.write("settings.toml", settings);
    let mut all = vec!["--config", file.to_str().unwrap()];
    all.extend_from_slice(args);
    sandbox.host(&all)
}

/// The dry-run plan of `file` as JSON (the first experiment's `plan`).
fn dry_plan(sandbox: &Sandbox, settings: &str, file: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["run", "--dry-run", "--format", "json"];
    args.extend_from_slice(extra);
    args.push(file.to_str().unwrap());
    let output = with_settings(sandbox, settings, &args);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let all: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    all[0]["plan"].clone()
}

/// The setting `name` of a plan: (value, origin).
fn setting(plan: &serde_json::Value, name: &str) -> (serde_json::Value, String) {
    let found = plan["settings"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no setting {name} in {plan:#}"));
    (
        found["value"].clone(),
        found["origin"].as_str().unwrap().to_string(),
    )
}

/// Two services `a` and `b` running `/bin/true`, with `a_extra` and `b_extra` in their
/// sections and `tail` after them.
fn two_services(name: &str, experiment: &str, a_extra: &str, b_extra: &str, tail: &str) -> String {
    format!(
        "[experiment]\nname = \"{name}\"\n{experiment}\n\n[[service]]\nname = \"a\"\ncommand = [\"/bin/true\"]\nrole = \"client\"\n{a_extra}\n\n[[service]]\nname = \"b\"\ncommand = [\"/bin/true\"]\nrole = \"client\"\n{b_extra}\n\n{tail}\n"
    )
}

const GRINDS: &str =
    "[[execution]]\nplugin = \"memcheck\"\n\n[[execution]]\nplugin = \"helgrind\"\n";

fn stacks(plan: &serde_json::Value) -> Vec<(String, Vec<String>)> {
    plan["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["execution"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn memcheck_on_one_service_and_helgrind_on_another_by_disabling() {
    let sandbox = Sandbox::new();
    // Disabled per service.
    let file = sandbox.write(
        "apart.toml",
        &two_services(
            "apart",
            "",
            "disable = [\"helgrind\"]",
            "disable = [\"memcheck\"]",
            GRINDS,
        ),
    );
    let output = sandbox.host(&["check", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let plan = dry_plan(&sandbox, "", &file, &[]);
    assert_eq!(
        stacks(&plan),
        [
            ("a".to_string(), vec!["memcheck".to_string()]),
            ("b".to_string(), vec!["helgrind".to_string()])
        ]
    );

    // Disabled at host level, enabled again on one service.
    let file = sandbox.write(
        "host.toml",
        &two_services("host", "", "", "enable = [\"helgrind\"]", GRINDS),
    );
    let settings = "[scope]\ndisable = [\"helgrind\"]\n";
    let output = with_settings(&sandbox, settings, &["check", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let plan = dry_plan(&sandbox, settings, &file, &[]);
    assert_eq!(
        stacks(&plan),
        [
            ("a".to_string(), vec!["memcheck".to_string()]),
            ("b".to_string(), vec!["helgrind".to_string()])
        ]
    );
    let (value, origin) = setting(&plan, "disable");
    assert_eq!(
        (value, origin.as_str()),
        (serde_json::json!(["helgrind"]), "settings")
    );

    // Both active on one service: refused, naming both and the service.
    let file = sandbox.write(
        "together.toml",
        &two_services("together", "", "", "disable = [\"memcheck\"]", GRINDS),
    );
    let output = sandbox.host(&["check", file.to_str().unwrap()]);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains(&format!(
            "on service `a` ({}:5:1): `helgrind` cannot run with `memcheck`",
            file.display()
        )),
        "{err}"
    );
    assert!(!err.contains("on service `b`"), "{err}");
}

#[test]
fn reporters_obey_disable_at_every_scope() {
    let sandbox = Sandbox::new();
    // Nothing configured: the default reporters write result.json and junit.xml.
    let file = sandbox.write("d.toml", &echo_experiment("defaults", ""));
    let output = sandbox.host(&["run", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let results = sandbox.results("defaults");
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("result.json")).unwrap())
            .unwrap();
    assert_eq!(result["status"], "passed");
    assert!(std::fs::read_to_string(results.join("junit.xml"))
        .unwrap()
        .contains("<testsuite"));

    // Disabled in the experiment file: neither, also not one configured in it.
    let experiment = echo_experiment(
        "off",
        "\n[[report]]\nplugin = \"json\"\nname = \"mine\"\npath = \"mine.json\"\n",
    )
    .replace(
        "timeout = \"20s\"",
        "timeout = \"20s\"\ndisable = [\"junit\", \"json\"]",
    );
    let file = sandbox.write("off.toml", &experiment);
    let output = sandbox.host(&["run", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let results = sandbox.results("off");
    for report in ["result.json", "junit.xml", "mine.json"] {
        assert!(!results.join(report).exists(), "{report} written");
    }
    assert!(results.join("events.jsonl").is_file());

    // Disabled in the settings: only the other one.
    let file = sandbox.write("s.toml", &echo_experiment("settings_off", ""));
    let output = with_settings(
        &sandbox,
        "[scope]\ndisable = [\"json\"]\n",
        &["run", file.to_str().unwrap()],
    );
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let results = sandbox.results("settings_off");
    assert!(!results.join("result.json").exists());
    assert!(results.join("junit.xml").is_file());

    // A disabled reporter's claim does not count: two on stdout, one disabled, is fine.
    let file = sandbox.write(
        "stdout.toml",
        &echo_experiment(
            "one_stdout",
            "\n[[report]]\nplugin = \"json\"\npath = \"-\"\n\n[[report]]\nplugin = \"junit\"\npath = \"-\"\n",
        )
        .replace("timeout = \"20s\"", "timeout = \"20s\"\ndisable = [\"junit\"]"),
    );
    let output = sandbox.host(&["run", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let printed: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(printed["experiment"], "one_stdout");
}

#[test]
fn report_paths_are_compared_normalised_and_sub_folders_are_created() {
    let sandbox = Sandbox::new();
    let file = sandbox.write(
        "same.toml",
        &echo_experiment(
            "same",
            "\n[[report]]\nplugin = \"junit\"\npath = \"result.json\"\n",
        ),
    );
    // The command line's `./result.json` and the file's `result.json` are one file.
    let output = sandbox.host(&[
        "run",
        "--report",
        "json=./result.json",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains("the command line (--report json=./result.json): report `json` claims file result.json, which `junit` already claims"),
        "{err}"
    );
    assert!(!sandbox.path().join("results").exists(), "nothing started");

    let file = sandbox.write("sub.toml", &echo_experiment("sub", ""));
    let output = sandbox.host(&[
        "run",
        "--report",
        "junit=out/deeper/junit.xml",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let results = sandbox.results("sub");
    assert!(results.join("out/deeper/junit.xml").is_file());
    assert!(
        !results.join("junit.xml").exists(),
        "the flag replaces the default"
    );
    assert!(results.join("result.json").is_file());
}

#[test]
fn unknown_names_in_scopes_are_refused_with_a_suggestion() {
    let sandbox = Sandbox::new();
    let execution = "[[execution]]\nplugin = \"strace\"\n\n[[execution]]\nplugin = \"memcheck\"\nname = \"leaks\"\n";
    let text = two_services(
        "typos",
        "disable = [\"strac\"]\norder = [\"laeks\"]",
        "enable = [\"memchek\"]",
        "disable = [\"jsno\"]",
        execution,
    );
    let file = sandbox.write("typos.toml", &text);
    let output = sandbox.host(&["check", file.to_str().unwrap()]);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    let err = stderr(&output);
    // Each at its own line.
    for (needle, message) in [
        (
            "\"strac\"",
            "`disable`: `strac` names no plugin or instance (did you mean `strace`?)",
        ),
        (
            "\"laeks\"",
            "`order`: `laeks` names no plugin or instance (did you mean `leaks`?)",
        ),
        (
            "\"memchek\"",
            "`enable`: `memchek` names no plugin or instance (did you mean `memcheck`?)",
        ),
        (
            "\"jsno\"",
            "`disable`: `jsno` names no plugin or instance (did you mean `json`?)",
        ),
    ] {
        let offset = text.find(needle).unwrap();
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = offset - before.rfind('\n').map_or(0, |nl| nl + 1) + 1;
        let expected = format!("typos.toml:{line}:{column}: {message}");
        assert!(err.contains(&expected), "expected `{expected}` in:\n{err}");
    }

    // In the settings file's scope too, named by the settings file.
    let file = sandbox.write("ok.toml", &echo_experiment("ok", ""));
    let output = with_settings(
        &sandbox,
        "[scope]\ndisable = [\"junti\"]\n",
        &["check", file.to_str().unwrap()],
    );
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains(
            "settings.toml: `disable`: `junti` names no plugin or instance (did you mean `junit`?)"
        ),
        "{err}"
    );
}

#[test]
fn the_settings_choose_the_driver_when_the_file_does_not() {
    let sandbox = Sandbox::new();
    let mark = sandbox.path().join("never-chosen-was-here");
    let file = sandbox.write("e.toml", &echo_experiment("driven", ""));
    let settings = "[scope]\ndrivers = { network_environment = \"never_chosen\" }\n";
    let plan = dry_plan(&sandbox, settings, &file, &[]);
    assert_eq!(plan["network"]["plugin"], "never_chosen");
    assert_eq!(plan["network"]["origin"], "settings");
    // The run uses it (never_chosen fails on purpose when it is instantiated).
    let settings_file = sandbox.write("settings.toml", settings);
    let output = sandbox
        .host_command(&[
            "--config",
            settings_file.to_str().unwrap(),
            "run",
            file.to_str().unwrap(),
        ])
        .env("NEVER_CHOSEN_MARK", &mark)
        .output()
        .unwrap();
    assert_eq!(code(&output), 3, "{}", stderr(&output));
    assert!(mark.exists(), "the settings' driver was not instantiated");

    // The file's own [network] wins.
    let file = sandbox.write(
        "own.toml",
        &echo_experiment("own", "[network]\nplugin = \"localhost\"\n"),
    );
    let plan = dry_plan(&sandbox, settings, &file, &[]);
    assert_eq!(plan["network"]["plugin"], "localhost");
    assert_eq!(plan["network"]["origin"], "experiment");

    // A name that does not exist is refused, naming the settings file, with a suggestion.
    let file = sandbox.write("bad.toml", &echo_experiment("bad", ""));
    let output = with_settings(
        &sandbox,
        "[scope]\ndrivers = { network_environment = \"locahost\" }\n",
        &["check", file.to_str().unwrap()],
    );
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains("settings.toml: `[scope] drivers` chooses an unavailable network environment: no network_environment plugin named `locahost` (did you mean `localhost`?)"),
        "{err}"
    );
    // Only drivers are chosen by name.
    let output = with_settings(
        &sandbox,
        "[scope]\ndrivers = { reporter = \"json\" }\n",
        &["check", file.to_str().unwrap()],
    );
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("`reporter` is not a driver type"),
        "{}",
        stderr(&output)
    );
}

/// Where the one run of `experiment` went under `root`.
fn run_dir(root: &Path, experiment: &str) -> Option<PathBuf> {
    std::fs::read_dir(root.join(experiment))
        .ok()?
        .next()
        .map(|e| e.unwrap().path())
}

#[test]
fn output_precedence_for_one_file_and_several() {
    let sandbox = Sandbox::new();
    let plain = sandbox.write("plain.toml", &echo_experiment("plain", ""));
    let own = sandbox.write(
        "own.toml",
        &echo_experiment("own", "").replace(
            "timeout = \"20s\"",
            "timeout = \"20s\"\noutput = \"from-file\"",
        ),
    );
    let output = |file: &Path, settings: &str, cli: &[&str]| {
        let plan = dry_plan(&sandbox, settings, file, cli);
        (
            plan["output"]["path"].as_str().unwrap().to_string(),
            plan["output"]["origin"].as_str().unwrap().to_string(),
        )
    };
    let settings = "output = \"from-settings\"\n";
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(output(&plain, "", &[]), pair("results", "built-in"));
    assert_eq!(
        output(&plain, settings, &[]),
        pair("from-settings", "settings")
    );
    assert_eq!(output(&own, settings, &[]), pair("from-file", "experiment"));
    assert_eq!(
        output(&own, settings, &["-o", "from-cli"]),
        pair("from-cli", "cli")
    );

    // Real runs: one file with its own output and the settings' (the file wins) ...
    let output = with_settings(&sandbox, settings, &["run", own.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(run_dir(&sandbox.path().join("from-file"), "own").is_some());
    // ... several files: the file's output for the one that sets it, the settings' for the
    // other ...
    let output = with_settings(
        &sandbox,
        settings,
        &["run", own.to_str().unwrap(), plain.to_str().unwrap()],
    );
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(
        std::fs::read_dir(sandbox.path().join("from-file/own"))
            .unwrap()
            .count(),
        2
    );
    assert!(run_dir(&sandbox.path().join("from-settings"), "plain").is_some());
    // ... and -o for both.
    let output = with_settings(
        &sandbox,
        settings,
        &[
            "run",
            "-o",
            "cli",
            own.to_str().unwrap(),
            plain.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(run_dir(&sandbox.path().join("cli"), "own").is_some());
    assert!(run_dir(&sandbox.path().join("cli"), "plain").is_some());
}

#[test]
fn default_reporters_and_plugin_defaults_from_the_settings() {
    let sandbox = Sandbox::new();
    let file = sandbox.write("e.toml", &echo_experiment("defaults", ""));
    let settings =
        "reporters = [\"json\"]\n\n[plugins.json]\npretty = false\npath = \"r/result.json\"\n";
    let output = with_settings(&sandbox, settings, &["run", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let results = sandbox.results("defaults");
    assert!(
        !results.join("junit.xml").exists(),
        "only the settings' reporters"
    );
    let text = std::fs::read_to_string(results.join("r/result.json")).unwrap();
    assert_eq!(
        text.trim_end().lines().count(),
        1,
        "pretty = false applied: {text}"
    );

    // A reporter the settings name must exist.
    let output = with_settings(
        &sandbox,
        "reporters = [\"json\", \"junti\"]\n",
        &["check", file.to_str().unwrap()],
    );
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert!(
        stderr(&output).contains(
            "settings.toml: `reporters`: no reporter plugin named `junti` (did you mean `junit`?)"
        ),
        "{}",
        stderr(&output)
    );

    // An experiment's own key wins over the default, key by key.
    let strace = "[[execution]]\nplugin = \"strace\"\nstring_size = 32\n";
    let file = sandbox.write("s.toml", &echo_experiment("traced", strace));
    let settings = "[plugins.strace]\nstring_size = 128\nfollow_forks = false\n";
    let plan = dry_plan(&sandbox, settings, &file, &[]);
    assert_eq!(plan["execution"][0]["config"]["string_size"], 32);
    assert_eq!(plan["execution"][0]["config"]["follow_forks"], false);
    assert_eq!(
        setting(&plan, "instances.strace.follow_forks"),
        (serde_json::json!(false), "settings".to_string())
    );
    assert_eq!(
        setting(&plan, "instances.strace.string_size"),
        (serde_json::json!(32), "experiment".to_string())
    );

    // Defaults are checked against the plugin's schema, naming the settings file.
    let output = with_settings(
        &sandbox,
        "[plugins.strace]\nstring_size = \"big\"\n\n[plugins.jsn]\npretty = true\n",
        &["check", file.to_str().unwrap()],
    );
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains("settings.toml: [plugins.strace]"), "{err}");
    assert!(err.contains("string_size"), "{err}");
    assert!(
        err.contains("settings.toml: [plugins.jsn]: no plugin named `jsn` (did you mean `json`?)"),
        "{err}"
    );
}

#[test]
fn reporters_from_the_command_line() {
    let sandbox = Sandbox::new();
    let file = sandbox.write("e.toml", &echo_experiment("flags", ""));
    let output = sandbox.host(&["run", "--report", "json=-", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let printed: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(printed["experiment"], "flags");
    assert_eq!(printed["status"], "passed");
    let results = sandbox.results("flags");
    assert!(
        !results.join("result.json").exists(),
        "the flag replaces the default json"
    );
    assert!(results.join("junit.xml").is_file());

    // Two on stdout: refused before anything starts, naming both.
    let output = sandbox.host(&[
        "run",
        "--report",
        "json=-",
        "--report",
        "junit=-",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("report `junit` claims stdout, which `json` already claims"),
        "{}",
        stderr(&output)
    );
    // With a section of the file on stdout too.
    let file = sandbox.write(
        "s.toml",
        &echo_experiment(
            "section",
            "\n[[report]]\nplugin = \"junit\"\npath = \"-\"\n",
        ),
    );
    let output = sandbox.host(&["check", "--report", "json=-", file.to_str().unwrap()]);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("report `json` claims stdout, which `junit` already claims"),
        "{}",
        stderr(&output)
    );
    // An unknown reporter.
    let output = sandbox.host(&["check", "--report", "jsno=-", file.to_str().unwrap()]);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("no reporter plugin named `jsno` (did you mean `json`?)"),
        "{}",
        stderr(&output)
    );
    // The dry run shows where each reporter came from.
    let plan = dry_plan(
        &sandbox,
        "",
        &sandbox.path().join("e.toml"),
        &["--report", "junit=x/j.xml"],
    );
    let reporters: Vec<(String, String)> = plan["reporters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["origin"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        reporters,
        [
            ("junit".to_string(), "cli".to_string()),
            ("json".to_string(), "built-in".to_string())
        ]
    );
}
