//! The event bus: every step of a run becomes an [`EventRecord`] (an [`Event`] with a
//! timestamp, its scope and its source) that every [`Observer`] receives. Two observers ship:
//! [`JsonlWriter`] (the run's `events.jsonl`) and [`TracingObserver`] (live with `-v`).

use std::{
    fs::File,
    io::Write,
    path::Path,
    sync::{Arc, Mutex, RwLock},
    time::Instant,
};

use panther_plugin_api::Event;
use serde::Serialize;

/// An event as observers receive it.
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord<'a> {
    /// Wall-clock time, RFC 3339.
    pub time: String,
    /// Milliseconds since the bus was created.
    pub elapsed_ms: u64,
    /// The scope it belongs to, e.g. `experiment:echo` or `service:server`.
    pub scope: &'a str,
    /// Who emitted it: `host` or a plugin instance.
    pub source: &'a str,
    /// What happened.
    #[serde(flatten)]
    pub event: &'a Event,
}

pub use panther_process::Stream;

/// Receives events (and, optionally, the live output of processes).
pub trait Observer: Send + Sync {
    /// Called for every event, in order.
    fn on_event(&self, record: &EventRecord<'_>);
    /// Called for every line a process prints. Does nothing unless overridden.
    fn on_output(&self, process: &str, stream: Stream, line: &str) {
        let _ = (process, stream, line);
    }
}

/// Hands events to observers.
pub struct EventBus {
    observers: RwLock<Vec<Arc<dyn Observer>>>,
    start: Instant,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            observers: RwLock::new(Vec::new()),
            start: Instant::now(),
        }
    }
}

impl EventBus {
    /// A bus with no observers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an observer.
    pub fn subscribe(&self, observer: Arc<dyn Observer>) {
        self.observers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(observer);
    }

    /// Sends an event to every observer.
    pub fn emit(&self, scope: &str, source: &str, event: &Event) {
        let record = EventRecord {
            time: crate::time::now_rfc3339(),
            elapsed_ms: self.start.elapsed().as_millis() as u64,
            scope,
            source,
            event,
        };
        for observer in self
            .observers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            observer.on_event(&record);
        }
    }

    /// Sends a line of process output to every observer.
    pub fn output(&self, process: &str, stream: Stream, line: &str) {
        for observer in self
            .observers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            observer.on_output(process, stream, line);
        }
    }
}

/// The command processor reports to the bus like any other part of the run.
impl panther_process::EventSink for EventBus {
    fn event(&self, scope: &str, source: &str, event: &Event) {
        self.emit(scope, source, event);
    }

    fn output(&self, process: &str, stream: Stream, line: &str) {
        EventBus::output(self, process, stream, line);
    }
}

/// Writes every event as one JSON line.
///
/// One writer per file (the run's folder is its own), and each line goes out whole, in one
/// `write_all` under the lock, so lines never interleave.
pub struct JsonlWriter {
    out: Mutex<File>,
}

impl JsonlWriter {
    /// Creates the file, which must not exist yet: it belongs to one run.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)?;
        Ok(JsonlWriter {
            out: Mutex::new(file),
        })
    }
}

impl Observer for JsonlWriter {
    fn on_event(&self, record: &EventRecord<'_>) {
        let Ok(mut line) = serde_json::to_vec(record) else {
            return;
        };
        line.push(b'\n');
        // Unbuffered: the log survives a crash of the host.
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.write_all(&line);
    }
}

/// Logs every event through `tracing` (shown with `-v`), and process output at trace level.
pub struct TracingObserver;

impl Observer for TracingObserver {
    fn on_event(&self, record: &EventRecord<'_>) {
        let event = serde_json::to_string(record.event).unwrap_or_default();
        tracing::info!(target: "panther::event", scope = record.scope, source = record.source, "{event}");
    }

    fn on_output(&self, process: &str, stream: Stream, line: &str) {
        let stream = match stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        };
        tracing::debug!(target: "panther::output", process, stream, "{line}");
    }
}
