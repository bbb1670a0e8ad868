//! Tests of the strace execution environments, on real programs with the real tools.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

use crate::support::*;

/// The plugin's C probe: 3 failing `open`s, a TCP exchange of "hello" on loopback, two
/// children (one exits 3 after a signal, one is killed by SIGKILL). Deterministic counts.
fn probe_source() -> PathBuf {
    root().join("plugins/strace/tests/data/probe.c")
}

/// A program that sleeps with the raw `nanosleep(2)` and with `clock_nanosleep(2)` (what
/// glibc's sleep functions use), opens a missing file, connects a UDP socket and writes
/// `slept` to its stdout.
const SLEEPER: &str = r#"
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(void) {
    struct timespec ts = {0, 1000000};
    if (syscall(SYS_nanosleep, &ts, NULL) != 0) return 10;
    if (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL) != 0) return 11;
    if (open("/nonexistent-panther-sleeper", O_RDONLY) != -1) return 12;
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(9);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) return 13;
    close(s);
    if (write(1, "slept\n", 6) != 6) return 14;
    return 0;
}
"#;

/// Compiles a C file with `cc` into the sandbox and returns the program's absolute path.
fn compile(sandbox: &Sandbox, name: &str, source: &Path) -> String {
    let program = sandbox.path().join(name);
    let output = Command::new("cc")
        .args(["-O1", "-Wall", "-o"])
        .arg(&program)
        .arg(source)
        .output()
        .expect("cc runs (is a C compiler installed?)");
    assert!(
        output.status.success(),
        "cc {}: {}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    program.display().to_string()
}

/// An experiment with one client service running `program`, plus `extra`.
fn one_service(name: &str, service: &str, program: &str, extra: &str) -> String {
    format!(
        r#"[experiment]
name = "{name}"
timeout = "20s"

[[service]]
name = "{service}"
command = ["{program}"]
role = "client"

[[report]]
plugin = "json"
path = "result.json"
{extra}
"#
    )
}

/// Runs the host on an experiment file and returns the output.
fn run(sandbox: &Sandbox, file: &str, experiment: &str) -> std::process::Output {
    let path = sandbox.write(file, experiment);
    sandbox.host(&["run", path.to_str().unwrap()])
}

/// Completed calls of one syscall in a summary (0 when it is absent).
fn calls(summary: &Value, syscall: &str) -> u64 {
    summary["syscalls"][syscall]["calls"].as_u64().unwrap_or(0)
}

/// The syscalls a summary counted, as name -> (calls, errors), left out when never returned.
fn counted(summary: &Value) -> BTreeMap<String, (u64, u64)> {
    summary["syscalls"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, s)| {
            let get = |k: &str| s[k].as_u64().unwrap();
            (name.clone(), (get("calls"), get("errors")))
        })
        .filter(|(_, (calls, _))| *calls > 0)
        .collect()
}

/// `strace -c -f` on `program` run directly, as name -> (calls, errors).
fn strace_c(sandbox: &Sandbox, program: &str) -> BTreeMap<String, (u64, u64)> {
    let table = sandbox.path().join("strace-c.txt");
    let output = Command::new("strace")
        .args(["-c", "-f", "-o"])
        .arg(&table)
        .arg(program)
        .current_dir(sandbox.path())
        .output()
        .expect("strace runs");
    assert!(output.status.success(), "{output:?}");
    let text = std::fs::read_to_string(&table).unwrap();
    // Rows have six columns, or five when the errors column is blank.
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let Some(&name) = cols.last() else { continue };
        if name == "total" || !(cols.len() == 5 || cols.len() == 6) {
            continue;
        }
        let Ok(calls) = cols[3].parse::<u64>() else {
            continue;
        };
        let errors = if cols.len() == 6 {
            cols[4].parse().unwrap()
        } else {
            0
        };
        rows.insert(name.to_string(), (calls, errors));
    }
    assert!(!rows.is_empty(), "no rows in strace -c output:\n{text}");
    rows
}

