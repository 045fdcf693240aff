//! One or more tests per engine rule (R1–R15, R17, R19 here; R16 in `crash_recovery.rs`),
//! each against the lab's simulated world with a fault plan on a paused clock.

mod common;

use std::time::Duration;

use common::*;
use quarantine_lab::engine::*;
use quarantine_lab::model::*;
use quarantine_lab::sim::CallKind::{GetNic, Reset, SaveConfig, SetNic};
use quarantine_lab::sim::{FaultEffect, FaultSpec};

const VDI1: &str = "/tenant-a/vdi-001";
const VDI2: &str = "/tenant-a/vdi-002";
const VDI3: &str = "/tenant-b/vdi-003";
const SBC: &str = "/tenant-a/sbc-01";

fn q(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(start_paused = true)]
async fn r1_spyware_is_ignored_without_device_calls() {
    let h = Harness::standard();
    let mut d = detection("10.110.0.11", "e-1");
    d.category = Category::Spyware;
    let receipt = h.engine().submit_detection(d).await.unwrap();
    h.settle().await;
    assert_eq!(receipt.disposition, Disposition::Ignored);
    assert_eq!(h.outcome(VDI1), Some(Outcome::Ignored));
    assert!(h.calls().is_empty());
    assert_eq!(h.device(VDI1), q(&["op-a"]));
}

#[tokio::test(start_paused = true)]
async fn r1_malware_triggers_like_virus() {
    let h = Harness::standard();
    let mut d = detection("10.110.0.11", "e-1");
    d.category = Category::Malware;
    h.engine().submit_detection(d).await.unwrap();
    h.settle().await;
    assert_eq!(h.outcome(VDI1), Some(Outcome::Quarantined));
}

#[tokio::test(start_paused = true)]
async fn r2_excluded_keyword_is_ignored_case_insensitively() {
    let h = Harness::standard();
    let mut d = detection("10.110.0.11", "e-1");
    d.threat = "eicar_test_file".into();
    let receipt = h.engine().submit_detection(d).await.unwrap();
    h.settle().await;
    assert_eq!(receipt.disposition, Disposition::Ignored);
    assert!(h.writes_for(VDI1).is_empty());
}

#[tokio::test(start_paused = true)]
async fn r3_unknown_ip_is_not_found_with_one_alert_naming_it() {
    let h = Harness::standard();
    let receipt = h.detect_settled("10.110.0.99").await;
    assert_eq!(receipt.disposition, Disposition::NotFound);
    let alerts = h.alerts();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].code, AlertCode::LserverNotFound);
    assert_eq!(alerts[0].ip, Some("10.110.0.99".parse().unwrap()));
    assert!(alerts[0]
        .syslog_line("h")
        .contains("L-Server not found. ip=10.110.0.99"));
    assert!(h.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn r3_resolution_by_mac_then_hostname() {
    let h = Harness::standard();
    let mut by_mac = detection("10.9.9.9", "e-1");
    by_mac.mac = Some("00-50-56-00-00-11".into());
    let r = h.engine().submit_detection(by_mac).await.unwrap();
    assert_eq!(r.lserver.as_deref(), Some(VDI1));
    let mut by_host = detection("10.9.9.8", "e-2");
    by_host.ip = None;
    by_host.hostname = Some("vdi-002".into());
    let r = h.engine().submit_detection(by_host).await.unwrap();
    assert_eq!(r.lserver.as_deref(), Some(VDI2));
}

#[tokio::test(start_paused = true)]
async fn r3_current_quarantine_ip_resolves_to_its_lserver() {
    let h = Harness::standard_detected(vec![], "10.110.0.11").await;
    let qip = h.view(VDI1).nics[0].ip;
    let r = h.detect(&qip.to_string(), "e-2").await;
    assert_eq!(r.lserver.as_deref(), Some(VDI1));
}

#[tokio::test(start_paused = true)]
async fn r4_same_event_twice_is_processed_once() {
    let h = Harness::standard();
    let first = h.detect("10.110.0.11", "e-1").await;
    let again = h.detect_settled("10.110.0.11").await;
    assert_eq!(first.disposition, Disposition::Accepted);
    assert_eq!(again.disposition, Disposition::Duplicate);
    assert_eq!(again.id, first.id);
    assert_eq!(h.writes_for(VDI1).len(), 1);
}

/// R4 across a restart: the reopened engine knows every event the journal holds (its R4
/// filter is built from the journal at open), including ones from several sources with the
/// same event id, and still takes a new event of a known source.
#[tokio::test(start_paused = true)]
async fn r4_an_event_journaled_before_a_restart_is_a_duplicate_after_it() {
    let mut h = Harness::new(site_with(|s| {
        s.replace(
            "[[hypervisors]]",
            "[[av_servers]]\nname = \"sepm\"\nkind = \"sepm\"\naddress = \"127.0.0.1\"\n\n[[hypervisors]]",
        )
    }));
    let first = h.detect("10.110.0.11", "e-1").await;
    let mut from_sepm = detection("10.110.0.12", "e-1");
    from_sepm.source = "sepm".into();
    let second = h
        .engine()
        .submit_detection(from_sepm.clone())
        .await
        .unwrap();
    h.settle().await;
    assert_eq!(second.disposition, Disposition::Accepted, "{second:?}");
    h.reopen(None);
    let again = h.detect("10.110.0.11", "e-1").await;
    assert_eq!(again.disposition, Disposition::Duplicate);
    assert_eq!(again.id, first.id);
    let again = h.engine().submit_detection(from_sepm).await.unwrap();
    assert_eq!(again.disposition, Disposition::Duplicate);
    assert_eq!(again.id, second.id);
    let fresh = h.detect("10.110.0.13", "e-2").await;
    assert_eq!(fresh.disposition, Disposition::Accepted);
    h.settle().await;
    assert_eq!(h.writes_for(VDI1).len(), 1);
}

/// A duplicate is answered while another detection's commit waits for the journal file: R4
/// lookups read through their own connection, so they never wait for a commit (its fsync, or
/// here an outside writer holding the file) on a runtime thread. The engine runs as the daemon
/// runs it, on a multi-thread runtime, and the outside writer holds the file until the
/// duplicate has been answered.
#[test]
fn r4_duplicate_is_answered_while_a_commit_waits_for_the_file() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let mut h = Harness::standard();
    let engine = std::sync::Arc::new(h.engine.take().unwrap());
    let ignored = |ip: &str, event_id: &str| {
        let mut d = detection(ip, event_id);
        d.category = Category::Spyware;
        d
    };
    let first = runtime
        .block_on(engine.submit_detection(ignored("10.110.0.11", "e-1")))
        .unwrap();
    let outside = rusqlite::Connection::open(&h.journal_path).unwrap();
    outside.execute_batch("BEGIN IMMEDIATE").unwrap();
    let stuck = {
        let engine = engine.clone();
        runtime.spawn(async move { engine.submit_detection(ignored("10.110.0.12", "e-2")).await })
    };
    // Long enough for that commit to be waiting on the file (its busy timeout is 5 s).
    std::thread::sleep(Duration::from_millis(300));
    let (answered, answer) = std::sync::mpsc::channel();
    {
        let engine = engine.clone();
        runtime.spawn(async move {
            let receipt = engine.submit_detection(ignored("10.110.0.11", "e-1")).await;
            let _ = answered.send(receipt);
        });
    }
    let again = answer
        .recv_timeout(Duration::from_secs(3))
        .expect("the duplicate waited for the stuck commit")
        .unwrap();
    assert_eq!(again.disposition, Disposition::Duplicate);
    assert_eq!(again.id, first.id);
    assert!(!stuck.is_finished(), "the other commit was not waiting");
    outside.execute_batch("ROLLBACK").unwrap();
    let second = runtime.block_on(stuck).unwrap().unwrap();
    assert_eq!(second.disposition, Disposition::Ignored);
}

