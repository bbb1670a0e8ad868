//! The test harness.

use std::{
    ffi::OsStr,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use serde_json::Value;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is in the workspace")
        .to_path_buf()
}

/// The `panther-host` binary cargo built for these tests.
pub fn host_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_panther-host"))
}

/// `target/debug` (or wherever the binary is), holding the shipped plugins and echo programs.
pub fn build_dir() -> PathBuf {
    let dir = host_bin()
        .parent()
        .expect("binary has a folder")
        .to_path_buf();
    for plugin in ["json", "junit", "localhost"] {
        let so = dir.join(format!("libpanther_plugin_{plugin}.so"));
        assert!(
            so.is_file(),
            "{} is missing: run `cargo build --workspace` before the tests",
            so.display()
        );
    }
    dir
}

/// A program built by the workspace (e.g. `echo-server`).
pub fn program(name: &str) -> String {
    let path = build_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` before the tests",
        path.display()
    );
    path.display().to_string()
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run_build(mut command: Command, what: &str) {
    let output = command
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "building {what} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The folder of fixture plugins (`tests/fixtures/plugins`), built once per test run into
/// `target/fixtures`.
pub fn fixtures_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = root().join("target/fixtures");
        let mut build = cargo();
        build
            .args(["build", "--quiet", "--manifest-path"])
            .arg(root().join("tests/fixtures/plugins/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target);
        run_build(build, "the fixture plugins");
        target.join("debug")
    })
}

/// The path of one fixture plugin library, e.g. `fixture("tag")`.
pub fn fixture(name: &str) -> PathBuf {
    let path = fixtures_dir().join(format!("libfixture_{name}.so"));
    assert!(path.is_file(), "fixture {} was not built", path.display());
    path
}

/// `tests/fixtures/programs/<program>.c`: the C programs the tests compile, shared with the
/// valgrind and gperftools crates' own tests, which check the same programs without the host.
pub fn fixture_program(program: &str) -> PathBuf {
    root()
        .join("tests/fixtures/programs")
        .join(format!("{program}.c"))
}

/// Compiles `fixture_program(program)` into `exe` with `cc -g -O0 -pthread`: debug info for the
/// tools' function, file and line, and no optimisation, so the lines stay where the programs'
/// markers say.
pub fn compile_fixture_program(program: &str, exe: &Path) {
    let output = Command::new("cc")
        .args(["-g", "-O0", "-pthread", "-o"])
        .arg(exe)
        .arg(fixture_program(program))
        .output()
        .expect("cc runs");
    assert!(
        output.status.success(),
        "compiling {program}: {}",
        stderr(&output)
    );
}

/// Copies every library `ldd` names for `binaries` into `rootfs`, at the same path, so that
/// the binaries run in an image that has nothing else.
pub fn copy_linked_libraries(rootfs: &Path, binaries: impl IntoIterator<Item = impl AsRef<OsStr>>) {
    for binary in binaries {
        let output = Command::new("ldd").arg(binary).output().expect("ldd runs");
        for library in String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
        {
            let inside = rootfs.join(library.trim_start_matches('/'));
            std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
            std::fs::copy(library, &inside).unwrap();
        }
    }
}

/// The program `name` on the PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Copies plugin-api into `dest` with another version; with `as_of_1_0`, the parts marked
/// `// since 1.N: begin` … `// since 1.N: end` are left out, which gives the 1.0 interface.
fn plugin_api_copy(dest: &Path, version: &str, as_of_1_0: bool) {
    std::fs::create_dir_all(dest.join("src")).unwrap();
    for entry in std::fs::read_dir(root().join("plugin-api/src")).unwrap() {
        let entry = entry.unwrap();
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let text = if as_of_1_0 {
            strip_minor_additions(&text)
        } else {
            text
        };
        std::fs::write(dest.join("src").join(entry.file_name()), text).unwrap();
    }
    let manifest = std::fs::read_to_string(root().join("plugin-api/Cargo.toml")).unwrap();
    let current = format!("version = \"{}\"", current_api_version());
    assert!(
        manifest.contains(&current),
        "plugin-api/Cargo.toml has no `{current}`"
    );
    std::fs::write(
        dest.join("Cargo.toml"),
        manifest.replacen(&current, &format!("version = \"{version}\""), 1),
    )
    .unwrap();
}

/// The text without the parts marked `// since 1.N: begin` … `// since 1.N: end`.
fn strip_minor_additions(text: &str) -> String {
    let marker = |line: &str, end: &str| {
        line.strip_prefix("// since 1.")
            .and_then(|rest| rest.strip_suffix(end))
            .is_some_and(|minor| minor.parse::<u32>().is_ok())
    };
    let mut kept = String::new();
    let mut skipping = false;
    for line in text.lines() {
        match line.trim() {
            line if marker(line, ": begin") => skipping = true,
            line if marker(line, ": end") => skipping = false,
            _ if !skipping => {
                kept.push_str(line);
                kept.push('\n');
            }
            _ => {}
        }
    }
    kept
}

/// Builds the crate in `crate_dir` (its own workspace) into `target`, once per test run.
fn build_standalone(crate_dir: &Path, target: &Path, what: &str) {
    let mut build = cargo();
    build
        .args(["build", "--quiet", "--manifest-path"])
        .arg(crate_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target);
    run_build(build, what);
}

/// A plugin built against a copy of plugin-api whose major version is one higher.
pub fn api_major_fixture() -> &'static Path {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        let work = root().join("target/fixtures-api-major");
        let crate_dir = work.join("crate");
        let src = root().join("tests/fixtures/api_major");
        std::fs::create_dir_all(crate_dir.join("src")).unwrap();
        std::fs::copy(src.join("Cargo.toml"), crate_dir.join("Cargo.toml")).unwrap();
        std::fs::copy(src.join("src/lib.rs"), crate_dir.join("src/lib.rs")).unwrap();
        let major: u32 = current_api_version()
            .split('.')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        plugin_api_copy(
            &crate_dir.join("plugin-api"),
            &format!("{}.0.0", major + 1),
            false,
        );
        build_standalone(
            &crate_dir,
            &work.join("target"),
            "the plugin built against another plugin-api major version",
        );
        work.join("target/debug/libfixture_api_major.so")
    })
}

