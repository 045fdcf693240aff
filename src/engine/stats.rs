//! Counters and histograms of the engine's work, for monitoring (`GET /metrics`).
//!
//! Everything is counted from what the journal committed (a group commit updates the counters
//! of its entries once it is durable) except device calls, counted as they end. Time comes
//! from tokio's clock only, so on the lab's paused clock durations are virtual. The engine
//! keeps plain numbers here; how they are exposed is the daemon's business.
//!
//! Time to contain is from an operation's queueing (for a detection: its receipt) to the
//! durable commit that records the L-Server quarantined: a quarantine's or manual
//! quarantine's end with outcome `quarantined`, or a quarantine_reboot entering its reboot
//! phase. Operations resumed after a restart have no queueing time in memory and are not
//! measured (their counts by kind and outcome are).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::journal::Entry;
use super::types::{OperationId, OperationKind, Outcome};

/// Upper bounds (seconds) of the latency histograms' buckets: device calls and commits.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds (seconds) of the time-to-contain buckets.
pub const CONTAIN_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Upper bounds of the entries-per-commit buckets.
pub const ENTRIES_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0,
];

/// A histogram with fixed bucket bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Upper bounds, ascending (the `+Inf` bucket is `count`).
    pub bounds: &'static [f64],
    /// Observations at or below each bound (not cumulative).
    pub counts: Vec<u64>,
    /// Sum of the observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.counts[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    /// Cumulative counts per bound, as Prometheus' `le` buckets want them.
    pub fn cumulative(&self) -> Vec<u64> {
        self.counts
            .iter()
            .scan(0, |acc, c| {
                *acc += c;
                Some(*acc)
            })
            .collect()
    }
}

/// Queue depths at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueDepths {
    /// Operations queued behind another on their L-Server's lane.
    pub operations_queued: usize,
    /// Operations running.
    pub operations_running: usize,
    /// Journal entries staged and not yet committed.
    pub journal_pending_entries: usize,
    /// Per device: calls (or batch items) waiting for a slot, and slots in use.
    pub devices: BTreeMap<String, (usize, usize)>,
}

/// Everything [`EngineStats`] counted, copied out.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsSnapshot {
    /// Journaled detections by `(source, disposition)`.
    pub detections: BTreeMap<(String, &'static str), u64>,
    /// Finished operations by `(kind, outcome)`.
    pub operations: BTreeMap<(&'static str, &'static str), u64>,
    /// Device calls by `(device, outcome)`.
    pub device_calls: BTreeMap<(String, String), u64>,
    /// Device call latency by device (seconds, queue wait included).
    pub call_seconds: BTreeMap<String, Histogram>,
    /// Time to contain (seconds).
    pub time_to_contain: Histogram,
    /// Commit latency (seconds, fsync included).
    pub commit_seconds: Histogram,
    /// Entries per commit.
    pub entries_per_commit: Histogram,
    /// L-Servers found off their quarantine network without a release.
    pub drift_findings: u64,
    /// Queue depths now.
    pub queues: QueueDepths,
}

/// The engine's counters ([`super::Engine::stats`]).
#[derive(Debug)]
pub struct EngineStats {
    inner: Mutex<Inner>,
}

/// Keyed by name first so that counting looks up by `&str` and allocates only for a new name
/// (a device call or a detection must not cost an allocation in the lab's hot loop).
#[derive(Debug)]
struct Inner {
    detections: BTreeMap<String, BTreeMap<&'static str, u64>>,
    operations: BTreeMap<(&'static str, &'static str), u64>,
    device_calls: BTreeMap<String, BTreeMap<String, u64>>,
    call_seconds: BTreeMap<String, Histogram>,
    time_to_contain: Histogram,
    commit_seconds: Histogram,
    entries_per_commit: Histogram,
    drift_findings: u64,
    /// Kind and queueing time of each unfinished operation: bounded by the lanes' bound.
    open: rustc_hash::FxHashMap<OperationId, (OperationKind, Option<u64>)>,
}

impl Default for EngineStats {
    fn default() -> Self {
        EngineStats {
            inner: Mutex::new(Inner {
                detections: BTreeMap::new(),
                operations: BTreeMap::new(),
                device_calls: BTreeMap::new(),
                call_seconds: BTreeMap::new(),
                time_to_contain: Histogram::new(CONTAIN_BUCKETS),
                commit_seconds: Histogram::new(LATENCY_BUCKETS),
                entries_per_commit: Histogram::new(ENTRIES_BUCKETS),
                drift_findings: 0,
                open: Default::default(),
            }),
        }
    }
}

impl EngineStats {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An operation resumed after a restart: its kind, no queueing time.
    pub(crate) fn resumed(&self, id: OperationId, kind: OperationKind) {
        self.lock().open.insert(id, (kind, None));
    }

    /// One device call ended with `outcome` after `took`.
    pub(crate) fn device_call(&self, device: &str, outcome: &str, took: Duration) {
        let mut inner = self.lock();
        *slot(slot(&mut inner.device_calls, device), outcome) += 1;
        if !inner.call_seconds.contains_key(device) {
            let fresh = Histogram::new(LATENCY_BUCKETS);
            inner.call_seconds.insert(device.to_string(), fresh);
        }
        if let Some(h) = inner.call_seconds.get_mut(device) {
            h.observe(took.as_secs_f64());
        }
    }

