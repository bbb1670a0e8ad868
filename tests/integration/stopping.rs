//! Stopping services under wrappers that report when the service exits.
//!
//! GNU `time` and `strace` start the service as their child and write their reports when it
//! exits; both declare it (`ServiceCommand::runs_as_parent`). The host then stops a server
//! by signalling the server's own processes, and the wrappers write their reports: nothing
//! is lost when the host, not the service, ends the run. The example plugin
//! `examples/time-plugin` is the third-party author's side of it.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{code, echo_experiment, stderr, time_plugin_dir, Sandbox};

/// Runs `experiment` with the example plugin's folder; the results folder.
fn run(sandbox: &Sandbox, name: &str, experiment: &str) -> PathBuf {
    let file = sandbox.write("e.toml", experiment);
    let plugins = time_plugin_dir().display().to_string();
    let output = sandbox.host(&["run", file.to_str().unwrap(), "--plugin-dir", &plugins]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    sandbox.results(name)
}

fn time_report(run: &Path, service: &str) -> Value {
    let path = run.join(format!("monitoring/{service}/time.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (GNU time wrote no report)", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// GNU time's report of the server the host stopped: it saw SIGTERM end the server, and
/// measured it.
fn assert_stopped_and_measured(report: &Value) {
    assert_eq!(report["signal"], 15, "{report:#}");
    assert!(
        report["max_rss_kib"].as_u64().unwrap() > 0,
        "a peak of 0 KiB is no measurement: {report:#}"
    );
    assert!(
        report["minor_page_faults"].as_f64().unwrap() > 0.0,
        "{report:#}"
    );
}

#[test]
fn gnu_time_reports_on_a_server_the_host_stopped() {
    let sandbox = Sandbox::new();
    let experiment = echo_experiment("timed-server", "\n[[execution]]\nplugin = \"time\"\n");
    let run = run(&sandbox, "timed-server", &experiment);
    assert_stopped_and_measured(&time_report(&run, "server"));
    // The client ended by itself.
    let client = time_report(&run, "client");
    assert_eq!(client["signal"], Value::Null, "{client:#}");
    assert_eq!(client["exit_status"], 0.0, "{client:#}");
}

#[test]
fn gnu_time_stacked_under_strace_reports_and_strace_traces_it_to_the_end() {
    let sandbox = Sandbox::new();
    let extra = "\n[[execution]]\nplugin = \"time\"\n\n[[execution]]\nplugin = \"strace\"\n";
    let run = run(
        &sandbox,
        "timed-traced",
        &echo_experiment("timed-traced", extra),
    );
    assert_stopped_and_measured(&time_report(&run, "server"));
    // strace is the outermost tool: it traced GNU time writing its report, and time's exit
    // after the server's (128 + SIGTERM).
    let trace = std::fs::read_to_string(run.join("monitoring/server/strace/strace.txt")).unwrap();
    assert!(
        trace.contains("--- SIGTERM {si_signo=SIGTERM, si_code=SI_USER"),
        "the server's SIGTERM is not in the trace:\n{trace}"
    );
    assert!(
        trace.contains("write(3, \"Command terminated by signal 15\\n"),
        "GNU time's report is not in the trace:\n{trace}"
    );
    assert!(
        trace.trim_end().ends_with("+++ exited with 143 +++"),
        "{}",
        trace.lines().last().unwrap_or_default()
    );
}

/// A server that leaves a child in the background: the child is the service's too, gets the
/// signal with it, and GNU time (which waits for its own child only) still reports.
#[test]
fn a_server_with_a_background_child_is_stopped_whole_under_gnu_time() {
    let sandbox = Sandbox::new();
    let marker = sandbox.path().join("child-stopped");
    let script = sandbox.write(
        "forker.sh",
        r#"#!/bin/sh
# A child in the background that notes the SIGTERM it gets, then the server itself.
python3 -c '
import signal, sys, time
def stopped(*_):
    open(sys.argv[1], "w").close()
    sys.exit(0)
signal.signal(signal.SIGTERM, stopped)
print("armed", flush=True)
time.sleep(300)
' "$1" &
exec sleep 300
"#,
    );
    let extra = format!(
        "\n[[service]]\nname = \"forker\"\ncommand = [\"/bin/sh\", \"{}\", \"{}\"]\nready = {{ log = \"armed\" }}\n\n[[execution]]\nplugin = \"time\"\n",
        script.display(),
        marker.display()
    );
    let experiment = echo_experiment("timed-forker", &extra);
    let run = run(&sandbox, "timed-forker", &experiment);
    assert_stopped_and_measured(&time_report(&run, "forker"));
    assert!(
        marker.exists(),
        "the background child never got its SIGTERM"
    );
}
