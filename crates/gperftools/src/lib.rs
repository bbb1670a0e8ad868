//! Shared gperftools support for the `gperf_cpu` and `gperf_heap` execution environments:
//! reading CPU and heap profiles natively, symbolizing them, reporting on them, and running
//! a profiled service so that it leaves a complete profile behind.
//!
//! * [`cpu`] parses the binary CPU profile written by `libprofiler` (`CPUPROFILE`).
//! * [`heap`] parses the text heap dumps written by `libtcmalloc` (`HEAPPROFILE`) and
//!   summarises a whole run.
//! * [`symbolize`] resolves addresses with DWARF and symbol tables, using the memory map
//!   stored in each profile.
//! * [`report`] derives flat/cumulative tables, folded stacks and flame graphs.
//! * [`control`] flushes profiles with the gperftools signals (`CPUPROFILESIGNAL`,
//!   `HEAPPROFILESIGNAL`) and waits until they are written.
//! * [`library`] finds `libprofiler` and `libtcmalloc` and builds `LD_PRELOAD`.
//! * [`process`] reads the process tree, memory maps and environments from `/proc`.
//! * [`container`] reads the objects of a service that ran in a container from the
//!   container's own root; [`carry`] brings the libraries into its container.
//! * [`plugin`] is the execution environment both plugins are, around a [`Profiler`]'s
//!   configuration; [`poller`] watches a service's processes while it runs.
//!
//! No external `pprof` is needed.

pub mod carry;
pub mod container;
pub mod control;
pub mod cpu;
pub mod debug_file;
pub mod error;
pub mod heap;
pub mod library;
pub mod maps;
pub mod plugin;
pub mod poller;
pub mod process;
pub mod profiler;
pub mod report;
pub mod symbolize;
#[cfg(feature = "testing")]
pub mod testing;

pub use cpu::CpuProfile;
pub use error::{Error, Result};
pub use maps::Mapping;
pub use plugin::{PreloadPlugin, ProfilerConfig, Wrapped};
pub use poller::{Pace, Poller};
pub use process::ProcessId;
pub use profiler::Profiler;
pub use symbolize::{symbolize_cpu, Frame, SymbolizedCpuProfile, Symbolizer};

/// Keys of PANTHER's early `gperf_cpu` and `gperf_heap` configurations, which described GNU
/// gperf, the perfect-hash generator, instead of gperftools' profilers. Both plugins refuse
/// them with [`GPERF_GENERATOR_HINT`].
pub const GPERF_GENERATOR_KEYS: [&str; 11] = [
    "input_file",
    "output_file",
    "language",
    "keyword_only",
    "readonly_tables",
    "switch",
    "compare_strncmp",
    "hash_function",
    "compare_function",
    "includes",
    "other_flags",
];

/// Why [`GPERF_GENERATOR_KEYS`] are refused.
pub const GPERF_GENERATOR_HINT: &str =
    "an option of GNU gperf, the perfect-hash generator, not of gperftools' profilers: there is nothing to set";

/// What PANTHER's function filters and pprof options become: nothing, and why.
pub const PPROF_FILTER_HINT: &str =
    "the report lists the `top` functions; filter the raw profile with pprof afterwards";
