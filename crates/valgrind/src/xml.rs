//! Streaming reader for valgrind's XML output (protocol version 4), as written
//! by memcheck and helgrind with `--xml=yes --xml-file=...`.
//!
//! panther-host runs services under these tools during experiments and has to
//! decide afterwards whether a run was clean. This module turns the XML file
//! into a [`Report`] that can be stored as JSON and judged against
//! [`Thresholds`].
//!
//! Why a pull parser: a long run under memcheck can write hundreds of megabytes
//! of XML, nearly all of it stack frames. Events are pulled from a `BufRead` and
//! only one error record is materialised at a time, so memory grows with the
//! errors kept, not with the size of the file; [`ParseOptions::max_kept_errors`]
//! bounds even that while the [`Summary`] still counts every error.
//!
//! Why truncation is not an error: the host stops services with signals at
//! teardown and valgrind is sometimes killed halfway through writing a record.
//! Rather than losing every finding of the run, the parser returns everything
//! that was complete and sets [`Report::truncated`].

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use quick_xml::events::{BytesRef, Event};
use quick_xml::Reader;
use serde::{Deserialize, Serialize};

/// The protocol version this parser understands. Other versions lay records
/// out differently, and silently misreading them would hide findings.
pub const PROTOCOL_VERSION: u32 = 4;

/// Everything valgrind reported about one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `<protocolversion>`; `None` only if the output was cut before it.
    pub protocol_version: Option<u32>,
    /// Tool name from `<protocoltool>`/`<tool>`: `memcheck`, `helgrind`, ...
    pub tool: String,
    /// Process id of the program run under valgrind.
    pub pid: Option<u32>,
    /// Parent process id of the program.
    pub ppid: Option<u32>,
    /// The program's command line (`<args><argv>`).
    pub command: Option<Command>,
    /// Valgrind's own command line (`<args><vargv>`), useful to check options.
    pub valgrind_command: Option<Command>,
    /// Complete error records, in the order valgrind wrote them.
    pub errors: Vec<ValgrindError>,
    /// Errors that were parsed and counted in [`Report::summary`] but not kept
    /// because of [`ParseOptions::max_kept_errors`].
    pub errors_not_kept: u64,
    /// `<errorcounts>`: unique error id → number of occurrences. Leak records
    /// are not listed here by valgrind.
    pub error_counts: BTreeMap<u64, u64>,
    /// `<suppcounts>`: suppression name → number of errors it suppressed.
    pub suppressed: BTreeMap<String, u64>,
    /// Helgrind's `<announcethread>` records, in order of appearance.
    pub threads: Vec<ThreadAnnouncement>,
    /// Set when the program died from a signal (`<fatal_signal>`).
    pub fatal_signal: Option<FatalSignal>,
    /// Whether valgrind reported `<state>FINISHED</state>`.
    pub finished: bool,
    /// The output ended before `</valgrindoutput>`: valgrind was killed or is
    /// still writing. Everything complete up to that point is in the report.
    pub truncated: bool,
    /// Counts over all errors, including those not kept.
    pub summary: Summary,
}

impl Report {
    /// The announcement of helgrind thread `#number`, which tells where the
    /// thread named in a race or lock report was created.
    pub fn thread(&self, number: u32) -> Option<&ThreadAnnouncement> {
        self.threads.iter().find(|t| t.thread == number)
    }

    /// Kept errors of one raw kind, e.g. `"InvalidRead"`.
    pub fn errors_of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a ValgrindError> {
        self.errors.iter().filter(move |e| e.kind == kind)
    }

    /// Kept errors of one category.
    pub fn errors_in(&self, category: Category) -> impl Iterator<Item = &ValgrindError> {
        self.errors.iter().filter(move |e| e.category == category)
    }

    /// Records a finished error in the summary and keeps it if allowed.
    fn accept(&mut self, error: ValgrindError, options: &ParseOptions) {
        self.summary.record(&error);
        if self.errors.len() < options.max_kept_errors {
            self.errors.push(error);
        } else {
            self.errors_not_kept += 1;
        }
    }
}

/// A command line: the executable and its arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub exe: String,
    pub args: Vec<String>,
}

/// One `<error>` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValgrindError {
    /// `<unique>`: the id `<errorcounts>` refers to.
    pub unique: u64,
    /// `<tid>`: valgrind's thread id (not helgrind's `#N` numbering).
    pub tid: Option<u32>,
    /// Raw `<kind>`, e.g. `InvalidRead`, `Leak_DefinitelyLost`, `Race`.
    pub kind: String,
    /// Coarse grouping of `kind`, stable across tools and versions.
    pub category: Category,
    /// The message: `<what>` or `<xwhat><text>`. Helgrind sometimes adds a
    /// `<what>` after `<xwhat>` (e.g. an errno); it is appended here.
    pub what: String,
    /// Helgrind's `#N` for the thread the message is about (`<xwhat><hthreadid>`).
    pub thread: Option<u32>,
    /// `<xwhat><leakedbytes>` of leak records.
    pub leaked_bytes: Option<u64>,
    /// `<xwhat><leakedblocks>` of leak records.
    pub leaked_blocks: Option<u64>,
    /// All stacks in order. The first is the error's own stack (`intro` is
    /// `None`); each later one carries the `<auxwhat>`/`<xauxwhat>` text that
    /// introduced it, such as where a block was allocated or the other side of
    /// a data race.
    pub stacks: Vec<Stack>,
    /// `<auxwhat>`/`<xauxwhat>` texts not followed by a stack, e.g. helgrind's
    /// "Address 0x... is 0 bytes inside data symbol \"counter\"".
    pub notes: Vec<String>,
}

impl ValgrindError {
    /// The error's own stack, where the problem was detected.
    pub fn primary_stack(&self) -> Option<&Stack> {
        self.stacks.first()
    }

    /// The innermost frame of the primary stack.
    pub fn top_frame(&self) -> Option<&Frame> {
        self.primary_stack().and_then(|s| s.frames.first())
    }

    /// The innermost frame of the primary stack in the program's own code;
    /// see [`Stack::first_user_frame`].
    pub fn first_user_frame(&self) -> Option<&Frame> {
        self.primary_stack().and_then(Stack::first_user_frame)
    }

    /// Short location for messages, e.g. `leak_it (leak.c:7)`.
    pub fn location(&self) -> Option<String> {
        self.first_user_frame()
            .or_else(|| self.top_frame())
            .map(Frame::to_string)
    }
}

/// A stack trace together with the text that introduced it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stack {
    /// The `<auxwhat>`/`<xauxwhat>` text before the stack; `None` for the
    /// error's primary stack, whose text is [`ValgrindError::what`].
    pub intro: Option<String>,
    /// Helgrind's `#N` of the thread this stack belongs to, when given.
    pub thread: Option<u32>,
    /// Frames, innermost first.
    pub frames: Vec<Frame>,
}

impl Stack {
    /// The innermost frame in the program's own code, or failing that the
    /// innermost frame with a source line.
    ///
    /// Why: the top frame is usually valgrind's replacement (`malloc` in
    /// `vgpreload_memcheck`), an unnamed helgrind interceptor or libc (which
    /// has source lines when its debug info is installed); what a person wants
    /// to see is the first line of the code under test.
    pub fn first_user_frame(&self) -> Option<&Frame> {
        let user = self
            .frames
            .iter()
            .find(|f| f.has_source() && !f.is_system());
        user.or_else(|| self.frames.iter().find(|f| f.has_source()))
    }
}

