//! Containers: create, start, follow, inspect, stop.

use std::{
    collections::BTreeMap,
    fs::File,
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context as _};
use bollard::{
    container::LogOutput,
    errors::Error as ApiError,
    models::{ContainerCreateBody, HealthStatusEnum},
    query_parameters::{
        CreateContainerOptionsBuilder, LogsOptionsBuilder, StopContainerOptionsBuilder,
        WaitContainerOptionsBuilder,
    },
    Docker,
};
use futures_util::{Stream, StreamExt};
use panther_plugin_api::ProcessState;
use tokio::{runtime::Handle, sync::watch};

use crate::engine::{api_error, is_conflict, is_not_found};

/// How long the output of an ended container may take to reach its capture files.
const DRAIN: Duration = Duration::from_secs(3);

/// Creates a container named `name`. The errors say what to do about a name in use (a run
/// killed earlier) and about a missing image (nothing is pulled).
pub async fn create(
    docker: &Docker,
    name: &str,
    body: ContainerCreateBody,
) -> anyhow::Result<String> {
    let image = body.image.clone().unwrap_or_default();
    let options = CreateContainerOptionsBuilder::default().name(name).build();
    match docker.create_container(Some(options), body).await {
        Ok(created) => Ok(created.id),
        Err(err) if is_conflict(&err) => bail!(
            "container name `{name}` is already in use (left by a run that was killed? \
             `panther-host clean` removes what such runs left): {}",
            api_error(&err)
        ),
        Err(err) if is_not_found(&err) => bail!(
            "cannot create container `{name}`: image `{image}` is not in the engine's local \
             store, and nothing is pulled: {}",
            api_error(&err)
        ),
        Err(err) => bail!("cannot create container `{name}`: {}", api_error(&err)),
    }
}

/// Starts a created container.
pub async fn start(docker: &Docker, id: &str, name: &str) -> anyhow::Result<()> {
    docker
        .start_container(id, None)
        .await
        .map_err(|err| anyhow::anyhow!("cannot start container `{name}`: {}", api_error(&err)))
}

/// The exit of something followed in the background (a container or an exec): `None` while
/// it runs, its exit code once it ended and its output reached the capture files.
#[derive(Clone, Debug)]
pub struct ExitWatch {
    rx: watch::Receiver<Option<i64>>,
}

impl ExitWatch {
    /// A watch and the sender that ends it.
    pub fn channel() -> (watch::Sender<Option<i64>>, ExitWatch) {
        let (tx, rx) = watch::channel(None);
        (tx, ExitWatch { rx })
    }

    /// The exit code, once it ended.
    pub fn code(&self) -> Option<i64> {
        *self.rx.borrow()
    }

    /// Waits until it ended; the exit code. `-1` when the follower itself went away.
    pub async fn wait(&self) -> i64 {
        let mut rx = self.rx.clone();
        let code = match rx.wait_for(Option::is_some).await {
            Ok(code) => code.unwrap_or(-1),
            Err(_) => -1,
        };
        code
    }

    /// Waits at most `limit`; the exit code when it ended by then.
    pub async fn wait_for(&self, limit: Duration) -> Option<i64> {
        tokio::time::timeout(limit, self.wait()).await.ok()
    }
}

/// The capture files of a service, `<dir>/<name>.stdout` and `.stderr`, created empty.
pub fn capture_files(dir: &Path, name: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stdout = dir.join(format!("{name}.stdout"));
    let stderr = dir.join(format!("{name}.stderr"));
    for path in [&stdout, &stderr] {
        File::create(path).with_context(|| format!("creating {}", path.display()))?;
    }
    Ok((stdout, stderr))
}

/// Copies a stream of output frames into the capture files, as they come.
pub async fn copy_output<S>(mut stream: S, stdout: &Path, stderr: &Path)
where
    S: Stream<Item = Result<LogOutput, ApiError>> + Unpin,
{
    let open = |path: &Path| File::options().append(true).create(true).open(path).ok();
    let (mut out, mut err) = (open(stdout), open(stderr));
    while let Some(frame) = stream.next().await {
        let (file, bytes) = match frame {
            Ok(LogOutput::StdErr { message }) => (&mut err, message),
            Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                (&mut out, message)
            }
            Ok(LogOutput::StdIn { .. }) => continue,
            Err(e) => {
                tracing::debug!("output stream ended: {}", api_error(&e));
                break;
            }
        };
        if let Some(file) = file {
            let _ = file.write_all(&bytes);
        }
    }
}

/// Follows a started container in the background: its stdout and stderr go to the capture
/// files (appended as they come), and the returned watch gets its exit code once it stopped
/// and its output was written.
pub fn follow(
    docker: &Docker,
    handle: &Handle,
    id: &str,
    stdout: PathBuf,
    stderr: PathBuf,
) -> ExitWatch {
    let (tx, watch) = ExitWatch::channel();
    let docker = docker.clone();
    let id = id.to_string();
    handle.spawn(async move {
        let logs = {
            let docker = docker.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let options = LogsOptionsBuilder::default()
                    .follow(true)
                    .stdout(true)
                    .stderr(true)
                    .build();
                let stream = docker.logs(&id, Some(options));
                copy_output(Box::pin(stream), &stdout, &stderr).await;
            })
        };
        let code = wait_exit(&docker, &id).await;
        let _ = tokio::time::timeout(DRAIN, logs).await;
        let _ = tx.send(Some(code));
    });
    watch
}

