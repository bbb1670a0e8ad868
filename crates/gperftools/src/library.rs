//! Finding the gperftools shared libraries and preloading them.
//!
//! The runtime package (`libgoogle-perftools4` on Debian) ships the versioned names only
//! (`libprofiler.so.0`, `libtcmalloc.so.4`); the unversioned ones come with the `-dev`
//! package. Both are looked for, versioned first, in `LD_LIBRARY_PATH`, the multiarch folders
//! of this machine, the usual system folders, and finally in the `ldconfig` cache.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Folders searched after `LD_LIBRARY_PATH` and the multiarch folders, in order.
const SYSTEM_DIRS: &[&str] = &["/usr/local/lib", "/usr/lib64", "/lib64", "/usr/lib", "/lib"];

/// The CPU profiler, runtime name first.
pub const PROFILER_NAMES: &[&str] = &["libprofiler.so.0", "libprofiler.so"];

/// tcmalloc with the heap profiler (not `libtcmalloc_minimal`, which has none), runtime name
/// first.
pub const TCMALLOC_NAMES: &[&str] = &["libtcmalloc.so.4", "libtcmalloc.so"];

/// The Debian package that ships both runtime libraries.
pub const DEBIAN_PACKAGE: &str = "libgoogle-perftools4";

/// The multiarch tuple of this machine, e.g. `x86_64-linux-gnu`.
pub fn multiarch_tuple() -> String {
    let arch = match std::env::consts::ARCH {
        "x86" => "i386",
        "powerpc64" if cfg!(target_endian = "little") => "powerpc64le",
        other => other,
    };
    let abi = if cfg!(target_arch = "arm") {
        "gnueabihf"
    } else {
        "gnu"
    };
    format!("{arch}-linux-{abi}")
}

/// Every folder searched, in order (`LD_LIBRARY_PATH` first).
pub fn search_dirs() -> Vec<PathBuf> {
    let tuple = multiarch_tuple();
    let from_env = std::env::var_os("LD_LIBRARY_PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    from_env
        .into_iter()
        .filter(|p| p.is_absolute())
        .chain([
            PathBuf::from("/usr/local/lib").join(&tuple),
            PathBuf::from("/usr/lib").join(&tuple),
            PathBuf::from("/lib").join(&tuple),
        ])
        .chain(SYSTEM_DIRS.iter().map(PathBuf::from))
        .collect()
}

/// The first of `names` found, trying every name in every folder before asking `ldconfig`.
pub fn find_library(names: &[&str]) -> Option<PathBuf> {
    let dirs = search_dirs();
    names
        .iter()
        .find_map(|name| {
            dirs.iter()
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
        })
        .or_else(|| names.iter().find_map(|name| ldconfig_lookup(name)))
}

/// The path `ldconfig -p` gives for a library name.
fn ldconfig_lookup(name: &str) -> Option<PathBuf> {
    let output = ["/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"]
        .iter()
        .find_map(|program| {
            std::process::Command::new(program)
                .arg("-p")
                .stderr(std::process::Stdio::null())
                .output()
                .ok()
        })?;
    parse_ldconfig(&String::from_utf8_lossy(&output.stdout), name)
}

/// Finds `name` in `ldconfig -p` output (`\tlibprofiler.so.0 (libc6,x86-64) => /path`).
fn parse_ldconfig(text: &str, name: &str) -> Option<PathBuf> {
    text.lines().find_map(|line| {
        let (left, path) = line.split_once("=>")?;
        let listed = left.split_whitespace().next()?;
        let path = PathBuf::from(path.trim());
        (listed == name && path.is_file()).then_some(path)
    })
}

/// Problems with a library path given in a configuration instead of the automatic search.
pub fn check_override(path: &Path) -> std::result::Result<(), String> {
    if !path.is_absolute() {
        return Err(format!(
            "`library` must be an absolute path (LD_PRELOAD applies in every working directory): {}",
            path.display()
        ));
    }
    if !path.is_file() {
        return Err(format!("`library` {} does not exist", path.display()));
    }
    Ok(())
}

/// The library to preload: `configured` when given (it must exist), else the first of
/// `names` found on this machine. `needed_by` (the plugin) and `what` (the library's role)
/// word the error, which names the Debian package to install.
pub fn resolve(
    configured: Option<&Path>,
    names: &[&str],
    needed_by: &str,
    what: &str,
) -> std::result::Result<PathBuf, String> {
    if let Some(path) = configured {
        check_override(path)?;
        return Ok(path.to_path_buf());
    }
    find_library(names).ok_or_else(|| {
        let searched: Vec<String> = search_dirs()
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        format!(
            "{needed_by} needs gperftools' {what} ({}), which is not installed: install the \
             Debian package {DEBIAN_PACKAGE} (`apt-get install {DEBIAN_PACKAGE}`) or set \
             `library`; searched {} and the ldconfig cache",
            names.join(" or "),
            searched.join(", ")
        )
    })
}

/// Preloads `library` for a command whose environment is `env`, after whatever the command,
/// or the host it inherits its environment from, already preloads: preloading tools stack.
pub fn preload(env: &mut std::collections::BTreeMap<String, String>, library: &Path) {
    let existing = env
        .get("LD_PRELOAD")
        .cloned()
        .or_else(|| std::env::var("LD_PRELOAD").ok());
    env.insert(
        "LD_PRELOAD".into(),
        append_preload(existing.as_deref(), library),
    );
}

/// `LD_PRELOAD` with `library` appended: what was there is kept, so preloading tools stack.
pub fn append_preload(existing: Option<&str>, library: &Path) -> String {
    let library = library.display().to_string();
    match existing.map(str::trim).filter(|s| !s.is_empty()) {
        Some(existing) => format!("{existing}:{library}"),
        None => library,
    }
}

/// Recognises one library in a process' memory map, whatever path it was loaded through
/// (`/lib` or `/usr/lib`, a symlink or the file it points to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryMatcher {
    canonical: PathBuf,
    file_name: String,
}

