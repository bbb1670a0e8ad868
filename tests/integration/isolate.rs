//! `--isolate`: plugin instances in plugin servers. A plugin that crashes, aborts, exits or
//! hangs inside a call fails alone: the call's error names the instance, what it was doing
//! and what happened to its process, the run tears down (no service, no plugin server is
//! left), the other reports are written and the host exits with a code, not a signal. A
//! well-behaved run gives the same result isolated as in process.

use std::path::Path;

use serde_json::Value;

use crate::support::*;

/// Marks every process a test's host starts (and what they start) through the environment.
const TAG: &str = "PANTHER_ISOLATE_TEST";

/// Every live process whose environment carries `tag`.
fn tagged(tag: &str) -> Vec<u32> {
    let needle = format!("{TAG}={tag}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == needle.as_bytes()))
        })
        .filter(|&pid| alive(pid))
        .collect()
}

/// Runs the host on `experiment` with `args`, its processes tagged with the sandbox's path.
fn run(sandbox: &Sandbox, experiment: &str, args: &[&str]) -> std::process::Output {
    let file = sandbox.write("e.toml", experiment);
    let mut full: Vec<&str> = vec!["run"];
    full.extend(args);
    full.push(file.to_str().unwrap());
    let output = sandbox
        .host_command(&full)
        .env(TAG, sandbox.path())
        .output()
        .expect("panther-host runs");
    let left = tagged(sandbox.path().to_str().unwrap());
    assert!(
        left.is_empty(),
        "processes left after the run: {left:?}\n{}",
        stderr(&output)
    );
    output
}

/// The pids of the services the run deployed, from its events; every local service has one.
fn local_service_pids(results: &Path) -> Vec<u32> {
    events(results)
        .iter()
        .filter(|e| e["event"] == "service_deployed")
        .map(|e| e["pid"].as_u64().expect("a local service has a pid") as u32)
        .collect()
}

/// The quickstart's echo pair (a server that runs until stopped, a client) on a free port,
/// on `network` (TOML lines under `[network]`), with `extra` appended; a 1 s timeout keeps
/// hang cases short.
fn experiment(name: &str, network: &str, extra: &str) -> String {
    let port = free_port();
    format!(
        r#"[experiment]
name = "{name}"
timeout = "1s"

[network]
{network}

[[service]]
name = "server"
command = ["{server}", "--port", "{port}"]
ready = {{ tcp = {port}, timeout = "2s" }}

[[service]]
name = "client"
command = ["{client}", "127.0.0.1:{port}", "hello"]
role = "client"
depends_on = ["server"]

[[report]]
plugin = "json"
{extra}
"#,
        server = program("echo-server"),
        client = program("echo-client"),
    )
}

/// What a misbehaviour looks like in the error.
fn ending(how: &str) -> &'static str {
    match how {
        "segfault" => "its plugin server was killed by SIGSEGV",
        "abort" => "its plugin server was killed by SIGABRT",
        "exit" => "its plugin server exited with code 7",
        "hang" => "its plugin server did not answer within",
        _ => unreachable!(),
    }
}

