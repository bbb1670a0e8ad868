//! `localhost_single_container`: one container on the host's network runs every service of
//! the experiment. The results folder, the experiment's folder and the services' working
//! directories are mounted at the same paths inside, so commands, capture files and the
//! files execution environments write mean the same inside and out. Services are started
//! inside it (`docker exec`, through the engine's API), awaited, stopped and torn down the way
//! `localhost` does it for local processes; then the container goes.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use panther_docker::{
    bollard::models::{ContainerCreateBody, HostConfig},
    cleanup, container,
    exec::{self, Exec, ExecSpec},
    image::{self, BuildSpec},
    ready::{self, Probe},
    sanitize_name, site, Engine, RunLabels,
};
use panther_plugin_api::{prelude::*, ValidationContext};

/// The plugin's name, also its label on what it creates.
pub const NAME: &str = "localhost_single_container";

/// The `[network]` section for `localhost_single_container`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The image of the container (required): an image in the engine's local store, or a
    /// folder with a Dockerfile (relative to the experiment file's folder), built for the run.
    /// It must have what the services' commands need (their libraries, a `sleep` for the
    /// default `keepalive`…); the programs themselves may come from a mounted folder.
    #[serde(default)]
    pub image: Option<String>,
    /// The Dockerfile when `image` is a folder (relative to it; default `Dockerfile`).
    #[serde(default)]
    pub dockerfile: Option<String>,
    /// More host folders to mount at the same path inside, relative to the experiment file's
    /// folder; `PATH:ro` mounts read-only. The results folder, the experiment's folder and
    /// every service's working directory are always mounted.
    #[serde(default)]
    pub mounts: Vec<String>,
    /// The container's main process, which keeps it up while the services run inside it.
    /// Default: the image's own entrypoint and command.
    #[serde(default)]
    pub keepalive: Option<Vec<String>>,
    /// How long a service gets between SIGTERM and SIGKILL when it is stopped.
    #[serde(default = "default_grace", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub stop_grace: Duration,
}

fn default_grace() -> Duration {
    Duration::from_secs(3)
}

/// Problems with a configuration, found without the engine.
pub fn check_config(config: &Config, base_dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    match &config.image {
        None => problems.push(
            "`image` is needed: an image in the engine's local store or a folder with a Dockerfile"
                .to_string(),
        ),
        Some(name) => problems.extend(image::check_setting(
            name,
            config.dockerfile.as_deref(),
            base_dir,
        )),
    }
    for mount in &config.mounts {
        let (path, _) = split_mount(mount);
        if !base_dir.join(path).exists() {
            problems.push(format!(
                "mount `{mount}`: {} does not exist",
                base_dir.join(path).display()
            ));
        }
    }
    if config.keepalive.as_ref().is_some_and(|k| k.is_empty()) {
        problems.push("`keepalive` must name a program".to_string());
    }
    problems
}

/// A path as the container must see it: absolute, relative ones taken from the host's
/// working directory (the folder a relative experiment path was given from).
fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    std::fs::canonicalize(&joined).unwrap_or(joined)
}

/// `PATH` or `PATH:ro`.
fn split_mount(mount: &str) -> (&str, bool) {
    match mount.strip_suffix(":ro") {
        Some(path) => (path, true),
        None => (mount.strip_suffix(":rw").unwrap_or(mount), false),
    }
}

/// The host folders to mount at the same path, each once: a folder inside another one
/// mounted the same way is covered by it.
fn same_path_binds(folders: &[(PathBuf, bool)]) -> Vec<String> {
    let mut kept: Vec<(PathBuf, bool)> = Vec::new();
    let mut sorted = folders.to_vec();
    sorted.sort_by_key(|(p, _)| p.components().count());
    for (path, read_only) in sorted {
        let covered = kept
            .iter()
            .any(|(k, ro)| path.starts_with(k) && *ro == read_only);
        if !covered {
            kept.push((path, read_only));
        }
    }
    kept.iter()
        .map(|(p, ro)| format!("{0}:{0}{1}", p.display(), if *ro { ":ro" } else { "" }))
        .collect()
}

struct Service {
    spec: ServiceSpec,
    exec: Exec,
    stopped_by_host: bool,
}

/// Runs every service inside one container on the host's network.
pub struct SingleContainer {
    ctx: Context,
    config: Config,
    engine: Option<Engine>,
    run_id: Option<String>,
    container: Option<(String, String)>,
    /// In deployment order.
    services: Vec<Service>,
}

impl SingleContainer {
    fn engine(&mut self) -> anyhow::Result<&Engine> {
        if self.engine.is_none() {
            self.engine = Some(Engine::connect()?);
        }
        Ok(self.engine.as_ref().expect("just connected"))
    }

