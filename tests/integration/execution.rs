//! Execution environments that ship with the host, on real programs.

use serde_json::Value;

use crate::support::*;

#[test]
fn resource_metrics_samples_a_busy_service_tree() {
    let sandbox = Sandbox::new();
    // A parent that spawns a child holding 64 MiB and burns CPU for about half a second.
    let file = sandbox.write(
        "e.toml",
        r#"[experiment]
name = "metrics"

[[service]]
name = "busy"
command = ["python3", "-c", "import subprocess, time\np = subprocess.Popen(['python3', '-c', 'import time; b = bytearray(64 << 20); time.sleep(1.5)'])\nend = time.time() + 0.6\nwhile time.time() < end: pass\np.wait()"]
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
        cpu >= 0.4,
        "the busy loop used about 0.6 s of CPU: {summary:#}"
    );
    assert!(
        summary["cpu_percent_max"].as_f64().unwrap() > 50.0,
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
