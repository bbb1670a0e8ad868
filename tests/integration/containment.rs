//! Runs contain what they start: services that daemonize (`setsid` children holding the
//! output pipe, double forks to /dev/null, servers that ignore SIGTERM), hosts killed with
//! SIGKILL or closed with SIGHUP, and many runs of one experiment at once.
//!
//! Every check of "nothing left" reads `/proc/<pid>/environ` for the run mark
//! (`PANTHER_RUN_ID`, `PANTHER_RUN_OWNER`) independently of the host's own code.

use std::{
    path::{Path, PathBuf},
    process::{Child, Output, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use serde_json::Value;

use crate::support::*;

/// A process carrying a run mark.
#[derive(Debug)]
struct Marked {
    pid: u32,
    run_id: String,
    owner_pid: u32,
}

/// Every live process (zombies excluded) that carries a run mark.
fn marked() -> Vec<Marked> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| alive(pid))
        .filter_map(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            let mut run_id = None;
            let mut owner_pid = None;
            for var in environ.split(|&b| b == 0) {
                let var = String::from_utf8_lossy(var);
                if let Some(v) = var.strip_prefix("PANTHER_RUN_ID=") {
                    run_id = Some(v.to_string());
                }
                if let Some(v) = var.strip_prefix("PANTHER_RUN_OWNER=") {
                    owner_pid = v.split(':').next()?.parse().ok();
                }
            }
            Some(Marked {
                pid,
                run_id: run_id?,
                owner_pid: owner_pid?,
            })
        })
        .collect()
}

fn marked_with(run_id: &str) -> Vec<u32> {
    marked()
        .into_iter()
        .filter(|m| m.run_id == run_id)
        .map(|m| m.pid)
        .collect()
}

fn marked_by_host(host: u32) -> Vec<u32> {
    marked()
        .into_iter()
        .filter(|m| m.owner_pid == host)
        .map(|m| m.pid)
        .collect()
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Waits for a process, failing the test (and killing it) when it hangs for `limit`.
fn wait_or_fail(mut child: Child, limit: Duration, what: &str) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!("{what} hung: {}", String::from_utf8_lossy(&output.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Polls until `check` holds, failing after 30 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every line of a run's event log parses, and the log starts and finishes one run; returns
/// the run id it names.
fn valid_event_log(run: &Path) -> String {
    let text = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect();
    let started: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "experiment_started")
        .collect();
    assert_eq!(started.len(), 1, "one run per log in {}", run.display());
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "experiment_finished")
            .count(),
        1
    );
    started[0]["run_id"].as_str().unwrap().to_string()
}

/// Services that daemonize, each writing its escaped child's pid to a file in the sandbox:
/// `holder` leaves a `setsid` child that keeps the stdout pipe open, `forker` double-forks a
/// `setsid` child to /dev/null and ignores SIGTERM itself. The client exits with `client_exit`.
fn daemonizing_experiment(name: &str, dir: &Path, client_exit: i32) -> String {
    format!(
        r#"[experiment]
name = "{name}"
timeout = "60s"

[network]
plugin = "localhost"
stop_grace = "1s"

[[service]]
name = "holder"
command = ["/bin/sh", "-c", "setsid sleep 301 & echo $! > {dir}/holder.pid; echo started; exec sleep 302"]
ready = {{ log = "started" }}

[[service]]
name = "forker"
command = ["/bin/sh", "-c", "(setsid sleep 303 </dev/null >/dev/null 2>&1 & echo $! > {dir}/forker.pid); trap '' TERM; echo up; while true; do sleep 0.1; done"]
ready = {{ log = "up" }}

[[service]]
name = "client"
role = "client"
command = ["/bin/sh", "-c", "sleep 0.3; exit {client_exit}"]
depends_on = ["holder", "forker"]

[[report]]
plugin = "json"
"#,
        dir = dir.display()
    )
}

