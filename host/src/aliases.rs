//! Keys of another vocabulary (PANTHER's) in an experiment file: accepted under this host's
//! names, or refused with a hint that says what to write instead.
//!
//! PANTHER users bring its keys (`sampling_frequency`, `output_file`, `network_name`). Each
//! plugin declares what its own configuration makes of them ([`KeyAlias`] in its manifest),
//! because only the plugin knows what its keys mean. [`apply`] rewrites a plugin section's
//! configuration before the schema check: an accepted alias is moved to the plugin's key and
//! leaves a note (shown by `check -v`), a refused key becomes an error with the plugin's
//! hint. Keys every PANTHER environment shares (its base classes: `enabled`, `priority`,
//! `critical_services`, ...) map onto this host's own sections, so the host answers them
//! ([`COMMON`]), unless the plugin's schema or its own aliases name the key.
//! [`host_hint`] does the same for the tables the host owns (`[experiment]`, `[[service]]`).

use panther_plugin_api::KeyAlias;
use serde_json::{Map, Value};

/// What [`apply`] found in one plugin section.
#[derive(Debug, Default, PartialEq)]
pub struct Applied {
    /// Accepted aliases, one line each, for `check -v`.
    pub notes: Vec<String>,
    /// Refused keys and aliases written together with their target, with the hint.
    pub errors: Vec<String>,
}

/// Keys of PANTHER's environment base classes (`EnvironmentConfig`, `BasePluginConfig`, the
/// network and execution environment bases): in every plugin section, refused with where
/// the setting lives here. A plugin whose schema has the key, or that declares an alias for
/// it, is not affected.
pub const COMMON: &[(&str, &str)] = &[
    ("type", "the plugin is named by `plugin = \"…\"` in its section"),
    (
        "enabled",
        "to leave an execution environment out, list it in `disable` of `[experiment]` or of a `[[service]]`",
    ),
    (
        "priority",
        "the plugin's manifest sets its priority; reorder with `order = [...]` in `[experiment]`",
    ),
    (
        "version",
        "a plugin's version is its build's (`panther-host info PLUGIN`); there is nothing to choose",
    ),
    (
        "plugin_config",
        "write the plugin's keys directly in its section, next to `plugin`",
    ),
    (
        "enable_background_monitoring",
        "the host always watches every service: a service that exits early fails the run",
    ),
    (
        "monitoring_interval_seconds",
        "the host notices a service's exit when it happens; there is no polling interval",
    ),
    (
        "failure_threshold_count",
        "one failure of a service is a failure here; there is no threshold",
    ),
    (
        "allow_partial_deployment",
        "every service must deploy and become ready, or the run fails",
    ),
    (
        "critical_services",
        "every service is critical here; `expect_exit` of a `[[service]]` says what success is",
    ),
    (
        "collect_metrics",
        "an execution environment always collects what it measures; disable the environment instead",
    ),
    (
        "output_format",
        "each execution environment writes its tool's own files and a JSON summary; reports are `[[report]]` sections",
    ),
    (
        "incompatibility",
        "incompatibilities are declared by the plugins themselves and checked at `check`",
    ),
    // The network environment base (`NetworkEnvironmentPluginConfig`); the plugins that
    // make a network of their own answer these themselves.
    (
        "network_name",
        "this network environment makes no network of its own: there is nothing to name",
    ),
    (
        "subnet",
        "this network environment makes no network of its own: there is no subnet to choose",
    ),
    (
        "enable_ipv6",
        "this network environment makes no network of its own: there is nothing to enable",
    ),
];