#[tokio::test(start_paused = true)]
async fn r4_new_event_while_quarantining_or_quarantined_adds_no_device_call() {
    let h = Harness::new(site_with_vc_latency("200ms"));
    h.detect("10.110.0.11", "e-1").await;
    let during = h.detect("10.110.0.11", "e-2").await;
    h.settle().await;
    let after = h.detect("10.110.0.11", "e-3").await;
    h.settle().await;
    assert_eq!(during.disposition, Disposition::Duplicate);
    assert_eq!(after.disposition, Disposition::Duplicate);
    assert_eq!(h.writes_for(VDI1).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn r4_detection_during_a_release_quarantines_again_afterwards() {
    let h = Harness::standard_detected(vec![], "10.110.0.11").await;
    // The device slows down: the release is still running 50 ms later.
    h.fault_now(slow("vc-1", Duration::from_millis(100)));
    h.release(VDI1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let during = h.detect("10.110.0.11", "e-2").await;
    h.settle().await;
    assert_eq!(
        during.disposition,
        Disposition::Accepted,
        "not a duplicate: the release would re-expose it"
    );
    assert_eq!(h.outcome(VDI1), Some(Outcome::Quarantined));
    assert_eq!(h.device(VDI1), q(&["qr-a"]));
}

#[tokio::test(start_paused = true)]
async fn r5_path_rule_selects_reboot() {
    let h = Harness::standard_detected(vec![], "10.110.0.13").await;
    assert_eq!(h.outcome(VDI3), Some(Outcome::Rebooted));
    assert_eq!(h.resets(), [VDI3]);
    assert!(h.writes_for(VDI3).is_empty());
}

#[tokio::test(start_paused = true)]
async fn r5_none_waits_for_a_decision_then_runs_the_choice() {
    let site = site_with(|s| {
        s.replace(
            "default_action = \"quarantine\"",
            "default_action = \"none\"",
        )
    });
    let h = Harness::new(site);
    let r = h.detect_settled("10.110.0.11").await;
    assert_eq!(r.disposition, Disposition::PendingDecision);
    assert_eq!(h.view(VDI1).state, LServerState::PendingDecision);
    assert!(h.calls().iter().all(|c| c.op != "set_nic"));
    let emails = h.world.emails();
    assert_eq!(emails.len(), 1, "one email before the decision");
    assert!(emails[0].body.contains("--choice quarantine_reboot"));
    h.command_settled(Command::Decide {
        lserver: VDI1.into(),
        choice: Action::Quarantine,
    })
    .await;
    assert_eq!(h.outcome(VDI1), Some(Outcome::Quarantined));
    assert_eq!(h.device(VDI1), q(&["qr-a"]));
}

#[tokio::test(start_paused = true)]
async fn r5_decide_is_refused_when_no_decision_is_pending() {
    let h = Harness::standard();
    let err = h
        .engine()
        .submit_command(Command::Decide {
            lserver: VDI1.into(),
            choice: Action::Quarantine,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::NotAllowed(_)), "{err}");
}

#[tokio::test(start_paused = true)]
async fn r5_policy_is_replaced_without_restart() {
    let h = Harness::standard();
    let mut policy = h.site.topology.policy.clone();
    policy.default_action = Action::Reboot;
    h.engine().set_policy(policy);
    h.detect_settled("10.110.0.11").await;
    assert_eq!(h.outcome(VDI1), Some(Outcome::Rebooted));
}

#[tokio::test(start_paused = true)]
async fn r6_quarantine_ips_are_fresh_unique_and_inside_the_subnet() {
    let h = Harness::standard();
    h.detect("10.110.0.11", "e-1").await;
    h.detect("10.110.0.12", "e-2").await;
    h.settle().await;
    let mut seen = std::collections::HashSet::new();
    for path in [VDI1, VDI2] {
        for nic in h.view(path).nics {
            let net = h.site.network(&nic.network).unwrap();
            assert_eq!(net.role, NetworkRole::Quarantine);
            assert!(
                net.subnet.contains(&nic.ip),
                "{} outside {}",
                nic.ip,
                net.subnet
            );
            assert_ne!(nic.ip, net.subnet.network());
            assert_ne!(nic.ip, net.subnet.broadcast());
            let first: std::net::IpAddr = match net.subnet.network() {
                std::net::IpAddr::V4(a) => std::net::IpAddr::V4((u32::from(a) + 1).into()),
                other => other,
            };
            assert_ne!(nic.ip, first, "the first address is the gateway");
            assert!(seen.insert(nic.ip), "{} allocated twice", nic.ip);
        }
    }
    assert_eq!(h.managed(VDI2), q(&["qr-a", "qr-b"]));
}

#[tokio::test(start_paused = true)]
async fn r6_unmapped_network_fails_before_any_device_call() {
    let h = Harness::standard_detected(vec![], "10.130.0.9").await;
    let path = "/tenant-b/unmapped";
    assert_eq!(h.outcome(path), Some(Outcome::QuarantineFailed));
    assert!(h.calls().is_empty(), "{:?}", h.calls());
    assert_eq!(h.alert_codes(path), vec!["config-error"]);
}

#[tokio::test(start_paused = true)]
async fn r7_detection_is_durable_when_acknowledged() {
    let h = Harness::standard_with(vec![fault("vc-1", SetNic, FaultEffect::Timeout)]);
    let receipt = h.detect("10.110.0.11", "e-1").await;
    // Read the file through a second connection: the acknowledgement implies durability.
    let other = Journal::open(&h.journal_path).unwrap();
    assert_eq!(other.detection_count().unwrap(), 1);
    assert_eq!(
        other
            .detection_receipt(receipt.id)
            .unwrap()
            .unwrap()
            .operation,
        receipt.operation
    );
}

#[tokio::test(start_paused = true)]
async fn r7_plan_and_ips_are_journaled_before_the_first_device_call() {
    let h = Harness::standard_with(vec![fault("vc-1", SetNic, FaultEffect::Timeout)]);
    h.detect("10.110.0.11", "e-1").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.calls().len(), 1, "the write is in flight");
    let snapshot = h.snapshot();
    assert_eq!(snapshot.open_operations.len(), 1);
    assert_eq!(snapshot.open_operations[0].plan.len(), 1);
    assert_eq!(snapshot.open_operations[0].plan[0].to_network, "qr-a");
    assert_eq!(snapshot.allocations.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn r8_apply_then_timeout_is_resolved_by_reading() {
    let h = Harness::standard_detected(
        vec![fault("vc-1", SetNic, FaultEffect::ApplyThenTimeout).times(1)],
        "10.110.0.11",
    )
    .await;
    assert_eq!(h.outcome(VDI1), Some(Outcome::Quarantined));
    assert_eq!(
        h.writes_for(VDI1).len(),
        1,
        "no second write once the read shows quarantine"
    );
    assert_eq!(h.hits(0), 1, "the write's reply was lost");
}

#[tokio::test(start_paused = true)]
async fn r8_device_that_applies_then_errors_is_read_not_written_twice() {
    let h = Harness::standard_detected(
        vec![fault("vc-1", SetNic, FaultEffect::ApplyThenError).times(1)],
        "10.110.0.11",
    )
    .await;
    assert_eq!(h.outcome(VDI1), Some(Outcome::Quarantined));
    assert_eq!(
        h.writes_for(VDI1).len(),
        1,
        "INV-6: the read shows the change applied"
    );
    assert_eq!(h.hits(0), 1, "the applied write got an error reply");
}

#[tokio::test(start_paused = true)]
async fn r8_transient_rejections_are_retried() {
    let h = Harness::standard_detected(
        vec![fault("vc-1", SetNic, FaultEffect::Busy).times(2)],
        "10.110.0.11",
    )
    .await;
    assert_eq!(h.outcome(VDI1), Some(Outcome::Quarantined));
    assert_eq!(h.writes_for(VDI1).len(), 3);
}

#[tokio::test(start_paused = true)]
async fn r8_ok_without_apply_is_caught_by_the_verifying_read() {
    let h = Harness::standard_detected(
        vec![fault("vc-1", SetNic, FaultEffect::AcceptWithoutApply)],
        "10.110.0.11",
    )
    .await;
    assert_eq!(h.outcome(VDI1), Some(Outcome::QuarantineFailed));
    assert_eq!(h.device(VDI1), q(&["op-a"]));
    assert_eq!(
        h.alert_codes(VDI1),
        vec!["quarantine-started", "quarantine-failed"]
    );
}

#[tokio::test(start_paused = true)]
async fn r8_stale_read_is_read_again_not_written_again() {
    let h = Harness::standard_detected(
        vec![fault("vc-1", GetNic, FaultEffect::StaleRead).times(1)],
        "10.110.0.11",
    )
    .await;
    assert_eq!(h.outcome(VDI1), Some(Outcome::Quarantined));
    assert_eq!(h.writes_for(VDI1).len(), 1);
    assert_eq!(h.hits(0), 1, "the verifying read was stale");
}

#[tokio::test(start_paused = true)]
async fn r8_expired_session_logs_in_again() {
    let h = Harness::standard_detected(
        vec![fault("vc-1", SetNic, FaultEffect::AuthExpired).times(1)],
        "10.110.0.11",
    )
    .await;
    assert_eq!(h.outcome(VDI1), Some(Outcome::Quarantined));
    assert!(h.calls().iter().any(|c| c.op == "login"));
    assert_eq!(h.hits(0), 1);
}

#[tokio::test(start_paused = true)]
async fn r8_physical_port_moves_vlan_and_saves_config() {
    let h = Harness::standard_detected(vec![], "10.110.0.50").await;
    assert_eq!(h.device(SBC), q(&["qr-a"]));
    let writes = h.writes_for(SBC);
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].value.as_deref(), Some("qr-a"), "VLAN 910");
    assert_eq!(h.saves("sw-1"), 1);
}

#[tokio::test(start_paused = true)]
async fn r8_unsaved_config_fails_the_quarantine_but_keeps_the_port_on_quarantine() {
    let h = Harness::standard_detected(
        vec![fault("sw-1", SaveConfig, FaultEffect::Reject)],
        "10.110.0.50",
    )
    .await;
    assert_eq!(h.outcome(SBC), Some(Outcome::QuarantineFailed));
    assert_eq!(h.device(SBC), q(&["qr-a"]));
    let alert = h.alert(AlertCode::QuarantineFailed);
    assert!(
        alert.detail.contains("running config not saved"),
        "{}",
        alert.detail
    );
}

#[tokio::test(start_paused = true)]
async fn r9_success_updates_records_status_alert_and_email() {
    let h = Harness::standard_detected(vec![], "10.110.0.50").await;
    let view = h.view(SBC);
    assert_eq!(view.state, LServerState::Quarantined);
    assert_eq!(
        view.status, "unknown",
        "a quarantined physical L-Server's status is unknown"
    );
    assert_eq!(h.managed(SBC), q(&["qr-a"]));
    assert_eq!(
        h.alert_codes(SBC),
        vec!["quarantine-started", "quarantine-completed"]
    );
    let emails = h.world.emails();
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0].to, "admin-a@example.com");
    assert!(emails[0].body.contains(&view.nics[0].ip.to_string()));
    assert!(emails[0]
        .body
        .contains("qlab engine release /tenant-a/sbc-01"));
}

