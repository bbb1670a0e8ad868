//! `panther-host`: loads protocol-testing plugins from shared libraries and runs experiments
//! with them.
//!
//! A map of the crate:
//!
//! | module | responsibility |
//! |---|---|
//! | [`loader`] | plugin folders, load errors, opening a library through abi_stable |
//! | [`preflight`] | checking a file's ELF headers before anything maps it |
//! | [`probe`] | reading a file's manifest in a short-lived child process |
//! | [`cache`] | the manifest cache, keyed by each file's identity |
//! | [`trust`] | refusing plugin files and folders others can change |
//! | [`registry`] | plugins by type and name, what they shadow, the files that failed |
//! | [`dispatch`] | the driver, extension and proxy patterns |
//! | [`scope`] | scope settings (host > job > experiment > service) and instance ownership |
//! | [`instance`] | plugin instances behind plain Rust methods, in process or isolated |
//! | [`isolate`] | plugin instances in child processes (`--isolate`) |
//! | [`context`] | what a plugin instance may ask of the host |
//! | `bounded_lines` | capped lines from child processes that may misbehave |
//! | `child_group` | probes and plugin servers ended with their whole process group |
//! | [`command`] | the command processor (crate `panther-process`): processes, groups, capture, timeouts |
//! | [`contain`] | run marks, cgroups, the subreaper (crate `panther-process`): finding every process of a run |
//! | [`events`] | the event bus, `events.jsonl`, live output |
//! | [`experiment`] | the experiment file and its validation |
//! | [`plan`] | one resolution of an experiment into what the run does, and why |
//! | [`plugin_defaults`] | per-plugin default configuration from the settings |
//! | [`embedded`] | plugins compiled into the program, registered without a file |
//! | [`aliases`] | PANTHER's keys: accepted under this host's names, or refused with a hint |
//! | [`keys`] | every unknown key of a TOML file at once |
//! | [`names`] | what an experiment, service or instance name may be |
//! | [`results_path`] | report paths kept inside the results folder |
//! | [`limits`] | ranges of durations and codes, environment keys, NUL bytes |
//! | [`run`] | the lifecycle of one experiment |
//! | [`run_dir`] | unique results folders and run ids |
//! | [`ports`] | `{port:NAME}` placeholders: free ports picked per run |
//! | [`job`] | the Job API: runners, parallel experiments |
//! | [`job_report`] | job-level `job.json` and `junit.xml` |
//! | [`scaffold`] | `panther-host new`: plugin project templates |
//! | [`settings`] | the host's settings file |
//! | [`tools`] | finding the external tools plugins need |
//! | [`cli`] | the `panther-host` command line |
//! | [`exit_code`] | what the exit codes mean |

#![warn(missing_docs)]

pub mod aliases;
mod bounded_lines;
pub mod cache;
mod child_group;
pub mod cli;
pub mod config_schema;
pub mod context;
pub mod dispatch;
pub mod embedded;
pub mod events;
pub mod exit_code;
pub mod experiment;
pub mod instance;
pub mod isolate;
pub mod job;
pub mod job_report;
pub mod keys;
pub mod limits;
pub mod loader;
pub mod matrix;
pub mod names;
pub mod plan;
pub mod plugin_defaults;
pub mod ports;
pub mod preflight;
pub mod probe;
mod progress;
pub mod registry;
pub mod results_path;
pub mod run;
pub mod run_dir;
pub mod scaffold;
pub mod scope;
pub mod settings;
mod table;
mod time;
pub mod tools;
pub mod trust;

pub use panther_plugin_api as api;
// The command processor lives in its own crate (plugins' tests run it too); the host's
// modules keep their paths.
use panther_process::child_exit;
pub use panther_process::{command, contain};
