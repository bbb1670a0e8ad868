//! End-to-end checks: small C programs with one known defect each are run
//! under real memcheck/helgrind, and the parsed report must name exactly that
//! defect at the right function, file and line.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use panther_valgrind::xml::{parse_file, Category, Frame, LeakAmount, Report, Stack, Thresholds};

/// The workspace's `tests/fixtures/programs/`: the host's integration tests run the same
/// programs through `panther-host`, so each defect is written once and both layers check it.
fn programs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/programs")
        .canonicalize()
        .expect("tests/fixtures/programs exists")
}

/// Returns `expected` after checking that `marker` sits on that line of the
/// program's source, so an edit to a program cannot silently shift findings.
fn line(program: &str, marker: &str, expected: u32) -> u32 {
    let path = programs_dir().join(format!("{program}.c"));
    let source = std::fs::read_to_string(&path).expect("program source");
    let found = source
        .lines()
        .position(|l| l.contains(&format!("/* {marker} */")));
    assert_eq!(
        found.map(|i| i as u32 + 1),
        Some(expected),
        "{marker} in {}",
        path.display()
    );
    expected
}

/// Compiles `tests/fixtures/programs/<program>.c` and runs it under valgrind with XML
/// output, returning the parsed report.
fn run(tool: &str, program: &str, extra: &[&str]) -> Report {
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("valgrind-programs");
    std::fs::create_dir_all(&work).expect("work dir");
    let exe = work.join(program);
    let source = programs_dir().join(format!("{program}.c"));
    let status = Command::new("cc")
        .args(["-g", "-O0", "-pthread", "-o"])
        .arg(&exe)
        .arg(&source)
        .status()
        .expect("cc runs");
    assert!(status.success(), "compiling {}", source.display());

    let xml = work.join(format!("{program}.{tool}.xml"));
    let status = Command::new("valgrind")
        .arg(format!("--tool={tool}"))
        .args(["--xml=yes", "-q"])
        .arg(format!("--xml-file={}", xml.display()))
        .args(extra)
        .arg(&exe)
        .stdout(Stdio::null())
        .status()
        .expect("valgrind is installed and runs");
    assert!(status.success(), "{program} under {tool}: {status}");
    let report = parse_file(&xml).expect("valgrind's XML parses");
    assert!(
        !report.truncated && report.finished,
        "{program}: incomplete output"
    );
    assert_eq!(report.tool, tool);
    assert!(report
        .command
        .as_ref()
        .is_some_and(|c| c.exe.ends_with(program)));
    report
}

/// Asserts a frame is in the test program's own source at `file:line`.
fn assert_at(frame: Option<&Frame>, function: &str, file: &str, line: u32) {
    let frame = frame.unwrap_or_else(|| panic!("no frame where {function} was expected"));
    assert_eq!(frame.function.as_deref(), Some(function), "{frame}");
    assert_eq!(frame.file.as_deref(), Some(file), "{frame}");
    assert_eq!(frame.line, Some(line), "{frame}");
    assert!(
        frame
            .dir
            .as_deref()
            .is_some_and(|d| d.ends_with("tests/fixtures/programs")),
        "{frame}"
    );
    assert!(!frame.is_system(), "{frame}");
}

fn user_frame(stack: &Stack) -> Option<&Frame> {
    stack.first_user_frame()
}

#[test]
fn invalid_read_past_a_heap_block() {
    let report = run("memcheck", "valgrind_invalid_read", &["--leak-check=full"]);
    assert_eq!(report.errors.len(), 1);
    let error = &report.errors[0];
    assert_eq!(error.kind, "InvalidRead");
    assert_eq!(error.category, Category::MemoryError);
    assert_eq!(error.what, "Invalid read of size 4");
    assert_eq!(error.stacks.len(), 2);

    let access = &error.stacks[0].frames;
    assert_at(
        access.first(),
        "read_past_end",
        "valgrind_invalid_read.c",
        line("valgrind_invalid_read", "INVALID_READ_LINE", 7),
    );
    assert_at(
        access.get(1),
        "main",
        "valgrind_invalid_read.c",
        line("valgrind_invalid_read", "CALL_LINE", 17),
    );

    let block = &error.stacks[1];
    let intro = block.intro.as_deref().unwrap_or_default();
    assert!(
        intro.ends_with(" is 0 bytes after a block of size 16 alloc'd"),
        "{intro}"
    );
    assert_eq!(block.frames[0].function.as_deref(), Some("malloc"));
    assert_at(
        user_frame(block),
        "main",
        "valgrind_invalid_read.c",
        line("valgrind_invalid_read", "ALLOC_LINE", 12),
    );

    assert_eq!(report.error_counts.get(&error.unique), Some(&1));
    let limits = Thresholds {
        max_invalid_reads: Some(0),
        ..Thresholds::default()
    };
    assert_eq!(
        limits.violations(&report),
        ["1 invalid read, at most 0 allowed; first at read_past_end (valgrind_invalid_read.c:7)"]
    );
}

