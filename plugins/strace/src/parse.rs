//! Streaming summary of `strace -f -tt -T -o FILE` output.
//!
//! The parser reads one line at a time and keeps only per-syscall,
//! per-process and per-signal counters plus one pending entry per process
//! for calls split into `<unfinished ...>` / `<... NAME resumed>` halves, so
//! memory grows with the number of distinct syscall names and pids (a few
//! hundred bytes per pid), never with the number of lines.
//!
//! # Accepted input
//!
//! * Optional pid prefix: `1234 ` (`-f` with `-o`) or `[pid  1234] ` (`-f`
//!   writing to stderr). Lines without a prefix are attributed as described
//!   under [Process attribution](#process-attribution).
//! * Optional timestamp: `-t`/`-tt` (`HH:MM:SS[.frac]`) or `-ttt` (seconds
//!   since the epoch). They only feed [`Totals::wall_time_s`].
//! * Optional `-T` duration at the end of a line: ` <0.000123>`.
//! * Syscall lines, `<unfinished ...>`, `<... NAME resumed>`, `<detached
//!   ...>`, signals (`--- SIGCHLD {...} ---`), exits (`+++ exited with 0
//!   +++`, `+++ killed by SIGKILL (core dumped) +++`), `-k` stack frames
//!   (` > /lib/...`, counted and skipped), and `strace: ...` notices.
//! * Output filtered with `-e trace=...` or truncated with `-s N` needs
//!   nothing special.
//! * Anything else is counted in [`LineCounts::unparsed`]; no input panics.
//!
//! # Counting semantics (checked against `strace -c -f`)
//!
//! A call is counted once, when its result is seen: on the complete line,
//! or on the `<... NAME resumed>` line, whose return value and duration are
//! the ones used. This matches `strace -c`, which counts at syscall exit:
//!
//! * A return of `-1 ERRNO (...)` or `? ERRNO (...)` (the kernel-internal
//!   restart codes such as `ERESTARTSYS`) counts as a call and an error,
//!   exactly as the `errors` column of `strace -c` does.
//! * A bare `= ?` means the call never returned (`exit_group`, `_exit`, an
//!   `execve` in a thread that was replaced, a process killed inside a
//!   call). `strace -c` leaves those out entirely, and so do
//!   [`SyscallStats::calls`] and the totals; they are reported separately as
//!   `unreturned`. An `<unfinished ...>` half that is never resumed (the
//!   process vanished, or the trace was cut short) is counted the same way.
//!
//! Deliberate differences from `strace -c`:
//!
//! * Times are the wall-clock `-T` durations. `strace -c` reports system
//!   CPU time unless `-w` is given, so the time columns are not comparable.
//! * A line longer than [`MAX_LINE`] bytes read through [`parse_reader`] is
//!   discarded and counted as unparsed, which keeps memory bounded.
//! * When strace writes to stderr, its `strace: Process N attached` notice
//!   can land in the middle of a line; such lines are joined back together.
//!   Anything else mixed into that stream (the program's own stderr) can
//!   break a line in ways that cannot be repaired: those pieces count as
//!   unparsed and the call is lost. Prefer `-o FILE`.
//!
//! # Process attribution
//!
//! Statistics are keyed by the pid strace prints, which for threads is the
//! thread id. Lines without a pid prefix belong to the only process being
//! traced at that moment; strace writing to stderr omits the prefix while a
//! single process is alive. Until the parser learns that process's pid (the
//! first prefixed line that can only come from it), such lines are kept
//! under pid `0`, which is also where everything goes for traces taken
//! without `-f`.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead};

/// Longest line [`parse_reader`] will buffer; longer lines are dropped and
/// counted as unparsed so that a corrupt input cannot exhaust memory.
pub const MAX_LINE: usize = 16 << 20;

/// Most bytes kept while waiting for the rest of a syscall line that an
/// interleaved `strace: Process N attached` message split in two.
const MAX_CARRY: usize = 1 << 20;

// ---------------------------------------------------------------------------
// Public summary types
// ---------------------------------------------------------------------------

/// Everything learned from one trace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Sums over all syscalls.
    pub totals: Totals,
    /// Per syscall name, including names that only appeared as `unreturned`.
    pub syscalls: BTreeMap<String, SyscallStats>,
    /// Failed calls per errno name (`ENOENT`, `ERESTARTSYS`, ...).
    pub errors_by_errno: BTreeMap<String, u64>,
    /// Per pid as printed by strace (thread id for threads; `0` for lines
    /// whose process is unknown, see the module docs).
    pub processes: BTreeMap<u32, ProcessStats>,
    /// Signals delivered (`--- SIGNAME {...} ---` lines) per signal name.
    pub signals: BTreeMap<String, u64>,
    /// Socket activity.
    pub network: NetworkSummary,
    /// How the input lines were classified.
    pub lines: LineCounts,
}

/// Sums over all syscalls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Calls whose result was seen (what `strace -c` counts).
    pub calls: u64,
    /// Of `calls`, those that failed.
    pub errors: u64,
    /// Calls that never returned (`= ?`, or never resumed); not in `calls`.
    pub unreturned: u64,
    /// Sum of `-T` durations, in seconds.
    pub time_s: f64,
    /// Span between the first and the last timestamp, when lines had any.
    pub wall_time_s: Option<f64>,
}

/// Counters for one syscall name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyscallStats {
    /// Completed calls, as counted by `strace -c`.
    pub calls: u64,
    /// Completed calls that returned an error.
    pub errors: u64,
    /// Calls that never returned; not included in `calls`.
    pub unreturned: u64,
    /// Sum of `-T` durations of completed calls, in seconds.
    pub time_s: f64,
    /// `errors` broken down by errno name.
    pub errors_by_errno: BTreeMap<String, u64>,
}

/// Counters for one traced pid.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessStats {
    /// Completed syscalls.
    pub calls: u64,
    /// Completed syscalls that returned an error.
    pub errors: u64,
    /// Syscalls that never returned.
    pub unreturned: u64,
    /// Signals delivered to this pid.
    pub signals: u64,
    /// Code from `+++ exited with N +++`.
    pub exit_code: Option<i32>,
    /// Signal name from `+++ killed by SIGNAME +++`.
    pub killed_by: Option<String>,
    /// Whether the kill line said `(core dumped)`.
    pub core_dumped: bool,
}

/// Socket activity, from syscall names and return values only.
///
/// Plain `read`/`write` on sockets cannot be told apart from file I/O
/// without `-y`, so they are not counted here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkSummary {
    /// Completed calls per socket-family syscall: socket, connect, bind,
    /// listen, accept, accept4, getsockopt, setsockopt, shutdown, sendto,
    /// sendmsg, sendmmsg, recvfrom, recvmsg, recvmmsg, send, recv.
    pub socket_calls: BTreeMap<String, u64>,
    /// Sum of non-negative returns of sendto, sendmsg and send.
    pub bytes_sent: u64,
    /// Sum of non-negative returns of recvfrom, recvmsg and recv.
    pub bytes_received: u64,
    /// Unique IPv4 `A.B.C.D:PORT` and IPv6 `[ADDR]:PORT` passed to connect
    /// or bind, whatever the call returned.
    pub addresses: BTreeSet<String>,
}

/// How input lines were classified; the kinds add up to `total`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LineCounts {
    /// Lines fed to the parser.
    pub total: u64,
    /// Complete syscall lines.
    pub syscall: u64,
    /// `<unfinished ...>` and `<detached ...>` halves.
    pub unfinished: u64,
    /// `<... NAME resumed>` halves.
    pub resumed: u64,
    /// `--- ... ---` lines.
    pub signal: u64,
    /// `+++ ... +++` lines.
    pub exit: u64,
    /// `-k` stack frame lines (` > ...`).
    pub stack: u64,
    /// strace's own messages (`strace: Process N attached`, ...).
    pub notice: u64,
    /// Empty lines.
    pub blank: u64,
    /// Lines that matched no known shape.
    pub unparsed: u64,
    /// Resumed halves whose unfinished half was not seen (still counted).
    pub orphan_resumed: u64,
    /// Unfinished halves never resumed (counted as `unreturned`).
    pub never_resumed: u64,
}

// ---------------------------------------------------------------------------
// Hashing and byte scanning
// ---------------------------------------------------------------------------

/// Maps keyed by short syscall names and pids. The default SipHash is several times slower
/// on these keys, and trace files come from programs we run ourselves, so hash flooding is
/// not a concern.
type FxMap<K, V> = rustc_hash::FxHashMap<K, V>;

/// First position of `needle`: newline search is the single hottest loop when reading a
/// trace, and `memchr` does it with the widest vector instructions the machine has.
fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    memchr::memchr(needle, hay)
}

