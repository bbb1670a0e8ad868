//! `gperf_heap`: profiles a service's heap with gperftools' tcmalloc heap profiler, preloaded
//! into the service itself, and reports memory by allocating function and the peak.
//!
//! - `wrap` adds `LD_PRELOAD` (appended to any value already there, so `gperf_cpu` and other
//!   preloading tools stack), `HEAPPROFILE=<output_dir>/heap`, `HEAPPROFILESIGNAL` and, when
//!   configured, `HEAP_PROFILE_ALLOCATION_INTERVAL` / `HEAP_PROFILE_INUSE_INTERVAL` to the
//!   service's own environment.
//! - `stop_monitoring`, called while the service may still run and before the host sends it
//!   SIGTERM (which would lose the dump tcmalloc writes at exit), asks every profiled process
//!   still running for a final dump (see [`flush`]).
//! - `get_monitoring_data` reads every dump, symbolizes the call sites natively and reports
//!   per-dump totals, in-use and allocated bytes by function, and the peak.
//!
//! In a container, libtcmalloc and its dependencies are carried in and preloaded by their
//! mounted paths, and the dumps are symbolized through the container's root
//! ([`panther_gperftools::carry`], [`panther_gperftools::container`]).

pub mod flush;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use panther_gperftools::{
    container::ObjectFiles,
    heap::{analyze_heap_run, dump_prefixes, merge_site_stats, HeapCounts, SiteStat},
    process, Pace, Poller, PreloadPlugin, Profiler, ProfilerConfig, Symbolizer, Wrapped,
    PPROF_FILTER_HINT,
};
use panther_plugin_api::{prelude::*, serde_json};

/// The `[[execution]]` section of `gperf_heap`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Write a dump every time this many more bytes have been allocated
    /// (`HEAP_PROFILE_ALLOCATION_INTERVAL`). gperftools' default when absent: 1 GiB.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub allocation_interval: Option<u64>,
    /// Write a dump every time the in-use high-water mark grows by this many bytes
    /// (`HEAP_PROFILE_INUSE_INTERVAL`). gperftools' default when absent: 100 MiB.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub inuse_interval: Option<u64>,
    /// The libtcmalloc to preload, as an absolute path. Found automatically when absent
    /// (`libtcmalloc.so.4`, then `libtcmalloc.so`, in the library folders and the `ldconfig`
    /// cache). `libtcmalloc_minimal` has no heap profiler.
    #[serde(default)]
    pub library: Option<PathBuf>,
    /// How many functions each table of the report lists.
    #[serde(default = "default_top")]
    #[schemars(range(min = 1))]
    pub top: usize,
    /// The dump trigger (`HEAPPROFILESIGNAL`): 10 (SIGUSR1), 12 (SIGUSR2) or a real-time
    /// signal from 34 to 64. The program must not use it, and it must differ from
    /// `gperf_cpu`'s on the same service.
    #[serde(default = "default_signal")]
    pub signal: i32,
}

fn default_top() -> usize {
    20
}

fn default_signal() -> i32 {
    libc::SIGUSR1
}

/// The `HEAPPROFILE` prefix in the service's output folder: dumps are `heap.0001.heap`, …
pub const PREFIX_NAME: &str = "heap";

/// Bytes and objects attributed to one function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FunctionHeap {
    /// The innermost function of the call sites that is not part of the allocator.
    pub function: String,
    /// Bytes still allocated at the last dump.
    pub inuse_bytes: i64,
    /// Objects still allocated at the last dump.
    pub inuse_objects: i64,
    /// Bytes allocated from the start until the last dump.
    pub allocated_bytes: i64,
    /// Objects allocated from the start until the last dump.
    pub allocated_objects: i64,
}

impl From<&SiteStat> for FunctionHeap {
    fn from(stat: &SiteStat) -> Self {
        FunctionHeap {
            function: stat.function.clone(),
            inuse_bytes: stat.counts.inuse_bytes,
            inuse_objects: stat.counts.inuse_objects,
            allocated_bytes: stat.counts.alloc_bytes,
            allocated_objects: stat.counts.alloc_objects,
        }
    }
}

