//! Plugin files: where they are searched, why one cannot be used, and opening one through
//! abi_stable.
//!
//! The main process never opens a file to find out what it is: [`crate::registry`] gets each
//! file's manifest from the cache or from a probe child ([`crate::probe`]), and a
//! [`LoadedPlugin`] opens its library only when its module is first needed
//! ([`LoadedPlugin::module`]). Opening runs the library's constructors inside this process,
//! with all its rights: see docs/architecture.md.
//!
//! Every file is opened on its own with [`RawLibrary::load_at`] and initialised with
//! `init_root_module`, because `RootModule::load_from_file` caches one module per interface
//! type for the whole process and would hand back the first plugin for every file.
//!
//! Libraries are never unloaded: abi_stable leaks them on purpose (`dlclose` is unreliable
//! with thread-locals and statics). Loading a new build of a plugin means a new process.

use std::{
    fmt,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use abi_stable::library::{
    lib_header_from_raw_library, AbiHeader, LibraryError, RawLibrary, RootModuleError,
};
use panther_plugin_api::{abi::PluginModuleRef, failure::Failure, Manifest, API_VERSION};
use serde::{Deserialize, Serialize};

use crate::cache::FileKey;

/// The environment variable holding extra plugin folders, separated by `:`.
pub const PLUGIN_PATH_ENV: &str = "PANTHER_PLUGIN_PATH";

/// A plugin file whose manifest is known; its library is opened on first use.
pub struct LoadedPlugin {
    /// The file it is loaded from.
    pub path: PathBuf,
    /// What it says about itself.
    pub manifest: Manifest,
    /// The file as it was when its manifest was read: opening a file that changed since is
    /// refused rather than trusted blindly.
    key: Option<FileKey>,
    /// Whether the probe that read the manifest checked the library's layout against the
    /// same interface as this program's: the check is then not made again here.
    layout_checked: bool,
    module: OnceLock<Result<PluginModuleRef, LoadError>>,
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("path", &self.path)
            .field("name", &self.manifest.name)
            .field("kind", &self.manifest.kind)
            .field("open", &self.module.get().is_some())
            .finish()
    }
}

impl LoadedPlugin {
    /// A plugin known by its manifest, not opened yet. `key` is the file's identity when
    /// the manifest was read; [`LoadedPlugin::module`] refuses the file when it differs.
    pub fn from_manifest(path: PathBuf, manifest: Manifest, key: Option<FileKey>) -> Self {
        LoadedPlugin {
            path,
            manifest,
            key,
            layout_checked: false,
            module: OnceLock::new(),
        }
    }

    /// Records the layout fingerprint the probe checked the library against: when it is this
    /// program's ([`panther_plugin_api::abi::LAYOUT_FINGERPRINT`]) and the file is the one the
    /// probe read (its key), opening it skips abi_stable's layout check, which the probe made
    /// for the same interface.
    pub fn layout_checked_as(mut self, fingerprint: Option<u64>) -> Self {
        self.layout_checked =
            self.key.is_some() && fingerprint == Some(panther_plugin_api::abi::LAYOUT_FINGERPRINT);
        self
    }

    /// A plugin compiled into this program (see [`crate::embedded`]): its module is already
    /// there, no file is opened. `path` only names it in messages.
    pub fn from_module(path: PathBuf, manifest: Manifest, module: PluginModuleRef) -> Self {
        LoadedPlugin {
            path,
            manifest,
            key: None,
            layout_checked: false,
            module: OnceLock::from(Ok(module)),
        }
    }

    /// The plugin's root module, opening the library in this process the first time.
    pub fn module(&self) -> Result<PluginModuleRef, LoadError> {
        self.module
            .get_or_init(|| {
                let fail = |kind| LoadError::new(&self.path, kind);
                if let Some(key) = &self.key {
                    match FileKey::of(&self.path) {
                        Ok(now) if now == *key => {}
                        _ => return Err(fail(LoadErrorKind::Changed)),
                    }
                }
                let layout = if self.layout_checked {
                    Layout::CheckedByProbe
                } else {
                    Layout::Check
                };
                open_with(&self.path, &mut |_| {}, layout).map_err(fail)
            })
            .clone()
    }