/// First `"` or `\` in `hay`: the only bytes that matter inside a string literal, which is
/// where long lines (read/write buffers) spend their bytes.
fn find_quote_or_backslash(hay: &[u8]) -> Option<usize> {
    memchr::memchr2(b'"', b'\\', hay)
}

/// Naive substring search; only used on the rare lines that need it.
fn find_sub(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn trim_start_spaces(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|&&c| c == b' ').count();
    &b[n..]
}

fn trim_end_spaces(b: &[u8]) -> &[u8] {
    let n = b.iter().rev().take_while(|&&c| c == b' ').count();
    &b[..b.len() - n]
}

/// Strips a trailing `\n` or `\r\n`.
fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Parses leading decimal digits; returns the value (saturating) and how
/// many bytes were used, or `None` when there is no digit.
fn parse_u64_prefix(b: &[u8]) -> Option<(u64, usize)> {
    let used = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if used == 0 {
        return None;
    }
    let value = b[..used].iter().fold(0u64, |acc, &c| {
        acc.saturating_mul(10).saturating_add(u64::from(c - b'0'))
    });
    Some((value, used))
}

/// Parses leading hex digits the same way as [`parse_u64_prefix`].
fn parse_hex_prefix(b: &[u8]) -> Option<(u64, usize)> {
    let used = b.iter().take_while(|c| c.is_ascii_hexdigit()).count();
    if used == 0 {
        return None;
    }
    let value = b[..used].iter().fold(0u64, |acc, &c| {
        let digit = (c as char).to_digit(16).unwrap_or(0);
        acc.saturating_mul(16).saturating_add(u64::from(digit))
    });
    Some((value, used))
}

/// Parses `SECONDS[.FRACTION]` into nanoseconds; the whole input must match.
fn parse_seconds_ns(b: &[u8]) -> Option<u64> {
    let (secs, used) = parse_u64_prefix(b)?;
    let rest = &b[used..];
    let frac_ns = match rest.split_first() {
        None => 0,
        Some((b'.', digits)) => parse_fraction_ns(digits)?,
        Some(_) => return None,
    };
    Some(secs.saturating_mul(1_000_000_000).saturating_add(frac_ns))
}

/// Parses the digits after a decimal point as nanoseconds, ignoring any
/// precision beyond nine digits.
fn parse_fraction_ns(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut ns = 0u64;
    for i in 0..9 {
        let d = digits.get(i).map_or(0, |&c| u64::from(c - b'0'));
        ns = ns * 10 + d;
    }
    Some(ns)
}

// ---------------------------------------------------------------------------
// Line structure
// ---------------------------------------------------------------------------

/// Splits a `[pid  N] ` or `N ` prefix off a line.
fn split_pid(line: &[u8]) -> (Option<u32>, &[u8]) {
    if let Some(rest) = line.strip_prefix(b"[pid") {
        let rest = trim_start_spaces(rest);
        if let Some((pid, used)) = parse_u64_prefix(rest) {
            if let (Some(b']'), Ok(pid)) = (rest.get(used), u32::try_from(pid)) {
                return (Some(pid), trim_start_spaces(&rest[used + 1..]));
            }
        }
        return (None, line);
    }
    match parse_u64_prefix(line) {
        Some((pid, used)) if line.get(used) == Some(&b' ') => match u32::try_from(pid) {
            Ok(pid) => (Some(pid), trim_start_spaces(&line[used..])),
            Err(_) => (None, line),
        },
        _ => (None, line),
    }
}

/// A parsed timestamp: time of day (`-t`, `-tt`) or epoch seconds (`-ttt`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stamp {
    OfDay(u64),
    Epoch(u64),
}

/// Splits a leading timestamp token off `rest`. A digit-led token that is
/// not a valid timestamp is left in place, so the line ends up unparsed.
fn split_timestamp(rest: &[u8]) -> (Option<Stamp>, &[u8]) {
    if !rest.first().is_some_and(u8::is_ascii_digit) {
        return (None, rest);
    }
    let len = find_byte(rest, b' ').unwrap_or(rest.len());
    match parse_stamp(&rest[..len]) {
        Some(stamp) => (Some(stamp), trim_start_spaces(&rest[len..])),
        None => (None, rest),
    }
}

/// `-ttt` stamps always carry a fraction; requiring the dot keeps a bare
/// number (an out-of-range pid, say) from passing as a timestamp.
fn parse_stamp(token: &[u8]) -> Option<Stamp> {
    if !token.contains(&b':') {
        if !token.contains(&b'.') {
            return None;
        }
        return parse_seconds_ns(token).map(Stamp::Epoch);
    }
    let mut parts = token.splitn(3, |&c| c == b':');
    let hours = parse_whole_u64(parts.next()?)?;
    let minutes = parse_whole_u64(parts.next()?)?;
    let seconds_ns = parse_seconds_ns(parts.next()?)?;
    let ns = (hours * 3600 + minutes * 60)
        .saturating_mul(1_000_000_000)
        .saturating_add(seconds_ns);
    Some(Stamp::OfDay(ns))
}

fn parse_whole_u64(b: &[u8]) -> Option<u64> {
    match parse_u64_prefix(b) {
        Some((v, used)) if used == b.len() => Some(v),
        _ => None,
    }
}

/// Splits `name(` off a syscall line; returns the name and what follows the
/// opening parenthesis.
fn split_call(rest: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = rest
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count();
    if len == 0 || rest.get(len) != Some(&b'(') || rest[0].is_ascii_digit() {
        return None;
    }
    Some((&rest[..len], &rest[len + 1..]))
}

/// Splits `<... NAME resumed>` off a line; returns the (possibly empty)
/// name and the rest of the arguments.
fn split_resumed(rest: &[u8]) -> Option<(&[u8], &[u8])> {
    let body = rest.strip_prefix(b"<...")?;
    let end = find_sub(body, b"resumed>")?;
    let name = trim_end_spaces(trim_start_spaces(&body[..end]));
    Some((name, &body[end + b"resumed>".len()..]))
}

/// Byte classes for the argument scanner: 0 = ordinary byte.
const OPEN: u8 = 1;
const CLOSE: u8 = 2;
const QUOTE: u8 = 3;

const CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    table[b'(' as usize] = OPEN;
    table[b'[' as usize] = OPEN;
    table[b'{' as usize] = OPEN;
    table[b')' as usize] = CLOSE;
    table[b']' as usize] = CLOSE;
    table[b'}' as usize] = CLOSE;
    table[b'"' as usize] = QUOTE;
    table
};

/// Where an argument scan stopped.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// Nesting reached zero at this index (the call's closing `)`).
    Closed(usize),
    /// Input ended at this nesting depth (1 = directly inside the call).
    Open(u32),
    /// A string literal was not terminated.
    Broken,
}

/// Scans arguments starting at nesting `depth`, skipping string literals
/// (which may contain any of `()[]{}=` and escaped quotes), until the
/// bracket that closes the call.
fn scan_args(b: &[u8], mut depth: u32) -> Scan {
    let mut i = 0;
    while i < b.len() {
        match CLASS[b[i] as usize] {
            0 => {}
            OPEN => depth += 1,
            CLOSE => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Scan::Closed(i);
                }
            }
            _ => match skip_string(&b[i + 1..]) {
                Some(len) => i += len + 1,
                None => return Scan::Broken,
            },
        }
        i += 1;
    }
    Scan::Open(depth)
}

/// Given the bytes after an opening `"`, returns the index of the closing
/// quote, honouring backslash escapes.
fn skip_string(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        i += find_quote_or_backslash(&b[i..])?;
        if b[i] == b'"' {
            return Some(i);
        }
        i += 2; // backslash: skip the escaped byte
        if i > b.len() {
            return None;
        }
    }
}

/// Finds the return value of a call whose arguments start at nesting
/// `depth`: the text after `= ` that follows the closing `)`. Falls back to
/// the last ` = ` preceded by `)` when the brackets do not balance (for
/// example a `-y` path containing a parenthesis), but never when a string
/// literal is left open: that line was cut short.
fn find_result(args: &[u8], depth: u32) -> Option<&[u8]> {
    if let Some(result) = sole_separator(args) {
        return Some(result);
    }
    match scan_args(args, depth) {
        Scan::Broken => None,
        Scan::Closed(close) => {
            let after = trim_start_spaces(&args[close + 1..]);
            match after.strip_prefix(b"= ") {
                Some(result) => Some(result),
                None => fallback_result(args),
            }
        }
        Scan::Open(_) => fallback_result(args),
    }
}

