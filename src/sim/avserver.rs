//! The AV server model: how a scenario's detections reach the engine once the AV servers' own
//! faults (`drop`, `duplicate`, `reorder`) have acted on them. A pure function of the detections
//! and the fault plan, so the runner can compute every delivery before the run starts.

use std::time::Duration;

use super::faults::FaultEffect;
use super::plan::{FaultPlan, Subject};
use super::recorder::lock;
use super::world::SimWorld;
use crate::model::{Detection, LServer, Site};

/// Gap between the two copies of a `duplicate` without `delay`, and after the detection a
/// `reorder` overtakes: the smallest step of the history clock.
pub const DELIVERY_STEP: Duration = Duration::from_millis(1);

/// How long a `reorder` without `delay` holds a detection when no later one of its source exists.
pub const DEFAULT_REORDER_HOLD: Duration = Duration::from_secs(1);

impl SimWorld {
    /// When each detection reaches the engine, after the AV servers' faults: `drop` removes it,
    /// `duplicate` delivers it twice (same event id; the copy `delay` later, default 1 ms),
    /// `reorder` delivers it `delay` later when set, else 1 ms after the next later detection of
    /// the same source, else 1 s later. A fault applies when its `device` is the detection's
    /// source, its `call` is `send` or absent, its window holds the detection's time and its
    /// `match.lserver` / `match.vm` hold for the detection's L-Server (resolved by IP, then MAC,
    /// then host name; `match.nic` / `match.port` never hold for a notification).
    /// Faults healed so far are honoured; fault `times` are not used up (this is a pure
    /// function). The result is sorted by time, stable.
    pub fn deliveries(&self, detections: Vec<(Duration, Detection)>) -> Vec<(Duration, Detection)> {
        self.deliveries_with_heals(detections, &[])
    }

    /// Like [`SimWorld::deliveries`], with heals (`(time, target)`, as scenario events) that have
    /// not happened yet taken into account, for a runner that computes deliveries up front.
    pub fn deliveries_with_heals(
        &self,
        detections: Vec<(Duration, Detection)>,
        heals: &[(Duration, String)],
    ) -> Vec<(Duration, Detection)> {
        let mut plan = lock(&self.inner.state).plan.clone();
        for (at, target) in heals {
            plan.heal(target, *at);
        }
        plan_deliveries(&mut plan, &self.inner.site, detections)
    }
}

/// Applies the delivery faults of `plan` to `detections`.
pub(crate) fn plan_deliveries(
    plan: &mut FaultPlan,
    site: &Site,
    mut detections: Vec<(Duration, Detection)>,
) -> Vec<(Duration, Detection)> {
    detections.sort_by_key(|(at, _)| *at);
    let mut out: Vec<(Duration, Detection)> = Vec::with_capacity(detections.len());
    for (i, (at, detection)) in detections.iter().enumerate() {
        let owner = resolve(site, detection);
        let vm = owner
            .and_then(|ls| ls.vm.as_ref())
            .map(|(_, vm)| vm.as_str());
        let subject = Subject {
            device: &detection.source,
            call: None,
            vm,
            // A notification concerns an L-Server, not one of its NICs: a `match.nic` or
            // `match.port` never matches it.
            nic: None,
            port: None,
            lserver: owner.map(|ls| ls.path.as_str()),
        };
        let Some(chosen) = plan.decide_delivery(&subject, *at) else {
            out.push((*at, detection.clone()));
            continue;
        };
        match chosen.effect {
            FaultEffect::Drop => {}
            FaultEffect::Duplicate => {
                let gap = chosen.delay.unwrap_or(DELIVERY_STEP);
                out.push((*at, detection.clone()));
                out.push((at.saturating_add(gap), detection.clone()));
            }
            FaultEffect::Reorder => {
                let later = detections
                    .iter()
                    .skip(i + 1)
                    .find(|(t, d)| *t > *at && d.source == detection.source)
                    .map(|(t, _)| t.saturating_add(DELIVERY_STEP));
                let when = match (chosen.delay, later) {
                    (Some(delay), _) => at.saturating_add(delay),
                    (None, Some(after_next)) => after_next,
                    (None, None) => at.saturating_add(DEFAULT_REORDER_HOLD),
                };
                out.push((when, detection.clone()));
            }
            // `decide_delivery` only chooses delivery effects.
            _ => out.push((*at, detection.clone())),
        }
    }
    // Stable: detections delivered at the same time keep their input order.
    out.sort_by_key(|(at, _)| *at);
    out
}

/// The L-Server a detection names, the way the engine resolves it (R3): IP, MAC, host name.
fn resolve<'a>(site: &'a Site, detection: &Detection) -> Option<&'a LServer> {
    detection
        .ip
        .and_then(|ip| site.lserver_by_ip(ip))
        .or_else(|| {
            detection
                .mac
                .as_deref()
                .and_then(|m| site.lserver_by_mac(m))
        })
        .or_else(|| {
            detection
                .hostname
                .as_deref()
                .and_then(|h| site.lserver_by_hostname(h))
        })
}
