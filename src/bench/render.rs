//! Printing a [`BenchReport`]: a table for people, one JSON object for scripts.

use std::fmt::Write;

use serde_json::{json, Value};

use super::{BenchReport, Figure, Target, MAKESPAN_RATIO_TARGET};

/// The table: one row per figure with its target and whether it is met, then one row per
/// library scenario with a lower bound.
pub(super) fn table(report: &BenchReport) -> String {
    let mut out = String::new();
    let seconds = if report.quick { 1 } else { 2 };
    let budget = format!(
        "{seconds} s (wire {} s, over TLS {} s)",
        seconds * super::WIRE_BUDGETS,
        seconds * super::WIRE_TLS_BUDGETS
    );
    // Writing to a String cannot fail; the results are ignored for that reason only.
    let _ = writeln!(
        out,
        "qlab bench: {} build, {budget} per timed figure, journals in {}",
        report.build,
        report.temp_dir.display()
    );
    if report.build == "debug" {
        out.push_str("note: a debug build; run `cargo run --release -- bench` for real figures\n");
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "{:<56} {:>20} {:>12} {:>4}  how",
        "figure", "measured", "target", "met"
    );
    for f in &report.figures {
        let _ = writeln!(
            out,
            "{:<56} {:>20} {:>12} {:>4}  {}",
            f.label,
            format!("{} {}", number(f.value), f.unit),
            f.target.map_or("-".into(), target),
            met(f.met()),
            f.detail
        );
    }
    if !report.ratios.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<60} {:>12} {:>15} {:>8} {:>4}",
            "scenario (lower_bound_ms > 0)", "makespan_ms", "lower_bound_ms", "ratio", "met"
        );
        for r in &report.ratios {
            let _ = writeln!(
                out,
                "{:<60} {:>12} {:>15} {:>8.3} {:>4}",
                r.name,
                r.makespan_ms,
                r.lower_bound_ms,
                r.ratio(),
                // The star ties a ratio under 1 to the note below the table.
                if r.ratio() < 1.0 {
                    "yes*"
                } else {
                    met(Some(r.met()))
                }
            );
        }
        let below = report.ratios.iter().filter(|r| r.ratio() < 1.0).count();
        if below > 0 {
            // A ratio under 1 means the two measures do not end at the same moment, not that the
            // engine beat the bound: say so rather than let it read as a result.
            let _ = writeln!(
                out,
                "* {below} ratio(s) below 1: makespan ends when the last write lands at the \
                 device, while the bound counts every call a NIC needs (write, verifying read, \
                 switch save)"
            );
        }
        let _ = writeln!(out, "target: ratio <= {MAKESPAN_RATIO_TARGET}");
    }
    if !report.scaling.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<40} {:>10} {:>12} {:>14} {:>10} {:>10} {:>8}",
            "scaling curve",
            "L-Servers",
            "wall ms",
            "us/L-Server",
            "makespan",
            "confirmed",
            "failed"
        );
        for p in &report.scaling {
            let _ = writeln!(
                out,
                "{:<40} {:>10} {:>12} {:>14.1} {:>10.3} {:>10.3} {:>8}",
                p.name,
                p.lservers,
                number(p.wall_ms),
                p.us_per_lserver(),
                p.makespan_ratio,
                p.confirmed_ratio,
                p.not_quarantined
            );
        }
    }
    if !report.library_not_passed.is_empty() {
        let _ = writeln!(
            out,
            "\nlibrary scenarios that did not pass: {}",
            report.library_not_passed.join(", ")
        );
    }
    if !report.not_measured.is_empty() {
        out.push_str("\nnot measured by this command yet:\n");
        for n in &report.not_measured {
            let _ = writeln!(out, "- {n}");
        }
    }
    out
}

/// The JSON object: `figures` keyed by figure key (value, unit, target, met, label, detail),
/// `scenarios` with the ratios, and the context of the run.
pub(super) fn json(report: &BenchReport) -> Value {
    let figures: serde_json::Map<String, Value> = report
        .figures
        .iter()
        .map(|f| (f.key.to_string(), figure(f)))
        .collect();
    let scenarios: Vec<Value> = report
        .ratios
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "makespan_ms": r.makespan_ms,
                "lower_bound_ms": r.lower_bound_ms,
                "ratio": r.ratio(),
                "met": r.met(),
            })
        })
        .collect();
    json!({
        "quick": report.quick,
        "build": report.build,
        "temp_dir": report.temp_dir.display().to_string(),
        "figures": figures,
        "scenarios": scenarios,
        "scaling": report.scaling.iter().map(|p| json!({
            "name": p.name,
            "lservers": p.lservers,
            "wall_ms": p.wall_ms,
            "us_per_lserver": p.us_per_lserver(),
            "makespan_ratio": p.makespan_ratio,
            "confirmed_ratio": p.confirmed_ratio,
            "not_quarantined": p.not_quarantined,
            "passed": p.passed,
        })).collect::<Vec<Value>>(),
        "library_not_passed": report.library_not_passed,
        "not_measured": report.not_measured,
    })
}

fn figure(f: &Figure) -> Value {
    json!({
        "label": f.label.trim(),
        "value": f.value,
        "unit": f.unit,
        "target": f.target.map(|t| match t {
            Target::AtLeast(v) => json!({"at_least": v}),
            Target::AtMost(v) => json!({"at_most": v}),
        }),
        "met": f.met(),
        "detail": f.detail,
    })
}

fn target(t: Target) -> String {
    match t {
        Target::AtLeast(v) => format!(">= {}", number(v)),
        Target::AtMost(v) => format!("<= {}", number(v)),
    }
}

fn met(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "-",
    }
}

/// Large values as whole numbers with thousands separators, small ones with three significant
/// digits: the table compares orders of magnitude, not decimals.
fn number(v: f64) -> String {
    if v.abs() >= 100.0 || (v.fract() == 0.0 && v.abs() < 1e15) {
        let digits = format!("{:.0}", v.abs());
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if v < 0.0 {
            grouped.insert(0, '-');
        }
        grouped
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_group_thousands_and_keep_small_ones_readable() {
        assert_eq!(number(1_234_567.4), "1,234,567");
        assert_eq!(number(200_000.0), "200,000");
        assert_eq!(number(999.6), "1,000");
        assert_eq!(number(42.26), "42.3");
        assert_eq!(number(1.05), "1.05");
        assert_eq!(number(72.0), "72");
        assert_eq!(target(Target::AtMost(1.05)), "<= 1.05");
    }
}
