//! Tests of the gperf execution environments, on real programs with the real tools.
//!
//! The experiments and commands are the ones in `plugins/gperf_cpu/README.md` and
//! `plugins/gperf_heap/README.md`, read from there: every command the READMEs show is run
//! here, in a sandbox holding copies of the C programs from `tests/fixtures/programs/`.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

use crate::support::*;

const MIB: i64 = 1024 * 1024;

/// The sh blocks of the READMEs that the tests below run, each named by a line in it.
const README_BLOCKS: &[(&str, &str)] = &[
    ("gperf_cpu", "panther-host doctor"),
    ("gperf_cpu", "panther-host run cpu.toml"),
    ("gperf_cpu", "panther-host run cpu-server.toml"),
    ("gperf_cpu", "panther-host run cpu-strace.toml"),
    ("gperf_heap", "panther-host doctor"),
    ("gperf_heap", "panther-host run heap.toml"),
    ("gperf_heap", "panther-host run profile.toml"),
];

fn readme(plugin: &str) -> String {
    let path = root().join("plugins").join(plugin).join("README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fenced blocks of a language in a README, as text.
fn blocks(text: &str, language: &str) -> Vec<String> {
    let fence = format!("```{language}");
    let mut found = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim_end() == fence => current = Some(String::new()),
            Some(block) if line.trim_end() == "```" => {
                found.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    found
}

/// The README's experiment file whose first line is `# <name>`.
fn readme_experiment(plugin: &str, name: &str) -> String {
    blocks(&readme(plugin), "toml")
        .into_iter()
        .find(|b| b.lines().next() == Some(&format!("# {name}")))
        .unwrap_or_else(|| panic!("{plugin}/README.md has no `# {name}` toml block"))
}

/// Runs the README's sh block that contains `line`, in the sandbox: `cc` lines compile a
/// copy of the named fixture program, `panther-host` lines run the host. Experiment files the
/// block runs are written from the README first. Returns the host's outputs, in order.
fn run_readme(sandbox: &Sandbox, plugin: &str, line: &str) -> Vec<Output> {
    let block = blocks(&readme(plugin), "sh")
        .into_iter()
        .find(|b| b.lines().any(|l| l.trim() == line))
        .unwrap_or_else(|| panic!("{plugin}/README.md has no sh block with `{line}`"));
    let mut outputs = Vec::new();
    for command in block.lines().filter(|l| !l.trim().is_empty()) {
        let argv: Vec<&str> = command.split_whitespace().collect();
        match argv[0] {
            "cc" => {
                let source = argv.last().expect("a source file");
                std::fs::copy(
                    root().join("tests/fixtures/programs").join(source),
                    sandbox.path().join(source),
                )
                .unwrap_or_else(|e| panic!("copying {source}: {e}"));
                let output = Command::new("cc")
                    .args(&argv[1..])
                    .current_dir(sandbox.path())
                    .output()
                    .expect("cc runs");
                assert!(output.status.success(), "{command}: {}", stderr(&output));
            }
            "panther-host" => {
                if let Some(file) = argv.iter().find(|a| a.ends_with(".toml")) {
                    sandbox.write(file, &readme_experiment(plugin, file));
                }
                outputs.push(sandbox.host(&argv[1..]));
            }
            other => panic!("{plugin}/README.md shows `{other}`, which no test runs"),
        }
    }
    outputs
}

/// The single `panther-host run` of a README block, which must pass.
fn run_passing(sandbox: &Sandbox, plugin: &str, line: &str) {
    let outputs = run_readme(sandbox, plugin, line);
    let run = outputs.last().expect("the block runs the host");
    assert_eq!(
        code(run),
        0,
        "{line}\nstdout:\n{}\nstderr:\n{}",
        stdout(run),
        stderr(run)
    );
}

/// The row of a report table for one function.
pub(crate) fn row<'a>(table: &'a Value, function: &str) -> &'a Value {
    table
        .as_array()
        .expect("a table")
        .iter()
        .find(|r| r["function"] == function)
        .unwrap_or_else(|| panic!("no {function} in {table:#}"))
}

/// The checks every CPU profile of `gperf_burn` passes, wherever it ran.
pub(crate) fn assert_burn_profile(data: &Value) {
    assert!(data["samples"].as_u64().unwrap() >= 10, "{data:#}");
    assert_eq!(data["period_us"], 10_000, "100 Hz by default");
    let top = &data["top_flat"][0];
    assert_eq!(top["function"], "burn_cpu", "{data:#}");
    assert!(top["flat_percent"].as_f64().unwrap() > 60.0, "{top}");
    let main = row(&data["top_cumulative"], "main");
    assert!(
        main["cumulative_percent"].as_f64().unwrap() > 95.0,
        "{main}"
    );
    assert_eq!(main["flat"], 0, "main only calls");
    row(&data["top_flat"], "light_work");

    let folded = std::fs::read_to_string(data["folded"].as_str().unwrap()).unwrap();
    assert!(
        folded.lines().any(|l| l.contains("main;burn_cpu ")),
        "{folded}"
    );
    let svg = std::fs::read_to_string(data["flamegraph"].as_str().expect("a flame graph")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("burn_cpu"));
    for profile in data["profiles"].as_array().unwrap() {
        assert!(profile["error"].is_null(), "{profile}");
        let path = PathBuf::from(profile["path"].as_str().unwrap());
        assert!(path.is_file(), "{}", path.display());
    }
}

/// The profile of the process running `program`.
pub(crate) fn profile_of<'a>(data: &'a Value, program: &str) -> &'a Value {
    data["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["exe"].as_str().is_some_and(|e| e.ends_with(program)))
        .unwrap_or_else(|| panic!("no profile of {program}: {data:#}"))
}

