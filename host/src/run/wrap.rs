//! Phase 2: where each service runs, and its command wrapped by the execution environments
//! that apply to it, in order, with this run's ports in place of the placeholders.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use panther_plugin_api::{
    ProcessState, ServiceCommand, ServiceSite, ServiceSpec, ValidationContext,
};

use super::{
    state::{Deployed, ExecutionHandle, Run},
    STOP_GRACE,
};
use crate::{dispatch::extension::Outcome, plan::ServicePlan, ports::Ports, scope::Scope};

impl Run<'_> {
    /// Every service of the plan, wrapped, each knowing where it will run.
    pub fn wrap_services<'e>(
        &mut self,
        scope: &mut Scope,
        execution: &'e [Option<ExecutionHandle>],
        ports: &Ports,
        services_dir: &Path,
    ) -> Vec<Deployed<'e>> {
        let sites = self.sites();
        let plan = self.plan;
        plan.services
            .iter()
            .map(|service| {
                let site = sites.get(&service.def.name).cloned().unwrap_or_default();
                self.wrap(scope, execution, service, ports, site, services_dir)
            })
            .collect()
    }

    /// Where the network environment runs each service, as `check` saw it.
    fn sites(&mut self) -> BTreeMap<String, ServiceSite> {
        let experiment = ValidationContext {
            base_dir: self.experiment_dir().unwrap_or_default(),
            services: self
                .experiment
                .services
                .iter()
                .map(|s| s.name.clone())
                .collect(),
            commands: (self.experiment.services.iter())
                .map(|s| (s.name.clone(), s.command.clone()))
                .collect(),
            sites: BTreeMap::new(),
        };
        let network = &self.plan.network;
        match network.plugin.sites_in(
            &self.placement(&network.plugin),
            &network.instance.config,
            &experiment,
        ) {
            Ok(sites) => sites,
            Err(err) => {
                self.fail(err);
                BTreeMap::new()
            }
        }
    }

    /// Wraps a service's command with the execution environments that apply to it.
    fn wrap<'e>(
        &mut self,
        scope: &mut Scope,
        execution: &'e [Option<ExecutionHandle>],
        service: &ServicePlan,
        ports: &Ports,
        site: ServiceSite,
        services_dir: &Path,
    ) -> Deployed<'e> {
        // This run's ports in place of the placeholders.
        let def = &ports.apply(&service.def);
        let settings = &service.settings;
        let mut extensions = service
            .extensions
            .filter_map(|index| execution.get(*index).and_then(Option::as_ref));

        let mut command = ServiceCommand {
            service: def.name.clone(),
            argv: def.command.clone(),
            env: def.env.clone(),
            cwd: Some(def.cwd.clone()),
            output_dir: PathBuf::new(),
            experiment_dir: self.experiment_dir(),
            site,
            mounts: Vec::new(),
            parent_wrappers: Vec::new(),
        };
        let mut slowdown = 1.0;
        let outcomes = extensions.map(settings.failure_policy(), |handle| {
            let instance = scope.get(*handle);
            command.output_dir = self
                .output_dir
                .join("monitoring")
                .join(&def.name)
                .join(&instance.id.instance);
            std::fs::create_dir_all(&command.output_dir).ok();
            // Stacked factors multiply; the product is held to the same ceiling as one
            // factor, so no timeout it scales can overflow.
            slowdown = (slowdown * instance.checked_slowdown()?)
                .min(*crate::instance::SLOWDOWN_RANGE.end());
            instance.wrap(&command).map(|wrapped| command = wrapped)
        });
        for outcome in outcomes {
            if let Outcome::Failed(err) = outcome {
                self.fail(err);
            }
        }
        let ready = def.ready.clone().map(|mut r| {
            r.timeout = r.timeout.mul_f64(slowdown);
            r
        });
        let spec = ServiceSpec {
            name: def.name.clone(),
            argv: command.argv,
            env: command.env,
            cwd: command.cwd,
            depends_on: def.depends_on.clone(),
            ready,
            role: def.role,
            log_dir: services_dir.to_path_buf(),
            stop_grace: Some(STOP_GRACE.mul_f64(slowdown)),
            mounts: command.mounts,
            parent_wrappers: command.parent_wrappers,
        };
        Deployed {
            def: def.clone(),
            spec,
            extensions,
            slowdown,
            deployed: false,
            state: ProcessState::Pending,
            stopped_by_host: false,
            monitoring: BTreeMap::new(),
        }
    }
}
