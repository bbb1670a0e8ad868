//! `panther-process`: the command processor of panther-host, on its own so that plugins'
//! tests run their processes through the very code the host runs them with.
//!
//! | module | responsibility |
//! |---|---|
//! | [`command`] | the command processor: processes, groups, capture, timeouts |
//! | [`contain`] | run marks, cgroups, the subreaper: finding every process of a run |
//! | [`child_exit`] | waking waiters when a child of this process ends |
//! | [`sink`] | where the processor reports what it ran and what it printed |
//! | [`plugin_calls`] | a plugin context's process calls, answered by a processor |
//!
//! The crate knows nothing of the host: what it reports goes to an [`EventSink`] the caller
//! gives it (the host's event bus, a test's recorder).

#![warn(missing_docs)]

pub mod child_exit;
pub mod command;
pub mod contain;
pub mod plugin_calls;
pub mod sink;

pub use command::{Capture, CommandError, CommandProcessor, Stray};
pub use plugin_calls::PluginCalls;
pub use sink::{EventSink, Stream};
