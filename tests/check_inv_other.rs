//! INV-5 … INV-10 on hand-made histories: one that keeps each invariant, one that breaks it.

mod check_support;

use check_support::*;
use quarantine_lab::check::{check_run, Expectations, Status};
use quarantine_lab::model::history::EventKind;

clean_quarantine_verdicts! {
    inv5_writes_to_detected_lserver_pass: "INV-5" => Passed,
    inv6_single_write_passes: "INV-6" => Passed,
    inv7_accepted_detection_finished_once_passes: "INV-7" => Passed,
    inv8_allocation_of_quarantined_lserver_passes: "INV-8" => Passed,
    inv10_operation_within_deadline_passes: "INV-10" => Passed,
}

#[test]
fn inv5_write_to_bystander_violates() {
    let site = site();
    let mut rec = quarantined_vdi1(&site);
    rec.call(10, "vc-1", "set_nic", VDI3, Some(0), Some("qr-a"));
    assert_fails(&check(&site, &rec), "INV-5", VDI3);
}

#[test]
fn inv5_not_found_detection_authorizes_nothing() {
    let site = site();
    let mut rec = Rec::new(&site);
    rec.ack(0, "e-1", Some(SBC1), "not_found", None).call(
        0,
        "sw-1",
        "set_port",
        SBC1,
        Some(0),
        Some("qr-a"),
    );
    assert_status(&check(&site, &rec), "INV-5", Status::Failed);
}

#[test]
fn inv5_command_authorizes_writes() {
    let site = site();
    let mut rec = Rec::new(&site);
    rec.command(0, "quarantine", SBC1, Some(1))
        .started(0, 1, SBC1, "manual_quarantine")
        .call(0, "sw-1", "set_port", SBC1, Some(0), Some("qr-a"));
    assert_status(&check(&site, &rec), "INV-5", Status::Passed);
}

#[test]
fn inv6_rewrite_of_nic_already_on_target_violates() {
    let site = site();
    let mut rec = quarantined_vdi1(&site);
    rec.call(90, "vc-1", "set_nic", VDI1, Some(0), Some("qr-a"));
    assert_fails(&check(&site, &rec), "INV-6", "already");
}

#[test]
fn inv6_a_second_write_before_any_read_violates_even_before_the_device_applied_the_first() {
    // Two writes of the same target before a read: the first may have landed when the second
    // is sent, whatever the device's truth at that moment.
    let site = site();
    let mut rec = vdi1_accepted(&site);
    rec.call(0, "vc-1", "set_nic", VDI1, Some(0), Some("qr-a"))
        .call(10, "vc-1", "set_nic", VDI1, Some(0), Some("qr-a"))
        .truth(40, VDI1, 0, "op-a", "qr-a", false);
    assert_fails(&check(&site, &rec), "INV-6", "may have landed");
}

#[test]
fn inv6_a_write_before_any_evidence_of_the_nic_passes() {
    // A release whose reads all failed writes the operation network to a NIC the device had
    // there all along: the engine had never read it nor moved it, so no evidence forbade the
    // write (INV-6 is about the engine's evidence).
    let site = site();
    let mut rec = Rec::new(&site);
    rec.command(0, "release", VDI1, Some(1))
        .started(0, 1, VDI1, "release")
        .call(10, "vc-1", "set_nic", VDI1, Some(0), Some("op-a"));
    assert_status(&check(&site, &rec), "INV-6", Status::Passed);
}

#[test]
fn inv6_a_write_after_a_read_showed_the_target_violates() {
    // The same write after a read of the NIC answered the target: the engine knew where it was.
    let site = site();
    let mut rec = Rec::new(&site);
    rec.command(0, "release", VDI1, Some(1))
        .started(0, 1, VDI1, "release")
        .read(0, "vc-1", "get_nic", VDI1, 0, "op-a")
        .call(50, "vc-1", "set_nic", VDI1, Some(0), Some("op-a"));
    assert_fails(&check(&site, &rec), "INV-6", "last read");
}

