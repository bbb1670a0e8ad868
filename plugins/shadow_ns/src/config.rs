//! The `[network]` section for `shadow_ns`, and the topology it describes: hosts with their
//! addresses, links, and the shortest path between every two hosts.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::Ipv4Addr,
    time::Duration,
};

use panther_plugin_api::prelude::*;

/// The first three octets of the addresses given to hosts: host `i` (in name order) is
/// `10.213.0.(i + 1)`. The range only ever exists inside the namespaces of one run.
pub const SUBNET: [u8; 3] = [10, 213, 0];
/// Prefix length of [`SUBNET`].
pub const PREFIX_LEN: u8 = 24;
/// At most this many hosts fit in [`SUBNET`].
pub const MAX_HOSTS: usize = 253;

/// How the network is made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Real processes in one Linux network namespace per host, packets carried between them
    /// by the plugin's impairment engine.
    Emulate,
    /// A Shadow discrete-event simulation (`shadow` must be installed).
    Simulate,
    /// Shadow when `shadow` is installed, emulation otherwise.
    #[default]
    Auto,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Emulate => "emulate",
            Mode::Simulate => "simulate",
            Mode::Auto => "auto",
        })
    }
}

/// The `[network]` section for `shadow_ns`.
#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `emulate`, `simulate` or `auto` (Shadow when it is installed, else emulation).
    #[serde(default)]
    pub mode: Mode,
    /// Host name → the services placed on it. Every service of the experiment must be on
    /// exactly one host. Names: lower-case letters, digits and `-`, at most 32 characters.
    #[serde(default)]
    pub hosts: BTreeMap<String, Vec<String>>,
    /// The links of the network graph. Traffic between two hosts follows the path of least
    /// latency; hosts with no path between them cannot reach each other.
    #[serde(default)]
    pub links: Vec<Link>,
    /// Simulated time at which Shadow ends the simulation (simulation only).
    #[serde(default = "default_stop_time", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub stop_time: Duration,
    /// Seed of the random numbers (loss, jitter); random when absent.
    #[serde(default)]
    pub seed: Option<u64>,
    /// How long a service gets between SIGTERM and SIGKILL when it is stopped.
    #[serde(default = "default_grace", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub stop_grace: Duration,
}

fn default_stop_time() -> Duration {
    Duration::from_secs(60)
}

fn default_grace() -> Duration {
    Duration::from_secs(3)
}

/// One edge of the graph: the same properties in both directions.
#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// The two hosts it connects.
    pub between: [String; 2],
    /// One-way delay, e.g. `50ms`.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "String")]
    pub latency: Duration,
    /// Each packet's delay varies uniformly within ± this (packets are never reordered).
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "String")]
    pub jitter: Duration,
    /// Probability that a packet is dropped, in each direction, from 0 to 1.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub loss: f64,
    /// Rate limit in each direction, e.g. `10Mbit`, `512kbit`, `1Gbit`; unlimited when
    /// absent.
    #[serde(default)]
    pub bandwidth: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::Auto,
            hosts: BTreeMap::new(),
            links: Vec::new(),
            stop_time: default_stop_time(),
            seed: None,
            stop_grace: default_grace(),
        }
    }
}

/// Parses `10Mbit`, `10 Mbit`, `512kbit`, `1.5Gbit`, `800bit` (also `10Mbit/s`, `10Mbps`)
/// into bits per second. Prefixes are decimal, as in `tc` and Shadow.
pub fn parse_bandwidth(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    let mut lower = t.to_ascii_lowercase();
    if let Some(stem) = lower.strip_suffix("bps") {
        lower = format!("{stem}bit");
    }
    let number_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(number_end);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("bandwidth `{text}` does not start with a number"))?;
    let factor = match unit.trim() {
        "bit" | "bits" => 1.0,
        "kbit" | "kbits" => 1e3,
        "mbit" | "mbits" => 1e6,
        "gbit" | "gbits" => 1e9,
        "tbit" | "tbits" => 1e12,
        other => {
            return Err(format!(
                "bandwidth `{text}`: unknown unit `{other}` (use bit, kbit, Mbit, Gbit or Tbit)"
            ))
        }
    };
    let bits = (value * factor).round();
    if !(1.0..1e15).contains(&bits) {
        return Err(format!(
            "bandwidth `{text}` must be at least 1bit and below 1000Tbit"
        ));
    }
    Ok(bits as u64)
}

