//! report.html: one self-contained page (inline CSS and SVG; no script, font or image from
//! anywhere else) a person opens to see a run.
//!
//! The page starts with the run's summary and a table of every scenario run, then one section
//! per run: a timeline with one lane per device (each call a bar from invoke to return, coloured
//! by outcome; the windows of the scenario's faults shaded on the device they name), a lane of
//! detections, lanes of L-Servers contained and confirmed (R9), vertical lines for crashes,
//! restarts and heals; the time-to-contain distribution, and each makespan against its lower
//! bound. A run that did not pass also shows what was violated, an excerpt of the history around
//! it, and its replay command.
//!
//! Decisions where the spec is silent:
//! - Size: at most [`MAX_LANES`] device lanes (the busiest; the others share one "other devices"
//!   lane), and a lane with more than [`MAX_BARS`] calls, or more than [`MAX_MARKS`] detections or
//!   L-Servers, is drawn as [`BUCKETS`] columns (height: how many; colour: the worst outcome in
//!   the column: unknown, then fail, then ok). An outbreak of 10,000 L-Servers stays a page of a
//!   few hundred kilobytes.
//! - The history excerpt shows the events that concern the L-Servers the first failure names
//!   (at most [`EXCERPT_LINES`], the last ones), else the end of the history.
//! - Each scenario's section sits between `<!--qlab:section KEY-->` and `<!--qlab:end-->`
//!   comments, so `qlab report merge` can take sections from the shards' pages as they are.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use super::{RunReport, ScenarioReport, ScenarioStatus};
use crate::check::containment_marks;
use crate::model::history::{EventKind, RunRecord};
use crate::model::Site;

/// Most device lanes drawn one by one.
pub const MAX_LANES: usize = 24;
/// Most call bars drawn one by one in a lane.
pub const MAX_BARS: usize = 400;
/// Most detections or L-Server marks drawn one by one in a lane.
pub const MAX_MARKS: usize = 300;
/// Columns of an aggregated lane.
pub const BUCKETS: usize = 200;
/// Most history lines in a failed run's excerpt.
pub const EXCERPT_LINES: usize = 40;

const WIDTH: f64 = 900.0;
const LABEL: f64 = 170.0;
const LANE_H: f64 = 16.0;

/// Where one `[[faults]]` entry was active, on the run clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultWindow {
    /// Position among the scenario's faults.
    pub index: usize,
    /// Device (or AV server) it names.
    pub device: String,
    /// Its effect.
    pub effect: String,
    /// Start of the window.
    pub from_ms: u64,
    /// End of the window; the end of the run when absent.
    pub until_ms: Option<u64>,
}

/// Outcome of a device call, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Ok,
    Fail,
    Unknown,
}

impl Outcome {
    fn parse(text: &str) -> Outcome {
        match text {
            "ok" => Outcome::Ok,
            "fail" => Outcome::Fail,
            _ => Outcome::Unknown,
        }
    }

    fn class(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Unknown => "unk",
        }
    }
}

/// One device call, from invoke to return.
#[derive(Debug, Clone)]
struct Bar {
    start: u64,
    end: u64,
    outcome: Outcome,
    what: String,
}

/// What a scenario's section draws, taken from its run record.
#[derive(Debug, Clone)]
pub struct Timeline {
    end_ms: u64,
    lanes: Vec<(String, Vec<Bar>)>,
    detections: Vec<u64>,
    crashes: Vec<u64>,
    restarts: Vec<u64>,
    heals: Vec<(u64, String)>,
    reboots: Vec<(u64, String)>,
    contained: Vec<(u64, String)>,
    confirmed: Vec<(u64, String)>,
    time_to_contain: Vec<u64>,
    windows: Vec<FaultWindow>,
    excerpt: Vec<String>,
}

