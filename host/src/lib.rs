//! `panther-host`: loads protocol-testing plugins from shared libraries and runs experiments
//! with them.
//!
//! A map of the crate:
//!
//! | module | responsibility |
//! |---|---|
//! | [`loader`] | finding `.so` files and loading each one through abi_stable |
//! | [`registry`] | loaded plugins by type and name, and the files that failed |
//! | [`dispatch`] | the driver, extension and proxy patterns |
//! | [`scope`] | scope settings (host > job > experiment > service) and instance ownership |
//! | [`instance`] | plugin instances behind plain Rust methods, in process or isolated |
//! | [`isolate`] | plugin instances in child processes (`--isolate`) |
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

pub mod cli;
pub mod command;
pub mod context;
pub mod dispatch;
pub mod events;
pub mod exit_code;
pub mod experiment;
pub mod instance;
pub mod isolate;
pub mod job;
pub mod job_report;
pub mod loader;
mod progress;
pub mod registry;
pub mod run;
pub mod scaffold;
pub mod scope;
pub mod settings;
mod time;
pub mod tools;

pub use panther_plugin_api as api;