/// Whether `name` can be a host name here and in Shadow (hostname(7), short enough for a
/// namespace name).
fn valid_host_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 32
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// The properties of one direction of a link, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeProps {
    /// One-way delay.
    pub latency: Duration,
    /// Uniform variation of the delay.
    pub jitter: Duration,
    /// Drop probability.
    pub loss: f64,
    /// Bits per second, unlimited when `None`.
    pub bandwidth: Option<u64>,
}

impl EdgeProps {
    /// Whether a packet crosses it untouched and at once.
    pub fn transparent(&self) -> bool {
        self.latency.is_zero()
            && self.jitter.is_zero()
            && self.loss == 0.0
            && self.bandwidth.is_none()
    }
}

/// A directed edge: `from` → `to` with its properties. Link `k` of the configuration gives
/// edges `2k` (first → second host) and `2k + 1` (back).
#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    /// Source host index.
    pub from: usize,
    /// Target host index.
    pub to: usize,
    /// Its properties.
    pub props: EdgeProps,
}

/// Hosts, their addresses, edges and routes, checked.
#[derive(Clone, Debug)]
pub struct Topology {
    /// Host names, in address order.
    pub hosts: Vec<String>,
    /// Services on each host, in configured order.
    pub services: Vec<Vec<String>>,
    /// The directed edges.
    pub edges: Vec<Edge>,
    /// `routes[a][b]`: the edges from host `a` to host `b`, in order; `None` when `b` cannot
    /// be reached (and for `a == b`, which never leaves the host).
    pub routes: Vec<Vec<Option<Vec<usize>>>>,
}

impl Topology {
    /// Checks a configuration and computes its routes. Every problem is returned.
    pub fn new(config: &Config) -> Result<Topology, Vec<String>> {
        let mut problems = Vec::new();
        if config.hosts.is_empty() {
            problems.push("`hosts` is empty: place the services on at least one host".into());
        }
        if config.hosts.len() > MAX_HOSTS {
            problems.push(format!(
                "{} hosts configured; at most {MAX_HOSTS} fit in 10.213.0.0/24",
                config.hosts.len()
            ));
        }
        let hosts: Vec<String> = config.hosts.keys().cloned().collect();
        for name in &hosts {
            if !valid_host_name(name) {
                problems.push(format!(
                    "host name `{name}` is not allowed: use 1 to 32 lower-case letters, digits \
                     and `-`, not at either end"
                ));
            }
        }
        let mut placed: BTreeMap<&str, &str> = BTreeMap::new();
        for (host, services) in &config.hosts {
            for service in services {
                if let Some(first) = placed.insert(service, host) {
                    if first == host {
                        problems.push(format!(
                            "service `{service}` is listed twice on host `{host}`"
                        ));
                    } else {
                        problems.push(format!(
                            "service `{service}` is placed on two hosts, `{first}` and `{host}`"
                        ));
                    }
                }
            }
        }
        let index = |name: &str| hosts.iter().position(|h| h == name);
        let mut edges = Vec::new();
        let mut seen = BTreeSet::new();
        for (k, link) in config.links.iter().enumerate() {
            let label = format!("link {} ({} – {})", k + 1, link.between[0], link.between[1]);
            let mut ends = Vec::new();
            for end in &link.between {
                match index(end) {
                    Some(i) => ends.push(i),
                    None => problems.push(format!(
                        "{label} names host `{end}`, which is not in `hosts`{}",
                        hint(end, &hosts)
                    )),
                }
            }
            if link.between[0] == link.between[1] {
                problems.push(format!("{label} connects a host to itself"));
            }
            let pair = {
                let mut p = link.between.clone();
                p.sort();
                p
            };
            if !seen.insert(pair) {
                problems.push(format!(
                    "{label}: these two hosts are already connected by another link"
                ));
            }
            if !(0.0..=1.0).contains(&link.loss) {
                problems.push(format!("{label}: `loss` must be between 0 and 1"));
            }
            let bandwidth = match link.bandwidth.as_deref().map(parse_bandwidth).transpose() {
                Ok(b) => b,
                Err(e) => {
                    problems.push(format!("{label}: {e}"));
                    None
                }
            };
            let props = EdgeProps {
                latency: link.latency,
                jitter: link.jitter,
                loss: link.loss,
                bandwidth,
            };
            if let [a, b] = ends[..] {
                edges.push(Edge {
                    from: a,
                    to: b,
                    props: props.clone(),
                });
                edges.push(Edge {
                    from: b,
                    to: a,
                    props,
                });
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let routes = shortest_paths(hosts.len(), &edges);
        let services = config.hosts.values().cloned().collect();
        Ok(Topology {
            hosts,
            services,
            edges,
            routes,
        })
    }

    /// The address of host `i`.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        host_addr(i)
    }

    /// The index of a host by name.
    pub fn host_index(&self, name: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h == name)
    }

