//! `qlab run --crash-sweep` (R16, INV-7): every scenario is crashed once per journal commit and
//! once per device call in flight, restarted, and checked; the sweep counts its crash points and
//! names the one that broke a rule.

use std::path::{Path, PathBuf};
use std::process::Command;

use quarantine_lab::bench::measure::library_selection;
use quarantine_lab::scenario::crash_sweep::{self, CrashSweep};
use quarantine_lab::scenario::library::{
    self, ResultStatus, RunOptions, ScenarioResult, Selection,
};
use quarantine_lab::scenario::load::load_scenario;
use quarantine_lab::scenario::runner::Mutant;
use quarantine_lab::sim::CrashPoint;

/// A scenario with one quarantine on a vCenter: a few commits, two calls.
const QUARANTINE: &str = "scenarios/virtual/vcenter-quarantine-contains-in-two-calls.toml";

fn sweep(file: &str, mutant: Option<Mutant>, only: Option<CrashPoint>) -> ScenarioResult {
    let selection = Selection {
        mutant,
        ..library_selection(PathBuf::from(file), 2)
    };
    let scenarios = library::select(&selection).unwrap();
    let options = RunOptions {
        crash_sweep: true,
        crash_point: only,
        ..RunOptions::default()
    };
    let mut results = library::run_selected_opts(&scenarios, &selection, &options, &|_| {});
    assert_eq!(results.len(), 1);
    results.remove(0)
}

fn swept(result: &ScenarioResult) -> &CrashSweep {
    result
        .crash_sweep
        .as_ref()
        .expect("a sim run under --crash-sweep has a sweep")
}

#[test]
fn r16_a_sweep_counts_commits_and_calls_of_a_quarantine_and_every_point_holds() {
    let result = sweep(QUARANTINE, None, None);
    let sweep = swept(&result);
    assert!(sweep.crash_points > 2, "{sweep:?}");
    assert_eq!(sweep.swept, sweep.crash_points);
    assert!(sweep.failures.is_empty(), "{:?}", sweep.failures);
    assert_eq!(
        result.status,
        ResultStatus::Passed,
        "{:?}",
        result.failures()
    );
}

#[test]
fn inv7_the_sweep_catches_drop_on_crash_at_a_named_commit() {
    // The broken engine forgets unfinished operations at a restart; the scenario has no crash
    // of its own, so only the sweep's crashes can show it.
    let result = sweep(QUARANTINE, Some(Mutant::DropOnCrash), None);
    let sweep = swept(&result);
    let caught = sweep
        .failures
        .iter()
        .find(|f| f.failures.iter().any(|line| line.starts_with("INV-7:")))
        .unwrap_or_else(|| panic!("no crash point trips INV-7: {sweep:?}"));
    assert!(
        caught.point.starts_with("commit ") || caught.point.starts_with("call "),
        "{}",
        caught.point
    );
    assert_eq!(result.status, ResultStatus::Failed);
    assert!(
        result
            .failures()
            .iter()
            .any(|f| f.starts_with(&format!("crash at {}: ", caught.point))),
        "{:?}",
        result.failures()
    );
    // The point's name reruns that point alone, with the same finding.
    let point = crash_sweep::parse_point(&caught.point).unwrap();
    let again = sweep_one(QUARANTINE, Some(Mutant::DropOnCrash), point);
    assert!(again.iter().any(|l| l.starts_with("INV-7:")), "{again:?}");
    // And the correct engine keeps INV-7 at that very point.
    assert!(sweep_one(QUARANTINE, None, point).is_empty());
}

fn sweep_one(file: &str, mutant: Option<Mutant>, point: CrashPoint) -> Vec<String> {
    let scenario = load_scenario(Path::new(file)).unwrap();
    crash_sweep::run_point(&scenario, scenario.seed, mutant, point)
}

#[test]
fn r16_a_call_point_crashes_with_the_call_in_flight_the_same_way_each_time() {
    // Call 2 is the vNIC write: whether it landed is the seed's choice, made the same way on
    // every run (INV-11), and either way recovery reads before it writes (R16).
    let scenario = load_scenario(Path::new(QUARANTINE)).unwrap();
    let run = |seed| {
        let trap = std::sync::Arc::new(quarantine_lab::sim::CrashTrap::at(CrashPoint::InCall(2)));
        let (record, _) =
            quarantine_lab::scenario::runner::play_sim(&scenario, seed, None, Some(trap.clone()))
                .unwrap();
        assert!(trap.fired());
        assert!(crash_sweep::crash_failures(&scenario, &record).is_empty());
        quarantine_lab::check::history_digest(&record.history)
    };
    assert_eq!(run(1), run(1));
    let digests: std::collections::BTreeSet<String> = (0..8).map(run).collect();
    assert!(
        digests.len() > 1,
        "the seed never changed whether the write landed"
    );
}

#[test]
fn r16_crash_points_are_in_report_json_and_summary_md() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_qlab"))
        .args([
            "run",
            QUARANTINE,
            "--crash-sweep",
            "--jobs",
            "2",
            "--report-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    let points = report["scenarios"][0]["crash_points"].as_u64().unwrap();
    assert!(points > 2, "{report}");
    assert!(report["scenarios"][0].get("crash_failures").is_none());
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        summary.contains(&format!(
            "Crash sweep: {points} crash points in 1 scenarios, 0 failed"
        )),
        "{summary}"
    );
}

#[test]
fn r18_a_bad_crash_point_is_refused_with_its_form() {
    let out = Command::new(env!("CARGO_BIN_EXE_qlab"))
        .args([
            "run",
            QUARANTINE,
            "--crash-sweep",
            "--crash-point",
            "write 3",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--crash-point") && stderr.contains("`commit K`"),
        "{stderr}"
    );
}
