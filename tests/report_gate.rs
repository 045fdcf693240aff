//! CI gating as a pipeline uses it, through the `qlab` binary: shard runs merged into one report
//! (`qlab report merge`), balanced shards, the gate against a baseline (`qlab gate`), retries
//! and flaky runs, and report.html.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::run::{qlab_output as qlab, text};
use serde_json::Value;

/// Fast folders of the library: every kind of verdict the merge must keep, in a second or two.
const LIBRARY: [&str; 2] = ["scenarios/ingest", "scenarios/rollback"];

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `qlab run LIBRARY --report-dir DIR EXTRA...`; returns its output.
fn run_library(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run"];
    args.extend(LIBRARY);
    args.extend(["--jobs", "2", "--report-dir", path(dir)]);
    args.extend(extra);
    qlab(&args)
}

fn report(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).expect("report"))
        .expect("json")
}

/// (name, mode) → (status, history digest).
fn verdicts(report: &Value) -> BTreeMap<(String, String), (String, String)> {
    report["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .map(|s| {
            (
                (
                    s["name"].as_str().unwrap().to_string(),
                    s["mode"].as_str().unwrap().to_string(),
                ),
                (
                    s["status"].as_str().unwrap().to_string(),
                    s["history_digest"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

fn write_json(dir: &Path, value: &Value) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(value).unwrap(),
    )
    .unwrap();
}

/// `qlab report merge DIRS... --out OUT EXTRA...`.
fn merge(dirs: &[&PathBuf], out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["report", "merge"];
    args.extend(dirs.iter().map(|d| path(d)));
    args.extend(["--out", path(out)]);
    args.extend(extra);
    qlab(&args)
}

fn shards(tmp: &Path, n: usize, extra: &[&str]) -> Vec<PathBuf> {
    (1..=n)
        .map(|k| {
            let dir = tmp.join(format!("shard-{k}"));
            let shard = format!("{k}/{n}");
            let mut args = vec!["--shard", shard.as_str()];
            args.extend(extra);
            let out = run_library(&dir, &args);
            assert_eq!(out.status.code(), Some(0), "{}", text(&out));
            dir
        })
        .collect()
}

#[test]
fn inv11_three_shards_merged_equal_one_unsharded_run() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    let out = run_library(&whole, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dirs = shards(tmp.path(), 3, &[]);
    for d in &dirs {
        let r = report(d);
        assert_eq!(r["shard"]["count"], 3);
        assert_eq!(r["shard"]["assignment"], "hash");
    }
    let merged = tmp.path().join("merged");
    let out = merge(&dirs.iter().collect::<Vec<_>>(), &merged, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let m = report(&merged);
    let w = report(&whole);
    assert_eq!(verdicts(&m), verdicts(&w), "same verdicts and digests");
    assert_eq!(m["summary"], w["summary"]);
    assert!(m.get("shard").is_none(), "a merged report is no shard");
    for f in ["junit.xml", "summary.md", "report.html"] {
        assert!(merged.join(f).is_file(), "{f} written");
    }
    // Every scenario's section came from its shard's page, timeline included.
    let html = std::fs::read_to_string(merged.join("report.html")).unwrap();
    let n = m["scenarios"].as_array().unwrap().len();
    assert_eq!(html.matches("<!--qlab:section ").count(), n);
    assert!(html.matches("<svg").count() >= n, "timelines kept");

    // A missing shard is named and refused…
    let out = merge(&[&dirs[0], &dirs[2]], &tmp.path().join("partial"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("missing shards: 2/3"), "{}", text(&out));
    // …unless asked for, then it is a warning.
    let out = merge(
        &[&dirs[0], &dirs[2]],
        &tmp.path().join("partial"),
        &["--allow-missing"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("warning: missing shards: 2/3"));
    // A shard given twice overlaps.
    let out = merge(&[&dirs[0], &dirs[0]], &tmp.path().join("twice"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("overlap"), "{}", text(&out));
}

#[test]
fn merge_refuses_reports_of_different_builds() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = shards(tmp.path(), 2, &[]);
    let mut other = report(&dirs[1]);
    other["git_sha"] = Value::from("0000000000000000000000000000000000000000");
    write_json(&dirs[1], &other);
    let out = merge(&[&dirs[0], &dirs[1]], &tmp.path().join("m"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("different builds: git_sha"),
        "{}",
        text(&out)
    );
    assert!(!tmp.path().join("m").exists(), "nothing written");

    let mut other = report(&dirs[1]);
    other["git_sha"] = report(&dirs[0])["git_sha"].clone();
    other["binary_sha256"] = Value::from("ff".repeat(32));
    write_json(&dirs[1], &other);
    let out = merge(&[&dirs[0], &dirs[1]], &tmp.path().join("m"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("binary_sha256"), "{}", text(&out));
}

#[test]
fn durations_balance_shards_and_still_merge_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    assert_eq!(run_library(&whole, &[]).status.code(), Some(0));
    let previous = whole.join("report.json");
    let dirs = shards(tmp.path(), 3, &["--durations", path(&previous)]);
    for d in &dirs {
        assert_eq!(report(d)["shard"]["assignment"], "durations");
    }
    let merged = tmp.path().join("merged");
    let out = merge(&dirs.iter().collect::<Vec<_>>(), &merged, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(verdicts(&report(&merged)), verdicts(&report(&whole)));
    // Shards split by durations and by hash do not belong together.
    let hashed = shards(&tmp.path().join("h"), 3, &[]);
    let out = merge(
        &[&dirs[0], &hashed[1], &hashed[2]],
        &tmp.path().join("mixed"),
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

/// A run of the library and a baseline made from it.
fn gated_run(tmp: &Path) -> (PathBuf, PathBuf) {
    let run = tmp.join("run");
    let out = run_library(&run, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let baseline = tmp.join("baseline.json");
    let out = qlab(&[
        "gate",
        "--baseline",
        path(&baseline),
        path(&run),
        "--update",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    (run, baseline)
}

/// Gates `report` (written to a fresh folder) against `baseline`; returns the output.
fn gate_value(tmp: &Path, baseline: &Path, report: &Value) -> Output {
    let dir = tmp.join(format!("r{}", rand_suffix()));
    write_json(&dir, report);
    qlab(&["gate", "--baseline", path(baseline), path(&dir)])
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

fn scenario_mut<'a>(r: &'a mut Value, name: &str) -> &'a mut Value {
    r["scenarios"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} in the report"))
}

fn assert_gate_fails(out: &Output, check: &str, scenario: &str) {
    let t = text(out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let line = t
        .lines()
        .find(|l| l.starts_with("FAIL") && l.contains(check))
        .unwrap_or_else(|| panic!("no `{check}` line in\n{t}"));
    assert!(line.contains(scenario), "{line}");
    assert!(t.contains("gate failed"), "{t}");
}

#[test]
fn gate_passes_an_unchanged_run_and_a_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, baseline) = gated_run(tmp.path());
    let out = qlab(&["gate", "--baseline", path(&baseline), path(&run)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("gate passed"));
    // Sim mode is deterministic: a second run gates clean against the first.
    let again = tmp.path().join("again");
    assert_eq!(run_library(&again, &[]).status.code(), Some(0));
    let out = qlab(&["gate", "--baseline", path(&baseline), path(&again)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn gate_fails_on_a_new_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, baseline) = gated_run(tmp.path());
    let mut r = report(&run);
    scenario_mut(&mut r, "reordered-notifications")["status"] = Value::from("failed");
    let out = gate_value(tmp.path(), &baseline, &r);
    assert_gate_fails(&out, "new failure", "reordered-notifications");
}

#[test]
fn gate_fails_on_a_new_flaky_scenario_but_accepts_a_known_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, baseline) = gated_run(tmp.path());
    let mut r = report(&run);
    scenario_mut(&mut r, "reordered-notifications")["status"] = Value::from("flaky");
    let out = gate_value(tmp.path(), &baseline, &r);
    assert_gate_fails(&out, "new flaky", "reordered-notifications");
    // Once the baseline records it as flaky, flaky is accepted.
    let flaky_dir = tmp.path().join("flaky");
    write_json(&flaky_dir, &r);
    let known = tmp.path().join("known.json");
    let out = qlab(&[
        "gate",
        "--baseline",
        path(&known),
        path(&flaky_dir),
        "--update",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let out = qlab(&["gate", "--baseline", path(&known), path(&flaky_dir)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn gate_fails_when_a_fault_stops_firing() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, baseline) = gated_run(tmp.path());
    let mut r = report(&run);
    let s = scenario_mut(&mut r, "same-event-delivered-twice");
    assert!(s["faults"][0]["hits"].as_u64().unwrap() > 0);
    s["faults"][0]["hits"] = Value::from(0);
    let out = gate_value(tmp.path(), &baseline, &r);
    assert_gate_fails(&out, "fault stopped firing", "same-event-delivered-twice");
}

#[test]
fn gate_fails_on_a_worse_time_to_contain_p99_in_sim_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, baseline) = gated_run(tmp.path());
    let mut r = report(&run);
    let s = scenario_mut(&mut r, "same-event-delivered-twice");
    let p99 = s["measures"]["time_to_contain_ms"]["p99"].as_u64().unwrap();
    // One millisecond is a regression in a deterministic mode.
    s["measures"]["time_to_contain_ms"]["p99"] = Value::from(p99 + 1);
    let out = gate_value(tmp.path(), &baseline, &r);
    assert_gate_fails(
        &out,
        "slower: time to contain p99",
        "same-event-delivered-twice",
    );
}

#[test]
fn gate_fails_on_a_worse_makespan_ratio() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, baseline) = gated_run(tmp.path());
    let mut r = report(&run);
    let s = scenario_mut(&mut r, "reordered-notifications");
    let m = s["measures"]["makespan_ms"].as_u64().unwrap();
    s["measures"]["makespan_ms"] = Value::from(m * 2);
    let out = gate_value(tmp.path(), &baseline, &r);
    assert_gate_fails(&out, "slower: makespan ratio", "reordered-notifications");
}

#[test]
fn gate_fails_when_a_baseline_scenario_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, baseline) = gated_run(tmp.path());
    let mut r = report(&run);
    r["scenarios"]
        .as_array_mut()
        .unwrap()
        .retain(|s| s["name"] != "reordered-notifications");
    let out = gate_value(tmp.path(), &baseline, &r);
    assert_gate_fails(&out, "missing", "reordered-notifications");
}

/// A wire-mode report of one scenario with the given time-to-contain p99.
fn wire_report(base: &Value, p99: u64) -> Value {
    let mut r = base.clone();
    r["mode"] = Value::from("wire");
    let mut s = r["scenarios"][0].clone();
    s["mode"] = Value::from("wire");
    s["measures"]["time_to_contain_ms"]["p99"] = Value::from(p99);
    r["scenarios"] = Value::from(vec![s]);
    r
}

#[test]
fn gate_judges_wire_mode_by_a_confidence_interval_over_repeated_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, _) = gated_run(tmp.path());
    let base = report(&run);
    let dirs = |name: &str, values: &[u64]| -> Vec<PathBuf> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let d = tmp.path().join(format!("{name}-{i}"));
                write_json(&d, &wire_report(&base, *v));
                d
            })
            .collect()
    };
    let baseline = tmp.path().join("wire.json");
    let mut args = vec!["gate", "--baseline", path(&baseline), "--update"];
    let base_dirs = dirs("base", &[1000, 1080, 940, 1010]);
    args.extend(base_dirs.iter().map(|d| path(d)));
    assert_eq!(qlab(&args).status.code(), Some(0));
    let gate = |name: &str, values: &[u64]| {
        let ds = dirs(name, values);
        let mut args = vec!["gate", "--baseline", path(&baseline)];
        args.extend(ds.iter().map(|d| path(d)));
        qlab(&args)
    };
    // Noisy but within +25 %: passes.
    let out = gate("noisy", &[1200, 1350, 1100, 1300]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Clearly beyond: fails, with the interval in the table.
    let out = gate("slow", &[2000, 2100, 1900, 2050]);
    assert_gate_fails(&out, "slower: time to contain p99", "wire");
    assert!(text(&out).contains("95 % CI"), "{}", text(&out));
    // One sample is not a measurement: noted, not judged.
    let out = gate("one", &[5000]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("not judged"), "{}", text(&out));
}

#[test]
fn gate_rejects_a_file_that_is_no_baseline_with_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, "{\"schema\": \"other\"}").unwrap();
    write_json(&tmp.path().join("r"), &serde_json::json!({}));
    let out = qlab(&[
        "gate",
        "--baseline",
        path(&bad),
        path(&tmp.path().join("r")),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("r/report.json"), "{}", text(&out));
}

#[test]
fn committed_sim_baseline_reads_and_covers_the_library() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("reports/baselines/sim-library.json"))
        .expect("committed baseline");
    let b: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(b["schema"], "qlab.baseline/v1");
    assert_eq!(b["policy"]["sim"]["ttc_p99"], 0.0, "sim is gated exactly");
    let runs = b["runs"].as_array().unwrap();
    assert!(runs.iter().all(|r| r["mode"] == "sim"));
    assert!(runs.len() >= 80, "the whole sim library: {}", runs.len());
}

#[test]
fn wire_scenario_failing_once_then_passing_is_flaky() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("flaky");
    let name = "reordered-notifications";
    let file = "scenarios/ingest/reordered-notifications.toml";
    let out = qlab(&[
        "run",
        file,
        "--mode",
        "wire",
        "--retries",
        "2",
        "--fail-once",
        name,
        "--report-dir",
        path(&dir),
    ]);
    assert_eq!(out.status.code(), Some(0), "flaky passes: {}", text(&out));
    assert!(text(&out).contains("FLAKY"), "{}", text(&out));
    let r = report(&dir);
    let s = &r["scenarios"][0];
    assert_eq!(s["status"], "flaky");
    assert_eq!(s["mode"], "wire");
    assert_eq!(r["summary"]["flaky"], 1);
    let retries = s["retries"].as_array().unwrap();
    assert_eq!(retries.len(), 1, "failed once");
    assert_eq!(retries[0]["status"], "failed");
    assert!(retries[0]["failures"][0]
        .as_str()
        .unwrap()
        .contains("fail-once"));
    // junit.xml: a passing test case with its flaky failure (the nextest convention).
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert!(junit.contains("<flakyFailure"), "{junit}");
    assert!(!junit.contains("<failure"), "{junit}");
    // Without retries the same hook fails the run.
    let out = qlab(&[
        "run",
        file,
        "--mode",
        "wire",
        "--fail-once",
        name,
        "--report-dir",
        path(&tmp.path().join("strict")),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

/// `qlab run <args> --report-dir <dir>`, asserted to exit with `code`: the report.html it wrote.
fn run_html(dir: &Path, args: &[&str], code: i32) -> String {
    let mut all = vec!["run"];
    all.extend(args);
    all.extend(["--report-dir", path(dir)]);
    let out = qlab(&all);
    assert_eq!(out.status.code(), Some(code), "{}", text(&out));
    std::fs::read_to_string(dir.join("report.html")).unwrap()
}

#[test]
fn report_html_is_self_contained_and_shows_a_failed_scenario() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("html");
    // A broken engine makes a rollback scenario fail: its page must show why.
    let html = run_html(
        &dir,
        &[
            "scenarios/rollback",
            "scenarios/ingest/same-event-delivered-twice.toml",
            "--mutant",
            "leak-ip-on-rollback",
        ],
        1,
    );
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.contains("<script"), "no script");
    assert!(!html.contains("<link"), "nothing loaded from elsewhere");
    let outside: Vec<&str> = html
        .match_indices("http")
        .map(|(i, _)| &html[i..(i + 40).min(html.len())])
        .filter(|s| !s.starts_with("http://www.w3.org/2000/svg"))
        .collect();
    assert!(outside.is_empty(), "external references: {outside:?}");
    let r = report(&dir);
    let failed = r["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["status"] == "failed")
        .expect("a failed scenario");
    let key = format!("sim/{}", failed["name"].as_str().unwrap());
    let start = html.find(&format!("<!--qlab:section {key}-->")).unwrap();
    let section = &html[start..start + html[start..].find("<!--qlab:end-->").unwrap()];
    assert!(section.contains("Violated:"), "{section}");
    assert!(
        section.contains("INV-8"),
        "the violated invariant: {section}"
    );
    assert!(section.contains("History excerpt"), "{section}");
    assert!(section.contains("Replay: <code>qlab run"), "{section}");
    // Fault windows are shaded, calls coloured by outcome.
    assert!(section.contains("class=\"win\""), "{section}");
    assert!(section.contains("class=\"fail\""), "{section}");
}

#[test]
fn report_html_of_outbreak_10000_aggregates_and_stays_small() {
    let tmp = tempfile::tempdir().unwrap();
    let html = run_html(
        &tmp.path().join("outbreak"),
        &["scenarios/outbreak/outbreak-10000.toml"],
        0,
    );
    // 10,000 L-Servers and tens of thousands of calls: drawn as columns, not one by one.
    assert!(html.len() < 1024 * 1024, "{} bytes", html.len());
    assert!(html.contains(" calls</title>"), "call lanes aggregated");
    assert!(html.contains("Time to contain, 10000 L-Servers"));
    assert!(html.matches("<rect").count() < 20_000);
}