    /// The file's identity when its manifest was read, when known.
    pub fn key(&self) -> Option<FileKey> {
        self.key
    }

    /// Whether the library has been opened in this process.
    pub fn is_open(&self) -> bool {
        self.module.get().is_some_and(Result::is_ok)
    }
}

/// Why one file (or folder) could not be used as a plugin.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct LoadError {
    /// The file.
    pub path: PathBuf,
    /// The plugin's name when its manifest could be read (e.g. a plugin-api version
    /// mismatch), so that commands using the name can say why it is missing.
    pub plugin: Option<String>,
    /// What went wrong.
    pub kind: Box<LoadErrorKind>,
}

impl LoadError {
    /// An error for `path` whose plugin name is not known.
    pub fn new(path: &Path, kind: LoadErrorKind) -> Self {
        LoadError {
            path: path.to_path_buf(),
            plugin: None,
            kind: Box::new(kind),
        }
    }
}

/// The ways using a plugin file fails.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum LoadErrorKind {
    /// A plugin folder does not exist or cannot be read.
    #[error("cannot read the plugin folder: {0}")]
    Folder(String),
    /// Not a regular file: a folder, a device, a dangling link.
    #[error("not a regular file: {0}")]
    NotAFile(String),
    /// The file cannot be opened or read (e.g. permission denied).
    #[error("cannot be read: {0}")]
    Unreadable(String),
    /// An empty file.
    #[error("empty file (0 bytes), not a shared library")]
    Empty,
    /// The file is not an ELF file at all (e.g. a text file named `.so`).
    #[error("not a shared library (no ELF header)")]
    NotElf,
    /// An ELF file of another class, byte order or machine.
    #[error("not for this machine: {0}")]
    WrongMachine(String),
    /// An ELF file that is not a shared object.
    #[error("not a shared library: it is {0}")]
    NotSharedObject(String),
    /// The file ends before what its headers describe: a copy cut short.
    #[error("truncated: {0}")]
    Truncated(String),
    /// ELF headers that cannot be read.
    #[error("damaged ELF headers: {0}")]
    BadElf(String),
    /// The dynamic loader refused the file.
    #[error("the dynamic loader refused it: {0}")]
    Open(String),
    /// A shared library without the root module `export_plugin!` generates.
    #[error(
        "not a panther plugin: it exports no root module (was it built with `export_plugin!`?)"
    )]
    NoRootModule,
    /// Built with an `abi_stable` this host cannot talk to, or a forged header.
    #[error("{0}")]
    AbiStable(String),
    /// Built against another major version of `panther-plugin-api`.
    #[error(
        "built against panther-plugin-api {found}, but this host uses {expected}; \
         rebuild the plugin against panther-plugin-api {expected_major}.x"
    )]
    ApiVersion {
        /// The host's version.
        expected: String,
        /// The plugin's version.
        found: String,
        /// The host's major version.
        expected_major: String,
    },
    /// The types at the boundary do not match this host's.
    #[error("its interface does not match this host's:\n{0}")]
    Layout(String),
    /// The plugin panicked while its root module or manifest was built.
    #[error("panicked while loading{0}")]
    Panicked(String),
    /// The manifest could not be produced or read.
    #[error("bad manifest: {0}")]
    Manifest(String),
    /// The probe child ended without an answer: exit, signal, time limit or garbage.
    #[error("{0}")]
    Probe(String),
    /// The probe could not be run at all.
    #[error("cannot be checked: {0}")]
    NoProbe(String),
    /// The file or its folder may be changed by someone else than this user or root.
    #[error("refused: {0}")]
    Untrusted(String),
    /// The file changed between reading its manifest and opening it.
    #[error("it changed since its manifest was read; run the command again")]
    Changed,
    /// Another file in the same folder provides a plugin of the same type and name.
    #[error("another file also provides the {kind} `{name}`: {}; remove one of them", other.display())]
    DuplicateName {
        /// The plugin type.
        kind: String,
        /// The plugin name.
        name: String,
        /// The other file.
        other: PathBuf,
    },
}