/// One `<frame>`. Strings are shared between frames because the same objects,
/// directories and functions repeat in nearly every stack of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// Instruction pointer.
    pub ip: u64,
    /// Object (executable or shared library) containing `ip`.
    pub obj: Option<Arc<str>>,
    /// Function name, demangled by valgrind.
    #[serde(rename = "fn")]
    pub function: Option<Arc<str>>,
    /// Directory of the source file.
    pub dir: Option<Arc<str>>,
    /// Source file name, relative to `dir`.
    pub file: Option<Arc<str>>,
    /// Source line.
    pub line: Option<u32>,
}

impl Frame {
    /// Whether the frame points at a source line (needs debug info).
    pub fn has_source(&self) -> bool {
        self.file.is_some() && self.line.is_some()
    }

    /// Whether the frame is in valgrind's preloaded objects or in a library
    /// installed in the system's library directories (libc, libstdc++, ...),
    /// as opposed to the program under test.
    pub fn is_system(&self) -> bool {
        const SYSTEM_DIRS: [&str; 5] = [
            "/lib/",
            "/lib64/",
            "/usr/lib/",
            "/usr/lib64/",
            "/usr/libexec/",
        ];
        self.obj.as_deref().is_some_and(|obj| {
            SYSTEM_DIRS.iter().any(|dir| obj.starts_with(dir)) || obj.contains("/vgpreload_")
        })
    }
}

impl fmt::Display for Frame {
    /// `fn (file:line)`, falling back to the object or the address when debug
    /// information is missing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.function {
            Some(name) => write!(f, "{name}")?,
            None => write!(f, "{:#x}", self.ip)?,
        }
        match (&self.file, self.line, &self.obj) {
            (Some(file), Some(line), _) => write!(f, " ({file}:{line})"),
            (Some(file), None, _) => write!(f, " ({file})"),
            (None, _, Some(obj)) => write!(f, " (in {obj})"),
            (None, _, None) => Ok(()),
        }
    }
}

/// Coarse kinds of error, so that thresholds need not know every raw kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Memcheck's invalid accesses, frees, uninitialised values, overlaps, ...
    MemoryError,
    /// Memcheck's `Leak_*` records.
    Leak,
    /// Helgrind's `Race`.
    Race,
    /// Helgrind's `LockOrder`.
    LockOrder,
    /// Helgrind's `UnlockUnlocked`, `UnlockForeign`, `UnlockBogus`,
    /// `PthAPIerror` and `Misc` (helgrind uses `Misc` for pthread misuse such as
    /// waiting on a condition variable without holding its mutex).
    PthreadMisuse,
    /// Anything else, e.g. kinds added by later valgrind versions.
    Other,
}

impl Category {
    /// Classifies a raw `<kind>`.
    pub fn of_kind(kind: &str) -> Category {
        if kind.starts_with("Leak_") {
            return Category::Leak;
        }
        match kind {
            "InvalidRead" | "InvalidWrite" | "InvalidFree" | "MismatchedFree" | "InvalidJump"
            | "Overlap" | "InvalidMemPool" | "UninitCondition" | "UninitValue" | "SyscallParam"
            | "ClientCheck" | "CoreMem" | "FishyValue" | "ReallocSizeZero" | "BadAlign"
            | "BadSize" | "SizeMismatch" | "AlignMismatch" => Category::MemoryError,
            "Race" => Category::Race,
            "LockOrder" => Category::LockOrder,
            "UnlockUnlocked" | "UnlockForeign" | "UnlockBogus" | "PthAPIerror" | "Misc" => {
                Category::PthreadMisuse
            }
            _ => Category::Other,
        }
    }
}

/// Helgrind's `<announcethread>`: where thread `#N` was created.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThreadAnnouncement {
    /// Helgrind's thread number, as in "by thread #2".
    pub thread: u32,
    /// The program's initial thread, which has no creation stack.
    pub root: bool,
    /// Stack of the `pthread_create` call, innermost first.
    pub created_at: Vec<Frame>,
}

/// `<fatal_signal>`: the program was killed by a signal under valgrind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FatalSignal {
    pub tid: Option<u32>,
    pub signo: Option<i32>,
    pub signame: Option<String>,
    pub sicode: Option<i32>,
    /// E.g. "Access not within mapped region".
    pub event: Option<String>,
    /// Faulting address (`<siaddr>`).
    pub address: Option<u64>,
    pub frames: Vec<Frame>,
}

/// Counts over every error record seen, whether kept or not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of error records (distinct contexts, not occurrences).
    pub errors: u64,
    /// Records per raw kind.
    pub by_kind: BTreeMap<String, u64>,
    /// Records per category.
    pub by_category: BTreeMap<Category, u64>,
    /// Leaked bytes and blocks per leak kind.
    pub leaks: LeakTotals,
}

impl Summary {
    /// Records of one raw kind.
    pub fn kind(&self, kind: &str) -> u64 {
        self.by_kind.get(kind).copied().unwrap_or(0)
    }

    /// Records of one category.
    pub fn category(&self, category: Category) -> u64 {
        self.by_category.get(&category).copied().unwrap_or(0)
    }

    /// Adds another process's counts, for services that ran several processes under
    /// valgrind (`trace_children`).
    pub fn merge(&mut self, other: &Summary) {
        self.errors += other.errors;
        for (kind, n) in &other.by_kind {
            *self.by_kind.entry(kind.clone()).or_default() += n;
        }
        for (category, n) in &other.by_category {
            *self.by_category.entry(*category).or_default() += n;
        }
        self.leaks.merge(&other.leaks);
    }

    fn record(&mut self, error: &ValgrindError) {
        self.errors += 1;
        match self.by_kind.get_mut(&error.kind) {
            Some(n) => *n += 1,
            None => {
                self.by_kind.insert(error.kind.clone(), 1);
            }
        }
        *self.by_category.entry(error.category).or_default() += 1;
        self.leaks.record(error);
    }
}

/// Leak totals from memcheck's `Leak_*` records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeakTotals {
    pub definitely_lost: LeakAmount,
    pub indirectly_lost: LeakAmount,
    pub possibly_lost: LeakAmount,
    pub still_reachable: LeakAmount,
}

impl LeakTotals {
    fn merge(&mut self, other: &LeakTotals) {
        for (mine, theirs) in [
            (&mut self.definitely_lost, other.definitely_lost),
            (&mut self.indirectly_lost, other.indirectly_lost),
            (&mut self.possibly_lost, other.possibly_lost),
            (&mut self.still_reachable, other.still_reachable),
        ] {
            mine.bytes += theirs.bytes;
            mine.blocks += theirs.blocks;
        }
    }

    fn record(&mut self, error: &ValgrindError) {
        let slot = match error.kind.as_str() {
            "Leak_DefinitelyLost" => &mut self.definitely_lost,
            "Leak_IndirectlyLost" => &mut self.indirectly_lost,
            "Leak_PossiblyLost" => &mut self.possibly_lost,
            "Leak_StillReachable" => &mut self.still_reachable,
            _ => return,
        };
        slot.bytes += error.leaked_bytes.unwrap_or(0);
        slot.blocks += error.leaked_blocks.unwrap_or(0);
    }
}

