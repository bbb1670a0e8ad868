//! The execution environment both gperftools plugins are: one [`PreloadPlugin`] around a
//! profiler's own configuration ([`ProfilerConfig`]). Finding, checking and preloading the
//! library, setting its variables and keeping each service's folder and site is the same for
//! `gperf_cpu` and `gperf_heap`, and lives here once; how a service's profiles are driven
//! while it runs and read afterwards is each plugin's own.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use panther_plugin_api::{
    prelude::*, serde::de::DeserializeOwned, serde_json, ServiceCommand, ValidationContext,
};

use crate::{
    carry::{carried_for_check, Placed},
    control::check_switch_signal,
    library::{check_override, resolve, LibraryMatcher, DEBIAN_PACKAGE},
    profiler::Profiler,
    GPERF_GENERATOR_HINT, GPERF_GENERATOR_KEYS,
};

/// One profiler's `[[execution]]` section, and what the plugin built around it needs from
/// it: its manifest keys, its variables, and how it watches and reports on a service.
pub trait ProfilerConfig: DeserializeOwned + JsonSchema + Send + 'static {
    /// The profiler the plugin preloads.
    const PROFILER: Profiler;

    /// How much slower a service typically runs with the profiler preloaded.
    const SLOWDOWN: f64;

    /// The file name, in the service's output folder, that the profiler's output variable
    /// names.
    const OUTPUT_NAME: &'static str;

    /// PANTHER's names for the plugin's keys: `(PANTHER's key, the plugin's key, note)`.
    const KEY_ALIASES: &'static [(&'static str, &'static str, &'static str)];

    /// PANTHER's keys the plugin refuses, with the hint that says why. GNU gperf's keys
    /// ([`GPERF_GENERATOR_KEYS`]) are refused after them, except those refused here with a
    /// hint of the plugin's own.
    const REFUSED_KEYS: &'static [(&'static str, &'static str)];

    /// What the plugin keeps about a service once it runs.
    type Monitor: Default + Send;

    /// The library to preload instead of the one found on this machine.
    fn library(&self) -> Option<&Path>;

    /// The signal the plugin drives the profiler with.
    fn signal(&self) -> i32;

    /// The profiler's variables besides its output and its signal, with their values.
    fn variables(&self) -> Vec<(&'static str, String)>;

    /// The service runs as `pid` (see [`ExecutionEnvironment::start_monitoring`]).
    fn start_monitoring(
        &self,
        service: &str,
        pid: u32,
        wrapped: &mut Wrapped<Self::Monitor>,
    ) -> anyhow::Result<()>;

    /// The run is over and the service may still run: the profiles are to be completed now
    /// (see [`ExecutionEnvironment::stop_monitoring`]).
    fn stop_monitoring(
        &self,
        service: &str,
        wrapped: &mut Wrapped<Self::Monitor>,
    ) -> anyhow::Result<()>;

    /// The report on the service's profiles, after it ended.
    fn monitoring_data(
        &self,
        service: &str,
        wrapped: &mut Wrapped<Self::Monitor>,
    ) -> anyhow::Result<serde_json::Value>;
}

/// A service the plugin wrapped: what every profiler needs to know about it later, and what
/// this one keeps (`monitor`).
pub struct Wrapped<M> {
    /// The folder the host reserved for the plugin's files about the service.
    pub output_dir: PathBuf,
    /// The service's command as the plugin left it: the process running it is the service,
    /// processes above it are wrappers added by other execution environments.
    pub argv: Vec<String>,
    /// The preloaded library, as this machine has it.
    pub library: PathBuf,
    /// Where the service runs: a container's carried library and root.
    pub placed: Placed,
    /// What the profiler keeps about the service.
    pub monitor: M,
}

impl<M> Wrapped<M> {
    /// Recognizes the preloaded library in the memory maps of the service's processes, which
    /// in a container map the carried copy.
    pub fn library_matcher(&self) -> LibraryMatcher {
        LibraryMatcher::new(self.placed.mapped_library().unwrap_or(&self.library))
    }
}

/// Profiles services with the gperftools profiler `C` configures, preloaded into them.
pub struct PreloadPlugin<C: ProfilerConfig> {
    config: C,
    library: PathBuf,
    services: HashMap<String, Wrapped<C::Monitor>>,
}

impl<C: ProfilerConfig> PreloadPlugin<C> {
    /// An instance that preloads `library` (found on this machine, or named by `config`).
    pub fn with_library(config: C, library: PathBuf) -> Self {
        PreloadPlugin {
            config,
            library,
            services: HashMap::new(),
        }
    }
}

impl<C: ProfilerConfig> Plugin for PreloadPlugin<C> {
    type Config = C;

