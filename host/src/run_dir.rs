//! A run's results folder and its run id, unique across threads and processes.
//!
//! The folder is `<root>/<experiment>/<timestamp>` created with `create_dir`, which fails
//! with `EEXIST` when another run (a thread or another process) already took the name; the
//! next candidate gets a suffix (`…Z-2`, `…Z-3`, …). A folder is never reused, even by runs
//! started within the same millisecond.
//!
//! The run id names the run to the outside (Docker objects, cgroups, the process mark): it is
//! `<experiment>-<folder>-<pid>-<n>` so that two hosts writing to different results roots at
//! the same millisecond still get different ids.

use std::{
    io::ErrorKind,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

/// Runs started by this process so far: the last part of a run id.
static RUNS: AtomicU64 = AtomicU64::new(0);

/// How many suffixes are tried before giving up (only reached when something else is wrong).
const ATTEMPTS: u32 = 10_000;

/// A freshly created results folder and the run id that goes with it.
#[derive(Debug, Clone)]
pub struct RunDir {
    /// The folder, created by this call and by no one else.
    pub path: PathBuf,
    /// The run's unique id.
    pub run_id: String,
}

/// Creates `<root>/<experiment>/<timestamp>[-n]` exclusively and derives the run id.
pub fn create(root: &Path, experiment: &str) -> std::io::Result<RunDir> {
    let path = create_unique(&root.join(experiment), "")?;
    let folder = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let run_id = format!(
        "{experiment}-{folder}-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    );
    Ok(RunDir { path, run_id })
}

/// Creates `<parent>/<prefix><timestamp>[-n]`, a folder no one else has or gets (the job
/// report's folder uses it too).
pub fn create_unique(parent: &Path, prefix: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(parent)?;
    let stamp = format!("{prefix}{}", crate::time::now_folder_name());
    let mut last = None;
    for n in 1..=ATTEMPTS {
        let folder = if n == 1 {
            stamp.clone()
        } else {
            format!("{stamp}-{n}")
        };
        let path = parent.join(&folder);
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(err) if err.kind() == ErrorKind::AlreadyExists => last = Some(err),
            Err(err) => return Err(err),
        }
    }
    Err(last.unwrap_or_else(|| ErrorKind::AlreadyExists.into()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    #[test]
    fn threads_racing_for_one_millisecond_get_distinct_folders_and_ids() {
        let root = tempfile::tempdir().unwrap();
        let made: Vec<super::RunDir> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|_| s.spawn(|| super::create(root.path(), "same").unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let paths: HashSet<_> = made.iter().map(|d| d.path.clone()).collect();
        let ids: HashSet<_> = made.iter().map(|d| d.run_id.clone()).collect();
        assert_eq!(paths.len(), 16);
        assert_eq!(ids.len(), 16);
        assert!(made.iter().all(|d| d.path.is_dir()));
    }
}
