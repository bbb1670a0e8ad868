//! Phase 7, the verdicts: each service judged by how it ended and by what its execution
//! environments found, the run by its services and by what went wrong on the way.

use std::time::Instant;

use panther_plugin_api::{ProcessState, Role, RunResult, RunStatus, ServiceResult};

use super::state::{Deployed, Run};

impl Run<'_> {
    /// The result of the run.
    pub fn judge(
        &self,
        deployed: &[Deployed],
        run_id: &str,
        started_at: &str,
        started: Instant,
    ) -> RunResult {
        let services: Vec<ServiceResult> = deployed.iter().map(judge_service).collect();
        let mut errors = self.errors.clone();
        if let Some(reason) = &self.timed_out {
            errors.push(reason.clone());
        }
        let status = if self.interrupted {
            RunStatus::Interrupted
        } else if self.timed_out.is_some() {
            RunStatus::TimedOut
        } else if self.not_ready {
            RunStatus::Failed
        } else if !self.errors.is_empty() {
            RunStatus::Error
        } else if services.iter().all(|s| s.passed) {
            RunStatus::Passed
        } else {
            RunStatus::Failed
        };
        let execution = self
            .experiment
            .execution
            .iter()
            .map(|e| e.name.clone())
            .collect();
        RunResult {
            experiment: self.experiment.name.clone(),
            run_id: run_id.to_string(),
            status,
            started_at: started_at.to_string(),
            duration_ms: started.elapsed().as_millis() as u64,
            output_dir: self.output_dir.clone(),
            network: self.experiment.network.name.clone(),
            execution,
            services,
            errors,
        }
    }
}

/// The verdict on one service: did it end as expected, and did its execution environments
/// find nothing against it.
fn judge_service(d: &Deployed) -> ServiceResult {
    let expected = d.def.expect_exit;
    let (passed, message) = match (&d.state, d.def.role) {
        (ProcessState::Pending, _) => (false, Some("never started".to_string())),
        (_, Role::Server) if d.stopped_by_host => (true, None),
        (ProcessState::Exited { code }, _) if *code == expected => (true, None),
        (ProcessState::Exited { code }, _) => (
            false,
            Some(format!("exited with code {code}, expected {expected}")),
        ),
        (ProcessState::Signaled { signal }, Role::Client) if d.stopped_by_host => (
            false,
            Some(format!(
                "still running at the end of the run; stopped by signal {signal}"
            )),
        ),
        (state, _) => (
            false,
            Some(format!("{state}, expected exit code {expected}")),
        ),
    };
    // Execution environments judge too: thresholds they were given (e.g. "no definite
    // leaks") come back as `violations` in their monitoring data.
    let violations: Vec<String> = d
        .monitoring
        .iter()
        .flat_map(|(instance, data)| {
            data.get("violations")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
                .map(move |v| format!("{instance}: {v}"))
        })
        .collect();
    let (passed, message) = if violations.is_empty() {
        (passed, message)
    } else {
        let mut reasons: Vec<String> = message.into_iter().collect();
        reasons.extend(violations);
        (false, Some(reasons.join("; ")))
    };
    ServiceResult {
        name: d.spec.name.clone(),
        role: d.def.role,
        argv: d.spec.argv.clone(),
        expected_exit: expected,
        state: d.state.clone(),
        passed,
        message,
        stdout_log: d.spec.log_dir.join(format!("{}.stdout", d.spec.name)),
        stderr_log: d.spec.log_dir.join(format!("{}.stderr", d.spec.name)),
        monitoring: d.monitoring.clone(),
    }
}
