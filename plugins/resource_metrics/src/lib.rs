//! `resource_metrics`: samples every service's process tree from `/proc` at a fixed rate —
//! CPU time and share of a core, resident memory, bytes read and written, threads, open
//! files — writes the time series to `samples.jsonl` and summarises it for the reports.
//!
//! The tree is followed through `/proc/PID/task/TID/children`, so a sample costs a few file
//! reads per process of the service, not a scan of every process on the machine.
//!
//! Network I/O is not per process in Linux: `/proc/PID/net/dev` counts the whole network
//! namespace. It is reported as `namespace_rx_bytes`/`namespace_tx_bytes`, honestly named:
//! exact for a service alone in its namespace (containers, `shadow_ns`), the whole machine's
//! traffic on `localhost`.

mod proc_stat;

use std::{
    collections::HashMap,
    fs::File,
    io::{BufWriter, Write},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use panther_plugin_api::{prelude::*, serde_json};
use proc_stat::{tree_usage, Usage};

/// The `[[execution]]` section of `resource_metrics`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Samples per second.
    #[serde(default = "default_rate")]
    #[schemars(range(min = 0.1, max = 1000.0))]
    pub sampling_rate: f64,
}

fn default_rate() -> f64 {
    10.0
}

/// One point of the time series.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// Milliseconds since monitoring started.
    pub t_ms: u64,
    /// Processes in the tree.
    pub processes: u32,
    /// CPU time (user + system) of the live tree, seconds.
    pub cpu_seconds: f64,
    /// Share of one core since the previous sample, percent.
    pub cpu_percent: f64,
    /// Resident memory of the tree, bytes.
    pub rss_bytes: u64,
    /// Bytes read from storage by the tree.
    pub read_bytes: u64,
    /// Bytes written to storage by the tree.
    pub write_bytes: u64,
    /// Threads in the tree.
    pub threads: u32,
    /// Open file descriptors in the tree.
    pub open_fds: u32,
    /// Bytes received in the tree's network namespace (all processes in it).
    pub namespace_rx_bytes: u64,
    /// Bytes sent in the tree's network namespace (all processes in it).
    pub namespace_tx_bytes: u64,
}

/// The summary that lands in the reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    /// How many samples were taken.
    pub samples: usize,
    /// Time between the first and the last sample, seconds.
    pub duration_seconds: f64,
    /// CPU time used, seconds (at the last sample).
    pub cpu_seconds: f64,
    /// Highest share of one core between two samples, percent.
    pub cpu_percent_max: f64,
    /// Average share of one core, percent.
    pub cpu_percent_mean: f64,
    /// Highest resident memory, bytes.
    pub rss_peak_bytes: u64,
    /// Bytes read from storage.
    pub read_bytes: u64,
    /// Bytes written to storage.
    pub write_bytes: u64,
    /// Most threads at once.
    pub threads_max: u32,
    /// Most open file descriptors at once.
    pub open_fds_max: u32,
    /// Most processes at once.
    pub processes_max: u32,
    /// Namespace-wide bytes received during the run.
    pub namespace_rx_bytes: u64,
    /// Namespace-wide bytes sent during the run.
    pub namespace_tx_bytes: u64,
    /// The time series.
    pub samples_file: PathBuf,
}

struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Summary>,
}

/// Samples each service's process tree.
pub struct ResourceMetrics {
    period: Duration,
    output_dirs: HashMap<String, PathBuf>,
    running: HashMap<String, Sampler>,
    summaries: HashMap<String, Summary>,
}

impl Plugin for ResourceMetrics {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("resource_metrics")
            .capability(capability::SAMPLER)
            .capability(capability::IN_CONTAINERS)
    }

    fn new(config: Config, _ctx: Context) -> anyhow::Result<Self> {
        Ok(ResourceMetrics {
            period: Duration::from_secs_f64(1.0 / config.sampling_rate),
            output_dirs: HashMap::new(),
            running: HashMap::new(),
            summaries: HashMap::new(),
        })
    }
}

impl ExecutionEnvironment for ResourceMetrics {
    fn wrap(&mut self, command: ServiceCommand) -> anyhow::Result<ServiceCommand> {
        // Nothing to wrap: the sampler watches from outside. Remember where to write.
        self.output_dirs
            .insert(command.service.clone(), command.output_dir.clone());
        Ok(command)
    }

    fn start_monitoring(&mut self, service: &str, pid: u32) -> anyhow::Result<()> {
        let dir = self
            .output_dirs
            .get(service)
            .cloned()
            .with_context(|| format!("service `{service}` was never wrapped"))?;
        let file = dir.join("samples.jsonl");
        let out = BufWriter::new(
            File::create(&file).with_context(|| format!("creating {}", file.display()))?,
        );
        let stop = Arc::new(AtomicBool::new(false));
        let period = self.period;
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name(format!("sampler-{service}"))
            .spawn(move || sample_until(pid, period, &flag, out, file))
            .context("starting the sampler thread")?;
        self.running
            .insert(service.to_string(), Sampler { stop, thread });
        Ok(())
    }

