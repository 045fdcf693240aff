//! The sim-mode device models on the virtual clock: every fault effect, fault windows, heal,
//! switch reboots, AV delivery faults, and the history they record (Invoke / Return /
//! TruthChanged, including calls the caller cuts off).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use quarantine_lab::adapters::{Adapters, Email, OutcomeClass};
use quarantine_lab::model::history::{EventKind, HistoryEvent, NicRef};
use quarantine_lab::model::{load_site, Detection, Site};
use quarantine_lab::sim::{CallKind, DeviceOp, FaultEffect, FaultSpec, Recorder, Reply, SimWorld};
use tokio::time::Instant;

use common::detection;

const OP_PG: &str = "dvportgroup-110";
const QR_PG: &str = "dvportgroup-910";
const OP_VLAN: u16 = 110;
const QR_VLAN: u16 = 910;

fn site() -> Arc<Site> {
    Arc::new(load_site(Path::new("fixtures/topologies/vdi-small.toml")).expect("fixture loads"))
}

fn fault(device: &str, call: Option<CallKind>, effect: FaultEffect) -> FaultSpec {
    FaultSpec::new(device, call, effect)
}

fn world(faults: Vec<FaultSpec>) -> (SimWorld, Adapters, Recorder) {
    let recorder = Recorder::new();
    let world = SimWorld::new(site(), faults, recorder.clone(), 7);
    let adapters = world.adapters();
    (world, adapters, recorder)
}

fn vdi(n: usize) -> NicRef {
    NicRef {
        lserver: "/tenant-a/vdi-001".into(),
        nic: n,
    }
}

fn sbc(path: &str) -> NicRef {
    NicRef {
        lserver: path.into(),
        nic: 0,
    }
}

fn returns(events: &[HistoryEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Return { result, detail, .. } => Some((result.clone(), detail.clone())),
            _ => None,
        })
        .collect()
}

fn truth_changes(events: &[HistoryEvent]) -> Vec<(u64, NicRef, Option<String>, bool)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TruthChanged {
                nic,
                to,
                in_release,
                ..
            } => Some((e.at_ms, nic.clone(), to.clone(), *in_release)),
            _ => None,
        })
        .collect()
}

fn net(s: &str) -> Option<String> {
    Some(s.to_string())
}

/// What `pick` takes from each event the recorder holds, in order.
fn recorded<T>(recorder: &Recorder, pick: impl Fn(EventKind) -> Option<T>) -> Vec<T> {
    recorder
        .events()
        .into_iter()
        .filter_map(|e| pick(e.kind))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn every_nic_starts_on_its_operation_network() {
    let (world, _, _) = world(vec![]);
    let truth = world.final_truth();
    assert_eq!(truth.len(), 8);
    assert!(truth.iter().all(|(_, n)| n.as_deref() == Some("op-a")));
    assert_eq!(
        world.port_vlans("sw-1", "Ethernet1/5"),
        Some((OP_VLAN, OP_VLAN))
    );
}

#[tokio::test(start_paused = true)]
async fn a_write_records_invoke_truth_change_and_return_after_the_latency() {
    let (world, adapters, recorder) = world(vec![]);
    let vc = &adapters.hypervisors["vc-1"];
    let start = Instant::now();
    vc.set_nic("vm-1001", "4000", QR_PG).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(40));
    assert_eq!(world.nic_network(&vdi(0)), net("qr-a"));
    assert_eq!(vc.get_nic("vm-1001", "4000").await.unwrap(), QR_PG);
    // Writing the same value again changes nothing at the device.
    vc.set_nic("vm-1001", "4000", QR_PG).await.unwrap();

    let events = recorder.events();
    let call = match &events[0].kind {
        EventKind::Invoke { call, .. } => *call,
        other => panic!("first event is not an invoke: {other:?}"),
    };
    assert_eq!(
        events[0].kind,
        EventKind::Invoke {
            call,
            device: "vc-1".into(),
            op: "set_nic".into(),
            nic: Some(vdi(0)),
            lserver: Some("/tenant-a/vdi-001".into()),
            value: Some("qr-a".into()),
        }
    );
    assert_eq!(events[0].at_ms, 0);
    assert_eq!(
        events[1].kind,
        EventKind::TruthChanged {
            nic: vdi(0),
            from: net("op-a"),
            to: net("qr-a"),
            in_release: false,
            by: None,
        }
    );
    assert_eq!(events[1].at_ms, 40);
    assert_eq!(
        events[2].kind,
        EventKind::Return {
            call,
            result: "ok".into(),
            detail: String::new(),
        }
    );
    assert_eq!(truth_changes(&events).len(), 1, "{events:?}");
    assert_eq!(
        returns(&events)[1],
        ("ok".to_string(), "qr-a".to_string()),
        "a read's return shows the network read"
    );
}

