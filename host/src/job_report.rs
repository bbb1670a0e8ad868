//! The job-level reports: `job.json` (every experiment's result) and `junit.xml` (one test
//! suite per experiment, one test case per service).

use std::path::Path;

use crate::job::JobResult;

/// Writes `job.json` and `junit.xml` into `dir`.
pub fn write(result: &JobResult, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(result).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("job.json"), json + "\n")?;
    std::fs::write(dir.join("junit.xml"), junit(result))
}

/// JUnit XML with one `<testsuite>` per experiment ([`panther_junit`], the mapping of the
/// `junit` reporter), an experiment that could not run as one error.
pub fn junit(result: &JobResult) -> String {
    let suites = result.outcomes.iter().map(|outcome| match &outcome.result {
        Some(run) => panther_junit::suite(run),
        None => panther_junit::not_run(
            &outcome.experiment,
            outcome.status(),
            outcome.error.as_deref().unwrap_or("it did not run"),
        ),
    });
    let time = std::time::Duration::from_millis(result.duration_ms);
    panther_junit::document(&result.job, suites, time)
}
