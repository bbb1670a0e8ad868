//! Scopes: host > job > experiment > service.
//!
//! Each scope holds [`ScopeSettings`] (enable/disable lists, an order, the chosen drivers,
//! whether to stop at the first failing extension); a scope sees its ancestors' settings,
//! each overridable by the nearer scope ([`resolve`]). A [`Scope`] also owns the plugin
//! instances created in it and tears them down in reverse order of creation when it ends,
//! on success and on error alike.

use std::{
    collections::{BTreeMap, BTreeSet},
    marker::PhantomData,
};

use serde::Deserialize;

use crate::{
    dispatch::extension::FailurePolicy,
    events::EventBus,
    instance::{ExecutionEnvironment, NetworkEnvironment, PluginError, Reporter},
};

/// The level of a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ScopeLevel {
    /// The whole process (the host's config file).
    Host,
    /// A job: several experiments run together.
    Job,
    /// One experiment.
    Experiment,
    /// One service of an experiment.
    Service,
}

impl ScopeLevel {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeLevel::Host => "host",
            ScopeLevel::Job => "job",
            ScopeLevel::Experiment => "experiment",
            ScopeLevel::Service => "service",
        }
    }
}

/// The settings a scope may set; anything left out is inherited.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeSettings {
    /// Only these extensions act (replaces the inherited list).
    #[serde(default)]
    pub enable: Option<Vec<String>>,
    /// These extensions do not act (added to the inherited list).
    #[serde(default)]
    pub disable: Vec<String>,
    /// Extensions named here run first, in this order (replaces the inherited order).
    #[serde(default)]
    pub order: Vec<String>,
    /// The chosen driver per plugin type, e.g. `network_environment = "localhost"`.
    #[serde(default)]
    pub drivers: BTreeMap<String, String>,
    /// Stop at the first failing extension instead of going on.
    #[serde(default)]
    pub fail_fast: Option<bool>,
}

/// The settings in force in a scope, after inheritance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    allow: Option<BTreeSet<String>>,
    deny: BTreeSet<String>,
    order: Vec<String>,
    drivers: BTreeMap<String, String>,
    fail_fast: bool,
}

/// Combines settings from the outermost scope to the innermost; nearer scopes win.
pub fn resolve<'a>(chain: impl IntoIterator<Item = &'a ScopeSettings>) -> Resolved {
    let mut resolved = Resolved::default();
    for settings in chain {
        if let Some(enable) = &settings.enable {
            for name in enable {
                resolved.deny.remove(name);
            }
            resolved.allow = Some(enable.iter().cloned().collect());
        }
        resolved.deny.extend(settings.disable.iter().cloned());
        if !settings.order.is_empty() {
            resolved.order = settings.order.clone();
        }
        for (kind, name) in &settings.drivers {
            resolved.drivers.insert(kind.clone(), name.clone());
        }
        if let Some(fail_fast) = settings.fail_fast {
            resolved.fail_fast = fail_fast;
        }
    }
    resolved
}

impl Resolved {
    /// Whether an extension (by instance or plugin name) acts in this scope.
    pub fn is_enabled(&self, names: &[&str]) -> bool {
        let allowed = self
            .allow
            .as_ref()
            .is_none_or(|allow| names.iter().any(|n| allow.contains(*n)));
        allowed && !names.iter().any(|n| self.deny.contains(*n))
    }

    /// Whether an instance acts, where an `enable` list restricts only the type it names:
    /// `is_same_kind` says whether a name is one of that type's plugins or instances. So
    /// `enable = ["strace"]` leaves the reporters alone, and `enable = ["json"]` the
    /// execution environments.
    pub fn is_enabled_among(&self, names: &[&str], is_same_kind: impl Fn(&str) -> bool) -> bool {
        let allowed = match &self.allow {
            Some(allow) if allow.iter().any(|a| is_same_kind(a)) => {
                names.iter().any(|n| allow.contains(*n))
            }
            _ => true,
        };
        allowed && !names.iter().any(|n| self.deny.contains(*n))
    }