    fn find(&self, name: &str) -> anyhow::Result<usize> {
        self.services
            .iter()
            .position(|s| s.spec.name == name)
            .with_context(|| format!("service `{name}` was not deployed"))
    }

    fn state(&self, service: &Service) -> ProcessState {
        match service.exec.exit.code() {
            Some(code) => container::state_of(code, service.stopped_by_host),
            None => ProcessState::Running {
                pid: service.exec.pid.unwrap_or(0),
            },
        }
    }

    /// Stops one service the way `localhost` does: SIGTERM to its process group (or to the
    /// process when it leads none), SIGKILL after the grace period.
    fn stop(&mut self, index: usize) -> ProcessState {
        let grace = self.config.stop_grace;
        let service = &mut self.services[index];
        if service.exec.exit.code().is_some() {
            return self.state(&self.services[index]);
        }
        service.stopped_by_host = true;
        let Some(pid) = service.exec.pid else {
            return ProcessState::Failed {
                reason: "its process id was never known, so it could not be signalled".into(),
            };
        };
        let exit = service.exec.exit.clone();
        let engine = self
            .engine
            .as_ref()
            .expect("deployed services have an engine");
        let mut grace = grace;
        let wrappers = service.spec.parent_wrappers.len();
        if wrappers > 0 {
            // Under tools that report when their child exits (GNU time, strace), the
            // service's own processes get the signal first and the tools write their reports.
            let started = std::time::Instant::now();
            if self
                .ctx
                .stop_below_wrappers(pid, wrappers, grace, || exit.code().is_some())
            {
                if let Some(code) = engine.block_on(exit.wait_for(Duration::from_secs(1))) {
                    return container::state_of(code, true);
                }
            }
            grace = grace
                .saturating_sub(started.elapsed())
                .max(Duration::from_millis(100));
        }
        for (signal, wait) in [
            (nix::sys::signal::Signal::SIGTERM, grace),
            (nix::sys::signal::Signal::SIGKILL, Duration::from_secs(5)),
        ] {
            signal_process(pid, signal);
            if let Some(code) = engine.block_on(exit.wait_for(wait)) {
                return container::state_of(code, true);
            }
        }
        ProcessState::Failed {
            reason: format!("process {pid} did not end after SIGKILL"),
        }
    }
}

/// Signals the process group `pid` leads, or the process alone.
fn signal_process(pid: u32, signal: nix::sys::signal::Signal) {
    use nix::unistd::Pid;
    let target = Pid::from_raw(pid as i32);
    let leads_group = nix::unistd::getpgid(Some(target)).is_ok_and(|g| g == target);
    let result = if leads_group {
        nix::sys::signal::killpg(target, signal)
    } else {
        nix::sys::signal::kill(target, signal)
    };
    if let Err(err) = result {
        tracing::debug!(pid, ?signal, "cannot signal: {err}");
    }
}

impl Plugin for SingleContainer {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new(NAME)
            .capability(capability::CONTAINERS)
            .alias_key(
                "volumes",
                "mounts",
                "PANTHER's name for the host folders mounted into the container",
            )
            .refuse_key(
                "network_name",
                "every service shares the one container's network (localhost): there is no network to name",
            )
            .refuse_key(
                "subnet",
                "every service shares the one container's network (localhost): there is no subnet to choose",
            )
            .refuse_key(
                "enable_ipv6",
                "every service shares the one container's network (localhost): there is nothing to enable",
            )
            .refuse_key(
                "service_prefix",
                "the container is named after the run; the services are processes inside it",
            )
            .refuse_key("environment", "write `env = { ... }` in each `[[service]]`")
            .refuse_key(
                "version",
                "there is no compose file here, so no file version to choose",
            )
    }

    fn validate(config: &Config, experiment: &ValidationContext) -> Vec<String> {
        let base_dir = experiment.base_dir.as_path();
        check_config(config, base_dir)
    }

    fn new(config: Config, ctx: Context) -> anyhow::Result<Self> {
        Ok(SingleContainer {
            ctx,
            config,
            engine: None,
            run_id: None,
            container: None,
            services: Vec::new(),
        })
    }
}