/// Keys PANTHER writes in experiment-level tables that this host keeps elsewhere: the hint
/// added to the unknown-key error when one appears in `[experiment]`, `[[service]]` or at the
/// top of the file.
const HOST: &[(&str, &str)] = &[
    ("environment_name", "PANTHER's `environment_name` is `plugin = \"…\"` in the `[network]` section"),
    ("network_environment", "PANTHER's `network_environment` is the `[network]` section"),
    ("execution_environment", "PANTHER's `execution_environment` is one `[[execution]]` section per environment"),
    ("execution_environments", "PANTHER's `execution_environments` is one `[[execution]]` section per environment"),
    ("services", "PANTHER's `services` table is one `[[service]]` section per service"),
    ("tests", "one experiment file is one PANTHER test; run several files with `panther-host run A.toml B.toml`"),
    ("network_name", "the network is named by the network environment; `docker_compose` takes `project_name`"),
    ("logging_level", "logging belongs to the process: `-v`, `-vv`, `-q` or `RUST_LOG`"),
    ("log_level", "logging belongs to the process: `-v`, `-vv`, `-q` or `RUST_LOG`"),
    ("cleanup_on_exit", "teardown always happens, on success, failure, timeout or Ctrl-C; results stay in the results folder"),
    ("service_dependencies", "write `depends_on = [...]` in each `[[service]]`"),
    ("monitoring_duration", "monitoring lasts as long as each service runs; bound the run with `timeout` in `[experiment]`"),
    ("target_process", "an execution environment applies to the services listed in its `services` key"),
    ("output_directory", "write `output` in `[experiment]`"),
    ("iterations", "run the file several times: `panther-host run E.toml E.toml`"),
    ("steps", "commands before and after are services: a `[[service]]` with `role = \"client\"` and `depends_on`"),
    ("fast_fail_enabled", "write `fail_fast` in `[experiment]`"),
    ("continue_on_failure", "write `fail_fast = false` in `[experiment]` (the default)"),
    ("collect_artifacts", "every run keeps its results folder"),
    ("metadata", "write `description` in `[experiment]`"),
    ("author", "write `description` in `[experiment]`"),
    ("tags", "write `description` in `[experiment]`"),
];

/// The hint for `key` when PANTHER writes it where the host reports it unknown.
pub fn host_hint(key: &str) -> Option<&'static str> {
    HOST.iter().find(|(k, _)| *k == key).map(|(_, hint)| *hint)
}

/// A hint for a deserialization error that PANTHER's vocabulary causes: its sections name
/// their plugin with `type`, which leaves ours without `plugin`.
pub fn error_hint(message: &str) -> Option<&'static str> {
    (message == "missing field `plugin`")
        .then_some("a section names its plugin with `plugin = \"…\"`, where PANTHER writes `type`")
}

/// Applies a plugin's `aliases`, then the [`COMMON`] keys its `schema` does not know, to
/// `config` (a JSON object; anything else is left to the schema check).
pub fn apply(aliases: &[KeyAlias], schema: &Value, config: &mut Value) -> Applied {
    let mut applied = Applied::default();
    let Some(table) = config.as_object_mut() else {
        return applied;
    };
    for alias in aliases {
        let Some(value) = take(table, &alias.key) else {
            continue;
        };
        match &alias.to {
            None => {
                // Taken out, so that the schema does not call it unknown as well.
                applied
                    .errors
                    .push(format!("`{}`: {}", alias.key, alias.note));
            }
            Some(to) if get(table, to).is_some() => applied.errors.push(format!(
                "`{}` and `{to}` are the same setting ({}): keep one",
                alias.key, alias.note
            )),
            Some(to) => {
                put(table, to, value);
                applied
                    .notes
                    .push(format!("`{}` read as `{to}`: {}", alias.key, alias.note));
            }
        }
    }
    let known = |key: &str| {
        schema
            .pointer("/properties")
            .and_then(Value::as_object)
            .is_some_and(|p| p.contains_key(key))
            || aliases.iter().any(|a| a.key == key)
    };
    for (key, hint) in COMMON {
        if table.contains_key(*key) && !known(key) {
            table.remove(*key);
            applied.errors.push(format!("`{key}`: {hint}"));
        }
    }
    applied
}

/// Removes the value at dotted `path`, and the tables that removing it leaves empty.
fn take(table: &mut Map<String, Value>, path: &str) -> Option<Value> {
    match path.split_once('.') {
        None => table.remove(path),
        Some((head, rest)) => {
            let inner = table.get_mut(head)?.as_object_mut()?;
            let value = take(inner, rest)?;
            if inner.is_empty() {
                table.remove(head);
            }
            Some(value)
        }
    }
}

fn get<'a>(table: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    match path.split_once('.') {
        None => table.get(path),
        Some((head, rest)) => get(table.get(head)?.as_object()?, rest),
    }
}

