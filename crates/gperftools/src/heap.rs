//! Reader for the text heap profiles written by gperftools' heap profiler
//! (`HEAPPROFILE=prefix` writes `prefix.0001.heap`, `prefix.0002.heap`, …).
//!
//! ```text
//! heap profile: <inuse objs>: <inuse bytes> [<alloc objs>: <alloc bytes>] @ heapprofile
//! <inuse objs>: <inuse bytes> [<alloc objs>: <alloc bytes>] @ 0xaddr 0xaddr …
//! …
//!
//! MAPPED_LIBRARIES:
//! <copy of /proc/self/maps>
//! ```
//!
//! `heapprofile` marks the profiler's own dumps, which record every
//! allocation. `heap_v2/N` marks sampled profiles (one sample per N bytes on
//! average); their counts are scaled back up the way `pprof` does.
//! Allocation counts are cumulative since the start of the run, in-use
//! counts are a snapshot, so each dump is self-contained.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::maps::{parse_maps, Mapping};
use crate::symbolize::{Frame, LeafKind, Symbolizer};

const HEADER_PREFIX: &str = "heap profile:";
const MAPS_MARKER: &str = "MAPPED_LIBRARIES:";

/// Counters of one call site or of a whole dump. Signed because gperftools
/// prints them from C `int`s that can wrap on very long runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeapCounts {
    /// Live objects.
    pub inuse_objects: i64,
    /// Live bytes.
    pub inuse_bytes: i64,
    /// Objects allocated since the start of profiling.
    pub alloc_objects: i64,
    /// Bytes allocated since the start of profiling.
    pub alloc_bytes: i64,
}

impl std::ops::AddAssign for HeapCounts {
    /// Saturating, since the counts come from the file.
    fn add_assign(&mut self, other: Self) {
        self.inuse_objects = self.inuse_objects.saturating_add(other.inuse_objects);
        self.inuse_bytes = self.inuse_bytes.saturating_add(other.inuse_bytes);
        self.alloc_objects = self.alloc_objects.saturating_add(other.alloc_objects);
        self.alloc_bytes = self.alloc_bytes.saturating_add(other.alloc_bytes);
    }
}

/// How the counts of a dump were collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeapFormat {
    /// `@ heapprofile`: every allocation recorded, counts are exact.
    Exact,
    /// `@ heap_v2/N`: allocations sampled every N bytes on average.
    Sampled {
        /// Mean sampling interval in bytes.
        period: u64,
    },
}

/// One allocation call site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeapSite {
    /// Counts as written in the file.
    pub counts: HeapCounts,
    /// Return addresses, innermost first.
    pub stack: Vec<u64>,
}

/// One heap dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeapProfile {
    /// File the dump was read from.
    pub path: PathBuf,
    /// Dump number taken from a `prefix.NNNN.heap` name.
    pub sequence: Option<u32>,
    /// Collection method.
    pub format: HeapFormat,
    /// Totals from the header line, with sampling undone.
    pub totals: HeapCounts,
    /// Call sites, counts as written (see [`HeapProfile::site_counts`]).
    pub sites: Vec<HeapSite>,
    /// Memory map of the process when the dump was written.
    pub mappings: Vec<Mapping>,
}

impl HeapProfile {
    /// Reads and parses one dump file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses dump text; `path` labels errors and gives the dump number.
    pub fn parse(text: &str, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let malformed = |line: usize, reason: &str| Error::MalformedHeapProfile {
            path: path.into(),
            line,
            reason: reason.into(),
        };
        let (body, maps) = text.split_once(MAPS_MARKER).unwrap_or((text, ""));
        let mut lines = body.lines().enumerate().map(|(i, l)| (i + 1, l));
        let (_, header) = lines.next().ok_or_else(|| malformed(1, "empty file"))?;
        let (totals, format) = parse_header(header).map_err(|reason| malformed(1, &reason))?;
        let sites = lines
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(n, line)| parse_site(line).ok_or_else(|| malformed(n, "bad call-site line")))
            .collect::<Result<Vec<_>>>()?;
        Ok(HeapProfile {
            path: path.into(),
            sequence: dump_sequence(path),
            format,
            totals: scale(totals, format),
            sites,
            mappings: parse_maps(maps),
        })
    }

    /// Counts of a site with sampling undone (identity for exact dumps).
    pub fn site_counts(&self, site: &HeapSite) -> HeapCounts {
        scale(site.counts, self.format)
    }
}

