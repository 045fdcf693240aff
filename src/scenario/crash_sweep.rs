//! `qlab run --crash-sweep`: every scenario is run once normally, which counts its crash points
//! (each journal commit, each device call; [`crate::sim::crash`]), then once per crash point
//! with the engine crashed exactly there and restarted [`SWEEP_RESTART_AFTER`] later (R16); the
//! rest of the timeline plays as written.
//!
//! What a crash run is held to (the spec leaves it open; decided here):
//! - every invariant (INV-1–INV-10, INV-12), with the scenario's `expect.violations` still
//!   allowed: a crash must not break a rule the normal run keeps;
//! - *terminal*: every operation that started finished, and no L-Server is left with queued
//!   operations, so every detection ends in a terminal state (a `decision-required` wait is
//!   terminal for its detection until someone decides);
//! - not the scenario's other `[expect]` keys (outcomes, alerts, times, write counts): a crash
//!   legitimately shifts times, re-sends undelivered alerts (R17) and may turn an outcome (a
//!   crash while a write is in flight is resolved by reading, R16), so they describe the normal
//!   run only; nor `--strict-faults` (a crash may come before a fault's window).
//!
//! - the crash run settles twice as long as the scenario's `settle` (default: the operation
//!   deadline plus one call timeout) after its last event: the operations resumed at the
//!   restart start over with a fresh deadline (R16, R19), and under load their last read waits
//!   for a device slot, so the normal settle can end the run before they end.
//!
//! A crash point is named `commit K` or `call K <op> <device> <target>` (from the counting run),
//! and `qlab run FILE --crash-point "commit K"` reruns that one point.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::load::Scenario;
use super::runner::{play_sim, Mutant};
use crate::check::{self, Expectations, Status};
use crate::model::history::{EventKind, RunRecord};
use crate::sim::{CrashPoint, CrashTrap};

pub use super::runner::SWEEP_RESTART_AFTER;

/// One crash point of a scenario, with its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepPoint {
    /// Where the engine crashes.
    pub point: CrashPoint,
    /// `commit 7`, `call 3 set_port sw-1 Eth1/3`.
    pub label: String,
}

/// A crash point whose run broke a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashPointFailure {
    /// The point's name.
    pub point: String,
    /// `INV-7: detail`, `terminal: detail`, `error: ...`.
    pub failures: Vec<String>,
}

impl std::fmt::Display for CrashPointFailure {
    /// `crash at <point>: <failures>`, the line reports give it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "crash at {}: {}", self.point, self.failures.join("; "))
    }
}

/// What a scenario's sweep found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrashSweep {
    /// Crash points of the scenario (commits plus device calls of its normal run).
    pub crash_points: u64,
    /// Points that were run (all of them unless `--crash-point` picked one).
    pub swept: u64,
    /// The points that failed, in point order.
    pub failures: Vec<CrashPointFailure>,
    /// Wall time of the crash runs, summed over the jobs that ran them.
    pub duration_ms: u64,
}

/// The crash points a counting trap saw in a run: every commit, then every call.
pub fn points_of(trap: &CrashTrap) -> Vec<SweepPoint> {
    let commits = (1..=trap.commits()).map(|k| SweepPoint {
        point: CrashPoint::AfterCommit(k),
        label: format!("commit {k}"),
    });
    let calls = trap
        .call_labels()
        .into_iter()
        .enumerate()
        .map(|(i, label)| SweepPoint {
            point: CrashPoint::InCall(i as u64 + 1),
            label: format!("call {} {label}", i + 1),
        });
    commits.chain(calls).collect()
}

/// History events a capped sweep may spend on one scenario's crash runs: a run costs about its
/// history's length, and an outbreak of 100,000 L-Servers writes about a million events per run
/// (a minute on a loaded 2-core machine), so it gets a few crash runs, a small scenario every
/// point.
pub const CRASH_EVENTS_BUDGET: usize = 4_000_000;

/// The most crash runs of a scenario whose normal run wrote `history_len` events, under
/// `--crash-points-max max` (0: no cap, every point): `max`, fewer when the runs are long
/// ([`CRASH_EVENTS_BUDGET`]), never fewer than 2 (the first and the last point).
pub fn points_within_budget(max: usize, history_len: usize) -> usize {
    if max == 0 {
        return 0;
    }
    let affordable = CRASH_EVENTS_BUDGET / history_len.max(1);
    max.min(affordable.max(2))
}

/// At most `max` of `points` (all when `max` is 0 or enough), spread evenly from the first to
/// the last: a large outbreak has hundreds of thousands of points, each a whole run, so a sweep
/// samples them the same way every time (no randomness: the report must not change).
pub fn spread(points: Vec<SweepPoint>, max: usize) -> Vec<SweepPoint> {
    let n = points.len();
    if max == 0 || n <= max {
        return points;
    }
    if max == 1 {
        return points.into_iter().take(1).collect();
    }
    // Index i * (n - 1) / (max - 1) for i in 0..max: strictly increasing, first and last kept.
    let keep: BTreeSet<usize> = (0..max).map(|i| i * (n - 1) / (max - 1)).collect();
    points
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, p)| p)
        .collect()
}

