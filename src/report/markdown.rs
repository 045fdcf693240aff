//! summary.md: one table a person reads in a CI log or a pull request, then the replay
//! commands of the runs that did not pass.

use std::fmt::Write as _;

use super::{RunReport, ScenarioReport, ScenarioStatus};

/// Most characters of failure text in one table cell; the full text is in report.json.
const MAX_CELL_CHARS: usize = 300;

/// Makes text safe inside a table cell: no pipes, no line breaks, bounded length.
fn cell(text: &str) -> String {
    let flat = text.replace('|', "\\|").replace(['\r', '\n'], " ");
    if flat.chars().count() > MAX_CELL_CHARS {
        let cut: String = flat.chars().take(MAX_CELL_CHARS).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

fn ttc(s: &ScenarioReport) -> String {
    let t = &s.measures.time_to_contain_ms;
    if t.count == 0 {
        "–".into()
    } else {
        format!("{} / {} ms", t.p50, t.p99)
    }
}

/// A makespan against its lower bound, with their ratio: the engine's scheduling efficiency
/// (`docs/measures.md`; reports/README.md for the two pairs).
fn against_bound(makespan_ms: u64, bound_ms: u64) -> String {
    if makespan_ms == 0 && bound_ms == 0 {
        return "–".into();
    }
    if bound_ms == 0 {
        return format!("{makespan_ms} / {bound_ms} ms");
    }
    let ratio = makespan_ms as f64 / bound_ms as f64;
    format!("{makespan_ms} / {bound_ms} ms (×{ratio:.2})")
}

fn status(s: &ScenarioReport) -> &'static str {
    match s.status {
        ScenarioStatus::Passed => "passed",
        ScenarioStatus::Failed => "**failed**",
        ScenarioStatus::Errored => "**errored**",
        ScenarioStatus::Flaky => "*flaky*",
    }
}

/// What failed; for a flaky run, what failed in the attempts before the one that passed.
fn failures_cell(s: &ScenarioReport) -> String {
    if s.status == ScenarioStatus::Flaky {
        let earlier: Vec<String> = s.retries.iter().flat_map(|a| a.failures.clone()).collect();
        return format!(
            "passed on attempt {}; before: {}",
            s.retries.len() + 1,
            earlier.join("; ")
        );
    }
    s.failures().join("; ")
}

/// summary.md as text.
pub fn render_summary(report: &RunReport) -> String {
    let summary = report.summary();
    let mut out = String::new();
    let seed = report
        .seed
        .map_or_else(|| "per scenario".to_string(), |s| s.to_string());
    // Writing into a String cannot fail.
    let _ = writeln!(out, "# qlab run\n");
    let _ = writeln!(
        out,
        "qlab {} ({}), started {}, mode {}, seed {}\n",
        report.tool_version, report.git_sha, report.started_at, report.mode, seed
    );
    let flaky = if summary.flaky > 0 {
        format!(", {} flaky", summary.flaky)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "**{} scenarios: {} passed, {} failed, {} errored{flaky}**\n",
        summary.scenarios, summary.passed, summary.failed, summary.errored
    );
    let swept: Vec<&ScenarioReport> = report
        .scenarios
        .iter()
        .filter(|s| s.crash_points.is_some())
        .collect();
    if !swept.is_empty() {
        let points: u64 = swept.iter().filter_map(|s| s.crash_points).sum();
        let failed: usize = swept.iter().map(|s| s.crash_failures.len()).sum();
        let _ = writeln!(
            out,
            "**Crash sweep: {points} crash points in {} scenarios, {failed} failed**\n",
            swept.len()
        );
    }
    let _ = writeln!(
        out,
        "| scenario | mode | status | time to contain p50 / p99 | makespan / lower bound | \
         confirmed makespan / lower bound | failures |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for s in &report.scenarios {
        let m = &s.measures;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            cell(&s.name),
            cell(&s.mode),
            status(s),
            ttc(s),
            against_bound(m.makespan_ms, m.lower_bound_ms),
            against_bound(m.confirmed_makespan_ms, m.confirmed_lower_bound_ms),
            cell(&failures_cell(s))
        );
    }
    let mut transports: std::collections::BTreeMap<&str, u64> = Default::default();
    for s in &report.scenarios {
        for (transport, n) in &s.transports {
            *transports.entry(transport).or_default() += n;
        }
    }
    if !transports.is_empty() {
        let counts: Vec<String> = transports
            .iter()
            .map(|(transport, n)| format!("{transport} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "\nDetections the engine took, by transport (its own counters, wire runs): {}",
            counts.join(", ")
        );
    }
    let unfired = report.unfired_faults();
    if !unfired.is_empty() {
        let _ = writeln!(out, "\n## Faults that never fired\n");
        let _ = writeln!(
            out,
            "A declared fault that never fired tests nothing; `qlab run --strict-faults` fails \
             these runs.\n"
        );
        for (s, f) in unfired {
            let call = f
                .call
                .as_deref()
                .map_or(String::new(), |c| format!(" `{c}`"));
            let _ = writeln!(
                out,
                "- warning: {} ({}): faults[{}] `{}` on {}{call}",
                cell(&s.name),
                s.mode,
                f.index,
                f.effect,
                cell(&f.device)
            );
        }
    }
    if swept.iter().any(|s| !s.crash_failures.is_empty()) {
        let _ = writeln!(out, "\n## Crash points that failed\n");
        for s in &swept {
            for f in &s.crash_failures {
                let _ = writeln!(
                    out,
                    "- {} at {}: {} — `{} --crash-sweep --crash-point \"{}\"`",
                    cell(&s.name),
                    cell(&f.point),
                    cell(&f.failures.join("; ")),
                    s.replay.replace('`', "'"),
                    f.point
                );
            }
        }
    }
    let not_passed: Vec<&ScenarioReport> = report
        .scenarios
        .iter()
        .filter(|s| s.status != ScenarioStatus::Passed)
        .collect();
    if !not_passed.is_empty() {
        let _ = writeln!(out, "\n## Replay\n");
        for s in not_passed {
            let _ = writeln!(
                out,
                "- {} ({}): `{}`",
                s.name,
                s.mode,
                s.replay.replace('`', "'")
            );
        }
    }
    out
}
