//! Phase 3: the network environment set up, then each service deployed in dependency order,
//! its monitoring started and its readiness awaited.

use std::time::Instant;

use panther_plugin_api::{DeploymentPlan, Event};

use super::state::{Deployed, Run};
use crate::{
    instance::NetworkEnvironment,
    scope::{Adopted, Scope},
};

impl Run<'_> {
    /// Sets up the environment and deploys every service. Whether all of them were deployed
    /// and found ready, so that the run goes on to wait for its clients; otherwise the
    /// reason is recorded (a failure, a service not ready, a cancellation).
    #[must_use]
    pub fn deploy(
        &mut self,
        scope: &mut Scope,
        network: &Adopted<NetworkEnvironment>,
        deployed: &mut [Deployed],
        run_id: &str,
    ) -> bool {
        let plan = DeploymentPlan {
            experiment: self.experiment.name.clone(),
            run_id: run_id.to_string(),
            output_dir: self.output_dir.clone(),
            base_dir: self.experiment_dir().unwrap_or_default(),
            services: deployed.iter().map(|d| d.spec.clone()).collect(),
        };
        if let Err(err) = scope.get(network).setup_environment(&plan) {
            self.fail(err);
            return false;
        }
        self.emit(
            "host",
            &Event::EnvironmentSetup {
                environment: self.experiment.network.name.clone(),
            },
        );
        deployed
            .iter_mut()
            .all(|service| self.deploy_one(scope, network, service))
    }

    /// Deploys one service, starts monitoring it and waits until it is ready. Whether the
    /// run goes on.
    fn deploy_one(
        &mut self,
        scope: &mut Scope,
        network: &Adopted<NetworkEnvironment>,
        service: &mut Deployed,
    ) -> bool {
        if self.cancelled() {
            self.interrupted = true;
            return false;
        }
        let deploy_started = Instant::now();
        let pid = match scope.get(network).deploy_service(&service.spec) {
            Ok(deployment) => deployment.pid,
            Err(err) => {
                self.fail(err);
                return false;
            }
        };
        service.deployed = true;
        let name = service.spec.name.clone();
        self.emit(
            "host",
            &Event::ServiceDeployed {
                service: name.clone(),
                pid,
            },
        );
        if let Some(pid) = pid {
            self.for_each_monitor(
                scope,
                service,
                |instance, name| instance.start_monitoring(name, pid),
                |service, instance| Event::MonitoringStarted { service, instance },
            );
        }
        if let Err(err) = scope.get(network).wait_ready(&name) {
            if self.cancelled() {
                self.interrupted = true;
                return false;
            }
            let stacked = service.stacked_names();
            self.not_ready = true;
            self.fail(format!("{err}{stacked}"));
            return false;
        }
        if service.spec.ready.is_some() {
            let after_ms = deploy_started.elapsed().as_millis() as u64;
            self.emit(
                "host",
                &Event::ServiceReady {
                    service: name,
                    after_ms,
                },
            );
        }
        true
    }
}
