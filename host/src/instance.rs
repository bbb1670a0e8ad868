//! Plugin instances as the host uses them: the ABI objects behind plain Rust methods that
//! return [`PluginError`]s naming the instance, the plugin and what it was asked to do.

use abi_stable::std_types::{ROption, RResult, RStr, RString};
use panther_plugin_api::__private::{ValidateRequest, CLEAN_STALE, VALIDATE};
use panther_plugin_api::{
    abi::{ExecutionEnvironmentBox, HostContextBox, NetworkEnvironmentBox, ReporterBox},
    Deployment, DeploymentPlan, EnvironmentStatus, ProcessState, Resource, RunResult,
    ServiceCommand, ServiceSpec,
};
use serde::{de::DeserializeOwned, Serialize};

use crate::loader::LoadedPlugin;

/// A plugin call that failed (or panicked) inside the plugin.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin `{instance}` ({plugin}) failed while {doing}: {message}")]
pub struct PluginError {
    /// The plugin's name.
    pub plugin: String,
    /// The instance's name (the plugin's name unless the user gave an alias).
    pub instance: String,
    /// What the host asked for.
    pub doing: String,
    /// What the plugin answered, cause chain included.
    pub message: String,
}

/// Who an instance is, for error messages.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The plugin's name.
    pub plugin: String,
    /// The instance's name.
    pub instance: String,
}

impl Identity {
    fn error(&self, doing: impl Into<String>, message: impl Into<String>) -> PluginError {
        PluginError {
            plugin: self.plugin.clone(),
            instance: self.instance.clone(),
            doing: doing.into(),
            message: message.into(),
        }
    }

    fn check<T>(&self, doing: &str, result: RResult<T, RString>) -> Result<T, PluginError> {
        result
            .into_result()
            .map_err(|e| self.error(doing, e.into_string()))
    }

    /// Like [`Identity::decode`] for a named call, which answers `RNone` when the plugin
    /// predates it.
    fn decode_optional<T: DeserializeOwned>(
        &self,
        doing: &str,
        result: RResult<ROption<RString>, RString>,
    ) -> Result<Option<T>, PluginError> {
        match self.check(doing, result)?.into_option() {
            None => Ok(None),
            Some(json) => serde_json::from_str(&json)
                .map(Some)
                .map_err(|e| self.error(doing, format!("unreadable answer: {e}"))),
        }
    }

    fn decode<T: DeserializeOwned>(
        &self,
        doing: &str,
        result: RResult<RString, RString>,
    ) -> Result<T, PluginError> {
        let json = self.check(doing, result)?;
        serde_json::from_str(&json)
            .map_err(|e| self.error(doing, format!("unreadable answer: {e}")))
    }
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("host data always serializes")
}

impl LoadedPlugin {
    /// The resources an instance with this configuration would claim.
    pub fn claims(&self, config: &serde_json::Value) -> Result<Vec<Resource>, PluginError> {
        let id = Identity {
            plugin: self.manifest.name.clone(),
            instance: self.manifest.name.clone(),
        };
        let module = self.module_for(&id)?;
        id.decode(
            "computing its claims",
            (module.claims())(RStr::from_str(&json(config))),
        )
    }

    /// Problems with a configuration beyond its schema (files it names and their contents),
    /// relative paths resolved against `base_dir`. Plugins built against plugin-api 1.0 do
    /// not know the call and have none.
    pub fn validate(
        &self,
        config: &serde_json::Value,
        experiment: &panther_plugin_api::ValidationContext,
    ) -> Result<Vec<String>, PluginError> {
        let id = Identity {
            plugin: self.manifest.name.clone(),
            instance: self.manifest.name.clone(),
        };
        let request = ValidateRequest {
            config: config.clone(),
            experiment: experiment.clone(),
        };
        let module = self.module_for(&id)?;
        let answer = (module.call())(RStr::from_str(VALIDATE), RStr::from_str(&json(&request)));
        id.decode_optional("validating its configuration", answer)
            .map(Option::unwrap_or_default)
    }

    /// Builds a network environment instance.
    pub fn new_network_environment(
        &self,
        instance: &str,
        config: &serde_json::Value,
        ctx: HostContextBox,
    ) -> Result<NetworkEnvironment, PluginError> {
        let id = self.identity(instance);
        let module = self.module_for(&id)?;
        let inner = id.check(
            "starting",
            (module.new_network_environment())(RStr::from_str(&json(config)), ctx),
        )?;
        Ok(NetworkEnvironment { id, inner })
    }

    /// Builds an execution environment instance.
    pub fn new_execution_environment(
        &self,
        instance: &str,
        config: &serde_json::Value,
        ctx: HostContextBox,
    ) -> Result<ExecutionEnvironment, PluginError> {
        let id = self.identity(instance);
        let module = self.module_for(&id)?;
        let inner = id.check(
            "starting",
            (module.new_execution_environment())(RStr::from_str(&json(config)), ctx),
        )?;
        Ok(ExecutionEnvironment { id, inner })
    }

    /// Builds a reporter instance.
    pub fn new_reporter(
        &self,
        instance: &str,
        config: &serde_json::Value,
        ctx: HostContextBox,
    ) -> Result<Reporter, PluginError> {
        let id = self.identity(instance);
        let module = self.module_for(&id)?;
        let inner = id.check(
            "starting",
            (module.new_reporter())(RStr::from_str(&json(config)), ctx),
        )?;
        Ok(Reporter { id, inner })
    }

