//! INV-1 … INV-4 on hand-made histories: one that keeps each invariant, one that breaks it.

mod check_support;

use check_support::*;
use quarantine_lab::check::Status;
use quarantine_lab::model::history::{EventKind, NicRef};
use quarantine_lab::model::Site;

clean_quarantine_verdicts! {
    inv1_contained_lserver_passes: "INV-1" => Passed,
    inv4_quarantined_records_match_devices: "INV-4" => Passed,
}

#[test]
fn clean_quarantine_keeps_every_invariant() {
    let site = site();
    let report = check(&site, &quarantined_vdi1(&site));
    for v in &report.invariants {
        assert_ne!(v.status, Status::Failed, "{}: {}", v.id, v.detail);
    }
    assert_eq!(report.invariants.len(), 11, "INV-1 … INV-10 and INV-12");
}

#[test]
fn inv1_silent_failure_violates() {
    let site = site();
    let mut rec = vdi1_accepted(&site);
    rec.finished(70_000, 1, VDI1, "quarantine_failed");
    assert_fails(&check(&site, &rec), "INV-1", VDI1);
}

#[test]
fn inv1_failure_with_quarantine_failed_alert_passes() {
    let site = site();
    let mut rec = vdi1_accepted(&site);
    rec.failed(60_000, 1, VDI1, "quarantine");
    assert_status(&check(&site, &rec), "INV-1", Status::Passed);
}

#[test]
fn inv1_config_error_alert_excuses_plan_failure() {
    let site = site();
    let mut rec = vdi1_accepted(&site);
    rec.alert(0, "config-error", "ERROR", Some(VDI1), Some(1))
        .finished(0, 1, VDI1, "quarantine_failed");
    assert_status(&check(&site, &rec), "INV-1", Status::Passed);
}

#[test]
fn inv1_alert_before_the_request_does_not_excuse() {
    let site = site();
    let mut rec = Rec::new(&site);
    rec.alert(0, "quarantine-failed", "ERROR", Some(VDI1), Some(9))
        .command(10, "quarantine", VDI1, Some(1))
        .started(10, 1, VDI1, "manual_quarantine")
        .finished(20, 1, VDI1, "quarantined");
    assert_status(&check(&site, &rec), "INV-1", Status::Failed);
}

#[test]
fn inv1_released_lserver_is_not_required_to_stay() {
    let site = site();
    let mut rec = quarantined_vdi1(&site);
    rec.command(1_000, "release", VDI1, Some(2))
        .started(1_000, 2, VDI1, "release")
        .call(1_000, "vc-1", "set_nic", VDI1, Some(0), Some("op-a"))
        .lands("qr-a", true)
        .finished(1_080, 2, VDI1, "released")
        .final_released(VDI1, "op-a", "10.110.0.11");
    let report = check(&site, &rec);
    assert_status(&report, "INV-1", Status::Skipped);
    assert_status(&report, "INV-2", Status::Passed);
}

#[test]
fn inv1_new_detection_dropped_as_duplicate_during_release_violates() {
    let site = site();
    let mut rec = quarantined_vdi1(&site);
    rec.command(1_000, "release", VDI1, Some(2))
        .started(1_000, 2, VDI1, "release")
        .ack(1_010, "e-2", Some(VDI1), "duplicate", None)
        .truth(1_040, VDI1, 0, "qr-a", "op-a", true)
        .finished(1_080, 2, VDI1, "released")
        .final_released(VDI1, "op-a", "10.110.0.11");
    assert_status(&check(&site, &rec), "INV-1", Status::Failed);
}

#[test]
fn inv1_repeat_of_an_acknowledged_event_after_release_is_not_a_new_request() {
    let site = site();
    let mut rec = quarantined_vdi1(&site);
    rec.command(1_000, "release", VDI1, Some(2))
        .started(1_000, 2, VDI1, "release")
        .truth(1_040, VDI1, 0, "qr-a", "op-a", true)
        .finished(1_080, 2, VDI1, "released")
        .ack(2_000, "e-1", Some(VDI1), "duplicate", Some(1))
        .final_released(VDI1, "op-a", "10.110.0.11");
    assert_status(&check(&site, &rec), "INV-1", Status::Skipped);
}

#[test]
fn inv1_reboot_policy_detection_does_not_ask_for_quarantine() {
    let site = site();
    let mut rec = Rec::new(&site);
    rec.accepted(0, "e-1", VDI2, 1, "reboot")
        .call(0, "vc-1", "power_reset", VDI2, None, None)
        .alert(40, "reboot-completed", "INFO", Some(VDI2), Some(1))
        .finished(40, 1, VDI2, "rebooted")
        .final_state(VDI2, "normal", "normal", Some("rebooted"));
    let report = check(&site, &rec);
    assert_status(&report, "INV-1", Status::Skipped);
    assert_status(&report, "INV-5", Status::Passed);
}