#[test]
fn gperf_cpu_profiles_a_client_that_exits() {
    let sandbox = Sandbox::new();
    run_passing(&sandbox, "gperf_cpu", "panther-host run cpu.toml");
    let results = sandbox.results("cpu");
    let data = monitoring(&results, "burn", "gperf_cpu");
    assert_burn_profile(&data);
    let profile = profile_of(&data, "/gperf_burn");
    assert_eq!(profile["state"], "exited", "written by its exit handler");
    assert_eq!(data["profiles"].as_array().unwrap().len(), 1, "{data:#}");
    assert_eq!(
        data["folded"],
        results
            .join("monitoring/burn/gperf_cpu/cpu.folded")
            .display()
            .to_string()
    );
    assert!(results
        .join("monitoring/burn/gperf_cpu/flamegraph.svg")
        .is_file());
    assert!(results
        .join("monitoring/burn/gperf_cpu/cpu.prof.0")
        .is_file());
}

#[test]
fn gperf_cpu_preloads_the_library_its_configuration_names() {
    let sandbox = Sandbox::new();
    run_passing(&sandbox, "gperf_cpu", "panther-host run cpu.toml");
    // A copy under a name the automatic search never looks for, as a vendored build would be.
    let installed = Command::new("ldconfig")
        .arg("-p")
        .output()
        .expect("ldconfig runs");
    let system = String::from_utf8_lossy(&installed.stdout)
        .lines()
        .find(|l| l.trim_start().starts_with("libprofiler.so.0 "))
        .and_then(|l| l.rsplit(" => ").next())
        .map(|p| p.trim().to_string())
        .expect("libprofiler.so.0 is installed (google-perftools)");
    let vendored = sandbox.path().join("vendor/libprofiler-vendored.so");
    std::fs::create_dir_all(vendored.parent().unwrap()).unwrap();
    std::fs::copy(&system, &vendored).unwrap();
    let experiment = readme_experiment("gperf_cpu", "cpu.toml").replace(
        "plugin = \"gperf_cpu\"\n",
        &format!(
            "plugin = \"gperf_cpu\"\nlibrary = \"{}\"\n",
            vendored.display()
        ),
    );
    sandbox.write("vendored.toml", &experiment);
    let output = sandbox.host(&["run", "vendored.toml"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let data = monitoring(&sandbox.results("cpu"), "burn", "gperf_cpu");
    assert_eq!(data["library"], vendored.display().to_string(), "{data:#}");
    assert_burn_profile(&data);
    // The watcher follows a process once it sees the preloaded file in its memory map.
    let profile = profile_of(&data, "/gperf_burn");
    assert_eq!(profile["state"], "exited", "{data:#}");
    assert_eq!(data["warnings"], serde_json::json!([]), "{data:#}");
}

#[test]
fn gperf_cpu_flushes_a_server_before_the_host_stops_it() {
    let sandbox = Sandbox::new();
    run_passing(&sandbox, "gperf_cpu", "panther-host run cpu-server.toml");
    let results = sandbox.results("cpu-server");
    let data = monitoring(&results, "burn", "gperf_cpu");
    assert_burn_profile(&data);
    let profile = profile_of(&data, "/gperf_burn");
    assert_eq!(profile["state"], "flushed", "{data:#}");

    // The server never exits by itself: the host stopped it with SIGTERM, after the flush.
    let events = events(&results);
    let position = |name: &str| {
        events
            .iter()
            .position(|e| e["event"] == name && e["service"] == "burn")
            .unwrap_or_else(|| panic!("no {name} event"))
    };
    assert!(position("monitoring_stopped") < position("service_exited"));
    let exited = &events[position("service_exited")];
    assert_eq!(exited["state"]["signal"], 15, "{exited}");
}

#[test]
fn gperf_heap_attributes_a_known_pattern_exactly() {
    let sandbox = Sandbox::new();
    run_passing(&sandbox, "gperf_heap", "panther-host run heap.toml");
    let results = sandbox.results("heap");
    let data = monitoring(&results, "pattern", "gperf_heap");

    let big = row(&data["top_inuse"], "alloc_big");
    assert_eq!(big["inuse_bytes"], 10 * MIB, "{data:#}");
    assert_eq!(big["inuse_objects"], 10);
    assert_eq!(data["top_inuse"][0]["function"], "alloc_big");
    let small = row(&data["top_allocated"], "alloc_small");
    assert_eq!(small["allocated_bytes"], 100_000, "{data:#}");
    assert_eq!(small["allocated_objects"], 1000);
    assert_eq!(small["inuse_bytes"], 0);
    let spike = row(&data["top_allocated"], "spike");
    assert_eq!(
        (
            spike["allocated_bytes"].as_i64(),
            spike["inuse_bytes"].as_i64()
        ),
        (Some(8 * MIB), Some(0))
    );

    let processes = data["processes"].as_array().unwrap();
    assert_eq!(processes.len(), 1, "{data:#}");
    let process = &processes[0];
    assert_eq!(process["flushed_at_stop"], false, "it exited by itself");
    let dumps = process["dumps"].as_array().unwrap();
    assert!(dumps.len() >= 5, "a dump per MiB allocated: {dumps:#?}");
    assert_eq!(data["dumps"], dumps.len());
    for dump in dumps {
        assert!(Path::new(dump["path"].as_str().unwrap()).is_file());
    }
    let last = dumps.last().unwrap();
    assert!(last["inuse_bytes"].as_i64().unwrap() >= 10 * MIB, "{last}");
    assert_eq!(data["inuse_bytes"], last["inuse_bytes"]);

    let peak = &data["peak"];
    let highest = dumps
        .iter()
        .map(|d| d["inuse_bytes"].as_i64().unwrap())
        .max();
    assert_eq!(peak["inuse_bytes"].as_i64(), highest);
    assert!(peak["inuse_bytes"].as_i64().unwrap() >= 18 * MIB, "{peak}");
    assert_eq!(data["peak_inuse_bytes"], peak["inuse_bytes"]);
    assert_ne!(peak["dump"], last["path"], "the peak is mid-run: {peak}");
    assert!(dumps
        .iter()
        .any(|d| d["path"] == peak["dump"] && d["sequence"] == peak["sequence"]));
}

#[test]
fn gperf_cpu_and_gperf_heap_stack_on_one_server() {
    let sandbox = Sandbox::new();
    let outputs = run_readme(&sandbox, "gperf_heap", "panther-host run profile.toml");
    let [plan, run] = &outputs[..] else {
        panic!("a dry run, then the run")
    };
    assert_eq!(code(plan), 0, "{}", stderr(plan));
    let command = stdout(plan)
        .lines()
        .find(|l| l.contains("command:") && l.contains("gperf_service"))
        .expect("the service's command")
        .to_string();
    let preload = command
        .split_whitespace()
        .find_map(|w| w.strip_prefix("LD_PRELOAD="))
        .expect("LD_PRELOAD");
    let libraries: Vec<&str> = preload.split(':').collect();
    assert_eq!(libraries.len(), 2, "{preload}");
    assert!(libraries[0].contains("libprofiler.so"), "{preload}");
    assert!(libraries[1].contains("libtcmalloc.so"), "{preload}");
    assert!(command.contains("CPUPROFILESIGNAL=12"), "{command}");
    assert!(command.contains("HEAPPROFILESIGNAL=10"), "{command}");
    assert!(
        command.ends_with("./gperf_service"),
        "the service itself runs: {command}"
    );
    assert_eq!(code(run), 0, "{}\n{}", stdout(run), stderr(run));

    let results = sandbox.results("profile");
    let cpu = monitoring(&results, "svc", "gperf_cpu");
    assert_eq!(cpu["top_flat"][0]["function"], "burn_cpu", "{cpu:#}");
    assert!(cpu["top_flat"][0]["flat_percent"].as_f64().unwrap() > 60.0);
    assert_eq!(profile_of(&cpu, "/gperf_service")["state"], "flushed");

    let heap = monitoring(&results, "svc", "gperf_heap");
    let kept = row(&heap["top_inuse"], "keep_buffers");
    assert_eq!(kept["inuse_bytes"], 4 * MIB, "{heap:#}");
    assert_eq!(kept["inuse_objects"], 4);
    let process = &heap["processes"][0];
    assert_eq!(process["flushed_at_stop"], true, "{heap:#}");
    assert!(heap["warnings"].as_array().unwrap().is_empty(), "{heap:#}");
}

#[test]
fn gperf_cpu_profiles_the_program_under_strace() {
    let sandbox = Sandbox::new();
    run_passing(&sandbox, "gperf_cpu", "panther-host run cpu-strace.toml");
    let results = sandbox.results("cpu-strace");
    let data = monitoring(&results, "burn", "gperf_cpu");
    assert_burn_profile(&data);
    let program = profile_of(&data, "/gperf_burn");
    assert_eq!(program["state"], "exited");
    assert_eq!(program["wrapper"], false);
    assert_eq!(data["samples"], program["samples"], "{data:#}");
    // strace ran the program: it is the outermost process and has libprofiler too, but it
    // is a wrapper, left out of the tables (and not profiled at all when the program's own
    // process was seen first).
    for profile in data["profiles"].as_array().unwrap() {
        if profile["exe"]
            .as_str()
            .is_some_and(|e| e.ends_with("/strace"))
        {
            assert_eq!(profile["wrapper"], true, "{data:#}");
            assert_ne!(profile["path"], program["path"], "{data:#}");
        }
    }
    let trace = std::fs::read_to_string(results.join("monitoring/burn/strace/strace.txt"))
        .expect("strace wrote its trace");
    assert!(trace.contains("gperf_burn"), "strace traced the program");
    monitoring(&results, "burn", "strace");
}

#[test]
fn gperf_cpu_on_the_quickstart_echo_server() {
    let sandbox = Sandbox::new();
    let file = sandbox.write(
        "e.toml",
        &echo_experiment(
            "gperf-echo",
            "[[execution]]\nplugin = \"gperf_cpu\"\nservices = [\"server\"]\n",
        ),
    );
    let output = sandbox.host(&["run", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}\n{}", stdout(&output), stderr(&output));
    let results = sandbox.results("gperf-echo");
    let data = monitoring(&results, "server", "gperf_cpu");
    let profiles = data["profiles"].as_array().unwrap();
    assert_eq!(profiles.len(), 1, "{data:#}");
    let profile = profile_of(&data, "/echo-server");
    assert_eq!(profile["state"], "flushed", "{data:#}");
    assert!(profile["error"].is_null(), "a complete profile: {data:#}");
    assert!(Path::new(profile["path"].as_str().unwrap()).is_file());
    assert!(Path::new(data["folded"].as_str().unwrap()).is_file());
    assert!(
        !results.join("monitoring/client/gperf_cpu.json").exists(),
        "only the server is profiled"
    );
}

#[test]
fn doctor_finds_the_gperftools_libraries() {
    for plugin in ["gperf_cpu", "gperf_heap"] {
        let sandbox = Sandbox::new();
        let outputs = run_readme(&sandbox, plugin, "panther-host doctor");
        let text = stdout(&outputs[0]);
        let (library, package) = match plugin {
            "gperf_cpu" => ("libprofiler.so.0", "libgoogle-perftools4"),
            _ => ("libtcmalloc.so.4", "libgoogle-perftools4"),
        };
        let line = text
            .lines()
            .find(|l| l.starts_with(plugin))
            .unwrap_or_else(|| panic!("no {plugin} in\n{text}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&words[..4], [plugin, library, package, "ok"], "{line}");
    }
}

#[test]
fn bad_gperf_settings_are_refused_before_anything_runs() {
    let sandbox = Sandbox::new();
    let file = sandbox.write(
        "e.toml",
        r#"[experiment]
name = "bad"

[[service]]
name = "s"
command = ["true"]
role = "client"

[[execution]]
plugin = "gperf_cpu"
library = "libprofiler.so.0"
signal = 9

[[execution]]
plugin = "gperf_heap"
library = "/no/such/libtcmalloc.so.4"
"#,
    );
    let output = sandbox.host(&["check", file.to_str().unwrap()]);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    let text = stderr(&output);
    assert!(text.contains("must be an absolute path"), "{text}");
    assert!(text.contains("signal 9 cannot be used"), "{text}");
    assert!(text.contains("/no/such/libtcmalloc.so.4"), "{text}");
}

#[test]
fn every_readme_command_is_run_by_a_test() {
    for plugin in ["gperf_cpu", "gperf_heap"] {
        for block in blocks(&readme(plugin), "sh") {
            let covered = README_BLOCKS
                .iter()
                .any(|(p, line)| *p == plugin && block.lines().any(|l| l.trim() == *line));
            assert!(covered, "{plugin}/README.md: no test runs\n{block}");
        }
    }
}
