//! `time`: runs each service under GNU time (`/usr/bin/time -v`) and reports what it measured
//! when the service ended: peak resident memory, user and system CPU time, context switches,
//! page faults and the exit status.
//!
//! GNU time starts the service as its child and writes its report when the child exits, so
//! it declares itself a parent wrapper ([`ServiceCommand::runs_as_parent`]): when the host
//! stops a server, the server gets the SIGTERM, GNU time sees it end, writes the report and
//! exits. The report then says which signal ended the service.

use std::{collections::BTreeMap, path::PathBuf};

use panther_plugin_api::{prelude::*, serde_json};

/// The `[[execution]]` section of `time`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The GNU time program.
    #[serde(default = "default_program")]
    pub program: String,
    /// Fail the service when its peak resident memory exceeds this many KiB.
    #[serde(default)]
    pub max_rss_kib: Option<u64>,
}

fn default_program() -> String {
    "/usr/bin/time".into()
}

/// Wraps services with GNU time.
pub struct Time {
    config: Config,
    reports: BTreeMap<String, PathBuf>,
}

impl Plugin for Time {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("time")
            .tool("time", "time")
            // GNU time's own report says "kbytes": accept that spelling too.
            .alias_key(
                "max_rss_kb",
                "max_rss_kib",
                "GNU time's label for the same number",
            )
            .refuse_key(
                "output_file",
                "GNU time's report is `time.txt` in the instance's folder",
            )
    }

    fn new(config: Config, _ctx: Context) -> anyhow::Result<Self> {
        Ok(Time {
            config,
            reports: BTreeMap::new(),
        })
    }
}

impl ExecutionEnvironment for Time {
    fn wrap(&mut self, mut command: ServiceCommand) -> anyhow::Result<ServiceCommand> {
        let report = command.output_dir.join("time.txt");
        let mut argv = vec![
            self.config.program.clone(),
            "-v".into(),
            "-o".into(),
            report.display().to_string(),
            "--".into(),
        ];
        argv.append(&mut command.argv);
        command.argv = argv;
        command.runs_as_parent("time");
        self.reports.insert(command.service.clone(), report);
        Ok(command)
    }

    fn get_monitoring_data(&mut self, service: &str) -> anyhow::Result<serde_json::Value> {
        let path = self
            .reports
            .get(service)
            .with_context(|| format!("service `{service}` was never wrapped"))?;
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "reading {} (GNU time writes it when the service exits)",
                path.display()
            )
        })?;
        let field = |label: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(label))
                .map(str::trim)
        };
        let number = |label: &str| field(label).and_then(|v| v.parse::<f64>().ok());
        let peak = number("Maximum resident set size (kbytes):").unwrap_or(0.0) as u64;
        // "Command terminated by signal 15": a server the host stopped.
        let signal = text
            .lines()
            .find_map(|l| l.strip_prefix("Command terminated by signal "))
            .and_then(|n| n.trim().parse::<u32>().ok());
        let mut violations = Vec::new();
        if let Some(max) = self.config.max_rss_kib {
            if peak > max {
                violations.push(format!(
                    "peak resident memory {peak} KiB, at most {max} KiB allowed"
                ));
            }
        }
        tracing::debug!(service, peak_kib = peak, "GNU time report read");
        Ok(serde_json::json!({
            "max_rss_kib": peak,
            "user_seconds": number("User time (seconds):"),
            "system_seconds": number("System time (seconds):"),
            "voluntary_context_switches": number("Voluntary context switches:"),
            "involuntary_context_switches": number("Involuntary context switches:"),
            "major_page_faults": number("Major (requiring I/O) page faults:"),
            "minor_page_faults": number("Minor (reclaiming a frame) page faults:"),
            "exit_status": number("Exit status:"),
            "signal": signal,
            "raw": path,
            "violations": violations,
        }))
    }
}

export_plugin!(ExecutionEnvironment: Time);
