//! The container network environments (`docker_compose`, `localhost_single_container`) on this
//! machine's Docker engine. The engine must be reachable: these tests fail, saying so, when it
//! is not. Images are built from the workspace's echo programs (nothing is pulled), and every
//! container, network, volume and image a test makes is gone when it ends; each test checks
//! that through the engine itself (`docker … --filter label=…`).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use crate::support::*;

/// Runs the `docker` CLI (the tests look at the engine with it; the plugins never run it).
pub(crate) fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `docker {}`: {e}", args.join(" ")));
    assert!(
        output.status.success(),
        "`docker {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Fails the test, loudly, when the engine cannot be reached.
pub(crate) fn require_engine() {
    let output = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    match output {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "THE DOCKER ENGINE IS UNREACHABLE: these tests need a running Docker engine \
             (`docker version` said: {})",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("THE DOCKER ENGINE IS UNREACHABLE: cannot run `docker version`: {e}"),
    }
}

/// A build context holding the echo programs, `/bin/sleep` and the libraries `ldd` names for
/// them, plus `tests/fixtures/docker/echo/Dockerfile`: an image `FROM scratch` that needs no
/// registry. Assembled once per test process under `target/docker-fixtures/`.
pub(crate) fn echo_context() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let parent = root().join("target/docker-fixtures");
        // Contexts of test processes that are gone.
        for entry in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name
                .strip_prefix("echo-")
                .and_then(|p| p.parse::<u32>().ok())
            {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = parent.join(format!("echo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(rootfs.join("usr/local/bin")).unwrap();
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::copy(
            root().join("tests/fixtures/docker/echo/Dockerfile"),
            dir.join("Dockerfile"),
        )
        .unwrap();
        let programs = [program("echo-server"), program("echo-client")];
        for program in &programs {
            let name = Path::new(program).file_name().unwrap();
            std::fs::copy(program, rootfs.join("usr/local/bin").join(name)).unwrap();
        }
        std::fs::copy("/bin/sleep", rootfs.join("bin/sleep")).unwrap();
        let binaries = programs.iter().map(String::as_str).chain(["/bin/sleep"]);
        copy_linked_libraries(&rootfs, binaries);
        dir
    })
}

/// An image tag for one test, removed from the engine when dropped.
struct ImageTag(String);

impl ImageTag {
    fn new(test: &str) -> ImageTag {
        ImageTag(format!("panther-test-echo:{test}-{}", std::process::id()))
    }
}

impl Drop for ImageTag {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "--force", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Every container, network, volume and image the engine has with this label.
fn labelled(label: &str) -> Vec<String> {
    let filter = format!("label={label}");
    let mut found = Vec::new();
    for (kind, args) in [
        (
            "container",
            vec!["ps", "--all", "--quiet", "--filter", &filter],
        ),
        (
            "network",
            vec!["network", "ls", "--quiet", "--filter", &filter],
        ),
        (
            "volume",
            vec!["volume", "ls", "--quiet", "--filter", &filter],
        ),
        ("image", vec!["images", "--quiet", "--filter", &filter]),
    ] {
        found.extend(
            docker(&args)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|id| format!("{kind} {id}")),
        );
    }
    found
}

/// Removes whatever a run left when dropped, so that a failing test leaves nothing either.
pub(crate) struct RemoveLeftovers(pub(crate) String);

impl Drop for RemoveLeftovers {
    fn drop(&mut self) {
        let filter = format!("label=panther.run={}", self.0);
        for (list, remove) in [
            (
                vec!["ps", "--all", "--quiet"],
                vec!["rm", "--force", "--volumes"],
            ),
            (vec!["network", "ls", "--quiet"], vec!["network", "rm"]),
            (
                vec!["volume", "ls", "--quiet"],
                vec!["volume", "rm", "--force"],
            ),
            (vec!["images", "--quiet"], vec!["rmi", "--force"]),
        ] {
            let Ok(found) = Command::new("docker")
                .args(&list)
                .args(["--filter", &filter])
                .output()
            else {
                continue;
            };
            let ids: Vec<String> = String::from_utf8_lossy(&found.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .args(&remove)
                    .args(&ids)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

pub(crate) fn assert_nothing_left(run_id: &str) {
    let left = labelled(&format!("panther.run={run_id}"));
    assert!(left.is_empty(), "run {run_id} left {left:?}");
}

pub(crate) fn run_id(run: &Path) -> String {
    events(run)
        .iter()
        .find(|e| e["event"] == "experiment_started")
        .and_then(|e| e["run_id"].as_str())
        .expect("an experiment_started event")
        .to_string()
}

/// A compose file: an echo server with a healthcheck (the echo client, run inside it: the
/// image has no shell), a client that waits for it to be healthy, and a service the
/// experiment does not name (started before the experiment's), on a network of the file,
/// with an anonymous and a named volume.
///
/// The Dockerfile is the fixture's with a label of the test's own, kept outside the context:
/// tests build at once and remove their images when they end, and the label keeps their
/// images from sharing layers.
fn compose_file(sandbox: &Sandbox, image: &str) -> String {
    let fixture =
        std::fs::read_to_string(root().join("tests/fixtures/docker/echo/Dockerfile")).unwrap();
    let dockerfile = sandbox.write(
        "echo.Dockerfile",
        &fixture.replacen(
            "FROM scratch\n",
            &format!("FROM scratch\nLABEL panther.test=\"{image}\"\n"),
            1,
        ),
    );
    format!(
        r#"services:
  server:
    build:
      context: {context}
      dockerfile: {dockerfile}
    image: {image}
    networks: [back]
    volumes: ["/data"]
    healthcheck:
      test: ["CMD", "/usr/local/bin/echo-client", "127.0.0.1:7000", "ping"]
      interval: 200ms
      timeout: 2s
      retries: 50
  extra:
    image: {image}
    command: ["echo-server", "--host", "0.0.0.0", "--port", "7100"]
    networks: [back]
  client:
    image: {image}
    networks: [back]
    volumes: ["scratch:/scratch"]
    depends_on:
      server: {{ condition: service_healthy }}
networks:
  back:
volumes:
  scratch:
"#,
        context = echo_context().display(),
        dockerfile = dockerfile.display(),
    )
}

/// An experiment on `compose.yaml`: the server, then the client whose exit code is the
/// result. No `ready` for the server: the client waits for its healthcheck.
fn compose_experiment(name: &str, server: &str, client: &str) -> String {
    experiment(
        name,
        "plugin = \"docker_compose\"\ncompose_file = \"compose.yaml\"",
        server,
        "",
        client,
    )
}

fn experiment(name: &str, network: &str, server: &str, server_extra: &str, client: &str) -> String {
    format!(
        r#"[experiment]
name = "{name}"
timeout = "60s"

[network]
{network}

[[service]]
name = "server"
command = [{server}]
{server_extra}

[[service]]
name = "client"
command = [{client}]
depends_on = ["server"]
role = "client"

[[report]]
plugin = "json"
path = "result.json"
"#
    )
}

const SERVER: &str = r#""echo-server", "--host", "0.0.0.0", "--port", "7000""#;

/// How long containers may take to come up before a test gives up on them.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn a_compose_experiment_passes_on_the_clients_exit_code_and_leaves_nothing() {
    require_engine();
    let sandbox = Sandbox::new();
    let image = ImageTag::new("compose");
    sandbox.write("compose.yaml", &compose_file(&sandbox, &image.0));
    let client = r#""echo-client", "server:7000", "hello", "panther", "--count", "3""#;
    let file = sandbox.write(
        "e.toml",
        &compose_experiment("compose-echo", SERVER, client),
    );

    let output = sandbox.host(&["run", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let run = sandbox.results("compose-echo");
    let _cleanup = RemoveLeftovers(run_id(&run));
    let result = result_of(&run);
    assert_eq!(result["status"], "passed");
    assert_eq!(result["network"], "docker_compose");
    assert_eq!(
        result["services"][1]["state"],
        serde_json::json!({ "state": "exited", "code": 0 })
    );
    let server_out = std::fs::read_to_string(run.join("services/server.stdout")).unwrap();
    assert!(
        server_out.starts_with("listening on 0.0.0.0:7000"),
        "{server_out}"
    );
    let client_out = std::fs::read_to_string(run.join("services/client.stdout")).unwrap();
    assert_eq!(
        client_out
            .lines()
            .filter(|l| *l == "echoed \"panther\"")
            .count(),
        3,
        "{client_out}"
    );
    let extra_out = std::fs::read_to_string(run.join("services/extra.stdout")).unwrap();
    assert!(
        extra_out.starts_with("listening on 0.0.0.0:7100"),
        "{extra_out}"
    );
    assert_eq!(
        result["services"].as_array().unwrap().len(),
        2,
        "only the experiment's services are judged"
    );
    let pids = deployed_pids(&run);
    assert!(!pids.is_empty(), "the server's container init pid is given");
    assert!(pids.iter().all(|&p| !alive(p)), "{pids:?} still alive");
    assert_nothing_left(&run_id(&run));
}

#[test]
fn without_a_compose_file_the_experiments_services_run_from_one_image_and_a_failing_client_fails() {
    require_engine();
    let sandbox = Sandbox::new();
    // The image is a build context folder: built for the run, removed with it.
    let network = format!(
        "plugin = \"docker_compose\"\nimage = \"{}\"",
        echo_context().display()
    );
    // `ready.tcp` on 127.0.0.1 means the server's own container.
    let ready = "ready = { tcp = 7000, timeout = \"10s\" }";
    // Nothing listens on 7001: the client exits 1.
    let client = r#""echo-client", "server:7001""#;
    let file = sandbox.write(
        "e.toml",
        &experiment("generated", &network, SERVER, ready, client),
    );

    let output = sandbox.host(&["run", file.to_str().unwrap()]);
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let run = sandbox.results("generated");
    let _cleanup = RemoveLeftovers(run_id(&run));
    let result = result_of(&run);
    assert_eq!(result["status"], "failed");
    assert_eq!(result["services"][0]["passed"], true);
    assert_eq!(
        result["services"][1]["message"],
        "exited with code 1, expected 0"
    );
    let client_err = std::fs::read_to_string(run.join("services/client.stderr")).unwrap();
    assert!(
        client_err.contains("cannot connect to server:7001"),
        "{client_err}"
    );
    assert!(
        events(&run)
            .iter()
            .any(|e| e["event"] == "service_ready" && e["service"] == "server"),
        "the server's readiness was checked"
    );
    assert_nothing_left(&run_id(&run));
}

#[test]
fn ctrl_c_during_a_compose_run_leaves_nothing() {
    require_engine();
    let sandbox = Sandbox::new();
    let image = ImageTag::new("interrupted");
    sandbox.write("compose.yaml", &compose_file(&sandbox, &image.0));
    let client = r#""echo-client", "server:7000", "hello", "--count", "1000000000""#;
    let file = sandbox.write(
        "e.toml",
        &compose_experiment("compose-interrupted", SERVER, client),
    );
    let mut host = sandbox
        .host_command(&["run", file.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let run = wait_for_deployments(
        &sandbox.path().join("results/compose-interrupted"),
        2,
        DEPLOY_TIMEOUT,
    );
    let id = run_id(&run);
    let _cleanup = RemoveLeftovers(id.clone());
    let running = labelled(&format!("panther.run={id}"));
    assert_eq!(
        running
            .iter()
            .filter(|r| r.starts_with("container"))
            .count(),
        3,
        "every container carries the run's label: {running:?}"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(host.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = host.wait().unwrap();
    assert_eq!(status.code(), Some(130), "the interrupted exit code");
    assert_eq!(result_of(&run)["status"], "interrupted");
    let pids = deployed_pids(&run);
    assert!(pids.iter().all(|&p| !alive(p)), "{pids:?} still alive");
    assert_nothing_left(&id);
}

#[test]
fn a_server_that_crashes_before_it_is_healthy_fails_the_run_and_leaves_nothing() {
    require_engine();
    let sandbox = Sandbox::new();
    let image = ImageTag::new("crash");
    sandbox.write("compose.yaml", &compose_file(&sandbox, &image.0));
    let server = r#""echo-server", "--port", "not-a-port""#;
    let client = r#""echo-client", "server:7000""#;
    let file = sandbox.write(
        "e.toml",
        &compose_experiment("compose-crash", server, client),
    );

    let started = Instant::now();
    let output = sandbox.host(&["run", file.to_str().unwrap()]);
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains("service `server` exited with code 2 before it was ready"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "noticed the exit without waiting for the healthcheck's retries"
    );
    let run = sandbox.results("compose-crash");
    let _cleanup = RemoveLeftovers(run_id(&run));
    let result = result_of(&run);
    assert_eq!(result["status"], "failed");
    assert_eq!(result["services"][1]["message"], "never started");
    let server_err = std::fs::read_to_string(run.join("services/server.stderr")).unwrap();
    assert!(server_err.contains("usage: echo-server"), "{server_err}");
    assert_nothing_left(&run_id(&run));
}

#[test]
fn compose_keys_that_change_what_runs_and_unknown_dependencies_are_refused_at_check_without_the_engine(
) {
    let sandbox = Sandbox::new();
    let compose = sandbox.write(
        "compose.yaml",
        r#"services:
  server:
    image: anything
    privileged: true
    healthcheck:
      test: ["CMD", "true"]
      start_interval: 1s
  client:
    image: anything
    depends_on:
      sever: { condition: service_healthy }
secrets:
  token:
    file: ./token
"#,
    );
    let file = sandbox.write(
        "e.toml",
        &compose_experiment("bad-compose", SERVER, r#""echo-client", "server:7000""#),
    );
    // An engine that does not exist: `check` must not need one.
    let no_engine = format!("unix://{}", sandbox.path().join("no-docker.sock").display());
    let output = sandbox
        .host_command(&["check", file.to_str().unwrap()])
        .env("DOCKER_HOST", &no_engine)
        .output()
        .unwrap();
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    let err = stderr(&output);
    let compose = compose.display().to_string();
    for needle in [
        format!("{compose}:4:5: service `server`: `privileged` is not supported and cannot be ignored: it changes what a service may do"),
        format!(
            "{compose}: service `client` depends on `sever`, which is not a service of this file (did you mean `server`?)"
        ),
    ] {
        assert!(err.contains(&needle), "`{needle}` missing in:\n{err}");
    }
    assert!(
        !err.contains("Docker engine"),
        "the engine was not asked: {err}"
    );
    assert!(!sandbox.path().join("results").exists(), "nothing ran");

    // The same experiment with a good file passes `check`, still without an engine.
    sandbox.write("compose.yaml", &compose_file(&sandbox, "some-image:1"));
    let output = sandbox
        .host_command(&["check", file.to_str().unwrap()])
        .env("DOCKER_HOST", &no_engine)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));

    // Both plugins say what their configuration lacks.
    let file = sandbox.write(
        "lacking.toml",
        "[experiment]\nname = \"lacking\"\n[network]\nplugin = \"localhost_single_container\"\n\
         [[service]]\nname = \"s\"\ncommand = [\"x\"]\n",
    );
    let output = sandbox.host(&["check", file.to_str().unwrap()]);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("`image` is needed"),
        "{}",
        stderr(&output)
    );
    let file = sandbox.write(
        "lacking2.toml",
        "[experiment]\nname = \"lacking\"\n[network]\nplugin = \"docker_compose\"\n\
         [[service]]\nname = \"s\"\ncommand = [\"x\"]\n",
    );
    let output = sandbox.host(&["check", file.to_str().unwrap()]);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("`image` is needed when there is no `compose_file`"),
        "{}",
        stderr(&output)
    );
}

/// Runs `check` on `file` with an engine that does not exist: `check` needs none.
fn check_without_engine(sandbox: &Sandbox, file: &Path) -> std::process::Output {
    let no_engine = format!("unix://{}", sandbox.path().join("no-docker.sock").display());
    sandbox
        .host_command(&["check", file.to_str().unwrap()])
        .env("DOCKER_HOST", &no_engine)
        .env_remove("PANTHER_TEST_UNSET")
        .output()
        .unwrap()
}

/// The line (from 1) of the first line of `text` that starts with `start`.
fn line_of(text: &str, start: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starts with `{start}` in:\n{text}"))
        + 1
}

/// A file with problems shows its warnings too, so that one pass fixes it.
#[test]
fn the_warnings_of_a_refused_compose_file_are_shown_with_its_problems() {
    let sandbox = Sandbox::new();
    let text = r#"services:
  server:
    image: echo
    labels: { role: server }
    user: root
  client:
    image: echo
"#;
    let compose = sandbox.write("compose.yaml", text).display().to_string();
    let file = sandbox.write(
        "e.toml",
        &compose_experiment("refused-compose", SERVER, r#""echo-client", "server:7000""#),
    );
    let output = check_without_engine(&sandbox, &file);
    let err = stderr(&output);
    assert_eq!(code(&output), 2, "`user` is refused: {err}");
    let problem = err
        .lines()
        .find(|l| l.contains(&format!("{compose}:5:5: service `server`: `user`")))
        .unwrap_or_else(|| panic!("the refused key with its line and column:\n{err}"));
    assert!(!problem.trim_start().starts_with("warning: "), "{problem}");
    let warning = format!(
        "(docker_compose): {compose}:4:5: service `server`: `labels` is not supported and is ignored"
    );
    assert!(
        err.lines()
            .any(|l| l.trim_start().starts_with("warning: ") && l.contains(&warning)),
        "`{warning}` missing in:\n{err}"
    );
}

#[test]
fn compose_keys_that_change_nothing_are_warnings_at_check_and_strict_refuses_them() {
    let sandbox = Sandbox::new();
    let text = r#"x-defaults: &defaults
  logging: { driver: json-file }
  restart: "no"
services:
  server:
    <<: *defaults
    image: "echo:${PANTHER_TEST_UNSET}"
    labels: { role: server }
    frobnicate: true
    command: ["echo-server", "--port", "$${NOT_A_VARIABLE}"]
    healthcheck:
      test: ["CMD", "true"]
      start_interval: 1s
  client:
    image: anything
    depends_on:
      server: { condition: service_healthy, required: true }
secrets:
  token: { file: ./token }
"#;
    let compose = sandbox.write("compose.yaml", text).display().to_string();
    let file = sandbox.write(
        "e.toml",
        &compose_experiment("warned-compose", SERVER, r#""echo-client", "server:7000""#),
    );
    let output = check_without_engine(&sandbox, &file);
    let err = stderr(&output);
    assert_eq!(code(&output), 0, "warnings do not refuse the file: {err}");
    assert!(
        stdout(&output).contains("ok (2 services"),
        "{}",
        stdout(&output)
    );
    for needle in [
        // Merged from the anchor: where the anchor wrote it.
        format!("{compose}:2:3: service `server`: `logging` is not supported and is ignored: each service's stdout and stderr are captured"),
        format!("{compose}:7:12: service `server`: `image`: variable `PANTHER_TEST_UNSET` is not set (in the environment or `.env`): replaced by an empty string"),
        format!("{compose}:8:5: service `server`: `labels` is not supported and is ignored: metadata"),
        format!("{compose}:9:5: service `server`: `frobnicate` is not a compose key and is ignored"),
        format!("{compose}:13:7: service `server`: `healthcheck.start_interval` is not supported and is ignored"),
        format!("{compose}:17:45: service `client`: `depends_on.server.required` is not supported and is ignored"),
        format!("{compose}:18:1: `secrets` is not supported and is ignored"),
    ] {
        let line = err
            .lines()
            .find(|l| l.contains(&needle))
            .unwrap_or_else(|| panic!("`{needle}` missing in:\n{err}"));
        assert!(
            line.starts_with("warning: ") && line.contains("`docker_compose` (docker_compose): "),
            "a warning naming the plugin: {line}"
        );
    }
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("warning: ") && l.contains("(docker_compose): "))
            .count(),
        7,
        "{err}"
    );
    assert!(
        !err.contains("NOT_A_VARIABLE"),
        "`$$` is a literal `$`: {err}"
    );

    // With `strict = true` the same file is refused, each key with its line and column.
    let strict = sandbox.write(
        "strict.toml",
        &experiment(
            "strict-compose",
            "plugin = \"docker_compose\"\ncompose_file = \"compose.yaml\"\nstrict = true",
            SERVER,
            "",
            r#""echo-client", "server:7000""#,
        ),
    );
    let output = check_without_engine(&sandbox, &strict);
    let err = stderr(&output);
    assert_eq!(code(&output), 2, "{err}");
    for needle in [
        format!("{compose}:2:3: service `server`: `logging` is not supported (refused with `strict = true`"),
        format!("{compose}:8:5: service `server`: `labels` is not supported (refused with `strict = true`"),
        format!("{compose}:9:5: service `server`: `frobnicate` is not a compose key (refused with `strict = true`"),
        format!("{compose}:18:1: `secrets` is not supported (refused with `strict = true`"),
    ] {
        assert!(err.contains(&needle), "`{needle}` missing in:\n{err}");
    }
    assert!(!sandbox.path().join("results").exists(), "nothing ran");
}

#[test]
fn a_required_compose_variable_that_is_not_set_is_refused_at_check_with_its_line_and_column() {
    let sandbox = Sandbox::new();
    let text = "services:\n  server:\n    image: anything\n    environment:\n      TOKEN: \"${PANTHER_TEST_UNSET:?export PANTHER_TEST_UNSET=the test token}\"\n  client:\n    image: \"${PANTHER_TEST_UNSET:-${ALSO_UNSET:-anything}}\"\n";
    let compose = sandbox.write("compose.yaml", text).display().to_string();
    let file = sandbox.write(
        "e.toml",
        &compose_experiment(
            "required-variable",
            SERVER,
            r#""echo-client", "server:7000""#,
        ),
    );
    let output = check_without_engine(&sandbox, &file);
    let err = stderr(&output);
    assert_eq!(code(&output), 2, "{err}");
    let needle = format!(
        "{compose}:5:14: service `server`: `environment.TOKEN`: required variable `PANTHER_TEST_UNSET` is not set: export PANTHER_TEST_UNSET=the test token"
    );
    assert!(err.contains(&needle), "`{needle}` missing in:\n{err}");
    assert!(
        !err.contains("ALSO_UNSET"),
        "a nested default is no warning: {err}"
    );

    // From `.env` beside the compose file, the same file passes.
    sandbox.write(".env", "PANTHER_TEST_UNSET=from-dotenv\n");
    let output = check_without_engine(&sandbox, &file);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        !stderr(&output).contains("(docker_compose): "),
        "no warning: {}",
        stderr(&output)
    );
}

#[test]
fn a_compose_file_written_as_people_write_them_runs_with_its_warnings() {
    require_engine();
    let sandbox = Sandbox::new();
    let image = ImageTag::new("compose-as-written");
    // The image's name from `.env`, the client's network from an extension field merged in,
    // a port from a default, and keys that are warned about and left out.
    let text = compose_file(&sandbox, &image.0)
        .replace(&format!("image: {}", image.0), "image: ${ECHO_IMAGE}")
        .replace(
            "\"--port\", \"7100\"]",
            "\"--port\", \"${EXTRA_PORT:-7100}\"]\n    labels: [panther.role=extra]",
        )
        .replace(
            "  client:\n    image: ${ECHO_IMAGE}\n    networks: [back]\n",
            "  client:\n    <<: *client-defaults\n    image: ${ECHO_IMAGE}\n",
        );
    let text = format!(
        "x-client-defaults: &client-defaults\n  networks: [back]\n  logging: {{ driver: none }}\n{text}"
    );
    let compose = sandbox.write("compose.yaml", &text).display().to_string();
    sandbox.write(".env", &format!("ECHO_IMAGE={}\n", image.0));
    let client = r#""echo-client", "server:7000", "hello", "panther""#;
    let file = sandbox.write(
        "e.toml",
        &compose_experiment("compose-as-written", SERVER, client),
    );

    let output = sandbox
        .host_command(&["run", file.to_str().unwrap()])
        .env_remove("EXTRA_PORT")
        .env_remove("ECHO_IMAGE")
        .output()
        .unwrap();
    let err = stderr(&output);
    assert_eq!(code(&output), 0, "{err}");
    let run = sandbox.results("compose-as-written");
    let _cleanup = RemoveLeftovers(run_id(&run));
    assert_eq!(result_of(&run)["status"], "passed");
    for needle in [
        format!("{compose}:3:3: service `client`: `logging` is not supported and is ignored"),
        format!(
            "{compose}:{}:5: service `extra`: `labels` is not supported and is ignored",
            line_of(&text, "    labels: [panther.role=extra]")
        ),
    ] {
        assert!(
            err.lines()
                .any(|l| l.starts_with("warning: ") && l.contains(&needle)),
            "`{needle}` missing in:\n{err}"
        );
    }
    let extra_out = std::fs::read_to_string(run.join("services/extra.stdout")).unwrap();
    assert!(
        extra_out.starts_with("listening on 0.0.0.0:7100"),
        "{extra_out}"
    );
    let client_out = std::fs::read_to_string(run.join("services/client.stdout")).unwrap();
    assert!(client_out.contains("echoed \"panther\""), "{client_out}");
    assert_nothing_left(&run_id(&run));
}

#[test]
fn the_quickstart_services_pass_in_one_container_on_the_host_network() {
    require_engine();
    let sandbox = Sandbox::new();
    // The quickstart's services, their programs taken from the build folder mounted at the
    // same path; the image brings the libraries they link and the container's `sleep`.
    let network = format!(
        "\n[network]\nplugin = \"localhost_single_container\"\nimage = \"{}\"\nmounts = [\"{}:ro\"]\n\n\
         [[report]]\nplugin = \"json\"\npath = \"result.json\"\n",
        echo_context().display(),
        build_dir().display()
    );
    let name = format!("single-{}", std::process::id());
    let file = sandbox.write("e.toml", &echo_experiment(&name, &network));
    let output = sandbox.host(&["check", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let mut host = sandbox
        .host_command(&["run", file.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The container exists while the run lasts, labelled with the experiment.
    let label = format!("panther.experiment={name}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while seen.is_empty() && Instant::now() < deadline {
        seen = docker(&[
            "ps",
            "--all",
            "--quiet",
            "--filter",
            &format!("label={label}"),
        ])
        .lines()
        .map(str::to_string)
        .collect();
        if host.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = host.wait_with_output().unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(seen.len(), 1, "one container for every service");

    let run = sandbox.results(&name);
    let _cleanup = RemoveLeftovers(run_id(&run));
    let result = result_of(&run);
    assert_eq!(result["status"], "passed");
    assert_eq!(result["network"], "localhost_single_container");
    let server_out = std::fs::read_to_string(run.join("services/server.stdout")).unwrap();
    assert!(
        server_out.starts_with("listening on 127.0.0.1:"),
        "{server_out}"
    );
    let client_out = std::fs::read_to_string(run.join("services/client.stdout")).unwrap();
    assert_eq!(client_out, "echoed \"hello\"\n");
    let pids = deployed_pids(&run);
    assert!(!pids.is_empty(), "the server's pid on the host is given");
    assert!(pids.iter().all(|&p| !alive(p)), "{pids:?} still alive");
    assert_nothing_left(&run_id(&run));
    assert!(labelled(&label).is_empty(), "the run's image is gone too");

    // Runs whose host still runs are left alone; this one left nothing anyway.
    let _clean = clean_lock();
    let output = sandbox.host(&["clean", "--network", "localhost_single_container"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        stdout(&output).starts_with("localhost_single_container: "),
        "{}",
        stdout(&output)
    );
}

#[test]
fn clean_removes_what_a_killed_host_left() {
    require_engine();
    let sandbox = Sandbox::new();
    let image = ImageTag::new("killed");
    sandbox.write("compose.yaml", &compose_file(&sandbox, &image.0));
    let client = r#""echo-client", "server:7000", "hello", "--count", "1000000000""#;
    let file = sandbox.write(
        "e.toml",
        &compose_experiment("compose-killed", SERVER, client),
    );
    let mut host = sandbox
        .host_command(&["run", file.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run = wait_for_deployments(
        &sandbox.path().join("results/compose-killed"),
        2,
        DEPLOY_TIMEOUT,
    );
    let id = run_id(&run);
    let _cleanup = RemoveLeftovers(id.clone());
    let _clean = clean_lock();
    host.kill().unwrap();
    host.wait().unwrap();
    let left = labelled(&format!("panther.run={id}"));
    let output = sandbox.host(&["clean", "--network", "docker_compose"]);
    assert!(
        left.iter().filter(|l| l.starts_with("container")).count() == 3
            && left.iter().any(|l| l.starts_with("network"))
            && left.iter().any(|l| l.starts_with("volume")),
        "a killed host leaves its containers, networks and volumes: {left:?}"
    );
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let out = stdout(&output);
    let prefix = format!(
        "docker_compose: removed container panther-{}",
        id.to_lowercase().replace('.', "-")
    );
    assert!(out.contains(&prefix), "{out}");
    assert!(out.contains(&format!("(run {id})")), "{out}");
    assert_nothing_left(&id);
}

#[test]
fn two_runs_of_one_compose_experiment_at_once_each_keep_their_own_objects() {
    require_engine();
    let sandbox = Sandbox::new();
    let network = format!(
        "plugin = \"docker_compose\"\nimage = \"{}\"",
        echo_context().display()
    );
    let ready = "ready = { tcp = 7000, timeout = \"30s\" }";
    let client = r#""echo-client", "server:7000", "hello""#;
    let file = sandbox.write(
        "e.toml",
        &experiment("twice", &network, SERVER, ready, client),
    );
    let file = file.to_str().unwrap();
    let output = sandbox.host(&["run", file, file, "--jobs", "2"]);
    let runs: Vec<PathBuf> = std::fs::read_dir(sandbox.path().join("results/twice"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let ids: Vec<String> = runs.iter().map(|r| run_id(r)).collect();
    let _cleanup: Vec<RemoveLeftovers> = ids.iter().cloned().map(RemoveLeftovers).collect();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(runs.len(), 2, "a results folder each");
    assert_ne!(ids[0], ids[1], "a run id each");
    for run in &runs {
        let result = result_of(run);
        // Had one run's teardown removed the other's containers, that one would not pass.
        assert_eq!(result["status"], "passed", "{result:#}");
    }
    for id in &ids {
        assert_nothing_left(id);
    }
}

/// Whether the engine has an image with this id or name.
fn image_exists(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn clean_removes_the_layers_of_a_build_cut_off_with_its_host_and_nothing_else() {
    require_engine();
    let sandbox = Sandbox::new();
    // Many steps, each a committed layer: the build lasts long enough to be cut off.
    let context = sandbox.path().join("slow");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(context.join("a"), format!("{}\n", std::process::id())).unwrap();
    let marker = format!("panther.test.halfbuilt={}", std::process::id());
    let mut dockerfile = format!("FROM scratch\nCOPY a /a\nLABEL {marker}\n");
    for step in 0..400 {
        dockerfile.push_str(&format!("LABEL panther.test.step{step}=\"{step}\"\n"));
    }
    std::fs::write(context.join("Dockerfile"), dockerfile).unwrap();
    // Someone else's image, built beside it with an unrelated, untagged layer chain.
    let other = sandbox.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("b"), format!("other {}\n", std::process::id())).unwrap();
    std::fs::write(
        other.join("Dockerfile"),
        "FROM scratch\nCOPY b /b\nLABEL x=1\n",
    )
    .unwrap();
    let other_tag = format!("panther-test-other-{}", std::process::id());
    let built = Command::new("docker")
        .args(["build", "-q", "-t", &other_tag])
        .arg(&other)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    struct RemoveImage(String);
    impl Drop for RemoveImage {
        fn drop(&mut self) {
            let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
        }
    }
    let _other = RemoveImage(other_tag.clone());

    let network = format!(
        "plugin = \"docker_compose\"\nimage = \"{}\"",
        context.display()
    );
    let file = sandbox.write(
        "e.toml",
        &experiment(
            "halfbuilt",
            &network,
            SERVER,
            "",
            r#""echo-client", "server:7000""#,
        ),
    );
    let mut host = sandbox
        .host_command(&["run", file.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let journals = std::env::temp_dir().join("panther-docker-builds");
    let prefix = format!("{}.", host.id());
    let journal_ids = || -> Vec<String> {
        std::fs::read_dir(&journals)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .flat_map(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .lines()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let _clean = clean_lock();
    let deadline = Instant::now() + Duration::from_secs(120);
    while journal_ids().len() < 3 {
        assert!(Instant::now() < deadline, "the build committed no layers");
        assert!(
            host.try_wait().unwrap().is_none(),
            "the build ended too soon"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    host.kill().unwrap();
    host.wait().unwrap();
    let ids = journal_ids();
    let run = sandbox.results("halfbuilt");
    let _cleanup = RemoveLeftovers(run_id(&run));
    // The engine goes on for a step or two after its client went away: wait until the
    // build's layers stop appearing.
    let layers = || {
        docker(&[
            "images",
            "--all",
            "--quiet",
            "--filter",
            &format!("label={marker}"),
        ])
    };
    let mut last = layers();
    loop {
        std::thread::sleep(Duration::from_millis(1500));
        let now = layers();
        if now == last || Instant::now() > deadline {
            break;
        }
        last = now;
    }
    assert!(
        !last.is_empty(),
        "the cut-off build left layers ({ids:?} recorded)"
    );

    let output = sandbox.host(&["clean", "--network", "docker_compose"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        stdout(&output).contains("half-built image layer"),
        "{}",
        stdout(&output)
    );
    for id in &ids {
        assert!(
            !image_exists(id),
            "layer {id} of the cut-off build is still there"
        );
    }
    assert_eq!(
        layers(),
        "",
        "layers the build committed after its last journal line"
    );
    assert!(journal_ids().is_empty(), "the journal went with its layers");
    assert!(image_exists(&other_tag), "someone else's image was removed");
}

#[test]
fn a_compose_experiment_passes_isolated_and_leaves_nothing() {
    require_engine();
    let sandbox = Sandbox::new();
    let image = ImageTag::new("isolated");
    sandbox.write("compose.yaml", &compose_file(&sandbox, &image.0));
    let client = r#""echo-client", "server:7000", "hello", "panther", "--count", "3""#;
    let file = sandbox.write(
        "e.toml",
        &compose_experiment("compose-isolated", SERVER, client),
    );
    let output = sandbox.host(&["run", "--isolate", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let run = sandbox.results("compose-isolated");
    let _cleanup = RemoveLeftovers(run_id(&run));
    assert_eq!(result_of(&run)["status"], "passed");
    assert_nothing_left(&run_id(&run));
}
