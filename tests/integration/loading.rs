//! Discovery and loading: every broken file gets one clear error and the good plugins still
//! load and run.

use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// The corpus of broken plugins next to good ones, listed as JSON.
fn corpus_listing(sandbox: &Sandbox) -> Value {
    let dir = sandbox.plugin_dir(
        "corpus",
        &[
            build_dir().join("libpanther_plugin_json.so"),
            build_dir().join("libpanther_plugin_localhost.so"),
            fixture("no_root_module"),
            fixture("panic_at_load"),
            fixture("panic_in_method"),
            api_major_fixture().to_path_buf(),
        ],
    );
    sandbox.write("corpus/notes.so", "this is a text file, not a library\n");
    let output = Command::new(host_bin())
        .arg("--no-default-plugins")
        .args(["list", "--format", "json", "--plugin-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    serde_json::from_str(&stdout(&output))
        .unwrap_or_else(|e| panic!("stdout is not clean JSON ({e}):\n{}", stdout(&output)))
}

fn error_for<'a>(listing: &'a Value, file: &str) -> &'a str {
    listing["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"].as_str().unwrap().ends_with(file))
        .unwrap_or_else(|| panic!("no error for {file} in {listing:#}"))["error"]
        .as_str()
        .unwrap()
}

#[test]
fn each_broken_plugin_gets_one_clear_error_and_the_good_ones_load() {
    let sandbox = Sandbox::new();
    let listing = corpus_listing(&sandbox);

    let names: Vec<&str> = listing["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["localhost", "json", "panic_in_method"],
        "{listing:#}"
    );
    assert_eq!(
        listing["errors"].as_array().unwrap().len(),
        4,
        "{listing:#}"
    );

    assert_eq!(
        error_for(&listing, "notes.so"),
        "not a shared library (no ELF header)"
    );
    assert!(error_for(&listing, "libfixture_no_root_module.so")
        .starts_with("not a panther plugin: it exports no root module"));
    let panic = error_for(&listing, "libfixture_panic_at_load.so");
    assert!(
        panic.contains("panicked while loading") && panic.contains("fixture: manifest exploded"),
        "{panic}"
    );
    assert!(
        panic.contains("panic_at_load/src/lib.rs:12"),
        "the panic location is named: {panic}"
    );

    let ours = current_api_version();
    let major: u32 = ours.split('.').next().unwrap().parse().unwrap();
    let version = error_for(&listing, "libfixture_api_major.so");
    assert_eq!(
        version,
        format!(
            "built against panther-plugin-api {}.0.0, but this host uses {ours}; rebuild the plugin against panther-plugin-api {major}.x",
            major + 1
        )
    );
}

#[test]
fn the_table_names_every_file_that_failed_and_why() {
    let sandbox = Sandbox::new();
    let dir = sandbox.plugin_dir(
        "plugins",
        &[
            build_dir().join("libpanther_plugin_json.so"),
            fixture("panic_at_load"),
        ],
    );
    let output = Command::new(host_bin())
        .arg("--no-default-plugins")
        .arg("list")
        .arg("--plugin-dir")
        .arg(&dir)
        .output()
        .unwrap();
    let text = stdout(&output);
    assert!(text.lines().next().unwrap().starts_with("NAME"), "{text}");
    assert!(
        text.contains("json") && text.contains("reporter") && text.contains("0.1.0"),
        "{text}"
    );
    assert!(text.contains("Files that failed to load:"), "{text}");
    assert!(
        text.contains("libfixture_panic_at_load.so: panicked while loading"),
        "{text}"
    );
    assert!(
        stderr(&output).is_empty(),
        "a panicking plugin prints nothing on its own: {}",
        stderr(&output)
    );
}

