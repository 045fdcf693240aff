//! INV-12 re-containment (R20) and the time-to-re-contain measure.
//!
//! A *drift* is a `TruthChanged` that something other than the engine made (`by` is set: a
//! switch reboot that lost unsaved config, an `external_change`) taking a NIC off the quarantine
//! network it was on, while its L-Server was `quarantined` or while an operation of it ran (one
//! that then ends quarantined leaves a quarantined L-Server with a NIC off quarantine). The NIC must be back on that network
//! within the bound below, or a `quarantine-failed` alert must name the L-Server by then.
//!
//! **The bound** (what the engine can be held to; semantics.md says "`watch_interval` plus one
//! verified write"), for a NIC on device d with n_d NICs and watch rate r:
//! - detection: the next watch round starts within `watch_interval` (or at once after an
//!   overrunning round), the NIC's read starts at most n_d / r seconds into it (pacing), and the
//!   read takes at most `call_timeout`: `max(watch_interval, n_d / r) + n_d / r + call_timeout`
//!   (a run with a drift lasts [`drift_settle_bound`], the whole bound on the largest device);
//! - the restore operation: its deadline plus one last read, R19's `operation_deadline +
//!   call_timeout`;
//! - plus 10% slack for the clock, as INV-10 allows.
//!
//! It assumes the device answers the watch's read and serves it without a queue: watch reads
//! wait behind every other call by design. A NIC whose reads all fail in a round gets a
//! `quarantine-failed` alert instead (R20), which INV-12 accepts within the same bound.
//!
//! The window opens at the drift, or at the engine's restart when it was down at the drift or
//! crashed before the NIC was back (a restart starts the watch afresh); a crash with no restart
//! exempts the drift. When an operation of the L-Server runs at the drift, the window opens when
//! it ends, if it leaves the L-Server quarantined (else the drift is exempt: INV-1/3/4 judge that
//! outcome). An operation other than a restore that starts later before the NIC is back exempts
//! the drift too: the engine defers to it (a release must not be undone).

use std::collections::BTreeMap;

use super::hash::{HashMap, HashSet};
use std::time::Duration;

use super::facts::{show, Facts, Problems};
use super::InvariantVerdict;
use crate::model::history::{EventKind, NicRef};
use crate::model::{NicLocation, Site};

/// NICs per device, for the pacing term.
fn nics_per_device(site: &Site) -> HashMap<&str, u64> {
    let mut count: HashMap<&str, u64> = HashMap::default();
    for ls in &site.lservers {
        for nic in &ls.nics {
            *count.entry(device_of(&nic.location)).or_default() += 1;
        }
    }
    count
}

fn device_of(location: &NicLocation) -> &str {
    match location {
        NicLocation::Virtual { hypervisor, .. } => hypervisor,
        NicLocation::Physical { switch, .. } => switch,
    }
}

/// The watch's detection bound for a device with `nics` NICs (see the module docs).
fn detection_bound_for(site: &Site, nics: u64) -> Duration {
    let e = &site.topology.engine;
    let rate = u64::from(e.watch_calls_per_second.max(1));
    let pacing = Duration::from_millis(nics.saturating_mul(1000).div_ceil(rate));
    e.watch_interval.max(pacing) + pacing + e.call_timeout
}

/// How long a run with a drift must last after it before it may end: INV-12's whole bound on
/// the site's busiest device. The watch may need all of it: a read that fails is retried within
/// the round (`retry.attempts` call timeouts) before the watch alerts, and a drift it finds is
/// read twice before the restore runs to its deadline.
pub fn drift_settle_bound(site: &Site) -> Duration {
    let most = nics_per_device(site).values().copied().max().unwrap_or(0);
    Duration::from_millis(recontain_bound_ms(site, most))
}

/// INV-12's bound for a NIC on a device with `nics` NICs, slack included, in ms.
fn recontain_bound_ms(site: &Site, nics: u64) -> u64 {
    let e = &site.topology.engine;
    let bound = detection_bound_for(site, nics) + e.operation_deadline + e.call_timeout;
    (bound.as_millis() as u64).saturating_mul(11).div_ceil(10)
}

/// One drift and what became of it.
struct Drift<'a> {
    nic: &'a NicRef,
    index: usize,
    /// Whether the L-Server was `quarantined` (by its last outcome) at the drift.
    quarantined: bool,
    at_ms: u64,
    /// The quarantine network it left.
    from: &'a str,
    to: Option<&'a str>,
    by: &'a str,
}

/// Every move off a quarantine network that the engine did not make, with whether its
/// L-Server was quarantined then.
fn drifts<'a>(f: &Facts<'a>) -> Vec<Drift<'a>> {
    let mut quarantined: HashSet<&str> = HashSet::default();
    let mut out = Vec::new();
    for (index, e) in f.events() {
        match &e.kind {
            EventKind::OperationFinished {
                id,
                lserver,
                outcome,
            } => match outcome.as_str() {
                "quarantined" => {
                    quarantined.insert(lserver);
                }
                "rebooted" | "reboot_failed" => {
                    if f.op_kind(*id) == Some("quarantine_reboot") {
                        quarantined.insert(lserver);
                    }
                }
                "cancelled" => {}
                _ => {
                    quarantined.remove(lserver.as_str());
                }
            },
            EventKind::TruthChanged {
                nic,
                from,
                to,
                by: Some(by),
                ..
            } if f.is_quarantine(from.as_deref()) && to != from => {
                out.push(Drift {
                    nic,
                    index,
                    quarantined: quarantined.contains(nic.lserver.as_str()),
                    at_ms: e.at_ms,
                    from: from.as_deref().unwrap_or_default(),
                    to: to.as_deref(),
                    by,
                });
            }
            _ => {}
        }
    }
    out
}