#[tokio::test(start_paused = true)]
async fn r9_no_email_for_a_tenant_without_address() {
    let site = site_with(|s| s.replace("\"/tenant-b/vdi-003\" = \"reboot\"", ""));
    let h = Harness::new(site);
    h.detect_settled("10.110.0.13").await;
    assert_eq!(h.outcome(VDI3), Some(Outcome::Quarantined));
    assert!(h.world.emails().is_empty());
}

/// The seed's "Information" block: vdi-002's first NIC reaches quarantine, the second is
/// rejected every time.
async fn half_failed() -> Harness {
    let h = Harness::standard_detected(
        vec![fault("vc-1", SetNic, FaultEffect::Reject).on_vnic("vm-1002", "4001")],
        "10.110.0.12",
    )
    .await;
    h
}

#[tokio::test(start_paused = true)]
async fn r10_nic_that_reached_quarantine_stays_there() {
    let h = half_failed().await;
    assert_eq!(h.outcome(VDI2), Some(Outcome::QuarantineFailed));
    assert_eq!(
        h.device(VDI2),
        q(&["qr-a", "op-b"]),
        "device truth is left as it is"
    );
    assert_eq!(
        h.managed(VDI2),
        q(&["op-a", "op-b"]),
        "records return to operation"
    );
    let ips: Vec<String> = h.view(VDI2).nics.iter().map(|n| n.ip.to_string()).collect();
    assert_eq!(ips, q(&["10.110.0.12", "10.120.0.12"]));
}