/// Sets the value at dotted `path`, making the tables on the way.
fn put(table: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            table.insert(path.to_string(), value);
        }
        Some((head, rest)) => {
            let inner = table
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(inner) = inner.as_object_mut() {
                put(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use panther_plugin_api::Manifest;
    use serde_json::json;

    fn aliases() -> Vec<KeyAlias> {
        Manifest::new("x")
            .alias_key("sampling_frequency", "frequency", "PANTHER's name")
            .alias_key("general.stop_time", "stop_time", "moved to the top")
            .refuse_key("output_file", "output goes to the results folder")
            .key_aliases
    }

    fn schema() -> Value {
        json!({ "properties": { "frequency": {}, "stop_time": {}, "version": {} } })
    }

    #[test]
    fn an_alias_is_rewritten_to_the_plugins_key_with_a_note() {
        let mut config = json!({ "sampling_frequency": 250, "top": 5 });
        let applied = apply(&aliases(), &schema(), &mut config);
        assert_eq!(config, json!({ "frequency": 250, "top": 5 }));
        assert_eq!(
            applied.notes,
            ["`sampling_frequency` read as `frequency`: PANTHER's name"]
        );
        assert!(applied.errors.is_empty());
    }

    #[test]
    fn a_nested_alias_moves_the_value_and_drops_the_emptied_table() {
        let mut config = json!({ "general": { "stop_time": "300s" } });
        let applied = apply(&aliases(), &schema(), &mut config);
        assert_eq!(config, json!({ "stop_time": "300s" }));
        assert_eq!(applied.notes.len(), 1);

        let mut config = json!({ "general": { "stop_time": "300s", "other": 1 } });
        apply(&aliases(), &schema(), &mut config);
        assert_eq!(
            config,
            json!({ "stop_time": "300s", "general": { "other": 1 } })
        );
    }

    #[test]
    fn a_refused_key_is_an_error_with_the_hint_and_is_taken_out() {
        let mut config = json!({ "output_file": "/app/logs/x.log" });
        let applied = apply(&aliases(), &schema(), &mut config);
        assert_eq!(config, json!({}));
        assert_eq!(
            applied.errors,
            ["`output_file`: output goes to the results folder"]
        );
        assert!(applied.notes.is_empty());
    }

    #[test]
    fn an_alias_written_with_its_target_is_refused() {
        let mut config = json!({ "sampling_frequency": 250, "frequency": 100 });
        let applied = apply(&aliases(), &schema(), &mut config);
        assert_eq!(
            applied.errors,
            ["`sampling_frequency` and `frequency` are the same setting (PANTHER's name): keep one"]
        );
        assert_eq!(config["frequency"], 100, "the host's own key is kept");
    }

    #[test]
    fn common_keys_are_refused_unless_the_plugin_knows_them() {
        let mut config = json!({ "enabled": true, "critical_services": [], "version": "2" });
        let applied = apply(&aliases(), &schema(), &mut config);
        assert_eq!(
            config,
            json!({ "version": "2" }),
            "the schema has `version`"
        );
        assert_eq!(applied.errors.len(), 2);
        assert!(applied.errors[0].starts_with("`enabled`: "));

        let own = Manifest::new("y")
            .alias_key("enabled", "active", "this plugin's own")
            .key_aliases;
        let mut config = json!({ "enabled": false });
        let applied = apply(&own, &Value::Null, &mut config);
        assert_eq!(config, json!({ "active": false }));
        assert!(applied.errors.is_empty());
    }

    #[test]
    fn a_configuration_without_foreign_keys_is_left_alone() {
        let mut config = json!({ "frequency": 100 });
        assert_eq!(
            apply(&aliases(), &schema(), &mut config),
            Applied::default()
        );
        assert_eq!(config, json!({ "frequency": 100 }));
    }

    #[test]
    fn experiment_level_keys_have_hints() {
        assert!(host_hint("environment_name").unwrap().contains("[network]"));
        assert!(host_hint("cleanup_on_exit").is_some());
        assert_eq!(host_hint("name"), None);
        assert!(error_hint("missing field `plugin`")
            .unwrap()
            .contains("`type`"));
        assert_eq!(error_hint("missing field `name`"), None);
    }
}