#[test]
fn echo_pair_under_strace_passes_and_summarises_the_traffic() {
    let sandbox = Sandbox::new();
    let experiment = echo_experiment(
        "traced_echo",
        r#"
[[execution]]
plugin = "strace"

[[report]]
plugin = "json"
path = "result.json"
"#,
    );
    let output = run(&sandbox, "e.toml", &experiment);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let results = sandbox.results("traced_echo");
    let listening = std::fs::read_to_string(results.join("services/server.stdout")).unwrap();
    let address = listening
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{listening}"))
        .to_string();

    let server = monitoring(&results, "server", "strace");
    assert!(
        calls(&server, "accept4") + calls(&server, "accept") >= 1,
        "{:#}",
        server["syscalls"]
    );
    let net = &server["network"];
    assert_eq!(net["bytes_received"], 5, "\"hello\" came in: {net:#}");
    assert_eq!(net["bytes_sent"], 5, "and went back out: {net:#}");
    assert!(
        net["addresses"]
            .as_array()
            .unwrap()
            .contains(&Value::from(address.clone())),
        "bound to {address}: {net:#}"
    );
    assert!(server.get("violations").is_none(), "{server:#}");

    let client = monitoring(&results, "client", "strace");
    assert_eq!(calls(&client, "connect"), 1, "{:#}", client["syscalls"]);
    assert_eq!(
        client["network"]["addresses"],
        serde_json::json!([address]),
        "{:#}",
        client["network"]
    );
    assert_eq!(client["network"]["bytes_sent"], 5);
    assert_eq!(client["network"]["bytes_received"], 5);
    let exits: Vec<&Value> = client["processes"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| &p["exit_code"])
        .collect();
    assert_eq!(exits, [&Value::from(0)], "{:#}", client["processes"]);

    for (service, summary) in [("server", &server), ("client", &client)] {
        let raw = results.join(format!("monitoring/{service}/strace/strace.txt"));
        assert!(raw.is_file(), "{} is missing", raw.display());
        assert_eq!(summary["raw"], raw.display().to_string());
        assert_eq!(summary["lines"]["unparsed"], 0, "{:#}", summary["lines"]);
    }

    // The wrapped argv is in the result; the event log has a short summary of each trace.
    let result = result_of(&results);
    let argv: Vec<&str> = result["services"][1]["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(argv[0].ends_with("/strace"), "{argv:?}");
    assert_eq!(&argv[1..6], ["-f", "-tt", "-T", "-s", "64"], "{argv:?}");
    let separator = argv
        .iter()
        .position(|a| *a == "--")
        .expect("strace's -- in the argv");
    assert_eq!(argv[separator - 2], "-o", "{argv:?}");
    assert_eq!(
        argv[separator - 1],
        results
            .join("monitoring/client/strace/strace.txt")
            .display()
            .to_string()
    );
    assert_eq!(
        &argv[separator + 1..],
        [program("echo-client").as_str(), address.as_str(), "hello"]
    );
    let event = events(&results)
        .into_iter()
        .find(|e| e["name"] == "strace_summary" && e["data"]["service"] == "client")
        .expect("a strace_summary event for the client");
    assert_eq!(event["data"]["calls"], client["totals"]["calls"]);
}

#[test]
fn syscall_counts_agree_with_strace_c() {
    let sandbox = Sandbox::new();
    let probe = compile(&sandbox, "probe", &probe_source());
    let experiment = one_service(
        "agreement",
        "probe",
        &probe,
        "[[execution]]\nplugin = \"strace\"\n",
    );
    let output = run(&sandbox, "e.toml", &experiment);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let summary = monitoring(&sandbox.results("agreement"), "probe", "strace");

    let open = &summary["syscalls"]["open"];
    assert_eq!((&open["calls"], &open["errors"]), (&3.into(), &3.into()));
    assert_eq!(open["errors_by_errno"]["ENOENT"], 3);

    // Every syscall, calls and errors, exactly as `strace -c -f` counts them on its own run.
    let theirs = strace_c(&sandbox, &probe);
    assert_eq!(counted(&summary), theirs);
    let (calls, errors) = theirs
        .values()
        .fold((0, 0), |(c, e), (dc, de)| (c + dc, e + de));
    assert_eq!(summary["totals"]["calls"], calls);
    assert_eq!(summary["totals"]["errors"], errors);
    // Never-returning calls are not in `strace -c`: the two exit_group and the self-kill.
    assert_eq!(summary["totals"]["unreturned"], 3);
    assert_eq!(summary["processes"].as_object().unwrap().len(), 3);
    assert_eq!(summary["signals"]["SIGUSR1"], 1);
}

#[test]
fn stacked_instances_trace_into_separate_files() {
    let sandbox = Sandbox::new();
    let probe = compile(&sandbox, "probe", &probe_source());
    // The first configured instance wraps innermost; the outer one traces the inner strace
    // process alone (a process has one tracer, see the next test).
    let experiment = one_service(
        "stacked",
        "probe",
        &probe,
        r#"
[[execution]]
plugin = "strace"

[[execution]]
plugin = "strace"
name = "outer"
follow_forks = false
"#,
    );
    let output = run(&sandbox, "e.toml", &experiment);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let results = sandbox.results("stacked");

    let inner_raw = results.join("monitoring/probe/strace/strace.txt");
    let outer_raw = results.join("monitoring/probe/outer/strace.txt");
    let inner_text = std::fs::read_to_string(&inner_raw).unwrap();
    let outer_text = std::fs::read_to_string(&outer_raw).unwrap();
    assert_ne!(inner_text, outer_text);

    let inner = monitoring(&results, "probe", "strace");
    let outer = monitoring(&results, "probe", "outer");
    assert_eq!(inner["raw"], inner_raw.display().to_string());
    assert_eq!(outer["raw"], outer_raw.display().to_string());
    // The inner one traced the probe.
    assert_eq!(
        inner["syscalls"]["open"]["errors"], 3,
        "{:#}",
        inner["syscalls"]
    );
    assert_eq!(inner["lines"]["unparsed"], 0);
    // The outer one traced strace: its exec, and the ptrace calls it made on the probe.
    assert!(
        outer_text.lines().next().unwrap().contains("execve(\"")
            && outer_text.lines().next().unwrap().contains("strace\""),
        "{}",
        outer_text.lines().next().unwrap()
    );
    assert!(calls(&outer, "ptrace") > 10, "{:#}", outer["syscalls"]);
    assert!(calls(&outer, "wait4") > 10, "{:#}", outer["syscalls"]);
    assert_eq!(
        calls(&outer, "open"),
        0,
        "the probe itself is not traced twice"
    );
    assert_eq!(outer["lines"]["unparsed"], 0);
}

#[test]
fn an_outer_instance_that_follows_forks_is_refused() {
    let sandbox = Sandbox::new();
    let experiment = one_service(
        "double_follow",
        "probe",
        "/bin/true",
        r#"
[[execution]]
plugin = "strace"

[[execution]]
plugin = "strace"
name = "outer"
"#,
    );
    let output = run(&sandbox, "e.toml", &experiment);
    assert_eq!(code(&output), 3, "{}", stderr(&output));
    let result = result_of(&sandbox.results("double_follow"));
    let errors = result["errors"].to_string();
    assert!(
        errors.contains("already runs under strace") && errors.contains("follow_forks = false"),
        "{errors}"
    );
}

#[test]
fn exclude_and_trace_classes_change_what_is_traced() {
    let sandbox = Sandbox::new();
    let source = sandbox.write("sleeper.c", SLEEPER);
    let sleeper = compile(&sandbox, "sleeper", &source);
    let services: String = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|s| {
            format!("[[service]]\nname = \"{s}\"\ncommand = [\"{sleeper}\"]\nrole = \"client\"\n\n")
        })
        .collect();
    let experiment = format!(
        r#"[experiment]
name = "classes"
timeout = "20s"

{services}
[[execution]]
plugin = "strace"
name = "defaults"
services = ["a"]

[[execution]]
plugin = "strace"
name = "everything"
services = ["b"]
exclude = []

[[execution]]
plugin = "strace"
name = "network"
services = ["c"]
trace = ["network"]

[[execution]]
plugin = "strace"
name = "subtracted"
services = ["d"]
trace = ["file", "network"]
exclude = ["socket"]

[[execution]]
plugin = "strace"
name = "stacks"
services = ["e"]
kernel_stacks = true
string_size = 4
"#
    );
    let output = run(&sandbox, "e.toml", &experiment);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let results = sandbox.results("classes");

    // PANTHER's default exclusions take the raw nanosleep(2) out; clock_nanosleep, which
    // glibc's sleep functions use, is not on that list.
    let defaults = monitoring(&results, "a", "defaults");
    assert_eq!(
        calls(&defaults, "nanosleep"),
        0,
        "{:#}",
        defaults["syscalls"]
    );
    assert!(defaults["syscalls"].get("nanosleep").is_none());
    assert_eq!(calls(&defaults, "clock_nanosleep"), 1);
    assert!(calls(&defaults, "mmap") > 0);
    let everything = monitoring(&results, "b", "everything");
    assert_eq!(
        calls(&everything, "nanosleep"),
        1,
        "{:#}",
        everything["syscalls"]
    );
    assert_eq!(everything["trace_expression"], "all");

    // %network: the program's socket and connect, nothing else.
    let network = monitoring(&results, "c", "network");
    assert_eq!(network["trace_expression"], "%network");
    let names: BTreeSet<&str> = network["syscalls"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(names, BTreeSet::from(["connect", "socket"]));
    assert_eq!(
        network["network"]["addresses"],
        serde_json::json!(["127.0.0.1:9"])
    );

    // %file and %network without socket: strace cannot subtract from a class, so the plugin
    // listed the calls by name.
    let subtracted = monitoring(&results, "d", "subtracted");
    let expression = subtracted["trace_expression"].as_str().unwrap();
    assert!(
        expression.starts_with('?') && expression.contains("?openat,"),
        "{expression}"
    );
    assert_eq!(
        calls(&subtracted, "socket"),
        0,
        "{:#}",
        subtracted["syscalls"]
    );
    assert_eq!(calls(&subtracted, "connect"), 1);
    assert_eq!(calls(&subtracted, "execve"), 1);
    assert!(calls(&subtracted, "openat") > 0);
    assert_eq!(
        calls(&subtracted, "mmap"),
        0,
        "mmap is in %desc and %memory only"
    );

    // -k prints a stack under every call; -s 4 cuts strings to 4 bytes.
    let stacks = monitoring(&results, "e", "stacks");
    assert!(
        stacks["lines"]["stack"].as_u64().unwrap() > stacks["lines"]["syscall"].as_u64().unwrap(),
        "{:#}",
        stacks["lines"]
    );
    assert_eq!(stacks["lines"]["unparsed"], 0);
    let raw = std::fs::read_to_string(stacks["raw"].as_str().unwrap()).unwrap();
    assert!(
        raw.contains("write(1, \"slep\"..., 6) = 6"),
        "strings cut at 4 bytes"
    );
    assert_eq!(
        counted(&stacks),
        counted(&defaults),
        "-k and -s change no count"
    );
}

#[test]
fn a_threshold_violation_fails_the_service() {
    let sandbox = Sandbox::new();
    let probe = compile(&sandbox, "probe", &probe_source());
    let experiment = one_service(
        "strict",
        "probe",
        &probe,
        r#"
[[execution]]
plugin = "strace"
max_errors = 0
max_errors_by_errno = { ENOENT = 2, ECONNRESET = 0 }
"#,
    );
    let output = run(&sandbox, "e.toml", &experiment);
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let results = sandbox.results("strict");
    let result = result_of(&results);
    assert_eq!(result["status"], "failed");
    let service = &result["services"][0];
    assert_eq!(service["passed"], false);
    assert_eq!(
        service["state"],
        serde_json::json!({ "state": "exited", "code": 0 })
    );
    let message = service["message"].as_str().unwrap();
    assert!(
        message.contains("strace: ") && message.contains("more than max_errors = 0"),
        "{message}"
    );
    assert!(
        message.contains("failed with ENOENT, more than the 2 allowed")
            && message.contains("open 3"),
        "{message}"
    );
    assert!(!message.contains("ECONNRESET"), "{message}");
    let violations = monitoring(&results, "probe", "strace")["violations"].clone();
    assert_eq!(violations.as_array().unwrap().len(), 2, "{violations:#}");
}

#[test]
fn missing_strace_is_reported_with_its_package() {
    let sandbox = Sandbox::new();
    let file = sandbox.write(
        "e.toml",
        &one_service(
            "no_strace",
            "probe",
            "/bin/true",
            "[[execution]]\nplugin = \"strace\"\n",
        ),
    );
    // The service is an absolute path, so only strace is missing from this PATH.
    let output = sandbox
        .host_command(&["run", file.to_str().unwrap()])
        .env("PATH", "/nonexistent")
        .output()
        .expect("panther-host runs");
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains("`strace`") && err.contains("Debian package: strace"),
        "{err}"
    );
}