impl LibraryMatcher {
    /// A matcher for the library at `path`.
    pub fn new(path: &Path) -> Self {
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let file_name = canonical
            .file_name()
            .and_then(OsStr::to_str)
            .unwrap_or_default()
            .to_string();
        LibraryMatcher {
            canonical,
            file_name,
        }
    }

    /// Whether a mapped path (as `/proc/PID/maps` shows it) is this library.
    pub fn matches(&self, mapped: &str) -> bool {
        let mapped = Path::new(mapped);
        mapped == self.canonical
            || (!self.file_name.is_empty()
                && mapped.file_name().and_then(OsStr::to_str) == Some(self.file_name.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_is_appended_never_replaced() {
        let lib = Path::new("/l/libprofiler.so.0");
        assert_eq!(append_preload(None, lib), "/l/libprofiler.so.0");
        assert_eq!(append_preload(Some("  "), lib), "/l/libprofiler.so.0");
        assert_eq!(
            append_preload(Some("/l/libtcmalloc.so.4"), lib),
            "/l/libtcmalloc.so.4:/l/libprofiler.so.0"
        );
    }

    #[test]
    fn ldconfig_lines_are_matched_by_exact_name() {
        let exe = std::env::current_exe().expect("exe");
        let text = format!(
            "2 libs found in cache\n\tlibprofiler.so.0.5 (libc6,x86-64) => /nope\n\
             \tlibprofiler.so.0 (libc6,x86-64) => {}\n",
            exe.display()
        );
        assert_eq!(parse_ldconfig(&text, "libprofiler.so.0"), Some(exe));
        assert_eq!(parse_ldconfig(&text, "libprofiler.so"), None);
    }

    #[test]
    fn matcher_accepts_the_file_under_another_folder() {
        let m = LibraryMatcher::new(Path::new("/no/such/libprofiler.so.0.5.5"));
        assert!(m.matches("/no/such/libprofiler.so.0.5.5"));
        assert!(m.matches("/usr/lib/x86_64-linux-gnu/libprofiler.so.0.5.5"));
        assert!(!m.matches("/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4.5.10"));
    }

    #[test]
    fn multiarch_tuple_names_this_machine() {
        assert!(multiarch_tuple().contains("-linux-"));
    }
}