impl NetworkEnvironment for SingleContainer {
    /// Every service runs in the one container. A program on a folder mounted at the same
    /// path is read on this machine; one the image brings, from the build folder.
    fn sites(config: &Config, experiment: &ValidationContext) -> BTreeMap<String, ServiceSite> {
        let Some(image) = config.image.clone() else {
            return BTreeMap::new();
        };
        let base_dir = absolute(&experiment.base_dir);
        let mut mounted = vec![base_dir.clone()];
        mounted.extend(
            config
                .mounts
                .iter()
                .map(|m| absolute(&base_dir.join(split_mount(m).0))),
        );
        let build = BuildSpec::of_setting(&image, config.dockerfile.as_deref(), &base_dir);
        let mut sites = BTreeMap::new();
        for service in &experiment.services {
            let program = experiment.commands.get(service).and_then(|c| c.first());
            let linkage = match program {
                Some(p) if mounted.iter().any(|m| Path::new(p).starts_with(m)) => {
                    site::host_linkage(Path::new(p))
                }
                Some(p) => build
                    .as_ref()
                    .map_or(Linkage::Unknown, |b| site::linkage_in_build(b, p)),
                None => Linkage::Unknown,
            };
            let image = image.clone();
            let libc = build.as_ref().and_then(site::libc_in_build);
            sites.insert(
                service.clone(),
                ServiceSite::Container {
                    environment: NAME.to_string(),
                    image,
                    linkage,
                    libc,
                },
            );
        }
        sites
    }

