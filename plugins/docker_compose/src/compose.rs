//! Compose files as users write them (YAML), read into what this plugin supports. A key that
//! is not supported is either refused or, where leaving it out cannot change what a run
//! means, warned about ([`crate::keys`] says which); both name the file, the line and
//! column, the service and the key. Reading touches no engine (it runs at `panther-host
//! check`).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::Duration,
};

use panther_docker::image::BuildSpec;
use serde_yaml_ng::{Mapping, Value};

use crate::{
    dotenv,
    interpolate::interpolate,
    keys::{self, Place, Verdict},
    positions::{KeyPath, Positions},
};

/// A compose file, read.
#[derive(Clone, Debug, Default)]
pub struct ComposeFile {
    /// The file.
    pub path: PathBuf,
    /// Its folder: relative paths in it are relative to this.
    pub dir: PathBuf,
    /// Its `name:` (the project name), if any.
    pub name: Option<String>,
    /// Its services.
    pub services: BTreeMap<String, Service>,
    /// Its top-level `networks:`.
    pub networks: BTreeMap<String, NetworkDef>,
    /// Its top-level `volumes:`.
    pub volumes: BTreeMap<String, VolumeDef>,
    /// What was left out or may not be what the author meant (unsupported keys that cannot
    /// change what a run means, unset variables), each with its file, line and column.
    pub warnings: Vec<String>,
}

/// How keys that are not supported are treated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// As the Compose Specification says: warned about and left out where that cannot
    /// change what a run means, refused otherwise.
    #[default]
    Warn,
    /// Every key that is not supported is refused.
    Strict,
}

/// One service.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Service {
    /// `image:`.
    pub image: Option<String>,
    /// `build:`.
    pub build: Option<BuildSpec>,
    /// `command:`, split into an argv.
    pub command: Option<Vec<String>>,
    /// `entrypoint:`, split into an argv.
    pub entrypoint: Option<Vec<String>>,
    /// `environment:`, in order; `None` values come from the host's environment.
    pub environment: Vec<(String, Option<String>)>,
    /// `ports:`.
    pub ports: Vec<Port>,
    /// `volumes:`.
    pub volumes: Vec<Mount>,
    /// `networks:` with their extra aliases; empty means the project's default network.
    pub networks: Vec<(String, Vec<String>)>,
    /// `depends_on:`.
    pub depends_on: Vec<(String, Condition)>,
    /// `healthcheck:`.
    pub healthcheck: Option<Healthcheck>,
    /// `restart:`.
    pub restart: Option<Restart>,
    /// `cap_add:`.
    pub cap_add: Vec<String>,
    /// `init:`.
    pub init: Option<bool>,
}

/// When a dependency counts as met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Its container was started.
    Started,
    /// Its healthcheck passed.
    Healthy,
    /// It exited with code 0.
    CompletedSuccessfully,
}

impl Condition {
    /// The compose name.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Started => "service_started",
            Condition::Healthy => "service_healthy",
            Condition::CompletedSuccessfully => "service_completed_successfully",
        }
    }
}

/// A published port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// The host address to bind (all when absent).
    pub host_ip: Option<String>,
    /// The host port (an ephemeral one when absent).
    pub published: Option<u16>,
    /// The container port.
    pub target: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// A mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mount {
    /// A host path (absolute).
    Bind {
        /// The host path.
        source: PathBuf,
        /// Where inside.
        target: String,
        /// Read-only.
        read_only: bool,
    },
    /// A named volume declared at the top level.
    Volume {
        /// Its name in the file.
        name: String,
        /// Where inside.
        target: String,
        /// Read-only.
        read_only: bool,
    },
    /// An anonymous volume: removed with its container.
    Anonymous {
        /// Where inside.
        target: String,
    },
    /// A tmpfs.
    Tmpfs {
        /// Where inside.
        target: String,
    },
}

/// A healthcheck.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Healthcheck {
    /// `["CMD", ...]`, `["CMD-SHELL", "..."]`, or `["NONE"]` (disabled).
    pub test: Vec<String>,
    /// Between checks.
    pub interval: Option<Duration>,
    /// For one check.
    pub timeout: Option<Duration>,
    /// Failures before unhealthy.
    pub retries: Option<u32>,
    /// Failures during this time do not count.
    pub start_period: Option<Duration>,
}

/// A restart policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Never (the default).
    No,
    /// Always.
    Always,
    /// When it exits non-zero, at most this many times.
    OnFailure(Option<u32>),
    /// Unless stopped.
    UnlessStopped,
}

/// A top-level network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkDef {
    /// Its driver (`bridge` when absent).
    pub driver: Option<String>,
    /// No route outside.
    pub internal: bool,
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
}

/// A top-level volume.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeDef {
    /// Its driver (`local` when absent).
    pub driver: Option<String>,
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
}

/// Reads a compose file; every problem in it, when there are any. Variables (`${VAR}`,
/// `${VAR:-default}`, …) are taken from the host's environment, then from a `.env` file next
/// to the compose file.
pub fn load(path: &Path, mode: Mode) -> Result<ComposeFile, Vec<String>> {
    // Bind mounts and build contexts must be absolute for the engine.
    let path = &tidy(&if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    });
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("cannot read compose file {}: {e}", path.display())])?;
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let process = |name: &str| std::env::var(name).ok();
    let dotenv = dotenv::read(&dir.join(".env"), &process);
    let lookup = |name: &str| {
        std::env::var(name)
            .ok()
            .or_else(|| dotenv.get(name).cloned())
    };
    read(&text, path, &lookup, mode, true)
}

/// Reads compose text that came from `path` (for messages and relative paths).
pub fn parse(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    mode: Mode,
) -> Result<ComposeFile, Vec<String>> {
    read(text, path, env, mode, false)
}

/// [`parse`]; with `check_files`, build contexts and Dockerfiles must exist.
fn read(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    mode: Mode,
    check_files: bool,
) -> Result<ComposeFile, Vec<String>> {
    let file = path.display().to_string();
    let mut value: Value = serde_yaml_ng::from_str(text)
        .map_err(|e| vec![format!("{file} is not valid YAML: {e}")])?;
    if let Err(e) = value.apply_merge() {
        return Err(vec![format!("{file}: {e}")]);
    }
    let mut reader = Reader {
        file,
        dir: path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        problems: Vec::new(),
        warnings: Vec::new(),
        env,
        // Read only once the YAML reader accepted the file (it refuses what nests too deep).
        positions: Positions::read(text),
        mode,
        check_files,
    };
    reader.interpolate_all(&mut value, &mut Vec::new());
    let mut compose = reader.top_level(&value, path);
    if reader.problems.is_empty() {
        compose.warnings = reader.warnings;
        Ok(compose)
    } else {
        // The warnings go along, marked as such, so that a file is fixed in one pass.
        let mut found = reader.problems;
        found.extend(reader.warnings.iter().map(panther_plugin_api::warning));
        Err(found)
    }
}

