//! The plugins that loaded, by type and name, and the files that did not.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use panther_plugin_api::PluginKind;

use crate::loader::{self, LoadError, LoadErrorKind, LoadedPlugin};

/// Every plugin found in the plugin folders.
#[derive(Debug, Default)]
pub struct Registry {
    plugins: BTreeMap<(PluginKind, String), Arc<LoadedPlugin>>,
    /// Names provided by more than one file: never picked silently.
    ambiguous: BTreeMap<(PluginKind, String), Vec<PathBuf>>,
    failures: Vec<LoadError>,
}

impl Registry {
    /// Loads every `.so` in the folders. Never fails as a whole: each broken file is recorded.
    pub fn load(dirs: &[PathBuf]) -> Registry {
        let (files, failures) = loader::discover(dirs);
        let mut registry = Registry {
            failures,
            ..Registry::default()
        };
        for file in files {
            match loader::load(&file) {
                Ok(plugin) => registry.insert(plugin),
                Err(err) => registry.failures.push(err),
            }
        }
        registry
    }

    /// Adds a loaded plugin; a second file with the same type and name makes the name
    /// ambiguous and both files are reported.
    pub fn insert(&mut self, plugin: LoadedPlugin) {
        let key = (plugin.manifest.kind, plugin.manifest.name.clone());
        if let Some(paths) = self.ambiguous.get_mut(&key) {
            paths.push(plugin.path.clone());
            self.failures.push(duplicate(&plugin, &paths[0]));
            return;
        }
        if let Some(first) = self.plugins.remove(&key) {
            self.failures.push(duplicate(&first, &plugin.path));
            self.failures.push(duplicate(&plugin, &first.path));
            self.ambiguous
                .insert(key, vec![first.path.clone(), plugin.path.clone()]);
            return;
        }
        self.plugins.insert(key, Arc::new(plugin));
    }

    /// The plugin of this type and name.
    pub fn get(&self, kind: PluginKind, name: &str) -> Option<&Arc<LoadedPlugin>> {
        self.plugins.get(&(kind, name.to_string()))
    }

    /// The files that provide this name more than once, when it is ambiguous.
    pub fn ambiguous(&self, kind: PluginKind, name: &str) -> Option<&[PathBuf]> {
        self.ambiguous
            .get(&(kind, name.to_string()))
            .map(Vec::as_slice)
    }

    /// The names of every plugin of a type, sorted.
    pub fn names(&self, kind: PluginKind) -> Vec<&str> {
        self.plugins
            .keys()
            .filter(|(k, _)| *k == kind)
            .map(|(_, name)| name.as_str())
            .collect()
    }

    /// Every loaded plugin, by type then name.
    pub fn plugins(&self) -> impl Iterator<Item = &Arc<LoadedPlugin>> {
        self.plugins.values()
    }

    /// A plugin of any type by name, for `info`.
    pub fn find(&self, name: &str) -> Vec<&Arc<LoadedPlugin>> {
        self.plugins
            .values()
            .filter(|p| p.manifest.name == name)
            .collect()
    }

    /// The files that could not be loaded, in discovery order.
    pub fn failures(&self) -> &[LoadError] {
        &self.failures
    }
}

fn duplicate(plugin: &LoadedPlugin, other: &std::path::Path) -> LoadError {
    LoadError {
        path: plugin.path.clone(),
        kind: LoadErrorKind::DuplicateName {
            kind: plugin.manifest.kind.to_string(),
            name: plugin.manifest.name.clone(),
            other: other.to_path_buf(),
        },
    }
}
