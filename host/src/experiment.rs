//! The experiment file: parsing, and validating everything before anything starts.
//!
//! Syntax and type errors come from the TOML reader with `file:line:column`; unknown keys are
//! all found first ([`keys`]), with the allowed keys, and the rest of the file is still read.
//! Everything else — names, dependencies and cycles, plugins, their
//! configuration against each plugin's JSON Schema (PANTHER's keys read or refused first, see
//! [`aliases`]), claims and incompatibilities, missing
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
    aliases, config_schema,
    dispatch::driver,
    isolate::{CallLimit, Isolation, Placement},
    keys, limits,
    loader::LoadedPlugin,
    names,
    plan::Origin,
    plugin_defaults::PluginDefaults,
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
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    timeout: Option<Spanned<HumanDuration>>,
    #[serde(default, alias = "output_directory")]
    output: Option<Spanned<PathBuf>>,
    #[serde(default)]
    enable: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    disable: Vec<Spanned<String>>,
    #[serde(default)]
    order: Vec<Spanned<String>>,
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
    name: Spanned<String>,
    command: Spanned<Vec<String>>,
    #[serde(default)]
    cwd: Option<Spanned<PathBuf>>,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    depends_on: Vec<Spanned<String>>,
    #[serde(default)]
    ready: Option<ReadySection>,
    #[serde(default)]
    role: Role,
    #[serde(default)]
    expect_exit: Option<Spanned<i32>>,
    #[serde(default)]
    enable: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    disable: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadySection {
    #[serde(default)]
    tcp: Option<Spanned<crate::ports::TcpPort>>,
    #[serde(default)]
    host: Option<Spanned<String>>,
    #[serde(default)]
    log: Option<String>,
    #[serde(default)]
    file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    delay: Option<Spanned<HumanDuration>>,
    #[serde(default)]
    timeout: Option<Spanned<HumanDuration>>,
}

/// A duration written for people (`"30s"`, `"2m"`), as `humantime` reads it.
#[derive(Debug, Clone, Copy, Deserialize)]
struct HumanDuration(#[serde(with = "humantime_serde")] Duration);

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
    /// The `{port:NAME}` its tcp readiness check waits on (port 0 until the run picks it).
    pub ready_port: Option<String>,
    /// Server or client.
    pub role: Role,
    /// The exit code that counts as success.
    pub expect_exit: i32,
    /// Its scope settings.
    pub scope: ScopeSettings,
    /// `file:line:column` of its section.
    pub location: String,
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
    /// Whether the file set the timeout (else it is [`DEFAULT_TIMEOUT`]).
    pub timeout_origin: Origin,
    /// Where results go, when the file says.
    pub output: Option<PathBuf>,
    /// Experiment-scope settings.
    pub scope: ScopeSettings,
    /// The network environment.
    pub network: PluginUse,
    /// Who chose it: the file's `[network]`, the settings' `drivers`, or the built-in default.
    pub network_origin: Origin,
    /// The execution environments, in configured order.
    pub execution: Vec<PluginUse>,
    /// The services, in dependency order.
    pub services: Vec<ServiceDef>,
    /// The reporter instances.
    pub reports: Vec<PluginUse>,
    /// Keys written in PANTHER's vocabulary and read under this host's names, one note each
    /// (`check -v` shows them).
    pub notes: Vec<Problem>,
    /// What plugins warned about while validating (a key they ignore, a variable that is not
    /// set): shown by `check` and `run`, and no reason to refuse the file.
    pub warnings: Vec<Problem>,
}

impl Experiment {
    /// Checks once more, before a run writes anything, that every name the host turns into a
    /// path is a name. [`load`] already refused such files; this guards experiments built in
    /// code (the Job API). Report paths are checked when the plan is built.
    pub fn check_paths(&self) -> Result<(), String> {
        let name = |what: &str, name: &str| {
            names::check(name).map_err(|err| format!("{what} `{}` {err}", names::shown(name)))
        };
        name("the experiment name", &self.name)?;
        for service in &self.services {
            name("the service name", &service.name)?;
        }
        for instance in self.execution.iter().chain(&self.reports) {
            name("the instance name", &instance.name)?;
        }
        Ok(())
    }
}

