//! The check catalogue: every check of every family, with a stable id
//! `<HV|SW|BMC|AV>-<tier>.<n>`, a title, the rule it protects, and when it is required.
//!
//! Ids are never reused or renumbered: a bundle certified today must still verify against a
//! later catalogue. A new check gets the next number of its tier.

use serde::Serialize;

use super::product::Product;
use super::Family;

/// When a check is required for its tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Requirement {
    /// Always.
    Required,
    /// Only when `[capabilities] batch = true`.
    WhenBatch,
    /// Only when `[capabilities] persist = true`.
    WhenPersist,
    /// Only against a simulated target: the fault cannot be forced on a real device (the
    /// semantic faults live in the simulator's device model).
    SimOnly,
    /// AV feeds the product pushes (`syslog_udp`, `syslog_tcp`, `api`): a stranger can push too.
    WhenPushed,
    /// AV feeds over a stream (`syslog_tcp`, `api`): a connection can be cut mid-message.
    WhenStream,
    /// AV feeds over syslog TCP only (framing, peer close, slow sender).
    WhenSyslogTcp,
    /// AV feeds the engine polls (`epo_api`).
    WhenPolled,
}

impl Requirement {
    /// The spelling in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Requirement::Required => "required",
            Requirement::WhenBatch => "when batch is claimed",
            Requirement::WhenPersist => "when persist is claimed",
            Requirement::SimOnly => "simulated targets only",
            Requirement::WhenPushed => "when the product pushes (syslog_udp, syslog_tcp, api)",
            Requirement::WhenStream => "over a stream (syslog_tcp, api)",
            Requirement::WhenSyslogTcp => "over syslog_tcp",
            Requirement::WhenPolled => "when the engine polls (epo_api)",
        }
    }
}

/// One catalogue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CheckDef {
    /// Stable id.
    pub id: &'static str,
    /// Tier 1 (function), 2 (failure classification) or 3 (the engine with this adapter).
    pub tier: u8,
    /// What it shows.
    pub title: &'static str,
    /// The rule or invariant it protects.
    pub rule: &'static str,
    /// When it is required.
    pub requirement: Requirement,
}

const fn c(
    id: &'static str,
    tier: u8,
    title: &'static str,
    rule: &'static str,
    requirement: Requirement,
) -> CheckDef {
    CheckDef {
        id,
        tier,
        title,
        rule,
        requirement,
    }
}

use Requirement::{
    Required, SimOnly, WhenBatch, WhenPersist, WhenPolled, WhenPushed, WhenStream, WhenSyslogTcp,
};

const SWITCH: &[CheckDef] = &[
    c(
        "SW-1.1",
        1,
        "read the access VLAN of every resource port",
        "R8",
        Required,
    ),
    c(
        "SW-1.2",
        1,
        "set access VLAN and read it back",
        "R8",
        Required,
    ),
    c(
        "SW-1.3",
        1,
        "idempotent rewrite: setting the VLAN a port has succeeds and changes nothing",
        "INV-6",
        Required,
    ),
    c("SW-1.4", 1, "save the running config", "R9", WhenPersist),
    c(
        "SW-1.5",
        1,
        "batch: several ports set and read in one request, one result each",
        "R15",
        WhenBatch,
    ),
    c(
        "SW-1.6",
        1,
        "invalid VLAN (4095) is rejected and changes nothing",
        "R8",
        Required,
    ),
    c("SW-1.7", 1, "unknown port is rejected", "R8", Required),
    c(
        "SW-1.8",
        1,
        "every resource port is restored to its VLAN before the suite",
        "R14",
        Required,
    ),
    c(
        "SW-2.1",
        2,
        "connection refused: outcome unavailable",
        "R8",
        Required,
    ),
    c(
        "SW-2.2",
        2,
        "503 before processing: outcome unavailable",
        "R8",
        Required,
    ),
    c("SW-2.3", 2, "4xx reply: outcome rejected", "R8", Required),
    c(
        "SW-2.4",
        2,
        "connection reset after the request: outcome unknown, then resolved by a read",
        "R8, R10",
        Required,
    ),
    c(
        "SW-2.5",
        2,
        "blackhole: outcome unknown at the call timeout",
        "R19",
        Required,
    ),
    c(
        "SW-2.6",
        2,
        "expired session: outcome auth, then a new login succeeds",
        "R8",
        Required,
    ),
    c(
        "SW-2.7",
        2,
        "apply then error: an error is reported and a read shows the change",
        "R8, R10",
        SimOnly,
    ),
    c(
        "SW-2.8",
        2,
        "accept without apply: ok is reported and a read shows no change (no cached read)",
        "R8",
        SimOnly,
    ),
    c(
        "SW-2.9",
        2,
        "stale read: the device's answer is passed through, the next read is current",
        "R8",
        SimOnly,
    ),
    c(
        "SW-2.10",
        2,
        "busy: outcome busy, not applied",
        "R8",
        SimOnly,
    ),
    c(
        "SW-3.1",
        3,
        "the family's library scenarios pass in wire mode with this adapter",
        "R6-R19, INV-1-INV-12",
        Required,
    ),
    c(
        "SW-3.2",
        3,
        "time to contain p50/p99 measured over the scenarios",
        "R19",
        Required,
    ),
    c(
        "SW-3.3",
        3,
        "an outbreak of N NICs is contained within the makespan bound",
        "R15",
        Required,
    ),
];