#[test]
fn two_files_claiming_one_name_are_both_refused_and_named() {
    let sandbox = Sandbox::new();
    let json = build_dir().join("libpanther_plugin_json.so");
    let a = sandbox.plugin_dir("a", std::slice::from_ref(&json));
    let b = sandbox.plugin_dir("b", std::slice::from_ref(&json));
    let output = Command::new(host_bin())
        .arg("--no-default-plugins")
        .args(["list", "--format", "json", "--plugin-dir"])
        .arg(&a)
        .arg("--plugin-dir")
        .arg(&b)
        .output()
        .unwrap();
    let listing: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert!(
        listing["plugins"].as_array().unwrap().is_empty(),
        "neither copy is picked: {listing:#}"
    );
    let errors = listing["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    let first = errors[0]["error"].as_str().unwrap();
    assert!(
        first.contains("another file also provides the reporter `json`")
            && first.contains(b.to_str().unwrap()),
        "{first}"
    );

    // Using the ambiguous name is an error that names both files.
    let experiment = sandbox.write(
        "e.toml",
        &echo_experiment("dup", "[[report]]\nplugin = \"json\"\n"),
    );
    let output = Command::new(host_bin())
        .arg("--no-default-plugins")
        .arg("check")
        .arg(&experiment)
        .arg("--plugin-dir")
        .arg(&a)
        .arg("--plugin-dir")
        .arg(&b)
        .arg("--plugin-dir")
        .arg(build_dir())
        .output()
        .unwrap();
    assert_eq!(code(&output), 2);
    let err = stderr(&output);
    assert!(
        err.contains("is provided by more than one file")
            && err.contains(a.to_str().unwrap())
            && err.contains(b.to_str().unwrap()),
        "{err}"
    );
}

#[test]
fn without_flags_the_plugins_next_to_the_binary_are_found() {
    let output = Command::new(host_bin())
        .args(["list", "--format", "json"])
        .env_remove("PANTHER_PLUGIN_PATH")
        .output()
        .unwrap();
    let listing: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let names: Vec<&str> = listing["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for shipped in ["localhost", "json", "junit"] {
        assert!(names.contains(&shipped), "{shipped} missing from {names:?}");
    }
}

#[test]
fn the_plugin_path_variable_is_searched() {
    let sandbox = Sandbox::new();
    let dir = sandbox.plugin_dir("env", &[fixture("logger")]);
    let output = Command::new(host_bin())
        .arg("--no-default-plugins")
        .args(["list", "--format", "json"])
        .env("PANTHER_PLUGIN_PATH", &dir)
        .output()
        .unwrap();
    let listing: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let names: Vec<&str> = listing["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["logger"]);
}

#[test]
fn a_missing_plugin_folder_is_reported() {
    let output = Command::new(host_bin())
        .arg("--no-default-plugins")
        .args([
            "list",
            "--format",
            "json",
            "--plugin-dir",
            "/no/such/folder",
        ])
        .output()
        .unwrap();
    let listing: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let error = error_for(&listing, "/no/such/folder");
    assert!(
        error.starts_with("cannot read the plugin folder"),
        "{error}"
    );
}

#[test]
fn info_shows_the_manifest_and_the_config_schema() {
    let sandbox = Sandbox::new();
    let output = sandbox.host(&["info", "json", "--format", "json"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let manifest: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(manifest["name"], "json");
    assert_eq!(manifest["kind"], "reporter");
    assert_eq!(manifest["api_version"], current_api_version());
    assert_eq!(
        manifest["config_schema"]["properties"]["path"]["type"],
        "string"
    );
    assert_eq!(manifest["config_schema"]["additionalProperties"], false);

    let output = sandbox.host(&["info", "jsno"]);
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("did you mean `json`?"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_plugins_tracing_reaches_the_host_tagged_with_the_plugin() {
    let sandbox = Sandbox::new();
    let experiment = sandbox.write(
        "e.toml",
        &echo_experiment(
            "logs",
            "[[report]]\nplugin = \"logger\"\nmessage = \"hello from the plugin\"\n",
        ),
    );
    let output = sandbox.host(&["run", experiment.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let err = stderr(&output);
    let start = err
        .lines()
        .find(|l| l.contains("logger starting: hello from the plugin"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        start.contains("INFO")
            && start.contains("plugin=\"logger\"")
            && start.contains("answer=42"),
        "{start}"
    );
    let report = err
        .lines()
        .find(|l| l.contains("logger reporting"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        report.contains("WARN") && report.contains("experiment=logs"),
        "{report}"
    );

    let events = events(&sandbox.results("logs"));
    let custom = events
        .iter()
        .find(|e| e["event"] == "custom")
        .expect("the plugin's event");
    assert_eq!(custom["source"], "logger");
    assert_eq!(custom["data"]["message"], "hello from the plugin");
}

#[test]
fn a_plugin_that_panics_in_a_method_fails_alone() {
    let sandbox = Sandbox::new();
    let experiment = sandbox.write(
        "e.toml",
        &echo_experiment(
            "panics",
            "[[report]]\nplugin = \"panic_in_method\"\n\n[[report]]\nplugin = \"json\"\n",
        ),
    );
    let output = sandbox.host(&["run", experiment.to_str().unwrap()]);
    assert_eq!(
        code(&output),
        3,
        "a plugin failure is an internal error: {}",
        stderr(&output)
    );
    let err = stderr(&output);
    assert!(err.contains("plugin `panic_in_method` (panic_in_method) failed while writing its report: plugin panicked while writing its report: index out of bounds"), "{err}");
    assert!(
        err.contains("panic_in_method/src/lib.rs:"),
        "names where: {err}"
    );
    // The other reporter still wrote its report, and it shows the services passed.
    let result: Value = serde_json::from_str(
        &std::fs::read_to_string(sandbox.results("panics").join("result.json")).unwrap(),
    )
    .unwrap();
    assert!(
        result["services"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["passed"] == true),
        "{result:#}"
    );
}

#[test]
fn a_plugin_built_against_an_older_minor_version_still_loads_and_runs() {
    let sandbox = Sandbox::new();
    let old = sandbox.plugin_dir("old", &[localhost_built_against_1_0().to_path_buf()]);
    let reporters = sandbox.plugin_dir(
        "reporters",
        &[build_dir().join("libpanther_plugin_json.so")],
    );
    let host = |args: &[&str]| {
        Command::new(host_bin())
            .arg("--no-default-plugins")
            .current_dir(sandbox.path())
            .args(args)
            .arg("--plugin-dir")
            .arg(&old)
            .arg("--plugin-dir")
            .arg(&reporters)
            .output()
            .unwrap()
    };
    let listing: Value =
        serde_json::from_str(&stdout(&host(&["list", "--format", "json"]))).unwrap();
    let localhost = listing["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "localhost")
        .expect("loaded");
    assert_eq!(localhost["api_version"], "1.0.0");
    assert_ne!(
        current_api_version(),
        "1.0.0",
        "the host is newer than the plugin"
    );

    let experiment = sandbox.write(
        "e.toml",
        &echo_experiment("old_minor", "[[report]]\nplugin = \"json\"\n"),
    );
    let output = host(&["run", experiment.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let result: Value = serde_json::from_str(
        &std::fs::read_to_string(sandbox.results("old_minor").join("result.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(result["status"], "passed");

    // A method added in 1.1 answers with its default for a 1.0 plugin.
    let _clean = clean_lock();
    let output = host(&["clean", "--network", "localhost"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(stdout(&output), "localhost: nothing to clean\n");
}
