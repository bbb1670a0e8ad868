//! End-to-end CPU profiling: run a C program under libprofiler, then parse,
//! symbolize and report natively.

mod common;

use std::process::Command;

use panther_gperftools::control::CpuProfilerEnv;
use panther_gperftools::report::{cpu_report, folded_stacks, write_flamegraph, CpuReport};
use panther_gperftools::{symbolize_cpu, CpuProfile, Symbolizer};

#[test]
fn burn_cpu_dominates_the_profile() {
    let dir = common::work_dir("burn_cpu");
    let binary = common::compile("gperf_burn", &dir);
    let env = CpuProfilerEnv {
        library: common::library("libprofiler.so"),
        output: dir.join("x.prof"),
        frequency_hz: Some(1000),
        switch_signal: None,
    };
    common::run(Command::new(&binary).envs(env.vars()));

    let profile = CpuProfile::from_file(&env.output).expect("parse profile");
    assert_eq!(profile.period_us, 1000);
    assert!(profile.total_samples() >= 50, "{}", profile.total_samples());
    assert!(profile
        .mappings
        .iter()
        .any(|m| m.path == binary.to_string_lossy()));

    let symbolized = symbolize_cpu(&profile, &mut Symbolizer::new());
    let report = cpu_report(&symbolized, None);
    let top = &report.by_flat[0];
    assert_eq!(top.function, "burn_cpu", "{:#?}", &report.by_flat[..3]);
    assert!(top.flat_percent > 60.0, "{top:?}");
    let light = report.function("light_work").expect("light_work sampled");
    assert!(
        (3.0..25.0).contains(&light.flat_percent),
        "light_work {light:?}"
    );
    let main = report.function("main").expect("main sampled");
    assert!(main.cumulative_percent > 95.0, "main {main:?}");
    assert_eq!(main.flat, 0, "main only calls");

    let burn_frame = symbolized
        .frames
        .iter()
        .find(|f| f.function == "burn_cpu")
        .expect("burn_cpu frame");
    assert!(burn_frame
        .file
        .as_deref()
        .is_some_and(|f| f.ends_with("gperf_burn.c")));
    assert!(burn_frame.line.is_some());

    let folded = folded_stacks(&symbolized);
    assert!(
        folded.iter().any(|l| l.contains("main;burn_cpu ")),
        "{folded:#?}"
    );
    assert!(folded.iter().all(|l| !l.contains("main;burn_cpu;main")));

    let svg_path = dir.join("flame.svg");
    write_flamegraph(&folded, "gperf_burn", &svg_path).expect("flame graph");
    let svg = std::fs::read_to_string(&svg_path).expect("read svg");
    assert!(svg.starts_with("<?xml") && svg.contains("<svg"));
    assert!(svg.contains("burn_cpu"));

    let json = serde_json::to_string(&report).expect("serialize");
    let back: CpuReport = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, report);
}