/// Totals of one dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dump {
    /// The raw dump.
    pub path: PathBuf,
    /// Its number.
    pub sequence: Option<u32>,
    /// Bytes in use when it was written.
    pub inuse_bytes: i64,
    /// Objects in use when it was written.
    pub inuse_objects: i64,
    /// Bytes allocated from the start until then.
    pub allocated_bytes: i64,
    /// Objects allocated from the start until then.
    pub allocated_objects: i64,
}

impl Dump {
    fn new(path: PathBuf, sequence: Option<u32>, totals: HeapCounts) -> Self {
        Dump {
            path,
            sequence,
            inuse_bytes: totals.inuse_bytes,
            inuse_objects: totals.inuse_objects,
            allocated_bytes: totals.alloc_bytes,
            allocated_objects: totals.alloc_objects,
        }
    }
}

/// The highest in-use total of the dumps. Dumps are snapshots: the real peak between two
/// dumps may be higher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Peak {
    /// Bytes in use.
    pub inuse_bytes: i64,
    /// The dump it was seen in.
    pub dump: PathBuf,
    /// That dump's number.
    pub sequence: Option<u32>,
    /// The process, when known (a child process' dumps carry its pid).
    pub pid: Option<u32>,
}

/// The dumps of one process.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessHeap {
    /// The process, when known.
    pub pid: Option<u32>,
    /// Whether the process was a wrapper around the service's command (e.g. strace, when
    /// another execution environment wraps this one): left out of the totals and tables.
    pub wrapper: bool,
    /// Its `HEAPPROFILE` prefix.
    pub prefix: PathBuf,
    /// Whether its last dump was asked for at the end of the run (the process still ran);
    /// otherwise the process wrote it when it exited.
    pub flushed_at_stop: bool,
    /// Every dump, in order.
    pub dumps: Vec<Dump>,
    /// Its highest in-use total.
    pub peak: Option<Peak>,
    /// Why its dumps could not be read.
    pub error: Option<String>,
}

/// What `gperf_heap` reports for one service.
#[derive(Debug, Clone, Serialize)]
pub struct HeapData {
    /// Dumps over every process of the service.
    pub dumps: usize,
    /// The libtcmalloc that was preloaded (found, or named by `library`).
    pub library: PathBuf,
    /// Bytes in use at the last dump (of every process).
    pub inuse_bytes: i64,
    /// Bytes allocated until the last dump (of every process).
    pub allocated_bytes: i64,
    /// The highest in-use total of any dump.
    pub peak: Option<Peak>,
    /// In-use bytes of that dump (also in `peak`), for summaries.
    pub peak_inuse_bytes: i64,
    /// Functions by bytes in use at the last dump, highest first.
    pub top_inuse: Vec<FunctionHeap>,
    /// Functions by bytes allocated until the last dump, highest first.
    pub top_allocated: Vec<FunctionHeap>,
    /// Each profiled process.
    pub processes: Vec<ProcessHeap>,
    /// What went wrong or was left out.
    pub warnings: Vec<String>,
}

/// What `gperf_heap` keeps about a service once it runs.
#[derive(Default)]
pub struct HeapMonitor {
    /// The pid the host gave.
    pid: Option<u32>,
    finder: Option<Finder>,
    /// The process running the service's command, once found.
    service: Option<u32>,
    wrappers: Vec<u32>,
    flushed: Vec<flush::Flushed>,
    notes: Vec<String>,
}

/// The process running the service's command and the wrappers above it, once found.
type Found = Option<(u32, Vec<u32>)>;

/// Looks for the process running the service's command while the service runs: the
/// processes above it are wrappers added by other execution environments (e.g. strace).
struct Finder(Poller<Found>);

/// Wrappers start the command within milliseconds; after two seconds it is most likely a
/// script or a program that changed its command line.
const FINDER_PACE: Pace = Pace {
    early: Duration::from_millis(5),
    later: Duration::from_millis(100),
};

impl Finder {
    fn start(root: u32, argv: Vec<String>) -> std::io::Result<Self> {
        let poller = Poller::spawn(
            "gperf-heap-finder".into(),
            FINDER_PACE,
            None,
            move |found: &mut Found, stopping| {
                if let Some(service) = process::find_running(root, &argv) {
                    *found = Some((service, process::ancestors_below(root, service)));
                    return true;
                }
                stopping
            },
        )?;
        Ok(Finder(poller))
    }