/// What the scopes around an experiment give its loader: the driver a settings file chose
/// and the plugins' default configurations.
#[derive(Debug, Clone, Default)]
pub struct LoadDefaults {
    /// The network environment when the file has no `[network]`, and where it was chosen.
    pub network: Option<(String, String)>,
    /// Default configuration per plugin, merged under each section's own.
    pub plugins: PluginDefaults,
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
    /// Escapes what a terminal would act on (escape sequences, bells, carriage returns) in
    /// text that came from the file — names, programs, plugin messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = format!("{}: {}", self.location, self.message);
        for c in text.chars() {
            if names::unprintable(c) && c != '\n' && c != '\t' {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
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
    /// It is well-formed but wrong; every problem is listed, and the warnings found with
    /// them (a file is fixed in one pass, not one message at a time).
    #[error("{}", describe_invalid(path, problems, warnings))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
        /// What the plugins warned about in the same file.
        warnings: Vec<Problem>,
    },
}

/// Formats a TOML error as `file:line:column: message`.
pub fn diagnostic(path: &Path, text: &str, err: &toml::de::Error) -> String {
    let location = err
        .span()
        .map(|span| location(path, text, span.start))
        .unwrap_or_else(|| path.display().to_string());
    let message = err.message().trim_end();
    match aliases::error_hint(message) {
        Some(hint) => format!("{location}: {message} ({hint})"),
        None => format!("{location}: {message}"),
    }
}

/// `file:line:column` of a byte offset in `text`.
pub(crate) fn location(path: &Path, text: &str, offset: usize) -> String {
    LineIndex::new(text).location(path, offset)
}

/// Where each line of a text starts, so that turning an offset into `line:column` does not
/// scan the text again for each of thousands of problems.
struct LineIndex {
    starts: Vec<usize>,
    len: usize,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex {
            starts,
            len: text.len(),
        }
    }

    /// `file:line:column`, both counted from 1; the column in bytes.
    fn location(&self, path: &Path, offset: usize) -> String {
        let offset = offset.min(self.len);
        let line = self.starts.partition_point(|&start| start <= offset);
        let column = offset - self.starts[line - 1] + 1;
        format!("{}:{line}:{column}", path.display())
    }
}

/// The keys an experiment file allows, table by table.
fn shape() -> keys::Shape {
    use keys::Shape;
    Shape::of::<ExperimentFile>()
        .with("experiment", Shape::of::<ExperimentSection>())
        .with(
            "service",
            Shape::of::<ServiceSection>().with("ready", Shape::of::<ReadySection>()),
        )
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
    load_with(path, registry, isolation, &LoadDefaults::default())
}

/// [`load_isolated`] with what the settings give: a default driver, plugin defaults.
pub fn load_with(
    path: &Path,
    registry: &Registry,
    isolation: &Isolation,
    defaults: &LoadDefaults,
) -> Result<Experiment, ExperimentError> {
    let (experiment, problems) = load_partial(path, registry, isolation, defaults)?;
    if problems.is_empty() {
        Ok(experiment)
    } else {
        Err(ExperimentError::Invalid {
            path: path.to_path_buf(),
            problems,
            warnings: experiment.warnings,
        })
    }
}

/// An invalid file's problems, one per line, then its warnings.
fn describe_invalid(path: &Path, problems: &[Problem], warnings: &[Problem]) -> String {
    let plural = if problems.len() == 1 { "" } else { "s" };
    let mut text = format!("{} problem{plural} in {}:", problems.len(), path.display());
    for problem in problems {
        text.push_str(&format!("\n  {problem}"));
    }
    for warning in warnings {
        text.push_str(&format!("\n  warning: {warning}"));
    }
    text
}

