//! The history indexed once for every checker: operation kinds, quarantine requests, device
//! writes, the replay of device truth, and lookups of network roles and final state.
//!
//! Ordering is by position in the history, not by `at_ms`: several events share a millisecond
//! on the simulator's clock, and the recorder writes them in the order they happened.

use std::collections::BTreeMap;

use super::hash::{HashMap, HashSet};
use std::fmt::Write as _;

use super::{InvariantVerdict, Status};
use crate::model::history::{EventKind, FinalLServer, FinalNic, HistoryEvent, NicRef, RunRecord};
use crate::model::{Action, NetworkRole, Site};

/// Device calls that change something at a device (INV-5, INV-6, `device_writes`).
pub(crate) const WRITE_CALLS: [&str; 4] = ["set_nic", "set_port", "power_reset", "reset"];

/// Calls that move a NIC to another network (INV-6).
pub(crate) const NIC_WRITE_CALLS: [&str; 2] = ["set_nic", "set_port"];

/// Whether an operation kind moves NICs to quarantine.
pub(crate) fn kind_quarantines(kind: &str) -> bool {
    matches!(
        kind,
        "quarantine" | "quarantine_reboot" | "manual_quarantine"
    )
}

/// Whether an outcome is a failure that must carry one ERROR alert (R17).
pub(crate) fn is_failure(outcome: &str) -> bool {
    matches!(
        outcome,
        "quarantine_failed" | "reboot_failed" | "release_failed"
    )
}

/// Whether an alert severity is ERROR (case-insensitive: the severity is free text in histories).
pub(crate) fn is_error(severity: &str) -> bool {
    severity.eq_ignore_ascii_case("error")
}

/// Something that asked for an L-Server to be quarantined (INV-1, time-to-contain).
#[derive(Debug, Clone)]
pub(crate) struct Request<'a> {
    /// Position in the history.
    pub index: usize,
    /// When the engine received it.
    pub at_ms: u64,
    /// The L-Server.
    pub lserver: &'a str,
    /// For details: `detection osce/e-1`, `command quarantine`, ...
    pub what: String,
}

/// An operation's end: the last one for an L-Server in [`Facts::last_outcomes`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct LastOutcome<'a> {
    /// Position of its OperationFinished.
    pub index: usize,
    /// Operation id.
    pub id: i64,
    /// Outcome.
    pub outcome: &'a str,
}

/// The history and final state, indexed.
pub(crate) struct Facts<'a> {
    /// The site the run used.
    pub site: &'a Site,
    /// The run.
    pub run: &'a RunRecord,
    /// Operation kind by id, from its first OperationStarted.
    op_kind: HashMap<i64, &'a str>,
    /// Final NICs by L-Server, in NIC order (large generated sites make linear scans costly).
    nics_by_lserver: HashMap<&'a str, Vec<&'a FinalNic>>,
    /// Final L-Servers by path.
    lserver_by_path: HashMap<&'a str, &'a FinalLServer>,
}

impl<'a> Facts<'a> {
    /// Indexes a run.
    pub fn new(site: &'a Site, run: &'a RunRecord) -> Self {
        let mut op_kind = HashMap::default();
        for e in &run.history {
            if let EventKind::OperationStarted { id, kind, .. } = &e.kind {
                op_kind.entry(*id).or_insert(kind.as_str());
            }
        }
        let mut nics_by_lserver: HashMap<&str, Vec<&FinalNic>> = HashMap::default();
        for n in &run.nics {
            nics_by_lserver
                .entry(n.nic.lserver.as_str())
                .or_default()
                .push(n);
        }
        for nics in nics_by_lserver.values_mut() {
            nics.sort_by_key(|n| n.nic.nic);
        }
        let lserver_by_path = run.lservers.iter().map(|l| (l.path.as_str(), l)).collect();
        Facts {
            site,
            run,
            op_kind,
            nics_by_lserver,
            lserver_by_path,
        }
    }

    /// Every event with its position.
    pub fn events(&self) -> impl Iterator<Item = (usize, &'a HistoryEvent)> + 'a {
        self.run.history.iter().enumerate()
    }

    /// The kind of operation `id`, when it ever started.
    pub fn op_kind(&self, id: i64) -> Option<&'a str> {
        self.op_kind.get(&id).copied()
    }

    /// The role of a network by name; `None` for no network or one the topology lacks.
    pub fn role(&self, network: Option<&str>) -> Option<NetworkRole> {
        network.and_then(|n| self.site.network(n)).map(|n| n.role)
    }

