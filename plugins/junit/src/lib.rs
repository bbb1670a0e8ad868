//! `junit`: writes a JUnit XML report, the format CI systems read. The experiment is a test
//! suite; each service's expectation (its exit code) is a test case. Setup errors, timeouts
//! and interruptions appear as `<error>` cases so that a run that never judged its services
//! does not look green.

use std::{io::Write, path::PathBuf};

use panther_plugin_api::prelude::*;

/// The `[[report]]` section of a `junit` instance.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to write: a file path (relative to the results folder) or `-` for stdout.
    #[serde(default = "default_path")]
    pub path: String,
}

fn default_path() -> String {
    "junit.xml".into()
}

/// Writes JUnit XML.
pub struct JunitReporter {
    config: Config,
    results_dir: PathBuf,
}

impl Plugin for JunitReporter {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("junit").capability(capability::REPORT)
    }

    fn claims(config: &Config) -> Vec<Resource> {
        if config.path == "-" {
            vec![Resource::Stdout]
        } else {
            vec![Resource::File(PathBuf::from(&config.path))]
        }
    }

    fn new(config: Config, ctx: Context) -> anyhow::Result<Self> {
        Ok(JunitReporter {
            config,
            results_dir: ctx.output_dir(),
        })
    }
}

impl Reporter for JunitReporter {
    fn report(&mut self, run: &RunResult) -> anyhow::Result<()> {
        let xml = render(run);
        if self.config.path == "-" {
            std::io::stdout()
                .lock()
                .write_all(xml.as_bytes())
                .context("writing to stdout")?;
            return Ok(());
        }
        let path = self.results_dir.join(&self.config.path);
        std::fs::write(&path, xml).with_context(|| format!("writing {}", path.display()))
    }
}

/// The XML document for a run ([`panther_junit`], the mapping the host's job report uses too).
pub fn render(run: &RunResult) -> String {
    let time = std::time::Duration::from_millis(run.duration_ms);
    panther_junit::document("panther-host", [panther_junit::suite(run)], time)
}

export_plugin!(Reporter: JunitReporter);

#[cfg(test)]
mod tests {
    use panther_plugin_api::{ProcessState, RunStatus};
    use panther_plugin_test::TestHost;
    use serde_json::json;

    use super::{render, JunitReporter};

    #[test]
    fn one_case_per_service_and_failures_escaped() {
        let mut run = TestHost::sample_result();
        let xml = render(&run);
        assert!(
            xml.contains("<testsuite name=\"sample\" tests=\"2\""),
            "{xml}"
        );
        assert!(xml.contains("failures=\"0\""), "{xml}");
        run.status = RunStatus::Failed;
        run.services[1].passed = false;
        run.services[1].state = ProcessState::Exited { code: 1 };
        run.services[1].message = Some("exited with code 1, expected <0> & \"ok\"".into());
        let xml = render(&run);
        assert!(xml.contains("failures=\"1\""), "{xml}");
        assert!(
            xml.contains("message=\"exited with code 1, expected &lt;0&gt; &amp; &quot;ok&quot;\""),
            "{xml}"
        );
    }

    #[test]
    fn an_interrupted_run_is_an_error_case() {
        let mut run = TestHost::sample_result();
        run.status = RunStatus::Interrupted;
        run.errors.push("Ctrl-C".into());
        let xml = render(&run);
        assert!(
            xml.contains("errors=\"1\"")
                && xml
                    .contains("<error message=\"interrupted\" type=\"interrupted\">Ctrl-C</error>"),
            "{xml}"
        );
    }

    #[test]
    fn writes_its_file_through_the_plugin_entry_points() {
        let host = TestHost::new();
        let mut reporter = host.reporter::<JunitReporter>(json!({})).unwrap();
        reporter.report(&TestHost::sample_result()).unwrap();
        assert!(std::fs::read_to_string(host.output_dir().join("junit.xml"))
            .unwrap()
            .starts_with("<?xml"));
    }
}