    /// The process running the command and the wrappers above it (none when the command's
    /// process was never seen).
    fn finish(self) -> (Option<u32>, Vec<u32>) {
        match self.0.finish() {
            Ok(Some((service, wrappers))) => (Some(service), wrappers),
            Ok(None) | Err(_) => (None, Vec::new()),
        }
    }
}

/// tcmalloc's keys, variables, finder and final dumps.
impl ProfilerConfig for Config {
    const PROFILER: Profiler = Profiler::Heap;

    /// Every allocation and free goes through the profiler, which records its stack: a
    /// program that allocates little barely notices, an allocation-heavy one runs 2 to 5
    /// times slower. 1.5 is for the typical service, which spends a minority of its time in
    /// the allocator.
    const SLOWDOWN: f64 = 1.5;

    const OUTPUT_NAME: &'static str = PREFIX_NAME;

    const KEY_ALIASES: &'static [(&'static str, &'static str, &'static str)] = &[
        (
            "tcmalloc_library",
            "library",
            "PANTHER's name for the libtcmalloc to preload",
        ),
        (
            "heap_profile_allocation_interval",
            "allocation_interval",
            "PANTHER's name for HEAP_PROFILE_ALLOCATION_INTERVAL",
        ),
        (
            "heap_profile_inuse_interval",
            "inuse_interval",
            "PANTHER's name for HEAP_PROFILE_INUSE_INTERVAL",
        ),
    ];

    const REFUSED_KEYS: &'static [(&'static str, &'static str)] = &[
        (
            "heap_profile_time_interval",
            "dumps are written by allocation (`allocation_interval`), by in-use growth (`inuse_interval`) and when monitoring stops",
        ),
        ("heap_check_type", HEAP_CHECKER_HINT),
        ("enable_leak_check", HEAP_CHECKER_HINT),
        ("leak_check_at_exit", HEAP_CHECKER_HINT),
        (
            "output_file",
            "the dumps are `heap.*.heap` in the instance's own folder of the results",
        ),
        (
            "output_format",
            "the report has in-use and allocated bytes by function and the peak; the raw dumps are kept for pprof",
        ),
        (
            "generate_pdf",
            "the report has in-use and allocated bytes by function and the peak; the raw dumps are kept for pprof",
        ),
        (
            "generate_text_report",
            "the report is always written (the monitoring data's JSON); the raw dumps are kept for pprof",
        ),
        ("profile_mmap", MMAP_HINT),
        ("only_mmap_profile", MMAP_HINT),
        (
            "deep_heap_profile",
            "not offered here; there is nothing to set",
        ),
        ("exclude_functions", PPROF_FILTER_HINT),
        ("include_only_functions", PPROF_FILTER_HINT),
        ("pprof_options", PPROF_FILTER_HINT),
    ];

    type Monitor = HeapMonitor;

    fn library(&self) -> Option<&Path> {
        self.library.as_deref()
    }

    fn signal(&self) -> i32 {
        self.signal
    }

    fn variables(&self) -> Vec<(&'static str, String)> {
        let intervals = [
            ("HEAP_PROFILE_ALLOCATION_INTERVAL", self.allocation_interval),
            ("HEAP_PROFILE_INUSE_INTERVAL", self.inuse_interval),
        ];
        intervals
            .into_iter()
            .filter_map(|(name, bytes)| Some((name, bytes?.to_string())))
            .collect()
    }

    fn start_monitoring(
        &self,
        _service: &str,
        pid: u32,
        wrapped: &mut Wrapped<HeapMonitor>,
    ) -> anyhow::Result<()> {
        wrapped.monitor.pid = Some(pid);
        wrapped.monitor.finder = Some(
            Finder::start(pid, wrapped.argv.clone()).context("starting the gperf_heap finder")?,
        );
        Ok(())
    }

    fn stop_monitoring(
        &self,
        _service: &str,
        wrapped: &mut Wrapped<HeapMonitor>,
    ) -> anyhow::Result<()> {
        let library = wrapped.library_matcher();
        let monitor = &mut wrapped.monitor;
        let Some(pid) = monitor.pid else {
            return Ok(());
        };
        if let Some(finder) = monitor.finder.take() {
            (monitor.service, monitor.wrappers) = finder.finish();
        }
        let (flushed, notes) = flush::flush_tree(
            pid,
            &monitor.wrappers,
            &library,
            self.signal,
            flush::FLUSH_TIMEOUT,
        );
        for f in &flushed {
            if let Ok(dump) = &f.dump {
                tracing::debug!(pid = f.pid, dump = %dump.display(), "final heap dump written");
            }
        }
        monitor.flushed = flushed;
        monitor.notes.extend(notes);
        Ok(())
    }

    fn monitoring_data(
        &self,
        _service: &str,
        wrapped: &mut Wrapped<HeapMonitor>,
    ) -> anyhow::Result<serde_json::Value> {
        let monitor = &mut wrapped.monitor;
        let data = collect(
            &wrapped.output_dir,
            Processes {
                root: monitor.service.or(monitor.pid),
                wrappers: &monitor.wrappers,
                flushed: &monitor.flushed,
            },
            std::mem::take(&mut monitor.notes),
            &wrapped.library,
            self.top,
            wrapped.placed.object_files(),
        )?;
        Ok(serde_json::to_value(data)?)
    }
}