#[test]
fn inv2_release_may_leave_quarantine() {
    let site = site();
    let mut rec = quarantined_vdi1(&site);
    rec.truth(2_000, VDI1, 0, "qr-a", "op-a", true);
    assert_status(&check(&site, &rec), "INV-2", Status::Passed);
}

#[test]
fn inv2_move_off_quarantine_outside_release_violates() {
    let site = site();
    let mut rec = quarantined_vdi1(&site);
    rec.truth(2_000, VDI1, 0, "qr-a", "op-a", false);
    assert_fails(&check(&site, &rec), "INV-2", "outside a release");
}

/// web-01: NIC 0 reaches quarantine, NIC 1 never does; the records roll back (R10).
fn failed_web(site: &Site) -> Rec {
    let mut rec = Rec::new(site);
    rec.accepted(0, "e-1", WEB, 1, "quarantine")
        .call(0, "vc-1", "set_nic", WEB, Some(0), Some("qr-a"))
        .lands("op-a", false)
        .call(0, "vc-1", "set_nic", WEB, Some(1), Some("qr-b"))
        .failed(60_000, 1, WEB, "quarantine")
        .final_nic(WEB, 0, Some("qr-a"), "op-a", "10.110.0.11")
        .final_state(
            WEB,
            "quarantine_failed",
            "normal",
            Some("quarantine_failed"),
        );
    rec
}

#[test]
fn inv3_rollback_keeps_reached_nic_on_quarantine() {
    let site = two_nic_site();
    let report = check(&site, &failed_web(&site));
    assert_status(&report, "INV-3", Status::Passed);
    // Records and devices disagree on purpose after a failure: not INV-4's business.
    assert_status(&report, "INV-4", Status::Skipped);
    assert_status(&report, "INV-1", Status::Passed);
}

#[test]
fn inv3_record_left_on_quarantine_violates() {
    let site = two_nic_site();
    let mut rec = failed_web(&site);
    rec.final_nic(WEB, 0, Some("qr-a"), "qr-a", "10.210.0.2");
    assert_fails(&check(&site, &rec), "INV-3", "nic 0");
}

#[test]
fn inv3_reached_nic_moved_back_violates() {
    let site = two_nic_site();
    let mut rec = failed_web(&site);
    rec.final_nic(WEB, 0, Some("op-a"), "op-a", "10.110.0.11");
    assert_status(&check(&site, &rec), "INV-3", Status::Failed);
}

#[test]
fn inv3_does_not_blame_a_move_off_quarantine_the_engine_did_not_make() {
    let site = two_nic_site();
    // After the failed operation, an external change puts the reached NIC back on op-a.
    let mut rec = failed_web(&site);
    rec.truth(70_000, WEB, 0, "qr-a", "op-a", false)
        .by("external_change")
        .final_nic(WEB, 0, Some("op-a"), "op-a", "10.110.0.11");
    assert_status(&check(&site, &rec), "INV-3", Status::Passed);
    // The same move made by the engine is the rollback's fault.
    let mut rec = failed_web(&site);
    rec.truth(70_000, WEB, 0, "qr-a", "op-a", false).final_nic(
        WEB,
        0,
        Some("op-a"),
        "op-a",
        "10.110.0.11",
    );
    assert_status(&check(&site, &rec), "INV-3", Status::Failed);
}

#[test]
fn inv3_release_after_failure_may_bring_nics_back() {
    let site = two_nic_site();
    let mut rec = failed_web(&site);
    rec.command(70_000, "release", WEB, Some(2))
        .started(70_000, 2, WEB, "release")
        .call(70_000, "vc-1", "set_nic", WEB, Some(0), Some("op-a"))
        .lands("qr-a", true)
        .finished(70_100, 2, WEB, "cancelled")
        .final_nic(WEB, 0, Some("op-a"), "op-a", "10.110.0.11");
    // The release ended `cancelled`, so the last outcome is still quarantine_failed.
    assert_status(&check(&site, &rec), "INV-3", Status::Passed);
}

#[test]
fn inv4_record_disagreeing_with_device_violates() {
    let site = site();
    let mut rec = quarantined_vdi1(&site);
    rec.final_nic(VDI1, 0, Some("op-a"), "qr-a", "10.210.0.2");
    let report = check(&site, &rec);
    assert_status(&report, "INV-4", Status::Failed);
    // The device never kept the NIC on quarantine and nothing alerted.
    assert_status(&report, "INV-1", Status::Failed);
}

