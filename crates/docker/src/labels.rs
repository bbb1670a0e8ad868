//! What every object a run creates carries, so that teardown and `panther-host clean` find
//! it by label alone, whatever the plugin instance remembers.

use std::collections::HashMap;

/// The run's id (`DeploymentPlan::run_id`).
pub const RUN: &str = "panther.run";
/// The experiment's name.
pub const EXPERIMENT: &str = "panther.experiment";
/// The service a container runs.
pub const SERVICE: &str = "panther.service";
/// The network environment that created the object.
pub const PLUGIN: &str = "panther.plugin";
/// The host process that created the object: `<pid>:<start time>`; when that process is
/// gone, the object is stale.
pub const OWNER: &str = "panther.owner";

/// The labels of one run.
#[derive(Clone, Debug)]
pub struct RunLabels {
    /// `DeploymentPlan::run_id`.
    pub run_id: String,
    /// `DeploymentPlan::experiment`.
    pub experiment: String,
    /// The network environment's name.
    pub plugin: String,
    /// This process, as [`owner_token`] gives it.
    pub owner: String,
}

impl RunLabels {
    /// The labels for objects of a run of `experiment` made by `plugin` in this process.
    pub fn new(run_id: &str, experiment: &str, plugin: &str) -> Self {
        RunLabels {
            run_id: run_id.to_string(),
            experiment: experiment.to_string(),
            plugin: plugin.to_string(),
            owner: owner_token(),
        }
    }

    /// Labels for networks, volumes and images of the run.
    pub fn base(&self) -> HashMap<String, String> {
        HashMap::from([
            (RUN.to_string(), self.run_id.clone()),
            (EXPERIMENT.to_string(), self.experiment.clone()),
            (PLUGIN.to_string(), self.plugin.clone()),
            (OWNER.to_string(), self.owner.clone()),
        ])
    }

    /// Labels for the container of one service.
    pub fn service(&self, service: &str) -> HashMap<String, String> {
        let mut labels = self.base();
        labels.insert(SERVICE.to_string(), service.to_string());
        labels
    }

    /// The engine filter that selects everything of this run.
    pub fn filter(&self) -> HashMap<String, Vec<String>> {
        run_filter(&self.run_id)
    }
}

/// The engine filter that selects everything of a run.
pub fn run_filter(run_id: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![format!("{RUN}={run_id}")])])
}

/// This process as `<pid>:<start time in clock ticks since boot>`: a pid alone may be reused.
pub fn owner_token() -> String {
    let pid = std::process::id();
    format!("{pid}:{}", start_time(pid).unwrap_or(0))
}

/// Whether the process an [`owner_token`] names still runs. Unreadable tokens count as gone.
pub fn owner_alive(token: &str) -> bool {
    let Some((pid, start)) = token.split_once(':') else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    start_time(pid).is_some_and(|now| now == start)
}

/// Field 22 of `/proc/<pid>/stat`: when the process started.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    // After the command come field 3 (state) onwards; the start time is field 22.
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_not() {
        assert!(owner_alive(&owner_token()));
        let pid = std::process::id();
        assert!(!owner_alive(&format!("{pid}:1")), "another start time");
        assert!(!owner_alive("4194304999:5"));
        assert!(!owner_alive("garbage"));
    }
}
