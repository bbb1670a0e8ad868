//! Names in the scopes around an experiment (the settings file's `[scope]`, a job's):
//! every name in `enable`, `disable` and `order` must name a plugin or an instance, and
//! `drivers` may only choose a driver type. The experiment's own scopes are checked by the
//! loader, with their lines.

use panther_plugin_api::PluginKind;

use crate::dispatch::proxy::Proxy;

use super::{Builder, ReporterPlan};

pub(super) fn check(builder: &mut Builder<'_>, reporters: &Proxy<ReporterPlan>) {
    let known = known(builder, reporters);
    let mut problems = Vec::new();
    for layer in &builder.options.outer {
        let lists = [
            (
                "enable",
                layer.settings.enable.as_deref().unwrap_or_default(),
            ),
            ("disable", layer.settings.disable.as_slice()),
            ("order", layer.settings.order.as_slice()),
        ];
        for (key, names) in lists {
            for name in names.iter().filter(|n| !known.contains(n)) {
                problems.push((layer.source.clone(), unknown_name(key, name, &known)));
            }
        }
        for kind in layer.settings.drivers.keys() {
            if kind != PluginKind::NetworkEnvironment.as_str() {
                problems.push((
                    layer.source.clone(),
                    format!(
                        "`drivers`: `{kind}` is not a driver type; only `{}` is chosen by name",
                        PluginKind::NetworkEnvironment
                    ),
                ));
            }
        }
    }
    for (location, message) in problems {
        builder.problem(location, message);
    }
}

/// Every name a scope may use: plugins that act as extensions or reporters, and the
/// experiment's instances.
pub(super) fn known(builder: &Builder<'_>, reporters: &Proxy<ReporterPlan>) -> Vec<String> {
    let registry = builder.registry;
    let mut known: Vec<String> = [PluginKind::ExecutionEnvironment, PluginKind::Reporter]
        .into_iter()
        .flat_map(|kind| registry.names(kind))
        .map(String::from)
        .collect();
    known.extend(builder.experiment.execution.iter().map(|e| e.name.clone()));
    known.extend(builder.experiment.reports.iter().map(|e| e.name.clone()));
    known.extend(reporters.names().map(String::from));
    known.sort();
    known.dedup();
    known
}

/// "`disable`: `strac` names no plugin or instance (did you mean `strace`?)".
pub fn unknown_name(key: &str, name: &str, known: &[String]) -> String {
    let hint = panther_plugin_api::suggest::did_you_mean(name, known);
    format!(
        "`{key}`: `{}` names no plugin or instance{hint}",
        crate::names::shown(name)
    )
}
