//! The AV server model: how a scenario's detections reach the engine once the AV servers' own
//! faults (`drop`, `duplicate`, `reorder`) and delivery variation (`jitter` on the AV server)
//! have acted on them. A pure function of the detections, the fault plan and the seed, so the
//! runner can compute every delivery before the run starts.
//!
//! Seeded draws (see [`super::rng`]): each delivered copy of a notification from an AV server
//! with `jitter` arrives a draw in `[0, jitter]` (stream `delivery/<server>`) after its time;
//! notifications that then arrive at the same instant are put in a seeded order (stream
//! `order/<instant in ns>`, one per instant, so one burst's order does not shift another's).

use std::time::Duration;

use super::faults::FaultEffect;
use super::plan::{FaultPlan, Subject};
use super::recorder::lock;
use super::rng::SeededRng;
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
    /// function). Then `jitter` delays each copy by a seeded draw, and the result is sorted by
    /// time, with the notifications of one instant in a seeded order.
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
        self.deliveries_counted(detections, heals).0
    }

    /// Like [`SimWorld::deliveries_with_heals`], with every delivery fault's hit: `(time the
    /// notification was sent, fault index, its L-Server)`. The runner counts each at its time
    /// ([`SimWorld::count_fault_hit`]), when it is known whether an operation runs.
    pub fn deliveries_counted(
        &self,
        detections: Vec<(Duration, Detection)>,
        heals: &[(Duration, String)],
    ) -> (Vec<(Duration, Detection)>, Vec<DeliveryHit>) {
        let mut plan = lock(&self.inner.state).plan.clone();
        for (at, target) in heals {
            plan.heal(target, *at);
        }
        let mut rng = SeededRng::new(self.seed());
        plan_deliveries(&mut plan, &mut rng, &self.inner.site, detections)
    }
}

/// One notification a delivery fault acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryHit {
    /// When the AV server sent it.
    pub at: Duration,
    /// The fault's index among the scenario's `[[faults]]`.
    pub fault: usize,
    /// The L-Server it names, when it resolves to one.
    pub lserver: Option<String>,
}

/// Applies the delivery faults of `plan` and the AV servers' `jitter` to `detections`.
pub(crate) fn plan_deliveries(
    plan: &mut FaultPlan,
    rng: &mut SeededRng,
    site: &Site,
    mut detections: Vec<(Duration, Detection)>,
) -> (Vec<(Duration, Detection)>, Vec<DeliveryHit>) {
    let mut hits = Vec::new();
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
        let Some((fault, chosen)) = plan.decide_delivery(&subject, *at) else {
            out.push((*at, detection.clone()));
            continue;
        };
        hits.push(DeliveryHit {
            at: *at,
            fault,
            lserver: owner.map(|ls| ls.path.clone()),
        });
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
    for (at, detection) in &mut out {
        let jitter = site
            .topology
            .av_servers
            .iter()
            .find(|a| a.name == detection.source)
            .and_then(|a| a.jitter)
            .unwrap_or(Duration::ZERO);
        // Drawn only for an AV server with jitter, so a site without it never touches the seed.
        if !jitter.is_zero() {
            let purpose = format!("delivery/{}", detection.source);
            *at = at.saturating_add(rng.duration_up_to(&purpose, jitter));
        }
    }
    out.sort_by_key(|(at, _)| *at);
    // Notifications of one instant travel together; their order is the seed's.
    let mut start = 0;
    while start < out.len() {
        let instant = out[start].0;
        let end = out[start..]
            .iter()
            .position(|(t, _)| *t != instant)
            .map_or(out.len(), |n| start + n);
        if end - start > 1 {
            let purpose = format!("order/{}", instant.as_nanos());
            rng.shuffle(&purpose, &mut out[start..end]);
        }
        start = end;
    }
    (out, hits)
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
