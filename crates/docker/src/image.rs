//! Images: built from a local folder through the engine's build API, or taken as they are
//! from the engine's local store. Nothing is ever pulled.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _};
use bollard::{query_parameters::BuildImageOptionsBuilder, Docker};
use futures_util::StreamExt;

use crate::engine::{api_error, is_not_found};

/// Where the Dockerfile goes in the tar when it lies outside the context folder.
const OUTSIDE_DOCKERFILE: &str = ".panther.Dockerfile";

/// An image to build from a folder.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BuildSpec {
    /// The context folder (absolute).
    pub context: PathBuf,
    /// The Dockerfile, relative to the context (`Dockerfile` when absent) or absolute.
    pub dockerfile: Option<String>,
    /// `--build-arg`s.
    pub args: Vec<(String, String)>,
}

impl BuildSpec {
    /// A build of `context` with its own `Dockerfile`.
    pub fn new(context: impl Into<PathBuf>) -> Self {
        BuildSpec {
            context: context.into(),
            dockerfile: None,
            args: Vec::new(),
        }
    }

    /// The build an `image` setting (with its `dockerfile`) asks for, when it names a folder
    /// (relative to `base`); none when it names an image of the engine's store.
    pub fn of_setting(image: &str, dockerfile: Option<&str>, base: &Path) -> Option<Self> {
        as_context(image, base).map(|dir| BuildSpec {
            dockerfile: dockerfile.map(str::to_string),
            ..BuildSpec::new(dir)
        })
    }
}

/// The context folder as a tar, and the Dockerfile's name inside it.
pub fn context_tar(spec: &BuildSpec) -> anyhow::Result<(Vec<u8>, String)> {
    let context = &spec.context;
    if !context.is_dir() {
        bail!("build context {} is not a folder", context.display());
    }
    let dockerfile = spec.dockerfile.as_deref().unwrap_or("Dockerfile");
    let dockerfile_path = context.join(dockerfile);
    if !dockerfile_path.is_file() {
        bail!(
            "no Dockerfile at {} (build context {})",
            dockerfile_path.display(),
            context.display()
        );
    }
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder
        .append_dir_all(".", context)
        .with_context(|| format!("packing the build context {}", context.display()))?;
    let inside = std::fs::canonicalize(&dockerfile_path)
        .ok()
        .zip(std::fs::canonicalize(context).ok())
        .and_then(|(file, dir)| {
            file.strip_prefix(&dir)
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        });
    let name = match inside {
        Some(relative) => relative,
        None => {
            let text = std::fs::read(&dockerfile_path)
                .with_context(|| format!("reading {}", dockerfile_path.display()))?;
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, OUTSIDE_DOCKERFILE, text.as_slice())
                .context("adding the Dockerfile to the build context")?;
            OUTSIDE_DOCKERFILE.to_string()
        }
    };
    let bytes = builder
        .into_inner()
        .context("finishing the build context")?;
    Ok((bytes, name))
}

/// Builds `spec` and tags the result `tag`, with `labels` on the image. The engine's
/// output is logged at debug level; a failed build's error names the last lines of it.
///
/// With `cache`, the engine's classic builder reuses the layers of images it already has;
/// when such an image is removed while the build uses it (another run's teardown), the build
/// fails on a missing layer, and is then tried once more without the cache. An image that is
/// removed with its run gains nothing from the cache (its layers go with it) and is best
/// built without it, so that concurrent runs never share layers.
pub async fn build(
    docker: &Docker,
    spec: &BuildSpec,
    tag: &str,
    labels: &HashMap<String, String>,
    cache: bool,
) -> anyhow::Result<()> {
    let packed = {
        let spec = spec.clone();
        tokio::task::spawn_blocking(move || context_tar(&spec))
            .await
            .context("packing the build context")??
    };
    let (tar, dockerfile) = packed;
    let tar = bytes::Bytes::from(tar);
    match build_once(docker, spec, tag, labels, &dockerfile, tar.clone(), !cache).await {
        Err(Failure::CacheVanished(why)) if cache => {
            tracing::debug!(tag, "a cached layer vanished during the build ({why}); building again without the cache");
            build_once(docker, spec, tag, labels, &dockerfile, tar, true)
                .await
                .map_err(Failure::into_error)
        }
        other => other.map_err(Failure::into_error),
    }
}

enum Failure {
    CacheVanished(String),
    Other(anyhow::Error),
}

impl Failure {
    fn into_error(self) -> anyhow::Error {
        match self {
            Failure::CacheVanished(why) => anyhow::anyhow!("{why}"),
            Failure::Other(err) => err,
        }
    }
}

/// Whether a build error says that an image or layer the build relied on is gone.
fn cache_vanished(message: &str) -> bool {
    message.contains("failed to get digest")
        || message.contains("unknown parent image")
        || message.contains("No such image")
        || (message.contains("no such file or directory") && message.contains("/var/lib/docker"))
}

