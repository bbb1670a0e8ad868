//! Shadow: the configuration file (YAML with the network graph inline as GML), and reading
//! back what a simulation left in its data directory.
//!
//! The YAML is written by hand: every string is emitted as a double-quoted scalar (a JSON
//! string is a valid YAML double-quoted scalar), the graph as a literal block.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use panther_plugin_api::prelude::*;

use crate::config::{Config, Topology};

/// Bandwidth given to hosts whose links are all unlimited (Shadow needs one).
pub const UNLIMITED_BITS: u64 = 10_000_000_000;

/// One service as a Shadow process.
#[derive(Clone, Debug, PartialEq)]
pub struct Process {
    /// The service it runs.
    pub service: String,
    /// Index of its host.
    pub host: usize,
    /// The program (absolute when it could be resolved).
    pub path: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its environment.
    pub env: BTreeMap<String, String>,
    /// Simulated start time.
    pub start_time: Duration,
    /// Servers are expected to still run when the simulation stops.
    pub role: Role,
}

impl Process {
    /// The name Shadow gives the program's output files (its file name).
    pub fn exe_name(&self) -> &str {
        Path::new(&self.path)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(&self.path)
    }
}

/// The processes of a plan: each service on its host, started one simulated second after
/// the services it depends on (Shadow has no readiness checks: order is all it has).
pub fn processes(
    topology: &Topology,
    services: &[ServiceSpec],
    env_for: impl Fn(usize) -> BTreeMap<String, String>,
) -> anyhow::Result<Vec<Process>> {
    let mut depth: BTreeMap<&str, u32> = BTreeMap::new();
    let mut out = Vec::new();
    // The plan is in dependency order, so every dependency's depth is known first.
    for spec in services {
        let d = spec
            .depends_on
            .iter()
            .filter_map(|dep| depth.get(dep.as_str()))
            .map(|d| d + 1)
            .max()
            .unwrap_or(0);
        depth.insert(&spec.name, d);
        let host = topology
            .host_of(&spec.name)
            .with_context(|| format!("service `{}` is placed on no host", spec.name))?;
        let (program, args) = spec
            .argv
            .split_first()
            .with_context(|| format!("service `{}` has an empty command", spec.name))?;
        let mut env = env_for(host);
        env.extend(spec.env.clone());
        out.push(Process {
            service: spec.name.clone(),
            host,
            path: resolve_program(program, spec.cwd.as_deref()),
            args: args.to_vec(),
            env,
            start_time: Duration::from_secs(1 + u64::from(d)),
            role: spec.role,
        });
    }
    Ok(out)
}

/// A program as Shadow should find it: relative paths against the service's folder (Shadow
/// runs processes in their host's data folder), bare names on `PATH` when found there.
fn resolve_program(program: &str, cwd: Option<&Path>) -> String {
    let path = Path::new(program);
    if program.contains('/') {
        return match cwd {
            Some(cwd) if path.is_relative() => cwd.join(path).display().to_string(),
            _ => program.to_string(),
        };
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .map_or_else(|| program.to_string(), |p| p.display().to_string())
}

/// `50 ms`, `250 us`, `7 ns`: the largest unit that keeps the value whole (Shadow reads
/// integers only).
pub fn format_time(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns % 1_000_000_000 == 0 && ns > 0 {
        format!("{} s", ns / 1_000_000_000)
    } else if ns % 1_000_000 == 0 {
        format!("{} ms", ns / 1_000_000)
    } else if ns % 1_000 == 0 {
        format!("{} us", ns / 1_000)
    } else {
        format!("{ns} ns")
    }
}

/// `10 Mbit`, `1500 Kbit`: decimal prefixes, whole values.
pub fn format_bits(bits: u64) -> String {
    for (factor, unit) in [
        (1_000_000_000, "Gbit"),
        (1_000_000, "Mbit"),
        (1_000, "Kbit"),
    ] {
        if bits % factor == 0 {
            return format!("{} {unit}", bits / factor);
        }
    }
    format!("{bits} bit")
}

/// A probability as a GML float: always with a decimal point, never an exponent.
fn format_float(value: f64) -> String {
    let mut s = format!("{value:.9}");
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.push('0');
    }
    s
}

