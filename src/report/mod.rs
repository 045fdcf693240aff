//! report.json, junit.xml, summary.md and report.html (`docs/formats/reports.md`).
//!
//! A [`RunReport`] is plain data the runner fills in; [`write_reports`] renders it three ways:
//! report.json for machines (schema `qlab.report/v1`, stable key order), junit.xml for CI
//! dashboards, summary.md for a person reading a CI log or a pull request; [`html`] adds
//! report.html from the runs' timelines. [`merge`] joins the reports of shards, [`shard`] decides
//! which shard runs what.
//!
//! Decisions where the spec is silent:
//! - A scenario that failed (or errored) and then passed on a retry is `flaky`; its earlier
//!   attempts are listed under `retries` and its verdicts, measures and digest are the passing
//!   attempt's. `qlab run` exits 0 on flaky runs (the nextest convention); `qlab gate` decides
//!   whether a flaky run is acceptable.
//! - report.json names the build (`binary_sha256`, the SHA-256 of the `qlab` executable, beside
//!   `tool_version` and `git_sha`) and, for a shard, `shard` (`index`, `count`, `selected`: the
//!   scenario runs of the whole selection, and `assignment`), so merging can refuse what does not
//!   belong together. Both keys are absent when not known or not sharded.

pub mod html;
mod junit;
mod markdown;
pub mod merge;
pub mod shard;

use std::io;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize, Serializer};

pub use crate::check::{ExpectationVerdict, InvariantVerdict, Measures, Status, Summary};
pub use crate::model::history::FaultAccount;
pub use junit::render_junit;
pub use markdown::render_summary;

/// The `schema` of report.json.
pub const SCHEMA: &str = "qlab.report/v1";

/// How one scenario run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum ScenarioStatus {
    /// Every invariant and expectation held (or exactly the expected violations showed).
    Passed,
    /// Some check did not hold.
    Failed,
    /// The scenario could not be run (bad input, the lab itself failed); see `error`.
    Errored,
    /// An attempt failed or errored, then a retry (`--retries`) passed.
    Flaky,
}

impl ScenarioStatus {
    /// The spelling used in reports.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether the run counts as passing for `qlab run`'s exit code (passed, or flaky).
    pub fn is_pass(self) -> bool {
        matches!(self, ScenarioStatus::Passed | ScenarioStatus::Flaky)
    }
}

/// An attempt of a scenario run that did not count: it failed or errored and was retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Attempt {
    /// `failed` or `errored`.
    pub status: ScenarioStatus,
    /// Wall-clock duration of the attempt.
    pub duration_ms: u64,
    /// What failed, as [`ScenarioReport::failures`] words it.
    pub failures: Vec<String>,
    /// Digest of the attempt's history (empty when it errored).
    pub history_digest: String,
}

/// One scenario run in one mode: an element of report.json's `scenarios`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
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
    /// Wire mode: detections the engine took, by the transport they came in on (`api`,
    /// `syslog_udp`, `syslog_tcp`, `epo`), from its own counters summed over restarts; absent
    /// in sim mode.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub transports: std::collections::BTreeMap<String, u64>,
    /// Digest of the history (INV-11).
    pub history_digest: String,
    /// The exact command that reruns this scenario.
    pub replay: String,
    /// Why an errored scenario could not run; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The attempts before the one reported, under `--retries` (absent when the first counted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retries: Vec<Attempt>,
    /// Under `--crash-sweep`: the scenario's crash points (journal commits plus device calls of
    /// its normal run); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_points: Option<u64>,
    /// Under `--crash-point`: how many of them ran (absent when all did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_points_swept: Option<u64>,
    /// Under `--crash-sweep`: the crash points whose run broke a rule (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crash_failures: Vec<CrashPointFailure>,
    /// Under `--crash-sweep`: wall time of the crash runs, summed over the jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_sweep_ms: Option<u64>,
}

/// A crash point whose run broke a rule (report.json `crash_failures`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CrashPointFailure {
    /// `commit 7`, `call 3 set_port sw-1 Eth1/3`: rerun it with `--crash-point`.
    pub point: String,
    /// `INV-7: detail`, `terminal: detail`.
    pub failures: Vec<String>,
}

