//! End-to-end tests of `panther-host`: the real binary, the real plugin libraries the
//! workspace built, fixture plugins built from `tests/fixtures`, real processes.
//!
//! Run `cargo build --workspace` first (the README's test command does): the tests load the
//! plugin `.so` files from `target/debug` and fail loudly when they are missing.
//!
//! - [`support`]: the harness: paths, fixture builds, a sandbox folder per test, running the
//!   host.
//! - [`loading`]: discovery, precedence, trust, `list`, `info`, version checks, logs.
//! - [`hostile_plugins`]: files that crash, exit or hang when opened; the manifest cache.
//! - [`patterns`]: driver, extension and proxy behaviour through real experiments.
//! - [`plan`]: one resolution into a plan: scopes, settings, default and command-line reporters.
//! - [`cli`]: settings files, verbosity, usage errors.
//! - [`docs`]: the documentation's commands, `new`, the out-of-tree example plugin.
//! - [`execution`]: execution environments on real programs.
//! - [`experiments`]: the quickstart, results folders, exit codes, bad experiment files.
//! - [`strace`], [`valgrind`], [`gperf`]: the tracing and profiling plugins with the real tools.
//! - [`hostile_inputs`]: names that are paths, overflowing values, NUL bytes, deep chains.
//! - [`fuzz`]: random mutations of experiment files through `check`: no panic, no hang.
//! - [`jobs`]: several experiments at once, each in its own scope.
//! - [`isolate`]: `--isolate`: plugins that crash, exit or hang in child processes fail alone.
//! - [`lifecycle`]: Ctrl-C, timeouts and crashes leave no process behind.
//! - [`stopping`]: servers stopped under wrappers that report when they exit (GNU time,
//!   strace) keep their reports.
//! - [`containment`]: daemonizing services, killed hosts, many runs of one experiment at once.
//! - [`docker`]: `docker_compose` and `localhost_single_container` on the real Docker engine.
//! - [`tools_in_containers`]: strace and resource_metrics on services in containers whose
//!   images do not have the tools.
//! - [`shadow_ns`]: emulated links measured from inside an experiment, Shadow configuration.
//! - [`vocabulary`]: PANTHER's keys: read under this host's names, or refused with a hint.

mod cli;
mod containment;
mod docker;
mod docs;
mod execution;
mod experiments;
mod fuzz;
mod gperf;
mod hostile_inputs;
mod hostile_plugins;
mod isolate;
mod jobs;
mod lifecycle;
mod loading;
mod patterns;
mod plan;
mod shadow_ns;
mod stopping;
mod strace;
mod support;
mod tools_in_containers;
mod valgrind;
mod vocabulary;