const HYPERVISOR: &[CheckDef] = &[
    c(
        "HV-1.1",
        1,
        "log in and read the backing of every resource vNIC",
        "R8",
        Required,
    ),
    c(
        "HV-1.2",
        1,
        "set the vNIC backing and read it back",
        "R8",
        Required,
    ),
    c(
        "HV-1.3",
        1,
        "idempotent rewrite: setting the backing a vNIC has succeeds",
        "INV-6",
        Required,
    ),
    c("HV-1.4", 1, "power reset of a resource VM", "R13", Required),
    c("HV-1.5", 1, "unknown VM is rejected", "R8", Required),
    c(
        "HV-1.6",
        1,
        "unknown port group is rejected and changes nothing",
        "R8",
        Required,
    ),
    c(
        "HV-1.7",
        1,
        "every resource vNIC is restored to its backing before the suite",
        "R14",
        Required,
    ),
    c(
        "HV-2.1",
        2,
        "connection refused: outcome unavailable",
        "R8",
        Required,
    ),
    c(
        "HV-2.2",
        2,
        "503 before processing: outcome unavailable",
        "R8",
        Required,
    ),
    c("HV-2.3", 2, "4xx reply: outcome rejected", "R8", Required),
    c(
        "HV-2.4",
        2,
        "connection reset after the request: outcome unknown, then resolved by a read",
        "R8, R10",
        Required,
    ),
    c(
        "HV-2.5",
        2,
        "blackhole: outcome unknown at the call timeout",
        "R19",
        Required,
    ),
    c(
        "HV-2.6",
        2,
        "expired session: outcome auth, then a new login succeeds",
        "R8",
        Required,
    ),
    c(
        "HV-2.7",
        2,
        "apply then error: an error is reported and a read shows the change",
        "R8, R10",
        SimOnly,
    ),
    c(
        "HV-2.8",
        2,
        "accept without apply: ok is reported and a read shows no change (no cached read)",
        "R8",
        SimOnly,
    ),
    c(
        "HV-2.9",
        2,
        "stale read: the device's answer is passed through, the next read is current",
        "R8",
        SimOnly,
    ),
    c(
        "HV-2.10",
        2,
        "busy: outcome busy, not applied",
        "R8",
        SimOnly,
    ),
    c(
        "HV-3.1",
        3,
        "the family's library scenarios pass in wire mode with this adapter",
        "R6-R19, INV-1-INV-12",
        Required,
    ),
    c(
        "HV-3.2",
        3,
        "time to contain p50/p99 measured over the scenarios",
        "R19",
        Required,
    ),
    c(
        "HV-3.3",
        3,
        "an outbreak of N NICs is contained within the makespan bound",
        "R15",
        Required,
    ),
];

const BMC: &[CheckDef] = &[
    c("BMC-1.1", 1, "log in and reset the system", "R13", Required),
    c(
        "BMC-1.2",
        1,
        "a second reset in a row succeeds (the session is reused or renewed)",
        "R13",
        Required,
    ),
    c(
        "BMC-2.1",
        2,
        "connection refused: outcome unavailable",
        "R8",
        Required,
    ),
    c(
        "BMC-2.2",
        2,
        "503 before processing: outcome unavailable",
        "R8",
        Required,
    ),
    c(
        "BMC-2.3",
        2,
        "4xx reply to the reset: outcome rejected",
        "R8",
        Required,
    ),
    c(
        "BMC-2.4",
        2,
        "connection reset after the reset request: outcome unknown",
        "R8, R13",
        Required,
    ),
    c(
        "BMC-2.5",
        2,
        "blackhole: outcome unknown at the call timeout",
        "R19",
        Required,
    ),
    c(
        "BMC-2.6",
        2,
        "expired session: outcome auth (or a transparent new login), then a reset succeeds",
        "R8",
        Required,
    ),
    c(
        "BMC-2.7",
        2,
        "busy: outcome busy, not applied",
        "R8",
        SimOnly,
    ),
    c(
        "BMC-3.1",
        3,
        "the family's library scenarios pass in wire mode with this adapter",
        "R13, INV-1-INV-12",
        Required,
    ),
    c(
        "BMC-3.2",
        3,
        "time to contain p50/p99 measured over the scenarios",
        "R19",
        Required,
    ),
];