    /// The host a service is placed on.
    pub fn host_of(&self, service: &str) -> Option<usize> {
        self.services
            .iter()
            .position(|list| list.iter().any(|s| s == service))
    }

    /// Pairs of hosts with no path between them.
    pub fn unreachable(&self) -> Vec<(usize, usize)> {
        let n = self.hosts.len();
        (0..n)
            .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
            .filter(|&(a, b)| self.routes[a][b].is_none())
            .collect()
    }

    /// Checks the placement against the experiment's services: each on exactly one host, and
    /// no host lists a service the experiment does not have.
    pub fn check_services<'a>(&self, services: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let services: BTreeSet<&str> = services.into_iter().collect();
        let mut problems = Vec::new();
        for service in &services {
            if self.host_of(service).is_none() {
                problems.push(format!(
                    "service `{service}` is placed on no host: add it to one of the lists in \
                     `hosts` ({})",
                    self.hosts.join(", ")
                ));
            }
        }
        for (host, list) in self.hosts.iter().zip(&self.services) {
            for service in list {
                if !services.contains(service.as_str()) {
                    let known: Vec<&str> = services.iter().copied().collect();
                    problems.push(format!(
                        "host `{host}` lists service `{service}`, which the experiment does not \
                         define{}",
                        hint(service, &known)
                    ));
                }
            }
        }
        problems
    }
}

/// The address of host `i`.
pub fn host_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], (i + 1) as u8)
}

fn hint<S: AsRef<str>>(name: &str, known: &[S]) -> String {
    panther_plugin_api::suggest::did_you_mean(name, known)
}

