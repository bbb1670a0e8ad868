//! Throughput of the strace trace parser.
//!
//! Generates synthetic `strace -f -tt -T -k` traces mixing every line shape the parser handles
//! (calls with escaped strings, `<unfinished ...>`/`resumed` pairs across pids, errors,
//! signals, exits, stack frames, garbage), times one pass of `parse_reader` over each, and
//! prints a table: input size, lines, seconds, MB/s (with a plain read of the same file for
//! comparison) and the peak resident memory of the parse.
//!
//! ```text
//! cargo run --release -p panther-plugin-strace --example strace_throughput -- [SIZE_MB...]
//! ```
//!
//! Sizes default to 20 and 200 MB. Each trace is written to the temporary folder, read once
//! beforehand so it comes from the page cache (the figure measures parsing, not the disk),
//! and removed afterwards. Peak memory is VmHWM, reset before each parse through
//! `/proc/self/clear_refs`. The parser keeps counters per syscall name and per pid, never
//! lines: its memory grows with the number of processes in the trace (the generator starts a
//! new one about every hundred lines, so about 1,100 per 100 MB), not with the bytes.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use panther_plugin_strace::parse::parse_reader;

fn main() -> io::Result<()> {
    let sizes: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| {
            a.parse()
                .unwrap_or_else(|_| panic!("sizes are whole megabytes, not `{a}`"))
        })
        .collect();
    let sizes = if sizes.is_empty() {
        vec![20, 200]
    } else {
        sizes
    };

    println!(
        "{:>10} {:>12} {:>9} {:>9} {:>14} {:>13}",
        "input MB", "lines", "seconds", "MB/s", "read-only MB/s", "peak RSS MB"
    );
    for size in sizes {
        let path = trace_path(size);
        generate(&path, size << 20)?;
        let row = measure(&path);
        let _ = fs::remove_file(&path);
        let row = row?;
        println!(
            "{:>10.1} {:>12} {:>9.3} {:>9.0} {:>14.0} {:>13}",
            row.mb,
            row.lines,
            row.seconds,
            row.mb / row.seconds,
            row.mb / row.read_seconds,
            row.peak_rss_kb
                .map_or("?".into(), |kb| format!("{:.1}", kb as f64 / 1024.0)),
        );
    }
    Ok(())
}

struct Row {
    mb: f64,
    lines: u64,
    seconds: f64,
    read_seconds: f64,
    peak_rss_kb: Option<u64>,
}

fn trace_path(size_mb: u64) -> PathBuf {
    std::env::temp_dir().join(format!(
        "strace-throughput-{}-{size_mb}MB.txt",
        std::process::id()
    ))
}

fn measure(path: &Path) -> io::Result<Row> {
    let bytes = fs::metadata(path)?.len();
    // Warm the page cache, then time a plain read through the same buffer size.
    time_raw_read(path)?;
    let read_seconds = time_raw_read(path)?;

    reset_peak_rss();
    let started = Instant::now();
    let summary = parse_reader(BufReader::with_capacity(1 << 20, File::open(path)?))?;
    let seconds = started.elapsed().as_secs_f64();
    let peak_rss_kb = vm_hwm_kb();
    assert!(summary.totals.calls > 0, "the generated trace has calls");
    Ok(Row {
        mb: bytes as f64 / 1e6,
        lines: summary.lines.total,
        seconds,
        read_seconds,
        peak_rss_kb,
    })
}

/// Seconds to read the file through a 1 MiB buffer without parsing.
fn time_raw_read(path: &Path) -> io::Result<f64> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let started = Instant::now();
    while file.read(&mut buf)? > 0 {}
    Ok(started.elapsed().as_secs_f64())
}