/// Bytes and blocks of one leak kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeakAmount {
    pub bytes: u64,
    pub blocks: u64,
}

/// Why the XML could not be read. Truncated output is not an error (see
/// [`Report::truncated`]); these are for files that are not valgrind XML or
/// are damaged in the middle.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("read failed at byte {position}: {source}")]
    Io {
        position: u64,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("malformed XML at byte {position} (expected well-formed XML): {source}")]
    Xml {
        position: u64,
        #[source]
        source: quick_xml::Error,
    },
    #[error("at byte {position}: expected {expected}, found {found}")]
    Unexpected {
        position: u64,
        expected: String,
        found: String,
    },
}

impl ParseError {
    /// Byte offset in the input where the problem was found, if any.
    pub fn position(&self) -> Option<u64> {
        match self {
            ParseError::Open { .. } => None,
            ParseError::Io { position, .. }
            | ParseError::Xml { position, .. }
            | ParseError::Unexpected { position, .. } => Some(*position),
        }
    }
}

/// Knobs for [`parse_reader_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseOptions {
    /// Keep at most this many error records in [`Report::errors`]; the rest
    /// are only counted. Why: a broken service can produce millions of
    /// distinct errors, and the host should not run out of memory judging it.
    pub max_kept_errors: usize,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            max_kept_errors: usize::MAX,
        }
    }
}

/// Parses valgrind XML from a buffered reader, keeping every error.
pub fn parse_reader<R: BufRead>(r: R) -> Result<Report, ParseError> {
    parse_reader_with(r, &ParseOptions::default())
}

/// Parses valgrind XML from a buffered reader with explicit options.
pub fn parse_reader_with<R: BufRead>(r: R, options: &ParseOptions) -> Result<Report, ParseError> {
    let mut parser = Parser::new(r, options);
    let mut report = Report::default();
    match parser.document(&mut report) {
        Ok(()) => Ok(report),
        Err(Stop::Truncated) => {
            report.truncated = true;
            Ok(report)
        }
        Err(Stop::Fail(e)) => Err(e),
    }
}

/// Parses a valgrind XML file (the `--xml-file=` of a run).
pub fn parse_file(path: &Path) -> Result<Report, ParseError> {
    let file = File::open(path).map_err(|source| ParseError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    parse_reader(BufReader::with_capacity(64 * 1024, file))
}

// ---------------------------------------------------------------------------
// Parser internals
// ---------------------------------------------------------------------------

/// Why parsing stopped early: end of input (a truncated file, which is
/// tolerated) or a real failure.
enum Stop {
    Truncated,
    Fail(ParseError),
}

type Step<T> = Result<T, Stop>;

/// The element names this parser acts on; everything else is skipped, so
/// that output from newer valgrind versions still parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    ValgrindOutput,
    ProtocolVersion,
    ProtocolTool,
    Tool,
    Pid,
    Ppid,
    Args,
    Vargv,
    Argv,
    Exe,
    Arg,
    Status,
    State,
    AnnounceThread,
    HThreadId,
    IsRootThread,
    Error,
    Unique,
    Tid,
    Kind,
    What,
    XWhat,
    Text,
    LeakedBytes,
    LeakedBlocks,
    AuxWhat,
    XAuxWhat,
    Stack,
    Frame,
    Ip,
    Obj,
    Fn,
    Dir,
    File,
    Line,
    ErrorCounts,
    SuppCounts,
    Pair,
    Count,
    Name,
    FatalSignal,
    SigNo,
    SigName,
    SiCode,
    SigEvent,
    SiAddr,
    Other,
}

impl Tag {
    fn of(name: &str) -> Tag {
        match name {
            "valgrindoutput" => Tag::ValgrindOutput,
            "protocolversion" => Tag::ProtocolVersion,
            "protocoltool" => Tag::ProtocolTool,
            "tool" => Tag::Tool,
            "pid" => Tag::Pid,
            "ppid" => Tag::Ppid,
            "args" => Tag::Args,
            "vargv" => Tag::Vargv,
            "argv" => Tag::Argv,
            "exe" => Tag::Exe,
            "arg" => Tag::Arg,
            "status" => Tag::Status,
            "state" => Tag::State,
            "announcethread" => Tag::AnnounceThread,
            "hthreadid" => Tag::HThreadId,
            "isrootthread" => Tag::IsRootThread,
            "error" => Tag::Error,
            "unique" => Tag::Unique,
            "tid" => Tag::Tid,
            "kind" => Tag::Kind,
            "what" => Tag::What,
            "xwhat" => Tag::XWhat,
            "text" => Tag::Text,
            "leakedbytes" => Tag::LeakedBytes,
            "leakedblocks" => Tag::LeakedBlocks,
            "auxwhat" => Tag::AuxWhat,
            "xauxwhat" => Tag::XAuxWhat,
            "stack" => Tag::Stack,
            "frame" => Tag::Frame,
            "ip" => Tag::Ip,
            "obj" => Tag::Obj,
            "fn" => Tag::Fn,
            "dir" => Tag::Dir,
            "file" => Tag::File,
            "line" => Tag::Line,
            "errorcounts" => Tag::ErrorCounts,
            "suppcounts" => Tag::SuppCounts,
            "pair" => Tag::Pair,
            "count" => Tag::Count,
            "name" => Tag::Name,
            "fatal_signal" => Tag::FatalSignal,
            "signo" => Tag::SigNo,
            "signame" => Tag::SigName,
            "sicode" => Tag::SiCode,
            "event" => Tag::SigEvent,
            "siaddr" => Tag::SiAddr,
            _ => Tag::Other,
        }
    }
}

/// The events the record parsers care about.
enum Ev {
    Open(Tag),
    Close,
    /// Character data, already appended to `Parser::text`.
    Text,
}

struct Parser<'o, R> {
    reader: Reader<R>,
    /// Reused event buffer: holds one event at a time, never the document.
    buf: Vec<u8>,
    /// Character data of the current leaf element (or ignorable whitespace).
    text: String,
    /// Name of the element opened last, for error messages.
    name: String,
    /// Byte offset where that element starts, for error messages.
    open_at: u64,
    /// Shared copies of frame strings; see [`Frame`].
    strings: HashSet<Arc<str>>,
    options: &'o ParseOptions,
}

impl<'o, R: BufRead> Parser<'o, R> {
    fn new(r: R, options: &'o ParseOptions) -> Self {
        let mut reader = Reader::from_reader(r);
        // Start+End instead of Empty lets `<isrootthread/>` and
        // `<isrootthread></isrootthread>` take the same path.
        reader.config_mut().expand_empty_elements = true;
        Parser {
            reader,
            buf: Vec::with_capacity(4096),
            text: String::new(),
            name: String::new(),
            open_at: 0,
            strings: HashSet::new(),
            options,
        }
    }

    // -- events ------------------------------------------------------------

