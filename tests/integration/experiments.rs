//! Whole experiments: the quickstart, results folders, verdicts and exit codes, and bad
//! experiment files that must start nothing.

use serde_json::Value;

use crate::support::*;

#[test]
fn the_quickstart_passes_and_its_results_folder_holds_everything() {
    let sandbox = Sandbox::new();
    let quickstart = root().join("examples/quickstart.toml");
    let output = sandbox.host(&["run", quickstart.to_str().unwrap(), "--output", "results"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        stdout(&output).is_empty(),
        "reports went to files, stdout stays empty"
    );
    assert!(
        stderr(&output).contains("quickstart: passed"),
        "{}",
        stderr(&output)
    );

    let results = sandbox.results("quickstart");
    // `{port:echo}` became a free port, recorded in ports.json, used by server and client.
    let ports: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("ports.json")).unwrap())
            .unwrap();
    let port = ports["echo"].as_u64().expect("the echo port was picked");
    assert_ne!(port, 0);
    let server_out = std::fs::read_to_string(results.join("services/server.stdout")).unwrap();
    assert!(
        server_out.starts_with(&format!("listening on 127.0.0.1:{port}")),
        "{server_out}"
    );
    let client_out = std::fs::read_to_string(results.join("services/client.stdout")).unwrap();
    assert_eq!(
        client_out
            .lines()
            .filter(|l| *l == "echoed \"panther\"")
            .count(),
        3,
        "{client_out}"
    );

    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("result.json")).unwrap())
            .unwrap();
    assert_eq!(result["status"], "passed");
    assert_eq!(result["network"], "localhost");
    let services: Vec<&str> = result["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["server", "client"], "dependency order");
    assert_eq!(
        result["services"][1]["state"],
        serde_json::json!({ "state": "exited", "code": 0 })
    );

    let junit = std::fs::read_to_string(results.join("junit.xml")).unwrap();
    assert!(
        junit.contains(
            "<testsuite name=\"quickstart\" tests=\"2\" disabled=\"0\" errors=\"0\" failures=\"0\""
        ),
        "{junit}"
    );

    let kinds: Vec<String> = events(&results)
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    let expected_order = [
        "experiment_started",
        "environment_setup",
        "command_executed",
        "service_deployed",
        "service_ready",
        "service_deployed",
        "service_exited",
        "teardown",
        "report_written",
        "experiment_finished",
    ];
    let mut position = 0;
    for kind in expected_order {
        position += kinds[position..]
            .iter()
            .position(|k| k == kind)
            .unwrap_or_else(|| panic!("no {kind} after position {position} in {kinds:?}"));
    }
    assert_eq!(kinds.last().unwrap(), "experiment_finished");

    // Instances are torn down newest first: the network environment (released early), then
    // the reporters in reverse order of creation.
    let torn_down: Vec<String> = events(&results)
        .iter()
        .filter(|e| e["event"] == "teardown")
        .map(|e| e["what"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        torn_down,
        [
            "localhost in experiment:quickstart",
            "junit in experiment:quickstart",
            "json in experiment:quickstart"
        ]
    );
}

#[test]
fn a_failing_client_fails_the_run_with_exit_code_1_and_a_failure_in_the_report() {
    let sandbox = Sandbox::new();
    let port = free_port();
    let file = sandbox.write(
        "e.toml",
        &format!(
            r#"[experiment]
name = "refused"

[[service]]
name = "client"
command = ["{client}", "127.0.0.1:{port}"]
role = "client"

[[report]]
plugin = "junit"
path = "-"
"#,
            client = program("echo-client")
        ),
    );
    let output = sandbox.host(&["run", file.to_str().unwrap()]);
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let junit = stdout(&output);
    assert!(junit.contains("failures=\"1\""), "{junit}");
    assert!(
        junit.contains("<failure message=\"exited with code 1, expected 0\">"),
        "{junit}"
    );
    assert!(
        stderr(&output).contains("refused: FAILED"),
        "{}",
        stderr(&output)
    );
    let client_err =
        std::fs::read_to_string(sandbox.results("refused").join("services/client.stderr")).unwrap();
    assert!(client_err.contains("cannot connect"), "{client_err}");

    // The same failure, expected, passes.
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("role = \"client\"", "role = \"client\"\nexpect_exit = 1");
    let file = sandbox.write("expected.toml", &text);
    let output = sandbox.host(&["run", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
}

/// Checks that `check` and `run` both refuse the file with `expected` and start nothing.
fn refused(name: &str, toml_text: &str, expected: &[&str]) {
    let sandbox = Sandbox::new();
    let file = sandbox.write(&format!("{name}.toml"), toml_text);
    for command in ["check", "run"] {
        let output = sandbox.host(&[command, file.to_str().unwrap()]);
        assert_eq!(code(&output), 2, "{command}: {}", stderr(&output));
        let err = stderr(&output);
        for part in expected {
            assert!(
                err.contains(part),
                "{command}: expected `{part}` in:\n{err}"
            );
        }
        assert!(
            !sandbox.path().join("results").exists(),
            "{command} started something"
        );
    }
}

#[test]
fn an_unknown_key_is_reported_with_its_position_and_the_allowed_keys() {
    let text = echo_experiment("typo", "")
        .replace("role = \"client\"", "role = \"client\"\ncommnad = [\"x\"]");
    let line = text.lines().position(|l| l.starts_with("commnad")).unwrap() + 1;
    refused(
        "typo",
        &text,
        &[&format!("typo.toml:{line}:1: unknown field `commnad`, expected one of `name`, `command`, `cwd`, `env`, `depends_on`, `ready`, `role`, `expect_exit`, `enable`, `disable`")],
    );
}

#[test]
fn a_wrong_type_is_reported_with_its_position() {
    let text = echo_experiment("types", "").replace("timeout = \"20s\"", "timeout = 20");
    refused(
        "types",
        &text,
        &["types.toml:3:11: invalid type: integer `20`, expected a duration"],
    );
}

#[test]
fn every_semantic_problem_is_listed_at_once() {
    let text = r#"[experiment]
name = "many"

[[service]]
name = "a"
command = ["./no-such-program"]
depends_on = ["b"]

[[service]]
name = "b"
command = ["/bin/true"]
depends_on = ["a", "c"]
ready = { tcp = 1, log = "x" }

[[report]]
plugin = "jsno"

[[report]]
plugin = "json"
pretty = "yes"
"#;
    refused(
        "many",
        text,
        &[
            "6 problems in",
            "many.toml:4:1: service `a`: program `./no-such-program` not found",
            "many.toml:9:1: service `b`: `ready` needs exactly one of `tcp`, `log`, `file`, `delay` (found 2)",
            "many.toml:9:1: service `b` depends on `c`, which is not defined",
            "no reporter plugin named `jsno` (did you mean `json`?)",
            "`json` (json): at `pretty`: \"yes\" is not of type \"boolean\"",
            "dependency cycle: a -> b -> a",
        ],
    );
}

#[test]
fn arguments_reach_the_program_verbatim() {
    let sandbox = Sandbox::new();
    let args = [
        "; rm -rf keep",
        "$(touch pwned)",
        "`touch pwned2`",
        "a b",
        "*",
        "'quoted'",
        "\"dq\"",
    ];
    let toml_args: Vec<String> = args
        .iter()
        .map(|a| toml::Value::String(a.to_string()).to_string())
        .collect();
    std::fs::create_dir(sandbox.path().join("keep")).unwrap();
    let file = sandbox.write(
        "e.toml",
        &format!(
            "[experiment]\nname = \"verbatim\"\n\n[[service]]\nname = \"printer\"\ncommand = [\"printf\", \"%s\\n\", {}]\nrole = \"client\"\n",
            toml_args.join(", ")
        ),
    );
    let output = sandbox.host(&["run", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let printed =
        std::fs::read_to_string(sandbox.results("verbatim").join("services/printer.stdout"))
            .unwrap();
    assert_eq!(printed.lines().collect::<Vec<_>>(), args);
    assert!(sandbox.path().join("keep").is_dir());
    assert!(!sandbox.path().join("pwned").exists() && !sandbox.path().join("pwned2").exists());
}

#[test]
fn a_dry_run_prints_the_wrapped_plan_and_runs_nothing() {
    let sandbox = Sandbox::new();
    let file = sandbox.write(
        "e.toml",
        &echo_experiment(
            "dry",
            "[[execution]]\nplugin = \"tag\"\nlabel = \"seen\"\nslowdown = 2.5\n",
        ),
    );
    let output = sandbox.host(&["run", "--dry-run", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let plan = stdout(&output);
    assert!(plan.starts_with("experiment dry on localhost"), "{plan}");
    assert!(
        plan.contains("1. server (server)") && plan.contains("2. client (client)"),
        "{plan}"
    );
    assert!(plan.contains("wrapped: tag (slowdown ×2.5)"), "{plan}");
    assert!(plan.contains("command: WRAPPED_BY=seen "), "{plan}");
    assert!(!sandbox.path().join("results").exists());

    let output = sandbox.host(&[
        "run",
        "--dry-run",
        "--format",
        "json",
        file.to_str().unwrap(),
    ]);
    let plan: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(plan[0]["services"][1]["spec"]["depends_on"][0], "server");
    assert_eq!(
        plan[0]["services"][0]["spec"]["ready"]["timeout"], "12s 500ms",
        "readiness scaled by the slowdown"
    );
}

#[test]
fn check_accepts_a_valid_file() {
    let sandbox = Sandbox::new();
    let output = sandbox.host(&[
        "check",
        root().join("examples/quickstart.toml").to_str().unwrap(),
    ]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(stdout(&output).contains("quickstart.toml: ok (2 services, network localhost, 0 execution environments, 2 reports)"), "{}", stdout(&output));
}
