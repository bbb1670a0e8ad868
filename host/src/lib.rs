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
//! | [`instance`] | plugin instances behind plain Rust methods |
//! | [`context`] | what a plugin instance may ask of the host |
//! | [`command`] | the command processor: processes, groups, capture, timeouts |
//! | [`events`] | the event bus, `events.jsonl`, live output |
//! | [`experiment`] | the experiment file and its validation |
//! | [`run`] | the lifecycle of one experiment |
//! | [`job`] | the Job API: runners, parallel experiments |
//! | [`job_report`] | job-level `job.json` and `junit.xml` |
//! | [`scaffold`] | `panther-host new`: plugin project templates |
//! | [`settings`] | the host's settings file |
//! | [`tools`] | finding the external tools plugins need |
//! | [`cli`] | the `panther-host` command line |
//! | [`exit_code`] | what the exit codes mean |

#![warn(missing_docs)]

pub mod cache;
pub mod cli;
pub mod command;
pub mod context;
pub mod dispatch;
pub mod events;
pub mod exit_code;
pub mod experiment;
pub mod instance;
pub mod job;
pub mod job_report;
pub mod loader;
pub mod preflight;
pub mod probe;
mod progress;
pub mod registry;
pub mod run;
pub mod scaffold;
pub mod scope;
pub mod settings;
mod time;
pub mod tools;
pub mod trust;

pub use panther_plugin_api as api;
