//! `shadow_ns`: runs an experiment's services on a network with latency, jitter, loss and
//! bandwidth limits — simulated by Shadow when it is installed, emulated otherwise.
//!
//! - Simulation: a Shadow configuration (YAML, the graph inline as GML) is written to
//!   `<results>/shadow_ns/shadow.yaml` and `shadow` runs it; every process's output is copied
//!   to the service's log files when the simulation ends.
//! - Emulation: one network namespace per host, each with a TUN device holding the host's
//!   address (`10.213.0.0/24`); the [`engine`] carries packets between the TUN devices with
//!   the links' impairments. Services start through the host's command processor as
//!   `ip netns exec <namespace> <command>`, so the host owns and stops every process.
//!   The Shadow configuration is written too, to rerun the same topology in Shadow.
//!
//! Names of hosts resolve inside the namespaces (`/etc/netns/<namespace>/hosts`) and in
//! Shadow alike, so commands can say `server-host:4000` in both modes.

pub mod config;
pub mod engine;
pub mod netns;
pub mod shadow;

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    time::Duration,
};

use panther_plugin_api::{
    prelude::*,
    readiness::{describe, Probe, Waited},
    ValidationContext,
};

pub use config::{Config, Mode, Topology};

/// The plugin's name in experiment files.
pub const NAME: &str = "shadow_ns";

/// Where Shadow is looked for.
pub fn find_shadow() -> Option<PathBuf> {
    netns::find_program("shadow")
}

/// The mode a configuration runs in on this machine.
pub fn effective_mode(mode: Mode) -> Mode {
    match mode {
        Mode::Auto if find_shadow().is_some() => Mode::Simulate,
        Mode::Auto => Mode::Emulate,
        other => other,
    }
}

struct Running {
    spec: ServiceSpec,
    host: usize,
    /// The service's process (emulation only).
    handle: Option<ProcessHandle>,
    /// How it ended, once the host stopped it (simulation only).
    stopped: Option<ProcessState>,
}

struct Emulation {
    topology: Topology,
    dir: PathBuf,
    ip: PathBuf,
    /// By host index; the list grows before each namespace is made, so that teardown
    /// removes a half-made setup too.
    namespaces: Vec<String>,
    engine: Option<engine::Engine>,
}

struct Simulation {
    topology: Topology,
    dir: PathBuf,
    processes: Vec<shadow::Process>,
    shadow: ProcessHandle,
    pid: u32,
    /// Per service, once the simulation has ended and its outputs were collected.
    ended: Option<BTreeMap<String, ProcessState>>,
}

enum Backend {
    Emulation(Emulation),
    Simulation(Simulation),
}

/// The network environment.
pub struct ShadowNs {
    ctx: Context,
    config: Config,
    backend: Option<Backend>,
    /// In deployment order.
    services: Vec<Running>,
}

/// The hint for PANTHER's `network` table: the graph is made of links here.
const LINKS: &str = "describe the network as `links = [{ between = [\"a\", \"b\"], latency = \"10ms\", jitter = \"1ms\", loss = 0.01 }]` between `hosts`";
/// The hint for PANTHER's `hosts.server` and `hosts.client` tables.
const HOSTS: &str = "`hosts` maps each host name to its services (`hosts = { a = [\"server\"] }`); addresses are given by the plugin and every service starts in dependency order";