impl Timeline {
    /// Builds the timeline of one run. `failures` (the run's failure lines) choose the history
    /// excerpt; empty for a run that passed.
    pub fn build(
        site: &Site,
        record: &RunRecord,
        windows: Vec<FaultWindow>,
        failures: &[String],
    ) -> Timeline {
        let mut open: HashMap<u64, (u64, String, String)> = HashMap::new();
        let mut by_device: BTreeMap<String, Vec<Bar>> = BTreeMap::new();
        let mut t = Timeline {
            end_ms: 0,
            lanes: Vec::new(),
            detections: Vec::new(),
            crashes: Vec::new(),
            restarts: Vec::new(),
            heals: Vec::new(),
            reboots: Vec::new(),
            contained: Vec::new(),
            confirmed: Vec::new(),
            time_to_contain: Vec::new(),
            windows,
            excerpt: Vec::new(),
        };
        for e in &record.history {
            t.end_ms = t.end_ms.max(e.at_ms);
            match &e.kind {
                EventKind::Invoke {
                    call, device, op, ..
                } => {
                    open.insert(*call, (e.at_ms, device.clone(), op.clone()));
                }
                EventKind::Return { call, result, .. } => {
                    if let Some((start, device, op)) = open.remove(call) {
                        by_device.entry(device).or_default().push(Bar {
                            start,
                            end: e.at_ms,
                            outcome: Outcome::parse(result),
                            what: format!("{op}: {result}"),
                        });
                    }
                }
                EventKind::DetectionSent { .. } => t.detections.push(e.at_ms),
                EventKind::Crash => t.crashes.push(e.at_ms),
                EventKind::Restart => t.restarts.push(e.at_ms),
                EventKind::Heal { target } => t.heals.push((e.at_ms, target.clone())),
                EventKind::SwitchRebooted { device } => t.reboots.push((e.at_ms, device.clone())),
                _ => {}
            }
        }
        // A call still open at the end was cut off: `unknown` up to the end.
        for (start, device, op) in open.into_values() {
            by_device.entry(device).or_default().push(Bar {
                start,
                end: t.end_ms,
                outcome: Outcome::Unknown,
                what: format!("{op}: no return"),
            });
        }
        for w in &t.windows {
            by_device.entry(w.device.clone()).or_default();
        }
        let mut lanes: Vec<(String, Vec<Bar>)> = by_device.into_iter().collect();
        for (_, bars) in &mut lanes {
            bars.sort_by_key(|b| (b.start, b.end));
        }
        if lanes.len() > MAX_LANES {
            // The busiest keep their lane; the rest share one.
            lanes.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
            let rest = lanes.split_off(MAX_LANES - 1);
            let mut merged: Vec<Bar> = Vec::new();
            for (_, bars) in &rest {
                merged.extend(bars.iter().cloned());
            }
            merged.sort_by_key(|b| (b.start, b.end));
            lanes.sort_by(|a, b| a.0.cmp(&b.0));
            lanes.push((format!("{} other devices", rest.len()), merged));
        }
        t.lanes = lanes;
        for m in containment_marks(site, record) {
            if let Some(c) = m.contained_ms {
                t.contained.push((c, m.lserver.clone()));
                t.time_to_contain.push(c.saturating_sub(m.received_ms));
            }
            if let Some(c) = m.confirmed_ms {
                t.confirmed.push((c, m.lserver.clone()));
            }
        }
        t.contained.sort();
        t.confirmed.sort();
        if !failures.is_empty() {
            t.excerpt = excerpt(record, failures);
        }
        t
    }
}

/// The history lines about the L-Servers the failures name (the last [`EXCERPT_LINES`]), or
/// the end of the history when they name none.
fn excerpt(record: &RunRecord, failures: &[String]) -> Vec<String> {
    let text = failures.join(" ");
    let named: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | ':' | '(' | ')' | '`'))
        .filter(|w| w.starts_with('/') && w.len() > 1)
        .collect();
    let line = |e: &crate::model::history::HistoryEvent| {
        serde_json::to_string(e).unwrap_or_else(|_| format!("{e:?}"))
    };
    // An invoke about a named L-Server brings its return along (a return names only its call).
    let mut calls = std::collections::HashSet::new();
    let mut lines: Vec<String> = Vec::new();
    for e in &record.history {
        let l = line(e);
        let about = named.iter().any(|n| l.contains(&format!("\"{n}\"")));
        match &e.kind {
            EventKind::Invoke { call, .. } if about => {
                calls.insert(*call);
            }
            EventKind::Return { call, .. } if calls.contains(call) => {
                lines.push(l);
                continue;
            }
            _ => {}
        }
        if about {
            lines.push(l);
        }
    }
    if lines.is_empty() {
        lines = record.history.iter().map(line).collect();
    }
    let skip = lines.len().saturating_sub(EXCERPT_LINES);
    lines.split_off(skip)
}