    fn manifest() -> Manifest {
        let profiler = C::PROFILER;
        let manifest = Manifest::new(profiler.plugin())
            .capability(capability::LD_PRELOAD)
            .capability(profiler.capability())
            .capability(capability::IN_CONTAINERS)
            .tool_with_override(profiler.library_names()[0], DEBIAN_PACKAGE, "library");
        let manifest = C::KEY_ALIASES
            .iter()
            .fold(manifest, |m, (key, to, note)| m.alias_key(*key, *to, *note));
        let manifest = C::REFUSED_KEYS
            .iter()
            .fold(manifest, |m, (key, hint)| m.refuse_key(*key, *hint));
        GPERF_GENERATOR_KEYS
            .iter()
            .filter(|key| !C::REFUSED_KEYS.iter().any(|(refused, _)| refused == *key))
            .fold(manifest, |m, key| m.refuse_key(*key, GPERF_GENERATOR_HINT))
    }

    fn validate(config: &C, experiment: &ValidationContext) -> Vec<String> {
        let profiler = C::PROFILER;
        let carried = carried_for_check(
            profiler.plugin(),
            config.library(),
            profiler.library_names(),
            experiment,
        );
        let mut problems = panther_toolmount::refuse::preload(
            profiler.plugin(),
            profiler.library_label(),
            carried.as_ref(),
            experiment,
        );
        if let Some(library) = config.library() {
            problems.extend(check_override(library).err());
        }
        problems.extend(check_switch_signal(config.signal()).err());
        problems
    }

    fn new(config: C, _ctx: Context) -> anyhow::Result<Self> {
        let profiler = C::PROFILER;
        check_switch_signal(config.signal()).map_err(anyhow::Error::msg)?;
        let library = resolve(
            config.library(),
            profiler.library_names(),
            profiler.plugin(),
            profiler.wanted(),
        )
        .map_err(anyhow::Error::msg)?;
        Ok(PreloadPlugin::with_library(config, library))
    }
}

impl<C: ProfilerConfig> ExecutionEnvironment for PreloadPlugin<C> {
    fn slowdown(&self) -> f64 {
        C::SLOWDOWN
    }

    /// Preloads the library and sets the profiler's variables in the service's own
    /// environment; the command itself is left as it is.
    fn wrap(&mut self, mut command: ServiceCommand) -> anyhow::Result<ServiceCommand> {
        let profiler = C::PROFILER;
        if command.env.contains_key(profiler.output_variable()) {
            bail!(
                "service `{}` already has {} set ({} twice, or set by hand): one {} per service",
                command.service,
                profiler.output_variable(),
                profiler.plugin(),
                profiler.one_per_service()
            );
        }
        let signal = self.config.signal().to_string();
        let other = profiler.other();
        if command.env.get(other.signal_variable()) == Some(&signal) {
            bail!(
                "service `{}`: signal {signal} is already {}'s {}; give gperf_cpu or gperf_heap \
                 another `signal`",
                command.service,
                other.plugin(),
                other.signal_variable()
            );
        }
        let output = command.output_dir.join(C::OUTPUT_NAME);
        let placed = Placed::wrap(profiler.plugin(), &self.library, &mut command)?;
        command.env.insert(
            profiler.output_variable().into(),
            output.display().to_string(),
        );
        command
            .env
            .insert(profiler.signal_variable().into(), signal);
        for (name, value) in self.config.variables() {
            command.env.insert(name.into(), value);
        }
        self.services.insert(
            command.service.clone(),
            Wrapped {
                output_dir: command.output_dir.clone(),
                argv: command.argv.clone(),
                library: self.library.clone(),
                placed,
                monitor: C::Monitor::default(),
            },
        );
        Ok(command)
    }

    fn start_monitoring(&mut self, service: &str, pid: u32) -> anyhow::Result<()> {
        let wrapped = self
            .services
            .get_mut(service)
            .with_context(|| format!("service `{service}` was never wrapped"))?;
        wrapped.placed.start(C::PROFILER.plugin(), service, pid)?;
        self.config.start_monitoring(service, pid, wrapped)
    }

    fn stop_monitoring(&mut self, service: &str) -> anyhow::Result<()> {
        match self.services.get_mut(service) {
            Some(wrapped) => self.config.stop_monitoring(service, wrapped),
            None => Ok(()),
        }
    }

    fn get_monitoring_data(&mut self, service: &str) -> anyhow::Result<serde_json::Value> {
        let wrapped = self
            .services
            .get_mut(service)
            .with_context(|| format!("service `{service}` was never wrapped"))?;
        self.config.monitoring_data(service, wrapped)
    }
}