impl Plugin for ShadowNs {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new(NAME)
            .description(
                "Services on a network with latency, jitter, loss and bandwidth limits: \
                 simulated by Shadow, or emulated with a network namespace per host",
            )
            .capability(capability::NETWORK_EMULATION)
            // The services are programs on this machine (in both modes): the host checks
            // that they exist.
            .capability(capability::LOCAL_PROCESSES)
            .tool("ip", "iproute2")
            .alias_key(
                "general.stop_time",
                "stop_time",
                "PANTHER's `[general]` table is the section itself here",
            )
            .refuse_key(
                "general.model_unblocked_syscall_latency",
                "Shadow's own option, not offered: the plugin writes Shadow's configuration itself",
            )
            .refuse_key(
                "experimental.strace_logging_mode",
                "Shadow's own option, not offered: trace services with the `strace` execution environment",
            )
            .refuse_key(
                "host_option_defaults.pcap_enabled",
                "packet capture is not offered; the plugin writes Shadow's configuration itself",
            )
            .refuse_key("network.latency", LINKS)
            .refuse_key("network.jitter", LINKS)
            .refuse_key("network.packet_loss", LINKS)
            .refuse_key("network", LINKS)
            .refuse_key(
                "network_name",
                "the network is the plugin's own, one namespace per host; there is nothing to name",
            )
            .refuse_key(
                "subnet",
                "hosts get addresses in 10.213.0.0/24, in name order; there is nothing to choose",
            )
            .refuse_key("enable_ipv6", "the emulated and simulated networks are IPv4")
            .refuse_key("hosts.server.network_node_id", HOSTS)
            .refuse_key("hosts.server.ip_addr", HOSTS)
            .refuse_key("hosts.server.start_time", HOSTS)
            .refuse_key("hosts.client.network_node_id", HOSTS)
            .refuse_key("hosts.client.ip_addr", HOSTS)
            .refuse_key("hosts.client.start_time", HOSTS)
    }

    fn validate(config: &Config, experiment: &ValidationContext) -> Vec<String> {
        let mut problems = Vec::new();
        match Topology::new(config) {
            Err(found) => problems.extend(found),
            Ok(topology) => {
                for (a, b) in topology.unreachable() {
                    problems.push(format!(
                        "hosts `{}` and `{}` are not connected: every host needs a path of \
                         `links` to every other",
                        topology.hosts[a], topology.hosts[b]
                    ));
                }
                if !experiment.services.is_empty() {
                    problems.extend(
                        topology.check_services(experiment.services.iter().map(String::as_str)),
                    );
                }
            }
        }
        if let Some(problem) = mode_unavailable(config.mode) {
            problems.push(problem);
        }
        problems
    }

    fn new(config: Config, ctx: Context) -> anyhow::Result<Self> {
        Ok(ShadowNs {
            ctx,
            config,
            backend: None,
            services: Vec::new(),
        })
    }
}

/// Why `mode` cannot run here, if it cannot.
fn mode_unavailable(mode: Mode) -> Option<String> {
    let shadow = find_shadow().is_some();
    match mode {
        Mode::Simulate if !shadow => Some(
            "mode \"simulate\" needs Shadow, and `shadow` is not on PATH (it is not packaged \
             in Debian: see https://shadow.github.io/docs/guide/install_shadow.html), or use \
             mode = \"emulate\""
                .into(),
        ),
        Mode::Emulate => netns::emulation_unavailable()
            .map(|why| format!("mode \"emulate\" needs network namespaces, which need {why}")),
        Mode::Auto if !shadow => netns::emulation_unavailable().map(|why| {
            format!(
                "neither Shadow nor network namespaces are available: `shadow` is not on PATH, \
                 and emulation needs {why}"
            )
        }),
        _ => None,
    }
}

impl ShadowNs {
    fn find(&self, name: &str) -> anyhow::Result<&Running> {
        self.services
            .iter()
            .find(|s| s.spec.name == name)
            .with_context(|| format!("service `{name}` was not deployed"))
    }

    /// Variables every service gets: its host's name and address.
    fn host_env(topology: &Topology, host: usize) -> BTreeMap<String, String> {
        [
            (
                "PANTHER_NETNS_HOST".to_string(),
                topology.hosts[host].clone(),
            ),
            (
                "PANTHER_NETNS_ADDR".to_string(),
                topology.addr(host).to_string(),
            ),
        ]
        .into()
    }

    /// Runs `ip ARGS...` through the host's command processor; an error with its stderr
    /// when it fails.
    fn ip(&self, ip: &Path, dir: &Path, log_name: &str, args: &[&str]) -> anyhow::Result<()> {
        let mut command = Command::new(ip.display().to_string())
            .args(args.iter().copied())
            .log_name(log_name)
            .timeout(Duration::from_secs(20));
        command.log_dir = Some(dir.join("commands"));
        let out = self.ctx.run(&command)?;
        if !out.success() {
            let stderr = std::fs::read_to_string(&out.stderr_path).unwrap_or_default();
            bail!("`{}` {}: {}", out.argv.join(" "), out.state, stderr.trim());
        }
        Ok(())
    }

