//! The drift watch (R20) against the lab's simulated world on a paused clock: a NIC moved off
//! quarantine by someone else (an `external_change`) is found in the next round and moved back
//! by a restore operation, reads are paced per device, an operation in the lane keeps the watch
//! away, and a restore the device refuses ends `quarantine_failed` with the records kept on
//! quarantine.

mod common;

use std::time::Duration;

use common::*;
use quarantine_lab::engine::*;
use quarantine_lab::sim::{
    CallKind::{GetNic, SetNic},
    FaultEffect,
};
use tokio::time::Instant;

const VDI1: &str = "/tenant-a/vdi-001";
const VDI2: &str = "/tenant-a/vdi-002";
const SBC: &str = "/tenant-a/sbc-01";

/// The test site with a 10 s watch interval and `rate` watch reads per second.
fn harness(rate: u32) -> Harness {
    Harness::new(site_with(|s| {
        let retry = "retry = { attempts = 3, backoff = \"100ms\" }";
        s.replace(
            retry,
            &format!("{retry}\nwatch_interval = \"10s\"\nwatch_calls_per_second = {rate}"),
        )
    }))
}

/// [`harness`] at 10 reads/s with vdi-001 quarantined, then moved back to op-a by hand; and the
/// moment the harness was made.
async fn drifted_vdi1() -> (Instant, Harness) {
    let start = Instant::now();
    let h = harness(10);
    h.detect_settled("10.110.0.11").await;
    h.move_by_hand(VDI1, 0, "op-a");
    (start, h)
}

fn watch_reads(h: &Harness) -> usize {
    h.calls().iter().filter(|c| c.op == "get_nic").count()
}

#[tokio::test(start_paused = true)]
async fn r20_a_drifted_vnic_is_moved_back_with_one_drift_and_one_restored_alert() {
    let (start, h) = drifted_vdi1().await;
    // The watch reads at 10 s and reads the drift again `confirm_read_after` (2 s) later (R8).
    tokio::time::sleep_until(start + Duration::from_millis(12_500)).await;
    h.settle().await;
    assert_eq!(h.device(VDI1), ["qr-a"]);
    assert_eq!(h.managed(VDI1), ["qr-a"], "records keep quarantine");
    assert_eq!(
        h.alert_codes(VDI1),
        [
            "quarantine-started",
            "quarantine-completed",
            "quarantine-drift",
            "quarantine-restored"
        ]
    );
    let alerts = h.alerts();
    let drift = alerts
        .iter()
        .find(|a| a.code == AlertCode::QuarantineDrift)
        .unwrap();
    assert_eq!(drift.severity(), Severity::Error);
    assert_eq!(drift.operation, None, "the drift belongs to no operation");
    assert!(
        drift.detail.contains("nic0") && drift.detail.contains("op-a"),
        "{}",
        drift.detail
    );
    let view = h.view(VDI1);
    assert_eq!(view.state, LServerState::Quarantined);
    assert_eq!(view.outcome, Some(Outcome::Quarantined));
    let ops = h.engine().operations().unwrap();
    assert_eq!(ops.last().unwrap().kind, OperationKind::Restore);
    // The restore read first and wrote once: two writes in all for vdi-001.
    assert_eq!(h.writes_for(VDI1).len(), 2);
    // Verified by the restore's last read, which showed it where the record says.
    assert!(view.last_verified_ms[0].is_some_and(|at| at >= 10_000));
}

#[tokio::test(start_paused = true)]
async fn r20_last_verified_ms_follows_the_latest_read_of_the_nic() {
    let start = Instant::now();
    let h = harness(10);
    h.detect_settled("10.110.0.11").await;
    let verified = h.view(VDI1).last_verified_ms[0];
    assert!(verified.is_some(), "the quarantine's verifying read");
    // The watch reads vdi-001 at 10 s; the NIC is where its record says: verified again.
    tokio::time::sleep_until(start + Duration::from_millis(10_500)).await;
    assert!(h.view(VDI1).last_verified_ms[0] > verified);
    assert_eq!(h.view(SBC).last_verified_ms, [None], "never read");
}

#[tokio::test(start_paused = true)]
async fn r20_watch_reads_are_paced_per_device_and_come_every_interval() {
    let start = Instant::now();
    let h = harness(2);
    h.detect("10.110.0.11", "e-1").await;
    h.detect("10.110.0.12", "e-2").await;
    h.settle().await;
    let before = watch_reads(&h);
    // Three vNICs on vc-1 at two reads per second: at 10 s, 10.5 s and 11 s.
    for (at_ms, reads) in [
        (9_900, 0),
        (10_100, 1),
        (10_600, 2),
        (11_100, 3),
        (19_900, 3),
    ] {
        tokio::time::sleep_until(start + Duration::from_millis(at_ms)).await;
        assert_eq!(watch_reads(&h) - before, reads, "at {at_ms} ms");
    }
    tokio::time::sleep_until(start + Duration::from_millis(21_100)).await;
    assert_eq!(watch_reads(&h) - before, 6, "the second round");
    assert!(h.alert_codes(VDI2).iter().all(|c| *c != "quarantine-drift"));
}

