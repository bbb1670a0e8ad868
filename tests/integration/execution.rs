//! Execution environments that ship with the host, on real programs.

use serde_json::Value;

use crate::support::*;

#[test]
fn resource_metrics_samples_a_busy_service_tree() {
    let sandbox = Sandbox::new();
    // A parent that spawns a child holding 64 MiB, then does a fixed amount of CPU work (fixed
    // work, not a fixed time: a loaded machine stretches the time, not the work).
    let file = sandbox.write(
        "e.toml",
        r#"[experiment]
name = "metrics"

[[service]]
name = "busy"
command = ["python3", "-c", "import subprocess, time\np = subprocess.Popen(['python3', '-c', 'import time; b = bytearray(64 << 20); time.sleep(1.5)'])\nn = sum(range(20_000_000))\np.wait()"]
role = "client"

[[execution]]
plugin = "resource_metrics"
sampling_rate = 20.0
"#,
    );
    let output = sandbox.host(&["run", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let results = sandbox.results("metrics");
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(results.join("monitoring/busy/resource_metrics.json")).unwrap(),
    )
    .unwrap();
    let samples = summary["samples"].as_u64().unwrap();
    assert!(
        (20..=60).contains(&samples),
        "20 samples a second for 1.5 s or more: {summary:#}"
    );
    assert!(
        summary["processes_max"].as_u64().unwrap() >= 2,
        "the parent and its child: {summary:#}"
    );
    assert!(
        summary["rss_peak_bytes"].as_u64().unwrap() >= 64 << 20,
        "{summary:#}"
    );
    let cpu = summary["cpu_seconds"].as_f64().unwrap();
    assert!(
        cpu >= 0.25,
        "summing 20 million integers takes well over a quarter second of CPU: {summary:#}"
    );
    assert!(
        summary["cpu_percent_max"].as_f64().unwrap() > 10.0,
        "{summary:#}"
    );

    let series =
        std::fs::read_to_string(results.join("monitoring/busy/resource_metrics/samples.jsonl"))
            .unwrap();
    assert_eq!(series.lines().count() as u64, samples);
    let last: Value = serde_json::from_str(series.lines().last().unwrap()).unwrap();
    assert!(last["t_ms"].as_u64().unwrap() >= 1000, "{last}");

    // The summary is in the result reporters get, under the service.
    let event = events(&results)
        .into_iter()
        .find(|e| e["event"] == "metrics_collected")
        .expect("metrics event");
    assert_eq!(event["instance"], "resource_metrics");
    assert_eq!(event["summary"]["samples"], samples);
}

/// The echo pair under one execution environment applied to both services.
fn echo_under(plugin: &str) -> (Sandbox, std::process::Output) {
    let sandbox = Sandbox::new();
    let name = format!("under_{plugin}");
    let file = sandbox.write(
        "e.toml",
        &echo_experiment(&name, &format!("[[execution]]\nplugin = \"{plugin}\"\n")),
    );
    let output = sandbox.host(&["run", file.to_str().unwrap(), "--timeout", "60s"]);
    (sandbox, output)
}

#[test]
fn the_echo_pair_passes_under_every_shipped_execution_environment() {
    for plugin in [
        "strace",
        "memcheck",
        "helgrind",
        "gperf_cpu",
        "gperf_heap",
        "resource_metrics",
    ] {
        let (sandbox, output) = echo_under(plugin);
        assert_eq!(code(&output), 0, "under {plugin}: {}", stderr(&output));
        let results = sandbox.results(&format!("under_{plugin}"));
        for service in ["server", "client"] {
            let data = results.join(format!("monitoring/{service}/{plugin}.json"));
            let data: Value = serde_json::from_str(
                &std::fs::read_to_string(&data)
                    .unwrap_or_else(|e| panic!("{}: {e}", data.display())),
            )
            .unwrap();
            assert!(
                data.is_object(),
                "{plugin} collected something about {service}: {data}"
            );
        }
        let client_out = std::fs::read_to_string(results.join("services/client.stdout")).unwrap();
        assert_eq!(
            client_out, "echoed \"hello\"\n",
            "under {plugin} the echo still works"
        );
    }
}

#[test]
fn valgrind_and_an_ld_preload_profiler_are_refused_on_one_service() {
    let sandbox = Sandbox::new();
    let file = sandbox.write(
        "e.toml",
        &echo_experiment(
            "mixed",
            "[[execution]]\nplugin = \"memcheck\"\n\n[[execution]]\nplugin = \"gperf_cpu\"\n",
        ),
    );
    let output = sandbox.host(&["check", file.to_str().unwrap()]);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains("`gperf_cpu` cannot run with `memcheck`") && err.contains("ld_preload"),
        "{err}"
    );
    assert!(
        err.contains("on service `server`") && err.contains("on service `client`"),
        "{err}"
    );
}