/// Parses `heap profile: a: b [c: d] @ format`.
fn parse_header(line: &str) -> std::result::Result<(HeapCounts, HeapFormat), String> {
    let rest = line
        .trim_start()
        .strip_prefix(HEADER_PREFIX)
        .ok_or_else(|| format!("header does not start with {HEADER_PREFIX:?}"))?;
    let (counts, format) = rest
        .split_once('@')
        .ok_or_else(|| "header has no '@ format'".to_string())?;
    let counts = parse_counts(counts).ok_or_else(|| "bad header counts".to_string())?;
    let format = match format.trim() {
        "heapprofile" => HeapFormat::Exact,
        other => other
            .strip_prefix("heap_v2/")
            .and_then(|p| p.parse().ok())
            .map(|period| HeapFormat::Sampled { period })
            .ok_or_else(|| format!("unsupported heap profile format {other:?}"))?,
    };
    Ok((counts, format))
}

/// Parses `a: b [c: d] @ 0x… 0x…`.
fn parse_site(line: &str) -> Option<HeapSite> {
    let (counts, stack) = line.split_once('@')?;
    let stack = stack
        .split_ascii_whitespace()
        .map(|a| u64::from_str_radix(a.strip_prefix("0x")?, 16).ok())
        .collect::<Option<Vec<u64>>>()?;
    Some(HeapSite {
        counts: parse_counts(counts)?,
        stack,
    })
}

/// Parses `a: b [c: d]` into four numbers.
fn parse_counts(text: &str) -> Option<HeapCounts> {
    let cleaned = text.replace([':', '[', ']'], " ");
    let numbers = cleaned
        .split_ascii_whitespace()
        .map(|n| n.parse::<i64>().ok())
        .collect::<Option<Vec<i64>>>()?;
    match numbers.as_slice() {
        &[inuse_objects, inuse_bytes, alloc_objects, alloc_bytes] => Some(HeapCounts {
            inuse_objects,
            inuse_bytes,
            alloc_objects,
            alloc_bytes,
        }),
        _ => None,
    }
}

/// Undoes Poisson sampling: a sample of mean size `s` taken every `period`
/// bytes on average stands for `1 / (1 - exp(-s / period))` allocations.
fn scale(counts: HeapCounts, format: HeapFormat) -> HeapCounts {
    let HeapFormat::Sampled { period } = format else {
        return counts;
    };
    let pair = |objects: i64, bytes: i64| {
        if objects <= 0 || period == 0 {
            return (objects, bytes);
        }
        let mean = bytes as f64 / objects as f64;
        let factor = 1.0 / (1.0 - (-mean / period as f64).exp());
        (
            (objects as f64 * factor).round() as i64,
            (bytes as f64 * factor).round() as i64,
        )
    };
    let (inuse_objects, inuse_bytes) = pair(counts.inuse_objects, counts.inuse_bytes);
    let (alloc_objects, alloc_bytes) = pair(counts.alloc_objects, counts.alloc_bytes);
    HeapCounts {
        inuse_objects,
        inuse_bytes,
        alloc_objects,
        alloc_bytes,
    }
}

/// Dump number of `prefix.NNNN.heap`.
fn dump_sequence(path: &Path) -> Option<u32> {
    let name = path.file_name()?.to_str()?.strip_suffix(".heap")?;
    let (_, number) = name.rsplit_once('.')?;
    number.parse().ok()
}

/// Dump files of one run, in dump order: `prefix.NNNN.heap`.
///
/// A child process started from a profiled parent writes to
/// `prefix_<pid>.NNNN.heap` instead (gperftools marks the inherited variable
/// and appends the pid), so pass that prefix to read a child's dumps.
pub fn dump_files(prefix: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let prefix = prefix.as_ref();
    let dir = match prefix.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let stem = prefix
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut dumps: Vec<(u32, PathBuf)> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            let number = name.strip_prefix(&stem)?.strip_prefix('.')?;
            let number = number.strip_suffix(".heap")?;
            let valid = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit());
            Some((number.parse().ok().filter(|_| valid)?, path))
        })
        .collect();
    dumps.sort();
    Ok(dumps.into_iter().map(|(_, p)| p).collect())
}

