//! The execution environments of each service: the extension pattern per service, with the
//! proxy's claims and declared incompatibilities checked among the instances *active* for
//! that service only. Memcheck on one service and helgrind on another is fine, by
//! `services = [...]` or by disabling one of them in a scope; both on one service is not.

use panther_plugin_api::PluginKind;

use crate::{
    dispatch::{
        extension::{Extension, Extensions},
        proxy::Proxy,
    },
    scope::resolve,
};

use super::{Builder, ExecutionPlan, ServicePlan};

/// The execution environments some service uses (in configured order) and every service
/// with its stack (indexes into the first list).
pub(super) fn build(
    builder: &mut Builder<'_>,
    all: &[Option<ExecutionPlan>],
) -> (Vec<ExecutionPlan>, Vec<ServicePlan>) {
    let experiment = builder.experiment;
    let exec_names: Vec<&str> = experiment
        .execution
        .iter()
        .flat_map(|e| [e.name.as_str(), e.plugin.as_str()])
        .collect();
    let registry = builder.registry;
    let is_exec = |name: &str| {
        exec_names.contains(&name)
            || registry
                .get(PluginKind::ExecutionEnvironment, name)
                .is_some()
    };
    // Which configured instance ends up at which index of the plan.
    let mut used: Vec<Option<usize>> = vec![None; all.len()];
    let mut execution = Vec::new();
    let mut services = Vec::with_capacity(experiment.services.len());
    for def in &experiment.services {
        let chain = builder
            .chain()
            .into_iter()
            .chain([&def.scope])
            .collect::<Vec<_>>();
        let settings = resolve(chain);
        let mut proxy = Proxy::new();
        let mut members = Vec::new();
        for (i, exec) in all.iter().enumerate() {
            let Some(exec) = exec else { continue };
            let names = [exec.instance.name.as_str(), exec.instance.plugin.as_str()];
            let applies = exec
                .instance
                .services
                .as_ref()
                .is_none_or(|s| s.contains(&def.name));
            if !applies || !settings.is_enabled_among(&names, is_exec) {
                continue;
            }
            if let Err(err) = proxy.add(
                &exec.instance.name,
                exec.plugin.manifest.clone(),
                exec.claims.clone(),
                (),
            ) {
                builder.problem(
                    exec.instance.location.clone(),
                    format!("on service `{}` ({}): {err}", def.name, def.location),
                );
                continue;
            }
            let index = *used[i].get_or_insert_with(|| {
                execution.push(exec.clone());
                execution.len() - 1
            });
            members.push(Extension {
                name: exec.instance.name.clone(),
                priority: exec.plugin.manifest.priority,
                configured: settings.position(&names, i),
                item: index,
            });
        }
        services.push(ServicePlan {
            def: def.clone(),
            extensions: Extensions::new(members),
            settings,
        });
    }
    (execution, services)
}
