//! Host settings: a TOML file (`--config`, else the user's config file), then CLI flags.
//!
//! ```toml
//! plugin_dirs = ["/opt/panther/plugins"]
//! trust_plugin_dirs = ["/srv/shared-plugins"]   # accepted whatever their owner and mode
//! output = "results"
//! [scope]                 # host-scope settings, inherited by every job and experiment
//! disable = ["strace"]
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{experiment::diagnostic, scope::ScopeSettings};

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
    /// Host-scope settings.
    #[serde(default)]
    pub scope: ScopeSettings,
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
        toml::from_str(&text).map_err(|e| SettingsError {
            message: diagnostic(&path, &text, &e),
            path,
        })
    }
}

/// `$XDG_CONFIG_HOME/panther-host/config.toml` (or the platform's equivalent).
pub fn user_config_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "panther-host")
        .map(|d| d.config_dir().join("config.toml"))
}