    /// Next element boundary or piece of text. End of input is `Truncated`
    /// because a complete document stops being read at `</valgrindoutput>`.
    fn next(&mut self) -> Step<Ev> {
        loop {
            let before = self.reader.buffer_position();
            self.buf.clear();
            let event = match self.reader.read_event_into(&mut self.buf) {
                Ok(event) => event,
                Err(e) => return Err(self.xml_failure(e)),
            };
            match event {
                Event::Start(start) => {
                    let local = start.local_name();
                    self.name.clear();
                    self.name.push_str(local.as_ref());
                    self.open_at = before;
                    return Ok(Ev::Open(Tag::of(local.as_ref())));
                }
                Event::End(_) => return Ok(Ev::Close),
                Event::Text(t) => self.text.push_str(&t.xml10_content()),
                Event::CData(c) => self.text.push_str(&c.xml10_content()),
                Event::GeneralRef(r) => push_reference(&mut self.text, &r, before)?,
                Event::Eof => return Err(Stop::Truncated),
                // Declarations, comments, processing instructions; `Empty`
                // cannot occur with `expand_empty_elements`.
                _ => continue,
            }
            return Ok(Ev::Text);
        }
    }

    /// Classifies a quick-xml error. An error with no input left behind it is
    /// a file cut mid-token (`<fra`, `&am`, half a UTF-8 sequence), i.e.
    /// truncation; anything else is damage in the middle of the file.
    fn xml_failure(&mut self, error: quick_xml::Error) -> Stop {
        let position = self.reader.error_position();
        if let quick_xml::Error::Io(source) = error {
            return Stop::Fail(ParseError::Io { position, source });
        }
        if self.input_exhausted() {
            return Stop::Truncated;
        }
        Stop::Fail(ParseError::Xml {
            position,
            source: error,
        })
    }

    fn input_exhausted(&mut self) -> bool {
        matches!(self.reader.get_mut().fill_buf(), Ok(rest) if rest.is_empty())
    }

    /// Calls `on_child` for each child element of the element just opened,
    /// ignoring text between children, until that element closes.
    fn each_child<F>(&mut self, mut on_child: F) -> Step<()>
    where
        F: FnMut(&mut Self, Tag) -> Step<()>,
    {
        loop {
            match self.next()? {
                Ev::Open(tag) => on_child(self, tag)?,
                Ev::Text => self.text.clear(),
                Ev::Close => return Ok(()),
            }
        }
    }

    /// Skips the element just opened, with all its content.
    fn skip(&mut self) -> Step<()> {
        let mut depth = 1usize;
        while depth > 0 {
            match self.next()? {
                Ev::Open(_) => depth += 1,
                Ev::Close => depth -= 1,
                Ev::Text => self.text.clear(),
            }
        }
        Ok(())
    }

    // -- leaves --------------------------------------------------------------

    /// Reads the text of a leaf element, trimmed (valgrind pads some values,
    /// e.g. `<time>`). Returns the leaf's start offset for error messages.
    fn leaf(&mut self) -> Step<u64> {
        let at = self.open_at;
        let element = std::mem::take(&mut self.name);
        self.text.clear();
        loop {
            match self.next()? {
                Ev::Text => {}
                Ev::Close => break,
                Ev::Open(_) => {
                    let found = format!("element <{}>", self.name);
                    return Err(unexpected(
                        self.open_at,
                        format!("text inside <{element}>"),
                        found,
                    ));
                }
            }
        }
        self.name = element;
        let end = self.text.trim_end().len();
        self.text.truncate(end);
        let start = end - self.text.trim_start().len();
        self.text.drain(..start);
        Ok(at)
    }

    fn leaf_string(&mut self) -> Step<String> {
        self.leaf()?;
        Ok(self.text.clone())
    }

    fn leaf_shared(&mut self) -> Step<Arc<str>> {
        self.leaf()?;
        if let Some(shared) = self.strings.get(self.text.as_str()) {
            return Ok(Arc::clone(shared));
        }
        let shared: Arc<str> = Arc::from(self.text.as_str());
        self.strings.insert(Arc::clone(&shared));
        Ok(shared)
    }

    fn leaf_decimal<T: std::str::FromStr>(&mut self) -> Step<T> {
        let at = self.leaf()?;
        self.text.parse().map_err(|_| {
            let expected = format!("a decimal number in <{}>", self.name);
            unexpected(at, expected, format!("{:?}", self.text))
        })
    }

    fn leaf_hex(&mut self) -> Step<u64> {
        let at = self.leaf()?;
        let digits = self
            .text
            .strip_prefix("0x")
            .or_else(|| self.text.strip_prefix("0X"));
        digits
            .and_then(|d| u64::from_str_radix(d, 16).ok())
            .ok_or_else(|| {
                let expected = format!("a hexadecimal number like 0x1F in <{}>", self.name);
                unexpected(at, expected, format!("{:?}", self.text))
            })
    }

    // -- document ----------------------------------------------------------

    fn document(&mut self, report: &mut Report) -> Step<()> {
        self.root()?;
        self.each_child(|p, tag| p.top_level(tag, report))
    }

    /// Finds `<valgrindoutput>`, refusing other XML so that a wrong path in a
    /// plugin's configuration is reported instead of read as a clean run.
    fn root(&mut self) -> Step<()> {
        loop {
            match self.next()? {
                Ev::Open(Tag::ValgrindOutput) => return Ok(()),
                Ev::Open(_) => {
                    let found = format!("element <{}>", self.name);
                    return Err(unexpected(
                        self.open_at,
                        "root element <valgrindoutput>",
                        found,
                    ));
                }
                Ev::Text | Ev::Close => self.text.clear(),
            }
        }
    }

    fn top_level(&mut self, tag: Tag, report: &mut Report) -> Step<()> {
        match tag {
            Tag::ProtocolVersion => report.protocol_version = Some(self.protocol_version()?),
            Tag::ProtocolTool | Tag::Tool => report.tool = self.leaf_string()?,
            Tag::Pid => report.pid = Some(self.leaf_decimal()?),
            Tag::Ppid => report.ppid = Some(self.leaf_decimal()?),
            Tag::Args => self.args(report)?,
            Tag::Status => report.finished |= self.status()?,
            Tag::AnnounceThread => {
                let announcement = self.announce_thread()?;
                report.threads.push(announcement);
            }
            Tag::Error => {
                let error = self.error()?;
                report.accept(error, self.options);
            }
            Tag::ErrorCounts => {
                self.pairs(Tag::Unique, |p| p.leaf_hex(), &mut report.error_counts)?
            }
            Tag::SuppCounts => {
                self.pairs(Tag::Name, |p| p.leaf_string(), &mut report.suppressed)?
            }
            Tag::FatalSignal => report.fatal_signal = Some(self.fatal_signal()?),
            _ => self.skip()?,
        }
        Ok(())
    }

    fn protocol_version(&mut self) -> Step<u32> {
        let at = self.open_at;
        let version: u32 = self.leaf_decimal()?;
        if version != PROTOCOL_VERSION {
            let expected = format!("protocol version {PROTOCOL_VERSION}");
            return Err(unexpected(at, expected, format!("version {version}")));
        }
        Ok(version)
    }

    fn args(&mut self, report: &mut Report) -> Step<()> {
        self.each_child(|p, tag| {
            match tag {
                Tag::Argv => report.command = Some(p.command()?),
                Tag::Vargv => report.valgrind_command = Some(p.command()?),
                _ => p.skip()?,
            }
            Ok(())
        })
    }