#[tokio::test(start_paused = true)]
async fn r10_one_error_alert_lists_every_nic_and_the_remedy() {
    let h = half_failed().await;
    let errors: Vec<Alert> = h.errors();
    assert_eq!(errors.len(), 1);
    let detail = &errors[0].detail;
    assert!(
        detail.contains("nic0") && detail.contains("device=qr-a"),
        "{detail}"
    );
    assert!(
        detail.contains("nic1") && detail.contains("device=op-b"),
        "{detail}"
    );
    assert!(
        detail.contains("qlab engine quarantine /tenant-a/vdi-002"),
        "{detail}"
    );
}

#[tokio::test(start_paused = true)]
async fn r10_rollback_frees_the_allocated_ips() {
    let h = half_failed().await;
    let snapshot = h.snapshot();
    assert!(
        snapshot.allocations.is_empty(),
        "{:?}",
        snapshot.allocations
    );
}

#[tokio::test(start_paused = true)]
async fn r10_unknown_nic_is_reported_as_unknown() {
    let h = Harness::standard_detected(
        vec![
            fault("vc-1", SetNic, FaultEffect::Timeout),
            fault("vc-1", GetNic, FaultEffect::Unavailable),
        ],
        "10.110.0.11",
    )
    .await;
    assert_eq!(h.outcome(VDI1), Some(Outcome::QuarantineFailed));
    let alert = h.alert(AlertCode::QuarantineFailed);
    assert!(alert.detail.contains("device=unknown"), "{}", alert.detail);
}

