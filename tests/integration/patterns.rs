//! The driver, extension and proxy patterns, observed through real experiments.

use crate::support::*;

/// A one-service experiment whose service writes the `WRAPPED_BY` chain to `wrapped.txt`.
fn wrapping_experiment(
    name: &str,
    experiment_extra: &str,
    service_extra: &str,
    execution: &str,
) -> String {
    format!(
        r#"[experiment]
name = "{name}"
timeout = "20s"
{experiment_extra}

[[service]]
name = "probe"
command = ["/bin/sh", "-c", "printf '%s' \"$WRAPPED_BY\" > wrapped-{name}.txt"]
role = "client"
{service_extra}

{execution}
"#
    )
}

const THREE_TAGS: &str = r#"
[[execution]]
plugin = "tag"
label = "b"

[[execution]]
plugin = "tag_first"
label = "a"

[[execution]]
plugin = "tag"
name = "tag2"
label = "c"
"#;

fn wrapped(sandbox: &Sandbox, name: &str, experiment_extra: &str, service_extra: &str) -> String {
    let file = sandbox.write(
        &format!("{name}.toml"),
        &wrapping_experiment(name, experiment_extra, service_extra, THREE_TAGS),
    );
    let output = sandbox.host(&["run", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    std::fs::read_to_string(sandbox.path().join(format!("wrapped-{name}.txt"))).unwrap()
}

#[test]
fn extensions_wrap_by_priority_then_configured_order() {
    let sandbox = Sandbox::new();
    // tag_first has priority -10; the two `tag` instances keep their configured order.
    assert_eq!(wrapped(&sandbox, "ordered", "", ""), "a,b,c");
    // An experiment-scope order puts tag2 before tag among equal priorities.
    assert_eq!(
        wrapped(&sandbox, "reordered", "order = [\"tag2\"]", ""),
        "a,c,b"
    );
    // A service scope disables one instance; a nearer `enable` list replaces the inherited one.
    assert_eq!(
        wrapped(&sandbox, "disabled", "", "disable = [\"tag2\"]"),
        "a,b"
    );
    assert_eq!(
        wrapped(
            &sandbox,
            "enabled",
            "disable = [\"tag2\"]",
            "enable = [\"tag2\"]"
        ),
        "c"
    );
}

#[test]
fn each_extension_gives_one_result_per_service() {
    let sandbox = Sandbox::new();
    wrapped(&sandbox, "monitored", "", "");
    let results = sandbox.results("monitored");
    for (instance, label) in [("tag", "b"), ("tag_first", "a"), ("tag2", "c")] {
        let data: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(results.join(format!("monitoring/probe/{instance}.json")))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(data["label"], label);
        assert_eq!(
            data["pids"].as_array().unwrap().len(),
            1,
            "monitoring started once: {data}"
        );
    }
    let events = events(&results);
    let started: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "monitoring_started")
        .map(|e| e["instance"].as_str().unwrap())
        .collect();
    assert_eq!(started, ["tag_first", "tag", "tag2"]);
}

#[test]
fn an_unknown_driver_lists_the_known_ones_and_suggests_the_closest() {
    let sandbox = Sandbox::new();
    let file = sandbox.write(
        "e.toml",
        &echo_experiment("unknown", "[network]\nplugin = \"locahost\"\n"),
    );
    let output = sandbox.host(&["check", file.to_str().unwrap()]);
    assert_eq!(code(&output), 2);
    let err = stderr(&output);
    let listing: serde_json::Value =
        serde_json::from_str(&stdout(&sandbox.host(&["list", "--format", "json"]))).unwrap();
    let known: Vec<&str> = listing["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "network_environment")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        known.contains(&"never_chosen") && known.len() >= 2,
        "{known:?}"
    );
    let expected = format!(
        "no network_environment plugin named `locahost` (did you mean `localhost`?); known: {}",
        known.join(", ")
    );
    assert!(err.contains(&expected), "expected `{expected}` in:\n{err}");
    assert!(err.contains("e.toml:"), "names the file and line: {err}");
}

#[test]
fn drivers_that_are_not_chosen_are_never_instantiated() {
    let sandbox = Sandbox::new();
    let mark = sandbox.path().join("never-chosen-was-here");
    let file = sandbox.write("e.toml", &echo_experiment("unchosen", ""));
    let output = sandbox
        .host_command(&["run", file.to_str().unwrap()])
        .env("NEVER_CHOSEN_MARK", &mark)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        !mark.exists(),
        "never_chosen was instantiated although localhost was chosen"
    );

    // Chosen, it is instantiated (and fails as it is built to), so the check above can fail.
    let file = sandbox.write(
        "chosen.toml",
        &echo_experiment("chosen", "[network]\nplugin = \"never_chosen\"\n"),
    );
    let output = sandbox
        .host_command(&["run", file.to_str().unwrap()])
        .env("NEVER_CHOSEN_MARK", &mark)
        .output()
        .unwrap();
    assert_eq!(code(&output), 3, "{}", stderr(&output));
    assert!(mark.exists());
    assert!(
        stderr(&output).contains("never_chosen was instantiated"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn proxy_instances_have_their_own_arguments() {
    let sandbox = Sandbox::new();
    let reports = "[[report]]\nplugin = \"json\"\npath = \"one.json\"\n\n[[report]]\nplugin = \"json\"\nname = \"compact\"\npath = \"two.json\"\npretty = false\n";
    let file = sandbox.write("e.toml", &echo_experiment("two_json", reports));
    let output = sandbox.host(&["run", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let results = sandbox.results("two_json");
    let one = std::fs::read_to_string(results.join("one.json")).unwrap();
    let two = std::fs::read_to_string(results.join("two.json")).unwrap();
    assert!(one.lines().count() > 10, "pretty");
    assert_eq!(two.lines().count(), 1, "compact");
    let (a, b): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(&one).unwrap(),
        serde_json::from_str(&two).unwrap(),
    );
    assert_eq!(a, b);
}

#[test]
fn a_second_claim_of_a_resource_is_refused_naming_both_instances() {
    let sandbox = Sandbox::new();
    let cases = [
        ("[[report]]\nplugin = \"json\"\npath = \"-\"\n\n[[report]]\nplugin = \"junit\"\npath = \"-\"\n", "report `junit` claims stdout, which `json` already claims"),
        (
            "[[report]]\nplugin = \"json\"\npath = \"out.xml\"\n\n[[report]]\nplugin = \"junit\"\npath = \"out.xml\"\n",
            "report `junit` claims file out.xml, which `json` already claims",
        ),
        (
            "[[report]]\nplugin = \"json\"\npath = \"a.json\"\n\n[[report]]\nplugin = \"json\"\npath = \"b.json\"\n",
            "report there is already an instance named `json`",
        ),
    ];
    for (i, (reports, expected)) in cases.iter().enumerate() {
        let file = sandbox.write(&format!("e{i}.toml"), &echo_experiment("claims", reports));
        let output = sandbox.host(&["run", file.to_str().unwrap()]);
        assert_eq!(code(&output), 2, "{}", stderr(&output));
        assert!(
            stderr(&output).contains(expected),
            "expected `{expected}` in:\n{}",
            stderr(&output)
        );
        assert!(!sandbox.path().join("results").exists(), "nothing started");
    }
}

#[test]
fn declared_incompatibilities_are_refused_per_service() {
    let sandbox = Sandbox::new();
    let both =
        "[[execution]]\nplugin = \"tag\"\nlabel = \"x\"\n\n[[execution]]\nplugin = \"loner\"\n";
    let file = sandbox.write("e.toml", &echo_experiment("lonely", both));
    let output = sandbox.host(&["check", file.to_str().unwrap()]);
    assert_eq!(code(&output), 2);
    let err = stderr(&output);
    assert!(
        err.contains("on service `server`")
            && err.contains(
                "`loner` cannot run with `tag`: `loner` declares it cannot run with `tag`"
            ),
        "{err}"
    );

    // On different services they are fine.
    let apart = "[[execution]]\nplugin = \"tag\"\nlabel = \"x\"\nservices = [\"server\"]\n\n[[execution]]\nplugin = \"loner\"\nservices = [\"client\"]\n";
    let file = sandbox.write("apart.toml", &echo_experiment("apart", apart));
    let output = sandbox.host(&["check", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
}