#[test]
fn inv6_a_rewrite_after_an_error_reply_and_a_read_that_answered_otherwise_passes() {
    // The device applies the write and answers an error; a stale read then answers the old
    // network. The engine's evidence shows the NIC elsewhere, so writing again is what R8
    // allows, although the device had the NIC on the target all along.
    let site = site();
    let mut rec = vdi1_accepted(&site);
    rec.call(0, "vc-1", "set_nic", VDI1, Some(0), Some("qr-a"))
        .truth(30, VDI1, 0, "op-a", "qr-a", false)
        .read(100, "vc-1", "get_nic", VDI1, 0, "op-a")
        .call(300, "vc-1", "set_nic", VDI1, Some(0), Some("qr-a"));
    assert_status(&check(&site, &rec), "INV-6", Status::Passed);
    // Without the read in between, the second write is blind: a finding.
    let mut rec = vdi1_accepted(&site);
    rec.call(0, "vc-1", "set_nic", VDI1, Some(0), Some("qr-a"))
        .truth(30, VDI1, 0, "op-a", "qr-a", false)
        .call(300, "vc-1", "set_nic", VDI1, Some(0), Some("qr-a"));
    assert_status(&check(&site, &rec), "INV-6", Status::Failed);
}

#[test]
fn inv6_a_rewrite_after_a_write_the_device_refused_passes() {
    // A write refused before processing (unavailable, busy, no session) cannot have landed:
    // retrying it is not a rewrite. An error reply may follow an applied write: retrying that
    // one without a read is.
    let site = site();
    for (result, detail, status) in [
        ("fail", "unavailable: connection refused", Status::Passed),
        ("fail", "busy: try again later", Status::Passed),
        ("fail", "auth: session expired", Status::Passed),
        (
            "fail",
            "rejected: error reply after applying",
            Status::Failed,
        ),
        ("unknown", "timeout: no reply", Status::Failed),
    ] {
        let mut rec = vdi1_accepted(&site);
        rec.read(0, "vc-1", "get_nic", VDI1, 0, "op-a")
            .call(100, "vc-1", "set_nic", VDI1, Some(0), Some("qr-a"))
            .reply(result, detail)
            .call(300, "vc-1", "set_nic", VDI1, Some(0), Some("qr-a"));
        let report = check(&site, &rec);
        assert_eq!(inv(&report, "INV-6").status, status, "after {detail}");
    }
}

#[test]
fn inv7_event_accepted_twice_across_restart_violates() {
    let site = site();
    let mut rec = quarantined_vdi1(&site);
    rec.push(100, EventKind::Crash)
        .push(200, EventKind::Restart)
        .accepted(300, "e-1", VDI1, 2, "quarantine")
        .finished(300, 2, VDI1, "quarantined");
    assert_fails(&check(&site, &rec), "INV-7", "twice");
}

#[test]
fn inv7_accepted_detection_lost_in_crash_violates() {
    let site = site();
    let mut rec = Rec::new(&site);
    rec.ack(0, "e-1", Some(VDI1), "accepted", Some(1))
        .push(10, EventKind::Crash)
        .push(1_010, EventKind::Restart);
    assert_fails(&check(&site, &rec), "INV-7", "finished 0 times");
}

#[test]
fn inv7_operation_resumed_after_crash_passes() {
    let site = site();
    let mut rec = vdi1_accepted(&site);
    rec.push(10, EventKind::Crash)
        .push(1_010, EventKind::Restart)
        .started(1_010, 1, VDI1, "quarantine")
        .call(1_010, "vc-1", "set_nic", VDI1, Some(0), Some("qr-a"))
        .lands("op-a", false)
        .alert(1_090, "quarantine-completed", "INFO", Some(VDI1), Some(1))
        .finished(1_090, 1, VDI1, "quarantined")
        .final_quarantined(VDI1, "qr-a", "10.210.0.2");
    let report = check(&site, &rec);
    assert_status(&report, "INV-7", Status::Passed);
    assert_status(&report, "INV-10", Status::Passed);
}

#[test]
fn inv8_gateway_address_violates() {
    let site = site();
    let mut rec = quarantined_vdi1(&site);
    rec.run.allocations.clear();
    rec.allocation("qr-a", "10.210.0.1", VDI1).final_nic(
        VDI1,
        0,
        Some("qr-a"),
        "qr-a",
        "10.210.0.1",
    );
    assert_fails(&check(&site, &rec), "INV-8", "gateway");
}