    /// The names in `disable` lists in force.
    pub fn disabled(&self) -> impl Iterator<Item = &str> {
        self.deny.iter().map(String::as_str)
    }

    /// The names of the nearest `enable` list, if any.
    pub fn enabled(&self) -> Option<impl Iterator<Item = &str>> {
        self.allow.as_ref().map(|a| a.iter().map(String::as_str))
    }

    /// The order in force.
    pub fn order(&self) -> &[String] {
        &self.order
    }

    /// Whether to stop at the first failing extension.
    pub fn fail_fast(&self) -> bool {
        self.fail_fast
    }

    /// Where an extension goes in the configured order: named ones first, in the order named,
    /// the rest after them in the order they were configured.
    pub fn position(&self, names: &[&str], configured: usize) -> usize {
        self.order
            .iter()
            .position(|o| names.contains(&o.as_str()))
            .unwrap_or(self.order.len() + configured)
    }

    /// The chosen driver of a plugin type, if a scope chose one.
    pub fn driver(&self, kind: &str) -> Option<&str> {
        self.drivers.get(kind).map(String::as_str)
    }

    /// What to do when an extension fails.
    pub fn failure_policy(&self) -> FailurePolicy {
        if self.fail_fast {
            FailurePolicy::StopAtFirst
        } else {
            FailurePolicy::Continue
        }
    }
}

/// A plugin instance owned by a scope.
pub enum Owned {
    /// A network environment.
    Network(NetworkEnvironment),
    /// An execution environment.
    Execution(ExecutionEnvironment),
    /// A reporter.
    Reporter(Reporter),
}

impl Owned {
    fn name(&self) -> &str {
        match self {
            Owned::Network(i) => &i.id.instance,
            Owned::Execution(i) => &i.id.instance,
            Owned::Reporter(i) => &i.id.instance,
        }
    }
}

/// A kind of plugin instance a scope can own: how it goes in and how it is found again.
pub trait Adoptable: Sized {
    /// The instance, as the scope holds it.
    fn into_owned(self) -> Owned;
    /// The instance, if `owned` is of this kind.
    fn in_owned(owned: &mut Owned) -> Option<&mut Self>;
}

/// Each kind of instance is one variant of [`Owned`].
macro_rules! adoptable {
    ($($kind:ident => $variant:ident),* $(,)?) => {$(
        impl Adoptable for $kind {
            fn into_owned(self) -> Owned {
                Owned::$variant(self)
            }
            fn in_owned(owned: &mut Owned) -> Option<&mut Self> {
                match owned {
                    Owned::$variant(i) => Some(i),
                    _ => None,
                }
            }
        }
    )*};
}

adoptable!(
    NetworkEnvironment => Network,
    ExecutionEnvironment => Execution,
    Reporter => Reporter,
);

/// A handle to an instance of kind `T` that a scope adopted.
///
/// Only [`Scope::adopt`] makes one, so it names an instance of its own kind; it can be
/// neither copied nor cloned, and [`Scope::release`] consumes it, so it cannot reach an
/// instance already torn down ([`Scope::end`] consumes the scope itself). Several users of
/// one instance share a reference to its handle.
pub struct Adopted<T> {
    index: usize,
    kind: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Adopted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Adopted").field(&self.index).finish()
    }
}

/// A live scope: its settings and the instances created in it.
pub struct Scope {
    /// Its level.
    pub level: ScopeLevel,
    /// Its name, e.g. `experiment:echo`.
    pub name: String,
    /// The settings in force.
    pub settings: Resolved,
    owned: Vec<Option<Owned>>,
    bus: Option<std::sync::Arc<EventBus>>,
}

impl Scope {
    /// A new scope with no instances.
    pub fn new(level: ScopeLevel, name: &str, settings: Resolved) -> Self {
        Scope {
            level,
            name: format!("{}:{name}", level.as_str()),
            settings,
            owned: Vec::new(),
            bus: None,
        }
    }