/// The `HEAPPROFILE` prefixes that have dumps in `prefix`'s folder: `prefix` itself and the
/// `prefix_<pid>` of child processes, sorted, each with the child's pid.
pub fn dump_prefixes(prefix: impl AsRef<Path>) -> Result<Vec<(PathBuf, Option<u32>)>> {
    let prefix = prefix.as_ref();
    let dir = match prefix.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let stem = prefix
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut found: Vec<(PathBuf, Option<u32>)> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|name| {
            let rest = name.strip_prefix(&stem)?.strip_suffix(".heap")?;
            let (pid, number) = rest.rsplit_once('.')?;
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if !digits(number) {
                return None;
            }
            match pid {
                "" => Some((prefix.to_path_buf(), None)),
                _ => {
                    let pid = pid.strip_prefix('_').filter(|p| digits(p))?;
                    Some((dir.join(format!("{stem}_{pid}")), pid.parse().ok()))
                }
            }
        })
        .collect();
    found.sort();
    found.dedup();
    Ok(found)
}

/// Totals of one dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpSummary {
    /// Dump file.
    pub path: PathBuf,
    /// Dump number.
    pub sequence: Option<u32>,
    /// Header totals (sampling undone).
    pub totals: HeapCounts,
}

/// Counts attributed to one allocating function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteStat {
    /// Innermost function of the stack that is not part of the allocator
    /// (see [`is_allocator_frame`]), as a [`Frame::label`].
    pub function: String,
    /// Sum over the call sites attributed to `function`.
    pub counts: HeapCounts,
}

/// Highest in-use total over the dumps of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeakInuse {
    /// In-use bytes in that dump.
    pub inuse_bytes: i64,
    /// Position of the dump in [`HeapReport::dumps`].
    pub dump_index: usize,
    /// Dump file.
    pub path: PathBuf,
}

/// Summary of a heap profiling run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeapReport {
    /// Every dump in order.
    pub dumps: Vec<DumpSummary>,
    /// Dump the per-function tables come from (the last one).
    pub last_dump: Option<PathBuf>,
    /// Functions of the last dump by decreasing in-use bytes.
    pub by_inuse: Vec<SiteStat>,
    /// Functions of the last dump by decreasing allocated bytes.
    pub by_alloc: Vec<SiteStat>,
    /// Peak in-use bytes over the dumps. Dumps are snapshots, so the true
    /// peak between two dumps can be higher.
    pub peak: Option<PeakInuse>,
}

impl HeapReport {
    /// Counts attributed to the function with this exact label.
    pub fn function(&self, name: &str) -> Option<&HeapCounts> {
        self.by_alloc
            .iter()
            .find(|s| s.function == name)
            .map(|s| &s.counts)
    }
}

/// Reads every dump written for `prefix` and summarises the run.
pub fn analyze_heap_run(
    prefix: impl AsRef<Path>,
    symbolizer: &mut Symbolizer,
) -> Result<HeapReport> {
    let prefix = prefix.as_ref();
    let files = dump_files(prefix)?;
    if files.is_empty() {
        return Err(Error::NoHeapDumps {
            prefix: prefix.into(),
        });
    }
    let dumps = files
        .iter()
        .map(HeapProfile::from_file)
        .collect::<Result<Vec<_>>>()?;
    Ok(heap_report(&dumps, symbolizer))
}

/// Summarises dumps given in order.
pub fn heap_report(dumps: &[HeapProfile], symbolizer: &mut Symbolizer) -> HeapReport {
    let summaries: Vec<DumpSummary> = dumps
        .iter()
        .map(|d| DumpSummary {
            path: d.path.clone(),
            sequence: d.sequence,
            totals: d.totals,
        })
        .collect();
    let peak = summaries
        .iter()
        .enumerate()
        .max_by_key(|(i, s)| (s.totals.inuse_bytes, std::cmp::Reverse(*i)))
        .map(|(dump_index, s)| PeakInuse {
            inuse_bytes: s.totals.inuse_bytes,
            dump_index,
            path: s.path.clone(),
        });
    let by_function = dumps
        .last()
        .map(|last| counts_by_function(last, symbolizer))
        .unwrap_or_default();
    HeapReport {
        dumps: summaries,
        last_dump: dumps.last().map(|d| d.path.clone()),
        by_inuse: sorted_by(&by_function, |c| c.inuse_bytes),
        by_alloc: sorted_by(&by_function, |c| c.alloc_bytes),
        peak,
    }
}

