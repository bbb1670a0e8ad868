//! A small, bounded fuzz test of what `check` accepts: random mutations (fixed seed) of the
//! quickstart, of the test experiment files and of a host settings file — flipped bytes, duplicated, removed and
//! swapped lines, huge numbers, long strings, control characters, path-like names — go
//! through the validation in-process (the bulk: the same code `check` runs) and through the
//! real `panther-host check`. Each must end with an answer: no panic (exit 101), no signal,
//! no hang (each case has a time limit).
//!
//! `PANTHER_FUZZ_CASES` sets the number of in-process cases (default 600; a tenth of that
//! number also go through the binary); `PANTHER_FUZZ_SEED` replays another seed.

use std::{
    path::{Path, PathBuf},
    sync::mpsc,
    time::{Duration, Instant},
};

use crate::support::{build_dir, echo_experiment, host_bin, root};

/// How long one case may take before it counts as a hang.
const CASE_LIMIT: Duration = Duration::from_secs(30);

/// The experiment files the mutations start from.
fn seeds() -> Vec<String> {
    let quickstart = std::fs::read_to_string(root().join("examples/quickstart.toml")).unwrap();
    vec![
        quickstart,
        echo_experiment("fuzz", ""),
        echo_experiment(
            "fuzz-full",
            r#"
[network]
plugin = "localhost"
stop_grace = "2s"

[[execution]]
plugin = "resource_metrics"
name = "metrics"
services = ["server"]

[[report]]
plugin = "json"
path = "reports/result.json"

[[report]]
plugin = "junit"
path = "-"
"#,
        ),
        r#"[experiment]
name = "many"
timeout = "10s"
disable = ["x"]
order = ["y"]
fail_fast = true

[[service]]
name = "a"
command = ["/bin/true"]
cwd = "."
env = { A = "1", B = "two" }
depends_on = ["b"]
ready = { log = "ready.*", timeout = "5s" }
expect_exit = 0

[[service]]
name = "b"
command = ["/bin/sleep", "1"]
ready = { file = "x/y", delay = "1s" }
role = "client"
"#
        .to_string(),
    ]
}

/// The settings file the mutations of host settings start from.
const SETTINGS: &str = r#"plugin_dirs = ["/opt/panther/plugins"]
output = "results"

[scope]
disable = ["strace"]
order = ["resource_metrics"]
fail_fast = false
drivers = { network_environment = "localhost" }
"#;

/// Replacements that make a value hostile.
const HOSTILE: &[&str] = &[
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "1e400",
    "\"18446744073709551615s\"",
    "\"99999999999999999999days\"",
    "\"0s\"",
    "\"../../x\"",
    "\"/tmp/x\"",
    "\".\"",
    "\"\"",
    "\"a\\u0000b\"",
    "\"\\u001b[31m\"",
    "\"line\\nbreak\"",
    "\"A=B\"",
    "[]",
    "{}",
    "[[]]",
    "-1",
    "0",
    "nan",
    "true",
];

/// One random mutation of `text`.
fn mutate(rng: &mut fastrand::Rng, text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let pick = |rng: &mut fastrand::Rng, n: usize| rng.usize(..n.max(1));
    for _ in 0..rng.usize(1..=3) {
        match rng.u8(..9) {
            // Flip a byte (kept as text: a lossy decode).
            0 => {
                let mut bytes = lines.join("\n").into_bytes();
                if !bytes.is_empty() {
                    let i = pick(rng, bytes.len());
                    bytes[i] ^= 1 << rng.u8(..8);
                }
                lines = String::from_utf8_lossy(&bytes)
                    .lines()
                    .map(String::from)
                    .collect();
            }
            1 if !lines.is_empty() => {
                let i = pick(rng, lines.len());
                let line = lines[i].clone();
                lines.insert(i, line);
            }
            2 if !lines.is_empty() => {
                lines.remove(pick(rng, lines.len()));
            }
            3 if lines.len() > 1 => {
                let (i, j) = (pick(rng, lines.len()), pick(rng, lines.len()));
                lines.swap(i, j);
            }
            // Replace a value with a hostile one.
            4 | 5 => {
                let i = pick(rng, lines.len());
                if let Some(line) = lines.get_mut(i) {
                    if let Some(eq) = line.find(" = ") {
                        let value = HOSTILE[pick(rng, HOSTILE.len())];
                        *line = format!("{}{value}", &line[..eq + 3]);
                    }
                }
            }
            // A long string inside a string.
            6 => {
                let i = pick(rng, lines.len());
                if let Some(line) = lines.get_mut(i) {
                    if let Some(q) = line.find('"') {
                        let long = "x".repeat(1 << rng.u32(8..21));
                        line.insert_str(q + 1, &long);
                    }
                }
            }
            // A raw control character anywhere.
            7 => {
                let i = pick(rng, lines.len());
                if let Some(line) = lines.get_mut(i) {
                    let at = (0..=line.len())
                        .filter(|&k| line.is_char_boundary(k))
                        .nth(rng.usize(..=line.chars().count()))
                        .unwrap_or(0);
                    line.insert(at, char::from(rng.u8(..32)));
                }
            }
            // A new line that depends on something, or a new key.
            _ => {
                let extra = [
                    "depends_on = [\"client\", \"server\", \"a\"]",
                    "name = \"server\"",
                    "[[service]]",
                    "[[report]]",
                    "plugin = \"json\"",
                    "path = \"../out.json\"",
                    "timeout = \"4294967296s\"",
                    "ready = { delay = \"18446744073709551615s\" }",
                    "expect_exit = 2147483648",
                ];
                let i = pick(rng, lines.len() + 1);
                lines.insert(i, extra[pick(rng, extra.len())].to_string());
            }
        }
    }
    lines.join("\n") + "\n"
}

