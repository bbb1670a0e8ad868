//! Per-plugin default configuration from the settings file (`[plugins.strace]
//! string_size = 128`): merged under every instance's own configuration, key by key, so an
//! experiment's section (or a `--report` flag) always wins.
//!
//! Each table is checked against its plugin's schema when the settings are used, without the
//! schema's `required` list (a default may give some keys only): a wrong key or type is
//! reported against the settings file, not against every experiment it would reach.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::{config_schema, registry::Registry};

/// Default configurations by plugin name, and the file they were written in.
#[derive(Debug, Clone, Default)]
pub struct PluginDefaults {
    source: String,
    tables: BTreeMap<String, Map<String, Value>>,
}

impl PluginDefaults {
    /// The tables of `source` (the settings file).
    pub fn new(source: impl Into<String>, tables: &BTreeMap<String, toml::Table>) -> Self {
        PluginDefaults {
            source: source.into(),
            tables: tables
                .iter()
                .map(|(name, table)| {
                    let value = serde_json::to_value(table).unwrap_or_default();
                    let map = match value {
                        Value::Object(map) => map,
                        _ => Map::new(),
                    };
                    (name.clone(), map)
                })
                .collect(),
        }
    }

    /// Whether any default is set.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// The default table of `plugin`, if any.
    pub fn of(&self, plugin: &str) -> Option<&Map<String, Value>> {
        self.tables.get(plugin)
    }

    /// `config` over the defaults of `plugin`: keys the configuration sets win.
    pub fn merge(&self, plugin: &str, config: &Value) -> Value {
        let Some(defaults) = self.tables.get(plugin) else {
            return config.clone();
        };
        let mut merged = defaults.clone();
        if let Value::Object(own) = config {
            for (key, value) in own {
                merged.insert(key.clone(), value.clone());
            }
        }
        Value::Object(merged)
    }

    /// Every problem of the defaults: a plugin no type has (with a suggestion), or a table
    /// its schema refuses. Each names the settings file.
    pub fn check(&self, registry: &Registry) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, table) in &self.tables {
            let plugins = registry.find(name);
            if plugins.is_empty() {
                let known: Vec<String> = registry
                    .plugins()
                    .map(|p| p.manifest.name.clone())
                    .collect();
                let hint = panther_plugin_api::suggest::did_you_mean(name, &known);
                problems.push(format!(
                    "{}: [plugins.{name}]: no plugin named `{name}`{hint}",
                    self.source
                ));
                continue;
            }
            for plugin in plugins {
                let schema = without_required(&plugin.manifest.config_schema);
                if let Err(errors) = config_schema::validate(&schema, &Value::Object(table.clone()))
                {
                    for error in errors {
                        problems.push(format!(
                            "{}: [plugins.{name}] ({}): {error}",
                            self.source, plugin.manifest.kind
                        ));
                    }
                }
            }
        }
        problems
    }
}

/// The schema without its top-level `required` list.
fn without_required(schema: &Value) -> Value {
    let mut schema = schema.clone();
    if let Value::Object(map) = &mut schema {
        map.remove("required");
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_wins_key_by_key() {
        let tables: BTreeMap<String, toml::Table> =
            toml::from_str("[strace]\nstring_size = 128\nfollow_forks = true\n").unwrap();
        let defaults = PluginDefaults::new("settings.toml", &tables);
        let merged = defaults.merge("strace", &serde_json::json!({ "string_size": 64 }));
        assert_eq!(
            merged,
            serde_json::json!({ "string_size": 64, "follow_forks": true })
        );
        assert_eq!(
            defaults.merge("json", &serde_json::json!({ "path": "x" })),
            serde_json::json!({ "path": "x" })
        );
    }
}
