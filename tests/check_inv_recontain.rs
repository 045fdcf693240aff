//! INV-12 re-containment (R20), and INV-2 / INV-6 around moves the engine did not make, on
//! hand-made histories. vdi-small: vc-1 carries six vNICs, `watch_interval` 60 s (default, 10
//! reads per second), `call_timeout` 5 s, `operation_deadline` 60 s, so INV-12's bound is
//! (60 + 0.6 + 5 + 60 + 5) s plus 10%: 143,660 ms after the drift.

mod check_support;

use check_support::*;
use quarantine_lab::check::Status;
use quarantine_lab::model::Site;

clean_quarantine_verdicts! {
    inv12_without_drift_is_skipped: "INV-12" => Skipped,
}

const BOUND_MS: u64 = 143_660;

/// vdi-001 quarantined at 0, moved back to op-a by someone else at 10 s.
fn drifted(site: &Site) -> Rec {
    let mut rec = quarantined_vdi1(site);
    rec.truth(10_000, VDI1, 0, "qr-a", "op-a", false)
        .by("external_change");
    rec
}

/// The restore operation 2 that puts vdi-001 back on qr-a at `at`.
fn restore(rec: &mut Rec, at: u64) {
    rec.alert(at, "quarantine-drift", "ERROR", Some(VDI1), None)
        .started(at, 2, VDI1, "restore")
        .read(at, "vc-1", "get_nic", VDI1, 0, "op-a")
        .call(at + 40, "vc-1", "set_nic", VDI1, Some(0), Some("qr-a"))
        .lands("op-a", false)
        .read(at + 80, "vc-1", "get_nic", VDI1, 0, "qr-a")
        .alert(at + 120, "quarantine-restored", "INFO", Some(VDI1), Some(2))
        .finished(at + 120, 2, VDI1, "quarantined");
}

#[test]
fn inv12_drift_restored_within_the_bound_passes_and_is_measured() {
    let site = site();
    let mut rec = drifted(&site);
    restore(&mut rec, 60_000);
    let report = check(&site, &rec);
    assert_status(&report, "INV-12", Status::Passed);
    let m = &report.measures.time_to_re_contain_ms;
    assert_eq!((m.count, m.max), (1, 50_080));
}

#[test]
fn inv12_drift_never_restored_violates() {
    let site = site();
    let mut rec = drifted(&site);
    rec.final_nic(VDI1, 0, Some("op-a"), "qr-a", "10.210.0.2");
    assert_fails(&check(&site, &rec), "INV-12", "never back on qr-a");
}

#[test]
fn inv4_leaves_a_drift_after_the_outcome_to_inv12() {
    // R20 keeps the record on quarantine through a drift: after `quarantined`, a NIC moved by
    // something other than the engine is INV-12's to judge (restored or alerted), not INV-4's.
    let site = site();
    let mut rec = drifted(&site);
    rec.final_nic(VDI1, 0, Some("op-a"), "qr-a", "10.210.0.2");
    assert_status(&check(&site, &rec), "INV-4", Status::Passed);
    // The watch cannot read the NIC and says so: INV-12 and INV-1 hold too.
    rec.alert(62_000, "quarantine-failed", "ERROR", Some(VDI1), None);
    let report = check(&site, &rec);
    for id in ["INV-1", "INV-4", "INV-12"] {
        assert_status(&report, id, Status::Passed);
    }
    // The same disagreement without the drift is the engine's: INV-4 fails.
    let mut rec = quarantined_vdi1(&site);
    rec.final_nic(VDI1, 0, Some("op-a"), "qr-a", "10.210.0.2");
    assert_status(&check(&site, &rec), "INV-4", Status::Failed);
}

