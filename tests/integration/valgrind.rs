//! `memcheck` and `helgrind` with the real valgrind, on C programs with one known defect each
//! (`tests/fixtures/programs/valgrind_*.c`), compiled by the tests with `cc -g -O0 -pthread`
//! and run as services through `panther-host run`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::*;

/// Compiles `tests/fixtures/programs/<program>.c` into the sandbox; returns the executable.
fn compile(sandbox: &Sandbox, program: &str) -> String {
    let exe = sandbox.path().join(program);
    compile_fixture_program(program, &exe);
    exe.display().to_string()
}

/// Returns `expected` after checking that `/* marker */` sits on that line of the program,
/// so that an edit to a program cannot silently shift what the tests expect.
fn line(program: &str, marker: &str, expected: u64) -> u64 {
    let text = std::fs::read_to_string(fixture_program(program)).unwrap();
    let found = text
        .lines()
        .position(|l| l.contains(&format!("/* {marker} */")));
    assert_eq!(
        found.map(|i| i as u64 + 1),
        Some(expected),
        "{marker} in {program}.c"
    );
    expected
}

/// One client-role service `prog` running `exe`, and `extra` (the execution section).
fn client_experiment(name: &str, exe: &str, extra: &str) -> String {
    format!(
        r#"[experiment]
name = "{name}"
timeout = "30s"

[[service]]
name = "prog"
command = ["{exe}"]
role = "client"

{extra}
"#
    )
}

/// Runs an experiment file; returns the output and the run's results folder.
fn run(sandbox: &Sandbox, name: &str, experiment: &str) -> (std::process::Output, PathBuf) {
    let file = sandbox.write(&format!("{name}.toml"), experiment);
    let output = sandbox.host(&["run", file.to_str().unwrap()]);
    let results = sandbox.results(name);
    (output, results)
}

/// Asserts a frame is in the program's own source at `function (file:line)`.
fn assert_frame(frame: &Value, function: &str, program: &str, line: u64) {
    assert_eq!(frame["fn"], function, "{frame:#}");
    assert_eq!(frame["file"], format!("{program}.c"), "{frame:#}");
    assert_eq!(frame["line"], line, "{frame:#}");
    let dir = frame["dir"].as_str().unwrap_or_default();
    assert!(dir.ends_with("tests/fixtures/programs"), "{frame:#}");
}

/// The innermost frame of a stack in the program's own file.
fn own_frame<'a>(stack: &'a Value, program: &str) -> &'a Value {
    stack["frames"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["file"] == format!("{program}.c"))
        .unwrap_or_else(|| panic!("no frame in {program}.c: {stack:#}"))
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

