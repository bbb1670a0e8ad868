//! What a plugin says about itself before anything is instantiated.
//!
//! [`Manifest`] is read by `panther-host list`, `info` and `check`; [`Resource`] is what an
//! instance claims exclusively (checked when a proxy instance is added); [`KeyAlias`] is a
//! configuration key written in another vocabulary (PANTHER's) that the plugin understands
//! or answers with a hint.

use std::{fmt, path::PathBuf};

use serde::{Deserialize, Serialize};

/// The three plugin types the host knows, each a namespace plus an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginKind {
    /// Deploys services somewhere (a driver: one per experiment).
    NetworkEnvironment,
    /// Wraps a service's command to trace or profile it (extensions, applied in order).
    ExecutionEnvironment,
    /// Writes the result of a run (proxy: many instances, each with its own arguments).
    Reporter,
}

impl PluginKind {
    /// Every kind, in the order the host lists them.
    pub const ALL: [PluginKind; 3] = [
        PluginKind::NetworkEnvironment,
        PluginKind::ExecutionEnvironment,
        PluginKind::Reporter,
    ];

    /// The name used in configuration files and listings.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::NetworkEnvironment => "network_environment",
            PluginKind::ExecutionEnvironment => "execution_environment",
            PluginKind::Reporter => "reporter",
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An external program a plugin needs, and the Debian package that provides it. Made with
/// [`Manifest::tool`] or [`Manifest::tool_with_override`]; non-exhaustive, so that a later
/// minor version can add a field without breaking anyone's code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Tool {
    /// The program name looked up on `PATH`, or an absolute path to a library.
    pub program: String,
    /// The Debian package to install when it is missing.
    pub package: String,
    // since 1.2: begin
    /// A key of the plugin's configuration that, when set, gives the tool's path instead of
    /// the lookup (`library = "/opt/lib/libprofiler.so"`). The host then skips its own
    /// search for that instance and leaves checking the path to the plugin's `validate`.
    /// Absent from manifests written before 1.2, which read as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_key: Option<String>,
    // since 1.2: end
}

// since 1.3: begin
/// A configuration key from another vocabulary, and what the plugin makes of it. Users coming
/// from PANTHER write its names (`sampling_frequency`, `output_file`); the plugin that owns the
/// configuration knows best what each one means here, so the mapping lives in its manifest
/// and a third-party plugin declares its own. Made with [`Manifest::alias_key`] or
/// [`Manifest::refuse_key`]; non-exhaustive, like [`Tool`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KeyAlias {
    /// The foreign key. A dotted path (`general.stop_time`) names a key inside a table;
    /// tables it leaves empty are removed.
    pub key: String,
    /// The key this plugin calls it. `Some`: the configuration is rewritten to it before the
    /// schema sees it, and [`note`](Self::note) is shown by `check -v`. `None`: the key is
    /// refused and the note is the error's hint (what to write instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Why, in a few words: what the key becomes here, or what to write instead.
    #[serde(default)]
    pub note: String,
}
// since 1.3: end

/// Everything the host knows about a plugin without instantiating it. Made with
/// [`Manifest::new`] and its builder methods; non-exhaustive, like [`Tool`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Manifest {
    /// The unique name users write in experiment files, e.g. `json` or `strace`.
    pub name: String,
    /// Which interface the plugin implements. Filled in by `export_plugin!`.
    pub kind: PluginKind,
    /// The plugin's own version (its crate version). Filled in by `export_plugin!`.
    pub version: String,
    /// The `panther-plugin-api` version the plugin was built against. Filled in by
    /// `export_plugin!`.
    pub api_version: String,
    /// One line for listings.
    pub description: String,
    /// Free-form tags other plugins may declare conflicts with (e.g. `valgrind`, `ld_preload`).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Plugin names or capabilities this plugin cannot be combined with in one scope.
    #[serde(default)]
    pub conflicts_with: Vec<String>,
    /// Extensions run in ascending priority; ties keep the configured order, then the name.
    #[serde(default)]
    pub priority: i32,
    /// External programs the plugin runs.
    #[serde(default)]
    pub tools: Vec<Tool>,
    /// The JSON Schema of the plugin's configuration. Filled in by `export_plugin!`.
    #[serde(default)]
    pub config_schema: serde_json::Value,
    // since 1.3: begin
    /// Keys of another vocabulary this plugin accepts under its own names or refuses with a
    /// hint, applied by the host before the schema check. Absent from manifests written
    /// before 1.3, which read as none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_aliases: Vec<KeyAlias>,
    // since 1.3: end
}

impl Manifest {
    /// A manifest for the plugin called `name`; `export_plugin!` fills in the rest.
    pub fn new(name: impl Into<String>) -> Self {
        Manifest {
            name: name.into(),
            kind: PluginKind::Reporter,
            version: String::new(),
            api_version: String::new(),
            description: String::new(),
            capabilities: Vec::new(),
            conflicts_with: Vec::new(),
            priority: 0,
            tools: Vec::new(),
            config_schema: serde_json::Value::Null,
            // since 1.3: begin
            key_aliases: Vec::new(),
            // since 1.3: end
        }
    }