/// One plugin of type `kind` misbehaves `how` at `at`: the run fails alone and cleanly.
fn fails_alone(kind: &str, at: &str, how: &str) {
    let sandbox = Sandbox::new();
    let misbehave = format!("at = \"{at}\"\nhow = \"{how}\"");
    let (network, extra, instance, doing) = match kind {
        "network" => (
            format!("plugin = \"misbehave_net\"\n{misbehave}\nservice = \"client\""),
            String::new(),
            "misbehave_net",
            "deploying service `client`".to_string(),
        ),
        "execution" => (
            "plugin = \"localhost\"".to_string(),
            format!("\n[[execution]]\nplugin = \"misbehave_exec\"\nname = \"bad\"\n{misbehave}\nservice = \"server\"\n"),
            "bad",
            match at {
                "wrap" => "wrapping the command of service `server`".to_string(),
                _ => "collecting monitoring data of service `server`".to_string(),
            },
        ),
        _ => (
            "plugin = \"localhost\"".to_string(),
            format!("\n[[report]]\nplugin = \"misbehave_report\"\nname = \"bad\"\n{misbehave}\n\n[[report]]\nplugin = \"junit\"\n"),
            "bad",
            "writing its report".to_string(),
        ),
    };
    let name = format!("{kind}-{at}-{how}");
    let output = run(
        &sandbox,
        &experiment(&name, &network, &extra),
        &["--isolate"],
    );
    let err = stderr(&output);
    let code = code(&output);
    assert!(code != 0, "the run passed:\n{err}");
    let expected = format!("failed while {doing}: {}", ending(how));
    assert!(
        err.contains(&format!("plugin `{instance}`")) && err.contains(&expected),
        "no `{expected}` for `{instance}` in:\n{err}"
    );

    if kind == "network" {
        // Later calls on the dead instance fail at once, with the same reason.
        assert!(
            err.contains(&format!(
                "failed while tearing down the environment: its plugin server had already ended: it {}",
                ending(how).trim_start_matches("its plugin server ")
            )),
            "{err}"
        );
    }
    let results = sandbox.results(&name);
    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("result.json")).unwrap())
            .unwrap();
    if kind == "report" {
        // `json` wrote before the broken reporter was called; `junit` after it.
        assert_eq!(result["status"], "passed", "{result:#}");
        assert!(
            results.join("junit.xml").is_file(),
            "the reporter after the broken one wrote nothing"
        );
    } else {
        assert_eq!(result["status"], "error", "{result:#}");
        assert!(
            result["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e.as_str().unwrap().contains(ending(how))),
            "{result:#}"
        );
    }
    let pids = local_service_pids(&results);
    if at != "wrap" {
        assert!(!pids.is_empty(), "nothing was deployed:\n{err}");
    }
    for pid in pids {
        assert!(!alive(pid), "service process {pid} was left running");
    }
}

macro_rules! fails_alone {
    ($($test:ident: $kind:literal, $at:literal, $how:literal;)*) => {$(
        #[test]
        fn $test() {
            fails_alone($kind, $at, $how);
        }
    )*};
}

fails_alone! {
    deploy_segfault: "network", "deploy_service", "segfault";
    deploy_abort: "network", "deploy_service", "abort";
    deploy_exit: "network", "deploy_service", "exit";
    deploy_hang: "network", "deploy_service", "hang";
    wrap_segfault: "execution", "wrap", "segfault";
    wrap_abort: "execution", "wrap", "abort";
    wrap_exit: "execution", "wrap", "exit";
    wrap_hang: "execution", "wrap", "hang";
    monitoring_data_segfault: "execution", "get_monitoring_data", "segfault";
    monitoring_data_abort: "execution", "get_monitoring_data", "abort";
    monitoring_data_exit: "execution", "get_monitoring_data", "exit";
    monitoring_data_hang: "execution", "get_monitoring_data", "hang";
    report_segfault: "report", "report", "segfault";
    report_abort: "report", "report", "abort";
    report_exit: "report", "report", "exit";
    report_hang: "report", "report", "hang";
}

/// The result of a run with its timings and paths taken out, to compare two runs.
fn comparable(results: &Path) -> Value {
    let text = std::fs::read_to_string(results.join("result.json"))
        .unwrap()
        .replace(results.to_str().unwrap(), "RUN");
    let mut result: Value = serde_json::from_str(&text).unwrap();
    for key in ["run_id", "started_at", "duration_ms", "output_dir"] {
        result.as_object_mut().unwrap().remove(key);
    }
    for service in result["services"].as_array_mut().unwrap() {
        let service = service.as_object_mut().unwrap();
        for key in ["stdout_log", "stderr_log", "state"] {
            service.remove(key);
        }
        if let Some(monitoring) = service.get_mut("monitoring").and_then(Value::as_object_mut) {
            // What strace measured differs from run to run; which instances reported does not.
            for data in monitoring.values_mut() {
                *data = Value::Bool(true);
            }
        }
    }
    result
}