#[tokio::test(start_paused = true)]
async fn r11_failure_never_moves_a_nic_back_to_operation() {
    let h = half_failed().await;
    let writes: Vec<Call> = h
        .calls()
        .into_iter()
        .filter(|c| c.op == "set_nic")
        .collect();
    assert!(!writes.is_empty());
    for call in writes {
        let network = h.site.network(call.value.as_deref().unwrap()).unwrap();
        assert_eq!(network.role, NetworkRole::Quarantine, "{call:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn r12_manual_quarantine_confirms_by_reading_and_completes() {
    let h = half_failed().await;
    h.heal();
    let before = h.writes_for(VDI2).len();
    h.command_settled(Command::Quarantine {
        lserver: VDI2.into(),
    })
    .await;
    assert_eq!(h.outcome(VDI2), Some(Outcome::Quarantined));
    assert_eq!(h.device(VDI2), q(&["qr-a", "qr-b"]));
    let new_writes: Vec<_> = h.writes_for(VDI2).into_iter().skip(before).collect();
    assert_eq!(
        new_writes.len(),
        1,
        "only the NIC not yet on quarantine is written: {new_writes:?}"
    );
    assert_eq!(new_writes[0].nic, Some(1), "vm-1002/4001");
}

/// The standard site with `quarantine_reboot` for every L-Server of tenant-a, with `faults`.
fn quarantine_reboot_harness(faults: Vec<FaultSpec>) -> Harness {
    let site = site_with(|s| {
        s.replace(
            "\"/tenant-b/vdi-003\" = \"reboot\"",
            "\"/tenant-a\" = \"quarantine_reboot\"",
        )
    });
    Harness::with_faults(site, faults)
}

#[tokio::test(start_paused = true)]
async fn r13_quarantine_reboot_reboots_after_success_with_two_emails() {
    let h = quarantine_reboot_harness(Vec::new());
    h.detect_settled("10.110.0.11").await;
    assert_eq!(h.outcome(VDI1), Some(Outcome::Rebooted));
    assert_eq!(h.view(VDI1).state, LServerState::Quarantined);
    assert_eq!(h.resets(), [VDI1]);
    let calls = h.calls();
    let write = calls.iter().position(|c| c.op == "set_nic").unwrap();
    let reset = calls.iter().position(|c| c.op == "power_reset").unwrap();
    assert!(write < reset, "reboot only after the quarantine");
    assert_eq!(h.world.emails().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn r13_the_reset_follows_the_quarantine_without_waiting_for_company() {
    // vdi-002's first write hangs, so a device call is under way throughout; vdi-001's
    // quarantine step before its reset is not a closing one and must not wait for company.
    let h = quarantine_reboot_harness(vec![fault("vc-1", SetNic, FaultEffect::Timeout)
        .on_vnic("vm-1002", "4000")
        .times(1)]);
    h.detect("10.110.0.12", "e-2").await;
    h.detect("10.110.0.11", "e-1").await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(h.resets(), [VDI1]);
}

#[tokio::test(start_paused = true)]
async fn r13_failed_quarantine_skips_the_reboot() {
    let h = quarantine_reboot_harness(vec![fault("vc-1", SetNic, FaultEffect::Reject)]);
    h.detect_settled("10.110.0.11").await;
    assert_eq!(h.outcome(VDI1), Some(Outcome::QuarantineFailed));
    assert!(h.resets().is_empty());
}

#[tokio::test(start_paused = true)]
async fn r13_failed_reboot_leaves_the_quarantine_in_place() {
    let h = quarantine_reboot_harness(vec![fault("irmc-1", Reset, FaultEffect::Reject)]);
    h.detect_settled("10.110.0.50").await;
    let view = h.view(SBC);
    assert_eq!(view.outcome, Some(Outcome::RebootFailed));
    assert_eq!(view.state, LServerState::Quarantined);
    assert_eq!(h.device(SBC), q(&["qr-a"]));
    let errors: Vec<Alert> = h.errors();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].detail.contains("BMC"), "{}", errors[0].detail);
}

#[tokio::test(start_paused = true)]
async fn r14_release_restores_operation_networks_ips_and_status() {
    let h = Harness::standard_detected(vec![], "10.110.0.50").await;
    h.command_settled(Command::Release {
        lserver: SBC.into(),
    })
    .await;
    let view = h.view(SBC);
    assert_eq!(view.outcome, Some(Outcome::Released));
    assert_eq!(view.state, LServerState::Normal);
    assert_eq!(view.status, "normal");
    assert_eq!(view.nics[0].ip.to_string(), "10.110.0.50");
    assert_eq!(h.device(SBC), q(&["op-a"]));
    assert!(h.snapshot().allocations.is_empty());
}

#[tokio::test(start_paused = true)]
async fn r14_release_after_failure_returns_the_stranded_nic() {
    let h = half_failed().await;
    h.heal();
    h.command_settled(Command::Release {
        lserver: VDI2.into(),
    })
    .await;
    assert_eq!(h.outcome(VDI2), Some(Outcome::Released));
    assert_eq!(h.device(VDI2), q(&["op-a", "op-b"]));
    assert_eq!(h.managed(VDI2), h.device(VDI2), "records and devices agree");
}

#[tokio::test(start_paused = true)]
async fn r14_release_of_a_normal_lserver_is_refused() {
    let h = Harness::standard();
    let err = h.release(VDI1).await.unwrap_err();
    assert!(matches!(err, EngineError::NotAllowed(_)), "{err}");
}

#[tokio::test(start_paused = true)]
async fn r14_failed_release_names_the_nics_still_quarantined() {
    let h = Harness::standard_detected(vec![], "10.110.0.12").await;
    h.fault_now(fault("vc-1", SetNic, FaultEffect::Reject));
    h.command_settled(Command::Release {
        lserver: VDI2.into(),
    })
    .await;
    let view = h.view(VDI2);
    assert_eq!(view.outcome, Some(Outcome::ReleaseFailed));
    assert_eq!(view.state, LServerState::ReleaseFailed);
    assert_eq!(
        h.managed(VDI2),
        h.device(VDI2),
        "records follow device truth"
    );
    let alert = h.alert(AlertCode::ReleaseFailed);
    assert!(
        alert.detail.contains("nic0") && alert.detail.contains("nic1"),
        "{}",
        alert.detail
    );
}

#[tokio::test(start_paused = true)]
async fn r15_operations_on_one_lserver_run_in_arrival_order() {
    let h = Harness::new(site_with_vc_latency("100ms"));
    h.detect("10.110.0.11", "e-1").await;
    // Queued behind the running quarantine, accepted because the quarantine will finish first.
    h.command_settled(Command::Release {
        lserver: VDI1.into(),
    })
    .await;
    let ops = h.engine().operations().unwrap();
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0].outcome, Some(Outcome::Quarantined));
    assert_eq!(ops[1].outcome, Some(Outcome::Released));
    assert_eq!(h.device(VDI1), q(&["op-a"]));
}