    fn stop_monitoring(&mut self, service: &str) -> anyhow::Result<()> {
        if let Some(sampler) = self.running.remove(service) {
            sampler.stop.store(true, Ordering::Relaxed);
            sampler.thread.thread().unpark();
            let summary = sampler
                .thread
                .join()
                .map_err(|_| anyhow::anyhow!("the sampler of `{service}` panicked"))?;
            self.summaries.insert(service.to_string(), summary);
        }
        Ok(())
    }

    fn get_monitoring_data(&mut self, service: &str) -> anyhow::Result<serde_json::Value> {
        let summary = self.summaries.remove(service).unwrap_or_default();
        Ok(serde_json::to_value(summary)?)
    }
}

/// Samples until told to stop or the tree is gone, writing every sample; returns the summary.
fn sample_until(
    pid: u32,
    period: Duration,
    stop: &AtomicBool,
    mut out: BufWriter<File>,
    file: PathBuf,
) -> Summary {
    let started = Instant::now();
    let mut summary = Summary {
        samples_file: file,
        ..Summary::default()
    };
    let mut previous: Option<(Instant, f64)> = None;
    let mut first_net: Option<(u64, u64)> = None;
    let mut percent_sum = 0.0;
    let mut next = Instant::now();
    loop {
        let now = Instant::now();
        let Some(usage) = tree_usage(pid) else { break };
        let sample = to_sample(&usage, now, started, previous);
        previous = Some((now, sample.cpu_seconds));
        let (rx0, tx0) = *first_net.get_or_insert((usage.net_rx, usage.net_tx));
        summary.namespace_rx_bytes = usage.net_rx.saturating_sub(rx0);
        summary.namespace_tx_bytes = usage.net_tx.saturating_sub(tx0);
        fold(&mut summary, &sample);
        percent_sum += sample.cpu_percent;
        if let Ok(line) = serde_json::to_string(&sample) {
            let _ = writeln!(out, "{line}");
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        next += period;
        match next.checked_duration_since(Instant::now()) {
            Some(wait) => thread::park_timeout(wait),
            None => next = Instant::now(),
        }
        if stop.load(Ordering::Relaxed) {
            // One last sample after the stop request is not needed: the service is gone or
            // about to be, and the previous sample is at most one period old.
            break;
        }
    }
    let _ = out.flush();
    if summary.samples > 1 {
        summary.cpu_percent_mean = percent_sum / (summary.samples - 1) as f64;
    }
    summary
}

fn to_sample(
    usage: &Usage,
    now: Instant,
    started: Instant,
    previous: Option<(Instant, f64)>,
) -> Sample {
    let cpu_seconds = usage.cpu_seconds;
    let cpu_percent = match previous {
        Some((then, cpu_then)) => {
            let wall = now.duration_since(then).as_secs_f64();
            if wall > 0.0 {
                ((cpu_seconds - cpu_then).max(0.0) / wall) * 100.0
            } else {
                0.0
            }
        }
        None => 0.0,
    };
    Sample {
        t_ms: now.duration_since(started).as_millis() as u64,
        processes: usage.processes,
        cpu_seconds,
        cpu_percent,
        rss_bytes: usage.rss_bytes,
        read_bytes: usage.read_bytes,
        write_bytes: usage.write_bytes,
        threads: usage.threads,
        open_fds: usage.open_fds,
        namespace_rx_bytes: usage.net_rx,
        namespace_tx_bytes: usage.net_tx,
    }
}

fn fold(summary: &mut Summary, sample: &Sample) {
    summary.samples += 1;
    summary.duration_seconds = sample.t_ms as f64 / 1000.0;
    summary.cpu_seconds = summary.cpu_seconds.max(sample.cpu_seconds);
    summary.cpu_percent_max = summary.cpu_percent_max.max(sample.cpu_percent);
    summary.rss_peak_bytes = summary.rss_peak_bytes.max(sample.rss_bytes);
    summary.read_bytes = summary.read_bytes.max(sample.read_bytes);
    summary.write_bytes = summary.write_bytes.max(sample.write_bytes);
    summary.threads_max = summary.threads_max.max(sample.threads);
    summary.open_fds_max = summary.open_fds_max.max(sample.open_fds);
    summary.processes_max = summary.processes_max.max(sample.processes);
}

export_plugin!(ExecutionEnvironment: ResourceMetrics);
