//! Turning sampled addresses into functions, files and lines.
//!
//! A sampled address is only meaningful with the memory map of the run that
//! produced it. For each address we find its mapping, convert it to an offset
//! in the backing file, then to the address the ELF file itself uses (its
//! "stated" virtual address, via the `PT_LOAD` segment holding that offset),
//! which is what DWARF and the symbol table are keyed on. Going through the
//! file offset and the segment table handles PIE executables, shared
//! libraries and fixed-address executables alike.
//!
//! Return addresses point at the instruction after the call, which may
//! belong to the next source line or even the next function (when the call
//! is the last instruction), so every frame but an interrupted PC is looked
//! up at `address - 1`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::time::SystemTime;

use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};
use serde::{Deserialize, Serialize};

use crate::container::ObjectFiles;
use crate::cpu::CpuProfile;
use crate::debug_file;
use crate::maps::{find_mapping, Mapping};

/// Object name used for addresses outside every mapping.
pub const UNKNOWN_OBJECT: &str = "[unknown]";

/// One source-level frame of a symbolized stack.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Frame {
    /// Demangled function name, or `0x…` (the address looked up) when the
    /// address could not be resolved.
    pub function: String,
    /// Source file, when debug information covers the address.
    pub file: Option<String>,
    /// Source line, when debug information covers the address.
    pub line: Option<u32>,
    /// Path of the object the address falls in (or a pseudo name such as
    /// `[vdso]`, or [`UNKNOWN_OBJECT`]).
    pub object: String,
    /// Address that was looked up: the ELF virtual address inside `object`
    /// when the object could be read, otherwise the file offset, otherwise
    /// the raw (adjusted) address.
    pub object_address: u64,
    /// Whether a function name was found.
    pub resolved: bool,
    /// Whether this frame was inlined into the frame that follows it.
    pub inlined: bool,
}

impl Frame {
    /// Name used in reports: the function, or `0x… (object file name)` for
    /// unresolved frames so that they still say where they come from.
    pub fn label(&self) -> String {
        if self.resolved {
            return self.function.clone();
        }
        let object = Path::new(&self.object)
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or(Cow::Borrowed(self.object.as_str()));
        format!("{} ({object})", self.function)
    }

    fn unresolved(object: &str, address: u64) -> Self {
        Frame {
            function: format!("0x{address:x}"),
            file: None,
            line: None,
            object: object.to_string(),
            object_address: address,
            resolved: false,
            inlined: false,
        }
    }
}

/// Stacks whose frames are stored once in a table and referenced by index,
/// which keeps large profiles compact.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolizedStacks {
    /// Distinct frames.
    pub frames: Vec<Frame>,
    /// One entry per input stack: indices into `frames`, leaf first, with
    /// inlined frames expanded (innermost first).
    pub stacks: Vec<Vec<usize>>,
}

/// One sample of a symbolized CPU profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolizedSample {
    /// Number of times the stack was sampled.
    pub count: u64,
    /// Indices into [`SymbolizedCpuProfile::frames`], leaf first.
    pub stack: Vec<usize>,
}

/// A CPU profile whose addresses have been resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolizedCpuProfile {
    /// Sampling period from the profile header, in microseconds.
    pub period_us: u64,
    /// Distinct frames referenced by the samples.
    pub frames: Vec<Frame>,
    /// Samples in profile order.
    pub samples: Vec<SymbolizedSample>,
}

impl SymbolizedCpuProfile {
    /// Total number of samples (saturating: counts come from the file).
    pub fn total_samples(&self) -> u64 {
        self.samples
            .iter()
            .fold(0u64, |total, s| total.saturating_add(s.count))
    }

    /// One profile made of several, e.g. of the processes of one service: their samples side
    /// by side, each referring to its own profile's frames. The period is the first
    /// profile's (profiles of one service share their settings).
    pub fn merge(profiles: impl IntoIterator<Item = SymbolizedCpuProfile>) -> Self {
        let mut merged = SymbolizedCpuProfile {
            period_us: 0,
            frames: Vec::new(),
            samples: Vec::new(),
        };
        for (index, profile) in profiles.into_iter().enumerate() {
            if index == 0 {
                merged.period_us = profile.period_us;
            }
            let offset = merged.frames.len();
            merged.frames.extend(profile.frames);
            merged
                .samples
                .extend(profile.samples.into_iter().map(|s| SymbolizedSample {
                    count: s.count,
                    stack: s.stack.into_iter().map(|f| f + offset).collect(),
                }));
        }
        merged
    }

