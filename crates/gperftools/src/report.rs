//! Reports derived from a symbolized CPU profile: flat and cumulative
//! function tables, folded stacks and a flame graph.
//!
//! Functions are identified by [`Frame::label`], so unresolved frames still
//! show up (as `0x… (object)`) instead of silently vanishing from totals.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::symbolize::{Frame, SymbolizedCpuProfile};

/// Samples attributed to one function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionStat {
    /// Function label (see [`Frame::label`]).
    pub function: String,
    /// Samples where the function was the leaf (it was running).
    pub flat: u64,
    /// `flat` as a percentage of all samples.
    pub flat_percent: f64,
    /// Samples where the function was anywhere on the stack, counted once per
    /// stack even when it recurses.
    pub cumulative: u64,
    /// `cumulative` as a percentage of all samples.
    pub cumulative_percent: f64,
}

/// Function tables of a CPU profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuReport {
    /// Sampling period from the profile header, in microseconds.
    pub period_us: u64,
    /// Total number of samples.
    pub total_samples: u64,
    /// Functions by decreasing flat samples (ties by name).
    pub by_flat: Vec<FunctionStat>,
    /// Functions by decreasing cumulative samples (ties by name).
    pub by_cumulative: Vec<FunctionStat>,
}

impl CpuReport {
    /// Statistics of the function with this exact label, if it was sampled.
    pub fn function(&self, name: &str) -> Option<&FunctionStat> {
        self.by_cumulative.iter().find(|s| s.function == name)
    }
}

/// Builds the flat and cumulative tables, each cut to `limit` entries when
/// given.
pub fn cpu_report(profile: &SymbolizedCpuProfile, limit: Option<usize>) -> CpuReport {
    let total = profile.total_samples();
    let labels = LabelTable::new(&profile.frames, Frame::label);
    let (flat, cumulative) = count_samples(profile, &labels);
    let stats: Vec<FunctionStat> = labels
        .names
        .iter()
        .zip(flat.iter().zip(&cumulative))
        .filter(|(_, (_, &cum))| cum > 0)
        .map(|(name, (&flat, &cum))| FunctionStat {
            function: name.clone(),
            flat,
            flat_percent: percent(flat, total),
            cumulative: cum,
            cumulative_percent: percent(cum, total),
        })
        .collect();
    let mut stats = stats;
    stats.sort_by(|a, b| a.function.cmp(&b.function));
    CpuReport {
        period_us: profile.period_us,
        total_samples: total,
        by_flat: top_by(&stats, limit, |s| s.flat),
        by_cumulative: top_by(&stats, limit, |s| s.cumulative),
    }
}

/// Distinct labels, and for each frame the index of its label. Several
/// frames share a label (same function at different lines), and counting
/// by label index avoids hashing strings for every sampled address.
struct LabelTable {
    names: Vec<String>,
    of_frame: Vec<usize>,
}

impl LabelTable {
    fn new(frames: &[Frame], label: impl Fn(&Frame) -> String) -> Self {
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut names = Vec::new();
        let of_frame = frames
            .iter()
            .map(|frame| {
                let name = label(frame);
                *ids.entry(name.clone()).or_insert_with(|| {
                    names.push(name);
                    names.len() - 1
                })
            })
            .collect();
        LabelTable { names, of_frame }
    }

    fn label_of(&self, frame: usize) -> Option<usize> {
        self.of_frame.get(frame).copied()
    }
}

/// Flat and cumulative counts per label index. `last_sample` remembers the
/// last sample that counted a label, so a label is counted once per stack.
fn count_samples(profile: &SymbolizedCpuProfile, labels: &LabelTable) -> (Vec<u64>, Vec<u64>) {
    let n = labels.names.len();
    let (mut flat, mut cumulative) = (vec![0u64; n], vec![0u64; n]);
    let mut last_sample = vec![usize::MAX; n];
    for (index, sample) in profile.samples.iter().enumerate() {
        if let Some(leaf) = sample.stack.first().and_then(|&f| labels.label_of(f)) {
            flat[leaf] = flat[leaf].saturating_add(sample.count);
        }
        for label in sample.stack.iter().filter_map(|&f| labels.label_of(f)) {
            if last_sample[label] != index {
                last_sample[label] = index;
                cumulative[label] = cumulative[label].saturating_add(sample.count);
            }
        }
    }
    (flat, cumulative)
}

/// Sorted copy by decreasing `key`; the input is already sorted by name so a
/// stable sort keeps ties deterministic.
fn top_by(
    stats: &[FunctionStat],
    limit: Option<usize>,
    key: impl Fn(&FunctionStat) -> u64,
) -> Vec<FunctionStat> {
    let mut sorted: Vec<FunctionStat> = stats.iter().filter(|s| key(s) > 0).cloned().collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(key(s)));
    sorted.truncate(limit.unwrap_or(usize::MAX));
    sorted
}

