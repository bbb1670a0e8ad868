//! Reader for the legacy binary CPU profile written by gperftools'
//! `libprofiler` (`CPUPROFILE=...`).
//!
//! Layout, in machine words of the profiled process:
//!
//! ```text
//! header   0, 3, 0, sampling period (µs), 0
//! record   sample count, number of PCs, PC...      (repeated)
//! trailer  0, 1, 0
//! text     copy of /proc/self/maps
//! ```
//!
//! The word size and byte order are those of the profiled machine, so they
//! are detected from the header rather than assumed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::maps::{parse_maps, Mapping};

/// Sampled stacks with their counts, as stored in [`CpuProfile::samples`].
pub type Samples = Vec<(u64, Vec<u64>)>;

/// Number of words in the header: count slot, header-size slot (3), then
/// version, period and padding.
const HEADER_WORDS: usize = 5;

/// A parsed CPU profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuProfile {
    /// Sampling period requested from the profiler, in microseconds. The
    /// kernel may deliver fewer interrupts than this implies (the profiling
    /// timer is rounded to the scheduler tick), so use sample counts for
    /// proportions, not as wall time.
    pub period_us: u64,
    /// `(count, stack)` pairs; stacks are leaf first: element 0 is the
    /// interrupted PC, the rest are return addresses.
    pub samples: Samples,
    /// Memory map of the process when the profile was written.
    pub mappings: Vec<Mapping>,
}

impl CpuProfile {
    /// Reads and parses a profile file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&bytes, path)
    }

    /// Parses profile bytes; `path` only labels errors.
    pub fn parse(bytes: &[u8], path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if bytes.is_empty() {
            return Err(Error::EmptyCpuProfile { path: path.into() });
        }
        let words = WordReader::detect(bytes, path)?;
        let period_us = words.word(3).unwrap_or(0);
        words.check_header_complete(path)?;
        let (samples, text_start) = read_records(&words, HEADER_WORDS, path)?;
        let text = String::from_utf8_lossy(bytes.get(text_start..).unwrap_or_default());
        Ok(CpuProfile {
            period_us,
            samples,
            mappings: parse_maps(&text),
        })
    }

    /// Total number of samples (saturating: counts come from the file).
    pub fn total_samples(&self) -> u64 {
        self.samples
            .iter()
            .fold(0u64, |total, (count, _)| total.saturating_add(*count))
    }

    /// Encodes the profile in the same format, 64-bit little-endian, with the
    /// maps text rebuilt from `mappings`. Used to produce fixtures and
    /// benchmarks without running the profiler.
    pub fn encode(&self) -> Vec<u8> {
        let mut words = vec![0, 3, 0, self.period_us, 0];
        for (count, stack) in &self.samples {
            words.push(*count);
            words.push(stack.len() as u64);
            words.extend_from_slice(stack);
        }
        words.extend_from_slice(&[0, 1, 0]);
        let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        for m in &self.mappings {
            let line = format!(
                "{:x}-{:x} r-xp {:08x} 00:00 0 {}\n",
                m.start, m.end, m.offset, m.path
            );
            bytes.extend_from_slice(line.as_bytes());
        }
        bytes
    }
}

/// Reads fixed-size words with the byte order found in the header.
struct WordReader<'a> {
    bytes: &'a [u8],
    size: usize,
    big_endian: bool,
}

impl<'a> WordReader<'a> {
    /// Tries 64-bit then 32-bit words, each in both byte orders, and keeps the
    /// first layout whose header reads `0, 3, 0`.
    fn detect(bytes: &'a [u8], path: &Path) -> Result<Self> {
        for size in [8, 4] {
            for big_endian in [false, true] {
                let reader = WordReader {
                    bytes,
                    size,
                    big_endian,
                };
                if reader.has_header() {
                    return Ok(reader);
                }
            }
        }
        Err(Error::NotCpuProfile {
            path: path.into(),
            reason: "header is not [0, 3, 0, period, 0] in any word size or byte order".into(),
        })
    }