    /// Sets the one-line description (defaults to the crate's `description`).
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }

    /// Adds a capability tag.
    pub fn capability(mut self, tag: impl Into<String>) -> Self {
        self.capabilities.push(tag.into());
        self
    }

    /// Declares that this plugin cannot be combined with a plugin of that name or capability.
    pub fn conflicts_with(mut self, name_or_capability: impl Into<String>) -> Self {
        self.conflicts_with.push(name_or_capability.into());
        self
    }

    /// Sets the extension priority (lower runs first).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Declares an external program the plugin needs.
    pub fn tool(mut self, program: impl Into<String>, package: impl Into<String>) -> Self {
        self.tools.push(Tool {
            program: program.into(),
            package: package.into(),
            // since 1.2: begin
            override_key: None,
            // since 1.2: end
        });
        self
    }

    // since 1.2: begin
    /// Declares an external program or library the plugin needs unless its configuration
    /// key `override_key` names one (see [`Tool::override_key`]).
    pub fn tool_with_override(
        mut self,
        program: impl Into<String>,
        package: impl Into<String>,
        override_key: impl Into<String>,
    ) -> Self {
        self.tools.push(Tool {
            program: program.into(),
            package: package.into(),
            override_key: Some(override_key.into()),
        });
        self
    }
    // since 1.2: end

    // since 1.3: begin
    /// Accepts `key` (another vocabulary's name) as this plugin's `to`: the host rewrites the
    /// configuration before validating it and shows `note` in `check -v`. Writing both keys
    /// is an error.
    pub fn alias_key(
        mut self,
        key: impl Into<String>,
        to: impl Into<String>,
        note: impl Into<String>,
    ) -> Self {
        self.key_aliases.push(KeyAlias {
            key: key.into(),
            to: Some(to.into()),
            note: note.into(),
        });
        self
    }

    /// Refuses `key` (another vocabulary's name) with `hint`, which says what to write
    /// instead or why there is no equivalent.
    pub fn refuse_key(mut self, key: impl Into<String>, hint: impl Into<String>) -> Self {
        self.key_aliases.push(KeyAlias {
            key: key.into(),
            to: None,
            note: hint.into(),
        });
        self
    }
    // since 1.3: end

    /// Whether this plugin and `other` refuse to share a scope, and why.
    pub fn conflict_with(&self, other: &Manifest) -> Option<String> {
        let one_way = |a: &Manifest, b: &Manifest| {
            a.conflicts_with.iter().find_map(|c| {
                if *c == b.name {
                    Some(format!(
                        "`{}` declares it cannot run with `{}`",
                        a.name, b.name
                    ))
                } else if b.capabilities.contains(c) {
                    Some(format!(
                        "`{}` declares it cannot run with `{c}` plugins, and `{}` is one",
                        a.name, b.name
                    ))
                } else {
                    None
                }
            })
        };
        one_way(self, other).or_else(|| one_way(other, self))
    }
}

/// Something an instance uses exclusively. Two instances in one scope may not claim the same.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Resource {
    /// The host's standard output.
    Stdout,
    /// A file the instance writes.
    File(PathBuf),
    /// A TCP or UDP port the instance listens on.
    Port(u16),
    /// Anything else, by name.
    Named(String),
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Stdout => f.write_str("stdout"),
            Resource::File(path) => write!(f, "file {}", path.display()),
            Resource::Port(port) => write!(f, "port {port}"),
            Resource::Named(name) => f.write_str(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_from_an_older_manifest_reads_without_an_override_and_writes_back_the_same() {
        let older = r#"{"program":"strace","package":"strace"}"#;
        let tool: Tool = serde_json::from_str(older).unwrap();
        assert_eq!(tool.override_key, None);
        assert_eq!(serde_json::to_string(&tool).unwrap(), older);

        let newer = Manifest::new("gperf_x").tool_with_override("libx.so.1", "libx1", "library");
        let json = serde_json::to_value(&newer.tools[0]).unwrap();
        assert_eq!(json["override_key"], "library");
    }

    #[test]
    fn a_manifest_from_before_key_aliases_reads_with_none_and_writes_none() {
        let mut older = serde_json::to_value(Manifest::new("old")).unwrap();
        assert!(
            older.get("key_aliases").is_none(),
            "empty lists are not written"
        );
        older.as_object_mut().unwrap().remove("key_aliases");
        let manifest: Manifest = serde_json::from_value(older).unwrap();
        assert!(manifest.key_aliases.is_empty());
    }

    #[test]
    fn aliases_and_refusals_cross_as_json() {
        let manifest = Manifest::new("x")
            .alias_key("sampling_frequency", "frequency", "same meaning")
            .refuse_key("output_file", "output goes to the results folder");
        let json = serde_json::to_value(&manifest).unwrap();
        assert_eq!(json["key_aliases"][0]["to"], "frequency");
        assert!(json["key_aliases"][1].get("to").is_none());
        let back: Manifest = serde_json::from_value(json).unwrap();
        assert_eq!(back.key_aliases, manifest.key_aliases);
    }
}
