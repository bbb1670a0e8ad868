//! Typed events: one for every step of a run. Plugins emit them through
//! [`Context::emit`](crate::Context::emit); the host timestamps them, tags them with their
//! scope and source, hands them to observers and writes them to `events.jsonl`.

use serde::{Deserialize, Serialize};

use crate::model::{ProcessState, RunStatus};

/// Something that happened during a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run began.
    ExperimentStarted {
        /// Experiment name.
        experiment: String,
        /// Run id.
        run_id: String,
    },
    /// The run ended.
    ExperimentFinished {
        /// How.
        status: RunStatus,
        /// Wall time.
        duration_ms: u64,
    },
    /// A network environment finished its setup.
    EnvironmentSetup {
        /// The network environment.
        environment: String,
    },
    /// The command processor ran or started a command.
    CommandExecuted {
        /// What ran.
        argv: Vec<String>,
        /// How it ended (`running` for a spawned service).
        state: ProcessState,
        /// Wall time until it ended, or until it was started.
        duration_ms: u64,
    },
    /// A service was started.
    ServiceDeployed {
        /// Its name.
        service: String,
        /// Its process id, when it is a local process.
        pid: Option<u32>,
    },
    /// A service passed its readiness check.
    ServiceReady {
        /// Its name.
        service: String,
        /// Time from deployment to readiness.
        after_ms: u64,
    },
    /// A service ended.
    ServiceExited {
        /// Its name.
        service: String,
        /// How.
        state: ProcessState,
    },
    /// An execution environment began watching a service.
    MonitoringStarted {
        /// The service.
        service: String,
        /// The execution-environment instance.
        instance: String,
    },
    /// An execution environment stopped watching a service.
    MonitoringStopped {
        /// The service.
        service: String,
        /// The execution-environment instance.
        instance: String,
    },
    /// Monitoring data was collected.
    MetricsCollected {
        /// The service.
        service: String,
        /// The execution-environment instance.
        instance: String,
        /// A short summary of what was collected.
        summary: serde_json::Value,
    },
    /// A report was written.
    ReportWritten {
        /// The reporter instance.
        instance: String,
    },
    /// Teardown of an environment or scope finished.
    Teardown {
        /// What was torn down.
        what: String,
    },
    /// Something failed.
    Error {
        /// The whole cause chain.
        message: String,
    },
    /// Anything else a plugin wants to record.
    Custom {
        /// A name for the kind of event.
        name: String,
        /// Its data.
        data: serde_json::Value,
    },
}