struct Reader<'a> {
    file: String,
    dir: PathBuf,
    problems: Vec<String>,
    warnings: Vec<String>,
    env: &'a dyn Fn(&str) -> Option<String>,
    positions: Positions,
    mode: Mode,
    check_files: bool,
}

/// A name the engine accepts in container, network and volume names (the Compose
/// Specification's rule for service names).
fn is_engine_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A build context that is not a folder here: a Git repository or an archive by URL.
fn is_remote_context(context: &str) -> bool {
    [
        "http://",
        "https://",
        "git://",
        "git@",
        "ssh://",
        "github.com/",
    ]
    .iter()
    .any(|p| context.starts_with(p))
        || (context.ends_with(".git") && context.contains(':'))
}

/// `path` extended by `parts`.
fn sub(path: &[String], parts: &[&str]) -> KeyPath {
    let mut p = path.to_vec();
    p.extend(parts.iter().map(|s| s.to_string()));
    p
}

/// Where a path is, in words: `service `web`: `environment.PORT`` or `networks.back`.
fn describe(path: &[String]) -> String {
    match path {
        [services, name, rest @ ..] if services == "services" => {
            if rest.is_empty() {
                format!("service `{name}`")
            } else {
                format!("service `{name}`: `{}`", rest.join("."))
            }
        }
        _ => format!("`{}`", path.join(".")),
    }
}