/// vdi-001 quarantined, then a release (operation 2) whose write lands (the device goes back
/// to op-a) but whose verifying read fails when `read_fails`; it ends `release_failed` with the
/// record still on qr-a, and its alert names NIC 0 unknown when `named`.
fn release_failed_vdi1(site: &Site, read_fails: bool, named: bool) -> Rec {
    let (result, detail) = if read_fails {
        ("fail", "busy")
    } else {
        ("ok", "op-a")
    };
    release_failed_vdi1_reading(site, result, detail, named)
}

/// [`release_failed_vdi1`] whose verifying read ends `result` with `detail` (for an answer:
/// the network it shows).
fn release_failed_vdi1_reading(site: &Site, result: &str, detail: &str, named: bool) -> Rec {
    let mut rec = quarantined_vdi1(site);
    rec.command(1_000, "release", VDI1, Some(2))
        .started(1_000, 2, VDI1, "release")
        .call(1_000, "vc-1", "set_nic", VDI1, Some(0), Some("op-a"))
        .lands("qr-a", true);
    let read = 100;
    rec.push(
        1_040,
        EventKind::Invoke {
            call: read,
            device: "vc-1".into(),
            op: "get_nic".into(),
            nic: Some(NicRef {
                lserver: VDI1.into(),
                nic: 0,
            }),
            lserver: Some(VDI1.into()),
            value: None,
        },
    )
    .push(
        1_080,
        EventKind::Return {
            call: read,
            result: result.into(),
            detail: detail.into(),
        },
    )
    .finished(1_100, 2, VDI1, "release_failed")
    .push(
        1_100,
        EventKind::Alert {
            seq: 10,
            code: "release-failed".into(),
            severity: "ERROR".into(),
            lserver: Some(VDI1.into()),
            ip: None,
            operation: Some(2),
            unknown_nics: if named { vec![0] } else { Vec::new() },
        },
    )
    .final_nic(VDI1, 0, Some("op-a"), "qr-a", "10.210.0.2")
    .final_state(VDI1, "release_failed", "normal", Some("release_failed"));
    rec
}

#[test]
fn inv4_release_failed_nic_with_failed_read_named_unknown_is_exempt() {
    let site = site();
    let report = check(&site, &release_failed_vdi1(&site, true, true));
    assert_status(&report, "INV-4", Status::Passed);
}

#[test]
fn inv4_release_failed_nic_the_alert_does_not_name_violates() {
    let site = site();
    let report = check(&site, &release_failed_vdi1(&site, true, false));
    assert_status(&report, "INV-4", Status::Failed);
}

#[test]
fn inv4_release_failed_nic_whose_last_read_contradicted_its_write_named_unknown_is_exempt() {
    // R8: the release wrote op-a and its read answered qr-a (a stale read, or a write that did
    // not apply): the engine doubts it and reads again, and the deadline came first.
    let site = site();
    let report = check(
        &site,
        &release_failed_vdi1_reading(&site, "ok", "qr-a", true),
    );
    assert_status(&report, "INV-4", Status::Passed);
    let report = check(
        &site,
        &release_failed_vdi1_reading(&site, "ok", "qr-a", false),
    );
    assert_status(&report, "INV-4", Status::Failed);
}

/// [`release_failed_vdi1`], then a reboot (operation 3, `kind`) that ends `rebooted`; a reboot
/// reads no NIC.
fn reboot_after_release_failed_vdi1(site: &Site, read_fails: bool, named: bool, kind: &str) -> Rec {
    let mut rec = release_failed_vdi1(site, read_fails, named);
    rec.started(2_000, 3, VDI1, kind)
        .finished(2_040, 3, VDI1, "rebooted");
    rec
}

#[test]
fn inv4_a_reboot_keeps_the_nic_its_failed_release_left_unknown_exempt() {
    let site = site();
    let report = check(
        &site,
        &reboot_after_release_failed_vdi1(&site, true, true, "reboot"),
    );
    assert_status(&report, "INV-4", Status::Passed);
    // What the release had to name and read stays checked after the reboot…
    let report = check(
        &site,
        &reboot_after_release_failed_vdi1(&site, true, false, "reboot"),
    );
    assert_status(&report, "INV-4", Status::Failed);
    let report = check(
        &site,
        &reboot_after_release_failed_vdi1(&site, false, true, "reboot"),
    );
    assert_status(&report, "INV-4", Status::Failed);
    // …and a quarantine_reboot, which reads the NICs it quarantines, carries nothing over.
    let report = check(
        &site,
        &reboot_after_release_failed_vdi1(&site, true, true, "quarantine_reboot"),
    );
    assert_status(&report, "INV-4", Status::Failed);
}

#[test]
fn inv4_release_failed_nic_named_unknown_but_read_fine_violates() {
    let site = site();
    let report = check(&site, &release_failed_vdi1(&site, false, true));
    assert_status(&report, "INV-4", Status::Failed);
}
