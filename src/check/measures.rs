//! The measures of `spec/semantics.md` ("Measures"): time-to-contain, time-to-quarantined,
//! time-to-alert, device writes, makespan and the lower bound no engine can beat.

use std::collections::{BTreeMap, HashMap};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::facts::{is_error, is_failure, Facts, Request, Truth};
use crate::model::history::{EventKind, NicRef};
use crate::model::NicLocation;

/// Distribution of one measure, in whole milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest sample.
    pub max: u64,
}

impl Summary {
    /// Summarizes samples through an HDR histogram (3 significant digits). Percentiles are
    /// capped at the exact maximum, so a lone sample reads the same in every column.
    pub fn of(values: &[u64]) -> Summary {
        let Some(&max) = values.iter().max() else {
            return Summary::default();
        };
        let Ok(mut histogram) = Histogram::<u64>::new(3) else {
            return Summary::default();
        };
        for &v in values {
            // Auto-resizing histograms accept every u64; an error would only drop a sample.
            let _ = histogram.record(v);
        }
        let at = |q: f64| histogram.value_at_quantile(q).min(max);
        Summary {
            count: values.len() as u64,
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max,
        }
    }
}

/// The measures of one run, shaped as report.json's `measures`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measures {
    /// Receipt of the request to the last NIC on quarantine at the device, per L-Server.
    pub time_to_contain_ms: Summary,
    /// Receipt to the management record update (R9), per L-Server.
    pub time_to_quarantined_ms: Summary,
    /// Receipt to the ERROR alert, per failed operation.
    pub time_to_alert_ms: Summary,
    /// Device write calls in the run.
    pub device_writes: u64,
    /// First receipt to the last containment (0 when nothing was contained).
    pub makespan_ms: u64,
    /// What no engine can beat on the same devices (0 when nothing was contained).
    pub lower_bound_ms: u64,
}

/// When one L-Server was asked to be quarantined and when its devices had it contained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Containment {
    /// Receipt of the first request.
    pub received_ms: u64,
    /// Position of that request in the history.
    pub request_index: usize,
    /// When the last NIC reached quarantine; `None` if that never happened.
    pub contained_ms: Option<u64>,
}

impl Containment {
    /// Time-to-contain, when contained.
    pub fn time_to_contain_ms(&self) -> Option<u64> {
        self.contained_ms
            .map(|c| c.saturating_sub(self.received_ms))
    }
}

/// The first quarantine episode of every L-Server asked to be quarantined: from the first
/// request to the moment device truth has all its NICs on quarantine networks. Later episodes
/// (after a release) are not measured.
pub(crate) fn containment_times<'a>(f: &Facts<'a>) -> BTreeMap<&'a str, Containment> {
    let mut first: HashMap<usize, Request<'a>> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for r in f.quarantine_requests() {
        if seen.insert(r.lserver) {
            first.insert(r.index, r);
        }
    }
    let mut truth = Truth::new(f.site);
    let mut out: BTreeMap<&str, Containment> = BTreeMap::new();
    let all_on_quarantine = |truth: &Truth<'_>, lserver: &str| {
        let count = f.nic_count(lserver);
        count > 0
            && (0..count).all(|nic| {
                let r = NicRef {
                    lserver: lserver.to_string(),
                    nic,
                };
                f.is_quarantine(truth.get(&r))
            })
    };
    for (index, e) in f.events() {
        truth.apply(&e.kind);
        let candidate = match &e.kind {
            EventKind::TruthChanged { nic, .. } => out.get_key_value(nic.lserver.as_str()),
            _ => None,
        }
        .map(|(k, _)| *k);
        if let Some(request) = first.get(&index) {
            out.insert(
                request.lserver,
                Containment {
                    received_ms: request.at_ms,
                    request_index: index,
                    contained_ms: None,
                },
            );
        }
        let lserver = first.get(&index).map(|r| r.lserver).or(candidate);
        if let Some(ls) = lserver {
            if let Some(c) = out.get_mut(ls) {
                if c.contained_ms.is_none() && all_on_quarantine(&truth, ls) {
                    c.contained_ms = Some(e.at_ms);
                }
            }
        }
    }
    out
}

/// All measures of a run.
pub(crate) fn measure(f: &Facts<'_>, containment: &BTreeMap<&str, Containment>) -> Measures {
    let contain: Vec<u64> = containment
        .values()
        .filter_map(Containment::time_to_contain_ms)
        .collect();
    let origin_ms = containment
        .values()
        .filter(|c| c.contained_ms.is_some())
        .map(|c| c.received_ms)
        .min();
    let last_ms = containment.values().filter_map(|c| c.contained_ms).max();
    let makespan_ms = match (origin_ms, last_ms) {
        (Some(o), Some(l)) => l.saturating_sub(o),
        _ => 0,
    };
    Measures {
        time_to_contain_ms: Summary::of(&contain),
        time_to_quarantined_ms: Summary::of(&time_to_quarantined(f, containment)),
        time_to_alert_ms: Summary::of(&time_to_alert(f)),
        device_writes: f.write_targets().len() as u64,
        makespan_ms,
        lower_bound_ms: origin_ms.map_or(0, |o| lower_bound(f, containment, o)),
    }
}

