//! `gperf_cpu`: profiles a service's CPU use with gperftools' libprofiler, preloaded into the
//! service itself, and reports its hottest functions, folded stacks and a flame graph.
//!
//! - `wrap` adds `LD_PRELOAD` (appended to any value already there, so `gperf_heap` and
//!   other preloading tools stack), `CPUPROFILE=<output_dir>/cpu.prof`,
//!   `CPUPROFILE_FREQUENCY`, `CPUPROFILESIGNAL` and, when asked, `CPUPROFILE_REALTIME` to the
//!   service's own environment.
//! - `start_monitoring` starts a thread that finds the processes of the service running
//!   libprofiler and switches their profiles on (see [`watch`]).
//! - `stop_monitoring`, called while the service may still run and before the host sends it
//!   SIGTERM (which would lose an unwritten profile), switches them off: each profile is then
//!   complete on disk.
//! - `get_monitoring_data` parses and symbolizes the profiles natively and writes
//!   `cpu.folded` and `flamegraph.svg`.
//!
//! In a container, libprofiler and its dependencies are carried in and preloaded by their
//! mounted paths, and the profiles are symbolized through the container's root
//! ([`panther_gperftools::carry`], [`panther_gperftools::container`]).

pub mod watch;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use panther_gperftools::{
    container::ObjectFiles,
    cpu::{profile_files, CpuProfile},
    report::{cpu_report, folded_stacks, write_flamegraph, FunctionStat},
    symbolize_cpu, Pace, Poller, PreloadPlugin, Profiler, ProfilerConfig, SymbolizedCpuProfile,
    Symbolizer, Wrapped, PPROF_FILTER_HINT,
};
use panther_plugin_api::{prelude::*, serde_json};
use watch::{Profiled, Watch};

/// The `[[execution]]` section of `gperf_cpu`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Samples per second of CPU time (`CPUPROFILE_FREQUENCY`). The kernel delivers at most
    /// about its tick rate (`CONFIG_HZ`, often 250), whatever is asked; the default, 100, is
    /// under every common tick rate, so the period written in the profile is the real one.
    #[serde(default = "default_frequency")]
    #[schemars(range(min = 1, max = 10000))]
    pub frequency: u32,
    /// Sample wall-clock time instead of CPU time (`CPUPROFILE_REALTIME=1`, SIGALRM): time
    /// spent waiting shows up too. Not for programs that use SIGALRM or `alarm()`.
    #[serde(default)]
    pub realtime: bool,
    /// The libprofiler to preload, as an absolute path. Found automatically when absent
    /// (`libprofiler.so.0`, then `libprofiler.so`, in the library folders and the `ldconfig`
    /// cache).
    #[serde(default)]
    pub library: Option<PathBuf>,
    /// How many functions each table of the report lists.
    #[serde(default = "default_top")]
    #[schemars(range(min = 1))]
    pub top: usize,
    /// The profiling switch (`CPUPROFILESIGNAL`): 12 (SIGUSR2), 10 (SIGUSR1) or a real-time
    /// signal from 34 to 64. The program must not use it, and it must differ from
    /// `gperf_heap`'s on the same service.
    #[serde(default = "default_signal")]
    pub signal: i32,
}

fn default_frequency() -> u32 {
    100
}

fn default_top() -> usize {
    20
}

fn default_signal() -> i32 {
    libc::SIGUSR2
}

/// The file name `CPUPROFILE` points to in the service's output folder.
pub const PROFILE_NAME: &str = "cpu.prof";
/// The folded stacks, in the service's output folder.
pub const FOLDED_NAME: &str = "cpu.folded";
/// The flame graph, in the service's output folder.
pub const FLAMEGRAPH_NAME: &str = "flamegraph.svg";

/// One profile file in the report.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileFile {
    /// The process that wrote it, when known.
    pub pid: Option<u32>,
    /// Its program, when known.
    pub exe: Option<PathBuf>,
    /// The raw libprofiler file.
    pub path: PathBuf,
    /// How it was finished (`flushed`, `exited`, `yielded`, `replaced`), or `found` for a
    /// file in the folder that no watched process was known to write.
    pub state: String,
    /// Samples in it.
    pub samples: u64,
    /// Whether the process was a wrapper around the service's command (e.g. strace, when
    /// another execution environment wraps this one): its samples are left out of the
    /// tables.
    pub wrapper: bool,
    /// Why it could not be read.
    pub error: Option<String>,
}