/// Least-latency paths (fewest hops among equals), as lists of edge indices.
fn shortest_paths(n: usize, edges: &[Edge]) -> Vec<Vec<Option<Vec<usize>>>> {
    // Floyd–Warshall on (latency, hops) with the first edge of each best path.
    let mut dist: Vec<Vec<Option<(Duration, usize)>>> = vec![vec![None; n]; n];
    let mut first: Vec<Vec<Option<usize>>> = vec![vec![None; n]; n];
    for (e, edge) in edges.iter().enumerate() {
        let cost = (edge.props.latency, 1);
        if dist[edge.from][edge.to].is_none_or(|d| cost < d) {
            dist[edge.from][edge.to] = Some(cost);
            first[edge.from][edge.to] = Some(e);
        }
    }
    for k in 0..n {
        for i in 0..n {
            let Some(ik) = dist[i][k] else { continue };
            for j in 0..n {
                let Some(kj) = dist[k][j] else { continue };
                let through = (ik.0 + kj.0, ik.1 + kj.1);
                if i != j && dist[i][j].is_none_or(|d| through < d) {
                    dist[i][j] = Some(through);
                    first[i][j] = first[i][k];
                }
            }
        }
    }
    (0..n)
        .map(|a| {
            (0..n)
                .map(|b| {
                    if a == b {
                        return None;
                    }
                    let mut path = Vec::new();
                    let mut at = a;
                    while at != b {
                        let e = first[at][b]?;
                        path.push(e);
                        at = edges[e].to;
                        if path.len() > n {
                            return None;
                        }
                    }
                    Some(path)
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> Config {
        let value: toml::Value = toml::from_str(toml_text).unwrap();
        serde_json::from_value(serde_json::to_value(value).unwrap()).unwrap()
    }

    #[test]
    fn bandwidths_parse_with_decimal_prefixes() {
        assert_eq!(parse_bandwidth("10Mbit"), Ok(10_000_000));
        assert_eq!(parse_bandwidth("10 Mbit"), Ok(10_000_000));
        assert_eq!(parse_bandwidth("1.5Gbit"), Ok(1_500_000_000));
        assert_eq!(parse_bandwidth("512kbit/s"), Ok(512_000));
        assert_eq!(parse_bandwidth("800bit"), Ok(800));
        assert_eq!(parse_bandwidth("2mbps"), Ok(2_000_000));
        assert!(parse_bandwidth("10MB")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_bandwidth("fast").is_err());
        assert!(parse_bandwidth("0bit").is_err());
    }

    #[test]
    fn routes_follow_least_latency_then_fewest_hops() {
        let c = config(
            r#"
            hosts = { a = ["x"], b = [], c = ["y"], d = [] }
            [[links]]
            between = ["a", "b"]
            latency = "10ms"
            [[links]]
            between = ["b", "c"]
            latency = "10ms"
            [[links]]
            between = ["a", "c"]
            latency = "30ms"
            "#,
        );
        let t = Topology::new(&c).unwrap();
        let (a, b, c_, d) = (0, 1, 2, 3);
        let hops = |from: usize, to: usize| -> Vec<(usize, usize)> {
            t.routes[from][to]
                .as_ref()
                .unwrap()
                .iter()
                .map(|&e| (t.edges[e].from, t.edges[e].to))
                .collect()
        };
        assert_eq!(hops(a, c_), vec![(a, b), (b, c_)]);
        assert_eq!(hops(c_, a), vec![(c_, b), (b, a)]);
        assert_eq!(hops(a, b), vec![(a, b)]);
        assert!(t.routes[a][d].is_none());
        assert!(t.routes[a][a].is_none());
        assert_eq!(t.unreachable(), vec![(0, 3), (1, 3), (2, 3)]);
        assert_eq!(t.addr(2), Ipv4Addr::new(10, 213, 0, 3));
        assert_eq!(t.host_of("y"), Some(2));
    }

    #[test]
    fn every_problem_is_reported() {
        let c = config(
            r#"
            hosts = { a = ["x", "y"], b = ["y"], "Bad_Name" = [] }
            [[links]]
            between = ["a", "zz"]
            [[links]]
            between = ["b", "a"]
            loss = 1.5
            bandwidth = "fast"
            [[links]]
            between = ["a", "b"]
            "#,
        );
        let problems = Topology::new(&c).unwrap_err().join("\n");
        for expected in [
            "service `y` is placed on two hosts, `a` and `b`",
            "host name `Bad_Name` is not allowed",
            "link 1 (a – zz) names host `zz`, which is not in `hosts`",
            "link 2 (b – a): `loss` must be between 0 and 1",
            "link 2 (b – a): bandwidth `fast` does not start with a number",
            "link 3 (a – b): these two hosts are already connected",
        ] {
            assert!(problems.contains(expected), "{expected}\nin:\n{problems}");
        }
    }

    #[test]
    fn services_are_checked_against_the_experiment() {
        let c = config(r#"hosts = { a = ["server"], b = ["clinet"] }"#);
        let t = Topology::new(&c).unwrap();
        let problems = t.check_services(["server", "client"]).join("\n");
        assert!(problems.contains("service `client` is placed on no host"));
        assert!(problems.contains(
            "host `b` lists service `clinet`, which the experiment does not define (did you mean `client`?)"
        ));
        assert!(t.check_services(["server", "clinet"]).is_empty());
    }

    #[test]
    fn the_default_configuration_is_the_empty_table() {
        let c: Config = serde_json::from_str("{}").unwrap();
        assert_eq!(c, Config::default());
        assert!(serde_json::from_str::<Config>(r#"{"hosts": {}, "typo": 1}"#).is_err());
    }
}