/// Receipt to the R9 record update: the `quarantine-completed` alert, committed with it, or
/// else the OperationFinished `quarantined` (the alert also times a `quarantine_reboot` whose
/// operation ends only after the reboot).
fn time_to_quarantined(f: &Facts<'_>, containment: &BTreeMap<&str, Containment>) -> Vec<u64> {
    // One pass over the history: large generated sites have thousands of L-Servers.
    let mut done: BTreeMap<&str, u64> = BTreeMap::new();
    for (index, e) in f.events() {
        let lserver = match &e.kind {
            EventKind::Alert {
                code,
                lserver: Some(l),
                ..
            } if code == "quarantine-completed" => l.as_str(),
            EventKind::OperationFinished {
                lserver: l,
                outcome,
                ..
            } if outcome == "quarantined" => l.as_str(),
            _ => continue,
        };
        let Some((key, c)) = containment.get_key_value(lserver) else {
            continue;
        };
        if index > c.request_index && !done.contains_key(key) {
            done.insert(key, e.at_ms.saturating_sub(c.received_ms));
        }
    }
    done.into_values().collect()
}

/// Receipt of the detection or command that started a failed operation to its ERROR alert.
fn time_to_alert(f: &Facts<'_>) -> Vec<u64> {
    let mut received: HashMap<i64, u64> = HashMap::new();
    let mut alerted: HashMap<i64, u64> = HashMap::new();
    let mut failed: BTreeMap<i64, ()> = BTreeMap::new();
    for (_, e) in f.events() {
        match &e.kind {
            EventKind::DetectionAcked {
                disposition,
                operation: Some(id),
                ..
            } if disposition == "accepted" => {
                received.entry(*id).or_insert(e.at_ms);
            }
            EventKind::CommandSubmitted {
                operation: Some(id),
                ..
            } => {
                received.entry(*id).or_insert(e.at_ms);
            }
            EventKind::Alert {
                severity,
                operation: Some(id),
                ..
            } if is_error(severity) => {
                alerted.entry(*id).or_insert(e.at_ms);
            }
            EventKind::OperationFinished { id, outcome, .. } if is_failure(outcome) => {
                failed.insert(*id, ());
            }
            _ => {}
        }
    }
    failed
        .keys()
        .filter_map(|id| Some(alerted.get(id)?.saturating_sub(*received.get(id)?)))
        .collect()
}

/// Per-device cost of moving one NIC: calls `k`, latency `L`, and the parallelism `c * b`.
struct DeviceCost {
    calls_per_nic: u64,
    latency_ms: u64,
    parallel_nics: u64,
}

/// The cost model of the device that moves NICs at `location`. A device without a configured
/// latency costs 0 ms: the bound must never exceed what an engine could reach.
fn device_cost(f: &Facts<'_>, location: &NicLocation) -> DeviceCost {
    let topology = &f.site.topology;
    let verify = u64::from(topology.engine.verify_writes);
    let ms = |d: Option<std::time::Duration>| {
        d.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    };
    match location {
        NicLocation::Virtual { hypervisor, .. } => {
            let spec = topology.hypervisors.iter().find(|h| &h.name == hypervisor);
            DeviceCost {
                calls_per_nic: 1 + verify,
                latency_ms: ms(spec.and_then(|h| h.latency)),
                parallel_nics: u64::from(spec.map_or(1, |h| h.max_concurrent)).max(1),
            }
        }
        NicLocation::Physical { switch, .. } => {
            let spec = f.site.switch(switch);
            let persist = u64::from(spec.is_some_and(|s| s.persist));
            let concurrency = u64::from(spec.map_or(1, |s| s.max_concurrent)).max(1);
            let batch = u64::from(spec.map_or(1, |s| s.max_batch)).max(1);
            DeviceCost {
                calls_per_nic: 1 + verify + persist,
                latency_ms: ms(spec.and_then(|s| s.latency)),
                parallel_nics: concurrency.saturating_mul(batch),
            }
        }
    }
}

/// LB = max(max over devices d of ceil(n_d * k / (c_d * b_d)) * L_d,
///          max over NICs of (arrival offset + k * L)), counting the NICs of every contained
/// L-Server and measuring arrivals from `origin_ms`, the first receipt.
fn lower_bound(f: &Facts<'_>, containment: &BTreeMap<&str, Containment>, origin_ms: u64) -> u64 {
    let mut per_device: BTreeMap<&str, (u64, DeviceCost)> = BTreeMap::new();
    let mut single_nic_ms = 0u64;
    for (lserver, c) in containment {
        if c.contained_ms.is_none() {
            continue;
        }
        let Some(ls) = f.site.lserver(lserver) else {
            continue;
        };
        let offset = c.received_ms.saturating_sub(origin_ms);
        for nic in &ls.nics {
            let cost = device_cost(f, &nic.location);
            single_nic_ms = single_nic_ms
                .max(offset.saturating_add(cost.calls_per_nic.saturating_mul(cost.latency_ms)));
            per_device
                .entry(nic.location.device_name())
                .or_insert((0, cost))
                .0 += 1;
        }
    }
    let device_ms = per_device
        .values()
        .map(|(n, cost)| {
            let rounds = n
                .saturating_mul(cost.calls_per_nic)
                .div_ceil(cost.parallel_nics.max(1));
            rounds.saturating_mul(cost.latency_ms)
        })
        .max()
        .unwrap_or(0);
    device_ms.max(single_nic_ms)
}