#[test]
fn leak_of_1234_bytes_in_leak_it() {
    let report = run("memcheck", "valgrind_leak", &["--leak-check=full"]);
    assert_eq!(report.errors.len(), 1);
    let leak = &report.errors[0];
    assert_eq!(leak.kind, "Leak_DefinitelyLost");
    assert_eq!(leak.category, Category::Leak);
    assert_eq!(
        (leak.leaked_bytes, leak.leaked_blocks),
        (Some(1234), Some(1))
    );
    assert!(
        leak.what
            .starts_with("1,234 bytes in 1 blocks are definitely lost"),
        "{}",
        leak.what
    );
    assert_eq!(
        leak.top_frame().and_then(|f| f.function.as_deref()),
        Some("malloc")
    );
    assert_at(
        leak.first_user_frame(),
        "leak_it",
        "valgrind_leak.c",
        line("valgrind_leak", "LEAK_LINE", 7),
    );
    assert_at(
        leak.stacks[0].frames.get(2),
        "main",
        "valgrind_leak.c",
        line("valgrind_leak", "CALL_LINE", 14),
    );

    let leaks = report.summary.leaks;
    assert_eq!(
        leaks.definitely_lost,
        LeakAmount {
            bytes: 1234,
            blocks: 1
        }
    );
    assert_eq!(leaks.indirectly_lost, LeakAmount::default());
    assert_eq!(leaks.possibly_lost, LeakAmount::default());
    let limits = Thresholds {
        max_definitely_lost_bytes: Some(1000),
        ..Thresholds::default()
    };
    assert_eq!(
        limits.violations(&report),
        ["1234 bytes definitely lost in 1 block, at most 1000 allowed; first at leak_it (valgrind_leak.c:7)"]
    );
}

#[test]
fn data_race_on_an_unlocked_counter() {
    let report = run("helgrind", "valgrind_race", &[]);
    assert!(!report.errors.is_empty());
    let race_line = line("valgrind_race", "RACE_LINE", 10);
    for race in &report.errors {
        assert_eq!(race.kind, "Race");
        assert_eq!(race.category, Category::Race);
        assert_eq!(
            race.stacks.len(),
            2,
            "the access and the conflicting access"
        );
        let (now, before) = (&race.stacks[0], &race.stacks[1]);
        let (t_now, t_before) = (
            now.thread.expect("thread #"),
            before.thread.expect("thread #"),
        );
        let mut pair = [t_now, t_before];
        pair.sort_unstable();
        assert_eq!(pair, [2, 3], "the two created threads race");
        assert_eq!(race.thread, Some(t_now));
        assert!(
            race.what.starts_with("Possible data race during "),
            "{}",
            race.what
        );
        assert!(race.what.ends_with(&format!(
            " of size 4 at 0x{:X} by thread #{t_now}",
            address(race)
        )));
        let intro = before.intro.as_deref().unwrap_or_default();
        assert!(
            intro.starts_with("This conflicts with a previous "),
            "{intro}"
        );
        assert!(
            intro.ends_with(&format!(" of size 4 by thread #{t_before}")),
            "{intro}"
        );
        assert_at(now.frames.first(), "bump", "valgrind_race.c", race_line);
        assert_at(before.frames.first(), "bump", "valgrind_race.c", race_line);
        assert_eq!(race.notes.len(), 1);
        assert!(race.notes[0].ends_with(" is 0 bytes inside data symbol \"counter\""));
    }
    assert!(report
        .errors
        .iter()
        .any(|r| r.what.contains("during write of size 4")));

    // Helgrind numbers threads in creation order: #2 is `a`, #3 is `b`.
    let created = |n: u32| {
        report
            .thread(n)
            .and_then(|t| t.created_at.iter().find(|f| !f.is_system()))
    };
    assert_at(
        created(2),
        "main",
        "valgrind_race.c",
        line("valgrind_race", "CREATE_A_LINE", 17),
    );
    assert_at(
        created(3),
        "main",
        "valgrind_race.c",
        line("valgrind_race", "CREATE_B_LINE", 18),
    );
    assert_eq!(
        report.summary.category(Category::Race),
        report.errors.len() as u64
    );
}