/// What `gperf_cpu` reports for one service.
#[derive(Debug, Clone, Serialize)]
pub struct CpuData {
    /// Samples over every profile of the service (wrappers left out).
    pub samples: u64,
    /// Sampling period written in the profiles, in microseconds (1e6 / frequency).
    pub period_us: u64,
    /// `CPUPROFILE_FREQUENCY` the service ran with.
    pub frequency: u32,
    /// The libprofiler that was preloaded (found, or named by `library`).
    pub library: PathBuf,
    /// Whether wall-clock time was sampled.
    pub realtime: bool,
    /// Functions by samples in which they were running (the leaf), highest first.
    pub top_flat: Vec<FunctionStat>,
    /// Functions by samples in which they were on the stack, highest first.
    pub top_cumulative: Vec<FunctionStat>,
    /// Folded stacks (`root;…;leaf count` lines), for flame graph tools.
    pub folded: PathBuf,
    /// The flame graph, when there were samples.
    pub flamegraph: Option<PathBuf>,
    /// The raw profiles, one per profiled process.
    pub profiles: Vec<ProfileFile>,
    /// What went wrong or was left out.
    pub warnings: Vec<String>,
}

/// What `gperf_cpu` keeps about a service: the thread that switches its processes' profiles
/// on while it runs, then what that thread learned.
#[derive(Default)]
pub struct CpuMonitor {
    watcher: Option<Poller<Watch>>,
    watch: Option<Watch>,
}

/// Fast at first, when wrappers start the program and its profile must start early; slower
/// later, for processes started along the way.
const WATCH_PACE: Pace = Pace {
    early: Duration::from_millis(3),
    later: Duration::from_millis(25),
};

/// libprofiler's keys, variables and watch.
impl ProfilerConfig for Config {
    const PROFILER: Profiler = Profiler::Cpu;

    /// Sampling at 100 Hz costs a program about 1 % (one signal and one stack walk per
    /// sample); 10 % leaves room for higher frequencies, deep stacks and the profile being
    /// written when a process ends.
    const SLOWDOWN: f64 = 1.1;

    const OUTPUT_NAME: &'static str = PROFILE_NAME;

    const KEY_ALIASES: &'static [(&'static str, &'static str, &'static str)] = &[
        (
            "sampling_frequency",
            "frequency",
            "PANTHER's name for CPUPROFILE_FREQUENCY",
        ),
        (
            "profile_frequency",
            "frequency",
            "PANTHER's name for CPUPROFILE_FREQUENCY",
        ),
        (
            "profiler_library",
            "library",
            "PANTHER's name for the libprofiler to preload",
        ),
        (
            "use_realtime_signal",
            "realtime",
            "PANTHER's name for CPUPROFILE_REALTIME",
        ),
    ];

    const REFUSED_KEYS: &'static [(&'static str, &'static str)] = &[
        (
            "output_format",
            "the report has the top functions, `cpu.folded` and `flamegraph.svg`; the raw profile is kept for pprof",
        ),
        (
            "generate_pdf",
            "`flamegraph.svg` is drawn instead; the raw profile is kept for pprof",
        ),
        (
            "profile_children",
            "processes of the service that keep its environment are profiled, each in its own file",
        ),
        (
            "start_profiling_delay",
            "profiling is switched on when the host starts monitoring the service, right after it is deployed",
        ),
        ("exclude_functions", PPROF_FILTER_HINT),
        ("include_only_functions", PPROF_FILTER_HINT),
        ("pprof_options", PPROF_FILTER_HINT),
        (
            "output_file",
            "the profile is `cpu.prof` in the instance's own folder of the results",
        ),
    ];

    type Monitor = CpuMonitor;

    fn library(&self) -> Option<&Path> {
        self.library.as_deref()
    }

    fn signal(&self) -> i32 {
        self.signal
    }

    fn variables(&self) -> Vec<(&'static str, String)> {
        let mut variables = vec![("CPUPROFILE_FREQUENCY", self.frequency.to_string())];
        if self.realtime {
            variables.push(("CPUPROFILE_REALTIME", "1".into()));
        }
        variables
    }

    fn start_monitoring(
        &self,
        service: &str,
        pid: u32,
        wrapped: &mut Wrapped<CpuMonitor>,
    ) -> anyhow::Result<()> {
        let cpuprofile = wrapped.output_dir.join(PROFILE_NAME);
        let watch = Watch::new(
            pid,
            wrapped.argv.clone(),
            wrapped.library_matcher(),
            self.signal,
            cpuprofile,
        );
        let watcher = Poller::spawn(
            format!("gperf-cpu-{service}"),
            WATCH_PACE,
            watch,
            |watch, stopping| {
                if !stopping {
                    watch.tick();
                }
                stopping
            },
        )
        .context("starting the gperf_cpu watch thread")?;
        wrapped.monitor.watcher = Some(watcher);
        Ok(())
    }

    fn stop_monitoring(
        &self,
        service: &str,
        wrapped: &mut Wrapped<CpuMonitor>,
    ) -> anyhow::Result<()> {
        if let Some(watcher) = wrapped.monitor.watcher.take() {
            let mut watch = watcher
                .finish()
                .map_err(|_| anyhow::anyhow!("the gperf_cpu watch of `{service}` panicked"))?;
            // Start what the watch thread had not started yet, then switch every profile off
            // while the processes still run.
            watch.catch_up(Duration::from_millis(500));
            watch.flush();
            wrapped.monitor.watch = Some(watch);
        }
        Ok(())
    }

    fn monitoring_data(
        &self,
        service: &str,
        wrapped: &mut Wrapped<CpuMonitor>,
    ) -> anyhow::Result<serde_json::Value> {
        let watch = wrapped.monitor.watch.take();
        let data = collect(
            &wrapped.output_dir,
            watch.as_ref(),
            self,
            &wrapped.library,
            &format!("{service}: CPU"),
            wrapped.placed.object_files(),
        )?;
        Ok(serde_json::to_value(data)?)
    }
}