    fn command(&mut self) -> Step<Command> {
        let mut command = Command::default();
        self.each_child(|p, tag| {
            match tag {
                Tag::Exe => command.exe = p.leaf_string()?,
                Tag::Arg => command.args.push(p.leaf_string()?),
                _ => p.skip()?,
            }
            Ok(())
        })?;
        Ok(command)
    }

    /// Returns whether this `<status>` says the run finished.
    fn status(&mut self) -> Step<bool> {
        let mut finished = false;
        self.each_child(|p, tag| {
            match tag {
                Tag::State => finished = p.leaf_string()? == "FINISHED",
                _ => p.skip()?,
            }
            Ok(())
        })?;
        Ok(finished)
    }

    fn announce_thread(&mut self) -> Step<ThreadAnnouncement> {
        let at = self.open_at;
        let mut thread = None;
        let mut announcement = ThreadAnnouncement::default();
        self.each_child(|p, tag| {
            match tag {
                Tag::HThreadId => thread = Some(p.leaf_decimal()?),
                Tag::IsRootThread => {
                    announcement.root = true;
                    p.skip()?;
                }
                Tag::Stack => announcement.created_at = p.stack()?,
                _ => p.skip()?,
            }
            Ok(())
        })?;
        announcement.thread =
            thread.ok_or_else(|| missing(at, "<hthreadid> in <announcethread>"))?;
        Ok(announcement)
    }

    /// Reads `<pair><count>N</count><KEY>..</KEY></pair>` lists, the shape of
    /// both `<errorcounts>` and `<suppcounts>`.
    fn pairs<K: Ord>(
        &mut self,
        key_tag: Tag,
        mut read_key: impl FnMut(&mut Self) -> Step<K>,
        into: &mut BTreeMap<K, u64>,
    ) -> Step<()> {
        self.each_child(|p, tag| {
            if tag != Tag::Pair {
                return p.skip();
            }
            let at = p.open_at;
            let (mut key, mut count) = (None, None);
            p.each_child(|p, tag| {
                match tag {
                    Tag::Count => count = Some(p.leaf_decimal()?),
                    t if t == key_tag => key = Some(read_key(p)?),
                    _ => p.skip()?,
                }
                Ok(())
            })?;
            match (key, count) {
                (Some(key), Some(count)) => {
                    into.insert(key, count);
                    Ok(())
                }
                _ => Err(missing(at, "<count> and a key in <pair>")),
            }
        })
    }

    fn fatal_signal(&mut self) -> Step<FatalSignal> {
        let mut signal = FatalSignal::default();
        self.each_child(|p, tag| {
            match tag {
                Tag::Tid => signal.tid = Some(p.leaf_decimal()?),
                Tag::SigNo => signal.signo = Some(p.leaf_decimal()?),
                Tag::SigName => signal.signame = Some(p.leaf_string()?),
                Tag::SiCode => signal.sicode = Some(p.leaf_decimal()?),
                Tag::SigEvent => signal.event = Some(p.leaf_string()?),
                Tag::SiAddr => signal.address = Some(p.leaf_hex()?),
                Tag::Stack => signal.frames = p.stack()?,
                _ => p.skip()?,
            }
            Ok(())
        })?;
        Ok(signal)
    }

    // -- stacks ------------------------------------------------------------

    fn stack(&mut self) -> Step<Vec<Frame>> {
        let mut frames = Vec::new();
        self.each_child(|p, tag| {
            match tag {
                Tag::Frame => frames.push(p.frame()?),
                _ => p.skip()?,
            }
            Ok(())
        })?;
        Ok(frames)
    }

    fn frame(&mut self) -> Step<Frame> {
        let at = self.open_at;
        let mut ip = None;
        let mut frame = Frame {
            ip: 0,
            obj: None,
            function: None,
            dir: None,
            file: None,
            line: None,
        };
        self.each_child(|p, tag| {
            match tag {
                Tag::Ip => ip = Some(p.leaf_hex()?),
                Tag::Obj => frame.obj = Some(p.leaf_shared()?),
                Tag::Fn => frame.function = Some(p.leaf_shared()?),
                Tag::Dir => frame.dir = Some(p.leaf_shared()?),
                Tag::File => frame.file = Some(p.leaf_shared()?),
                Tag::Line => frame.line = Some(p.leaf_decimal()?),
                _ => p.skip()?,
            }
            Ok(())
        })?;
        frame.ip = ip.ok_or_else(|| missing(at, "<ip> in <frame>"))?;
        Ok(frame)
    }

    // -- errors --------------------------------------------------------------

    fn error(&mut self) -> Step<ValgrindError> {
        let at = self.open_at;
        let mut record = ErrorRecord::default();
        self.each_child(|p, tag| record.child(p, tag))?;
        record.finish(at)
    }

    /// Reads `<xwhat>` / `<xauxwhat>`: a text plus structured details.
    fn extended_text(&mut self) -> Step<ExtendedText> {
        let mut x = ExtendedText::default();
        self.each_child(|p, tag| {
            match tag {
                Tag::Text => x.text = p.leaf_string()?,
                Tag::HThreadId => x.thread = Some(p.leaf_decimal()?),
                Tag::LeakedBytes => x.leaked_bytes = Some(p.leaf_decimal()?),
                Tag::LeakedBlocks => x.leaked_blocks = Some(p.leaf_decimal()?),
                _ => p.skip()?,
            }
            Ok(())
        })?;
        Ok(x)
    }
}

/// Contents of `<xwhat>` or `<xauxwhat>`.
#[derive(Default)]
struct ExtendedText {
    text: String,
    thread: Option<u32>,
    leaked_bytes: Option<u64>,
    leaked_blocks: Option<u64>,
}

/// An `<error>` being read. Only turned into a [`ValgrindError`] once the
/// record is closed, so a record cut by truncation is never reported half.
#[derive(Default)]
struct ErrorRecord {
    unique: Option<u64>,
    tid: Option<u32>,
    kind: Option<String>,
    what: Option<String>,
    thread: Option<u32>,
    leaked_bytes: Option<u64>,
    leaked_blocks: Option<u64>,
    stacks: Vec<Stack>,
    notes: Vec<String>,
    /// An `<auxwhat>`/`<xauxwhat>` waiting to see whether a stack follows.
    pending_intro: Option<(String, Option<u32>)>,
}

impl ErrorRecord {
    fn child<R: BufRead>(&mut self, p: &mut Parser<'_, R>, tag: Tag) -> Step<()> {
        match tag {
            Tag::Unique => self.unique = Some(p.leaf_hex()?),
            Tag::Tid => self.tid = Some(p.leaf_decimal()?),
            Tag::Kind => self.kind = Some(p.leaf_string()?),
            Tag::What => {
                let text = p.leaf_string()?;
                self.add_what(text);
            }
            Tag::XWhat => {
                let x = p.extended_text()?;
                self.thread = self.thread.or(x.thread);
                self.leaked_bytes = self.leaked_bytes.or(x.leaked_bytes);
                self.leaked_blocks = self.leaked_blocks.or(x.leaked_blocks);
                self.add_what(x.text);
            }
            Tag::AuxWhat => {
                let text = p.leaf_string()?;
                self.set_intro(text, None);
            }
            Tag::XAuxWhat => {
                let x = p.extended_text()?;
                self.set_intro(x.text, x.thread);
            }
            Tag::Stack => {
                let frames = p.stack()?;
                self.add_stack(frames);
            }
            _ => p.skip()?,
        }
        Ok(())
    }

