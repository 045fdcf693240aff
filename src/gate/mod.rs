//! `qlab gate --baseline FILE REPORT...`: compares a run with a committed baseline and fails CI on
//! a regression; `--update` writes the baseline from the run instead.
//!
//! A baseline (`qlab.baseline/v1`, JSON) holds, per scenario and mode: the status, the faults that
//! fired (by index), and samples of two measures: time-to-contain p99 and the makespan ratio
//! (`makespan_ms / lower_bound_ms`, and the same for the confirmed pair). The gate fails on:
//! - **new failure**: a run failed or errored that the baseline has passing or flaky (or does not
//!   know); a run the baseline records as failed may keep failing;
//! - **new flaky**: a run is `flaky` and the baseline does not record it as flaky (a flaky run
//!   the baseline accepts stays accepted: that is what flaky means to the gate);
//! - **missing**: a baseline run absent from the report (a lost shard, a dropped scenario);
//! - **fault stopped firing**: a fault that fired in the baseline has `hits = 0` now;
//! - **slower**: time-to-contain p99 or a makespan ratio worse than the baseline by more than the
//!   mode's threshold (a fraction: 0.10 allows 10 % worse).
//!
//! How a measure is compared depends on the mode:
//! - **sim** is deterministic (INV-11), so one sample is exact: worse than
//!   `baseline × (1 + threshold)` fails; the committed threshold is 0 (any change shows).
//! - **wire** runs on a real clock, so one sample is noise. The gate takes several reports (one
//!   per repeated run, `qlab gate --baseline F run1 run2 run3`) and the baseline keeps several
//!   samples. With means m_c (current) and m_b (baseline), sample variances s_c², s_b² and counts
//!   n_c, n_b, it takes the difference d = m_c − (1 + threshold) × m_b and Welch's standard error
//!   se = sqrt(s_c²/n_c + (1 + threshold)² × s_b²/n_b), and fails only when the one-sided 95 %
//!   confidence interval of d lies above 0: d − t × se > 0 (t: Student's 95 % one-sided quantile
//!   at Welch–Satterthwaite degrees of freedom). With fewer than `min_samples` on either side the
//!   measure is not judged (the table says so) and only statuses and faults gate.
//!
//! Several reports are also how a sharded run is gated after `qlab report merge`, or a run
//! repeated: a scenario's status over the reports is the worst one (errored, failed, then
//! flaky, then passed), and one that failed in some reports and passed in others is flaky.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::report::{read_capped, RunReport, ScenarioStatus};

/// The `schema` of a baseline file.
pub const SCHEMA: &str = "qlab.baseline/v1";

/// Most samples kept per measure in a baseline.
pub const MAX_SAMPLES: usize = 30;

/// How much worse a measure may get, per mode.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Allowed increase of time-to-contain p99, as a fraction of the baseline.
    pub ttc_p99: f64,
    /// Allowed increase of a makespan ratio, as a fraction of the baseline.
    pub makespan_ratio: f64,
}

/// The thresholds and sampling rule of a baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Sim mode: deterministic, compared exactly (0 by default).
    pub sim: Thresholds,
    /// Wire mode: compared by confidence interval.
    pub wire: Thresholds,
    /// Fewest samples on each side before a wire measure is judged.
    pub min_samples: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            sim: Thresholds {
                ttc_p99: 0.0,
                makespan_ratio: 0.0,
            },
            wire: Thresholds {
                ttc_p99: 0.25,
                makespan_ratio: 0.25,
            },
            min_samples: 3,
        }
    }
}

/// One scenario run in a baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineRun {
    /// Scenario name.
    pub name: String,
    /// `sim` or `wire`.
    pub mode: String,
    /// Status over the reports the baseline was made from.
    pub status: ScenarioStatus,
    /// Indices of the faults that fired.
    pub fired_faults: Vec<usize>,
    /// Time-to-contain p99 samples, ms (empty when nothing was contained).
    pub ttc_p99_ms: Vec<u64>,
    /// `makespan_ms / lower_bound_ms` samples (empty when there is no bound).
    pub makespan_ratio: Vec<f64>,
    /// `confirmed_makespan_ms / confirmed_lower_bound_ms` samples.
    pub confirmed_ratio: Vec<f64>,
}

/// A baseline file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// [`SCHEMA`].
    pub schema: String,
    /// Thresholds and sampling.
    pub policy: Policy,
    /// Every scenario run, by name then mode.
    pub runs: Vec<BaselineRun>,
}

