//! `docker_compose`: every service of an experiment runs in its own container on a network of
//! its own run, on the local Docker engine (through its API; nothing is pulled: images are
//! built here from local folders or already in the engine's store).
//!
//! The services come from a compose file (`compose_file`), or, without one, from the
//! experiment's `[[service]]`s, all run from one `image`. See the README for what a compose
//! file may say and how it meets the experiment.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{atomic::Ordering, Arc},
    thread,
    time::{Duration, Instant},
};

use panther_docker::{
    cleanup, container,
    image::{self, BuildSpec},
    ready::{self, Probe},
    sanitize_name, site, Engine, RunLabels,
};
use panther_plugin_api::{prelude::*, warning, ValidationContext};

pub mod compose;
pub mod dotenv;
pub mod interpolate;
pub mod keys;
pub mod positions;
pub mod project;

use compose::{ComposeFile, Mode, Mount};
use project::{ContainerDef, Project, Running};

/// The plugin's name, also its label on what it creates.
pub const NAME: &str = "docker_compose";

/// The `[network]` section for `docker_compose`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A compose file (YAML), relative to the experiment file's folder. Its services named
    /// like the experiment's `[[service]]`s run those services; the others are started
    /// before them. Without it, every service of the experiment runs from `image`.
    #[serde(default)]
    pub compose_file: Option<PathBuf>,
    /// Prefix of the names of the run's containers, networks and volumes. Default:
    /// `panther-<run id>`, unique per run.
    #[serde(default)]
    pub project_name: Option<String>,
    /// The image of the services the compose file does not define (all of them without a
    /// compose file): an image in the engine's local store, or a folder with a Dockerfile
    /// (relative to the experiment file's folder), built for the run.
    #[serde(default)]
    pub image: Option<String>,
    /// The Dockerfile when `image` is a folder (relative to it; default `Dockerfile`).
    #[serde(default)]
    pub dockerfile: Option<String>,
    /// Run the engine's init process as PID 1 of every container, so that a service gets
    /// the stop signal and its orphans are reaped (a compose service's `init:` wins).
    #[serde(default = "yes")]
    pub init: bool,
    /// How long a service gets between its stop signal and SIGKILL.
    #[serde(default = "default_grace", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub stop_grace: Duration,
    /// Refuse every key of the compose file that is not supported. Without it, a key whose
    /// absence cannot change what a run means (`labels`, `logging`, a key the Compose
    /// Specification does not have) is warned about and left out, as the specification says.
    #[serde(default)]
    pub strict: bool,
}

impl Config {
    /// How the compose file's unsupported keys are treated.
    pub fn mode(&self) -> Mode {
        if self.strict {
            Mode::Strict
        } else {
            Mode::Warn
        }
    }
}

fn yes() -> bool {
    true
}

fn default_grace() -> Duration {
    Duration::from_secs(3)
}

/// Problems with a configuration, found without the engine: the compose file and the image
/// folder are read, nothing else.
pub fn check_config(config: &Config, base_dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(name) = &config.project_name {
        let ok = !name.is_empty()
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !ok {
            problems.push(format!(
                "`project_name` `{name}` must be lowercase letters, digits, `-` and `_`, starting with a letter or digit"
            ));
        }
    }
    match &config.compose_file {
        Some(file) => {
            let path = base_dir.join(file);
            match compose::load(&path, config.mode()) {
                Ok(compose) => problems.extend(compose.warnings.iter().map(warning)),
                Err(found) => problems.extend(found),
            }
        }
        None if config.image.is_none() => problems.push(
            "`image` is needed when there is no `compose_file`: an image in the engine's local \
             store or a folder with a Dockerfile, to run the experiment's services from"
                .to_string(),
        ),
        None => {}
    }
    if let Some(image) = &config.image {
        problems.extend(image::check_setting(
            image,
            config.dockerfile.as_deref(),
            base_dir,
        ));
    } else if config.dockerfile.is_some() {
        problems.push("`dockerfile` applies only when `image` is a folder".to_string());
    }
    problems
}

/// What one run created and runs.
struct RunState {
    project: Project,
    /// The experiment's services, in deployment order.
    specs: Vec<ServiceSpec>,
    /// Services the compose file defines that the experiment does not: started at setup.
    support: Vec<String>,
}