fn pid_file(path: PathBuf) -> u32 {
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn daemonizing_services_pass_on_their_own_merits_and_leave_nothing() {
    for (client_exit, expected_code, status) in [(0, 0, "passed"), (3, 1, "failed")] {
        let sandbox = Sandbox::new();
        let name = format!("daemons-{client_exit}");
        let file = sandbox.write(
            "e.toml",
            &daemonizing_experiment(&name, sandbox.path(), client_exit),
        );
        let host = sandbox
            .host_command(&["run", file.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A hang guard far beyond the grace period, not a speed check.
        let output = wait_or_fail(host, Duration::from_secs(60), "the run");
        assert_eq!(code(&output), expected_code, "{}", stderr(&output));

        let run = sandbox.results(&name);
        let result = json(&run.join("result.json"));
        assert_eq!(result["status"], status, "{result:#}");
        let run_id = result["run_id"].as_str().unwrap();
        let (holder_child, forker_child) = (
            pid_file(sandbox.path().join("holder.pid")),
            pid_file(sandbox.path().join("forker.pid")),
        );
        assert!(!alive(holder_child), "the setsid child holding stdout");
        assert!(!alive(forker_child), "the double-forked child");
        assert_eq!(marked_with(run_id), Vec::<u32>::new(), "marked leftovers");
        // The server that ignored SIGTERM was killed when its grace ran out.
        let forker = &result["services"][1];
        assert_eq!(forker["name"], "forker");
        assert_eq!(forker["state"]["signal"], 9, "{forker:#}");
        valid_event_log(&run);
    }
}

/// A run that lasts until it is stopped: a server with a daemonized child, a long client.
fn long_experiment(name: &str) -> String {
    format!(
        r#"[experiment]
name = "{name}"
timeout = "120s"

[[service]]
name = "server"
command = ["/bin/sh", "-c", "(setsid sleep 311 </dev/null >/dev/null 2>&1 &); echo started; exec sleep 312"]
ready = {{ log = "started" }}

[[service]]
name = "client"
role = "client"
command = ["sleep", "313"]
depends_on = ["server"]

[[report]]
plugin = "json"
"#
    )
}

/// Starts `long_experiment` and waits until its host has marked processes (both services and
/// the daemon: four with the shell's sleep).
fn start_long(sandbox: &Sandbox, name: &str, output: &str) -> Child {
    let file = sandbox.write(&format!("{name}.toml"), &long_experiment(name));
    let host = sandbox
        .host_command(&["run", file.to_str().unwrap(), "--output", output])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = host.id();
    eventually("the run's services are up", || {
        marked_by_host(pid).len() >= 3
    });
    host
}

#[test]
fn after_sigkill_of_the_host_clean_ends_that_run_and_nothing_of_a_live_one() {
    let sandbox = Sandbox::new();
    let mut killed = start_long(&sandbox, "killed", "r1");
    let live = start_long(&sandbox, "live", "r2");
    let killed_pid = killed.id();
    let orphans = marked_by_host(killed_pid);
    let live_processes = marked_by_host(live.id());
    let _clean = clean_lock();

    kill(Pid::from_raw(killed_pid as i32), Signal::SIGKILL).unwrap();
    killed.wait().unwrap();
    assert_eq!(
        marked_by_host(killed_pid),
        orphans,
        "a killed host leaves its services running (what clean is for)"
    );

    // (The fixture plugins hold a network environment that cannot be instantiated.)
    let output = sandbox.host(&["clean", "--network", "localhost"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let said = stdout(&output);
    for pid in &orphans {
        assert!(
            !alive(*pid),
            "process {pid} of the killed run survived clean"
        );
        assert!(
            said.contains(&format!("localhost: ended process {pid} ")),
            "clean says what it ended: {said}"
        );
    }
    for pid in &live_processes {
        assert!(alive(*pid), "clean touched process {pid} of the live run");
    }

    // The live run still tears down its own, and a second clean has nothing to do.
    kill(Pid::from_raw(live.id() as i32), Signal::SIGTERM).unwrap();
    let output = wait_or_fail(live, Duration::from_secs(60), "the live run");
    assert_eq!(code(&output), 130, "{}", stderr(&output));
    for pid in &live_processes {
        assert!(!alive(*pid), "process {pid} survived its run's teardown");
    }
    let again = sandbox.host(&["clean", "--network", "localhost"]);
    for pid in orphans.iter().chain(&live_processes) {
        assert!(
            !stdout(&again).contains(&format!("process {pid} ")),
            "{}",
            stdout(&again)
        );
    }
}

#[test]
fn sighup_tears_the_run_down_like_sigterm_and_spares_the_run_beside_it() {
    let sandbox = Sandbox::new();
    let hung_up = start_long(&sandbox, "hungup", "r1");
    let live = start_long(&sandbox, "beside", "r2");
    let hung_up_pid = hung_up.id();
    let live_processes = marked_by_host(live.id());

    kill(Pid::from_raw(hung_up_pid as i32), Signal::SIGHUP).unwrap();
    let output = wait_or_fail(hung_up, Duration::from_secs(60), "the hung-up run");
    assert_eq!(code(&output), 130, "{}", stderr(&output));
    assert_eq!(marked_by_host(hung_up_pid), Vec::<u32>::new());
    let result = json(
        &sandbox
            .path()
            .join("r1/hungup")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .join("result.json"),
    );
    assert_eq!(result["status"], "interrupted");

    // `clean` finds nothing of it, and leaves the live run alone.
    let _clean = clean_lock();
    let output = sandbox.host(&["clean", "--network", "localhost"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        !stdout(&output).contains("of run hungup-"),
        "{}",
        stdout(&output)
    );
    for pid in &live_processes {
        assert!(alive(*pid), "process {pid} of the run beside was touched");
    }
    kill(Pid::from_raw(live.id() as i32), Signal::SIGINT).unwrap();
    let output = wait_or_fail(live, Duration::from_secs(60), "the run beside");
    assert_eq!(code(&output), 130, "{}", stderr(&output));
}

#[test]
fn a_second_ctrl_c_ends_the_grace_period() {
    let sandbox = Sandbox::new();
    // A server that ignores SIGTERM, with a grace period far longer than the hang guard.
    let file = sandbox.write(
        "e.toml",
        r#"[experiment]
name = "stubborn"
timeout = "600s"

[network]
plugin = "localhost"
stop_grace = "600s"

[[service]]
name = "server"
command = ["/bin/sh", "-c", "trap '' TERM; echo up; while true; do sleep 0.1; done"]
ready = { log = "up" }

[[service]]
name = "client"
role = "client"
command = ["sleep", "600"]
depends_on = ["server"]
"#,
    );
    let host = sandbox
        .host_command(&["run", file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = host.id();
    eventually("both services run", || marked_by_host(pid).len() >= 2);
    let host_pid = Pid::from_raw(pid as i32);
    kill(host_pid, Signal::SIGINT).unwrap();
    // The first Ctrl-C starts the teardown: the server ignores SIGTERM and waits out its grace.
    eventually("the client is stopped", || marked_by_host(pid).len() <= 2);
    let left = marked_by_host(pid);
    assert!(
        !left.is_empty(),
        "the stubborn server is still in its grace period"
    );
    kill(host_pid, Signal::SIGINT).unwrap();
    let output = wait_or_fail(host, Duration::from_secs(120), "the twice-interrupted run");
    assert_eq!(code(&output), 130, "{}", stderr(&output));
    for pid in left {
        assert!(!alive(pid), "process {pid} survived");
    }
}

/// The echo experiment with `{port:echo}`: each run its own server.
fn echo_with_placeholder(name: &str) -> String {
    format!(
        r#"[experiment]
name = "{name}"
timeout = "60s"

[[service]]
name = "server"
command = ["{server}", "--port", "{{port:echo}}"]
ready = {{ tcp = "{{port:echo}}", timeout = "30s" }}

[[service]]
name = "client"
command = ["{client}", "127.0.0.1:{{port:echo}}", "hello"]
depends_on = ["server"]
role = "client"

[[report]]
plugin = "json"
"#,
        server = program("echo-server"),
        client = program("echo-client"),
    )
}

/// Eight results folders of one experiment, each with a valid log, a passed result and its
/// own run id and port; the client of each talked to the server of its own run.
fn assert_eight_separate_runs(results: &Path) {
    let runs: Vec<PathBuf> = std::fs::read_dir(results)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 8, "{runs:?}");
    let mut ids = Vec::new();
    let mut ports = Vec::new();
    for run in &runs {
        let run_id = valid_event_log(run);
        let result = json(&run.join("result.json"));
        assert_eq!(result["status"], "passed", "{result:#}");
        assert_eq!(result["run_id"], run_id.as_str());
        let port = json(&run.join("ports.json"))["echo"].as_u64().unwrap();
        let server = std::fs::read_to_string(run.join("services/server.stdout")).unwrap();
        assert!(
            server.starts_with(&format!("listening on 127.0.0.1:{port}")),
            "{server}"
        );
        assert!(marked_with(&run_id).is_empty(), "leftovers of {run_id}");
        ids.push(run_id);
        ports.push(port);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8, "run ids are unique");
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 8, "each run its own port");
}

#[test]
fn eight_runs_of_one_experiment_in_one_process() {
    let sandbox = Sandbox::new();
    let file = sandbox.write("same.toml", &echo_with_placeholder("same"));
    let file = file.to_str().unwrap();
    let mut args = vec!["run"];
    args.extend([file; 8]);
    args.extend(["--jobs", "8", "--output", "results"]);
    let output = sandbox.host(&args);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eight_separate_runs(&sandbox.path().join("results/same"));
}

#[test]
fn eight_runs_of_one_experiment_in_eight_processes() {
    let sandbox = Sandbox::new();
    let file = sandbox.write("same.toml", &echo_with_placeholder("same"));
    let hosts: Vec<Child> = (0..8)
        .map(|_| {
            sandbox
                .host_command(&["run", file.to_str().unwrap(), "--output", "results"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for host in hosts {
        let output = wait_or_fail(host, Duration::from_secs(120), "a parallel run");
        assert_eq!(code(&output), 0, "{}", stderr(&output));
    }
    assert_eight_separate_runs(&sandbox.path().join("results/same"));
}

#[test]
fn the_quickstart_twice_side_by_side_passes() {
    let sandbox = Sandbox::new();
    let quickstart = root().join("examples/quickstart.toml");
    let q = quickstart.to_str().unwrap();
    let output = sandbox.host(&["run", q, q, "--jobs", "2", "--output", "results"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let runs: Vec<PathBuf> = std::fs::read_dir(sandbox.path().join("results/quickstart"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 2);
    let ports: Vec<u64> = runs
        .iter()
        .map(|r| json(&r.join("ports.json"))["echo"].as_u64().unwrap())
        .collect();
    assert_ne!(ports[0], ports[1], "each run its own server port");
    for run in &runs {
        let client = std::fs::read_to_string(run.join("services/client.stdout")).unwrap();
        assert_eq!(client.matches("echoed \"panther\"").count(), 3, "{client}");
    }
}

#[test]
fn port_placeholders_are_shown_by_dry_run_and_checked() {
    let sandbox = Sandbox::new();
    let file = sandbox.write("e.toml", &echo_with_placeholder("plan"));
    let output = sandbox.host(&[
        "run",
        "--dry-run",
        "--format",
        "json",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let plan: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let services = &plan[0]["services"];
    let port = services[0]["ports"]["echo"].as_u64().unwrap();
    assert_eq!(
        services[1]["ports"]["echo"].as_u64(),
        Some(port),
        "one port per name"
    );
    assert_eq!(services[0]["spec"]["argv"][2], port.to_string());
    assert_eq!(services[0]["spec"]["ready"]["check"]["port"], port);
    assert_eq!(services[1]["spec"]["argv"][1], format!("127.0.0.1:{port}"));

    for (bad, says) in [
        ("{port:echo", "without a closing"),
        ("{port:a b}", "a port name is"),
    ] {
        let text = echo_with_placeholder("bad")
            .replace("\"{port:echo}\", timeout", &format!("\"{bad}\", timeout"));
        let file = sandbox.write("bad.toml", &text);
        let output = sandbox.host(&["check", file.to_str().unwrap()]);
        assert_eq!(code(&output), 2, "{}", stderr(&output));
        assert!(stderr(&output).contains(says), "{}", stderr(&output));
        assert!(
            stderr(&output).contains("bad.toml:"),
            "with its location: {}",
            stderr(&output)
        );
    }
}

#[test]
fn readiness_does_not_pass_against_a_server_another_run_left_behind() {
    let sandbox = Sandbox::new();
    let port = free_port();
    // A server of another run, still listening on the port. (No owner in its mark: `clean`
    // in a test beside this one leaves it alone.)
    let mut leftover = std::process::Command::new(program("echo-server"))
        .args(["--port", &port.to_string()])
        .env("PANTHER_RUN_ID", "leftover-run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually("the leftover listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    // The new server only tries to bind after a while: meanwhile a bare connection test
    // would reach the leftover.
    let file = sandbox.write(
        "e.toml",
        &format!(
            r#"[experiment]
name = "leftover"
timeout = "60s"

[[service]]
name = "server"
command = ["/bin/sh", "-c", "sleep 1; exec {server} --port {port}"]
ready = {{ tcp = {port}, timeout = "30s" }}

[[service]]
name = "client"
command = ["{client}", "127.0.0.1:{port}", "hello"]
depends_on = ["server"]
role = "client"

[[report]]
plugin = "json"
"#,
            server = program("echo-server"),
            client = program("echo-client"),
        ),
    );
    let output = sandbox.host(&["run", file.to_str().unwrap()]);
    leftover.kill().unwrap();
    leftover.wait().unwrap();
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let result = json(&sandbox.results("leftover").join("result.json"));
    assert_eq!(result["status"], "failed", "{result:#}");
    let errors = result["errors"].to_string();
    assert!(
        errors.contains("before it was ready"),
        "{result:#}\n{}",
        stderr(&output)
    );
    assert_eq!(
        result["services"][1]["state"]["state"], "pending",
        "the client never ran"
    );
}

#[test]
fn a_process_that_clears_its_environment_and_leaves_its_group_is_ended_by_the_run_cgroup() {
    // Neither the mark (gone with `env -i`) nor the process group (`setsid`) reach it: only
    // the run's cgroup does, which needs a cgroup hierarchy this host may write to.
    assert!(
        [
            "/sys/fs/cgroup/cgroup.procs",
            "/sys/fs/cgroup/pids/cgroup.procs"
        ]
        .iter()
        .any(|p| Path::new(p).exists()),
        "THIS TEST NEEDS A CGROUP HIERARCHY (v2 at /sys/fs/cgroup or v1 `pids`)"
    );
    let sandbox = Sandbox::new();
    let dir = sandbox.path();
    let file = sandbox.write(
        "e.toml",
        &server_and_client(
            "unmarked",
            &format!(
                "env -i setsid sleep 321 </dev/null >/dev/null 2>&1 & echo $! > {}/escaped.pid; echo started; exec sleep 322",
                dir.display()
            ),
            &client_waiting_for_go(dir),
        ),
    );
    let host = start_run(&sandbox, &file);
    let escaped_file = sandbox.path().join("escaped.pid");
    eventually("the escaped process is started", || {
        std::fs::read_to_string(&escaped_file).is_ok_and(|t| t.ends_with('\n'))
    });
    let escaped = pid_file(escaped_file);
    let cgroup = std::fs::read_to_string(format!("/proc/{escaped}/cgroup")).unwrap_or_default();
    // The client ends the run once the test has looked.
    std::fs::write(sandbox.path().join("go"), "").unwrap();
    let output = wait_or_fail(host, Duration::from_secs(60), "the run");
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        cgroup.contains("/panther/"),
        "the escaped process was in the run's cgroup: {cgroup}"
    );
    assert!(
        !alive(escaped),
        "the unmarked, setsid process outlived its run"
    );
}

#[test]
fn panther_run_cgroup_0_runs_services_outside_any_run_cgroup_and_still_passes() {
    // The switch that trades the cgroup (and its per-process attach cost) for speed: the
    // service's own view of its cgroups tells which applies.
    assert!(
        Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists()
            || Path::new("/sys/fs/cgroup/cgroup.procs").exists(),
        "THIS TEST NEEDS A CGROUP HIERARCHY (v2 at /sys/fs/cgroup or v1 `pids`)"
    );
    let sandbox = Sandbox::new();
    let file = sandbox.write(
        "e.toml",
        "[experiment]\nname = \"where\"\n\n[[service]]\nname = \"show\"\ncommand = [\"cat\", \"/proc/self/cgroup\"]\nrole = \"client\"\n",
    );
    let groups_of = |switch: Option<&str>| {
        let mut command = sandbox.host_command(&["run", "-q", file.to_str().unwrap()]);
        if let Some(value) = switch {
            command.env("PANTHER_RUN_CGROUP", value);
        }
        let output = command.output().unwrap();
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        // The newest run: results folders sort by time.
        std::fs::read_to_string(sandbox.results("where").join("services/show.stdout")).unwrap()
    };
    let contained = groups_of(None);
    assert!(contained.contains("/panther/"), "{contained}");
    let free = groups_of(Some("0"));
    assert!(!free.contains("/panther/"), "{free}");
}

/// An experiment of one server running the shell command `server` (ready once it prints
/// `started`) and one client running `client`; the tests below look at the run while it
/// lasts.
fn server_and_client(name: &str, server: &str, client: &str) -> String {
    let quote = |command: &str| serde_json::to_string(command).expect("a string");
    format!(
        r#"[experiment]
name = "{name}"
timeout = "60s"

[[service]]
name = "server"
command = ["/bin/sh", "-c", {server}]
ready = {{ log = "started" }}

[[service]]
name = "client"
role = "client"
command = ["/bin/sh", "-c", {client}]
depends_on = ["server"]
"#,
        server = quote(server),
        client = quote(client)
    )
}

/// A client that waits until the test creates `<dir>/go`.
fn client_waiting_for_go(dir: &Path) -> String {
    format!("while [ ! -e {}/go ]; do sleep 0.05; done", dir.display())
}

/// `panther-host run FILE` in the background, its output captured.
fn start_run(sandbox: &Sandbox, file: &Path) -> Child {
    sandbox
        .host_command(&["run", file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The state letter and parent of a process, when it exists (zombies included).
fn state_and_parent(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut after = stat.rsplit_once(')')?.1.split_whitespace();
    let state = after.next()?.chars().next()?;
    Some((state, after.next()?.parse().ok()?))
}

#[test]
fn an_orphan_that_ends_during_the_run_is_reaped_by_the_host() {
    let sandbox = Sandbox::new();
    let dir = sandbox.path();
    // A double-forked helper that lives 2 s: orphaned, it becomes the host's child (the host
    // is a subreaper) and must not stay a zombie while the run goes on.
    let file = sandbox.write(
        "e.toml",
        &server_and_client(
            "orphan",
            &format!(
                "(sleep 2 </dev/null >/dev/null 2>&1 & echo $! > {}/orphan.pid); echo started; exec sleep 331",
                dir.display()
            ),
            &client_waiting_for_go(dir),
        ),
    );
    let host = start_run(&sandbox, &file);
    let host_pid = host.id();
    let orphan_file = sandbox.path().join("orphan.pid");
    eventually("the orphan is started", || {
        std::fs::read_to_string(&orphan_file).is_ok_and(|t| t.ends_with('\n'))
    });
    let orphan = pid_file(orphan_file);
    eventually("the orphan is adopted by the host", || {
        state_and_parent(orphan).is_none_or(|(_, parent)| parent == host_pid)
    });
    // It ends after 2 s; then it must disappear, not linger as the host's zombie.
    eventually("the ended orphan is reaped", || {
        state_and_parent(orphan).is_none()
    });
    std::fs::write(sandbox.path().join("go"), "").unwrap();
    let output = wait_or_fail(host, Duration::from_secs(60), "the run");
    assert_eq!(code(&output), 0, "{}", stderr(&output));
}

#[test]
fn teardown_does_not_wait_for_a_pipe_held_by_a_process_out_of_reach() {
    let sandbox = Sandbox::new();
    // The shell leaves the run's cgroup (writing itself into the root group, as root may),
    // then starts a child without the mark, in a session of its own, holding the stdout pipe:
    // nothing the host has can find it.
    let file = sandbox.write(
        "e.toml",
        &server_and_client(
            "unreachable",
            &format!(
                "for g in /sys/fs/cgroup /sys/fs/cgroup/pids /sys/fs/cgroup/freezer /sys/fs/cgroup/unified; do echo $$ > $g/cgroup.procs 2>/dev/null; done; env -i setsid sleep 341 & echo $! > {}/unreachable.pid; echo started; exec sleep 342",
                sandbox.path().display()
            ),
            "true",
        ),
    );
    let host = start_run(&sandbox, &file);
    // A hang guard: without the bound, the run would wait for the sleep's 341 s.
    let output = wait_or_fail(host, Duration::from_secs(120), "the run");
    let unreachable = pid_file(sandbox.path().join("unreachable.pid"));
    let escaped = alive(unreachable);
    if escaped {
        let _ = kill(Pid::from_raw(unreachable as i32), Signal::SIGKILL);
    }
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        !escaped
            || stderr(&output)
                .contains("the output of `server` is still held open by a process outside the run"),
        "{}",
        stderr(&output)
    );
}

/// When the command processor says a spawned process has ended, everything it wrote is in its
/// capture files: a plugin reads them next (shadow_ns reads Shadow's log as soon as Shadow
/// exits). 4 MB leave the pipe well after the writer exits, unless the end waits for them.
#[test]
fn a_process_reported_ended_has_all_its_output_in_its_files() {
    use panther_host::{
        api::Command,
        command::{Capture, CommandProcessor},
        events::EventBus,
    };
    const BYTES: u64 = 4_000_000;
    let sandbox = Sandbox::new();
    let processor = CommandProcessor::new(
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        std::sync::Arc::new(EventBus::new()),
    );
    let capture = Capture {
        default_dir: sandbox.path(),
        scope: "test",
        source: "test",
    };
    for round in 0..5 {
        let mut command = Command::new("sh")
            .arg("-c")
            .arg(format!("head -c {BYTES} /dev/zero"));
        command.log_name = Some(format!("big{round}"));
        let handle = processor.spawn(&command, &capture).unwrap();
        while !processor.status(handle).unwrap().is_finished() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let written = std::fs::metadata(sandbox.path().join(format!("big{round}.stdout")))
            .unwrap()
            .len();
        assert_eq!(written, BYTES, "round {round}: the output was cut short");
    }
    processor.stop_all(Duration::from_secs(1));
}