    fn setup_emulation(&mut self, topology: Topology, dir: PathBuf) -> anyhow::Result<()> {
        if let Some(why) = netns::emulation_unavailable() {
            bail!("cannot emulate the network: this needs {why}");
        }
        let ip = netns::find_program("ip").context("`ip` (iproute2) is not installed")?;
        let prefix = netns::run_prefix();
        let hosts = topology.hosts.clone();
        let entries: Vec<(String, std::net::Ipv4Addr)> = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.clone(), topology.addr(i)))
            .collect();
        self.backend = Some(Backend::Emulation(Emulation {
            topology,
            dir: dir.clone(),
            ip: ip.clone(),
            namespaces: Vec::new(),
            engine: None,
        }));
        let mut tuns: Vec<OwnedFd> = Vec::new();
        for (i, host) in hosts.iter().enumerate() {
            let ns = format!("{prefix}{host}");
            if let Some(Backend::Emulation(e)) = &mut self.backend {
                e.namespaces.push(ns.clone());
            }
            self.ip(
                &ip,
                &dir,
                &format!("netns-add-{host}"),
                &["netns", "add", &ns],
            )?;
            netns::write_hosts_file(&ns, &entries)?;
            tuns.push(netns::open_tun(&ns, netns::TUN_NAME)?);
            let batch = dir.join(format!("{host}.ip"));
            std::fs::write(
                &batch,
                format!(
                    "link set lo up\naddr add {addr}/{len} dev {tun}\nlink set {tun} up\n",
                    addr = entries[i].1,
                    len = config::PREFIX_LEN,
                    tun = netns::TUN_NAME
                ),
            )
            .with_context(|| format!("writing {}", batch.display()))?;
            self.ip(
                &ip,
                &dir,
                &format!("configure-{host}"),
                &["-n", &ns, "-batch", &batch.display().to_string()],
            )?;
            tracing::debug!(host, namespace = %ns, addr = %entries[i].1, "host ready");
        }
        let Some(Backend::Emulation(e)) = &mut self.backend else {
            unreachable!("set above");
        };
        e.engine = Some(engine::Engine::start(&e.topology, &tuns, self.config.seed)?);
        let summary: Vec<serde_json::Value> = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                serde_json::json!({
                    "host": h,
                    "address": entries[i].1.to_string(),
                    "namespace": e.namespaces[i],
                    "services": e.topology.services[i],
                })
            })
            .collect();
        std::fs::write(
            dir.join("hosts.json"),
            serde_json::to_vec_pretty(&summary).unwrap_or_default(),
        )
        .context("writing hosts.json")?;
        tracing::info!(hosts = hosts.len(), "emulated network ready");
        Ok(())
    }

    fn setup_simulation(
        &mut self,
        topology: Topology,
        dir: PathBuf,
        processes: Vec<shadow::Process>,
    ) -> anyhow::Result<()> {
        let program = find_shadow().context("`shadow` is not installed")?;
        let mut command = Command::new(program.display().to_string())
            .arg("--data-directory")
            .arg(dir.join("shadow.data").display().to_string())
            .arg(dir.join("shadow.yaml").display().to_string())
            .log_name("shadow");
        command.log_dir = Some(dir.clone());
        command.cwd = Some(dir.clone());
        let handle = self.ctx.spawn(&command).context("starting shadow")?;
        let pid = self.ctx.pid(handle)?;
        tracing::info!(pid, "shadow started");
        self.backend = Some(Backend::Simulation(Simulation {
            topology,
            dir,
            processes,
            shadow: handle,
            pid,
            ended: None,
        }));
        Ok(())
    }

    /// Waits until `readiness` passes, the service exits, the timeout passes or the run is
    /// cancelled. TCP checks connect from inside the service's namespace.
    fn wait_until(
        &self,
        running: &Running,
        readiness: &Readiness,
        emulation: &Emulation,
    ) -> anyhow::Result<()> {
        let handle = running.handle.context("the service has no process")?;
        let mut probe = Probe::new(&running.spec, &readiness.check)?;
        let ns = &emulation.namespaces[running.host];
        // TCP checks connect from inside the service's namespace; entering it can fail.
        let tcp = |host: &str, port: u16| {
            let targets = resolve(&emulation.topology, host, port);
            netns::in_netns(ns, move || tcp_open(&targets))
        };
        let name = &running.spec.name;
        match probe.wait(&self.ctx, handle, name, readiness.timeout, tcp)? {
            Waited::Ready => Ok(()),
            Waited::TimedOut => bail!(
                "service `{name}` was not ready within {:?} ({}, seen from host `{}`)",
                readiness.timeout,
                describe(&readiness.check),
                emulation.topology.hosts[running.host]
            ),
        }
    }

    /// Once Shadow has ended: copies every process's output to its service's log files and
    /// works out how each ended. Does nothing while Shadow runs.
    fn collect_simulation(&mut self) -> anyhow::Result<()> {
        let Some(Backend::Simulation(sim)) = &mut self.backend else {
            return Ok(());
        };
        if sim.ended.is_some() {
            return Ok(());
        }
        let shadow_state = self.ctx.status(sim.shadow)?;
        if !shadow_state.is_finished() {
            return Ok(());
        }
        let outputs =
            shadow::find_outputs(&sim.dir.join("shadow.data"), &sim.topology, &sim.processes);
        let mut log = std::fs::read_to_string(sim.dir.join("shadow.stdout")).unwrap_or_default();
        log.push_str(&std::fs::read_to_string(sim.dir.join("shadow.stderr")).unwrap_or_default());
        let logged = shadow::parse_final_states(&log);
        let mut ended = BTreeMap::new();
        for running in &self.services {
            let name = &running.spec.name;
            let out = outputs.get(name);
            for (from, ext) in out
                .map(|o| [(o.stdout.clone(), "stdout"), (o.stderr.clone(), "stderr")])
                .into_iter()
                .flatten()
            {
                let to = running.spec.log_dir.join(format!("{name}.{ext}"));
                if let Err(e) = std::fs::copy(&from, &to) {
                    tracing::warn!("copying {} to {}: {e}", from.display(), to.display());
                }
            }
            let state = match out.and_then(|o| logged.get(&o.name)) {
                Some(state) => state.clone(),
                None if shadow_state == (ProcessState::Exited { code: 0 })
                    || !logged.is_empty() =>
                {
                    match running.spec.role {
                        Role::Client => ProcessState::Exited { code: 0 },
                        Role::Server => ProcessState::Running { pid: sim.pid },
                    }
                }
                None => ProcessState::Failed {
                    reason: format!(
                        "shadow {shadow_state} (see {})",
                        sim.dir.join("shadow.stderr").display()
                    ),
                },
            };
            ended.insert(name.clone(), state);
        }
        sim.ended = Some(ended);
        Ok(())
    }
}