impl LoadErrorKind {
    /// Whether the outcome depends on who runs the host or on the file's permissions, not
    /// only on its contents: such outcomes are never cached.
    pub fn depends_on_permissions(&self) -> bool {
        matches!(
            self,
            LoadErrorKind::Unreadable(_)
                | LoadErrorKind::Untrusted(_)
                | LoadErrorKind::Folder(_)
                | LoadErrorKind::NoProbe(_)
                | LoadErrorKind::Changed
        )
    }

    /// Whether the outcome may depend on the process's surroundings rather than on the
    /// file's bytes: the dynamic loader refused it (a library not found, a symbol not
    /// defined), or the probe child exited, was killed or ran out of time (a constructor
    /// that reads the environment, a busy machine). Cached only for the same environment.
    pub fn depends_on_environment(&self) -> bool {
        matches!(self, LoadErrorKind::Open(_) | LoadErrorKind::Probe(_))
    }
}

/// Where to look for plugins: the `--plugin-dir` folders, then `PANTHER_PLUGIN_PATH`, then
/// (unless `include_default` is false) the folder of the running executable, where the
/// shipped plugins sit after a `cargo build`. Earlier folders win: a plugin in a
/// `--plugin-dir` shadows a shipped plugin of the same type and name.
pub fn plugin_dirs(
    cli_dirs: &[PathBuf],
    env_path: Option<&str>,
    include_default: bool,
) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = cli_dirs.to_vec();
    if let Some(path) = env_path {
        dirs.extend(std::env::split_paths(path).filter(|p| !p.as_os_str().is_empty()));
    }
    if include_default {
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
        {
            dirs.push(dir);
        }
    }
    dirs
}

/// One `.so` entry of a plugin folder, with the index of the folder it was found in.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The entry's path (not resolved: a symlink stays a symlink).
    pub path: PathBuf,
    /// What the path points at (links followed), when it points at something.
    pub meta: Option<std::fs::Metadata>,
    /// Its position in the folder list: lower wins.
    pub folder: usize,
}

/// Every entry named `*.so` in the folders, whatever its type (pre-flight says what is wrong
/// with a link to a folder or a device), each folder sorted by name; unreadable folders
/// become errors. A file reached twice (same folder given twice, or a link to a file of an
/// earlier folder) is listed once, where it is first found.
pub fn discover(dirs: &[PathBuf]) -> (Vec<Candidate>, Vec<LoadError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (folder, dir) in dirs.iter().enumerate() {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) => {
                errors.push(LoadError::new(dir, LoadErrorKind::Folder(io_reason(&err))));
                continue;
            }
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "so"))
            .collect();
        found.sort();
        for path in found {
            let meta = std::fs::metadata(&path).ok();
            let identity = match &meta {
                Some(meta) => Ok((meta.dev(), meta.ino())),
                None => Err(path.clone()),
            };
            if seen.insert(identity) {
                files.push(Candidate { path, meta, folder });
            }
        }
    }
    (files, errors)
}

/// The OS's reason without Rust's " (os error N)" suffix.
pub(crate) fn io_reason(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// What is being done to a file while it is opened, for naming where a crash happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `dlopen`: the library's constructors run here.
    Loading,
    /// Reading and checking the abi_stable header and building the root module.
    RootModule,
    /// Asking the plugin for its manifest.
    Describing,
}

impl Stage {
    /// The words used in messages and on the probe's stage lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Loading => "loading",
            Stage::RootModule => "reading its root module",
            Stage::Describing => "describing itself",
        }
    }
}

/// Opens a plugin library in this process and checks its ABI: the constructors of the
/// library run here. `stage` is told before each step.
pub fn open(path: &Path, stage: &mut dyn FnMut(Stage)) -> Result<PluginModuleRef, LoadErrorKind> {
    open_with(path, stage, Layout::Check)
}

/// Whether opening a library checks its layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// abi_stable compares every type of the root module with this program's.
    Check,
    /// A probe with this program's interface did that for this very file (see
    /// [`LoadedPlugin::layout_checked_as`]); the version numbers are still compared.
    CheckedByProbe,
}