const AV: &[CheckDef] = &[
    c(
        "AV-1.1",
        1,
        "every golden message of the product's format, delivered over its transport, is journaled with the event id and L-Server it names",
        "R1-R3, R18",
        Required,
    ),
    c(
        "AV-1.2",
        1,
        "a detection is counted by the engine (detections received) and by its transport's counter, durable before it is acknowledged",
        "R7",
        Required,
    ),
    c(
        "AV-1.3",
        1,
        "a message from a sender that is no AV server of the topology is ignored, counted and logged",
        "R18",
        WhenPushed,
    ),
    c(
        "AV-1.4",
        1,
        "the same event delivered twice is journaled once, then acknowledged as a duplicate of it",
        "R4",
        Required,
    ),
    c(
        "AV-1.5",
        1,
        "a malformed message is counted and logged, never journaled, and the next message is taken",
        "R18",
        Required,
    ),
    c(
        "AV-1.6",
        1,
        "an oversized message is counted and logged, never journaled, and the next message is taken",
        "R18",
        Required,
    ),
    c(
        "AV-1.7",
        1,
        "a detection for an address no L-Server has is journaled as not found and starts no operation",
        "R3",
        Required,
    ),
    c(
        "AV-2.1",
        2,
        "connection reset mid-message: nothing of the cut message is journaled, the next connection's is",
        "R7, R18",
        WhenStream,
    ),
    c(
        "AV-2.2",
        2,
        "a truncated or garbled frame is counted and logged, and the intake recovers",
        "R18",
        WhenPushed,
    ),
    c(
        "AV-2.3",
        2,
        "syslog TCP peer closes: every complete frame before the close is taken, the partial one is not",
        "R18",
        WhenSyslogTcp,
    ),
    c(
        "AV-2.4",
        2,
        "slow sender: a frame trickled in small pieces within the frame timeout is taken whole",
        "R18",
        WhenSyslogTcp,
    ),
    c(
        "AV-2.5",
        2,
        "ePO answers 5xx: the poll fails, is counted and logged, and the event arrives once at a later poll",
        "R7, R19",
        WhenPolled,
    ),
    c(
        "AV-2.6",
        2,
        "ePO answers 401: classified as an authentication failure, counted, and retried",
        "R18, R19",
        WhenPolled,
    ),
    c(
        "AV-2.7",
        2,
        "ePO does not answer: the poll is cut at the call timeout, counted, and retried",
        "R19",
        WhenPolled,
    ),
    c(
        "AV-3.1",
        3,
        "the library's detection scenarios, delivered over this transport, reach the engine on its counter and end as expected",
        "R1-R7, INV-1-INV-12",
        Required,
    ),
    c(
        "AV-3.2",
        3,
        "time to contain p50/p99 measured over the scenarios",
        "R19",
        Required,
    ),
    c(
        "AV-3.3",
        3,
        "an outbreak of N detections over this transport is contained within the makespan bound",
        "R15, R18",
        Required,
    ),
];

/// Every check of `family`, in id order.
pub fn catalogue(family: Family) -> &'static [CheckDef] {
    match family {
        Family::Switch => SWITCH,
        Family::Hypervisor => HYPERVISOR,
        Family::Bmc => BMC,
        Family::Av => AV,
    }
}

/// The entry of `id` in `family`'s catalogue.
pub fn find(family: Family, id: &str) -> Option<&'static CheckDef> {
    catalogue(family).iter().find(|c| c.id == id)
}

/// Whether `check` is required for `product` (its claims, its protocol) on this kind of
/// target.
pub fn required(check: &CheckDef, product: &Product, sim_target: bool) -> bool {
    let protocol = product.protocol.as_str();
    match check.requirement {
        Requirement::Required => true,
        Requirement::WhenBatch => product.capabilities.batch,
        Requirement::WhenPersist => product.capabilities.persist,
        Requirement::SimOnly => sim_target,
        Requirement::WhenPushed => matches!(protocol, "syslog_udp" | "syslog_tcp" | "api"),
        Requirement::WhenStream => matches!(protocol, "syslog_tcp" | "api"),
        Requirement::WhenSyslogTcp => protocol == "syslog_tcp",
        Requirement::WhenPolled => protocol == "epo_api",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_well_formed_and_in_tier_order() {
        for family in [Family::Switch, Family::Hypervisor, Family::Bmc, Family::Av] {
            let list = catalogue(family);
            let mut last = (0u8, 0u32);
            for check in list {
                let rest = check
                    .id
                    .strip_prefix(family.prefix())
                    .and_then(|r| r.strip_prefix('-'))
                    .unwrap_or_else(|| panic!("{} lacks prefix", check.id));
                let (tier, n) = rest.split_once('.').expect("tier.n");
                let tier: u8 = tier.parse().unwrap();
                let n: u32 = n.parse().unwrap();
                assert_eq!(tier, check.tier, "{}", check.id);
                assert!((tier, n) > last, "{} out of order", check.id);
                last = (tier, n);
            }
        }
    }
}
