//! `json`: writes the whole [`RunResult`] as JSON, to a file (relative paths land in the run's
//! results folder) or to stdout with `path = "-"`.

use std::{io::Write, path::PathBuf};

use panther_plugin_api::prelude::*;

/// The `[[report]]` section of a `json` instance.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to write: a file path (relative to the results folder) or `-` for stdout.
    #[serde(default = "default_path")]
    pub path: String,
    /// Indent the JSON for reading.
    #[serde(default = "yes")]
    pub pretty: bool,
}

fn default_path() -> String {
    "result.json".into()
}

fn yes() -> bool {
    true
}

/// Writes the run result as JSON.
pub struct JsonReporter {
    config: Config,
    results_dir: PathBuf,
}

impl Plugin for JsonReporter {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("json").capability(capability::REPORT)
    }

    fn claims(config: &Config) -> Vec<Resource> {
        vec![claim_for(&config.path)]
    }

    fn new(config: Config, ctx: Context) -> anyhow::Result<Self> {
        Ok(JsonReporter {
            config,
            results_dir: ctx.output_dir(),
        })
    }
}

/// Stdout for `-`, the file otherwise.
pub fn claim_for(path: &str) -> Resource {
    if path == "-" {
        Resource::Stdout
    } else {
        Resource::File(PathBuf::from(path))
    }
}

impl Reporter for JsonReporter {
    fn report(&mut self, run: &RunResult) -> anyhow::Result<()> {
        let text = if self.config.pretty {
            serde_json::to_string_pretty(run)?
        } else {
            serde_json::to_string(run)?
        };
        if self.config.path == "-" {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}").context("writing to stdout")?;
            return Ok(());
        }
        let path = self.results_dir.join(&self.config.path);
        tracing::debug!(path = %path.display(), "writing the JSON report");
        std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

export_plugin!(Reporter: JsonReporter);

#[cfg(test)]
mod tests {
    use panther_plugin_api::Resource;
    use panther_plugin_test::TestHost;
    use serde_json::json;

    use super::JsonReporter;

    #[test]
    fn writes_the_whole_result_into_the_results_folder() {
        let host = TestHost::new();
        let mut reporter = host
            .reporter::<JsonReporter>(json!({ "path": "out.json" }))
            .unwrap();
        let sample = TestHost::sample_result();
        reporter.report(&sample).unwrap();
        let written: panther_plugin_api::RunResult = serde_json::from_str(
            &std::fs::read_to_string(host.output_dir().join("out.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(written, sample);
    }

    #[test]
    fn claims_stdout_or_its_file() {
        let host = TestHost::new();
        assert_eq!(
            host.claims::<JsonReporter>(json!({ "path": "-" })).unwrap(),
            [Resource::Stdout]
        );
        assert_eq!(
            host.claims::<JsonReporter>(json!({})).unwrap(),
            [Resource::File("result.json".into())]
        );
        let err = host
            .reporter::<JsonReporter>(json!({ "paht": "x" }))
            .err()
            .unwrap();
        assert!(err.to_string().contains("unknown field `paht`"), "{err}");
    }
}