/// Shadow refuses edges without latency: a 0 ms link becomes 1 µs.
fn shadow_latency(d: Duration) -> Duration {
    d.max(Duration::from_micros(1))
}

/// Shadow limits bandwidth per host, not per link (one limit each way, shared by all of the
/// host's traffic): a host gets the smallest bandwidth of its links (10 Gbit when none is
/// limited). `Topology::edges` holds every link once in each direction, so the edges leaving
/// `host` are all of its links.
fn host_bandwidth(topology: &Topology, host: usize) -> u64 {
    topology
        .edges
        .iter()
        .filter(|e| e.from == host)
        .filter_map(|e| e.props.bandwidth)
        .min()
        .unwrap_or(UNLIMITED_BITS)
}

/// Where the simulation's bandwidth differs from the configuration's because Shadow limits
/// it per host: one line per link that gets a host's smaller limit.
pub fn bandwidth_differences(topology: &Topology) -> Vec<String> {
    let mut notes = Vec::new();
    // Each link once: its two directions are consecutive edges.
    for edge in topology.edges.iter().step_by(2) {
        let own = edge.props.bandwidth.unwrap_or(UNLIMITED_BITS);
        let limit = host_bandwidth(topology, edge.from).min(host_bandwidth(topology, edge.to));
        if limit < own {
            let configured = edge
                .props
                .bandwidth
                .map_or("unlimited".to_string(), format_bits);
            notes.push(format!(
                "link {} - {} ({configured}) is simulated at {}: Shadow limits bandwidth per \
                 host, and a host gets the smallest limit of its links",
                topology.hosts[edge.from],
                topology.hosts[edge.to],
                format_bits(limit)
            ));
        }
    }
    notes
}