/// Fast path for [`find_result`]: when ` = ` occurs exactly once, right
/// after a `)` and outside string literals, it must be the result
/// separator, because every complete line has one and a copy inside the
/// arguments would make two. Searching for `=` and `"` eight bytes at a
/// time is much cheaper than the bracket scan, which handles the rest.
fn sole_separator(args: &[u8]) -> Option<&[u8]> {
    let mut found = None;
    let mut from = 0;
    while let Some(at) = find_byte(&args[from..], b'=') {
        let at = from + at;
        from = at + 1;
        if at == 0 || args[at - 1] != b' ' || args.get(at + 1) != Some(&b' ') {
            continue;
        }
        if found.is_some() {
            return None;
        }
        found = Some(at);
    }
    let at = found?;
    let head = &args[..at - 1];
    (trim_end_spaces(head).ends_with(b")") && outside_strings(head)).then(|| &args[at + 2..])
}

/// True when `head` ends outside any string literal, judged cheaply: its
/// quotes must all be unescaped (so each one opens or closes a literal) and
/// even in number. Anything with an escaped quote is left to the full scan.
fn outside_strings(head: &[u8]) -> bool {
    let mut quotes = 0usize;
    let mut from = 0;
    while let Some(q) = find_byte(&head[from..], b'"') {
        let q = from + q;
        if q > 0 && head[q - 1] == b'\\' {
            return false;
        }
        quotes += 1;
        from = q + 1;
    }
    quotes % 2 == 0
}

/// The text after the last ` = ` that follows a `)` and reads as a return
/// value.
fn fallback_result(args: &[u8]) -> Option<&[u8]> {
    let mut end = args.len();
    while let Some(pos) = args[..end].windows(3).rposition(|w| w == b" = ") {
        let result = &args[pos + 3..];
        let (_, value) = split_duration(result);
        if trim_end_spaces(&args[..pos]).ends_with(b")") && parse_outcome(value) != Outcome::Other {
            return Some(result);
        }
        end = pos;
    }
    None
}

/// Splits a trailing ` <SECONDS>` duration off a result.
fn split_duration(result: &[u8]) -> (Option<u64>, &[u8]) {
    let trimmed = trim_end_spaces(result);
    let Some(inner) = trimmed.strip_suffix(b">") else {
        return (None, result);
    };
    let Some(open) = inner.iter().rposition(|&c| c == b'<') else {
        return (None, result);
    };
    if open == 0 || inner[open - 1] != b' ' {
        return (None, result);
    }
    match parse_seconds_ns(&inner[open + 1..]) {
        Some(ns) => (Some(ns), &inner[..open - 1]),
        None => (None, result),
    }
}

/// Meaning of the text after `= `.
#[derive(Debug, PartialEq, Eq)]
enum Outcome<'a> {
    /// Success with this value (saturated to `i64`); annotations such as
    /// `(Timeout)` or `</path>` are ignored.
    Value(i64),
    /// Success whose value is not a number.
    Other,
    /// Failure with this errno name (`-1 ENOENT`, `? ERESTARTSYS`).
    Error(&'a [u8]),
    /// Bare `?`: the call never returned.
    Unreturned,
}

fn parse_outcome(result: &[u8]) -> Outcome<'_> {
    let result = trim_start_spaces(result);
    if let Some(rest) = result.strip_prefix(b"?") {
        return match errno_token(rest) {
            Some(errno) => Outcome::Error(errno),
            None => Outcome::Unreturned,
        };
    }
    let (negative, digits) = match result.strip_prefix(b"-") {
        Some(d) => (true, d),
        None => (false, result),
    };
    let parsed = match digits.strip_prefix(b"0x") {
        Some(hex) => parse_hex_prefix(hex).map(|(v, n)| (v, n + 2)),
        None => parse_u64_prefix(digits),
    };
    let Some((magnitude, used)) = parsed else {
        return Outcome::Other;
    };
    if negative {
        if let Some(errno) = errno_token(&digits[used..]) {
            return Outcome::Error(errno);
        }
    }
    let value = i64::try_from(magnitude).unwrap_or(i64::MAX);
    Outcome::Value(if negative { -value } else { value })
}

/// The errno name in ` ENAME (description)`; strace prints the number
/// instead when it has no name for it.
fn errno_token(rest: &[u8]) -> Option<&[u8]> {
    let rest = rest.strip_prefix(b" ")?;
    let len = find_byte(rest, b' ').unwrap_or(rest.len());
    let token = &rest[..len];
    let first = *token.first()?;
    (first.is_ascii_uppercase() || first.is_ascii_digit()).then_some(token)
}

/// Extracts `A.B.C.D:PORT` or `[ADDR]:PORT` from connect/bind arguments.
fn socket_address(args: &[u8]) -> Option<String> {
    if let Some(port) = value_after(args, b"sin_port=htons(", b')') {
        let addr = value_after(args, b"inet_addr(\"", b'"')?;
        return Some(format!("{}:{}", lossy(addr), lossy(port)));
    }
    let port = value_after(args, b"sin6_port=htons(", b')')?;
    let addr = value_after(args, b"inet_pton(AF_INET6, \"", b'"')?;
    Some(format!("[{}]:{}", lossy(addr), lossy(port)))
}

/// The bytes between `key` and the next `end`.
fn value_after<'a>(hay: &'a [u8], key: &[u8], end: u8) -> Option<&'a [u8]> {
    let start = find_sub(hay, key)? + key.len();
    let len = find_byte(&hay[start..], end)?;
    Some(&hay[start..start + len])
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------------------
// Accumulators
// ---------------------------------------------------------------------------

/// What a syscall contributes to beyond its own counters, decided once per
/// name so the per-line path is a single comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Plain,
    Socket,
    SocketSend,
    SocketRecv,
    /// connect/bind: the address argument is recorded.
    SocketAddr,
    /// Returns a new pid or tid on success.
    Spawn,
}

fn role_of(name: &[u8]) -> Role {
    match name {
        b"sendto" | b"sendmsg" | b"send" => Role::SocketSend,
        b"recvfrom" | b"recvmsg" | b"recv" => Role::SocketRecv,
        b"connect" | b"bind" => Role::SocketAddr,
        b"socket" | b"listen" | b"accept" | b"accept4" | b"getsockopt" | b"setsockopt"
        | b"shutdown" | b"sendmmsg" | b"recvmmsg" => Role::Socket,
        b"clone" | b"clone3" | b"fork" | b"vfork" => Role::Spawn,
        _ => Role::Plain,
    }
}

impl Role {
    fn is_socket(self) -> bool {
        !matches!(self, Role::Plain | Role::Spawn)
    }
}

struct SysAcc {
    name: Box<[u8]>,
    role: Role,
    calls: u64,
    errors: u64,
    unreturned: u64,
    time_ns: u64,
    /// Few distinct errnos per syscall, so a linear list beats a map.
    errnos: Vec<(Box<[u8]>, u64)>,
}

impl SysAcc {
    fn new(name: &[u8]) -> Self {
        SysAcc {
            name: name.into(),
            role: role_of(name),
            calls: 0,
            errors: 0,
            unreturned: 0,
            time_ns: 0,
            errnos: Vec::new(),
        }
    }

    fn add_error(&mut self, errno: &[u8]) {
        self.errors += 1;
        bump(&mut self.errnos, errno);
    }
}

/// Increments `name`'s count in a short association list.
fn bump(list: &mut Vec<(Box<[u8]>, u64)>, name: &[u8]) {
    match list.iter_mut().find(|(n, _)| &**n == name) {
        Some((_, count)) => *count += 1,
        None => list.push((name.into(), 1)),
    }
}

/// An `<unfinished ...>` call waiting for its `resumed` half.
#[derive(Clone, Copy, Debug)]
struct Pending {
    sys: u32,
    /// Bracket nesting where the first half stopped, so the second half can
    /// be scanned as a continuation.
    depth: u32,
}

#[derive(Default)]
struct ProcAcc {
    calls: u64,
    errors: u64,
    unreturned: u64,
    signals: u64,
    exit_code: Option<i32>,
    killed_by: Option<Box<[u8]>>,
    core_dumped: bool,
    pending: Option<Pending>,
    alive: bool,
}

impl ProcAcc {
    fn absorb(&mut self, other: ProcAcc) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.unreturned += other.unreturned;
        self.signals += other.signals;
        self.exit_code = self.exit_code.or(other.exit_code);
        self.killed_by = self.killed_by.take().or(other.killed_by);
        self.core_dumped |= other.core_dumped;
        self.pending = self.pending.or(other.pending);
    }
}

/// Direct-mapped cache in front of the syscall-name map. Names of up to 16
/// bytes are compared as two integers, which avoids hashing and `memcmp`
/// for nearly every line; longer names always take the map.
#[derive(Default)]
struct NameCache {
    slots: Vec<NameSlot>,
}

#[derive(Clone, Copy, Default)]
struct NameSlot {
    words: [u64; 2],
    len: u8,
    sys: u32,
}

