//! Property: for random per-NIC fault plans (the lab's `FaultSpec`s with `times` and
//! `probability`, drawn from a random seed), the final records and device writes satisfy
//! R9 (success means every NIC on quarantine, records included), R10 (failure rolls records
//! back and frees IPs; NICs that reached quarantine stay there) and R11 (no quarantine
//! operation ever writes an operation network).

mod common;

use common::*;
use proptest::collection::vec;
use proptest::prelude::*;
use quarantine_lab::engine::*;
use quarantine_lab::model::NetworkRole;
use quarantine_lab::sim::{CallKind, FaultEffect, FaultSpec};

/// One rule of a NIC's fault plan: `(effect, times, probability)`. Rules apply in order, each
/// to its next `times` calls; with a probability a call the seed spares goes on to the next
/// rule, or behaves normally, so normal calls fall anywhere in the sequence.
type Rule = (FaultEffect, u32, Option<f64>);

fn rule(effect: impl Strategy<Value = FaultEffect>) -> impl Strategy<Value = Rule> {
    (effect, 1u32..=2, prop_oneof![Just(None), Just(Some(0.5))])
}

fn write_effect() -> impl Strategy<Value = FaultEffect> {
    prop_oneof![
        Just(FaultEffect::Reject),
        Just(FaultEffect::Busy),
        Just(FaultEffect::Unavailable),
        Just(FaultEffect::Timeout),
        Just(FaultEffect::ApplyThenTimeout),
        Just(FaultEffect::ApplyThenError),
        Just(FaultEffect::AcceptWithoutApply),
    ]
}

fn read_effect() -> impl Strategy<Value = FaultEffect> {
    prop_oneof![Just(FaultEffect::StaleRead), Just(FaultEffect::Unavailable)]
}

/// `rule` on the writes (or reads) of NIC `i` under test: vdi-002's two vNICs, sbc-01's port.
fn nic_fault(i: usize, call_is_write: bool, (effect, times, probability): Rule) -> FaultSpec {
    let (device, write, read) = match i {
        0 | 1 => ("vc-1", CallKind::SetNic, CallKind::GetNic),
        _ => ("sw-1", CallKind::SetPort, CallKind::GetPort),
    };
    let call = if call_is_write { write } else { read };
    let spec = fault(device, call, effect).times(times);
    let spec = match i {
        0 => spec.on_vnic("vm-1002", "4000"),
        1 => spec.on_vnic("vm-1002", "4001"),
        _ => spec.on_port("Ethernet1/5"),
    };
    FaultSpec {
        probability,
        ..spec
    }
}

fn run(writes: Vec<Vec<Rule>>, reads: Vec<Vec<Rule>>, seed: u64) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut faults = Vec::new();
        for (i, rules) in writes.into_iter().enumerate() {
            faults.extend(rules.into_iter().map(|r| nic_fault(i, true, r)));
        }
        for (i, rules) in reads.into_iter().enumerate() {
            faults.extend(rules.into_iter().map(|r| nic_fault(i, false, r)));
        }
        let h = Harness::seeded(site_with(|s| s.to_string()), faults, seed);
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
        for call in h.calls() {
            if matches!(call.op.as_str(), "set_nic" | "set_port") {
                let written = call.value.as_deref().and_then(|v| h.site.network(v));
                prop_assert_eq!(
                    written.map(|n| n.role),
                    Some(NetworkRole::Quarantine),
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
        writes in vec(vec(rule(write_effect()), 0..5), 3),
        reads in vec(vec(rule(read_effect()), 0..3), 3),
        seed in any::<u64>(),
    ) {
        run(writes, reads, seed)?;
    }
}
