//! junit.xml: one test suite per mode, one test case per scenario run; a failure carries the
//! failing verdicts, an errored run an `error` element. A flaky run is a success carrying its
//! failed attempts as `flakyFailure` / `flakyError` elements (the convention nextest and
//! Surefire use), so dashboards show it passed and that it did not pass at once.

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestRerun, TestSuite};

use super::{Attempt, RunReport, ScenarioReport, ScenarioStatus};

fn rerun(a: &Attempt) -> TestRerun {
    let kind = if a.status == ScenarioStatus::Errored {
        NonSuccessKind::Error
    } else {
        NonSuccessKind::Failure
    };
    let mut rerun = TestRerun::new(kind);
    rerun
        .set_time(Duration::from_millis(a.duration_ms))
        .set_message(format!("{} checks failed", a.failures.len()))
        .set_type(if kind == NonSuccessKind::Error {
            "error"
        } else {
            "check"
        })
        .set_description(a.failures.join("\n"));
    rerun
}

fn test_case(s: &ScenarioReport) -> TestCase {
    let failures = s.failures();
    let status = match s.status {
        ScenarioStatus::Passed => TestCaseStatus::success(),
        ScenarioStatus::Flaky => {
            let mut status = TestCaseStatus::success();
            status.add_reruns(s.retries.iter().map(rerun));
            status
        }
        ScenarioStatus::Failed => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status
                .set_message(format!("{} checks failed", failures.len()))
                .set_type("check")
                .set_description(failures.join("\n"));
            status
        }
        ScenarioStatus::Errored => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status
                .set_message(s.error.clone().unwrap_or_else(|| "errored".into()))
                .set_type("error")
                .set_description(failures.join("\n"));
            status.add_reruns(s.retries.iter().map(rerun));
            status
        }
    };
    let mut case = TestCase::new(s.name.clone(), status);
    case.set_classname(format!("qlab.{}", s.mode))
        .set_time(Duration::from_millis(s.duration_ms))
        // The replay command is what a person needs next to a red test; the makespans against
        // their lower bounds say how well the run was scheduled.
        .set_system_out(format!(
            "replay: {}\nfile: {}\nseed: {}\nmakespan_ms: {} (lower_bound_ms: {})\n\
             confirmed_makespan_ms: {} (confirmed_lower_bound_ms: {})",
            s.replay,
            s.file,
            s.seed,
            s.measures.makespan_ms,
            s.measures.lower_bound_ms,
            s.measures.confirmed_makespan_ms,
            s.measures.confirmed_lower_bound_ms
        ));
    case
}

/// junit.xml as text. Suites are ordered by mode name, cases by run order within a mode.
pub fn render_junit(report: &RunReport) -> io::Result<String> {
    let mut by_mode: BTreeMap<&str, Vec<&ScenarioReport>> = BTreeMap::new();
    for s in &report.scenarios {
        by_mode.entry(s.mode.as_str()).or_default().push(s);
    }
    let mut junit = Report::new("qlab");
    let mut total_ms = 0u64;
    for (mode, scenarios) in by_mode {
        let mut suite = TestSuite::new(mode);
        let suite_ms = scenarios
            .iter()
            .fold(0u64, |sum, s| sum.saturating_add(s.duration_ms));
        total_ms = total_ms.saturating_add(suite_ms);
        suite.set_time(Duration::from_millis(suite_ms));
        suite.add_test_cases(scenarios.into_iter().map(test_case));
        junit.add_test_suite(suite);
    }
    junit.set_time(Duration::from_millis(total_ms));
    junit.to_string().map_err(io::Error::other)
}