/// What became of one drift.
enum Fate {
    /// Back on its quarantine network at this time.
    Back(u64),
    /// A `quarantine-failed` alert named the L-Server at this time.
    Alerted(u64),
    /// Exempt (see the module docs).
    Exempt,
    /// Neither by the end of the run.
    Never,
}

/// Follows the history after drift `d` (see the module docs).
fn fate(f: &Facts<'_>, d: &Drift<'_>, running_at_drift: bool) -> (Fate, u64) {
    let lserver = d.nic.lserver.as_str();
    let mut window_ms = d.at_ms;
    let mut down = false;
    // An operation under way at the drift: the window opens when the L-Server's operations
    // end, if they leave it quarantined.
    let mut busy = running_at_drift;
    for (_, e) in f.events().skip(d.index + 1) {
        match &e.kind {
            EventKind::OperationFinished {
                lserver: l,
                outcome,
                ..
            } if busy && l == lserver => {
                if !matches!(
                    outcome.as_str(),
                    "quarantined" | "rebooted" | "reboot_failed" | "cancelled"
                ) {
                    return (Fate::Exempt, window_ms);
                }
                busy = false;
                window_ms = e.at_ms;
            }
            EventKind::TruthChanged { nic, to, .. }
                if nic == d.nic && to.as_deref() == Some(d.from) =>
            {
                return (Fate::Back(e.at_ms), window_ms);
            }
            EventKind::Alert {
                code,
                lserver: Some(l),
                ..
            } if code == "quarantine-failed" && l == lserver => {
                return (Fate::Alerted(e.at_ms), window_ms);
            }
            EventKind::OperationStarted {
                lserver: l, kind, ..
            } if l == lserver && kind != "restore" && !busy => return (Fate::Exempt, window_ms),
            EventKind::Crash => down = true,
            EventKind::Restart => {
                down = false;
                window_ms = e.at_ms;
            }
            _ => {}
        }
    }
    if down {
        return (Fate::Exempt, window_ms);
    }
    (Fate::Never, window_ms)
}

/// Operations running at each history position, per L-Server (only at drift positions).
fn running_at<'a>(f: &Facts<'a>, positions: &HashSet<usize>) -> HashSet<(usize, &'a str)> {
    let mut running: BTreeMap<&str, HashSet<i64>> = BTreeMap::new();
    let mut out = HashSet::default();
    for (index, e) in f.events() {
        match &e.kind {
            EventKind::OperationStarted { id, lserver, .. } => {
                running.entry(lserver).or_default().insert(*id);
            }
            EventKind::OperationFinished { id, lserver, .. } => {
                if let Some(ids) = running.get_mut(lserver.as_str()) {
                    ids.remove(id);
                }
            }
            // A crash ends every operation in flight; recovery starts them again (R16).
            EventKind::Crash => running.clear(),
            EventKind::TruthChanged { nic, .. }
                if positions.contains(&index)
                    && running
                        .get(nic.lserver.as_str())
                        .is_some_and(|ids| !ids.is_empty()) =>
            {
                out.insert((index, nic.lserver.as_str()));
            }
            _ => {}
        }
    }
    out
}

/// INV-12 and the time-to-re-contain samples (drift to the NIC back on quarantine, ms).
pub(crate) fn recontainment(f: &Facts<'_>) -> (InvariantVerdict, Vec<u64>) {
    let drifts = drifts(f);
    let positions: HashSet<usize> = drifts.iter().map(|d| d.index).collect();
    let running = running_at(f, &positions);
    let per_device = nics_per_device(f.site);
    let mut problems = Problems::new();
    let mut samples = Vec::new();
    let mut checked = 0;
    for d in &drifts {
        let busy = running.contains(&(d.index, d.nic.lserver.as_str()));
        // Neither quarantined nor in an operation that may leave it quarantined: not R20's.
        if !d.quarantined && !busy {
            continue;
        }
        let (fate, window_ms) = fate(f, d, busy);
        if matches!(fate, Fate::Exempt) {
            continue;
        }
        checked += 1;
        let nics = f
            .site
            .lserver(&d.nic.lserver)
            .and_then(|ls| ls.nics.get(d.nic.nic))
            .map_or(0, |n| {
                per_device.get(device_of(&n.location)).copied().unwrap_or(0)
            });
        let deadline = window_ms.saturating_add(recontain_bound_ms(f.site, nics));
        let what = format!(
            "{} nic {} moved from {} to {} at {} ms by {}",
            d.nic.lserver,
            d.nic.nic,
            d.from,
            show(d.to),
            d.at_ms,
            d.by
        );
        match fate {
            Fate::Back(at) => {
                samples.push(at.saturating_sub(d.at_ms));
                if at > deadline {
                    problems.push(format!(
                        "{what}: back on {} only at {at} ms, after the bound ({deadline} ms)",
                        d.from
                    ));
                }
            }
            Fate::Alerted(at) if at > deadline => problems.push(format!(
                "{what}: quarantine-failed only at {at} ms, after the bound ({deadline} ms)"
            )),
            Fate::Alerted(_) | Fate::Exempt => {}
            Fate::Never => problems.push(format!(
                "{what}: never back on {} and no quarantine-failed alert names it (bound {deadline} ms)",
                d.from
            )),
        }
    }
    (
        problems.verdict("INV-12", checked, "drifts of quarantined NICs"),
        samples,
    )
}