/// The address in "Possible data race during write of size 4 at 0x10C02C ...".
fn address(race: &panther_valgrind::xml::ValgrindError) -> u64 {
    let hex = race
        .what
        .split(" at 0x")
        .nth(1)
        .and_then(|rest| rest.split(' ').next());
    hex.and_then(|h| u64::from_str_radix(h, 16).ok())
        .expect("address in message")
}

#[test]
fn lock_order_inversion() {
    let report = run("helgrind", "valgrind_lock_order", &[]);
    assert_eq!(report.errors.len(), 1);
    let error = &report.errors[0];
    assert_eq!(error.kind, "LockOrder");
    assert_eq!(error.category, Category::LockOrder);
    assert_eq!(error.thread, Some(3));
    assert!(
        error.what.starts_with("Thread #3: lock order \"0x"),
        "{}",
        error.what
    );
    assert!(error.what.ends_with("\" violated"), "{}", error.what);

    let outer = line("valgrind_lock_order", "AB_OUTER_LINE", 11);
    let inner = line("valgrind_lock_order", "AB_INNER_LINE", 12);
    let expected: [(&str, &str, u32); 5] = [
        (
            "",
            "second_then_first",
            line("valgrind_lock_order", "BA_INNER_LINE", 22),
        ),
        (
            "Required order was established by acquisition of lock at 0x",
            "first_then_second",
            outer,
        ),
        (
            "followed by a later acquisition of lock at 0x",
            "first_then_second",
            inner,
        ),
        ("Lock at 0x", "first_then_second", outer),
        ("Lock at 0x", "first_then_second", inner),
    ];
    assert_eq!(error.stacks.len(), expected.len());
    for (stack, (intro, function, line)) in error.stacks.iter().zip(expected) {
        let text = stack.intro.as_deref().unwrap_or_default();
        assert!(
            text.starts_with(intro),
            "{text:?} should start with {intro:?}"
        );
        assert_at(user_frame(stack), function, "valgrind_lock_order.c", line);
    }
    assert!(error.stacks[3]
        .intro
        .as_deref()
        .is_some_and(|t| t.ends_with(" was first observed")));
    let created = report
        .thread(3)
        .and_then(|t| t.created_at.iter().find(|f| !f.is_system()));
    assert_at(
        created,
        "main",
        "valgrind_lock_order.c",
        line("valgrind_lock_order", "CREATE_BA_LINE", 33),
    );
}

#[test]
fn unlocking_a_mutex_nobody_holds() {
    let report = run("helgrind", "valgrind_unlock_unlocked", &[]);
    let kinds: Vec<&str> = report.errors.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["UnlockUnlocked", "PthAPIerror"]);
    assert!(report
        .errors
        .iter()
        .all(|e| e.category == Category::PthreadMisuse));

    let unlock = &report.errors[0];
    assert_eq!(unlock.thread, Some(1));
    assert!(
        unlock
            .what
            .starts_with("Thread #1 unlocked a not-locked lock at 0x"),
        "{}",
        unlock.what
    );
    assert_at(
        unlock.first_user_frame(),
        "release_without_lock",
        "valgrind_unlock_unlocked.c",
        line("valgrind_unlock_unlocked", "UNLOCK_LINE", 8),
    );
    let observed = &unlock.stacks[1];
    assert!(observed
        .intro
        .as_deref()
        .is_some_and(|t| t.ends_with(" was first observed")));
    assert_eq!(
        observed.frames[0].function.as_deref(),
        Some("pthread_mutex_init")
    );
    assert_at(
        user_frame(observed),
        "main",
        "valgrind_unlock_unlocked.c",
        line("valgrind_unlock_unlocked", "INIT_LINE", 13),
    );

    // glibc's bookkeeping is now off by one, so destroying the mutex fails;
    // helgrind reports the errno in a second <what>, kept in the message.
    let destroy = &report.errors[1];
    assert!(destroy
        .what
        .starts_with("Thread #1's call to pthread_mutex_destroy failed with error code "));
    assert_at(
        destroy.first_user_frame(),
        "main",
        "valgrind_unlock_unlocked.c",
        line("valgrind_unlock_unlocked", "DESTROY_LINE", 15),
    );

    assert!(report
        .thread(1)
        .is_some_and(|t| t.root && t.created_at.is_empty()));
    let limits = Thresholds {
        max_pthread_misuse: Some(1),
        ..Thresholds::default()
    };
    assert_eq!(
        limits.violations(&report),
        ["2 pthread API misuses, at most 1 allowed; first at release_without_lock (valgrind_unlock_unlocked.c:8)"]
    );
}