/// Adds up per-function tables of several processes (each from its own last dump), by
/// function label, sorted by decreasing `key`.
pub fn merge_site_stats<'a>(
    tables: impl IntoIterator<Item = &'a [SiteStat]>,
    key: impl Fn(&HeapCounts) -> i64,
) -> Vec<SiteStat> {
    let mut totals: HashMap<String, HeapCounts> = HashMap::new();
    for stat in tables.into_iter().flatten() {
        *totals.entry(stat.function.clone()).or_default() += stat.counts;
    }
    let mut stats: Vec<SiteStat> = totals
        .into_iter()
        .map(|(function, counts)| SiteStat { function, counts })
        .collect();
    stats.sort_by(|a, b| a.function.cmp(&b.function));
    sorted_by(&stats, key)
}

/// Symbolizes a dump and adds up its sites per allocating function.
fn counts_by_function(dump: &HeapProfile, symbolizer: &mut Symbolizer) -> Vec<SiteStat> {
    let stacks: Vec<&[u64]> = dump.sites.iter().map(|s| s.stack.as_slice()).collect();
    let resolved = symbolizer.symbolize_stacks(&dump.mappings, &stacks, LeafKind::ReturnAddress);
    let mut totals: HashMap<String, HeapCounts> = HashMap::new();
    for (site, stack) in dump.sites.iter().zip(&resolved.stacks) {
        let frames: Vec<&Frame> = stack
            .iter()
            .filter_map(|&i| resolved.frames.get(i))
            .collect();
        *totals.entry(allocating_function(&frames)).or_default() += dump.site_counts(site);
    }
    let mut stats: Vec<SiteStat> = totals
        .into_iter()
        .map(|(function, counts)| SiteStat { function, counts })
        .collect();
    stats.sort_by(|a, b| a.function.cmp(&b.function));
    stats
}

/// Label of the innermost frame outside the allocator; falls back to the
/// innermost frame when the whole stack is allocator code.
fn allocating_function(frames: &[&Frame]) -> String {
    frames
        .iter()
        .find(|f| !is_allocator_frame(f))
        .or_else(|| frames.first())
        .map(|f| f.label())
        .unwrap_or_else(|| "[empty stack]".to_string())
}

fn sorted_by(stats: &[SiteStat], key: impl Fn(&HeapCounts) -> i64) -> Vec<SiteStat> {
    let mut sorted = stats.to_vec();
    sorted.sort_by_key(|s| std::cmp::Reverse(key(&s.counts)));
    sorted
}

/// Allocation entry points whose caller is the interesting frame.
const ALLOCATOR_FUNCTIONS: &[&str] = &[
    "malloc",
    "calloc",
    "realloc",
    "reallocarray",
    "free",
    "cfree",
    "memalign",
    "posix_memalign",
    "aligned_alloc",
    "valloc",
    "pvalloc",
    "strdup",
    "strndup",
    "operator new",
    "operator new[]",
    "operator delete",
    "operator delete[]",
    "__rust_alloc",
    "__rust_alloc_zeroed",
    "__rust_realloc",
    "__rdl_alloc",
    "__rdl_alloc_zeroed",
    "__rdl_realloc",
];

/// Name prefixes of allocator internals (tcmalloc, glibc, Rust's global
/// allocator shims).
const ALLOCATOR_PREFIXES: &[&str] = &[
    "tc_",
    "tcmalloc::",
    "(anonymous namespace)::do_",
    "MallocHook",
    "__libc_malloc",
    "__libc_calloc",
    "__libc_realloc",
    "__libc_memalign",
    "alloc::alloc::",
];

