//! Error type shared by every reader in the crate.
//!
//! Each variant names the file involved so that a failed experiment report
//! points straight at the artefact that could not be used.

use std::path::PathBuf;

/// Errors raised while reading, analysing or producing profiles.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// File that failed.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },

    /// The CPU profile file exists but holds no bytes. This is what
    /// libprofiler leaves behind when the process dies without running its
    /// exit handlers (SIGKILL, or SIGTERM/SIGINT with the default action).
    #[error(
        "{}: CPU profile is empty; the process was killed before the profiler \
         flushed it (stop it with the CPUPROFILESIGNAL switch before SIGTERM)",
        path.display()
    )]
    EmptyCpuProfile {
        /// File that is empty.
        path: PathBuf,
    },

    /// The header is not the gperftools legacy CPU profile header.
    #[error("{}: not a gperftools CPU profile: {reason}", path.display())]
    NotCpuProfile {
        /// File that was rejected.
        path: PathBuf,
        /// What did not match.
        reason: String,
    },

    /// The CPU profile ends in the middle of a record or before its trailer.
    #[error("{}: truncated CPU profile at byte {offset}: {reason}", path.display())]
    TruncatedCpuProfile {
        /// File that is truncated.
        path: PathBuf,
        /// Byte offset where data ran out.
        offset: usize,
        /// What was being read.
        reason: String,
    },

    /// A line of a heap profile does not follow the documented syntax.
    #[error("{}:{line}: malformed heap profile: {reason}", path.display())]
    MalformedHeapProfile {
        /// File holding the line.
        path: PathBuf,
        /// One-based line number.
        line: usize,
        /// What did not match.
        reason: String,
    },

    /// No `prefix.NNNN.heap` file was found for a heap profiling run.
    #[error("{}: no heap profile dumps found for this prefix", prefix.display())]
    NoHeapDumps {
        /// Prefix given to `HEAPPROFILE`.
        prefix: PathBuf,
    },

    /// Rendering the flame graph failed.
    #[error("{}: cannot render flame graph: {source}", path.display())]
    Flamegraph {
        /// Output file.
        path: PathBuf,
        /// Underlying error reported by the renderer.
        source: std::io::Error,
    },

    /// Sending a signal to a profiled process failed.
    #[error("cannot send signal {signal} to process {pid}: {source}")]
    Signal {
        /// Target process.
        pid: u32,
        /// Signal number.
        signal: i32,
        /// Error returned by `kill(2)`.
        source: std::io::Error,
    },

    /// A profiled process did not reach the expected state in time.
    #[error("{}: timed out after {waited_ms} ms waiting for {what}", path.display())]
    Timeout {
        /// File (profile or `/proc` entry) being watched.
        path: PathBuf,
        /// Milliseconds waited.
        waited_ms: u128,
        /// Condition that never became true.
        what: String,
    },
}

impl Error {
    /// Wraps an I/O error with the file it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;
