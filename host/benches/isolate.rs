//! What `--isolate` costs: one call to an instance in the host against the same call to an
//! instance in a plugin server, and starting (and dropping) an isolated instance.
//!
//! Needs the release plugins: `cargo build --release --workspace && cargo bench -p
//! panther-host --bench isolate`.

use std::{
    hint::black_box,
    path::PathBuf,
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use criterion::{criterion_group, criterion_main, Criterion};
use panther_host::{
    api::ServiceCommand,
    context::{InstanceContext, RunServices},
    instance::ExecutionEnvironment,
    isolate::{CallLimit, Isolation, Placement},
    loader::{self, LoadedPlugin},
};

fn plugin() -> LoadedPlugin {
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
    loader::load(&path).expect("the plugin loads")
}

fn placement(plugin: &LoadedPlugin, isolated: bool) -> Placement {
    Isolation::new(isolated, &[])
        .with_server(PathBuf::from(env!("CARGO_BIN_EXE_panther-host")))
        .placement(&plugin.path, &CallLimit::new(Duration::from_secs(60)))
}

fn instance(plugin: &LoadedPlugin, placement: &Placement) -> ExecutionEnvironment {
    let services = RunServices::new(Arc::new(AtomicBool::new(false)));
    let ctx = InstanceContext::new(
        "resource_metrics",
        "m",
        "bench",
        std::env::temp_dir(),
        services,
    );
    plugin
        .start_execution_environment(placement, "m", &serde_json::json!({}), ctx.into_ffi())
        .unwrap()
}

fn calls(c: &mut Criterion) {
    let plugin = plugin();
    let command = ServiceCommand {
        service: "server".into(),
        argv: vec!["/bin/echo-server".into(), "--port".into(), "4443".into()],
        env: Default::default(),
        cwd: None,
        output_dir: std::env::temp_dir(),
        experiment_dir: None,
        ..ServiceCommand::default()
    };
    let mut group = c.benchmark_group("one wrap call");
    for (name, isolated) in [("in process", false), ("isolated", true)] {
        let mut env = instance(&plugin, &placement(&plugin, isolated));
        group.bench_function(name, |b| {
            b.iter(|| black_box(env.wrap(black_box(&command)).unwrap()))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("instance life");
    group.sample_size(20);
    for (name, isolated) in [("in process", false), ("isolated", true)] {
        let placement = placement(&plugin, isolated);
        group.bench_function(name, |b| b.iter(|| drop(instance(&plugin, &placement))));
    }
    group.finish();
}

criterion_group!(benches, calls);
criterion_main!(benches);