fn key_name(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// A scalar as text; `None` for null and for collections.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(t) => scalar(&t.value),
        _ => None,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

impl Reader<'_> {
    fn problem(&mut self, message: impl Into<String>) {
        let message = message.into();
        self.problems.push(format!("{}: {message}", self.file));
    }

    /// `file:line:column` of the value (or key) at `path`; the file alone when unknown.
    fn at(&self, path: &[String], key: bool) -> String {
        let at = if key {
            self.positions.key(path)
        } else {
            self.positions.value(path)
        };
        match at {
            Some(at) => format!("{}:{at}", self.file),
            None => self.file.clone(),
        }
    }

    /// Refuses a service, network or volume name the engine would refuse.
    fn check_name(&mut self, path: &[&str], kind: &str) {
        let name = path[path.len() - 1];
        if !is_engine_name(name) {
            self.problem_at(
                &sub(&[], path),
                format!(
                    "{kind} name `{name}` would be refused by the engine: letters, digits, \
                     `.`, `_` and `-` only"
                ),
            );
        }
    }

    /// A problem with the key at `path`.
    fn problem_at(&mut self, path: &[String], message: impl Into<String>) {
        let at = self.at(path, true);
        self.problems.push(format!("{at}: {}", message.into()));
    }

    /// A warning about the key at `path`.
    fn warn_at(&mut self, path: &[String], message: impl Into<String>) {
        let at = self.at(path, true);
        self.warnings.push(format!("{at}: {}", message.into()));
    }

    /// Checks the keys of the mapping at `path` against what `place` supports: refuses or
    /// warns about the others (see [`crate::keys`]).
    fn keys(&mut self, map: &Mapping, place: Place, path: &[String]) {
        for key in map.keys() {
            let name = key_name(key);
            let key_path = sub(path, &[&name]);
            let what = describe(&key_path);
            let supported = || keys::supported(place).join(", ");
            match (keys::verdict(place, &name), self.mode) {
                (Verdict::Supported, _) => {}
                (Verdict::Ignored(why), Mode::Warn) => self.warn_at(
                    &key_path,
                    format!("{what} is not supported and is ignored: {why}"),
                ),
                (Verdict::Ignored(why), Mode::Strict) => self.problem_at(
                    &key_path,
                    format!(
                        "{what} is not supported (refused with `strict = true`; otherwise \
                         ignored: {why})"
                    ),
                ),
                (Verdict::Refused(why), _) => self.problem_at(
                    &key_path,
                    format!(
                        "{what} is not supported and cannot be ignored: {why} (supported here: {})",
                        supported()
                    ),
                ),
                (Verdict::Unknown, mode) => match keys::near_miss(place, &name) {
                    Some(meant) => self.problem_at(
                        &key_path,
                        format!("{what} is not a compose key (did you mean `{meant}`?)"),
                    ),
                    None if mode == Mode::Strict => self.problem_at(
                        &key_path,
                        format!(
                            "{what} is not a compose key (refused with `strict = true`; \
                             supported here: {})",
                            supported()
                        ),
                    ),
                    None => self.warn_at(
                        &key_path,
                        format!("{what} is not a compose key and is ignored"),
                    ),
                },
            }
        }
    }

    /// Replaces the variables in every value (not in keys, as the specification says).
    fn interpolate_all(&mut self, value: &mut Value, path: &mut KeyPath) {
        match value {
            Value::String(s) => match interpolate(s, self.env) {
                Ok(done) => {
                    for name in &done.unset {
                        let at = self.at(path, false);
                        self.warnings.push(format!(
                            "{at}: {}: variable `{name}` is not set (in the environment or \
                             `.env`): replaced by an empty string",
                            describe(path)
                        ));
                    }
                    *s = done.text;
                }
                Err(e) => {
                    let at = self.at(path, false);
                    self.problems.push(format!("{at}: {}: {e}", describe(path)));
                }
            },
            Value::Sequence(items) => {
                for (i, v) in items.iter_mut().enumerate() {
                    path.push(i.to_string());
                    self.interpolate_all(v, path);
                    path.pop();
                }
            }
            Value::Mapping(map) => {
                for (k, v) in map.iter_mut() {
                    path.push(key_name(k));
                    self.interpolate_all(v, path);
                    path.pop();
                }
            }
            Value::Tagged(t) => self.interpolate_all(&mut t.value, path),
            _ => {}
        }
    }

    fn top_level(&mut self, value: &Value, path: &Path) -> ComposeFile {
        let mut compose = ComposeFile {
            path: path.to_path_buf(),
            dir: self.dir.clone(),
            ..ComposeFile::default()
        };
        let Value::Mapping(top) = value else {
            self.problem(format!(
                "the file must be a mapping with `services:`, not {}",
                kind(value)
            ));
            return compose;
        };
        self.keys(top, Place::TopLevel, &[]);
        compose.name = top.get("name").and_then(scalar);
        if let Some(value) = top.get("networks") {
            compose.networks = self.named_map(value, "networks", |r, name, v| r.network(name, v));
        }
        if let Some(value) = top.get("volumes") {
            compose.volumes = self.named_map(value, "volumes", |r, name, v| r.volume(name, v));
        }
        match top.get("services") {
            Some(Value::Mapping(services)) => {
                for (key, value) in services {
                    let name = key_name(key);
                    self.check_name(&["services", &name], "service");
                    if let Some(service) = self.service(&name, value) {
                        compose.services.insert(name, service);
                    }
                }
            }
            Some(Value::Null) | None => {
                self.problem("no services: `services:` must name at least one")
            }
            Some(other) => {
                self.problem(format!("`services` must be a mapping, not {}", kind(other)))
            }
        }
        self.cross_check(&compose);
        compose
    }

    fn named_map<T: Default>(
        &mut self,
        value: &Value,
        what: &str,
        mut item: impl FnMut(&mut Self, &str, &Mapping) -> T,
    ) -> BTreeMap<String, T> {
        let mut out = BTreeMap::new();
        match value {
            Value::Mapping(map) => {
                for (key, v) in map {
                    let name = key_name(key);
                    self.check_name(&[what, &name], &what[..what.len() - 1]);
                    let parsed = match v {
                        Value::Null => T::default(),
                        Value::Mapping(m) => item(self, &name, m),
                        other => {
                            self.problem(format!(
                                "{what} `{name}` must be a mapping or empty, not {}",
                                kind(other)
                            ));
                            continue;
                        }
                    };
                    out.insert(name, parsed);
                }
            }
            Value::Null => {}
            other => self.problem(format!("`{what}` must be a mapping, not {}", kind(other))),
        }
        out
    }

    fn network(&mut self, name: &str, map: &Mapping) -> NetworkDef {
        self.keys(map, Place::Network, &sub(&[], &["networks", name]));
        NetworkDef {
            driver: map.get("driver").and_then(scalar),
            internal: match map.get("internal") {
                Some(Value::Bool(b)) => *b,
                None => false,
                Some(other) => {
                    self.problem(format!(
                        "network `{name}`: `internal` must be true or false, not {}",
                        kind(other)
                    ));
                    false
                }
            },
            labels: map
                .get("labels")
                .map(|v| self.string_map(v, &format!("network `{name}`: `labels`")))
                .unwrap_or_default(),
        }
    }

    fn volume(&mut self, name: &str, map: &Mapping) -> VolumeDef {
        self.keys(map, Place::Volume, &sub(&[], &["volumes", name]));
        VolumeDef {
            driver: map.get("driver").and_then(scalar),
            labels: map
                .get("labels")
                .map(|v| self.string_map(v, &format!("volume `{name}`: `labels`")))
                .unwrap_or_default(),
        }
    }

    fn service(&mut self, name: &str, value: &Value) -> Option<Service> {
        let what = format!("service `{name}`");
        let map = match value {
            Value::Mapping(map) => map,
            other => {
                self.problem(format!("{what} must be a mapping, not {}", kind(other)));
                return None;
            }
        };
        let path = sub(&[], &["services", name]);
        self.keys(map, Place::Service, &path);
        let mut service = Service {
            image: map.get("image").and_then(scalar),
            ..Service::default()
        };
        if let Some(v) = map.get("build") {
            service.build = self.build(&what, &sub(&path, &["build"]), v);
        }
        if let Some(v) = map.get("command") {
            service.command = self.argv(&format!("{what}: `command`"), v);
        }
        if let Some(v) = map.get("entrypoint") {
            service.entrypoint = self.argv(&format!("{what}: `entrypoint`"), v);
        }
        if let Some(v) = map.get("environment") {
            service.environment = self.environment(&what, v);
        }
        if let Some(v) = map.get("ports") {
            service.ports = self.list(v, &format!("{what}: `ports`"), |r, i, item| {
                r.ports(&what, &sub(&path, &["ports", &i.to_string()]), item)
            });
        }
        if let Some(v) = map.get("volumes") {
            service.volumes = self.list(v, &format!("{what}: `volumes`"), |r, i, item| {
                r.mount(&what, &sub(&path, &["volumes", &i.to_string()]), item)
                    .into_iter()
                    .collect()
            });
        }
        if let Some(v) = map.get("networks") {
            service.networks = self.service_networks(&what, &path, v);
        }
        if let Some(v) = map.get("depends_on") {
            service.depends_on = self.depends_on(&what, &path, v);
        }
        if let Some(v) = map.get("healthcheck") {
            service.healthcheck = self.healthcheck(&what, &sub(&path, &["healthcheck"]), v);
        }
        if let Some(v) = map.get("restart") {
            service.restart = self.restart(&what, v);
        }
        if let Some(v) = map.get("cap_add") {
            service.cap_add = self.list(
                v,
                &format!("{what}: `cap_add`"),
                |r, _, item| match scalar(item) {
                    Some(cap) => vec![cap],
                    None => {
                        r.problem(format!("{what}: `cap_add` items must be strings"));
                        Vec::new()
                    }
                },
            );
        }
        match map.get("init") {
            Some(Value::Bool(b)) => service.init = Some(*b),
            Some(other) => self.problem(format!(
                "{what}: `init` must be true or false, not {}",
                kind(other)
            )),
            None => {}
        }
        // A `build` that was refused has said why already.
        if service.image.is_none() && !map.contains_key("build") {
            self.problem(format!("{what} has neither `image` nor `build`"));
        }
        Some(service)
    }

    fn list<T>(
        &mut self,
        value: &Value,
        what: &str,
        mut item: impl FnMut(&mut Self, usize, &Value) -> Vec<T>,
    ) -> Vec<T> {
        match value {
            Value::Sequence(items) => items
                .iter()
                .enumerate()
                .flat_map(|(i, v)| item(self, i, v))
                .collect(),
            Value::Null => Vec::new(),
            other => {
                self.problem(format!("{what} must be a list, not {}", kind(other)));
                Vec::new()
            }
        }
    }

    fn string_map(&mut self, value: &Value, what: &str) -> BTreeMap<String, String> {
        match value {
            Value::Mapping(map) => map
                .iter()
                .map(|(k, v)| (key_name(k), scalar(v).unwrap_or_default()))
                .collect(),
            Value::Sequence(items) => items
                .iter()
                .filter_map(scalar)
                .map(|item| match item.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (item, String::new()),
                })
                .collect(),
            Value::Null => BTreeMap::new(),
            other => {
                self.problem(format!(
                    "{what} must be a mapping or a list, not {}",
                    kind(other)
                ));
                BTreeMap::new()
            }
        }
    }

    fn build(&mut self, what: &str, path: &[String], value: &Value) -> Option<BuildSpec> {
        let spec = match value {
            Value::String(context) => BuildSpec::new(self.build_context(path, context)?),
            Value::Mapping(map) => {
                self.keys(map, Place::Build, path);
                let context = map
                    .get("context")
                    .and_then(scalar)
                    .unwrap_or_else(|| ".".into());
                let context = self.build_context(&sub(path, &["context"]), &context)?;
                let args = map
                    .get("args")
                    .map(|v| self.string_map(v, &format!("{what}: `build.args`")))
                    .unwrap_or_default();
                BuildSpec {
                    context,
                    dockerfile: map.get("dockerfile").and_then(scalar),
                    args: args.into_iter().collect(),
                }
            }
            other => {
                self.problem(format!(
                    "{what}: `build` must be a folder or a mapping, not {}",
                    kind(other)
                ));
                return None;
            }
        };
        if self.check_files && spec.context.is_dir() {
            let dockerfile = spec.dockerfile.as_deref().unwrap_or("Dockerfile");
            let file = spec.context.join(dockerfile);
            if !file.is_file() {
                let at = if spec.dockerfile.is_some() {
                    sub(path, &["dockerfile"])
                } else {
                    path.to_vec()
                };
                self.problem_at(
                    &at,
                    format!(
                        "{}: the Dockerfile {} does not exist",
                        describe(path),
                        file.display()
                    ),
                );
                return None;
            }
        }
        Some(spec)
    }

    /// The folder of a build context: relative to the compose file, or `~/…`. A remote
    /// context (a Git URL) is refused, and, when files are checked, a folder that is not
    /// there.
    fn build_context(&mut self, path: &[String], context: &str) -> Option<PathBuf> {
        if is_remote_context(context) {
            self.problem_at(
                path,
                format!(
                    "{}: `{context}` is a remote build context: a run here has no network to \
                     fetch it; clone it and give its folder",
                    describe(path)
                ),
            );
            return None;
        }
        let dir = self.host_path(context);
        if self.check_files && !dir.is_dir() {
            self.problem_at(
                path,
                format!(
                    "{}: the build context {} is not a folder",
                    describe(path),
                    dir.display()
                ),
            );
            return None;
        }
        Some(dir)
    }

    fn argv(&mut self, what: &str, value: &Value) -> Option<Vec<String>> {
        match value {
            Value::Null => None,
            Value::String(s) => match shlex::split(s) {
                Some(argv) => Some(argv),
                None => {
                    self.problem(format!(
                        "{what}: cannot split `{s}` into words (unbalanced quotes?)"
                    ));
                    None
                }
            },
            Value::Sequence(items) => {
                let argv: Vec<String> = items.iter().filter_map(scalar).collect();
                if argv.len() != items.len() {
                    self.problem(format!("{what}: every item must be a string"));
                }
                Some(argv)
            }
            other => {
                self.problem(format!(
                    "{what} must be a string or a list, not {}",
                    kind(other)
                ));
                None
            }
        }
    }

    fn environment(&mut self, what: &str, value: &Value) -> Vec<(String, Option<String>)> {
        match value {
            Value::Mapping(map) => map.iter().map(|(k, v)| (key_name(k), scalar(v))).collect(),
            Value::Sequence(items) => items
                .iter()
                .filter_map(|item| match scalar(item) {
                    Some(text) => Some(match text.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (text, None),
                    }),
                    None => {
                        self.problem(format!("{what}: `environment` items must be strings"));
                        None
                    }
                })
                .collect(),
            Value::Null => Vec::new(),
            other => {
                self.problem(format!(
                    "{what}: `environment` must be a mapping or a list, not {}",
                    kind(other)
                ));
                Vec::new()
            }
        }
    }

    fn ports(&mut self, what: &str, path: &[String], value: &Value) -> Vec<Port> {
        match value {
            Value::Mapping(map) => {
                self.keys(map, Place::Port, path);
                let target = map
                    .get("target")
                    .and_then(scalar)
                    .and_then(|t| t.parse().ok());
                let Some(target) = target else {
                    self.problem(format!("{what}: a `ports` entry needs a numeric `target`"));
                    return Vec::new();
                };
                let published = match map.get("published").and_then(scalar) {
                    Some(p) => match p.parse() {
                        Ok(p) => Some(p),
                        Err(_) => {
                            self.problem(format!(
                                "{what}: `published` port `{p}` is not a port number"
                            ));
                            return Vec::new();
                        }
                    },
                    None => None,
                };
                vec![Port {
                    host_ip: map.get("host_ip").and_then(scalar),
                    published,
                    target,
                    protocol: map
                        .get("protocol")
                        .and_then(scalar)
                        .unwrap_or_else(|| "tcp".into()),
                }]
            }
            other => match scalar(other) {
                Some(text) => match parse_port(&text) {
                    Ok(ports) => ports,
                    Err(e) => {
                        self.problem(format!("{what}: port `{text}`: {e}"));
                        Vec::new()
                    }
                },
                None => {
                    self.problem(format!(
                        "{what}: a `ports` entry must be a string or a mapping"
                    ));
                    Vec::new()
                }
            },
        }
    }

    fn mount(&mut self, what: &str, path: &[String], value: &Value) -> Option<Mount> {
        match value {
            Value::String(text) => {
                let parts: Vec<&str> = text.split(':').collect();
                let (source, target, mode) = match parts.as_slice() {
                    [target] => {
                        return Some(Mount::Anonymous {
                            target: target.to_string(),
                        })
                    }
                    [source, target] => (*source, *target, None),
                    [source, target, mode] => (*source, *target, Some(*mode)),
                    _ => {
                        self.problem(format!(
                            "{what}: volume `{text}` is not `SOURCE:TARGET[:MODE]`"
                        ));
                        return None;
                    }
                };
                let read_only = match mode {
                    None | Some("rw") => false,
                    Some("ro") => true,
                    Some(other) => {
                        self.problem(format!(
                            "{what}: volume `{text}`: unsupported mode `{other}` (supported: ro, rw)"
                        ));
                        return None;
                    }
                };
                Some(self.mount_of(source, target.to_string(), read_only))
            }
            Value::Mapping(map) => {
                self.keys(map, Place::VolumeMount, path);
                let Some(target) = map.get("target").and_then(scalar) else {
                    self.problem(format!("{what}: a `volumes` entry needs a `target`"));
                    return None;
                };
                let read_only = matches!(map.get("read_only"), Some(Value::Bool(true)));
                let source = map.get("source").and_then(scalar);
                match map.get("type").and_then(scalar).as_deref() {
                    Some("bind") => match source {
                        Some(source) => Some(Mount::Bind {
                            source: self.host_path(&source),
                            target,
                            read_only,
                        }),
                        None => {
                            self.problem(format!("{what}: a bind mount needs a `source`"));
                            None
                        }
                    },
                    Some("volume") => match source {
                        Some(name) => Some(Mount::Volume {
                            name,
                            target,
                            read_only,
                        }),
                        None => Some(Mount::Anonymous { target }),
                    },
                    Some("tmpfs") => Some(Mount::Tmpfs { target }),
                    other => {
                        self.problem(format!(
                            "{what}: unsupported volume type `{}` (supported: bind, volume, tmpfs)",
                            other.unwrap_or("")
                        ));
                        None
                    }
                }
            }
            other => {
                self.problem(format!(
                    "{what}: a `volumes` entry must be a string or a mapping, not {}",
                    kind(other)
                ));
                None
            }
        }
    }

    fn mount_of(&self, source: &str, target: String, read_only: bool) -> Mount {
        if source.starts_with(['/', '.', '~']) {
            Mount::Bind {
                source: self.host_path(source),
                target,
                read_only,
            }
        } else {
            Mount::Volume {
                name: source.to_string(),
                target,
                read_only,
            }
        }
    }

    /// A host path as written: absolute, `~` or `~/…` (the user's home), or relative to
    /// the compose file's folder.
    fn host_path(&self, source: &str) -> PathBuf {
        let home = || (self.env)("HOME").map(PathBuf::from);
        if source == "~" {
            if let Some(home) = home() {
                return home;
            }
        }
        if let Some(rest) = source.strip_prefix("~/") {
            if let Some(home) = home() {
                return tidy(&home.join(rest));
            }
        }
        tidy(&self.dir.join(source))
    }

    fn service_networks(
        &mut self,
        what: &str,
        path: &[String],
        value: &Value,
    ) -> Vec<(String, Vec<String>)> {
        match value {
            Value::Sequence(items) => items
                .iter()
                .filter_map(|item| match scalar(item) {
                    Some(name) => Some((name, Vec::new())),
                    None => {
                        self.problem(format!("{what}: `networks` items must be network names"));
                        None
                    }
                })
                .collect(),
            Value::Mapping(map) => map
                .iter()
                .map(|(k, v)| {
                    let name = key_name(k);
                    let aliases = match v {
                        Value::Null => Vec::new(),
                        Value::Mapping(m) => {
                            self.keys(m, Place::ServiceNetwork, &sub(path, &["networks", &name]));
                            m.get("aliases")
                                .map(|a| {
                                    self.list(a, &format!("{what}: `aliases`"), |_, _, i| {
                                        scalar(i).into_iter().collect()
                                    })
                                })
                                .unwrap_or_default()
                        }
                        other => {
                            self.problem(format!(
                                "{what}: network `{name}` must be a mapping or empty, not {}",
                                kind(other)
                            ));
                            Vec::new()
                        }
                    };
                    (name, aliases)
                })
                .collect(),
            other => {
                self.problem(format!(
                    "{what}: `networks` must be a list or a mapping, not {}",
                    kind(other)
                ));
                Vec::new()
            }
        }
    }

    fn depends_on(
        &mut self,
        what: &str,
        path: &[String],
        value: &Value,
    ) -> Vec<(String, Condition)> {
        match value {
            Value::Sequence(items) => items
                .iter()
                .filter_map(|item| match scalar(item) {
                    Some(name) => Some((name, Condition::Started)),
                    None => {
                        self.problem(format!("{what}: `depends_on` items must be service names"));
                        None
                    }
                })
                .collect(),
            Value::Mapping(map) => map
                .iter()
                .filter_map(|(k, v)| {
                    let name = key_name(k);
                    let condition = match v {
                        Value::Null => Condition::Started,
                        Value::Mapping(m) => {
                            self.keys(m, Place::DependsOn, &sub(path, &["depends_on", &name]));
                            match m.get("condition").and_then(scalar).as_deref() {
                                None | Some("service_started") => Condition::Started,
                                Some("service_healthy") => Condition::Healthy,
                                Some("service_completed_successfully") => {
                                    Condition::CompletedSuccessfully
                                }
                                Some(other) => {
                                    self.problem(format!(
                                        "{what}: `depends_on.{name}`: unknown condition `{other}` \
                                         (supported: service_started, service_healthy, \
                                         service_completed_successfully)"
                                    ));
                                    return None;
                                }
                            }
                        }
                        other => {
                            self.problem(format!(
                                "{what}: `depends_on.{name}` must be a mapping, not {}",
                                kind(other)
                            ));
                            return None;
                        }
                    };
                    Some((name, condition))
                })
                .collect(),
            other => {
                self.problem(format!(
                    "{what}: `depends_on` must be a list or a mapping, not {}",
                    kind(other)
                ));
                Vec::new()
            }
        }
    }

    fn healthcheck(&mut self, what: &str, path: &[String], value: &Value) -> Option<Healthcheck> {
        let Value::Mapping(map) = value else {
            self.problem(format!(
                "{what}: `healthcheck` must be a mapping, not {}",
                kind(value)
            ));
            return None;
        };
        self.keys(map, Place::Healthcheck, path);
        let disabled = matches!(map.get("disable"), Some(Value::Bool(true)));
        let test = match map.get("test") {
            _ if disabled => vec!["NONE".to_string()],
            Some(Value::String(command)) => vec!["CMD-SHELL".to_string(), command.clone()],
            Some(Value::Sequence(items)) => {
                let test: Vec<String> = items.iter().filter_map(scalar).collect();
                match test.first().map(String::as_str) {
                    Some("CMD" | "CMD-SHELL" | "NONE") => test,
                    _ => {
                        self.problem(format!(
                            "{what}: `healthcheck.test` as a list must start with CMD, CMD-SHELL or NONE"
                        ));
                        return None;
                    }
                }
            }
            Some(other) => {
                self.problem(format!(
                    "{what}: `healthcheck.test` must be a string or a list, not {}",
                    kind(other)
                ));
                return None;
            }
            None => {
                self.problem(format!("{what}: `healthcheck` needs a `test`"));
                return None;
            }
        };
        let mut duration = |key: &str| -> Option<Duration> {
            let text = scalar(map.get(key)?)?;
            match parse_duration(&text) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.problem(format!("{what}: `healthcheck.{key}`: {e}"));
                    None
                }
            }
        };
        let interval = duration("interval");
        let timeout = duration("timeout");
        let start_period = duration("start_period");
        let retries = match map.get("retries") {
            None => None,
            Some(v) => match scalar(v).and_then(|r| r.parse().ok()) {
                Some(r) => Some(r),
                None => {
                    self.problem(format!(
                        "{what}: `healthcheck.retries` must be a whole number"
                    ));
                    None
                }
            },
        };
        Some(Healthcheck {
            test,
            interval,
            timeout,
            retries,
            start_period,
        })
    }

    fn restart(&mut self, what: &str, value: &Value) -> Option<Restart> {
        let text = match value {
            Value::Bool(false) => "no".to_string(),
            other => scalar(other).unwrap_or_default(),
        };
        match text.as_str() {
            "no" => Some(Restart::No),
            "always" => Some(Restart::Always),
            "unless-stopped" => Some(Restart::UnlessStopped),
            "on-failure" => Some(Restart::OnFailure(None)),
            other => match other.strip_prefix("on-failure:").map(str::parse) {
                Some(Ok(n)) => Some(Restart::OnFailure(Some(n))),
                _ => {
                    self.problem(format!(
                        "{what}: unknown `restart` policy `{other}` (supported: no, always, \
                         on-failure[:N], unless-stopped)"
                    ));
                    None
                }
            },
        }
    }

    /// What needs the whole file: dependencies, networks and volumes that exist, no cycles.
    fn cross_check(&mut self, compose: &ComposeFile) {
        let names: Vec<String> = compose.services.keys().cloned().collect();
        for (name, service) in &compose.services {
            for (dep, _) in &service.depends_on {
                if !compose.services.contains_key(dep) {
                    let hint = closest(dep, &names)
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    self.problem(format!(
                        "service `{name}` depends on `{dep}`, which is not a service of this file{hint}"
                    ));
                }
            }
            for (network, _) in &service.networks {
                if network != "default" && !compose.networks.contains_key(network) {
                    self.problem(format!(
                        "service `{name}` uses network `{network}`, which is not declared under the top-level `networks:`"
                    ));
                }
            }
            for mount in &service.volumes {
                if let Mount::Volume { name: volume, .. } = mount {
                    if !compose.volumes.contains_key(volume) {
                        self.problem(format!(
                            "service `{name}` uses volume `{volume}`, which is not declared under the top-level `volumes:` (a host path starts with `/`, `./` or `~/`)"
                        ));
                    }
                }
            }
        }
        if let Some(cycle) = find_cycle(compose) {
            self.problem(format!("dependency cycle: {}", cycle.join(" -> ")));
        }
    }
}