/// The shipped `localhost` plugin, built from its own source against plugin-api 1.0 (the
/// current source without what minor versions added since): what an older plugin looks like to this host.
pub fn localhost_built_against_1_0() -> &'static Path {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        let work = root().join("target/fixtures-api-1.0");
        let crate_dir = work.join("localhost");
        std::fs::create_dir_all(crate_dir.join("src")).unwrap();
        for source in std::fs::read_dir(root().join("plugins/localhost/src")).unwrap() {
            let source = source.unwrap().path();
            std::fs::copy(
                &source,
                crate_dir.join("src").join(source.file_name().unwrap()),
            )
            .unwrap();
        }
        std::fs::write(
            crate_dir.join("Cargo.toml"),
            r#"[package]
name = "panther-plugin-localhost"
version = "0.1.0"
edition = "2021"
description = "localhost, built against panther-plugin-api 1.0"

[workspace]

[lib]
crate-type = ["cdylib"]

[dependencies]
panther-plugin-api = { path = "../plugin-api" }
serde = { version = "1", features = ["derive"] }
schemars = "1"
anyhow = "1"
tracing = "0.1"
regex = "1"
humantime-serde = "1"
"#,
        )
        .unwrap();
        plugin_api_copy(&work.join("plugin-api"), "1.0.0", true);
        build_standalone(
            &crate_dir,
            &work.join("target"),
            "localhost against plugin-api 1.0",
        );
        work.join("target/debug/libpanther_plugin_localhost.so")
    })
}

/// The out-of-tree example plugin `examples/time-plugin` (GNU time around every service),
/// built once per test run; the folder to pass as `--plugin-dir`.
pub fn time_plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = root().join("target/scaffold");
        build_standalone(
            &root().join("examples/time-plugin"),
            &target,
            "the example plugin examples/time-plugin",
        );
        target.join("debug")
    })
}

/// The plugin-api version this host was built with.
pub fn current_api_version() -> String {
    panther_host::api::API_VERSION.to_string()
}