#[test]
fn inv4_leaves_a_drift_the_engine_could_not_see_before_the_outcome_but_not_one_it_read() {
    // A switch reboot after the quarantine's read confirmed the NIC and before the operation
    // ended: the engine could not have seen it, and the drift watch answers for it.
    let site = site();
    let mut rec = vdi1_accepted(&site);
    rec.call(0, "vc-1", "set_nic", VDI1, Some(0), Some("qr-a"))
        .lands("op-a", false)
        .read(40, "vc-1", "get_nic", VDI1, 0, "qr-a")
        .truth(100, VDI1, 0, "qr-a", "op-a", false)
        .by("switch_reboot")
        .finished(200, 1, VDI1, "quarantined")
        .final_nic(VDI1, 0, Some("op-a"), "qr-a", "10.210.0.2")
        .final_state(VDI1, "quarantined", "normal", Some("quarantined"))
        .allocation("qr-a", "10.210.0.2", VDI1);
    assert_status(&check(&site, &rec), "INV-4", Status::Passed);
    // The same move before the quarantine's last read: the engine saw it and still claimed
    // quarantine, which is INV-4's.
    let mut rec = vdi1_accepted(&site);
    rec.call(0, "vc-1", "set_nic", VDI1, Some(0), Some("qr-a"))
        .lands("op-a", false)
        .truth(60, VDI1, 0, "qr-a", "op-a", false)
        .by("switch_reboot")
        .read(100, "vc-1", "get_nic", VDI1, 0, "op-a")
        .finished(200, 1, VDI1, "quarantined")
        .final_nic(VDI1, 0, Some("op-a"), "qr-a", "10.210.0.2")
        .final_state(VDI1, "quarantined", "normal", Some("quarantined"))
        .allocation("qr-a", "10.210.0.2", VDI1);
    assert_status(&check(&site, &rec), "INV-4", Status::Failed);
    // A release alike: a reboot after its last read of the NIC is not the records' fault…
    let release = |seen: bool| {
        let mut rec = quarantined_vdi1(&site);
        rec.command(1_000, "release", VDI1, Some(2))
            .started(1_000, 2, VDI1, "release")
            .call(1_000, "vc-1", "set_nic", VDI1, Some(0), Some("op-a"))
            .lands("qr-a", true)
            .read(1_040, "vc-1", "get_nic", VDI1, 0, "op-a")
            .truth(1_100, VDI1, 0, "op-a", "qr-a", false)
            .by("switch_reboot");
        if seen {
            rec.read(1_120, "vc-1", "get_nic", VDI1, 0, "qr-a");
        }
        rec.finished(1_200, 2, VDI1, "released")
            .final_nic(VDI1, 0, Some("qr-a"), "op-a", "10.110.0.11")
            .final_state(VDI1, "normal", "normal", Some("released"));
        check(&site, &rec)
    };
    assert_status(&release(false), "INV-4", Status::Passed);
    // …but a release that read the NIC back on quarantine and still said `released` is.
    assert_status(&release(true), "INV-4", Status::Failed);
}

/// vdi-001's quarantine writes qr-a; its confirming read (call 900) is sent at 40 ms and
/// answers `shows` at 120 ms; a switch reboot puts the NIC back on op-a at 80 ms, while the read
/// is under way, or at 20 ms, before it was sent, when `before_the_read`. The operation ends
/// `quarantined` with the record on qr-a and the device on op-a.
fn reboot_around_the_confirming_read(site: &Site, shows: &str, before_the_read: bool) -> Rec {
    use quarantine_lab::model::history::{EventKind, NicRef};
    let nic = || NicRef {
        lserver: VDI1.into(),
        nic: 0,
    };
    let mut rec = vdi1_accepted(site);
    rec.call(0, "vc-1", "set_nic", VDI1, Some(0), Some("qr-a"))
        .lands("op-a", false);
    let reboot = |rec: &mut Rec, at| {
        rec.truth(at, VDI1, 0, "qr-a", "op-a", false)
            .by("switch_reboot");
    };
    if before_the_read {
        reboot(&mut rec, 20);
    }
    rec.push(
        40,
        EventKind::Invoke {
            call: 900,
            device: "vc-1".into(),
            op: "get_nic".into(),
            nic: Some(nic()),
            lserver: Some(VDI1.into()),
            value: None,
        },
    );
    if !before_the_read {
        reboot(&mut rec, 80);
    }
    rec.push(
        120,
        EventKind::Return {
            call: 900,
            result: "ok".into(),
            detail: shows.into(),
        },
    )
    .finished(200, 1, VDI1, "quarantined")
    .final_nic(VDI1, 0, Some("op-a"), "qr-a", "10.210.0.2")
    .final_state(VDI1, "quarantined", "normal", Some("quarantined"))
    .allocation("qr-a", "10.210.0.2", VDI1);
    rec
}

#[test]
fn inv4_leaves_a_reboot_during_the_last_read_to_inv12_unless_the_read_showed_it() {
    let site = site();
    // Sent before the reboot, answering the network before it: the engine could not see it.
    let report = check(
        &site,
        &reboot_around_the_confirming_read(&site, "qr-a", false),
    );
    assert_status(&report, "INV-4", Status::Passed);
    // The same read answering the network the reboot left: the engine saw it and still claimed
    // quarantine.
    let report = check(
        &site,
        &reboot_around_the_confirming_read(&site, "op-a", false),
    );
    assert_status(&report, "INV-4", Status::Failed);
    // A read sent after the reboot stays INV-4's whatever it answered (a stale read is R8's to
    // weigh, not a move the engine could not have seen).
    let report = check(
        &site,
        &reboot_around_the_confirming_read(&site, "qr-a", true),
    );
    assert_status(&report, "INV-4", Status::Failed);
}