fn open_with(
    path: &Path,
    stage: &mut dyn FnMut(Stage),
    layout: Layout,
) -> Result<PluginModuleRef, LoadErrorKind> {
    stage(Stage::Loading);
    let raw = RawLibrary::load_at(path).map_err(classify)?;
    // Never unloaded (see the module docs).
    let raw: &'static RawLibrary = Box::leak(Box::new(raw));
    stage(Stage::RootModule);
    // SAFETY: the library is leaked above, so the header's 'static references stay valid.
    let header = unsafe { lib_header_from_raw_library(raw) }.map_err(classify)?;
    match layout {
        Layout::Check => header.init_root_module::<PluginModuleRef>(),
        // SAFETY: the layout of this file (same key) was checked by a probe against the same
        // interface definition (same fingerprint, same abi_stable minor: the cache's header).
        Layout::CheckedByProbe => unsafe {
            header.init_root_module_with_unchecked_layout::<PluginModuleRef>()
        },
    }
    .map_err(classify)
}

/// Opens one plugin file in this process right away, without a probe or the cache: for
/// benchmarks and programs that load a file they built themselves. Whatever the library
/// does while it is opened happens to this process.
pub fn load(path: &Path) -> Result<LoadedPlugin, LoadError> {
    let mut module = None;
    let manifest = open_and_describe_with(path, &mut |_| {}, &mut module)?;
    let plugin = LoadedPlugin::from_manifest(path.to_path_buf(), manifest, None);
    if let Some(module) = module {
        let _ = plugin.module.set(Ok(module));
    }
    Ok(plugin)
}

/// Opens a plugin library in this process and reads its manifest: what the probe child
/// does. `stage` is told before each step.
pub fn open_and_describe(path: &Path, stage: &mut dyn FnMut(Stage)) -> Result<Manifest, LoadError> {
    open_and_describe_with(path, stage, &mut None)
}

/// [`open_and_describe`], keeping the opened module in `opened`.
fn open_and_describe_with(
    path: &Path,
    stage: &mut dyn FnMut(Stage),
    opened: &mut Option<PluginModuleRef>,
) -> Result<Manifest, LoadError> {
    let fail = |kind| LoadError::new(path, kind);
    if let Err(kind) = crate::preflight::check(path) {
        return Err(fail(kind));
    }
    let module = open(path, stage).map_err(fail)?;
    *opened = Some(module);
    stage(Stage::Describing);
    read_manifest(module).map_err(|(kind, name)| LoadError {
        path: path.to_path_buf(),
        plugin: name,
        kind: Box::new(kind),
    })
}

/// The manifest, checked for the plugin-api major version; on failure, the plugin's name
/// when the manifest could be read.
fn read_manifest(module: PluginModuleRef) -> Result<Manifest, (LoadErrorKind, Option<String>)> {
    let json = module.manifest()().into_result().map_err(|e| {
        let failure = Failure::read(&e.into_string(), "describing itself");
        let kind = if failure.is_panic() {
            LoadErrorKind::Panicked(format!(" (describing itself: {failure})"))
        } else {
            LoadErrorKind::Manifest(failure.to_string())
        };
        (kind, None)
    })?;
    let manifest: Manifest =
        serde_json::from_str(&json).map_err(|e| (LoadErrorKind::Manifest(e.to_string()), None))?;
    if major(&manifest.api_version) != major(API_VERSION) {
        return Err((
            api_version_error(&manifest.api_version),
            Some(manifest.name.clone()),
        ));
    }
    // Checked once here, where the file is probed and the answer cached, so that a run
    // only compiles the schemas it validates against (see `config_schema::validate`).
    if let Err(err) = crate::config_schema::check(&manifest.config_schema) {
        return Err((
            LoadErrorKind::Manifest(format!(
                "its configuration schema is not a valid JSON Schema: {err}"
            )),
            Some(manifest.name.clone()),
        ));
    }
    Ok(manifest)
}

fn major(version: &str) -> &str {
    version.split('.').next().unwrap_or(version)
}

fn api_version_error(found: &str) -> LoadErrorKind {
    LoadErrorKind::ApiVersion {
        expected: API_VERSION.to_string(),
        found: found.to_string(),
        expected_major: major(API_VERSION).to_string(),
    }
}

