//! A scenario's `[expect]` against a run: one verdict per key, `expected X, got Y`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::facts::{show, Facts, LastOutcome};
use super::measures::Containment;
use super::{
    CheckReport, ExpectationVerdict, Expectations, LServerExpect, Measures, Status, VIOLATIONS_WHAT,
};
use crate::model::history::EventKind;

/// Final outcomes that no operation produces but the engine records on the L-Server.
const NON_OPERATION_OUTCOMES: [&str; 2] = ["ignored", "pending_decision"];

fn verdict(what: String, ok: bool, detail: String) -> ExpectationVerdict {
    ExpectationVerdict {
        what,
        status: if ok { Status::Passed } else { Status::Failed },
        detail,
    }
}

fn compare(what: String, expected: &str, got: &str) -> ExpectationVerdict {
    verdict(
        what,
        expected == got,
        format!("expected {expected}, got {got}"),
    )
}

fn list(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

/// The outcome of an L-Server as `docs/formats/scenario.md` defines it: the last operation's outcome, else the
/// recorded `ignored` / `pending_decision`, else `untouched`.
pub(crate) fn outcome_of<'a>(f: &Facts<'a>, lserver: &str) -> &'a str {
    outcome_in(f, &f.last_outcomes(), lserver)
}

/// [`outcome_of`] with the last outcomes already indexed (counting outcomes over a large site
/// must not scan the history once per L-Server).
fn outcome_in<'a>(
    f: &Facts<'a>,
    last: &BTreeMap<&'a str, LastOutcome<'a>>,
    lserver: &str,
) -> &'a str {
    if let Some(last) = last.get(lserver) {
        return last.outcome;
    }
    f.final_lserver(lserver)
        .and_then(|l| l.outcome.as_deref())
        .filter(|o| NON_OPERATION_OUTCOMES.contains(o))
        .unwrap_or("untouched")
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Every expectation except `violations` (which depends on INV-11, decided later).
pub(crate) fn evaluate(
    f: &Facts<'_>,
    containment: &BTreeMap<&str, Containment>,
    measures: &Measures,
    expect: &Expectations,
) -> Vec<ExpectationVerdict> {
    let writes = f.writes_per_lserver();
    let mut out = Vec::new();
    for (path, e) in &expect.lservers {
        lserver(f, path, e, &writes, &mut out);
    }
    for a in &expect.alerts {
        let got = f
            .events()
            .filter(|(_, e)| match &e.kind {
                EventKind::Alert { code, lserver, .. } => {
                    code == &a.code && (a.lserver.is_none() || lserver == &a.lserver)
                }
                _ => false,
            })
            .count();
        let what = match &a.lserver {
            Some(l) => format!("alert {} {l}", a.code),
            None => format!("alert {}", a.code),
        };
        out.push(verdict(
            what,
            got == a.count as usize,
            format!("expected {} alerts, got {got}", a.count),
        ));
    }
    if let Some(max) = expect.time_to_contain_max {
        let max_ms = ms(max);
        let worst = containment
            .iter()
            .filter_map(|(l, c)| Some((c.time_to_contain_ms()?, *l)))
            .max();
        let (ok, detail) = match worst {
            None => (
                true,
                format!("expected at most {max_ms} ms, nothing was contained"),
            ),
            Some((t, l)) => (
                t <= max_ms,
                format!("expected at most {max_ms} ms, got {t} ms ({l})"),
            ),
        };
        out.push(verdict("time_to_contain_max".into(), ok, detail));
    }
    if let Some(max) = expect.device_writes_max {
        let worst = writes.iter().map(|(l, n)| (*n, *l)).max();
        let (ok, detail) = match worst {
            None => (true, format!("expected at most {max} writes, got 0")),
            Some((n, l)) => (
                n <= u64::from(max),
                format!(
                    "expected at most {max} writes per L-Server, got {n} ({})",
                    show_ls(l)
                ),
            ),
        };
        out.push(verdict("device_writes_max".into(), ok, detail));
    }
    if !expect.outcomes.is_empty() {
        outcomes(f, &expect.outcomes, &mut out);
    }
    if let Some(max) = expect.makespan_ratio_max {
        let m = measures;
        out.push(ratio_verdict(
            "makespan_ratio_max",
            max,
            (m.makespan_ms, m.lower_bound_ms),
            (m.time_to_contain_ms.count > 0, "contained"),
        ));
        out.push(ratio_verdict(
            "makespan_ratio_max confirmed",
            max,
            (m.confirmed_makespan_ms, m.confirmed_lower_bound_ms),
            (m.time_to_quarantined_ms.count > 0, "confirmed quarantined"),
        ));
    }
    out
}

