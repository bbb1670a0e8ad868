//! Inputs written to break the host: names that are paths, unprintable names, values that
//! overflow, NUL bytes, long dependency chains, huge names. `check` refuses each with its
//! location (and `run` refuses the same file, creating nothing), or the input works.

use std::{
    path::Path,
    process::Output,
    time::{Duration, Instant},
};

use crate::support::{code, echo_experiment, stderr, stdout, Sandbox};

/// `check` and `run` both refuse `file` (exit 2) with every `expected` part in their
/// message, and `run` creates no results folder.
fn refused(sandbox: &Sandbox, file: &Path, expected: &[String]) {
    for command in ["check", "run"] {
        let output = sandbox.host(&[command, file.to_str().unwrap()]);
        let err = stderr(&output);
        assert_eq!(code(&output), 2, "{command}: {err}");
        for part in expected {
            assert!(
                err.contains(part.as_str()),
                "{command}: expected `{part}` in:\n{err}"
            );
        }
        assert!(
            !sandbox.path().join("results").exists(),
            "{command} created a results folder"
        );
    }
}

/// `file:line:column` of the first occurrence of `needle` in `text` (1-based, as the host
/// prints it).
fn at(file: &str, text: &str, needle: &str) -> String {
    let offset = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not in {text}"));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = offset - before.rfind('\n').map_or(0, |nl| nl + 1) + 1;
    format!("{file}:{line}:{column}")
}

/// A one-service experiment with `body` appended to the service.
fn one_service(name: &str, body: &str) -> String {
    format!(
        "[experiment]\nname = \"{name}\"\n\n[[service]]\nname = \"only\"\ncommand = [\"/bin/true\"]\nrole = \"client\"\n{body}\n"
    )
}

#[test]
fn every_path_escaping_name_is_refused_with_its_location() {
    let sandbox = Sandbox::new();
    let outside = sandbox.path().join("outside");
    let escape = format!("{}/x", outside.display());
    let text = format!(
        r#"[experiment]
name = "../x"

[[service]]
name = "{escape}"
command = ["/bin/true"]

[[service]]
name = "../../../../outside/y"
command = ["/bin/true"]

[[service]]
name = ".."
command = ["/bin/true"]
role = "client"

[[execution]]
plugin = "resource_metrics"
name = "../m"

[[report]]
plugin = "json"
path = "../x.json"

[[report]]
plugin = "junit"
path = "/tmp/panther-escape-{pid}.xml"

[[report]]
plugin = "json"
name = "overwrite"
path = "./events.jsonl"
"#,
        pid = std::process::id()
    );
    let file = sandbox.write("escape.toml", &text);
    let f = "escape.toml";
    refused(
        &sandbox,
        &file,
        &[
            format!(
                "{}: the experiment name `../x` contains `/`; a name cannot be a path",
                at(f, &text, "\"../x\"")
            ),
            format!("{}: the service name `", at(f, &text, &format!("\"{escape}"))),
            format!(
                "{}: the service name `../../../../outside/y` contains `/`",
                at(f, &text, "\"../../../../outside")
            ),
            format!(
                "{}: the service name `..` cannot be `.` or `..`",
                at(f, &text, "\"..\"")
            ),
            format!(
                "{}: the execution_environment instance name `../m` contains `/`",
                at(f, &text, "[[execution]]")
            ),
            format!(
                "{}: `json` (json): the report path `../x.json` contains `..`; it must stay inside the results folder",
                at(f, &text, "[[report]]\nplugin = \"json\"")
            ),
            format!(
                "{}: `junit` (junit): the report path `/tmp/panther-escape-{}.xml` is absolute",
                at(f, &text, "[[report]]\nplugin = \"junit\""),
                std::process::id()
            ),
            format!(
                "{}: `overwrite` (json): the report path `./events.jsonl` is where the host writes `events.jsonl`",
                at(f, &text, "[[report]]\nplugin = \"json\"\nname = \"overwrite\"")
            ),
        ],
    );
    assert!(!outside.exists());
    assert!(!sandbox.path().join("x").exists());
    assert!(!sandbox.path().join("x.json").exists());
    assert!(!Path::new(&format!("/tmp/panther-escape-{}.xml", std::process::id())).exists());
}

