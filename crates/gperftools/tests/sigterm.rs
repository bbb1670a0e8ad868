//! What a service stopped with SIGTERM leaves behind, and the flush-first
//! procedure that keeps its profiles.
//!
//! The fixture installs no signal handlers, like many services: SIGTERM's
//! default action ends it at once, so no exit handler (where gperftools
//! writes its output) runs.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Child;
use std::thread::sleep;
use std::time::Duration;

use panther_gperftools::control::{
    flush_cpu_profile, flush_heap_profile, send_signal, wait_for_signal_handler, CpuProfilerEnv,
    HeapProfilerEnv, DEFAULT_SWITCH_SIGNAL,
};
use panther_gperftools::heap::{analyze_heap_run, dump_files};
use panther_gperftools::report::cpu_report;
use panther_gperftools::{symbolize_cpu, CpuProfile, Error, Symbolizer};

const TIMEOUT: Duration = Duration::from_secs(10);
const RUN_TIME: Duration = Duration::from_millis(1500);

/// Sends SIGTERM and checks the service died of it (no exit handlers ran).
fn terminate(mut child: Child) {
    send_signal(child.id(), libc::SIGTERM).expect("SIGTERM");
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
}

fn cpu_env(dir: &Path, switch_signal: Option<i32>) -> CpuProfilerEnv {
    CpuProfilerEnv {
        library: common::library("libprofiler.so"),
        output: dir.join("svc.prof"),
        frequency_hz: Some(1000),
        switch_signal,
    }
}

fn heap_env(dir: &Path, dump_signal: Option<i32>) -> HeapProfilerEnv {
    HeapProfilerEnv {
        library: common::library("libtcmalloc.so"),
        prefix: dir.join("svc"),
        allocation_interval: None,
        inuse_interval: None,
        dump_signal,
    }
}

#[test]
fn sigterm_leaves_an_empty_cpu_profile() {
    let dir = common::work_dir("sigterm_cpu_plain");
    let binary = common::compile("gperf_request_loop", &dir);
    let env = cpu_env(&dir, None);
    let child = common::start_until_ready(&binary, env.vars());
    sleep(RUN_TIME);
    terminate(child);

    let size = std::fs::metadata(&env.output)
        .expect("profile created")
        .len();
    assert_eq!(size, 0, "libprofiler flushed nothing");
    let err = CpuProfile::from_file(&env.output).unwrap_err();
    assert!(matches!(err, Error::EmptyCpuProfile { .. }), "{err}");
}

#[test]
fn switch_signal_flushes_cpu_profile_before_sigterm() {
    let dir = common::work_dir("sigterm_cpu_switch");
    let binary = common::compile("gperf_request_loop", &dir);
    let signal = DEFAULT_SWITCH_SIGNAL;
    let env = cpu_env(&dir, Some(signal));
    let child = common::start_until_ready(&binary, env.vars());
    let pid = child.id();

    wait_for_signal_handler(pid, signal, TIMEOUT).expect("switch handler installed");
    assert!(
        !env.output.exists(),
        "profiling is off until the first signal"
    );
    send_signal(pid, signal).expect("start profiling");
    sleep(RUN_TIME);
    let profile_path = env.profile_path(0);
    flush_cpu_profile(pid, signal, &profile_path, TIMEOUT).expect("flush");
    terminate(child);

    let profile = CpuProfile::from_file(&profile_path).expect("complete profile");
    assert!(profile.total_samples() >= 50, "{}", profile.total_samples());
    let report = cpu_report(&symbolize_cpu(&profile, &mut Symbolizer::new()), None);
    assert_eq!(report.by_flat[0].function, "handle_request");
    let serve = report.function("serve_forever").expect("serve_forever");
    assert!(serve.cumulative_percent > 90.0, "{serve:?}");
}

#[test]
fn sigterm_loses_the_final_heap_dump() {
    let dir = common::work_dir("sigterm_heap_plain");
    let binary = common::compile("gperf_request_loop", &dir);
    let env = heap_env(&dir, None);
    let child = common::start_until_ready(&binary, env.vars());
    sleep(RUN_TIME);
    terminate(child);
    assert!(dump_files(&env.prefix).expect("list").is_empty());
}

#[test]
fn dump_signal_flushes_heap_profile_before_sigterm() {
    let dir = common::work_dir("sigterm_heap_signal");
    let binary = common::compile("gperf_request_loop", &dir);
    let signal = DEFAULT_SWITCH_SIGNAL;
    let env = heap_env(&dir, Some(signal));
    let child = common::start_until_ready(&binary, env.vars());
    let pid = child.id();

    wait_for_signal_handler(pid, signal, TIMEOUT).expect("dump handler installed");
    sleep(RUN_TIME);
    let dump = flush_heap_profile(pid, signal, &env.prefix, TIMEOUT).expect("dump");
    terminate(child);

    assert!(
        dump.to_string_lossy().ends_with("svc.0001.heap"),
        "{dump:?}"
    );
    let report = analyze_heap_run(&env.prefix, &mut Symbolizer::new()).expect("analyze");
    let top = &report.by_inuse[0];
    assert_eq!(top.function, "handle_request", "{:#?}", report.by_inuse);
    assert!(top.counts.inuse_bytes > 0);
    assert_eq!(top.counts.inuse_bytes, top.counts.inuse_objects * 256);
}
