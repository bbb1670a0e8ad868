//! The test harness.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
};

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

/// A plugin built against a copy of plugin-api whose major version is one higher.
pub fn api_major_fixture() -> &'static Path {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        let work = root().join("target/fixtures-api-major");
        let crate_dir = work.join("crate");
        let api_copy = crate_dir.join("plugin-api");
        std::fs::create_dir_all(api_copy.join("src")).unwrap();
        let src = root().join("tests/fixtures/api_major");
        std::fs::copy(src.join("Cargo.toml"), crate_dir.join("Cargo.toml")).unwrap();
        std::fs::create_dir_all(crate_dir.join("src")).unwrap();
        std::fs::copy(src.join("src/lib.rs"), crate_dir.join("src/lib.rs")).unwrap();
        for entry in std::fs::read_dir(root().join("plugin-api/src")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), api_copy.join("src").join(entry.file_name())).unwrap();
        }
        let manifest = std::fs::read_to_string(root().join("plugin-api/Cargo.toml")).unwrap();
        let api_version = current_api_version();
        let bumped = format!(
            "{}.0.0",
            api_version
                .split('.')
                .next()
                .unwrap()
                .parse::<u32>()
                .unwrap()
                + 1
        );
        let manifest = manifest.replacen(
            &format!("version = \"{api_version}\""),
            &format!("version = \"{bumped}\""),
            1,
        );
        assert!(
            manifest.contains(&bumped),
            "could not bump the plugin-api version"
        );
        std::fs::write(api_copy.join("Cargo.toml"), manifest).unwrap();
        let mut build = cargo();
        build
            .args(["build", "--quiet", "--manifest-path"])
            .arg(crate_dir.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(work.join("target"));
        run_build(
            build,
            "the plugin built against another plugin-api major version",
        );
        work.join("target/debug/libfixture_api_major.so")
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

    /// The command [`Sandbox::host`] runs, to start it in the background.
    pub fn host_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(host_bin());
        command
            .current_dir(self.path())
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
pub fn events(results: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(results.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line {l}: {e}")))
        .collect()
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
