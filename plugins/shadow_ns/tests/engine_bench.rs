//! The engine benchmark (`examples/engine_bench.rs`) still runs: a short pass, one round.
//! Needs root, like the emulation it measures.

use std::process::Command;

#[test]
fn the_benchmark_prints_its_table() {
    // `cargo test` builds the package's examples next to its test binaries.
    let exe = std::env::current_exe().unwrap();
    let bench = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples/engine_bench");
    assert!(bench.is_file(), "{} was not built", bench.display());
    let output = Command::new(&bench)
        .args(["0.3", "200", "1"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for row in [
        "veth pair (kernel only)",
        "engine, direct (0 ms link)",
        "engine, scheduled (0 ms, 100 Gbit)",
    ] {
        assert!(table.contains(row), "{table}");
    }
}