/// Runs services as Docker containers.
pub struct DockerCompose {
    ctx: Context,
    config: Config,
    engine: Option<Engine>,
    run_id: Option<String>,
    state: Option<RunState>,
}

impl DockerCompose {
    fn engine(&mut self) -> anyhow::Result<&Engine> {
        if self.engine.is_none() {
            self.engine = Some(Engine::connect()?);
        }
        Ok(self.engine.as_ref().expect("just connected"))
    }

    fn state(&self) -> anyhow::Result<(&Engine, &RunState)> {
        match (&self.engine, &self.state) {
            (Some(engine), Some(state)) => Ok((engine, state)),
            _ => bail!("the environment was not set up"),
        }
    }

    fn running(&self, service: &str) -> anyhow::Result<Arc<Running>> {
        let (_, state) = self.state()?;
        state
            .project
            .get(service)
            .with_context(|| format!("service `{service}` was not deployed"))
    }

    /// The definitions of every container of the run: the compose file's services, with the
    /// experiment's commands for the services it names; the rest from `image`.
    fn project(
        &self,
        engine: &Engine,
        plan: &DeploymentPlan,
        name: &str,
    ) -> anyhow::Result<(Project, Vec<String>)> {
        let labels = RunLabels::new(&plan.run_id, &plan.experiment, NAME);
        let log_dir = plan
            .services
            .first()
            .map(|s| s.log_dir.clone())
            .unwrap_or_else(|| plan.output_dir.join("services"));
        let compose: Option<ComposeFile> = match &self.config.compose_file {
            Some(file) => {
                let path = plan.base_dir.join(file);
                Some(
                    compose::load(&path, self.config.mode())
                        .map_err(|problems| anyhow::anyhow!("{}", problems.join("\n")))?,
                )
            }
            None => None,
        };
        let mut project = match &compose {
            Some(file) => Project::from_compose(
                engine.docker(),
                engine.handle(),
                name,
                labels,
                log_dir,
                file,
                self.config.init,
            ),
            None => Project::new(engine.docker(), engine.handle(), name, labels, log_dir),
        };
        let generated = self.config.image.as_ref().map(|image| {
            let dockerfile = self.config.dockerfile.as_deref();
            match BuildSpec::of_setting(image, dockerfile, &plan.base_dir) {
                Some(build) => ContainerDef::plain(
                    &format!("{name}-image"),
                    Some(build),
                    true,
                    self.config.init,
                ),
                None => ContainerDef::plain(image, None, false, self.config.init),
            }
        });
        for spec in &plan.services {
            let from_compose = compose.as_ref().and_then(|c| c.services.get(&spec.name));
            let def = match (from_compose, &generated) {
                (Some(service), _) => {
                    let def = project.def_mut(&spec.name).expect("added from the compose file");
                    if service.command.is_some() || service.entrypoint.is_some() {
                        tracing::warn!(
                            service = %spec.name,
                            "the compose file's `command`/`entrypoint` are replaced by the experiment's command"
                        );
                    }
                    def
                }
                (None, Some(generated)) => {
                    project.add(&spec.name, generated.clone());
                    project.def_mut(&spec.name).expect("just added")
                }
                (None, None) => bail!(
                    "service `{}` is not in the compose file {}, and there is no `image` to run it from",
                    spec.name,
                    self.config
                        .compose_file
                        .as_deref()
                        .map(|f| plan.base_dir.join(f).display().to_string())
                        .unwrap_or_default()
                ),
            };
            // The experiment's (wrapped) command replaces the image's entrypoint and command.
            def.entrypoint = Some(spec.argv.clone());
            def.command = None;
            // What the execution environments brought along (their tools, their output
            // folders), each target once.
            for mount in &spec.mounts {
                let target = mount.target.display().to_string();
                let taken = def.mounts.iter().any(|m| match m {
                    Mount::Bind { target: t, .. }
                    | Mount::Volume { target: t, .. }
                    | Mount::Anonymous { target: t }
                    | Mount::Tmpfs { target: t } => *t == target,
                });
                if !taken {
                    def.mounts.push(Mount::Bind {
                        source: mount.source.clone(),
                        target,
                        read_only: mount.read_only,
                    });
                }
            }
            for (key, value) in &spec.env {
                def.set_env(key, value);
            }
            if def.init && !spec.mounts.is_empty() {
                // The engine's init forwards the stop signal to its child alone; under a
                // tool that child is the tool, and a tracer ignores it (strace -o) while the
                // service runs on until SIGKILL. As on localhost, the whole process group
                // gets it: the service ends on its own and the tool writes its report.
                def.set_env("TINI_KILL_PROCESS_GROUP", "1");
            }
        }
        let experiment: Vec<&str> = plan.services.iter().map(|s| s.name.as_str()).collect();
        let support: Vec<String> = project
            .service_names()
            .into_iter()
            .filter(|n| !experiment.contains(&n.as_str()))
            .collect();
        for name in &support {
            let def = project.def(name).expect("listed");
            if let Some((dep, _)) = def
                .depends_on
                .iter()
                .find(|(d, _)| experiment.contains(&d.as_str()))
            {
                bail!(
                    "compose service `{name}` depends on `{dep}`, a service of the experiment: \
                     services only in the compose file start before the experiment's, so they \
                     cannot wait for them"
                );
            }
        }
        Ok((project, support))
    }

