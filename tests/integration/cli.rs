//! The command line: settings files, verbosity, exit codes of the plain commands.

use crate::support::*;

#[test]
fn host_settings_are_the_outermost_scope() {
    let sandbox = Sandbox::new();
    let settings = sandbox.write("settings.toml", "[scope]\ndisable = [\"tag\"]\n");
    let experiment = sandbox.write(
        "e.toml",
        "[experiment]\nname = \"scoped\"\n\n[[service]]\nname = \"probe\"\ncommand = [\"/bin/sh\", \"-c\", \"printf '%s' \\\"$WRAPPED_BY\\\" > wrapped.txt\"]\nrole = \"client\"\n\n[[execution]]\nplugin = \"tag\"\nlabel = \"t\"\n\n[[execution]]\nplugin = \"tag_first\"\nlabel = \"f\"\n",
    );
    let output = sandbox.host(&[
        "--config",
        settings.to_str().unwrap(),
        "run",
        experiment.to_str().unwrap(),
    ]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(
        std::fs::read_to_string(sandbox.path().join("wrapped.txt")).unwrap(),
        "f"
    );

    // The experiment scope overrides the host scope.
    let text = std::fs::read_to_string(&experiment)
        .unwrap()
        .replace("name = \"scoped\"", "name = \"scoped\"\nenable = [\"tag\"]");
    let experiment = sandbox.write("e2.toml", &text);
    let output = sandbox.host(&[
        "--config",
        settings.to_str().unwrap(),
        "run",
        experiment.to_str().unwrap(),
    ]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(
        std::fs::read_to_string(sandbox.path().join("wrapped.txt")).unwrap(),
        "t"
    );
}

#[test]
fn a_bad_settings_file_is_refused_with_its_position() {
    let sandbox = Sandbox::new();
    let settings = sandbox.write("settings.toml", "output = \"x\"\nplugin_dir = [\"typo\"]\n");
    let output = sandbox.host(&["--config", settings.to_str().unwrap(), "list"]);
    assert_eq!(code(&output), 2);
    let err = stderr(&output);
    assert!(
        err.contains(
            "settings.toml:2:1: unknown field `plugin_dir`, expected one of `plugin_dirs`, "
        ),
        "{err}"
    );

    let output = sandbox.host(&["--config", "/no/such/settings.toml", "list"]);
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("invalid settings file /no/such/settings.toml"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn verbose_runs_show_events_live_and_quiet_ones_show_nothing_but_errors() {
    let sandbox = Sandbox::new();
    let experiment = sandbox.write("e.toml", &echo_experiment("loud", ""));
    let output = sandbox.host(&["-v", "run", experiment.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let err = stderr(&output);
    for event in ["experiment_started", "service_ready", "experiment_finished"] {
        assert!(
            err.contains(&format!("\"event\":\"{event}\"")),
            "{event} missing from:\n{err}"
        );
    }
    let output = sandbox.host(&["-vv", "run", experiment.to_str().unwrap()]);
    assert!(
        stderr(&output).contains("echoed \"hello\""),
        "-vv streams service output: {}",
        stderr(&output)
    );
    let output = sandbox.host(&["-q", "run", experiment.to_str().unwrap()]);
    assert_eq!(code(&output), 0);
    assert!(
        stderr(&output).is_empty(),
        "a quiet run that passes prints nothing: {}",
        stderr(&output)
    );
}

#[test]
fn usage_errors_exit_with_2() {
    let sandbox = Sandbox::new();
    assert_eq!(code(&sandbox.host(&["run"])), 2);
    assert_eq!(code(&sandbox.host(&["no-such-command"])), 2);
    let output = sandbox.host(&["run", "/no/such/experiment.toml"]);
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("cannot read experiment file /no/such/experiment.toml"),
        "{}",
        stderr(&output)
    );
}