    fn has_header(&self) -> bool {
        self.word(0) == Some(0) && self.word(1) == Some(3) && self.word(2) == Some(0)
    }

    /// Fails unless the whole header (including the padding word after
    /// the period) is present.
    fn check_header_complete(&self, path: &Path) -> Result<()> {
        match self.word(HEADER_WORDS - 1) {
            Some(_) => Ok(()),
            None => Err(Error::TruncatedCpuProfile {
                path: path.into(),
                offset: self.bytes.len(),
                reason: "header".into(),
            }),
        }
    }

    /// Word at `index`, or `None` past the end of the data.
    fn word(&self, index: usize) -> Option<u64> {
        let start = index.checked_mul(self.size)?;
        let raw = self.bytes.get(start..start.checked_add(self.size)?)?;
        Some(match (self.size, self.big_endian) {
            (8, false) => u64::from_le_bytes(raw.try_into().ok()?),
            (8, true) => u64::from_be_bytes(raw.try_into().ok()?),
            (_, false) => u64::from(u32::from_le_bytes(raw.try_into().ok()?)),
            (_, true) => u64::from(u32::from_be_bytes(raw.try_into().ok()?)),
        })
    }

    fn len_words(&self) -> usize {
        self.bytes.len() / self.size
    }
}

/// Reads records from word `first` up to and including the trailer.
/// Returns the samples and the byte offset where the maps text starts.
fn read_records(words: &WordReader<'_>, first: usize, path: &Path) -> Result<(Samples, usize)> {
    let truncated = |index: usize, reason: &str| Error::TruncatedCpuProfile {
        path: path.into(),
        offset: index.saturating_mul(words.size),
        reason: reason.into(),
    };
    let mut samples = Vec::new();
    let mut index = first;
    loop {
        let count = words
            .word(index)
            .ok_or_else(|| truncated(index, "no trailer record (profile was not stopped)"))?;
        let depth = words
            .word(index + 1)
            .ok_or_else(|| truncated(index + 1, "record depth"))?;
        let depth = usize::try_from(depth)
            .ok()
            .filter(|d| {
                d.checked_add(index + 2)
                    .is_some_and(|end| end <= words.len_words())
            })
            .ok_or_else(|| truncated(index, "record longer than the file"))?;
        let stack: Vec<u64> = (0..depth)
            .filter_map(|i| words.word(index + 2 + i))
            .collect();
        index += 2 + depth;
        if count == 0 && stack == [0] {
            return Ok((samples, index * words.size));
        }
        samples.push((count, stack));
    }
}

/// Path of the file written for the `index`-th start/stop cycle when
/// `CPUPROFILESIGNAL` is used: libprofiler appends `.index` to `CPUPROFILE`.
pub fn signal_profile_path(cpuprofile: impl AsRef<Path>, index: u32) -> PathBuf {
    let mut name = cpuprofile.as_ref().as_os_str().to_owned();
    name.push(format!(".{index}"));
    PathBuf::from(name)
}