    /// Where a TCP readiness check of `service` leads: loopback names and the service's own
    /// name mean its container (and, when the service publishes that port, the host's
    /// loopback too); another service's name means that container; anything else is tried
    /// from this machine.
    fn tcp_ready(&self, service: &str, host: &str, port: u16) -> bool {
        let Ok((_, state)) = self.state() else {
            return false;
        };
        let loopback = matches!(host, "127.0.0.1" | "localhost" | "::1" | "0.0.0.0");
        let target = if loopback { service } else { host };
        let Some(running) = state.project.get(target) else {
            return ready::tcp_open(host, port);
        };
        let published = loopback
            && state.project.def(target).is_some_and(|def| {
                def.ports
                    .iter()
                    .any(|p| p.published == Some(port) && p.protocol == "tcp")
            });
        running
            .addresses
            .values()
            .any(|ip| ready::tcp_open(ip, port))
            || (published && ready::tcp_open("127.0.0.1", port))
    }
}

impl Plugin for DockerCompose {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new(NAME)
            .capability(capability::CONTAINERS)
            .alias_key(
                "service_prefix",
                "project_name",
                "the prefix of the run's container, network and volume names",
            )
            .refuse_key(
                "network_name",
                "the run's network is named after `project_name`; other networks are declared in the compose file (`compose_file`)",
            )
            .refuse_key(
                "subnet",
                "declare networks and their subnets in the compose file (`compose_file`)",
            )
            .refuse_key(
                "enable_ipv6",
                "declare networks with `enable_ipv6` in the compose file (`compose_file`)",
            )
            .refuse_key(
                "volumes",
                "declare volumes in the compose file (`compose_file`)",
            )
            .refuse_key(
                "environment",
                "write `env = { ... }` in each `[[service]]`, or `environment:` in the compose file",
            )
            .refuse_key(
                "version",
                "the Compose Specification has no file version; nothing to choose",
            )
    }

    fn validate(config: &Config, experiment: &ValidationContext) -> Vec<String> {
        let base_dir = experiment.base_dir.as_path();
        check_config(config, base_dir)
    }

    fn new(config: Config, ctx: Context) -> anyhow::Result<Self> {
        Ok(DockerCompose {
            ctx,
            config,
            engine: None,
            run_id: None,
            state: None,
        })
    }
}

