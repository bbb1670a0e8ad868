//! Commands started inside a running container (`docker exec`), followed like containers:
//! output into capture files, exit code when they end.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::bail;
use bollard::{
    exec::{CreateExecOptions, StartExecResults},
    Docker,
};
use tokio::runtime::Handle;

use crate::{
    container::{copy_output, ExitWatch},
    engine::api_error,
};

/// A command running inside a container.
#[derive(Clone, Debug)]
pub struct Exec {
    /// The engine's id for it.
    pub id: String,
    /// Its process on the host (outside the container's pid namespace), once known.
    pub pid: Option<u32>,
    /// Its exit.
    pub exit: ExitWatch,
}

/// What to run.
#[derive(Clone, Debug, Default)]
pub struct ExecSpec {
    /// The argv, program first.
    pub argv: Vec<String>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Working directory inside the container.
    pub cwd: Option<PathBuf>,
}

/// Starts `spec` in container `container`; its output is appended to the capture files.
pub async fn start(
    docker: &Docker,
    handle: &Handle,
    container: &str,
    spec: &ExecSpec,
    stdout: &Path,
    stderr: &Path,
) -> anyhow::Result<Exec> {
    let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let options = CreateExecOptions {
        cmd: Some(spec.argv.clone()),
        env: Some(env),
        working_dir: spec.cwd.as_ref().map(|c| c.display().to_string()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        attach_stdin: Some(false),
        tty: Some(false),
        ..Default::default()
    };
    let created = docker
        .create_exec(container, options)
        .await
        .map_err(|err| {
            anyhow::anyhow!(
                "cannot prepare `{}`: {}",
                spec.argv.join(" "),
                api_error(&err)
            )
        })?;
    let id = created.id;
    let started = docker.start_exec(&id, None).await.map_err(|err| {
        anyhow::anyhow!(
            "cannot start `{}`: {}",
            spec.argv.join(" "),
            api_error(&err)
        )
    })?;
    let StartExecResults::Attached { output, input } = started else {
        bail!("the engine started `{}` detached", spec.argv.join(" "));
    };
    drop(input);
    let (tx, exit) = ExitWatch::channel();
    {
        let docker = docker.clone();
        let id = id.clone();
        let (stdout, stderr) = (stdout.to_path_buf(), stderr.to_path_buf());
        handle.spawn(async move {
            copy_output(output, &stdout, &stderr).await;
            // The stream ends when the process has; the engine may need a moment to record
            // the exit code.
            let code = loop {
                match docker.inspect_exec(&id).await {
                    Ok(info) if info.running == Some(true) => {}
                    Ok(info) => break info.exit_code.unwrap_or(-1),
                    Err(err) => {
                        tracing::debug!(exec = %id, "inspecting failed: {}", api_error(&err));
                        break -1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            let _ = tx.send(Some(code));
        });
    }
    // The pid is known once the runtime started the process.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut pid = None;
    while Instant::now() < deadline && exit.code().is_none() {
        match docker.inspect_exec(&id).await {
            Ok(info) => {
                pid = info
                    .pid
                    .filter(|&p| p > 0)
                    .and_then(|p| u32::try_from(p).ok());
                if pid.is_some() || info.running == Some(false) {
                    break;
                }
            }
            Err(err) => bail!("inspecting `{}`: {}", spec.argv.join(" "), api_error(&err)),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(Exec { id, pid, exit })
}