/// `a/./b/../c` as `a/c`, without touching the file system.
pub fn tidy(path: &Path) -> PathBuf {
    let mut clean = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !clean.pop() {
                    clean.push("..");
                }
            }
            other => clean.push(other),
        }
    }
    clean
}

/// A `depends_on` cycle, as the names along it (the first repeated at the end).
fn find_cycle(compose: &ComposeFile) -> Option<Vec<String>> {
    fn visit<'a>(
        name: &'a str,
        compose: &'a ComposeFile,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|s| *s == name) {
            let mut cycle: Vec<String> = stack[at..].iter().map(|s| s.to_string()).collect();
            cycle.push(name.to_string());
            return Some(cycle);
        }
        if done.contains(name) {
            return None;
        }
        stack.push(name);
        if let Some(service) = compose.services.get(name) {
            for (dep, _) in &service.depends_on {
                if let Some(cycle) = visit(dep, compose, stack, done) {
                    return Some(cycle);
                }
            }
        }
        stack.pop();
        done.insert(name);
        None
    }
    let mut done = BTreeSet::new();
    compose
        .services
        .keys()
        .find_map(|name| visit(name, compose, &mut Vec::new(), &mut done))
}

/// The known name closest to `name`, when close enough to be a typo.
pub fn closest<'a>(name: &str, known: &'a [String]) -> Option<&'a str> {
    panther_plugin_api::suggest::closest(name, known).map(String::as_str)
}