#[test]
fn empty_unprintable_and_overlong_names_are_refused() {
    let sandbox = Sandbox::new();
    let long = "n".repeat(129);
    let text = format!(
        r#"[experiment]
name = "multi\nline"

[[service]]
name = ""
command = ["/bin/true"]

[[service]]
name = "red\u001b[31m"
command = ["/bin/true"]

[[service]]
name = "{long}"
command = ["/bin/true"]

[[service]]
name = "ok"
command = ["./clear\u001b[2J"]
role = "client"
depends_on = ["bell\u0007"]
"#
    );
    let file = sandbox.write("names.toml", &text);
    let f = "names.toml";
    let output = sandbox.host(&["check", file.to_str().unwrap()]);
    let err = stderr(&output);
    assert_eq!(code(&output), 2, "{err}");
    for expected in [
        format!(
            "{}: the experiment name `multi\\nline` contains the unprintable character '\\n'",
            at(f, &text, "\"multi")
        ),
        format!(
            "{}: the service name `` is empty",
            at(f, &text, "\"\"\ncommand")
        ),
        format!(
            "{}: the service name `red\\u{{1b}}[31m` contains the unprintable character '\\u{{1b}}'",
            at(f, &text, "\"red")
        ),
        format!(
            "{}: the service name `{}… (129 bytes)` is 129 bytes long; a name has at most 128",
            at(f, &text, &format!("\"{long}")),
            "n".repeat(40)
        ),
        format!(
            "{}: service `ok`: the `depends_on` entry `bell\\u{{7}}` contains the unprintable character '\\u{{7}}'",
            at(f, &text, "\"bell")
        ),
        format!(
            "{}: service `ok`: program `./clear\\u{{1b}}[2J` not found",
            at(f, &text, "[[service]]\nname = \"ok\"")
        ),
    ] {
        assert!(err.contains(&expected), "expected `{expected}` in:\n{err}");
    }
    // Nothing unprintable reaches the terminal.
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
    refused(&sandbox, &file, &["6 problems".to_string()]);
}

#[test]
fn values_that_would_crash_a_run_are_refused_at_check() {
    let sandbox = Sandbox::new();
    let text = r#"[experiment]
name = "values"
timeout = "18446744073709551615s"

[[service]]
name = "server"
command = ["/bin/sle\u0000ep", "1"]
cwd = "sub\u0000dir"
env = { "A=B" = "1", "" = "2", GOOD = "nul\u0000value" }
ready = { tcp = 0, timeout = "0s" }

[[service]]
name = "client"
command = ["/bin/true"]
role = "client"
expect_exit = 300
ready = { delay = "100000days" }
"#;
    let file = sandbox.write("values.toml", text);
    let f = "values.toml";
    refused(
        &sandbox,
        &file,
        &[
            format!(
                "{}: `timeout` is longer than 30days, the longest accepted",
                at(f, text, "\"18446744073709551615s\"")
            ),
            format!(
                "{}: service `server`: `command` argument 0 contains a NUL byte",
                at(f, text, "[\"/bin/sle")
            ),
            format!(
                "{}: service `server`: `cwd` contains a NUL byte",
                at(f, text, "\"sub")
            ),
            format!(
                "{}: service `server`: `env` key `A=B`: an environment variable's name cannot contain `=`",
                at(f, text, "\"A=B\"")
            ),
            format!(
                "{}: service `server`: `env` key ``: an environment variable needs a name",
                at(f, text, "\"\" = ")
            ),
            format!(
                "{}: service `server`: `env` value of `GOOD` contains a NUL byte",
                at(f, text, "\"nul")
            ),
            format!(
                "{}: service `server`: `ready.tcp` is 0, which no server listens on",
                at(f, text, "0, timeout")
            ),
            format!(
                "{}: `ready.timeout` must be more than 0s",
                at(f, text, "\"0s\"")
            ),
            format!(
                "{}: service `client`: `expect_exit` is 300; a process exits with a code from 0 to 255",
                at(f, text, "300")
            ),
            format!(
                "{}: `ready.delay` is longer than 30days, the longest accepted",
                at(f, text, "\"100000days\"")
            ),
        ],
    );
}