/// [`load_with`], giving the experiment as far as it could be read together with its
/// problems, so that the plan built from it can add its own ([`crate::plan`]) and a user
/// sees them all at once. Only an unreadable or unparsable file is an error.
pub fn load_partial(
    path: &Path,
    registry: &Registry,
    isolation: &Isolation,
    defaults: &LoadDefaults,
) -> Result<(Experiment, Vec<Problem>), ExperimentError> {
    let text = std::fs::read_to_string(path).map_err(|source| ExperimentError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let lines = LineIndex::new(&text);
    // Every unknown key is a problem; the rest of the file is still read and checked.
    let unknown = keys::unknown(&text, &shape());
    let mut problems: Vec<Problem> = unknown
        .iter()
        .map(|u| Problem {
            location: lines.location(path, u.offset),
            message: match aliases::host_hint(&u.key) {
                Some(hint) => format!("unknown field `{}`: {hint}", u.key),
                None => u.message.clone(),
            },
        })
        .collect();
    let file: ExperimentFile = match keys::deserialize(&text, &unknown) {
        Ok(file) => file,
        Err(Some(e)) if problems.is_empty() => {
            return Err(ExperimentError::Syntax(diagnostic(path, &text, &e)))
        }
        Err(e) => {
            problems.extend(e.map(|e| Problem {
                location: e.span().map_or_else(
                    || path.display().to_string(),
                    |s| lines.location(path, s.start),
                ),
                message: e.message().trim_end().to_string(),
            }));
            return Err(ExperimentError::Invalid {
                path: path.to_path_buf(),
                problems,
                warnings: Vec::new(),
            });
        }
    };
    let mut validator = Validator {
        path,
        lines,
        suggestions: 0,
        problems,
        notes: Vec::new(),
        warnings: Vec::new(),
        context: ValidationContext::default(),
        isolation,
        defaults,
        scope_names: Vec::new(),
    };
    let experiment = validator.experiment(file, registry);
    Ok((experiment, validator.problems))
}

struct Validator<'a> {
    path: &'a Path,
    lines: LineIndex,
    /// How many "did you mean" searches were made: each costs a pass over the known names,
    /// so a file with thousands of unknown names stops getting suggestions.
    suggestions: usize,
    problems: Vec<Problem>,
    /// Accepted aliases (see [`aliases`]).
    notes: Vec<Problem>,
    warnings: Vec<Problem>,
    /// What plugins' own validation may know of the experiment.
    context: ValidationContext,
    /// Which plugins answer from plugin servers.
    isolation: &'a Isolation,
    /// What the settings give.
    defaults: &'a LoadDefaults,
    /// The names of the file's scope lists: (offset, list, name).
    scope_names: Vec<(usize, &'static str, String)>,
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
        self.lines.location(self.path, offset)
    }

    /// Checks a name (see [`names`]); a refused name is reported at `offset`.
    fn name(&mut self, offset: usize, what: &str, name: &str) -> bool {
        match names::check(name) {
            Ok(()) => true,
            Err(err) => {
                self.problem(offset, format!("{what} `{}` {err}", names::shown(name)));
                false
            }
        }
    }

    /// Checks a duration against its range (see [`limits`]); reported at `offset`.
    fn duration(
        &mut self,
        value: Option<Spanned<HumanDuration>>,
        key: &str,
        check: fn(Duration) -> Result<(), String>,
    ) -> Option<Duration> {
        let value = value?;
        let offset = value.span().start;
        let value = value.into_inner().0;
        match check(value) {
            Ok(()) => Some(value),
            Err(why) => {
                self.problem(offset, format!("`{key}` {why}"));
                None
            }
        }
    }

    /// The closest of `known` to `name`, for the first few unknown names of a file.
    fn suggest(&mut self, name: &str, known: &[String]) -> String {
        const MAX_SUGGESTIONS: usize = 32;
        if self.suggestions >= MAX_SUGGESTIONS {
            return String::new();
        }
        self.suggestions += 1;
        panther_plugin_api::suggest::did_you_mean(name, known)
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
        let name_at = section.name.span().start;
        let name = section.name.into_inner();
        self.name(name_at, "the experiment name", &name);
        let timeout = self.duration(section.timeout, "timeout", limits::timeout);
        let output = section.output.map(|output| {
            let at = output.span().start;
            let output = output.into_inner();
            if !limits::no_nul(output.as_os_str().as_encoded_bytes()) {
                self.problem(at, "`output` contains a NUL byte");
            }
            output
        });
        let scope = ScopeSettings {
            enable: section.enable.map(|list| self.scope_names("enable", list)),
            disable: self.scope_names("disable", section.disable),
            order: self.scope_names("order", section.order),
            drivers: BTreeMap::new(),
            fail_fast: section.fail_fast,
        };

        let services = self.services(file.service, &base);
        let names: BTreeSet<&str> = services.iter().map(|(_, s)| s.name.as_str()).collect();
        self.context = ValidationContext {
            base_dir: base.clone(),
            services: services.iter().map(|(_, s)| s.name.clone()).collect(),
            commands: services
                .iter()
                .map(|(_, s)| (s.name.clone(), s.command.clone()))
                .collect(),
            sites: BTreeMap::new(),
        };

        let file_network = file.network.is_some();
        let network = match file.network {
            Some(section) => {
                self.plugin_use(section, PluginKind::NetworkEnvironment, registry, None)
            }
            None => {
                let (plugin, location) = match &self.defaults.network {
                    Some((plugin, source)) => (plugin.clone(), source.clone()),
                    None => (DEFAULT_NETWORK.to_string(), self.at(0)),
                };
                Some(PluginUse {
                    config: self.defaults.plugins.merge(&plugin, &serde_json::json!({})),
                    name: plugin.clone(),
                    plugin,
                    services: None,
                    location,
                })
            }
        };
        let network_origin = match (&file_network, &self.defaults.network) {
            (true, _) => Origin::Experiment,
            (false, Some(_)) => Origin::Settings,
            (false, None) => Origin::BuiltIn,
        };
        let network = network.unwrap_or_else(|| PluginUse {
            plugin: String::new(),
            name: String::new(),
            services: None,
            config: serde_json::Value::Null,
            location: String::new(),
        });
        if !network.plugin.is_empty() {
            if !file_network {
                self.check_driver(&network, registry);
            }
            // Where each service runs, before the execution environments are validated.
            self.sites(&network, registry);
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

        self.check_scope_names(&execution, &reports, registry);
        if let Some(plugin) = registry.get(PluginKind::NetworkEnvironment, &network.plugin) {
            if plugin
                .manifest
                .capabilities
                .iter()
                .any(|c| c == panther_plugin_api::capability::LOCAL_PROCESSES)
            {
                self.check_programs(&services);
                self.check_tools(&execution, registry);
            }
        }
        let services = self.dependency_order(services);

        Experiment {
            path: self.path.to_path_buf(),
            name,
            description: section.description,
            timeout_origin: if timeout.is_some() {
                Origin::Experiment
            } else {
                Origin::BuiltIn
            },
            timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
            output,
            scope,
            network,
            network_origin,
            execution,
            services,
            reports,
            notes: std::mem::take(&mut self.notes),
            warnings: std::mem::take(&mut self.warnings),
        }
    }

    /// The names of a scope list, each kept with its position to be checked once every
    /// instance is known ([`Validator::check_scope_names`]).
    fn scope_names(&mut self, key: &'static str, list: Vec<Spanned<String>>) -> Vec<String> {
        list.into_iter()
            .map(|name| {
                let offset = name.span().start;
                let name = name.into_inner();
                self.scope_names.push((offset, key, name.clone()));
                name
            })
            .collect()
    }

    /// Every name in an `enable`, `disable` or `order` list of the file must name a plugin
    /// that acts as an extension or reporter, or an instance of the file: a typo would
    /// otherwise silently do nothing.
    fn check_scope_names(
        &mut self,
        execution: &[PluginUse],
        reports: &[PluginUse],
        registry: &Registry,
    ) {
        let mut known: Vec<String> = [PluginKind::ExecutionEnvironment, PluginKind::Reporter]
            .into_iter()
            .flat_map(|kind| registry.names(kind))
            .map(String::from)
            .chain(execution.iter().chain(reports).map(|u| u.name.clone()))
            .collect();
        known.sort();
        known.dedup();
        for (offset, key, name) in std::mem::take(&mut self.scope_names) {
            if known.binary_search(&name).is_err() {
                let message = crate::plan::unknown_name(key, &name, &known);
                self.problem(offset, message);
            }
        }
    }

    fn services(
        &mut self,
        sections: Vec<Spanned<ServiceSection>>,
        base: &Path,
    ) -> Vec<(usize, ServiceDef)> {
        if sections.is_empty() {
            self.problem(0, "no [[service]]: an experiment needs at least one");
        }
        let mut seen = HashMap::new();
        let mut services = Vec::new();
        for spanned in sections {
            let offset = spanned.span().start;
            let s = spanned.into_inner();
            let name_at = s.name.span().start;
            let name = s.name.into_inner();
            // A refused name is not used again: messages would only repeat it.
            if !self.name(name_at, "the service name", &name) {
                continue;
            }
            if let Some(first) = seen.insert(name.clone(), offset) {
                let first = self.at(first);
                self.problem(
                    offset,
                    format!("service `{name}` is defined twice (first at {first})"),
                );
                continue;
            }
            let command_at = s.command.span().start;
            let command = s.command.into_inner();
            if command.is_empty() || command[0].is_empty() {
                self.problem(offset, format!("service `{name}` has an empty `command`"));
            }
            for (i, arg) in command.iter().enumerate() {
                if !limits::no_nul(arg.as_bytes()) {
                    self.problem(
                        command_at,
                        format!("service `{name}`: `command` argument {i} contains a NUL byte"),
                    );
                }
            }
            let mut env = BTreeMap::new();
            for (key, value) in s.env {
                let key_at = key.span().start;
                let key = key.into_inner();
                if let Err(why) = limits::env_key(&key) {
                    self.problem(
                        key_at,
                        format!(
                            "service `{name}`: `env` key `{}`: {why}",
                            names::shown(&key)
                        ),
                    );
                }
                let value_at = value.span().start;
                let value = value.into_inner();
                if !limits::no_nul(value.as_bytes()) {
                    self.problem(
                        value_at,
                        format!(
                            "service `{name}`: `env` value of `{}` contains a NUL byte",
                            names::shown(&key)
                        ),
                    );
                }
                env.insert(key, value);
            }
            let mut depends_on = Vec::new();
            for dep in s.depends_on {
                let at = dep.span().start;
                let dep = dep.into_inner();
                if self.name(
                    at,
                    &format!("service `{name}`: the `depends_on` entry"),
                    &dep,
                ) {
                    depends_on.push(dep);
                }
            }
            let expect_exit = match s.expect_exit {
                Some(code) => {
                    let at = code.span().start;
                    let code = code.into_inner();
                    if let Err(why) = limits::exit_code(code) {
                        self.problem(at, format!("service `{name}`: `expect_exit` {why}"));
                    }
                    code
                }
                None => 0,
            };
            for problem in crate::ports::check(&command, &env) {
                self.problem(offset, format!("service `{name}`: {problem}"));
            }
            let ready_port = match s.ready.as_ref().and_then(|r| r.tcp.as_ref()) {
                Some(tcp) => match tcp.get_ref() {
                    crate::ports::TcpPort::Placeholder(text) => {
                        match crate::ports::ready_name(text) {
                            Ok(port) => Some(port),
                            Err(why) => {
                                self.problem(tcp.span().start, format!("service `{name}`: {why}"));
                                None
                            }
                        }
                    }
                    crate::ports::TcpPort::Number(_) => None,
                },
                None => None,
            };
            let ready = s.ready.and_then(|r| self.readiness(offset, &name, r));
            let cwd = match s.cwd {
                Some(cwd) => {
                    let at = cwd.span().start;
                    let cwd = cwd.into_inner();
                    if !limits::no_nul(cwd.as_os_str().as_encoded_bytes()) {
                        self.problem(at, format!("service `{name}`: `cwd` contains a NUL byte"));
                    }
                    if cwd.is_relative() {
                        base.join(cwd)
                    } else {
                        cwd
                    }
                }
                None => base.to_path_buf(),
            };
            let scope = ScopeSettings {
                enable: s.enable.map(|list| self.scope_names("enable", list)),
                disable: self.scope_names("disable", s.disable),
                ..ScopeSettings::default()
            };
            services.push((
                offset,
                ServiceDef {
                    name,
                    command,
                    cwd,
                    env,
                    depends_on,
                    ready,
                    ready_port,
                    role: s.role,
                    expect_exit,
                    scope,
                    location: self.at(offset),
                },
            ));
        }
        services
    }

    fn readiness(&mut self, offset: usize, service: &str, r: ReadySection) -> Option<Readiness> {
        let mut checks = Vec::new();
        if let Some(tcp) = r.tcp {
            let at = tcp.span().start;
            // A placeholder's port is picked when the run starts.
            let (port, placeholder) = match tcp.into_inner() {
                crate::ports::TcpPort::Number(port) => (port, false),
                crate::ports::TcpPort::Placeholder(_) => (0, true),
            };
            if port == 0 && !placeholder {
                self.problem(
                    at,
                    format!("service `{service}`: `ready.tcp` is 0, which no server listens on"),
                );
            }
            let host = match r.host {
                Some(host) => {
                    let at = host.span().start;
                    let host = host.into_inner();
                    if host.is_empty() || !limits::no_nul(host.as_bytes()) {
                        self.problem(
                            at,
                            format!(
                                "service `{service}`: `ready.host` `{}` is not a host name",
                                names::shown(&host)
                            ),
                        );
                    }
                    host
                }
                None => "127.0.0.1".into(),
            };
            checks.push(ReadyCheck::Tcp { host, port });
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
            let at = path.span().start;
            let path = path.into_inner();
            if !limits::no_nul(path.as_os_str().as_encoded_bytes()) {
                self.problem(
                    at,
                    format!("service `{service}`: `ready.file` contains a NUL byte"),
                );
            }
            checks.push(ReadyCheck::File { path });
        }
        if r.delay.is_some() {
            // Out of range is reported; the file is refused either way.
            let delay = self.duration(r.delay, "ready.delay", limits::delay);
            checks.push(ReadyCheck::Delay {
                delay: delay.unwrap_or_default(),
            });
        }
        let timeout = self.duration(r.timeout, "ready.timeout", limits::timeout);
        if checks.len() != 1 {
            self.problem(
                offset,
                format!("service `{service}`: `ready` needs exactly one of `tcp`, `log`, `file`, `delay` (found {})", checks.len()),
            );
            return None;
        }
        Some(Readiness {
            check: checks.remove(0),
            timeout: timeout.unwrap_or(DEFAULT_READY_TIMEOUT),
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
        if let Some(name) = &section.name {
            // Instance names name folders (`monitoring/<service>/<instance>/`).
            if !self.name(offset, &format!("the {kind} instance name"), name) {
                return None;
            }
        }
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
                        "`{}` applies to service `{}`, which is not defined",
                        section.plugin,
                        names::shown(name)
                    ),
                );
            }
        }
        let config = serde_json::to_value(&section.config).unwrap_or_default();
        let mut use_ = PluginUse {
            name: section.name.unwrap_or_else(|| section.plugin.clone()),
            plugin: section.plugin,
            services: section.services,
            config,
            location: self.at(offset),
        };
        match driver::choose(registry, kind, &use_.plugin) {
            Ok(plugin) => match self.plugin_config(offset, plugin, &mut use_) {
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
                                let message = |text: &str| {
                                    format!("`{}` ({}): {text}", use_.name, use_.plugin)
                                };
                                match problem.strip_prefix(panther_plugin_api::WARNING_PREFIX) {
                                    Some(warning) => {
                                        let location = self.at(offset);
                                        self.warnings.push(Problem {
                                            location,
                                            message: message(warning),
                                        });
                                    }
                                    None => self.problem(offset, message(&problem)),
                                }
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

    /// Asks the network environment where each service runs, so that the execution
    /// environments validated next can refuse what cannot work there. Skipped when its own
    /// section was refused: its configuration may not even parse.
    fn sites(&mut self, network: &PluginUse, registry: &Registry) {
        let refused = self.problems.iter().any(|p| p.location == network.location);
        let Some(plugin) = registry.get(PluginKind::NetworkEnvironment, &network.plugin) else {
            return;
        };
        if refused {
            return;
        }
        match plugin.sites_in(&self.placement(plugin), &network.config, &self.context) {
            Ok(sites) => self.context.sites = sites,
            Err(err) => self.problems.push(Problem {
                location: network.location.clone(),
                message: err.to_string(),
            }),
        }
    }

    /// Reads PANTHER's keys in `use_`'s configuration under the plugin's names (see
    /// [`aliases`]), merges the settings' defaults for the plugin under it, then checks it
    /// against the plugin's schema: every problem of both.
    fn plugin_config(
        &mut self,
        offset: usize,
        plugin: &LoadedPlugin,
        use_: &mut PluginUse,
    ) -> Result<(), Vec<String>> {
        let manifest = &plugin.manifest;
        let applied = aliases::apply(
            &manifest.key_aliases,
            &manifest.config_schema,
            &mut use_.config,
        );
        for note in applied.notes {
            let location = self.at(offset);
            self.notes.push(Problem {
                location,
                message: format!("`{}` ({}): {note}", use_.name, use_.plugin),
            });
        }
        // The settings' defaults for the plugin go under what the file says.
        use_.config = self.defaults.plugins.merge(&use_.plugin, &use_.config);
        let mut errors = applied.errors;
        errors.extend(
            config_schema::validate(&manifest.config_schema, &use_.config)
                .err()
                .into_iter()
                .flatten(),
        );
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The driver the file did not choose (the settings' `drivers`, else the built-in
    /// default) must exist; the configured `[network]` was checked in `plugin_use`.
    fn check_driver(&mut self, network: &PluginUse, registry: &Registry) {
        if let Err(err) = driver::choose(registry, PluginKind::NetworkEnvironment, &network.plugin)
        {
            let message = match &self.defaults.network {
                Some(_) => {
                    format!("`[scope] drivers` chooses an unavailable network environment: {err}")
                }
                None => format!("the default network environment is unavailable: {err}"),
            };
            self.problems.push(Problem {
                location: network.location.clone(),
                message,
            });
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
            // An empty program or one with a NUL byte is already reported.
            let Some(program) = service
                .command
                .first()
                .filter(|p| !p.is_empty() && limits::no_nul(p.as_bytes()))
            else {
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

    /// Services in dependency order: dependencies first, otherwise in file order. Kahn's
    /// algorithm (no recursion, so a chain of any length works); what it cannot order is in
    /// or behind a cycle, and each cycle is reported once.
    fn dependency_order(&mut self, services: Vec<(usize, ServiceDef)>) -> Vec<ServiceDef> {
        let index: HashMap<&str, usize> = services
            .iter()
            .enumerate()
            .map(|(i, (_, s))| (s.name.as_str(), i))
            .collect();
        let known: Vec<String> = services.iter().map(|(_, s)| s.name.clone()).collect();
        let mut unknown = Vec::new();
        // deps[i]: the services i waits for; dependents[d]: the services waiting for d.
        let mut deps: Vec<Vec<usize>> = vec![Vec::new(); services.len()];
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); services.len()];
        for (i, (offset, service)) in services.iter().enumerate() {
            for dep in &service.depends_on {
                match index.get(dep.as_str()) {
                    Some(&d) => deps[i].push(d),
                    None => unknown.push((*offset, service.name.clone(), dep.clone())),
                }
            }
            deps[i].sort_unstable();
            deps[i].dedup();
            for &d in &deps[i] {
                dependents[d].push(i);
            }
        }
        drop(index);
        for (offset, service, dep) in unknown {
            let hint = self.suggest(&dep, &known);
            self.problem(
                offset,
                format!("service `{service}` depends on `{dep}`, which is not defined{hint}"),
            );
        }

        let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = waiting
            .iter()
            .enumerate()
            .filter(|(_, &n)| n == 0)
            .map(|(i, _)| std::cmp::Reverse(i))
            .collect();
        let mut order = Vec::with_capacity(services.len());
        while let Some(std::cmp::Reverse(i)) = ready.pop() {
            order.push(i);
            for &d in &dependents[i] {
                waiting[d] -= 1;
                if waiting[d] == 0 {
                    ready.push(std::cmp::Reverse(d));
                }
            }
        }

        if order.len() < services.len() {
            // Every service left waits for another one left: following those edges from
            // any of them must come back to a service already on the path.
            let mut seen = vec![false; services.len()];
            for start in (0..services.len()).filter(|&i| waiting[i] > 0) {
                let mut path = Vec::new();
                let mut at = start;
                while !seen[at] {
                    seen[at] = true;
                    path.push(at);
                    at = deps[at]
                        .iter()
                        .copied()
                        .find(|&d| waiting[d] > 0)
                        .expect("a service left in Kahn's algorithm waits for one left");
                }
                if let Some(from) = path.iter().position(|&p| p == at) {
                    let mut cycle: Vec<&str> = path[from..]
                        .iter()
                        .map(|&p| services[p].1.name.as_str())
                        .collect();
                    cycle.push(&services[at].1.name);
                    let message = format!("dependency cycle: {}", cycle.join(" -> "));
                    self.problem(services[at].0, message);
                }
            }
        }
        let mut slots: Vec<Option<ServiceDef>> =
            services.into_iter().map(|(_, s)| Some(s)).collect();
        order.into_iter().filter_map(|i| slots[i].take()).collect()
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