/// The events of a run by kind, in order, without pids and timings.
fn event_kinds(results: &Path) -> Vec<String> {
    events(results)
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_echo_pair_under_strace_gives_the_same_result_isolated() {
    let mut results = Vec::new();
    let experiment = echo_experiment(
        "echo",
        "\n[[execution]]\nplugin = \"strace\"\n\n[[report]]\nplugin = \"json\"\n\n[[report]]\nplugin = \"junit\"\n",
    );
    for args in [&[][..], &["--isolate"][..]] {
        let sandbox = Sandbox::new();
        let output = run(&sandbox, &experiment, args);
        assert_eq!(code(&output), 0, "{args:?}: {}", stderr(&output));
        let dir = sandbox.results("echo");
        assert!(dir.join("junit.xml").is_file());
        assert!(dir.join("monitoring/server/strace.json").is_file());
        results.push((comparable(&dir), event_kinds(&dir)));
    }
    assert_eq!(results[0].0, results[1].0);
    assert_eq!(results[0].1, results[1].1);
}

#[test]
fn the_quickstart_passes_isolated() {
    let sandbox = Sandbox::new();
    let quickstart = std::fs::read_to_string(root().join("examples/quickstart.toml"))
        .unwrap()
        .replace("../target/debug", build_dir().to_str().unwrap())
        .replace("4443", &free_port().to_string());
    let output = run(&sandbox, &quickstart, &["--isolate"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let dir = sandbox.results("quickstart");
    assert!(dir.join("result.json").is_file() && dir.join("junit.xml").is_file());
}

#[test]
fn a_settings_folder_isolates_its_plugins_without_the_flag() {
    let sandbox = Sandbox::new();
    let settings = sandbox.write(
        "settings.toml",
        &format!("isolate_plugin_dirs = [{:?}]\n", fixtures_dir()),
    );
    let file = sandbox.write(
        "e.toml",
        &experiment(
            "by-folder",
            "plugin = \"localhost\"",
            "\n[[report]]\nplugin = \"misbehave_report\"\nat = \"report\"\nhow = \"segfault\"\n",
        ),
    );
    let output = sandbox
        .host_command(&["run", file.to_str().unwrap()])
        .env("PANTHER_CONFIG", &settings)
        .env(TAG, sandbox.path())
        .output()
        .unwrap();
    let err = stderr(&output);
    assert_eq!(code(&output), 3, "{err}");
    assert!(
        err.contains("failed while writing its report: its plugin server was killed by SIGSEGV"),
        "{err}"
    );
    // `json` is a shipped plugin, outside the isolated folder: it ran in the host and wrote.
    assert!(sandbox.results("by-folder").join("result.json").is_file());
    assert!(tagged(sandbox.path().to_str().unwrap()).is_empty());
}

#[test]
fn check_asks_isolated_plugins_about_their_configuration_in_a_child() {
    let sandbox = Sandbox::new();
    let file = sandbox.write(
        "e.toml",
        &experiment(
            "check",
            "plugin = \"localhost\"",
            "\n[[report]]\nplugin = \"misbehave_report\"\nat = \"validate\"\nhow = \"abort\"\n",
        ),
    );
    let output = sandbox
        .host_command(&["check", "--isolate", file.to_str().unwrap()])
        .env(TAG, sandbox.path())
        .output()
        .unwrap();
    let err = stderr(&output);
    assert_eq!(code(&output), 2, "{err}");
    assert!(
        err.contains(
            "failed while validating its configuration: its plugin server was killed by SIGABRT"
        ),
        "{err}"
    );
    assert!(tagged(sandbox.path().to_str().unwrap()).is_empty());

    // The same file without the misbehaviour checks clean, isolated.
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("at = \"validate\"", "");
    std::fs::write(&file, text).unwrap();
    let output = sandbox.host(&["check", "--isolate", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
}

#[test]
fn isolated_experiments_run_side_by_side_in_a_job() {
    let sandbox = Sandbox::new();
    let mut files = Vec::new();
    for name in ["first", "second"] {
        let file = sandbox.write(
            &format!("{name}.toml"),
            &echo_experiment(
                name,
                "\n[[execution]]\nplugin = \"resource_metrics\"\n\n[[report]]\nplugin = \"json\"\n",
            ),
        );
        files.push(file.to_str().unwrap().to_string());
    }
    let output = sandbox
        .host_command(&["run", "--isolate", "--jobs", "2", &files[0], &files[1]])
        .env(TAG, sandbox.path())
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    for name in ["first", "second"] {
        let dir = sandbox.results(name);
        assert!(dir.join("result.json").is_file());
        assert!(dir
            .join("monitoring/server/resource_metrics.json")
            .is_file());
    }
    assert!(tagged(sandbox.path().to_str().unwrap()).is_empty());
}

#[test]
fn an_isolated_reporter_writes_to_the_hosts_stdout() {
    let sandbox = Sandbox::new();
    let output = run(
        &sandbox,
        &echo_experiment("stdout", "\n[[report]]\nplugin = \"json\"\npath = \"-\"\n"),
        &["--isolate", "-q"],
    );
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let result: Value = serde_json::from_str(&stdout(&output))
        .unwrap_or_else(|e| panic!("stdout is not the report ({e}):\n{}", stdout(&output)));
    assert_eq!(result["status"], "passed");
}

#[test]
fn ctrl_c_gives_up_on_a_hung_isolated_plugin() {
    let sandbox = Sandbox::new();
    let file = sandbox.write(
        "e.toml",
        &experiment(
            "cancelled",
            "plugin = \"misbehave_net\"\nat = \"wait_ready\"\nhow = \"hang\"\nservice = \"server\"",
            "",
        )
        .replace("timeout = \"1s\"", "timeout = \"10m\""),
    );
    let host = sandbox
        .host_command(&["run", "--isolate", file.to_str().unwrap()])
        .env(TAG, sandbox.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The server is deployed before the plugin hangs waiting for it.
    let root = sandbox.path().join("results/cancelled");
    let pids = loop {
        let deployed = std::fs::read_dir(&root)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(Result::ok)
            .filter(|run| run.path().join("events.jsonl").is_file())
            .map(|run| local_service_pids(&run.path()))
            .unwrap_or_default();
        if !deployed.is_empty() {
            break deployed;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(host.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let output = host.wait_with_output().unwrap();
    let err = stderr(&output);
    assert_eq!(code(&output), 130, "{err}");
    // The hung call was given up, and the later calls on the instance say why.
    assert!(
        err.contains("its plugin server had already ended: it did not answer within")
            && err.contains("of the run being cancelled and was killed"),
        "{err}"
    );
    for pid in pids {
        assert!(!alive(pid), "service process {pid} was left running");
    }
    assert!(tagged(sandbox.path().to_str().unwrap()).is_empty());
    assert!(sandbox.results("cancelled").join("result.json").is_file());
}

#[test]
fn a_crash_in_a_plugins_own_thread_fails_its_instance() {
    let sandbox = Sandbox::new();
    let output = run(
        &sandbox,
        &experiment(
            "in-thread",
            "plugin = \"localhost\"",
            "\n[[execution]]\nplugin = \"misbehave_exec\"\nat = \"start_monitoring\"\nhow = \"segfault-in-thread\"\nservice = \"server\"\n",
        ),
        &["--isolate"],
    );
    let err = stderr(&output);
    assert_eq!(code(&output), 3, "{err}");
    // Whether the crash came before or after `start_monitoring` answered, the instance's
    // calls name it.
    assert!(
        err.contains("plugin `misbehave_exec` (misbehave_exec) failed while")
            && err.contains("was killed by SIGSEGV"),
        "{err}"
    );
    let results = sandbox.results("in-thread");
    for pid in local_service_pids(&results) {
        assert!(!alive(pid), "service process {pid} was left running");
    }
    assert!(results.join("result.json").is_file());
}

#[test]
fn an_isolated_plugins_logs_and_events_reach_the_host_as_in_process() {
    let sandbox = Sandbox::new();
    let output = run(
        &sandbox,
        &echo_experiment(
            "logs",
            "[[report]]\nplugin = \"logger\"\nmessage = \"hello from the plugin\"\n",
        ),
        &["--isolate"],
    );
    let err = stderr(&output);
    assert_eq!(code(&output), 0, "{err}");
    let start = err
        .lines()
        .find(|l| l.contains("logger starting: hello from the plugin"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        start.contains("INFO") && start.contains("plugin=\"logger\""),
        "{start}"
    );
    let custom = events(&sandbox.results("logs"))
        .into_iter()
        .find(|e| e["event"] == "custom")
        .expect("the plugin's event");
    assert_eq!(custom["source"], "logger");
    assert_eq!(custom["data"]["message"], "hello from the plugin");
}

#[test]
fn the_call_limit_grows_with_the_slowdown_of_the_execution_environments() {
    let sandbox = Sandbox::new();
    let output = run(
        &sandbox,
        &experiment(
            "slow",
            "plugin = \"misbehave_net\"\nat = \"deploy_service\"\nhow = \"hang\"\nservice = \"client\"",
            "\n[[execution]]\nplugin = \"misbehave_exec\"\nslowdown = 2.0\n",
        ),
        &["--isolate"],
    );
    let err = stderr(&output);
    assert_eq!(code(&output), 3, "{err}");
    // (1 s timeout + 2 s readiness) × 2 + 5 s = 11 s, doubled for the slowdown.
    assert!(
        err.contains("failed while deploying service `client`: its plugin server did not answer within 22s and was killed"),
        "{err}"
    );
}

/// A plugin server opens its file only if it is still the file whose manifest the host read:
/// a plugin rebuilt (or replaced) between loading the registry and starting its server is
/// refused there, exactly as the in-process path refuses it.
#[test]
fn a_server_refuses_a_file_changed_since_its_manifest_was_read() {
    use panther_host::{
        isolate::{CallLimit, Isolation, Placement},
        registry::{LoadOptions, Registry},
    };
    let sandbox = Sandbox::new();
    let dir = sandbox.plugin_dir("plugins", &[build_dir().join("libpanther_plugin_json.so")]);
    let mut options = LoadOptions::new(std::slice::from_ref(&dir));
    options.cache_dir = Some(sandbox.cache_dir());
    options.probe = Ok(build_dir().join("panther-plugin-probe"));
    let registry = Registry::load_with(&options);
    let json = registry
        .get(panther_host::api::PluginKind::Reporter, "json")
        .expect("json is found")
        .clone();
    let isolation = Isolation::new(true, &[]).with_server(host_bin());
    let placement = isolation.placement(
        &json.path,
        &CallLimit::new(std::time::Duration::from_secs(30)),
    );
    assert!(matches!(placement, Placement::Isolated(_)));
    let config = serde_json::json!({ "path": "result.json" });

    // Unchanged: the server answers.
    let claims = json
        .claims_in(&placement, &config)
        .expect("claims of an unchanged file");
    assert!(!claims.is_empty(), "json claims its report file");

    drop(isolation);

    // Replaced by a copy of the same bytes (as a rebuild replaces it): a new server refuses it.
    let file = dir.join("libpanther_plugin_json.so");
    let copy = dir.join("rebuilt.tmp");
    std::fs::copy(&file, &copy).unwrap();
    std::fs::rename(&copy, &file).unwrap();
    let fresh = Isolation::new(true, &[]).with_server(host_bin());
    let placement = fresh.placement(
        &json.path,
        &CallLimit::new(std::time::Duration::from_secs(30)),
    );
    let err = json
        .claims_in(&placement, &config)
        .expect_err("a changed file is refused");
    assert!(
        err.to_string()
            .contains("changed since its manifest was read"),
        "{err}"
    );
}