    /// Helgrind's `PthAPIerror` has an `<xwhat>` followed by a `<what>` with
    /// the error code; both belong to one message.
    fn add_what(&mut self, text: String) {
        match &mut self.what {
            None => self.what = Some(text),
            Some(what) => {
                what.push(' ');
                what.push_str(&text);
            }
        }
    }

    fn set_intro(&mut self, text: String, thread: Option<u32>) {
        if let Some((previous, _)) = self.pending_intro.replace((text, thread)) {
            self.notes.push(previous);
        }
    }

    fn add_stack(&mut self, frames: Vec<Frame>) {
        let (intro, thread) = match self.pending_intro.take() {
            Some((text, thread)) => (Some(text), thread),
            // The primary stack belongs to the thread named in `<xwhat>`.
            None if self.stacks.is_empty() => (None, self.thread),
            None => (None, None),
        };
        self.stacks.push(Stack {
            intro,
            thread,
            frames,
        });
    }

    fn finish(mut self, at: u64) -> Step<ValgrindError> {
        if let Some((text, _)) = self.pending_intro.take() {
            self.notes.push(text);
        }
        let unique = self
            .unique
            .ok_or_else(|| missing(at, "<unique> in <error>"))?;
        let kind = self.kind.ok_or_else(|| missing(at, "<kind> in <error>"))?;
        Ok(ValgrindError {
            unique,
            tid: self.tid,
            category: Category::of_kind(&kind),
            kind,
            what: self.what.unwrap_or_default(),
            thread: self.thread,
            leaked_bytes: self.leaked_bytes,
            leaked_blocks: self.leaked_blocks,
            stacks: self.stacks,
            notes: self.notes,
        })
    }
}

/// Appends the text of an entity or character reference; valgrind escapes
/// `<`, `>` and `&` in C++ names such as `std::vector<int>::push_back`.
fn push_reference(out: &mut String, r: &BytesRef<'_>, at: u64) -> Step<()> {
    let name = r.xml10_content();
    if let Some(s) = quick_xml::escape::resolve_predefined_entity(&name) {
        out.push_str(s);
        return Ok(());
    }
    match r.resolve_char_ref() {
        Ok(Some(ch)) => {
            out.push(ch);
            Ok(())
        }
        Ok(None) => Err(unexpected(
            at,
            "a predefined XML entity",
            format!("&{name};"),
        )),
        Err(source) => Err(Stop::Fail(ParseError::Xml {
            position: at,
            source,
        })),
    }
}

fn unexpected(position: u64, expected: impl Into<String>, found: impl Into<String>) -> Stop {
    Stop::Fail(ParseError::Unexpected {
        position,
        expected: expected.into(),
        found: found.into(),
    })
}

fn missing(position: u64, expected: &str) -> Stop {
    unexpected(position, expected, "nothing")
}

// ---------------------------------------------------------------------------
// Thresholds
// ---------------------------------------------------------------------------

/// Limits a run must stay within, as written in an experiment's
/// configuration. Every limit is optional; an absent limit is not checked.
/// Unknown fields are rejected so that a misspelt limit is not silently
/// ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Error records of any kind, leaks included.
    pub max_errors: Option<u64>,
    /// Records in [`Category::MemoryError`].
    pub max_memory_errors: Option<u64>,
    pub max_invalid_reads: Option<u64>,
    pub max_invalid_writes: Option<u64>,
    pub max_definitely_lost_bytes: Option<u64>,
    pub max_indirectly_lost_bytes: Option<u64>,
    pub max_possibly_lost_bytes: Option<u64>,
    pub max_races: Option<u64>,
    pub max_lock_order_violations: Option<u64>,
    pub max_pthread_misuse: Option<u64>,
    /// Treat a truncated output as a violation. Off by default because
    /// services are often killed at teardown, which truncates the file.
    pub fail_on_truncated: bool,
}

/// Which errors a count-based limit applies to.
#[derive(Clone, Copy)]
enum Scope {
    All,
    Kind(&'static str),
    Category(Category),
}

impl Scope {
    fn count(self, summary: &Summary) -> u64 {
        match self {
            Scope::All => summary.errors,
            Scope::Kind(kind) => summary.kind(kind),
            Scope::Category(category) => summary.category(category),
        }
    }

    fn matches(self, error: &ValgrindError) -> bool {
        match self {
            Scope::All => true,
            Scope::Kind(kind) => error.kind == kind,
            Scope::Category(category) => error.category == category,
        }
    }
}

/// One count-based limit: its value, what it counts, and the noun for
/// messages (singular, plural).
struct CountRule {
    limit: Option<u64>,
    scope: Scope,
    noun: (&'static str, &'static str),
}

impl Thresholds {
    /// Human-readable reasons why `report` exceeds these thresholds; empty
    /// when the run is acceptable.
    pub fn violations(&self, report: &Report) -> Vec<String> {
        let counts = self.count_rules().into_iter();
        let mut out: Vec<String> = counts.filter_map(|rule| rule.check(report)).collect();
        out.extend(self.leak_violations(report));
        if self.fail_on_truncated && report.truncated {
            out.push(
                "valgrind's output is truncated: the run was killed before valgrind finished"
                    .to_owned(),
            );
        }
        out
    }

    fn count_rules(&self) -> [CountRule; 7] {
        use Category::{LockOrder, MemoryError, PthreadMisuse, Race};
        let rule = |limit, scope, noun| CountRule { limit, scope, noun };
        [
            rule(self.max_errors, Scope::All, ("error", "errors")),
            rule(
                self.max_memory_errors,
                Scope::Category(MemoryError),
                ("memory error", "memory errors"),
            ),
            rule(
                self.max_invalid_reads,
                Scope::Kind("InvalidRead"),
                ("invalid read", "invalid reads"),
            ),
            rule(
                self.max_invalid_writes,
                Scope::Kind("InvalidWrite"),
                ("invalid write", "invalid writes"),
            ),
            rule(
                self.max_races,
                Scope::Category(Race),
                ("data race", "data races"),
            ),
            rule(
                self.max_lock_order_violations,
                Scope::Category(LockOrder),
                ("lock order violation", "lock order violations"),
            ),
            rule(
                self.max_pthread_misuse,
                Scope::Category(PthreadMisuse),
                ("pthread API misuse", "pthread API misuses"),
            ),
        ]
    }

