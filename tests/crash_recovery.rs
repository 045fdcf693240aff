//! R16 and INV-7 for real: the engine is stopped after each journal step in turn, reopened on
//! the same SQLite file, and must finish the operation exactly once without losing the detection.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use quarantine_lab::engine::*;
use quarantine_lab::sim::{CallKind::SetNic, FaultEffect, FaultSpec};

const VDI2: &str = "/tenant-a/vdi-002";

/// Reopens the engine with the journal halting after `limit` commits and detects `ip` (event
/// `e-1`) until the engine is idle: whether the detection was acknowledged, and whether the run
/// completed without reaching the limit.
async fn run_to_limit(h: &mut Harness, limit: u64, ip: &str) -> (bool, bool) {
    h.reopen(Some(limit));
    let acked = h
        .engine()
        .submit_detection(detection(ip, "e-1"))
        .await
        .is_ok();
    h.engine().wait_idle().await;
    (acked, !h.engine().is_halted())
}

/// Runs one detection with the journal halting after `limit` commits, then restarts the engine
/// on the same file. Returns the harness after recovery settled, and whether the first run
/// completed without reaching the limit.
async fn crash_after(limit: u64, faults: Vec<FaultSpec>) -> (Harness, bool) {
    let mut h = Harness::standard_with(faults);
    let (acked, completed) = run_to_limit(&mut h, limit, "10.110.0.12").await;
    // The crash: drop the engine with whatever was in flight, open a new one on the same file.
    h.reopen(None);
    if !acked {
        // Not acknowledged, so the sender still holds it and sends it again.
        h.detect("10.110.0.12", "e-1").await;
    }
    h.settle().await;
    (h, completed)
}

fn check_exactly_once(h: &Harness, limit: u64, expected: Outcome) {
    let journal = Journal::open(&h.journal_path).unwrap();
    assert_eq!(
        journal.detection_count().unwrap(),
        1,
        "limit {limit}: the detection is journaled once"
    );
    let ops = h.engine().operations().unwrap();
    assert_eq!(ops.len(), 1, "limit {limit}: one operation, {ops:?}");
    assert_eq!(ops[0].status, OperationStatus::Done, "limit {limit}");
    assert_eq!(
        ops[0].outcome,
        Some(expected),
        "limit {limit}: {:?}",
        ops[0].detail
    );
    let started_alerts = h
        .alerts()
        .iter()
        .filter(|a| a.code == AlertCode::QuarantineStarted)
        .count();
    assert!(
        started_alerts <= 1,
        "limit {limit}: a resumed quarantine is not announced again"
    );
    let finished_alerts = h
        .alerts()
        .iter()
        .filter(|a| {
            matches!(
                a.code,
                AlertCode::QuarantineCompleted | AlertCode::QuarantineFailed
            )
        })
        .count();
    assert_eq!(finished_alerts, 1, "limit {limit}: one closing alert");
    assert!(journal.snapshot().unwrap().open_operations.is_empty());
}

#[tokio::test(start_paused = true)]
async fn r16_crash_after_every_journal_step_of_a_quarantine() {
    let mut limit = 0;
    loop {
        let (h, completed) = crash_after(limit, Vec::new()).await;
        check_exactly_once(&h, limit, Outcome::Quarantined);
        assert_eq!(h.device(VDI2), vec!["qr-a", "qr-b"], "limit {limit}");
        assert_eq!(h.managed(VDI2), vec!["qr-a", "qr-b"], "limit {limit}");
        // INV-6: a NIC already on quarantine after the restart is read, not written again.
        let writes = h.writes_for(VDI2);
        assert_eq!(
            writes.len(),
            2,
            "limit {limit}: one write per NIC, {writes:?}"
        );
        if completed {
            break;
        }
        limit += 1;
        assert!(limit < 100, "the run never completed");
    }
    // The detection, its queueing and the plan share the first commit (the lane stages the
    // plan before the detection's commit starts); call outcomes and the closing step follow.
    assert!(
        limit >= 4,
        "the run has several steps to crash after, got {limit}"
    );
}

/// Counts the commits an engine announces.
#[derive(Default)]
struct Commits(AtomicU64);

