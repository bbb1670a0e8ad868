//! Phase 4: the run runs until every client has exited, the timeout passes, or the run is
//! cancelled.

use std::time::{Duration, Instant};

use panther_plugin_api::Role;

use super::state::{slowest, Deployed, Run};
use crate::{
    instance::NetworkEnvironment,
    scope::{Adopted, Scope},
};

impl Run<'_> {
    /// Polls the environment until every client has exited (or, with no clients, every
    /// service has), the timeout passes, or the run is cancelled.
    pub fn wait_for_clients(
        &mut self,
        scope: &mut Scope,
        network: &Adopted<NetworkEnvironment>,
        deployed: &mut [Deployed],
    ) {
        let timeout = self
            .options
            .timeout
            .unwrap_or(self.experiment.timeout)
            .mul_f64(slowest(deployed));
        let deadline = Instant::now() + timeout;
        let has_clients = deployed.iter().any(|d| d.def.role == Role::Client);
        let mut pause = Duration::from_millis(1);
        loop {
            // Before asking: an exit after this wakes the sleep below at once.
            let seen = crate::child_exit::generation();
            match scope.get(network).get_environment_status() {
                Ok(status) => {
                    for d in deployed.iter_mut() {
                        if let Some(state) = status.services.get(&d.spec.name) {
                            if state.is_finished() && !d.state.is_finished() {
                                self.service_exited(&d.spec.name, state);
                            }
                            d.state = state.clone();
                        }
                    }
                }
                Err(err) => return self.fail(err),
            }
            let waited_for = deployed
                .iter()
                .filter(|d| !has_clients || d.def.role == Role::Client);
            if waited_for.clone().all(|d| d.state.is_finished()) {
                return;
            }
            if self.cancelled() {
                self.interrupted = true;
                return;
            }
            if Instant::now() >= deadline {
                if has_clients {
                    self.timed_out = Some(timeout_reason(timeout, deployed));
                }
                return;
            }
            crate::child_exit::wait_after(
                seen,
                pause.min(deadline.saturating_duration_since(Instant::now())),
            );
            pause = (pause * 2).min(Duration::from_millis(25));
        }
    }
}

/// Why the run timed out: the clients still running, and the execution environments whose
/// slowdown scaled the timeout.
fn timeout_reason(timeout: Duration, deployed: &[Deployed]) -> String {
    let running: Vec<&str> = deployed
        .iter()
        .filter(|d| d.def.role == Role::Client && !d.state.is_finished())
        .map(|d| d.spec.name.as_str())
        .collect();
    let stacked = deployed
        .iter()
        .map(Deployed::stacked_names)
        .find(|s| !s.is_empty())
        .unwrap_or_default();
    format!(
        "the experiment timeout of {} passed while {} still ran{stacked}",
        humantime::format_duration(timeout),
        running.join(", ")
    )
}
