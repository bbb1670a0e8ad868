//! The plugins found in the plugin folders, by type and name, the ones they shadow, and
//! the files that cannot be used.
//!
//! [`Registry::load_with`] never opens a library in this process. For each `*.so` entry,
//! in folder order: trust ([`crate::trust`]) and readability are checked every time; then
//! the manifest comes from the cache ([`crate::cache`]) when the file is unchanged, else
//! from pre-flight ([`crate::preflight`]) and a probe child ([`crate::probe`]), several at
//! a time. The library itself is opened when a plugin is first used
//! ([`LoadedPlugin::module`]).
//!
//! Precedence: the first folder providing a (type, name) wins; providers in later folders
//! are [`Shadowed`]. Two providers in the same folder are both refused: neither is picked
//! silently.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use panther_plugin_api::{Manifest, PluginKind};

use crate::{
    cache::{self, Cache, FileKey, Header},
    loader::{self, Candidate, LoadError, LoadErrorKind, LoadedPlugin},
    preflight,
    probe::{self, Answer},
    trust::Trust,
};

/// How to find and check plugin files.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The plugin folders, in order of precedence.
    pub dirs: Vec<PathBuf>,
    /// Folders accepted whatever their owner and mode (`trust_plugin_dirs`).
    pub trusted_dirs: Vec<PathBuf>,
    /// Where the manifest cache lives; `None` caches nothing.
    pub cache_dir: Option<PathBuf>,
    /// The probe binary, or why there is none.
    pub probe: Result<PathBuf, String>,
    /// How long one probe may take.
    pub probe_timeout: Duration,
}

impl LoadOptions {
    /// The folders `dirs` with everything else from the environment: the cache folder
    /// (`PANTHER_CACHE_DIR` or the user's), the probe (`PANTHER_PROBE` or beside the
    /// executable) and its time limit (`PANTHER_PROBE_TIMEOUT`, 5 s by default).
    pub fn new(dirs: &[PathBuf]) -> LoadOptions {
        LoadOptions {
            dirs: dirs.to_vec(),
            trusted_dirs: Vec::new(),
            cache_dir: cache::default_dir(),
            probe: probe::probe_binary(),
            probe_timeout: probe::timeout_from_env(),
        }
    }
}

/// A plugin not used because a folder earlier in the search order provides the same type
/// and name.
#[derive(Debug, Clone)]
pub struct Shadowed {
    /// The plugin that is not used.
    pub plugin: Arc<LoadedPlugin>,
    /// The file used instead.
    pub by: PathBuf,
}

/// Every plugin found in the plugin folders.
#[derive(Debug, Default)]
pub struct Registry {
    plugins: BTreeMap<(PluginKind, String), Arc<LoadedPlugin>>,
    /// The folder index each plugin came from.
    folders: BTreeMap<(PluginKind, String), usize>,
    /// Names provided by more than one file of one folder: never picked silently.
    ambiguous: BTreeMap<(PluginKind, String), Vec<PathBuf>>,
    shadowed: Vec<Shadowed>,
    failures: Vec<LoadError>,
}

impl Registry {
    /// Finds every plugin in the folders with the defaults of [`LoadOptions::new`].
    pub fn load(dirs: &[PathBuf]) -> Registry {
        Registry::load_with(&LoadOptions::new(dirs))
    }