#[tokio::test(start_paused = true)]
async fn reject_unavailable_and_busy_fail_without_applying() {
    for (effect, class) in [
        (FaultEffect::Reject, OutcomeClass::Rejected),
        (FaultEffect::Unavailable, OutcomeClass::Unavailable),
        (FaultEffect::Busy, OutcomeClass::Busy),
    ] {
        let (world, adapters, recorder) =
            world(vec![fault("vc-1", Some(CallKind::SetNic), effect)]);
        let err = adapters.hypervisors["vc-1"]
            .set_nic("vm-1001", "4000", QR_PG)
            .await
            .unwrap_err();
        assert_eq!(err.class, class, "{effect:?}");
        assert_eq!(world.nic_network(&vdi(0)), net("op-a"), "{effect:?}");
        let events = recorder.events();
        assert!(truth_changes(&events).is_empty());
        assert_eq!(returns(&events)[0].0, "fail");
    }
}

#[tokio::test(start_paused = true)]
async fn timeout_is_not_applied_and_a_cut_off_call_returns_unknown() {
    let (world, adapters, recorder) = world(vec![fault(
        "vc-1",
        Some(CallKind::SetNic),
        FaultEffect::Timeout,
    )]);
    let vc = adapters.hypervisors["vc-1"].clone();
    let cut =
        tokio::time::timeout(Duration::from_secs(5), vc.set_nic("vm-1001", "4000", QR_PG)).await;
    assert!(
        cut.is_err(),
        "the default hang outlasts the caller's timeout"
    );
    assert_eq!(world.nic_network(&vdi(0)), net("op-a"));
    let events = recorder.events();
    assert_eq!(
        returns(&events),
        vec![("unknown".to_string(), "cut off by the caller".to_string())]
    );
    assert_eq!(events.last().map(|e| e.at_ms), Some(5000));
    assert_eq!(world.max_in_flight("vc-1"), 1);
}

#[tokio::test(start_paused = true)]
async fn timeout_with_a_delay_replies_unknown_itself() {
    let mut f = fault("vc-1", Some(CallKind::SetNic), FaultEffect::Timeout);
    f.delay = Some(Duration::from_secs(2));
    let (_, adapters, recorder) = world(vec![f]);
    let start = Instant::now();
    let err = adapters.hypervisors["vc-1"]
        .set_nic("vm-1001", "4000", QR_PG)
        .await
        .unwrap_err();
    assert_eq!(err.class, OutcomeClass::Unknown);
    assert_eq!(start.elapsed(), Duration::from_millis(2040));
    assert_eq!(returns(&recorder.events())[0].0, "unknown");
}

#[tokio::test(start_paused = true)]
async fn apply_then_timeout_moves_the_nic_and_the_reply_is_lost() {
    let (world, adapters, recorder) = world(vec![fault(
        "vc-1",
        Some(CallKind::SetNic),
        FaultEffect::ApplyThenTimeout,
    )]);
    let vc = adapters.hypervisors["vc-1"].clone();
    let cut =
        tokio::time::timeout(Duration::from_secs(5), vc.set_nic("vm-1001", "4000", QR_PG)).await;
    assert!(cut.is_err());
    assert_eq!(world.nic_network(&vdi(0)), net("qr-a"));
    let events = recorder.events();
    assert_eq!(
        truth_changes(&events),
        vec![(40, vdi(0), net("qr-a"), false)]
    );
    assert_eq!(returns(&events)[0].0, "unknown");
}