#[tokio::test(start_paused = true)]
async fn r20_a_drift_while_a_release_runs_is_not_restored() {
    let (start, h) = drifted_vdi1().await;
    // The release starts at 9.5 s and its read takes 2 s: it runs when the round comes.
    tokio::time::sleep_until(start + Duration::from_millis(9_500)).await;
    h.fault_now(slow("vc-1", Duration::from_secs(1)));
    h.release(VDI1).await.unwrap();
    tokio::time::sleep_until(start + Duration::from_secs(25)).await;
    h.settle().await;
    assert_eq!(h.device(VDI1), ["op-a"]);
    assert_eq!(h.view(VDI1).state, LServerState::Normal);
    let codes = h.alert_codes(VDI1);
    assert!(codes.contains(&"release-completed"), "{codes:?}");
    assert!(!codes.contains(&"quarantine-drift"), "{codes:?}");
    assert!(h
        .engine()
        .operations()
        .unwrap()
        .iter()
        .all(|o| o.kind != OperationKind::Restore));
}

#[tokio::test(start_paused = true)]
async fn r20_a_restore_the_device_refuses_is_quarantine_failed_and_keeps_the_records() {
    let (start, h) = drifted_vdi1().await;
    h.fault_now(fault("vc-1", SetNic, FaultEffect::Reject));
    // The watch reads at 10 s and reads the drift again `confirm_read_after` (2 s) later (R8).
    tokio::time::sleep_until(start + Duration::from_millis(12_500)).await;
    h.settle().await;
    let view = h.view(VDI1);
    assert_eq!(view.state, LServerState::QuarantineFailed);
    assert_eq!(view.outcome, Some(Outcome::QuarantineFailed));
    assert_eq!(h.managed(VDI1), ["qr-a"], "no R10 rollback after a drift");
    assert_eq!(h.device(VDI1), ["op-a"]);
    assert_eq!(
        view.last_verified_ms,
        [None],
        "the latest read showed the NIC off its record"
    );
    let failed: Vec<Alert> = h
        .alerts()
        .into_iter()
        .filter(|a| a.code == AlertCode::QuarantineFailed)
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].detail.contains("remedy"), "{}", failed[0].detail);
    // The watch leaves a quarantine_failed L-Server alone: no alert storm.
    tokio::time::sleep_until(start + Duration::from_secs(45)).await;
    h.settle().await;
    assert_eq!(
        h.alert_codes(VDI1)
            .iter()
            .filter(|c| **c == "quarantine-drift")
            .count(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn r20_a_nic_the_watch_cannot_read_gets_one_quarantine_failed_alert_until_a_read_succeeds() {
    // INV-12: a drift the watch cannot see (every read of the round fails) must not stay
    // silent, and R8 forbids a blind write: the watch alerts that containment is unverified.
    let start = Instant::now();
    let h = harness(10);
    h.detect_settled("10.110.0.11").await;
    h.fault_now(fault("vc-1", GetNic, FaultEffect::Unavailable));
    h.move_by_hand(VDI1, 0, "op-a");
    let unverified = |h: &Harness| -> Vec<Alert> {
        h.alerts()
            .into_iter()
            .filter(|a| a.code == AlertCode::QuarantineFailed)
            .collect()
    };
    // Rounds at 10, 20 and 30 s all fail: one alert, not one per round.
    tokio::time::sleep_until(start + Duration::from_millis(35_000)).await;
    h.settle().await;
    let failed = unverified(&h);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].operation, None, "it belongs to no operation");
    assert_eq!(failed[0].lserver.as_deref(), Some(VDI1));
    assert!(
        failed[0].detail.contains("nic0") && failed[0].detail.contains("could not read"),
        "{}",
        failed[0].detail
    );
    assert_eq!(h.view(VDI1).state, LServerState::Quarantined);
    assert_eq!(
        h.writes_for(VDI1).len(),
        1,
        "no blind write while reads fail"
    );
    // The device answers again: the next round sees the drift and moves the NIC back.
    h.heal();
    tokio::time::sleep_until(start + Duration::from_millis(45_000)).await;
    h.settle().await;
    assert_eq!(h.device(VDI1), ["qr-a"]);
    assert_eq!(unverified(&h).len(), 1);
    // A later outage is alerted again.
    h.fault_now(fault("vc-1", GetNic, FaultEffect::Unavailable));
    tokio::time::sleep_until(start + Duration::from_millis(55_000)).await;
    h.settle().await;
    assert_eq!(unverified(&h).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn r20_a_drifted_switch_port_is_moved_back_and_saved() {
    let start = Instant::now();
    let h = harness(10);
    h.detect_settled("10.110.0.50").await;
    let saves = h.saves("sw-1");
    h.move_by_hand(SBC, 0, "op-a");
    // The watch reads at 10 s and reads the drift again `confirm_read_after` (2 s) later (R8).
    tokio::time::sleep_until(start + Duration::from_millis(12_500)).await;
    h.settle().await;
    assert_eq!(h.device(SBC), ["qr-a"]);
    assert_eq!(h.saves("sw-1"), saves + 1, "persisted again");
    assert!(h.alert_codes(SBC).contains(&"quarantine-restored"));
}