    /// Frames of one sample, leaf first.
    pub fn stack_frames<'a>(
        &'a self,
        sample: &'a SymbolizedSample,
    ) -> impl Iterator<Item = &'a Frame> + 'a {
        sample.stack.iter().filter_map(|&i| self.frames.get(i))
    }
}

/// How the first address of a stack was captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafKind {
    /// The first address is an interrupted program counter (CPU profiles):
    /// it is looked up as is.
    ProgramCounter,
    /// Every address is a return address (heap profiles record the stack
    /// from inside the allocation hook).
    ReturnAddress,
}

/// Symbolizes a CPU profile. The first address of each stack is the PC the
/// profiling signal interrupted; the others are return addresses.
pub fn symbolize_cpu(profile: &CpuProfile, symbolizer: &mut Symbolizer) -> SymbolizedCpuProfile {
    let stacks: Vec<&[u64]> = profile.samples.iter().map(|(_, s)| s.as_slice()).collect();
    let resolved =
        symbolizer.symbolize_stacks(&profile.mappings, &stacks, LeafKind::ProgramCounter);
    let samples = profile
        .samples
        .iter()
        .zip(resolved.stacks)
        .map(|((count, _), stack)| SymbolizedSample {
            count: *count,
            stack,
        })
        .collect();
    SymbolizedCpuProfile {
        period_us: profile.period_us,
        frames: resolved.frames,
        samples,
    }
}

/// Resolves addresses to frames, keeping loaded objects and lookups cached
/// across profiles (several heap dumps of one run share all their objects).
#[derive(Default)]
pub struct Symbolizer {
    /// Objects by identity; `None` records a file that could not be read so
    /// it is not retried for every address.
    object_ids: HashMap<ObjectKey, Option<usize>>,
    objects: Vec<LoadedObject>,
    /// Frames per (object index, looked-up address), innermost first.
    cache: HashMap<(usize, u64), Vec<Frame>>,
    /// Where the objects the memory maps name are read.
    files: ObjectFiles,
}

impl Symbolizer {
    /// Creates an empty symbolizer, which reads the objects at the paths the memory maps
    /// name.
    pub fn new() -> Self {
        Self::default()
    }

    /// A symbolizer that reads the objects the memory maps name from `files` (a container's
    /// root), so that a profile written in a container is read against the container's
    /// binaries.
    pub fn with_files(files: ObjectFiles) -> Self {
        Symbolizer {
            files,
            ..Self::default()
        }
    }

    /// Symbolizes many stacks captured in the same process, sharing frames.
    pub fn symbolize_stacks(
        &mut self,
        mappings: &[Mapping],
        stacks: &[&[u64]],
        leaf: LeafKind,
    ) -> SymbolizedStacks {
        let mut interner = StackInterner::default();
        let stacks = stacks
            .iter()
            .map(|stack| interner.stack(self, mappings, stack, leaf))
            .collect();
        SymbolizedStacks {
            frames: interner.frames,
            stacks,
        }
    }

    /// Frames (innermost first) for one address. `is_return_address` makes
    /// the lookup use `address - 1`.
    pub fn symbolize_address(
        &mut self,
        mappings: &[Mapping],
        address: u64,
        is_return_address: bool,
    ) -> Vec<Frame> {
        let probe = if is_return_address {
            address.saturating_sub(1)
        } else {
            address
        };
        let Some(mapping) = find_mapping(mappings, probe) else {
            return vec![Frame::unresolved(UNKNOWN_OBJECT, probe)];
        };
        if !mapping.is_file_backed() {
            let name = if mapping.path.is_empty() {
                "[anon]"
            } else {
                mapping.path.as_str()
            };
            return vec![Frame::unresolved(name, probe)];
        }
        let file_offset = mapping.file_offset(probe);
        let Some(object_index) = self.object_index(&mapping.path) else {
            return vec![Frame::unresolved(&mapping.path, file_offset)];
        };
        self.frames_in_object(object_index, file_offset)
    }

    /// Looks up (and caches) the frames for a file offset in a loaded object.
    fn frames_in_object(&mut self, object_index: usize, file_offset: u64) -> Vec<Frame> {
        let Some(object) = self.objects.get(object_index) else {
            return Vec::new();
        };
        let Some(address) = object.virtual_address(file_offset) else {
            return vec![Frame::unresolved(&object.path, file_offset)];
        };
        if let Some(frames) = self.cache.get(&(object_index, address)) {
            return frames.clone();
        }
        let frames = object.lookup(address);
        self.cache.insert((object_index, address), frames.clone());
        frames
    }