#[tokio::test(start_paused = true)]
async fn apply_then_error_applies_and_lies() {
    let (world, adapters, recorder) = world(vec![fault(
        "sw-1",
        Some(CallKind::SetPort),
        FaultEffect::ApplyThenError,
    )]);
    let err = adapters.switches["sw-1"]
        .set_port("Ethernet1/5", QR_VLAN)
        .await
        .unwrap_err();
    assert_eq!(err.class, OutcomeClass::Rejected);
    assert_eq!(err.detail, "error reply after applying");
    assert_eq!(world.nic_network(&sbc("/tenant-a/sbc-01")), net("qr-a"));
    let events = recorder.events();
    assert_eq!(truth_changes(&events).len(), 1);
    assert_eq!(returns(&events)[0].0, "fail");
}

#[tokio::test(start_paused = true)]
async fn accept_without_apply_says_ok_and_changes_nothing() {
    let (world, adapters, recorder) =
        world(vec![fault("vc-1", None, FaultEffect::AcceptWithoutApply)]);
    let vc = &adapters.hypervisors["vc-1"];
    vc.set_nic("vm-1001", "4000", QR_PG).await.unwrap();
    // Reads are not writes: the rule never applies to them.
    assert_eq!(vc.get_nic("vm-1001", "4000").await.unwrap(), OP_PG);
    assert_eq!(world.nic_network(&vdi(0)), net("op-a"));
    let events = recorder.events();
    assert!(truth_changes(&events).is_empty());
    assert_eq!(returns(&events)[0].0, "ok");
}

#[tokio::test(start_paused = true)]
async fn stale_read_returns_the_value_before_the_last_write() {
    let mut f = fault("vc-1", None, FaultEffect::StaleRead);
    f.times = Some(1);
    let (world, adapters, _) = world(vec![f]);
    let vc = &adapters.hypervisors["vc-1"];
    // The write does not use up the read fault.
    vc.set_nic("vm-1001", "4000", QR_PG).await.unwrap();
    assert_eq!(vc.get_nic("vm-1001", "4000").await.unwrap(), OP_PG);
    assert_eq!(vc.get_nic("vm-1001", "4000").await.unwrap(), QR_PG);
    assert_eq!(world.nic_network(&vdi(0)), net("qr-a"));

    let mut f = fault("sw-1", Some(CallKind::GetPort), FaultEffect::StaleRead);
    f.times = Some(1);
    let (_, adapters, _) = self::world(vec![f]);
    let sw = &adapters.switches["sw-1"];
    sw.set_port("Ethernet1/6", QR_VLAN).await.unwrap();
    assert_eq!(sw.get_port("Ethernet1/6").await.unwrap(), OP_VLAN);
    assert_eq!(sw.get_port("Ethernet1/6").await.unwrap(), QR_VLAN);
}

#[tokio::test(start_paused = true)]
async fn delay_adds_to_the_latency() {
    let mut f = fault("sw-1", Some(CallKind::GetPort), FaultEffect::Delay);
    f.delay = Some(Duration::from_millis(850));
    let (_, adapters, _) = world(vec![f]);
    let start = Instant::now();
    adapters.switches["sw-1"]
        .get_port("Ethernet1/5")
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(1000));
    let start = Instant::now();
    adapters.switches["sw-1"].save_config().await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(150));
}

#[tokio::test(start_paused = true)]
async fn auth_expired_refuses_every_call_until_login() {
    let mut f = fault("vc-1", Some(CallKind::GetNic), FaultEffect::AuthExpired);
    f.times = Some(1);
    let mut login_fails = fault("vc-1", Some(CallKind::Login), FaultEffect::Unavailable);
    login_fails.times = Some(1);
    let (world, adapters, _) = world(vec![f, login_fails]);
    let vc = &adapters.hypervisors["vc-1"];
    let class = |r: Result<(), quarantine_lab::adapters::DeviceError>| r.unwrap_err().class;
    assert_eq!(
        vc.get_nic("vm-1001", "4000").await.unwrap_err().class,
        OutcomeClass::Auth
    );
    assert_eq!(world.session_valid("vc-1"), Some(false));
    assert_eq!(
        class(vc.set_nic("vm-1001", "4000", QR_PG).await),
        OutcomeClass::Auth
    );
    assert_eq!(class(vc.power_reset("vm-1001").await), OutcomeClass::Auth);
    assert_eq!(world.nic_network(&vdi(0)), net("op-a"));
    // The login itself is faulted once; the session stays invalid.
    assert_eq!(class(vc.login().await), OutcomeClass::Unavailable);
    assert_eq!(
        class(vc.set_nic("vm-1001", "4000", QR_PG).await),
        OutcomeClass::Auth
    );
    vc.login().await.unwrap();
    vc.set_nic("vm-1001", "4000", QR_PG).await.unwrap();
    assert_eq!(world.nic_network(&vdi(0)), net("qr-a"));
}

