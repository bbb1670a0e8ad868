//! Where a setting came from, so that `run --dry-run --format json` can say why the run
//! will do what it does. Precedence, nearest first: command line, service, experiment file,
//! job, settings file, built-in.

use serde::Serialize;

use crate::scope::{ScopeLevel, ScopeSettings};

/// Where a setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// The command line (or, for the library, the program that asked for the run).
    Cli,
    /// A `[[service]]` section.
    Service,
    /// The experiment file.
    Experiment,
    /// A job's scope (library only).
    Job,
    /// The settings file.
    Settings,
    /// The host's own default.
    BuiltIn,
}

impl Origin {
    /// The lower-case name, as in the JSON plan.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Cli => "cli",
            Origin::Service => "service",
            Origin::Experiment => "experiment",
            Origin::Job => "job",
            Origin::Settings => "settings",
            Origin::BuiltIn => "built-in",
        }
    }

    /// The origin of a scope's settings.
    pub fn of_level(level: ScopeLevel) -> Origin {
        match level {
            ScopeLevel::Host => Origin::Settings,
            ScopeLevel::Job => Origin::Job,
            ScopeLevel::Experiment => Origin::Experiment,
            ScopeLevel::Service => Origin::Service,
        }
    }
}

/// The settings of one scope around an experiment, with where they were written.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The scope's level (host or job).
    pub level: ScopeLevel,
    /// Where the settings were written, for messages: the settings file, `job`.
    pub source: String,
    /// The settings.
    pub settings: ScopeSettings,
}

impl Layer {
    /// The host scope, written in `source` (the settings file).
    pub fn host(source: impl Into<String>, settings: ScopeSettings) -> Layer {
        Layer {
            level: ScopeLevel::Host,
            source: source.into(),
            settings,
        }
    }

    /// A job scope.
    pub fn job(settings: ScopeSettings) -> Layer {
        Layer {
            level: ScopeLevel::Job,
            source: "the job's scope".into(),
            settings,
        }
    }
}

/// One setting in force and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    /// Its name, e.g. `drivers.network_environment`, `output`, `disable`.
    pub name: String,
    /// Its value.
    pub value: serde_json::Value,
    /// Where it came from.
    pub origin: Origin,
}

impl Setting {
    /// A setting.
    pub fn new(name: impl Into<String>, value: impl Serialize, origin: Origin) -> Setting {
        Setting {
            name: name.into(),
            value: serde_json::to_value(value).unwrap_or_default(),
            origin,
        }
    }
}
