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
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use panther_gperftools::{
    carry::{carried_for_check, Placed},
    container::ObjectFiles,
    control::check_switch_signal,
    cpu::{profile_files, CpuProfile},
    library::{check_override, resolve, LibraryMatcher, DEBIAN_PACKAGE, PROFILER_NAMES},
    report::{cpu_report, folded_stacks, write_flamegraph, FunctionStat},
    symbolize_cpu, SymbolizedCpuProfile, Symbolizer, GPERF_GENERATOR_HINT, GPERF_GENERATOR_KEYS,
    PPROF_FILTER_HINT,
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

struct Watcher {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Watch>,
}

#[derive(Default)]
struct Service {
    output_dir: PathBuf,
    argv: Vec<String>,
    /// Where it runs: a container's carried library and root.
    placed: Placed,
    watcher: Option<Watcher>,
    watch: Option<Watch>,
}

/// Profiles services with libprofiler.
pub struct GperfCpu {
    config: Config,
    library: PathBuf,
    services: HashMap<String, Service>,
}

impl GperfCpu {
    fn cpuprofile(&self, service: &str) -> Option<(PathBuf, Vec<String>)> {
        self.services
            .get(service)
            .map(|s| (s.output_dir.join(PROFILE_NAME), s.argv.clone()))
    }
}

impl Plugin for GperfCpu {
    type Config = Config;

    fn manifest() -> Manifest {
        let manifest = Manifest::new("gperf_cpu")
            .capability("ld_preload")
            .capability("cpu_profiler")
            .capability("in_containers")
            .tool_with_override("libprofiler.so.0", DEBIAN_PACKAGE, "library")
            .alias_key(
                "sampling_frequency",
                "frequency",
                "PANTHER's name for CPUPROFILE_FREQUENCY",
            )
            .alias_key(
                "profile_frequency",
                "frequency",
                "PANTHER's name for CPUPROFILE_FREQUENCY",
            )
            .alias_key(
                "profiler_library",
                "library",
                "PANTHER's name for the libprofiler to preload",
            )
            .alias_key(
                "use_realtime_signal",
                "realtime",
                "PANTHER's name for CPUPROFILE_REALTIME",
            )
            .refuse_key(
                "output_format",
                "the report has the top functions, `cpu.folded` and `flamegraph.svg`; the raw profile is kept for pprof",
            )
            .refuse_key(
                "generate_pdf",
                "`flamegraph.svg` is drawn instead; the raw profile is kept for pprof",
            )
            .refuse_key(
                "profile_children",
                "processes of the service that keep its environment are profiled, each in its own file",
            )
            .refuse_key(
                "start_profiling_delay",
                "profiling is switched on when the host starts monitoring the service, right after it is deployed",
            )
            .refuse_key("exclude_functions", PPROF_FILTER_HINT)
            .refuse_key("include_only_functions", PPROF_FILTER_HINT)
            .refuse_key("pprof_options", PPROF_FILTER_HINT)
            .refuse_key(
                "output_file",
                "the profile is `cpu.prof` in the instance's own folder of the results",
            );
        GPERF_GENERATOR_KEYS
            .iter()
            .filter(|key| **key != "output_file")
            .fold(manifest, |m, key| m.refuse_key(*key, GPERF_GENERATOR_HINT))
    }

    fn validate(config: &Config, experiment: &ValidationContext) -> Vec<String> {
        let carried = carried_for_check(
            "gperf_cpu",
            config.library.as_deref(),
            PROFILER_NAMES,
            experiment,
        );
        let mut problems = panther_toolmount::refuse::preload(
            "gperf_cpu",
            "libprofiler",
            carried.as_ref(),
            experiment,
        );
        if let Some(library) = &config.library {
            problems.extend(check_override(library).err());
        }
        problems.extend(check_switch_signal(config.signal).err());
        problems
    }

    fn new(config: Config, _ctx: Context) -> anyhow::Result<Self> {
        check_switch_signal(config.signal).map_err(anyhow::Error::msg)?;
        let library = resolve(
            config.library.as_deref(),
            PROFILER_NAMES,
            "gperf_cpu",
            "CPU profiler",
        )
        .map_err(anyhow::Error::msg)?;
        Ok(GperfCpu {
            config,
            library,
            services: HashMap::new(),
        })
    }
}

impl ExecutionEnvironment for GperfCpu {
    /// Sampling at 100 Hz costs a program about 1 % (one signal and one stack walk per
    /// sample); 10 % leaves room for higher frequencies, deep stacks and the profile being
    /// written when a process ends.
    fn slowdown(&self) -> f64 {
        1.1
    }

    fn wrap(&mut self, mut command: ServiceCommand) -> anyhow::Result<ServiceCommand> {
        if command.env.contains_key("CPUPROFILE") {
            bail!(
                "service `{}` already has CPUPROFILE set (gperf_cpu twice, or set by hand): \
                 one CPU profiler per service",
                command.service
            );
        }
        let signal = self.config.signal.to_string();
        if command.env.get("HEAPPROFILESIGNAL") == Some(&signal) {
            bail!(
                "service `{}`: signal {signal} is already gperf_heap's HEAPPROFILESIGNAL; give \
                 gperf_cpu or gperf_heap another `signal`",
                command.service
            );
        }
        let cpuprofile = command.output_dir.join(PROFILE_NAME);
        let placed = Placed::wrap("gperf_cpu", &self.library, &mut command)?;
        command
            .env
            .insert("CPUPROFILE".into(), cpuprofile.display().to_string());
        command.env.insert(
            "CPUPROFILE_FREQUENCY".into(),
            self.config.frequency.to_string(),
        );
        command.env.insert("CPUPROFILESIGNAL".into(), signal);
        if self.config.realtime {
            command.env.insert("CPUPROFILE_REALTIME".into(), "1".into());
        }
        self.services.insert(
            command.service.clone(),
            Service {
                output_dir: command.output_dir.clone(),
                argv: command.argv.clone(),
                placed,
                ..Service::default()
            },
        );
        Ok(command)
    }

    fn start_monitoring(&mut self, service: &str, pid: u32) -> anyhow::Result<()> {
        let (cpuprofile, argv) = self
            .cpuprofile(service)
            .with_context(|| format!("service `{service}` was never wrapped"))?;
        let entry = self.services.entry(service.to_string()).or_default();
        entry.placed.start("gperf_cpu", service, pid)?;
        let matcher = match entry.placed.mapped_library() {
            Some(mapped) => LibraryMatcher::new(mapped),
            None => LibraryMatcher::new(&self.library),
        };
        let mut watch = Watch::new(pid, argv, matcher, self.config.signal, cpuprofile);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("gperf-cpu-{service}"))
            .spawn(move || {
                let started = Instant::now();
                while !flag.load(Ordering::Relaxed) {
                    watch.tick();
                    // Fast at first, when wrappers start the program and its profile must
                    // start early; slower later, for processes started along the way.
                    let pause = if started.elapsed() < Duration::from_secs(2) {
                        Duration::from_millis(3)
                    } else {
                        Duration::from_millis(25)
                    };
                    std::thread::park_timeout(pause);
                }
                watch
            })
            .context("starting the gperf_cpu watch thread")?;
        let entry = self.services.entry(service.to_string()).or_default();
        entry.watcher = Some(Watcher { stop, thread });
        Ok(())
    }

    fn stop_monitoring(&mut self, service: &str) -> anyhow::Result<()> {
        let Some(entry) = self.services.get_mut(service) else {
            return Ok(());
        };
        if let Some(watcher) = entry.watcher.take() {
            watcher.stop.store(true, Ordering::Relaxed);
            watcher.thread.thread().unpark();
            let mut watch = watcher
                .thread
                .join()
                .map_err(|_| anyhow::anyhow!("the gperf_cpu watch of `{service}` panicked"))?;
            // Start what the watch thread had not started yet, then switch every profile off
            // while the processes still run.
            watch.catch_up(Duration::from_millis(500));
            watch.flush();
            entry.watch = Some(watch);
        }
        Ok(())
    }

    fn get_monitoring_data(&mut self, service: &str) -> anyhow::Result<serde_json::Value> {
        let entry = self
            .services
            .get_mut(service)
            .with_context(|| format!("service `{service}` was never wrapped"))?;
        let watch = entry.watch.take();
        let data = collect(
            &entry.output_dir,
            watch.as_ref(),
            &self.config,
            &self.library,
            &format!("{service}: CPU"),
            entry.placed.object_files(),
        )?;
        Ok(serde_json::to_value(data)?)
    }
}