#[tokio::test(start_paused = true)]
async fn times_and_windows_bound_a_fault() {
    let mut windowed = fault("vc-1", Some(CallKind::SetNic), FaultEffect::Reject);
    windowed.from = Some(Duration::from_secs(1));
    windowed.until = Some(Duration::from_secs(2));
    let mut counted = fault("sw-1", None, FaultEffect::Busy);
    counted.times = Some(2);
    let (_, adapters, _) = world(vec![windowed, counted]);
    let vc = adapters.hypervisors["vc-1"].clone();
    let set = || vc.set_nic("vm-1001", "4000", QR_PG);
    assert!(set().await.is_ok(), "before the window");
    tokio::time::sleep_until(Instant::now() + Duration::from_millis(1460)).await;
    assert!(set().await.is_err(), "inside the window (arrives at 1.5 s)");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(set().await.is_ok(), "after the window");

    let sw = &adapters.switches["sw-1"];
    assert!(sw.get_port("Ethernet1/5").await.is_err());
    assert!(sw.save_config().await.is_err());
    assert!(sw.get_port("Ethernet1/5").await.is_ok(), "times used up");
}

#[tokio::test(start_paused = true)]
async fn match_narrows_a_fault_to_one_object() {
    let mut f = fault("vc-1", Some(CallKind::SetNic), FaultEffect::Reject);
    f.matcher.lserver = Some("/tenant-a/vdi-002".into());
    let mut p = fault("sw-1", Some(CallKind::SetPort), FaultEffect::Reject);
    p.matcher.port = Some("Ethernet1/6".into());
    let (_, adapters, _) = world(vec![f, p]);
    let vc = &adapters.hypervisors["vc-1"];
    assert!(vc.set_nic("vm-1001", "4000", QR_PG).await.is_ok());
    assert!(vc.set_nic("vm-1002", "4000", QR_PG).await.is_err());
    let sw = &adapters.switches["sw-1"];
    assert!(sw.set_port("Ethernet1/5", QR_VLAN).await.is_ok());
    assert!(sw.set_port("Ethernet1/6", QR_VLAN).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn heal_removes_the_faults_of_a_device_or_all() {
    let (world, adapters, recorder) = world(vec![
        fault("vc-1", None, FaultEffect::Reject),
        fault("sw-1", None, FaultEffect::Unavailable),
    ]);
    let vc = &adapters.hypervisors["vc-1"];
    let sw = &adapters.switches["sw-1"];
    assert!(vc.get_nic("vm-1001", "4000").await.is_err());
    world.heal("vc-1");
    assert!(vc.get_nic("vm-1001", "4000").await.is_ok());
    assert!(sw.get_port("Ethernet1/5").await.is_err());
    world.heal("all");
    assert!(sw.get_port("Ethernet1/5").await.is_ok());
    let heals: Vec<String> = recorded(&recorder, |kind| match kind {
        EventKind::Heal { target } => Some(target),
        _ => None,
    });
    assert_eq!(heals, ["vc-1", "all"]);
}

#[tokio::test(start_paused = true)]
async fn reboot_loses_unsaved_vlans_and_keeps_saved_ones() {
    let mut reboot = fault("sw-1", None, FaultEffect::RebootLosesUnsaved);
    reboot.from = Some(Duration::from_secs(10));
    let (world, adapters, recorder) = world(vec![reboot]);
    assert_eq!(
        world.switch_reboots(),
        vec![(Duration::from_secs(10), "sw-1".to_string())]
    );
    let sw = &adapters.switches["sw-1"];
    sw.set_port("Ethernet1/5", QR_VLAN).await.unwrap();
    sw.save_config().await.unwrap();
    sw.set_port("Ethernet1/6", QR_VLAN).await.unwrap();
    assert_eq!(
        world.port_vlans("sw-1", "Ethernet1/6"),
        Some((QR_VLAN, OP_VLAN))
    );
    // The reboot fault is not a per-call fault: calls before it pass.
    assert!(world.reboot_switch("sw-1"));
    assert_eq!(world.nic_network(&sbc("/tenant-a/sbc-01")), net("qr-a"));
    assert_eq!(world.nic_network(&sbc("/tenant-b/sbc-02")), net("op-a"));
    let events = recorder.events();
    let n = events.len();
    assert_eq!(
        events[n - 2].kind,
        EventKind::SwitchRebooted {
            device: "sw-1".into()
        }
    );
    assert_eq!(
        events[n - 1].kind,
        EventKind::TruthChanged {
            nic: sbc("/tenant-b/sbc-02"),
            from: net("qr-a"),
            to: net("op-a"),
            in_release: false,
            by: Some("switch_reboot".into()),
        }
    );
    assert!(!world.reboot_switch("vc-1"), "not a switch");
    world.heal("sw-1");
    assert!(!world.reboot_switch("sw-1"), "a healed reboot is cancelled");
}

#[tokio::test(start_paused = true)]
async fn resets_are_counted_and_recorded() {
    let (world, adapters, recorder) = world(vec![]);
    adapters.hypervisors["vc-1"]
        .power_reset("vm-1002")
        .await
        .unwrap();
    adapters.bmcs["irmc-sbc-02"].reset().await.unwrap();
    assert!(adapters.hypervisors["vc-1"]
        .power_reset("vm-9999")
        .await
        .is_err());
    assert_eq!(world.reset_count("vc-1"), 1);
    assert_eq!(world.reset_count("irmc-sbc-02"), 1);
    assert_eq!(world.reset_count("irmc-sbc-01"), 0);
    let resets: Vec<String> = recorded(&recorder, |kind| match kind {
        EventKind::Reset { lserver } => Some(lserver),
        _ => None,
    });
    assert_eq!(resets, ["/tenant-a/vdi-002", "/tenant-b/sbc-02"]);
}

#[tokio::test(start_paused = true)]
async fn truth_changes_inside_a_release_are_marked() {
    let (_, adapters, recorder) = world(vec![]);
    let vc = &adapters.hypervisors["vc-1"];
    vc.set_nic("vm-1001", "4000", QR_PG).await.unwrap();
    recorder.set_releasing("/tenant-a/vdi-001", true);
    vc.set_nic("vm-1001", "4000", OP_PG).await.unwrap();
    recorder.set_releasing("/tenant-a/vdi-001", false);
    let marks: Vec<bool> = truth_changes(&recorder.events())
        .into_iter()
        .map(|(_, _, _, in_release)| in_release)
        .collect();
    assert_eq!(marks, [false, true]);
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_measured_not_limited() {
    let (world, adapters, _) = world(vec![]);
    let vc = adapters.hypervisors["vc-1"].clone();
    let calls: Vec<_> = ["vm-1001", "vm-1002", "vm-1003"]
        .into_iter()
        .map(|vm| {
            let vc = vc.clone();
            tokio::spawn(async move { vc.get_nic(vm, "4000").await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), OP_PG);
    }
    assert_eq!(world.max_in_flight("vc-1"), 3);
    assert_eq!(world.max_in_flight("sw-1"), 0);
}

#[tokio::test(start_paused = true)]
async fn unknown_objects_and_devices_are_refused_not_panicked() {
    let (world, adapters, recorder) = world(vec![]);
    let vc = &adapters.hypervisors["vc-1"];
    assert_eq!(
        vc.set_nic("vm-1001", "4000", "dvportgroup-nope")
            .await
            .unwrap_err()
            .class,
        OutcomeClass::Rejected
    );
    assert!(vc.get_nic("vm-1001", "4001").await.is_err());
    assert!(adapters.switches["sw-1"]
        .set_port("Ethernet1/5", 0)
        .await
        .is_err());
    let err = world
        .call("nope", DeviceOp::Login)
        .await
        .expect_err("no such device");
    assert_eq!(err.class, OutcomeClass::Unavailable);
    assert_eq!(
        world
            .call("sw-1", DeviceOp::SaveConfig)
            .await
            .expect("save"),
        Reply::Done
    );
    let events = recorder.events();
    assert_eq!(returns(&events).len(), 5, "every invoke has a return");
}

#[tokio::test(start_paused = true)]
async fn sinks_keep_emails_and_syslog_lines() {
    let (world, adapters, _) = world(vec![]);
    let email = Email {
        id: String::new(),
        to: "admin-a@example.com".into(),
        subject: "s".into(),
        body: "b".into(),
    };
    adapters
        .mailer
        .as_ref()
        .expect("mailer")
        .send(&email)
        .await
        .unwrap();
    adapters
        .syslog
        .as_ref()
        .expect("syslog")
        .send("<11>1 line")
        .await
        .unwrap();
    assert_eq!(world.emails(), vec![email]);
    assert_eq!(world.syslog_lines(), vec!["<11>1 line".to_string()]);
}

fn ids(deliveries: &[(Duration, Detection)]) -> Vec<(u64, String)> {
    deliveries
        .iter()
        .map(|(at, d)| (at.as_millis() as u64, d.event_id.clone()))
        .collect()
}

fn schedule() -> Vec<(Duration, Detection)> {
    vec![
        (Duration::ZERO, detection("10.110.0.11", "e-1")),
        (Duration::from_secs(1), detection("10.110.0.12", "e-2")),
        (Duration::from_secs(2), detection("10.110.0.13", "e-3")),
    ]
}

fn pairs(list: &[(u64, &str)]) -> Vec<(u64, String)> {
    list.iter().map(|(t, s)| (*t, s.to_string())).collect()
}

#[tokio::test(start_paused = true)]
async fn deliveries_without_faults_pass_unchanged() {
    let (world, _, _) = world(vec![]);
    let out = world.deliveries(schedule());
    assert_eq!(
        ids(&out),
        pairs(&[(0, "e-1"), (1000, "e-2"), (2000, "e-3")])
    );
}

#[tokio::test(start_paused = true)]
async fn drop_duplicate_and_reorder_act_on_matching_detections() {
    let mut drop = fault("osce", Some(CallKind::Send), FaultEffect::Drop);
    drop.matcher.lserver = Some("/tenant-a/vdi-002".into());
    let mut dup = fault("osce", None, FaultEffect::Duplicate);
    dup.times = Some(1);
    let (world, _, _) = world(vec![drop, dup]);
    let out = world.deliveries(schedule());
    assert_eq!(ids(&out), pairs(&[(0, "e-1"), (1, "e-1"), (2000, "e-3")]));

    let mut reorder = fault("osce", None, FaultEffect::Reorder);
    reorder.times = Some(1);
    let (world, _, _) = self::world(vec![reorder]);
    let out = world.deliveries(schedule());
    assert_eq!(
        ids(&out),
        pairs(&[(1000, "e-2"), (1001, "e-1"), (2000, "e-3")]),
        "held until just after the next detection of the same source"
    );

    let mut reorder = fault("osce", None, FaultEffect::Reorder);
    reorder.from = Some(Duration::from_secs(2));
    let mut dup = fault("osce", None, FaultEffect::Duplicate);
    dup.delay = Some(Duration::from_millis(1500));
    dup.until = Some(Duration::from_millis(500));
    let (world, _, _) = self::world(vec![reorder, dup]);
    let out = world.deliveries(schedule());
    assert_eq!(
        ids(&out),
        pairs(&[(0, "e-1"), (1000, "e-2"), (1500, "e-1"), (3000, "e-3")]),
        "no later detection: held one second"
    );
}

#[tokio::test(start_paused = true)]
async fn deliveries_honour_heals_and_other_sources() {
    let (world, _, _) = world(vec![fault("osce", None, FaultEffect::Drop)]);
    let mut other = schedule();
    other[2].1.source = "sepm".into();
    assert_eq!(ids(&world.deliveries(other)), pairs(&[(2000, "e-3")]));
    let heals = [(Duration::from_millis(1500), "osce".to_string())];
    assert_eq!(
        ids(&world.deliveries_with_heals(schedule(), &heals)),
        pairs(&[(2000, "e-3")])
    );
    world.heal("all");
    assert_eq!(ids(&world.deliveries(schedule())).len(), 3);
}

/// The same calls on the same world give the same history (INV-11).
#[tokio::test(start_paused = true)]
async fn histories_are_deterministic() {
    async fn run() -> Vec<HistoryEvent> {
        let mut f = fault(
            "vc-1",
            Some(CallKind::SetNic),
            FaultEffect::ApplyThenTimeout,
        );
        f.times = Some(1);
        let (_, adapters, recorder) = world(vec![f]);
        let vc = adapters.hypervisors["vc-1"].clone();
        let sw = adapters.switches["sw-1"].clone();
        let a = tokio::spawn(async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(1), vc.set_nic("vm-1001", "4000", QR_PG))
                    .await;
            vc.get_nic("vm-1001", "4000").await
        });
        let b = tokio::spawn(async move { sw.set_port("Ethernet1/5", QR_VLAN).await });
        let _ = a.await;
        let _ = b.await;
        recorder.events()
    }
    let first = run().await;
    assert!(first.len() >= 8);
    assert_eq!(first, run().await);
}

/// The real engine over the sim face: every L-Server quarantined, `max_concurrent` kept on each
/// device (R15), and every invoke answered in the history.
#[tokio::test(start_paused = true)]
async fn the_engine_quarantines_through_the_sim_face_within_device_limits() {
    use quarantine_lab::engine::{Engine, EngineOptions, Journal};
    let site = site();
    let recorder = Recorder::new();
    let world = SimWorld::new(site.clone(), vec![], recorder.clone(), 0);
    let journal = Journal::open_in_memory().expect("journal");
    let engine = Engine::open(
        site.clone(),
        journal,
        world.adapters(),
        EngineOptions::default(),
    )
    .expect("engine");
    let ips = [
        "10.110.0.11",
        "10.110.0.13",
        "10.110.0.21",
        "10.110.0.22",
        "10.110.0.23",
        "10.110.0.50",
        "10.110.0.51",
    ];
    for (i, ip) in ips.iter().enumerate() {
        engine
            .submit_detection(detection(ip, &format!("e-{i}")))
            .await
            .expect("accepted");
    }
    engine.wait_idle().await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    for (nic, network) in world.final_truth() {
        // vdi-002 had no detection: it stays on its operation network (INV-5).
        let expected = if nic.lserver == "/tenant-a/vdi-002" {
            "op-a"
        } else {
            "qr-a"
        };
        assert_eq!(network.as_deref(), Some(expected), "{nic:?}");
    }
    assert!(world.max_in_flight("sw-1") <= 1);
    assert!(world.max_in_flight("vc-1") <= 8);
    assert!(
        world.max_in_flight("vc-1") > 1,
        "virtual NICs move concurrently"
    );
    let events = recorder.events();
    let invokes = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Invoke { .. }))
        .count();
    assert_eq!(invokes, returns(&events).len());
    assert_eq!(truth_changes(&events).len(), 7);
    assert!(!world.syslog_lines().is_empty());
}