impl ScenarioReport {
    /// Failed invariants and expectations as `INV-3: detail` / `what: detail` lines, and the
    /// error of an errored run.
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self.error.iter().map(|e| format!("error: {e}")).collect();
        out.extend(crate::check::failure_lines(
            &self.invariants,
            &self.expectations,
        ));
        out.extend(
            self.crash_failures
                .iter()
                .map(|f| format!("crash at {}: {}", f.point, f.failures.join("; "))),
        );
        out
    }
}

/// The counts of report.json's `summary`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RunSummary {
    /// Scenario runs.
    pub scenarios: usize,
    /// Passed runs.
    pub passed: usize,
    /// Failed runs.
    pub failed: usize,
    /// Errored runs.
    pub errored: usize,
    /// Runs that passed on a retry (absent when none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub flaky: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Which shard of a selection a report holds (report.json `shard`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ShardInfo {
    /// K of `--shard K/N`, from 1.
    pub index: usize,
    /// N of `--shard K/N`.
    pub count: usize,
    /// Scenario runs (scenario × mode) of the whole selection, over every shard.
    pub selected: usize,
    /// `hash` (stable hash of the name) or `durations` (balanced by a previous report).
    pub assignment: String,
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
    /// SHA-256 of the `qlab` executable that ran, when it could be read.
    #[serde(default)]
    pub binary_sha256: Option<String>,
    /// The shard this report holds, under `--shard`.
    #[serde(default)]
    pub shard: Option<ShardInfo>,
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
            flaky: count(ScenarioStatus::Flaky),
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

    /// Whether every scenario passed, flaky ones included (`qlab run` exits 0).
    pub fn all_passed(&self) -> bool {
        self.scenarios.iter().all(|s| s.status.is_pass())
    }

    /// Reads report.json from `path` (a file, or a folder holding report.json).
    pub fn read(path: &Path) -> Result<RunReport, String> {
        let file = if path.is_dir() {
            path.join("report.json")
        } else {
            path.to_path_buf()
        };
        let text = read_capped(&file)?;
        let report: RunReport = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a qlab report: {e}", file.display()))?;
        Ok(report)
    }
}

/// report.json's top level, in the documented key order (`docs/formats/reports.md`).
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "RunReport")]
struct ReportJson<'a> {
    /// Always `qlab.report/v1`.
    #[schemars(extend("const" = SCHEMA))]
    schema: &'static str,
    /// `CARGO_PKG_VERSION` of qlab.
    tool_version: &'a str,
    /// Commit qlab was built from (`unknown` when not known).
    git_sha: &'a str,
    /// RFC 3339 start time.
    started_at: &'a str,
    /// `--mode`: `sim`, `wire` or `both`.
    mode: &'a str,
    /// `--seed`, when given (each scenario records the seed it used).
    seed: Option<u64>,
    /// SHA-256 of the qlab executable that ran (merging refuses reports of different builds).
    #[serde(skip_serializing_if = "Option::is_none")]
    binary_sha256: Option<&'a str>,
    /// Which shard of a sharded run this report holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    shard: Option<&'a ShardInfo>,
    /// Counts derived from `scenarios`.
    summary: RunSummary,
    /// Every scenario run, in run order.
    scenarios: &'a [ScenarioReport],
}

/// The JSON Schema of report.json under `settings` (`src/schema.rs` publishes it).
pub fn json_schema(settings: schemars::generate::SchemaSettings) -> serde_json::Value {
    settings
        .into_generator()
        .into_root_schema_for::<ReportJson<'static>>()
        .to_value()
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
            binary_sha256: self.binary_sha256.as_deref(),
            shard: self.shard.as_ref(),
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

/// Largest report.json (or baseline) read back: a library run is well under this.
pub const MAX_REPORT_BYTES: u64 = 256 * 1024 * 1024;

/// Reads a text file of at most [`MAX_REPORT_BYTES`], naming the file in every error.
pub fn read_capped(file: &Path) -> Result<String, String> {
    let meta =
        std::fs::metadata(file).map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
    if meta.len() > MAX_REPORT_BYTES {
        return Err(format!(
            "{}: {} bytes, more than the {MAX_REPORT_BYTES} a report may have",
            file.display(),
            meta.len()
        ));
    }
    std::fs::read_to_string(file).map_err(|e| format!("{}: cannot read: {e}", file.display()))
}