#[tokio::test(start_paused = true)]
async fn r15_device_concurrency_is_bounded_and_lservers_run_in_parallel() {
    let site = site_with(|s| {
        s.replace(
            "max_concurrent = 8",
            "max_concurrent = 2\nlatency = \"100ms\"",
        )
    });
    let h = Harness::new(site);
    let start = tokio::time::Instant::now();
    h.detect("10.110.0.11", "e-1").await;
    h.detect("10.110.0.12", "e-2").await;
    h.engine().wait_idle().await;
    let elapsed = start.elapsed();
    assert_eq!(h.world.max_in_flight("vc-1"), 2);
    // Three NICs, each a write and a read of 100 ms, two at a time: 300 ms, not 600 ms serially.
    assert!(elapsed < Duration::from_millis(600), "{elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn r17_every_alert_reaches_syslog_as_rfc5424() {
    let h = half_failed().await;
    let alerts = h.alerts();
    let lines = h.world.syslog_lines();
    assert_eq!(lines.len(), alerts.len());
    for (line, alert) in lines.iter().zip(&alerts) {
        assert!(line.starts_with('<') && line.contains(">1 "), "{line}");
        assert!(line.contains(alert.code.as_str()), "{line}");
    }
    assert!(lines
        .iter()
        .any(|l| l.starts_with("<131>1 ") && l.contains("FJSVrcx:ERROR:67198")));
}

#[tokio::test(start_paused = true)]
async fn r17_failure_emails_the_tenant_once() {
    let h = half_failed().await;
    let emails = h.world.emails();
    assert_eq!(emails.len(), 1);
    assert!(emails[0].subject.contains("quarantine-failed"));
}

/// Records every engine event, in order, with the clock's time when it was announced.
#[derive(Default)]
struct EventLog(std::sync::Mutex<Vec<(tokio::time::Instant, EngineEvent)>>);

impl EngineObserver for EventLog {
    fn on_event(&self, event: &EngineEvent) {
        let now = tokio::time::Instant::now();
        self.0.lock().unwrap().push((now, event.clone()));
    }
}

impl EventLog {
    fn events(&self) -> Vec<EngineEvent> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// The commit that announced the first event `which` matches, and when.
    fn commit_of(&self, which: impl Fn(&EngineEvent) -> bool) -> (u64, tokio::time::Instant) {
        let mut commit = 0;
        for (at, event) in self.0.lock().unwrap().iter() {
            if let EngineEvent::Committed { commit: n } = event {
                commit = *n;
            } else if which(event) {
                return (commit, *at);
            }
        }
        panic!("no such event announced");
    }
}

/// An engine over `h`'s journal and world without syslog or mail, with an event log.
fn engine_without_alert_output(h: &Harness) -> (Engine, std::sync::Arc<EventLog>) {
    let mut adapters = h.world.adapters();
    adapters.syslog = None;
    adapters.mailer = None;
    let log = std::sync::Arc::new(EventLog::default());
    let options = EngineOptions {
        observer: Some(log.clone()),
        ..EngineOptions::default()
    };
    let journal = Journal::open(&h.journal_path).unwrap();
    let engine = Engine::open(h.site.clone(), journal, adapters, options).unwrap();
    (engine, log)
}

/// The standard harness with `faults`, its engine replaced by one without syslog or mail.
fn harness_without_alert_output(
    faults: Vec<FaultSpec>,
) -> (Harness, Engine, std::sync::Arc<EventLog>) {
    harness_on_site_without_alert_output(site_with(|s| s.to_string()), faults)
}

/// [`harness_without_alert_output`] on `site`.
fn harness_on_site_without_alert_output(
    site: std::sync::Arc<quarantine_lab::model::Site>,
    faults: Vec<FaultSpec>,
) -> (Harness, Engine, std::sync::Arc<EventLog>) {
    let mut h = Harness::with_faults(site, faults);
    h.engine = None;
    let (engine, log) = engine_without_alert_output(&h);
    (h, engine, log)
}

/// VDI1 quarantined by an engine without syslog or mail, until idle.
async fn quarantined_without_alert_output() -> (Harness, Engine, std::sync::Arc<EventLog>) {
    let (h, engine, log) = harness_without_alert_output(Vec::new());
    engine
        .submit_detection(detection("10.110.0.11", "e-1"))
        .await
        .unwrap();
    engine.wait_idle().await;
    (h, engine, log)
}

/// vdi-001 quarantined while vdi-002's first write hangs (a device call under way until the
/// call timeout), by an engine without alert output; returns when vdi-001's closing is staged.
async fn closing_while_a_call_is_under_way() -> (Harness, Engine, std::sync::Arc<EventLog>) {
    let (h, engine, log) =
        harness_without_alert_output(vec![fault("vc-1", SetNic, FaultEffect::Timeout)
            .on_vnic("vm-1002", "4000")
            .times(1)]);
    engine
        .submit_detection(detection("10.110.0.12", "e-2"))
        .await
        .unwrap();
    engine
        .submit_detection(detection("10.110.0.11", "e-1"))
        .await
        .unwrap();
    // The world answers at once (no latency): vdi-001 is written and verified at this instant.
    tokio::task::yield_now().await;
    (h, engine, log)
}

/// vc-1 with one slot, held by vdi-002's first write, which hangs until the call timeout
/// (2 s); vdi-002's second write and vdi-001's write wait for that slot. sbc-01, on its
/// switch, is quarantined meanwhile by an engine without alert output; returns when sbc-01's
/// closing is staged.
async fn closing_while_calls_wait_for_a_slot() -> (Harness, Engine, std::sync::Arc<EventLog>) {
    let site = site_with(|s| s.replace("max_concurrent = 8\n", "max_concurrent = 1\n"));
    let (h, engine, log) = harness_on_site_without_alert_output(
        site,
        vec![fault("vc-1", SetNic, FaultEffect::Timeout)
            .on_vnic("vm-1002", "4000")
            .times(1)],
    );
    for (ip, event) in [("10.110.0.12", "e-2"), ("10.110.0.11", "e-1")] {
        engine.submit_detection(detection(ip, event)).await.unwrap();
    }
    engine
        .submit_detection(detection("10.110.0.50", "e-5"))
        .await
        .unwrap();
    // The switch answers at once (no latency): sbc-01 is written, verified, saved and read
    // again within its batch windows (a millisecond each).
    for _ in 0..5 {
        if engine.lserver(SBC).unwrap().state == LServerState::Quarantined {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        engine.lserver(SBC).unwrap().state,
        LServerState::Quarantined,
        "sbc-01 is quarantined in memory, its closing staged"
    );
    (h, engine, log)
}

fn finished(path: &'static str) -> impl Fn(&EngineEvent) -> bool {
    move |e| matches!(e, EngineEvent::OperationFinished { lserver, .. } if lserver == path)
}

#[tokio::test(start_paused = true)]
async fn r7_a_closing_step_rides_the_commit_the_next_detection_needs() {
    let (_h, engine, log) = closing_while_calls_wait_for_a_slot().await;
    let start = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(1)).await;
    let mut spyware = detection("10.110.0.13", "e-3");
    spyware.category = Category::Spyware;
    engine.submit_detection(spyware).await.unwrap();
    // sbc-01's records and closing alert waited for a commit someone needed: the one that
    // made the new detection durable carries them too.
    let (closing, closed_at) = log.commit_of(finished(SBC));
    let (detection_commit, _) = log.commit_of(
        |e| matches!(e, EngineEvent::DetectionJournaled { event_id, .. } if event_id == "e-3"),
    );
    assert_eq!(closing, detection_commit);
    assert_eq!(closed_at - start, Duration::from_millis(1));
    assert_eq!(
        engine.lserver(VDI1).unwrap().pending_operations,
        1,
        "vdi-001's write still waits for the slot"
    );
}

#[tokio::test(start_paused = true)]
async fn r7_a_closing_step_commits_itself_within_its_window() {
    let (_h, engine, log) = closing_while_calls_wait_for_a_slot().await;
    let start = tokio::time::Instant::now();
    // Nothing else needs a commit and nothing else is staged: sbc-01's closing commits on its
    // own after a quiet spell, not the whole window, long before vdi-002's hanging call is cut
    // off (2 s) and the waiting calls get the slot.
    tokio::time::sleep(CLOSING_WINDOW * 2).await;
    let (_, closed_at) = log.commit_of(finished(SBC));
    let waited = closed_at - start;
    assert!(
        waited > Duration::ZERO && waited <= CLOSING_QUIET,
        "{waited:?}"
    );
    assert_eq!(
        engine.lserver(VDI2).unwrap().pending_operations,
        1,
        "still moving"
    );
}

#[tokio::test(start_paused = true)]
async fn r7_a_closing_step_beside_calls_all_on_the_wire_commits_at_once() {
    // vdi-002's write hangs on the wire and no call waits for a slot: nothing is coming that
    // vdi-001's closing could share a commit with, so it does not wait for the hanging call.
    let (_h, engine, log) = closing_while_a_call_is_under_way().await;
    let start = tokio::time::Instant::now();
    tokio::time::sleep(CLOSING_WINDOW * 2).await;
    let (_, closed_at) = log.commit_of(finished(VDI1));
    assert!(
        closed_at <= start,
        "vdi-001's closing waited {:?} beside a call already on the wire",
        closed_at - start
    );
    assert_eq!(
        engine.lserver(VDI2).unwrap().pending_operations,
        1,
        "still moving"
    );
}

#[tokio::test(start_paused = true)]
async fn r7_with_no_device_call_under_way_a_closing_step_commits_at_once() {
    let start = tokio::time::Instant::now();
    let (_h, _engine, log) = quarantined_without_alert_output().await;
    let (_, closed_at) = log.commit_of(finished(VDI1));
    assert_eq!(closed_at, start);
}

#[tokio::test(start_paused = true)]
async fn r17_without_an_alert_output_alerts_are_journaled_delivered() {
    let (_h, engine, log) = quarantined_without_alert_output().await;
    let alerts = engine.alerts_since(0, 100).unwrap();
    assert!(alerts.len() >= 2, "started and completed: {alerts:?}");
    // Nothing is left to deliver, so nothing would be sent again after a restart.
    assert!(engine
        .journal_snapshot()
        .unwrap()
        .undelivered_alerts
        .is_empty());
    // Delivered when journaled, not marked by a later step: no commit after the closing one.
    let events = log.events();
    let closed = events
        .iter()
        .rposition(
            |e| matches!(e, EngineEvent::Alert(a) if a.code == AlertCode::QuarantineCompleted),
        )
        .expect("quarantine-completed announced");
    assert!(
        !events[closed..]
            .iter()
            .any(|e| matches!(e, EngineEvent::Committed { .. })),
        "{:?}",
        &events[closed..]
    );
}

#[tokio::test(start_paused = true)]
async fn r17_alerts_left_undelivered_are_marked_when_no_output_remains() {
    let mut h = Harness::standard();
    h.engine = None;
    // An alert an earlier run journaled but never delivered.
    let alert = Alert {
        seq: 1,
        at_ms: 0,
        code: AlertCode::LserverNotFound,
        lserver: None,
        ip: Some("10.9.9.9".parse().unwrap()),
        operation: None,
        detail: "L-Server not found. ip=10.9.9.9".into(),
    };
    let mut journal = Journal::open(&h.journal_path).unwrap();
    journal.commit(&[journal::Entry::Alert(alert)]).unwrap();
    assert_eq!(journal.snapshot().unwrap().undelivered_alerts.len(), 1);
    drop(journal);
    let (engine, _) = engine_without_alert_output(&h);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(engine
        .journal_snapshot()
        .unwrap()
        .undelivered_alerts
        .is_empty());
}

#[tokio::test(start_paused = true)]
async fn r7_one_commit_carries_the_detection_its_queueing_and_the_plan() {
    let (_h, engine, log) = quarantined_without_alert_output().await;
    let events = log.events();
    let first_commit: Vec<&EngineEvent> = events
        .iter()
        .skip_while(|e| !matches!(e, EngineEvent::Committed { .. }))
        .skip(1)
        .take_while(|e| !matches!(e, EngineEvent::Committed { .. }))
        .collect();
    let journaled = first_commit
        .iter()
        .position(|e| matches!(e, EngineEvent::DetectionJournaled { .. }));
    let started = first_commit
        .iter()
        .position(|e| matches!(e, EngineEvent::OperationStarted { .. }));
    // `quarantine-started` is journaled with the plan (R17): announced by the same commit.
    let planned = first_commit
        .iter()
        .position(|e| matches!(e, EngineEvent::Alert(a) if a.code == AlertCode::QuarantineStarted));
    // The plan is durable with its cause, and announced after it: no device call waits for a
    // second commit.
    assert!(
        matches!((journaled, started, planned), (Some(j), Some(s), Some(p)) if j < s && s < p),
        "{first_commit:?}"
    );
    assert_eq!(
        engine.lserver(VDI1).unwrap().state,
        LServerState::Quarantined
    );
}

#[tokio::test(start_paused = true)]
async fn r19_a_hanging_device_cannot_hold_an_operation_past_its_deadline() {
    let h = Harness::standard_with(vec![
        fault("vc-1", SetNic, FaultEffect::Timeout),
        fault("vc-1", GetNic, FaultEffect::Timeout),
    ]);
    let start = tokio::time::Instant::now();
    h.detect("10.110.0.11", "e-1").await;
    h.engine().wait_idle().await;
    let elapsed = start.elapsed();
    let settings = h.site.topology.engine;
    assert_eq!(h.outcome(VDI1), Some(Outcome::QuarantineFailed));
    assert!(
        elapsed <= settings.operation_deadline + settings.call_timeout,
        "took {elapsed:?}: deadline {:?} plus one read {:?}",
        settings.operation_deadline,
        settings.call_timeout
    );
}

#[tokio::test(start_paused = true)]
async fn r19_the_last_read_at_the_deadline_gets_the_full_call_timeout() {
    let site = site_with(|s| {
        s.replace(
            "operation_deadline = \"30s\"",
            "operation_deadline = \"3s\"",
        )
        .replace(
            "max_concurrent = 8",
            "max_concurrent = 8\nlatency = \"10ms\"",
        )
    });
    // The first write hangs unapplied for the whole call timeout; the second, cut short by the
    // deadline, lands. Only the read after it can tell.
    let h = Harness::with_faults(
        site,
        vec![
            fault("vc-1", SetNic, FaultEffect::Timeout).times(1),
            fault("vc-1", SetNic, FaultEffect::ApplyThenTimeout).times(1),
        ],
    );
    h.detect_settled("10.110.0.11").await;
    assert_eq!(h.outcome(VDI1), Some(Outcome::Quarantined));
    assert_eq!(
        (h.hits(0), h.hits(1)),
        (1, 1),
        "both writes met their fault"
    );
}

#[tokio::test(start_paused = true)]
async fn r8_no_blind_rewrite_while_reads_fail_after_a_write() {
    // The write lands; the verifying read and the next one fail; the third read sees it.
    let h = Harness::standard_detected(
        vec![fault("vc-1", GetNic, FaultEffect::Unavailable).times(2)],
        "10.110.0.11",
    )
    .await;
    assert_eq!(h.outcome(VDI1), Some(Outcome::Quarantined));
    assert_eq!(
        h.writes_for(VDI1).len(),
        1,
        "INV-6: no write while the truth is unknown"
    );
    assert_eq!(h.hits(0), 2, "two reads failed");
}

#[tokio::test(start_paused = true)]
async fn r18_unknown_source_and_malformed_detection_are_rejected_with_a_reason() {
    let h = Harness::standard();
    let mut d = detection("10.110.0.11", "e-1");
    d.source = "rogue".into();
    let err = h.engine().submit_detection(d).await.unwrap_err();
    assert!(err.to_string().contains("unknown AV server"), "{err}");
    let mut d = detection("10.110.0.11", "");
    d.event_id.clear();
    let err = h.engine().submit_detection(d).await.unwrap_err();
    assert!(err.to_string().contains("event_id"), "{err}");
    assert_eq!(
        Journal::open(&h.journal_path)
            .unwrap()
            .detection_count()
            .unwrap(),
        0
    );
}
