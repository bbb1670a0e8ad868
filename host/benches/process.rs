//! Whole-process costs, as a user sees them: `panther-host list` with 1, 100 and every shipped
//! plugin file, with a warm manifest cache and a cold one (every file probed), and
//! `panther-host run` of a one-service experiment against running the service directly.
//!
//! Needs the release plugins: `cargo build --release --workspace && cargo bench --bench process`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

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

/// The host with its manifest cache in `cache`.
fn host_with_cache(cache: &Path) -> Command {
    let mut command = Command::new(host());
    command
        .env("PANTHER_CACHE_DIR", cache)
        .env_remove("PANTHER_PLUGIN_PATH");
    command
}

fn list(c: &mut Criterion) {
    let scratch = tempfile::tempdir().unwrap();
    let cache = scratch.path().join("cache");
    let empty = scratch.path().join("empty");
    let one = scratch.path().join("one");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::create_dir_all(&one).unwrap();
    let json = release_dir().join("libpanther_plugin_json.so");
    std::fs::copy(&json, one.join("libpanther_plugin_json.so")).unwrap();
    // 100 plugin files: copies of `json`, each in its own folder (the first one is used,
    // the other 99 are listed as shadowed; every one is checked and read).
    let hundred: Vec<PathBuf> = (0..100)
        .map(|i| {
            let dir = scratch.path().join(format!("hundred/{i:03}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(&json, dir.join("libpanther_plugin_json.so")).unwrap();
            dir
        })
        .collect();
    let list_of = |dirs: &[PathBuf], cache: &Path| {
        let mut command = host_with_cache(cache);
        command.args(["list", "--no-default-plugins"]);
        for dir in dirs {
            command.arg("--plugin-dir").arg(dir);
        }
        command
    };
    let mut group = c.benchmark_group("panther-host list (whole process)");
    group.sample_size(20);
    group.bench_function("empty plugin folder", |b| {
        b.iter(|| run(&mut list_of(std::slice::from_ref(&empty), &cache)))
    });
    run(&mut list_of(std::slice::from_ref(&one), &cache));
    group.bench_function("1 plugin file, warm cache", |b| {
        b.iter(|| run(&mut list_of(std::slice::from_ref(&one), &cache)))
    });
    run(&mut list_of(&hundred, &cache));
    group.bench_function("100 plugin files, warm cache", |b| {
        b.iter(|| run(&mut list_of(&hundred, &cache)))
    });
    run(host_with_cache(&cache).arg("list"));
    group.bench_function("every shipped plugin, warm cache", |b| {
        b.iter(|| run(host_with_cache(&cache).arg("list")))
    });
    group.sample_size(10);
    let cold = scratch.path().join("cold-cache");
    group.bench_function("100 plugin files, cold cache (all probed)", |b| {
        b.iter_batched(
            || {
                let _ = std::fs::remove_dir_all(&cold);
            },
            |()| run(&mut list_of(&hundred, &cold)),
            criterion::BatchSize::PerIteration,
        )
    });
    group.bench_function("every shipped plugin, cold cache (all probed)", |b| {
        b.iter_batched(
            || {
                let _ = std::fs::remove_dir_all(&cold);
            },
            |()| run(host_with_cache(&cold).arg("list")),
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn overhead(c: &mut Criterion) {
    let scratch = tempfile::tempdir().unwrap();
    let cache = scratch.path().join("cache");
    let experiment = scratch.path().join("true.toml");
    std::fs::write(
        &experiment,
        "[experiment]\nname = \"true\"\n\n[[service]]\nname = \"true\"\ncommand = [\"/bin/true\"]\nrole = \"client\"\n",
    )
    .unwrap();
    let run_true = || {
        let mut command = host_with_cache(&cache);
        command
            .current_dir(scratch.path())
            .args(["run", "-q", "--output"])
            .arg(scratch.path().join("results"))
            .arg(&experiment);
        command
    };
    run(&mut run_true());
    let mut group = c.benchmark_group("run overhead (whole process)");
    group.sample_size(20);
    group.bench_function("/bin/true directly", |b| {
        b.iter(|| run(&mut Command::new("/bin/true")))
    });
    group.bench_function("panther-host run of /bin/true, warm cache", |b| {
        b.iter(|| run(&mut run_true()))
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
                run(host_with_cache(&scratch.path().join("cache"))
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
