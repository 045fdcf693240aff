//! Invariants on device writes: INV-5 no collateral, INV-6 idempotence.

use super::hash::{HashMap, HashSet};

use super::facts::{show, Facts, Problems, Truth, NIC_WRITE_CALLS, WRITE_CALLS};
use super::InvariantVerdict;
use crate::model::history::{EventKind, NicRef};

/// Calls that read a NIC's device truth.
pub(crate) const NIC_READ_CALLS: [&str; 2] = ["get_nic", "get_port"];

/// INV-5: every device write targets an L-Server that had, before the write, an acknowledged
/// detection (any disposition but `not_found`) or an accepted command. A write that names no
/// L-Server cannot be shown to be harmless, so it counts as collateral.
pub(crate) fn no_collateral(f: &Facts<'_>) -> InvariantVerdict {
    let mut asked: HashSet<&str> = HashSet::default();
    let mut problems = Problems::new();
    let mut checked = 0;
    for (_, e) in f.events() {
        match &e.kind {
            EventKind::DetectionAcked {
                lserver: Some(lserver),
                disposition,
                ..
            } if disposition != "not_found" => {
                asked.insert(lserver);
            }
            EventKind::CommandSubmitted {
                lserver,
                operation: Some(_),
                ..
            } => {
                asked.insert(lserver);
            }
            EventKind::Invoke {
                call,
                device,
                op,
                nic,
                lserver,
                ..
            } if WRITE_CALLS.contains(&op.as_str()) => {
                checked += 1;
                let target = lserver
                    .as_deref()
                    .or(nic.as_ref().map(|n| n.lserver.as_str()));
                match target {
                    Some(t) if asked.contains(t) => {}
                    Some(t) => problems.push(format!(
                        "call {call} {op} on {device} at {} ms touches {t}, which had no \
                         detection or command",
                        e.at_ms
                    )),
                    None => problems.push(format!(
                        "call {call} {op} on {device} at {} ms names no L-Server",
                        e.at_ms
                    )),
                }
            }
            _ => {}
        }
    }
    problems.verdict("INV-5", checked, "device writes")
}

/// INV-6: no write moves a NIC to the network the device already has it on (R12, R4).
///
/// Deliberately strict: device truth is replayed from TruthChanged events in history order, and
/// a write invoked while the device already has the NIC on the target counts, even when an
/// earlier call's `unknown` result left the engine unsure or a stale read told it otherwise.
/// R8 says the engine resolves `unknown` by reading before it writes again, and reads a
/// contradicting answer again before acting on it, so such a write is still a finding.
///
/// Except while the engine has no evidence of where the NIC is (INV-6 is about the engine's
/// evidence): from the start of the run until one of its reads of the NIC returns or one of
/// its writes moves it, and after a move the engine did not make (`by`: a switch reboot, an
/// external change, R20) until a read returns. A write there is not one its evidence forbade.
pub(crate) fn idempotence(f: &Facts<'_>) -> InvariantVerdict {
    let mut truth = Truth::new(f.site);
    let mut problems = Problems::new();
    let mut checked = 0;
    // NICs whose place the engine has evidence of, and the reads under way that would give it.
    let mut seen: HashSet<&NicRef> = HashSet::default();
    let mut reads: HashMap<u64, &NicRef> = HashMap::default();
    for (_, e) in f.events() {
        match &e.kind {
            EventKind::TruthChanged { nic, by, .. } => {
                truth.apply(&e.kind);
                if by.is_some() {
                    seen.remove(nic);
                } else {
                    seen.insert(nic);
                }
            }
            EventKind::Invoke {
                call,
                op,
                nic: Some(nic),
                ..
            } if NIC_READ_CALLS.contains(&op.as_str()) => {
                reads.insert(*call, nic);
            }
            EventKind::Return { call, result, .. } => {
                if let Some(nic) = reads.remove(call) {
                    if result == "ok" {
                        seen.insert(nic);
                    }
                }
            }
            EventKind::Invoke {
                call,
                device,
                op,
                nic: Some(nic),
                value: Some(value),
                ..
            } if NIC_WRITE_CALLS.contains(&op.as_str()) => {
                checked += 1;
                let current = truth.get(nic);
                if current == Some(value.as_str()) && seen.contains(nic) {
                    problems.push(format!(
                        "call {call} {op} on {device} at {} ms writes {} to {} nic {}, which \
                         the device already had there",
                        e.at_ms,
                        show(current),
                        nic.lserver,
                        nic.nic
                    ));
                }
            }
            _ => {}
        }
    }
    problems.verdict("INV-6", checked, "NIC writes")
}