/// The abi_stable version this host was built with, as `0.11`.
pub fn abi_stable_version() -> String {
    let ours = AbiHeader::VALUE;
    format!("{}.{}", ours.abi_major, ours.abi_minor)
}

/// A foreign abi_stable header in words: another version, or not abi_stable at all.
fn foreign_header(header: &AbiHeader) -> LoadErrorKind {
    let ours = AbiHeader::VALUE;
    if header.magic_string != ours.magic_string {
        return LoadErrorKind::AbiStable("not an abi_stable library (wrong magic)".into());
    }
    LoadErrorKind::AbiStable(format!(
        "built with abi_stable {}.{} (this host uses {})",
        header.abi_major,
        header.abi_minor,
        abi_stable_version()
    ))
}

fn classify(err: LibraryError) -> LoadErrorKind {
    match err {
        LibraryError::OpenError { err, .. } => LoadErrorKind::Open(err.to_string()),
        LibraryError::GetSymbolError { .. } => LoadErrorKind::NoRootModule,
        LibraryError::IncompatibleVersionNumber { actual_version, .. } => {
            api_version_error(&actual_version.to_string())
        }
        LibraryError::ParseVersionError(err) => LoadErrorKind::Manifest(err.to_string()),
        LibraryError::AbiInstability(err) => LoadErrorKind::Layout(err.to_string()),
        LibraryError::InvalidAbiHeader(header) => foreign_header(&header),
        LibraryError::InvalidCAbi { found, .. } => {
            LoadErrorKind::AbiStable(format!("its C ABI does not match this host's ({found})"))
        }
        LibraryError::RootModule {
            err: RootModuleError::Unwound,
            ..
        } => LoadErrorKind::Panicked(" (building its root module)".to_string()),
        LibraryError::RootModule {
            err: RootModuleError::Returned(err),
            ..
        } => LoadErrorKind::Manifest(err.to_string()),
        LibraryError::Many(errors) => LoadErrorKind::Layout(
            errors
                .into_iter()
                .map(|e| classify(e).to_string())
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe's layout check is trusted only for the file it read and for this program's
    /// interface.
    #[test]
    fn the_probes_layout_check_is_trusted_only_for_the_same_file_and_interface() {
        let path = PathBuf::from("/nowhere/libx.so");
        let key = FileKey {
            size: 1,
            mtime_ns: 2,
            ctime_ns: 3,
            inode: 4,
            dev: 5,
        };
        let ours = Some(panther_plugin_api::abi::LAYOUT_FINGERPRINT);
        let plugin = |key| LoadedPlugin::from_manifest(path.clone(), Manifest::new("x"), key);
        assert!(plugin(Some(key)).layout_checked_as(ours).layout_checked);
        let other = ours.map(|f| f ^ 1);
        assert!(!plugin(Some(key)).layout_checked_as(other).layout_checked);
        assert!(!plugin(Some(key)).layout_checked_as(None).layout_checked);
        assert!(
            !plugin(None).layout_checked_as(ours).layout_checked,
            "no key"
        );
    }

    #[test]
    fn opening_a_file_that_changed_or_that_the_loader_refuses_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("libx.so");
        std::fs::write(&path, "not a library").unwrap();
        let key = FileKey::of(&path).unwrap();
        let manifest = Manifest::new("x");

        let refused = LoadedPlugin::from_manifest(path.clone(), manifest.clone(), Some(key));
        let Err(err) = refused.module() else {
            panic!("a text file opened")
        };
        assert_eq!(err.path, path);
        assert!(
            matches!(*err.kind, LoadErrorKind::Open(_)),
            "{err}: the loader's reason"
        );
        assert!(!refused.is_open());

        let changed = LoadedPlugin::from_manifest(
            path.clone(),
            manifest,
            Some(FileKey {
                size: key.size + 1,
                ..key
            }),
        );
        let Err(err) = changed.module() else {
            panic!("a changed file opened")
        };
        assert_eq!(
            err.to_string(),
            format!(
                "{}: it changed since its manifest was read; run the command again",
                path.display()
            )
        );
    }
}