#[test]
fn memcheck_reports_an_invalid_read_at_its_line() {
    let sandbox = Sandbox::new();
    let program = "valgrind_invalid_read";
    let exe = compile(&sandbox, program);
    let (output, results) = run(
        &sandbox,
        "invalid-read",
        &client_experiment(
            "invalid-read",
            &exe,
            "[[execution]]\nplugin = \"memcheck\"\n",
        ),
    );
    // No thresholds: memcheck reports, the service passes.
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let data = monitoring(&results, "prog", "memcheck");
    assert_eq!(data["tool"], "memcheck");
    assert_eq!(data["truncated"], false);
    assert_eq!(data["finished"], true);
    assert_eq!(data["violations"], serde_json::json!([]));
    assert_eq!(data["summary"]["errors"], 1, "{data:#}");
    let errors = data["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "exactly one error: {data:#}");
    let error = &errors[0];
    assert_eq!(error["kind"], "InvalidRead");
    assert_eq!(error["category"], "memory_error");
    assert_eq!(error["what"], "Invalid read of size 4");
    assert_eq!(
        error["location"],
        "read_past_end (valgrind_invalid_read.c:7)"
    );
    let access = &error["stacks"][0]["frames"];
    assert_frame(
        &access[0],
        "read_past_end",
        program,
        line(program, "INVALID_READ_LINE", 7),
    );
    assert_frame(&access[1], "main", program, line(program, "CALL_LINE", 17));
    let block = &error["stacks"][1];
    assert!(
        block["intro"]
            .as_str()
            .unwrap()
            .ends_with(" is 0 bytes after a block of size 16 alloc'd"),
        "{block:#}"
    );
    assert_frame(
        own_frame(block, program),
        "main",
        program,
        line(program, "ALLOC_LINE", 12),
    );

    // The process and the raw files.
    let process = &data["processes"][0];
    assert_eq!(process["pid"], error["pid"]);
    assert!(process["fatal_signal"].is_null());
    assert_eq!(process["command"]["exe"], exe);
    let dir = results.join("monitoring/prog/memcheck");
    assert_eq!(
        strings(&data["raw"]["xml"]),
        [dir.join("valgrind.xml").to_str().unwrap()]
    );
    assert!(dir.join("valgrind.xml").is_file() && dir.join("valgrind.log").is_file());
}

#[test]
fn memcheck_fails_a_service_leaking_over_its_threshold() {
    let sandbox = Sandbox::new();
    let program = "valgrind_leak";
    let exe = compile(&sandbox, program);
    let (output, results) = run(
        &sandbox,
        "leak",
        &client_experiment(
            "leak",
            &exe,
            "[[execution]]\nplugin = \"memcheck\"\nmax_definitely_lost_bytes = 0\n\n\
             [[report]]\nplugin = \"json\"\n",
        ),
    );
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let reason = format!(
        "memcheck: 1234 bytes definitely lost in 1 block, at most 0 allowed; first at leak_it \
         (valgrind_leak.c:{})",
        line(program, "LEAK_LINE", 7)
    );
    assert!(stderr(&output).contains(&reason), "{}", stderr(&output));

    let data = monitoring(&results, "prog", "memcheck");
    assert_eq!(
        strings(&data["violations"]),
        [reason.trim_start_matches("memcheck: ")]
    );
    assert_eq!(
        data["summary"]["leaks"]["definitely_lost"],
        serde_json::json!({ "bytes": 1234, "blocks": 1 })
    );
    let leak = &data["errors"][0];
    assert_eq!(leak["kind"], "Leak_DefinitelyLost");
    assert_eq!(
        (&leak["leaked_bytes"], &leak["leaked_blocks"]),
        (&1234.into(), &1.into())
    );
    assert_frame(
        own_frame(&leak["stacks"][0], program),
        "leak_it",
        program,
        7,
    );

    // The program itself exited 0: the verdict is memcheck's.
    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("result.json")).unwrap())
            .unwrap();
    let service = &result["services"][0];
    assert_eq!(
        service["state"],
        serde_json::json!({ "state": "exited", "code": 0 })
    );
    assert_eq!(service["passed"], false);
    assert_eq!(service["message"], reason);
}

#[test]
fn helgrind_reports_both_stacks_of_a_data_race() {
    let sandbox = Sandbox::new();
    let program = "valgrind_race";
    let exe = compile(&sandbox, program);
    let (output, results) = run(
        &sandbox,
        "race",
        &client_experiment("race", &exe, "[[execution]]\nplugin = \"helgrind\"\n"),
    );
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let data = monitoring(&results, "prog", "helgrind");
    assert_eq!(data["tool"], "helgrind");
    let races = data["errors"].as_array().unwrap();
    assert!(!races.is_empty(), "{data:#}");
    let race_line = line(program, "RACE_LINE", 10);
    for race in races {
        assert_eq!(race["kind"], "Race");
        let stacks = race["stacks"].as_array().unwrap();
        assert_eq!(stacks.len(), 2, "the access and the one it conflicts with");
        let (now, before) = (&stacks[0], &stacks[1]);
        let mut threads = [
            now["thread"].as_u64().unwrap(),
            before["thread"].as_u64().unwrap(),
        ];
        assert_eq!(race["thread"], threads[0]);
        assert!(race["what"].as_str().unwrap().ends_with(&format!(
            " of size 4 at {} by thread #{}",
            address(race),
            threads[0]
        )));
        assert!(before["intro"]
            .as_str()
            .unwrap()
            .ends_with(&format!(" of size 4 by thread #{}", threads[1])));
        threads.sort_unstable();
        assert_eq!(threads, [2, 3], "the two created threads race");
        assert_frame(&now["frames"][0], "bump", program, race_line);
        assert_frame(&before["frames"][0], "bump", program, race_line);
    }
    // Where threads #2 and #3 were created.
    let threads = data["processes"][0]["threads"].as_array().unwrap();
    for (number, marker, at) in [(2, "CREATE_A_LINE", 17), (3, "CREATE_B_LINE", 18)] {
        let thread = threads.iter().find(|t| t["thread"] == number).unwrap();
        let stack = serde_json::json!({ "frames": thread["created_at"] });
        assert_frame(
            own_frame(&stack, program),
            "main",
            program,
            line(program, marker, at),
        );
    }
}