#[test]
fn the_readme_example_runs() {
    let readme = std::fs::read_to_string(root().join("plugins/strace/README.md")).unwrap();
    let example = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .find(|block| block.contains("[[execution]]"))
        .expect("a toml block with [[execution]] in the README");
    let sandbox = Sandbox::new();
    let experiment = echo_experiment("readme", example);
    let output = run(&sandbox, "e.toml", &experiment);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let results = sandbox.results("readme");
    for service in ["server", "client"] {
        let summary = monitoring(&results, service, "strace");
        assert!(summary["totals"]["calls"].as_u64().unwrap() > 0);
        assert!(results
            .join(format!("monitoring/{service}/strace/strace.txt"))
            .is_file());
    }
}

#[test]
fn a_misspelt_exclusion_is_refused_before_the_run() {
    let sandbox = Sandbox::new();
    let file = sandbox.write(
        "e.toml",
        &one_service(
            "typo",
            "probe",
            "/bin/true",
            "[[execution]]\nplugin = \"strace\"\nexclude = [\"nanoslep\"]\n",
        ),
    );
    let output = sandbox.host(&["run", file.to_str().unwrap()]);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains("`nanoslep` is not a system call strace knows (did you mean `nanosleep`?)"),
        "{err}"
    );
    assert!(!sandbox.path().join("results").exists(), "nothing ran");
}
