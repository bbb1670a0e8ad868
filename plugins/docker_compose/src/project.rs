//! A compose project on the engine: its images, networks, volumes and containers, started in
//! dependency order (in parallel where the dependencies allow) and awaited by condition.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use futures_util::future::join_all;
use panther_docker::{
    bollard::{
        models::{
            ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, NetworkConnectRequest,
            NetworkCreateRequest, NetworkingConfig, PortBinding, RestartPolicy,
            RestartPolicyNameEnum, VolumeCreateRequest,
        },
        Docker,
    },
    container::{self, ExitWatch, Health},
    image::{self, BuildSpec},
    RunLabels,
};
use panther_plugin_api::ProcessState;
use tokio::{runtime::Handle, sync::watch};

use crate::compose::{
    ComposeFile, Condition, Healthcheck, Mount, NetworkDef, Port, Restart, Service, VolumeDef,
};

/// The network every service without `networks:` joins.
pub const DEFAULT_NETWORK: &str = "default";

/// How often health and conditions are polled.
const POLL: Duration = Duration::from_millis(25);

/// Whether the run was cancelled (polled while waiting).
pub type Cancelled<'a> = &'a (dyn Fn() -> bool + Send + Sync);

/// Everything needed to create one service's container.
#[derive(Clone, Debug)]
pub struct ContainerDef {
    /// The image to run (the tag a build produces, when there is a build).
    pub image: String,
    /// Built first, when present.
    pub build: Option<BuildSpec>,
    /// Whether a built image belongs to this run (removed at teardown) rather than being a
    /// name the user chose.
    pub per_run_image: bool,
    /// Replaces the image's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's command.
    pub command: Option<Vec<String>>,
    /// `KEY=value` pairs.
    pub env: Vec<String>,
    /// Published ports.
    pub ports: Vec<Port>,
    /// Mounts.
    pub mounts: Vec<Mount>,
    /// Networks (by their name in the file) and extra aliases; never empty.
    pub networks: Vec<(String, Vec<String>)>,
    /// Dependencies.
    pub depends_on: Vec<(String, Condition)>,
    /// Healthcheck.
    pub healthcheck: Option<Healthcheck>,
    /// Restart policy.
    pub restart: Restart,
    /// Extra capabilities.
    pub cap_add: Vec<String>,
    /// Run the engine's init as PID 1 (signals reach the service, orphans are reaped).
    pub init: bool,
}

impl ContainerDef {
    /// A service from a compose file. An image that is built without an `image:` name is
    /// tagged `<project>-<service>` and belongs to the run.
    pub fn from_compose(
        project: &str,
        name: &str,
        service: &Service,
        init_default: bool,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> ContainerDef {
        let (image, per_run_image) = match (&service.image, &service.build) {
            (Some(image), _) => (image.clone(), false),
            (None, _) => (format!("{project}-{name}"), true),
        };
        ContainerDef {
            image,
            build: service.build.clone(),
            per_run_image,
            entrypoint: service.entrypoint.clone(),
            command: service.command.clone(),
            env: service
                .environment
                .iter()
                .filter_map(|(k, v)| match v {
                    Some(v) => Some(format!("{k}={v}")),
                    None => env(k).map(|v| format!("{k}={v}")),
                })
                .collect(),
            ports: service.ports.clone(),
            mounts: service.volumes.clone(),
            networks: if service.networks.is_empty() {
                vec![(DEFAULT_NETWORK.to_string(), Vec::new())]
            } else {
                service.networks.clone()
            },
            depends_on: service.depends_on.clone(),
            healthcheck: service.healthcheck.clone(),
            restart: service.restart.clone().unwrap_or(Restart::No),
            cap_add: service.cap_add.clone(),
            init: service.init.unwrap_or(init_default),
        }
    }

    /// A service that only has an image (from the experiment, without a compose file).
    pub fn plain(
        image: &str,
        build: Option<BuildSpec>,
        per_run_image: bool,
        init: bool,
    ) -> ContainerDef {
        ContainerDef {
            image: image.to_string(),
            build,
            per_run_image,
            entrypoint: None,
            command: None,
            env: Vec::new(),
            ports: Vec::new(),
            mounts: Vec::new(),
            networks: vec![(DEFAULT_NETWORK.to_string(), Vec::new())],
            depends_on: Vec::new(),
            healthcheck: None,
            restart: Restart::No,
            cap_add: Vec::new(),
            init,
        }
    }

    /// Sets (or replaces) one environment variable.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env
            .retain(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) != key);
        self.env.push(format!("{key}={value}"));
    }
}

