//! Finding profiled processes from `/proc`: the preloaded library in their memory map, and
//! the file each one writes, known before it writes it.

mod common;

use std::process::Child;
use std::time::Duration;

use panther_gperftools::control::{
    file_open_in_process, send_signal, wait_for_signal_handler, CpuProfilerEnv, HeapProfilerEnv,
    DEFAULT_SWITCH_SIGNAL,
};
use panther_gperftools::cpu::signal_profile_path;
use panther_gperftools::library::{find_library, LibraryMatcher, PROFILER_NAMES, TCMALLOC_NAMES};
use panther_gperftools::process::{
    environ_var, is_marked, library_base, path_read_at_start, profile_path_in,
};

const TIMEOUT: Duration = Duration::from_secs(10);

fn stop(mut child: Child) {
    child.kill().ok();
    child.wait().ok();
}

#[test]
fn the_runtime_libraries_are_found() {
    for names in [PROFILER_NAMES, TCMALLOC_NAMES] {
        let found = find_library(names).expect("gperftools is installed");
        assert!(found.is_file(), "{}", found.display());
        let name = found.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(name, names[0], "the runtime name comes first");
    }
}

#[test]
fn the_cpu_profile_name_is_known_before_the_first_signal() {
    let dir = common::work_dir("discovery_cpu");
    let binary = common::compile("gperf_request_loop", &dir);
    let env = CpuProfilerEnv {
        library: find_library(PROFILER_NAMES).expect("libprofiler"),
        output: dir.join("cpu.prof"),
        frequency_hz: None,
        switch_signal: Some(DEFAULT_SWITCH_SIGNAL),
    };
    let child = common::start_until_ready(&binary, env.vars());
    let pid = child.id();
    let matcher = LibraryMatcher::new(&env.library);
    assert!(
        library_base(pid, &matcher).is_some(),
        "libprofiler is mapped"
    );
    let tcmalloc = LibraryMatcher::new(&find_library(TCMALLOC_NAMES).expect("tcmalloc"));
    assert!(library_base(pid, &tcmalloc).is_none());

    wait_for_signal_handler(pid, DEFAULT_SWITCH_SIGNAL, TIMEOUT).expect("switch installed");
    let raw = environ_var(pid, "CPUPROFILE").expect("CPUPROFILE");
    assert!(!is_marked(&raw), "not read yet");
    assert_eq!(profile_path_in(pid, "CPUPROFILE"), Some(env.output.clone()));

    send_signal(pid, DEFAULT_SWITCH_SIGNAL).expect("start");
    let predicted = signal_profile_path(&env.output, 0);
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !file_open_in_process(pid, &predicted).unwrap_or(false) {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never opened",
            predicted.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Read now: children started from here on would get `_<pid>` names.
    assert!(is_marked(
        &environ_var(pid, "CPUPROFILE").expect("CPUPROFILE")
    ));
    stop(child);
}

#[test]
fn the_heap_prefix_is_known_after_the_profiler_read_it() {
    let dir = common::work_dir("discovery_heap");
    let binary = common::compile("gperf_request_loop", &dir);
    let env = HeapProfilerEnv {
        library: find_library(TCMALLOC_NAMES).expect("tcmalloc"),
        prefix: dir.join("heap"),
        allocation_interval: None,
        inuse_interval: None,
        dump_signal: Some(DEFAULT_SWITCH_SIGNAL),
    };
    let child = common::start_until_ready(&binary, env.vars());
    let pid = child.id();
    // The heap profiler read HEAPPROFILE at start-up and marked it for its children...
    assert!(is_marked(
        &environ_var(pid, "HEAPPROFILE").expect("HEAPPROFILE")
    ));
    // ...but it inherited it unmarked from this test, so it writes the prefix as is.
    assert_eq!(
        path_read_at_start(pid, None, "HEAPPROFILE"),
        Some(env.prefix.clone())
    );
    let parent = std::process::id();
    assert_eq!(
        path_read_at_start(pid, Some(parent), "HEAPPROFILE"),
        Some(env.prefix.clone()),
        "this test's own environment has no HEAPPROFILE"
    );
    stop(child);
}
