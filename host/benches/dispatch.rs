//! In-process costs of the plugin boundary: one call through the ABI against a native
//! `dyn Trait` call, and an extension map over 100 instances.
//!
//! Needs the release plugins: `cargo build --release --workspace && cargo bench --bench dispatch`.

use std::{
    hint::black_box,
    path::PathBuf,
    sync::{atomic::AtomicBool, Arc},
};

use criterion::{criterion_group, criterion_main, Criterion};
use panther_host::{
    context::{InstanceContext, RunServices},
    dispatch::extension::{Extension, Extensions, FailurePolicy},
    instance::ExecutionEnvironment,
    loader,
};

fn plugin_path() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_BIN_EXE_panther-host"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = dir.join("libpanther_plugin_resource_metrics.so");
    assert!(
        path.is_file(),
        "{} missing: run `cargo build --release --workspace` first",
        path.display()
    );
    path
}

fn instances(n: usize) -> Vec<ExecutionEnvironment> {
    let plugin = loader::load(&plugin_path()).expect("the plugin loads");
    let services = RunServices::new(Arc::new(AtomicBool::new(false)));
    (0..n)
        .map(|i| {
            let ctx = InstanceContext::new(
                "resource_metrics",
                &format!("m{i}"),
                "bench",
                std::env::temp_dir(),
                services.clone(),
            );
            plugin
                .new_execution_environment(&format!("m{i}"), &serde_json::json!({}), ctx.into_ffi())
                .unwrap()
        })
        .collect()
}

/// What a host without an ABI boundary would call.
trait Slowdown {
    fn slowdown(&self) -> f64;
}

struct Native;

impl Slowdown for Native {
    #[inline(never)]
    fn slowdown(&self) -> f64 {
        1.0
    }
}

fn calls(c: &mut Criterion) {
    let mut group = c.benchmark_group("one call");
    let abi = instances(1).pop().unwrap();
    group.bench_function("through the ABI", |b| b.iter(|| black_box(&abi).slowdown()));
    let native: Box<dyn Slowdown> = Box::new(Native);
    group.bench_function("native dyn Trait", |b| {
        b.iter(|| black_box(&native).slowdown())
    });
    group.finish();

    let members = instances(100)
        .into_iter()
        .enumerate()
        .map(|(i, item)| Extension {
            name: format!("m{i}"),
            priority: 0,
            configured: i,
            item,
        })
        .collect();
    let mut extensions = Extensions::new(members);
    c.bench_function("extension map over 100 instances", |b| {
        b.iter(|| extensions.map(FailurePolicy::Continue, |e| Ok::<f64, ()>(e.slowdown())))
    });
}

criterion_group!(benches, calls);
criterion_main!(benches);