#[test]
fn inv8_duplicate_and_outside_subnet_violate() {
    let site = site();
    let mut rec = quarantined_vdi1(&site);
    rec.allocation("qr-a", "10.210.0.2", VDI1)
        .allocation("qr-a", "10.99.0.5", VDI1);
    let detail = &inv(&check(&site, &rec), "INV-8").detail.clone();
    assert!(detail.contains("twice"), "{detail}");
    assert!(detail.contains("outside the subnet"), "{detail}");
}

#[test]
fn inv8_allocation_kept_after_rollback_violates() {
    let site = site();
    let mut rec = vdi1_accepted(&site);
    rec.failed(60_000, 1, VDI1, "quarantine")
        .final_state(
            VDI1,
            "quarantine_failed",
            "normal",
            Some("quarantine_failed"),
        )
        .allocation("qr-a", "10.210.0.2", VDI1);
    assert_fails(&check(&site, &rec), "INV-8", "quarantine_failed");
}

#[test]
fn inv8_quarantined_record_without_allocation_violates() {
    let site = site();
    let mut rec = quarantined_vdi1(&site);
    rec.run.allocations.clear();
    assert_status(&check(&site, &rec), "INV-8", Status::Failed);
}

#[test]
fn inv9_failure_with_one_error_alert_passes() {
    let site = site();
    let mut rec = Rec::new(&site);
    rec.accepted(0, "e-1", VDI2, 1, "reboot")
        .failed(5_000, 1, VDI2, "reboot");
    assert_status(&check(&site, &rec), "INV-9", Status::Passed);
}

#[test]
fn inv9_failure_without_alert_violates() {
    let site = site();
    let mut rec = Rec::new(&site);
    rec.accepted(0, "e-1", VDI2, 1, "reboot")
        .finished(5_000, 1, VDI2, "reboot_failed");
    assert_fails(&check(&site, &rec), "INV-9", "0 ERROR alerts");
}

#[test]
fn inv9_two_error_alerts_violate() {
    let site = site();
    let mut rec = Rec::new(&site);
    rec.accepted(0, "e-1", VDI2, 1, "reboot")
        .alert(5_000, "reboot-failed", "ERROR", Some(VDI2), Some(1))
        .alert(5_001, "reboot-failed", "ERROR", Some(VDI2), Some(1))
        .finished(5_000, 1, VDI2, "reboot_failed");
    assert_status(&check(&site, &rec), "INV-9", Status::Failed);
}

#[test]
fn inv9_alert_naming_nothing_violates() {
    let site = site();
    let mut rec = quarantined_vdi1(&site);
    rec.alert(100, "lserver-not-found", "ERROR", None, None);
    assert_fails(&check(&site, &rec), "INV-9", "names no L-Server");
}

#[test]
fn inv10_operation_past_deadline_violates() {
    // vdi-small: deadline 60 s + call timeout 5 s, plus 10% = 71.5 s.
    let site = site();
    let mut rec = vdi1_accepted(&site);
    rec.failed(80_000, 1, VDI1, "quarantine");
    assert_fails(&check(&site, &rec), "INV-10", "80000 ms");
}

#[test]
fn inv10_operation_never_finished_violates() {
    let site = site();
    let mut rec = vdi1_accepted(&site);
    rec.run.lservers[0].pending_operations = 1;
    let report = check(&site, &rec);
    assert_status(&report, "INV-10", Status::Failed);
    let detail = &inv(&report, "INV-10").detail;
    assert!(detail.contains("never finished"), "{detail}");
    assert!(detail.contains("pending"), "{detail}");
}

#[test]
fn empty_run_skips_everything_and_never_panics() {
    let site = site();
    let report = check_run(
        &site,
        &quarantine_lab::model::history::RunRecord::default(),
        &Expectations::default(),
    );
    assert!(report
        .invariants
        .iter()
        .all(|v| v.status == Status::Skipped));
    assert_eq!(report.measures.device_writes, 0);
    assert_eq!(report.measures.lower_bound_ms, 0);
}
