//! JUnit XML, the format CI systems read, for runs of experiments: an experiment is a test
//! suite, each service's expectation (its exit code) a test case. A run that never judged its
//! services (a setup error, a timeout, an interruption, a job's experiment that could not
//! start) gets an `<error>` case named `run`, so that it does not look green.
//!
//! One mapping for the `junit` reporter (one run) and the host's job report (one suite per
//! experiment), written by `quick-junit`.

use std::time::Duration;

use panther_plugin_api::{RunResult, RunStatus};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

/// The test suite of one run.
pub fn suite(run: &RunResult) -> TestSuite {
    let time = Duration::from_millis(run.duration_ms);
    let mut suite = TestSuite::new(run.experiment.as_str());
    suite.set_time(time);
    if let Ok(started) = chrono::DateTime::parse_from_rfc3339(&run.started_at) {
        suite.set_timestamp(started);
    }
    for service in &run.services {
        let name = format!("{} exits with code {}", service.name, service.expected_exit);
        let status = if service.passed {
            TestCaseStatus::success()
        } else {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status
                .set_message(service.message.as_deref().unwrap_or("failed"))
                .set_description(service.state.to_string());
            status
        };
        let mut case = TestCase::new(name, status);
        case.set_classname(run.experiment.as_str())
            .set_time(time)
            .set_system_out(service.stdout_log.display().to_string())
            .set_system_err(service.stderr_log.display().to_string());
        suite.add_test_case(case);
    }
    let unjudged = matches!(
        run.status,
        RunStatus::TimedOut | RunStatus::Interrupted | RunStatus::Error
    );
    if unjudged {
        suite.add_test_case(run_error(
            &run.experiment,
            run.status,
            &run.errors.join("\n"),
            time,
        ));
    }
    suite
}

/// The test suite of an experiment that produced no run (it could not start): one error.
pub fn not_run(experiment: &str, status: RunStatus, error: &str) -> TestSuite {
    let mut suite = TestSuite::new(experiment);
    suite.add_test_case(run_error(experiment, status, error, Duration::ZERO));
    suite
}

/// The `run` case of a run that ended without judging its services.
fn run_error(experiment: &str, status: RunStatus, detail: &str, time: Duration) -> TestCase {
    let mut error = TestCaseStatus::non_success(NonSuccessKind::Error);
    error
        .set_type(status.as_str())
        .set_message(status.as_str())
        .set_description(detail);
    let mut case = TestCase::new("run", error);
    case.set_classname(experiment).set_time(time);
    case
}

/// The XML document of `suites` under the name `name` (`panther-host` for one run, the job's
/// name for a job).
pub fn document(name: &str, suites: impl IntoIterator<Item = TestSuite>, time: Duration) -> String {
    let mut report = Report::new(name);
    report.set_time(time);
    report.add_test_suites(suites);
    report
        .to_string()
        .unwrap_or_else(|err| format!("<!-- the JUnit report could not be written: {err} -->\n"))
}

#[cfg(test)]
mod tests {
    use panther_plugin_api::ProcessState;
    use panther_plugin_test::TestHost;

    use super::*;

    fn xml(run: &RunResult) -> String {
        document(
            "panther-host",
            [suite(run)],
            Duration::from_millis(run.duration_ms),
        )
    }

    #[test]
    fn one_case_per_service_and_failures_escaped() {
        let mut run = TestHost::sample_result();
        let text = xml(&run);
        assert!(
            text.contains("<testsuite name=\"sample\" tests=\"2\""),
            "{text}"
        );
        assert!(text.contains("failures=\"0\""), "{text}");
        run.status = RunStatus::Failed;
        run.services[1].passed = false;
        run.services[1].state = ProcessState::Exited { code: 1 };
        run.services[1].message = Some("exited with code 1, expected <0> & \"ok\"".into());
        let text = xml(&run);
        assert!(text.contains("failures=\"1\""), "{text}");
        assert!(
            text.contains(
                "message=\"exited with code 1, expected &lt;0&gt; &amp; &quot;ok&quot;\""
            ),
            "{text}"
        );
    }

    #[test]
    fn a_run_that_judged_nothing_is_an_error_case() {
        let mut run = TestHost::sample_result();
        run.status = RunStatus::Interrupted;
        run.errors.push("Ctrl-C".into());
        let text = xml(&run);
        assert!(text.contains("errors=\"1\""), "{text}");
        assert!(
            text.contains("<error message=\"interrupted\" type=\"interrupted\">Ctrl-C</error>"),
            "{text}"
        );
        let text = document(
            "job",
            [not_run("broken", RunStatus::Error, "no such plugin")],
            Duration::ZERO,
        );
        assert!(
            text.contains("<testsuite name=\"broken\" tests=\"1\""),
            "{text}"
        );
        assert!(text.contains("no such plugin"), "{text}");
    }
}