    /// Index of the loaded object for `path`, loading it on first use.
    fn object_index(&mut self, path: &str) -> Option<usize> {
        let readable = self.files.readable(path);
        let key = ObjectKey::for_path(&readable)?;
        if let Some(known) = self.object_ids.get(&key) {
            return *known;
        }
        let loaded = LoadedObject::load(&readable, path, &self.files).map(|object| {
            self.objects.push(object);
            self.objects.len() - 1
        });
        self.object_ids.insert(key, loaded);
        loaded
    }
}

/// Identifies an object file by path, size and modification time, so that a
/// rebuilt binary at the same path is not symbolized with stale data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ObjectKey {
    path: std::path::PathBuf,
    len: u64,
    modified: Option<SystemTime>,
}

impl ObjectKey {
    fn for_path(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(ObjectKey {
            path: path.to_path_buf(),
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

/// Builds the shared frame table for a set of stacks, resolving each
/// distinct address once per profile.
#[derive(Default)]
struct StackInterner {
    frames: Vec<Frame>,
    frame_ids: HashMap<Frame, usize>,
    by_address: HashMap<(u64, bool), Vec<usize>>,
}

impl StackInterner {
    fn stack(
        &mut self,
        symbolizer: &mut Symbolizer,
        mappings: &[Mapping],
        stack: &[u64],
        leaf: LeafKind,
    ) -> Vec<usize> {
        let mut out = Vec::with_capacity(stack.len());
        for (depth, &address) in stack.iter().enumerate() {
            let is_return = depth > 0 || leaf == LeafKind::ReturnAddress;
            out.extend_from_slice(self.address(symbolizer, mappings, address, is_return));
        }
        out
    }

    fn address(
        &mut self,
        symbolizer: &mut Symbolizer,
        mappings: &[Mapping],
        address: u64,
        is_return: bool,
    ) -> &[usize] {
        if !self.by_address.contains_key(&(address, is_return)) {
            let frames = symbolizer.symbolize_address(mappings, address, is_return);
            let ids = frames.into_iter().map(|f| self.intern(f)).collect();
            self.by_address.insert((address, is_return), ids);
        }
        self.by_address
            .get(&(address, is_return))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    fn intern(&mut self, frame: Frame) -> usize {
        if let Some(&id) = self.frame_ids.get(&frame) {
            return id;
        }
        let id = self.frames.len();
        self.frame_ids.insert(frame.clone(), id);
        self.frames.push(frame);
        id
    }
}

/// A `PT_LOAD` segment: which file bytes land at which virtual address.
#[derive(Debug, Clone, Copy)]
struct LoadSegment {
    file_offset: u64,
    file_size: u64,
    address: u64,
}

/// A symbol-table function with its extent, so addresses in stripped local
/// functions are not blamed on the preceding exported symbol.
#[derive(Debug, Clone)]
struct SymbolEntry {
    start: u64,
    end: u64,
    name: String,
}

/// An object file opened for symbolization.
struct LoadedObject {
    path: String,
    segments: Vec<LoadSegment>,
    symbols: Vec<SymbolEntry>,
    dwarf: Option<addr2line::Loader>,
}

impl LoadedObject {
    /// Reads the segment and symbol tables and opens the DWARF data of the file at
    /// `readable`, which the memory map named `path`. Returns `None` when the file is not a
    /// readable object file.
    ///
    /// A stripped object (no DWARF of its own) is read with its separate debug file when one
    /// is installed ([`debug_file`]): its full symbol table joins the object's, and its DWARF
    /// gives the lines. The object's own segments still map file offsets to addresses.
    fn load(readable: &Path, path: &str, files: &ObjectFiles) -> Option<Self> {
        let data = std::fs::read(readable).ok()?;
        let file = object::File::parse(data.as_slice()).ok()?;
        let segments = load_segments(&file);
        let mut symbols = function_symbols(&file);
        let mut dwarf_file = readable.to_path_buf();
        if !debug_file::has_dwarf(&file) {
            if let Some(debug) = debug_file::find(&file, files) {
                let debug_data = std::fs::read(&debug).ok();
                let parsed = debug_data
                    .as_deref()
                    .and_then(|d| object::File::parse(d).ok());
                if let Some(parsed) = parsed {
                    symbols.extend(function_symbols(&parsed));
                    symbols.sort_by_key(|s| s.start);
                    symbols.dedup_by_key(|s| s.start);
                    dwarf_file = debug;
                }
            }
        }
        Some(LoadedObject {
            path: path.to_string(),
            segments,
            symbols,
            dwarf: addr2line::Loader::new(&dwarf_file).ok(),
        })
    }

    /// Converts a file offset to the virtual address stated in the file.
    fn virtual_address(&self, file_offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| s.file_offset <= file_offset && file_offset - s.file_offset < s.file_size)
            .map(|s| (file_offset - s.file_offset).wrapping_add(s.address))
    }

    /// Frames for a virtual address: DWARF first (inlined frames, files and
    /// lines), then the symbol table for the name when DWARF has none.
    fn lookup(&self, address: u64) -> Vec<Frame> {
        let mut frames = self.dwarf_frames(address);
        let symbol = self.symbol_name(address);
        if frames.is_empty() {
            frames.push(Frame::unresolved(&self.path, address));
        }
        if let Some((outer, inner)) = frames.split_last_mut() {
            inner.iter_mut().for_each(|f| f.inlined = true);
            // The symbol table names the real (outermost) function only.
            if let (false, Some(name)) = (outer.resolved, symbol) {
                outer.function = name;
                outer.resolved = true;
            }
        }
        frames
    }

    fn dwarf_frames(&self, address: u64) -> Vec<Frame> {
        let mut out = Vec::new();
        let Some(dwarf) = &self.dwarf else {
            return out;
        };
        let Ok(mut iter) = dwarf.find_frames(address) else {
            return out;
        };
        while let Ok(Some(frame)) = iter.next() {
            let name = frame
                .function
                .as_ref()
                .and_then(|f| f.demangle().ok())
                .map(Cow::into_owned);
            let (file, line) = frame
                .location
                .as_ref()
                .map(|l| (l.file.map(str::to_string), l.line))
                .unwrap_or_default();
            let mut entry = Frame::unresolved(&self.path, address);
            if let Some(name) = name {
                entry.function = name;
                entry.resolved = true;
            }
            entry.file = file;
            entry.line = line;
            out.push(entry);
        }
        out
    }

    fn symbol_name(&self, address: u64) -> Option<String> {
        let after = self.symbols.partition_point(|s| s.start <= address);
        let symbol = self.symbols.get(after.checked_sub(1)?)?;
        (address < symbol.end).then(|| symbol.name.clone())
    }
}

fn load_segments(file: &object::File<'_>) -> Vec<LoadSegment> {
    file.segments()
        .map(|segment| {
            let (file_offset, file_size) = segment.file_range();
            LoadSegment {
                file_offset,
                file_size,
                address: segment.address(),
            }
        })
        .filter(|s| s.file_size > 0)
        .collect()
}

/// Sized function symbols from the static and dynamic tables, demangled,
/// sorted by address.
fn function_symbols(file: &object::File<'_>) -> Vec<SymbolEntry> {
    let mut symbols: Vec<SymbolEntry> = file
        .symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| s.kind() == SymbolKind::Text && s.size() > 0 && s.address() != 0)
        .filter_map(|s| {
            let name = s.name().ok()?;
            Some(SymbolEntry {
                start: s.address(),
                end: s.address().saturating_add(s.size()),
                name: addr2line::demangle_auto(Cow::Borrowed(name), None).into_owned(),
            })
        })
        .collect();
    symbols.sort_by_key(|s| s.start);
    symbols.dedup_by_key(|s| s.start);
    symbols
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_mappings() -> Vec<Mapping> {
        let text = std::fs::read_to_string("/proc/self/maps").expect("maps");
        crate::maps::parse_maps(&text)
    }

    #[inline(never)]
    fn marker_function_for_symbolizer_test() -> u64 {
        std::hint::black_box(42)
    }

    #[test]
    fn resolves_a_function_of_this_test_binary() {
        let address = marker_function_for_symbolizer_test as *const () as usize as u64;
        let mut symbolizer = Symbolizer::new();
        let frames = symbolizer.symbolize_address(&own_mappings(), address, false);
        let outer = frames.last().expect("at least one frame");
        assert!(outer.resolved, "{frames:?}");
        assert!(
            outer
                .function
                .ends_with("marker_function_for_symbolizer_test"),
            "{}",
            outer.function
        );
        assert!(outer
            .file
            .as_deref()
            .unwrap_or("")
            .ends_with("symbolize.rs"));
    }

    /// The C library ships stripped: an internal function (one the dynamic symbol table does
    /// not name) gets its name and line from the separate debug file (`libc6-dbg`).
    #[test]
    fn names_an_internal_function_of_the_c_library_from_its_debug_file() {
        let mappings = own_mappings();
        let libc = mappings
            .iter()
            .find(|m| m.path.contains("/libc.so"))
            .expect("this test links the C library");
        let data = std::fs::read(&libc.path).unwrap();
        let file = object::File::parse(data.as_slice()).unwrap();
        assert!(
            !debug_file::has_dwarf(&file),
            "{} is not stripped",
            libc.path
        );
        let debug = debug_file::find(&file, &ObjectFiles::default()).unwrap_or_else(|| {
            panic!(
                "no debug file for {} under /usr/lib/debug/.build-id: install libc6-dbg \
                 (scripts/test does)",
                libc.path
            )
        });
        let debug_data = std::fs::read(&debug).unwrap();
        let debug_object = object::File::parse(debug_data.as_slice()).unwrap();
        let exported = function_symbols(&file);
        let internal = function_symbols(&debug_object)
            .into_iter()
            .find(|s| {
                s.end - s.start > 64
                    && !exported
                        .iter()
                        .any(|e| e.start <= s.start && s.start < e.end)
            })
            .expect("the debug file names functions the library does not export");
        // Its address in this process, through the segment and the mapping that hold it.
        let segment = load_segments(&file)
            .into_iter()
            .find(|g| g.address <= internal.start && internal.start < g.address + g.file_size)
            .unwrap();
        let offset = internal.start - segment.address + segment.file_offset;
        let mapping = mappings
            .iter()
            .find(|m| {
                m.path == libc.path && m.offset <= offset && offset < m.offset + (m.end - m.start)
            })
            .unwrap();
        let address = mapping.start + (offset - mapping.offset) + 16;

        let frames = Symbolizer::new().symbolize_address(&mappings, address, false);
        let outer = frames.last().expect("at least one frame");
        assert!(
            outer.resolved,
            "{} at {address:#x}: {frames:?}",
            internal.name
        );
        // DWARF names the function as written (`msort_with_tmp`), the symbol table as the
        // compiler split it (`msort_with_tmp.part.0`).
        assert!(
            internal.name.starts_with(&outer.function),
            "{} named {}",
            internal.name,
            outer.function
        );
        assert!(
            outer.line.is_some(),
            "no line from the debug file: {frames:?}"
        );
    }

    #[test]
    fn unmapped_addresses_are_labelled_unknown() {
        let mut symbolizer = Symbolizer::new();
        let frames = symbolizer.symbolize_address(&[], 0x1234, true);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].function, "0x1233");
        assert_eq!(frames[0].label(), "0x1233 ([unknown])");
        assert!(!frames[0].resolved);
    }

    #[test]
    fn symbolizer_can_move_between_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<Symbolizer>();
    }

