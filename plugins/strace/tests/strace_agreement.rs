//! Runs a small C program under real `strace` and checks the parser's
//! counts against `strace -c -f` on the same program.
//!
//! The probe (tests/data/probe.c) makes a fixed sequence of syscalls, so two
//! separate runs of it produce the same per-syscall counts. Three kinds of
//! call appear in the trace but not in `strace -c`, and the parser reports
//! them as `unreturned` instead of `calls`: the two `exit_group` calls and
//! the child's `kill(getpid(), SIGKILL)`, all printed as `= ?` because they
//! never return. `strace -c` counts a call at syscall exit, which those never
//! reach.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use panther_plugin_strace::parse::{parse_reader, Summary};

/// A scratch directory holding the compiled probe and strace outputs.
struct Workdir {
    dir: tempfile::TempDir,
    probe: PathBuf,
}

impl Workdir {
    fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("strace-{name}-"))
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("create work dir");
        let probe = dir.path().join("probe");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/probe.c");
        let status = Command::new("cc")
            .args(["-O1", "-Wall", "-o"])
            .arg(&probe)
            .arg(&source)
            .status()
            .expect("run cc (is a C compiler installed?)");
        assert!(status.success(), "cc failed on {}", source.display());
        Workdir { dir, probe }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs the probe under strace with `args` (output redirected with -o
    /// by the caller) and returns the probe's stdout: the TCP port.
    fn strace(&self, args: &[&str]) -> String {
        let output = Command::new("strace")
            .args(args)
            .arg(&self.probe)
            .current_dir(self.dir.path())
            .stderr(Stdio::inherit())
            .output()
            .expect("run strace (is strace installed?)");
        assert!(
            output.status.success(),
            "strace {args:?} failed: {:?}",
            output.status
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Runs the probe under strace writing the trace to stderr, as strace
    /// does without -o; that stream is captured in `file`.
    fn strace_to_stderr(&self, args: &[&str], file: &str) -> String {
        let err = File::create(self.path(file)).expect("create stderr file");
        let output = Command::new("strace")
            .args(args)
            .arg(&self.probe)
            .current_dir(self.dir.path())
            .stderr(err)
            .output()
            .expect("run strace");
        assert!(
            output.status.success(),
            "strace {args:?} failed: {:?}",
            output.status
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn summary(&self, file: &str) -> Summary {
        let f = File::open(self.path(file)).expect("open trace");
        parse_reader(BufReader::new(f)).expect("read trace")
    }

    /// `strace -c -f [extra] -o counts.txt probe`, parsed.
    fn counts(&self, extra: &[&str]) -> BTreeMap<String, (u64, u64)> {
        let file = self.path("counts.txt");
        let file_arg = file.to_str().expect("utf-8 path");
        let mut args = vec!["-c", "-f"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-o", file_arg]);
        self.strace(&args);
        parse_count_table(&fs::read_to_string(&file).expect("read counts"))
    }
}

/// Parses the `strace -c` table into name -> (calls, errors). Rows have six
/// columns, or five when the errors column is blank.
fn parse_count_table(text: &str) -> BTreeMap<String, (u64, u64)> {
    let mut table = BTreeMap::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let Some(&name) = cols.last() else { continue };
        if name == "total" || !(cols.len() == 5 || cols.len() == 6) {
            continue;
        }
        let Ok(calls) = cols[3].parse::<u64>() else {
            continue;
        };
        let errors = if cols.len() == 6 {
            cols[4].parse::<u64>().expect("errors column")
        } else {
            0
        };
        table.insert(name.to_owned(), (calls, errors));
    }
    assert!(!table.is_empty(), "no rows in strace -c output:\n{text}");
    table
}

/// The parser's view in the same shape as the `strace -c` table.
fn counted(summary: &Summary) -> BTreeMap<String, (u64, u64)> {
    summary
        .syscalls
        .iter()
        .filter(|(_, s)| s.calls > 0)
        .map(|(name, s)| (name.clone(), (s.calls, s.errors)))
        .collect()
}

fn assert_agrees(summary: &Summary, table: &BTreeMap<String, (u64, u64)>, what: &str) {
    let ours = counted(summary);
    for (name, theirs) in table {
        assert_eq!(
            ours.get(name),
            Some(theirs),
            "{what}: {name} (calls, errors)"
        );
    }
    for name in ours.keys() {
        assert!(
            table.contains_key(name),
            "{what}: {name} not counted by strace -c"
        );
    }
    let total: (u64, u64) = table.values().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    assert_eq!(
        (summary.totals.calls, summary.totals.errors),
        total,
        "{what}: totals"
    );
    assert_eq!(summary.lines.unparsed, 0, "{what}: unparsed lines");
}

/// Facts about the probe that hold for any complete trace of it.
fn assert_probe_facts(s: &Summary, port: &str) {
    let open = &s.syscalls["open"];
    assert_eq!((open.calls, open.errors), (3, 3));
    assert_eq!(open.errors_by_errno.get("ENOENT"), Some(&3));

    let exits: Vec<_> = s.processes.values().filter_map(|p| p.exit_code).collect();
    assert!(exits.contains(&3), "child exit code 3 in {:?}", s.processes);
    assert!(
        exits.contains(&0),
        "parent exit code 0 in {:?}",
        s.processes
    );
    let killed: Vec<_> = s
        .processes
        .values()
        .filter_map(|p| p.killed_by.as_deref())
        .collect();
    assert_eq!(killed, ["SIGKILL"]);
    assert_eq!(s.processes.len(), 3, "{:?}", s.processes);

    assert_eq!(s.network.bytes_sent, 5);
    assert_eq!(s.network.bytes_received, 5);
    assert!(
        s.network.addresses.contains(&format!("127.0.0.1:{port}")),
        "{:?} lacks port {port}",
        s.network.addresses
    );
    assert!(
        s.network.addresses.contains("127.0.0.1:0"),
        "bind to port 0"
    );
    assert_eq!(s.network.socket_calls.get("socket"), Some(&2));

    assert_eq!(s.signals.get("SIGUSR1"), Some(&1));
    assert_eq!(s.signals.get("SIGCHLD"), Some(&2));

    let sus = &s.syscalls["rt_sigsuspend"];
    assert_eq!(sus.errors_by_errno.get("ERESTARTNOHAND"), Some(&1));
    assert_eq!(s.syscalls["exit_group"].unreturned, 2);
    assert_eq!(s.syscalls["exit_group"].calls, 0);
    assert_eq!(s.syscalls["kill"].unreturned, 1);
    assert_eq!(s.totals.unreturned, 3);
}

#[test]
fn trace_file_agrees_with_strace_c() {
    let work = Workdir::new("file");
    let out = work.path("out.txt");
    let port = work.strace(&["-f", "-tt", "-T", "-o", out.to_str().expect("utf-8")]);
    let summary = work.summary("out.txt");
    let table = work.counts(&[]);

    assert_agrees(&summary, &table, "-f -tt -T -o");
    assert_probe_facts(&summary, &port);
    assert!(summary.totals.time_s > 0.0);
    assert!(summary.totals.wall_time_s.is_some_and(|w| w > 0.0));
}

#[test]
fn stderr_form_agrees_with_strace_c() {
    let work = Workdir::new("stderr");
    let port = work.strace_to_stderr(&["-f", "-tt", "-T"], "err.txt");
    let summary = work.summary("err.txt");
    let table = work.counts(&[]);

    assert_agrees(&summary, &table, "stderr");
    assert_probe_facts(&summary, &port);
    // Writing to stderr, strace prints a `[pid N]` prefix only while several processes are
    // alive. When the children's lines never interleave with the parent's, the parent's pid
    // is printed nowhere and its lines can only stay under pid 0; otherwise every line must
    // be attributed to a real pid.
    let text = fs::read_to_string(work.path("err.txt")).expect("read trace");
    let printed: BTreeSet<u32> = text
        .lines()
        .filter_map(|l| {
            l.strip_prefix("[pid")?
                .split(']')
                .next()?
                .trim()
                .parse()
                .ok()
        })
        .collect();
    if summary.processes.contains_key(&0) {
        assert_eq!(
            printed.len(),
            2,
            "pid 0 although the parent's pid was printed"
        );
    } else {
        assert_eq!(printed.len(), 3, "{printed:?}");
    }
}

#[test]
fn filtered_and_truncated_trace_agrees_with_strace_c() {
    let work = Workdir::new("filter");
    let out = work.path("out.txt");
    let filter = "trace=!mmap,mprotect,close";
    work.strace(&[
        "-f",
        "-tt",
        "-T",
        "-s",
        "2",
        "-e",
        filter,
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    let summary = work.summary("out.txt");
    let table = work.counts(&["-e", filter]);

    assert_agrees(&summary, &table, filter);
    assert!(!summary.syscalls.contains_key("mmap"));
    assert_eq!(summary.network.bytes_sent, 5);
}

#[test]
fn network_only_trace_agrees_with_strace_c() {
    let work = Workdir::new("network");
    let out = work.path("out.txt");
    let port = work.strace(&[
        "-f",
        "-tt",
        "-T",
        "-e",
        "trace=network",
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    let summary = work.summary("out.txt");
    let table = work.counts(&["-e", "trace=network"]);

    assert_agrees(&summary, &table, "trace=network");
    // trace=network also selects getsockname, which is not socket-family
    // traffic in the summary's sense.
    let socket_calls: u64 = summary.network.socket_calls.values().sum();
    assert_eq!(summary.syscalls["getsockname"].calls, 1);
    assert_eq!(summary.totals.calls, socket_calls + 1);
    assert!(summary
        .network
        .addresses
        .contains(&format!("127.0.0.1:{port}")));
}

#[test]
fn stack_trace_form_agrees_with_strace_c() {
    let work = Workdir::new("stack");
    let out = work.path("out.txt");
    let probe = Command::new("strace")
        .args(["-k", "-o", "/dev/null", "true"])
        .output()
        .expect("run strace");
    if !probe.status.success() {
        eprintln!(
            "skipping: this strace lacks -k: {}",
            String::from_utf8_lossy(&probe.stderr)
        );
        return;
    }
    let port = work.strace(&["-f", "-k", "-tt", "-T", "-o", out.to_str().expect("utf-8")]);
    let summary = work.summary("out.txt");
    let table = work.counts(&[]);

    assert_agrees(&summary, &table, "-k");
    assert_probe_facts(&summary, &port);
    assert!(
        summary.lines.stack > summary.lines.syscall,
        "{:?}",
        summary.lines
    );
}
