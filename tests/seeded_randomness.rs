//! The run's seed (`docs/invariants.md`, "Seeded randomness"): device `jitter`, fault `probability`, and
//! the fault accounting of report.json (`faults`, `--strict-faults`).
//!
//! Each scenario here runs on a copy of the vdi-small fixture, edited in a temporary folder so
//! a test can add `jitter` without touching the shared fixture.

use std::path::{Path, PathBuf};
use std::process::Command;

use quarantine_lab::bench::measure::library_selection;
use quarantine_lab::model::history::{EventKind, FaultAccount};
use quarantine_lab::scenario::library::{run_selected_with, ResultStatus};
use quarantine_lab::scenario::load::{load_scenario, Scenario};
use quarantine_lab::scenario::runner::{run_sim, ScenarioRun};

/// A folder holding `topology.toml` (vdi-small, with `extra` after vc-1's `latency`) and
/// `scenario.toml` (`scenario`, whose header names that topology).
fn setup(extra: &str, scenario: &str) -> (tempfile::TempDir, PathBuf) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/topologies/vdi-small.toml");
    let text = std::fs::read_to_string(fixture).expect("fixture");
    let anchor = "latency = \"40ms\"\n";
    assert!(text.contains(anchor), "test bug: vc-1 has no 40ms latency");
    let topology = text.replacen(anchor, &format!("{anchor}{extra}\n"), 1);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("topology.toml"), topology).expect("write");
    let path = dir.path().join("scenario.toml");
    std::fs::write(&path, scenario).expect("write");
    (dir, path)
}

fn load(path: &Path) -> Scenario {
    load_scenario(path).unwrap_or_else(|e| panic!("{e}"))
}

fn run(scenario: &Scenario, seed: u64) -> ScenarioRun {
    let run = run_sim(scenario, seed, None).unwrap_or_else(|e| panic!("{e}"));
    assert!(run.passed, "seed {seed}: {:?}", run.check);
    run
}

/// Tenant A's three desktops (vc-1) detected one after the other: several vc-1 calls.
const THREE_DESKTOPS: &str = include_str!("../fixtures/scenarios/test-seeded-three-desktops.toml");

