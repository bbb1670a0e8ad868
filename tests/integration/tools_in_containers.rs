//! Execution environments on services in containers whose images do not have the tools: the
//! host's tools are carried in (mounted with their libraries, started through the mounted
//! loader) and their results land in the run's results folder as on localhost.
//!
//! Every cell runs the echo pair twice over: from a `FROM scratch` image of statically linked
//! echo programs, and from the dynamic image of `docker.rs` (the workspace's echo programs with
//! the libraries they link). Neither image holds strace, a shell or anything else.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use serde_json::Value;

use crate::docker::{assert_nothing_left, echo_context, require_engine, run_id, RemoveLeftovers};
use crate::gperf::{assert_burn_profile, profile_of, row};
use crate::support::*;

/// A process that waits forever, the static image's `/bin/sleep` (its main process when it
/// only hosts `docker exec`ed services).
const HOLD: &str = "#include <unistd.h>\nint main(void) { for (;;) pause(); }\n";

/// A build context like [`echo_context`] with statically linked programs only: the echo
/// programs built with `crt-static`, and a static `/bin/sleep`. No library, no loader.
fn static_echo_context() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = root()
            .join("target/docker-fixtures")
            .join(format!("echo-static-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let bin = dir.join("rootfs/usr/local/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(dir.join("rootfs/bin")).unwrap();
        std::fs::copy(
            root().join("tests/fixtures/docker/echo/Dockerfile"),
            dir.join("Dockerfile"),
        )
        .unwrap();
        for name in ["echo-server", "echo-client"] {
            let source = root().join(format!("examples/echo/src/bin/{name}.rs"));
            let output = Command::new("rustc")
                .args([
                    "--edition",
                    "2021",
                    "-C",
                    "target-feature=+crt-static",
                    "-O",
                ])
                .arg(&source)
                .arg("-o")
                .arg(bin.join(name))
                .output()
                .expect("rustc runs");
            assert!(
                output.status.success(),
                "building a static {name}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let hold = dir.join("hold.c");
        std::fs::write(&hold, HOLD).unwrap();
        let output = Command::new("cc")
            .args(["-static", "-O2", "-o"])
            .arg(dir.join("rootfs/bin/sleep"))
            .arg(&hold)
            .output()
            .expect("cc runs");
        assert!(
            output.status.success(),
            "building a static sleep: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::remove_file(&hold).unwrap();
        dir
    })
}

/// Which image the services run from.
#[derive(Clone, Copy, Debug)]
enum Image {
    /// `FROM scratch`, statically linked programs.
    Static,
    /// `FROM scratch`, dynamically linked programs with their own libraries.
    Dynamic,
}

impl Image {
    fn context(self) -> &'static Path {
        match self {
            Image::Static => static_echo_context(),
            Image::Dynamic => echo_context(),
        }
    }
}

/// Which network environment runs them.
#[derive(Clone, Copy, Debug)]
enum Network {
    Compose,
    SingleContainer,
}

/// An experiment with the echo pair from `image` in `network`, under `execution`.
fn experiment(name: &str, network: Network, image: Image, execution: &str) -> String {
    let context = image.context().display();
    let (section, port, host) = match network {
        Network::Compose => (
            format!("plugin = \"docker_compose\"\nimage = \"{context}\""),
            7000,
            "server",
        ),
        // On the host's network: a free port of this machine.
        Network::SingleContainer => (
            format!("plugin = \"localhost_single_container\"\nimage = \"{context}\""),
            free_port(),
            "127.0.0.1",
        ),
    };
    format!(
        r#"[experiment]
name = "{name}"
timeout = "60s"

[network]
{section}

[[service]]
name = "server"
command = ["/usr/local/bin/echo-server", "--host", "0.0.0.0", "--port", "{port}"]
ready = {{ tcp = {port}, timeout = "20s" }}

[[service]]
name = "client"
command = ["/usr/local/bin/echo-client", "{host}:{port}", "hello"]
depends_on = ["server"]
role = "client"

{execution}

[[report]]
plugin = "json"
path = "result.json"
"#
    )
}

/// Runs one cell: checks the experiment, runs it, and returns its results folder and
/// `result.json`, after checking that it passed and left nothing in the engine.
fn run_cell(network: Network, image: Image, execution: &str) -> (Sandbox, PathBuf, Value) {
    run_cell_with(&[], network, image, execution)
}

/// [`run_cell`] with host options before the command (`--isolate`).
fn run_cell_with(
    options: &[&str],
    network: Network,
    image: Image,
    execution: &str,
) -> (Sandbox, PathBuf, Value) {
    require_engine();
    let sandbox = Sandbox::new();
    let name = format!(
        "cell-{}-{}",
        format!("{network:?}-{image:?}").to_lowercase(),
        std::process::id()
    );
    let file = sandbox.write("e.toml", &experiment(&name, network, image, execution));
    let file = file.to_str().unwrap();
    let with = |command: &'static str| [options, &[command, file]].concat();
    let output = sandbox.host(&with("check"));
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let output = sandbox.host(&with("run"));
    let run = sandbox.results(&name);
    let _cleanup = RemoveLeftovers(run_id(&run));
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let result = result_of(&run);
    assert_eq!(result["status"], "passed", "{result:#}");
    assert_nothing_left(&run_id(&run));
    (sandbox, run, result)
}

fn service<'a>(result: &'a Value, name: &str) -> &'a Value {
    result["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no service {name}: {result:#}"))
}