impl NameCache {
    const BITS: u32 = 9;

    /// Packs a short name into two little-endian words.
    fn key(name: &[u8]) -> Option<[u64; 2]> {
        if name.is_empty() || name.len() > 16 {
            return None;
        }
        let mut bytes = [0u8; 16];
        bytes[..name.len()].copy_from_slice(name);
        let (low, high) = bytes.split_at(8);
        Some([
            u64::from_le_bytes(low.try_into().expect("8 bytes")),
            u64::from_le_bytes(high.try_into().expect("8 bytes")),
        ])
    }

    fn slot(words: [u64; 2], len: usize) -> usize {
        let mixed =
            (words[0] ^ words[1].rotate_left(29) ^ len as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (mixed >> (64 - Self::BITS)) as usize
    }

    fn get(&self, name: &[u8]) -> Option<u32> {
        let words = Self::key(name)?;
        let slot = self.slots.get(Self::slot(words, name.len()))?;
        (slot.len as usize == name.len() && slot.words == words).then_some(slot.sys)
    }

    fn put(&mut self, name: &[u8], sys: u32) {
        let Some(words) = Self::key(name) else {
            return;
        };
        if self.slots.is_empty() {
            self.slots = vec![NameSlot::default(); 1 << Self::BITS];
        }
        let len = name.len() as u8;
        self.slots[Self::slot(words, name.len())] = NameSlot { words, len, sys };
    }
}

/// The pid placeholder for lines whose process is not known.
const UNKNOWN_PID: u32 = 0;

/// What the argument text of a syscall-shaped line turned out to be.
enum Shape<'a> {
    /// Arguments closed; holds the text after `= `.
    Complete(&'a [u8]),
    /// Ends in `<unfinished ...>` or `<detached ...>`.
    Unfinished,
    /// The arguments did not close: maybe split by an strace message.
    Incomplete,
    Garbage,
}

/// Decides the shape of a call's argument text, scanned from nesting
/// `depth`.
fn classify(args: &[u8], depth: u32) -> Shape<'_> {
    let trimmed = trim_end_spaces(args);
    if trimmed.ends_with(b"<unfinished ...>") || trimmed.ends_with(b"<detached ...>") {
        return Shape::Unfinished;
    }
    match find_result(args, depth) {
        Some(result) => Shape::Complete(result),
        None if matches!(scan_args(args, depth), Scan::Closed(_)) => Shape::Garbage,
        None => Shape::Incomplete,
    }
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

/// Incremental parser: feed lines in order, then call [`Parser::finish`].
#[derive(Default)]
pub struct Parser {
    names: NameCache,
    index: FxMap<Box<[u8]>, u32>,
    sys: Vec<SysAcc>,
    procs: FxMap<u32, ProcAcc>,
    signals: Vec<(Box<[u8]>, u64)>,
    addresses: BTreeSet<String>,
    bytes_sent: u64,
    bytes_received: u64,
    lines: LineCounts,
    clock: Clock,
    /// First half of a line split by an interleaved strace message.
    carry: Vec<u8>,
    /// Buffer reused to join `carry` with the rest of its line.
    joined: Vec<u8>,
    /// Pid that unprefixed lines belonged to, once learned.
    alias: Option<u32>,
    /// Whether `procs` holds the placeholder pid; checked on every prefixed
    /// line, so kept as a flag rather than a map lookup.
    has_unknown: bool,
    /// Number of live prefixed pids, and their XOR: when exactly one is
    /// alive, the XOR is its pid, found without scanning `procs`.
    live_count: u32,
    live_xor: u32,
}

/// Tracks the span of timestamps, tolerating a midnight roll-over of
/// time-of-day stamps.
#[derive(Default)]
struct Clock {
    first: Option<u64>,
    max: u64,
    last: u64,
    day_offset: u64,
}

impl Clock {
    const DAY_NS: u64 = 86_400 * 1_000_000_000;

    fn record(&mut self, stamp: Stamp) {
        let ns = match stamp {
            Stamp::Epoch(ns) => ns,
            Stamp::OfDay(ns) => {
                if ns + self.day_offset + Self::DAY_NS / 2 < self.last {
                    self.day_offset += Self::DAY_NS;
                }
                ns + self.day_offset
            }
        };
        self.last = ns;
        self.max = self.max.max(ns);
        self.first.get_or_insert(ns);
    }

    fn span_s(&self) -> Option<f64> {
        self.first
            .map(|first| self.max.saturating_sub(first) as f64 / 1e9)
    }
}

impl Parser {
    /// An empty parser.
    pub fn new() -> Self {
        Self::default()
    }

    /// Processes one line, with or without its trailing newline.
    pub fn feed_line(&mut self, line: &[u8]) {
        self.lines.total += 1;
        let line = trim_eol(line);
        if self.carry.is_empty() {
            self.process(line);
            return;
        }
        let mut joined = std::mem::take(&mut self.joined);
        joined.clear();
        joined.append(&mut self.carry);
        joined.extend_from_slice(line);
        self.process(&joined);
        self.joined = joined;
    }

    /// Counts a line that was too long to buffer.
    fn feed_oversized(&mut self) {
        self.lines.total += 1;
        self.lines.unparsed += 1;
        self.carry.clear();
    }

    fn process(&mut self, line: &[u8]) {
        if line.is_empty() {
            self.lines.blank += 1;
            return;
        }
        if line[0] == b' ' && trim_start_spaces(line).starts_with(b"> ") {
            self.lines.stack += 1;
            return;
        }
        let (pid, rest) = split_pid(line);
        let (stamp, rest) = split_timestamp(rest);
        if let Some(stamp) = stamp {
            self.clock.record(stamp);
        }
        let handled = match rest.first() {
            Some(b'-') => self.on_signal(pid, rest),
            Some(b'+') => self.on_exit(pid, rest),
            Some(b'<') => self.on_resumed(pid, rest, line),
            Some(b's') if rest.starts_with(b"strace: ") => {
                self.lines.notice += 1;
                true
            }
            _ => self.on_call(pid, rest, line),
        };
        if !handled {
            self.lines.unparsed += 1;
        }
    }

    /// `NAME(args) = result <dur>`, `NAME(args <unfinished ...>` or
    /// `NAME(args <detached ...>`.
    fn on_call(&mut self, prefix: Option<u32>, rest: &[u8], line: &[u8]) -> bool {
        let Some((name, args)) = split_call(rest) else {
            return false;
        };
        match classify(args, 1) {
            Shape::Complete(result) => {
                let sys = self.intern(name);
                let pid = self.resolve_pid(prefix);
                self.lines.syscall += 1;
                self.complete(pid, sys, args, result);
                true
            }
            Shape::Unfinished => {
                let sys = self.intern(name);
                let pid = self.resolve_pid(prefix);
                self.lines.unfinished += 1;
                self.start_pending(pid, sys, args, 1);
                true
            }
            Shape::Incomplete => self.try_carry(line),
            Shape::Garbage => false,
        }
    }

    /// `<... NAME resumed>rest-of-args) = result <dur>`.
    fn on_resumed(&mut self, prefix: Option<u32>, rest: &[u8], line: &[u8]) -> bool {
        let Some((name, args)) = split_resumed(rest) else {
            return false;
        };
        let pid = self.resolve_resumed_pid(prefix, name);
        let pending = self.procs.get(&pid).and_then(|p| p.pending);
        let matched =
            pending.filter(|p| name.is_empty() || *self.sys[p.sys as usize].name == *name);
        let shape = classify(args, matched.map_or(1, |p| p.depth));
        match shape {
            Shape::Garbage => return false,
            Shape::Incomplete => return self.try_carry(line),
            _ if matched.is_none() && name.is_empty() => return false,
            _ => {}
        }
        self.lines.resumed += 1;
        if let Some(proc) = self.procs.get_mut(&pid) {
            proc.pending = None;
        }
        let (sys, depth) = match matched {
            Some(p) => (p.sys, p.depth),
            None => {
                if let Some(stale) = pending {
                    self.abandon(pid, stale);
                }
                self.lines.orphan_resumed += 1;
                (self.intern(name), 1)
            }
        };
        match shape {
            Shape::Complete(result) => self.complete(pid, sys, args, result),
            // Suspended again: still the same single call.
            _ => self.start_pending(pid, sys, args, depth),
        }
        true
    }

    /// Records the first half of a split call.
    fn start_pending(&mut self, pid: u32, sys: u32, args: &[u8], depth: u32) {
        let trimmed = trim_end_spaces(args);
        if self.sys[sys as usize].role == Role::SocketAddr {
            self.record_address(trimmed);
        }
        if trimmed.ends_with(b"<detached ...>") {
            self.count_unreturned(pid, sys);
            return;
        }
        let body = &trimmed[..trimmed.len() - b"<unfinished ...>".len()];
        let depth = match scan_args(body, depth) {
            Scan::Open(d) => d,
            _ => 1,
        };
        let previous = self.proc_mut(pid).pending.replace(Pending { sys, depth });
        if let Some(stale) = previous {
            self.abandon(pid, stale);
        }
    }