    /// Finds every plugin in the folders. Never fails as a whole: each unusable file or
    /// folder is recorded in [`Registry::failures`].
    pub fn load_with(options: &LoadOptions) -> Registry {
        let (candidates, failures) = loader::discover(&options.dirs);
        let mut registry = Registry {
            failures,
            ..Registry::default()
        };
        let trust = Trust::new(&options.trusted_dirs);
        let folder_verdicts: Vec<Result<bool, String>> = options
            .dirs
            .iter()
            .map(|d| trust.check_folder(d).map(|()| trust.is_trusted(d)))
            .collect();
        let mut cache = Cache::open(
            options.cache_dir.clone(),
            Header::current(options.probe.as_deref().ok()),
            cache::environment(options.probe_timeout),
        );

        // What is known without a probe, and what must be probed.
        let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(candidates.len());
        let mut to_probe: Vec<(usize, PathBuf, FileKey)> = Vec::new();
        for (i, candidate) in candidates.iter().enumerate() {
            let known = match triage(candidate, &folder_verdicts, &mut cache) {
                Triage::Known(outcome) => Some(*outcome),
                Triage::Probe(path, key) => {
                    to_probe.push((i, path, key));
                    None
                }
            };
            outcomes.push(known);
        }
        if !to_probe.is_empty() {
            let paths: Vec<PathBuf> = to_probe
                .iter()
                .map(|(i, _, _)| candidates[*i].path.clone())
                .collect();
            let answers = match &options.probe {
                Ok(bin) => probe::probe_all(&paths, bin, options.probe_timeout),
                Err(why) => paths
                    .iter()
                    .map(|p| Err(LoadError::new(p, LoadErrorKind::NoProbe(why.clone()))))
                    .collect(),
            };
            for ((i, path, key), answer) in to_probe.into_iter().zip(answers) {
                let (answer, layout) = match answer {
                    Ok(probed) => (Answer::Manifest(probed.manifest), probed.layout),
                    Err(err) => (
                        Answer::Error {
                            plugin: err.plugin,
                            kind: *err.kind,
                        },
                        None,
                    ),
                };
                if !matches!(&answer, Answer::Error { kind, .. } if kind.depends_on_permissions()) {
                    cache.put(path, key, answer.clone(), layout);
                }
                outcomes[i] = Some(outcome(&candidates[i].path, answer, key, layout));
            }
        }
        if let Err(err) = cache.save() {
            tracing::debug!("the plugin cache could not be written: {err}");
        }
        for (candidate, outcome) in candidates.iter().zip(outcomes) {
            match outcome.expect("every candidate has an outcome") {
                Ok((manifest, key, layout)) => registry.insert_from(
                    LoadedPlugin::from_manifest(candidate.path.clone(), manifest, key)
                        .layout_checked_as(layout),
                    candidate.folder,
                ),
                Err(err) => registry.failures.push(err),
            }
        }
        registry
    }

    /// Adds a plugin as if it came from a folder searched before every other.
    pub fn insert(&mut self, plugin: LoadedPlugin) {
        self.insert_from(plugin, 0);
    }

    /// Adds a plugin found in the folder with index `folder`: a provider of the same type
    /// and name from an earlier folder shadows it; one from the same folder makes the name
    /// ambiguous and both files are reported.
    fn insert_from(&mut self, plugin: LoadedPlugin, folder: usize) {
        let key = (plugin.manifest.kind, plugin.manifest.name.clone());
        if let Some(paths) = self.ambiguous.get_mut(&key) {
            if self.folders.get(&key) == Some(&folder) {
                self.failures.push(duplicate(&plugin, &paths[0]));
                paths.push(plugin.path.clone());
            } else {
                let by = paths[0].clone();
                self.shadowed.push(Shadowed {
                    plugin: Arc::new(plugin),
                    by,
                });
            }
            return;
        }
        if let Some(first) = self.plugins.get(&key) {
            if self.folders.get(&key) == Some(&folder) {
                let first = self.plugins.remove(&key).expect("present");
                self.failures.push(duplicate(&first, &plugin.path));
                self.failures.push(duplicate(&plugin, &first.path));
                self.ambiguous
                    .insert(key, vec![first.path.clone(), plugin.path.clone()]);
            } else {
                let by = first.path.clone();
                self.shadowed.push(Shadowed {
                    plugin: Arc::new(plugin),
                    by,
                });
            }
            return;
        }
        self.folders.insert(key.clone(), folder);
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

    /// Every usable plugin, by type then name.
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

    /// The plugins not used because an earlier folder provides the same type and name.
    pub fn shadowed(&self) -> &[Shadowed] {
        &self.shadowed
    }

    /// The files and folders that could not be used, in discovery order.
    pub fn failures(&self) -> &[LoadError] {
        &self.failures
    }

    /// The failed file that would have provided the plugin `name`: by the name in its
    /// manifest when one could be read, else by its file name (`libpanther_plugin_NAME.so`,
    /// `libNAME.so` or `NAME.so`).
    pub fn failure_for(&self, name: &str) -> Option<&LoadError> {
        let files = [
            format!("libpanther_plugin_{name}.so"),
            format!("lib{name}.so"),
            format!("{name}.so"),
        ];
        self.failures
            .iter()
            .filter(|f| !matches!(*f.kind, LoadErrorKind::Folder(_)))
            .find(|f| f.plugin.as_deref() == Some(name))
            .or_else(|| {
                self.failures.iter().find(|f| {
                    f.plugin.is_none()
                        && f.path
                            .file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| files.iter().any(|candidate| candidate == n))
                })
            })
    }
}

