//! Plugin instances as the host uses them: the ABI objects behind plain Rust methods that
//! return [`PluginError`]s naming the instance, the plugin and what it was asked to do.
//!
//! Each instance type has two backends behind the same methods: in the host process (the
//! ABI object itself) or in a plugin server of its own ([`crate::isolate`]). Both turn a
//! method into a [`PluginCall`] and get a [`Reply`] back, so decoding, errors and events are
//! the same whichever the instance lives in; [`LoadedPlugin::start_network_environment`] and
//! its siblings choose by [`Placement`].

use abi_stable::std_types::{ROption, RResult, RStr, RString};
use std::collections::BTreeMap;

use panther_plugin_api::__private::{ValidateRequest, CLEAN_STALE, SITES, VALIDATE};
use panther_plugin_api::{
    abi::{ExecutionEnvironmentBox, HostContextBox, NetworkEnvironmentBox, ReporterBox},
    failure::Failure,
    Deployment, DeploymentPlan, EnvironmentStatus, ProcessState, Resource, RunResult,
    ServiceCommand, ServiceSite, ServiceSpec,
};
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    isolate::{
        wire::{InstanceKind, PluginCall, Reply},
        Limits, Placement, Remote,
    },
    loader::LoadedPlugin,
};

/// A plugin call that failed (or panicked) inside the plugin.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "plugin `{instance}` ({plugin}) {} while {doing}: {message}",
    if *panicked { "panicked" } else { "failed" }
)]
pub struct PluginError {
    /// The plugin's name.
    pub plugin: String,
    /// The instance's name (the plugin's name unless the user gave an alias).
    pub instance: String,
    /// What the host asked for.
    pub doing: String,
    /// What the plugin answered, cause chain included (or where it panicked).
    pub message: String,
    /// Whether the plugin panicked rather than returned an error.
    pub panicked: bool,
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
    /// The error of a call that was `doing` something, from what the plugin (or its plugin
    /// server, or the host) said: a [`Failure`] read once, so that it is said once.
    fn error(&self, doing: impl Into<String>, message: impl Into<String>) -> PluginError {
        let doing = doing.into();
        let failure = Failure::read(&message.into(), &doing);
        PluginError {
            plugin: self.plugin.clone(),
            instance: self.instance.clone(),
            panicked: failure.is_panic(),
            message: failure.to_string(),
            doing,
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

impl Identity {
    fn done(&self, doing: &str, reply: Reply) -> Result<(), PluginError> {
        reply.map(drop).map_err(|e| self.error(doing, e))
    }

    fn answer<T: DeserializeOwned>(&self, doing: &str, reply: Reply) -> Result<T, PluginError> {
        match reply {
            Ok(Some(json)) => serde_json::from_str(&json)
                .map_err(|e| self.error(doing, format!("unreadable answer: {e}"))),
            Ok(None) => Err(self.error(doing, "answered nothing")),
            Err(e) => Err(self.error(doing, e)),
        }
    }

    /// Like [`Identity::answer`] for a named call, which answers nothing when the plugin
    /// predates it.
    fn optional_answer<T: DeserializeOwned>(
        &self,
        doing: &str,
        reply: Reply,
    ) -> Result<Option<T>, PluginError> {
        match reply {
            Ok(None) => Ok(None),
            other => self.answer(doing, other).map(Some),
        }
    }
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("host data always serializes")
}

/// What a plugin is doing when it answers `validate` and `sites`, for its errors.
const VALIDATING: &str = "validating its configuration";
const SAYING_WHERE: &str = "saying where the services run";

/// The payload of the `validate` and `sites` calls.
fn validate_request(
    config: &serde_json::Value,
    experiment: &panther_plugin_api::ValidationContext,
) -> ValidateRequest {
    ValidateRequest {
        config: config.clone(),
        experiment: experiment.clone(),
    }
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
        self.named_call(VALIDATE, VALIDATING, config, experiment)
    }

    /// [`LoadedPlugin::claims`] where `placement` says: an isolated plugin answers in a
    /// plugin server started for this one call.
    pub fn claims_in(
        &self,
        placement: &Placement,
        config: &serde_json::Value,
    ) -> Result<Vec<Resource>, PluginError> {
        let Placement::Isolated(limits) = placement else {
            return self.claims(config);
        };
        self.remote_call(
            limits,
            PluginCall::Claims(json(config)),
            "computing its claims",
        )
    }

    /// [`LoadedPlugin::validate`] where `placement` says.
    pub fn validate_in(
        &self,
        placement: &Placement,
        config: &serde_json::Value,
        experiment: &panther_plugin_api::ValidationContext,
    ) -> Result<Vec<String>, PluginError> {
        let Placement::Isolated(limits) = placement else {
            return self.validate(config, experiment);
        };
        let request = json(&validate_request(config, experiment));
        self.remote_call(limits, PluginCall::Validate(request), VALIDATING)
    }

    /// Where a network environment with this configuration runs each service (services
    /// left out run on this machine). Plugins built before 1.3 do not know the call: all
    /// their services run here as far as the host can tell.
    pub fn sites(
        &self,
        config: &serde_json::Value,
        experiment: &panther_plugin_api::ValidationContext,
    ) -> Result<BTreeMap<String, ServiceSite>, PluginError> {
        self.named_call(SITES, SAYING_WHERE, config, experiment)
    }

    /// [`LoadedPlugin::sites`] where `placement` says.
    pub fn sites_in(
        &self,
        placement: &Placement,
        config: &serde_json::Value,
        experiment: &panther_plugin_api::ValidationContext,
    ) -> Result<BTreeMap<String, ServiceSite>, PluginError> {
        let Placement::Isolated(limits) = placement else {
            return self.sites(config, experiment);
        };
        let request = json(&validate_request(config, experiment));
        self.remote_call(limits, PluginCall::Sites(request), SAYING_WHERE)
    }

    /// A named module call (`validate`, `sites`) in this process, with a configuration and
    /// what the plugin may know of the experiment; a plugin that does not know the name
    /// answers nothing, which reads as `T`'s default.
    fn named_call<T: DeserializeOwned + Default>(
        &self,
        name: &str,
        doing: &str,
        config: &serde_json::Value,
        experiment: &panther_plugin_api::ValidationContext,
    ) -> Result<T, PluginError> {
        let id = self.identity(&self.manifest.name);
        let request = json(&validate_request(config, experiment));
        let module = self.module_for(&id)?;
        let answer = (module.call())(RStr::from_str(name), RStr::from_str(&request));
        id.decode_optional(doing, answer)
            .map(Option::unwrap_or_default)
    }

    /// A module call in a plugin server (one from the pool, else a new one).
    fn remote_call<T: DeserializeOwned>(
        &self,
        limits: &Limits,
        call: PluginCall,
        doing: &str,
    ) -> Result<T, PluginError> {
        let reply = Remote::module_call(&self.path, self.key(), call, limits);
        self.identity(&self.manifest.name).answer(doing, reply)
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
        Ok(NetworkEnvironment {
            id,
            backend: Backend::InProcess(inner),
        })
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
        Ok(ExecutionEnvironment {
            id,
            slowdown: 1.0,
            backend: Backend::InProcess(inner),
        })
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
        Ok(Reporter {
            id,
            backend: Backend::InProcess(inner),
        })
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

    fn start_isolated(
        &self,
        placement: &Placement,
        kind: InstanceKind,
        instance: &str,
        config: &serde_json::Value,
        ctx: HostContextBox,
    ) -> Result<Option<(Identity, Remote)>, PluginError> {
        let Placement::Isolated(limits) = placement else {
            return Ok(None);
        };
        let id = self.identity(instance);
        match Remote::start(&self.path, self.key(), kind, instance, config, ctx, limits) {
            Ok(remote) => Ok(Some((id, remote))),
            Err(message) => Err(id.error("starting", message)),
        }
    }

    /// Builds a network environment instance where `placement` says.
    pub fn start_network_environment(
        &self,
        placement: &Placement,
        instance: &str,
        config: &serde_json::Value,
        ctx: HostContextBox,
    ) -> Result<NetworkEnvironment, PluginError> {
        let kind = InstanceKind::NetworkEnvironment;
        match self.start_isolated(placement, kind, instance, config, ctx.clone())? {
            Some((id, remote)) => Ok(NetworkEnvironment {
                id,
                backend: Backend::Isolated(remote),
            }),
            None => self.new_network_environment(instance, config, ctx),
        }
    }

    /// Builds an execution environment instance where `placement` says. An isolated one
    /// answers `slowdown` once, here: it is asked for on every wrap.
    pub fn start_execution_environment(
        &self,
        placement: &Placement,
        instance: &str,
        config: &serde_json::Value,
        ctx: HostContextBox,
    ) -> Result<ExecutionEnvironment, PluginError> {
        let kind = InstanceKind::ExecutionEnvironment;
        match self.start_isolated(placement, kind, instance, config, ctx.clone())? {
            Some((id, mut remote)) => {
                // Sent as Rust prints an f64 (JSON has no NaN or infinity), so that
                // `checked_slowdown` judges what the plugin said, as it does in process.
                let text: String = match remote.call(PluginCall::Slowdown) {
                    Ok(Some(text)) => text,
                    other => id.answer("reporting its slowdown", other)?,
                };
                let slowdown = text.parse::<f64>().map_err(|e| {
                    id.error(
                        "reporting its slowdown",
                        format!("unreadable answer `{text}`: {e}"),
                    )
                })?;
                Ok(ExecutionEnvironment {
                    id,
                    slowdown,
                    backend: Backend::Isolated(remote),
                })
            }
            None => self.new_execution_environment(instance, config, ctx),
        }
    }

    /// Builds a reporter instance where `placement` says.
    pub fn start_reporter(
        &self,
        placement: &Placement,
        instance: &str,
        config: &serde_json::Value,
        ctx: HostContextBox,
    ) -> Result<Reporter, PluginError> {
        let kind = InstanceKind::Reporter;
        match self.start_isolated(placement, kind, instance, config, ctx.clone())? {
            Some((id, remote)) => Ok(Reporter {
                id,
                backend: Backend::Isolated(remote),
            }),
            None => self.new_reporter(instance, config, ctx),
        }
    }
}

/// Where an instance's calls go.
enum Backend<B> {
    /// The ABI object, in this process.
    InProcess(B),
    /// A plugin server.
    Isolated(Remote),
}

impl<B: Serve> Backend<B> {
    fn call(&mut self, call: PluginCall) -> Reply {
        match self {
            Backend::InProcess(inner) => inner.serve(call),
            Backend::Isolated(remote) => remote.call(call),
        }
    }
}

/// One ABI object answering [`PluginCall`]s: the in-process backend, and what a plugin
/// server runs for the host.
trait Serve {
    fn serve(&mut self, call: PluginCall) -> Reply;
}

fn done(result: RResult<(), RString>) -> Reply {
    result
        .into_result()
        .map(|()| None)
        .map_err(RString::into_string)
}

fn text(result: RResult<RString, RString>) -> Reply {
    result
        .into_result()
        .map(|s| Some(s.into_string()))
        .map_err(RString::into_string)
}

fn optional(result: RResult<ROption<RString>, RString>) -> Reply {
    result
        .into_result()
        .map(|o| o.into_option().map(RString::into_string))
        .map_err(RString::into_string)
}

fn not_for(call: &PluginCall, kind: &str) -> Reply {
    Err(format!("{call:?} is not a call of {kind}"))
}

impl Serve for NetworkEnvironmentBox {
    fn serve(&mut self, call: PluginCall) -> Reply {
        match call {
            PluginCall::SetupEnvironment(plan) => {
                done(self.setup_environment(RStr::from_str(&plan)))
            }
            PluginCall::DeployService(spec) => text(self.deploy_service(RStr::from_str(&spec))),
            PluginCall::WaitReady(service) => done(self.wait_ready(RStr::from_str(&service))),
            PluginCall::GetEnvironmentStatus => text(self.get_environment_status()),
            PluginCall::StopService(service) => text(self.stop_service(RStr::from_str(&service))),
            PluginCall::TeardownEnvironment => done(self.teardown_environment()),
            PluginCall::Named(name, payload) => {
                optional(self.call(RStr::from_str(&name), RStr::from_str(&payload)))
            }
            other => not_for(&other, "a network environment"),
        }
    }
}

impl Serve for ExecutionEnvironmentBox {
    fn serve(&mut self, call: PluginCall) -> Reply {
        match call {
            PluginCall::Slowdown => Ok(Some(self.slowdown().to_string())),
            PluginCall::WrapCommand(command) => text(self.wrap_command(RStr::from_str(&command))),
            PluginCall::StartMonitoring(service, pid) => {
                done(self.start_monitoring(RStr::from_str(&service), pid))
            }
            PluginCall::StopMonitoring(service) => {
                done(self.stop_monitoring(RStr::from_str(&service)))
            }
            PluginCall::GetMonitoringData(service) => {
                text(self.get_monitoring_data(RStr::from_str(&service)))
            }
            PluginCall::Named(name, payload) => {
                optional(self.call(RStr::from_str(&name), RStr::from_str(&payload)))
            }
            other => not_for(&other, "an execution environment"),
        }
    }
}

impl Serve for ReporterBox {
    fn serve(&mut self, call: PluginCall) -> Reply {
        match call {
            PluginCall::Report(result) => done(self.report(RStr::from_str(&result))),
            PluginCall::Named(name, payload) => {
                optional(self.call(RStr::from_str(&name), RStr::from_str(&payload)))
            }
            other => not_for(&other, "a reporter"),
        }
    }
}

/// A network environment instance.
pub struct NetworkEnvironment {
    /// Who it is.
    pub id: Identity,
    backend: Backend<NetworkEnvironmentBox>,
}

impl NetworkEnvironment {
    /// See [`panther_plugin_api::NetworkEnvironment::setup_environment`].
    pub fn setup_environment(&mut self, plan: &DeploymentPlan) -> Result<(), PluginError> {
        let r = self.backend.call(PluginCall::SetupEnvironment(json(plan)));
        self.id.done("setting up the environment", r)
    }

    /// See [`panther_plugin_api::NetworkEnvironment::deploy_service`].
    pub fn deploy_service(&mut self, service: &ServiceSpec) -> Result<Deployment, PluginError> {
        let r = self.backend.call(PluginCall::DeployService(json(service)));
        self.id
            .answer(&format!("deploying service `{}`", service.name), r)
    }

    /// See [`panther_plugin_api::NetworkEnvironment::wait_ready`].
    pub fn wait_ready(&mut self, service: &str) -> Result<(), PluginError> {
        let r = self
            .backend
            .call(PluginCall::WaitReady(service.to_string()));
        self.id
            .done(&format!("waiting for service `{service}` to be ready"), r)
    }

    /// See [`panther_plugin_api::NetworkEnvironment::get_environment_status`].
    pub fn get_environment_status(&mut self) -> Result<EnvironmentStatus, PluginError> {
        let r = self.backend.call(PluginCall::GetEnvironmentStatus);
        self.id.answer("reporting the environment status", r)
    }

    /// See [`panther_plugin_api::NetworkEnvironment::stop_service`].
    pub fn stop_service(&mut self, service: &str) -> Result<ProcessState, PluginError> {
        let r = self
            .backend
            .call(PluginCall::StopService(service.to_string()));
        self.id.answer(&format!("stopping service `{service}`"), r)
    }

    /// See [`panther_plugin_api::NetworkEnvironment::teardown_environment`].
    pub fn teardown_environment(&mut self) -> Result<(), PluginError> {
        let r = self.backend.call(PluginCall::TeardownEnvironment);
        self.id.done("tearing down the environment", r)
    }

    /// See [`panther_plugin_api::NetworkEnvironment::clean_stale`]. Plugins built against
    /// plugin-api 1.0 do not know the call: nothing to clean.
    pub fn clean_stale(&mut self) -> Result<Vec<String>, PluginError> {
        let r = self
            .backend
            .call(PluginCall::Named(CLEAN_STALE.to_string(), String::new()));
        self.id
            .optional_answer("cleaning up after earlier runs", r)
            .map(Option::unwrap_or_default)
    }

    /// Answers one call in a plugin server.
    pub(crate) fn serve(&mut self, call: PluginCall) -> Reply {
        self.backend.call(call)
    }
}

/// The slowdowns an execution environment may declare: valgrind's tools, the slowest ones
/// shipped, declare tens.
pub const SLOWDOWN_RANGE: std::ops::RangeInclusive<f64> = 1.0..=1000.0;

/// An execution environment instance.
pub struct ExecutionEnvironment {
    /// Who it is.
    pub id: Identity,
    /// The slowdown of an isolated instance, asked once.
    slowdown: f64,
    backend: Backend<ExecutionEnvironmentBox>,
}

impl ExecutionEnvironment {
    /// See [`panther_plugin_api::ExecutionEnvironment::slowdown`]. A typed call, no payload;
    /// an isolated instance answered it when it was built.
    #[inline]
    pub fn slowdown(&self) -> f64 {
        match &self.backend {
            Backend::InProcess(inner) => inner.slowdown(),
            Backend::Isolated(_) => self.slowdown,
        }
    }

    /// [`ExecutionEnvironment::slowdown`], refused unless it is a factor the host can scale
    /// timeouts by: finite and within [`SLOWDOWN_RANGE`]. It comes from plugin code (or, for
    /// an isolated instance, from the text it sent), and a NaN or an infinity would make
    /// every timeout computation panic.
    pub fn checked_slowdown(&self) -> Result<f64, PluginError> {
        let factor = self.slowdown();
        if factor.is_finite() && SLOWDOWN_RANGE.contains(&factor) {
            Ok(factor)
        } else {
            Err(self.id.error(
                "reporting its slowdown",
                format!(
                    "it reported {factor}, but a slowdown is a factor from {} to {}",
                    SLOWDOWN_RANGE.start(),
                    SLOWDOWN_RANGE.end()
                ),
            ))
        }
    }

    /// See [`panther_plugin_api::ExecutionEnvironment::wrap`].
    pub fn wrap(&mut self, command: &ServiceCommand) -> Result<ServiceCommand, PluginError> {
        let r = self.backend.call(PluginCall::WrapCommand(json(command)));
        self.id.answer(
            &format!("wrapping the command of service `{}`", command.service),
            r,
        )
    }

    /// See [`panther_plugin_api::ExecutionEnvironment::start_monitoring`].
    pub fn start_monitoring(&mut self, service: &str, pid: u32) -> Result<(), PluginError> {
        let r = self
            .backend
            .call(PluginCall::StartMonitoring(service.to_string(), pid));
        self.id
            .done(&format!("starting to monitor service `{service}`"), r)
    }

    /// See [`panther_plugin_api::ExecutionEnvironment::stop_monitoring`].
    pub fn stop_monitoring(&mut self, service: &str) -> Result<(), PluginError> {
        let r = self
            .backend
            .call(PluginCall::StopMonitoring(service.to_string()));
        self.id
            .done(&format!("stopping to monitor service `{service}`"), r)
    }

    /// See [`panther_plugin_api::ExecutionEnvironment::get_monitoring_data`].
    pub fn get_monitoring_data(&mut self, service: &str) -> Result<serde_json::Value, PluginError> {
        let r = self
            .backend
            .call(PluginCall::GetMonitoringData(service.to_string()));
        self.id.answer(
            &format!("collecting monitoring data of service `{service}`"),
            r,
        )
    }

    /// Answers one call in a plugin server.
    pub(crate) fn serve(&mut self, call: PluginCall) -> Reply {
        self.backend.call(call)
    }
}

/// A reporter instance.
pub struct Reporter {
    /// Who it is.
    pub id: Identity,
    backend: Backend<ReporterBox>,
}

impl Reporter {
    /// See [`panther_plugin_api::Reporter::report`].
    pub fn report(&mut self, result: &RunResult) -> Result<(), PluginError> {
        let r = self.backend.call(PluginCall::Report(json(result)));
        self.id.done("writing its report", r)
    }

    /// Answers one call in a plugin server.
    pub(crate) fn serve(&mut self, call: PluginCall) -> Reply {
        self.backend.call(call)
    }
}