    /// Counts a call whose result (the text after `= `) is known.
    fn complete(&mut self, pid: u32, sys: u32, args: &[u8], result: &[u8]) {
        let role = self.sys[sys as usize].role;
        if role == Role::SocketAddr {
            self.record_address(args);
        }
        let (duration, result) = split_duration(result);
        let outcome = parse_outcome(result);
        if outcome == Outcome::Unreturned {
            self.count_unreturned(pid, sys);
            return;
        }
        let acc = &mut self.sys[sys as usize];
        acc.calls += 1;
        acc.time_ns = acc.time_ns.saturating_add(duration.unwrap_or(0));
        let failed = if let Outcome::Error(errno) = outcome {
            acc.add_error(errno);
            true
        } else {
            false
        };
        let proc = self.proc_mut(pid);
        proc.calls += 1;
        proc.errors += u64::from(failed);
        if let Outcome::Value(value) = outcome {
            self.apply_value(role, value);
        }
    }

    /// Feeds a successful return value into the network and process views.
    fn apply_value(&mut self, role: Role, value: i64) {
        let Ok(value) = u64::try_from(value) else {
            return;
        };
        match role {
            Role::SocketSend => self.bytes_sent = self.bytes_sent.saturating_add(value),
            Role::SocketRecv => self.bytes_received = self.bytes_received.saturating_add(value),
            Role::Spawn => {
                if let Ok(child) = u32::try_from(value) {
                    if child != UNKNOWN_PID {
                        self.procs.entry(child).or_default();
                    }
                }
            }
            _ => {}
        }
    }

    fn record_address(&mut self, args: &[u8]) {
        if let Some(addr) = socket_address(args) {
            self.addresses.insert(addr);
        }
    }

    fn count_unreturned(&mut self, pid: u32, sys: u32) {
        self.sys[sys as usize].unreturned += 1;
        self.proc_mut(pid).unreturned += 1;
    }

    /// An unfinished call that will never be resumed.
    fn abandon(&mut self, pid: u32, pending: Pending) {
        self.lines.never_resumed += 1;
        self.count_unreturned(pid, pending.sys);
    }

    /// `--- SIGNAME {...} ---` or `--- stopped by SIGSTOP ---`.
    fn on_signal(&mut self, prefix: Option<u32>, rest: &[u8]) -> bool {
        let Some(body) = rest.strip_prefix(b"--- ") else {
            return false;
        };
        if !trim_end_spaces(body).ends_with(b"---") {
            return false;
        }
        self.lines.signal += 1;
        let len = find_byte(body, b' ').unwrap_or(body.len());
        let name = &body[..len];
        if name.starts_with(b"SIG") {
            bump(&mut self.signals, name);
            let pid = self.resolve_pid(prefix);
            self.proc_mut(pid).signals += 1;
        }
        true
    }

    /// `+++ exited with N +++`, `+++ killed by SIG [(core dumped)] +++` or
    /// `+++ superseded by execve in pid N +++`.
    fn on_exit(&mut self, prefix: Option<u32>, rest: &[u8]) -> bool {
        let Some(body) = rest
            .strip_prefix(b"+++ ")
            .and_then(|b| trim_end_spaces(b).strip_suffix(b"+++"))
        else {
            return false;
        };
        let body = trim_end_spaces(body);
        if let Some(code) = body.strip_prefix(b"exited with ") {
            let code = parse_exit_code(code);
            let pid = self.resolve_pid(prefix);
            self.proc_mut(pid).exit_code = code;
            self.end_process(pid);
        } else if let Some(how) = body.strip_prefix(b"killed by ") {
            let len = find_byte(how, b' ').unwrap_or(how.len());
            let pid = self.resolve_pid(prefix);
            let proc = self.proc_mut(pid);
            proc.killed_by = Some(how[..len].into());
            proc.core_dumped = find_sub(how, b"core dumped").is_some();
            self.end_process(pid);
        } else if body.starts_with(b"superseded by") {
            let pid = self.resolve_pid(prefix);
            self.end_process(pid);
        } else {
            return false;
        }
        self.lines.exit += 1;
        true
    }

    /// Marks `pid` dead and settles a call it left unfinished.
    fn end_process(&mut self, pid: u32) {
        let Some(proc) = self.procs.get_mut(&pid) else {
            return;
        };
        let pending = proc.pending.take();
        let was_alive = std::mem::replace(&mut proc.alive, false);
        if was_alive && pid != UNKNOWN_PID {
            self.live_count -= 1;
            self.live_xor ^= pid;
        }
        if let Some(p) = pending {
            self.abandon(pid, p);
        }
    }

    /// Keeps the first half of a line that an `strace: Process N attached`
    /// message cut in two (strace writing to stderr), to be joined with the
    /// next line.
    fn try_carry(&mut self, line: &[u8]) -> bool {
        let Some(at) = find_sub(line, b"strace: Process ") else {
            return false;
        };
        if at == 0 || at > MAX_CARRY {
            return false;
        }
        self.lines.notice += 1;
        self.carry.clear();
        self.carry.extend_from_slice(&line[..at]);
        true
    }

    // -- pid attribution ----------------------------------------------------

    fn proc_mut(&mut self, pid: u32) -> &mut ProcAcc {
        self.has_unknown |= pid == UNKNOWN_PID;
        let proc = self.procs.entry(pid).or_default();
        if !proc.alive {
            proc.alive = true;
            if pid != UNKNOWN_PID {
                self.live_count += 1;
                self.live_xor ^= pid;
            }
        }
        proc
    }

    /// Pid for any line but a resumed one.
    fn resolve_pid(&mut self, prefix: Option<u32>) -> u32 {
        let Some(pid) = prefix else {
            return self.unprefixed_pid();
        };
        // A never-seen pid is the process that was printed without a prefix
        // so far, unless that process is inside a fork (the new pid is then
        // its child, whose first line can precede the fork's result).
        if self.has_unknown && self.alias.is_none() && !self.procs.contains_key(&pid) {
            let forking = self
                .procs
                .get(&UNKNOWN_PID)
                .and_then(|p| p.pending)
                .is_some_and(|p| self.sys[p.sys as usize].role == Role::Spawn);
            if self.procs.contains_key(&UNKNOWN_PID) && !forking {
                self.adopt_unknown(pid);
            }
        }
        pid
    }

    /// Pid for a resumed line: a prefixed pid resuming the call that the
    /// unprefixed process left unfinished is that process.
    fn resolve_resumed_pid(&mut self, prefix: Option<u32>, name: &[u8]) -> u32 {
        let Some(pid) = prefix else {
            return self.unprefixed_pid();
        };
        let own_pending = self.procs.get(&pid).and_then(|p| p.pending).is_some();
        let unknown_waits = self.has_unknown
            && self
                .procs
                .get(&UNKNOWN_PID)
                .and_then(|p| p.pending)
                .is_some_and(|p| *self.sys[p.sys as usize].name == *name);
        if self.alias.is_none() && !own_pending && unknown_waits {
            self.adopt_unknown(pid);
            return pid;
        }
        self.resolve_pid(prefix)
    }

    fn unprefixed_pid(&self) -> u32 {
        if self.live_count == 1 {
            self.live_xor
        } else {
            self.alias.unwrap_or(UNKNOWN_PID)
        }
    }

    /// Moves everything recorded under the placeholder pid to `pid`.
    fn adopt_unknown(&mut self, pid: u32) {
        self.alias = Some(pid);
        self.has_unknown = false;
        if let Some(unknown) = self.procs.remove(&UNKNOWN_PID) {
            let alive = unknown.alive;
            self.proc_mut(pid).absorb(unknown);
            if !alive {
                self.end_process(pid);
            }
        }
    }

    /// Index of `name` in the syscall table, adding it on first sight.
    fn intern(&mut self, name: &[u8]) -> u32 {
        if let Some(i) = self.names.get(name) {
            return i;
        }
        let i = match self.index.get(name) {
            Some(&i) => i,
            None => {
                let i = u32::try_from(self.sys.len()).unwrap_or(u32::MAX);
                self.sys.push(SysAcc::new(name));
                self.index.insert(name.into(), i);
                i
            }
        };
        self.names.put(name, i);
        i
    }

    // -- result -------------------------------------------------------------