    /// A commit of `batch` became durable after `took`, at engine time `now_ms`.
    pub(crate) fn committed(&self, batch: &[Entry], took: Duration, now_ms: u64) {
        let mut inner = self.lock();
        inner.commit_seconds.observe(took.as_secs_f64());
        inner.entries_per_commit.observe(batch.len() as f64);
        for entry in batch {
            match entry {
                Entry::Detection {
                    detection,
                    disposition,
                    ..
                } => {
                    *slot(&mut inner.detections, &detection.source)
                        .entry(disposition.as_str())
                        .or_default() += 1;
                }
                Entry::OperationQueued {
                    id,
                    kind,
                    created_ms,
                    ..
                } => {
                    inner.open.insert(*id, (*kind, Some(*created_ms)));
                }
                Entry::OperationPhase { id, phase } if phase == "reboot" => {
                    inner.contained(*id, now_ms);
                }
                Entry::OperationFinished { id, outcome, .. } => {
                    if *outcome == Outcome::Quarantined {
                        inner.contained(*id, now_ms);
                    }
                    let kind = inner
                        .open
                        .remove(id)
                        .map_or("unknown", |(kind, _)| kind.as_str());
                    *inner
                        .operations
                        .entry((kind, outcome.as_str()))
                        .or_default() += 1;
                }
                _ => {}
            }
        }
    }

    /// A quarantined NIC was found off its quarantine network without a release (the drift
    /// watch's finding; `qlab_drift_findings_total`).
    pub fn drift_found(&self) {
        self.lock().drift_findings += 1;
    }

    /// Copies every counter out, with the queue depths the caller measured.
    pub(crate) fn snapshot(&self, queues: QueueDepths) -> StatsSnapshot {
        let inner = self.lock();
        StatsSnapshot {
            detections: flatten(&inner.detections),
            operations: inner.operations.clone(),
            device_calls: flatten(&inner.device_calls),
            call_seconds: inner.call_seconds.clone(),
            time_to_contain: inner.time_to_contain.clone(),
            commit_seconds: inner.commit_seconds.clone(),
            entries_per_commit: inner.entries_per_commit.clone(),
            drift_findings: inner.drift_findings,
            queues,
        }
    }
}

/// The value under `key`, inserted empty (allocating the key) only when absent.
fn slot<'a, V: Default>(map: &'a mut BTreeMap<String, V>, key: &str) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

/// `name -> label -> n` as `(name, label) -> n`.
fn flatten<L: Ord + Clone>(
    nested: &BTreeMap<String, BTreeMap<L, u64>>,
) -> BTreeMap<(String, L), u64> {
    nested
        .iter()
        .flat_map(|(name, inner)| {
            inner
                .iter()
                .map(move |(label, n)| ((name.clone(), label.clone()), *n))
        })
        .collect()
}

impl Inner {
    /// Records the containment of operation `id` once: a quarantine_reboot is contained when its
    /// reboot phase starts, not again when it ends.
    fn contained(&mut self, id: OperationId, now_ms: u64) {
        let Some((kind, created)) = self.open.get_mut(&id) else {
            return;
        };
        if !kind.quarantines() {
            return;
        }
        if let Some(created) = created.take() {
            let seconds = now_ms.saturating_sub(created) as f64 / 1000.0;
            self.time_to_contain.observe(seconds);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_count_above_the_last_bound() {
        let mut h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 9.0] {
            h.observe(v);
        }
        assert_eq!(h.cumulative(), vec![2, 3]);
        assert_eq!(h.count, 4);
        assert!((h.sum - 12.0).abs() < 1e-9);
    }

    #[test]
    fn r12_a_quarantine_reboot_is_contained_once_at_its_reboot_phase() {
        let stats = EngineStats::default();
        let queued = Entry::OperationQueued {
            id: 7,
            lserver: "/a".into(),
            kind: OperationKind::QuarantineReboot,
            detection: None,
            created_ms: 1_000,
            requested_by: None,
        };
        stats.committed(&[queued], Duration::ZERO, 1_000);
        let phase = Entry::OperationPhase {
            id: 7,
            phase: "reboot".into(),
        };
        stats.committed(&[phase], Duration::ZERO, 3_500);
        let finished = Entry::OperationFinished {
            id: 7,
            lserver: "/a".into(),
            outcome: Outcome::Quarantined,
            detail: String::new(),
            finished_ms: 9_000,
        };
        stats.committed(&[finished], Duration::ZERO, 9_000);
        let snap = stats.snapshot(QueueDepths::default());
        assert_eq!(snap.time_to_contain.count, 1);
        assert!((snap.time_to_contain.sum - 2.5).abs() < 1e-9);
        assert_eq!(
            snap.operations
                .get(&("quarantine_reboot", "quarantined"))
                .copied(),
            Some(1)
        );
        assert_eq!(snap.commit_seconds.count, 3);
        assert_eq!(snap.drift_findings, 0);
        stats.drift_found();
        let snap = stats.snapshot(QueueDepths::default());
        assert_eq!(snap.drift_findings, 1);
    }
}