impl NetworkEnvironment for ShadowNs {
    fn setup_environment(&mut self, plan: &DeploymentPlan) -> anyhow::Result<()> {
        let topology = Topology::new(&self.config).map_err(|p| anyhow::anyhow!(p.join("; ")))?;
        let problems = topology.check_services(plan.services.iter().map(|s| s.name.as_str()));
        if !problems.is_empty() {
            bail!("{}", problems.join("; "));
        }
        let mode = effective_mode(self.config.mode);
        let dir = plan.output_dir.join(NAME);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let processes =
            shadow::processes(&topology, &plan.services, |h| Self::host_env(&topology, h))?;
        let bandwidth_notes = shadow::bandwidth_differences(&topology);
        let mut title = format!(
            "Shadow configuration of experiment `{}` (run {}), written by panther-host's \
             shadow_ns network environment.\nRun it with: shadow --data-directory shadow.data \
             shadow.yaml",
            plan.experiment, plan.run_id
        );
        for note in &bandwidth_notes {
            title.push_str("\nNote: ");
            title.push_str(note);
        }
        let yaml = shadow::config_yaml(&self.config, &topology, &processes, &title);
        std::fs::write(dir.join("shadow.yaml"), yaml).context("writing shadow.yaml")?;
        tracing::info!(%mode, hosts = topology.hosts.len(), "setting up the network");
        match mode {
            Mode::Simulate => {
                for note in &bandwidth_notes {
                    tracing::warn!("{note}");
                }
                self.setup_simulation(topology, dir, processes)
            }
            _ => self.setup_emulation(topology, dir),
        }
    }

