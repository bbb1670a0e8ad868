//! gperftools' two profilers as PANTHER preloads them: which library, which variables, and
//! how the plugin that preloads each names things in its manifest and messages.

use crate::library::{PROFILER_NAMES, TCMALLOC_NAMES};

/// One of gperftools' profilers, each preloaded by its own plugin. Both may profile the same
/// service, so each must know the other's variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profiler {
    /// libprofiler, preloaded by `gperf_cpu`.
    Cpu,
    /// libtcmalloc's heap profiler, preloaded by `gperf_heap`.
    Heap,
}

impl Profiler {
    /// The plugin that preloads it.
    pub fn plugin(self) -> &'static str {
        match self {
            Profiler::Cpu => "gperf_cpu",
            Profiler::Heap => "gperf_heap",
        }
    }

    /// The capability the plugin declares besides `ld_preload`.
    pub fn capability(self) -> &'static str {
        match self {
            Profiler::Cpu => "cpu_profiler",
            Profiler::Heap => "heap_profiler",
        }
    }

    /// The library's file names, the runtime name first.
    pub fn library_names(self) -> &'static [&'static str] {
        match self {
            Profiler::Cpu => PROFILER_NAMES,
            Profiler::Heap => TCMALLOC_NAMES,
        }
    }

    /// The library, in messages about an image that cannot load it.
    pub fn library_label(self) -> &'static str {
        match self {
            Profiler::Cpu => "libprofiler",
            Profiler::Heap => "tcmalloc",
        }
    }

    /// What the library must provide, in the message that says it is not installed.
    pub fn wanted(self) -> &'static str {
        match self {
            Profiler::Cpu => "CPU profiler",
            Profiler::Heap => "tcmalloc with its heap profiler",
        }
    }

    /// What a service can have only one of.
    pub fn one_per_service(self) -> &'static str {
        match self {
            Profiler::Cpu => "CPU profiler",
            Profiler::Heap => "heap profiler",
        }
    }

    /// The variable that switches the profiler on and says where it writes.
    pub fn output_variable(self) -> &'static str {
        match self {
            Profiler::Cpu => "CPUPROFILE",
            Profiler::Heap => "HEAPPROFILE",
        }
    }

    /// The variable that names the signal the plugin drives the profiler with.
    pub fn signal_variable(self) -> &'static str {
        match self {
            Profiler::Cpu => "CPUPROFILESIGNAL",
            Profiler::Heap => "HEAPPROFILESIGNAL",
        }
    }

    /// The other profiler: on the same service, the two signals must differ, or one signal
    /// would drive both.
    pub fn other(self) -> Profiler {
        match self {
            Profiler::Cpu => Profiler::Heap,
            Profiler::Heap => Profiler::Cpu,
        }
    }
}
