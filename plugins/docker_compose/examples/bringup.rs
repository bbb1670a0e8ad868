//! Bring-up time of a compose project: N echo servers with healthchecks, from nothing until
//! every one is healthy, by this plugin's engine code and by the Compose tool on the same
//! file; then a table.
//!
//! ```text
//! cargo build -p panther-echo
//! cargo run -p panther-plugin-docker-compose --example bringup -- [--services 10] [--rounds 5]
//! ```
//!
//! The image is built once from the workspace's `target/debug/echo-server` and
//! `echo-client` (plus the libraries `ldd` names, on an empty image), before anything is
//! timed, and removed at the end. The Compose tool is `docker compose up -d --wait` when
//! the CLI has it, else `docker-compose up -d` followed by polling the engine for health
//! with the same code this plugin uses (`docker-compose` 1.x has no `--wait`).
//!
//! Both tools drive the same engine, so the table also splits each bring-up in two, from
//! the engine's own events (followed live): the *engine span* (from the engine's first event for the
//! project, its network being created, to its last `health_status: healthy`) and the rest,
//! which is the client's own time (starting up, reading the file, noticing the last
//! healthy). A client that asks the engine for the same work cannot be faster than its
//! engine span.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use futures_util::StreamExt;
use panther_docker::{
    bollard::{
        models::EventMessage,
        query_parameters::{EventsOptions, ListContainersOptionsBuilder},
    },
    container::{self, Health},
    image::{self, BuildSpec},
    Engine, RunLabels,
};
use panther_plugin_docker_compose::{compose, project::Project};

const IMAGE: &str = "panther-bench-echo:latest";

fn main() -> anyhow::Result<()> {
    let mut services = 10usize;
    let mut rounds = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().context("a value after the option")?;
        match arg.as_str() {
            "--services" => services = value.parse()?,
            "--rounds" => rounds = value.parse()?,
            other => bail!("unknown option {other} (--services N, --rounds N)"),
        }
    }
    let work = tempfile::tempdir()?;
    let engine = Engine::connect()?;
    let context = echo_context(work.path())?;
    engine.block_on(image::build(
        engine.docker(),
        &BuildSpec::new(&context),
        IMAGE,
        &Default::default(),
        true,
    ))?;
    let file = work.path().join("compose.yaml");
    std::fs::write(&file, compose_text(services))?;
    let compose_file = compose::load(&file, compose::Mode::Warn)
        .map_err(|p| anyhow::anyhow!("{}", p.join("\n")))?;
    let tool = ComposeTool::find()?;

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut ours_down = Vec::new();
    let mut theirs_down = Vec::new();
    let mut ours_span = Vec::new();
    let mut theirs_span = Vec::new();
    for round in 0..rounds {
        // This plugin's code: networks, then every container in dependency order (all in
        // parallel here), then until every healthcheck passed.
        let name = format!("panther-bench-{}-{round}", std::process::id());
        let labels = RunLabels::new(&name, "bringup", "bringup");
        let project = Project::from_compose(
            engine.docker(),
            engine.handle(),
            &name,
            labels,
            work.path().join("logs"),
            &compose_file,
            true,
        );
        let log = EngineLog::follow(&engine, &name);
        let started = Instant::now();
        let never = || false;
        let up = engine.block_on(async {
            project.prepare().await?;
            project.up(&project.service_names(), true, &never).await
        });
        let elapsed = started.elapsed();
        let span = log.span(&engine);
        let started = Instant::now();
        engine.block_on(project.down())?;
        ours_down.push(started.elapsed());
        up?;
        ours.push(elapsed);
        ours_span.push(span?);

        let name = format!("composebench{}x{round}", std::process::id());
        let log = EngineLog::follow(&engine, &name);
        let started = Instant::now();
        let up = tool.up(&file, &name, &engine, services);
        let elapsed = started.elapsed();
        let span = log.span(&engine);
        let started = Instant::now();
        tool.down(&file, &name)?;
        theirs_down.push(started.elapsed());
        up?;
        theirs.push(elapsed);
        theirs_span.push(span?);
        eprintln!(
            "round {}: panther {:.2}s, {} {:.2}s",
            round + 1,
            ours.last().unwrap().as_secs_f64(),
            tool.name(),
            elapsed.as_secs_f64()
        );
    }
    let _ = engine.block_on(engine.docker().remove_image(
        IMAGE,
        None::<panther_docker::bollard::query_parameters::RemoveImageOptions>,
        None,
    ));

    println!(
        "\n{services} echo servers with healthchecks (interval 200ms), {rounds} rounds, until all healthy\n"
    );
    println!(
        "| bring-up by | min | median | max | engine span (median) | outside the engine (median) | teardown (median) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut medians = Vec::new();
    for (label, up, span, down) in [
        (
            "panther docker_compose (bollard)",
            &ours,
            &ours_span,
            &ours_down,
        ),
        (tool.name(), &theirs, &theirs_span, &theirs_down),
    ] {
        let outside: Vec<Duration> = up
            .iter()
            .zip(span)
            .map(|(u, s)| u.saturating_sub(*s))
            .collect();
        let (up, span, down) = (sorted(up), sorted(span), sorted(down));
        println!(
            "| {label} | {:.2}s | {:.2}s | {:.2}s | {:.2}s | {:.2}s | {:.2}s |",
            up[0].as_secs_f64(),
            median(&up),
            up[up.len() - 1].as_secs_f64(),
            median(&span),
            median(&sorted(&outside)),
            median(&down)
        );
        medians.push((median(&up), median(&span)));
    }
    let ((ours, our_span), (theirs, their_span)) = (medians[0], medians[1]);
    println!(
        "\nratio of medians: {:.2}x; engine spans alone: {:.2}x; lower bound for a client \
         that drives the engine as this one does (our engine span / their bring-up): {:.2}x",
        ours / theirs,
        our_span / their_span,
        our_span / theirs
    );
    Ok(())
}

