//! The job-level reports: `job.json` (every experiment's result) and `junit.xml` (one test
//! suite per experiment, one test case per service).

use std::{fmt::Write as _, path::Path};

use panther_plugin_api::RunStatus;

use crate::job::JobResult;

/// Writes `job.json` and `junit.xml` into `dir`.
pub fn write(result: &JobResult, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(result).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("job.json"), json + "\n")?;
    std::fs::write(dir.join("junit.xml"), junit(result))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// JUnit XML with one `<testsuite>` per experiment.
pub fn junit(result: &JobResult) -> String {
    let mut suites = String::new();
    let (mut tests, mut failures, mut errors) = (0, 0, 0);
    for outcome in &result.outcomes {
        let name = escape(&outcome.experiment);
        let (mut s_tests, mut s_failures, mut s_errors, mut cases) = (0, 0, 0, String::new());
        let seconds = outcome
            .result
            .as_ref()
            .map_or(0.0, |r| r.duration_ms as f64 / 1000.0);
        if let Some(run) = &outcome.result {
            for service in &run.services {
                s_tests += 1;
                let _ = write!(
                    cases,
                    "    <testcase classname=\"{name}\" name=\"{} exits with code {}\">",
                    escape(&service.name),
                    service.expected_exit
                );
                if !service.passed {
                    s_failures += 1;
                    let _ = write!(
                        cases,
                        "<failure message=\"{}\"/>",
                        escape(service.message.as_deref().unwrap_or("failed"))
                    );
                }
                cases.push_str("</testcase>\n");
            }
        }
        let run_error = match (&outcome.error, outcome.status()) {
            (Some(error), _) => Some(error.clone()),
            (None, RunStatus::Error | RunStatus::TimedOut | RunStatus::Interrupted) => Some(
                outcome
                    .result
                    .as_ref()
                    .map(|r| r.errors.join("; "))
                    .unwrap_or_default(),
            ),
            _ => None,
        };
        if let Some(error) = run_error {
            s_tests += 1;
            s_errors += 1;
            let kind = outcome.status().as_str();
            let _ = writeln!(cases, "    <testcase classname=\"{name}\" name=\"run\"><error type=\"{kind}\" message=\"{}\"/></testcase>", escape(&error));
        }
        let _ = write!(
            suites,
            "  <testsuite name=\"{name}\" tests=\"{s_tests}\" failures=\"{s_failures}\" errors=\"{s_errors}\" time=\"{seconds:.3}\">\n{cases}  </testsuite>\n"
        );
        tests += s_tests;
        failures += s_failures;
        errors += s_errors;
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{:.3}\">\n{suites}</testsuites>\n",
        escape(&result.job),
        result.duration_ms as f64 / 1000.0
    )
}