fn percent(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 * 100.0 / total as f64
    }
}

/// Folded stacks, one `root;…;leaf count` line per distinct stack, sorted,
/// in the format flame graph tools consume.
pub fn folded_stacks(profile: &SymbolizedCpuProfile) -> Vec<String> {
    let labels = LabelTable::new(&profile.frames, |f| sanitize_folded(&f.label()));
    let mut merged: HashMap<Vec<usize>, u64> = HashMap::new();
    for sample in profile.samples.iter().filter(|s| s.count > 0) {
        let path: Vec<usize> = sample
            .stack
            .iter()
            .rev()
            .filter_map(|&f| labels.label_of(f))
            .collect();
        if !path.is_empty() {
            let total = merged.entry(path).or_default();
            *total = total.saturating_add(sample.count);
        }
    }
    let mut lines: Vec<String> = merged
        .into_iter()
        .map(|(path, count)| folded_line(&path, &labels.names, count))
        .collect();
    lines.sort_unstable();
    lines
}

fn folded_line(path: &[usize], names: &[String], count: u64) -> String {
    let mut line = String::new();
    for (depth, name) in path.iter().filter_map(|&i| names.get(i)).enumerate() {
        if depth > 0 {
            line.push(';');
        }
        line.push_str(name);
    }
    line.push(' ');
    line.push_str(&count.to_string());
    line
}

/// `;` separates frames and a line ends a stack, so neither may appear in a
/// frame name.
fn sanitize_folded(label: &str) -> String {
    label.replace(';', ":").replace(['\n', '\r'], " ")
}

/// Renders folded stacks as an interactive SVG flame graph.
pub fn flamegraph_svg(folded: &[String], title: &str) -> std::io::Result<Vec<u8>> {
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_string();
    options.count_name = "samples".to_string();
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut options, folded.iter().map(String::as_str), &mut svg)?;
    Ok(svg)
}

/// Renders folded stacks and writes the SVG to `path`.
pub fn write_flamegraph(folded: &[String], title: &str, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let svg = flamegraph_svg(folded, title).map_err(|source| Error::Flamegraph {
        path: path.into(),
        source,
    })?;
    std::fs::write(path, svg).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbolize::SymbolizedSample;

    fn frame(name: &str) -> Frame {
        Frame {
            function: name.into(),
            file: None,
            line: None,
            object: "/bin/x".into(),
            object_address: 0,
            resolved: true,
            inlined: false,
        }
    }

    /// main -> a -> b (3 samples), main -> a (1), main -> rec -> rec (2).
    fn profile() -> SymbolizedCpuProfile {
        let frames = ["main", "a", "b", "rec"].map(frame).to_vec();
        let sample = |count, stack: &[usize]| SymbolizedSample {
            count,
            stack: stack.to_vec(),
        };
        SymbolizedCpuProfile {
            period_us: 1000,
            frames,
            samples: vec![
                sample(3, &[2, 1, 0]),
                sample(1, &[1, 0]),
                sample(2, &[3, 3, 0]),
            ],
        }
    }

    #[test]
    fn flat_and_cumulative_counts() {
        let report = cpu_report(&profile(), None);
        assert_eq!(report.total_samples, 6);
        assert_eq!(report.by_flat[0].function, "b");
        assert_eq!(report.by_flat[0].flat, 3);
        assert_eq!(report.by_flat[0].flat_percent, 50.0);
        let main = report.function("main").expect("main");
        assert_eq!((main.flat, main.cumulative), (0, 6));
        let rec = report.function("rec").expect("rec");
        assert_eq!(rec.cumulative, 2, "recursion counted once per stack");
        assert_eq!(report.by_cumulative[0].function, "main");
        assert!(report.by_flat.iter().all(|s| s.flat > 0));
    }

    #[test]
    fn limit_cuts_tables() {
        let report = cpu_report(&profile(), Some(1));
        assert_eq!(report.by_flat.len(), 1);
        assert_eq!(report.by_cumulative.len(), 1);
    }

    #[test]
    fn folded_lines_are_root_first_and_merged() {
        let mut p = profile();
        p.samples.push(SymbolizedSample {
            count: 4,
            stack: vec![2, 1, 0],
        });
        let folded = folded_stacks(&p);
        assert_eq!(folded, ["main;a 1", "main;a;b 7", "main;rec;rec 2"]);
    }

    #[test]
    fn flamegraph_mentions_functions() {
        let svg = flamegraph_svg(&folded_stacks(&profile()), "t").expect("svg");
        let svg = String::from_utf8(svg).expect("utf8");
        assert!(svg.contains("<svg") && svg.contains("rec"));
    }
}
