//! The `outbreak = { ... }` event (the lab's format extension, scenarios/README.md "Format
//! extensions"): one detection per L-Server under a path prefix, in path order, spread evenly
//! over `over`, with stable event ids; the same detections in sim and wire mode; and the
//! aggregate expectations (`outcomes`, `makespan_ratio_max`) on a real run.

use std::net::IpAddr;
use std::path::Path;

use quarantine_lab::check::Status;
use quarantine_lab::model::history::EventKind;
use quarantine_lab::scenario::load::{load_scenario, EventAction, Scenario};
use quarantine_lab::scenario::runner::{run_sim, ScenarioRun};
use quarantine_lab::scenario::wire::run_wire;

fn topology() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/topologies/vdi-small.toml")
        .display()
        .to_string()
}

/// vdi-small's tenant A (sbc-01, vdi-001, vdi-002 rebooted by policy, vdi-003) reported by one
/// outbreak event at 1 s over 300 ms. A heal comes first, so the outbreak is `events[1]`.
fn scenario(dir: &Path, expect: &str) -> Scenario {
    let path = dir.join("outbreak.toml");
    let text = format!(
        r#"name = "outbreak-expansion"
topology = {:?}

[[events]]
at = "0s"
heal = "all"

[[events]]
at = "1s"
outbreak = {{ source = "osce", lservers = "/tenant-a/", over = "300ms", threat = "WORM_DOWNAD.AD" }}
{expect}"#,
        topology()
    );
    std::fs::write(&path, text).expect("write");
    load_scenario(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// (event id, IP, sent at) of every detection the runner sent.
fn sent(run: &ScenarioRun) -> Vec<(String, Option<IpAddr>, u64)> {
    run.record
        .history
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::DetectionSent { event_id, ip, .. } => Some((event_id.clone(), *ip, e.at_ms)),
            _ => None,
        })
        .collect()
}

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().expect("ip"))
}

#[test]
fn outbreak_sends_one_detection_per_lserver_in_path_order_spread_over_the_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = scenario(dir.path(), "");
    // Loaded as one event: the expansion happens when the runner builds its timeline.
    assert_eq!(s.events.len(), 2);
    assert!(matches!(s.events[1].action, EventAction::Outbreak(_)));
    let run = run_sim(&s, 0, None).expect("runs");
    assert_eq!(
        sent(&run),
        [
            ("outbreak-1-1".to_string(), ip("10.110.0.50"), 1_000),
            ("outbreak-1-2".to_string(), ip("10.110.0.11"), 1_100),
            ("outbreak-1-3".to_string(), ip("10.110.0.12"), 1_200),
            ("outbreak-1-4".to_string(), ip("10.110.0.13"), 1_300),
        ]
    );
    // Every detection was accepted (R3 resolved each IP, R4 saw four distinct ids).
    let accepted = run
        .record
        .history
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::DetectionAcked { disposition, .. } if disposition == "accepted"))
        .count();
    assert_eq!(accepted, 4);
    assert!(run.passed, "{:?}", run.check);
}

#[test]
fn wire_mode_sends_the_same_detections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = scenario(dir.path(), "");
    let ids = |run: &ScenarioRun| -> Vec<(String, Option<IpAddr>)> {
        sent(run).into_iter().map(|(id, ip, _)| (id, ip)).collect()
    };
    let sim = run_sim(&s, 0, None).expect("sim runs");
    let wire = run_wire(&s, 0, 0.05).expect("wire runs");
    assert_eq!(ids(&sim).len(), 4);
    assert_eq!(ids(&wire), ids(&sim));
}

#[test]
fn aggregate_expectations_judge_a_real_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Three of tenant A quarantined, vdi-002 rebooted (policy), tenant B untouched.
    let right = scenario(
        dir.path(),
        "\n[expect]\nmakespan_ratio_max = 100.0\noutcomes = { quarantined = 3, rebooted = 1, untouched = 4 }\n",
    );
    let run = run_sim(&right, 0, None).expect("runs");
    let failed: Vec<_> = run
        .check
        .expectations
        .iter()
        .filter(|e| e.status != Status::Passed)
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(run.passed);

    let wrong = scenario(
        dir.path(),
        "\n[expect]\nmakespan_ratio_max = 1.0\noutcomes = { quarantined = 4 }\n",
    );
    let run = run_sim(&wrong, 0, None).expect("runs");
    let status = |what: &str| {
        run.check
            .expectations
            .iter()
            .find(|e| e.what == what)
            .map(|e| e.status)
    };
    assert_eq!(status("outcomes quarantined"), Some(Status::Failed));
    // With no slack each pair fails exactly when its makespan exceeds its bound.
    let m = &run.check.measures;
    assert_eq!(
        status("makespan_ratio_max") == Some(Status::Failed),
        m.makespan_ms > m.lower_bound_ms,
        "{m:?}"
    );
    assert_eq!(
        status("makespan_ratio_max confirmed") == Some(Status::Failed),
        m.confirmed_makespan_ms > m.confirmed_lower_bound_ms,
        "{m:?}"
    );
    assert!(!run.passed);
}