    fn deploy_service(&mut self, service: &ServiceSpec) -> anyhow::Result<Deployment> {
        match &self.backend {
            Some(Backend::Emulation(e)) => {
                let host = e
                    .topology
                    .host_of(&service.name)
                    .with_context(|| format!("service `{}` is placed on no host", service.name))?;
                let ns = &e.namespaces[host];
                // `ip netns exec` enters the namespace and becomes the service (`exec`): the
                // service's own wrappers stay the ones the host leaves to end.
                let launcher = [
                    e.ip.display().to_string(),
                    "netns".into(),
                    "exec".into(),
                    ns.clone(),
                ];
                let mut command = Command::for_service(service)
                    .context("the service has an empty command")?
                    .launched_by(&launcher);
                let mut env = Self::host_env(&e.topology, host);
                env.append(&mut command.env);
                command.env = env;
                let id = format!(
                    "{} ({}, namespace {ns})",
                    e.topology.hosts[host],
                    e.topology.addr(host)
                );
                let handle = self
                    .ctx
                    .spawn(&command)
                    .with_context(|| format!("starting service `{}`", service.name))?;
                let pid = self.ctx.pid(handle)?;
                self.services.push(Running {
                    spec: service.clone(),
                    host,
                    handle: Some(handle),
                    stopped: None,
                });
                Ok(Deployment {
                    pid: Some(pid),
                    id: Some(id),
                })
            }
            Some(Backend::Simulation(sim)) => {
                let host = sim
                    .topology
                    .host_of(&service.name)
                    .with_context(|| format!("service `{}` is placed on no host", service.name))?;
                let id = format!("shadow host {}", sim.topology.hosts[host]);
                let pid = sim.pid;
                self.services.push(Running {
                    spec: service.clone(),
                    host,
                    handle: None,
                    stopped: None,
                });
                Ok(Deployment {
                    pid: Some(pid),
                    id: Some(id),
                })
            }
            None => bail!("the network was not set up"),
        }
    }

    fn wait_ready(&mut self, service: &str) -> anyhow::Result<()> {
        let running = self.find(service)?;
        match (&self.backend, &running.spec.ready) {
            (Some(Backend::Emulation(e)), Some(readiness)) => {
                self.wait_until(running, readiness, e)
            }
            // Simulated time cannot be waited for: Shadow starts dependents later instead.
            _ => Ok(()),
        }
    }

    fn get_environment_status(&mut self) -> anyhow::Result<EnvironmentStatus> {
        self.collect_simulation()?;
        let mut services = BTreeMap::new();
        for s in &self.services {
            let state = match (&self.backend, s.handle, &s.stopped) {
                (_, _, Some(stopped)) => stopped.clone(),
                (_, Some(handle), None) => self.ctx.status(handle)?,
                (Some(Backend::Simulation(sim)), None, None) => match &sim.ended {
                    Some(ended) => ended[&s.spec.name].clone(),
                    None => ProcessState::Running { pid: sim.pid },
                },
                _ => ProcessState::Pending,
            };
            services.insert(s.spec.name.clone(), state);
        }
        Ok(EnvironmentStatus { services })
    }

    fn stop_service(&mut self, service: &str) -> anyhow::Result<ProcessState> {
        let grace = self.config.stop_grace;
        let index = self
            .services
            .iter()
            .position(|s| s.spec.name == service)
            .with_context(|| format!("service `{service}` was not deployed"))?;
        if let Some(handle) = self.services[index].handle {
            return self.ctx.stop(handle, grace);
        }
        // Simulation: stopping one process means stopping the simulation.
        if let Some(Backend::Simulation(sim)) = &self.backend {
            if sim.ended.is_none() {
                self.ctx.stop(sim.shadow, grace)?;
            }
        }
        self.collect_simulation()?;
        let state = match &self.backend {
            Some(Backend::Simulation(sim)) => match sim.ended.as_ref().map(|e| &e[service]) {
                // Shadow kills what still runs at its stop time.
                Some(ProcessState::Running { .. }) | None => ProcessState::Signaled { signal: 9 },
                Some(state) => state.clone(),
            },
            _ => ProcessState::Pending,
        };
        self.services[index].stopped = Some(state.clone());
        Ok(state)
    }

