//! Driver pattern: one implementation of a type per scope, chosen by name. Unknown names list
//! the known ones and suggest the closest; a name two files claim is refused; drivers that
//! are not chosen are never instantiated (choosing only looks at the registry).

use std::{path::PathBuf, sync::Arc};

use panther_plugin_api::PluginKind;

use crate::{loader::LoadedPlugin, registry::Registry};

/// Why no driver could be chosen.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// No plugin of that type has that name.
    #[error("no {kind} plugin named `{name}`{}; known: {}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default(), if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    Unknown {
        /// The type looked in.
        kind: PluginKind,
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: Vec<String>,
        /// The closest known name, when one is close.
        suggestion: Option<String>,
    },
    /// The file that would provide the name could not be used.
    #[error("the {kind} `{name}` cannot be used: {error}")]
    Failed {
        /// The type looked in.
        kind: PluginKind,
        /// The name asked for.
        name: String,
        /// The file and why it failed.
        error: String,
    },
    /// Two files provide the name.
    #[error("the {kind} `{name}` is provided by more than one file ({}); remove all but one", paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    Ambiguous {
        /// The type.
        kind: PluginKind,
        /// The name.
        name: String,
        /// Every file providing it.
        paths: Vec<PathBuf>,
    },
}

/// Chooses the driver `name` of type `kind`.
pub fn choose<'r>(
    registry: &'r Registry,
    kind: PluginKind,
    name: &str,
) -> Result<&'r Arc<LoadedPlugin>, DriverError> {
    if let Some(paths) = registry.ambiguous(kind, name) {
        return Err(DriverError::Ambiguous {
            kind,
            name: name.to_string(),
            paths: paths.to_vec(),
        });
    }
    registry.get(kind, name).ok_or_else(|| {
        if let Some(failure) = registry.failure_for(name) {
            return DriverError::Failed {
                kind,
                name: name.to_string(),
                error: failure.to_string(),
            };
        }
        let known: Vec<String> = registry.names(kind).into_iter().map(String::from).collect();
        DriverError::Unknown {
            kind,
            name: name.to_string(),
            suggestion: closest(name, &known),
            known,
        }
    })
}

/// The known name closest to `name`, if it is close enough to be a typo (the rule every
/// plugin applies too: [`panther_plugin_api::suggest`]).
pub fn closest(name: &str, known: &[String]) -> Option<String> {
    panther_plugin_api::suggest::closest(name, known).cloned()
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn suggests_only_close_names() {
        let known = vec!["localhost".to_string(), "docker_compose".to_string()];
        assert_eq!(closest("locahost", &known).as_deref(), Some("localhost"));
        assert_eq!(
            closest("docker-compose", &known).as_deref(),
            Some("docker_compose")
        );
        assert_eq!(closest("kubernetes", &known), None);
    }

    #[test]
    fn long_names_are_not_compared() {
        let known = vec!["x".repeat(64), "y".repeat(200)];
        assert_eq!(closest(&"x".repeat(1 << 20), &known), None);
        assert_eq!(closest(&"y".repeat(199), &known), None);
        assert_eq!(closest(&"x".repeat(63), &known), Some("x".repeat(64)));
    }
}