/// Seeded randomness: the detections of one instant arrive in an order the seed picks (the
/// same for the same seed, INV-11), and an AV server's `jitter` delays each by a seeded draw.
#[tokio::test(start_paused = true)]
async fn inv11_one_instants_detections_arrive_in_a_seeded_order() {
    let burst: Vec<(Duration, Detection)> = (1..=6)
        .map(|i| {
            let ip = format!("10.110.0.{}", 10 + i);
            (Duration::from_secs(1), detection(&ip, &format!("e-{i}")))
        })
        .collect();
    let order = |seed: u64| {
        let world = SimWorld::new(site(), vec![], Recorder::new(), seed);
        ids(&world.deliveries(burst.clone()))
    };
    let first = order(0);
    assert_eq!(first, order(0), "same seed, same order");
    assert!(first.iter().all(|(at, _)| *at == 1000), "no time moves");
    let orders: std::collections::BTreeSet<_> = (0..6).map(order).collect();
    assert!(orders.len() >= 3, "seeds pick different orders: {orders:?}");

    let mut topology = site().topology.clone();
    topology.av_servers[0].jitter = Some(Duration::from_millis(200));
    let jittery = Arc::new(Site::new(topology).expect("site"));
    let world = SimWorld::new(jittery.clone(), vec![], Recorder::new(), 3);
    let out = ids(&world.deliveries(schedule()));
    let again = ids(&SimWorld::new(jittery, vec![], Recorder::new(), 3).deliveries(schedule()));
    assert_eq!(out, again);
    for ((at, _), sent) in out.iter().zip([0, 1000, 2000]) {
        assert!((sent..=sent + 200).contains(at), "{out:?}");
    }
    assert!(
        out.iter()
            .zip([0, 1000, 2000])
            .any(|((at, _), sent)| *at != sent),
        "jitter delays: {out:?}"
    );
}