impl Drop for GperfCpu {
    fn drop(&mut self) {
        for service in self.services.values_mut() {
            if let Some(watcher) = service.watcher.take() {
                watcher.stop.store(true, Ordering::Relaxed);
                watcher.thread.thread().unpark();
                let _ = watcher.thread.join();
            }
        }
    }
}

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
        let mut plugin = GperfCpu {
            config: config(serde_json::json!({"realtime": true})),
            library: PathBuf::from("/l/libprofiler.so.0"),
            services: HashMap::new(),
        };
        let mut command = ServiceCommand {
            service: "s".into(),
            argv: vec!["prog".into()],
            output_dir: PathBuf::from("/out"),
            ..ServiceCommand::default()
        };
        command
            .env
            .insert("LD_PRELOAD".into(), "/l/libtcmalloc.so.4".into());
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
        let readme = include_str!("../README.md");
        let block = readme
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("a toml block");
        let value: toml::Table = toml::from_str(block).expect("valid toml");
        let mut section = value["execution"].as_array().expect("[[execution]]")[0]
            .as_table()
            .expect("a table")
            .clone();
        assert_eq!(
            section
                .remove("plugin")
                .and_then(|p| p.as_str().map(String::from)),
            Some("gperf_cpu".to_string())
        );
        let shown: Config = section.try_into().expect("the keys are the plugin's");
        let defaults = config(serde_json::json!({}));
        assert_eq!(
            format!("{shown:?}"),
            format!("{defaults:?}"),
            "it shows the defaults"
        );
    }
}
