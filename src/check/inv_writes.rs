//! Invariants on device writes: INV-5 no collateral, INV-6 idempotence.

use super::hash::{HashMap, HashSet};

use super::facts::{Facts, Problems, NIC_WRITE_CALLS, WRITE_CALLS};
use super::InvariantVerdict;
use crate::adapters::OutcomeClass;
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

/// What the engine last learned of a NIC: the network, and how it learned it.
type Evidence<'a> = (&'a str, &'static str);

/// INV-6: no write to a NIC when the engine's own evidence already showed it on the target
/// (R12, R4): its last read of that NIC answered the target, or its last write of that target
/// may have landed and no read since answered otherwise.
///
/// Judged by the engine's evidence, as the invariant is worded, not by device truth: a read is
/// what the device answered (a stale read included), and every write counts as one that may
/// have landed from the moment it is sent, whatever its reply (a device may apply a write and
/// then answer an error, or the reply may be lost). A failed read changes nothing: while reads
/// fail the engine must not write blindly. A move the engine did not make (a switch reboot, an
/// external change) changes nothing either: the engine learns of it only by reading. A write
/// before any evidence of the NIC is not one its evidence forbade.
pub(crate) fn idempotence(f: &Facts<'_>) -> InvariantVerdict {
    const READ: &str = "its last read of the NIC answered it";
    const WRITE: &str = "its last write of it may have landed and no read since answered otherwise";
    let mut problems = Problems::new();
    let mut checked = 0;
    // What the engine last learned of each NIC (the value and how it learned it), the reads
    // under way that would tell it more, and the writes under way with the evidence before them.
    let mut evidence: HashMap<&NicRef, Evidence<'_>> = HashMap::default();
    let mut reads: HashMap<u64, &NicRef> = HashMap::default();
    let mut writes: HashMap<u64, (&NicRef, Option<Evidence<'_>>)> = HashMap::default();
    for (_, e) in f.events() {
        match &e.kind {
            EventKind::Invoke {
                call,
                op,
                nic: Some(nic),
                ..
            } if NIC_READ_CALLS.contains(&op.as_str()) => {
                reads.insert(*call, nic);
            }
            EventKind::Return {
                call,
                result,
                detail,
            } => {
                if let Some(nic) = reads.remove(call) {
                    if result == "ok" {
                        evidence.insert(nic, (detail.as_str(), READ));
                    }
                } else if let Some((nic, before)) = writes.remove(call) {
                    if result == "fail" && refused_before_processing(detail) {
                        match before {
                            Some(before) => evidence.insert(nic, before),
                            None => evidence.remove(nic),
                        };
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
                let before = evidence.insert(nic, (value.as_str(), WRITE));
                if let Some((shown, how)) = before {
                    if shown == value.as_str() {
                        problems.push(format!(
                            "call {call} {op} on {device} at {} ms writes {value} to {} nic {}, \
                             which the engine's evidence already showed there ({how})",
                            e.at_ms, nic.lserver, nic.nic
                        ));
                    }
                }
                writes.insert(*call, (nic, before));
            }
            _ => {}
        }
    }
    problems.verdict("INV-6", checked, "NIC writes")
}

/// The failure classes that say the device refused a call before processing it (not reachable,
/// busy, no session).
const REFUSED_BEFORE_PROCESSING: [OutcomeClass; 3] = [
    OutcomeClass::Unavailable,
    OutcomeClass::Busy,
    OutcomeClass::Auth,
];

/// Whether a failed call's reply says the device refused it before processing it, so a write it
/// answered cannot have landed. The reply's detail is the device error as displayed,
/// `<class>: <detail>`, so its class is read with the adapters' own spelling. Any other error may
/// come after the device applied the write (`apply_then_error`), so the engine cannot rule it out.
fn refused_before_processing(detail: &str) -> bool {
    REFUSED_BEFORE_PROCESSING.iter().any(|class| {
        detail
            .strip_prefix(class.as_str())
            .is_some_and(|rest| rest.starts_with(':'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::DeviceError;
    use strum::VariantArray;

    /// INV-6 reads a refusal from the reply detail the history records, which is the device
    /// error as displayed: every class is told apart there, and only the three that say "not
    /// processed" count.
    #[test]
    fn inv6_refusal_is_read_from_the_displayed_device_error_class() {
        for &class in OutcomeClass::VARIANTS {
            let detail = DeviceError::new(class, "the device said no").to_string();
            assert_eq!(
                refused_before_processing(&detail),
                REFUSED_BEFORE_PROCESSING.contains(&class),
                "{class:?}: {detail:?}"
            );
        }
        assert!(!refused_before_processing(
            "busybox: a detail that only starts like a class"
        ));
    }
}
