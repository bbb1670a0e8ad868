//! Parsing of the `/proc/self/maps` text that gperftools appends to its
//! profiles.
//!
//! Both the CPU and the heap profiler copy the process' memory map into the
//! profile at write time, because sampled addresses are only meaningful
//! relative to where each object was loaded in *that* run (ASLR, PIE).

use serde::{Deserialize, Serialize};

/// One line of a process memory map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    /// First address of the mapping.
    pub start: u64,
    /// One past the last address of the mapping.
    pub end: u64,
    /// File offset mapped at `start`.
    pub offset: u64,
    /// Backing file, or a pseudo name such as `[vdso]`; empty for anonymous
    /// memory.
    pub path: String,
}

impl Mapping {
    /// Whether `address` falls inside this mapping.
    pub fn contains(&self, address: u64) -> bool {
        self.start <= address && address < self.end
    }

    /// Whether the mapping is backed by a regular file that can be opened for
    /// symbols (as opposed to `[vdso]`, `[stack]` or anonymous memory).
    pub fn is_file_backed(&self) -> bool {
        self.path.starts_with('/') && !self.path.ends_with(" (deleted)")
    }

    /// Offset of `address` inside the backing file (saturating, since the
    /// offset comes from untrusted profile text).
    pub fn file_offset(&self, address: u64) -> u64 {
        address
            .saturating_sub(self.start)
            .saturating_add(self.offset)
    }
}

/// Parses maps text, keeping only well-formed lines, sorted by start address.
///
/// Lines that do not parse are skipped rather than rejected: gperftools has
/// emitted extra informational lines in some versions, and a profile should
/// not become unreadable because of them.
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    let mut mappings: Vec<Mapping> = text.lines().filter_map(parse_maps_line).collect();
    mappings.sort_by_key(|m| m.start);
    mappings
}

/// Parses `start-end perms offset dev inode [path]`.
fn parse_maps_line(line: &str) -> Option<Mapping> {
    let mut fields = line.split_ascii_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let _perms = fields.next()?;
    let offset = fields.next()?;
    let _dev = fields.next()?;
    let _inode = fields.next()?;
    let path = fields.collect::<Vec<_>>().join(" ");
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    if end <= start {
        return None;
    }
    Some(Mapping {
        start,
        end,
        offset: u64::from_str_radix(offset, 16).ok()?,
        path,
    })
}

/// Finds the mapping containing `address` in a list sorted by start address.
pub fn find_mapping(mappings: &[Mapping], address: u64) -> Option<&Mapping> {
    let after = mappings.partition_point(|m| m.start <= address);
    let candidate = mappings.get(after.checked_sub(1)?)?;
    candidate.contains(address).then_some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 123 /usr/bin/prog
55d0c0a01000-55d0c0a02000 r-xp 00001000 08:01 123 /usr/bin/prog
7f0000000000-7f0000001000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]
garbage line
7f1000000000-7f1000001000 r-xp 00002000 08:01 9 /tmp/with space.so
";

    #[test]
    fn parses_lines_and_skips_garbage() {
        let maps = parse_maps(MAPS);
        assert_eq!(maps.len(), 5);
        assert_eq!(maps[1].offset, 0x1000);
        assert_eq!(maps[1].path, "/usr/bin/prog");
        assert_eq!(maps[2].path, "");
        assert_eq!(maps[3].path, "/tmp/with space.so");
        assert_eq!(maps[4].path, "[vdso]");
    }

    #[test]
    fn finds_containing_mapping() {
        let maps = parse_maps(MAPS);
        let m = find_mapping(&maps, 0x55d0c0a01234).map(|m| m.offset);
        assert_eq!(m, Some(0x1000));
        assert!(find_mapping(&maps, 0x10).is_none());
        assert!(find_mapping(&maps, 0x55d0c0a02000).is_none());
    }
}
