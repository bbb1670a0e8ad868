//! Helpers shared by the integration tests: building the C programs under the
//! workspace's `tests/fixtures/programs/`, starting them, and locating the
//! gperftools libraries.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use panther_gperftools::library::find_library;

/// Fresh scratch directory for one test.
pub fn work_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("gperf-tests")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create work dir");
    dir
}

/// The workspace's `tests/fixtures/programs/`: the host's integration tests profile the
/// same programs through the gperf plugins, so each program is written once.
fn programs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/programs")
        .canonicalize()
        .expect("tests/fixtures/programs exists")
}

/// Compiles `tests/fixtures/programs/<name>.c` with debug info and frame pointers
/// (libprofiler unwinds with frame pointers or libunwind; both work at -O0).
pub fn compile(name: &str, dir: &Path) -> PathBuf {
    let source = programs_dir().join(format!("{name}.c"));
    let binary = dir.join(name);
    let output = Command::new("cc")
        .args(["-g", "-O0", "-fno-omit-frame-pointer", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .expect("run cc");
    assert!(output.status.success(), "cc failed: {}", text(&output));
    binary
}

/// Path of a gperftools library; the tests need the real thing.
pub fn library(name: &str) -> PathBuf {
    find_library(&[name]).unwrap_or_else(|| {
        panic!("{name} not found: install google-perftools and libgoogle-perftools-dev")
    })
}

/// Starts a server program with `vars` and waits for its `ready` line, so that `main` runs
/// (and the preloaded profiler has read its environment) before the test looks at it.
pub fn start_until_ready(binary: &Path, vars: Vec<(String, String)>) -> Child {
    let mut child = Command::new(binary)
        .envs(vars)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read ready line");
    assert_eq!(line.trim(), "ready");
    child
}

/// Runs a command to completion and requires success.
pub fn run(command: &mut Command) -> Output {
    let output = command.output().expect("spawn fixture");
    assert!(output.status.success(), "fixture failed: {}", text(&output));
    output
}

/// stdout and stderr of a finished process, for assertion messages.
pub fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
