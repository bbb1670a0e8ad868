//! The plan as data: every setting with its origin, and the JSON `run --dry-run --format
//! json` prints.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::{dispatch::proxy::Proxy, experiment::PluginUse, scope::ScopeSettings};

use super::{Builder, NetworkPlan, Origin, Plan, ReporterPlan, Setting, DEFAULT_REPORTERS};

/// Every setting in force for the experiment, nearest scope last.
pub(super) fn settings(
    builder: &Builder<'_>,
    network: &NetworkPlan,
    reporters: &Proxy<ReporterPlan>,
    output: &(PathBuf, Origin),
) -> Vec<Setting> {
    let options = builder.options;
    let experiment = builder.experiment;
    let mut settings = vec![
        Setting::new(
            "drivers.network_environment",
            &network.instance.plugin,
            network.origin,
        ),
        Setting::new("output", &output.0, output.1),
        match options.timeout {
            Some(timeout) => Setting::new(
                "timeout",
                humantime::format_duration(timeout).to_string(),
                Origin::Cli,
            ),
            None => Setting::new(
                "timeout",
                humantime::format_duration(experiment.timeout).to_string(),
                experiment.timeout_origin,
            ),
        },
    ];
    match &options.default_reporters {
        Some(names) => settings.push(Setting::new("reporters", names, Origin::Settings)),
        None => settings.push(Setting::new(
            "reporters",
            DEFAULT_REPORTERS,
            Origin::BuiltIn,
        )),
    }
    for layer in &options.outer {
        scope(
            &mut settings,
            "",
            &layer.settings,
            Origin::of_level(layer.level),
        );
    }
    scope(&mut settings, "", &experiment.scope, Origin::Experiment);
    for service in &experiment.services {
        let prefix = format!("services.{}.", service.name);
        scope(&mut settings, &prefix, &service.scope, Origin::Service);
    }
    let instances = std::iter::once(&network.instance)
        .chain(&experiment.execution)
        .chain(reporters.iter().map(|i| &i.item.instance));
    for instance in instances {
        defaults(builder, &mut settings, instance);
    }
    settings
}

/// The keys a scope sets.
fn scope(settings: &mut Vec<Setting>, prefix: &str, scope: &ScopeSettings, origin: Origin) {
    if let Some(enable) = &scope.enable {
        settings.push(Setting::new(format!("{prefix}enable"), enable, origin));
    }
    if !scope.disable.is_empty() {
        settings.push(Setting::new(
            format!("{prefix}disable"),
            &scope.disable,
            origin,
        ));
    }
    if !scope.order.is_empty() {
        settings.push(Setting::new(format!("{prefix}order"), &scope.order, origin));
    }
    if let Some(fail_fast) = scope.fail_fast {
        settings.push(Setting::new(
            format!("{prefix}fail_fast"),
            fail_fast,
            origin,
        ));
    }
}

/// The keys of an instance's configuration that its plugin's defaults gave.
fn defaults(builder: &Builder<'_>, settings: &mut Vec<Setting>, instance: &PluginUse) {
    let Some(table) = builder.options.plugin_defaults.of(&instance.plugin) else {
        return;
    };
    for (key, value) in table {
        let origin = if instance.config.get(key) == Some(value) {
            Origin::Settings
        } else {
            Origin::Experiment
        };
        let value = instance.config.get(key).cloned().unwrap_or_default();
        settings.push(Setting::new(
            format!("instances.{}.{key}", instance.name),
            value,
            origin,
        ));
    }
}

/// The JSON form of a plan.
pub(super) fn plan(plan: &Plan) -> Value {
    let experiment = &plan.experiment;
    let services: Vec<Value> = plan
        .services
        .iter()
        .map(|s| {
            json!({
                "name": s.def.name,
                "role": s.def.role,
                "depends_on": s.def.depends_on,
                "execution": s.extensions.names().collect::<Vec<_>>(),
                "fail_fast": s.settings.fail_fast(),
            })
        })
        .collect();
    let execution: Vec<Value> = plan
        .execution
        .iter()
        .map(|e| {
            json!({
                "name": e.instance.name,
                "plugin": e.instance.plugin,
                "config": e.instance.config,
                "claims": e.claims.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        })
        .collect();
    let reporters: Vec<Value> = plan
        .reporters
        .iter()
        .map(|i| {
            json!({
                "name": i.name,
                "plugin": i.item.instance.plugin,
                "active": i.active,
                "origin": i.item.origin,
                "config": i.item.instance.config,
                "claims": i.claims.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "experiment": experiment.name,
        "file": experiment.path,
        "network": {
            "plugin": plan.network.instance.plugin,
            "name": plan.network.instance.name,
            "origin": plan.network.origin,
            "config": plan.network.instance.config,
        },
        "services": services,
        "execution": execution,
        "reporters": reporters,
        "output": { "path": plan.output.0, "origin": plan.output.1 },
        "settings": plan.settings,
    })
}