    /// Settles calls still unfinished and builds the summary.
    pub fn finish(mut self) -> Summary {
        let stale: Vec<(u32, Pending)> = self
            .procs
            .iter_mut()
            .filter_map(|(&pid, p)| p.pending.take().map(|pending| (pid, pending)))
            .collect();
        for (pid, pending) in stale {
            self.abandon(pid, pending);
        }
        let mut summary = Summary {
            lines: self.lines.clone(),
            signals: to_string_map(&self.signals),
            ..Summary::default()
        };
        for acc in &self.sys {
            add_syscall(&mut summary, acc);
        }
        summary.totals.time_s = self.sys.iter().map(|a| a.time_ns as f64).sum::<f64>() / 1e9;
        summary.totals.wall_time_s = self.clock.span_s();
        // Children known only from a fork's return value (never traced, as
        // without -f) carry no information.
        summary.processes = self
            .procs
            .into_iter()
            .map(|(pid, p)| (pid, process_stats(p)))
            .filter(|(_, p)| *p != ProcessStats::default())
            .collect();
        summary.network.bytes_sent = self.bytes_sent;
        summary.network.bytes_received = self.bytes_received;
        summary.network.addresses = self.addresses;
        summary
    }
}

fn parse_exit_code(b: &[u8]) -> Option<i32> {
    let b = trim_end_spaces(b);
    let (negative, digits) = match b.strip_prefix(b"-") {
        Some(d) => (true, d),
        None => (false, b),
    };
    let value = i32::try_from(parse_whole_u64(digits)?).ok()?;
    Some(if negative { -value } else { value })
}

fn to_string_map(list: &[(Box<[u8]>, u64)]) -> BTreeMap<String, u64> {
    let mut map = BTreeMap::new();
    for (name, count) in list {
        *map.entry(lossy(name)).or_insert(0) += count;
    }
    map
}

/// Adds one syscall's counters to every view of the summary.
fn add_syscall(summary: &mut Summary, acc: &SysAcc) {
    let name = lossy(&acc.name);
    let stats = SyscallStats {
        calls: acc.calls,
        errors: acc.errors,
        unreturned: acc.unreturned,
        time_s: acc.time_ns as f64 / 1e9,
        errors_by_errno: to_string_map(&acc.errnos),
    };
    for (errno, count) in &stats.errors_by_errno {
        *summary.errors_by_errno.entry(errno.clone()).or_insert(0) += count;
    }
    summary.totals.calls += acc.calls;
    summary.totals.errors += acc.errors;
    summary.totals.unreturned += acc.unreturned;
    if acc.role.is_socket() && acc.calls > 0 {
        summary.network.socket_calls.insert(name.clone(), acc.calls);
    }
    if acc.calls > 0 || acc.unreturned > 0 {
        summary.syscalls.insert(name, stats);
    }
}

fn process_stats(p: ProcAcc) -> ProcessStats {
    ProcessStats {
        calls: p.calls,
        errors: p.errors,
        unreturned: p.unreturned,
        signals: p.signals,
        exit_code: p.exit_code,
        killed_by: p.killed_by.as_deref().map(lossy),
        core_dumped: p.core_dumped,
    }
}

// ---------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------

/// Parses a whole trace from `reader` line by line.
///
/// Lines that fit in the reader's buffer are parsed in place; only a line
/// straddling two buffer fills is copied, into one reused buffer capped at
/// [`MAX_LINE`]. Memory therefore stays constant whatever the input size.
pub fn parse_reader<R: BufRead>(mut reader: R) -> io::Result<Summary> {
    let mut parser = Parser::new();
    let mut partial = LineBuffer::default();
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break;
        }
        let mut start = 0;
        while let Some(nl) = find_byte(&chunk[start..], b'\n') {
            let line = &chunk[start..start + nl];
            if partial.is_empty() {
                parser.feed_line(line);
            } else {
                partial.push(line);
                partial.flush_into(&mut parser);
            }
            start += nl + 1;
        }
        partial.push(&chunk[start..]);
        let used = chunk.len();
        reader.consume(used);
    }
    if !partial.is_empty() {
        partial.flush_into(&mut parser);
    }
    Ok(parser.finish())
}

/// The part of a line that straddles reader buffer fills.
#[derive(Default)]
struct LineBuffer {
    bytes: Vec<u8>,
    oversized: bool,
}

impl LineBuffer {
    fn is_empty(&self) -> bool {
        self.bytes.is_empty() && !self.oversized
    }

    fn push(&mut self, part: &[u8]) {
        if self.oversized || part.is_empty() {
            return;
        }
        if self.bytes.len() + part.len() > MAX_LINE {
            self.oversized = true;
            self.bytes.clear();
            return;
        }
        self.bytes.extend_from_slice(part);
    }