/// A fresh folder for one test, removed when dropped (kept when the test panics, to look at).
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    /// A new empty sandbox.
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::Builder::new()
                .prefix("panther-test-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file inside the sandbox and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// A plugin folder inside the sandbox holding copies of these libraries.
    pub fn plugin_dir(&self, name: &str, libraries: &[PathBuf]) -> PathBuf {
        let dir = self.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for lib in libraries {
            std::fs::copy(lib, dir.join(lib.file_name().unwrap())).unwrap();
        }
        dir
    }

    /// Runs the host with `args`, from the sandbox, with the shipped plugins and the fixtures
    /// as plugin folders.
    pub fn host(&self, args: &[&str]) -> Output {
        self.host_command(args).output().expect("panther-host runs")
    }

    /// The sandbox's own plugin manifest cache folder, so tests share no cache.
    pub fn cache_dir(&self) -> PathBuf {
        self.path().join("cache")
    }

    /// The host run from the sandbox with its own cache and an empty settings file, and
    /// only the plugin folders the test adds (`--no-default-plugins`).
    pub fn bare_host(&self) -> Command {
        let settings = self.path().join("empty-settings.toml");
        std::fs::write(&settings, "").unwrap();
        let mut command = Command::new(host_bin());
        command
            .current_dir(self.path())
            .env_remove("PANTHER_PLUGIN_PATH")
            .env_remove("PANTHER_PROBE")
            .env_remove("RUST_LOG")
            .env("PANTHER_CACHE_DIR", self.cache_dir())
            .env("PANTHER_CONFIG", settings)
            .arg("--no-default-plugins");
        command
    }

    /// The command [`Sandbox::host`] runs, to start it in the background.
    pub fn host_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(host_bin());
        command
            .current_dir(self.path())
            .env("PANTHER_CACHE_DIR", self.cache_dir())
            .env_remove("PANTHER_PLUGIN_PATH")
            .env_remove("RUST_LOG")
            .env(
                "PANTHER_CONFIG",
                self.path().join("no-such-settings-file-is-needed.toml"),
            )
            .arg("--plugin-dir")
            .arg(build_dir())
            .arg("--plugin-dir")
            .arg(fixtures_dir())
            .args(args);
        // An explicit settings file must exist; point at an empty one.
        std::fs::write(self.path().join("no-such-settings-file-is-needed.toml"), "").unwrap();
        command
    }

    /// The single results folder of an experiment (`results/<name>/<timestamp>`).
    pub fn results(&self, experiment: &str) -> PathBuf {
        let dir = self.path().join("results").join(experiment);
        let mut runs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("no results folder {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        runs.sort();
        runs.pop().expect("one run")
    }
}

/// Stdout as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stderr as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The exit code, failing the test when the process was killed.
pub fn code(output: &Output) -> i32 {
    output
        .status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {output:?}"))
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The events of a run, parsed.
pub fn events(results: &Path) -> Vec<Value> {
    std::fs::read_to_string(results.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line {l}: {e}")))
        .collect()
}

/// A run's `result.json`, parsed.
pub fn result_of(run: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("result.json")).unwrap()).unwrap()
}

/// A run's `monitoring/<service>/<instance>.json`, parsed.
pub fn monitoring(run: &Path, service: &str, instance: &str) -> Value {
    let path = run
        .join("monitoring")
        .join(service)
        .join(format!("{instance}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("no monitoring data {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The pids of the services a run deployed, from its events; a service without a pid (one
/// the host did not start itself) has none to give.
pub fn deployed_pids(run: &Path) -> Vec<u32> {
    events(run)
        .iter()
        .filter(|e| e["event"] == "service_deployed")
        .filter_map(|e| e["pid"].as_u64().map(|p| p as u32))
        .collect()
}

/// Waits, `within` at most, until the one run under `results_root` has written `count`
/// `service_deployed` events; returns the run folder.
pub fn wait_for_deployments(results_root: &Path, count: usize, within: Duration) -> PathBuf {
    let deadline = Instant::now() + within;
    loop {
        assert!(
            Instant::now() < deadline,
            "services were not deployed in time"
        );
        let run = std::fs::read_dir(results_root)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.path());
        if let Some(run) = run.filter(|r| r.join("events.jsonl").exists()) {
            let deployed = events(&run)
                .iter()
                .filter(|e| e["event"] == "service_deployed")
                .count();
            if deployed == count {
                return run;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a process with this pid exists and has not ended. A zombie has ended: in a
/// container whose init does not reap orphans, killed grandchildren stay zombies.
pub fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|(state, _)| state != "Z")
}

/// Every live (non-zombie) process in process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat_fields(pid).is_some_and(|(state, group)| state != "Z" && group == pgid))
        .collect()
}

/// The state letter and process group of a process, from `/proc/PID/stat`.
fn stat_fields(pid: u32) -> Option<(String, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut after = stat.rsplit_once(')')?.1.split_whitespace();
    let state = after.next()?.to_string();
    let _ppid = after.next()?;
    Some((state, after.next()?.parse().ok()?))
}

/// The quickstart's echo experiment on a free port, with extra TOML appended.
pub fn echo_experiment(name: &str, extra: &str) -> String {
    let port = free_port();
    format!(
        r#"[experiment]
name = "{name}"
timeout = "20s"

[[service]]
name = "server"
command = ["{server}", "--port", "{port}"]
ready = {{ tcp = {port}, timeout = "5s" }}

[[service]]
name = "client"
command = ["{client}", "127.0.0.1:{port}", "hello"]
depends_on = ["server"]
role = "client"
{extra}
"#,
        server = program("echo-server"),
        client = program("echo-client"),
    )
}

/// Held by tests that run `clean` or kill a host for `clean` to find: `clean` ends and removes
/// what every host that is gone left behind, so two such tests at once would take each
/// other's leftovers.
pub fn clean_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
