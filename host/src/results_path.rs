//! Paths inside the results folder.
//!
//! Reporters write where their `path` says, relative to the run's results folder. Such a path
//! may name sub-folders (`reports/result.json`), but must stay inside: absolute paths and
//! `..` are refused at `check`, and so are the host's own files there ([`RESERVED`]). [`normalise`] also gives each path one spelling, so that
//! `./result.json` and `result.json` are recognised as the same file when claims are
//! compared, and [`prepare`] creates the sub-folders before the reporter writes.

use std::path::{Component, Path, PathBuf};

/// Why a path cannot be used inside the results folder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// An absolute path would be written wherever it points.
    #[error("is absolute; it must be relative to the results folder")]
    Absolute,
    /// `..` would leave the results folder.
    #[error("contains `..`; it must stay inside the results folder")]
    Parent,
    /// Nothing is left once `.` is removed, or the path ends with `/`: it names a folder.
    #[error("names a folder, not a file")]
    NotAFile,
    /// A NUL byte cannot be part of a path.
    #[error("contains a NUL byte")]
    Nul,
    /// The host writes there itself (`events.jsonl`, `ports.json`, `services/`, `monitoring/`).
    #[error("is where the host writes `{0}`")]
    Reserved(&'static str),
}

/// What the host itself writes in a results folder; reports go elsewhere.
pub const RESERVED: [&str; 4] = ["events.jsonl", "ports.json", "services", "monitoring"];

/// The path relative to the results folder, without `.` components or repeated `/`.
pub fn normalise(path: &Path) -> Result<PathBuf, PathError> {
    let text = path.as_os_str().as_encoded_bytes();
    if text.contains(&0) {
        return Err(PathError::Nul);
    }
    if text.ends_with(b"/") {
        return Err(PathError::NotAFile);
    }
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(PathError::Parent),
            Component::RootDir | Component::Prefix(_) => return Err(PathError::Absolute),
        }
    }
    if clean.as_os_str().is_empty() {
        return Err(PathError::NotAFile);
    }
    if let Some(first) = clean.components().next() {
        if let Some(reserved) = RESERVED.iter().find(|r| first.as_os_str() == **r) {
            return Err(PathError::Reserved(reserved));
        }
    }
    Ok(clean)
}

/// Creates the folders that hold `files` (normalised, relative) inside `results`.
pub fn prepare(results: &Path, files: &[PathBuf]) -> std::io::Result<()> {
    for file in files {
        if let Some(parent) = results.join(file).parent() {
            std::fs::create_dir_all(parent)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_per_file() {
        assert_eq!(
            normalise(Path::new("./result.json")),
            Ok("result.json".into())
        );
        assert_eq!(
            normalise(Path::new("reports//./x.json")),
            Ok("reports/x.json".into())
        );
    }

    #[test]
    fn paths_that_leave_the_folder_are_refused() {
        assert_eq!(normalise(Path::new("../x")), Err(PathError::Parent));
        assert_eq!(normalise(Path::new("a/../../x")), Err(PathError::Parent));
        assert_eq!(normalise(Path::new("/x")), Err(PathError::Absolute));
        assert_eq!(normalise(Path::new(".")), Err(PathError::NotAFile));
        assert_eq!(normalise(Path::new("")), Err(PathError::NotAFile));
        assert_eq!(normalise(Path::new("reports/")), Err(PathError::NotAFile));
        assert_eq!(normalise(Path::new("a\0b")), Err(PathError::Nul));
        assert_eq!(
            normalise(Path::new("./events.jsonl")),
            Err(PathError::Reserved("events.jsonl"))
        );
        assert_eq!(
            normalise(Path::new("services/x.json")),
            Err(PathError::Reserved("services"))
        );
        assert_eq!(
            normalise(Path::new("reports/services")),
            Ok("reports/services".into())
        );
    }
}
