//! The experiment file: parsing, and validating everything before anything starts.
//!
//! Syntax, unknown keys and type errors come from the TOML reader with `file:line:column` and
//! the allowed keys. Everything else — names, dependencies and cycles, plugins, their
//! configuration against each plugin's JSON Schema, claims and incompatibilities, missing
//! programs — is collected into one list of [`Problem`]s, so a user fixes them all at once.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
    time::Duration,
};

use panther_plugin_api::{PluginKind, Readiness, ReadyCheck, Role, ValidationContext};
use serde::Deserialize;
use toml::Spanned;

use crate::{
    dispatch::{driver, proxy::Proxy},
    isolate::{CallLimit, Isolation, Placement},
    loader::LoadedPlugin,
    registry::Registry,
    scope::ScopeSettings,
};

/// How long an isolated plugin may take to describe its claims or check its configuration.
const MODULE_CALL_LIMIT: Duration = Duration::from_secs(30);

/// The network environment used when an experiment names none.
pub const DEFAULT_NETWORK: &str = "localhost";
/// The experiment timeout when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The readiness timeout when none is given.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExperimentFile {
    experiment: ExperimentSection,
    #[serde(default)]
    network: Option<Spanned<PluginSection>>,
    #[serde(default)]
    execution: Vec<Spanned<PluginSection>>,
    #[serde(default)]
    service: Vec<Spanned<ServiceSection>>,
    #[serde(default)]
    report: Vec<Spanned<PluginSection>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExperimentSection {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    #[serde(default, alias = "output_directory")]
    output: Option<PathBuf>,
    #[serde(default)]
    enable: Option<Vec<String>>,
    #[serde(default)]
    disable: Vec<String>,
    #[serde(default)]
    order: Vec<String>,
    #[serde(default)]
    fail_fast: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct PluginSection {
    plugin: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    services: Option<Vec<String>>,
    #[serde(flatten)]
    config: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceSection {
    name: String,
    command: Vec<String>,
    #[serde(default)]
    cwd: Option<PathBuf>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    depends_on: Vec<String>,
    #[serde(default)]
    ready: Option<ReadySection>,
    #[serde(default)]
    role: Role,
    #[serde(default)]
    expect_exit: Option<i32>,
    #[serde(default)]
    enable: Option<Vec<String>>,
    #[serde(default)]
    disable: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadySection {
    #[serde(default)]
    tcp: Option<u16>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    log: Option<String>,
    #[serde(default)]
    file: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    delay: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
}

/// One plugin instance configured in the file.
#[derive(Debug, Clone)]
pub struct PluginUse {
    /// The plugin's name.
    pub plugin: String,
    /// The instance's name (`name = ...`, else the plugin's name).
    pub name: String,
    /// For execution environments: the services it applies to (all when absent).
    pub services: Option<Vec<String>>,
    /// The plugin's own configuration, as JSON.
    pub config: serde_json::Value,
    /// `file:line:column` of its section.
    pub location: String,
}

/// One service as configured.
#[derive(Debug, Clone)]
pub struct ServiceDef {
    /// Its name.
    pub name: String,
    /// Its argv.
    pub command: Vec<String>,
    /// Its working directory (the experiment file's folder when not given).
    pub cwd: PathBuf,
    /// Its environment.
    pub env: BTreeMap<String, String>,
    /// What it waits for.
    pub depends_on: Vec<String>,
    /// Its readiness check, timeout not yet scaled.
    pub ready: Option<Readiness>,
    /// Server or client.
    pub role: Role,
    /// The exit code that counts as success.
    pub expect_exit: i32,
    /// Its scope settings.
    pub scope: ScopeSettings,
}

/// A validated experiment.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// The file it came from.
    pub path: PathBuf,
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: Option<String>,
    /// How long the run may take (before slowdown scaling).
    pub timeout: Duration,
    /// Where results go, when the file says.
    pub output: Option<PathBuf>,
    /// Experiment-scope settings.
    pub scope: ScopeSettings,
    /// The network environment.
    pub network: PluginUse,
    /// The execution environments, in configured order.
    pub execution: Vec<PluginUse>,
    /// The services, in dependency order.
    pub services: Vec<ServiceDef>,
    /// The reporter instances.
    pub reports: Vec<PluginUse>,
}

/// One thing wrong with an experiment file.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// `file:line:column`.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Why an experiment file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExperimentError {
    /// It could not be read.
    #[error("cannot read experiment file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// It is not valid TOML for an experiment.
    #[error("{0}")]
    Syntax(String),
    /// It is well-formed but wrong; every problem is listed.
    #[error("{} problem{} in {}:\n{}", problems.len(), if problems.len() == 1 { "" } else { "s" }, path.display(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

/// Formats a TOML error as `file:line:column: message`.
pub fn diagnostic(path: &Path, text: &str, err: &toml::de::Error) -> String {
    let location = err
        .span()
        .map(|span| location(path, text, span.start))
        .unwrap_or_else(|| path.display().to_string());
    format!("{location}: {}", err.message().trim_end())
}

fn location(path: &Path, text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    format!("{}:{line}:{column}", path.display())
}

/// Reads, parses and validates an experiment file against the loaded plugins.
pub fn load(path: &Path, registry: &Registry) -> Result<Experiment, ExperimentError> {
    load_isolated(path, registry, &Isolation::default())
}

/// [`load`], asking the plugins that `isolation` names about their configurations in plugin
/// servers.
pub fn load_isolated(
    path: &Path,
    registry: &Registry,
    isolation: &Isolation,
) -> Result<Experiment, ExperimentError> {
    let text = std::fs::read_to_string(path).map_err(|source| ExperimentError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file: ExperimentFile =
        toml::from_str(&text).map_err(|e| ExperimentError::Syntax(diagnostic(path, &text, &e)))?;
    let mut validator = Validator {
        path,
        text: &text,
        problems: Vec::new(),
        context: ValidationContext::default(),
        isolation,
    };
    let experiment = validator.experiment(file, registry);
    if validator.problems.is_empty() {
        Ok(experiment)
    } else {
        Err(ExperimentError::Invalid {
            path: path.to_path_buf(),
            problems: validator.problems,
        })
    }
}

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
    problems: Vec<Problem>,
    /// What plugins' own validation may know of the experiment.
    context: ValidationContext,
    /// Which plugins answer from plugin servers.
    isolation: &'a Isolation,
}

impl Validator<'_> {
    /// Where a plugin answers questions about its configuration.
    fn placement(&self, plugin: &LoadedPlugin) -> Placement {
        self.isolation
            .placement(&plugin.path, &CallLimit::new(MODULE_CALL_LIMIT))
    }

    /// The experiment file's folder, against which relative paths resolve.
    fn base_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    fn at(&self, offset: usize) -> String {
        location(self.path, self.text, offset)
    }

    fn problem(&mut self, offset: usize, message: impl Into<String>) {
        let location = self.at(offset);
        self.problems.push(Problem {
            location,
            message: message.into(),
        });
    }

    fn experiment(&mut self, file: ExperimentFile, registry: &Registry) -> Experiment {
        let base = self.base_dir();
        let section = file.experiment;
        let scope = ScopeSettings {
            enable: section.enable,
            disable: section.disable,
            order: section.order,
            drivers: BTreeMap::new(),
            fail_fast: section.fail_fast,
        };

        let services = self.services(file.service, &base);
        let names: BTreeSet<&str> = services.iter().map(|(_, s)| s.name.as_str()).collect();
        self.context = ValidationContext {
            base_dir: base.clone(),
            services: services.iter().map(|(_, s)| s.name.clone()).collect(),
        };

        let network = match file.network {
            Some(section) => {
                self.plugin_use(section, PluginKind::NetworkEnvironment, registry, None)
            }
            None => Some(PluginUse {
                plugin: DEFAULT_NETWORK.to_string(),
                name: DEFAULT_NETWORK.to_string(),
                services: None,
                config: serde_json::json!({}),
                location: self.at(0),
            }),
        };
        let network = network.unwrap_or_else(|| PluginUse {
            plugin: String::new(),
            name: String::new(),
            services: None,
            config: serde_json::Value::Null,
            location: String::new(),
        });
        if !network.plugin.is_empty() {
            self.check_driver(&network, registry);
        }
        let execution: Vec<PluginUse> = file
            .execution
            .into_iter()
            .filter_map(|s| {
                self.plugin_use(s, PluginKind::ExecutionEnvironment, registry, Some(&names))
            })
            .collect();
        let reports: Vec<PluginUse> = file
            .report
            .into_iter()
            .filter_map(|s| self.plugin_use(s, PluginKind::Reporter, registry, None))
            .collect();

        self.check_reporters(&reports, registry);
        self.check_stacks(&execution, &services, registry);
        if let Some(plugin) = registry.get(PluginKind::NetworkEnvironment, &network.plugin) {
            if plugin
                .manifest
                .capabilities
                .iter()
                .any(|c| c == "local_processes")
            {
                self.check_programs(&services);
                self.check_tools(&execution, registry);
            }
        }
        let services = self.dependency_order(services);

        Experiment {
            path: self.path.to_path_buf(),
            name: section.name,
            description: section.description,
            timeout: section.timeout.unwrap_or(DEFAULT_TIMEOUT),
            output: section.output,
            scope,
            network,
            execution,
            services,
            reports,
        }
    }

    fn services(
        &mut self,
        sections: Vec<Spanned<ServiceSection>>,
        base: &Path,
    ) -> Vec<(usize, ServiceDef)> {
        let mut seen = HashMap::new();
        let mut services = Vec::new();
        for spanned in sections {
            let offset = spanned.span().start;
            let s = spanned.into_inner();
            if let Some(first) = seen.insert(s.name.clone(), offset) {
                let first = self.at(first);
                self.problem(
                    offset,
                    format!("service `{}` is defined twice (first at {first})", s.name),
                );
                continue;
            }
            if s.command.is_empty() || s.command[0].is_empty() {
                self.problem(
                    offset,
                    format!("service `{}` has an empty `command`", s.name),
                );
            }
            let ready = s.ready.and_then(|r| self.readiness(offset, &s.name, r));
            let cwd = match s.cwd {
                Some(cwd) if cwd.is_relative() => base.join(cwd),
                Some(cwd) => cwd,
                None => base.to_path_buf(),
            };
            let scope = ScopeSettings {
                enable: s.enable,
                disable: s.disable,
                ..ScopeSettings::default()
            };
            services.push((
                offset,
                ServiceDef {
                    name: s.name,
                    command: s.command,
                    cwd,
                    env: s.env,
                    depends_on: s.depends_on,
                    ready,
                    role: s.role,
                    expect_exit: s.expect_exit.unwrap_or(0),
                    scope,
                },
            ));
        }
        if services.is_empty() {
            self.problem(0, "no [[service]]: an experiment needs at least one");
        }
        services
    }

    fn readiness(&mut self, offset: usize, service: &str, r: ReadySection) -> Option<Readiness> {
        let mut checks = Vec::new();
        if let Some(port) = r.tcp {
            checks.push(ReadyCheck::Tcp {
                host: r.host.clone().unwrap_or_else(|| "127.0.0.1".into()),
                port,
            });
        }
        if let Some(pattern) = r.log {
            if let Err(err) = regex::Regex::new(&pattern) {
                self.problem(
                    offset,
                    format!(
                        "service `{service}`: `ready.log` is not a valid regular expression: {err}"
                    ),
                );
            }
            checks.push(ReadyCheck::Log { pattern });
        }
        if let Some(path) = r.file {
            checks.push(ReadyCheck::File { path });
        }
        if let Some(delay) = r.delay {
            checks.push(ReadyCheck::Delay { delay });
        }
        if checks.len() != 1 {
            self.problem(
                offset,
                format!("service `{service}`: `ready` needs exactly one of `tcp`, `log`, `file`, `delay` (found {})", checks.len()),
            );
            return None;
        }
        Some(Readiness {
            check: checks.remove(0),
            timeout: r.timeout.unwrap_or(DEFAULT_READY_TIMEOUT),
        })
    }

    fn plugin_use(
        &mut self,
        spanned: Spanned<PluginSection>,
        kind: PluginKind,
        registry: &Registry,
        services: Option<&BTreeSet<&str>>,
    ) -> Option<PluginUse> {
        let offset = spanned.span().start;
        let section = spanned.into_inner();
        if section.services.is_some() && services.is_none() {
            self.problem(
                offset,
                format!(
                    "`services` is only allowed in [[execution]] sections, not for the {kind} `{}`",
                    section.plugin
                ),
            );
        }
        if let (Some(wanted), Some(known)) = (&section.services, services) {
            for name in wanted.iter().filter(|n| !known.contains(n.as_str())) {
                self.problem(
                    offset,
                    format!(
                        "`{}` applies to service `{name}`, which is not defined",
                        section.plugin
                    ),
                );
            }
        }
        let config = serde_json::to_value(&section.config).unwrap_or_default();
        let use_ = PluginUse {
            name: section.name.unwrap_or_else(|| section.plugin.clone()),
            plugin: section.plugin,
            services: section.services,
            config,
            location: self.at(offset),
        };
        match driver::choose(registry, kind, &use_.plugin) {
            Ok(plugin) => match validate_config(&plugin.manifest.config_schema, &use_.config) {
                Err(errors) => {
                    for error in errors {
                        self.problem(
                            offset,
                            format!("`{}` ({}): {error}", use_.name, use_.plugin),
                        );
                    }
                }
                // The schema holds; the plugin may know more (files, their contents).
                Ok(()) => {
                    match plugin.validate_in(&self.placement(plugin), &use_.config, &self.context) {
                        Ok(problems) => {
                            for problem in problems {
                                self.problem(
                                    offset,
                                    format!("`{}` ({}): {problem}", use_.name, use_.plugin),
                                );
                            }
                        }
                        Err(err) => self.problem(offset, err.to_string()),
                    }
                }
            },
            Err(err) => self.problem(offset, err.to_string()),
        }
        Some(use_)
    }

    fn check_driver(&mut self, network: &PluginUse, registry: &Registry) {
        // The configured network section was already checked in `plugin_use`; the default
        // needs the same check.
        if network.location == self.at(0) {
            if let Err(err) =
                driver::choose(registry, PluginKind::NetworkEnvironment, &network.plugin)
            {
                self.problem(
                    0,
                    format!("the default network environment is unavailable: {err}"),
                );
            }
        }
    }

    fn check_reporters(&mut self, reports: &[PluginUse], registry: &Registry) {
        let mut proxy = Proxy::new();
        for report in reports {
            let Some(plugin) = registry.get(PluginKind::Reporter, &report.plugin) else {
                continue;
            };
            if validate_config(&plugin.manifest.config_schema, &report.config).is_err() {
                continue; // already reported; its claims cannot be computed
            }
            let claims = match plugin.claims_in(&self.placement(plugin), &report.config) {
                Ok(claims) => claims,
                Err(err) => {
                    self.problems.push(Problem {
                        location: report.location.clone(),
                        message: err.to_string(),
                    });
                    continue;
                }
            };
            if let Err(err) = proxy.add(&report.name, plugin.manifest.clone(), claims, ()) {
                self.problems.push(Problem {
                    location: report.location.clone(),
                    message: format!("report {err}"),
                });
            }
        }
    }

    fn check_stacks(
        &mut self,
        execution: &[PluginUse],
        services: &[(usize, ServiceDef)],
        registry: &Registry,
    ) {
        for (offset, service) in services {
            let mut proxy = Proxy::new();
            let applying = execution.iter().filter(|e| {
                e.services
                    .as_ref()
                    .is_none_or(|s| s.contains(&service.name))
            });
            for exec in applying {
                let Some(plugin) = registry.get(PluginKind::ExecutionEnvironment, &exec.plugin)
                else {
                    continue;
                };
                if validate_config(&plugin.manifest.config_schema, &exec.config).is_err() {
                    continue;
                }
                let claims = plugin
                    .claims_in(&self.placement(plugin), &exec.config)
                    .unwrap_or_default();
                if let Err(err) = proxy.add(&exec.name, plugin.manifest.clone(), claims, ()) {
                    let at = self.at(*offset);
                    self.problems.push(Problem {
                        location: exec.location.clone(),
                        message: format!("on service `{}` ({at}): {err}", service.name),
                    });
                }
            }
        }
    }

    /// Execution environments on local processes run their tools here: each must exist.
    fn check_tools(&mut self, execution: &[PluginUse], registry: &Registry) {
        for exec in execution {
            let Some(plugin) = registry.get(PluginKind::ExecutionEnvironment, &exec.plugin) else {
                continue;
            };
            for tool in &plugin.manifest.tools {
                if crate::tools::overridden(tool, &exec.config) {
                    continue;
                }
                if crate::tools::locate(tool).is_none() {
                    let message = crate::tools::missing(&exec.plugin, tool);
                    self.problems.push(Problem {
                        location: exec.location.clone(),
                        message,
                    });
                }
            }
        }
    }

    fn check_programs(&mut self, services: &[(usize, ServiceDef)]) {
        for (offset, service) in services {
            let Some(program) = service.command.first().filter(|p| !p.is_empty()) else {
                continue;
            };
            if find_program(program, &service.cwd).is_none() {
                self.problem(
                    *offset,
                    format!(
                        "service `{}`: program `{program}` not found (looked in {} and on PATH)",
                        service.name,
                        service.cwd.display()
                    ),
                );
            }
        }
    }

    fn dependency_order(&mut self, services: Vec<(usize, ServiceDef)>) -> Vec<ServiceDef> {
        let index: HashMap<String, usize> = services
            .iter()
            .enumerate()
            .map(|(i, (_, s))| (s.name.clone(), i))
            .collect();
        for (offset, service) in &services {
            for dep in &service.depends_on {
                if !index.contains_key(dep) {
                    let known: Vec<String> = index.keys().cloned().collect();
                    let hint = driver::closest(dep, &known)
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    self.problem(
                        *offset,
                        format!(
                            "service `{}` depends on `{dep}`, which is not defined{hint}",
                            service.name
                        ),
                    );
                }
            }
        }
        // Depth-first topological sort that reports the cycle it finds.
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Visiting,
            Done,
        }
        let mut marks = vec![Mark::New; services.len()];
        let mut order = Vec::with_capacity(services.len());
        let mut cycles = Vec::new();
        fn visit(
            i: usize,
            services: &[(usize, ServiceDef)],
            index: &HashMap<String, usize>,
            marks: &mut [Mark],
            stack: &mut Vec<usize>,
            order: &mut Vec<usize>,
            cycles: &mut Vec<(usize, String)>,
        ) {
            match marks[i] {
                Mark::Done => return,
                Mark::Visiting => {
                    let start = stack.iter().position(|&s| s == i).unwrap_or(0);
                    let mut names: Vec<&str> = stack[start..]
                        .iter()
                        .map(|&s| services[s].1.name.as_str())
                        .collect();
                    names.push(&services[i].1.name);
                    cycles.push((services[i].0, names.join(" -> ")));
                    return;
                }
                Mark::New => {}
            }
            marks[i] = Mark::Visiting;
            stack.push(i);
            for dep in &services[i].1.depends_on {
                if let Some(&d) = index.get(dep) {
                    visit(d, services, index, marks, stack, order, cycles);
                }
            }
            stack.pop();
            marks[i] = Mark::Done;
            order.push(i);
        }
        for i in 0..services.len() {
            visit(
                i,
                &services,
                &index,
                &mut marks,
                &mut Vec::new(),
                &mut order,
                &mut cycles,
            );
        }
        for (offset, cycle) in cycles {
            self.problem(offset, format!("dependency cycle: {cycle}"));
        }
        let mut slots: Vec<Option<ServiceDef>> =
            services.into_iter().map(|(_, s)| Some(s)).collect();
        order.into_iter().filter_map(|i| slots[i].take()).collect()
    }
}

/// Validates a plugin configuration against its JSON Schema; every violation, by path.
pub fn validate_config(
    schema: &serde_json::Value,
    config: &serde_json::Value,
) -> Result<(), Vec<String>> {
    if schema.is_null() {
        return Ok(());
    }
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| vec![format!("the plugin's schema is invalid: {e}")])?;
    let errors: Vec<String> = validator
        .iter_errors(config)
        .map(|e| {
            let path = e.instance_path().to_string();
            if path.is_empty() {
                e.to_string()
            } else {
                format!(
                    "at `{}`: {e}",
                    path.trim_start_matches('/').replace('/', ".")
                )
            }
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Resolves a program the way the process will: a path with `/` relative to `cwd`, else on
/// `PATH`.
pub fn find_program(program: &str, cwd: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = cwd.join(program);
        return executable(&path).then_some(path);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
}
