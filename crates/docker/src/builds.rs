//! A journal of the layers each build commits, so that `clean` can remove what a killed
//! build left half-built.
//!
//! The engine's classic builder commits an image after every step; the final image is tagged
//! and labelled, the intermediate ones are neither. A build that is cut off (the host killed
//! mid-build) leaves that unlabelled chain behind, and nothing on it says whose it is. So
//! while a build runs, every image id it commits (not the ones it takes from the cache: those
//! are older images' layers) is appended to a journal file named after the host process,
//! `<temp dir>/panther-docker-builds/<pid>.<start time>.<n>`. A build that ends (well or not)
//! removes its journal, first removing what a failed build committed. `clean` reads the
//! journals of hosts that are gone and removes those images that are still untagged and that
//! no other image builds on; a build of a live host is never touched.

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering},
};

use std::collections::HashMap;

use bollard::{
    query_parameters::{ListImagesOptionsBuilder, RemoveImageOptionsBuilder},
    Docker,
};

use crate::{engine::is_not_found, labels};

fn dir() -> PathBuf {
    std::env::temp_dir().join("panther-docker-builds")
}

/// The journal of one build in progress.
pub struct Journal {
    path: PathBuf,
    file: Option<File>,
    ids: Vec<String>,
    /// The last line was `---> Using cache`: the next id is an older image's.
    cached: bool,
}

impl Journal {
    /// Starts a journal for a build of this host process (without one if the folder cannot
    /// be written: the build goes on, untracked).
    pub fn start() -> Journal {
        static BUILDS: AtomicU64 = AtomicU64::new(0);
        let owner = labels::owner_token().replace(':', ".");
        let n = BUILDS.fetch_add(1, Ordering::Relaxed);
        let path = dir().join(format!("{owner}.{n}"));
        let file = fs::create_dir_all(dir())
            .and_then(|()| OpenOptions::new().create(true).append(true).open(&path))
            .map_err(|err| tracing::debug!("no build journal at {}: {err}", path.display()))
            .ok();
        Journal {
            path,
            file,
            ids: Vec::new(),
            cached: false,
        }
    }

    /// Reads one line of the builder's output; records the id of a step it committed.
    pub fn line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("--->") else {
            return;
        };
        let rest = rest.trim();
        if rest == "Using cache" {
            self.cached = true;
            return;
        }
        if rest.starts_with("Running in") || rest.contains(' ') || rest.is_empty() {
            return;
        }
        let cached = std::mem::replace(&mut self.cached, false);
        if cached || !rest.chars().all(|c| c.is_ascii_hexdigit()) {
            return;
        }
        self.ids.push(rest.to_string());
        if let Some(file) = &mut self.file {
            // One id per write: a journal cut off by a kill holds whole lines.
            let _ = file.write_all(format!("{rest}\n").as_bytes());
        }
    }

    /// The build succeeded: its layers belong to the tagged image now.
    pub fn finished(self) {
        let _ = fs::remove_file(&self.path);
    }

    /// The build failed: what it committed is removed now.
    pub async fn failed(self, docker: &Docker) {
        remove_unused(docker, &self.ids).await;
        let _ = fs::remove_file(&self.path);
    }
}

/// Removes every image among `ids` that is untagged, with the untagged images the same
/// build committed on top of them after its last journal line (the engine may go on for a
/// step after its client is gone), children before parents; returns what it removed. An
/// image that is tagged, or that a tagged image builds on, stays.
async fn remove_unused(docker: &Docker, ids: &[String]) -> Vec<String> {
    let mut removed = Vec::new();
    if ids.is_empty() {
        return removed;
    }
    let options = ListImagesOptionsBuilder::default().all(true).build();
    let Ok(images) = docker.list_images(Some(options)).await else {
        return removed;
    };
    let short = |id: &str| id.trim_start_matches("sha256:").to_string();
    let untagged: HashMap<String, bool> = images
        .iter()
        .map(|i| {
            let bare = i.repo_tags.iter().all(|t| t == "<none>:<none>");
            (short(&i.id), bare)
        })
        .collect();
    let mut children: HashMap<String, Vec<String>> = HashMap::new();
    for image in &images {
        if !image.parent_id.is_empty() {
            children
                .entry(short(&image.parent_id))
                .or_default()
                .push(short(&image.id));
        }
    }
    // Every recorded layer and everything above it.
    let mut found: Vec<String> = Vec::new();
    let mut stack: Vec<String> = untagged
        .keys()
        .filter(|full| ids.iter().any(|id| full.starts_with(id.as_str())))
        .cloned()
        .collect();
    while let Some(id) = stack.pop() {
        if !found.contains(&id) {
            stack.extend(children.get(&id).cloned().unwrap_or_default());
            found.push(id);
        }
    }
    found.retain(|id| untagged.get(id).copied().unwrap_or(false));
    // Children before parents: a parent refuses removal while a child is there, so each
    // pass removes the current leaves.
    for _ in 0..found.len() {
        let mut kept = Vec::new();
        for id in std::mem::take(&mut found) {
            // Not forced: an image another one still builds on (a conflict) stays.
            let options = RemoveImageOptionsBuilder::default().force(false).build();
            match docker.remove_image(&id, Some(options), None).await {
                Ok(_) => removed.push(id[..12.min(id.len())].to_string()),
                Err(err) if is_not_found(&err) => {}
                Err(err) => {
                    tracing::debug!(id, "half-built layer kept for now: {err}");
                    kept.push(id);
                }
            }
        }
        if kept.is_empty() {
            break;
        }
        found = kept;
    }
    removed
}

/// Removes the layers recorded by builds of hosts that are gone, and their journals.
pub async fn clean_stale(docker: &Docker) -> Vec<String> {
    let mut removed = Vec::new();
    for entry in fs::read_dir(dir()).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut parts = name.splitn(3, '.');
        let (Some(pid), Some(start)) = (parts.next(), parts.next()) else {
            continue;
        };
        if labels::owner_alive(&format!("{pid}:{start}")) {
            continue;
        }
        let ids: Vec<String> = fs::read_to_string(entry.path())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        for id in remove_unused(docker, &ids).await {
            removed.push(format!("half-built image layer {id}"));
        }
        let _ = fs::remove_file(entry.path());
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::Journal;

    #[test]
    fn committed_steps_are_recorded_and_cached_ones_are_not() {
        let mut journal = Journal::start();
        for line in [
            "Step 1/4 : FROM scratch",
            " ---> ",
            "Step 2/4 : COPY a /a",
            " ---> 1a2b3c4d5e6f",
            "Step 3/4 : COPY b /b",
            " ---> Using cache",
            " ---> 99aa88bb77cc",
            "Step 4/4 : CMD [\"/a\"]",
            " ---> Running in 0f0f0f0f0f0f",
            "Removing intermediate container 0f0f0f0f0f0f",
            " ---> abcdefabcdef",
            "Successfully built abcdefabcdef",
        ] {
            journal.line(line);
        }
        assert_eq!(journal.ids, ["1a2b3c4d5e6f", "abcdefabcdef"]);
        let text = std::fs::read_to_string(&journal.path).unwrap();
        assert_eq!(text, "1a2b3c4d5e6f\nabcdefabcdef\n");
        let path = journal.path.clone();
        journal.finished();
        assert!(!path.exists());
    }
}