fn sorted(values: &[Duration]) -> Vec<Duration> {
    let mut values = values.to_vec();
    values.sort();
    values
}

fn median(sorted: &[Duration]) -> f64 {
    sorted[sorted.len() / 2].as_secs_f64()
}

/// The engine's events for one project, followed live from before its bring-up (the
/// engine keeps only its last 256 events for later queries, and every healthcheck probe
/// makes three).
struct EngineLog {
    project: String,
    events: tokio::task::JoinHandle<Vec<EventMessage>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl EngineLog {
    fn follow(engine: &Engine, project: &str) -> EngineLog {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stream = engine.docker().events(None::<EventsOptions>);
        let events = engine.handle().spawn(
            stream
                .take_until(stopped)
                .filter_map(|event| std::future::ready(event.ok()))
                .collect::<Vec<EventMessage>>(),
        );
        // The subscription must be in place before the bring-up starts.
        std::thread::sleep(Duration::from_millis(100));
        EngineLog {
            project: project.to_string(),
            events,
            stop,
        }
    }

    /// The time between the engine's first event for the project (every object's name
    /// starts with the project's name and a `-` or `_`) and its last `health_status:
    /// healthy`.
    fn span(self, engine: &Engine) -> anyhow::Result<Duration> {
        // Events reach the stream a moment after they happen.
        std::thread::sleep(Duration::from_millis(200));
        let _ = self.stop.send(());
        let events = engine.block_on(self.events)?;
        let ours = |name: &str| {
            name.strip_prefix(&self.project)
                .is_some_and(|rest| rest.starts_with(['-', '_']))
        };
        let mut first = None;
        let mut last_healthy = None;
        for event in events {
            let name = event
                .actor
                .as_ref()
                .and_then(|a| a.attributes.as_ref())
                .and_then(|a| a.get("name"))
                .cloned()
                .unwrap_or_default();
            if !ours(&name) {
                continue;
            }
            let at = event.time_nano.unwrap_or_default();
            first = Some(first.map_or(at, |f: i64| f.min(at)));
            if event.action.as_deref() == Some("health_status: healthy") {
                last_healthy = Some(last_healthy.map_or(at, |l: i64| l.max(at)));
            }
        }
        match (first, last_healthy) {
            (Some(first), Some(last)) => Ok(Duration::from_nanos((last - first).max(0) as u64)),
            _ => bail!("the engine's events show no bring-up of {}", self.project),
        }
    }
}

fn compose_text(services: usize) -> String {
    let mut text = String::from("services:\n");
    for i in 0..services {
        text.push_str(&format!(
            r#"  echo{i}:
    image: {IMAGE}
    command: ["echo-server", "--host", "0.0.0.0", "--port", "7000"]
    init: true
    healthcheck:
      test: ["CMD", "/usr/local/bin/echo-client", "127.0.0.1:7000", "ping"]
      interval: 200ms
      timeout: 2s
      retries: 50
"#
        ));
    }
    text
}

/// The echo programs, `/bin/sleep` and their libraries on an empty image.
fn echo_context(work: &Path) -> anyhow::Result<PathBuf> {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug");
    let dir = work.join("context");
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("usr/local/bin"))?;
    std::fs::create_dir_all(rootfs.join("bin"))?;
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/local/bin:/bin\n",
    )?;
    let mut binaries = vec![PathBuf::from("/bin/sleep")];
    for program in ["echo-server", "echo-client"] {
        let path = target.join(program);
        if !path.is_file() {
            bail!(
                "{} is missing: run `cargo build -p panther-echo` first",
                path.display()
            );
        }
        std::fs::copy(&path, rootfs.join("usr/local/bin").join(program))?;
        binaries.push(path);
    }
    std::fs::copy("/bin/sleep", rootfs.join("bin/sleep"))?;
    for binary in &binaries {
        let output = Command::new("ldd")
            .arg(binary)
            .output()
            .context("running ldd")?;
        for library in String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
        {
            let inside = rootfs.join(library.trim_start_matches('/'));
            std::fs::create_dir_all(inside.parent().expect("a library is in a folder"))?;
            std::fs::copy(library, &inside)?;
        }
    }
    Ok(dir)
}

