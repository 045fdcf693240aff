//! Property: for random per-NIC outcome sequences, the final records and device writes satisfy
//! R9 (success means every NIC on quarantine, records included), R10 (failure rolls records
//! back and frees IPs; NICs that reached quarantine stay there) and R11 (no quarantine
//! operation ever writes an operation network).

mod common;

use common::*;
use proptest::prelude::*;
use quarantine_lab::engine::*;
use quarantine_lab::model::NetworkRole;

fn effect() -> impl Strategy<Value = Option<Effect>> {
    prop_oneof![
        3 => Just(None),
        1 => Just(Some(Effect::Reject)),
        1 => Just(Some(Effect::Busy)),
        1 => Just(Some(Effect::Unavailable)),
        1 => Just(Some(Effect::Timeout)),
        1 => Just(Some(Effect::ApplyThenTimeout)),
        1 => Just(Some(Effect::ApplyThenError)),
        1 => Just(Some(Effect::AcceptWithoutApply)),
    ]
}

fn read_effect() -> impl Strategy<Value = Option<Effect>> {
    prop_oneof![
        4 => Just(None),
        1 => Just(Some(Effect::StaleRead)),
        1 => Just(Some(Effect::Unavailable)),
    ]
}

/// (device, object) of every NIC under test: vdi-002's two vNICs and sbc-01's port.
const OBJECTS: [(&str, &str, &str); 3] = [
    ("vc-1", "set_nic", "vm-1002/4000"),
    ("vc-1", "set_nic", "vm-1002/4001"),
    ("sw-1", "set_port", "Ethernet1/5"),
];
const READS: [(&str, &str, &str); 3] = [
    ("vc-1", "get_nic", "vm-1002/4000"),
    ("vc-1", "get_nic", "vm-1002/4001"),
    ("sw-1", "get_port", "Ethernet1/5"),
];

fn run(
    writes: Vec<Vec<Option<Effect>>>,
    reads: Vec<Vec<Option<Effect>>>,
) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let h = Harness::standard();
        for (i, seq) in writes.iter().enumerate() {
            let (device, call, object) = OBJECTS[i];
            for effect in seq {
                // Each script fires once, in order; `None` is a normal call in the sequence.
                h.fakes.script_object(
                    device,
                    call,
                    object,
                    effect.unwrap_or(Effect::Pass),
                    Some(1),
                );
            }
        }
        for (i, seq) in reads.iter().enumerate() {
            let (device, call, object) = READS[i];
            for effect in seq {
                h.fakes.script_object(
                    device,
                    call,
                    object,
                    effect.unwrap_or(Effect::Pass),
                    Some(1),
                );
            }
        }
        h.detect("10.110.0.12", "e-1").await;
        h.detect("10.110.0.50", "e-2").await;
        h.settle().await;
        for path in ["/tenant-a/vdi-002", "/tenant-a/sbc-01"] {
            let view = h.view(path);
            let ls = h.site.lserver(path).unwrap();
            let device = h.device(path);
            match view.outcome {
                Some(Outcome::Quarantined) => {
                    // R9: confirmed at the device and recorded.
                    for (nic, net) in view.nics.iter().zip(&device) {
                        prop_assert_eq!(&nic.network, net);
                        prop_assert_eq!(h.site.network(net).unwrap().role, NetworkRole::Quarantine);
                    }
                }
                Some(Outcome::QuarantineFailed) => {
                    // R10: records back to the original operation network and IP.
                    for (nic, spec) in view.nics.iter().zip(&ls.nics) {
                        prop_assert_eq!(&nic.network, &spec.network);
                        prop_assert_eq!(nic.ip, spec.ip);
                    }
                    prop_assert_eq!(
                        h.alerts()
                            .iter()
                            .filter(|a| a.lserver.as_deref() == Some(path)
                                && a.severity() == Severity::Error)
                            .count(),
                        1
                    );
                }
                other => prop_assert!(false, "unexpected outcome {:?}", other),
            }
        }
        // R10, R11: a NIC that reached quarantine is never written back to an operation network.
        let operation_values = ["dvportgroup-110", "dvportgroup-120", "110", "120"];
        for call in h.fakes.calls() {
            if matches!(call.call, "set_nic" | "set_port") {
                prop_assert!(
                    !operation_values.contains(&call.value.as_deref().unwrap_or("")),
                    "{:?}",
                    call
                );
            }
        }
        // INV-8 after rollback: only quarantined L-Servers hold addresses.
        let snapshot = Journal::open(&h.journal_path).unwrap().snapshot().unwrap();
        for (_, _, owner, _) in &snapshot.allocations {
            prop_assert_eq!(h.view(owner).outcome, Some(Outcome::Quarantined));
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn r9_r10_r11_hold_for_random_device_outcomes(
        writes in proptest::collection::vec(proptest::collection::vec(effect(), 0..5), 3),
        reads in proptest::collection::vec(proptest::collection::vec(read_effect(), 0..3), 3),
    ) {
        run(writes, reads)?;
    }
}
