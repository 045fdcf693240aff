//! Invariants on the journal's promises: INV-7 durability, INV-9 alerting, INV-10 liveness.

use std::collections::BTreeMap;

use super::hash::HashMap;

use super::facts::{is_error, is_failure, Facts, Problems};
use super::InvariantVerdict;
use crate::model::history::EventKind;

/// How many OperationFinished events each operation id has.
fn finish_counts(f: &Facts<'_>) -> HashMap<i64, usize> {
    let mut counts = HashMap::default();
    for (_, end) in f.finishes() {
        *counts.entry(end.id).or_default() += 1;
    }
    counts
}

/// INV-7: every detection acknowledged `accepted` has exactly one OperationFinished for its
/// operation, and no (source, event id) is acknowledged `accepted` twice — across crashes and
/// restarts too, since the history spans them (R7, R16).
pub(crate) fn durability(f: &Facts<'_>) -> InvariantVerdict {
    let finished = finish_counts(f);
    let mut accepted: HashMap<(&str, &str), usize> = HashMap::default();
    let mut problems = Problems::new();
    let mut checked = 0;
    for (_, e) in f.events() {
        let EventKind::DetectionAcked {
            source,
            event_id,
            disposition,
            operation,
            ..
        } = &e.kind
        else {
            continue;
        };
        if disposition != "accepted" {
            continue;
        }
        checked += 1;
        let times = accepted.entry((source, event_id)).or_default();
        *times += 1;
        if *times == 2 {
            problems.push(format!(
                "detection {source}/{event_id} acknowledged accepted twice (again at {} ms)",
                e.at_ms
            ));
        }
        match operation {
            None => problems.push(format!(
                "detection {source}/{event_id} acknowledged accepted without an operation"
            )),
            Some(id) => {
                let n = finished.get(id).copied().unwrap_or(0);
                if n != 1 {
                    problems.push(format!(
                        "detection {source}/{event_id}: operation {id} finished {n} times, \
                         expected once"
                    ));
                }
            }
        }
    }
    problems.verdict("INV-7", checked, "accepted detections")
}

/// INV-9: every failed operation has exactly one ERROR alert carrying its id, and every alert
/// names an L-Server or an IP (R17).
pub(crate) fn alerting(f: &Facts<'_>) -> InvariantVerdict {
    let mut error_alerts: HashMap<i64, usize> = HashMap::default();
    let mut problems = Problems::new();
    let mut checked = 0;
    for (_, e) in f.events() {
        if let EventKind::Alert {
            seq,
            code,
            severity,
            lserver,
            ip,
            operation,
            ..
        } = &e.kind
        {
            checked += 1;
            if let (Some(op), true) = (operation, is_error(severity)) {
                *error_alerts.entry(*op).or_default() += 1;
            }
            if lserver.is_none() && ip.is_none() {
                problems.push(format!("alert {seq} {code} names no L-Server and no IP"));
            }
        }
    }
    // One verdict per failed operation, even if its OperationFinished was (wrongly) recorded
    // twice: INV-7 reports the repetition.
    let mut failed: BTreeMap<i64, (&str, &str)> = BTreeMap::new();
    for (lserver, end) in f.finishes() {
        if is_failure(end.outcome) {
            failed.insert(end.id, (lserver, end.outcome));
        }
    }
    for (id, (lserver, outcome)) in &failed {
        checked += 1;
        let n = error_alerts.get(id).copied().unwrap_or(0);
        if n != 1 {
            problems.push(format!(
                "operation {id} on {lserver} ended {outcome} with {n} ERROR alerts, expected 1"
            ));
        }
    }
    problems.verdict("INV-9", checked, "alerts and failed operations")
}

/// INV-10: every operation that started finishes (a crash may interrupt it, but it must then
/// finish after the restart), none lasts longer than `(operation_deadline + call_timeout)`
/// plus 10% from its last start — the deadline, one last read, and slack for the clock — and
/// no L-Server still has operations pending when the run ends (R19).
pub(crate) fn liveness(f: &Facts<'_>) -> InvariantVerdict {
    let engine = &f.site.topology.engine;
    let budget_ms = engine
        .operation_deadline
        .saturating_add(engine.call_timeout)
        .as_millis()
        .saturating_mul(11)
        / 10;
    let budget_ms = u64::try_from(budget_ms).unwrap_or(u64::MAX);
    // The start in force: a restart re-emits OperationStarted with a fresh deadline.
    let mut last_start: BTreeMap<i64, (u64, &str)> = BTreeMap::new();
    let mut problems = Problems::new();
    let mut checked = 0;
    for (_, e) in f.events() {
        match &e.kind {
            EventKind::OperationStarted { id, lserver, .. } => {
                last_start.insert(*id, (e.at_ms, lserver));
            }
            EventKind::OperationFinished { id, lserver, .. } => {
                let Some((start, _)) = last_start.remove(id) else {
                    continue;
                };
                checked += 1;
                let took = e.at_ms.saturating_sub(start);
                if took > budget_ms {
                    problems.push(format!(
                        "operation {id} on {lserver} took {took} ms, more than the {budget_ms} ms \
                         its deadline allows"
                    ));
                }
            }
            _ => {}
        }
    }
    for (id, (start, lserver)) in &last_start {
        checked += 1;
        problems.push(format!(
            "operation {id} on {lserver} started at {start} ms and never finished"
        ));
    }
    for ls in &f.run.lservers {
        if ls.pending_operations > 0 {
            problems.push(format!(
                "{} still has {} operations pending at the end",
                ls.path, ls.pending_operations
            ));
        }
    }
    problems.verdict("INV-10", checked, "operations")
}