/// The Compose tool to compare with.
enum ComposeTool {
    /// `docker compose` (v2): waits for health itself.
    Plugin,
    /// `docker-compose` (v1): health is polled on the engine afterwards.
    Standalone,
}

impl ComposeTool {
    fn find() -> anyhow::Result<ComposeTool> {
        let works = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if works("docker", &["compose", "version"]) {
            Ok(ComposeTool::Plugin)
        } else if works("docker-compose", &["version"]) {
            Ok(ComposeTool::Standalone)
        } else {
            bail!("neither `docker compose` nor `docker-compose` is installed")
        }
    }

    fn name(&self) -> &'static str {
        match self {
            ComposeTool::Plugin => "docker compose up -d --wait",
            ComposeTool::Standalone => "docker-compose up -d, then poll health",
        }
    }

    fn run(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut command = match self {
            ComposeTool::Plugin => {
                let mut c = Command::new("docker");
                c.arg("compose");
                c
            }
            ComposeTool::Standalone => Command::new("docker-compose"),
        };
        let output = command.args(args).output()?;
        if !output.status.success() {
            bail!("{}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(())
    }

    fn up(
        &self,
        file: &Path,
        project: &str,
        engine: &Engine,
        services: usize,
    ) -> anyhow::Result<()> {
        let file = file.to_str().expect("a UTF-8 path");
        match self {
            ComposeTool::Plugin => self.run(&["-f", file, "-p", project, "up", "-d", "--wait"]),
            ComposeTool::Standalone => {
                self.run(&["-f", file, "-p", project, "up", "-d"])?;
                wait_all_healthy(engine, project, services)
            }
        }
    }

    fn down(&self, file: &Path, project: &str) -> anyhow::Result<()> {
        let file = file.to_str().expect("a UTF-8 path");
        self.run(&["-f", file, "-p", project, "down", "-v", "-t", "3"])
    }
}

/// Polls the engine (as the plugin does, every 25 ms) until every container of a Compose
/// project is healthy.
fn wait_all_healthy(engine: &Engine, project: &str, services: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let filters = std::collections::HashMap::from([(
        "label".to_string(),
        vec![format!("com.docker.compose.project={project}")],
    )]);
    engine.block_on(async {
        let containers = engine
            .docker()
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await?;
        if containers.len() != services {
            bail!(
                "{} containers in project {project}, expected {services}",
                containers.len()
            );
        }
        for c in containers {
            let id = c.id.unwrap_or_default();
            loop {
                match container::inspect(engine.docker(), &id).await?.health {
                    Health::Healthy => break,
                    Health::Unhealthy(why) => bail!("{id} is unhealthy: {why}"),
                    _ if Instant::now() > deadline => bail!("{id} was not healthy in time"),
                    _ => tokio::time::sleep(Duration::from_millis(25)).await,
                }
            }
        }
        Ok(())
    })
}