/// Resets VmHWM to the current RSS (Linux 4.0 and later); harmless where unsupported.
fn reset_peak_rss() {
    let _ = fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident set size in kB, from /proc/self/status.
fn vm_hwm_kb() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// xorshift64: deterministic, dependency-free randomness for the generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Writes the synthetic trace.
struct Gen {
    out: BufWriter<File>,
    rng: Rng,
    written: u64,
    clock_us: u64,
    pids: Vec<u32>,
    next_pid: u32,
    /// (pid, name) of calls printed as unfinished and not yet resumed.
    pending: Vec<(u32, &'static str)>,
}

fn generate(path: &Path, target: u64) -> io::Result<()> {
    let mut g = Gen {
        out: BufWriter::with_capacity(1 << 20, File::create(path)?),
        rng: Rng(0x9e37_79b9_7f4a_7c15),
        written: 0,
        clock_us: 10 * 3600 * 1_000_000,
        pids: vec![4000, 4001, 4002, 4003],
        next_pid: 4004,
        pending: Vec::new(),
    };
    while g.written < target {
        g.one()?;
    }
    g.out.flush()
}

impl Gen {
    fn line(&mut self, pid: u32, body: &str) -> io::Result<()> {
        self.clock_us += 1 + self.rng.below(40);
        let t = self.clock_us;
        let line = format!(
            "{pid} {:02}:{:02}:{:02}.{:06} {body}\n",
            t / 3_600_000_000 % 24,
            t / 60_000_000 % 60,
            t / 1_000_000 % 60,
            t % 1_000_000
        );
        self.written += line.len() as u64;
        self.out.write_all(line.as_bytes())
    }

    fn raw(&mut self, text: &str) -> io::Result<()> {
        self.written += text.len() as u64;
        self.out.write_all(text.as_bytes())
    }

    fn dur(&mut self) -> String {
        format!("<0.{:06}>", self.rng.below(2000))
    }

    fn pid(&mut self) -> u32 {
        let i = self.rng.below(self.pids.len() as u64) as usize;
        self.pids[i]
    }

    /// A string argument with escapes, sometimes holding ` = ` and `)`.
    fn string(&mut self) -> String {
        const PIECES: &[&str] = &[
            "GET /index.html HTTP/1.1",
            "\\r\\n",
            "Host: 127.0.0.1",
            "\\\"quoted\\\"",
            "a) = 5",
            "\\\\",
            "\\x00\\x01\\xff",
            "{\\\"k\\\": [1, 2]}",
            "\\n",
        ];
        let mut s = String::from("\"");
        for _ in 0..1 + self.rng.below(6) {
            s.push_str(self.rng.pick(PIECES));
        }
        s.push('"');
        if self.rng.below(4) == 0 {
            s.push_str("...");
        }
        s
    }

    fn one(&mut self) -> io::Result<()> {
        let pid = self.pid();
        let d = self.dur();
        match self.rng.below(100) {
            0..=24 => {
                let s = self.string();
                let n = 1 + self.rng.below(4096);
                let call = if self.rng.below(2) == 0 { "read" } else { "write" };
                self.line(pid, &format!("{call}({}, {s}, {n}) = {n} {d}", 3 + n % 5))
            }
            25..=34 => {
                let path = self.rng.pick(&["/etc/ld.so.preload", "/usr/lib/libssl.so.3", "/proc/self/maps"]);
                if self.rng.below(3) == 0 {
                    self.line(pid, &format!("openat(AT_FDCWD, \"{path}\", O_RDONLY|O_CLOEXEC) = 3 {d}"))
                } else {
                    self.line(pid, &format!("openat(AT_FDCWD, \"{path}\", O_RDONLY|O_CLOEXEC) = -1 ENOENT (No such file or directory) {d}"))
                }
            }
            35..=44 => {
                let addr = self.rng.next() & 0xffff_ffff_f000;
                self.line(pid, &format!("mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f{addr:x} {d}"))
            }
            45..=56 => self.unfinished_or_resume(pid),
            57..=63 => {
                let s = self.string();
                if self.rng.below(2) == 0 {
                    self.line(pid, &format!("recvfrom(5, 0x7ffd3a1c, 65536, 0, NULL, NULL) = -1 EAGAIN (Resource temporarily unavailable) {d}"))
                } else {
                    self.line(pid, &format!("sendto(5, {s}, 24, MSG_NOSIGNAL, NULL, 0) = 24 {d}"))
                }
            }
            64..=73 => {
                let body = self.rng.pick(&[
                    "futex(0x55d4c2a8, FUTEX_WAKE_PRIVATE, 1) = 0",
                    "poll([{fd=3, events=POLLIN}, {fd=4, events=POLLIN}], 2, 100) = 1 ([{fd=3, revents=POLLIN}])",
                    "epoll_wait(7, [{events=EPOLLIN, data={u32=5, u64=5}}], 1024, -1) = 1",
                    "fcntl(3, F_GETFL) = 0x2 (flags O_RDWR)",
                    "newfstatat(3, \"\", {st_mode=S_IFREG|0644, st_size=1234, ...}, AT_EMPTY_PATH) = 0",
                    "rt_sigprocmask(SIG_SETMASK, [], NULL, 8) = 0",
                    "clock_nanosleep(CLOCK_MONOTONIC, 0, {tv_sec=0, tv_nsec=1000000}, NULL) = ? ERESTART_RESTARTBLOCK (Interrupted by signal)",
                ]);
                self.line(pid, &format!("{body} {d}"))
            }
            74..=77 => {
                let port = 1024 + self.rng.below(64);
                let call = self.rng.pick(&["connect", "bind"]);
                self.line(pid, &format!("{call}(6, {{sa_family=AF_INET, sin_port=htons({port}), sin_addr=inet_addr(\"127.0.0.1\")}}, 16) = 0 {d}"))
            }
            78..=80 => self.line(pid, "--- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=4100, si_uid=0, si_status=0, si_utime=0, si_stime=0} ---"),
            81..=88 => {
                self.line(pid, &format!("brk(NULL) = 0x55d3c1a2e000 {d}"))?;
                for _ in 0..1 + self.rng.below(3) {
                    self.raw(" > /usr/lib/x86_64-linux-gnu/libc.so.6(__brk+0xb) [0x10a3eb]\n")?;
                }
                Ok(())
            }
            89 => self.raw("Some program wrote this to stderr) = 3\n"),
            90 => self.churn(pid),
            _ => {
                let fd = 3 + self.rng.below(20);
                self.line(pid, &format!("close({fd}) = 0 {d}"))
            }
        }
    }

    /// Starts a blocking call, or resumes one some other pid left pending.
    fn unfinished_or_resume(&mut self, pid: u32) -> io::Result<()> {
        if let Some(i) = self.pending.iter().position(|&(p, _)| p != pid) {
            let (p, name) = self.pending.swap_remove(i);
            let d = self.dur();
            let tail = match name {
                "wait4" => "[{WIFEXITED(s) && WEXITSTATUS(s) == 0}], 0, NULL) = 4100",
                "read" => "\"ok) = 1\\n\", 4096) = 8",
                _ => ") = 0",
            };
            return self.line(p, &format!("<... {name} resumed>{tail} {d}"));
        }
        if self.pending.iter().any(|&(p, _)| p == pid) {
            return Ok(());
        }
        let name = self.rng.pick(&["wait4", "read", "futex"]);
        let head = match name {
            "wait4" => "wait4(-1, ",
            "read" => "read(3, ",
            _ => "futex(0x7f21c0, FUTEX_WAIT_PRIVATE, 0, NULL",
        };
        self.pending.push((pid, name));
        self.line(pid, &format!("{head} <unfinished ...>"))
    }

    /// Retires a pid with an exit line and brings in a new one via clone.
    fn churn(&mut self, pid: u32) -> io::Result<()> {
        if self.pending.iter().any(|&(p, _)| p == pid) {
            return Ok(());
        }
        let child = self.next_pid;
        self.next_pid += 1;
        let d = self.dur();
        self.line(pid, &format!("clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f) = {child} {d}"))?;
        self.line(pid, "exit_group(0) = ?")?;
        self.line(pid, "+++ exited with 0 +++")?;
        self.pids.retain(|&p| p != pid);
        self.pids.push(child);
        Ok(())
    }
}