/// Whether a frame belongs to the allocator rather than to the program:
/// any frame inside a `libtcmalloc*` object, or a known allocation function.
pub fn is_allocator_frame(frame: &Frame) -> bool {
    let object = Path::new(&frame.object)
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    if object.starts_with("libtcmalloc") {
        return true;
    }
    let name = frame.function.split('(').next().unwrap_or_default().trim();
    ALLOCATOR_FUNCTIONS.contains(&name) || ALLOCATOR_PREFIXES.iter().any(|p| name.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "\
heap profile:     11: 10489856 [  1011: 10589856] @ heapprofile
    10: 10485760 [    10: 10485760] @ 0x555a4ba18184 0x555a4ba1823b
     0:        0 [  1000:   100000] @ 0x555a4ba181f2 0x555a4ba18236

MAPPED_LIBRARIES:
555a4ba17000-555a4ba19000 r-xp 00001000 08:01 1 /bin/prog
";

    #[test]
    fn parses_header_sites_and_maps() {
        let dump = HeapProfile::parse(DUMP, "/tmp/h.0006.heap").expect("parses");
        assert_eq!(dump.sequence, Some(6));
        assert_eq!(dump.format, HeapFormat::Exact);
        assert_eq!(dump.totals.inuse_bytes, 10489856);
        assert_eq!(dump.totals.alloc_objects, 1011);
        assert_eq!(dump.sites.len(), 2);
        assert_eq!(dump.sites[1].counts.alloc_bytes, 100000);
        assert_eq!(dump.sites[0].stack, [0x555a4ba18184, 0x555a4ba1823b]);
        assert_eq!(dump.mappings.len(), 1);
    }

    #[test]
    fn sampled_counts_are_scaled_up() {
        let text = "heap profile: 1: 524288 [ 1: 524288] @ heap_v2/524288\n";
        let dump = HeapProfile::parse(text, "x.heap").expect("parses");
        assert_eq!(dump.format, HeapFormat::Sampled { period: 524288 });
        // factor = 1 / (1 - e^-1) ~ 1.582
        assert_eq!(dump.totals.inuse_bytes, 829_411);
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let text = "heap profile: 1: 2 [3: 4] @ heapprofile\n 1: 2 [3: x] @ 0x1\n";
        let err = HeapProfile::parse(text, "/tmp/bad.heap").unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("/tmp/bad.heap:2:"), "{message}");
        let err = HeapProfile::parse("heap profile: 1: 2 [3: 4] @ weird\n", "w").unwrap_err();
        assert!(err.to_string().contains("unsupported"), "{err}");
    }

    #[test]
    fn allocator_frames_are_recognised() {
        let frame = |function: &str, object: &str| Frame {
            function: function.into(),
            file: None,
            line: None,
            object: object.into(),
            object_address: 0,
            resolved: true,
            inlined: false,
        };
        assert!(is_allocator_frame(&frame(
            "anything",
            "/usr/lib/libtcmalloc.so.4"
        )));
        assert!(is_allocator_frame(&frame(
            "operator new(unsigned long)",
            "/x"
        )));
        assert!(is_allocator_frame(&frame("tc_malloc", "/x")));
        assert!(!is_allocator_frame(&frame("alloc_big", "/x")));
        let frames = [&frame("malloc", "/x"), &frame("alloc_big", "/x")];
        assert_eq!(allocating_function(&frames), "alloc_big");
    }

    #[test]
    fn prefixes_of_children_are_found() {
        let dir = std::env::temp_dir().join(format!("heap-prefixes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for name in [
            "heap.0001.heap",
            "heap.0002.heap",
            "heap_42.0001.heap",
            "heap_x.0001.heap",
            "heap.folded",
            "other.0001.heap",
        ] {
            std::fs::write(dir.join(name), "").expect("write");
        }
        let found = dump_prefixes(dir.join("heap")).expect("list");
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(
            found,
            [(dir.join("heap"), None), (dir.join("heap_42"), Some(42))]
        );
    }

    #[test]
    fn site_tables_of_processes_add_up_by_function() {
        let stat = |function: &str, inuse_bytes, alloc_bytes| SiteStat {
            function: function.into(),
            counts: HeapCounts {
                inuse_bytes,
                alloc_bytes,
                ..HeapCounts::default()
            },
        };
        let one = [stat("a", 5, 10), stat("b", 1, 100)];
        let two = [stat("a", 7, 10)];
        let merged = merge_site_stats([&one[..], &two[..]], |c| c.inuse_bytes);
        assert_eq!(merged[0], stat("a", 12, 20));
        assert_eq!(merged[1], stat("b", 1, 100));
    }

    #[test]
    fn peak_picks_the_first_highest_dump() {
        let mk = |seq: u32, inuse: i64| HeapProfile {
            path: format!("/t/h.{seq:04}.heap").into(),
            sequence: Some(seq),
            format: HeapFormat::Exact,
            totals: HeapCounts {
                inuse_bytes: inuse,
                ..HeapCounts::default()
            },
            sites: Vec::new(),
            mappings: Vec::new(),
        };
        let dumps = [mk(1, 5), mk(2, 9), mk(3, 9), mk(4, 1)];
        let report = heap_report(&dumps, &mut Symbolizer::new());
        let peak = report.peak.expect("peak");
        assert_eq!((peak.inuse_bytes, peak.dump_index), (9, 1));
        assert_eq!(report.dumps.len(), 4);
    }
}