/// Why PANTHER's heap checker keys are refused.
const HEAP_CHECKER_HINT: &str =
    "gperftools' heap checker is not driven here: find leaks with the `memcheck` environment";

/// Why PANTHER's mmap profiling keys are refused.
const MMAP_HINT: &str = "mmap profiling is not offered: the report covers malloc and new";

/// Profiles services' heaps with tcmalloc.
pub type GperfHeap = PreloadPlugin<Config>;

/// What is known about the processes of a service.
#[derive(Debug, Clone, Copy, Default)]
pub struct Processes<'a> {
    /// The first process to read `HEAPPROFILE`, which writes the prefix as is: the process
    /// found running the service's command, else the pid the host gave (which, in a
    /// container, may be the engine's init above it).
    pub root: Option<u32>,
    /// Wrappers around the service's command.
    pub wrappers: &'a [u32],
    /// The final dumps asked for.
    pub flushed: &'a [flush::Flushed],
}

/// Reads and reports every dump the service left in `output_dir`.
pub fn collect(
    output_dir: &Path,
    known: Processes<'_>,
    mut warnings: Vec<String>,
    library: &Path,
    top: usize,
    files: ObjectFiles,
) -> anyhow::Result<HeapData> {
    let prefix = output_dir.join(PREFIX_NAME);
    let mut symbolizer = Symbolizer::with_files(files);
    let mut processes = Vec::new();
    let mut tables: Vec<Vec<SiteStat>> = Vec::new();
    let mut dumps = 0;
    let mut last_totals = HeapCounts::default();
    for (prefix, pid) in dump_prefixes(&prefix)? {
        let flush = known.flushed.iter().find(|f| f.prefix == prefix);
        let pid = pid.or(known.root);
        let mut process = ProcessHeap {
            pid,
            wrapper: pid.is_some_and(|pid| known.wrappers.contains(&pid)),
            prefix: prefix.clone(),
            flushed_at_stop: flush.is_some_and(|f| f.dump.is_ok()),
            dumps: Vec::new(),
            peak: None,
            error: None,
        };
        match analyze_heap_run(&prefix, &mut symbolizer) {
            Ok(report) if process.wrapper => {
                process.dumps = report
                    .dumps
                    .iter()
                    .map(|d| Dump::new(d.path.clone(), d.sequence, d.totals))
                    .collect();
            }
            Ok(report) => {
                dumps += report.dumps.len();
                process.dumps = report
                    .dumps
                    .iter()
                    .map(|d| Dump::new(d.path.clone(), d.sequence, d.totals))
                    .collect();
                if let Some(last) = report.dumps.last() {
                    last_totals += last.totals;
                }
                process.peak = report.peak.as_ref().map(|p| Peak {
                    inuse_bytes: p.inuse_bytes,
                    dump: p.path.clone(),
                    sequence: report.dumps.get(p.dump_index).and_then(|d| d.sequence),
                    pid: process.pid,
                });
                tables.push(report.by_alloc);
            }
            Err(err) => {
                warnings.push(err.to_string());
                process.error = Some(err.to_string());
            }
        }
        processes.push(process);
    }
    if processes.is_empty() {
        warnings.push(
            "no heap dump was written: the service loaded no libtcmalloc (a statically linked \
             program ignores LD_PRELOAD), or it was killed before any dump"
                .to_string(),
        );
    }
    let peak = processes
        .iter()
        .filter(|p| !p.wrapper)
        .filter_map(|p| p.peak.clone())
        .max_by_key(|p| p.inuse_bytes);
    let limited = |key: fn(&HeapCounts) -> i64| -> Vec<FunctionHeap> {
        merge_site_stats(tables.iter().map(Vec::as_slice), key)
            .iter()
            .filter(|s| key(&s.counts) != 0)
            .take(top)
            .map(FunctionHeap::from)
            .collect()
    };
    Ok(HeapData {
        library: library.to_path_buf(),
        dumps,
        inuse_bytes: last_totals.inuse_bytes,
        allocated_bytes: last_totals.alloc_bytes,
        peak_inuse_bytes: peak.as_ref().map(|p| p.inuse_bytes).unwrap_or(0),
        peak,
        top_inuse: limited(|c| c.inuse_bytes),
        top_allocated: limited(|c| c.alloc_bytes),
        processes,
        warnings,
    })
}

