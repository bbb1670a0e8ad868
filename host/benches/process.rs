//! Whole-process costs, as a user sees them: `panther-host list` with 1, 100 and every shipped
//! plugin file, and `panther-host run` of a one-service experiment against running the
//! service directly.
//!
//! Needs the release plugins: `cargo build --release --workspace && cargo bench --bench process`.

use std::{path::PathBuf, process::Command};

use criterion::{criterion_group, criterion_main, Criterion};

fn host() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_panther-host"))
}

fn release_dir() -> PathBuf {
    let dir = host().parent().unwrap().to_path_buf();
    assert!(
        dir.join("libpanther_plugin_json.so").is_file(),
        "run `cargo build --release --workspace` first"
    );
    dir
}

fn run(command: &mut Command) {
    let status = command.output().expect("runs").status;
    assert!(status.success(), "{command:?} failed: {status}");
}

fn list(c: &mut Criterion) {
    let scratch = tempfile::tempdir().unwrap();
    let one = scratch.path().join("one");
    let hundred = scratch.path().join("hundred");
    std::fs::create_dir_all(&one).unwrap();
    std::fs::create_dir_all(&hundred).unwrap();
    let json = release_dir().join("libpanther_plugin_json.so");
    std::fs::copy(&json, one.join("libpanther_plugin_json.so")).unwrap();
    for i in 0..100 {
        std::fs::copy(&json, hundred.join(format!("libcopy_{i:03}.so"))).unwrap();
    }
    let mut group = c.benchmark_group("panther-host list (whole process)");
    group.sample_size(20);
    group.bench_function("empty plugin folder", |b| {
        b.iter(|| {
            run(Command::new(host())
                .args(["list", "--no-default-plugins", "--plugin-dir"])
                .arg(scratch.path()))
        })
    });
    group.bench_function("1 plugin file", |b| {
        b.iter(|| {
            run(Command::new(host())
                .args(["list", "--no-default-plugins", "--plugin-dir"])
                .arg(&one))
        })
    });
    group.bench_function("100 plugin files", |b| {
        b.iter(|| {
            run(Command::new(host())
                .args(["list", "--no-default-plugins", "--plugin-dir"])
                .arg(&hundred))
        })
    });
    group.bench_function("every shipped plugin", |b| {
        b.iter(|| run(Command::new(host()).arg("list")))
    });
    group.finish();
}

fn overhead(c: &mut Criterion) {
    let scratch = tempfile::tempdir().unwrap();
    let experiment = scratch.path().join("true.toml");
    std::fs::write(
        &experiment,
        "[experiment]\nname = \"true\"\n\n[[service]]\nname = \"true\"\ncommand = [\"/bin/true\"]\nrole = \"client\"\n",
    )
    .unwrap();
    let mut group = c.benchmark_group("run overhead (whole process)");
    group.sample_size(20);
    group.bench_function("/bin/true directly", |b| {
        b.iter(|| run(&mut Command::new("/bin/true")))
    });
    group.bench_function("panther-host run of /bin/true", |b| {
        b.iter(|| {
            run(Command::new(host())
                .current_dir(scratch.path())
                .args(["run", "-q", "--output"])
                .arg(scratch.path().join("results"))
                .arg(&experiment))
        })
    });
    group.finish();
}

fn jobs(c: &mut Criterion) {
    let scratch = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = (0..100)
        .map(|i| {
            let path = scratch.path().join(format!("e{i:03}.toml"));
            std::fs::write(
                &path,
                format!("[experiment]\nname = \"e{i:03}\"\n\n[[service]]\nname = \"true\"\ncommand = [\"/bin/true\"]\nrole = \"client\"\n"),
            )
            .unwrap();
            path
        })
        .collect();
    let mut group = c.benchmark_group("job of 100 one-service experiments (whole process)");
    group.sample_size(10);
    for jobs in ["1", "2"] {
        group.bench_function(format!("--jobs {jobs}"), |b| {
            b.iter(|| {
                run(Command::new(host())
                    .current_dir(scratch.path())
                    .args(["run", "-q", "--jobs", jobs, "--output"])
                    .arg(scratch.path().join("results"))
                    .args(&files))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, list, overhead, jobs);
criterion_main!(benches);
