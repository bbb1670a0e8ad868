//! `--dry-run`: what a plan would deploy, the commands wrapped as a real run would wrap
//! them, nothing deployed.

use std::collections::BTreeMap;

use panther_plugin_api::ServiceSpec;

use super::{state::Run, RunError, RunOptions};
use crate::{
    plan::Plan,
    ports::Ports,
    scope::{Scope, ScopeLevel},
};

/// One service as it would be deployed: for `--dry-run`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedService {
    /// The spec the network environment would receive.
    pub spec: ServiceSpec,
    /// The execution environments wrapping it, innermost first.
    pub execution: Vec<String>,
    /// The product of their slowdowns.
    pub slowdown: f64,
    /// The ports picked for its `{port:NAME}` placeholders (a real run picks its own).
    pub ports: BTreeMap<String, u16>,
}

/// Shows what a plan would deploy, without deploying anything: the execution environments
/// are instantiated and wrap each command, the network environment is not touched.
pub fn dry_run(plan: &Plan, options: RunOptions) -> Result<Vec<PlannedService>, Vec<String>> {
    let experiment = &plan.experiment;
    let scratch = std::env::temp_dir().join(format!("panther-dry-run-{}", std::process::id()));
    let mut scope = Scope::new(ScopeLevel::Experiment, &experiment.name, plan.scope.clone());
    let mut run = Run::new(plan, &options, scratch.clone(), scope.name.clone());
    let execution = run.execution_instances(&mut scope);
    let services_dir = scratch.join("services");
    let ports = match Ports::pick(&experiment.services) {
        Ok(ports) => ports,
        Err(err) => return Err(vec![RunError::Ports(err).to_string()]),
    };
    let wrapped = run.wrap_services(&mut scope, &execution, &ports, &services_dir);
    let planned = (plan.services.iter().zip(wrapped))
        .map(|(service, d)| PlannedService {
            execution: d.extensions.names().map(String::from).collect(),
            slowdown: d.slowdown,
            spec: d.spec,
            ports: ports.of(&service.def),
        })
        .collect();
    drop(scope);
    let _ = std::fs::remove_dir_all(&scratch);
    if run.errors.is_empty() {
        Ok(planned)
    } else {
        Err(run.errors)
    }
}