/// Every vc-1 call's latency: from its `Invoke` to its `Return`, in ms.
fn vc1_latencies(run: &ScenarioRun) -> Vec<u64> {
    let mut invoked = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for e in &run.record.history {
        match &e.kind {
            EventKind::Invoke { call, device, .. } if device == "vc-1" => {
                invoked.insert(*call, e.at_ms);
            }
            EventKind::Return { call, .. } => {
                if let Some(at) = invoked.remove(call) {
                    out.push(e.at_ms - at);
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn inv11_jitter_same_seed_same_history_other_seed_other_history() {
    let (_dir, path) = setup("jitter = \"30ms\"", THREE_DESKTOPS);
    let scenario = load(&path);
    let first = run(&scenario, 0);
    let again = run(&scenario, 0);
    assert_eq!(first.history_digest, again.history_digest, "INV-11");
    let other = run(&scenario, 1);
    assert_ne!(
        first.history_digest, other.history_digest,
        "--seed must change the history of a scenario with jitter"
    );
    // Each call takes latency (40 ms) plus a draw in [0, 30 ms]; the draws differ.
    let latencies = vc1_latencies(&first);
    assert!(latencies.len() >= 6, "{latencies:?}");
    assert!(
        latencies.iter().all(|l| (40..=70).contains(l)),
        "{latencies:?}"
    );
    assert!(
        latencies.iter().any(|l| *l != latencies[0]),
        "jitter varies the latency: {latencies:?}"
    );
}

#[test]
fn seed_leaves_a_scenario_without_randomness_unchanged() {
    let (_dir, path) = setup("", THREE_DESKTOPS);
    let scenario = load(&path);
    let first = run(&scenario, 0);
    assert!(vc1_latencies(&first).iter().all(|l| *l == 40));
    for seed in [1, 2, 99] {
        assert_eq!(
            run(&scenario, seed).history_digest,
            first.history_digest,
            "seed {seed}: nothing random, nothing may change"
        );
    }
}

/// `busy` on every vc-1 write with probability 0.5: the engine retries busy replies.
const HALF_BUSY: &str = r#"
[[faults]]
device = "vc-1"
call = "set_nic"
effect = "busy"
probability = 0.5
"#;

fn set_nic_calls(run: &ScenarioRun) -> u64 {
    run.record
        .history
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Invoke { device, op, .. } if device == "vc-1" && op == "set_nic"))
        .count() as u64
}

#[test]
fn inv11_fault_probability_is_seeded_and_affects_only_some_calls() {
    let (_dir, path) = setup("", &format!("{THREE_DESKTOPS}{HALF_BUSY}"));
    let scenario = load(&path);
    let mut partial = 0;
    let mut digests = std::collections::BTreeSet::new();
    for seed in 0..8 {
        let first = run(&scenario, seed);
        assert_eq!(
            first.history_digest,
            run(&scenario, seed).history_digest,
            "INV-11, seed {seed}"
        );
        digests.insert(first.history_digest.clone());
        let hits = first.faults[0].hits;
        let calls = set_nic_calls(&first);
        assert!(hits <= calls, "seed {seed}: {hits} hits of {calls} calls");
        if hits > 0 && hits < calls {
            partial += 1;
        }
    }
    assert!(
        partial >= 3,
        "probability 0.5 left only {partial} of 8 seeds partial"
    );
    assert!(
        digests.len() >= 4,
        "seeds give different histories: {digests:?}"
    );
}

#[test]
fn report_faults_count_hits_and_hits_in_operation() {
    let body = include_str!("../fixtures/scenarios/test-seeded-fault-accounts.toml");
    let (_dir, path) = setup("", body);
    let scenario = load(&path);
    let run = run(&scenario, 0);
    let reads = run
        .record
        .history
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Invoke { op, .. } if op == "get_nic"))
        .count() as u64;
    let account = |index: usize, effect: &str, call: Option<&str>, hits, in_op| FaultAccount {
        index,
        device: if index == 0 { "osce" } else { "vc-1" }.into(),
        call: call.map(str::to_string),
        effect: effect.into(),
        hits,
        hits_in_operation: in_op,
    };
    assert!(reads > 0);
    assert_eq!(
        run.faults,
        [
            // The first notification is dropped before any operation exists.
            account(0, "drop", None, 1, 0),
            // vdi-001's write, during its quarantine.
            account(1, "apply_then_timeout", Some("set_nic"), 1, 1),
            // vdi-003 is never detected: declared, never fired.
            account(2, "reject", Some("set_nic"), 0, 0),
            // Every read of the quarantine, each inside it.
            account(3, "delay", Some("get_nic"), reads, reads),
        ]
    );
}

/// One fault that fires, one (for a VM never detected) that does not.
const ONE_UNFIRED: &str = include_str!("../fixtures/scenarios/test-seeded-one-unfired.toml");

#[test]
fn strict_faults_fails_a_scenario_whose_fault_never_fired() {
    let (dir, path) = setup("", ONE_UNFIRED);
    let scenario = load(&path);
    let selection = library_selection(path.clone(), 1);
    let scenarios = [scenario];
    let lenient = run_selected_with(&scenarios, &selection, false, &|_| {});
    assert_eq!(lenient[0].status, ResultStatus::Passed);
    let strict = run_selected_with(&scenarios, &selection, true, &|_| {});
    assert_eq!(strict[0].status, ResultStatus::Failed);
    let failed: Vec<String> = strict[0]
        .check
        .as_ref()
        .expect("checked")
        .expectations
        .iter()
        .filter(|e| e.status == quarantine_lab::check::Status::Failed)
        .map(|e| format!("{}: {}", e.what, e.detail))
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].starts_with("faults[1] fires: `reject` on vc-1 `set_nic`"));

    // The command line: report.json carries the accounting, summary.md warns, and
    // --strict-faults turns the warning into a failure (exit 1).
    let report = dir.path().join("report");
    let qlab = |strict: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_qlab"));
        cmd.arg("run")
            .arg(&path)
            .arg("--report-dir")
            .arg(&report)
            .arg("--jobs")
            .arg("1");
        if strict {
            cmd.arg("--strict-faults");
        }
        cmd.output().expect("qlab runs")
    };
    assert_eq!(qlab(false).status.code(), Some(0));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("report.json")).expect("json"))
            .expect("report.json parses");
    let faults = &json["scenarios"][0]["faults"];
    assert_eq!(faults[1]["index"], 1);
    assert_eq!(faults[1]["effect"], "reject");
    assert_eq!(faults[1]["hits"], 0);
    assert!(faults[0]["hits"].as_u64().is_some_and(|h| h > 0));
    let summary = std::fs::read_to_string(report.join("summary.md")).expect("summary");
    assert!(
        summary.contains("- warning: seeded (sim): faults[1] `reject` on vc-1 `set_nic`"),
        "{summary}"
    );
    assert_eq!(qlab(true).status.code(), Some(1));
}
