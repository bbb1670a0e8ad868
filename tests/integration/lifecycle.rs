//! Teardown always happens: after Ctrl-C, a timeout, or a service that dies, no process the
//! run started is left, and the reports are still written.

use std::time::{Duration, Instant};

use crate::support::*;

/// Servers that leave children in their process group, and a client that never ends.
fn stubborn_experiment(name: &str, extra: &str) -> String {
    format!(
        r#"[experiment]
name = "{name}"
timeout = "60s"

[[service]]
name = "server"
command = ["{server}", "--port", "{port}"]
ready = {{ tcp = {port} }}

[[service]]
name = "forker"
command = ["/bin/sh", "-c", "sleep 300 & sleep 301 & echo forked; wait"]
ready = {{ log = "forked" }}

[[service]]
name = "client"
command = ["sleep", "302"]
role = "client"
depends_on = ["server", "forker"]

[[report]]
plugin = "json"

[[report]]
plugin = "junit"
{extra}
"#,
        server = program("echo-server"),
        port = free_port(),
    )
}

fn assert_all_gone(pids: &[u32]) {
    for &pid in pids {
        assert!(!alive(pid), "service process {pid} is still there");
        assert!(
            group_members(pid).is_empty(),
            "processes of group {pid} are still there: {:?}",
            group_members(pid)
        );
    }
}

#[test]
fn ctrl_c_tears_everything_down_and_still_writes_the_reports() {
    let sandbox = Sandbox::new();
    let file = sandbox.write("e.toml", &stubborn_experiment("interrupted", ""));
    let mut host = sandbox
        .host_command(&["run", file.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let run = wait_for_deployments(
        &sandbox.path().join("results/interrupted"),
        3,
        Duration::from_secs(20),
    );
    let pids = deployed_pids(&run);
    let forker_children = group_members(pids[1]);
    assert!(
        forker_children.len() >= 3,
        "the forker and its two sleeps: {forker_children:?}"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(host.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = host.wait().unwrap();
    assert_eq!(status.code(), Some(130), "the interrupted exit code");
    assert_all_gone(&pids);
    assert_all_gone(&forker_children);

    let result = result_of(&run);
    assert_eq!(result["status"], "interrupted");
    let junit = std::fs::read_to_string(run.join("junit.xml")).unwrap();
    assert!(
        junit.contains("<error message=\"interrupted\" type=\"interrupted\""),
        "{junit}"
    );
}

#[test]
fn a_timeout_tears_everything_down_and_names_the_stacked_environments() {
    let sandbox = Sandbox::new();
    let tag = "\n[[execution]]\nplugin = \"tag\"\nlabel = \"slow\"\nslowdown = 2.0\n";
    let file = sandbox.write("e.toml", &stubborn_experiment("late", tag));
    let started = Instant::now();
    let output = sandbox.host(&["run", file.to_str().unwrap(), "--timeout", "1s"]);
    assert_eq!(
        code(&output),
        1,
        "a timeout is a test failure: {}",
        stderr(&output)
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the 1s timeout was scaled by the slowdown of 2"
    );
    let run = sandbox.results("late");
    let pids: Vec<u32> = events(&run)
        .iter()
        .filter(|e| e["event"] == "service_deployed")
        .filter_map(|e| e["pid"].as_u64().map(|p| p as u32))
        .collect();
    assert_eq!(pids.len(), 3);
    assert_all_gone(&pids);
    let result = result_of(&run);
    assert_eq!(result["status"], "timed_out");
    let reason = result["errors"][0].as_str().unwrap();
    assert!(
        reason.starts_with("the experiment timeout of 2s passed while client still ran"),
        "{reason}"
    );
    assert!(
        reason.contains("runs under tag") && reason.contains("×2.0"),
        "{reason}"
    );
}

#[test]
fn a_server_that_dies_before_it_is_ready_fails_the_run_and_starts_nothing_after_it() {
    let sandbox = Sandbox::new();
    let text = format!(
        r#"[experiment]
name = "crash"

[[service]]
name = "server"
command = ["/bin/sh", "-c", "echo 'bad config' >&2; exit 3"]
ready = {{ tcp = {port}, timeout = "10s" }}

[[service]]
name = "client"
command = ["{client}", "127.0.0.1:{port}"]
role = "client"
depends_on = ["server"]

[[report]]
plugin = "json"
"#,
        port = free_port(),
        client = program("echo-client")
    );
    let file = sandbox.write("e.toml", &text);
    let started = Instant::now();
    let output = sandbox.host(&["run", file.to_str().unwrap()]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "noticed the exit without waiting for the timeout"
    );
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains("service `server` exited with code 3 before it was ready"),
        "{err}"
    );
    let result = result_of(&sandbox.results("crash"));
    assert_eq!(result["status"], "failed");
    assert_eq!(result["services"][1]["message"], "never started");
    assert_eq!(
        result["services"][0]["passed"], false,
        "a server that died is not 'stopped by the host'"
    );
    assert_eq!(
        result["services"][0]["state"],
        serde_json::json!({ "state": "exited", "code": 3 })
    );
    let deployed = events(&sandbox.results("crash"))
        .iter()
        .filter(|e| e["event"] == "service_deployed")
        .count();
    assert_eq!(deployed, 1, "the client was never started");
}
