//! The `shadow_ns` network environment: emulated links measured from inside the experiment
//! (latency, loss, bandwidth), namespaces and processes gone after a run, Ctrl-C and a
//! killed host, the generated Shadow configuration, and configuration errors at `check`.
//!
//! Emulation needs root (network namespaces, `/dev/net/tun`) and `ip`; the Shadow
//! configuration is parsed with Python's `yaml` module. Shadow itself is needed only by the
//! one test marked ignored (Shadow is not packaged in Debian); the others use a stand-in.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Child, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::*;

/// The namespaces the `panther-host` process `pid` made (names start with its pid).
fn namespaces_of(pid: u32) -> Vec<String> {
    let prefix = format!("psns-{pid}.");
    let list = |dir: &str| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut names = list("/run/netns");
    // Host files that `ip netns exec` mounts inside them.
    names.extend(
        list("/etc/netns")
            .into_iter()
            .map(|n| format!("/etc/netns/{n}")),
    );
    names.sort();
    names
}

/// Runs the host to completion; also returns its pid.
fn run_host(sandbox: &Sandbox, args: &[&str]) -> (Output, u32) {
    let child = sandbox
        .host_command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("panther-host starts");
    let pid = child.id();
    (child.wait_with_output().expect("panther-host ends"), pid)
}

/// Nothing of the run is left: no namespace, no host file, no service process.
fn assert_clean(host_pid: u32, service_pids: &[u32]) {
    assert_eq!(namespaces_of(host_pid), Vec::<String>::new(), "left behind");
    for &pid in service_pids {
        assert!(!alive(pid), "service process {pid} is still there");
        assert!(group_members(pid).is_empty(), "group {pid} is still there");
    }
}

/// The JSON line a probe printed last.
fn probe_output(run: &Path, service: &str) -> Value {
    let text = std::fs::read_to_string(run.join(format!("services/{service}.stdout"))).unwrap();
    let line = text
        .lines()
        .last()
        .unwrap_or_else(|| panic!("{service} printed nothing"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{service}: {e}: {line}"))
}

fn engine_stats(run: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("shadow_ns/engine.json")).unwrap())
        .unwrap()
}

fn link<'a>(stats: &'a Value, from: &str, to: &str) -> &'a Value {
    stats["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["from"] == from && l["to"] == to)
        .unwrap_or_else(|| panic!("no link {from} -> {to} in {stats}"))
}

