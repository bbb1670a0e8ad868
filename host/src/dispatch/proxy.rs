//! Proxy (multi-instance) pattern: several named instances of any plugins, each with its own
//! arguments. Each instance declares the resources it claims exclusively and its plugin's
//! manifest declares what it cannot run with; both are checked when the instance is added,
//! before anything runs, and a refusal names both instances.

use panther_plugin_api::{Manifest, Resource};

/// Why an instance was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// Another instance already has that name.
    #[error("there is already an instance named `{0}`; give one of them another `name`")]
    DuplicateName(String),
    /// Another instance already claims the resource.
    #[error("`{second}` claims {resource}, which `{first}` already claims")]
    Claimed {
        /// The resource.
        resource: Resource,
        /// The instance that claimed it first.
        first: String,
        /// The instance refused.
        second: String,
    },
    /// The plugins declare they cannot share a scope.
    #[error("`{second}` cannot run with `{first}`: {reason}")]
    Incompatible {
        /// The instance already there.
        first: String,
        /// The instance refused.
        second: String,
        /// Which declaration forbids it.
        reason: String,
    },
    /// No instance has that name.
    #[error("no instance named `{0}`")]
    Unknown(String),
}

/// One instance in a proxy.
#[derive(Debug)]
pub struct Instance<T> {
    /// Its unique name (an alias, or the plugin's name).
    pub name: String,
    /// Its plugin's manifest.
    pub manifest: Manifest,
    /// What it claims.
    pub claims: Vec<Resource>,
    /// Whether it takes part.
    pub active: bool,
    /// The instance (or its plan, before instantiation).
    pub item: T,
}

/// The instances of one scope.
#[derive(Debug)]
pub struct Proxy<T> {
    instances: Vec<Instance<T>>,
}

impl<T> Default for Proxy<T> {
    fn default() -> Self {
        Proxy {
            instances: Vec::new(),
        }
    }
}

impl<T> Proxy<T> {
    /// An empty proxy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an active instance, refusing a duplicate name, a resource another active instance
    /// claims, or a declared incompatibility.
    pub fn add(
        &mut self,
        name: &str,
        manifest: Manifest,
        claims: Vec<Resource>,
        item: T,
    ) -> Result<(), ProxyError> {
        if self.instances.iter().any(|i| i.name == name) {
            return Err(ProxyError::DuplicateName(name.to_string()));
        }
        let candidate = Instance {
            name: name.to_string(),
            manifest,
            claims,
            active: true,
            item,
        };
        self.check(&candidate)?;
        self.instances.push(candidate);
        Ok(())
    }

    /// Adds an instance that does not take part (disabled in its scope): only its name must
    /// be unique; its claims are not compared until it is activated.
    pub fn add_inactive(
        &mut self,
        name: &str,
        manifest: Manifest,
        item: T,
    ) -> Result<(), ProxyError> {
        if self.instances.iter().any(|i| i.name == name) {
            return Err(ProxyError::DuplicateName(name.to_string()));
        }
        self.instances.push(Instance {
            name: name.to_string(),
            manifest,
            claims: Vec::new(),
            active: false,
            item,
        });
        Ok(())
    }

    /// The names of every instance, active or not, in the order they were added.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.instances.iter().map(|i| i.name.as_str())
    }

    /// Every instance, active or not, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = &Instance<T>> {
        self.instances.iter()
    }

    fn check(&self, candidate: &Instance<T>) -> Result<(), ProxyError> {
        for other in self
            .instances
            .iter()
            .filter(|i| i.active && i.name != candidate.name)
        {
            if let Some(resource) = candidate.claims.iter().find(|r| other.claims.contains(r)) {
                return Err(ProxyError::Claimed {
                    resource: resource.clone(),
                    first: other.name.clone(),
                    second: candidate.name.clone(),
                });
            }
            if let Some(reason) = other.manifest.conflict_with(&candidate.manifest) {
                return Err(ProxyError::Incompatible {
                    first: other.name.clone(),
                    second: candidate.name.clone(),
                    reason,
                });
            }
        }
        Ok(())
    }

    /// Removes an instance, returning it.
    pub fn remove(&mut self, name: &str) -> Result<Instance<T>, ProxyError> {
        let index = self.position(name)?;
        Ok(self.instances.remove(index))
    }

    /// Activates or deactivates an instance; activating re-checks its claims.
    pub fn set_active(&mut self, name: &str, active: bool) -> Result<(), ProxyError> {
        let index = self.position(name)?;
        if active && !self.instances[index].active {
            self.check(&self.instances[index])?;
        }
        self.instances[index].active = active;
        Ok(())
    }

    fn position(&self, name: &str) -> Result<usize, ProxyError> {
        self.instances
            .iter()
            .position(|i| i.name == name)
            .ok_or_else(|| ProxyError::Unknown(name.to_string()))
    }

    /// The active instances, in the order they were added.
    pub fn active(&self) -> impl Iterator<Item = &Instance<T>> {
        self.instances.iter().filter(|i| i.active)
    }

    /// Every instance, in the order they were added.
    pub fn into_instances(self) -> Vec<Instance<T>> {
        self.instances
    }

    /// How many instances (active or not).
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(name: &str) -> Manifest {
        Manifest::new(name)
    }

    #[test]
    fn refuses_a_second_claim_and_names_both() {
        let mut proxy = Proxy::new();
        proxy
            .add("junit", manifest("junit"), vec![Resource::Stdout], ())
            .unwrap();
        let err = proxy
            .add("json", manifest("json"), vec![Resource::Stdout], ())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`json` claims stdout, which `junit` already claims"
        );
        proxy.set_active("junit", false).unwrap();
        proxy
            .add("json", manifest("json"), vec![Resource::Stdout], ())
            .unwrap();
        assert!(proxy.set_active("junit", true).is_err());
    }

    #[test]
    fn an_inactive_instance_claims_nothing_until_activated() {
        let mut proxy = Proxy::new();
        proxy.add_inactive("junit", manifest("junit"), ()).unwrap();
        proxy
            .add("json", manifest("json"), vec![Resource::Stdout], ())
            .unwrap();
        assert_eq!(proxy.active().count(), 1);
        assert!(proxy.add_inactive("json", manifest("json"), ()).is_err());
    }

    #[test]
    fn refuses_declared_incompatibilities_both_ways() {
        let mut proxy = Proxy::new();
        proxy
            .add(
                "memcheck",
                manifest("memcheck")
                    .capability("valgrind")
                    .conflicts_with("valgrind"),
                vec![],
                (),
            )
            .unwrap();
        let err = proxy
            .add(
                "helgrind",
                manifest("helgrind").capability("valgrind"),
                vec![],
                (),
            )
            .unwrap_err();
        assert!(matches!(err, ProxyError::Incompatible { .. }), "{err}");
    }
}
