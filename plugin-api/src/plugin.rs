//! The traits a plugin author implements: [`Plugin`] for what every plugin has, and one of
//! [`NetworkEnvironment`], [`ExecutionEnvironment`] or [`Reporter`] for what it does.
//!
//! Every method says when the host calls it. Methods with a default can be left out.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::{
    context::Context,
    manifest::{Manifest, Resource},
    model::{
        Deployment, DeploymentPlan, EnvironmentStatus, ProcessState, RunResult, ServiceCommand,
        ServiceSite, ServiceSpec, ValidationContext,
    },
};

// since 1.4: begin
/// What marks an entry returned by [`Plugin::validate`] as a warning rather than a problem.
pub const WARNING_PREFIX: &str = "warning: ";

/// A warning for [`Plugin::validate`] to return: something the user should know (a key that
/// is ignored, a variable that is not set) that does not stop the experiment.
pub fn warning(message: impl std::fmt::Display) -> String {
    format!("{WARNING_PREFIX}{message}")
}
// since 1.4: end

/// What every plugin has: a manifest, a configuration type, and a constructor.
pub trait Plugin: Sized + Send + 'static {
    /// The plugin's configuration: one instance's section of the experiment file. Its JSON
    /// Schema (derived with `schemars`) is published in the manifest, and the host validates
    /// every section against it before anything starts. Use `#[serde(deny_unknown_fields)]`
    /// so typos are caught.
    type Config: DeserializeOwned + JsonSchema;

    /// Name, description, priority, capabilities, conflicts and tools. The host reads it when
    /// it loads the library (`panther-host list`), long before any instance exists.
    fn manifest() -> Manifest;

    /// The resources an instance with this configuration uses exclusively (stdout, a file).
    /// Called when the instance is added to a scope, before anything runs; a second claim of
    /// the same resource in that scope is refused.
    fn claims(config: &Self::Config) -> Vec<Resource> {
        let _ = config;
        Vec::new()
    }

    /// Problems with a configuration that its schema cannot express: a file it names that
    /// does not exist, keys inside that file this plugin does not support, services it does
    /// not place. `experiment` gives the experiment file's folder (relative paths resolve
    /// against it) and the services' names. Called by `check` and before every run, before
    /// anything is instantiated: read files, but touch no engine and run no tool.
    ///
    /// An entry made with [`warning`] is not a problem: the host shows it (`check` and `run`
    /// print it as a `warning:` line) and goes on. Hosts before 1.4 take it for a problem.
    fn validate(config: &Self::Config, experiment: &ValidationContext) -> Vec<String> {
        let _ = (config, experiment);
        Vec::new()
    }

    /// Builds an instance. Called once per configured instance when its scope starts.
    fn new(config: Self::Config, ctx: Context) -> anyhow::Result<Self>;
}

/// Deploys an experiment's services somewhere: local processes, containers, a simulated
/// network. A driver: exactly one per experiment.
///
/// The host calls, in order: [`setup_environment`](Self::setup_environment) once; for each
/// service in dependency order [`deploy_service`](Self::deploy_service) then
/// [`wait_ready`](Self::wait_ready); [`get_environment_status`](Self::get_environment_status)
/// repeatedly until the clients are done; [`stop_service`](Self::stop_service) for what still
/// runs, in reverse order; and [`teardown_environment`](Self::teardown_environment) always,
/// also after a failure, a timeout or Ctrl-C.
pub trait NetworkEnvironment: Plugin {
    /// Where each service of the experiment will run, by name, when not as a process on this
    /// machine: execution environments read it to refuse at `check` what cannot work there
    /// and to bring their tools along. Like [`Plugin::validate`], called before anything is
    /// instantiated: read files, touch no engine. Services left out run on this machine.
    fn sites(
        config: &Self::Config,
        experiment: &ValidationContext,
    ) -> std::collections::BTreeMap<String, ServiceSite> {
        let _ = (config, experiment);
        std::collections::BTreeMap::new()
    }

    /// Prepares for the plan: networks, images, folders.
    fn setup_environment(&mut self, plan: &DeploymentPlan) -> anyhow::Result<()>;
    /// Starts one service and says how to find it.
    fn deploy_service(&mut self, service: &ServiceSpec) -> anyhow::Result<Deployment>;
    /// Blocks until the service passes its readiness check; an error when its timeout passes.
    fn wait_ready(&mut self, service: &str) -> anyhow::Result<()>;
    /// The current state of every deployed service.
    fn get_environment_status(&mut self) -> anyhow::Result<EnvironmentStatus>;
    /// Stops one service and returns how it ended.
    fn stop_service(&mut self, service: &str) -> anyhow::Result<ProcessState>;
    /// Removes everything the environment created. Must be safe to call twice.
    fn teardown_environment(&mut self) -> anyhow::Result<()>;

    /// Removes what earlier runs of this environment left behind (e.g. after the host was
    /// killed), and says what it removed. Called by `panther-host clean` on an instance
    /// built with the default configuration. Nothing to do by default.
    fn clean_stale(&mut self) -> anyhow::Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// Traces or profiles a service by wrapping its command. An extension: every configured one
/// acts, in priority order, and they stack (the first wraps innermost).
pub trait ExecutionEnvironment: Plugin {
    /// How much slower a service typically runs under this environment (1.0: no slowdown).
    /// The host multiplies readiness and run timeouts by the product of the stacked ones.
    fn slowdown(&self) -> f64 {
        1.0
    }

    /// Rewrites the command: prefix the argv, add environment variables. Called once per
    /// service before it is deployed.
    fn wrap(&mut self, command: ServiceCommand) -> anyhow::Result<ServiceCommand>;

    /// The wrapped service is running as `pid`. Called after deployment. `pid` is the
    /// outermost process of the wrapped command: when another execution environment wraps
    /// around this one, it is that wrapper's process, and the service is a descendant.
    fn start_monitoring(&mut self, service: &str, pid: u32) -> anyhow::Result<()> {
        let _ = (service, pid);
        Ok(())
    }

    /// Called when the run is over for the service, before the host stops it (SIGTERM to
    /// its process group, SIGKILL after a grace period): the service may still be running,
    /// so this is the moment to make a tool flush its data. Called before collection.
    fn stop_monitoring(&mut self, service: &str) -> anyhow::Result<()> {
        let _ = service;
        Ok(())
    }

    /// What was learned about the service (parsed from the tool's output). Called after the
    /// service has ended; the result lands in `monitoring/<service>/<instance>.json` and in
    /// the reports.
    ///
    /// To fail the service (a threshold was exceeded, e.g. "no definite leaks"), put a
    /// top-level `"violations"` array of human-readable reasons in the returned object: the
    /// host marks the service failed with those reasons. Return `Err` only when the data could
    /// not be collected at all (that is an error of the run, not a test failure).
    fn get_monitoring_data(&mut self, service: &str) -> anyhow::Result<serde_json::Value> {
        let _ = service;
        Ok(serde_json::Value::Null)
    }
}

/// Writes the result of a run. A proxy: several instances, each with its own arguments.
pub trait Reporter: Plugin {
    /// Writes the report. Called once, after teardown, also for failed or interrupted runs.
    fn report(&mut self, result: &RunResult) -> anyhow::Result<()>;
}