    fn setup_environment(&mut self, plan: &DeploymentPlan) -> anyhow::Result<()> {
        self.run_id = Some(plan.run_id.clone());
        let labels = RunLabels::new(&plan.run_id, &plan.experiment, NAME);
        let name = sanitize_name(&format!("panther-{}", plan.run_id));
        let image_setting = self.config.image.clone().context(
            "`image` is needed: an image in the engine's local store or a folder with a Dockerfile",
        )?;
        let base_dir = absolute(&plan.base_dir);
        let mut folders: Vec<(PathBuf, bool)> = vec![
            (absolute(&plan.output_dir), false),
            (base_dir.clone(), false),
        ];
        folders.extend(
            plan.services
                .iter()
                .filter_map(|s| s.cwd.as_deref())
                .map(|c| (absolute(c), false)),
        );
        for mount in &self.config.mounts {
            let (path, read_only) = split_mount(mount);
            folders.push((absolute(&base_dir.join(path)), read_only));
        }
        // What the execution environments brought along: folders they write to at the same
        // path (usually inside the results folder, mounted already), and their tools.
        let mut tools: Vec<String> = Vec::new();
        for mount in plan.services.iter().flat_map(|s| &s.mounts) {
            if mount.source == mount.target {
                folders.push((absolute(&mount.source), mount.read_only));
                continue;
            }
            let bind = format!(
                "{}:{}{}",
                mount.source.display(),
                mount.target.display(),
                if mount.read_only { ":ro" } else { "" }
            );
            if !tools.contains(&bind) {
                tools.push(bind);
            }
        }
        folders.retain(|(p, _)| p.is_absolute() && p.exists());
        let mut binds = same_path_binds(&folders);
        binds.extend(tools);
        let keepalive = self.config.keepalive.clone();
        let keepalive_given = keepalive.is_some();
        let dockerfile = self.config.dockerfile.clone();
        let engine = self.engine()?;
        let image = match BuildSpec::of_setting(&image_setting, dockerfile.as_deref(), &base_dir) {
            Some(build) => {
                let tag = format!("{name}-image");
                engine.block_on(image::build(
                    engine.docker(),
                    &build,
                    &tag,
                    &labels.base(),
                    false,
                ))?;
                tag
            }
            None => {
                engine.block_on(image::require(engine.docker(), &image_setting))?;
                image_setting
            }
        };
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            entrypoint: keepalive,
            labels: Some(labels.service("all")),
            host_config: Some(HostConfig {
                network_mode: Some("host".to_string()),
                binds: Some(binds.clone()),
                init: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let docker = engine.docker();
        let id = engine
            .block_on(container::create(docker, &name, body))
            .map_err(|err| match keepalive_given {
                true => err,
                false => err.context(
                    "creating the container (an image without a command of its own needs \
                     `keepalive`, e.g. [\"sleep\", \"infinity\"])",
                ),
            })?;
        engine.block_on(container::start(docker, &id, &name))?;
        let inspected = engine.block_on(container::inspect(docker, &id))?;
        if !inspected.running {
            bail!(
                "the container's main process exited at once (code {}): give `keepalive` a \
                 command that keeps running in image `{image}`, e.g. [\"sleep\", \"infinity\"]",
                inspected.exit_code.unwrap_or(-1)
            );
        }
        tracing::debug!(container = %name, mounts = ?binds, "container up");
        self.container = Some((id, name));
        Ok(())
    }

    fn deploy_service(&mut self, service: &ServiceSpec) -> anyhow::Result<Deployment> {
        let (id, name) = self
            .container
            .clone()
            .context("the environment was not set up")?;
        let engine = self
            .engine
            .as_ref()
            .context("the environment was not set up")?;
        let (stdout, stderr) = container::capture_files(&service.log_dir, &service.name)?;
        let spec = ExecSpec {
            argv: service.argv.clone(),
            env: service.env.clone(),
            cwd: service.cwd.as_deref().map(absolute),
        };
        let started = engine.block_on(exec::start(
            engine.docker(),
            &engine.handle(),
            &id,
            &spec,
            &stdout,
            &stderr,
        ));
        let started = match started {
            Ok(started) => started,
            Err(err) => {
                let state = engine
                    .block_on(container::inspect(engine.docker(), &id))
                    .map(|i| {
                        if i.running {
                            String::new()
                        } else {
                            format!(
                                " (container `{name}` exited with code {})",
                                i.exit_code.unwrap_or(-1)
                            )
                        }
                    })
                    .unwrap_or_default();
                return Err(err.context(format!("starting service `{}`{state}", service.name)));
            }
        };
        let deployment = Deployment {
            pid: started.pid,
            id: Some(started.id.clone()),
        };
        self.services.push(Service {
            spec: service.clone(),
            exec: started,
            stopped_by_host: false,
        });
        Ok(deployment)
    }

    fn wait_ready(&mut self, service: &str) -> anyhow::Result<()> {
        let service = &self.services[self.find(service)?];
        let Some(readiness) = &service.spec.ready else {
            return Ok(());
        };
        let name = &service.spec.name;
        let mut probe = Probe::new(&service.spec, &readiness.check)?;
        let started = Instant::now();
        loop {
            // The container shares the host's network: a TCP check works from here as is.
            if probe.passes(ready::tcp_open) {
                tracing::debug!(service = %name, after = ?started.elapsed(), "ready");
                return Ok(());
            }
            if service.exec.exit.code().is_some() {
                bail!(
                    "service `{name}` {} before it was ready (see {})",
                    self.state(service),
                    probe.stderr().display()
                );
            }
            if self.ctx.is_cancelled() {
                bail!("cancelled while waiting for service `{name}`");
            }
            if started.elapsed() >= readiness.timeout {
                bail!(
                    "service `{name}` was not ready within {:?} ({})",
                    readiness.timeout,
                    ready::describe(&readiness.check)
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn get_environment_status(&mut self) -> anyhow::Result<EnvironmentStatus> {
        let services: BTreeMap<String, ProcessState> = self
            .services
            .iter()
            .map(|s| (s.spec.name.clone(), self.state(s)))
            .collect();
        Ok(EnvironmentStatus { services })
    }

    fn stop_service(&mut self, service: &str) -> anyhow::Result<ProcessState> {
        let index = self.find(service)?;
        Ok(self.stop(index))
    }

    fn teardown_environment(&mut self) -> anyhow::Result<()> {
        let Some(run_id) = self.run_id.clone() else {
            return Ok(());
        };
        // Without a connection, setup created nothing.
        if self.engine.is_none() {
            return Ok(());
        }
        for index in (0..self.services.len()).rev() {
            self.stop(index);
        }
        self.services.clear();
        self.container = None;
        let engine = self.engine()?;
        let removed = engine.block_on(cleanup::remove_run(engine.docker(), &run_id))?;
        tracing::debug!(run = %run_id, "torn down: {}", removed.join(", "));
        Ok(())
    }

    fn clean_stale(&mut self) -> anyhow::Result<Vec<String>> {
        let engine = self.engine()?;
        engine.block_on(cleanup::clean_stale(engine.docker(), NAME))
    }
}

export_plugin!(NetworkEnvironment: SingleContainer);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_folders_are_mounted_once() {
        let binds = same_path_binds(&[
            (PathBuf::from("/work/exp/results/run"), false),
            (PathBuf::from("/work/exp"), false),
            (PathBuf::from("/work/exp/bin"), true),
            (PathBuf::from("/opt/tools"), true),
        ]);
        assert_eq!(
            binds,
            [
                "/work/exp:/work/exp",
                "/opt/tools:/opt/tools:ro",
                "/work/exp/bin:/work/exp/bin:ro"
            ]
        );
    }

    #[test]
    fn the_image_is_required_and_mounts_must_exist() {
        let config: Config = serde_json::from_value(serde_json::json!({
            "mounts": ["no-such-folder:ro"]
        }))
        .unwrap();
        let problems = check_config(&config, Path::new("/"));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("`image` is needed"));
        assert!(problems[1].contains("mount `no-such-folder:ro`: /no-such-folder does not exist"));
    }
}
