//! Finding the external tools plugins declare in their manifests (`strace`, `valgrind`,
//! gperftools' libraries), for `check` (a missing tool is a problem before anything starts)
//! and `doctor`.

use std::path::{Path, PathBuf};

use panther_plugin_api::Tool;

/// Where a library is looked for when a tool is a shared library (`libprofiler.so.0`).
const LIBRARY_DIRS: &[&str] = &[
    "/usr/local/lib",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/lib",
];

/// Whether a tool is a shared library rather than a program.
pub fn is_library(tool: &Tool) -> bool {
    tool.program.ends_with(".so") || tool.program.contains(".so.")
}

/// The tool's path: a library in `LD_LIBRARY_PATH` or the system library folders, a program
/// on `PATH` (or the path itself when it is absolute).
pub fn locate(tool: &Tool) -> Option<PathBuf> {
    let name = Path::new(&tool.program);
    if name.is_absolute() {
        return name.exists().then(|| name.to_path_buf());
    }
    if is_library(tool) {
        let extra = std::env::var_os("LD_LIBRARY_PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default();
        return extra
            .into_iter()
            .chain(LIBRARY_DIRS.iter().map(PathBuf::from))
            .map(|dir| dir.join(name))
            .find(|path| path.exists());
    }
    crate::experiment::find_program(&tool.program, Path::new("/"))
}

/// The problem with a missing tool, for messages.
pub fn missing(plugin: &str, tool: &Tool) -> String {
    let what = if is_library(tool) {
        "library"
    } else {
        "program"
    };
    format!(
        "plugin `{plugin}` needs the {what} `{}`, which is not installed (Debian package: {}; e.g. `apt-get install {}`)",
        tool.program, tool.package, tool.package
    )
}
