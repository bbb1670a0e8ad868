//! Hostile plugin files: files that would take a host down if it opened them (cut short, foreign,
//! forged, or with constructors that exit, abort or hang) cost one line each, and the
//! manifest cache that keeps that cost to once per file.
//!
//! The corpus is built by the tests, without the plugin-api: C compiled with gcc
//! (`tests/fixtures/corpus/`), shipped plugins cut at several sizes, a zlib copy, links.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

use crate::support::*;

/// Compiles `tests/fixtures/corpus/<source>` with `defines` into the shared library `out`.
fn gcc(source: &str, defines: &[&str], out: &Path) {
    let output = Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(out)
        .args(defines)
        .arg(root().join("tests/fixtures/corpus").join(source))
        .output()
        .expect("gcc runs (apt-get install gcc)");
    assert!(
        output.status.success(),
        "gcc {source} failed: {}",
        stderr(&output)
    );
}

/// The first `len` bytes of `from`, written to `to`.
fn truncated_copy(from: &Path, to: &Path, len: u64) {
    let bytes = std::fs::read(from).unwrap();
    std::fs::write(to, &bytes[..len as usize]).unwrap();
}

/// What each bad file of the corpus must be reported as.
struct Bad {
    file: &'static str,
    error: String,
}

/// A folder with the plugins the quickstart uses and, beside them, every kind of bad file.
/// Returns the folder and what each bad file must be reported as.
fn corpus(sandbox: &Sandbox) -> (PathBuf, Vec<Bad>) {
    let dir = sandbox.plugin_dir(
        "corpus",
        &[
            build_dir().join("libpanther_plugin_localhost.so"),
            build_dir().join("libpanther_plugin_json.so"),
            build_dir().join("libpanther_plugin_junit.so"),
        ],
    );
    let bad = |file: &'static str, error: &str| Bad {
        file,
        error: error.to_string(),
    };
    let mut expected = Vec::new();

    std::fs::write(dir.join("empty.so"), "").unwrap();
    expected.push(bad(
        "empty.so",
        "empty file (0 bytes), not a shared library",
    ));
    std::fs::write(dir.join("text.so"), "this is a text file, not a library\n").unwrap();
    expected.push(bad("text.so", "not a shared library (no ELF header)"));
    std::os::unix::fs::symlink("/dev/null", dir.join("devnull.so")).unwrap();
    expected.push(bad(
        "devnull.so",
        "not a regular file: a link to /dev/null (a character device)",
    ));
    let folder = sandbox.path().join("a-folder");
    std::fs::create_dir_all(&folder).unwrap();
    std::os::unix::fs::symlink(&folder, dir.join("folder.so")).unwrap();
    expected.push(bad(
        "folder.so",
        &format!(
            "not a regular file: a link to {} (a folder)",
            folder.display()
        ),
    ));
    std::os::unix::fs::symlink("/no/such/library.so", dir.join("dangling.so")).unwrap();
    expected.push(bad(
        "dangling.so",
        "not a regular file: a dangling link to /no/such/library.so",
    ));

    let json = build_dir().join("libpanther_plugin_json.so");
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    zlib.write_all(&std::fs::read(&json).unwrap()).unwrap();
    std::fs::write(dir.join("zlib.so"), zlib.finish().unwrap()).unwrap();
    expected.push(bad("zlib.so", "not a shared library (no ELF header)"));

    gcc(
        "abi_header.c",
        &["-DWRONG_MAGIC"],
        &dir.join("wrong_magic.so"),
    );
    expected.push(bad(
        "wrong_magic.so",
        "not an abi_stable library (wrong magic)",
    ));
    gcc(
        "abi_header.c",
        &["-DABI_MINOR=10"],
        &dir.join("abi_0_10.so"),
    );
    expected.push(bad(
        "abi_0_10.so",
        "built with abi_stable 0.10 (this host uses 0.11)",
    ));
    gcc("abi_header.c", &[], &dir.join("forged.so"));
    expected.push(bad(
        "forged.so",
        "killed by SIGSEGV while reading its root module",
    ));
    gcc("ctor.c", &["-DEXIT_CODE=7"], &dir.join("exit7.so"));
    expected.push(bad(
        "exit7.so",
        "its constructor exited with code 7 while loading",
    ));
    gcc("ctor.c", &["-DABORT"], &dir.join("abort.so"));
    expected.push(bad("abort.so", "killed by SIGABRT while loading"));
    gcc("ctor.c", &["-DHANG"], &dir.join("hang.so"));
    expected.push(bad(
        "hang.so",
        "did not answer within 1 s while loading; it was stopped",
    ));

    let size = std::fs::metadata(&json).unwrap().len();
    truncated_copy(&json, &dir.join("cut_1k.so"), 1024);
    truncated_copy(&json, &dir.join("cut_half.so"), size / 2);
    truncated_copy(&json, &dir.join("cut_4k.so"), size - 4096);
    for file in ["cut_1k.so", "cut_half.so", "cut_4k.so"] {
        expected.push(bad(file, "truncated: "));
    }
    (dir, expected)
}