    /// Whether `network` is a quarantine network of the topology.
    pub fn is_quarantine(&self, network: Option<&str>) -> bool {
        self.role(network) == Some(NetworkRole::Quarantine)
    }

    /// Whether `network` is an operation network of the topology.
    pub fn is_operation(&self, network: Option<&str>) -> bool {
        self.role(network) == Some(NetworkRole::Operation)
    }

    /// The final NICs of an L-Server, in NIC order.
    pub fn final_nics(&self, lserver: &str) -> Vec<&'a FinalNic> {
        self.nics_by_lserver
            .get(lserver)
            .cloned()
            .unwrap_or_default()
    }

    /// The final state of an L-Server.
    pub fn final_lserver(&self, path: &str) -> Option<&'a FinalLServer> {
        self.lserver_by_path.get(path).copied()
    }

    /// How many NICs the topology gives an L-Server (0 for an unknown path).
    pub fn nic_count(&self, lserver: &str) -> usize {
        self.site.lserver(lserver).map_or(0, |l| l.nics.len())
    }

    /// Whether every NIC of the L-Server is on a quarantine network at the device at the end.
    /// A NIC missing from the final state counts as not contained: the auditor cannot see it.
    pub fn finally_contained(&self, lserver: &str) -> bool {
        let nics = self.final_nics(lserver);
        !nics.is_empty()
            && nics.len() >= self.nic_count(lserver)
            && nics
                .iter()
                .all(|n| self.is_quarantine(n.device_network.as_deref()))
    }

    /// Every operation's end, in history order, with its L-Server.
    pub fn finishes(&self) -> impl Iterator<Item = (&'a str, LastOutcome<'a>)> + 'a {
        self.events().filter_map(|(index, e)| match &e.kind {
            EventKind::OperationFinished {
                id,
                lserver,
                outcome,
            } => Some((
                lserver.as_str(),
                LastOutcome {
                    index,
                    id: *id,
                    outcome: outcome.as_str(),
                },
            )),
            _ => None,
        })
    }

    /// The last operation that ended for each L-Server. `cancelled` operations are skipped:
    /// they changed nothing, and the engine keeps the previous outcome too.
    pub fn last_outcomes(&self) -> BTreeMap<&'a str, LastOutcome<'a>> {
        self.finishes()
            .filter(|(_, end)| end.outcome != "cancelled")
            .collect()
    }

    /// Whether the site's policy answers a detection for `path` with a quarantine (R5), by the
    /// topology's rule (the model's, which the engine applies too).
    pub fn policy_quarantines(&self, path: &str) -> bool {
        matches!(
            self.site.topology.policy.action_for(path),
            Action::Quarantine | Action::QuarantineReboot
        )
    }

    /// Every request to quarantine an L-Server, in history order:
    /// - a detection acknowledged `accepted` whose operation quarantines (by its OperationStarted
    ///   kind; by the policy when it never started);
    /// - a detection acknowledged `duplicate` for a new event while the policy quarantines (it
    ///   relies on the earlier operation). A repeat of an already acknowledged event is not a new
    ///   request: R4 says it changes nothing, even after a release;
    /// - an accepted `quarantine` command, or a `decide` whose operation quarantines.
    pub fn quarantine_requests(&self) -> Vec<Request<'a>> {
        let mut requests = Vec::new();
        let mut acked: HashSet<(&str, &str)> = HashSet::default();
        for (index, e) in self.events() {
            // The L-Server a request asks to quarantine, and what asked.
            let asked = match &e.kind {
                EventKind::DetectionAcked {
                    source,
                    event_id,
                    lserver: Some(lserver),
                    disposition,
                    operation,
                } => {
                    let first_time = acked.insert((source.as_str(), event_id.as_str()));
                    let asks = match disposition.as_str() {
                        "accepted" => operation
                            .and_then(|id| self.op_kind(id))
                            .map_or_else(|| self.policy_quarantines(lserver), kind_quarantines),
                        "duplicate" => first_time && self.policy_quarantines(lserver),
                        _ => false,
                    };
                    asks.then(|| (lserver, format!("detection {source}/{event_id}")))
                }
                EventKind::DetectionAcked {
                    source, event_id, ..
                } => {
                    acked.insert((source.as_str(), event_id.as_str()));
                    None
                }
                EventKind::CommandSubmitted {
                    action,
                    lserver,
                    operation: Some(id),
                    ..
                } => {
                    let asks = match action.as_str() {
                        "quarantine" => true,
                        // A decision whose operation never started has no known choice; a
                        // never-started operation is INV-10's finding, not a containment gap.
                        "decide" => self.op_kind(*id).is_some_and(kind_quarantines),
                        _ => false,
                    };
                    asks.then(|| (lserver, format!("command {action}")))
                }
                _ => None,
            };
            if let Some((lserver, what)) = asked {
                requests.push(Request {
                    index,
                    at_ms: e.at_ms,
                    lserver,
                    what,
                });
            }
        }
        requests
    }

    /// Positions of accepted release commands per L-Server.
    pub fn release_commands(&self) -> BTreeMap<&'a str, Vec<usize>> {
        let mut releases: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (index, e) in self.events() {
            if let EventKind::CommandSubmitted {
                action,
                lserver,
                operation: Some(_),
                ..
            } = &e.kind
            {
                if action == "release" {
                    releases.entry(lserver.as_str()).or_default().push(index);
                }
            }
        }
        releases
    }

    /// The L-Server of every write Invoke, in history order: the invoke's own, else the NIC's
    /// owner; `None` when it names neither.
    pub fn write_targets(&self) -> Vec<Option<&'a str>> {
        self.events()
            .filter_map(|(_, e)| match &e.kind {
                EventKind::Invoke {
                    op, nic, lserver, ..
                } if WRITE_CALLS.contains(&op.as_str()) => Some(
                    lserver
                        .as_deref()
                        .or(nic.as_ref().map(|n| n.lserver.as_str())),
                ),
                _ => None,
            })
            .collect()
    }

    /// Write Invokes per L-Server (writes that name none are counted under `""`).
    pub fn writes_per_lserver(&self) -> BTreeMap<&'a str, u64> {
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for target in self.write_targets() {
            *counts.entry(target.unwrap_or("")).or_default() += 1;
        }
        counts
    }
}

