//! The connection to the engine and the runtime its calls run on.

use std::{future::Future, time::Duration};

use anyhow::Context as _;
use bollard::{errors::Error as ApiError, Docker};
use tokio::runtime::{Handle, Runtime};

/// How long connecting (and agreeing on an API version) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A Docker engine and the runtime that talks to it. Create one per plugin instance, from a
/// plain thread, and drop it from a plain thread.
pub struct Engine {
    runtime: Runtime,
    docker: Docker,
}

impl Engine {
    /// Connects to the engine `DOCKER_HOST` names (the local socket when unset) and agrees on
    /// an API version with it. Fails with a message that says which engine was tried.
    pub fn connect() -> anyhow::Result<Engine> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("panther-docker")
            .enable_all()
            .build()
            .context("starting the runtime for the Docker engine")?;
        let docker = runtime.block_on(async {
            let docker = Docker::connect_with_local_defaults()?;
            match tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()).await {
                Ok(result) => result,
                Err(_) => Err(ApiError::RequestTimeoutError),
            }
        });
        let docker = docker.map_err(|err| {
            anyhow::anyhow!(
                "cannot reach the Docker engine at {}: {} (is dockerd running, and may this \
                 user use it? DOCKER_HOST selects another engine)",
                engine_address(),
                api_error(&err)
            )
        })?;
        Ok(Engine { runtime, docker })
    }

    /// The client; cheap to clone.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// A handle for spawning background tasks (log followers, exit watchers).
    pub fn handle(&self) -> Handle {
        self.runtime.handle().clone()
    }

    /// Runs a future to completion on the engine's runtime. Call from a plain thread.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}

/// The engine the client talks to, for messages.
pub fn engine_address() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string())
}

/// An engine error as one line: the engine's own message when it sent one.
pub fn api_error(err: &ApiError) -> String {
    match err {
        ApiError::DockerResponseServerError {
            status_code,
            message,
        } => format!("{} (HTTP {status_code})", message.trim()),
        ApiError::DockerContainerWaitError { error, code } => {
            format!("exited with code {code} {error}")
                .trim()
                .to_string()
        }
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

/// Whether the engine answered "no such object".
pub fn is_not_found(err: &ApiError) -> bool {
    matches!(
        err,
        ApiError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Whether the engine answered "conflict" (a name in use, an object in use).
pub fn is_conflict(err: &ApiError) -> bool {
    matches!(
        err,
        ApiError::DockerResponseServerError {
            status_code: 409,
            ..
        }
    )
}
