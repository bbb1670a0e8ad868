//! Turning the files valgrind wrote about one service into its monitoring data.

use std::{
    collections::BTreeMap,
    fs::File,
    io::BufReader,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use crate::{
    args::Tool,
    xml::{
        parse_reader_with, Command, FatalSignal, ParseOptions, Report, Summary, ThreadAnnouncement,
        Thresholds, ValgrindError,
    },
};

/// At most this many error records per process are kept in the data; the rest are only
/// counted in the summary. Valgrind itself stops reporting after 1000 different errors (its
/// `--error-limit`), so this bounds only leak records and runs with `--error-limit=no`.
pub const MAX_KEPT_ERRORS: usize = 1000;

/// At most this many lines of valgrind's own log are kept in [`ServiceReport::messages`].
const MAX_MESSAGES: usize = 50;

/// The monitoring data of one service: everything valgrind reported about every process it
/// ran, and the thresholds' verdict. Lands in `monitoring/<service>/<instance>.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceReport {
    /// `memcheck` or `helgrind`.
    pub tool: String,
    /// Some process's XML ends before valgrind finished it: the process was killed (SIGKILL
    /// after the stop grace period) and the records valgrind writes last, such as memcheck's
    /// leaks, are missing. Everything complete is still here.
    pub truncated: bool,
    /// Every process reached valgrind's `FINISHED` state.
    pub finished: bool,
    /// Counts over every error of every process, including those not kept.
    pub summary: Summary,
    /// The error records, process by process, in the order valgrind wrote them.
    pub errors: Vec<ReportedError>,
    /// Errors counted in the summary but not listed (see [`MAX_KEPT_ERRORS`]).
    pub errors_not_kept: u64,
    /// One entry per process valgrind ran (one unless `trace_children` is on).
    pub processes: Vec<ProcessReport>,
    /// The files valgrind wrote.
    pub raw: RawFiles,
    /// Valgrind's own messages from its log file (warnings, fatal errors), without the
    /// `==pid==` prefix.
    pub messages: Vec<String>,
    /// Why the service fails, one reason per exceeded threshold; empty when it passes.
    pub violations: Vec<String>,
}

/// One error record, with the process it happened in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportedError {
    /// The process (valgrind's `<pid>`).
    pub pid: Option<u32>,
    /// `function (file:line)` of the first frame in the program's own code.
    pub location: Option<String>,
    /// The record: `kind`, `what` (the message), `leaked_bytes`/`leaked_blocks`, `stacks`...
    #[serde(flatten)]
    pub error: ValgrindError,
}

/// One process valgrind ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessReport {
    /// Its pid.
    pub pid: Option<u32>,
    /// Its parent's pid.
    pub ppid: Option<u32>,
    /// Its command line.
    pub command: Option<Command>,
    /// Valgrind reached `FINISHED` for it.
    pub finished: bool,
    /// Its XML ends before valgrind finished it.
    pub truncated: bool,
    /// The signal that ended it, when one did (SIGTERM when the host stopped it).
    pub fatal_signal: Option<FatalSignal>,
    /// Helgrind's thread announcements: where thread `#N` was created.
    pub threads: Vec<ThreadAnnouncement>,
    /// Occurrences per error record (`<errorcounts>`: record id → count).
    pub error_counts: BTreeMap<u64, u64>,
    /// Errors suppressed, by suppression name.
    pub suppressed: BTreeMap<String, u64>,
    /// Error records of this process.
    pub errors: u64,
    /// Error records of this process that were counted but not kept.
    pub errors_not_kept: u64,
    /// Its XML file.
    pub xml: PathBuf,
}

/// The files valgrind wrote, for a closer look.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RawFiles {
    /// `valgrind.xml`, or `valgrind.<pid>.xml` per process with `trace_children`.
    pub xml: Vec<PathBuf>,
    /// `valgrind.log`, or `valgrind.<pid>.log` per process.
    pub log: Vec<PathBuf>,
}