/// `outcomes = { quarantined = 10000 }`: one verdict per listed outcome, counting every
/// L-Server of the site by its final outcome.
fn outcomes(f: &Facts<'_>, expected: &BTreeMap<String, u64>, out: &mut Vec<ExpectationVerdict>) {
    let last = f.last_outcomes();
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for ls in &f.site.lservers {
        *counts.entry(outcome_in(f, &last, &ls.path)).or_default() += 1;
    }
    let total = f.site.lservers.len();
    for (outcome, want) in expected {
        let got = counts.get(outcome.as_str()).copied().unwrap_or(0);
        let others: Vec<String> = counts
            .iter()
            .filter(|(o, _)| **o != outcome.as_str())
            .map(|(o, n)| format!("{o} {n}"))
            .collect();
        let rest = if others.is_empty() {
            String::new()
        } else {
            format!("; the others: {}", others.join(", "))
        };
        out.push(verdict(
            format!("outcomes {outcome}"),
            got == *want,
            format!("expected {want} of {total} L-Servers {outcome}, got {got}{rest}"),
        ));
    }
}

/// `makespan_ratio_max` against one (makespan, lower bound) pair: fails when the makespan is
/// more than `max` times its bound, or when there is no makespan to judge. `measured` says
/// whether any L-Server was `done` (contained, or confirmed quarantined).
fn ratio_verdict(
    what: &str,
    max: f64,
    (makespan_ms, bound_ms): (u64, u64),
    (measured, done): (bool, &str),
) -> ExpectationVerdict {
    let what = what.to_string();
    if bound_ms == 0 && makespan_ms == 0 {
        // Nothing happened, or devices without latency: a zero makespan meets any ratio, but
        // only if there was something to measure.
        let detail = if measured {
            format!("expected at most {max} x the lower bound, got 0 ms / 0 ms")
        } else {
            format!(
                "expected at most {max} x the lower bound, but no L-Server was {done}, so there \
                 is no makespan to judge"
            )
        };
        return verdict(what, measured, detail);
    }
    let ratio = makespan_ms as f64 / bound_ms as f64;
    verdict(
        what,
        makespan_ms as f64 <= max * bound_ms as f64,
        format!(
            "expected at most {max} x the lower bound, got {makespan_ms} ms / {bound_ms} ms = \
             {ratio:.3}"
        ),
    )
}

fn show_ls(lserver: &str) -> &str {
    if lserver.is_empty() {
        "writes naming no L-Server"
    } else {
        lserver
    }
}

/// `[expect.lservers."<path>"]`, one verdict per key, in the documented key order.
fn lserver(
    f: &Facts<'_>,
    path: &str,
    e: &LServerExpect,
    writes: &BTreeMap<&str, u64>,
    out: &mut Vec<ExpectationVerdict>,
) {
    let known = f.site.lserver(path).is_some() || f.final_lserver(path).is_some();
    let what = |key: &str| format!("{path} {key}");
    if !known {
        // Every key fails alike: a typo in a path must not pass silently.
        let keys = [
            ("outcome", e.outcome.is_some()),
            ("device_networks", e.device_networks.is_some()),
            ("managed_networks", e.managed_networks.is_some()),
            ("status", e.status.is_some()),
            ("device_writes_max", e.device_writes_max.is_some()),
        ];
        for (key, _) in keys.iter().filter(|(_, set)| *set) {
            out.push(verdict(
                what(key),
                false,
                format!("no L-Server {path} in the run"),
            ));
        }
        return;
    }
    if let Some(expected) = &e.outcome {
        out.push(compare(what("outcome"), expected, outcome_of(f, path)));
    }
    let nics = f.final_nics(path);
    if let Some(expected) = &e.device_networks {
        let got: Vec<String> = nics
            .iter()
            .map(|n| show(n.device_network.as_deref()).to_string())
            .collect();
        out.push(verdict(
            what("device_networks"),
            &got == expected,
            format!("expected {}, got {}", list(expected), list(&got)),
        ));
    }
    if let Some(expected) = &e.managed_networks {
        let got: Vec<String> = nics.iter().map(|n| n.managed_network.clone()).collect();
        out.push(verdict(
            what("managed_networks"),
            &got == expected,
            format!("expected {}, got {}", list(expected), list(&got)),
        ));
    }
    if let Some(expected) = &e.status {
        let got = f
            .final_lserver(path)
            .map_or("unknown", |l| l.status.as_str());
        out.push(compare(what("status"), expected, got));
    }
    if let Some(max) = e.device_writes_max {
        let got = writes.get(path).copied().unwrap_or(0);
        out.push(verdict(
            what("device_writes_max"),
            got <= u64::from(max),
            format!("expected at most {max} writes, got {got}"),
        ));
    }
}

/// The verdict on `expect.violations`, when the scenario lists any: the failed invariants must
/// be exactly those.
pub(crate) fn violations_verdict(
    report: &CheckReport,
    expect: &Expectations,
) -> Option<ExpectationVerdict> {
    if expect.violations.is_empty() {
        return None;
    }
    let wanted: BTreeSet<&str> = expect.violations.iter().map(String::as_str).collect();
    let failed = report.failed_invariants();
    let show =
        |s: &BTreeSet<&str>| format!("[{}]", s.iter().copied().collect::<Vec<_>>().join(", "));
    Some(verdict(
        VIOLATIONS_WHAT.into(),
        failed == wanted,
        format!("expected {}, got {}", show(&wanted), show(&failed)),
    ))
}