    fn teardown_environment(&mut self) -> anyhow::Result<()> {
        let mut errors = Vec::new();
        for s in self.services.iter().rev() {
            if let Some(handle) = s.handle {
                if let Err(e) = self.ctx.stop(handle, self.config.stop_grace) {
                    errors.push(format!("stopping service `{}`: {e}", s.spec.name));
                }
            }
        }
        if let Some(Backend::Simulation(sim)) = &self.backend {
            if let Err(e) = self.ctx.stop(sim.shadow, self.config.stop_grace) {
                errors.push(format!("stopping shadow: {e}"));
            }
        }
        if let Err(e) = self.collect_simulation() {
            errors.push(e.to_string());
        }
        if let Some(Backend::Emulation(mut e)) = self.backend.take() {
            if let Some(mut engine) = e.engine.take() {
                let stats = engine.stop();
                tracing::info!(
                    delivered = stats.delivered,
                    lost = stats.links.iter().map(|l| l.lost).sum::<u64>(),
                    "impairment engine stopped"
                );
                if let Err(err) = std::fs::write(
                    e.dir.join("engine.json"),
                    serde_json::to_vec_pretty(&stats).unwrap_or_default(),
                ) {
                    errors.push(format!("writing engine.json: {err}"));
                }
            }
            for ns in e.namespaces.iter().rev() {
                // Anything a service left behind outside its process group.
                let left = netns::kill_all_in(ns);
                if left > 0 {
                    tracing::warn!(namespace = %ns, processes = left, "killed processes left in the namespace");
                }
                match netns::delete(ns) {
                    Ok(()) => tracing::debug!(namespace = %ns, "namespace removed"),
                    Err(err) => errors.push(format!("{err:#}")),
                }
            }
        }
        self.backend = None;
        self.services.clear();
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("{}", errors.join("; "))
        }
    }

    fn clean_stale(&mut self) -> anyhow::Result<Vec<String>> {
        let mut removed = Vec::new();
        for ns in netns::list(netns::PREFIX) {
            let stale =
                netns::owner_of(&ns).is_none_or(|(pid, start)| !netns::owner_alive(pid, start));
            if !stale {
                continue;
            }
            let killed = netns::kill_all_in(&ns);
            netns::delete(&ns)?;
            removed.push(match killed {
                0 => format!("network namespace {ns}"),
                n => format!("network namespace {ns} and the {n} process(es) still in it"),
            });
        }
        // Host files of namespaces that are already gone.
        if let Ok(dir) = std::fs::read_dir(netns::ETC_NETNS_DIR) {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(netns::PREFIX) && !netns::path(&name).exists() {
                    netns::delete(&name)?;
                    removed.push(format!("{}/{name}", netns::ETC_NETNS_DIR));
                }
            }
        }
        Ok(removed)
    }
}

/// Where a readiness check's `host` is, seen from inside a namespace: a host of the
/// topology by name, else whatever the name resolves to.
fn resolve(topology: &Topology, host: &str, port: u16) -> Vec<SocketAddr> {
    match topology.host_index(host) {
        Some(i) => vec![SocketAddr::from((topology.addr(i), port))],
        None => (host, port)
            .to_socket_addrs()
            .map(|a| a.collect())
            .unwrap_or_default(),
    }
}

fn tcp_open(targets: &[SocketAddr]) -> bool {
    targets
        .iter()
        .any(|addr| TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok())
}

export_plugin!(NetworkEnvironment: ShadowNs);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        let value: toml::Table = toml::from_str(text).unwrap();
        serde_json::from_value(serde_json::to_value(value).unwrap()).unwrap()
    }

    #[test]
    fn validation_checks_the_experiment_services_are_placed() {
        let c = config("hosts = { a = [\"s\"] }");
        let experiment = ValidationContext {
            base_dir: ".".into(),
            services: vec!["s".into(), "t".into()],
            ..ValidationContext::default()
        };
        let problems = ShadowNs::validate(&c, &experiment);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("service `t` is placed on no host")),
            "{problems:?}"
        );
        let placed = ValidationContext {
            base_dir: ".".into(),
            services: vec!["s".into()],
            ..ValidationContext::default()
        };
        assert!(!ShadowNs::validate(&c, &placed)
            .iter()
            .any(|p| p.contains("placed on no host")));
    }

    #[test]
    fn the_manifest_declares_the_capability_and_the_tool() {
        let m = ShadowNs::manifest();
        assert!(m.capabilities.contains(&"network_emulation".to_string()));
        assert_eq!(m.tools[0].program, "ip");
        assert_eq!(m.tools[0].package, "iproute2");
    }

    #[test]
    fn simulation_without_shadow_is_refused_with_a_reason() {
        if find_shadow().is_some() {
            return;
        }
        let why = mode_unavailable(Mode::Simulate).unwrap();
        assert!(why.contains("`shadow` is not on PATH"), "{why}");
        assert_eq!(effective_mode(Mode::Auto), Mode::Emulate);
    }
}