/// `80`, `8080:80`, `127.0.0.1:8080:80`, `127.0.0.1::80`, `8080:80/udp`, `8000-8001:80-81`.
pub fn parse_port(text: &str) -> Result<Vec<Port>, String> {
    let (rest, protocol) = match text.rsplit_once('/') {
        Some((rest, protocol @ ("tcp" | "udp" | "sctp"))) => (rest, protocol.to_string()),
        Some((_, other)) => return Err(format!("unknown protocol `{other}`")),
        None => (text, "tcp".to_string()),
    };
    let parts: Vec<&str> = rest.rsplitn(3, ':').collect();
    let (host_ip, published, target) = match parts.as_slice() {
        [target] => (None, None, *target),
        [target, published] => (None, Some(*published), *target),
        [target, published, ip] => (
            Some(ip.trim_matches(['[', ']']).to_string()),
            Some(*published),
            *target,
        ),
        _ => return Err("expected [[IP:]HOST:]CONTAINER[/PROTOCOL]".into()),
    };
    let range = |text: &str| -> Result<(u16, u16), String> {
        let (a, b) = text.split_once('-').unwrap_or((text, text));
        let a: u16 = a
            .parse()
            .map_err(|_| format!("`{text}` is not a port number"))?;
        let b: u16 = b
            .parse()
            .map_err(|_| format!("`{text}` is not a port number"))?;
        if b < a {
            return Err(format!("`{text}` is an empty range"));
        }
        Ok((a, b))
    };
    let (t0, t1) = range(target)?;
    let published = match published.filter(|p| !p.is_empty()) {
        Some(p) => {
            let (p0, p1) = range(p)?;
            if p1 - p0 != t1 - t0 {
                return Err("the host and container ranges differ in length".into());
            }
            Some(p0)
        }
        None => None,
    };
    Ok((0..=(t1 - t0))
        .map(|i| Port {
            host_ip: host_ip.clone().filter(|ip| !ip.is_empty()),
            published: published.map(|p| p + i),
            target: t0 + i,
            protocol: protocol.clone(),
        })
        .collect())
}