fn assert_passed(output: &Output) {
    assert_eq!(
        code(output),
        0,
        "stdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

/// 50 ms and 10 % loss in each direction between two hosts, measured by 600 UDP probes from
/// a client on one host to an echo server on the other.
///
/// RTT: every probe crosses the link twice, so no echo can come back in under 100 ms, and
/// the median is 100 ms plus the engine's and the scheduler's delays (well under 1 ms on an
/// idle machine; 6 ms of slack for a loaded one).
///
/// Loss: a probe comes back only when neither crossing drops it: p = 0.9² = 0.81, so the
/// round-trip loss is 0.19. Over n = 600 independent probes its standard deviation is
/// √(0.19 · 0.81 / 600) ≈ 0.016; the test accepts 0.19 ± 0.064 (4 σ: a false failure about
/// once in 16 000 runs), which still tells 0.19 apart from one-way loss (0.10) and from
/// twice the loss counted once (0.20 is inside: the engine's own counters are checked per
/// direction for that). Per direction: 600 packets at 0.1, σ ≈ 0.012, accepted 0.1 ± 0.05.
#[test]
fn emulated_latency_and_loss_are_what_the_experiment_measures() {
    let sandbox = Sandbox::new();
    let port = 4000;
    let file = sandbox.write(
        "e.toml",
        &format!(
            r#"[experiment]
name = "lossy"
timeout = "60s"

[network]
plugin = "shadow_ns"
mode = "emulate"

[network.hosts]
a = ["client"]
b = ["server"]

[[network.links]]
between = ["a", "b"]
latency = "50ms"
loss = 0.1

[[service]]
name = "server"
command = ["{probe}", "serve", "{port}"]
ready = {{ tcp = {port} }}

[[service]]
name = "client"
command = ["{probe}", "measure", "b:{port}", "600", "--interval", "5"]
role = "client"
depends_on = ["server"]
"#,
            probe = program("udp-probe"),
        ),
    );
    let (output, host_pid) = run_host(&sandbox, &["run", file.to_str().unwrap()]);
    assert_passed(&output);
    let run = sandbox.results("lossy");
    let probe = probe_output(&run, "client");
    eprintln!("measured: {probe}");
    let rtt = &probe["rtt_ms"];
    let (min, p50) = (rtt["min"].as_f64().unwrap(), rtt["p50"].as_f64().unwrap());
    assert!(
        min >= 100.0,
        "an echo came back in {min} ms, faster than 2 × 50 ms"
    );
    assert!(p50 < 106.0, "median RTT {p50} ms, expected about 100 ms");
    let loss = probe["loss"].as_f64().unwrap();
    assert_eq!(probe["sent"], 600);
    assert!(
        (0.19 - loss).abs() <= 0.064,
        "round-trip loss {loss}, expected 1 - 0.9² = 0.19 ± 0.064"
    );

    let stats = engine_stats(&run);
    for (from, to) in [("a", "b"), ("b", "a")] {
        let l = link(&stats, from, to);
        let (lost, packets) = (l["lost"].as_f64().unwrap(), l["packets"].as_f64().unwrap());
        assert!(packets >= 450.0, "{from} -> {to}: {l}");
        assert!(
            (lost / packets - 0.1).abs() <= 0.05,
            "{from} -> {to}: lost {lost} of {packets}"
        );
    }
    assert_clean(host_pid, &deployed_pids(&run));
}

/// Two links from host `a`, both 2 ms: `a – b` limited to 4 Mbit/s, `a – c` unlimited.
/// The same TCP transfer of 1 MB to each: through the limit it cannot beat 4 Mbit/s (less
/// TCP/IP headers: about 3.9 of payload), whatever the machine's load, and a working TCP
/// fills most of it (at least 60 %); the unlimited link is faster (typically 20 to 60 times;
/// at least twice even on a machine loaded enough to slow the transfer itself).
#[test]
fn a_bandwidth_limit_limits_throughput() {
    let sandbox = Sandbox::new();
    let (port, bytes) = (5000, 1_000_000);
    let file = sandbox.write(
        "e.toml",
        &format!(
            r#"[experiment]
name = "narrow"
timeout = "60s"

[network]
plugin = "shadow_ns"
mode = "emulate"
hosts = {{ a = ["to-b", "to-c"], b = ["sink-b"], c = ["sink-c"] }}
links = [
  {{ between = ["a", "b"], latency = "2ms", bandwidth = "4Mbit" }},
  {{ between = ["a", "c"], latency = "2ms" }},
]

[[service]]
name = "sink-b"
command = ["{probe}", "serve", "{port}"]
ready = {{ tcp = {port} }}

[[service]]
name = "sink-c"
command = ["{probe}", "serve", "{port}"]
ready = {{ tcp = {port} }}

[[service]]
name = "to-c"
command = ["{probe}", "throughput", "c:{port}", "{bytes}"]
role = "client"
depends_on = ["sink-c"]

[[service]]
name = "to-b"
command = ["{probe}", "throughput", "b:{port}", "{bytes}"]
role = "client"
depends_on = ["sink-b", "to-c"]
"#,
            probe = program("udp-probe"),
        ),
    );
    let (output, host_pid) = run_host(&sandbox, &["run", file.to_str().unwrap()]);
    assert_passed(&output);
    let run = sandbox.results("narrow");
    let limited = probe_output(&run, "to-b")["mbit_per_s"].as_f64().unwrap();
    let open = probe_output(&run, "to-c")["mbit_per_s"].as_f64().unwrap();
    eprintln!("throughput: limited {limited} Mbit/s, unlimited {open} Mbit/s");
    assert!(
        (2.4..=4.0).contains(&limited),
        "{limited} Mbit/s through a 4 Mbit/s link"
    );
    assert!(
        open >= 2.0 * limited,
        "unlimited {open} Mbit/s vs limited {limited} Mbit/s"
    );
    let stats = engine_stats(&run);
    assert!(link(&stats, "a", "b")["bytes"].as_u64().unwrap() >= bytes);
    assert_clean(host_pid, &deployed_pids(&run));
}

/// A run with a server on `b` and a client on `a` that would run for minutes.
fn long_experiment(name: &str) -> String {
    format!(
        r#"[experiment]
name = "{name}"
timeout = "120s"

[network]
plugin = "shadow_ns"
mode = "emulate"
hosts = {{ a = ["client"], b = ["server"] }}
links = [{{ between = ["a", "b"], latency = "1ms" }}]

[[service]]
name = "server"
command = ["{probe}", "serve", "4000"]
ready = {{ log = "listening" }}

[[service]]
name = "client"
command = ["sleep", "300"]
role = "client"
depends_on = ["server"]

[[report]]
plugin = "json"
"#,
        probe = program("udp-probe"),
    )
}

/// Starts the host on `file` and waits until both services are deployed; returns the host,
/// the run folder and the services' pids. The caller waits for the host.
#[allow(clippy::zombie_processes)]
fn start_long_run(sandbox: &Sandbox, file: &Path, name: &str) -> (Child, PathBuf, Vec<u32>) {
    let mut host = sandbox
        .host_command(&["run", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let root = sandbox.path().join("results").join(name);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if Instant::now() >= deadline {
            signal(&host, nix::sys::signal::Signal::SIGINT);
            let _ = host.wait();
            panic!("services were not deployed in time");
        }
        let run = std::fs::read_dir(&root)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.path());
        if let Some(run) = run.filter(|r| r.join("events.jsonl").exists()) {
            let pids = deployed_pids(&run);
            if pids.len() == 2 {
                return (host, run, pids);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The inode of a process's network namespace.
fn netns_inode(pid: u32) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .unwrap()
        .ino()
}

fn signal(child: &Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
}

#[test]
fn ctrl_c_removes_the_namespaces_and_every_process() {
    let sandbox = Sandbox::new();
    let file = sandbox.write("e.toml", &long_experiment("stopped"));
    let (mut host, run, pids) = start_long_run(&sandbox, &file, "stopped");
    let made = namespaces_of(host.id());
    assert_eq!(
        made.len(),
        4,
        "two namespaces and their host files: {made:?}"
    );
    // Each service runs inside its host's namespace, not in ours.
    let named: Vec<&String> = made.iter().filter(|n| !n.starts_with('/')).collect();
    assert!(
        named[0].ends_with("-a") && named[1].ends_with("-b"),
        "{made:?}"
    );
    let inodes: Vec<u64> = named
        .iter()
        .map(|n| std::fs::metadata(format!("/run/netns/{n}")).unwrap().ino())
        .collect();
    let (client, server) = (pids[1], pids[0]);
    // The client is deployed without a readiness check: give `ip netns exec` the moment it
    // needs to enter the namespace and exec `sleep`.
    let deadline = Instant::now() + Duration::from_secs(5);
    while netns_inode(client) != inodes[0] && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(netns_inode(client), inodes[0], "the client is on host a");
    assert_eq!(netns_inode(server), inodes[1], "the server is on host b");
    assert_ne!(netns_inode(server), netns_inode(std::process::id()));

    signal(&host, nix::sys::signal::Signal::SIGINT);
    let status = host.wait().unwrap();
    assert_eq!(status.code(), Some(130), "the interrupted exit code");
    assert_clean(host.id(), &pids);
    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("result.json")).unwrap()).unwrap();
    assert_eq!(result["status"], "interrupted", "{result}");
    assert_eq!(
        result["errors"],
        serde_json::json!([]),
        "teardown went well"
    );
}

/// A host killed with SIGKILL cannot tear down: its namespaces and the services in them
/// stay, until `panther-host clean` removes them. The runs of other, live hosts are not
/// touched.
#[test]
fn clean_removes_what_a_killed_run_left() {
    let sandbox = Sandbox::new();
    let file = sandbox.write("e.toml", &long_experiment("killed"));
    let (mut live, _, live_pids) = start_long_run(&sandbox, &file, "killed");
    let other = Sandbox::new();
    let other_file = other.write("e.toml", &long_experiment("killed"));
    let (mut doomed, _, pids) = start_long_run(&other, &other_file, "killed");

    signal(&doomed, nix::sys::signal::Signal::SIGKILL);
    doomed.wait().unwrap();
    assert_eq!(
        namespaces_of(doomed.id()).len(),
        4,
        "left behind by the killed host"
    );
    assert!(pids.iter().all(|&p| alive(p)), "its services still run");

    let (output, _) = run_host(&sandbox, &["clean", "--network", "shadow_ns"]);
    assert_passed(&output);
    let said = stdout(&output);
    assert!(
        said.contains(&format!(
            "shadow_ns: removed network namespace psns-{}.",
            doomed.id()
        )),
        "{said}"
    );
    assert!(said.contains("process(es) still in it"), "{said}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_clean(doomed.id(), &pids);

    // The live run kept its network.
    assert_eq!(namespaces_of(live.id()).len(), 4, "{said}");
    assert!(live_pids.iter().all(|&p| alive(p)));
    signal(&live, nix::sys::signal::Signal::SIGINT);
    assert_eq!(live.wait().unwrap().code(), Some(130));
    assert_clean(live.id(), &live_pids);
}

/// Reads YAML with Python's `yaml` module (Debian: python3-yaml) and returns it as JSON.
fn parse_yaml(path: &Path) -> Value {
    let script = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))";
    let output = ["python3", "/usr/bin/python3"]
        .iter()
        .filter_map(|python| {
            std::process::Command::new(python)
                .args(["-c", script])
                .arg(path)
                .output()
                .ok()
        })
        .find(|o| o.status.success())
        .unwrap_or_else(|| {
            panic!(
                "python3 with the yaml module could not read {}",
                path.display()
            )
        });
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A GML value: a number, a string, or a list of keyed values.
#[derive(Debug, Clone, PartialEq)]
enum Gml {
    Number(f64),
    Text(String),
    List(Vec<(String, Gml)>),
}

impl Gml {
    fn get(&self, key: &str) -> Option<&Gml> {
        match self {
            Gml::List(items) => items.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn all(&self, key: &str) -> Vec<&Gml> {
        match self {
            Gml::List(items) => items
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v)
                .collect(),
            _ => Vec::new(),
        }
    }

    fn text(&self, key: &str) -> String {
        match self.get(key) {
            Some(Gml::Text(t)) => t.clone(),
            other => panic!("`{key}` is not a string: {other:?}"),
        }
    }

    fn number(&self, key: &str) -> f64 {
        match self.get(key) {
            Some(Gml::Number(n)) => *n,
            other => panic!("`{key}` is not a number: {other:?}"),
        }
    }
}

/// Parses GML (`key value` pairs, values are numbers, "strings" or `[ ... ]` lists).
fn parse_gml(text: &str) -> Gml {
    fn list(tokens: &mut std::iter::Peekable<std::vec::IntoIter<String>>) -> Vec<(String, Gml)> {
        let mut items = Vec::new();
        while let Some(key) = tokens.next() {
            if key == "]" {
                break;
            }
            let value = tokens
                .next()
                .unwrap_or_else(|| panic!("`{key}` has no value"));
            let value = if value == "[" {
                Gml::List(list(tokens))
            } else if let Some(s) = value.strip_prefix('"') {
                Gml::Text(s.trim_end_matches('"').to_string())
            } else {
                Gml::Number(
                    value
                        .parse()
                        .unwrap_or_else(|_| panic!("bad GML value {value}")),
                )
            };
            items.push((key, value));
        }
        items
    }
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            let mut s = String::from(chars.next().unwrap());
            for c in chars.by_ref() {
                s.push(c);
                if c == '"' {
                    break;
                }
            }
            tokens.push(s);
        } else if c == '[' || c == ']' {
            tokens.push(chars.next().unwrap().to_string());
        } else {
            let mut s = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '[' || c == ']' {
                    break;
                }
                s.push(c);
                chars.next();
            }
            tokens.push(s);
        }
    }
    Gml::List(list(&mut tokens.into_iter().peekable()))
}

/// Three hosts in a line (`a – b – c`), the client on `a` probing the server on `c`. The
/// generated Shadow configuration holds every host and process and the full graph; the run
/// itself shows that traffic is routed over two hops (10 ms + 5 ms each way).
#[test]
fn the_shadow_configuration_holds_every_host_process_node_and_edge() {
    let sandbox = Sandbox::new();
    let probe = program("udp-probe");
    let file = sandbox.write(
        "e.toml",
        &format!(
            r#"[experiment]
name = "shadowed"
timeout = "60s"

[network]
plugin = "shadow_ns"
mode = "emulate"
stop_time = "45s"
seed = 3

[network.hosts]
a = ["client"]
b = ["relay"]
c = ["server"]

[[network.links]]
between = ["a", "b"]
latency = "10ms"
jitter = "1ms"
loss = 0.01
bandwidth = "100Mbit"

[[network.links]]
between = ["b", "c"]
latency = "5ms"

[[service]]
name = "server"
command = ["{probe}", "serve", "4000"]
ready = {{ tcp = 4000 }}

[[service]]
name = "relay"
command = ["{probe}", "serve", "4001"]
env = {{ ROLE = "relay \"quoted\"" }}
ready = {{ tcp = 4001 }}

[[service]]
name = "client"
command = ["{probe}", "measure", "c:4000", "50", "--interval", "2"]
role = "client"
depends_on = ["server", "relay"]
"#
        ),
    );
    let (output, host_pid) = run_host(&sandbox, &["run", file.to_str().unwrap()]);
    assert_passed(&output);
    let run = sandbox.results("shadowed");
    let min_rtt = probe_output(&run, "client")["rtt_ms"]["min"]
        .as_f64()
        .unwrap();
    assert!(
        min_rtt >= 28.0,
        "a – c is at least 2 × (10 ms - 1 ms of jitter + 5 ms): {min_rtt} ms"
    );
    assert_clean(host_pid, &deployed_pids(&run));

    let yaml = run.join("shadow_ns/shadow.yaml");
    // Shadow limits bandwidth per host: b's 100 Mbit also applies to its link to c.
    let header = std::fs::read_to_string(&yaml).unwrap();
    assert!(
        header.contains("# Note: link b - c (unlimited) is simulated at 100 Mbit"),
        "{header}"
    );
    let config = parse_yaml(&yaml);
    assert_eq!(config["general"]["stop_time"], "45 s");
    assert_eq!(config["general"]["seed"], 3);
    assert_eq!(config["network"]["graph"]["type"], "gml");
    let hosts = config["hosts"].as_object().unwrap();
    assert_eq!(hosts.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
    // Host, network node, address, service, args, start time, expected final state.
    let expected = [
        (
            "a",
            0,
            "10.213.0.1",
            "client",
            &["measure", "c:4000", "50", "--interval", "2"][..],
            "2 s",
            "{\"exited\":0}",
        ),
        (
            "b",
            1,
            "10.213.0.2",
            "relay",
            &["serve", "4001"][..],
            "1 s",
            "\"running\"",
        ),
        (
            "c",
            2,
            "10.213.0.3",
            "server",
            &["serve", "4000"][..],
            "1 s",
            "\"running\"",
        ),
    ];
    for (name, node, addr, service, args, start, end) in expected {
        let host = &hosts[name];
        assert_eq!(host["network_node_id"], node, "{name}");
        assert_eq!(host["ip_addr"], addr, "{name}");
        let processes = host["processes"].as_array().unwrap();
        assert_eq!(processes.len(), 1, "{name}: {processes:?}");
        let p = &processes[0];
        assert_eq!(p["path"], probe.as_str(), "{service}");
        assert_eq!(p["args"], serde_json::json!(args), "{service}");
        assert_eq!(p["start_time"], start, "{service}");
        assert_eq!(p["expected_final_state"].to_string(), end, "{service}");
        assert_eq!(p["environment"]["PANTHER_NETNS_HOST"], name, "{service}");
        assert_eq!(p["environment"]["PANTHER_NETNS_ADDR"], addr, "{service}");
    }
    assert_eq!(
        hosts["b"]["processes"][0]["environment"]["ROLE"],
        "relay \"quoted\""
    );

    let graph = parse_gml(config["network"]["graph"]["inline"].as_str().unwrap());
    let graph = graph.get("graph").expect("a graph");
    assert_eq!(graph.number("directed"), 0.0);
    let nodes = graph.all("node");
    assert_eq!(nodes.len(), 3);
    for (i, (name, bandwidth)) in [("a", "100 Mbit"), ("b", "100 Mbit"), ("c", "10 Gbit")]
        .into_iter()
        .enumerate()
    {
        assert_eq!(nodes[i].number("id"), i as f64);
        assert_eq!(nodes[i].text("label"), name);
        assert_eq!(nodes[i].text("host_bandwidth_down"), bandwidth, "{name}");
        assert_eq!(nodes[i].text("host_bandwidth_up"), bandwidth, "{name}");
    }
    let edges = graph.all("edge");
    let edge = |s: f64, t: f64| {
        *edges
            .iter()
            .find(|e| e.number("source") == s && e.number("target") == t)
            .unwrap_or_else(|| panic!("no edge {s} – {t} in {edges:?}"))
    };
    assert_eq!(
        edges.len(),
        5,
        "three self-loops (Shadow needs them) and two links"
    );
    for i in 0..3 {
        assert_eq!(edge(i as f64, i as f64).number("packet_loss"), 0.0);
    }
    let ab = edge(0.0, 1.0);
    assert_eq!(ab.text("latency"), "10 ms");
    assert_eq!(ab.text("jitter"), "1 ms");
    assert_eq!(ab.number("packet_loss"), 0.01);
    assert_eq!(
        ab.get("edge_bandwidth_down"),
        None,
        "Shadow has no per-link bandwidth"
    );
    let bc = edge(1.0, 2.0);
    assert_eq!(bc.text("latency"), "5 ms");
    assert_eq!(bc.text("jitter"), "0 ms");
    assert_eq!(bc.number("packet_loss"), 0.0);
}

/// Simulation, with a stand-in for `shadow` first on `PATH` (Shadow is not packaged in
/// Debian): a script that records how it was called and writes what Shadow 3 writes — each
/// process's output in `<data>/hosts/<host>/<program>.<pid>.stdout|stderr`, and an error line
/// in its log for a process that did not end as expected. The plugin must run it on the
/// configuration it wrote, hand each service its process's output, and judge the services
/// by Shadow's log.
#[test]
fn simulation_runs_shadow_and_collects_each_process_output() {
    let sandbox = Sandbox::new();
    let bin = sandbox.path().join("bin");
    let stand_in = sandbox.write(
        "bin/shadow",
        r#"#!/bin/sh
# shadow --data-directory DIR CONFIG
echo "$@" > "$(dirname "$0")/called-with"
mkdir -p "$2/hosts/a" "$2/hosts/b"
echo 'from the client' > "$2/hosts/a/udp-probe.1000.stdout"
: > "$2/hosts/a/udp-probe.1000.stderr"
echo 'listening on 4000' > "$2/hosts/b/udp-probe.1000.stdout"
: > "$2/hosts/b/udp-probe.1000.stderr"
if [ -n "$CLIENT_FAILS" ]; then
  echo "00:00:02.000 [ERROR] [a:10.213.0.1] process 'a.udp-probe.1000' exited with status Normal(3); expected end state was {exited: 0} but was {exited: 3}"
  exit 1
fi
"#,
    );
    std::fs::set_permissions(
        &stand_in,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let file = sandbox.write(
        "e.toml",
        &format!(
            r#"[experiment]
name = "simulated"

[network]
plugin = "shadow_ns"
mode = "simulate"
hosts = {{ a = ["client"], b = ["server"] }}
links = [{{ between = ["a", "b"], latency = "50ms" }}]

[[service]]
name = "server"
command = ["{probe}", "serve", "4000"]

[[service]]
name = "client"
command = ["{probe}", "measure", "b:4000", "10"]
role = "client"
depends_on = ["server"]
"#,
            probe = program("udp-probe"),
        ),
    );
    let run = |fails: bool| {
        let mut command = sandbox.host_command(&["run", file.to_str().unwrap()]);
        command.env("PATH", &path);
        if fails {
            command.env("CLIENT_FAILS", "1");
        }
        let output = command.output().unwrap();
        let mut runs: Vec<PathBuf> = std::fs::read_dir(sandbox.path().join("results/simulated"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        runs.sort();
        (output, runs.pop().unwrap())
    };

    let (output, results) = run(false);
    assert_passed(&output);
    let called = std::fs::read_to_string(bin.join("called-with")).unwrap();
    let dir = results.join("shadow_ns");
    assert_eq!(
        called.trim(),
        format!(
            "--data-directory {} {}",
            dir.join("shadow.data").display(),
            dir.join("shadow.yaml").display()
        )
    );
    let log = |service: &str| {
        std::fs::read_to_string(results.join(format!("services/{service}.stdout"))).unwrap()
    };
    assert_eq!(log("client"), "from the client\n");
    assert_eq!(log("server"), "listening on 4000\n");
    assert!(!dir.join("engine.json").exists(), "nothing was emulated");

    let (output, _) = run(true);
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let said = format!("{}{}", stdout(&output), stderr(&output));
    assert!(
        said.contains("client  FAILED  exited with code 3, expected 0"),
        "{said}"
    );
}

/// The same graph in the real Shadow, for a machine that has it: Shadow is not packaged in
/// Debian, so this test is listed as ignored in every run, with the way to run it.
///
/// Four hosts: `a – b` 50 ms with 10 % loss each way, `c – d` 10 ms limited to 4 Mbit/s,
/// and `b – c` to join them (Shadow limits bandwidth per host, so the limited link gets hosts
/// of its own). Shadow's clock is simulated, so the RTT is 100 ms to the microsecond; loss
/// draws come from its seed, and are checked with the emulation test's tolerance. A 1 MB TCP
/// transfer through the 4 Mbit/s link cannot beat 4 Mbit/s and fills most of it.
#[test]
#[ignore = "needs Shadow (not packaged in Debian): PATH=<shadow>/bin:$PATH cargo test -p panther-host --test integration -- --ignored real_shadow"]
fn the_real_shadow_simulates_the_graph() {
    let Some(shadow) = which("shadow") else {
        panic!("`shadow` is not on PATH: put the bin folder of a Shadow 3 installation first");
    };
    eprintln!("simulating with {}", shadow.display());
    let sandbox = Sandbox::new();
    let file = sandbox.write(
        "e.toml",
        &format!(
            r#"[experiment]
name = "simulated"
timeout = "120s"

[network]
plugin = "shadow_ns"
mode = "simulate"
stop_time = "30s"

[network.hosts]
a = ["client"]
b = ["server"]
c = ["bulk"]
d = ["sink"]

[[network.links]]
between = ["a", "b"]
latency = "50ms"
loss = 0.1

[[network.links]]
between = ["b", "c"]
latency = "1ms"
bandwidth = "1Gbit"

[[network.links]]
between = ["c", "d"]
latency = "10ms"
bandwidth = "4Mbit"

[[service]]
name = "server"
command = ["{probe}", "serve", "4000"]

[[service]]
name = "sink"
command = ["{probe}", "serve", "5000"]

[[service]]
name = "client"
command = ["{probe}", "measure", "b:4000", "600", "--interval", "5"]
role = "client"
depends_on = ["server"]

[[service]]
name = "bulk"
command = ["{probe}", "throughput", "d:5000", "1000000"]
role = "client"
depends_on = ["sink"]
"#,
            probe = program("udp-probe"),
        ),
    );
    let (output, _) = run_host(&sandbox, &["run", file.to_str().unwrap()]);
    assert_passed(&output);
    let run = sandbox.results("simulated");
    assert!(run.join("shadow_ns/shadow.data/hosts/a").is_dir());
    let said = stderr(&output);
    assert!(
        said.contains("link b - c (1 Gbit) is simulated at 4 Mbit"),
        "the per-host bandwidth is not announced:\n{said}"
    );

    let probe = probe_output(&run, "client");
    eprintln!("measured: {probe}");
    let rtt = &probe["rtt_ms"];
    for q in ["min", "p50"] {
        let ms = rtt[q].as_f64().unwrap();
        assert!(
            (100.0..100.1).contains(&ms),
            "{q} RTT {ms} ms, expected 100 ms"
        );
    }
    let loss = probe["loss"].as_f64().unwrap();
    assert!(
        (0.19 - loss).abs() <= 0.064,
        "round-trip loss {loss}, expected 1 - 0.9² = 0.19 ± 0.064"
    );

    let bulk = probe_output(&run, "bulk");
    eprintln!("measured: {bulk}");
    let mbit = bulk["mbit_per_s"].as_f64().unwrap();
    assert_eq!(bulk["bytes"], 1_000_000);
    assert!(
        (2.4..4.0).contains(&mbit),
        "{mbit} Mbit/s through a 4 Mbit/s link"
    );
}

/// `check` catches placement and graph errors before anything is made.
#[test]
fn placement_and_graph_errors_fail_at_check() {
    let sandbox = Sandbox::new();
    let experiment = |network: &str| {
        format!(
            r#"[experiment]
name = "wrong"

[network]
plugin = "shadow_ns"
{network}

[[service]]
name = "server"
command = ["{probe}", "serve", "4000"]

[[service]]
name = "client"
command = ["{probe}", "measure", "b:4000", "10"]
role = "client"
"#,
            probe = program("udp-probe")
        )
    };
    let check = |name: &str, network: &str| -> String {
        let file = sandbox.write(name, &experiment(network));
        let (output, host_pid) = run_host(&sandbox, &["check", file.to_str().unwrap()]);
        assert_eq!(code(&output), 2, "{name}: {}", stderr(&output));
        assert_eq!(namespaces_of(host_pid), Vec::<String>::new());
        stderr(&output)
    };

    let err = check(
        "unplaced/e.toml",
        "mode = \"emulate\"\nhosts = { b = [\"server\"] }",
    );
    assert!(
        err.contains("service `client` is placed on no host"),
        "{err}"
    );

    let err = check(
        "unknown/e.toml",
        "mode = \"emulate\"\nhosts = { a = [\"client\"], b = [\"server\"] }\n\
         links = [{ between = [\"a\", \"bb\"], latency = \"5ms\" }]",
    );
    assert!(
        err.contains(
            "link 1 (a – bb) names host `bb`, which is not in `hosts` (did you mean `b`?)"
        ),
        "{err}"
    );

    let err = check(
        "apart/e.toml",
        "mode = \"emulate\"\nhosts = { a = [\"client\"], b = [\"server\"] }",
    );
    assert!(err.contains("hosts `a` and `b` are not connected"), "{err}");

    let err = check(
        "twice/e.toml",
        "mode = \"emulate\"\nhosts = { a = [\"client\", \"server\"], b = [\"server\"] }\n\
         links = [{ between = [\"a\", \"b\"] }]",
    );
    assert!(
        err.contains("service `server` is placed on two hosts, `a` and `b`"),
        "{err}"
    );

    let err = check(
        "typo/e.toml",
        "hosts = { a = [\"client\"], b = [\"server\"] }\n\
         links = [{ between = [\"a\", \"b\"], latncy = \"5ms\" }]",
    );
    assert!(err.contains("latncy"), "unknown keys are refused: {err}");

    if which("shadow").is_none() {
        let err = check(
            "simulate/e.toml",
            "mode = \"simulate\"\nhosts = { a = [\"client\"], b = [\"server\"] }\n\
             links = [{ between = [\"a\", \"b\"] }]",
        );
        assert!(err.contains("mode \"simulate\" needs Shadow"), "{err}");
    }

    // And a correct one passes.
    let file = sandbox.write(
        "right/e.toml",
        &experiment(
            "mode = \"emulate\"\nhosts = { a = [\"client\"], b = [\"server\"] }\n\
             links = [{ between = [\"a\", \"b\"], latency = \"5ms\" }]",
        ),
    );
    let (output, _) = run_host(&sandbox, &["check", file.to_str().unwrap()]);
    assert_passed(&output);
}