/// A started container.
#[derive(Debug)]
pub struct Running {
    /// The service.
    pub service: String,
    /// The container's id.
    pub id: String,
    /// The container's name.
    pub name: String,
    /// Its init process on the host.
    pub pid: Option<u32>,
    /// Its address on each network (by the engine's network name).
    pub addresses: BTreeMap<String, String>,
    /// Its exit.
    pub exit: ExitWatch,
    /// Whether the engine restarts it (then its state comes from the engine).
    pub restarts: bool,
    /// Whether it has a healthcheck of its own (the image's counts too).
    pub has_healthcheck: bool,
    /// Whether the host asked it to stop.
    pub stopped_by_host: AtomicBool,
}

/// A project: its definitions, and what of it runs.
pub struct Project {
    docker: Docker,
    handle: Handle,
    /// The project name: prefix of every object's name.
    pub name: String,
    labels: RunLabels,
    log_dir: PathBuf,
    services: BTreeMap<String, ContainerDef>,
    networks: BTreeMap<String, NetworkDef>,
    volumes: BTreeMap<String, VolumeDef>,
    running: Mutex<BTreeMap<String, Arc<Running>>>,
}

impl Project {
    /// An empty project; output of its services goes to `<log_dir>/<service>.stdout|.stderr`.
    pub fn new(
        docker: &Docker,
        handle: Handle,
        name: &str,
        labels: RunLabels,
        log_dir: PathBuf,
    ) -> Self {
        Project {
            docker: docker.clone(),
            handle,
            name: name.to_string(),
            labels,
            log_dir,
            services: BTreeMap::new(),
            networks: BTreeMap::new(),
            volumes: BTreeMap::new(),
            running: Mutex::new(BTreeMap::new()),
        }
    }

    /// A project with every service, network and volume of a compose file.
    pub fn from_compose(
        docker: &Docker,
        handle: Handle,
        name: &str,
        labels: RunLabels,
        log_dir: PathBuf,
        compose: &ComposeFile,
        init_default: bool,
    ) -> Self {
        let mut project = Project::new(docker, handle, name, labels, log_dir);
        let env = |k: &str| std::env::var(k).ok();
        for (service_name, service) in &compose.services {
            project.add(
                service_name,
                ContainerDef::from_compose(name, service_name, service, init_default, &env),
            );
        }
        project.networks = compose.networks.clone();
        project.volumes = compose.volumes.clone();
        project
    }

    /// Adds (or replaces) a service.
    pub fn add(&mut self, service: &str, def: ContainerDef) {
        self.services.insert(service.to_string(), def);
    }

    /// A service's definition.
    pub fn def(&self, service: &str) -> Option<&ContainerDef> {
        self.services.get(service)
    }

    /// A service's definition, to change before it starts.
    pub fn def_mut(&mut self, service: &str) -> Option<&mut ContainerDef> {
        self.services.get_mut(service)
    }

    /// The names of every service.
    pub fn service_names(&self) -> Vec<String> {
        self.services.keys().cloned().collect()
    }

    /// A started service.
    pub fn get(&self, service: &str) -> Option<Arc<Running>> {
        self.running
            .lock()
            .expect("not poisoned")
            .get(service)
            .cloned()
    }