    fn flush_into(&mut self, parser: &mut Parser) {
        if self.oversized {
            parser.feed_oversized();
        } else {
            parser.feed_line(&self.bytes);
        }
        self.bytes.clear();
        self.oversized = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Summary {
        let mut parser = Parser::new();
        for line in text.lines() {
            parser.feed_line(line.as_bytes());
        }
        parser.finish()
    }

    fn stats<'a>(s: &'a Summary, name: &str) -> &'a SyscallStats {
        s.syscalls
            .get(name)
            .unwrap_or_else(|| panic!("no syscall {name} in {:?}", s.syscalls.keys()))
    }

    #[test]
    fn complete_lines_with_pid_timestamp_and_duration() {
        let s = parse(concat!(
            "17202 04:59:24.147451 brk(NULL)         = 0x55d3c1a2e000 <0.000010>\n",
            "17202 04:59:24.148231 open(\"/missing\", O_RDONLY) = -1 ENOENT (No such file or directory) <0.000298>\n",
            "17202 04:59:25.147451 read(3, \"\", 4096) = 0 <0.500000>\n",
        ));
        let open = stats(&s, "open");
        assert_eq!((open.calls, open.errors), (1, 1));
        assert_eq!(open.errors_by_errno.get("ENOENT"), Some(&1));
        assert_eq!((stats(&s, "brk").calls, stats(&s, "brk").errors), (1, 0));
        assert!((s.totals.time_s - 0.500308).abs() < 1e-9);
        assert_eq!((s.totals.calls, s.totals.errors), (3, 1));
        assert_eq!(s.processes[&17202].calls, 3);
        assert!((s.totals.wall_time_s.unwrap_or(0.0) - 1.0).abs() < 1e-9);
        assert_eq!(s.lines.syscall, 3);
        assert_eq!(s.lines.unparsed, 0);
    }

    #[test]
    fn unfinished_and_resumed_interleaved_across_pids() {
        let s = parse(concat!(
            "100 10:00:00.000000 read(3,  <unfinished ...>\n",
            "200 10:00:00.000100 write(4, \"x\", 1 <unfinished ...>\n",
            "300 10:00:00.000150 <... futex resumed>) = 0 <0.000001>\n",
            "200 10:00:00.000200 <... write resumed>) = 1 <0.000100>\n",
            "100 10:00:00.000300 <... read resumed>\"a) = 1\\\"\", 10) = 7 <0.000300>\n",
            "200 10:00:00.000400 read(5, 0x7ffd, 8 <unfinished ...>\n",
            "200 10:00:00.000500 <... read resumed>) = -1 EAGAIN (Resource temporarily unavailable) <0.000100>\n",
        ));
        let read = stats(&s, "read");
        assert_eq!((read.calls, read.errors), (2, 1));
        assert_eq!(read.errors_by_errno.get("EAGAIN"), Some(&1));
        assert!((read.time_s - 0.0004).abs() < 1e-12);
        assert_eq!(stats(&s, "write").calls, 1);
        assert_eq!(stats(&s, "futex").calls, 1, "orphan resumed still counts");
        assert_eq!(s.lines.orphan_resumed, 1);
        assert_eq!(s.processes[&100].calls, 1);
        assert_eq!(s.processes[&200].calls, 2);
        assert_eq!(s.processes[&200].errors, 1);
        assert_eq!((s.lines.unfinished, s.lines.resumed), (3, 4));
        assert_eq!(s.lines.never_resumed, 0);
    }

    #[test]
    fn strings_with_equals_parens_and_escaped_quotes() {
        let s = parse(concat!(
            "1 write(1, \"x) = 5 \\\"q\\\" (\\\\\", 12) = 12 <0.000010>\n",
            "1 openat(AT_FDCWD, \"/tmp/a = b)\", O_RDONLY) = -1 ENOENT (No such file or directory)\n",
            "1 execve(\"/bin/sh\", [\"sh\", \"-c\", \"echo ') = 0' \\\"\\\\\"], 0x7ffe /* 39 vars */) = 0\n",
            "1 write(2, \"abc\"..., 4096) = 4096\n",
        ));
        assert_eq!(stats(&s, "write").calls, 2);
        assert_eq!(stats(&s, "openat").errors, 1);
        assert_eq!(stats(&s, "execve").calls, 1);
        assert_eq!(s.lines.unparsed, 0);
    }

    #[test]
    fn resumed_continues_at_the_recorded_nesting() {
        let s = parse(concat!(
            "7 recvmsg(3, {msg_name=NULL, <unfinished ...>\n",
            "7 <... recvmsg resumed>msg_iov=[{iov_base=\"}) = 9\", iov_len=6}], msg_flags=0}, 0) = 6 <0.1>\n",
        ));
        assert_eq!(stats(&s, "recvmsg").calls, 1);
        assert_eq!(s.network.bytes_received, 6);
        assert_eq!(scan_args(b"3, {msg_name=NULL, ", 1), Scan::Open(2));
        let rest = b"msg_iov=[{iov_base=\"}) = 9\", iov_len=6}], msg_flags=0}, 0) = 6";
        assert_eq!(scan_args(rest, 2), Scan::Closed(rest.len() - 5));
        assert_eq!(s.lines.unparsed, 0);
    }

    #[test]
    fn unreturned_and_restart_errors() {
        let s = parse(concat!(
            "5 rt_sigsuspend([], 8) = ? ERESTARTNOHAND (To be restarted if no handler) <0.000012>\n",
            "5 --- SIGUSR1 {si_signo=SIGUSR1, si_code=SI_USER, si_pid=4, si_uid=0} ---\n",
            "5 rt_sigreturn({mask=[USR1]}) = -1 EINTR (Interrupted system call) <0.000011>\n",
            "5 exit_group(3)     = ?\n",
            "5 +++ exited with 3 +++\n",
            "6 kill(6, SIGKILL) = ?\n",
            "6 +++ killed by SIGKILL +++\n",
            "8 nanosleep({tv_sec=5, tv_nsec=0},  <unfinished ...>\n",
            "8 +++ killed by SIGSEGV (core dumped) +++\n",
        ));
        let sus = stats(&s, "rt_sigsuspend");
        assert_eq!((sus.calls, sus.errors), (1, 1));
        assert_eq!(sus.errors_by_errno.get("ERESTARTNOHAND"), Some(&1));
        let exit = stats(&s, "exit_group");
        assert_eq!((exit.calls, exit.unreturned), (0, 1));
        assert_eq!(stats(&s, "nanosleep").unreturned, 1);
        assert_eq!(s.lines.never_resumed, 1);
        assert_eq!(
            (s.totals.calls, s.totals.errors, s.totals.unreturned),
            (2, 2, 3)
        );
        assert_eq!(s.processes[&5].exit_code, Some(3));
        assert_eq!(s.processes[&5].signals, 1);
        assert_eq!(s.processes[&6].killed_by.as_deref(), Some("SIGKILL"));
        assert!(!s.processes[&6].core_dumped);
        assert_eq!(s.processes[&8].killed_by.as_deref(), Some("SIGSEGV"));
        assert!(s.processes[&8].core_dumped);
        assert_eq!(s.signals.get("SIGUSR1"), Some(&1));
        assert_eq!(s.errors_by_errno.get("EINTR"), Some(&1));
    }

    #[test]
    fn process_dying_inside_a_resumed_call() {
        let s = parse(concat!(
            "9 wait4(-1,  <unfinished ...>\n",
            "9 <... wait4 resumed> <unfinished ...>) = ?\n",
            "9 +++ killed by SIGTERM +++\n",
        ));
        let wait = stats(&s, "wait4");
        assert_eq!((wait.calls, wait.unreturned), (0, 1));
        assert_eq!(s.lines.never_resumed, 0);
    }

    #[test]
    fn stderr_form_with_split_lines_and_unprefixed_process() {
        // Verbatim shape of `strace -f -tt -T prog` on a terminal: lines
        // lose their prefix while only one process is traced, and the
        // attach notice lands in the middle of the clone line.
        let s = parse(concat!(
            "04:58:43.821000 getpid() = 15678 <0.000010>\n",
            "04:58:43.821453 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLDstrace: Process 15679 attached\n",
            ", child_tidptr=0x7fd71121da10) = 15679 <0.000143>\n",
            "[pid 15679] 04:58:43.821638 set_robust_list(0x7fd71121da20, 24 <unfinished ...>\n",
            "[pid 15678] 04:58:43.821677 wait4(15679,  <unfinished ...>\n",
            "[pid 15679] 04:58:43.821703 <... set_robust_list resumed>) = 0 <0.000026>\n",
            "[pid 15679] 04:58:43.822961 exit_group(3) = ?\n",
            "[pid 15679] 04:58:43.823114 +++ exited with 3 +++\n",
            "04:58:43.823141 <... wait4 resumed>[{WIFEXITED(s) && WEXITSTATUS(s) == 3}], 0, NULL) = 15679 <0.001458>\n",
            "04:58:43.823170 --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=15679} ---\n",
            "04:58:43.823212 exit_group(0)           = ?\n",
            "04:58:43.823333 +++ exited with 0 +++\n",
        ));
        assert_eq!(s.lines.unparsed, 0, "{:?}", s.lines);
        assert_eq!(s.lines.notice, 1);
        assert_eq!(stats(&s, "clone").calls, 1);
        assert_eq!(stats(&s, "wait4").calls, 1);
        assert_eq!(
            s.processes.keys().copied().collect::<Vec<_>>(),
            [15678, 15679]
        );
        let parent = &s.processes[&15678];
        assert_eq!(
            (parent.calls, parent.exit_code, parent.signals),
            (3, Some(0), 1)
        );
        assert_eq!(s.processes[&15679].exit_code, Some(3));
        assert_eq!(s.processes[&15679].calls, 1);
    }

    #[test]
    fn child_line_before_fork_result_in_stderr_form() {
        let s = parse(concat!(
            "clone(child_stack=NULL, flags=SIGCHLD <unfinished ...>\n",
            "[pid    42] set_robust_list(0x1, 24) = 0\n",
            "[pid    41] <... clone resumed>, child_tidptr=0x2) = 42\n",
            "[pid    42] exit_group(0) = ?\n",
            "[pid    42] +++ exited with 0 +++\n",
            "exit_group(0) = ?\n",
            "+++ exited with 0 +++\n",
        ));
        assert_eq!(s.processes.keys().copied().collect::<Vec<_>>(), [41, 42]);
        assert_eq!(s.processes[&41].calls, 1);
        assert_eq!(s.processes[&41].unreturned, 1);
        assert_eq!(s.processes[&41].exit_code, Some(0));
        assert_eq!(s.processes[&42].calls, 1);
    }

    #[test]
    fn lines_without_any_pid_go_to_pid_zero() {
        let s = parse(concat!(
            "12:00:00.000001 clone(child_stack=NULL, flags=SIGCHLD) = 77 <0.0001>\n",
            "12:00:00.000002 write(1, \"hi\\n\", 3) = 3 <0.0001>\n",
            "12:00:00.000003 +++ exited with 1 +++\n",
        ));
        assert_eq!(s.processes.keys().copied().collect::<Vec<_>>(), [0]);
        assert_eq!(s.processes[&0].calls, 2);
        assert_eq!(s.processes[&0].exit_code, Some(1));
    }

    #[test]
    fn stack_trace_lines_are_skipped() {
        let s = parse(concat!(
            "3 brk(NULL) = 0x55acf42a0000 <0.000009>\n",
            " > /usr/lib/x86_64-linux-gnu/libc.so.6(__brk+0xb) [0x10a3eb]\n",
            " > /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2(_dl_catch_error+0x26f0) [0x1ab70]\n",
            " > unexpected_backtracing_error [0x7f00]\n",
        ));
        assert_eq!(s.lines.stack, 3);
        assert_eq!(s.totals.calls, 1);
        assert_eq!(s.lines.unparsed, 0);
    }

    #[test]
    fn network_counters_and_addresses() {
        let s = parse(concat!(
            "1 socket(AF_INET, SOCK_STREAM, IPPROTO_IP) = 3\n",
            "1 bind(3, {sa_family=AF_INET, sin_port=htons(0), sin_addr=inet_addr(\"127.0.0.1\")}, 16) = 0\n",
            "1 connect(4, {sa_family=AF_INET, sin_port=htons(8080), sin_addr=inet_addr(\"127.0.0.1\")}, 16 <unfinished ...>\n",
            "1 <... connect resumed>) = -1 EINPROGRESS (Operation now in progress)\n",
            "1 connect(5, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, \"::1\", &sin6_addr), sin6_scope_id=0}, 28) = 0\n",
            "1 connect(6, {sa_family=AF_INET, sin_port=htons(8080), sin_addr=inet_addr(\"127.0.0.1\")}, 16) = 0\n",
            "1 sendto(4, \"hello\", 5, 0, NULL, 0) = 5\n",
            "1 sendmsg(4, {msg_iov=[{iov_base=\"abc\", iov_len=3}]}, 0) = 3\n",
            "1 sendto(4, \"x\", 1, 0, NULL, 0) = -1 EPIPE (Broken pipe)\n",
            "1 recvfrom(5, \"hello\", 16, 0, NULL, NULL) = 5\n",
            "1 sendmmsg(4, [{msg_hdr={}, msg_len=5}], 1, 0) = 1\n",
            "1 write(4, \"zzzz\", 4) = 4\n",
        ));
        let net = &s.network;
        assert_eq!((net.bytes_sent, net.bytes_received), (8, 5));
        assert_eq!(
            net.addresses.iter().map(String::as_str).collect::<Vec<_>>(),
            ["127.0.0.1:0", "127.0.0.1:8080", "[::1]:443"]
        );
        assert_eq!(net.socket_calls.get("connect"), Some(&3));
        assert_eq!(net.socket_calls.get("sendto"), Some(&2));
        assert_eq!(net.socket_calls.get("sendmmsg"), Some(&1));
        assert!(!net.socket_calls.contains_key("write"));
        assert_eq!(
            stats(&s, "connect").errors_by_errno.get("EINPROGRESS"),
            Some(&1)
        );
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        let s = parse(concat!(
            "hello world\n",
            "\n",
            "1234\n",
            "1 open(\"unterminated\n",
            "1 open(\"x\") garbage\n",
            "1 <... resumed>) = 0\n",
            "--- nope\n",
            "+++ exited sideways +++\n",
            "[pid 12 open(\"x\") = 3\n",
            "99999999999 read(0, \"\", 1) = 0\n",
        ));
        assert_eq!(s.lines.total, 10);
        assert_eq!(s.lines.blank, 1);
        assert_eq!(s.lines.unparsed, 9);
        assert_eq!(s.totals.calls, 0);
    }

    #[test]
    fn every_prefix_and_random_bytes_do_not_panic() {
        let samples = [
            "100 10:00:00.000300 <... read resumed>\"a) = 1\\\"\", 10) = 7 <0.000300>",
            "[pid  5] 10:00:00.1 connect(3, {sa_family=AF_INET6, sin6_port=htons(1), inet_pton(AF_INET6, \"::1\", &sin6_addr)}, 28) = 0 <0.1>",
            "5 +++ killed by SIGSEGV (core dumped) +++",
            "5 --- SIGCHLD {si_signo=SIGCHLD} ---",
            "5 rt_sigsuspend([], 8) = ? ERESTARTNOHAND (To be restarted if no handler) <0.000012>",
        ];
        let mut parser = Parser::new();
        for sample in samples {
            let bytes = sample.as_bytes();
            for end in 0..=bytes.len() {
                parser.feed_line(&bytes[..end]);
                parser.feed_line(&bytes[end..]);
            }
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let alphabet = b"0123456789 ()[]{}\"\\=<>.?-+:abcE";
        for _ in 0..2000 {
            let len = (state % 64) as usize;
            let line: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    alphabet[(state % alphabet.len() as u64) as usize]
                })
                .collect();
            parser.feed_line(&line);
        }
        let s = parser.finish();
        assert_eq!(
            s.lines.total,
            2000 + 2 * samples.iter().map(|x| x.len() + 1).sum::<usize>() as u64
        );
    }

    #[test]
    fn timestamps_epoch_and_midnight_rollover() {
        let s = parse("1 1700000000.250000 getpid() = 1\n1 1700000002.750000 getpid() = 1\n");
        assert!((s.totals.wall_time_s.unwrap_or(0.0) - 2.5).abs() < 1e-9);
        let s = parse("1 23:59:59.500000 getpid() = 1\n1 00:00:00.500000 getpid() = 1\n");
        assert!((s.totals.wall_time_s.unwrap_or(0.0) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn reader_matches_line_feeding_across_buffer_boundaries() {
        let text = concat!(
            "100 10:00:00.000000 read(3,  <unfinished ...>\n",
            "200 10:00:00.000100 write(4, \"xyz\", 3) = 3 <0.000100>\n",
            "100 10:00:00.000300 <... read resumed>\"abc\", 10) = 3 <0.000300>\n",
            "200 10:00:00.000400 --- SIGCHLD {si_signo=SIGCHLD} ---\n",
            "200 10:00:00.000500 +++ exited with 0 +++\n",
            "no newline at end",
        );
        let expected = parse(text);
        for capacity in [1, 2, 7, 64, 4096] {
            let reader = io::BufReader::with_capacity(capacity, text.as_bytes());
            let got = parse_reader(reader).expect("in-memory read");
            assert_eq!(got, expected, "capacity {capacity}");
        }
        assert_eq!(expected.lines.total, 6);
        assert_eq!(expected.lines.unparsed, 1);
    }

    #[test]
    fn oversized_lines_are_dropped() {
        let mut text = b"1 getpid() = 1\n1 write(1, \"".to_vec();
        text.resize(text.len() + MAX_LINE, b'a');
        text.extend_from_slice(b"\", 1) = 1\n1 getpid() = 1\n");
        let s = parse_reader(io::BufReader::new(&text[..])).expect("in-memory read");
        assert_eq!(s.lines.total, 3);
        assert_eq!(s.lines.unparsed, 1);
        assert_eq!(s.totals.calls, 2);
    }

    #[test]
    fn crlf_and_detached() {
        let s = parse("1 getpid() = 1\r\n1 read(0,  <detached ...>\r\n");
        assert_eq!(stats(&s, "getpid").calls, 1);
        assert_eq!(stats(&s, "read").unreturned, 1);
        assert_eq!(s.lines.never_resumed, 0);
    }

    #[test]
    fn outcome_shapes() {
        assert_eq!(parse_outcome(b"0x7f00"), Outcome::Value(0x7f00));
        assert_eq!(
            parse_outcome(b"1 ([{fd=3, revents=POLLIN}])"),
            Outcome::Value(1)
        );
        assert_eq!(parse_outcome(b"3</etc/passwd>"), Outcome::Value(3));
        assert_eq!(
            parse_outcome(b"-1 EAGAIN (Resource temporarily unavailable)"),
            Outcome::Error(b"EAGAIN")
        );
        assert_eq!(
            parse_outcome(b"-1 531 (Unknown error 531)"),
            Outcome::Error(b"531")
        );
        assert_eq!(
            parse_outcome(b"? ERESTARTSYS (To be restarted)"),
            Outcome::Error(b"ERESTARTSYS")
        );
        assert_eq!(parse_outcome(b"?"), Outcome::Unreturned);
        assert_eq!(parse_outcome(b"-2 (flags)"), Outcome::Value(-2));
        assert_eq!(parse_outcome(b"weird"), Outcome::Other);
        assert_eq!(split_duration(b"0 <0.000010>"), (Some(10_000), &b"0"[..]));
        assert_eq!(split_duration(b"3</tmp/0.5>"), (None, &b"3</tmp/0.5>"[..]));
    }

    #[test]
    fn separator_inside_an_unterminated_string_is_not_a_result() {
        assert_eq!(sole_separator(b"1, \"a) = b"), None);
        assert_eq!(sole_separator(b"1, \"a\\\") = b\", 3) = 3"), None);
        assert_eq!(sole_separator(b"1, \"ab\", 3) = 3"), Some(&b"3"[..]));
        let s = parse("1 write(1, \"cut) = 5\n1 getpid() = 1\n");
        assert_eq!(s.lines.unparsed, 1);
        assert!(!s.syscalls.contains_key("write"));
        // Brackets open, strings closed, a separator-like text in a string
        // and no real result: not a call either.
        let s = parse("1 write(1, \"a) = b\", 5strace: oops\n");
        assert_eq!(s.lines.unparsed, 1);
    }

    #[test]
    fn fallback_when_arguments_do_not_balance() {
        // A -y path with an unbalanced parenthesis.
        let s = parse("1 read(3</tmp/a(b>, \"x\", 1) = 1 <0.1>\n");
        assert_eq!(stats(&s, "read").calls, 1);
        assert!((s.totals.time_s - 0.1).abs() < 1e-12);
    }

    #[test]
    fn summary_round_trips_through_json() {
        let s = parse(concat!(
            "5 open(\"/x\", O_RDONLY) = -1 ENOENT (No such file or directory) <0.1>\n",
            "5 connect(3, {sa_family=AF_INET, sin_port=htons(1), sin_addr=inet_addr(\"10.0.0.1\")}, 16) = 0\n",
            "5 +++ exited with 0 +++\n",
        ));
        let json = serde_json::to_string(&s).expect("serialize");
        let back: Summary = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, s);
    }
}
