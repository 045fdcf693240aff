//! The check catalogue: every check of every family, with a stable id
//! `<HV|SW|BMC|AV>-<tier>.<n>`, a title, the rule it protects, and when it is required.
//!
//! Ids are never reused or renumbered: a bundle certified today must still verify against a
//! later catalogue. A new check gets the next number of its tier.

use serde::Serialize;

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
}

impl Requirement {
    /// The spelling in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Requirement::Required => "required",
            Requirement::WhenBatch => "when batch is claimed",
            Requirement::WhenPersist => "when persist is claimed",
            Requirement::SimOnly => "simulated targets only",
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

use Requirement::{Required, SimOnly, WhenBatch, WhenPersist};

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

const AV: &[CheckDef] = &[];

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

/// Whether `check` is required for a product with these claims on this kind of target.
pub fn required(check: &CheckDef, batch: bool, persist: bool, sim_target: bool) -> bool {
    match check.requirement {
        Requirement::Required => true,
        Requirement::WhenBatch => batch,
        Requirement::WhenPersist => persist,
        Requirement::SimOnly => sim_target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_well_formed_and_in_tier_order() {
        for family in [Family::Switch, Family::Hypervisor, Family::Bmc] {
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
