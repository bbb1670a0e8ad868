//! End-to-end heap profiling: run a C program under tcmalloc's heap
//! profiler and check the per-function attribution of a known pattern.

mod common;

use std::process::Command;

use panther_gperftools::control::HeapProfilerEnv;
use panther_gperftools::heap::{analyze_heap_run, dump_files, HeapProfile, HeapReport};
use panther_gperftools::Symbolizer;

const MIB: i64 = 1024 * 1024;

#[test]
fn known_allocation_pattern_is_attributed_exactly() {
    let dir = common::work_dir("heap_pattern");
    let binary = common::compile("gperf_heap", &dir);
    let env = HeapProfilerEnv {
        library: common::library("libtcmalloc.so"),
        prefix: dir.join("h"),
        allocation_interval: Some(MIB as u64),
        inuse_interval: Some(3 * MIB as u64),
        dump_signal: None,
    };
    common::run(Command::new(&binary).envs(env.vars()));

    let files = dump_files(&env.prefix).expect("list dumps");
    assert!(files.len() >= 5, "{files:?}");
    let last = HeapProfile::from_file(files.last().expect("a dump")).expect("parse");
    assert_eq!(last.sequence, Some(files.len() as u32));

    let report = analyze_heap_run(&env.prefix, &mut Symbolizer::new()).expect("analyze");
    assert_eq!(report.dumps.len(), files.len());
    assert_eq!(report.last_dump.as_ref(), files.last());

    let big = report.function("alloc_big").expect("alloc_big");
    assert_eq!(big.inuse_bytes, 10 * MIB);
    assert_eq!(big.inuse_objects, 10);
    let small = report.function("alloc_small").expect("alloc_small");
    assert_eq!(small.alloc_bytes, 100_000);
    assert_eq!(small.alloc_objects, 1000);
    assert_eq!(small.inuse_bytes, 0);
    let spike = report.function("spike").expect("spike");
    assert_eq!((spike.alloc_bytes, spike.inuse_bytes), (8 * MIB, 0));
    assert_eq!(report.by_inuse[0].function, "alloc_big");

    let peak = report.peak.as_ref().expect("peak");
    let highest = report.dumps.iter().map(|d| d.totals.inuse_bytes).max();
    assert_eq!(Some(peak.inuse_bytes), highest);
    assert!(peak.inuse_bytes >= 18 * MIB, "{peak:?}");
    assert!(peak.dump_index + 1 < report.dumps.len(), "peak is mid-run");
    assert_eq!(peak.path, report.dumps[peak.dump_index].path);

    let json = serde_json::to_string(&report).expect("serialize");
    let back: HeapReport = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, report);
}
