//! Jobs: several experiments at once (`run a.toml b.toml --jobs N`), each in its own scope
//! and results folder, with a job-level report.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// A one-service experiment whose service records its `WRAPPED_BY` chain in `<name>.txt`
/// after `pause` seconds, with its own execution and report settings.
fn probe(name: &str, pause: f64, extra: &str) -> String {
    format!(
        r#"[experiment]
name = "{name}"
{extra}

[[service]]
name = "probe"
command = ["/bin/sh", "-c", "sleep {pause}; printf '%s' \"$WRAPPED_BY\" > {name}.txt"]
role = "client"

[[execution]]
plugin = "tag"
label = "{name}"

[[report]]
plugin = "json"
path = "same-name.json"
"#
    )
}

fn started_and_finished(results: &std::path::Path) -> (String, String) {
    let events = events(results);
    let time = |kind: &str| {
        events.iter().find(|e| e["event"] == kind).unwrap()["time"]
            .as_str()
            .unwrap()
            .to_string()
    };
    (time("experiment_started"), time("experiment_finished"))
}

#[test]
fn experiments_of_a_job_run_at_once_in_scopes_of_their_own() {
    let sandbox = Sandbox::new();
    let a = sandbox.write("a.toml", &probe("alpha", 0.5, ""));
    let b = sandbox.write("b.toml", &probe("beta", 0.5, "disable = [\"tag\"]"));
    let output = sandbox.host(&[
        "run",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--jobs",
        "2",
    ]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));

    // Settings did not leak: alpha was wrapped, beta (which disabled tag) was not.
    assert_eq!(
        std::fs::read_to_string(sandbox.path().join("alpha.txt")).unwrap(),
        "alpha"
    );
    assert_eq!(
        std::fs::read_to_string(sandbox.path().join("beta.txt")).unwrap(),
        ""
    );
    // Each reporter instance wrote into its own results folder, though both claim the same
    // relative file: claims are per scope.
    for name in ["alpha", "beta"] {
        let result: Value = serde_json::from_str(
            &std::fs::read_to_string(sandbox.results(name).join("same-name.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(result["experiment"], name);
    }
    // They overlapped in time.
    let (a_start, a_end) = started_and_finished(&sandbox.results("alpha"));
    let (b_start, b_end) = started_and_finished(&sandbox.results("beta"));
    assert!(
        a_start < b_end && b_start < a_end,
        "alpha {a_start}..{a_end}, beta {b_start}..{b_end}"
    );

    // The job report holds both, one JUnit suite per experiment.
    let job_dir = std::fs::read_dir(sandbox.path().join("results"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("job-"))
        .expect("a job folder");
    let job: Value =
        serde_json::from_str(&std::fs::read_to_string(job_dir.join("job.json")).unwrap()).unwrap();
    let names: Vec<&str> = job["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["experiment"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    let runners: std::collections::BTreeSet<&str> = job["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["runner"].as_str().unwrap())
        .collect();
    assert_eq!(runners.len(), 2, "two runners shared the work: {job:#}");
    let junit = std::fs::read_to_string(job_dir.join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<testsuite ").count(), 2, "{junit}");
    assert!(
        junit.contains(
            "<testsuite name=\"alpha\" tests=\"1\" disabled=\"0\" errors=\"0\" failures=\"0\""
        ),
        "{junit}"
    );
}

#[test]
fn one_jobs_runner_runs_the_experiments_one_after_the_other() {
    let sandbox = Sandbox::new();
    let a = sandbox.write("a.toml", &probe("first", 0.2, ""));
    let b = sandbox.write("b.toml", &probe("second", 0.2, ""));
    let output = sandbox.host(&["run", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let (_, first_end) = started_and_finished(&sandbox.results("first"));
    let (second_start, _) = started_and_finished(&sandbox.results("second"));
    assert!(
        first_end <= second_start,
        "first ended {first_end}, second started {second_start}"
    );
}

#[test]
fn a_panicking_plugin_in_one_experiment_does_not_touch_the_others() {
    let sandbox = Sandbox::new();
    let broken = sandbox.write(
        "broken.toml",
        &echo_experiment("broken", "[[report]]\nplugin = \"panic_in_method\"\n"),
    );
    let fine = sandbox.write("fine.toml", &probe("fine", 0.3, ""));
    let output = sandbox.host(&[
        "run",
        broken.to_str().unwrap(),
        fine.to_str().unwrap(),
        "--jobs",
        "2",
    ]);
    assert_eq!(
        code(&output),
        3,
        "the worst outcome wins: {}",
        stderr(&output)
    );
    let fine_result: Value = serde_json::from_str(
        &std::fs::read_to_string(sandbox.results("fine").join("same-name.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(fine_result["status"], "passed");
    assert!(
        stderr(&output).contains("broken: ERROR"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn one_invalid_experiment_stops_the_job_before_anything_starts() {
    let sandbox = Sandbox::new();
    let good = sandbox.write("good.toml", &probe("good", 0.0, ""));
    let bad = sandbox.write("bad.toml", "[experiment]\nname = \"bad\"\nnope = 1\n");
    let output = sandbox.host(&[
        "run",
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
        "--jobs",
        "2",
    ]);
    assert_eq!(code(&output), 2);
    assert!(!sandbox.path().join("results").exists());
}

#[test]
fn ctrl_c_tears_down_every_running_experiment_of_a_job() {
    let sandbox = Sandbox::new();
    let slow = |name: &str| {
        format!("[experiment]\nname = \"{name}\"\n\n[[service]]\nname = \"sleeper\"\ncommand = [\"sleep\", \"300\"]\nrole = \"client\"\n")
    };
    let a = sandbox.write("a.toml", &slow("left"));
    let b = sandbox.write("b.toml", &slow("right"));
    let mut host = sandbox
        .host_command(&[
            "run",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--jobs",
            "2",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut pids = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while pids.len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "both experiments did not start"
        );
        pids = ["left", "right"]
            .iter()
            .filter_map(|name| {
                let run = std::fs::read_dir(sandbox.path().join("results").join(name))
                    .ok()?
                    .next()?
                    .ok()?
                    .path();
                let deployed = std::fs::read_to_string(run.join("events.jsonl")).ok()?;
                deployed
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .find(|e| e["event"] == "service_deployed")?["pid"]
                    .as_u64()
            })
            .map(|p| p as u32)
            .collect();
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(host.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    assert_eq!(host.wait().unwrap().code(), Some(130));
    for pid in pids {
        assert!(!alive(pid), "sleep {pid} survived");
    }
    for name in ["left", "right"] {
        let run = sandbox.results(name);
        let result = events(&run)
            .into_iter()
            .find(|e| e["event"] == "experiment_finished")
            .unwrap();
        assert_eq!(result["status"], "interrupted");
    }
}

/// `command` run by util-linux `script` with a pseudo-terminal as its stderr, which `script`
/// copies to its stdout; the command's own stdout goes to `stdout_file`.
fn with_a_terminal_as_stderr(
    command: &std::process::Command,
    stdout_file: &std::path::Path,
) -> std::process::Output {
    let quote = |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', r"'\''"));
    let argv: Vec<String> = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(quote)
        .collect();
    let line = format!("{} > {}", argv.join(" "), quote(stdout_file.as_os_str()));
    let mut script = std::process::Command::new("script");
    script.args(["--quiet", "--return", "--command", &line, "/dev/null"]);
    if let Some(dir) = command.get_current_dir() {
        script.current_dir(dir);
    }
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => script.env(key, value),
            None => script.env_remove(key),
        };
    }
    script.output().expect("`script` (util-linux) runs")
}

/// The bars are drawn on stderr, so they show whenever stderr is a terminal, also when
/// stdout, which machine output uses, goes to a file; and nothing of them reaches stdout.
#[test]
fn a_job_draws_a_line_per_runner_and_a_bar_over_the_experiments_on_a_terminal() {
    let sandbox = Sandbox::new();
    let a = sandbox.write("a.toml", &probe("alpha", 0.6, ""));
    let b = sandbox.write("b.toml", &probe("beta", 0.6, ""));
    let saved = sandbox.path().join("stdout.txt");
    let output = with_a_terminal_as_stderr(
        &sandbox.host_command(&[
            "run",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--jobs",
            "2",
        ]),
        &saved,
    );
    let drawn = String::from_utf8_lossy(&output.stdout);
    assert_eq!(code(&output), 0, "{drawn}");
    for expected in [
        "runner-1",
        "runner-2",
        "running alpha",
        "running beta",
        "2/2 experiments, 0 failed",
    ] {
        assert!(drawn.contains(expected), "no `{expected}` in:\n{drawn}");
    }
    let stdout = std::fs::read_to_string(&saved).unwrap();
    assert!(!stdout.contains("runner-1"), "bars on stdout:\n{stdout}");
}