/// Device truth replayed from TruthChanged events. A NIC the history never moved is where the
/// topology puts it: on its operation network.
pub(crate) struct Truth<'a> {
    site: &'a Site,
    moved: HashMap<NicRef, Option<String>>,
}

impl<'a> Truth<'a> {
    /// Truth at the start of the run.
    pub fn new(site: &'a Site) -> Self {
        Truth {
            site,
            moved: HashMap::default(),
        }
    }

    /// Where the device has `nic` now (`None`: not a topology network, or an unknown NIC).
    pub fn get(&self, nic: &NicRef) -> Option<&str> {
        match self.moved.get(nic) {
            Some(network) => network.as_deref(),
            None => self
                .site
                .lserver(&nic.lserver)
                .and_then(|l| l.nics.get(nic.nic))
                .map(|n| n.network.as_str()),
        }
    }

    /// Applies a TruthChanged; other events are ignored.
    pub fn apply(&mut self, event: &EventKind) {
        if let EventKind::TruthChanged { nic, to, .. } = event {
            self.moved.insert(nic.clone(), to.clone());
        }
    }
}

/// Most problems one verdict spells out; the rest are counted.
const MAX_LISTED: usize = 5;

/// Collects the violations of one invariant and turns them into a verdict.
pub(crate) struct Problems {
    listed: Vec<String>,
    total: usize,
}

impl Problems {
    /// No problems yet.
    pub fn new() -> Self {
        Problems {
            listed: Vec::new(),
            total: 0,
        }
    }

    /// Records one violation.
    pub fn push(&mut self, problem: String) {
        self.total += 1;
        if self.listed.len() < MAX_LISTED {
            self.listed.push(problem);
        }
    }

    /// Failed with the listed problems; else passed with `checked`, or skipped with it when
    /// nothing was there to check.
    pub fn verdict(self, id: &str, checked: usize, what: &str) -> InvariantVerdict {
        if self.total > 0 {
            let mut detail = self.listed.join("; ");
            if self.total > self.listed.len() {
                let _ = write!(detail, "; and {} more", self.total - self.listed.len());
            }
            InvariantVerdict::new(id, Status::Failed, detail)
        } else if checked == 0 {
            InvariantVerdict::new(id, Status::Skipped, format!("no {what} in this run"))
        } else {
            InvariantVerdict::new(id, Status::Passed, format!("{checked} {what} checked"))
        }
    }
}

/// A network for details: its name, or `none` when not a topology network.
pub(crate) fn show(network: Option<&str>) -> &str {
    network.unwrap_or("none")
}
