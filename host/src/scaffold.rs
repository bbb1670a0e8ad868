//! `panther-host new <type> <name>`: a ready-to-build plugin project of that type.
//!
//! The project depends on `panther-plugin-api` by version and, when this host was built from
//! a checkout (or `--api-path` is given), also by path, so it builds before the crate is
//! published. The path is written relative to the project, so a project and a checkout that
//! move together (a repository holding both, a copy on another machine) keep building.

use std::path::{Path, PathBuf};

use panther_plugin_api::{PluginKind, API_VERSION};

/// Why a project could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScaffoldError {
    /// The name is not a valid plugin name.
    #[error("`{0}` is not a valid plugin name: use lowercase letters, digits and `_`, starting with a letter")]
    Name(String),
    /// The folder exists already.
    #[error("{} already exists; choose another name or --path", .0.display())]
    Exists(PathBuf),
    /// `--api-path` does not hold the plugin-api crate.
    #[error("{} is not a panther-plugin-api source folder (no Cargo.toml naming the package panther-plugin-api)", .0.display())]
    ApiPath(PathBuf),
    /// Writing failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn template(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::Reporter => include_str!("scaffold/reporter.rs.txt"),
        PluginKind::ExecutionEnvironment => include_str!("scaffold/execution_environment.rs.txt"),
        PluginKind::NetworkEnvironment => include_str!("scaffold/network_environment.rs.txt"),
    }
}

/// Where this host's plugin-api source is, when it was built from a checkout.
pub fn default_api_path() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-api");
    path.join("Cargo.toml")
        .is_file()
        .then(|| path.canonicalize().unwrap_or(path))
}

/// The plugin-api folder as the project's `Cargo.toml` should name it: checked, and relative
/// to the project folder (`path` itself may be relative to the working directory, as a user
/// types it).
fn api_path_from(project: &Path, path: &Path) -> Result<PathBuf, ScaffoldError> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let api = std::fs::canonicalize(cwd.join(path))
        .map_err(|_| ScaffoldError::ApiPath(path.to_path_buf()))?;
    let manifest = std::fs::read_to_string(api.join("Cargo.toml")).unwrap_or_default();
    if !manifest.contains("name = \"panther-plugin-api\"") {
        return Err(ScaffoldError::ApiPath(path.to_path_buf()));
    }
    // The project folder does not exist yet: resolve the part that does.
    let project = cwd.join(project);
    let parent = project.parent().unwrap_or(&project);
    let parent = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf());
    let project = parent.join(project.file_name().unwrap_or_default());
    Ok(pathdiff::diff_paths(&api, &project).unwrap_or(api))
}

/// Writes the project for plugin `name` of `kind` into `dir`; returns the files written.
pub fn create(
    kind: PluginKind,
    name: &str,
    dir: &Path,
    api_path: Option<&Path>,
) -> Result<Vec<PathBuf>, ScaffoldError> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(ScaffoldError::Name(name.to_string()));
    }
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir.to_path_buf()));
    }
    let major_minor: Vec<&str> = API_VERSION.split('.').take(2).collect();
    let version = major_minor.join(".");
    let api = match api_path {
        Some(path) => format!(
            "{{ version = \"{version}\", path = \"{}\" }}",
            api_path_from(dir, path)?.display()
        ),
        None => format!("\"{version}\""),
    };
    let cargo = format!(
        r#"[package]
name = "{name}"
description = "A panther-host {kind} plugin."
version = "0.1.0"
edition = "2021"
publish = false

# A plugin is a shared library the host loads at run time.
[lib]
crate-type = ["cdylib"]

# Its own workspace, even when created inside another one.
[workspace]

[dependencies]
panther-plugin-api = {api}
serde = {{ version = "1", features = ["derive"] }}
schemars = "1"
anyhow = "1"
tracing = "0.1"
"#
    );
    let readme = format!(
        "# {name}\n\nA panther-host {kind} plugin.\n\n```sh\ncargo build\npanther-host --plugin-dir target/debug info {name}\n```\n"
    );
    let files = [
        (dir.join("Cargo.toml"), cargo),
        (
            dir.join("src/lib.rs"),
            template(kind).replace("{name}", name),
        ),
        (dir.join("README.md"), readme),
        (dir.join(".gitignore"), "/target\n".to_string()),
    ];
    let mut written = Vec::new();
    for (path, text) in files {
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(path.parent().expect("inside the project"))?;
            std::fs::write(&path, text)
        };
        write().map_err(|source| ScaffoldError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}