export_plugin!(ExecutionEnvironment: GperfHeap);

#[cfg(test)]
mod tests {
    use panther_gperftools::testing::{command_preloading, readme_config};

    use super::*;

    fn config(value: serde_json::Value) -> Config {
        serde_json::from_value(value).expect("config")
    }

    #[test]
    fn defaults_are_documented_ones() {
        let c = config(serde_json::json!({}));
        assert_eq!((c.top, c.signal), (20, 10));
        assert!(c.allocation_interval.is_none() && c.inuse_interval.is_none());
        assert!(c.library.is_none());
    }

    #[test]
    fn wrap_appends_to_ld_preload_and_sets_the_variables() {
        let mut plugin = GperfHeap::with_library(
            config(serde_json::json!({"allocation_interval": 1048576})),
            PathBuf::from("/l/libtcmalloc.so.4"),
        );
        let mut command = command_preloading("/l/libprofiler.so.0");
        let wrapped = plugin.wrap(command.clone()).expect("wrap");
        assert_eq!(wrapped.argv, command.argv);
        assert_eq!(
            wrapped.env["LD_PRELOAD"],
            "/l/libprofiler.so.0:/l/libtcmalloc.so.4"
        );
        assert_eq!(wrapped.env["HEAPPROFILE"], "/out/heap");
        assert_eq!(wrapped.env["HEAPPROFILESIGNAL"], "10");
        assert_eq!(wrapped.env["HEAP_PROFILE_ALLOCATION_INTERVAL"], "1048576");
        assert!(!wrapped.env.contains_key("HEAP_PROFILE_INUSE_INTERVAL"));
        command.env.insert("CPUPROFILESIGNAL".into(), "10".into());
        let err = plugin.wrap(command).unwrap_err().to_string();
        assert!(err.contains("gperf_cpu"), "{err}");
    }

    #[test]
    fn an_empty_folder_is_reported_not_an_error() {
        let dir = std::env::temp_dir().join(format!("gperf-heap-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let data = collect(
            &dir,
            Processes::default(),
            Vec::new(),
            Path::new("/l/libtcmalloc.so.4"),
            20,
            ObjectFiles::default(),
        )
        .expect("collect");
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(data.dumps, 0);
        assert!(data.peak.is_none());
        assert_eq!(data.warnings.len(), 1);
    }

    #[test]
    fn the_readme_configuration_block_is_valid() {
        let shown: Config = readme_config(include_str!("../README.md"));
        let defaults = config(serde_json::json!({}));
        assert_eq!((shown.top, shown.signal), (defaults.top, defaults.signal));
        assert!(shown.library.is_none());
    }
}