    /// The engine's name of a network of the file.
    pub fn network_name(&self, network: &str) -> String {
        format!("{}_{network}", self.name)
    }

    /// The engine's name of a volume of the file.
    pub fn volume_name(&self, volume: &str) -> String {
        format!("{}_{volume}", self.name)
    }

    /// The name of a service's container.
    pub fn container_name(&self, service: &str) -> String {
        format!("{}-{service}", self.name)
    }

    /// Builds every image that has a build (each distinct one once, in parallel), checks
    /// that every other image is in the local store, and creates the networks and volumes.
    pub async fn prepare(&self) -> anyhow::Result<()> {
        let mut builds: BTreeMap<String, (&BuildSpec, bool)> = BTreeMap::new();
        let mut named = BTreeSet::new();
        for def in self.services.values() {
            match &def.build {
                Some(build) => {
                    if let Some((other, _)) = builds.get(&def.image) {
                        if *other != build {
                            bail!("image `{}` is built from two different contexts", def.image);
                        }
                    }
                    builds.insert(def.image.clone(), (build, def.per_run_image));
                }
                None => {
                    named.insert(def.image.clone());
                }
            }
        }
        let started = Instant::now();
        let results = join_all(builds.iter().map(|(tag, (build, per_run))| async move {
            let labels = if *per_run {
                self.labels.base()
            } else {
                HashMap::new()
            };
            image::build(&self.docker, build, tag, &labels, !*per_run).await
        }))
        .await;
        for result in results {
            result?;
        }
        if !builds.is_empty() {
            tracing::debug!(images = builds.len(), after = ?started.elapsed(), "images built");
        }
        for image in named.iter().filter(|i| !builds.contains_key(*i)) {
            image::require(&self.docker, image).await?;
        }

        let mut used: BTreeSet<&str> = BTreeSet::new();
        for def in self.services.values() {
            used.extend(def.networks.iter().map(|(n, _)| n.as_str()));
        }
        for network in used {
            let def = self.networks.get(network).cloned().unwrap_or_default();
            let mut labels = self.labels.base();
            labels.extend(def.labels.clone());
            let request = NetworkCreateRequest {
                name: self.network_name(network),
                driver: Some(def.driver.clone().unwrap_or_else(|| "bridge".into())),
                internal: Some(def.internal),
                labels: Some(labels),
                ..Default::default()
            };
            self.docker.create_network(request).await.map_err(|err| {
                anyhow::anyhow!(
                    "cannot create network `{}`: {} (left by a run that was killed? \
                     `panther-host clean` removes what such runs left)",
                    self.network_name(network),
                    panther_docker::api_error(&err)
                )
            })?;
        }
        for (volume, def) in &self.volumes {
            let mut labels = self.labels.base();
            labels.extend(def.labels.clone());
            let request = VolumeCreateRequest {
                name: Some(self.volume_name(volume)),
                driver: def.driver.clone(),
                labels: Some(labels),
                ..Default::default()
            };
            self.docker.create_volume(request).await.map_err(|err| {
                anyhow::anyhow!(
                    "cannot create volume `{}`: {}",
                    self.volume_name(volume),
                    panther_docker::api_error(&err)
                )
            })?;
        }
        Ok(())
    }