async fn build_once(
    docker: &Docker,
    spec: &BuildSpec,
    tag: &str,
    labels: &HashMap<String, String>,
    dockerfile: &str,
    tar: bytes::Bytes,
    nocache: bool,
) -> Result<(), Failure> {
    let args: HashMap<String, String> = spec.args.iter().cloned().collect();
    let options = BuildImageOptionsBuilder::default()
        .dockerfile(dockerfile)
        .t(tag)
        .rm(true)
        .forcerm(true)
        .nocache(nocache)
        .labels(labels)
        .buildargs(&args)
        .build();
    tracing::debug!(tag, context = %spec.context.display(), bytes = tar.len(), nocache, "building an image");
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(tar)));
    let mut lines: Vec<String> = Vec::new();
    let failed = |message: String| {
        let what = format!("building image `{tag}` from {}", spec.context.display());
        if cache_vanished(&message) {
            Failure::CacheVanished(format!("{what}: {message}"))
        } else {
            Failure::Other(anyhow::anyhow!("{what}: {message}"))
        }
    };
    let mut journal = crate::builds::Journal::start();
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(info) => info,
            Err(err) => {
                journal.failed(docker).await;
                return Err(failed(api_error(&err)));
            }
        };
        if let Some(text) = info.stream.as_deref() {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                tracing::debug!(tag, "{line}");
                journal.line(line);
                lines.push(line.to_string());
            }
        }
        if let Some(detail) = info.error_detail {
            let message = detail.message.unwrap_or_else(|| "unknown error".into());
            let tail = lines[lines.len().saturating_sub(5)..].join("\n  ");
            journal.failed(docker).await;
            return Err(failed(format!("failed: {message}\n  {tail}")));
        }
    }
    journal.finished();
    Ok(())
}

/// Whether the engine has an image of this name locally.
pub async fn exists(docker: &Docker, name: &str) -> anyhow::Result<bool> {
    match docker.inspect_image(name).await {
        Ok(_) => Ok(true),
        Err(err) if is_not_found(&err) => Ok(false),
        Err(err) => bail!("looking up image `{name}`: {}", api_error(&err)),
    }
}

/// Fails unless the engine has the image: nothing is pulled.
pub async fn require(docker: &Docker, name: &str) -> anyhow::Result<()> {
    if exists(docker, name).await? {
        Ok(())
    } else {
        bail!(
            "image `{name}` is not in the engine's local store, and nothing is pulled: build it \
             first, or give a build context folder instead"
        )
    }
}

/// Whether `image` in a configuration names a build context folder (relative to `base`) rather
/// than an image: it does when that folder exists.
pub fn as_context(image: &str, base: &Path) -> Option<PathBuf> {
    let path = base.join(image);
    path.is_dir().then_some(path)
}

/// Whether `image` is written like a path (`./x`, `../x`, `/x`), so that a missing folder is
/// a mistake rather than an image name.
pub fn looks_like_path(image: &str) -> bool {
    image.starts_with("./") || image.starts_with("../") || image.starts_with('/') || image == "."
}

/// Problems with an `image` setting (and its `dockerfile`) that can be seen without the
/// engine: a folder without its Dockerfile, a path to no folder, a Dockerfile for an image
/// name. Both container network environments read the setting alike.
pub fn check_setting(image: &str, dockerfile: Option<&str>, base: &Path) -> Vec<String> {
    match as_context(image, base) {
        Some(dir) => {
            let file = dir.join(dockerfile.unwrap_or("Dockerfile"));
            if file.is_file() {
                Vec::new()
            } else {
                vec![format!(
                    "`image` is the folder {}, which has no {}",
                    dir.display(),
                    dockerfile.unwrap_or("Dockerfile")
                )]
            }
        }
        None if looks_like_path(image) => vec![format!(
            "`image` `{image}` looks like a folder, but {} does not exist",
            base.join(image).display()
        )],
        None if dockerfile.is_some() => {
            vec!["`dockerfile` applies only when `image` is a folder".to_string()]
        }
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(tar: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn the_context_is_packed_with_the_dockerfile_inside_or_added() {
        let dir = tempfile_dir();
        std::fs::write(dir.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join("bin/x"), "x").unwrap();
        let (tar, name) = context_tar(&BuildSpec::new(&dir)).unwrap();
        assert_eq!(name, "Dockerfile");
        let names = entries(&tar);
        assert!(names.iter().any(|n| n.ends_with("bin/x")), "{names:?}");

        let outside = dir.with_extension("Dockerfile");
        std::fs::write(&outside, "FROM scratch\n").unwrap();
        let spec = BuildSpec {
            dockerfile: Some(outside.display().to_string()),
            ..BuildSpec::new(&dir)
        };
        let (tar, name) = context_tar(&spec).unwrap();
        assert_eq!(name, OUTSIDE_DOCKERFILE);
        assert!(entries(&tar).contains(&OUTSIDE_DOCKERFILE.to_string()));
        std::fs::remove_file(outside).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_missing_dockerfile_is_named() {
        let dir = tempfile_dir();
        let err = context_tar(&BuildSpec::new(&dir)).unwrap_err().to_string();
        assert!(err.contains("no Dockerfile at"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "panther-docker-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
