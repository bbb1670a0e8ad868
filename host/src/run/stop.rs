//! Phases 5 and 6: monitoring stopped, the services stopped in reverse order, what the
//! execution environments gathered collected; then whatever process is left ended.

use panther_plugin_api::Event;

use super::{
    state::{Deployed, Run},
    STOP_GRACE,
};
use crate::{
    dispatch::extension::Outcome,
    instance::NetworkEnvironment,
    scope::{Adopted, Scope},
};

impl Run<'_> {
    /// Stops monitoring (so that tools can flush while their service still runs), stops the
    /// services in reverse order, then collects what the execution environments gathered.
    pub fn stop_and_collect(
        &mut self,
        scope: &mut Scope,
        network: &Adopted<NetworkEnvironment>,
        deployed: &mut [Deployed],
    ) {
        // The run may have ended before the last poll (a readiness failure, Ctrl-C): only a
        // service that is still running now counts as stopped by the host.
        if let Ok(status) = scope.get(network).get_environment_status() {
            for d in deployed.iter_mut() {
                if let Some(state) = status.services.get(&d.spec.name) {
                    d.state = state.clone();
                }
            }
        }
        for d in deployed.iter_mut().rev().filter(|d| d.deployed) {
            self.for_each_monitor(
                scope,
                d,
                |instance, name| instance.stop_monitoring(name),
                |service, instance| Event::MonitoringStopped { service, instance },
            );
        }
        for d in deployed.iter_mut().rev().filter(|d| d.deployed) {
            let was_running = !d.state.is_finished();
            match scope.get(network).stop_service(&d.spec.name) {
                Ok(state) => {
                    if was_running {
                        d.stopped_by_host = true;
                        self.service_exited(&d.spec.name, &state);
                    }
                    d.state = state;
                }
                Err(err) => self.fail(err),
            }
        }
        for d in deployed.iter_mut().filter(|d| d.deployed) {
            self.collect(scope, d);
        }
    }

    /// Collects the monitoring data of one service: written to
    /// `monitoring/<service>/<instance>.json`, summed up in an event, kept for the verdict.
    fn collect(&mut self, scope: &mut Scope, d: &mut Deployed) {
        let name = d.spec.name.clone();
        let collected = d.extensions.map(scope.settings.failure_policy(), |handle| {
            let instance = scope.get(*handle);
            instance
                .get_monitoring_data(&name)
                .map(|data| (instance.id.instance.clone(), data))
        });
        for outcome in collected {
            match outcome {
                Outcome::Done((instance, data)) => {
                    let file = self
                        .output_dir
                        .join("monitoring")
                        .join(&name)
                        .join(format!("{instance}.json"));
                    if let Some(dir) = file.parent() {
                        let _ = std::fs::create_dir_all(dir);
                    }
                    if let Err(err) =
                        std::fs::write(&file, serde_json::to_vec_pretty(&data).unwrap_or_default())
                    {
                        self.fail(format!("writing {}: {err}", file.display()));
                    }
                    self.emit(
                        &instance,
                        &Event::MetricsCollected {
                            service: name.clone(),
                            instance: instance.clone(),
                            summary: summary_of(&data),
                        },
                    );
                    d.monitoring.insert(instance, data);
                }
                Outcome::Failed(err) => self.fail(err),
                Outcome::Skipped => {}
            }
        }
    }

    /// Ends every process of the run still alive after teardown. One the host still
    /// owned is an error of the run; what the services left behind (daemons, children still
    /// in their group) is ended and recorded, not held against the run.
    pub fn stop_leftovers(&mut self, run_id: &str) {
        let (leftovers, strays) = self.options.services.processes.stop_all(STOP_GRACE);
        if leftovers > 0 {
            self.errors.push(format!(
                "{leftovers} process(es) were still running after teardown and were killed"
            ));
        }
        if !strays.is_empty() {
            let list: Vec<String> = strays
                .iter()
                .map(|s| format!("{} ({})", s.pid, s.comm))
                .collect();
            tracing::info!(
                "ended {} process(es) the services of run {run_id} left behind: {}",
                strays.len(),
                list.join(", ")
            );
            self.emit(
                "host",
                &Event::Custom {
                    name: "strays_ended".into(),
                    data: serde_json::json!(strays),
                },
            );
        }
    }
}

/// The top-level scalar fields of monitoring data, for the `metrics_collected` event.
fn summary_of(data: &serde_json::Value) -> serde_json::Value {
    match data {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_object() && !v.is_array())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other if !other.is_array() => other.clone(),
        _ => serde_json::Value::Null,
    }
}