/// The quickstart, on a free port, with the echo programs of this build.
fn quickstart(sandbox: &Sandbox) -> PathBuf {
    let text = std::fs::read_to_string(root().join("examples/quickstart.toml")).unwrap();
    let port = free_port().to_string();
    let text = text
        .replace("4443", &port)
        .replace("../target/debug", &build_dir().display().to_string());
    sandbox.write("quickstart.toml", &text)
}

fn corpus_host(sandbox: &Sandbox, dir: &Path, args: &[&str]) -> Output {
    sandbox
        .bare_host()
        .env("PANTHER_PROBE_TIMEOUT", "1s")
        .arg("--plugin-dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

/// The lines of `text` that name `file`.
fn lines_naming<'a>(text: &'a str, file: &Path) -> Vec<&'a str> {
    let name = format!("{}:", file.display());
    text.lines().filter(|l| l.contains(&name)).collect()
}

/// Processes whose command line mentions `needle` (the probe of a hung file, say).
fn processes_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let pid = e.ok()?.file_name().to_str()?.parse::<u32>().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (alive(pid) && cmdline.contains(needle)).then_some(cmdline)
        })
        .collect()
}

#[test]
fn every_bad_file_costs_one_line_and_the_quickstart_still_passes() {
    let sandbox = Sandbox::new();
    let (dir, expected) = corpus(&sandbox);
    let experiment = quickstart(&sandbox);

    // list: exits 2 because files failed; each one has one line with its cause.
    let output = corpus_host(&sandbox, &dir, &["list", "--format", "json"]);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    let listing: Value = serde_json::from_str(&stdout(&output))
        .unwrap_or_else(|e| panic!("stdout is not clean JSON ({e}): {}", stdout(&output)));
    let mut names: Vec<&str> = listing["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["json", "junit", "localhost"], "{listing:#}");
    let errors = listing["errors"].as_array().unwrap();
    assert_eq!(errors.len(), expected.len(), "{listing:#}");
    for bad in &expected {
        let path = dir.join(bad.file);
        let found: Vec<&Value> = errors
            .iter()
            .filter(|e| e["path"] == path.to_str().unwrap())
            .collect();
        assert_eq!(found.len(), 1, "one error for {}: {listing:#}", bad.file);
        let error = found[0]["error"].as_str().unwrap();
        assert!(
            error.starts_with(&bad.error),
            "{}: expected `{}`, got `{error}`",
            bad.file,
            bad.error
        );
        assert!(!error.contains('\n'), "one line: {error}");
    }
    // A truncated file says where its data ends and how big the file is.
    let error_of = |file: &str| {
        errors
            .iter()
            .find(|e| e["path"].as_str().unwrap().ends_with(file))
            .unwrap()["error"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for file in ["cut_1k.so", "cut_half.so", "cut_4k.so"] {
        let size = std::fs::metadata(dir.join(file)).unwrap().len();
        let error = error_of(file);
        assert!(
            error.ends_with(&format!("but the file has {size} bytes")),
            "{error}"
        );
    }
    // Cut at 1 KiB, a loadable segment is past the end (the loader would map it and die).
    let error = error_of("cut_1k.so");
    assert!(
        regex::Regex::new(r"^truncated: segment \d+ ends at \d+ but the file has 1024 bytes$")
            .unwrap()
            .is_match(&error),
        "{error}"
    );

    // Failures are cached with their file's identity: the hung file costs its time limit
    // once, not on every command.
    let cache: Value =
        serde_json::from_slice(&std::fs::read(sandbox.cache_dir().join("plugins.json")).unwrap())
            .unwrap();
    let hang = &cache["entries"][dir.join("hang.so").to_str().unwrap()];
    assert!(
        hang["answer"]["Error"]["kind"]["Probe"]
            .as_str()
            .is_some_and(|e| e.starts_with("did not answer within 1 s")),
        "{cache:#}"
    );

    // The table, from the cache now: the same one line per file.
    let output = corpus_host(&sandbox, &dir, &["list"]);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    let table = stdout(&output);
    for bad in &expected {
        let lines = lines_naming(&table, &dir.join(bad.file));
        assert_eq!(lines.len(), 1, "{}: {table}", bad.file);
        assert!(lines[0].contains(&bad.error), "{}: {}", bad.file, lines[0]);
    }

    // check and run: one warning line per bad file, and the quickstart passes.
    for args in [
        vec!["check", experiment.to_str().unwrap()],
        vec!["run", experiment.to_str().unwrap()],
    ] {
        let output = corpus_host(&sandbox, &dir, &args);
        let err = stderr(&output);
        assert_eq!(code(&output), 0, "{args:?}: {err}");
        for bad in &expected {
            let lines = lines_naming(&err, &dir.join(bad.file));
            assert_eq!(lines.len(), 1, "{args:?} {}: {err}", bad.file);
            assert!(
                lines[0].starts_with("warning: ") && lines[0].contains(&bad.error),
                "{}",
                lines[0]
            );
        }
    }
    let result: Value = serde_json::from_str(
        &std::fs::read_to_string(sandbox.results("quickstart").join("result.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(result["status"], "passed", "{result:#}");

    // The hung probe was killed with everything it started.
    let left = processes_mentioning(dir.to_str().unwrap());
    assert!(left.is_empty(), "left running: {left:?}");
}

#[test]
fn a_plugin_the_experiment_needs_that_failed_to_load_is_named_with_the_reason() {
    let sandbox = Sandbox::new();
    let dir = sandbox.plugin_dir(
        "plugins",
        &[
            build_dir().join("libpanther_plugin_localhost.so"),
            build_dir().join("libpanther_plugin_junit.so"),
        ],
    );
    // A json plugin cut short, and a plugin built against another plugin-api major version
    // (refused before its manifest can be read, so it is found by its file name).
    let json = build_dir().join("libpanther_plugin_json.so");
    truncated_copy(
        &json,
        &dir.join("libpanther_plugin_json.so"),
        std::fs::metadata(&json).unwrap().len() / 2,
    );
    std::fs::copy(api_major_fixture(), dir.join("libfrom_the_future.so")).unwrap();
    let experiment = sandbox.write(
        "e.toml",
        &echo_experiment(
            "needs",
            "[[report]]\nplugin = \"json\"\n\n[[report]]\nplugin = \"from_the_future\"\n",
        ),
    );
    for command in ["check", "run"] {
        let output = sandbox
            .bare_host()
            .arg("--plugin-dir")
            .arg(&dir)
            .args([command, experiment.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(code(&output), 2, "{}", stderr(&output));
        let err = stderr(&output);
        assert!(
            err.contains(&format!(
                "the reporter `json` cannot be used: {}: truncated: ",
                dir.join("libpanther_plugin_json.so").display()
            )),
            "{command}: {err}"
        );
        assert!(
            err.contains(&format!(
                "the reporter `from_the_future` cannot be used: {}: built against panther-plugin-api",
                dir.join("libfrom_the_future.so").display()
            )),
            "{command}: {err}"
        );
    }
    let output = sandbox
        .bare_host()
        .arg("--plugin-dir")
        .arg(&dir)
        .args(["info", "json"])
        .output()
        .unwrap();
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("the plugin `json` cannot be used: ")
            && stderr(&output).contains("truncated: "),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_missing_plugin_folder_is_an_error_for_every_command() {
    let sandbox = Sandbox::new();
    let experiment = quickstart(&sandbox);
    for args in [
        vec!["list"],
        vec!["info", "json"],
        vec!["check", experiment.to_str().unwrap()],
        vec!["run", experiment.to_str().unwrap()],
    ] {
        let output = sandbox.host(&[&["--plugin-dir", "/no/such/folder"], &args[..]].concat());
        assert_eq!(code(&output), 2, "{args:?}: {}", stderr(&output));
        assert!(
            stderr(&output).contains(
                "error: /no/such/folder: cannot read the plugin folder: No such file or directory"
            ),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

/// A probe that records every file it is asked about in `log`, then does its job.
fn recording_probe(sandbox: &Sandbox, log: &Path) -> PathBuf {
    let real = build_dir().join("panther-plugin-probe");
    assert!(real.is_file(), "{} is not built", real.display());
    let script = sandbox.write(
        "probe.sh",
        &format!(
            "#!/bin/sh\necho \"$1\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real.display()
        ),
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script
}

fn probed(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

fn list_with(sandbox: &Sandbox, probe: &Path, dirs: &[&Path]) -> Value {
    let mut command = sandbox.bare_host();
    command.env("PANTHER_PROBE", probe);
    for dir in dirs {
        command.arg("--plugin-dir").arg(dir);
    }
    let output = command.args(["list", "--format", "json"]).output().unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    serde_json::from_str(&stdout(&output)).unwrap()
}

fn names(listing: &Value) -> Vec<String> {
    let mut names: Vec<String> = listing["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn the_cache_probes_a_file_once_and_again_when_it_changes() {
    let sandbox = Sandbox::new();
    let log = sandbox.path().join("probed.log");
    let probe = recording_probe(&sandbox, &log);
    let dir = sandbox.plugin_dir(
        "plugins",
        &[
            build_dir().join("libpanther_plugin_json.so"),
            fixture("logger"),
        ],
    );
    let json = dir.join("libpanther_plugin_json.so");
    let logger = dir.join("libfixture_logger.so");

    assert_eq!(
        names(&list_with(&sandbox, &probe, &[&dir])),
        ["json", "logger"]
    );
    assert_eq!(probed(&log).len(), 2, "{:?}", probed(&log));
    assert_eq!(
        names(&list_with(&sandbox, &probe, &[&dir])),
        ["json", "logger"]
    );
    assert_eq!(probed(&log).len(), 2, "a warm cache probes nothing");

    // A new modification time.
    let file = std::fs::File::options().write(true).open(&json).unwrap();
    file.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    drop(file);
    assert_eq!(
        names(&list_with(&sandbox, &probe, &[&dir])),
        ["json", "logger"]
    );
    assert_eq!(probed(&log)[2..], [json.display().to_string()]);

    // Rewritten in place with other contents (another plugin): read anew, not trusted.
    std::fs::write(&logger, std::fs::read(fixture("tag")).unwrap()).unwrap();
    assert_eq!(
        names(&list_with(&sandbox, &probe, &[&dir])),
        ["json", "tag"]
    );
    assert_eq!(probed(&log)[3..], [logger.display().to_string()]);
}

#[test]
fn a_corrupt_cache_is_ignored_and_rebuilt() {
    let sandbox = Sandbox::new();
    let log = sandbox.path().join("probed.log");
    let probe = recording_probe(&sandbox, &log);
    let dir = sandbox.plugin_dir("plugins", &[build_dir().join("libpanther_plugin_json.so")]);
    list_with(&sandbox, &probe, &[&dir]);
    let cache = sandbox.cache_dir().join("plugins.json");
    let good: Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    assert_eq!(good["entries"].as_object().unwrap().len(), 1, "{good:#}");

    for garbage in [&b"{\"header\": {\"host\": "[..], b"\x00\x01 not json", b""] {
        std::fs::write(&cache, garbage).unwrap();
        let before = probed(&log).len();
        assert_eq!(names(&list_with(&sandbox, &probe, &[&dir])), ["json"]);
        assert_eq!(probed(&log).len(), before + 1, "probed again");
        let rebuilt: Value = serde_json::from_slice(&std::fs::read(&cache).unwrap())
            .expect("the cache was rewritten whole");
        assert_eq!(rebuilt["entries"], good["entries"]);
    }
}

#[test]
fn two_hosts_filling_the_cache_at_once_both_end_correct() {
    let sandbox = Sandbox::new();
    let log = sandbox.path().join("probed.log");
    let probe = recording_probe(&sandbox, &log);
    let a = sandbox.plugin_dir(
        "a",
        &[
            build_dir().join("libpanther_plugin_json.so"),
            fixture("logger"),
        ],
    );
    let b = sandbox.plugin_dir(
        "b",
        &[
            build_dir().join("libpanther_plugin_junit.so"),
            fixture("tag"),
        ],
    );
    for round in 0..3 {
        let _ = std::fs::remove_dir_all(sandbox.cache_dir());
        let start = |dir: &Path| {
            sandbox
                .bare_host()
                .env("PANTHER_PROBE", &probe)
                .arg("--plugin-dir")
                .arg(dir)
                .args(["list", "--format", "json"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (first, second) = (start(&a), start(&b));
        let (first, second) = (
            first.wait_with_output().unwrap(),
            second.wait_with_output().unwrap(),
        );
        let listing = |o: &Output| -> Value {
            assert_eq!(code(o), 0, "round {round}");
            serde_json::from_str(&stdout(o)).unwrap()
        };
        assert_eq!(names(&listing(&first)), ["json", "logger"], "round {round}");
        assert_eq!(names(&listing(&second)), ["junit", "tag"], "round {round}");

        // Both hosts' entries are in the cache: listing both folders probes nothing.
        let before = probed(&log).len();
        assert_eq!(
            names(&list_with(&sandbox, &probe, &[&a, &b])),
            ["json", "junit", "logger", "tag"]
        );
        assert_eq!(
            probed(&log).len(),
            before,
            "round {round}: {:?}",
            probed(&log)
        );
    }
}

#[test]
fn list_info_and_check_open_no_library_and_a_run_opens_only_what_it_uses() {
    let sandbox = Sandbox::new();
    let experiment = sandbox.write(
        "e.toml",
        &echo_experiment(
            "lazy",
            "[network]\nplugin = \"localhost\"\n\n[[report]]\nplugin = \"json\"\n",
        ),
    );
    // The libraries the host process itself opened (`LD_DEBUG` lines start with the pid of
    // the process that printed them: plugin servers and probes print theirs too).
    let opened = |args: &[&str]| -> Vec<String> {
        let child = sandbox
            .bare_host()
            .arg("--plugin-dir")
            .arg(build_dir())
            .env("LD_DEBUG", "files")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let host = format!("{}:", child.id());
        let output = child.wait_with_output().unwrap();
        assert_eq!(code(&output), 0, "{args:?}: {}", stderr(&output));
        let mut files: Vec<String> = stderr(&output)
            .lines()
            .filter(|l| l.trim_start().starts_with(&host))
            .filter(|l| l.contains("dynamically loaded by"))
            .filter_map(|l| l.split("file=").nth(1)?.split(' ').next().map(String::from))
            .filter(|f| f.contains("libpanther_plugin_"))
            .map(|f| f.rsplit('/').next().unwrap().to_string())
            .collect();
        files.sort();
        files.dedup();
        files
    };
    // The first list fills the cache (the probes open the files, not the host).
    assert_eq!(opened(&["list"]), Vec::<String>::new());
    assert_eq!(opened(&["list"]), Vec::<String>::new());
    assert_eq!(opened(&["info", "json"]), Vec::<String>::new());
    // junit is used too: it is a default reporter.
    let used = [
        "libpanther_plugin_json.so",
        "libpanther_plugin_junit.so",
        "libpanther_plugin_localhost.so",
    ];
    // `check` asks the plugins about their configuration in plugin servers.
    assert_eq!(
        opened(&["check", experiment.to_str().unwrap()]),
        Vec::<String>::new()
    );
    assert_eq!(opened(&["run", experiment.to_str().unwrap()]), used);
}

/// A failure the file's bytes do not decide (here a library the dynamic loader cannot find)
/// is cached only for the environment it was seen in: once the library can be found, the
/// next command probes the file again instead of repeating the old error.
#[test]
fn a_failure_that_depends_on_the_environment_is_probed_again_in_another() {
    let sandbox = Sandbox::new();
    let deps = sandbox.path().join("deps");
    std::fs::create_dir_all(&deps).unwrap();
    gcc("ctor.c", &[], &deps.join("libneeded.so"));
    let dir = sandbox.plugin_dir("plugins", &[]);
    let needs = dir.join("needs.so");
    let link = format!("-L{}", deps.display());
    gcc("ctor.c", &["-Wl,--no-as-needed", &link, "-lneeded"], &needs);

    let error = |library_path: Option<&Path>| {
        let mut command = sandbox.bare_host();
        command.env_remove("LD_LIBRARY_PATH");
        if let Some(path) = library_path {
            command.env("LD_LIBRARY_PATH", path);
        }
        let output = command
            .arg("--plugin-dir")
            .arg(&dir)
            .args(["list", "--format", "json"])
            .output()
            .unwrap();
        let listing: Value = serde_json::from_str(&stdout(&output))
            .unwrap_or_else(|e| panic!("{e}: {}", stderr(&output)));
        listing["errors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == needs.to_str().unwrap())
            .unwrap_or_else(|| panic!("no error for needs.so: {listing:#}"))["error"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let missing = error(None);
    assert!(missing.contains("libneeded.so"), "{missing}");
    assert_eq!(error(None), missing, "the same environment reads the cache");
    let found = error(Some(&deps));
    assert!(
        found.starts_with("not a panther plugin: it exports no root module"),
        "probed again once the library can be found: {found}"
    );
}