/// Parses `commit K` or `call K` (anything after K is ignored, so a full point name works).
pub fn parse_point(text: &str) -> Result<CrashPoint, String> {
    let mut words = text.split_whitespace();
    let kind = words.next().unwrap_or_default();
    let number = words.next().unwrap_or_default();
    let k: u64 = number.parse().ok().filter(|k| *k > 0).ok_or_else(|| {
        format!("{text:?}: write the crash point as `commit K` or `call K`, K from 1")
    })?;
    match kind {
        "commit" => Ok(CrashPoint::AfterCommit(k)),
        "call" => Ok(CrashPoint::InCall(k)),
        _ => Err(format!(
            "{text:?}: a crash point is `commit K` or `call K`, not {kind:?}"
        )),
    }
}

/// Runs `scenario` crashed at `point`; the failures (empty when it held every rule).
pub fn run_point(
    scenario: &Scenario,
    seed: u64,
    mutant: Option<Mutant>,
    point: CrashPoint,
) -> Vec<String> {
    let trap = Arc::new(CrashTrap::at(point));
    match play_sim(scenario, seed, mutant, Some(trap.clone())) {
        Ok((record, _)) => {
            let mut failures = crash_failures(scenario, &record);
            if !trap.fired() {
                failures.push(
                    "crash point: the run never reached it (the run differs from the counting \
                     run: INV-11)"
                        .into(),
                );
            }
            failures
        }
        Err(e) => vec![format!("error: {e}")],
    }
}

/// What a crash run broke (module docs): invariants beyond `expect.violations`, and
/// operations left unfinished.
pub fn crash_failures(scenario: &Scenario, record: &RunRecord) -> Vec<String> {
    let expect = Expectations {
        violations: scenario.expect.violations.clone(),
        ..Expectations::default()
    };
    let report = check::check_run(&scenario.site, record, &expect);
    let allowed: BTreeSet<&str> = expect.violations.iter().map(String::as_str).collect();
    let mut failures: Vec<String> = report
        .invariants
        .iter()
        .filter(|v| v.status == Status::Failed && !allowed.contains(v.id.as_str()))
        .map(|v| format!("{}: {}", v.id, v.detail))
        .collect();
    failures.extend(unfinished(record));
    failures
}

/// `terminal`: operations started and never finished, L-Servers with queued operations.
fn unfinished(record: &RunRecord) -> Option<String> {
    let mut open: BTreeSet<(i64, &str)> = BTreeSet::new();
    for e in &record.history {
        match &e.kind {
            EventKind::OperationStarted { id, lserver, .. } => {
                open.insert((*id, lserver.as_str()));
            }
            EventKind::OperationFinished { id, lserver, .. } => {
                open.remove(&(*id, lserver.as_str()));
            }
            _ => {}
        }
    }
    let mut problems: Vec<String> = open
        .iter()
        .map(|(id, lserver)| format!("operation {id} on {lserver} never finished"))
        .collect();
    problems.extend(
        record
            .lservers
            .iter()
            .filter(|l| l.pending_operations > 0)
            .map(|l| {
                format!(
                    "{} ends with {} queued operation(s)",
                    l.path, l.pending_operations
                )
            }),
    );
    if problems.is_empty() {
        return None;
    }
    let shown = problems.len().min(3);
    let more = problems.len() - shown;
    let mut text = format!("terminal: {}", problems[..shown].join("; "));
    if more > 0 {
        text.push_str(&format!(" (and {more} more)"));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r16_a_capped_sweep_spreads_its_points_from_first_to_last() {
        let points: Vec<SweepPoint> = (1..=10)
            .map(|k| SweepPoint {
                point: CrashPoint::AfterCommit(k),
                label: format!("commit {k}"),
            })
            .collect();
        let labels = |ps: Vec<SweepPoint>| ps.into_iter().map(|p| p.label).collect::<Vec<_>>();
        assert_eq!(
            labels(spread(points.clone(), 4)),
            ["commit 1", "commit 4", "commit 7", "commit 10"]
        );
        assert_eq!(spread(points.clone(), 0).len(), 10);
        assert_eq!(spread(points.clone(), 20).len(), 10);
        assert_eq!(labels(spread(points, 1)), ["commit 1"]);
    }

    #[test]
    fn r16_long_runs_get_fewer_crash_runs_but_never_fewer_than_two() {
        assert_eq!(points_within_budget(200, 300), 200);
        assert_eq!(points_within_budget(200, 100_000), 40);
        assert_eq!(points_within_budget(200, 10_000_000), 2);
        assert_eq!(
            points_within_budget(0, 10_000_000),
            0,
            "0 keeps every point"
        );
    }

    #[test]
    fn r16_crash_points_parse_from_their_names() {
        assert_eq!(parse_point("commit 7"), Ok(CrashPoint::AfterCommit(7)));
        assert_eq!(
            parse_point("call 3 set_port sw-1 Eth1/3"),
            Ok(CrashPoint::InCall(3))
        );
        assert!(parse_point("commit 0").unwrap_err().contains("K from 1"));
        assert!(parse_point("reboot 2")
            .unwrap_err()
            .contains("not \"reboot\""));
    }
}