/// The profiles in `cpuprofile`'s folder that libprofiler may have written for it, sorted:
/// `cpuprofile` itself, the `cpuprofile_<pid>` of child processes, and either of them with
/// the `.N` suffix of a signal-driven cycle.
pub fn profile_files(cpuprofile: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let cpuprofile = cpuprofile.as_ref();
    let dir = match cpuprofile.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let stem = cpuprofile
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| {
            let Some(rest) = name.strip_prefix(&stem) else {
                return false;
            };
            let rest = match rest.strip_prefix('_') {
                Some(pid_and_more) => {
                    let end = pid_and_more.find('.').unwrap_or(pid_and_more.len());
                    if !digits(&pid_and_more[..end]) {
                        return false;
                    }
                    &pid_and_more[end..]
                }
                None => rest,
            };
            rest.is_empty() || rest.strip_prefix('.').is_some_and(digits)
        })
        .map(|name| dir.join(name))
        .collect();
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "400000-401000 r-xp 00000000 08:01 1 /bin/x\n";

    fn words_to_bytes(words: &[u64], size: usize, big_endian: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for &w in words {
            match (size, big_endian) {
                (8, false) => out.extend_from_slice(&w.to_le_bytes()),
                (8, true) => out.extend_from_slice(&w.to_be_bytes()),
                (_, false) => out.extend_from_slice(&(w as u32).to_le_bytes()),
                (_, true) => out.extend_from_slice(&(w as u32).to_be_bytes()),
            }
        }
        out.extend_from_slice(MAPS.as_bytes());
        out
    }

    fn sample_words() -> Vec<u64> {
        vec![
            0, 3, 0, 1000, 0, // header
            5, 2, 0x400100, 0x400200, // record
            1, 1, 0x400300, // record
            0, 1, 0, // trailer
        ]
    }

    #[test]
    fn parses_every_word_size_and_byte_order() {
        for size in [8, 4] {
            for big_endian in [false, true] {
                let bytes = words_to_bytes(&sample_words(), size, big_endian);
                let profile = CpuProfile::parse(&bytes, "mem").expect("parses");
                assert_eq!(profile.period_us, 1000);
                assert_eq!(profile.samples.len(), 2);
                assert_eq!(profile.samples[0], (5, vec![0x400100, 0x400200]));
                assert_eq!(profile.total_samples(), 6);
                assert_eq!(profile.mappings.len(), 1);
            }
        }
    }

    #[test]
    fn empty_file_is_reported_as_killed_process() {
        let err = CpuProfile::parse(&[], "/tmp/p.prof").unwrap_err();
        assert!(matches!(err, Error::EmptyCpuProfile { .. }));
        assert!(err.to_string().contains("/tmp/p.prof"));
    }

    #[test]
    fn missing_trailer_is_truncation() {
        let mut words = sample_words();
        words.truncate(words.len() - 3);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let err = CpuProfile::parse(&bytes, "p").unwrap_err();
        assert!(matches!(err, Error::TruncatedCpuProfile { .. }), "{err}");
    }

    #[test]
    fn oversized_record_is_truncation() {
        let words = [0, 3, 0, 1000, 0, 1, 1_000_000, 7];
        let bytes: Vec<u8> = words.iter().flat_map(|w: &u64| w.to_le_bytes()).collect();
        let err = CpuProfile::parse(&bytes, "p").unwrap_err();
        assert!(matches!(err, Error::TruncatedCpuProfile { .. }), "{err}");
    }

    #[test]
    fn garbage_is_rejected() {
        let err = CpuProfile::parse(b"heap profile: 1: 2 [3: 4] @ x", "p").unwrap_err();
        assert!(matches!(err, Error::NotCpuProfile { .. }), "{err}");
    }

    #[test]
    fn encode_round_trips() {
        let bytes = words_to_bytes(&sample_words(), 8, false);
        let profile = CpuProfile::parse(&bytes, "mem").expect("parses");
        let again = CpuProfile::parse(&profile.encode(), "mem").expect("parses");
        assert_eq!(profile, again);
    }

    #[test]
    fn profile_files_of_every_process_are_found() {
        let dir = std::env::temp_dir().join(format!("cpu-profiles-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for name in [
            "cpu.prof",
            "cpu.prof.0",
            "cpu.prof_42.0",
            "cpu.prof_42",
            "cpu.prof_x.0",
            "cpu.prof.a",
            "cpu.folded",
        ] {
            std::fs::write(dir.join(name), "").expect("write");
        }
        let found = profile_files(dir.join("cpu.prof")).expect("list");
        std::fs::remove_dir_all(&dir).ok();
        let names: Vec<String> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["cpu.prof", "cpu.prof.0", "cpu.prof_42", "cpu.prof_42.0"]
        );
    }

    #[test]
    fn signal_paths_get_an_index_suffix() {
        assert_eq!(
            signal_profile_path("/tmp/a.prof", 0),
            PathBuf::from("/tmp/a.prof.0")
        );
    }
}