    #[test]
    fn merged_profiles_keep_every_sample_and_frame() {
        let frame = |name: &str| Frame {
            function: name.into(),
            file: None,
            line: None,
            object: "/x".into(),
            object_address: 0,
            resolved: true,
            inlined: false,
        };
        let one = |name: &str, count| SymbolizedCpuProfile {
            period_us: 10_000,
            frames: vec![frame("main"), frame(name)],
            samples: vec![SymbolizedSample {
                count,
                stack: vec![1, 0],
            }],
        };
        let merged = SymbolizedCpuProfile::merge([one("a", 2), one("b", 3)]);
        assert_eq!(merged.period_us, 10_000);
        assert_eq!(merged.total_samples(), 5);
        let leaves: Vec<&str> = merged
            .samples
            .iter()
            .map(|s| merged.frames[s.stack[0]].function.as_str())
            .collect();
        assert_eq!(leaves, ["a", "b"]);
    }

    #[test]
    fn stacks_share_frames() {
        let address = marker_function_for_symbolizer_test as *const () as usize as u64;
        let mut symbolizer = Symbolizer::new();
        let stacks: [&[u64]; 2] = [&[address], &[address]];
        let out = symbolizer.symbolize_stacks(&own_mappings(), &stacks, LeafKind::ProgramCounter);
        assert_eq!(out.stacks[0], out.stacks[1]);
        assert_eq!(out.frames.len(), out.stacks[0].len());
    }
}
