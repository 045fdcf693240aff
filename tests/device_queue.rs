//! R15 service order and batching, and R7 group commit: the real engine against the simulated
//! devices on the paused clock, so every time below is simulated time.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::detection;
use quarantine_lab::adapters::Adapters;
use quarantine_lab::engine::{
    AlertCode, Engine, EngineEvent, EngineObserver, EngineOptions, Journal,
};
use quarantine_lab::model::{load_site, Category, Detection};
use quarantine_lab::sim::{Recorder, SimWorld};

use quarantine_lab::model::history::{EventKind, HistoryEvent};
use quarantine_lab::scenario::load::load_scenario;
use quarantine_lab::scenario::runner::{run_sim, ScenarioRun};

fn run(file: &str) -> ScenarioRun {
    let scenario = load_scenario(Path::new(file)).unwrap();
    let run = run_sim(&scenario, scenario.seed, None).unwrap();
    assert!(
        run.check.failed_invariants().is_empty(),
        "{file}: {:?}",
        run.check.failed_invariants()
    );
    run
}

/// When each call named `op` on `device` was invoked.
fn invokes<'a>(history: &'a [HistoryEvent], device: &str, op: &str) -> Vec<&'a HistoryEvent> {
    history
        .iter()
        .filter(|e| {
            matches!(&e.kind, EventKind::Invoke { device: d, op: o, .. } if d == device && o == op)
        })
        .collect()
}

/// When `lserver`'s NIC reached quarantine at the device.
fn contained_at(history: &[HistoryEvent], lserver: &str) -> u64 {
    history
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::TruthChanged { nic, to, .. }
                if nic.lserver == lserver && to.as_deref() == Some("qr-a") =>
            {
                Some(e.at_ms)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("{lserver} never reached quarantine"))
}

#[test]
fn r15_one_switch_request_carries_every_pending_port_change() {
    let run = run("tests/scenarios/r15/eight-ports-at-once.toml");
    assert!(run.passed, "{:?}", run.check.expectations);
    let history = &run.record.history;
    // Eight port changes, all sent at one instant: one request (the switch takes one at a time).
    let writes = invokes(history, "sw-1", "set_port");
    assert_eq!(writes.len(), 8);
    let sent: BTreeSet<u64> = writes.iter().map(|e| e.at_ms).collect();
    assert_eq!(sent.len(), 1, "set_port sent at {sent:?}");
    // The verifying reads likewise.
    let reads = invokes(history, "sw-1", "get_port");
    let read_at: BTreeSet<u64> = reads.iter().map(|e| e.at_ms).collect();
    assert_eq!(
        (reads.len(), read_at.len()),
        (8, 1),
        "get_port at {read_at:?}"
    );
    // One save persists all eight.
    assert_eq!(invokes(history, "sw-1", "save_config").len(), 1);
}

#[test]
fn r15_a_new_write_is_served_before_a_waiting_verification_read() {
    let run = run("tests/scenarios/r15/write-before-read.toml");
    assert!(run.passed);
    let history = &run.record.history;
    // One slot, 100 ms a call: vdi-1 written 0–100 ms, vdi-2 100–200 ms; vdi-1's read has waited
    // since 100 ms, but vdi-3 (detected at 150 ms) is written first, 200–300 ms.
    assert_eq!(contained_at(history, "/t/vdi-1"), 100);
    assert_eq!(contained_at(history, "/t/vdi-2"), 200);
    assert_eq!(contained_at(history, "/t/vdi-3"), 300);
    let first_read = invokes(history, "vc-1", "get_nic")[0].at_ms;
    assert_eq!(first_read, 300);
}

/// Counts the engine's commits.
#[derive(Default)]
struct Commits(AtomicU64);

