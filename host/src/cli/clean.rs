//! `clean`: what earlier runs left behind, removed by each network environment and the host.

use std::{
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use panther_plugin_api::PluginKind;
use serde_json::json;

use super::report_error;
use crate::{
    context::RunServices,
    exit_code::{INTERNAL_ERROR, INVALID_INPUT, OK},
    isolate::{CallLimit, Isolation},
    registry::Registry,
};

/// How long an isolated network environment may take to clean up after earlier runs.
const CLEAN_CALL_LIMIT: Duration = Duration::from_secs(120);

pub(super) fn clean(registry: &Registry, only: Option<&str>, isolation: &Isolation) -> u8 {
    let names: Vec<String> = match only {
        Some(name) => {
            match crate::dispatch::driver::choose(registry, PluginKind::NetworkEnvironment, name) {
                Ok(plugin) => vec![plugin.manifest.name.clone()],
                Err(err) => return report_error(&err, INVALID_INPUT),
            }
        }
        None => registry
            .names(PluginKind::NetworkEnvironment)
            .into_iter()
            .map(String::from)
            .collect(),
    };
    let services = RunServices::new(Arc::new(AtomicBool::new(false)));
    let scratch = std::env::temp_dir().join(format!("panther-clean-{}", std::process::id()));
    // Processes of killed hosts carry the run mark (or sit in a run cgroup) that says whose
    // they were; the host ends them and reports them with the local environment.
    let mut processes = only
        .is_none_or(|n| n == "localhost")
        .then(|| crate::contain::stale::clean().lines());
    let mut code = OK;
    for name in names {
        let plugin = registry
            .get(PluginKind::NetworkEnvironment, &name)
            .expect("listed");
        let ctx = crate::context::InstanceContext::new(
            &name,
            &name,
            "host",
            scratch.clone(),
            services.clone(),
        );
        let placement = isolation.placement(&plugin.path, &CallLimit::new(CLEAN_CALL_LIMIT));
        let removed = plugin
            .start_network_environment(&placement, &name, &json!({}), ctx.into_ffi())
            .and_then(|mut env| env.clean_stale());
        let ended = if name == "localhost" {
            processes.take().unwrap_or_default()
        } else {
            Vec::new()
        };
        match removed {
            Ok(removed) if removed.is_empty() && ended.is_empty() => {
                println!("{name}: nothing to clean")
            }
            Ok(removed) => {
                for item in removed {
                    println!("{name}: removed {item}");
                }
            }
            Err(err) => code = report_error(&err, INTERNAL_ERROR),
        }
        for line in ended {
            println!("{name}: {line}");
        }
    }
    // Without the localhost plugin loaded, its processes are still cleaned.
    for line in processes.unwrap_or_default() {
        println!("localhost: {line}");
    }
    let _ = std::fs::remove_dir_all(&scratch);
    code
}