/// The network graph: a node per host (with a self-loop, which Shadow requires) and an
/// undirected edge per link. Bandwidth is a property of the nodes (see [`host_bandwidth`]).
pub fn gml(topology: &Topology) -> String {
    let mut g = String::from("graph [\n  directed 0\n");
    for (i, name) in topology.hosts.iter().enumerate() {
        let bw = format_bits(host_bandwidth(topology, i));
        let _ = write!(
            g,
            "  node [\n    id {i}\n    label \"{name}\"\n    host_bandwidth_down \"{bw}\"\n    \
             host_bandwidth_up \"{bw}\"\n  ]\n"
        );
    }
    for i in 0..topology.hosts.len() {
        let _ = write!(
            g,
            "  edge [\n    source {i}\n    target {i}\n    label \"{name} loopback\"\n    \
             latency \"1 us\"\n    jitter \"0 ms\"\n    packet_loss 0.0\n  ]\n",
            name = topology.hosts[i]
        );
    }
    // Edges come in pairs (one per direction): write each link once.
    for edge in topology.edges.iter().step_by(2) {
        let p = &edge.props;
        let _ = write!(
            g,
            "  edge [\n    source {}\n    target {}\n    label \"{} - {}\"\n    latency \"{}\"\n    \
             jitter \"{}\"\n    packet_loss {}\n",
            edge.from,
            edge.to,
            topology.hosts[edge.from],
            topology.hosts[edge.to],
            format_time(shadow_latency(p.latency)),
            format_time(p.jitter),
            format_float(p.loss),
        );
        g.push_str("  ]\n");
    }
    g.push_str("]\n");
    g
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// The whole Shadow configuration.
pub fn config_yaml(
    config: &Config,
    topology: &Topology,
    processes: &[Process],
    title: &str,
) -> String {
    let mut y = String::new();
    for line in title.lines() {
        let _ = writeln!(y, "# {line}");
    }
    let _ = write!(
        y,
        "general:\n  stop_time: {}\n  seed: {}\n  model_unblocked_syscall_latency: true\n",
        quoted(&format_time(config.stop_time)),
        config.seed.unwrap_or(1)
    );
    y.push_str("network:\n  graph:\n    type: gml\n    inline: |\n");
    for line in gml(topology).lines() {
        let _ = writeln!(y, "      {line}");
    }
    y.push_str("hosts:\n");
    for (i, name) in topology.hosts.iter().enumerate() {
        let _ = write!(
            y,
            "  {}:\n    network_node_id: {i}\n    ip_addr: {}\n",
            quoted(name),
            quoted(&topology.addr(i).to_string())
        );
        let mine: Vec<&Process> = processes.iter().filter(|p| p.host == i).collect();
        if mine.is_empty() {
            y.push_str("    processes: []\n");
            continue;
        }
        y.push_str("    processes:\n");
        for p in mine {
            let _ = writeln!(y, "      # service {}", quoted(&p.service));
            let _ = writeln!(y, "      - path: {}", quoted(&p.path));
            let args: Vec<String> = p.args.iter().map(|a| quoted(a)).collect();
            let _ = writeln!(y, "        args: [{}]", args.join(", "));
            let _ = writeln!(
                y,
                "        start_time: {}",
                quoted(&format_time(p.start_time))
            );
            let env: Vec<String> = p
                .env
                .iter()
                .map(|(k, v)| format!("{}: {}", quoted(k), quoted(v)))
                .collect();
            let _ = writeln!(y, "        environment: {{{}}}", env.join(", "));
            let expected = match p.role {
                Role::Server => "running",
                Role::Client => "{exited: 0}",
            };
            let _ = writeln!(y, "        expected_final_state: {expected}");
        }
    }
    y
}

/// How a simulated process ended, as Shadow logged it.
pub fn parse_final_states(log: &str) -> BTreeMap<String, ProcessState> {
    let re = regex::Regex::new(
        r"process '([^']+)' exited with status (?:Normal\((-?\d+)\)|Signaled\((\w+)\)|(StoppedByShadow))",
    )
    .expect("valid pattern");
    let mut states = BTreeMap::new();
    for caps in re.captures_iter(log) {
        let state = if let Some(code) = caps.get(2) {
            ProcessState::Exited {
                code: code.as_str().parse().unwrap_or(-1),
            }
        } else if let Some(signal) = caps.get(3) {
            let number = nix::sys::signal::Signal::from_str(signal.as_str())
                .map(|s| s as i32)
                .or_else(|_| signal.as_str().parse())
                .unwrap_or(-1);
            ProcessState::Signaled { signal: number }
        } else {
            ProcessState::Signaled { signal: 9 }
        };
        states.insert(caps[1].to_string(), state);
    }
    states
}

/// A process's output files in Shadow's data directory.
#[derive(Clone, Debug, PartialEq)]
pub struct Outputs {
    /// Shadow's name for the process: `<host>.<exe>.<pid>`.
    pub name: String,
    /// Its stdout file.
    pub stdout: PathBuf,
    /// Its stderr file.
    pub stderr: PathBuf,
}

/// Finds each process's output in `<data>/hosts/<host>/<exe>.<pid>.stdout`: processes of
/// one host with the same program are matched to their files in start order (Shadow
/// gives increasing ids in that order).
pub fn find_outputs(
    data_dir: &Path,
    topology: &Topology,
    processes: &[Process],
) -> BTreeMap<String, Outputs> {
    let mut found = BTreeMap::new();
    for (i, host) in topology.hosts.iter().enumerate() {
        let dir = data_dir.join("hosts").join(host);
        let files: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        let mut mine: Vec<&Process> = processes.iter().filter(|p| p.host == i).collect();
        mine.sort_by_key(|p| p.start_time);
        let mut by_exe: BTreeMap<&str, Vec<&Process>> = BTreeMap::new();
        for p in mine {
            by_exe.entry(p.exe_name()).or_default().push(p);
        }
        for (exe, procs) in by_exe {
            let mut pids: Vec<u32> = files
                .iter()
                .filter_map(|f| {
                    f.strip_prefix(exe)?
                        .strip_prefix('.')?
                        .strip_suffix(".stdout")?
                        .parse()
                        .ok()
                })
                .collect();
            pids.sort_unstable();
            for (p, pid) in procs.iter().zip(pids) {
                found.insert(
                    p.service.clone(),
                    Outputs {
                        name: format!("{host}.{exe}.{pid}"),
                        stdout: dir.join(format!("{exe}.{pid}.stdout")),
                        stderr: dir.join(format!("{exe}.{pid}.stderr")),
                    },
                );
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> (Config, Topology) {
        let value: toml::Value = toml::from_str(
            r#"
            stop_time = "30s"
            seed = 5
            hosts = { a = ["client"], b = ["server", "helper"] }
            [[links]]
            between = ["a", "b"]
            latency = "50ms"
            jitter = "250us"
            loss = 0.1
            bandwidth = "10Mbit"
            "#,
        )
        .unwrap();
        let config: Config = serde_json::from_value(serde_json::to_value(value).unwrap()).unwrap();
        let topology = Topology::new(&config).unwrap();
        (config, topology)
    }

    fn spec(name: &str, argv: &[&str], deps: &[&str], role: Role) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: [("K".to_string(), "v \"q\"".to_string())].into(),
            cwd: Some("/srv".into()),
            depends_on: deps.iter().map(|s| s.to_string()).collect(),
            ready: None,
            role,
            log_dir: "/tmp".into(),
            stop_grace: None,
            mounts: Vec::new(),
            parent_wrappers: Vec::new(),
        }
    }

    #[test]
    fn units_are_whole_numbers_shadow_can_read() {
        assert_eq!(format_time(Duration::from_millis(50)), "50 ms");
        assert_eq!(format_time(Duration::from_micros(250)), "250 us");
        assert_eq!(format_time(Duration::from_secs(60)), "60 s");
        assert_eq!(format_time(Duration::ZERO), "0 ms");
        assert_eq!(format_time(Duration::from_nanos(1_500)), "1500 ns");
        assert_eq!(format_bits(10_000_000), "10 Mbit");
        assert_eq!(format_bits(1_500_000), "1500 Kbit");
        assert_eq!(format_bits(999), "999 bit");
        assert_eq!(format_float(0.1), "0.1");
        assert_eq!(format_float(0.0), "0.0");
        assert_eq!(format_float(0.00001), "0.00001");
    }

    #[test]
    fn processes_start_after_their_dependencies() {
        let (_, t) = topology();
        let plan = [
            spec("server", &["./srv", "--port", "1"], &[], Role::Server),
            spec("helper", &["/bin/helper"], &["server"], Role::Server),
            spec(
                "client",
                &["/bin/client", "b:1"],
                &["server", "helper"],
                Role::Client,
            ),
        ];
        let procs = processes(&t, &plan, |h| {
            [("PANTHER_NETNS_HOST".to_string(), t.hosts[h].clone())].into()
        })
        .unwrap();
        let starts: Vec<(&str, u64, usize)> = procs
            .iter()
            .map(|p| (p.service.as_str(), p.start_time.as_secs(), p.host))
            .collect();
        assert_eq!(
            starts,
            [("server", 1, 1), ("helper", 2, 1), ("client", 3, 0)]
        );
        assert_eq!(procs[0].path, "/srv/./srv");
        assert_eq!(procs[2].env["PANTHER_NETNS_HOST"], "a");
        assert_eq!(procs[2].env["K"], "v \"q\"");
    }

    #[test]
    fn the_graph_has_every_node_and_edge() {
        let (_, t) = topology();
        let g = gml(&t);
        assert!(
            g.contains("node [\n    id 0\n    label \"a\"\n    host_bandwidth_down \"10 Mbit\"")
        );
        assert!(g.contains("source 0\n    target 1\n    label \"a - b\"\n    latency \"50 ms\"\n    jitter \"250 us\"\n    packet_loss 0.1\n  ]"));
        assert!(
            bandwidth_differences(&t).is_empty(),
            "one link: no difference"
        );
        assert_eq!(
            g.matches("edge [").count(),
            3,
            "two self-loops and the link"
        );
    }

    #[test]
    fn a_host_with_one_limited_link_limits_its_others_and_says_so() {
        let value: toml::Value = toml::from_str(
            r#"
            hosts = { a = ["client"], b = ["server"], c = ["sink"] }
            links = [
                { between = ["a", "b"], latency = "5ms" },
                { between = ["a", "c"], latency = "5ms", bandwidth = "4Mbit" },
                { between = ["b", "c"], latency = "5ms", bandwidth = "8Mbit" },
            ]
            "#,
        )
        .unwrap();
        let config: Config = value.try_into().unwrap();
        let t = Topology::new(&config).unwrap();
        let g = gml(&t);
        assert!(
            g.contains("label \"a\"\n    host_bandwidth_down \"4 Mbit\""),
            "{g}"
        );
        assert!(
            g.contains("label \"b\"\n    host_bandwidth_down \"8 Mbit\""),
            "{g}"
        );
        assert!(
            g.contains("label \"c\"\n    host_bandwidth_down \"4 Mbit\""),
            "{g}"
        );
        assert_eq!(
            bandwidth_differences(&t),
            [
                "link a - b (unlimited) is simulated at 4 Mbit: Shadow limits bandwidth per host, \
                 and a host gets the smallest limit of its links",
                "link b - c (8 Mbit) is simulated at 4 Mbit: Shadow limits bandwidth per host, \
                 and a host gets the smallest limit of its links",
            ]
        );
    }

    #[test]
    fn final_states_come_from_the_log() {
        let log = "00:00:03.000 [ERROR] [b:11.0.0.2] process 'b.srv.1000' exited with status Normal(3); expected end state was running but was {\"exited\":3}\n\
                   [ERROR] process 'a.client.1000' exited with status Signaled(SIGSEGV); expected ...\n\
                   process 'b.helper.1002' exited with status StoppedByShadow\n";
        let states = parse_final_states(log);
        assert_eq!(states["b.srv.1000"], ProcessState::Exited { code: 3 });
        assert_eq!(
            states["a.client.1000"],
            ProcessState::Signaled { signal: 11 }
        );
        assert_eq!(
            states["b.helper.1002"],
            ProcessState::Signaled { signal: 9 }
        );
    }

    #[test]
    fn outputs_are_matched_in_start_order() {
        let (_, t) = topology();
        let data = tempfile::tempdir().unwrap();
        let b = data.path().join("hosts/b");
        std::fs::create_dir_all(&b).unwrap();
        for f in [
            "run.1000.stdout",
            "run.1003.stdout",
            "run.1000.stderr",
            "x.1001.stdout",
        ] {
            std::fs::write(b.join(f), f).unwrap();
        }
        let plan = [
            spec("server", &["/bin/run"], &[], Role::Server),
            spec("helper", &["/bin/run"], &["server"], Role::Server),
            spec("client", &["/bin/run"], &["helper"], Role::Client),
        ];
        let procs = processes(&t, &plan, |_| BTreeMap::new()).unwrap();
        let outputs = find_outputs(data.path(), &t, &procs);
        assert_eq!(outputs["server"].name, "b.run.1000");
        assert_eq!(outputs["helper"].name, "b.run.1003");
        assert_eq!(outputs["helper"].stdout, b.join("run.1003.stdout"));
        assert!(!outputs.contains_key("client"), "host a has no output");
    }
}