/// The calls of a trace that sent or received exactly the 5 bytes of "hello" (a call may be
/// split over an `<unfinished ...>` and a `resumed` line when threads interleave).
fn hello_calls(trace: &str, call: &str) -> usize {
    trace
        .lines()
        .filter(|l| {
            l.contains(&format!(" {call}(")) || l.contains(&format!("<... {call} resumed>"))
        })
        .filter(|l| l.contains("\"hello\", ") && l.contains(") = 5 <"))
        .count()
}

fn strace_cell(network: Network, image: Image) {
    let (_sandbox, run, result) = run_cell(network, image, "[[execution]]\nplugin = \"strace\"");
    for name in ["server", "client"] {
        let service = service(&result, name);
        // The image has no strace: the host's ran, through the mounted loader.
        let argv: Vec<&str> = service["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(
            argv[0].starts_with("/.panther/tools/strace/ld-")
                && argv[3] == "/.panther/tools/strace/strace",
            "{argv:?}"
        );
        // The same files and JSON as on localhost.
        let trace_file = run.join(format!("monitoring/{name}/strace/strace.txt"));
        let trace = std::fs::read_to_string(&trace_file).unwrap();
        let summary = &service["monitoring"]["strace"];
        assert_eq!(summary["raw"], trace_file.display().to_string());
        let written: Value = serde_json::from_str(
            &std::fs::read_to_string(run.join(format!("monitoring/{name}/strace.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(&written, summary);
        assert_eq!(summary["lines"]["unparsed"], 0, "{summary:#}");
        // The echo itself: "hello" out and back, 5 bytes each way.
        assert_eq!(hello_calls(&trace, "sendto"), 1, "{name}: {trace}");
        assert_eq!(hello_calls(&trace, "recvfrom"), 1, "{name}: {trace}");
    }
    let server = &service(&result, "server")["monitoring"]["strace"];
    assert_eq!(server["network"]["bytes_received"], 5, "{server:#}");
    assert_eq!(server["network"]["bytes_sent"], 5, "{server:#}");
    // Stopped by the host with SIGTERM, which reached the server under strace (not SIGKILL
    // after the grace period), and the trace says so to the end.
    let state = &service(&result, "server")["state"];
    assert_eq!(state["signal"], 15, "{state}");
    let trace = std::fs::read_to_string(run.join("monitoring/server/strace/strace.txt")).unwrap();
    assert!(
        trace.trim_end().ends_with("+++ killed by SIGTERM +++"),
        "{}",
        trace.lines().last().unwrap_or_default()
    );
    // The signal came from outside the container (pid 0 there), straight to the server below
    // strace: not through the container's init, not to strace.
    assert!(
        trace.contains("--- SIGTERM {si_signo=SIGTERM, si_code=SI_USER, si_pid=0, "),
        "{trace}"
    );
}

fn resource_metrics_cell(network: Network, image: Image) {
    let execution = "[[execution]]\nplugin = \"resource_metrics\"\nsampling_rate = 100.0";
    let (_sandbox, run, result) = run_cell(network, image, execution);
    let server = &service(&result, "server")["monitoring"]["resource_metrics"];
    assert!(server["samples"].as_u64().unwrap() >= 2, "{server:#}");
    assert!(
        server["rss_peak_bytes"].as_u64().unwrap() > 100_000,
        "{server:#}"
    );
    assert!(server["processes_max"].as_u64().unwrap() >= 1, "{server:#}");
    // Its threads: the listener, then one per connection (the client and, in compose, the
    // readiness probe), read from the container's processes.
    assert!(server["threads_max"].as_u64().unwrap() >= 1, "{server:#}");
    let samples =
        std::fs::read_to_string(run.join("monitoring/server/resource_metrics/samples.jsonl"))
            .unwrap();
    assert_eq!(
        samples.lines().count() as u64,
        server["samples"].as_u64().unwrap()
    );
    if let Network::Compose = network {
        // The container has a network namespace of its own: the echo's traffic, and only it.
        assert!(
            server["namespace_rx_bytes"].as_u64().unwrap() > 0,
            "{server:#}"
        );
    }
}

/// Isolated plugins answer where the services run from their plugin servers.
#[test]
fn strace_in_docker_compose_with_isolated_plugins() {
    let execution = "[[execution]]\nplugin = \"strace\"";
    let (_sandbox, run, _) =
        run_cell_with(&["--isolate"], Network::Compose, Image::Static, execution);
    let trace = std::fs::read_to_string(run.join("monitoring/server/strace/strace.txt")).unwrap();
    assert_eq!(hello_calls(&trace, "sendto"), 1, "{trace}");
}

#[test]
fn strace_in_docker_compose_static_image() {
    strace_cell(Network::Compose, Image::Static);
}

#[test]
fn strace_in_docker_compose_dynamic_image() {
    strace_cell(Network::Compose, Image::Dynamic);
}

#[test]
fn strace_in_single_container_static_image() {
    strace_cell(Network::SingleContainer, Image::Static);
}

#[test]
fn strace_in_single_container_dynamic_image() {
    strace_cell(Network::SingleContainer, Image::Dynamic);
}

#[test]
fn resource_metrics_in_docker_compose_static_image() {
    resource_metrics_cell(Network::Compose, Image::Static);
}

#[test]
fn resource_metrics_in_docker_compose_dynamic_image() {
    resource_metrics_cell(Network::Compose, Image::Dynamic);
}

#[test]
fn resource_metrics_in_single_container_static_image() {
    resource_metrics_cell(Network::SingleContainer, Image::Static);
}

#[test]
fn resource_metrics_in_single_container_dynamic_image() {
    resource_metrics_cell(Network::SingleContainer, Image::Dynamic);
}

/// What `check` says about an experiment with the echo pair from `image` under `execution`.
fn check_cell(network: Network, image: Image, execution: &str) -> (i32, String) {
    let sandbox = Sandbox::new();
    let file = sandbox.write("e.toml", &experiment("refused", network, image, execution));
    let output = sandbox.host(&["check", file.to_str().unwrap()]);
    (code(&output), stderr(&output))
}

#[test]
fn preloading_into_a_static_program_in_a_container_is_refused_at_check() {
    for (plugin, library) in [("gperf_cpu", "libprofiler"), ("gperf_heap", "tcmalloc")] {
        let execution = format!("[[execution]]\nplugin = \"{plugin}\"");
        let (code, stderr) = check_cell(Network::Compose, Image::Static, &execution);
        assert_ne!(code, 0, "{stderr}");
        let context = static_echo_context().display().to_string();
        let expected = format!(
            "{plugin} needs a dynamically linked program to preload {library}; service `server` \
             runs a statically linked program (/usr/local/bin/echo-server in image `{context}`) \
             in docker_compose"
        );
        assert!(stderr.contains(&expected), "{stderr}");
        assert!(
            stderr.contains(&format!("`{plugin}` ({plugin})")),
            "{stderr}"
        );
        assert!(stderr.contains("e.toml:"), "the file and line: {stderr}");
    }
}

#[test]
fn preloading_into_an_image_without_the_whole_c_library_is_refused_at_check() {
    // The dynamic echo image holds only what the echo programs link: libc.so.6 but not
    // libm.so.6, which the carried libstdc++ needs and which must be the image's own.
    for network in [Network::Compose, Network::SingleContainer] {
        for (plugin, library) in [("gperf_cpu", "libprofiler"), ("gperf_heap", "tcmalloc")] {
            let execution = format!("[[execution]]\nplugin = \"{plugin}\"");
            let (code, stderr) = check_cell(network, Image::Dynamic, &execution);
            assert_eq!(code, 2, "{plugin} in {network:?}: {stderr}");
            assert!(
                stderr.contains(&format!(
                    "{plugin} cannot preload {library} into service `server` in"
                )),
                "{stderr}"
            );
            assert!(
                stderr.contains(
                    "needs libm.so.6 of the C library, which the image does not have next to \
                     its libc.so.6"
                ),
                "{stderr}"
            );
        }
    }
    // valgrind preloads its own libraries into the program: not into a static one.
    for plugin in ["memcheck", "helgrind"] {
        let execution = format!("[[execution]]\nplugin = \"{plugin}\"");
        let (code, stderr) = check_cell(Network::Compose, Image::Static, &execution);
        assert_ne!(code, 0, "{stderr}");
        assert!(
            stderr.contains(&format!(
                "{plugin} needs a dynamically linked program to preload vgpreload_{plugin}; \
                 service `server` runs a statically linked program"
            )),
            "{stderr}"
        );
        let (code, stderr) = check_cell(Network::Compose, Image::Dynamic, &execution);
        assert_eq!(code, 0, "{stderr}");
    }
    // strace and resource_metrics are not refused: they work there (the tests above).
    let execution =
        "[[execution]]\nplugin = \"strace\"\n\n[[execution]]\nplugin = \"resource_metrics\"";
    let (code, stderr) = check_cell(Network::Compose, Image::Static, execution);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn info_shows_where_an_execution_environment_works_and_what_works_in_a_network_environment() {
    require_engine();
    let sandbox = Sandbox::new();
    let text = stdout(&sandbox.host(&["info", "gperf_cpu"]));
    assert!(
        text.contains("  in network environments (this machine):\n")
            && text.contains("    docker_compose: yes\n")
            && text.contains("    localhost: yes\n"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&sandbox.host(&[
        "info",
        "docker_compose",
        "--format",
        "json",
    ])))
    .unwrap();
    assert_eq!(json["works_with"]["strace"], "yes", "{json:#}");
    assert_eq!(json["works_with"]["memcheck"], "yes", "{json:#}");
}

#[test]
fn doctor_shows_which_execution_environment_works_in_which_network_environment() {
    require_engine();
    let sandbox = Sandbox::new();
    let output = sandbox.host(&["doctor"]);
    let text = stdout(&output);
    let mut lines = text.lines().skip_while(|l| !l.starts_with("EXECUTION"));
    let header: Vec<&str> = lines.next().expect("a matrix").split_whitespace().collect();
    let column = |network: &str| header.iter().position(|h| *h == network).unwrap();
    let rows: Vec<&str> = lines.collect();
    let row = |plugin: &str| {
        let line = rows
            .iter()
            .find(|l| l.split_whitespace().next() == Some(plugin))
            .unwrap_or_else(|| panic!("no row {plugin}: {text}"));
        // Cells are separated by two spaces at least.
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect::<Vec<_>>()
    };
    for plugin in ["strace", "resource_metrics"] {
        let cells = row(plugin);
        for network in [
            "DOCKER_COMPOSE",
            "LOCALHOST_SINGLE_CONTAINER",
            "LOCALHOST",
            "SHADOW_NS",
        ] {
            assert_eq!(
                cells[column(network)],
                "yes",
                "{plugin} in {network}: {text}"
            );
        }
    }
    for plugin in ["memcheck", "helgrind", "gperf_cpu", "gperf_heap"] {
        let cells = row(plugin);
        for network in ["DOCKER_COMPOSE", "LOCALHOST_SINGLE_CONTAINER"] {
            assert_eq!(
                cells[column(network)],
                "yes",
                "{plugin} in {network}: {text}"
            );
        }
    }
}

/// A build context holding the C fixture `program` (built with `-g`), `/bin/true`,
/// `/bin/sleep` and the libraries they link, for the fixture's Dockerfile.
fn c_program_context(program: &str, test: &str) -> PathBuf {
    let dir = root().join("target/docker-fixtures").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("usr/local/bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy(
        root().join("tests/fixtures/docker/echo/Dockerfile"),
        dir.join("Dockerfile"),
    )
    .unwrap();
    let exe = rootfs.join("usr/local/bin").join(program);
    compile_fixture_program(program, &exe);
    for tool in ["/bin/true", "/bin/sleep"] {
        std::fs::copy(tool, rootfs.join(tool.trim_start_matches('/'))).unwrap();
    }
    let binaries = [
        exe.display().to_string(),
        "/bin/true".into(),
        "/bin/sleep".into(),
    ];
    copy_linked_libraries(&rootfs, &binaries);
    dir
}

/// memcheck on the C fixture server (it loses 4321 bytes at start and reads past a block),
/// in a container of a dynamic image without valgrind, stopped by the host: the report is
/// complete and symbolized against the container's binary, with the source line.
fn memcheck_cell(network: Network, stacked: &str) -> (Sandbox, PathBuf) {
    require_engine();
    let tag = if stacked.is_empty() { "" } else { "-stacked" };
    let name = format!("memcheck-{network:?}{tag}-{}", std::process::id()).to_lowercase();
    let context = c_program_context("valgrind_server", &name);
    let sandbox = Sandbox::new();
    let section = match network {
        Network::Compose => "docker_compose",
        Network::SingleContainer => "localhost_single_container",
    };
    let experiment = format!(
        r#"[experiment]
name = "{name}"
timeout = "60s"

[network]
plugin = "{section}"
image = "{context}"

[[service]]
name = "server"
command = ["/usr/local/bin/valgrind_server"]
ready = {{ log = "ready", timeout = "30s" }}

[[service]]
name = "client"
command = ["/bin/true"]
depends_on = ["server"]
role = "client"

[[execution]]
plugin = "memcheck"
services = ["server"]
{stacked}

[[report]]
plugin = "json"
path = "result.json"
"#,
        context = context.display()
    );
    let file = sandbox.write("e.toml", &experiment);
    let file = file.to_str().unwrap();
    let output = sandbox.host(&["check", file]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let output = sandbox.host(&["run", file]);
    let run = sandbox.results(&name);
    let _cleanup = RemoveLeftovers(run_id(&run));
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let result = result_of(&run);
    let server = service(&result, "server");
    let argv = server["argv"].as_array().unwrap();
    // The host's valgrind, carried (under the carried strace when stacked).
    assert!(
        argv.iter().any(|a| a
            .as_str()
            .unwrap()
            .starts_with("/.panther/tools/valgrind/valgrind")),
        "{argv:?}"
    );
    let data = &server["monitoring"]["memcheck"];
    assert_eq!(data["truncated"], false, "{data:#}");
    assert_eq!(data["processes"][0]["fatal_signal"]["signame"], "SIGTERM");
    let kinds: Vec<&str> = data["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["InvalidRead", "Leak_DefinitelyLost"], "{data:#}");
    assert_eq!(data["errors"][1]["leaked_bytes"], 4321);
    let source = std::fs::read_to_string(fixture_program("valgrind_server")).unwrap();
    let leak_line = source
        .lines()
        .position(|l| l.contains("/* LEAK_LINE */"))
        .unwrap()
        + 1;
    assert_eq!(
        data["errors"][1]["location"],
        format!("leak_at_start (valgrind_server.c:{leak_line})")
    );
    assert!(run
        .join("monitoring/server/memcheck/valgrind.xml")
        .is_file());
    assert_nothing_left(&run_id(&run));
    let _ = std::fs::remove_dir_all(&context);
    (sandbox, run)
}

#[test]
fn memcheck_in_docker_compose_dynamic_image() {
    memcheck_cell(Network::Compose, "");
}

#[test]
fn memcheck_in_single_container_dynamic_image() {
    memcheck_cell(Network::SingleContainer, "");
}

/// memcheck under strace in one container: both carried tools, each with its own loader,
/// and both reports complete.
#[test]
fn memcheck_stacked_under_strace_in_docker_compose() {
    let stacked =
        "\n[[execution]]\nplugin = \"strace\"\nservices = [\"server\"]\nfollow_forks = false";
    let (_sandbox, run) = memcheck_cell(Network::Compose, stacked);
    let trace = std::fs::read_to_string(run.join("monitoring/server/strace/strace.txt")).unwrap();
    let first = trace.lines().next().unwrap_or_default();
    assert!(
        first.contains("execve(\"/.panther/tools/valgrind/ld-linux-x86-64.so.2\""),
        "strace starts valgrind through its mounted loader: {first}"
    );
    let result = result_of(&run);
    let strace = &service(&result, "server")["monitoring"]["strace"];
    assert!(
        strace["totals"]["calls"].as_u64().unwrap() > 10,
        "{strace:#}"
    );
}

/// helgrind on the C fixture whose two threads bump a counter without a lock, in a container
/// of a dynamic image without valgrind: the race, at its source line.
#[test]
fn helgrind_in_docker_compose_dynamic_image() {
    require_engine();
    let name = format!("helgrind-compose-{}", std::process::id());
    let context = c_program_context("valgrind_race", &name);
    let sandbox = Sandbox::new();
    let experiment = format!(
        r#"[experiment]
name = "{name}"
timeout = "60s"

[network]
plugin = "docker_compose"
image = "{context}"

[[service]]
name = "prog"
command = ["/usr/local/bin/valgrind_race"]
role = "client"

[[execution]]
plugin = "helgrind"

[[report]]
plugin = "json"
path = "result.json"
"#,
        context = context.display()
    );
    let file = sandbox.write("e.toml", &experiment);
    let output = sandbox.host(&["run", file.to_str().unwrap()]);
    let run = sandbox.results(&name);
    let _cleanup = RemoveLeftovers(run_id(&run));
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let result = result_of(&run);
    let data = &service(&result, "prog")["monitoring"]["helgrind"];
    let races = data["errors"].as_array().unwrap();
    assert!(!races.is_empty(), "{data:#}");
    assert!(races.iter().all(|r| r["kind"] == "Race"), "{data:#}");
    let source = std::fs::read_to_string(fixture_program("valgrind_race")).unwrap();
    let race_line = source
        .lines()
        .position(|l| l.contains("/* RACE_LINE */"))
        .unwrap()
        + 1;
    for race in races {
        for stack in race["stacks"].as_array().unwrap() {
            let frame = &stack["frames"][0];
            assert_eq!(frame["fn"], "bump", "{frame:#}");
            assert_eq!(frame["file"], "valgrind_race.c", "{frame:#}");
            assert_eq!(frame["line"], race_line, "{frame:#}");
        }
    }
    assert_nothing_left(&run_id(&run));
    let _ = std::fs::remove_dir_all(&context);
}

/// [`c_program_context`] with the C library's files next to its `libc.so.6`, as an image
/// with a GNU C library has them (the program links none of them; the carried gperftools
/// libraries do: `libm.so.6` for libstdc++, `libpthread.so.0` for libtcmalloc).
fn gperf_context(program: &str, test: &str) -> PathBuf {
    let context = c_program_context(program, test);
    for name in ["libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1"] {
        let host = Path::new("/lib/x86_64-linux-gnu").join(name);
        if let Ok(file) = std::fs::canonicalize(&host) {
            let inside = context.join("rootfs/lib/x86_64-linux-gnu").join(name);
            std::fs::copy(file, inside).unwrap();
        }
    }
    context
}

/// An experiment in `network` from the build folder `context`, with `body` (services and
/// execution environments) and a json report.
fn container_experiment(name: &str, network: Network, context: &Path, body: &str) -> String {
    let section = match network {
        Network::Compose => "docker_compose",
        Network::SingleContainer => "localhost_single_container",
    };
    format!(
        r#"[experiment]
name = "{name}"
timeout = "60s"

[network]
plugin = "{section}"
image = "{context}"

{body}

[[report]]
plugin = "json"
path = "result.json"
"#,
        context = context.display()
    )
}

/// Checks and runs `experiment`, which must pass and leave nothing in the engine; returns
/// the results folder and `result.json`.
fn check_and_run(sandbox: &Sandbox, name: &str, experiment: &str) -> (PathBuf, Value) {
    let file = sandbox.write("e.toml", experiment);
    let file = file.to_str().unwrap();
    let output = sandbox.host(&["check", file]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let output = sandbox.host(&["run", file]);
    let run = sandbox.results(name);
    let _cleanup = RemoveLeftovers(run_id(&run));
    assert_eq!(code(&output), 0, "{}\n{}", stdout(&output), stderr(&output));
    let result = result_of(&run);
    assert_eq!(result["status"], "passed", "{result:#}");
    assert_nothing_left(&run_id(&run));
    (run, result)
}

/// The fixture programs are at `/usr/local/bin` of the images only: a function named from
/// one was read from the container's binary, not from a file of the host.
fn assert_only_in_the_image(program: &str) {
    let host = Path::new("/usr/local/bin").join(program);
    assert!(
        !host.exists(),
        "{} exists on this machine: the test could not tell which file was symbolized",
        host.display()
    );
}

/// The monitoring data of a service as the report has it, checked to be the JSON the
/// plugin wrote next to the other results (as on localhost).
fn reported<'a>(result: &'a Value, run: &Path, service_name: &str, plugin: &str) -> &'a Value {
    let data = &service(result, service_name)["monitoring"][plugin];
    assert_eq!(&monitoring(run, service_name, plugin), data);
    data
}

/// gperf_cpu on the CPU-burning C fixture run as a server, in a container of a dynamic
/// image without gperftools, stopped by the host when the client `sleep 2` ends: the profile
/// is flushed before the SIGTERM, lands in the results folder and names the fixture's
/// functions, read from the container's binary.
fn gperf_cpu_cell(network: Network) {
    require_engine();
    assert_only_in_the_image("gperf_burn");
    let name = format!("gperf-cpu-{network:?}-{}", std::process::id()).to_lowercase();
    let context = gperf_context("gperf_burn", &name);
    let sandbox = Sandbox::new();
    let body = r#"[[service]]
name = "burn"
command = ["/usr/local/bin/gperf_burn", "forever"]
ready = { log = "ready", timeout = "30s" }

[[service]]
name = "client"
command = ["/bin/sleep", "2"]
depends_on = ["burn"]
role = "client"

[[execution]]
plugin = "gperf_cpu"
services = ["burn"]"#;
    let experiment = container_experiment(&name, network, &context, body);
    let (run, result) = check_and_run(&sandbox, &name, &experiment);
    let data = reported(&result, &run, "burn", "gperf_cpu");
    assert_burn_profile(data);
    let profile = profile_of(data, "/usr/local/bin/gperf_burn");
    assert_eq!(profile["state"], "flushed", "{data:#}");
    assert_eq!(data["profiles"].as_array().unwrap().len(), 1, "{data:#}");
    let folder = run.join("monitoring/burn/gperf_cpu");
    assert_eq!(
        profile["path"],
        folder.join("cpu.prof.0").display().to_string()
    );
    assert!(folder.join("cpu.prof.0").is_file());
    assert!(folder.join("cpu.folded").is_file());
    // The frames of the hot function come from the container's binary, with its source.
    let folded = std::fs::read_to_string(folder.join("cpu.folded")).unwrap();
    assert!(folded.contains("main;burn_cpu "), "{folded}");
    // The host's libprofiler, carried and preloaded by the image's loader: the memory map
    // the profile ends with names it at its place in the container, next to the image's
    // own C library.
    let raw = std::fs::read(folder.join("cpu.prof.0")).unwrap();
    let maps = String::from_utf8_lossy(&raw);
    assert!(
        maps.contains("/.panther/tools/gperf_cpu/libprofiler.so"),
        "{maps}"
    );
    assert!(maps.contains("/usr/local/bin/gperf_burn"), "{maps}");
    // Stopped by the host with SIGTERM, after the flush.
    let state = &service(&result, "burn")["state"];
    assert_eq!(state["signal"], 15, "{state}");
    let _ = std::fs::remove_dir_all(&context);
}

#[test]
fn gperf_cpu_in_docker_compose_dynamic_image() {
    gperf_cpu_cell(Network::Compose);
}

#[test]
fn gperf_cpu_in_single_container_dynamic_image() {
    gperf_cpu_cell(Network::SingleContainer);
}

/// gperf_heap on the C fixture with a known allocation pattern, a client that exits by
/// itself (its last dump written from its exit handler), in a container of a dynamic image
/// without gperftools: the exact bytes, by function, read from the container's binary.
fn gperf_heap_cell(network: Network) {
    require_engine();
    assert_only_in_the_image("gperf_heap");
    let name = format!("gperf-heap-{network:?}-{}", std::process::id()).to_lowercase();
    let context = gperf_context("gperf_heap", &name);
    let sandbox = Sandbox::new();
    let body = r#"[[service]]
name = "pattern"
command = ["/usr/local/bin/gperf_heap"]
role = "client"

[[execution]]
plugin = "gperf_heap"
allocation_interval = 1048576
inuse_interval = 3145728"#;
    let experiment = container_experiment(&name, network, &context, body);
    let (run, result) = check_and_run(&sandbox, &name, &experiment);
    let data = reported(&result, &run, "pattern", "gperf_heap");
    assert_eq!(data["top_inuse"][0]["function"], "alloc_big", "{data:#}");
    let big = row(&data["top_inuse"], "alloc_big");
    assert_eq!(big["inuse_bytes"], 10 * 1024 * 1024, "{data:#}");
    assert_eq!(big["inuse_objects"], 10);
    let small = row(&data["top_allocated"], "alloc_small");
    assert_eq!(small["allocated_bytes"], 100_000, "{data:#}");
    assert_eq!(small["allocated_objects"], 1000);
    assert!(
        data["peak_inuse_bytes"].as_i64().unwrap() >= 18 * 1024 * 1024,
        "{data:#}"
    );
    let processes = data["processes"].as_array().unwrap();
    assert_eq!(processes.len(), 1, "{data:#}");
    assert_eq!(
        processes[0]["flushed_at_stop"], false,
        "it exited by itself"
    );
    let folder = run.join("monitoring/pattern/gperf_heap");
    for dump in processes[0]["dumps"].as_array().unwrap() {
        let path = PathBuf::from(dump["path"].as_str().unwrap());
        assert!(path.starts_with(&folder), "{}", path.display());
        assert!(path.is_file(), "{}", path.display());
    }
    assert!(data["warnings"].as_array().unwrap().is_empty(), "{data:#}");
    let _ = std::fs::remove_dir_all(&context);
}

#[test]
fn gperf_heap_in_docker_compose_dynamic_image() {
    gperf_heap_cell(Network::Compose);
}

#[test]
fn gperf_heap_in_single_container_dynamic_image() {
    gperf_heap_cell(Network::SingleContainer);
}

/// Both profilers on one server in a container, stopped by the host: two carried libraries
/// preloaded together, each profile flushed before the SIGTERM.
#[test]
fn gperf_cpu_and_gperf_heap_stacked_in_docker_compose() {
    require_engine();
    assert_only_in_the_image("gperf_service");
    let name = format!("gperf-stacked-{}", std::process::id());
    let context = gperf_context("gperf_service", &name);
    let sandbox = Sandbox::new();
    let body = r#"[[service]]
name = "svc"
command = ["/usr/local/bin/gperf_service"]
ready = { log = "ready", timeout = "30s" }

[[service]]
name = "client"
command = ["/bin/sleep", "1.5"]
depends_on = ["svc"]
role = "client"

[[execution]]
plugin = "gperf_cpu"
services = ["svc"]

[[execution]]
plugin = "gperf_heap"
services = ["svc"]"#;
    let experiment = container_experiment(&name, Network::Compose, &context, body);
    let (run, result) = check_and_run(&sandbox, &name, &experiment);
    let cpu = reported(&result, &run, "svc", "gperf_cpu");
    assert_eq!(cpu["top_flat"][0]["function"], "burn_cpu", "{cpu:#}");
    assert_eq!(profile_of(cpu, "/gperf_service")["state"], "flushed");
    let heap = reported(&result, &run, "svc", "gperf_heap");
    let kept = row(&heap["top_inuse"], "keep_buffers");
    assert_eq!(kept["inuse_bytes"], 4 * 1024 * 1024, "{heap:#}");
    assert_eq!(heap["processes"][0]["flushed_at_stop"], true, "{heap:#}");
    assert_eq!(service(&result, "svc")["state"]["signal"], 15);
    let _ = std::fs::remove_dir_all(&context);
}

/// A C library that defines the GNU versions up to `GLIBC_2.17` only, as an old
/// distribution's does, under the name and at the place of an image's `libc.so.6`.
fn old_libc(into: &Path) {
    versioned_library(into, "libc.so.6", &["GLIBC_2.2.5", "GLIBC_2.17"]);
}

/// A shared library named `soname` at `into` that defines `versions` (each with a function
/// of its own), as a distribution's build of that library would.
fn versioned_library(into: &Path, soname: &str, versions: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("lib.c");
    let script = dir.path().join("lib.map");
    let mut code = String::new();
    let mut map = String::new();
    for (index, version) in versions.iter().enumerate() {
        code.push_str(&format!(
            "int defined_{index}(void) {{ return {index}; }}\n"
        ));
        let local = if index == 0 { " local: *;" } else { "" };
        let parent = match index {
            0 => String::new(),
            _ => format!(" {}", versions[index - 1]),
        };
        map.push_str(&format!(
            "{version} {{ global: defined_{index};{local} }}{parent};\n"
        ));
    }
    std::fs::write(&source, code).unwrap();
    std::fs::write(&script, map).unwrap();
    std::fs::create_dir_all(into.parent().unwrap()).unwrap();
    let output = Command::new("cc")
        .args(["-shared", "-fPIC", "-nostdlib"])
        .arg(format!("-Wl,-soname,{soname}"))
        .arg(format!("-Wl,--version-script={}", script.display()))
        .arg("-o")
        .arg(into)
        .arg(&source)
        .output()
        .expect("cc runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An image with a C++ runtime of its own that is older than what the carried gperftools
/// libraries need and defines a version the host's lacks (a build of another lineage): one
/// process loads one `libstdc++.so.6`, and neither serves both, so `check` refuses.
#[test]
fn an_image_libstdcxx_that_cannot_serve_both_is_refused_at_check() {
    let name = format!("own-libstdcxx-{}", std::process::id());
    let context = gperf_context("gperf_burn", &name);
    versioned_library(
        &context.join("rootfs/lib/x86_64-linux-gnu/libstdc++.so.6"),
        "libstdc++.so.6",
        &["GLIBCXX_3.4", "GLIBCXX_3.4.99"],
    );
    for (plugin, library) in [("gperf_cpu", "libprofiler"), ("gperf_heap", "tcmalloc")] {
        let body = format!(
            "[[service]]\nname = \"server\"\ncommand = [\"/usr/local/bin/gperf_burn\"]\nrole = \"client\"\n\n\
             [[execution]]\nplugin = \"{plugin}\""
        );
        let sandbox = Sandbox::new();
        let file = sandbox.write(
            "e.toml",
            &container_experiment(&name, Network::Compose, &context, &body),
        );
        let output = sandbox.host(&["check", file.to_str().unwrap()]);
        let text = stderr(&output);
        assert_eq!(code(&output), 2, "{text}");
        assert!(
            text.contains(&format!(
                "{plugin} cannot preload {library} into service `server` in docker_compose \
                 (image `{}`): the image has its own libstdc++.so.6, which lacks ",
                context.display()
            )),
            "{text}"
        );
        assert!(
            text.contains(
                "and the carried libstdc++.so.6 lacks GLIBCXX_3.4.99 that the image's defines"
            ),
            "{text}"
        );
    }
    let _ = std::fs::remove_dir_all(&context);
}

/// An image with its own C++ runtime that serves the carried libprofiler too (here the same
/// build as the host's): the program keeps the image's `libstdc++.so.6`, which libprofiler
/// then uses, and the carried copy is not preloaded; the profile is the same as without.
#[test]
fn an_image_libstdcxx_that_serves_both_is_kept() {
    require_engine();
    let name = format!("kept-libstdcxx-{}", std::process::id());
    let context = gperf_context("gperf_burn", &name);
    for library in ["libstdc++.so.6", "libgcc_s.so.1"] {
        let host = std::fs::canonicalize(Path::new("/usr/lib/x86_64-linux-gnu").join(library))
            .unwrap_or_else(|e| panic!("{library} on this machine: {e}"));
        std::fs::copy(
            host,
            context.join("rootfs/lib/x86_64-linux-gnu").join(library),
        )
        .unwrap();
    }
    let sandbox = Sandbox::new();
    let body = r#"[[service]]
name = "burn"
command = ["/usr/local/bin/gperf_burn"]
role = "client"

[[execution]]
plugin = "gperf_cpu""#;
    let experiment = container_experiment(&name, Network::Compose, &context, body);
    let (run, result) = check_and_run(&sandbox, &name, &experiment);
    let data = reported(&result, &run, "burn", "gperf_cpu");
    assert_burn_profile(data);
    let profile = profile_of(data, "/usr/local/bin/gperf_burn");
    let raw = std::fs::read(profile["path"].as_str().unwrap()).unwrap();
    let maps = String::from_utf8_lossy(&raw);
    assert!(
        maps.contains("/.panther/tools/gperf_cpu/libprofiler.so"),
        "{maps}"
    );
    assert!(
        maps.contains("/lib/x86_64-linux-gnu/libstdc++.so.6"),
        "{maps}"
    );
    assert!(
        !maps.contains("/.panther/tools/gperf_cpu/libstdc++"),
        "{maps}"
    );
    let _ = std::fs::remove_dir_all(&context);
}

/// An image built from a folder that holds its C library, older than what the carried
/// gperftools libraries need: refused at `check`, naming both plugins, the service, the
/// image and the missing version.
#[test]
fn preloading_into_an_image_with_an_older_c_library_is_refused_at_check() {
    let name = format!("old-glibc-{}", std::process::id());
    let context = root().join("target/docker-fixtures").join(&name);
    let _ = std::fs::remove_dir_all(&context);
    let bin = context.join("rootfs/usr/local/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(
        std::fs::canonicalize("/bin/true").unwrap(),
        bin.join("server"),
    )
    .unwrap();
    old_libc(&context.join("rootfs/lib/x86_64-linux-gnu/libc.so.6"));
    std::fs::write(context.join("Dockerfile"), "FROM scratch\nCOPY rootfs/ /\n").unwrap();
    for network in [Network::Compose, Network::SingleContainer] {
        for (plugin, library) in [("gperf_cpu", "libprofiler"), ("gperf_heap", "tcmalloc")] {
            let body = format!(
                "[[service]]\nname = \"server\"\ncommand = [\"/usr/local/bin/server\"]\nrole = \"client\"\n\n\
                 [[execution]]\nplugin = \"{plugin}\""
            );
            let sandbox = Sandbox::new();
            let file = sandbox.write(
                "e.toml",
                &container_experiment(&name, network, &context, &body),
            );
            let output = sandbox.host(&["check", file.to_str().unwrap()]);
            let text = stderr(&output);
            assert_eq!(code(&output), 2, "{text}");
            let environment = match network {
                Network::Compose => "docker_compose",
                Network::SingleContainer => "localhost_single_container",
            };
            let expected = format!(
                "{plugin} cannot preload {library} into service `server` in {environment} \
                 (image `{}`): the carried ",
                context.display()
            );
            assert!(text.contains(&expected), "{text}");
            assert!(
                text.contains("of the C library, and the image's C library has GLIBC_2.17 at most"),
                "{text}"
            );
            assert!(text.contains("needs GLIBC_2."), "{text}");
        }
    }
    let _ = std::fs::remove_dir_all(&context);
}
