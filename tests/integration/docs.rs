//! The documentation's commands, run as written, and `panther-host new` for every type.

use std::process::Command;

use crate::support::*;

/// A shared target folder for the projects these tests build, so the plugin-api dependency
/// tree compiles once.
fn scaffold_target() -> std::path::PathBuf {
    root().join("target/scaffold")
}

/// Runs a shell script with `panther-host` on `PATH`, in `dir`.
fn shell(dir: &std::path::Path, script: &str) -> std::process::Output {
    let path = format!(
        "{}:{}",
        build_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", scaffold_target())
        // The test's own plugin manifest cache.
        .env("PANTHER_CACHE_DIR", dir.join(".panther-cache"))
        .env_remove("PANTHER_PLUGIN_PATH")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// The ```sh blocks of a Markdown file, in order.
fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn the_plugin_guide_works() {
    let sandbox = Sandbox::new();
    let guide = std::fs::read_to_string(root().join("docs/writing-plugins.md")).unwrap();
    let script = sh_blocks(&guide).join("\n");
    assert!(
        script.contains("panther-host new reporter markdown_summary"),
        "the guide's commands were found: {script}"
    );
    let output = shell(sandbox.path(), &script);
    assert!(
        output.status.success(),
        "the guide failed:\n{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    let out = stdout(&output);
    assert!(out.contains("markdown_summary 0.1.0 (reporter)"), "{out}");
    assert!(
        out.contains("| greeter | passed |"),
        "the report was written: {out}"
    );
}

#[test]
fn new_writes_a_project_of_every_type_that_builds_and_loads() {
    let sandbox = Sandbox::new();
    let output = shell(
        sandbox.path(),
        "panther-host new network-environment my_network
         panther-host new execution-environment my_wrapper
         panther-host new reporter my_report
         for p in my_network my_wrapper my_report; do (cd $p && cargo build --quiet); done",
    );
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    let listing = Command::new(host_bin())
        .env("PANTHER_CACHE_DIR", sandbox.cache_dir())
        .args([
            "--no-default-plugins",
            "list",
            "--format",
            "json",
            "--plugin-dir",
        ])
        .arg(scaffold_target().join("debug"))
        .output()
        .unwrap();
    let listing: serde_json::Value = serde_json::from_str(&stdout(&listing)).unwrap();
    for (name, kind) in [
        ("my_network", "network_environment"),
        ("my_wrapper", "execution_environment"),
        ("my_report", "reporter"),
    ] {
        let plugin = listing["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} not loaded: {listing:#}"));
        assert_eq!(plugin["kind"], kind);
    }

    // The generated network environment and execution environment really work.
    let experiment = sandbox.write(
        "e.toml",
        "[experiment]\nname = \"generated\"\n\n[network]\nplugin = \"my_network\"\n\n[[service]]\nname = \"show\"\ncommand = [\"/bin/sh\", \"-c\", \"echo $GREETING\"]\nrole = \"client\"\n\n[[execution]]\nplugin = \"my_wrapper\"\nvars = { GREETING = \"hi there\" }\n",
    );
    let output = sandbox
        .host_command(&[
            "run",
            experiment.to_str().unwrap(),
            "--plugin-dir",
            scaffold_target().join("debug").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let printed =
        std::fs::read_to_string(sandbox.results("generated").join("services/show.stdout")).unwrap();
    assert_eq!(printed, "hi there\n");

    // A bad name is refused before anything is written.
    let output = shell(sandbox.path(), "panther-host new reporter Bad-Name");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("`Bad-Name` is not a valid plugin name"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn new_far_from_the_checkout_writes_a_relative_api_path_that_builds() {
    // A temporary folder outside the checkout, and `--api-path` typed relative to where the
    // user stands: the project must name the crate relative to itself, and build.
    let sandbox = Sandbox::new();
    let api = root().join("plugin-api").canonicalize().unwrap();
    let here = sandbox.path().canonicalize().unwrap();
    let relative = pathdiff::diff_paths(&api, &here).unwrap();
    let output = shell(
        sandbox.path(),
        &format!(
            "mkdir -p deep/er && panther-host new reporter far_report --path deep/er/far_report --api-path {}
             (cd deep/er/far_report && cargo build --quiet)",
            relative.display()
        ),
    );
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    let manifest =
        std::fs::read_to_string(sandbox.path().join("deep/er/far_report/Cargo.toml")).unwrap();
    let line = manifest
        .lines()
        .find(|l| l.starts_with("panther-plugin-api"))
        .unwrap();
    let written = line
        .split("path = \"")
        .nth(1)
        .unwrap()
        .trim_end_matches("\" }");
    assert!(
        written.starts_with("../../../"),
        "the path is relative to the project: {line}"
    );
    assert_eq!(
        here.join("deep/er/far_report")
            .join(written)
            .canonicalize()
            .unwrap(),
        api
    );
    let listing = Command::new(host_bin())
        .args(["--no-default-plugins", "info", "far_report", "--plugin-dir"])
        .arg(scaffold_target().join("debug"))
        .output()
        .unwrap();
    assert!(
        stdout(&listing).contains("far_report 0.1.0 (reporter)"),
        "{}{}",
        stdout(&listing),
        stderr(&listing)
    );

    // A folder that is not the plugin-api is refused before anything is written.
    let output = shell(
        sandbox.path(),
        "panther-host new reporter other --api-path deep",
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("deep is not a panther-plugin-api source folder"),
        "{}",
        stderr(&output)
    );
    assert!(!sandbox.path().join("other").exists());
}

#[test]
fn the_out_of_tree_example_plugin_builds_loads_and_measures() {
    let sandbox = Sandbox::new();
    let example = root().join("examples/time-plugin");
    let output = shell(&example, "cargo build --quiet");
    assert!(output.status.success(), "{}", stderr(&output));
    let experiment = sandbox.write(
        "e.toml",
        "[experiment]\nname = \"timed\"\n\n[[service]]\nname = \"hog\"\ncommand = [\"python3\", \"-c\", \"b = bytearray(80 << 20)\"]\nrole = \"client\"\n\n[[execution]]\nplugin = \"time\"\n",
    );
    let output = sandbox
        .host_command(&[
            "run",
            experiment.to_str().unwrap(),
            "--plugin-dir",
            scaffold_target().join("debug").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let data: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(sandbox.results("timed").join("monitoring/hog/time.json"))
            .unwrap(),
    )
    .unwrap();
    let peak = data["max_rss_kib"].as_u64().unwrap();
    assert!(peak >= 80 * 1024, "80 MiB were allocated: {data:#}");
    assert_eq!(data["exit_status"], 0.0);
    assert!(
        data["voluntary_context_switches"].as_f64().is_some(),
        "{data:#}"
    );

    // Its threshold fails the service.
    let text = std::fs::read_to_string(&experiment).unwrap() + "max_rss_kib = 1000\n";
    let strict = sandbox.write("strict.toml", &text.replace("\"timed\"", "\"strict\""));
    let output = sandbox
        .host_command(&[
            "run",
            strict.to_str().unwrap(),
            "--plugin-dir",
            scaffold_target().join("debug").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("time: peak resident memory"),
        "{}",
        stderr(&output)
    );
}