/// One line of the gate's table.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Scenario name.
    pub scenario: String,
    /// Mode.
    pub mode: String,
    /// `new failure`, `new flaky`, `missing`, `fault stopped firing`, `slower`, or for notes
    /// that do not fail: `not judged`, `new scenario`, `fixed`.
    pub check: String,
    /// The baseline's side.
    pub baseline: String,
    /// The run's side.
    pub current: String,
    /// Whether this line fails the gate.
    pub fails: bool,
}

/// The gate's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Runs compared.
    pub compared: usize,
    /// Regressions and notes.
    pub findings: Vec<Finding>,
}

impl Verdict {
    /// Whether the gate passes.
    pub fn passed(&self) -> bool {
        self.findings.iter().all(|f| !f.fails)
    }

    /// The findings as one table, then one closing line.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let rows: Vec<[String; 6]> = self
            .findings
            .iter()
            .map(|f| {
                [
                    if f.fails { "FAIL" } else { "note" }.to_string(),
                    f.scenario.clone(),
                    f.mode.clone(),
                    f.check.clone(),
                    f.baseline.clone(),
                    f.current.clone(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            let head = ["", "scenario", "mode", "check", "baseline", "current"];
            let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
            for r in &rows {
                for (w, c) in widths.iter_mut().zip(r) {
                    *w = (*w).max(c.chars().count());
                }
            }
            let line = |cells: &[String]| {
                let padded: Vec<String> = cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                padded.join("  ").trim_end().to_string()
            };
            let head: Vec<String> = head.iter().map(|h| h.to_string()).collect();
            let _ = writeln!(out, "{}", line(&head));
            for r in &rows {
                let _ = writeln!(out, "{}", line(r));
            }
        }
        let failing = self.findings.iter().filter(|f| f.fails).count();
        if failing == 0 {
            let _ = writeln!(
                out,
                "gate passed: {} runs compared with the baseline",
                self.compared
            );
        } else {
            let _ = writeln!(
                out,
                "gate failed: {failing} regressions in {} runs compared with the baseline",
                self.compared
            );
        }
        out
    }
}

/// The run's side: per (name, mode), statuses and samples over the reports.
#[derive(Debug, Default)]
struct Current {
    statuses: Vec<ScenarioStatus>,
    fired: BTreeSet<usize>,
    declared: BTreeSet<usize>,
    ttc_p99: Vec<u64>,
    makespan_ratio: Vec<f64>,
    confirmed_ratio: Vec<f64>,
}

impl Current {
    fn status(&self) -> ScenarioStatus {
        use ScenarioStatus::*;
        let has = |s| self.statuses.contains(&s);
        if has(Errored) {
            Errored
        } else if has(Failed) && (has(Passed) || has(Flaky)) {
            Flaky
        } else if has(Failed) {
            Failed
        } else if has(Flaky) {
            Flaky
        } else {
            Passed
        }
    }
}

fn ratio(makespan: u64, bound: u64) -> Option<f64> {
    (bound > 0).then(|| makespan as f64 / bound as f64)
}

fn collect(reports: &[RunReport]) -> BTreeMap<(String, String), Current> {
    let mut out: BTreeMap<(String, String), Current> = BTreeMap::new();
    for r in reports {
        for s in &r.scenarios {
            let c = out.entry((s.name.clone(), s.mode.clone())).or_default();
            c.statuses.push(s.status);
            if s.status == ScenarioStatus::Errored {
                continue;
            }
            for f in &s.faults {
                c.declared.insert(f.index);
                if f.hits > 0 {
                    c.fired.insert(f.index);
                }
            }
            let m = &s.measures;
            if m.time_to_contain_ms.count > 0 {
                c.ttc_p99.push(m.time_to_contain_ms.p99);
            }
            c.makespan_ratio
                .extend(ratio(m.makespan_ms, m.lower_bound_ms));
            c.confirmed_ratio
                .extend(ratio(m.confirmed_makespan_ms, m.confirmed_lower_bound_ms));
        }
    }
    out
}

/// A baseline from reports, keeping `policy`.
pub fn baseline_of(reports: &[RunReport], policy: Policy) -> Baseline {
    let keep = |mut v: Vec<f64>| {
        v.truncate(MAX_SAMPLES);
        v
    };
    let runs = collect(reports)
        .into_iter()
        .map(|((name, mode), c)| BaselineRun {
            status: c.status(),
            fired_faults: c.fired.iter().copied().collect(),
            ttc_p99_ms: c.ttc_p99.iter().copied().take(MAX_SAMPLES).collect(),
            makespan_ratio: keep(c.makespan_ratio),
            confirmed_ratio: keep(c.confirmed_ratio),
            name,
            mode,
        })
        .collect();
    Baseline {
        schema: SCHEMA.into(),
        policy,
        runs,
    }
}

/// Reads a baseline file.
pub fn read_baseline(path: &Path) -> Result<Baseline, String> {
    let text = read_capped(path)?;
    let baseline: Baseline = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a qlab baseline: {e}", path.display()))?;
    if baseline.schema != SCHEMA {
        return Err(format!(
            "{}: schema {:?}, expected {SCHEMA:?}",
            path.display(),
            baseline.schema
        ));
    }
    Ok(baseline)
}

/// Writes a baseline file (pretty JSON, trailing newline).
pub fn write_baseline(path: &Path, baseline: &Baseline) -> Result<(), String> {
    let mut text = serde_json::to_string_pretty(baseline).map_err(|e| e.to_string())?;
    text.push('\n');
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: cannot write: {e}", path.display()))
}

/// Reads every report given (a report.json, or a folder holding one).
pub fn read_reports(paths: &[PathBuf]) -> Result<Vec<RunReport>, String> {
    if paths.is_empty() {
        return Err("no report to gate".into());
    }
    paths.iter().map(|p| RunReport::read(p)).collect()
}

/// Compares `reports` (one run, or repeated runs of one selection) with `baseline`.
pub fn gate(baseline: &Baseline, reports: &[RunReport]) -> Verdict {
    let current = collect(reports);
    let mut findings = Vec::new();
    let base: BTreeMap<(String, String), &BaselineRun> = baseline
        .runs
        .iter()
        .map(|r| ((r.name.clone(), r.mode.clone()), r))
        .collect();
    let finding =
        |key: &(String, String), check: &str, b: String, c: String, fails: bool| Finding {
            scenario: key.0.clone(),
            mode: key.1.clone(),
            check: check.into(),
            baseline: b,
            current: c,
            fails,
        };
    for (key, b) in &base {
        if !current.contains_key(key) {
            findings.push(finding(
                key,
                "missing",
                b.status.as_str().into(),
                "not in the report".into(),
                true,
            ));
        }
    }
    for (key, c) in &current {
        let status = c.status();
        let Some(b) = base.get(key) else {
            let fails = !matches!(status, ScenarioStatus::Passed);
            let check = if fails { "new failure" } else { "new scenario" };
            findings.push(finding(
                key,
                check,
                "–".into(),
                status.as_str().into(),
                fails,
            ));
            continue;
        };
        use ScenarioStatus::*;
        match (b.status, status) {
            (Passed | Flaky, Failed | Errored) | (Failed, Errored) => findings.push(finding(
                key,
                "new failure",
                b.status.as_str().into(),
                status.as_str().into(),
                true,
            )),
            (Passed, Flaky) => findings.push(finding(
                key,
                "new flaky",
                "passed".into(),
                "flaky".into(),
                true,
            )),
            (Failed | Errored, Passed | Flaky) => findings.push(finding(
                key,
                "fixed",
                b.status.as_str().into(),
                status.as_str().into(),
                false,
            )),
            _ => {}
        }
        if matches!(status, Errored) {
            continue;
        }
        for index in &b.fired_faults {
            if c.declared.contains(index) && !c.fired.contains(index) {
                findings.push(finding(
                    key,
                    "fault stopped firing",
                    format!("faults[{index}] fired"),
                    format!("faults[{index}] hits = 0"),
                    true,
                ));
            } else if !c.declared.contains(index) {
                findings.push(finding(
                    key,
                    "fault stopped firing",
                    format!("faults[{index}] fired"),
                    format!("faults[{index}] no longer declared"),
                    true,
                ));
            }
        }
        let sim = key.1 == "sim";
        let t = if sim {
            baseline.policy.sim
        } else {
            baseline.policy.wire
        };
        let as_f64 = |v: &[u64]| v.iter().map(|x| *x as f64).collect::<Vec<f64>>();
        let measures: [(&str, Vec<f64>, Vec<f64>, f64); 3] = [
            (
                "time to contain p99 (ms)",
                as_f64(&b.ttc_p99_ms),
                as_f64(&c.ttc_p99),
                t.ttc_p99,
            ),
            (
                "makespan ratio",
                b.makespan_ratio.clone(),
                c.makespan_ratio.clone(),
                t.makespan_ratio,
            ),
            (
                "confirmed makespan ratio",
                b.confirmed_ratio.clone(),
                c.confirmed_ratio.clone(),
                t.makespan_ratio,
            ),
        ];
        for (what, bs, cs, threshold) in measures {
            if bs.is_empty() || cs.is_empty() {
                continue;
            }
            let judged = if sim {
                compare_exact(&bs, &cs, threshold)
            } else {
                compare_noisy(&bs, &cs, threshold, baseline.policy.min_samples)
            };
            match judged {
                Judged::Worse(b_text, c_text) => findings.push(finding(
                    key,
                    &format!("slower: {what}"),
                    b_text,
                    c_text,
                    true,
                )),
                Judged::Unjudged(b_text, c_text) => findings.push(finding(
                    key,
                    &format!("not judged: {what}"),
                    b_text,
                    c_text,
                    false,
                )),
                Judged::Fine => {}
            }
        }
    }
    Verdict {
        compared: current.len(),
        findings,
    }
}

enum Judged {
    Fine,
    Worse(String, String),
    Unjudged(String, String),
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn variance(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64
}

/// Sim: one deterministic sample each side (the first); worse beyond the threshold fails.
fn compare_exact(b: &[f64], c: &[f64], threshold: f64) -> Judged {
    let (b, c) = (b[0], c[0]);
    // A ratio printed and read back may differ in its last bits; 1e-9 is far below any change.
    if c > b * (1.0 + threshold) + 1e-9 {
        Judged::Worse(
            format!("{} (+{:.0} % allowed)", fmt(b), threshold * 100.0),
            fmt(c),
        )
    } else {
        Judged::Fine
    }
}

/// Wire: Welch's one-sided 95 % interval of the difference (see the module doc).
fn compare_noisy(b: &[f64], c: &[f64], threshold: f64, min_samples: usize) -> Judged {
    let summary = |v: &[f64]| {
        format!(
            "{} ± {} (n={})",
            fmt(mean(v)),
            fmt(variance(v).sqrt()),
            v.len()
        )
    };
    if b.len() < min_samples.max(2) || c.len() < min_samples.max(2) {
        return Judged::Unjudged(
            summary(b),
            format!("{} – fewer than {} samples", summary(c), min_samples.max(2)),
        );
    }
    let k = 1.0 + threshold;
    let (nb, nc) = (b.len() as f64, c.len() as f64);
    let (vb, vc) = (k * k * variance(b) / nb, variance(c) / nc);
    let d = mean(c) - k * mean(b);
    let se = (vb + vc).sqrt();
    let df = if vb + vc > 0.0 {
        (vb + vc).powi(2)
            / (vb.powi(2) / (nb - 1.0).max(1.0) + vc.powi(2) / (nc - 1.0).max(1.0)).max(1e-300)
    } else {
        nb + nc - 2.0
    };
    let lower = d - t95(df) * se;
    if lower > 0.0 {
        Judged::Worse(
            format!("{} (+{:.0} % allowed)", summary(b), threshold * 100.0),
            format!("{} (95 % CI excess > {})", summary(c), fmt(lower)),
        )
    } else {
        Judged::Fine
    }
}

/// Student's t one-sided 95 % quantile for `df` degrees of freedom (table, then the normal).
fn t95(df: f64) -> f64 {
    const TABLE: [f64; 30] = [
        6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812, 1.796, 1.782, 1.771,
        1.761, 1.753, 1.746, 1.740, 1.734, 1.729, 1.725, 1.721, 1.717, 1.714, 1.711, 1.708, 1.706,
        1.703, 1.701, 1.699, 1.697,
    ];
    if !df.is_finite() || df > 30.0 {
        return 1.645;
    }
    // Rounding down is conservative (a larger quantile).
    TABLE[(df.floor() as usize).clamp(1, 30) - 1]
}

fn fmt(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{}", x.round() as i64)
    } else {
        format!("{x:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t95_falls_toward_the_normal_quantile() {
        assert!((t95(1.0) - 6.314).abs() < 1e-9);
        assert!((t95(4.7) - 2.132).abs() < 1e-9);
        assert!((t95(1000.0) - 1.645).abs() < 1e-9);
    }

    #[test]
    fn noisy_compare_needs_the_interval_above_the_threshold() {
        let b = [100.0, 104.0, 96.0, 100.0];
        // Within noise of +25 %: not a regression.
        assert!(matches!(
            compare_noisy(&b, &[128.0, 120.0, 130.0, 122.0], 0.25, 3),
            Judged::Fine
        ));
        // Far beyond: a regression.
        assert!(matches!(
            compare_noisy(&b, &[200.0, 210.0, 190.0, 205.0], 0.25, 3),
            Judged::Worse(..)
        ));
        // One sample is never judged.
        assert!(matches!(
            compare_noisy(&b, &[400.0], 0.25, 3),
            Judged::Unjudged(..)
        ));
    }
}