/// The address in "Possible data race during write of size 4 at 0x10C02C by thread #3".
fn address(race: &Value) -> &str {
    let what = race["what"].as_str().unwrap();
    what.split(" at ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap()
}

#[test]
fn helgrind_fails_a_lock_order_inversion() {
    let sandbox = Sandbox::new();
    let program = "valgrind_lock_order";
    let exe = compile(&sandbox, program);
    let (output, results) = run(
        &sandbox,
        "lock-order",
        &client_experiment(
            "lock-order",
            &exe,
            "[[execution]]\nplugin = \"helgrind\"\nmax_lock_order_violations = 0\n",
        ),
    );
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let inner = line(program, "BA_INNER_LINE", 22);
    let reason = format!(
        "helgrind: 1 lock order violation, at most 0 allowed; first at second_then_first \
         (valgrind_lock_order.c:{inner})"
    );
    assert!(stderr(&output).contains(&reason), "{}", stderr(&output));

    let data = monitoring(&results, "prog", "helgrind");
    let errors = data["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{data:#}");
    let error = &errors[0];
    assert_eq!(error["kind"], "LockOrder");
    assert_eq!(error["category"], "lock_order");
    assert_eq!(error["thread"], 3);
    let what = error["what"].as_str().unwrap();
    assert!(
        what.starts_with("Thread #3: lock order \"0x") && what.ends_with("\" violated"),
        "{what}"
    );
    let outer = line(program, "AB_OUTER_LINE", 11);
    let ab_inner = line(program, "AB_INNER_LINE", 12);
    let expected = [
        ("", "second_then_first", inner),
        (
            "Required order was established by acquisition of lock at 0x",
            "first_then_second",
            outer,
        ),
        (
            "followed by a later acquisition of lock at 0x",
            "first_then_second",
            ab_inner,
        ),
        ("Lock at 0x", "first_then_second", outer),
        ("Lock at 0x", "first_then_second", ab_inner),
    ];
    let stacks = error["stacks"].as_array().unwrap();
    assert_eq!(stacks.len(), expected.len(), "{error:#}");
    for (stack, (intro, function, at)) in stacks.iter().zip(expected) {
        let text = stack["intro"].as_str().unwrap_or_default();
        assert!(
            text.starts_with(intro),
            "{text:?} should start with {intro:?}"
        );
        assert_frame(own_frame(stack, program), function, program, at);
    }
}

#[test]
fn memcheck_on_the_echo_client_passes() {
    let sandbox = Sandbox::new();
    let file = sandbox.write(
        "e.toml",
        &echo_experiment(
            "memcheck-echo",
            "[[execution]]\nplugin = \"memcheck\"\nservices = [\"client\"]\nmax_errors = 0\n",
        ),
    );
    let output = sandbox.host(&["run", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let results = sandbox.results("memcheck-echo");
    let data = monitoring(&results, "client", "memcheck");
    assert_eq!(data["summary"]["errors"], 0, "{data:#}");
    assert_eq!(data["finished"], true);
    assert_eq!(data["truncated"], false);
    let exe = data["processes"][0]["command"]["exe"].as_str().unwrap();
    assert!(exe.ends_with("/echo-client"), "{exe}");
    assert_eq!(
        std::fs::read_to_string(results.join("services/client.stdout")).unwrap(),
        "echoed \"hello\"\n"
    );
    // Only the client ran under valgrind.
    assert!(!results.join("monitoring/server/memcheck.json").exists());
}

#[test]
fn check_refuses_two_valgrind_tools_on_one_service() {
    let sandbox = Sandbox::new();
    let both = "[[execution]]\nplugin = \"memcheck\"\n\n[[execution]]\nplugin = \"helgrind\"\n";
    let file = sandbox.write("both.toml", &echo_experiment("both", both));
    let output = sandbox.host(&["check", file.to_str().unwrap()]);
    assert_eq!(code(&output), 2, "{}", stdout(&output));
    let err = stderr(&output);
    for service in ["server", "client"] {
        assert!(
            err.contains(&format!("on service `{service}` ({}:", file.display())),
            "{err}"
        );
    }
    assert!(
        err.contains(
            "`helgrind` cannot run with `memcheck`: `memcheck` declares it cannot run with \
             `valgrind` plugins, and `helgrind` is one"
        ),
        "{err}"
    );
    assert!(!sandbox.path().join("results").exists());

    // One tool per service is fine.
    let split = "[[execution]]\nplugin = \"memcheck\"\nservices = [\"client\"]\n\n\
                 [[execution]]\nplugin = \"helgrind\"\nservices = [\"server\"]\n";
    let file = sandbox.write("split.toml", &echo_experiment("split", split));
    let output = sandbox.host(&["check", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
}

#[test]
fn check_refuses_options_the_plugin_manages() {
    let sandbox = Sandbox::new();
    let file = sandbox.write(
        "e.toml",
        &echo_experiment(
            "options",
            "[[execution]]\nplugin = \"memcheck\"\nextra_args = [\"--verbose --verbose\", \
             \"--xml-file=x.xml\"]\nshow_leak_kinds = [\"definite\"]\n\
             max_possibly_lost_bytes = 0\n",
        ),
    );
    let output = sandbox.host(&["check", file.to_str().unwrap()]);
    assert_eq!(code(&output), 2, "{}", stdout(&output));
    let err = stderr(&output);
    for problem in [
        "`memcheck` (memcheck): `extra_args` element \"--verbose --verbose\" holds several \
         options: give each option its own element",
        "`memcheck` (memcheck): `extra_args` element \"--xml-file=x.xml\" sets `--xml-file`, \
         which the plugin sets itself",
        "`memcheck` (memcheck): `max_possibly_lost_bytes` needs \"possible\" in \
         `show_leak_kinds`",
    ] {
        assert!(err.contains(problem), "{problem}\n{err}");
    }
}

#[test]
fn a_missing_valgrind_names_its_package() {
    let sandbox = Sandbox::new();
    let file = sandbox.write(
        "e.toml",
        &echo_experiment("no-valgrind", "[[execution]]\nplugin = \"memcheck\"\n"),
    );
    let empty = sandbox.path().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    for command in ["check", "run"] {
        let output = sandbox
            .host_command(&[command, file.to_str().unwrap()])
            .env("PATH", &empty)
            .output()
            .unwrap();
        assert_eq!(code(&output), 2, "{command}: {}", stdout(&output));
        assert!(
            stderr(&output).contains(
                "plugin `memcheck` needs the program `valgrind`, which is not installed \
                 (Debian package: valgrind; e.g. `apt-get install valgrind`)"
            ),
            "{command}: {}",
            stderr(&output)
        );
    }
}

/// A server and a client that ends the run at once: the host then stops the server.
fn server_experiment(name: &str, exe: &str, args: &str, extra: &str) -> String {
    format!(
        r#"[experiment]
name = "{name}"
timeout = "30s"

[[service]]
name = "server"
command = ["{exe}"{args}]
ready = {{ log = "ready", timeout = "10s" }}

[[service]]
name = "client"
command = ["/bin/sh", "-c", "exit 0"]
depends_on = ["server"]
role = "client"

{extra}
"#
    )
}

#[test]
fn a_server_stopped_with_sigterm_still_gets_its_leak_report() {
    let sandbox = Sandbox::new();
    let program = "valgrind_server";
    let exe = compile(&sandbox, program);
    let (output, results) = run(
        &sandbox,
        "sigterm",
        &server_experiment(
            "sigterm",
            &exe,
            "",
            "[[execution]]\nplugin = \"memcheck\"\nservices = [\"server\"]\n",
        ),
    );
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let data = monitoring(&results, "server", "memcheck");
    // Valgrind caught SIGTERM for the program, ran the leak check, closed the XML.
    assert_eq!(data["truncated"], false, "{data:#}");
    assert_eq!(data["finished"], true);
    assert_eq!(data["processes"][0]["fatal_signal"]["signame"], "SIGTERM");
    let kinds: Vec<&str> = data["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["InvalidRead", "Leak_DefinitelyLost"], "{data:#}");
    assert_eq!(data["errors"][1]["leaked_bytes"], 4321);
    assert_eq!(
        data["errors"][1]["location"],
        format!(
            "leak_at_start (valgrind_server.c:{})",
            line(program, "LEAK_LINE", 12)
        )
    );
}

#[test]
fn a_server_that_ignores_sigterm_is_killed_and_its_report_truncated() {
    let sandbox = Sandbox::new();
    let program = "valgrind_server";
    let exe = compile(&sandbox, program);
    let (output, results) = run(
        &sandbox,
        "sigkill",
        &server_experiment(
            "sigkill",
            &exe,
            ", \"ignore-sigterm\"",
            "[network]\nplugin = \"localhost\"\nstop_grace = \"1s\"\n\n\
             [[execution]]\nplugin = \"memcheck\"\nservices = [\"server\"]\n\
             fail_on_truncated = true\n",
        ),
    );
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    assert!(
        stderr(&output).contains(
            "memcheck: valgrind's output is truncated: the run was killed before valgrind \
             finished"
        ),
        "{}",
        stderr(&output)
    );
    let data = monitoring(&results, "server", "memcheck");
    assert_eq!(data["truncated"], true, "{data:#}");
    assert_eq!(data["finished"], false);
    // The invalid read was written when it happened; the leak report never was.
    let errors = data["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{data:#}");
    assert_eq!(
        errors[0]["location"],
        format!(
            "read_past_end (valgrind_server.c:{})",
            line(program, "INVALID_READ_LINE", 19)
        )
    );
    assert_eq!(data["summary"]["leaks"]["definitely_lost"]["bytes"], 0);
}

#[test]
fn traced_children_each_get_a_report() {
    let sandbox = Sandbox::new();
    let leak = compile(&sandbox, "valgrind_leak");
    let read = compile(&sandbox, "valgrind_invalid_read");
    let experiment = format!(
        r#"[experiment]
name = "children"
timeout = "30s"

[[service]]
name = "script"
command = ["/bin/sh", "-c", "{leak} && {read}"]
role = "client"

[[execution]]
plugin = "memcheck"
trace_children = true
"#
    );
    let (output, results) = run(&sandbox, "children", &experiment);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let data = monitoring(&results, "script", "memcheck");
    let dir = results.join("monitoring/script/memcheck");
    let files = strings(&data["raw"]["xml"]);
    assert!(files.len() >= 2, "the shell's children: {data:#}");
    for file in &files {
        let name = Path::new(file).file_name().unwrap().to_str().unwrap();
        let pid = name
            .strip_prefix("valgrind.")
            .and_then(|n| n.strip_suffix(".xml"))
            .unwrap();
        assert!(pid.parse::<u32>().is_ok(), "{name}");
        assert_eq!(Path::new(file).parent().unwrap(), dir);
    }
    let found = |location: &str| {
        data["errors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["location"] == location)
            .unwrap_or_else(|| panic!("no error at {location}: {data:#}"))
    };
    let leak_error = found("leak_it (valgrind_leak.c:7)");
    let read_error = found("read_past_end (valgrind_invalid_read.c:7)");
    assert_ne!(leak_error["pid"], read_error["pid"], "two processes");
    let exes: Vec<&str> = data["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["command"]["exe"].as_str())
        .collect();
    assert!(exes.contains(&leak.as_str()), "{exes:?}");
    assert!(exes.contains(&read.as_str()), "{exes:?}");
    assert_eq!(data["summary"]["leaks"]["definitely_lost"]["bytes"], 1234);
}

#[test]
fn dry_run_shows_the_wrapped_commands_and_slowdowns() {
    let sandbox = Sandbox::new();
    let split = "[[execution]]\nplugin = \"memcheck\"\nservices = [\"client\"]\n\n\
                 [[execution]]\nplugin = \"helgrind\"\nservices = [\"server\"]\n";
    let file = sandbox.write("split.toml", &echo_experiment("split", split));
    let output = sandbox.host(&["run", "--dry-run", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let out = stdout(&output);
    let valgrind = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|dir| dir.join("valgrind"))
        .find(|p| p.is_file())
        .expect("valgrind is installed");
    for (tool, slowdown, options, program) in [
        (
            "helgrind",
            "50.0",
            "--history-level=full",
            program("echo-server"),
        ),
        (
            "memcheck",
            "20.0",
            "--leak-check=full --show-leak-kinds=definite,possible --track-origins=no",
            program("echo-client"),
        ),
    ] {
        assert!(
            out.contains(&format!("wrapped: {tool} (slowdown ×{slowdown})")),
            "{out}"
        );
        let service = if tool == "helgrind" {
            "server"
        } else {
            "client"
        };
        let command = format!(
            "command: {} --tool={tool} --xml=yes --xml-file=",
            valgrind.display()
        );
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(&command))
            .unwrap_or_else(|| panic!("no {tool} command: {out}"));
        assert!(
            line.contains(&format!(
                "/monitoring/{service}/{tool}/valgrind.xml --log-file="
            )),
            "{line}"
        );
        assert!(
            line.contains(&format!(
                "/valgrind.log --child-silent-after-fork=yes --trace-children=no {options} -- \
                 {program}"
            )),
            "{line}"
        );
    }
}