    /// The plugin's module, opened on first use; a library that cannot be opened is an
    /// error of the instance that needed it.
    fn module_for(
        &self,
        id: &Identity,
    ) -> Result<panther_plugin_api::abi::PluginModuleRef, PluginError> {
        self.module()
            .map_err(|err| id.error("opening its library", err.to_string()))
    }

    fn identity(&self, instance: &str) -> Identity {
        Identity {
            plugin: self.manifest.name.clone(),
            instance: instance.to_string(),
        }
    }
}

/// A network environment instance.
pub struct NetworkEnvironment {
    /// Who it is.
    pub id: Identity,
    inner: NetworkEnvironmentBox,
}

impl NetworkEnvironment {
    /// See [`panther_plugin_api::NetworkEnvironment::setup_environment`].
    pub fn setup_environment(&mut self, plan: &DeploymentPlan) -> Result<(), PluginError> {
        let r = self.inner.setup_environment(RStr::from_str(&json(plan)));
        self.id.check("setting up the environment", r)
    }

    /// See [`panther_plugin_api::NetworkEnvironment::deploy_service`].
    pub fn deploy_service(&mut self, service: &ServiceSpec) -> Result<Deployment, PluginError> {
        let r = self.inner.deploy_service(RStr::from_str(&json(service)));
        self.id
            .decode(&format!("deploying service `{}`", service.name), r)
    }

    /// See [`panther_plugin_api::NetworkEnvironment::wait_ready`].
    pub fn wait_ready(&mut self, service: &str) -> Result<(), PluginError> {
        let r = self.inner.wait_ready(RStr::from_str(service));
        self.id
            .check(&format!("waiting for service `{service}` to be ready"), r)
    }

    /// See [`panther_plugin_api::NetworkEnvironment::get_environment_status`].
    pub fn get_environment_status(&mut self) -> Result<EnvironmentStatus, PluginError> {
        let r = self.inner.get_environment_status();
        self.id.decode("reporting the environment status", r)
    }

    /// See [`panther_plugin_api::NetworkEnvironment::stop_service`].
    pub fn stop_service(&mut self, service: &str) -> Result<ProcessState, PluginError> {
        let r = self.inner.stop_service(RStr::from_str(service));
        self.id.decode(&format!("stopping service `{service}`"), r)
    }

    /// See [`panther_plugin_api::NetworkEnvironment::teardown_environment`].
    pub fn teardown_environment(&mut self) -> Result<(), PluginError> {
        let r = self.inner.teardown_environment();
        self.id.check("tearing down the environment", r)
    }

    /// See [`panther_plugin_api::NetworkEnvironment::clean_stale`]. Plugins built against
    /// plugin-api 1.0 do not know the call: nothing to clean.
    pub fn clean_stale(&mut self) -> Result<Vec<String>, PluginError> {
        let r = self
            .inner
            .call(RStr::from_str(CLEAN_STALE), RStr::from_str(""));
        self.id
            .decode_optional("cleaning up after earlier runs", r)
            .map(Option::unwrap_or_default)
    }
}

/// An execution environment instance.
pub struct ExecutionEnvironment {
    /// Who it is.
    pub id: Identity,
    inner: ExecutionEnvironmentBox,
}

impl ExecutionEnvironment {
    /// See [`panther_plugin_api::ExecutionEnvironment::slowdown`]. A typed call, no payload.
    #[inline]
    pub fn slowdown(&self) -> f64 {
        self.inner.slowdown()
    }

    /// See [`panther_plugin_api::ExecutionEnvironment::wrap`].
    pub fn wrap(&mut self, command: &ServiceCommand) -> Result<ServiceCommand, PluginError> {
        let r = self.inner.wrap_command(RStr::from_str(&json(command)));
        self.id.decode(
            &format!("wrapping the command of service `{}`", command.service),
            r,
        )
    }

    /// See [`panther_plugin_api::ExecutionEnvironment::start_monitoring`].
    pub fn start_monitoring(&mut self, service: &str, pid: u32) -> Result<(), PluginError> {
        let r = self.inner.start_monitoring(RStr::from_str(service), pid);
        self.id
            .check(&format!("starting to monitor service `{service}`"), r)
    }

    /// See [`panther_plugin_api::ExecutionEnvironment::stop_monitoring`].
    pub fn stop_monitoring(&mut self, service: &str) -> Result<(), PluginError> {
        let r = self.inner.stop_monitoring(RStr::from_str(service));
        self.id
            .check(&format!("stopping to monitor service `{service}`"), r)
    }

    /// See [`panther_plugin_api::ExecutionEnvironment::get_monitoring_data`].
    pub fn get_monitoring_data(&mut self, service: &str) -> Result<serde_json::Value, PluginError> {
        let r = self.inner.get_monitoring_data(RStr::from_str(service));
        self.id.decode(
            &format!("collecting monitoring data of service `{service}`"),
            r,
        )
    }
}

/// A reporter instance.
pub struct Reporter {
    /// Who it is.
    pub id: Identity,
    inner: ReporterBox,
}

impl Reporter {
    /// See [`panther_plugin_api::Reporter::report`].
    pub fn report(&mut self, result: &RunResult) -> Result<(), PluginError> {
        let r = self.inner.report(RStr::from_str(&json(result)));
        self.id.check("writing its report", r)
    }
}