impl EngineObserver for Commits {
    fn on_event(&self, event: &EngineEvent) {
        if let EngineEvent::Committed { .. } = event {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// R16, INV-10 with other handles on the crashed engine alive, as a daemon's connection tasks
/// hold it after the lab's wire mode crashes the daemon in-process: `Engine::kill` stops it
/// all the same. The killed engine commits nothing more, so the engine opened next finds the
/// journal as the crash left it and finishes the operation exactly once. Dropping the
/// runner's handle alone left the old engine finishing its writes beside the new one, two
/// engines on one journal.
#[tokio::test(start_paused = true)]
async fn r16_a_killed_engine_leaves_the_journal_to_its_successor() {
    let mut h = Harness::new(site_with_vc_latency("1s"));
    h.engine = None;
    let commits = Arc::new(Commits::default());
    let options = EngineOptions {
        observer: Some(commits.clone()),
        ..EngineOptions::default()
    };
    let journal = Journal::open(&h.journal_path).expect("journal");
    let first = Arc::new(
        Engine::open(h.site.clone(), journal, h.world.adapters(), options).expect("engine"),
    );
    let survivor = first.clone();
    first
        .submit_detection(detection("10.110.0.12", "e-1"))
        .await
        .expect("acknowledged");
    // Both vNIC writes are on the wire (the vCenter takes 1 s) when the crash comes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    first.kill().await;
    let at_kill = commits.0.load(Ordering::SeqCst);
    assert!(at_kill >= 1, "the detection and the plan were journaled");
    drop(first);
    h.reopen(None);
    h.settle().await;
    // Long enough for the killed engine's calls to return, had it gone on.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        commits.0.load(Ordering::SeqCst),
        at_kill,
        "a killed engine commits nothing more"
    );
    // The crash cut the writes it had on the wire, as a process's death does: they end
    // `unknown` (the world applies none), and the successor reads before writing again.
    let calls = h.calls();
    let killed: Vec<_> = calls[..2]
        .iter()
        .map(|c| (c.op.as_str(), c.result.as_deref()))
        .collect();
    assert_eq!(
        killed,
        vec![("set_nic", Some("unknown")), ("set_nic", Some("unknown"))],
        "{calls:?}"
    );
    assert!(survivor.is_halted(), "a killed engine stays halted");
    assert_eq!(h.engine().halt_reason(), None, "the successor runs on");
    check_exactly_once(&h, 0, Outcome::Quarantined);
    assert_eq!(h.device(VDI2), vec!["qr-a", "qr-b"]);
    assert_eq!(h.managed(VDI2), vec!["qr-a", "qr-b"]);
}

#[tokio::test(start_paused = true)]
async fn r16_crash_after_every_journal_step_of_a_failing_quarantine() {
    let mut limit = 0;
    loop {
        let reject = fault("vc-1", SetNic, FaultEffect::Reject).on_vnic("vm-1002", "4001");
        let (h, completed) = crash_after(limit, vec![reject]).await;
        check_exactly_once(&h, limit, Outcome::QuarantineFailed);
        // R10 across the crash: the NIC that reached quarantine stays, records roll back.
        assert_eq!(h.device(VDI2), vec!["qr-a", "op-b"], "limit {limit}");
        assert_eq!(h.managed(VDI2), vec!["op-a", "op-b"], "limit {limit}");
        let snapshot = Journal::open(&h.journal_path).unwrap().snapshot().unwrap();
        assert!(snapshot.allocations.is_empty(), "limit {limit}: IPs freed");
        if completed {
            break;
        }
        limit += 1;
        assert!(limit < 200, "the run never completed");
    }
}

#[tokio::test(start_paused = true)]
async fn r16_crash_while_a_write_is_in_flight() {
    // The write is applied but its reply never comes; the engine dies meanwhile.
    let mut h = Harness::standard_with(vec![
        fault("vc-1", SetNic, FaultEffect::ApplyThenTimeout).times(1)
    ]);
    h.detect("10.110.0.11", "e-1").await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    h.reopen(None);
    h.settle().await;
    assert_eq!(
        h.view("/tenant-a/vdi-001").outcome,
        Some(Outcome::Quarantined)
    );
    assert_eq!(
        h.writes_for("/tenant-a/vdi-001").len(),
        1,
        "confirmed by reading"
    );
    assert_eq!(h.hits(0), 1, "the write was in flight at the crash");
}

#[tokio::test(start_paused = true)]
async fn r16_reboot_that_succeeded_before_a_crash_is_not_sent_again() {
    let mut limit = 0;
    loop {
        let mut h = Harness::standard();
        let (acked, completed) = run_to_limit(&mut h, limit, "10.110.0.13").await;
        let sent_before = h.resets().len();
        let journaled = Journal::open(&h.journal_path)
            .unwrap()
            .has_successful_call(1, &["power_reset"])
            .unwrap();
        h.reopen(None);
        if !acked {
            h.detect("10.110.0.13", "e-1").await;
        }
        h.settle().await;
        assert_eq!(
            h.view("/tenant-b/vdi-003").outcome,
            Some(Outcome::Rebooted),
            "limit {limit}"
        );
        // A reset sent but not journaled cannot be told from one never sent: it is sent again
        // (at least once). A journaled one never is.
        let expected = if sent_before == 1 && !journaled { 2 } else { 1 };
        assert_eq!(
            h.resets().len(),
            expected,
            "limit {limit}: sent {sent_before}, journaled {journaled}"
        );
        if completed {
            break;
        }
        limit += 1;
        assert!(limit < 50);
    }
}