#[test]
fn a_timeout_on_the_command_line_is_range_checked() {
    let sandbox = Sandbox::new();
    let file = sandbox.write("t.toml", &one_service("cli-timeout", ""));
    for value in ["18446744073709551615s", "0s"] {
        let output = sandbox.host(&["run", "--timeout", value, file.to_str().unwrap()]);
        assert_eq!(code(&output), 2, "{}", stderr(&output));
        assert!(
            stderr(&output).contains(&format!("invalid value '{value}' for '--timeout")),
            "{}",
            stderr(&output)
        );
    }
    assert!(!sandbox.path().join("results").exists());
}

/// Runs the host, failing the test if it has not ended after five minutes (a hang, not a speed
/// requirement).
fn host_within_five_minutes(sandbox: &Sandbox, args: &[&str]) -> Output {
    let mut child = sandbox
        .host_command(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("panther-host starts");
    // Read the pipes on threads so that a large output cannot block the host.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut v).ok();
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut v).ok();
        v
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("panther-host {args:?} did not end within five minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// `count` services, each depending on the one written after it.
fn backwards_chain(count: usize, cycle: bool) -> String {
    let mut text = String::from("[experiment]\nname = \"chain\"\n");
    for i in 0..count {
        text.push_str(&format!(
            "\n[[service]]\nname = \"s{i}\"\ncommand = [\"/bin/true\"]\nrole = \"client\"\n"
        ));
        if i + 1 < count {
            text.push_str(&format!("depends_on = [\"s{}\"]\n", i + 1));
        } else if cycle {
            text.push_str("depends_on = [\"s0\"]\n");
        }
    }
    text
}

#[test]
fn a_chain_of_30000_services_written_backwards_is_ordered() {
    let sandbox = Sandbox::new();
    let file = sandbox.write("chain.toml", &backwards_chain(30_000, false));
    let output = host_within_five_minutes(&sandbox, &["check", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        stdout(&output).contains("ok (30000 services"),
        "{}",
        stdout(&output)
    );

    let output = host_within_five_minutes(
        &sandbox,
        &[
            "run",
            "--dry-run",
            "--format",
            "json",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let names: Vec<&str> = plan[0]["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["spec"]["name"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..30_000).rev().map(|i| format!("s{i}")).collect();
    assert_eq!(names, expected);
}

#[test]
fn a_short_chain_written_backwards_runs_in_dependency_order() {
    let sandbox = Sandbox::new();
    let file = sandbox.write("chain.toml", &backwards_chain(5, false));
    let output = sandbox.host(&["run", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let deployed: Vec<String> = crate::support::events(&sandbox.results("chain"))
        .iter()
        .filter(|e| e["event"] == "service_deployed")
        .map(|e| e["service"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(deployed, ["s4", "s3", "s2", "s1", "s0"]);
}

#[test]
fn a_cycle_through_30000_services_is_reported_once() {
    let sandbox = Sandbox::new();
    let file = sandbox.write("cycle.toml", &backwards_chain(30_000, true));
    let output = host_within_five_minutes(&sandbox, &["check", file.to_str().unwrap()]);
    let err = stderr(&output);
    assert_eq!(code(&output), 2, "{}", &err[..err.len().min(2000)]);
    assert!(
        err.contains("1 problem in"),
        "{}",
        &err[..err.len().min(2000)]
    );
    assert!(
        err.contains("cycle.toml:4:1: dependency cycle: s0 -> s1 -> s2 -> "),
        "{}",
        &err[..err.len().min(2000)]
    );
    assert!(err.trim_end().ends_with("s29999 -> s0"));
}

#[test]
fn a_megabyte_name_is_refused_without_searching_for_a_suggestion() {
    let sandbox = Sandbox::new();
    let huge = "s".repeat(1 << 20);
    let mut text = backwards_chain(2_000, false);
    text.push_str(&format!(
        "\n[[service]]\nname = \"{huge}\"\ncommand = [\"/bin/true\"]\n\n[[service]]\nname = \"last\"\ncommand = [\"/bin/true\"]\ndepends_on = [\"{huge}\", \"s1x\"]\n"
    ));
    let file = sandbox.write("huge.toml", &text);
    let output = host_within_five_minutes(&sandbox, &["check", file.to_str().unwrap()]);
    let err = stderr(&output);
    assert_eq!(code(&output), 2, "{err}");
    assert!(
        err.contains(&format!(
            "the service name `{}… (1048576 bytes)` is 1048576 bytes long; a name has at most 128",
            "s".repeat(40)
        )),
        "{err}"
    );
    assert!(
        err.contains("service `last` depends on `s1x`, which is not defined (did you mean `s1`?)"),
        "{err}"
    );
    // The huge name is never printed whole.
    assert!(err.len() < 10_000, "{} bytes of errors", err.len());
}

#[test]
fn every_unknown_key_and_wrong_type_is_listed_at_once() {
    let sandbox = Sandbox::new();
    let text = r#"[experiment]
nmae = "x"
name = "typos"
timeout = 5

[[service]]
name = "a"
commnad = ["x"]
command = ["/bin/true"]
ready = { tcp = 1, hots = "x" }
limits.cpu = 2

[servce]
name = "b"
"#;
    let file = sandbox.write("typos.toml", text);
    let f = "typos.toml";
    refused(
        &sandbox,
        &file,
        &[
            "6 problems in".to_string(),
            format!(
                "{}: unknown field `limits`, expected one of `name`",
                at(f, text, "limits")
            ),
            format!(
                "{}: unknown field `nmae`, expected one of `name`",
                at(f, text, "nmae")
            ),
            format!(
                "{}: unknown field `commnad`, expected one of `name`, `command`",
                at(f, text, "commnad")
            ),
            format!(
                "{}: unknown field `hots`, expected one of `tcp`, `host`",
                at(f, text, "hots")
            ),
            format!(
                "{}: unknown field `servce`, expected one of `experiment`",
                at(f, text, "servce")
            ),
            format!(
                "{}: invalid type: integer `5`, expected a duration",
                at(f, text, "5\n")
            ),
        ],
    );

    let settings = sandbox.write(
        "settings.toml",
        "plugin_dir = [\"typo\"]\noutput = 3\n[scope]\ndisabel = [\"x\"]\n",
    );
    let output = sandbox.host(&[
        "--config",
        settings.to_str().unwrap(),
        "check",
        file.to_str().unwrap(),
    ]);
    let err = stderr(&output);
    assert_eq!(code(&output), 2, "{err}");
    for expected in [
        "settings.toml:1:1: unknown field `plugin_dir`, expected one of `plugin_dirs`, ",
        "settings.toml:2:10: invalid type: integer `3`",
        "settings.toml:4:1: unknown field `disabel`, expected one of `enable`, `disable`",
    ] {
        assert!(err.contains(expected), "expected `{expected}` in:\n{err}");
    }
}

#[test]
fn a_report_path_may_name_sub_folders() {
    let sandbox = Sandbox::new();
    let text = echo_experiment(
        "subfolders",
        "[[report]]\nplugin = \"json\"\npath = \"reports/run/result.json\"\n\n[[report]]\nplugin = \"junit\"\npath = \"./reports/junit.xml\"\n",
    );
    let file = sandbox.write("sub.toml", &text);
    let output = sandbox.host(&["run", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let results = sandbox.results("subfolders");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(results.join("reports/run/result.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json["status"], "passed");
    let xml = std::fs::read_to_string(results.join("reports/junit.xml")).unwrap();
    assert!(xml.contains("<testsuite name=\"subfolders\""), "{xml}");
}

#[test]
fn one_file_spelled_two_ways_is_one_claim() {
    let sandbox = Sandbox::new();
    let text = echo_experiment(
        "claims",
        "[[report]]\nplugin = \"json\"\npath = \"./result.json\"\n\n[[report]]\nplugin = \"junit\"\npath = \"result.json\"\n",
    );
    let file = sandbox.write("claims.toml", &text);
    refused(
        &sandbox,
        &file,
        &[format!(
            "{}: report `junit` claims file result.json, which `json` already claims",
            at("claims.toml", &text, "[[report]]\nplugin = \"junit\"")
        )],
    );
}

#[test]
fn an_experiment_built_in_code_cannot_write_outside_the_results_folder() {
    use std::sync::{atomic::AtomicBool, Arc};

    use panther_host::{context::RunServices, experiment, registry::Registry, run};

    let sandbox = Sandbox::new();
    let file = sandbox.write(
        "ok.toml",
        &one_service(
            "fine",
            "\n[[report]]\nplugin = \"json\"\npath = \"r/result.json\"",
        ),
    );
    let registry = Registry::load(&[crate::support::build_dir()]);
    let valid = experiment::load(&file, &registry).expect("a valid file");
    let results = sandbox.path().join("results");
    let options = || run::RunOptions {
        output_root: results.clone(),
        timeout: None,
        services: RunServices::new(Arc::new(AtomicBool::new(false))),
        observers: Vec::new(),
        outer_scopes: Vec::new(),
        isolation: Default::default(),
    };

    let mut escaping = valid.clone();
    escaping.name = "../escaped".into();
    let err = run::run(&registry, &escaping, options()).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("the experiment name `../escaped` contains `/`; a name cannot be a path"),
        "{err}"
    );
    let mut escaping = valid.clone();
    escaping.services[0].name = "/tmp/x".into();
    assert!(run::run(&registry, &escaping, options()).is_err());
    let mut escaping = valid.clone();
    escaping.reports[0].config["path"] = "../escaped.json".into();
    let err = run::run(&registry, &escaping, options()).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("`json` (json): the report path `../escaped.json` contains `..`; it must stay inside the results folder"),
        "{err}"
    );
    assert!(!sandbox.path().join("escaped").exists());
    assert!(!sandbox.path().join("escaped.json").exists());
    assert!(
        !results.exists(),
        "a refused run created its results folder"
    );

    let result = run::run(&registry, &valid, options()).expect("the valid experiment runs");
    assert_eq!(result.status, panther_host::api::RunStatus::Passed);
    assert!(result.output_dir.join("r/result.json").is_file());
}

#[test]
fn a_slowdown_that_is_not_a_factor_fails_the_run_cleanly() {
    // An execution environment's slowdown is plugin code: a negative, zero or absurd factor
    // must not reach the timeout arithmetic (which panics on some), in process or isolated.
    // (NaN and infinity cannot be written through a configuration: JSON has neither.)
    let sandbox = Sandbox::new();
    for (i, value) in ["-2.0", "0.0", "1e300"].iter().enumerate() {
        let file = sandbox.write(
            &format!("slow{i}.toml"),
            &echo_experiment(
                &format!("slow{i}"),
                &format!("[[execution]]\nplugin = \"tag\"\nlabel = \"x\"\nslowdown = {value}\n"),
            ),
        );
        for isolate in [false, true] {
            let mut args = vec!["run", file.to_str().unwrap()];
            if isolate {
                args.insert(0, "--isolate");
            }
            let output = sandbox.host(&args);
            let err = stderr(&output);
            assert_eq!(
                code(&output),
                3,
                "slowdown {value}, isolated {isolate}: {err}"
            );
            assert!(
                err.contains("failed while reporting its slowdown: it reported")
                    && err.contains("but a slowdown is a factor from 1 to 1000"),
                "slowdown {value}, isolated {isolate}: {err}"
            );
        }
    }
}