/// Waits for a container to stop; its exit code (`-1` when it is gone without one).
async fn wait_exit(docker: &Docker, id: &str) -> i64 {
    let options = WaitContainerOptionsBuilder::default()
        .condition("not-running")
        .build();
    let mut stream = Box::pin(docker.wait_container(id, Some(options)));
    match stream.next().await {
        Some(Ok(response)) => response.status_code,
        Some(Err(ApiError::DockerContainerWaitError { code, .. })) => code,
        Some(Err(err)) => {
            tracing::debug!(container = id, "waiting failed: {}", api_error(&err));
            inspect(docker, id)
                .await
                .ok()
                .and_then(|i| i.exit_code)
                .unwrap_or(-1)
        }
        None => -1,
    }
}

/// Health as the engine judges it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// No healthcheck is configured.
    None,
    /// Not judged yet.
    Starting,
    /// The last check passed.
    Healthy,
    /// Too many checks failed; the output of the last one.
    Unhealthy(String),
}

/// What a container is doing now.
#[derive(Clone, Debug)]
pub struct Inspected {
    /// Whether it runs (or restarts).
    pub running: bool,
    /// Its init process on the host, while it runs.
    pub pid: Option<u32>,
    /// Its exit code, once it stopped.
    pub exit_code: Option<i64>,
    /// Its health.
    pub health: Health,
    /// Its address on each network it is on.
    pub addresses: BTreeMap<String, String>,
}

/// Inspects a container.
pub async fn inspect(docker: &Docker, id: &str) -> anyhow::Result<Inspected> {
    let info = docker
        .inspect_container(id, None)
        .await
        .map_err(|err| anyhow::anyhow!("inspecting container {id}: {}", api_error(&err)))?;
    let state = info.state.unwrap_or_default();
    let running = state.running.unwrap_or(false) || state.restarting.unwrap_or(false);
    let health = match state.health.as_ref().and_then(|h| h.status) {
        None | Some(HealthStatusEnum::NONE) | Some(HealthStatusEnum::EMPTY) => Health::None,
        Some(HealthStatusEnum::STARTING) => Health::Starting,
        Some(HealthStatusEnum::HEALTHY) => Health::Healthy,
        Some(HealthStatusEnum::UNHEALTHY) => {
            let last = state
                .health
                .as_ref()
                .and_then(|h| h.log.as_ref())
                .and_then(|log| log.last())
                .map(|r| {
                    format!(
                        "last check exited with {}: {}",
                        r.exit_code.unwrap_or(-1),
                        r.output.as_deref().unwrap_or("").trim()
                    )
                })
                .unwrap_or_default();
            Health::Unhealthy(last)
        }
    };
    let addresses = info
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(net, endpoint)| {
            endpoint
                .ip_address
                .filter(|ip| !ip.is_empty())
                .map(|ip| (net, ip))
        })
        .collect();
    Ok(Inspected {
        running,
        pid: state
            .pid
            .filter(|&p| p > 0 && running)
            .and_then(|p| u32::try_from(p).ok()),
        exit_code: (!running
            && state
                .finished_at
                .as_deref()
                .is_some_and(|f| !f.starts_with("0001")))
        .then_some(state.exit_code.unwrap_or(0)),
        health,
        addresses,
    })
}

/// Stops a container: its stop signal (SIGTERM unless the image says otherwise), then
/// SIGKILL after `grace`. Gone already is fine.
pub async fn stop(docker: &Docker, id: &str, grace: Duration) -> anyhow::Result<()> {
    let seconds =
        i32::try_from(grace.as_secs() + u64::from(grace.subsec_nanos() > 0)).unwrap_or(i32::MAX);
    let options = StopContainerOptionsBuilder::default().t(seconds).build();
    match docker.stop_container(id, Some(options)).await {
        Ok(()) => Ok(()),
        Err(err) if is_not_found(&err) => Ok(()),
        Err(ApiError::DockerResponseServerError {
            status_code: 304, ..
        }) => Ok(()),
        Err(err) => bail!("stopping container {id}: {}", api_error(&err)),
    }
}

/// How something that ended with `code` is reported. Codes above 128 are the engine's way of
/// saying "killed by signal code − 128"; they count as a signal when the host stopped it (a
/// program may exit with such a code on its own too).
pub fn state_of(code: i64, stopped_by_host: bool) -> ProcessState {
    match code {
        129..=192 if stopped_by_host => ProcessState::Signaled {
            signal: (code - 128) as i32,
        },
        code => ProcessState::Exited {
            code: i32::try_from(code).unwrap_or(-1),
        },
    }
}