    fn leak_violations(&self, report: &Report) -> Vec<String> {
        let leaks = &report.summary.leaks;
        let rules = [
            (
                self.max_definitely_lost_bytes,
                leaks.definitely_lost,
                "definitely",
                "Leak_DefinitelyLost",
            ),
            (
                self.max_indirectly_lost_bytes,
                leaks.indirectly_lost,
                "indirectly",
                "Leak_IndirectlyLost",
            ),
            (
                self.max_possibly_lost_bytes,
                leaks.possibly_lost,
                "possibly",
                "Leak_PossiblyLost",
            ),
        ];
        rules
            .into_iter()
            .filter_map(|(limit, amount, adverb, kind)| {
                check_leak(limit, amount, adverb, kind, report)
            })
            .collect()
    }
}

impl CountRule {
    fn check(&self, report: &Report) -> Option<String> {
        let limit = self.limit?;
        let count = self.scope.count(&report.summary);
        if count <= limit {
            return None;
        }
        let noun = if count == 1 { self.noun.0 } else { self.noun.1 };
        let mut message = format!("{count} {noun}, at most {limit} allowed");
        let first = report.errors.iter().find(|e| self.scope.matches(e));
        append_location(&mut message, first);
        Some(message)
    }
}

fn check_leak(
    limit: Option<u64>,
    amount: LeakAmount,
    adverb: &str,
    kind: &str,
    report: &Report,
) -> Option<String> {
    let limit = limit?;
    if amount.bytes <= limit {
        return None;
    }
    let blocks = if amount.blocks == 1 {
        "block"
    } else {
        "blocks"
    };
    let mut message = format!(
        "{} bytes {adverb} lost in {} {blocks}, at most {limit} allowed",
        amount.bytes, amount.blocks
    );
    append_location(&mut message, report.errors_of_kind(kind).next());
    Some(message)
}

/// Adds "; first at fn (file:line)" when the first offending error was kept.
fn append_location(message: &mut String, first: Option<&ValgrindError>) {
    if let Some(location) = first.and_then(ValgrindError::location) {
        message.push_str("; first at ");
        message.push_str(&location);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real memcheck output (uninitialised condition, double free, two leaks).
    const MEMCHECK: &str = include_str!("../tests/data/memcheck-mixed.xml");
    /// Real helgrind output for two threads racing on a global.
    const HELGRIND: &str = include_str!("../tests/data/helgrind-race.xml");

    fn parse(text: &[u8]) -> Result<Report, ParseError> {
        parse_reader(text)
    }

    fn fn_name(frame: Option<&Frame>) -> Option<&str> {
        frame.and_then(|f| f.function.as_deref())
    }

    #[test]
    fn fatal_signal_and_suppression_counts_are_read() {
        let sample = include_str!("../tests/data/memcheck-segv.xml").replace(
            "<suppcounts>\n",
            "<suppcounts>\n  <pair>\n    <count>7</count>\n    <name>glibc-cond</name>\n  </pair>\n",
        );
        let report = parse(sample.as_bytes()).expect("sample parses");
        let signal = report.fatal_signal.as_ref().expect("fatal signal");
        assert_eq!(signal.signame.as_deref(), Some("SIGSEGV"));
        assert_eq!(
            (signal.signo, signal.sicode, signal.tid),
            (Some(11), Some(1), Some(1))
        );
        assert_eq!(
            signal.event.as_deref(),
            Some("Access not within mapped region")
        );
        assert_eq!(signal.address, Some(0));
        assert_eq!(signal.frames.len(), 1);
        assert_eq!(
            report.suppressed,
            BTreeMap::from([("glibc-cond".to_owned(), 7)])
        );
        let read = &report.errors[0];
        assert_eq!(
            read.notes,
            ["Address 0x0 is not stack'd, malloc'd or (recently) free'd"]
        );
        assert_eq!(read.location().as_deref(), Some("main (segv.c:1)"));
    }

    #[test]
    fn kinds_map_to_categories() {
        use Category::*;
        let cases = [
            ("InvalidWrite", MemoryError),
            ("UninitValue", MemoryError),
            ("SyscallParam", MemoryError),
            ("Leak_PossiblyLost", Leak),
            ("Race", Race),
            ("LockOrder", LockOrder),
            ("UnlockForeign", PthreadMisuse),
            ("Misc", PthreadMisuse),
            ("SomethingNew", Other),
        ];
        for (kind, category) in cases {
            assert_eq!(Category::of_kind(kind), category, "{kind}");
        }
    }

    #[test]
    fn memcheck_sample_parses_completely() {
        let report = parse(MEMCHECK.as_bytes()).expect("sample parses");
        assert!(!report.truncated);
        assert!(report.finished);
        assert_eq!(report.tool, "memcheck");
        assert_eq!(report.protocol_version, Some(4));
        let command = report.command.as_ref().expect("argv");
        assert_eq!(command.exe, "./uv");
        assert!(command.args.is_empty());
        let kinds: Vec<&str> = report.errors.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "UninitCondition",
                "InvalidFree",
                "Leak_DefinitelyLost",
                "Leak_DefinitelyLost"
            ]
        );

        let uninit = &report.errors[0];
        assert_eq!(uninit.category, Category::MemoryError);
        assert_eq!(
            uninit.what,
            "Conditional jump or move depends on uninitialised value(s)"
        );
        assert_eq!(uninit.stacks.len(), 2);
        let origin = &uninit.stacks[1];
        assert_eq!(
            origin.intro.as_deref(),
            Some("Uninitialised value was created by a heap allocation")
        );
        assert_eq!(fn_name(origin.frames.first()), Some("malloc"));

        let free = &report.errors[1];
        let intros: Vec<Option<&str>> = free.stacks.iter().map(|s| s.intro.as_deref()).collect();
        assert_eq!(intros.len(), 3);
        assert_eq!(intros[0], None);
        assert!(
            intros[1].is_some_and(|t| t.ends_with("is 0 bytes inside a block of size 8 free'd"))
        );
        assert_eq!(intros[2], Some("Block was alloc'd at"));

        assert_eq!(
            report.summary.leaks.definitely_lost,
            LeakAmount {
                bytes: 30,
                blocks: 2
            }
        );
        assert_eq!(report.summary.category(Category::Leak), 2);
        assert_eq!(report.summary.kind("InvalidFree"), 1);
        assert_eq!(report.error_counts, BTreeMap::from([(0, 1), (1, 1)]));
    }

    #[test]
    fn helgrind_sample_keeps_both_race_stacks_and_threads() {
        let report = parse(HELGRIND.as_bytes()).expect("sample parses");
        assert_eq!(report.tool, "helgrind");
        let numbers: Vec<u32> = report.threads.iter().map(|t| t.thread).collect();
        assert_eq!(numbers, [3, 2]);
        assert_eq!(report.errors.len(), 2);
        for race in &report.errors {
            assert_eq!(race.category, Category::Race);
            assert_eq!(race.thread, Some(3));
            assert_eq!(race.stacks.len(), 2);
            assert_eq!(race.stacks[0].thread, Some(3));
            assert_eq!(race.stacks[1].thread, Some(2));
            assert_eq!(
                race.stacks[1].intro.as_deref(),
                Some("This conflicts with a previous write of size 4 by thread #2")
            );
            assert_eq!(race.location().as_deref(), Some("bump (race.c:10)"));
            assert_eq!(
                race.notes,
                ["Address 0x10c02c is 0 bytes inside data symbol \"counter\""]
            );
        }
        let creator = report
            .thread(2)
            .and_then(|t| t.created_at.iter().find(|f| !f.is_system()));
        assert_eq!(
            creator.map(Frame::to_string).as_deref(),
            Some("main (race.c:17)")
        );
    }