/// Escapes text for HTML element content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The key of a scenario run's section: `mode/name`, with anything but `[A-Za-z0-9._-]` as `_`
/// (it sits inside an HTML comment and an element id).
pub fn section_key(s: &ScenarioReport) -> String {
    let clean = |t: &str| -> String {
        t.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("{}/{}", clean(&s.mode), clean(&s.name))
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1100px}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}\
.passed{color:#2e7d32}.failed,.errored{color:#c62828;font-weight:bold}.flaky{color:#ef6c00;font-weight:bold}\
section{border-top:2px solid #ddd;margin-top:1.5em}pre{background:#f6f6f6;padding:.5em;overflow-x:auto;font-size:12px}\
svg text{font:11px sans-serif;fill:#333}.ok{fill:#43a047}.fail{fill:#e53935}.unk{fill:#fb8c00}\
.win{fill:#7e57c2;fill-opacity:.18}.det{fill:#1e88e5}.cont{fill:#6d4c41}.conf{fill:#00897b}\
.crash{stroke:#c62828;stroke-width:2}.restart{stroke:#2e7d32;stroke-width:2;stroke-dasharray:4 2}\
.heal{stroke:#7e57c2;stroke-dasharray:2 2}.grid{stroke:#eee}.lb{fill:#90a4ae}.ms{fill:#3949ab}\
.legend span{display:inline-block;width:10px;height:10px;margin:0 3px 0 10px}";

/// report.html of a run, each section drawn from the timeline beside its scenario
/// (`timelines[i]` belongs to `report.scenarios[i]`; `None` draws no timeline).
pub fn render_html(report: &RunReport, timelines: &[Option<Timeline>]) -> String {
    render_with(report, |i, s| {
        section(s, timelines.get(i).and_then(|t| t.as_ref()))
    })
}

/// report.html from sections already rendered (by key, see [`section_key`]); a run with none
/// gets a section without a timeline. Used by `qlab report merge`.
pub fn render_from_sections(report: &RunReport, sections: &HashMap<String, String>) -> String {
    render_with(report, |_, s| match sections.get(&section_key(s)) {
        Some(text) => text.clone(),
        None => section(s, None),
    })
}

/// The sections of a report.html, by key.
pub fn sections_of(page: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = page;
    while let Some(start) = rest.find("<!--qlab:section ") {
        let after = &rest[start..];
        let Some(key_end) = after.find("-->") else {
            break;
        };
        let key = after["<!--qlab:section ".len()..key_end].trim().to_string();
        let Some(end) = after.find("<!--qlab:end-->") else {
            break;
        };
        let end = end + "<!--qlab:end-->".len();
        out.insert(key, after[..end].to_string());
        rest = &after[end..];
    }
    out
}

fn render_with(
    report: &RunReport,
    section_of: impl Fn(usize, &ScenarioReport) -> String,
) -> String {
    let summary = report.summary();
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>qlab run: {} scenarios</title><style>{STYLE}</style></head><body>\n",
        summary.scenarios
    );
    let seed = report
        .seed
        .map_or_else(|| "per scenario".to_string(), |s| s.to_string());
    let _ = writeln!(
        out,
        "<h1>qlab run</h1><p>qlab {} ({}), started {}, mode {}, seed {}</p>\
         <p><b>{} scenarios: <span class=\"passed\">{} passed</span>, \
         <span class=\"failed\">{} failed</span>, <span class=\"errored\">{} errored</span>, \
         <span class=\"flaky\">{} flaky</span></b></p>",
        esc(&report.tool_version),
        esc(&report.git_sha),
        esc(&report.started_at),
        esc(&report.mode),
        seed,
        summary.scenarios,
        summary.passed,
        summary.failed,
        summary.errored,
        summary.flaky
    );
    out.push_str(
        "<p class=\"legend\">calls:<span class=\"ok\" style=\"background:#43a047\"></span>ok\
         <span style=\"background:#e53935\"></span>fail<span style=\"background:#fb8c00\"></span>unknown\
         <span style=\"background:#c5b8e6\"></span>fault window\
         <span style=\"background:#1e88e5\"></span>detection\
         <span style=\"background:#6d4c41\"></span>contained\
         <span style=\"background:#00897b\"></span>confirmed (R9)\
         <span style=\"background:#c62828;height:2px\"></span>crash\
         <span style=\"background:#2e7d32;height:2px\"></span>restart</p>\n",
    );
    out.push_str(
        "<table><tr><th>scenario</th><th>mode</th><th>status</th><th>time to contain p50 / p99</th>\
         <th>makespan / lower bound</th><th>confirmed / lower bound</th></tr>\n",
    );
    for s in &report.scenarios {
        let m = &s.measures;
        let ttc = if m.time_to_contain_ms.count == 0 {
            "–".to_string()
        } else {
            format!(
                "{} / {} ms",
                m.time_to_contain_ms.p50, m.time_to_contain_ms.p99
            )
        };
        let _ = writeln!(
            out,
            "<tr><td><a href=\"#{}\">{}</a></td><td>{}</td><td class=\"{}\">{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            esc(&section_key(s)),
            esc(&s.name),
            esc(&s.mode),
            s.status.as_str(),
            s.status.as_str(),
            ttc,
            ratio(m.makespan_ms, m.lower_bound_ms),
            ratio(m.confirmed_makespan_ms, m.confirmed_lower_bound_ms)
        );
    }
    out.push_str("</table>\n");
    for (i, s) in report.scenarios.iter().enumerate() {
        out.push_str(&section_of(i, s));
        out.push('\n');
    }
    out.push_str("</body></html>\n");
    out
}

fn ratio(makespan: u64, bound: u64) -> String {
    if makespan == 0 && bound == 0 {
        "–".into()
    } else if bound == 0 {
        format!("{makespan} / 0 ms")
    } else {
        format!(
            "{makespan} / {bound} ms (×{:.2})",
            makespan as f64 / bound as f64
        )
    }
}

/// One scenario run's section.
fn section(s: &ScenarioReport, timeline: Option<&Timeline>) -> String {
    let key = section_key(s);
    let mut out = String::new();
    let _ = write!(
        out,
        "<!--qlab:section {key}--><section id=\"{}\"><h2>{} <small>({})</small> \
         <span class=\"{}\">{}</span></h2><p>{} · seed {} · {} ms wall · digest <code>{}</code></p>",
        esc(&key),
        esc(&s.name),
        esc(&s.mode),
        s.status.as_str(),
        s.status.as_str(),
        esc(&s.file),
        s.seed,
        s.duration_ms,
        esc(&s.history_digest)
    );
    if s.status != ScenarioStatus::Passed {
        let failures = if s.status == ScenarioStatus::Flaky {
            s.retries.iter().flat_map(|a| a.failures.clone()).collect()
        } else {
            s.failures()
        };
        let title = if s.status == ScenarioStatus::Flaky {
            format!(
                "Passed on attempt {}; earlier attempts failed:",
                s.retries.len() + 1
            )
        } else {
            "Violated:".to_string()
        };
        let _ = write!(out, "<p><b>{}</b></p><ul>", esc(&title));
        for f in failures.iter().take(50) {
            let _ = write!(out, "<li>{}</li>", esc(f));
        }
        out.push_str("</ul>");
        if let Some(t) = timeline.filter(|t| !t.excerpt.is_empty()) {
            out.push_str("<p>History excerpt:</p><pre>");
            for l in &t.excerpt {
                out.push_str(&esc(l));
                out.push('\n');
            }
            out.push_str("</pre>");
        }
        let _ = write!(out, "<p>Replay: <code>{}</code></p>", esc(&s.replay));
    }
    if let Some(t) = timeline {
        out.push_str(&timeline_svg(t));
        out.push_str(&distribution_svg(&t.time_to_contain));
    }
    out.push_str(&makespan_svg(s));
    out.push_str("</section><!--qlab:end-->");
    out
}

/// x of a moment on the lane area.
fn x_of(at: u64, end: u64) -> f64 {
    LABEL + (WIDTH - LABEL) * (at as f64 / end.max(1) as f64)
}

fn timeline_svg(t: &Timeline) -> String {
    let end = t.end_ms.max(1);
    let lanes = t.lanes.len() + 3;
    let height = LANE_H * lanes as f64 + 20.0;
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" role=\"img\"><title>timeline, 0 to {end} ms</title>"
    );
    for k in 0..=4 {
        let at = end * k / 4;
        let x = x_of(at, end);
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"0\" x2=\"{x:.1}\" y2=\"{:.1}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{at} ms</text>",
            height - 12.0,
            (x - 20.0).clamp(LABEL, WIDTH - 60.0),
            height - 2.0
        );
    }
    let mut row = 0usize;
    for (device, bars) in &t.lanes {
        device_lane(&mut out, t, device, bars, LANE_H * row as f64);
        row += 1;
    }
    let mut marks = |label: &str, class: &str, times: &[u64], names: Option<&[(u64, String)]>| {
        marks_lane(
            &mut out,
            (label, class),
            times,
            names,
            LANE_H * row as f64,
            end,
        );
        row += 1;
    };
    marks("detections", "det", &t.detections, None);
    let contained: Vec<u64> = t.contained.iter().map(|c| c.0).collect();
    marks("contained", "cont", &contained, Some(&t.contained));
    let confirmed: Vec<u64> = t.confirmed.iter().map(|c| c.0).collect();
    marks("confirmed (R9)", "conf", &confirmed, Some(&t.confirmed));
    let bottom = LANE_H * row as f64;
    let mut vline = |class: &str, at: u64, what: &str| {
        let x = x_of(at, end);
        let _ = write!(
            out,
            "<line class=\"{class}\" x1=\"{x:.1}\" y1=\"0\" x2=\"{x:.1}\" y2=\"{bottom:.1}\">\
             <title>{} at {at} ms</title></line>",
            esc(what)
        );
    };
    for at in &t.crashes {
        vline("crash", *at, "crash");
    }
    for at in &t.restarts {
        vline("restart", *at, "restart");
    }
    for (at, target) in &t.heals {
        vline("heal", *at, &format!("heal {target}"));
    }
    out.push_str("</svg>");
    out
}

/// One device's lane at height `y`: its fault windows, its calls (bars, or per-bucket counts
/// when there are too many to draw) and its reboots.
fn device_lane(out: &mut String, t: &Timeline, device: &str, bars: &[Bar], y: f64) {
    let end = t.end_ms.max(1);
    let _ = write!(
        out,
        "<text x=\"0\" y=\"{:.1}\">{}</text>",
        y + 12.0,
        esc(&truncate(device, 26))
    );
    for w in t.windows.iter().filter(|w| w.device == device) {
        let x1 = x_of(w.from_ms.min(end), end);
        let x2 = x_of(w.until_ms.unwrap_or(end).min(end), end);
        let _ = write!(
            out,
            "<rect class=\"win\" x=\"{x1:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{LANE_H}\">\
             <title>faults[{}] {} from {} ms</title></rect>",
            (x2 - x1).max(1.0),
            w.index,
            esc(&w.effect),
            w.from_ms
        );
    }
    if bars.len() <= MAX_BARS {
        for b in bars {
            let x1 = x_of(b.start, end);
            let x2 = x_of(b.end, end);
            let _ = write!(
                out,
                "<rect class=\"{}\" x=\"{x1:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\">\
                 <title>{} ({}–{} ms)</title></rect>",
                b.outcome.class(),
                y + 3.0,
                (x2 - x1).max(1.0),
                LANE_H - 6.0,
                esc(&b.what),
                b.start,
                b.end
            );
        }
    } else {
        let mut counts = vec![(0usize, Outcome::Ok); BUCKETS];
        for b in bars {
            let i = bucket(b.start, end);
            counts[i].0 += 1;
            counts[i].1 = counts[i].1.max(b.outcome);
        }
        let most = counts.iter().map(|c| c.0).max().unwrap_or(1).max(1);
        for (i, (n, worst)) in counts.iter().enumerate().filter(|(_, c)| c.0 > 0) {
            let h = ((LANE_H - 4.0) * *n as f64 / most as f64).max(1.5);
            let _ = write!(
                out,
                "<rect class=\"{}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\">\
                 <title>{n} calls</title></rect>",
                worst.class(),
                bucket_x(i),
                y + LANE_H - 2.0 - h,
                bucket_w()
            );
        }
    }
    for (at, _) in t.reboots.iter().filter(|(_, d)| d == device) {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\">⟳</text>",
            x_of(*at, end) - 4.0,
            y + 12.0
        );
    }
}

/// A lane of instants at height `y` (detections, containments): one mark each, or per-bucket
/// counts when there are too many to draw.
fn marks_lane(
    out: &mut String,
    (label, class): (&str, &str),
    times: &[u64],
    names: Option<&[(u64, String)]>,
    y: f64,
    end: u64,
) {
    let _ = write!(out, "<text x=\"0\" y=\"{:.1}\">{label}</text>", y + 12.0);
    if times.len() <= MAX_MARKS {
        for (i, at) in times.iter().enumerate() {
            let name = names.and_then(|n| n.get(i)).map_or("", |(_, n)| n.as_str());
            let _ = write!(
                out,
                "<rect class=\"{class}\" x=\"{:.1}\" y=\"{:.1}\" width=\"2\" height=\"{:.1}\">\
                 <title>{} {at} ms</title></rect>",
                x_of(*at, end) - 1.0,
                y + 2.0,
                LANE_H - 4.0,
                esc(name)
            );
        }
    } else {
        let mut counts = vec![0usize; BUCKETS];
        for at in times {
            counts[bucket(*at, end)] += 1;
        }
        let most = counts.iter().copied().max().unwrap_or(1).max(1);
        for (i, n) in counts.iter().enumerate().filter(|(_, n)| **n > 0) {
            let h = ((LANE_H - 4.0) * *n as f64 / most as f64).max(1.5);
            let _ = write!(
                out,
                "<rect class=\"{class}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\">\
                 <title>{n}</title></rect>",
                bucket_x(i),
                y + LANE_H - 2.0 - h,
                bucket_w()
            );
        }
    }
}

fn bucket(at: u64, end: u64) -> usize {
    ((at as f64 / end.max(1) as f64) * BUCKETS as f64).min(BUCKETS as f64 - 1.0) as usize
}

fn bucket_w() -> f64 {
    (WIDTH - LABEL) / BUCKETS as f64
}

fn bucket_x(i: usize) -> f64 {
    LABEL + bucket_w() * i as f64
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}

/// Histogram of time-to-contain (20 bins from 0 to the largest).
fn distribution_svg(values: &[u64]) -> String {
    if values.is_empty() {
        return String::new();
    }
    const BINS: usize = 20;
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let mut counts = [0usize; BINS];
    for v in values {
        let i = ((*v as f64 / max as f64) * BINS as f64).min(BINS as f64 - 1.0) as usize;
        counts[i] += 1;
    }
    let most = counts.iter().copied().max().unwrap_or(1).max(1);
    let (w, h) = (420.0, 90.0);
    let bw = (w - 40.0) / BINS as f64;
    let mut out = format!(
        "<p>Time to contain, {} L-Servers (0 to {max} ms):</p><svg xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\"><title>time to contain</title>",
        values.len()
    );
    for (i, n) in counts.iter().enumerate() {
        let bh = (h - 20.0) * *n as f64 / most as f64;
        let _ = write!(
            out,
            "<rect class=\"cont\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\">\
             <title>{n} L-Servers in {}–{} ms</title></rect>",
            20.0 + bw * i as f64,
            h - 16.0 - bh,
            bw - 1.0,
            max * i as u64 / BINS as u64,
            max * (i as u64 + 1) / BINS as u64
        );
    }
    let _ = write!(
        out,
        "<text x=\"20\" y=\"{h}\">0</text><text x=\"{:.1}\" y=\"{h}\">{max} ms</text></svg>",
        w - 60.0
    );
    out
}

/// Each makespan against its lower bound, as two bars on one scale.
fn makespan_svg(s: &ScenarioReport) -> String {
    let m = &s.measures;
    let pairs = [
        ("makespan", m.makespan_ms, m.lower_bound_ms),
        (
            "confirmed",
            m.confirmed_makespan_ms,
            m.confirmed_lower_bound_ms,
        ),
    ];
    let scale = pairs.iter().map(|p| p.1.max(p.2)).max().unwrap_or(0).max(1);
    if pairs.iter().all(|p| p.1 == 0 && p.2 == 0) {
        return String::new();
    }
    let (w, h) = (600.0, 64.0);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" role=\"img\"><title>makespan against its lower bound</title>"
    );
    for (i, (label, makespan, bound)) in pairs.iter().enumerate() {
        let y = 32.0 * i as f64;
        let full = w - 260.0;
        let _ = write!(
            out,
            "<text x=\"0\" y=\"{:.1}\">{label}</text>\
             <rect class=\"ms\" x=\"80\" y=\"{:.1}\" width=\"{:.1}\" height=\"10\"><title>makespan {makespan} ms</title></rect>\
             <rect class=\"lb\" x=\"80\" y=\"{:.1}\" width=\"{:.1}\" height=\"10\"><title>lower bound {bound} ms</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            y + 16.0,
            y + 4.0,
            (full * *makespan as f64 / scale as f64).max(1.0),
            y + 16.0,
            (full * *bound as f64 / scale as f64).max(1.0),
            w - 170.0,
            y + 16.0,
            ratio(*makespan, *bound)
        );
    }
    out.push_str("</svg>");
    out
}