/// A compose duration: `10s`, `1m30s`, `500ms`, `1.5s`, `2h`, `100us`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration like 10s, 1m30s or 500ms");
    let mut total = 0f64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..number_end].parse().map_err(|_| bad())?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<ComposeFile, Vec<String>> {
        let env = |name: &str| match name {
            "PORT" => Some("7000".to_string()),
            "HOME" => Some("/home/u".to_string()),
            _ => None,
        };
        parse(text, Path::new("/exp/compose.yaml"), &env, Mode::Warn)
    }

    fn read_strict(text: &str) -> Result<ComposeFile, Vec<String>> {
        parse(
            text,
            Path::new("/exp/compose.yaml"),
            &|_| None,
            Mode::Strict,
        )
    }

    #[test]
    fn every_supported_key_is_read() {
        let compose = read(
            r#"
name: demo
version: "3.9"
x-common: &common
  restart: "no"
services:
  server:
    <<: *common
    build:
      context: ./ctx
      dockerfile: server.Dockerfile
      args: { MODE: fast }
    image: demo/server:1
    command: echo-server --port ${PORT}
    environment:
      A: 1
      B:
    ports: ["127.0.0.1:8080:80", "9000-9001:9000-9001/udp", {target: 53, protocol: udp}]
    volumes: ["./data:/data:ro", "cache:/cache", "/scratch", {type: tmpfs, target: /tmp}]
    networks:
      back: { aliases: [srv] }
    healthcheck:
      test: ["CMD", "/bin/echo-client", "127.0.0.1:7000"]
      interval: 500ms
      timeout: 1m30s
      retries: 5
      start_period: 1.5s
    cap_add: [NET_ADMIN]
    init: true
  client:
    image: demo/client
    entrypoint: ["/bin/echo-client"]
    environment: ["X=1", "Y"]
    depends_on:
      server: { condition: service_healthy }
    restart: on-failure:3
    networks: [back]
networks:
  back: { internal: true }
volumes:
  cache:
"#,
        )
        .unwrap();
        assert_eq!(compose.name.as_deref(), Some("demo"));
        let server = &compose.services["server"];
        assert_eq!(server.restart, Some(Restart::No), "merged from x-common");
        let build = server.build.as_ref().unwrap();
        assert_eq!(build.context, Path::new("/exp/ctx"));
        assert_eq!(build.dockerfile.as_deref(), Some("server.Dockerfile"));
        assert_eq!(build.args, [("MODE".to_string(), "fast".to_string())]);
        assert_eq!(
            server.command.as_deref().unwrap(),
            ["echo-server", "--port", "7000"]
        );
        assert_eq!(
            server.environment,
            [("A".into(), Some("1".into())), ("B".into(), None)]
        );
        assert_eq!(server.ports.len(), 4);
        assert_eq!(server.ports[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(server.ports[2].published, Some(9001));
        assert_eq!(server.ports[3].protocol, "udp");
        assert_eq!(
            server.volumes,
            [
                Mount::Bind {
                    source: "/exp/data".into(),
                    target: "/data".into(),
                    read_only: true
                },
                Mount::Volume {
                    name: "cache".into(),
                    target: "/cache".into(),
                    read_only: false
                },
                Mount::Anonymous {
                    target: "/scratch".into()
                },
                Mount::Tmpfs {
                    target: "/tmp".into()
                },
            ]
        );
        assert_eq!(
            server.networks,
            [("back".to_string(), vec!["srv".to_string()])]
        );
        let health = server.healthcheck.as_ref().unwrap();
        assert_eq!(health.interval, Some(Duration::from_millis(500)));
        assert_eq!(health.timeout, Some(Duration::from_secs(90)));
        assert_eq!(health.start_period, Some(Duration::from_millis(1500)));
        assert_eq!(health.retries, Some(5));
        assert_eq!(server.cap_add, ["NET_ADMIN"]);
        assert_eq!(server.init, Some(true));
        let client = &compose.services["client"];
        assert_eq!(
            client.depends_on,
            [("server".to_string(), Condition::Healthy)]
        );
        assert_eq!(client.restart, Some(Restart::OnFailure(Some(3))));
        assert_eq!(client.environment[1], ("Y".to_string(), None));
        assert!(compose.networks["back"].internal);
        assert!(compose.volumes.contains_key("cache"));
    }

    #[test]
    fn keys_that_cannot_change_a_run_are_warned_about_with_their_line_and_column() {
        let compose = read(
            "x-logging: &logging\n  logging: {driver: json-file}\nservices:\n  web:\n    <<: *logging\n    image: x\n    labels: [a=b]\n    frobnicate: 1\n    healthcheck:\n      test: [CMD, x]\n      start_interval: 1s\nsecrets: {}\n",
        )
        .unwrap();
        let warnings = compose.warnings.join("\n");
        for needle in [
            // Merged from the anchor: the anchor's line.
            "/exp/compose.yaml:2:3: service `web`: `logging` is not supported and is ignored",
            "/exp/compose.yaml:7:5: service `web`: `labels` is not supported and is ignored: metadata",
            "/exp/compose.yaml:8:5: service `web`: `frobnicate` is not a compose key and is ignored",
            "/exp/compose.yaml:11:7: service `web`: `healthcheck.start_interval` is not supported and is ignored",
            "/exp/compose.yaml:12:1: `secrets` is not supported and is ignored",
        ] {
            assert!(warnings.contains(needle), "`{needle}` missing in:\n{warnings}");
        }
        assert_eq!(compose.warnings.len(), 5, "{warnings}");
    }

    #[test]
    fn keys_that_change_what_runs_and_typos_of_them_are_refused() {
        let problems = read(
            "services:\n  web:\n    image: x\n    privileged: true\n    comand: [run]\n    user: nobody\n    ports:\n      - {target: 80, mode: host}\n      - {target: 81, publishd: 8081}\ninclude: [other.yaml]\n",
        )
        .unwrap_err();
        let all = problems.join("\n");
        for needle in [
            "/exp/compose.yaml:4:5: service `web`: `privileged` is not supported and cannot be ignored: it changes what a service may do",
            "/exp/compose.yaml:5:5: service `web`: `comand` is not a compose key (did you mean `command`?)",
            "/exp/compose.yaml:6:5: service `web`: `user` is not supported and cannot be ignored",
            "/exp/compose.yaml:10:1: `include` is not supported and cannot be ignored",
            // A near miss of a port key; `mode` is ignored (a warning, not a problem).
            "/exp/compose.yaml:9:22: service `web`: `ports.1.publishd` is not a compose key (did you mean `published`?)",
        ] {
            assert!(all.contains(needle), "`{needle}` missing in:\n{all}");
        }
        // The warnings come along, marked, so that the file is fixed in one pass.
        let (warnings, refused): (Vec<&String>, Vec<&String>) = problems
            .iter()
            .partition(|p| p.starts_with(panther_plugin_api::WARNING_PREFIX));
        assert_eq!(refused.len(), 5, "{all}");
        assert_eq!(warnings.len(), 1, "{all}");
        assert!(warnings[0].contains("`ports.0.mode`"), "{all}");
    }

    #[test]
    fn strict_refuses_what_would_be_ignored() {
        let problems =
            read_strict("services:\n  web:\n    image: x\n    labels: {a: b}\n    frobnicate: 1\n")
                .unwrap_err();
        let all = problems.join("\n");
        assert!(
            all.contains("/exp/compose.yaml:4:5: service `web`: `labels` is not supported (refused with `strict = true`; otherwise ignored: metadata"),
            "{all}"
        );
        assert!(
            all.contains("/exp/compose.yaml:5:5: service `web`: `frobnicate` is not a compose key (refused with `strict = true`"),
            "{all}"
        );
        // Nothing to refuse: strict reads a file like any other.
        assert!(read_strict("services:\n  web: {image: x}\n")
            .unwrap()
            .warnings
            .is_empty());
    }

    #[test]
    fn variables_are_replaced_in_values_and_unset_ones_are_warned_about() {
        let compose = read(
            "services:\n  web:\n    image: \"img:${TAG}\"\n    command: [\"--port=${PORT:-1}\", \"$$HOME\", \"${A:-${B:-x}}\"]\n    environment:\n      HOME_DIR: ${HOME}\n      ${KEY}: kept\n",
        )
        .unwrap();
        let web = &compose.services["web"];
        assert_eq!(web.image.as_deref(), Some("img:"));
        assert_eq!(
            web.command.as_deref().unwrap(),
            ["--port=7000", "$HOME", "x"]
        );
        assert_eq!(
            web.environment,
            [
                ("HOME_DIR".to_string(), Some("/home/u".to_string())),
                // Keys are not interpolated.
                ("${KEY}".to_string(), Some("kept".to_string())),
            ]
        );
        assert_eq!(
            compose.warnings,
            ["/exp/compose.yaml:3:12: service `web`: `image`: variable `TAG` is not set (in the environment or `.env`): replaced by an empty string"]
        );
        let problems = read(
            "services:\n  web:\n    image: x\n    environment:\n      - TOKEN=${TOKEN:?set TOKEN to the test token}\n",
        )
        .unwrap_err();
        assert_eq!(
            problems,
            ["/exp/compose.yaml:5:9: service `web`: `environment.0`: required variable `TOKEN` is not set: set TOKEN to the test token"]
        );
    }

    #[test]
    fn variables_come_from_the_environment_before_the_dot_env_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".env"),
            "# comment\nexport IMAGE_FROM_DOTENV=\"from-dotenv:1\"\nPATH=not-this\n",
        )
        .unwrap();
        let file = dir.path().join("compose.yaml");
        std::fs::write(
            &file,
            "services:\n  web:\n    image: ${IMAGE_FROM_DOTENV}\n    command: [\"${PATH:+has-path}\"]\n",
        )
        .unwrap();
        let compose = load(&file, Mode::Warn).unwrap();
        let web = &compose.services["web"];
        assert_eq!(web.image.as_deref(), Some("from-dotenv:1"));
        assert_eq!(web.command.as_deref().unwrap(), ["has-path"]);
    }

    #[test]
    fn unknown_dependencies_and_cycles_are_problems() {
        let problems = read(
            "services:\n  server: {image: x, depends_on: [client]}\n  client: {image: x, depends_on: {sever: {condition: service_healthy}, server: {}}}\n",
        )
        .unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains(
                "service `client` depends on `sever`, which is not a service of this file (did you mean `server`?)"
            )),
            "{problems:#?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("dependency cycle: client -> server -> client")),
            "{problems:#?}"
        );
    }

    #[test]
    fn bad_values_are_problems() {
        let problems = read(
            "services:\n  a:\n    image: x\n    restart: sometimes\n    ports: [\"99999\"]\n    volumes: [\"data:/d\"]\n    networks: [front]\n    healthcheck: {test: [CMD, x], interval: soon}\n  b: {}\n",
        )
        .unwrap_err();
        let all = problems.join("\n");
        for needle in [
            "unknown `restart` policy `sometimes`",
            "port `99999`",
            "volume `data`, which is not declared",
            "network `front`, which is not declared",
            "`healthcheck.interval`: `soon` is not a duration",
            "service `b` has neither `image` nor `build`",
        ] {
            assert!(all.contains(needle), "{needle} missing in:\n{all}");
        }
    }

    #[test]
    fn names_the_engine_refuses_and_remote_contexts_are_refused_and_tilde_is_home() {
        let problems = read(
            "services:\n  \"web app\":\n    image: x\n  git:\n    build: https://github.com/example/repo.git\n  ok:\n    build: {context: \"~/ctx\"}\nnetworks:\n  \"bad/net\":\n",
        )
        .unwrap_err();
        let all = problems.join("\n");
        for needle in [
            "/exp/compose.yaml:2:3: service name `web app` would be refused by the engine",
            "/exp/compose.yaml:9:3: network name `bad/net` would be refused by the engine",
            "/exp/compose.yaml:5:5: service `git`: `build`: `https://github.com/example/repo.git` is a remote build context: a run here has no network",
        ] {
            assert!(all.contains(needle), "`{needle}` missing in:\n{all}");
        }
        let compose =
            read("services:\n  ok:\n    build: {context: \"~/ctx\"}\n  home:\n    build: \"~\"\n")
                .unwrap();
        let context = |s: &str| compose.services[s].build.as_ref().unwrap().context.clone();
        assert_eq!(context("ok"), Path::new("/home/u/ctx"));
        assert_eq!(context("home"), Path::new("/home/u"));
    }

    #[test]
    fn build_contexts_and_dockerfiles_must_exist_when_the_file_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ctx")).unwrap();
        let file = dir.path().join("compose.yaml");
        std::fs::write(
            &file,
            "services:\n  a:\n    build: ./missing\n  b:\n    build: {context: ctx, dockerfile: other.Dockerfile}\n  c:\n    build: ctx\n",
        )
        .unwrap();
        let problems = load(&file, Mode::Warn).unwrap_err();
        let all = problems.join("\n");
        let at = file.display();
        for needle in [
            format!(
                "{at}:3:5: service `a`: `build`: the build context {} is not a folder",
                dir.path().join("missing").display()
            ),
            format!(
                "{at}:5:27: service `b`: `build`: the Dockerfile {} does not exist",
                dir.path().join("ctx/other.Dockerfile").display()
            ),
            format!(
                "{at}:7:5: service `c`: `build`: the Dockerfile {} does not exist",
                dir.path().join("ctx/Dockerfile").display()
            ),
        ] {
            assert!(all.contains(&needle), "`{needle}` missing in:\n{all}");
        }
        assert_eq!(problems.len(), 3, "{all}");
    }

    #[test]
    fn durations_read_like_compose_does() {
        assert_eq!(parse_duration("1h2m3s").unwrap(), Duration::from_secs(3723));
    }
}