/// Profiles services with libprofiler.
pub type GperfCpu = PreloadPlugin<Config>;

/// Reads, symbolizes and reports every profile the service left in `output_dir`.
pub fn collect(
    output_dir: &Path,
    watch: Option<&Watch>,
    config: &Config,
    library: &Path,
    title: &str,
    objects: ObjectFiles,
) -> anyhow::Result<CpuData> {
    let mut warnings: Vec<String> = watch.map(|w| w.notes.clone()).unwrap_or_default();
    let cpuprofile = output_dir.join(PROFILE_NAME);
    let mut files: Vec<(Option<&Profiled>, PathBuf)> = watch
        .map(|w| {
            w.profiled
                .iter()
                .map(|p| (Some(p), p.path.clone()))
                .collect()
        })
        .unwrap_or_default();
    for path in profile_files(&cpuprofile)? {
        if !files.iter().any(|(_, known)| *known == path) {
            files.push((None, path));
        }
    }
    if files.is_empty() {
        warnings.push(match watch {
            Some(w) if w.saw_library() => {
                "no process of the service was profiled (see the other warnings)".to_string()
            }
            Some(_) => "no process of the service loaded libprofiler: a statically linked \
                        program, or one whose LD_PRELOAD was removed, cannot be profiled"
                .to_string(),
            None => "the service was never monitored (it did not start)".to_string(),
        });
    }

    let mut symbolizer = Symbolizer::with_files(objects);
    let mut parsed: Vec<SymbolizedCpuProfile> = Vec::new();
    let mut profiles = Vec::new();
    for (known, path) in files {
        let mut entry = ProfileFile {
            pid: known
                .map(|p| p.pid)
                .or_else(|| pid_in_name(&cpuprofile, &path)),
            exe: known.and_then(|p| p.exe.clone()),
            path: path.clone(),
            state: known.map_or("found", |p| p.state.as_str()).to_string(),
            samples: 0,
            wrapper: known.is_some_and(|p| p.wrapper),
            error: None,
        };
        match CpuProfile::from_file(&path) {
            Ok(profile) => {
                entry.samples = profile.total_samples();
                if !entry.wrapper {
                    parsed.push(symbolize_cpu(&profile, &mut symbolizer));
                }
            }
            Err(err) => {
                warnings.push(err.to_string());
                entry.error = Some(err.to_string());
            }
        }
        profiles.push(entry);
    }

    let merged = SymbolizedCpuProfile::merge(parsed);
    if merged.total_samples() == 0 && profiles.iter().any(|p| p.error.is_none()) {
        warnings.push(format!(
            "no samples: the profiled processes used less than one sampling period ({} ms) of \
             CPU time while they were profiled",
            1000 / config.frequency.max(1)
        ));
    }
    let report = cpu_report(&merged, Some(config.top));
    let folded = folded_stacks(&merged);
    let folded_path = output_dir.join(FOLDED_NAME);
    let mut text = folded.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    std::fs::write(&folded_path, text)
        .with_context(|| format!("writing {}", folded_path.display()))?;
    let flamegraph = if folded.is_empty() {
        None
    } else {
        let path = output_dir.join(FLAMEGRAPH_NAME);
        match write_flamegraph(&folded, title, &path) {
            Ok(()) => Some(path),
            Err(err) => {
                warnings.push(err.to_string());
                None
            }
        }
    };
    Ok(CpuData {
        samples: report.total_samples,
        period_us: if merged.period_us > 0 {
            merged.period_us
        } else {
            1_000_000 / u64::from(config.frequency.max(1))
        },
        frequency: config.frequency,
        library: library.to_path_buf(),
        realtime: config.realtime,
        top_flat: report.by_flat,
        top_cumulative: report.by_cumulative,
        folded: folded_path,
        flamegraph,
        profiles,
        warnings,
    })
}

