//! Finding plugin libraries and loading each one through abi_stable.
//!
//! Every file is loaded on its own and every failure is kept with its path: a broken plugin
//! never stops the others from loading. Each file is opened with
//! [`lib_header_from_path`] and initialised with `init_root_module`, because
//! `RootModule::load_from_file` caches one module per interface type for the whole process
//! and would hand back the first plugin for every file.
//!
//! Libraries are never unloaded: abi_stable leaks them on purpose (`dlclose` is unreliable
//! with thread-locals and statics). Loading a new build of a plugin means a new process.

use std::{
    fmt,
    fs::File,
    io::Read,
    path::{Path, PathBuf},
};

use abi_stable::library::{lib_header_from_path, LibraryError, RootModuleError};
use panther_plugin_api::{abi::PluginModuleRef, Manifest, API_VERSION};

/// The environment variable holding extra plugin folders, separated by `:`.
pub const PLUGIN_PATH_ENV: &str = "PANTHER_PLUGIN_PATH";

/// A plugin library that loaded and described itself.
pub struct LoadedPlugin {
    /// The file it was loaded from.
    pub path: PathBuf,
    /// What it says about itself.
    pub manifest: Manifest,
    pub(crate) module: PluginModuleRef,
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("path", &self.path)
            .field("name", &self.manifest.name)
            .field("kind", &self.manifest.kind)
            .finish()
    }
}

/// Why one file could not be used as a plugin.
#[derive(Debug, thiserror::Error)]
#[error("failed to load plugin from {}: {kind}", path.display())]
pub struct LoadError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    #[source]
    pub kind: LoadErrorKind,
}

/// The ways loading a plugin file fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadErrorKind {
    /// A plugin folder given by the user does not exist or cannot be read.
    #[error("cannot read the plugin folder: {0}")]
    Folder(String),
    /// The file is not an ELF shared object at all (e.g. a text file named `.so`).
    #[error("not a shared library (no ELF header)")]
    NotElf,
    /// The dynamic loader refused the file.
    #[error("the dynamic loader refused it: {0}")]
    Open(String),
    /// A shared library without the root module `export_plugin!` generates.
    #[error(
        "not a panther plugin: it exports no root module (was it built with `export_plugin!`?)"
    )]
    NoRootModule,
    /// Built with an `abi_stable` this host cannot talk to.
    #[error("built with an incompatible abi_stable: {0}")]
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
    /// Another file provides a plugin of the same type and name.
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

/// Where to look for plugins: the `--plugin-dir` folders, then `PANTHER_PLUGIN_PATH`, then
/// (unless `include_default` is false) the folder of the running executable, where the
/// shipped plugins sit after a `cargo build` — so adding a folder of one's own never hides
/// `localhost` or `json`.
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

/// Every `.so` file in the folders, each folder sorted by name; unreadable folders become
/// errors. A file reached twice (same folder given twice) is listed once.
pub fn discover(dirs: &[PathBuf]) -> (Vec<PathBuf>, Vec<LoadError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) => {
                errors.push(LoadError {
                    path: dir.clone(),
                    kind: LoadErrorKind::Folder(err.to_string()),
                });
                continue;
            }
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "so") && path.is_file())
            .collect();
        found.sort();
        for path in found {
            let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if seen.insert(key) {
                files.push(path);
            }
        }
    }
    (files, errors)
}

/// Loads one plugin file: checks it is an ELF library, opens it, checks the ABI and version,
/// and reads its manifest.
pub fn load(path: &Path) -> Result<LoadedPlugin, LoadError> {
    let fail = |kind| LoadError {
        path: path.to_path_buf(),
        kind,
    };
    if !has_elf_magic(path) {
        return Err(fail(LoadErrorKind::NotElf));
    }
    let header = lib_header_from_path(path).map_err(|err| fail(classify(err)))?;
    let module = header
        .init_root_module::<PluginModuleRef>()
        .map_err(|err| fail(classify(err)))?;
    let manifest = read_manifest(module).map_err(fail)?;
    Ok(LoadedPlugin {
        path: path.to_path_buf(),
        manifest,
        module,
    })
}

fn read_manifest(module: PluginModuleRef) -> Result<Manifest, LoadErrorKind> {
    let json = module.manifest()().into_result().map_err(|e| {
        let text = e.into_string();
        match text.strip_prefix("plugin panicked while describing itself") {
            Some(rest) => LoadErrorKind::Panicked(format!(" (describing itself{rest})")),
            None => LoadErrorKind::Manifest(text),
        }
    })?;
    let manifest: Manifest =
        serde_json::from_str(&json).map_err(|e| LoadErrorKind::Manifest(e.to_string()))?;
    if major(&manifest.api_version) != major(API_VERSION) {
        return Err(api_version_error(&manifest.api_version));
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

fn has_elf_magic(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
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
        LibraryError::InvalidAbiHeader(header) => LoadErrorKind::AbiStable(format!("{header:?}")),
        LibraryError::InvalidCAbi { found, .. } => LoadErrorKind::AbiStable(found.to_string()),
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
