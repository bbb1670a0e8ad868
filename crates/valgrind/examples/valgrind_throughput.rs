//! Parses large generated valgrind XML files and prints a table of throughput and peak
//! memory, to check that parsing stays fast and memory stays flat.
//!
//! Usage: `cargo run --release -p panther-valgrind --example valgrind_throughput -- [SIZE_MB...]`
//! (default: 10 and 100 MB). Each size is parsed three times: keeping every error, keeping
//! 1000 (what the plugins keep per process) and keeping none, which shows the parser's own
//! footprint, independent of the input size. Each parse runs in a process of its own, so
//! the peak RSS (VmHWM) is that parse's alone.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use panther_valgrind::xml::{parse_reader_with, ParseOptions};

const HEADER: &str = r#"<?xml version="1.0"?>

<valgrindoutput>

<protocolversion>4</protocolversion>
<protocoltool>memcheck</protocoltool>

<preamble>
  <line>Memcheck, a memory error detector</line>
  <line>Command: ./service --port 4433</line>
</preamble>

<pid>4242</pid>
<ppid>4200</ppid>
<tool>memcheck</tool>

<args>
  <vargv>
    <exe>/usr/bin/valgrind.bin</exe>
    <arg>--tool=memcheck</arg>
    <arg>--xml=yes</arg>
    <arg>--leak-check=full</arg>
  </vargv>
  <argv>
    <exe>./service</exe>
    <arg>--port</arg>
    <arg>4433</arg>
  </argv>
</args>

<status>
  <state>RUNNING</state>
  <time>00:00:00:00.040 </time>
</status>
"#;

/// Writes one `<frame>` the way valgrind does.
fn frame(out: &mut impl Write, ip: u64, function: &str, file: &str, line: u32) -> io::Result<()> {
    write!(
        out,
        "    <frame>\n      <ip>0x{ip:X}</ip>\n      <obj>/opt/service/bin/service</obj>\n      \
         <fn>{function}</fn>\n      <dir>/build/service/src</dir>\n      <file>{file}</file>\n      \
         <line>{line}</line>\n    </frame>\n"
    )
}

fn stack(out: &mut impl Write, base: u64, depth: u32) -> io::Result<()> {
    const FUNCTIONS: [(&str, &str); 6] = [
        (
            "quic::Packet::decode(std::vector&lt;unsigned char&gt; const&amp;)",
            "packet.cc",
        ),
        (
            "quic::Connection::on_datagram(quic::Datagram&amp;&amp;)",
            "connection.cc",
        ),
        ("quic::Endpoint::dispatch()", "endpoint.cc"),
        ("event_loop_run", "loop.c"),
        ("serve", "main.c"),
        ("main", "main.c"),
    ];
    writeln!(out, "  <stack>")?;
    for (i, (function, file)) in FUNCTIONS.iter().take(depth as usize).enumerate() {
        frame(
            out,
            base + 0x40 * i as u64,
            function,
            file,
            100 + 7 * i as u32,
        )?;
    }
    writeln!(out, "  </stack>")
}

/// One invalid read with its allocation stack, then one definite leak.
fn records(out: &mut impl Write, unique: u64) -> io::Result<()> {
    let ip = 0x10_9000 + (unique % 4096) * 16;
    write!(
        out,
        "<error>\n  <unique>0x{unique:x}</unique>\n  <tid>1</tid>\n  <kind>InvalidRead</kind>\n  \
         <what>Invalid read of size 4</what>\n"
    )?;
    stack(out, ip, 6)?;
    writeln!(out, "  <auxwhat>Address 0x4a4{unique:04x} is 0 bytes after a block of size 16 alloc'd</auxwhat>")?;
    stack(out, ip + 0x100, 5)?;
    writeln!(out, "</error>\n")?;
    write!(
        out,
        "<error>\n  <unique>0x{:x}</unique>\n  <tid>1</tid>\n  <kind>Leak_DefinitelyLost</kind>\n  \
         <xwhat>\n    <text>64 bytes in 1 blocks are definitely lost in loss record {} of many</text>\n    \
         <leakedbytes>64</leakedbytes>\n    <leakedblocks>1</leakedblocks>\n  </xwhat>\n",
        unique + 1,
        unique / 2 + 1
    )?;
    stack(out, ip + 0x200, 4)?;
    writeln!(out, "</error>\n")
}

fn generate(path: &Path, target_bytes: u64) -> io::Result<u64> {
    let mut out = CountingWriter {
        inner: BufWriter::new(File::create(path)?),
        written: 0,
    };
    out.write_all(HEADER.as_bytes())?;
    let mut unique = 0u64;
    while out.written < target_bytes {
        records(&mut out, unique)?;
        unique += 2;
    }
    out.write_all(b"<status>\n  <state>FINISHED</state>\n</status>\n\n<errorcounts>\n")?;
    for id in (0..unique).step_by(2) {
        write!(
            out,
            "  <pair>\n    <count>3</count>\n    <unique>0x{id:x}</unique>\n  </pair>\n"
        )?;
    }
    out.write_all(b"</errorcounts>\n\n<suppcounts>\n</suppcounts>\n\n</valgrindoutput>\n")?;
    out.inner.flush()?;
    Ok(out.written)
}

struct CountingWriter<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Peak resident set size of this process in KiB (Linux only).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Parses one file keeping at most `max_kept_errors` and prints one row of the table. Runs
/// in a process of its own, so that the peak RSS is this parse's alone.
fn measure(path: &Path, max_kept_errors: usize) -> Result<(), Box<dyn std::error::Error>> {
    let size = std::fs::metadata(path)?.len();
    let started = Instant::now();
    let file = BufReader::with_capacity(64 * 1024, File::open(path)?);
    let report = parse_reader_with(file, &ParseOptions { max_kept_errors })?;
    let elapsed = started.elapsed().as_secs_f64();
    let mb = size as f64 / 1e6;
    let peak = peak_rss_kib().unwrap_or(0) as f64 / 1024.0;
    println!(
        "{mb:>9.1} {:>9} {:>12} {elapsed:>9.2} {:>8.0} {peak:>14.1}",
        report.summary.errors,
        report.errors.len(),
        mb / elapsed,
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, path, keep] = args.as_slice() {
        if flag == "--measure" {
            return measure(Path::new(path), keep.parse()?);
        }
    }
    let sizes: Vec<u64> = args.iter().map(|a| a.parse()).collect::<Result<_, _>>()?;
    let sizes = if sizes.is_empty() {
        vec![10, 100]
    } else {
        sizes
    };

    println!(
        "{:>9} {:>9} {:>12} {:>9} {:>8} {:>14}",
        "input MB", "records", "errors kept", "parse s", "MB/s", "peak RSS MiB"
    );
    let path = std::env::temp_dir().join(format!(
        "panther-valgrind-throughput-{}.xml",
        std::process::id()
    ));
    for size_mb in sizes {
        generate(&path, size_mb * 1_000_000)?;
        for max_kept_errors in [usize::MAX, 1000, 0] {
            let status = std::process::Command::new(std::env::current_exe()?)
                .arg("--measure")
                .arg(&path)
                .arg(max_kept_errors.to_string())
                .status()?;
            if !status.success() {
                return Err(format!("measuring {}: {status}", path.display()).into());
            }
        }
    }
    std::fs::remove_file(&path)?;
    Ok(())
}
