//! report.json, junit.xml and summary.md (formats.md, "Reports").
//!
//! A [`RunReport`] is plain data the runner fills in; [`write_reports`] renders it three ways:
//! report.json for machines (schema `qlab.report/v1`, stable key order), junit.xml for CI
//! dashboards, summary.md for a person reading a CI log or a pull request.

mod junit;
mod markdown;

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize, Serializer};

pub use crate::check::{ExpectationVerdict, InvariantVerdict, Measures, Status, Summary};
pub use crate::model::history::FaultAccount;
pub use junit::render_junit;
pub use markdown::render_summary;

/// The `schema` of report.json.
pub const SCHEMA: &str = "qlab.report/v1";

/// How one scenario run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScenarioStatus {
    /// Every invariant and expectation held (or exactly the expected violations showed).
    Passed,
    /// Some check did not hold.
    Failed,
    /// The scenario could not be run (bad input, the lab itself failed); see `error`.
    Errored,
}

impl ScenarioStatus {
    /// The spelling used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ScenarioStatus::Passed => "passed",
            ScenarioStatus::Failed => "failed",
            ScenarioStatus::Errored => "errored",
        }
    }
}

/// One scenario run in one mode: an element of report.json's `scenarios`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReport {
    /// Scenario name.
    pub name: String,
    /// Scenario file, as given on the command line.
    pub file: String,
    /// `sim` or `wire`.
    pub mode: String,
    /// Seed the run used.
    pub seed: u64,
    /// Passed, failed or errored.
    pub status: ScenarioStatus,
    /// Wall-clock duration of the run.
    pub duration_ms: u64,
    /// INV-1 … INV-12.
    pub invariants: Vec<InvariantVerdict>,
    /// One verdict per `[expect]` key.
    pub expectations: Vec<ExpectationVerdict>,
    /// Time-to-contain and friends.
    pub measures: Measures,
    /// What each of the scenario's `[[faults]]` did, in file order (empty when errored).
    #[serde(default)]
    pub faults: Vec<FaultAccount>,
    /// Digest of the history (INV-11).
    pub history_digest: String,
    /// The exact command that reruns this scenario.
    pub replay: String,
    /// Why an errored scenario could not run; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ScenarioReport {
    /// Failed invariants and expectations as `INV-3: detail` / `what: detail` lines, and the
    /// error of an errored run.
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self.error.iter().map(|e| format!("error: {e}")).collect();
        out.extend(
            self.invariants
                .iter()
                .filter(|v| v.status == Status::Failed)
                .map(|v| format!("{}: {}", v.id, v.detail)),
        );
        out.extend(
            self.expectations
                .iter()
                .filter(|v| v.status == Status::Failed)
                .map(|v| format!("{}: {}", v.what, v.detail)),
        );
        out
    }
}

/// The counts of report.json's `summary`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Scenario runs.
    pub scenarios: usize,
    /// Passed runs.
    pub passed: usize,
    /// Failed runs.
    pub failed: usize,
    /// Errored runs.
    pub errored: usize,
}

/// A whole `qlab run`. Serializes as report.json (`schema` and `summary` are derived, so they
/// can never disagree with the scenarios); reads back from it too.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RunReport {
    /// `CARGO_PKG_VERSION` of qlab.
    pub tool_version: String,
    /// Commit qlab was built from (`unknown` when not known).
    pub git_sha: String,
    /// RFC 3339 start time.
    pub started_at: String,
    /// `--mode`: `sim`, `wire` or `both`.
    pub mode: String,
    /// `--seed`, when given (each scenario records the seed it used).
    pub seed: Option<u64>,
    /// Every scenario run, in run order.
    pub scenarios: Vec<ScenarioReport>,
}

impl RunReport {
    /// Counts of passed, failed and errored runs.
    pub fn summary(&self) -> RunSummary {
        let count = |s: ScenarioStatus| self.scenarios.iter().filter(|r| r.status == s).count();
        RunSummary {
            scenarios: self.scenarios.len(),
            passed: count(ScenarioStatus::Passed),
            failed: count(ScenarioStatus::Failed),
            errored: count(ScenarioStatus::Errored),
        }
    }

    /// `(scenario run, fault)` of every declared fault that never fired, in run order: a
    /// warning in summary.md, a failure under `--strict-faults`.
    pub fn unfired_faults(&self) -> Vec<(&ScenarioReport, &FaultAccount)> {
        self.scenarios
            .iter()
            .filter(|s| s.status != ScenarioStatus::Errored)
            .flat_map(|s| s.faults.iter().filter(|f| f.hits == 0).map(move |f| (s, f)))
            .collect()
    }

    /// Whether every scenario passed (`qlab run` exits 0).
    pub fn all_passed(&self) -> bool {
        self.scenarios
            .iter()
            .all(|s| s.status == ScenarioStatus::Passed)
    }
}

/// report.json's top level, in the key order of formats.md.
#[derive(Serialize)]
struct ReportJson<'a> {
    schema: &'static str,
    tool_version: &'a str,
    git_sha: &'a str,
    started_at: &'a str,
    mode: &'a str,
    seed: Option<u64>,
    summary: RunSummary,
    scenarios: &'a [ScenarioReport],
}

impl Serialize for RunReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ReportJson {
            schema: SCHEMA,
            tool_version: &self.tool_version,
            git_sha: &self.git_sha,
            started_at: &self.started_at,
            mode: &self.mode,
            seed: self.seed,
            summary: self.summary(),
            scenarios: &self.scenarios,
        }
        .serialize(serializer)
    }
}

/// report.json as text (pretty, trailing newline).
pub fn render_json(report: &RunReport) -> io::Result<String> {
    let mut text = serde_json::to_string_pretty(report).map_err(io::Error::other)?;
    text.push('\n');
    Ok(text)
}

/// Writes report.json, junit.xml and summary.md into `dir`, creating it when missing.
pub fn write_reports(dir: &Path, report: &RunReport) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("report.json"), render_json(report)?)?;
    std::fs::write(dir.join("junit.xml"), render_junit(report)?)?;
    std::fs::write(dir.join("summary.md"), render_summary(report))?;
    Ok(())
}