impl NetworkEnvironment for DockerCompose {
    /// Every service runs in a container: from its compose service's image, or from `image`.
    /// How its program is linked is read from the build folder when there is one.
    fn sites(config: &Config, experiment: &ValidationContext) -> BTreeMap<String, ServiceSite> {
        let base_dir = experiment.base_dir.as_path();
        let compose = config
            .compose_file
            .as_ref()
            .and_then(|file| compose::load(&base_dir.join(file), config.mode()).ok());
        let generated = config.image.as_ref().map(|name| {
            let build = BuildSpec::of_setting(name, config.dockerfile.as_deref(), base_dir);
            (name.clone(), build)
        });
        let mut sites = BTreeMap::new();
        for service in &experiment.services {
            let from_compose = compose.as_ref().and_then(|c| c.services.get(service));
            let (image, build) = match (from_compose, &generated) {
                (Some(s), _) => {
                    let name = s
                        .image
                        .clone()
                        .or_else(|| s.build.as_ref().map(|b| b.context.display().to_string()));
                    (name.unwrap_or_default(), s.build.clone())
                }
                (None, Some((name, build))) => (name.clone(), build.clone()),
                (None, None) => continue,
            };
            let program = experiment.commands.get(service).and_then(|c| c.first());
            let linkage = match (&build, program) {
                (Some(build), Some(program)) => site::linkage_in_build(build, program),
                _ => Linkage::Unknown,
            };
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
        // Known before anything is created, so that teardown finds it whatever fails next.
        self.run_id = Some(plan.run_id.clone());
        let name = match &self.config.project_name {
            Some(name) => name.clone(),
            None => sanitize_name(&format!("panther-{}", plan.run_id)),
        };
        self.engine()?;
        let engine = self.engine.as_ref().expect("connected");
        let (project, support) = self.project(engine, plan, &name)?;
        let started = Instant::now();
        engine.block_on(project.prepare())?;
        tracing::debug!(project = %name, after = ?started.elapsed(), "images, networks and volumes ready");
        let ctx = self.ctx.clone();
        let cancelled = move || ctx.is_cancelled();
        engine.block_on(project.up(&support, false, &cancelled))?;
        self.state = Some(RunState {
            project,
            specs: plan.services.clone(),
            support,
        });
        Ok(())
    }

    fn deploy_service(&mut self, service: &ServiceSpec) -> anyhow::Result<Deployment> {
        let (engine, state) = self.state()?;
        let def = state
            .project
            .def(&service.name)
            .with_context(|| format!("service `{}` is not part of the plan", service.name))?;
        for (dep, _) in &def.depends_on {
            let in_experiment = state.specs.iter().any(|s| &s.name == dep);
            if in_experiment && state.project.get(dep).is_none() {
                bail!(
                    "service `{}` depends on `{dep}` in the compose file, but the experiment \
                     deploys it first: add `depends_on = [\"{dep}\"]` to its [[service]]",
                    service.name
                );
            }
        }
        let ctx = self.ctx.clone();
        let cancelled = move || ctx.is_cancelled();
        let running = engine
            .block_on(state.project.start(&service.name, &cancelled))
            .with_context(|| format!("starting service `{}`", service.name))?;
        Ok(Deployment {
            pid: running.pid,
            id: Some(running.id.clone()),
        })
    }

    fn wait_ready(&mut self, service: &str) -> anyhow::Result<()> {
        let running = self.running(service)?;
        let (engine, state) = self.state()?;
        let spec = state
            .specs
            .iter()
            .find(|s| s.name == service)
            .with_context(|| format!("service `{service}` is not part of the plan"))?
            .clone();
        if running.has_healthcheck {
            let ctx = self.ctx.clone();
            let cancelled = move || ctx.is_cancelled();
            let healthy = engine.block_on(state.project.wait_healthy(service, &cancelled));
            if let Err(err) = healthy {
                // When it exited, say so (its exit is recorded once its output is written).
                let inspected = engine.block_on(container::inspect(engine.docker(), &running.id));
                if let Some(inspected) = inspected.ok().filter(|i| !i.running) {
                    let code = engine
                        .block_on(running.exit.wait_for(Duration::from_secs(2)))
                        .or(inspected.exit_code)
                        .unwrap_or(-1);
                    let exited = container::state_of(code, false);
                    bail!(
                        "service `{service}` {exited} before it was ready (see {})",
                        spec.log_dir.join(format!("{service}.stderr")).display()
                    );
                }
                return Err(err);
            }
        }
        let Some(readiness) = &spec.ready else {
            return Ok(());
        };
        let mut probe = Probe::new(&spec, &readiness.check)?;
        loop {
            if probe.passes(|host, port| self.tcp_ready(service, host, port)) {
                tracing::debug!(service, after = ?probe.elapsed(), "ready");
                return Ok(());
            }
            if let Some(code) = running.exit.code() {
                let (engine, state) = self.state()?;
                let exited = engine.block_on(state.project.state(&running));
                let exited = if exited.is_finished() {
                    exited
                } else {
                    container::state_of(code, false)
                };
                bail!(
                    "service `{service}` {exited} before it was ready (see {})",
                    probe.stderr().display()
                );
            }
            if self.ctx.is_cancelled() {
                bail!("cancelled while waiting for service `{service}`");
            }
            if probe.elapsed() >= readiness.timeout {
                bail!(
                    "service `{service}` was not ready within {:?} ({})",
                    readiness.timeout,
                    ready::describe(&readiness.check)
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn get_environment_status(&mut self) -> anyhow::Result<EnvironmentStatus> {
        let (engine, state) = self.state()?;
        let mut services = BTreeMap::new();
        for spec in &state.specs {
            if let Some(running) = state.project.get(&spec.name) {
                services.insert(
                    spec.name.clone(),
                    engine.block_on(state.project.state(&running)),
                );
            }
        }
        Ok(EnvironmentStatus { services })
    }

    fn stop_service(&mut self, service: &str) -> anyhow::Result<ProcessState> {
        let running = self.running(service)?;
        let (engine, state) = self.state()?;
        let mut grace = self.config.stop_grace;
        // Under tools that report when their child exits (GNU time, strace), the service's
        // own processes get the signal first, from this machine, and the tools write their
        // reports; the engine's stop then ends what is left.
        let wrappers = state
            .specs
            .iter()
            .find(|s| s.name == service)
            .map_or(0, |s| s.parent_wrappers.len());
        let init = state.project.def(service).is_some_and(|d| d.init);
        if let (Some(pid), true) = (running.pid, wrappers > 0 && !running.restarts) {
            running.stopped_by_host.store(true, Ordering::Relaxed);
            let started = Instant::now();
            // The engine's init is one more parent above the command.
            let depth = wrappers + usize::from(init);
            self.ctx
                .stop_below_wrappers(pid, depth, grace, || running.exit.code().is_some());
            grace = grace
                .saturating_sub(started.elapsed())
                .max(Duration::from_millis(100));
        }
        engine.block_on(state.project.stop(&running, grace))
    }

    fn teardown_environment(&mut self) -> anyhow::Result<()> {
        let Some(run_id) = self.run_id.clone() else {
            return Ok(());
        };
        let state = self.state.take();
        let grace = self.config.stop_grace;
        // Without a connection, setup created nothing.
        let Some(engine) = self.engine.as_ref() else {
            return Ok(());
        };
        let removed = match &state {
            Some(state) => {
                // The services only in the compose file were started here: stop them like the
                // host stops the experiment's, newest first, before everything goes.
                for name in state.support.iter().rev() {
                    if let Some(running) = state.project.get(name) {
                        let _ = engine.block_on(state.project.stop(&running, grace));
                    }
                }
                engine.block_on(state.project.down())?
            }
            None => engine.block_on(cleanup::remove_run(engine.docker(), &run_id))?,
        };
        tracing::debug!(run = %run_id, removed = removed.len(), "torn down: {}", removed.join(", "));
        Ok(())
    }

    fn clean_stale(&mut self) -> anyhow::Result<Vec<String>> {
        let engine = self.engine()?;
        engine.block_on(cleanup::clean_stale(engine.docker(), NAME))
    }
}

export_plugin!(NetworkEnvironment: DockerCompose);

#[cfg(test)]
mod tests {
    use super::*;
    use panther_plugin_api::serde_json;

    #[test]
    fn every_service_runs_in_a_container_and_a_copied_program_says_how_it_is_linked() {
        let dir = tempfile::tempdir().unwrap();
        let context = dir.path().join("image");
        std::fs::create_dir_all(context.join("bin")).unwrap();
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        std::fs::copy(&sh, context.join("bin/server")).unwrap();
        std::fs::write(
            context.join("Dockerfile"),
            "FROM scratch\nCOPY bin/ /usr/local/bin/\n",
        )
        .unwrap();
        let config: Config =
            serde_json::from_value(serde_json::json!({ "image": "image" })).unwrap();
        let experiment = ValidationContext {
            base_dir: dir.path().to_path_buf(),
            services: vec!["server".into(), "client".into()],
            commands: [
                ("server".to_string(), vec!["server".to_string()]),
                ("client".to_string(), vec!["/opt/client".to_string()]),
            ]
            .into(),
            ..ValidationContext::default()
        };
        let sites = DockerCompose::sites(&config, &experiment);
        let site = |linkage| ServiceSite::Container {
            environment: NAME.into(),
            image: "image".into(),
            linkage,
            libc: None,
        };
        assert_eq!(sites["server"], site(Linkage::Dynamic));
        // Not in the image's build folder: nothing can be said before the run.
        assert_eq!(sites["client"], site(Linkage::Unknown));
    }
}