impl EngineObserver for Commits {
    fn on_event(&self, event: &EngineEvent) {
        if matches!(event, EngineEvent::Committed { .. }) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn r7_detections_arriving_together_share_one_commit() {
    let scenario =
        load_scenario(Path::new("tests/scenarios/r15/eight-ports-at-once.toml")).unwrap();
    let commits = Arc::new(Commits::default());
    let options = EngineOptions {
        observer: Some(commits.clone()),
        ..EngineOptions::default()
    };
    let journal = Journal::open_in_memory().unwrap();
    let engine =
        Engine::open(scenario.site.clone(), journal, Adapters::default(), options).unwrap();
    // Spyware is journaled as ignored (R1): one step per detection, no device call.
    let submits = (1..=8).map(|n| {
        engine.submit_detection(Detection {
            threat: "TSPY_TEST.A".into(),
            category: Category::Spyware,
            ..detection(&format!("10.110.0.{}", 10 + n), &format!("e-{n}"))
        })
    });
    let receipts = futures::future::join_all(submits).await;
    assert!(receipts.iter().all(Result::is_ok));
    // Every acknowledgement waited for durability (R7), and one transaction carried all eight.
    assert_eq!(commits.0.load(Ordering::SeqCst), 1);
    assert_eq!(engine.operations().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r4_one_event_sent_many_times_at_once_is_accepted_once_during_group_commits() {
    let scenario =
        load_scenario(Path::new("tests/scenarios/r15/eight-ports-at-once.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A file journal with fsync: commits take long enough for copies to arrive mid-commit.
    let journal = Journal::open(&dir.path().join("journal.sqlite")).unwrap();
    let engine = Arc::new(
        Engine::open(
            scenario.site.clone(),
            journal,
            Adapters::default(),
            EngineOptions::default(),
        )
        .unwrap(),
    );
    for round in 0..5 {
        let copies = (0..16).map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move {
                engine
                    .submit_detection(Detection {
                        source: "osce".into(),
                        event_id: format!("dup-{round}"),
                        ip: Some("10.110.0.11".parse().unwrap()),
                        mac: None,
                        hostname: None,
                        threat: "TSPY_TEST.A".into(),
                        category: Category::Spyware,
                    })
                    .await
                    .unwrap()
            })
        });
        let receipts: Vec<_> = futures::future::join_all(copies)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let firsts = receipts
            .iter()
            .filter(|r| r.disposition != quarantine_lab::engine::Disposition::Duplicate)
            .count();
        assert_eq!(firsts, 1, "round {round}: {receipts:?}");
        assert!(receipts.iter().all(|r| r.id == receipts[0].id));
    }
}

#[test]
fn r19_a_healthy_device_whose_queue_outlasts_the_call_timeout_quarantines_everyone() {
    // 100 vNICs per vCenter, 8 at a time, 2 s a call, a 5 s call timeout: the last writes wait
    // 24 s for a slot. Waiting is not call time, so every desktop ends quarantined at the bound.
    let run = run("scenarios/outbreak/vdi-400-desktops-on-2s-vcenters.toml");
    assert!(run.passed, "{:?}", run.check.expectations);
    let history = &run.record.history;
    let acked: std::collections::HashMap<&str, u64> = history
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::DetectionAcked {
                lserver: Some(l), ..
            } => Some((l.as_str(), e.at_ms)),
            _ => None,
        })
        .collect();
    let longest_wait = history
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Invoke {
                op,
                lserver: Some(l),
                ..
            } if op == "set_nic" => Some(e.at_ms - acked[l.as_str()]),
            _ => None,
        })
        .max()
        .unwrap();
    assert!(longest_wait > 20_000, "longest slot wait {longest_wait} ms");
    let failed = history
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Return { result, .. } if result != "ok"))
        .count();
    assert_eq!(failed, 0, "no call failed, none was withdrawn");
}

#[tokio::test(start_paused = true)]
async fn r19_a_device_too_slow_for_the_deadline_fails_with_alerts_that_say_why() {
    // 40 desktops, one vCenter taking 2 s a call 4 at a time, a 10 s deadline: only the first
    // rounds fit. The rest must fail on time (R19) with an ERROR alert each (R17) that says the
    // device was too slow for the load, not a bare "unavailable".
    let site =
        Arc::new(load_site(Path::new("fixtures/topologies/test-vcenter-too-slow.toml")).unwrap());
    let world = SimWorld::new(site.clone(), Vec::new(), Recorder::new(), 0);
    let journal = Journal::open_in_memory().unwrap();
    let engine = Engine::open(
        site.clone(),
        journal,
        world.adapters(),
        EngineOptions::default(),
    )
    .unwrap();
    let submits = site.lservers.iter().enumerate().map(|(n, ls)| {
        engine.submit_detection(detection(&ls.nics[0].ip.to_string(), &format!("e-{n}")))
    });
    let receipts = futures::future::join_all(submits).await;
    assert!(receipts.iter().all(Result::is_ok));
    engine.wait_idle().await;
    let alerts = engine.alerts_since(0, 1_000).unwrap();
    let of = |code: AlertCode| alerts.iter().filter(move |a| a.code == code);
    let completed = of(AlertCode::QuarantineCompleted).count();
    let failed: Vec<_> = of(AlertCode::QuarantineFailed).collect();
    assert!(completed > 0, "the first rounds fit in the deadline");
    assert!(
        !failed.is_empty(),
        "the last desktops cannot be reached in time"
    );
    assert_eq!(completed + failed.len(), site.lservers.len());
    for alert in failed {
        assert!(
            alert.detail.contains("too slow for the load") && alert.detail.contains("calls/s"),
            "{}",
            alert.detail
        );
    }
}