#[test]
fn inv12_drift_restored_after_the_bound_violates() {
    let site = site();
    let mut rec = drifted(&site);
    // Back at 10 s + bound + 1 ms: the write lands 80 ms into the restore.
    restore(&mut rec, 10_000 + BOUND_MS + 1 - 80);
    assert_fails(&check(&site, &rec), "INV-12", "after the bound");
    let mut rec = drifted(&site);
    restore(&mut rec, 10_000 + BOUND_MS - 80);
    assert_status(&check(&site, &rec), "INV-12", Status::Passed);
}

#[test]
fn inv12_a_quarantine_failed_alert_naming_the_lserver_passes() {
    let site = site();
    let mut rec = drifted(&site);
    rec.alert(60_000, "quarantine-drift", "ERROR", Some(VDI1), None)
        .started(60_000, 2, VDI1, "restore")
        .failed(61_000, 2, VDI1, "quarantine");
    assert_status(&check(&site, &rec), "INV-12", Status::Passed);
}

#[test]
fn inv12_a_release_after_the_drift_exempts_it() {
    let site = site();
    let mut rec = drifted(&site);
    rec.command(30_000, "release", VDI1, Some(2))
        .started(30_000, 2, VDI1, "release")
        .finished(30_100, 2, VDI1, "released");
    assert_status(&check(&site, &rec), "INV-12", Status::Skipped);
}

#[test]
fn inv12_a_move_the_engine_made_is_no_drift() {
    let site = site();
    let mut rec = quarantined_vdi1(&site);
    rec.truth(10_000, VDI1, 0, "qr-a", "op-a", false);
    assert_status(&check(&site, &rec), "INV-12", Status::Skipped);
}

#[test]
fn inv12_a_crash_reopens_the_window_at_the_restart() {
    let site = site();
    let mut rec = drifted(&site);
    rec.push(20_000, quarantine_lab::model::history::EventKind::Crash)
        .push(100_000, quarantine_lab::model::history::EventKind::Restart);
    // Back 100 s + bound - 1 after the restart: later than the drift's own bound, still in time.
    restore(&mut rec, 100_000 + BOUND_MS - 81);
    assert_status(&check(&site, &rec), "INV-12", Status::Passed);
}

#[test]
fn inv2_does_not_blame_a_move_the_engine_did_not_make() {
    let site = site();
    let mut rec = drifted(&site);
    restore(&mut rec, 60_000);
    assert_status(&check(&site, &rec), "INV-2", Status::Skipped);
    // The same move made by the engine outside a release is blamed.
    let mut rec = quarantined_vdi1(&site);
    rec.truth(10_000, VDI1, 0, "qr-a", "op-a", false);
    assert_status(&check(&site, &rec), "INV-2", Status::Failed);
}

#[test]
fn inv6_a_write_after_an_unseen_external_move_is_not_the_engines_fault() {
    let site = site();
    // A release whose read failed writes op-a, where someone had already put the NIC: the
    // engine's evidence (qr-a) did not show it there.
    let mut rec = drifted(&site);
    rec.command(30_000, "release", VDI1, Some(2))
        .started(30_000, 2, VDI1, "release")
        .call(30_000, "vc-1", "set_nic", VDI1, Some(0), Some("op-a"));
    assert_status(&check(&site, &rec), "INV-6", Status::Passed);
    // Once a read has shown it there, the same write is a finding.
    let mut rec = drifted(&site);
    rec.command(30_000, "release", VDI1, Some(2))
        .started(30_000, 2, VDI1, "release")
        .read(30_000, "vc-1", "get_nic", VDI1, 0, "op-a")
        .call(30_040, "vc-1", "set_nic", VDI1, Some(0), Some("op-a"));
    assert_status(&check(&site, &rec), "INV-6", Status::Failed);
}

#[test]
fn inv12_a_drift_inside_an_operation_that_ends_quarantined_counts_from_its_end() {
    let site = site();
    // The NIC reaches qr-a at 40 ms, something moves it back at 60 ms, and the operation still
    // ends quarantined at 80 ms: the L-Server is quarantined with a NIC off quarantine.
    let mut rec = vdi1_accepted(&site);
    rec.call(0, "vc-1", "set_nic", VDI1, Some(0), Some("qr-a"))
        .lands("op-a", false)
        .truth(60, VDI1, 0, "qr-a", "op-a", false)
        .by("switch_reboot")
        .alert(80, "quarantine-completed", "INFO", Some(VDI1), Some(1))
        .finished(80, 1, VDI1, "quarantined");
    let report = check(&site, &rec);
    assert_status(&report, "INV-12", Status::Failed);
    // Restored one bound after the operation's end (not the drift's): in time.
    restore(&mut rec, 80 + BOUND_MS - 80);
    assert_status(&check(&site, &rec), "INV-12", Status::Passed);
}