    /// Starts the given services, each as soon as its dependencies are met, in parallel
    /// otherwise; with `wait_healthy`, also waits until each one with a healthcheck is
    /// healthy. Dependencies outside `services` must have been started already.
    pub async fn up(
        &self,
        services: &[String],
        wait_healthy: bool,
        cancelled: Cancelled<'_>,
    ) -> anyhow::Result<()> {
        let mut channels: HashMap<&str, watch::Sender<Option<bool>>> = HashMap::new();
        let mut receivers: HashMap<&str, watch::Receiver<Option<bool>>> = HashMap::new();
        for name in services {
            let (tx, rx) = watch::channel(None);
            channels.insert(name.as_str(), tx);
            receivers.insert(name.as_str(), rx);
        }
        let receivers = &receivers;
        let results = join_all(services.iter().map(|name| {
            let tx = channels.remove(name.as_str()).expect("one channel per service");
            async move {
                let result = async {
                    let def = self.services.get(name).with_context(|| format!("no service `{name}`"))?;
                    for (dep, _) in &def.depends_on {
                        if let Some(rx) = receivers.get(dep.as_str()) {
                            let mut rx = rx.clone();
                            let started = rx.wait_for(Option::is_some).await.map(|v| *v == Some(true));
                            if !matches!(started, Ok(true)) {
                                bail!("service `{name}` was not started: its dependency `{dep}` failed");
                            }
                        }
                    }
                    self.start(name, cancelled).await?;
                    if wait_healthy {
                        self.wait_healthy(name, cancelled).await?;
                    }
                    Ok(())
                }
                .await;
                let _ = tx.send(Some(result.is_ok()));
                result
            }
        }))
        .await;
        let errors: Vec<String> = results
            .into_iter()
            .filter_map(|r| r.err())
            .map(|e| format!("{e:#}"))
            .filter(|e| !e.contains("its dependency"))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("{}", errors.join("; "))
        }
    }

    /// Waits for a service's dependencies, then creates and starts its container and follows
    /// it (output into its capture files).
    pub async fn start(
        &self,
        service: &str,
        cancelled: Cancelled<'_>,
    ) -> anyhow::Result<Arc<Running>> {
        let def = self
            .services
            .get(service)
            .with_context(|| format!("no service `{service}` in project `{}`", self.name))?;
        for (dep, condition) in &def.depends_on {
            self.wait_condition(service, dep, *condition, cancelled)
                .await?;
        }
        let name = self.container_name(service);
        let body = self.create_body(service, def);
        let id = container::create(&self.docker, &name, body).await?;
        for (network, aliases) in def.networks.iter().skip(1) {
            let request = NetworkConnectRequest {
                container: id.clone(),
                endpoint_config: Some(EndpointSettings {
                    aliases: Some(
                        std::iter::once(service.to_string())
                            .chain(aliases.iter().cloned())
                            .collect(),
                    ),
                    ..Default::default()
                }),
            };
            self.docker
                .connect_network(&self.network_name(network), request)
                .await
                .map_err(|err| {
                    anyhow::anyhow!(
                        "cannot connect `{name}` to network `{}`: {}",
                        self.network_name(network),
                        panther_docker::api_error(&err)
                    )
                })?;
        }
        let (stdout, stderr) = container::capture_files(&self.log_dir, service)?;
        container::start(&self.docker, &id, &name).await?;
        let exit = container::follow(&self.docker, &self.handle, &id, stdout, stderr);
        let inspected = container::inspect(&self.docker, &id).await?;
        let running = Arc::new(Running {
            service: service.to_string(),
            id,
            name,
            pid: inspected.pid,
            addresses: inspected.addresses,
            exit,
            restarts: def.restart != Restart::No,
            has_healthcheck: inspected.health != Health::None
                || def
                    .healthcheck
                    .as_ref()
                    .is_some_and(|h| h.test.first().is_some_and(|t| t != "NONE")),
            stopped_by_host: AtomicBool::new(false),
        });
        self.running
            .lock()
            .expect("not poisoned")
            .insert(service.to_string(), Arc::clone(&running));
        tracing::debug!(service, container = %running.name, pid = ?running.pid, "started");
        Ok(running)
    }

    fn create_body(&self, service: &str, def: &ContainerDef) -> ContainerCreateBody {
        let mut binds = Vec::new();
        let mut anonymous = Vec::new();
        let mut tmpfs = HashMap::new();
        for mount in &def.mounts {
            match mount {
                Mount::Bind {
                    source,
                    target,
                    read_only,
                } => binds.push(format!(
                    "{}:{target}{}",
                    source.display(),
                    if *read_only { ":ro" } else { "" }
                )),
                Mount::Volume {
                    name,
                    target,
                    read_only,
                } => binds.push(format!(
                    "{}:{target}{}",
                    self.volume_name(name),
                    if *read_only { ":ro" } else { "" }
                )),
                Mount::Anonymous { target } => anonymous.push(target.clone()),
                Mount::Tmpfs { target } => {
                    tmpfs.insert(target.clone(), String::new());
                }
            }
        }
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for port in &def.ports {
            bindings
                .entry(format!("{}/{}", port.target, port.protocol))
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: port.host_ip.clone(),
                    host_port: port.published.map(|p| p.to_string()),
                });
        }
        let exposed: Vec<String> = bindings.keys().cloned().collect();
        let nanos =
            |d: Option<Duration>| d.map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let healthcheck = def.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: nanos(h.interval),
            timeout: nanos(h.timeout),
            retries: h.retries.map(i64::from),
            start_period: nanos(h.start_period),
            start_interval: None,
        });
        let restart = match &def.restart {
            Restart::No => RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            },
            Restart::Always => RestartPolicy {
                name: Some(RestartPolicyNameEnum::ALWAYS),
                maximum_retry_count: None,
            },
            Restart::UnlessStopped => RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            },
            Restart::OnFailure(n) => RestartPolicy {
                name: Some(RestartPolicyNameEnum::ON_FAILURE),
                maximum_retry_count: n.map(i64::from),
            },
        };
        let (first_network, first_aliases) = def
            .networks
            .first()
            .cloned()
            .unwrap_or_else(|| (DEFAULT_NETWORK.to_string(), Vec::new()));
        let primary = self.network_name(&first_network);
        let endpoint = EndpointSettings {
            aliases: Some(
                std::iter::once(service.to_string())
                    .chain(first_aliases)
                    .collect(),
            ),
            ..Default::default()
        };
        ContainerCreateBody {
            image: Some(def.image.clone()),
            entrypoint: def.entrypoint.clone(),
            cmd: def.command.clone(),
            env: Some(def.env.clone()),
            labels: Some(self.labels.service(service)),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            volumes: (!anonymous.is_empty()).then_some(anonymous),
            healthcheck,
            host_config: Some(HostConfig {
                binds: (!binds.is_empty()).then_some(binds),
                tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
                port_bindings: (!bindings.is_empty()).then_some(bindings),
                cap_add: (!def.cap_add.is_empty()).then(|| def.cap_add.clone()),
                restart_policy: Some(restart),
                init: Some(def.init),
                network_mode: Some(primary.clone()),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(primary, endpoint)])),
            }),
            ..Default::default()
        }
    }

    /// Waits until `dep` meets `condition` for `service`.
    pub async fn wait_condition(
        &self,
        service: &str,
        dep: &str,
        condition: Condition,
        cancelled: Cancelled<'_>,
    ) -> anyhow::Result<()> {
        let Some(running) = self.get(dep) else {
            bail!(
                "service `{service}` depends on `{dep}` ({}), which was not started before it",
                condition.as_str()
            );
        };
        match condition {
            Condition::Started => Ok(()),
            Condition::Healthy => self
                .wait_healthy(dep, cancelled)
                .await
                .with_context(|| format!("service `{service}` waits for `{dep}` to be healthy")),
            Condition::CompletedSuccessfully => loop {
                if let Some(code) = running.exit.code() {
                    if code == 0 {
                        return Ok(());
                    }
                    bail!("service `{service}` waits for `{dep}` to complete successfully, but it exited with code {code}");
                }
                if cancelled() {
                    bail!("cancelled while `{service}` waited for `{dep}` to complete");
                }
                tokio::time::sleep(POLL).await;
            },
        }
    }

    /// Waits until a started service is healthy. Fails when it becomes unhealthy, exits, has
    /// no healthcheck, or is not healthy by the time its healthcheck settings allow.
    pub async fn wait_healthy(
        &self,
        service: &str,
        cancelled: Cancelled<'_>,
    ) -> anyhow::Result<()> {
        let running = self
            .get(service)
            .with_context(|| format!("service `{service}` was not started"))?;
        let def = self.services.get(service);
        let deadline = Instant::now() + health_deadline(def.and_then(|d| d.healthcheck.as_ref()));
        loop {
            let inspected = container::inspect(&self.docker, &running.id).await?;
            match inspected.health {
                Health::Healthy => return Ok(()),
                Health::Unhealthy(last) => bail!("service `{service}` is unhealthy ({last})"),
                Health::None => bail!(
                    "service `{service}` has no healthcheck, so it can never be healthy (give it a `healthcheck:`)"
                ),
                Health::Starting => {}
            }
            if let Some(code) = inspected.exit_code.filter(|_| !inspected.running) {
                bail!("service `{service}` exited with code {code} before it was healthy");
            }
            if cancelled() {
                bail!("cancelled while waiting for `{service}` to be healthy");
            }
            if Instant::now() >= deadline {
                bail!("service `{service}` was not healthy in time");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// How a started service is doing.
    pub async fn state(&self, running: &Running) -> ProcessState {
        let stopped = running.stopped_by_host.load(Ordering::Relaxed);
        if !running.restarts {
            if let Some(code) = running.exit.code() {
                return container::state_of(code, stopped);
            }
            return ProcessState::Running {
                pid: running.pid.unwrap_or(0),
            };
        }
        match container::inspect(&self.docker, &running.id).await {
            Ok(i) if i.running => ProcessState::Running {
                pid: i.pid.unwrap_or(0),
            },
            Ok(i) => container::state_of(i.exit_code.unwrap_or(-1), stopped),
            Err(e) => ProcessState::Failed {
                reason: format!("{e:#}"),
            },
        }
    }

    /// Stops a started service (its stop signal, SIGKILL after `grace`) and says how it ended.
    pub async fn stop(&self, running: &Running, grace: Duration) -> anyhow::Result<ProcessState> {
        if !running.restarts && running.exit.code().is_some() {
            return Ok(self.state(running).await);
        }
        running.stopped_by_host.store(true, Ordering::Relaxed);
        container::stop(&self.docker, &running.id, grace).await?;
        if !running.restarts {
            if let Some(code) = running.exit.wait_for(Duration::from_secs(5)).await {
                return Ok(container::state_of(code, true));
            }
        }
        match container::inspect(&self.docker, &running.id).await {
            Ok(i) => Ok(container::state_of(i.exit_code.unwrap_or(-1), true)),
            Err(e)
                if e.chain()
                    .any(|c| c.to_string().contains("No such container")) =>
            {
                Ok(ProcessState::Signaled { signal: 9 })
            }
            Err(e) => Err(e),
        }
    }

    /// Removes every container, network, volume and per-run image of this run.
    pub async fn down(&self) -> anyhow::Result<Vec<String>> {
        self.running.lock().expect("not poisoned").clear();
        panther_docker::cleanup::remove_run(&self.docker, &self.labels.run_id).await
    }
}

/// How long a healthcheck may take to pass at most: its start period plus one more try than
/// its retries, with the engine's defaults (30s interval and timeout, 3 retries).
fn health_deadline(health: Option<&Healthcheck>) -> Duration {
    let interval = health
        .and_then(|h| h.interval)
        .unwrap_or(Duration::from_secs(30));
    let timeout = health
        .and_then(|h| h.timeout)
        .unwrap_or(Duration::from_secs(30));
    let retries = health.and_then(|h| h.retries).unwrap_or(3);
    let start = health.and_then(|h| h.start_period).unwrap_or_default();
    start + (interval + timeout) * (retries + 1) + Duration::from_secs(5)
}