/// The number of in-process cases and the seed.
fn settings() -> (usize, u64) {
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    (
        var("PANTHER_FUZZ_CASES", 600) as usize,
        var("PANTHER_FUZZ_SEED", 11),
    )
}

#[test]
fn mutated_experiment_files_get_an_answer_from_check() {
    let (cases, seed) = settings();
    let mut rng = fastrand::Rng::with_seed(seed);
    let seeds = seeds();
    let dir = tempfile::Builder::new()
        .prefix("panther-fuzz-")
        .tempdir()
        .unwrap();
    let texts: Vec<String> = (0..cases)
        .map(|_| {
            let seed = rng.usize(..seeds.len());
            mutate(&mut rng, &seeds[seed])
        })
        .collect();
    let files: Vec<PathBuf> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let path = dir.path().join(format!("case-{i}.toml"));
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect();

    let answers = in_process(&files);
    // The mutations reach every stage: some files pass, some are refused by the TOML reader,
    // some by the validation after it.
    for kind in ["valid", "syntax", "invalid"] {
        assert!(answers.contains(&kind), "no {kind} case among {answers:?}");
    }
    // Host settings: every command reads them first.
    let settings: Vec<PathBuf> = (0..cases / 10)
        .map(|i| {
            let path = dir.path().join(format!("settings-{i}.toml"));
            std::fs::write(&path, mutate(&mut rng, SETTINGS)).unwrap();
            path
        })
        .collect();
    for file in &settings {
        let outcome = std::panic::catch_unwind(|| {
            let _ = panther_host::settings::Settings::load(Some(file));
        });
        assert!(outcome.is_ok(), "reading {} panicked", shown(file));
    }
    let empty = dir.path().join("settings.toml");
    std::fs::write(&empty, "").unwrap();
    let runs: Vec<(PathBuf, PathBuf)> = files[..cases / 10]
        .iter()
        .enumerate()
        .map(|(i, file)| {
            // Every third run also reads mutated settings.
            let settings = if i % 3 == 0 { &settings[i / 3] } else { &empty };
            (file.clone(), settings.clone())
        })
        .collect();
    through_the_binary(&runs);
}

/// The validation `check` runs, in this process, on a worker thread so that a hang is
/// noticed: every case must return (valid or refused) without panicking. Returns what each
/// case got: `valid`, `syntax` or `invalid`.
fn in_process(files: &[PathBuf]) -> Vec<&'static str> {
    let (to_worker, jobs) = mpsc::channel::<PathBuf>();
    let (answers, from_worker) = mpsc::channel::<Result<&'static str, String>>();
    std::thread::spawn(move || {
        let registry = panther_host::registry::Registry::load(&[build_dir()]);
        for file in jobs {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                match panther_host::experiment::load(&file, &registry) {
                    Ok(_) => "valid",
                    Err(panther_host::experiment::ExperimentError::Syntax(_)) => "syntax",
                    Err(_) => "invalid",
                }
            }))
            .map_err(|panic| {
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            });
            if answers.send(outcome).is_err() {
                return;
            }
        }
    });
    let mut kinds = Vec::with_capacity(files.len());
    for file in files {
        to_worker.send(file.clone()).unwrap();
        match from_worker.recv_timeout(CASE_LIMIT) {
            Ok(Ok(kind)) => kinds.push(kind),
            Ok(Err(panic)) => panic!("validating {} panicked: {panic}", shown(file)),
            Err(_) => panic!("validating {} did not end", shown(file)),
        }
    }
    kinds
}

/// `panther-host --config SETTINGS check FILE` for each pair, two at a time: exit 0 or 2,
/// nothing else.
fn through_the_binary(runs: &[(PathBuf, PathBuf)]) {
    let check = |(file, settings): &(PathBuf, PathBuf)| {
        let mut child = std::process::Command::new(host_bin())
            .arg("check")
            .arg(file)
            .env("PANTHER_CONFIG", settings)
            .env_remove("PANTHER_PLUGIN_PATH")
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + CASE_LIMIT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                child.kill().ok();
                child.wait().ok();
                panic!(
                    "panther-host check {} (settings {}) did not end",
                    shown(file),
                    shown(settings)
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(
            matches!(status.code(), Some(0 | 2)),
            "panther-host check {} (settings {}) ended with {status}",
            shown(file),
            shown(settings)
        );
    };
    let (even, odd): (Vec<_>, Vec<_>) = runs.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    std::thread::scope(|scope| {
        scope.spawn(|| even.iter().for_each(|(_, f)| check(f)));
        odd.iter().for_each(|(_, f)| check(f));
    });
}

/// The case's file and its text, for the failure message; a copy is kept in the temporary
/// folder, as the case's own folder is removed when the test fails.
fn shown(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let kept = std::env::temp_dir().join(format!(
        "panther-fuzz-failure-{}.toml",
        file.file_stem().unwrap().to_string_lossy()
    ));
    std::fs::write(&kept, &text).ok();
    format!(
        "{} (kept as {}):\n{}",
        file.display(),
        kept.display(),
        text.chars().take(2000).collect::<String>()
    )
}