/// Reads every XML and log file valgrind wrote into `dir` and judges the service against
/// `thresholds`. An error when there is no XML at all (valgrind did not start: a bad option,
/// a missing program) or when a file is damaged in the middle; a file that merely ends
/// early is read up to its last complete record and marked truncated.
pub fn collect(dir: &Path, tool: Tool, thresholds: &Thresholds) -> anyhow::Result<ServiceReport> {
    let raw = files(dir)?;
    let messages = messages(&raw.log);
    if raw.xml.is_empty() {
        let why = if messages.is_empty() {
            String::new()
        } else {
            format!("; valgrind said: {}", messages.join(" / "))
        };
        bail!(
            "valgrind wrote no XML report in {}: it did not start (its error is in the \
             service's stderr){why}",
            dir.display()
        );
    }

    let options = ParseOptions {
        max_kept_errors: MAX_KEPT_ERRORS,
    };
    let mut out = ServiceReport {
        tool: tool.name().to_string(),
        finished: true,
        messages,
        ..ServiceReport::default()
    };
    // Thresholds judge the service as a whole: one report with every process's errors.
    let mut whole = Report::default();
    for path in &raw.xml {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let report = parse_reader_with(BufReader::with_capacity(64 * 1024, file), &options)
            .with_context(|| format!("reading {}", path.display()))?;
        out.truncated |= report.truncated;
        out.finished &= report.finished;
        out.summary.merge(&report.summary);
        out.errors_not_kept += report.errors_not_kept;
        whole.truncated |= report.truncated;
        whole.summary.merge(&report.summary);
        whole.errors.extend(report.errors.iter().cloned());
        out.errors
            .extend(report.errors.iter().map(|error| ReportedError {
                pid: report.pid,
                location: error.location(),
                error: error.clone(),
            }));
        out.processes.push(ProcessReport {
            pid: report.pid,
            ppid: report.ppid,
            command: report.command,
            finished: report.finished,
            truncated: report.truncated,
            fatal_signal: report.fatal_signal,
            threads: report.threads,
            error_counts: report.error_counts,
            suppressed: report.suppressed,
            errors: report.summary.errors,
            errors_not_kept: report.errors_not_kept,
            xml: path.clone(),
        });
    }
    out.violations = thresholds.violations(&whole);
    out.raw = raw;
    Ok(out)
}

/// `valgrind.xml` and `valgrind.<pid>.xml` (and the same `.log`s) in `dir`, ordered by pid.
fn files(dir: &Path) -> anyhow::Result<RawFiles> {
    let mut xml = Vec::new();
    let mut log = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(rest) = name.strip_prefix("valgrind") else {
            continue;
        };
        let (pid, list) = if let Some(pid) = rest.strip_suffix(".xml") {
            (pid, &mut xml)
        } else if let Some(pid) = rest.strip_suffix(".log") {
            (pid, &mut log)
        } else {
            continue;
        };
        let order = match pid.strip_prefix('.').map(str::parse::<u64>) {
            None if pid.is_empty() => 0,
            Some(Ok(pid)) => pid,
            _ => continue,
        };
        list.push((order, path));
    }
    let sorted = |mut v: Vec<(u64, PathBuf)>| {
        v.sort();
        v.into_iter().map(|(_, p)| p).collect()
    };
    Ok(RawFiles {
        xml: sorted(xml),
        log: sorted(log),
    })
}