/// A plugin's manifest and the file's identity when it was read, or why it is unusable.
/// A manifest with its file's key and the layout fingerprint its probe checked it against.
type Outcome = Result<(Manifest, Option<FileKey>, Option<u64>), LoadError>;

/// What is known about one candidate before any probe.
enum Triage {
    /// Its outcome, from a check or the cache (boxed: a manifest is large).
    Known(Box<Outcome>),
    /// It must be probed; its path and key, for the cache.
    Probe(PathBuf, FileKey),
}

/// Trust, readability, the cache, then pre-flight: everything short of a probe.
/// `folder_verdicts` holds, per folder, whether it was declared trusted or why it is refused.
fn triage(
    candidate: &Candidate,
    folder_verdicts: &[Result<bool, String>],
    cache: &mut Cache,
) -> Triage {
    let path = &candidate.path;
    let fail = |kind| Triage::Known(Box::new(Err(LoadError::new(path, kind))));
    let folder_trusted = match &folder_verdicts[candidate.folder] {
        Ok(trusted) => *trusted,
        Err(why) => return fail(LoadErrorKind::Untrusted(why.clone())),
    };
    let meta = match &candidate.meta {
        Some(meta) if meta.is_file() => meta,
        // Pre-flight names what it is (a dangling link, a folder, a device).
        _ => {
            return fail(preflight::check(path).err().unwrap_or_else(|| {
                LoadErrorKind::NotAFile("it changed while it was being read".into())
            }))
        }
    };
    if let Err(why) = Trust::check_file(folder_trusted, path, meta) {
        return fail(LoadErrorKind::Untrusted(why));
    }
    if let Err(errno) = nix::unistd::access(path.as_path(), nix::unistd::AccessFlags::R_OK) {
        return fail(LoadErrorKind::Unreadable(errno.desc().to_string()));
    }
    let key = FileKey::from_metadata(meta);
    if let Some((answer, layout)) = cache.take(path, &key) {
        return Triage::Known(Box::new(outcome(path, answer, key, layout)));
    }
    match preflight::check(path) {
        Ok(()) => Triage::Probe(path.clone(), key),
        Err(kind) => {
            if !kind.depends_on_permissions() {
                cache.put(
                    path.clone(),
                    key,
                    Answer::Error {
                        plugin: None,
                        kind: kind.clone(),
                    },
                    None,
                );
            }
            fail(kind)
        }
    }
}

/// An answer as the registry keeps it.
fn outcome(path: &Path, answer: Answer, key: FileKey, layout: Option<u64>) -> Outcome {
    match answer {
        Answer::Manifest(manifest) => Ok((manifest, Some(key), layout)),
        Answer::Error { plugin, kind } => Err(LoadError {
            path: path.to_path_buf(),
            plugin,
            kind: Box::new(kind),
        }),
    }
}

fn duplicate(plugin: &LoadedPlugin, other: &Path) -> LoadError {
    LoadError {
        path: plugin.path.clone(),
        plugin: Some(plugin.manifest.name.clone()),
        kind: Box::new(LoadErrorKind::DuplicateName {
            kind: plugin.manifest.kind.to_string(),
            name: plugin.manifest.name.clone(),
            other: other.to_path_buf(),
        }),
    }
}
