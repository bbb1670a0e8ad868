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

/// Whether an instance's configuration names the tool's path itself (its
/// [`Tool::override_key`] is set), so that the plugin, not the host's search, answers for it.
pub fn overridden(tool: &Tool, config: &serde_json::Value) -> bool {
    tool.override_key
        .as_deref()
        .is_some_and(|key| config.get(key).is_some_and(|v| !v.is_null()))
}

/// The problem with a missing tool, for messages.
pub fn missing(plugin: &str, tool: &Tool) -> String {
    let what = if is_library(tool) {
        "library"
    } else {
        "program"
    };
    format!(
        "plugin `{plugin}` needs the {what} `{}`, which is not installed (Debian package: {}; e.g. `apt-get install {}`{})",
        tool.program,
        tool.package,
        tool.package,
        or_configure(tool)
    )
}

/// `, or set `key` in the plugin's configuration` for a tool whose path a configuration
/// may give instead (empty otherwise), for messages about a missing tool.
pub fn or_configure(tool: &Tool) -> String {
    tool.override_key
        .as_deref()
        .map(|key| format!(", or set `{key}` in the plugin's configuration"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tool(override_key: Option<&str>) -> Tool {
        let manifest = panther_plugin_api::Manifest::new("p");
        let manifest = match override_key {
            Some(key) => manifest.tool_with_override("libnothing.so.9", "nothing-pkg", key),
            None => manifest.tool("libnothing.so.9", "nothing-pkg"),
        };
        manifest.tools[0].clone()
    }

    #[test]
    fn a_configured_path_replaces_the_search_only_for_a_tool_that_allows_it() {
        let with_key = tool(Some("library"));
        assert!(overridden(
            &with_key,
            &json!({"library": "/opt/libnothing.so.9"})
        ));
        assert!(!overridden(&with_key, &json!({"library": null})));
        assert!(!overridden(&with_key, &json!({"signal": 12})));
        assert!(!overridden(
            &tool(None),
            &json!({"library": "/opt/libnothing.so.9"})
        ));
    }

    #[test]
    fn a_missing_tool_says_what_to_install_and_what_to_configure_instead() {
        assert!(locate(&tool(None)).is_none());
        let message = missing("gperf_x", &tool(Some("library")));
        assert!(
            message.contains("library `libnothing.so.9`")
                && message.contains("apt-get install nothing-pkg")
                && message.contains("or set `library` in the plugin's configuration"),
            "{message}"
        );
        assert!(!missing("gperf_x", &tool(None)).contains("or set"));
    }
}
