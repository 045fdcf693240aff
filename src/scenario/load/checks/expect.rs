//! Checks of `[expect]`: L-Server paths, outcome and status spellings, one existing network per
//! NIC, alert codes and invariant ids, so a typo cannot turn into an expectation that never holds.

use super::{known, Checker};
use crate::check::Expectations;
use crate::engine::AlertCode;
use crate::model::load::KeySeg;
use crate::model::LServer;

/// Outcomes `expect.lservers.<path>.outcome` may name (`docs/formats/scenario.md`, "Outcomes").
const OUTCOMES: [&str; 9] = [
    "quarantined",
    "quarantine_failed",
    "rebooted",
    "reboot_failed",
    "released",
    "release_failed",
    "ignored",
    "pending_decision",
    "untouched",
];

/// Number of invariants (`INV-1` … `INV-12`).
const INVARIANTS: u32 = 12;

impl Checker<'_, '_> {
    pub(super) fn expect(&mut self, e: &Expectations) {
        for (path, x) in &e.lservers {
            let key = |field: &str| at!("expect", "lservers", path, field);
            let Some(ls) = self.lserver(at!("expect", "lservers", path), path) else {
                continue;
            };
            if let Some(outcome) = &x.outcome {
                if !OUTCOMES.contains(&outcome.as_str()) {
                    self.bad(
                        key("outcome"),
                        format!(
                            "unknown outcome `{outcome}`; use one of {}",
                            OUTCOMES.join(", ")
                        ),
                    );
                }
            }
            for (field, list) in [
                ("device_networks", &x.device_networks),
                ("managed_networks", &x.managed_networks),
            ] {
                let Some(list) = list else { continue };
                self.networks_per_nic(key(field), ls, list);
            }
            if let Some(status) = &x.status {
                if status != "normal" && status != "unknown" {
                    self.bad(
                        key("status"),
                        format!("unknown status `{status}`; use normal or unknown"),
                    );
                }
            }
        }
        for (i, a) in e.alerts.iter().enumerate() {
            if AlertCode::parse(&a.code).is_none() {
                let codes: Vec<&str> = AlertCode::ALL.iter().map(|c| c.as_str()).collect();
                self.bad(
                    at!("expect", "alerts", i, "code"),
                    format!(
                        "unknown alert code `{}`; use one of {}",
                        a.code,
                        codes.join(", ")
                    ),
                );
            }
            if let Some(path) = &a.lserver {
                self.lserver(at!("expect", "alerts", i, "lserver"), path);
            }
        }
        let lservers = self.site.lservers.len() as u64;
        for (outcome, count) in &e.outcomes {
            let key = at!("expect", "outcomes", outcome.as_str());
            if !OUTCOMES.contains(&outcome.as_str()) {
                self.bad(
                    key,
                    format!(
                        "unknown outcome `{outcome}`; use one of {}",
                        OUTCOMES.join(", ")
                    ),
                );
            } else if *count > lservers {
                self.bad(
                    key,
                    format!(
                        "expects {count} L-Servers `{outcome}`, but the topology has only \
                         {lservers}; the count is exact, so this could never hold"
                    ),
                );
            }
        }
        if let Some(ratio) = e.makespan_ratio_max {
            if !(ratio.is_finite() && ratio >= 1.0) {
                self.bad(
                    at!("expect", "makespan_ratio_max"),
                    format!(
                        "{ratio} is not a ratio a makespan can meet: the lower bound is what no \
                         engine can beat, so write a number of at least 1, e.g. 1.05"
                    ),
                );
            }
        }
        for (i, v) in e.violations.iter().enumerate() {
            let valid = v
                .strip_prefix("INV-")
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| (1..=INVARIANTS).contains(&n) && v == &format!("INV-{n}"));
            if !valid {
                self.bad(
                    at!("expect", "violations", i),
                    format!("unknown invariant `{v}`; use INV-1 to INV-{INVARIANTS}"),
                );
            } else if e.violations[..i].contains(v) {
                self.bad(
                    at!("expect", "violations", i),
                    format!("`{v}` is listed twice"),
                );
            }
        }
    }

    /// A per-NIC network list: one existing network per NIC of `ls`.
    fn networks_per_nic(&mut self, key: Vec<KeySeg>, ls: &LServer, list: &[String]) {
        if list.len() != ls.nics.len() {
            let nics = ls.nics.len();
            let message = format!(
                "L-Server `{}` has {nics} NIC{}, but this lists {} network{}; give one network \
                 per NIC, in NIC order",
                ls.path,
                if nics == 1 { "" } else { "s" },
                list.len(),
                if list.len() == 1 { "" } else { "s" },
            );
            self.bad(key.clone(), message);
        }
        for (j, name) in list.iter().enumerate() {
            if self.site.network(name).is_none() {
                let networks = &self.site.topology.networks;
                let message = format!(
                    "unknown network `{name}` ({})",
                    known(networks.iter().map(|n| n.name.as_str()))
                );
                let mut path = key.clone();
                path.push(KeySeg::Index(j));
                self.bad(path, message);
            }
        }
    }
}