/// Valgrind's messages from its logs. In XML mode the log only gets what does not fit the
/// XML: fatal errors (a missing suppression file), warnings about the program.
fn messages(logs: &[PathBuf]) -> Vec<String> {
    logs.iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|text| {
            text.lines()
                .map(strip_pid_prefix)
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .take(MAX_MESSAGES)
        .collect()
}

/// `==123== text` → `text`.
fn strip_pid_prefix(line: &str) -> &str {
    line.strip_prefix("==")
        .and_then(|rest| rest.split_once("== "))
        .filter(|(pid, _)| pid.bytes().all(|b| b.is_ascii_digit()))
        .map_or(line, |(_, text)| text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMCHECK: &str = include_str!("../tests/data/memcheck-mixed.xml");
    const HELGRIND: &str = include_str!("../tests/data/helgrind-race.xml");

    fn limits(json: &str) -> Thresholds {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn one_process_gives_its_errors_summary_and_verdict() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("valgrind.xml"), MEMCHECK).unwrap();
        std::fs::write(dir.path().join("valgrind.log"), "").unwrap();
        std::fs::write(dir.path().join("unrelated.xml"), "<html/>").unwrap();
        let report = collect(
            dir.path(),
            Tool::Memcheck,
            &limits(r#"{"max_definitely_lost_bytes": 0}"#),
        )
        .unwrap();
        assert_eq!(report.tool, "memcheck");
        assert!(!report.truncated && report.finished);
        assert_eq!(report.errors.len(), 4);
        assert_eq!(report.summary.leaks.definitely_lost.bytes, 30);
        assert_eq!(report.processes.len(), 1);
        assert_eq!(report.errors[0].pid, report.processes[0].pid);
        assert_eq!(report.errors[0].location.as_deref(), Some("main (uv.c:5)"));
        assert_eq!(
            report.violations,
            ["30 bytes definitely lost in 2 blocks, at most 0 allowed; first at main (uv.c:5)"]
        );
        assert_eq!(report.raw.xml, [dir.path().join("valgrind.xml")]);
        assert_eq!(report.raw.log, [dir.path().join("valgrind.log")]);
        assert!(report.messages.is_empty());

        // The JSON has the record's own fields next to `pid` and `location`.
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["errors"][2]["kind"], "Leak_DefinitelyLost");
        assert_eq!(json["errors"][2]["leaked_bytes"], 10);
        assert_eq!(json["errors"][0]["stacks"][0]["frames"][0]["line"], 5);
        let back: ServiceReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn traced_children_are_merged_in_pid_order() {
        let dir = tempfile::tempdir().unwrap();
        let cut = &HELGRIND[..HELGRIND.len() / 2];
        std::fs::write(dir.path().join("valgrind.900.xml"), HELGRIND).unwrap();
        std::fs::write(dir.path().join("valgrind.80.xml"), cut).unwrap();
        std::fs::write(dir.path().join("valgrind.80.log"), "==80== Warning: x\n").unwrap();
        let report = collect(dir.path(), Tool::Helgrind, &limits(r#"{"max_races": 1}"#)).unwrap();
        assert_eq!(
            report.raw.xml,
            [
                dir.path().join("valgrind.80.xml"),
                dir.path().join("valgrind.900.xml")
            ]
        );
        assert!(report.truncated && !report.finished);
        let truncated: Vec<bool> = report.processes.iter().map(|p| p.truncated).collect();
        assert_eq!(truncated, [true, false]);
        let races = report.summary.category(crate::xml::Category::Race);
        assert!(races >= 2, "{races}");
        assert_eq!(report.errors.len() as u64, races);
        assert_eq!(report.violations.len(), 1);
        assert!(report.violations[0].starts_with(&format!("{races} data races, at most 1 allowed")));
        assert_eq!(report.messages, ["Warning: x"]);
    }

    #[test]
    fn no_xml_means_valgrind_did_not_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("valgrind.log"),
            "==7== FATAL: can't open suppressions file \"/x\"\n",
        )
        .unwrap();
        let err = collect(dir.path(), Tool::Memcheck, &Thresholds::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "valgrind wrote no XML report in {}: it did not start (its error is in the \
                 service's stderr); valgrind said: FATAL: can't open suppressions file \"/x\"",
                dir.path().display()
            )
        );
    }

    #[test]
    fn damage_in_the_middle_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("valgrind.xml");
        std::fs::write(&path, MEMCHECK.replacen("</kind>", "</kinf>", 1)).unwrap();
        let err = collect(dir.path(), Tool::Memcheck, &Thresholds::default()).unwrap_err();
        assert_eq!(err.to_string(), format!("reading {}", path.display()));
        assert!(
            format!("{err:#}").contains("malformed XML at byte"),
            "{err:#}"
        );
    }

    #[test]
    fn pid_prefixes_are_stripped() {
        assert_eq!(strip_pid_prefix("==123== text"), "text");
        assert_eq!(strip_pid_prefix("==x== text"), "==x== text");
        assert_eq!(strip_pid_prefix("plain"), "plain");
    }
}
