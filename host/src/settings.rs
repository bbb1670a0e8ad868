//! Host settings: a TOML file (`--config`, else the user's config file), then CLI flags.
//!
//! ```toml
//! plugin_dirs = ["/opt/panther/plugins"]
//! trust_plugin_dirs = ["/srv/shared-plugins"]   # accepted whatever their owner and mode
//! output = "results"
//! isolate = false                          # every plugin instance in a child process
//! isolate_plugin_dirs = ["/opt/untrusted"] # only the plugins of these folders
//! reporters = ["json", "junit"]           # written unless disabled (the built-in default)
//! [scope]                 # host-scope settings, inherited by every job and experiment
//! disable = ["strace"]
//! drivers = { network_environment = "localhost" }
//! [plugins.strace]        # default configuration of every strace instance
//! string_size = 128
//! ```

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::{
    experiment::{diagnostic, location},
    keys::{self, Shape},
    limits,
    scope::ScopeSettings,
};

/// The host's settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Extra plugin folders, searched after `--plugin-dir`.
    #[serde(default)]
    pub plugin_dirs: Vec<PathBuf>,
    /// Plugin folders (and their files) accepted even when someone else than the user
    /// running the host or root owns them or group or others may write them.
    #[serde(default)]
    pub trust_plugin_dirs: Vec<PathBuf>,
    /// Where results folders go (default `results`).
    #[serde(default)]
    pub output: Option<PathBuf>,
    /// Run every plugin instance in a child process of its own (as `--isolate`).
    #[serde(default)]
    pub isolate: bool,
    /// Run the instances of the plugins loaded from these folders in child processes.
    #[serde(default)]
    pub isolate_plugin_dirs: Vec<PathBuf>,
    /// The reporters added to every run when no instance of their plugin is configured
    /// (built-in: `json` and `junit`).
    #[serde(default)]
    pub reporters: Option<Vec<String>>,
    /// Default configuration per plugin, merged under every instance's own.
    #[serde(default)]
    pub plugins: BTreeMap<String, toml::Table>,
    /// Host-scope settings.
    #[serde(default)]
    pub scope: ScopeSettings,
    /// The file these settings were read from, if any.
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

/// A settings file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid settings file {}: {message}", path.display())]
pub struct SettingsError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, with line and column.
    pub message: String,
}

impl Settings {
    /// How the settings are named in messages: their file, or "the built-in settings".
    pub fn source(&self) -> String {
        match &self.path {
            Some(path) => path.display().to_string(),
            None => "the built-in settings".to_string(),
        }
    }

    /// Reads `explicit` when given (it must exist), else the user's config file when it exists,
    /// else the defaults.
    pub fn load(explicit: Option<&Path>) -> Result<Settings, SettingsError> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None => match user_config_path() {
                Some(path) if path.is_file() => path,
                _ => return Ok(Settings::default()),
            },
        };
        let text = std::fs::read_to_string(&path).map_err(|e| SettingsError {
            path: path.clone(),
            message: e.to_string(),
        })?;
        parse(&path, &text)
    }
}

/// The keys a settings file allows, table by table.
fn shape() -> Shape {
    Shape::of::<Settings>().with("scope", Shape::of::<ScopeSettings>())
}

/// Parses and checks a settings file; every unknown key and every bad value is listed.
fn parse(path: &Path, text: &str) -> Result<Settings, SettingsError> {
    let unknown = keys::unknown(text, &shape());
    let mut problems: Vec<String> = unknown
        .iter()
        .map(|u| format!("{}: {}", location(path, text, u.offset), u.message))
        .collect();
    let settings = match keys::deserialize::<Settings>(text, &unknown) {
        Ok(settings) => Some(settings),
        Err(e) => {
            problems.extend(e.map(|e| diagnostic(path, text, &e)));
            None
        }
    };
    if let Some(settings) = &settings {
        let paths = settings.plugin_dirs.iter().chain(&settings.output);
        for dir in paths.filter(|p| !limits::no_nul(p.as_os_str().as_encoded_bytes())) {
            problems.push(format!(
                "{}: `{}` contains a NUL byte",
                path.display(),
                dir.to_string_lossy().escape_default()
            ));
        }
    }
    match settings {
        Some(mut settings) if problems.is_empty() => {
            settings.path = Some(path.to_path_buf());
            Ok(settings)
        }
        _ => Err(SettingsError {
            path: path.to_path_buf(),
            message: problems.join("\n  "),
        }),
    }
}

/// `$XDG_CONFIG_HOME/panther-host/config.toml` (or the platform's equivalent).
pub fn user_config_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "panther-host")
        .map(|d| d.config_dir().join("config.toml"))
}