    /// Reports teardown events to `bus`.
    pub fn with_bus(mut self, bus: std::sync::Arc<EventBus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Takes ownership of an instance.
    pub fn adopt<T: Adoptable>(&mut self, instance: T) -> Adopted<T> {
        self.owned.push(Some(instance.into_owned()));
        Adopted {
            index: self.owned.len() - 1,
            kind: PhantomData,
        }
    }

    /// The instance behind `handle`.
    ///
    /// # Panics
    ///
    /// When `handle` was made by another scope: a handle of this scope names an instance of
    /// its kind until [`Scope::release`] consumes the handle or [`Scope::end`] consumes the
    /// scope.
    pub fn get<T: Adoptable>(&mut self, handle: &Adopted<T>) -> &mut T {
        self.owned
            .get_mut(handle.index)
            .and_then(Option::as_mut)
            .and_then(T::in_owned)
            .expect("a handle names a live instance of its kind in the scope that adopted it")
    }

    /// Tears down one instance now (before the scope ends), e.g. the network environment
    /// before reports are written.
    pub fn release<T: Adoptable>(&mut self, handle: Adopted<T>) -> Result<(), PluginError> {
        match self.owned.get_mut(handle.index).and_then(Option::take) {
            Some(instance) => self.teardown(instance),
            None => Ok(()),
        }
    }

    fn teardown(&self, mut instance: Owned) -> Result<(), PluginError> {
        let result = match &mut instance {
            Owned::Network(network) => network.teardown_environment(),
            _ => Ok(()),
        };
        let what = format!("{} in {}", instance.name(), self.name);
        drop(instance);
        if let Some(bus) = &self.bus {
            bus.emit(
                &self.name,
                "host",
                &panther_plugin_api::Event::Teardown { what },
            );
        }
        result
    }

    /// Tears down every instance, newest first; network environments get
    /// `teardown_environment`. Returns the failures; every instance is dropped regardless.
    /// Consumes the scope, so that no handle can be used after its instance is gone.
    pub fn end(mut self) -> Vec<PluginError> {
        self.tear_down_all()
    }

    fn tear_down_all(&mut self) -> Vec<PluginError> {
        let mut errors = Vec::new();
        while let Some(slot) = self.owned.pop() {
            if let Some(instance) = slot {
                if let Err(err) = self.teardown(instance) {
                    errors.push(err);
                }
            }
        }
        errors
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        for err in self.tear_down_all() {
            tracing::error!("{err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml_text: &str) -> ScopeSettings {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn nearer_scopes_override() {
        let host = settings(
            r#"disable = ["strace"]
drivers = { network_environment = "docker_compose" }"#,
        );
        let experiment = settings(r#"drivers = { network_environment = "localhost" }"#);
        let service = settings(r#"enable = ["strace"]"#);
        let at_experiment = resolve([&host, &experiment]);
        assert!(!at_experiment.is_enabled(&["strace"]));
        assert!(at_experiment.is_enabled(&["memcheck"]));
        assert_eq!(
            at_experiment.driver("network_environment"),
            Some("localhost")
        );
        let at_service = resolve([&host, &experiment, &service]);
        assert!(at_service.is_enabled(&["strace"]));
        assert!(!at_service.is_enabled(&["memcheck"]));
    }

    #[test]
    fn an_enable_list_restricts_only_the_type_it_names() {
        let tracers = ["strace", "memcheck"];
        let is_tracer = |name: &str| tracers.contains(&name);
        let is_reporter = |name: &str| name == "json" || name == "junit";
        let only_strace = resolve([&settings(r#"enable = ["strace"]"#)]);
        assert!(only_strace.is_enabled_among(&["strace"], is_tracer));
        assert!(!only_strace.is_enabled_among(&["memcheck"], is_tracer));
        assert!(only_strace.is_enabled_among(&["json"], is_reporter));
        let no_junit = resolve([&settings(r#"disable = ["junit"]"#)]);
        assert!(!no_junit.is_enabled_among(&["junit"], is_reporter));
    }
}