/// The pid in `<CPUPROFILE>_<pid>[.N]`.
fn pid_in_name(cpuprofile: &Path, path: &Path) -> Option<u32> {
    let stem = cpuprofile.file_name()?.to_str()?;
    let name = path.file_name()?.to_str()?;
    let rest = name.strip_prefix(stem)?.strip_prefix('_')?;
    rest.split('.').next()?.parse().ok()
}

export_plugin!(ExecutionEnvironment: GperfCpu);

#[cfg(test)]
mod tests {
    use panther_gperftools::testing::{command_preloading, readme_config};

    use super::*;

    fn config(toml_like: serde_json::Value) -> Config {
        serde_json::from_value(toml_like).expect("config")
    }

    #[test]
    fn defaults_are_documented_ones() {
        let c = config(serde_json::json!({}));
        assert_eq!(
            (c.frequency, c.realtime, c.top, c.signal),
            (100, false, 20, 12)
        );
        assert!(c.library.is_none());
        assert!(serde_json::from_value::<Config>(serde_json::json!({"frequncy": 5})).is_err());
    }

    #[test]
    fn validation_names_bad_libraries_and_signals() {
        let c = config(serde_json::json!({"library": "libprofiler.so.0", "signal": 9}));
        let problems = GperfCpu::validate(&c, &ValidationContext::default());
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("absolute"));
        assert!(problems[1].contains("signal 9"));
    }

    #[test]
    fn pids_are_read_from_child_profile_names() {
        let base = Path::new("/o/cpu.prof");
        assert_eq!(pid_in_name(base, Path::new("/o/cpu.prof_42.0")), Some(42));
        assert_eq!(pid_in_name(base, Path::new("/o/cpu.prof.0")), None);
    }

    #[test]
    fn wrap_appends_to_ld_preload_and_sets_the_variables() {
        let mut plugin = GperfCpu::with_library(
            config(serde_json::json!({"realtime": true})),
            PathBuf::from("/l/libprofiler.so.0"),
        );
        let mut command = command_preloading("/l/libtcmalloc.so.4");
        let wrapped = plugin.wrap(command.clone()).expect("wrap");
        assert_eq!(wrapped.argv, command.argv, "the service itself runs");
        assert_eq!(
            wrapped.env["LD_PRELOAD"],
            "/l/libtcmalloc.so.4:/l/libprofiler.so.0"
        );
        assert_eq!(wrapped.env["CPUPROFILE"], "/out/cpu.prof");
        assert_eq!(wrapped.env["CPUPROFILESIGNAL"], "12");
        assert_eq!(wrapped.env["CPUPROFILE_FREQUENCY"], "100");
        assert_eq!(wrapped.env["CPUPROFILE_REALTIME"], "1");
        assert!(plugin.wrap(wrapped).is_err(), "a second CPU profiler");
        command.env.insert("HEAPPROFILESIGNAL".into(), "12".into());
        command.service = "t".into();
        let err = plugin.wrap(command).unwrap_err().to_string();
        assert!(err.contains("gperf_heap"), "{err}");
    }

    #[test]
    fn the_readme_configuration_block_is_valid() {
        let shown: Config = readme_config(include_str!("../README.md"));
        let defaults = config(serde_json::json!({}));
        assert_eq!(
            format!("{shown:?}"),
            format!("{defaults:?}"),
            "it shows the defaults"
        );
    }
}
