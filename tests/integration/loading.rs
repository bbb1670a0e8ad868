//! Discovery and loading: every broken file gets one clear error and the good plugins still
//! load and run.

use std::{path::Path, process::Command};

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
            fixture("bad_schema"),
            api_major_fixture().to_path_buf(),
        ],
    );
    sandbox.write("corpus/notes.so", "this is a text file, not a library\n");
    let output = sandbox
        .bare_host()
        .args(["list", "--format", "json", "--plugin-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(
        code(&output),
        2,
        "files failed to load: {}",
        stderr(&output)
    );
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
        5,
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

    // A schema no validator accepts is the file's error, found when it is read.
    let schema = error_for(&listing, "libfixture_bad_schema.so");
    assert!(
        schema.starts_with("bad manifest: its configuration schema is not a valid JSON Schema")
            && schema.contains("at `properties.path.type`: 7"),
        "{schema}"
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
    let output = sandbox
        .bare_host()
        .arg("list")
        .arg("--plugin-dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(code(&output), 2);
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
fn two_files_in_one_folder_claiming_one_name_are_both_refused_and_named() {
    let sandbox = Sandbox::new();
    let json = build_dir().join("libpanther_plugin_json.so");
    let a = sandbox.plugin_dir("a", std::slice::from_ref(&json));
    std::fs::copy(&json, a.join("libjson_copy.so")).unwrap();
    let output = sandbox
        .bare_host()
        .args(["list", "--format", "json", "--plugin-dir"])
        .arg(&a)
        .output()
        .unwrap();
    assert_eq!(code(&output), 2);
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
            && first.contains("libpanther_plugin_json.so"),
        "{first}"
    );

    // Using the ambiguous name is an error that names both files, even when a later
    // folder (the shipped one) provides the name too.
    let experiment = sandbox.write(
        "e.toml",
        &echo_experiment("dup", "[[report]]\nplugin = \"json\"\n"),
    );
    let output = sandbox
        .bare_host()
        .arg("check")
        .arg(&experiment)
        .arg("--plugin-dir")
        .arg(&a)
        .arg("--plugin-dir")
        .arg(build_dir())
        .output()
        .unwrap();
    assert_eq!(code(&output), 2);
    let err = stderr(&output);
    assert!(
        err.contains("is provided by more than one file")
            && err.contains(a.join("libjson_copy.so").to_str().unwrap())
            && err.contains(a.join("libpanther_plugin_json.so").to_str().unwrap()),
        "{err}"
    );
}

#[test]
fn a_plugin_folder_given_first_shadows_a_shipped_plugin_and_list_says_so() {
    let sandbox = Sandbox::new();
    // A newer build of `json`, under another file name.
    let newer = sandbox.path().join("newer");
    std::fs::create_dir_all(&newer).unwrap();
    let ours = newer.join("libjson_v2.so");
    std::fs::copy(build_dir().join("libpanther_plugin_json.so"), &ours).unwrap();
    let shipped = build_dir().join("libpanther_plugin_json.so");
    let host = || {
        let mut command = sandbox.bare_host();
        command
            .arg("--plugin-dir")
            .arg(&newer)
            .arg("--plugin-dir")
            .arg(build_dir());
        command
    };

    let output = host().args(["list", "--format", "json"]).output().unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let listing: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let json = listing["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "json")
        .unwrap();
    assert_eq!(json["path"], ours.to_str().unwrap());
    let shadowed = listing["shadowed"].as_array().unwrap();
    assert_eq!(shadowed.len(), 1, "{listing:#}");
    assert_eq!(shadowed[0]["path"], shipped.to_str().unwrap());
    assert_eq!(shadowed[0]["shadowed_by"], ours.to_str().unwrap());

    let table = stdout(&host().arg("list").output().unwrap());
    let line = table
        .lines()
        .find(|l| l.ends_with(shipped.to_str().unwrap()))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        line.starts_with("json") && line.contains(&format!("shadowed by {}", ours.display())),
        "{line}"
    );

    // The run opens the newer file, and only it.
    let experiment = sandbox.write(
        "e.toml",
        &echo_experiment("newer", "[[report]]\nplugin = \"json\"\n"),
    );
    let output = host()
        .env("LD_DEBUG", "files")
        .args(["run", experiment.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let err = stderr(&output);
    let opened = |file: &Path| {
        err.lines().any(|l| {
            l.contains(&format!("file={}", file.display())) && l.contains("dynamically loaded")
        })
    };
    assert!(opened(&ours), "{err}");
    assert!(!opened(&shipped), "{err}");
}

#[test]
fn without_flags_the_plugins_next_to_the_binary_are_found() {
    let sandbox = Sandbox::new();
    let output = Command::new(host_bin())
        .env("PANTHER_CACHE_DIR", sandbox.cache_dir())
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
    let output = sandbox
        .bare_host()
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
fn a_missing_folder_on_the_plugin_path_is_listed() {
    let sandbox = Sandbox::new();
    let output = sandbox
        .bare_host()
        .env("PANTHER_PLUGIN_PATH", "/no/such/folder")
        .args(["list", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(code(&output), 2);
    let listing: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let error = error_for(&listing, "/no/such/folder");
    assert_eq!(
        error,
        "cannot read the plugin folder: No such file or directory"
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
    // Said once, in the host's words: what it asked for, and that the plugin panicked.
    assert!(err.contains("plugin `panic_in_method` (panic_in_method) panicked while writing its report: index out of bounds"), "{err}");
    assert_eq!(err.matches("while writing its report").count(), 1, "{err}");
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
        sandbox
            .bare_host()
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

/// `list --format json` of `dir` alone, with more arguments; the exit code and the listing.
fn list_json(sandbox: &Sandbox, dir: &Path, more: &[&str]) -> (i32, Value) {
    let output = sandbox
        .bare_host()
        .args(more)
        .args(["list", "--format", "json", "--plugin-dir"])
        .arg(dir)
        .output()
        .unwrap();
    let listing = serde_json::from_str(&stdout(&output))
        .unwrap_or_else(|e| panic!("{e}: {}", stdout(&output)));
    (code(&output), listing)
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn plugin_folders_and_files_others_can_change_are_refused_with_the_fix() {
    let sandbox = Sandbox::new();
    let dir = sandbox.plugin_dir("shared", &[build_dir().join("libpanther_plugin_json.so")]);
    let file = dir.join("libpanther_plugin_json.so");
    set_mode(&file, 0o644);

    set_mode(&dir, 0o777);
    let (status, listing) = list_json(&sandbox, &dir, &[]);
    assert_eq!(status, 2);
    assert!(listing["plugins"].as_array().unwrap().is_empty());
    assert_eq!(
        error_for(&listing, "libpanther_plugin_json.so"),
        format!(
            "refused: the plugin folder {0} can be written by group and others (mode 777); \
             fix with `chmod go-w {0}`, or trust the folder with `trust_plugin_dirs` in the \
             settings file",
            dir.display()
        )
    );
    // The fix the message gives works.
    let chmod = Command::new("chmod")
        .arg("go-w")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(chmod.success());
    assert_eq!(list_json(&sandbox, &dir, &[]).0, 0);

    set_mode(&file, 0o664);
    let (status, listing) = list_json(&sandbox, &dir, &[]);
    assert_eq!(status, 2);
    assert!(
        error_for(&listing, "libpanther_plugin_json.so").starts_with(&format!(
            "refused: the file {0} can be written by its group (mode 664); fix with `chmod go-w {0}`",
            file.display()
        )),
        "{listing:#}"
    );

    // Trusted explicitly in the settings file.
    let settings = sandbox.write(
        "trusting.toml",
        &format!("trust_plugin_dirs = [\"{}\"]\n", dir.display()),
    );
    let (status, listing) = list_json(&sandbox, &dir, &["--config", settings.to_str().unwrap()]);
    assert_eq!(status, 0, "{listing:#}");
    assert_eq!(listing["plugins"][0]["name"], "json");
    set_mode(&file, 0o644);

    // Owned by someone else (the tests run as root, who may give a file away).
    if nix::unistd::geteuid().is_root() {
        nix::unistd::chown(
            file.as_path(),
            Some(nix::unistd::Uid::from_raw(65534)),
            None,
        )
        .unwrap();
        let (status, listing) = list_json(&sandbox, &dir, &[]);
        assert_eq!(status, 2);
        let error = error_for(&listing, "libpanther_plugin_json.so");
        assert!(
            error.starts_with(&format!("refused: the file {} belongs to ", file.display()))
                && error.contains("(uid 65534), not to root; fix with `chown root "),
            "{error}"
        );
    } else {
        eprintln!("NOT CHECKED: a file owned by another user (needs root to give one away)");
    }
}

#[test]
fn an_unreadable_plugin_file_says_permission_denied() {
    let sandbox = Sandbox::new();
    // Readable by an unprivileged user up to the plugin file.
    set_mode(sandbox.path(), 0o755);
    let dir = sandbox.plugin_dir(
        "plugins",
        &[
            build_dir().join("libpanther_plugin_json.so"),
            build_dir().join("libpanther_plugin_localhost.so"),
        ],
    );
    let file = dir.join("libpanther_plugin_json.so");
    set_mode(&file, 0o000);

    if !nix::unistd::geteuid().is_root() {
        let (status, listing) = list_json(&sandbox, &dir, &[]);
        assert_eq!(status, 2);
        assert_eq!(
            error_for(&listing, "libpanther_plugin_json.so"),
            "cannot be read: Permission denied"
        );
        return;
    }
    // Root reads a mode-000 file anyway: as root, the plugin loads.
    let (status, listing) = list_json(&sandbox, &dir, &[]);
    assert_eq!(status, 0, "root can read it: {listing:#}");
    // What an ordinary user sees, through setpriv.
    let Some(setpriv) = which("setpriv") else {
        eprintln!(
            "NOT CHECKED: permission denied for an unreadable file (running as root and \
             setpriv is not installed); checked only that root loads it"
        );
        return;
    };
    let output = Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(host_bin())
        .current_dir(sandbox.path())
        .env("PANTHER_CACHE_DIR", sandbox.path().join("nobody-cache"))
        .env("PANTHER_CONFIG", sandbox.write("empty.toml", ""))
        .env_remove("PANTHER_PLUGIN_PATH")
        .args([
            "--no-default-plugins",
            "list",
            "--format",
            "json",
            "--plugin-dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    let listing: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(
        error_for(&listing, "libpanther_plugin_json.so"),
        "cannot be read: Permission denied"
    );
    assert_eq!(listing["plugins"][0]["name"], "localhost", "{listing:#}");
}