    /// Valgrind killed at any byte: never an error, and the records returned
    /// are exactly the complete ones, unchanged.
    #[test]
    fn every_prefix_is_a_truncated_report() {
        for sample in [MEMCHECK, HELGRIND] {
            let full = parse(sample.as_bytes()).expect("sample parses");
            let end = sample.find("</valgrindoutput>").expect("closing tag");
            for cut in 0..end {
                let report = parse(&sample.as_bytes()[..cut])
                    .unwrap_or_else(|e| panic!("prefix of {cut} bytes failed: {e}"));
                assert!(report.truncated, "prefix of {cut} bytes not flagged");
                assert!(
                    full.errors.starts_with(&report.errors),
                    "prefix of {cut} bytes"
                );
            }
        }
    }

    #[test]
    fn truncation_inside_a_record_keeps_earlier_records() {
        let second = HELGRIND
            .match_indices("<error>")
            .nth(1)
            .expect("two errors")
            .0;
        let cut = second + HELGRIND[second..].find("<fra").expect("frame") + 4;
        let report = parse(&HELGRIND.as_bytes()[..cut]).expect("truncated parses");
        assert!(report.truncated);
        assert!(!report.finished);
        assert_eq!(report.errors.len(), 1);
        assert_eq!(report.threads.len(), 2);
        assert_eq!(report.pid, Some(11834));
        assert!(report.error_counts.is_empty());
    }

    const ESCAPED: &str =
        "<?xml version=\"1.0\"?>\n<valgrindoutput><protocolversion>4</protocolversion>\
        <error><unique>0x2a</unique><kind>InvalidWrite</kind><what>Invalid write of size 1</what>\
        <stack><frame><ip>0x10</ip><fn>std::vector&lt;int&gt;::push_back &amp; caf\u{e9}&#x21;</fn>\
        <file>v.cc</file><line>3</line></frame></stack></error></valgrindoutput>";

    #[test]
    fn entities_and_utf8_are_decoded() {
        let report = parse(ESCAPED.as_bytes()).expect("parses");
        let frame = report.errors[0].top_frame().expect("frame");
        assert_eq!(
            frame.function.as_deref(),
            Some("std::vector<int>::push_back & caf\u{e9}!")
        );
        assert_eq!(report.errors[0].unique, 42);
        assert_eq!(frame.ip, 0x10);
    }

    #[test]
    fn cut_inside_entity_or_multibyte_character_is_truncation() {
        let in_entity = ESCAPED.find("&lt;").expect("entity") + 2;
        let in_char = ESCAPED.find('\u{e9}').expect("e acute") + 1;
        for cut in [in_entity, in_char] {
            let report = parse(&ESCAPED.as_bytes()[..cut]).expect("truncated parses");
            assert!(report.truncated);
            assert!(report.errors.is_empty());
        }
    }

    #[test]
    fn empty_input_is_truncated_not_an_error() {
        let report = parse(b"").expect("empty parses");
        assert!(report.truncated);
        assert_eq!(
            report,
            Report {
                truncated: true,
                ..Report::default()
            }
        );
    }

    #[test]
    fn other_xml_is_rejected_with_position() {
        let err = parse(b"<?xml version=\"1.0\"?>\n<html></html>").expect_err("not valgrind");
        assert_eq!(err.position(), Some(22));
        assert_eq!(
            err.to_string(),
            "at byte 22: expected root element <valgrindoutput>, found element <html>"
        );
    }

    #[test]
    fn damage_in_the_middle_is_an_error_with_position() {
        let damaged = MEMCHECK.replacen("</kind>", "</kinf>", 1);
        let err = parse(damaged.as_bytes()).expect_err("mismatched end tag");
        let at = damaged.find("</kinf>").expect("damage") as u64;
        assert!(matches!(err, ParseError::Xml { .. }), "{err}");
        assert_eq!(err.position(), Some(at));
    }

    #[test]
    fn bad_numbers_say_what_was_expected() {
        let text = "<valgrindoutput><pid>12x</pid></valgrindoutput>";
        let err = parse(text.as_bytes()).expect_err("bad pid");
        assert_eq!(
            err.to_string(),
            "at byte 16: expected a decimal number in <pid>, found \"12x\""
        );
        let text = "<valgrindoutput><error><unique>7</unique></error></valgrindoutput>";
        let err = parse(text.as_bytes()).expect_err("bad unique");
        assert_eq!(
            err.to_string(),
            "at byte 23: expected a hexadecimal number like 0x1F in <unique>, found \"7\""
        );
    }

    #[test]
    fn records_missing_required_fields_are_errors() {
        let text = "<valgrindoutput><error><unique>0x1</unique></error></valgrindoutput>";
        let err = parse(text.as_bytes()).expect_err("no kind");
        assert_eq!(
            err.to_string(),
            "at byte 16: expected <kind> in <error>, found nothing"
        );
    }

    #[test]
    fn other_protocol_versions_are_refused() {
        let text = "<valgrindoutput><protocolversion>3</protocolversion></valgrindoutput>";
        let err = parse(text.as_bytes()).expect_err("version 3");
        assert_eq!(
            err.to_string(),
            "at byte 16: expected protocol version 4, found version 3"
        );
    }

    #[test]
    fn report_round_trips_through_json() {
        for sample in [MEMCHECK, HELGRIND] {
            let report = parse(sample.as_bytes()).expect("sample parses");
            let json = serde_json::to_string(&report).expect("serialises");
            let back: Report = serde_json::from_str(&json).expect("deserialises");
            assert_eq!(back, report);
        }
    }

    #[test]
    fn errors_beyond_the_limit_are_counted_not_kept() {
        let options = ParseOptions { max_kept_errors: 1 };
        let report = parse_reader_with(MEMCHECK.as_bytes(), &options).expect("parses");
        assert_eq!(report.errors.len(), 1);
        assert_eq!(report.errors_not_kept, 3);
        assert_eq!(report.summary.errors, 4);
        assert_eq!(report.summary.leaks.definitely_lost.bytes, 30);
    }

    #[test]
    fn thresholds_reject_unknown_fields_and_default_to_no_limit() {
        let err = serde_json::from_str::<Thresholds>(r#"{"max_racez": 0}"#).expect_err("typo");
        assert!(
            err.to_string().contains("unknown field `max_racez`"),
            "{err}"
        );
        let report = parse(MEMCHECK.as_bytes()).expect("parses");
        assert!(Thresholds::default().violations(&report).is_empty());
    }

    #[test]
    fn threshold_messages_name_count_limit_and_first_location() {
        let report = parse(MEMCHECK.as_bytes()).expect("parses");
        let limits: Thresholds = serde_json::from_str(
            r#"{"max_errors": 1, "max_memory_errors": 2, "max_definitely_lost_bytes": 29, "max_races": 0}"#,
        )
        .expect("valid thresholds");
        assert_eq!(
            limits.violations(&report),
            [
                "4 errors, at most 1 allowed; first at main (uv.c:5)",
                "30 bytes definitely lost in 2 blocks, at most 29 allowed; first at main (uv.c:5)",
            ]
        );
    }

    #[test]
    fn truncation_is_a_violation_only_when_asked() {
        let cut = &MEMCHECK.as_bytes()[..MEMCHECK.len() / 2];
        let report = parse(cut).expect("parses");
        assert!(Thresholds::default().violations(&report).is_empty());
        let strict = Thresholds {
            fail_on_truncated: true,
            ..Thresholds::default()
        };
        assert_eq!(strict.violations(&report).len(), 1);
    }
}
