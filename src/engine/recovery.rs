//! Opening the engine: its in-memory state rebuilt from the journal's snapshot, the device
//! queues from the topology, and every unfinished operation resumed in journal order (R16).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::device_queue::{DeviceQueue, SlotWaits};
use super::journal::{OpenOperation, Snapshot};
use super::seen_detections::{bits_for, SeenDetections};
use super::state::{Allocator, Clock, LsState, LsStates, QueuedOp, Shared, State};
use super::{
    drift_watch, enqueue, executor, stats, Engine, EngineError, EngineOptions, Journal,
    LServerState, NicRecord,
};
use crate::adapters::Adapters;
use crate::model::Site;

impl Engine {
    /// Opens the engine on `journal`, resuming every unfinished operation (R16) and
    /// re-sending undelivered alerts. Must be called inside a tokio runtime.
    pub fn open(
        site: Arc<Site>,
        mut journal: Journal,
        adapters: Adapters,
        options: EngineOptions,
    ) -> Result<Engine, EngineError> {
        let snapshot = journal.snapshot()?;
        // With no alert output an alert is delivered once journaled (R17): no marks to commit.
        journal.set_alerts_delivered_at_insert(adapters.alerts_go_nowhere());
        let reader = journal.open_reader()?.map(Mutex::new);
        let seen_detections = match reader {
            Some(_) => Some(seen_detections(&journal, &snapshot, site.lservers.len())?),
            None => None,
        };
        let lservers = lserver_states(&site, &snapshot);
        let mut allocator = Allocator::default();
        for (network, ip, lserver, _) in &snapshot.allocations {
            allocator.insert(network, *ip, lserver);
        }
        let t = &site.topology;
        let slot_waits = Arc::new(SlotWaits::default());
        let devices = device_queues(&site, &adapters, &slot_waits);
        let state = State {
            lservers,
            allocator,
            next_detection_id: snapshot.next_detection_id,
            next_operation_id: snapshot.next_operation_id,
            next_alert_seq: snapshot.next_alert_seq,
            running_lanes: 0,
            pending: Vec::new(),
            spare: Vec::new(),
            pending_detections: HashMap::new(),
            inflight_detections: HashMap::new(),
            seen_detections,
            flush_epoch: 0,
            staged: 0,
        };
        let shared = Arc::new(Shared {
            settings: t.engine,
            policy: Mutex::new(Arc::new(t.policy.clone())),
            site: site.clone(),
            adapters,
            state: Mutex::new(state),
            devices,
            clock: Clock::new(options.origin_ms),
            hostname: options.hostname,
            observer: options.observer,
            halted: AtomicBool::new(false),
            halt_reason: Mutex::new(None),
            halt_announced: AtomicBool::new(false),
            halt_notice: Notify::new(),
            idle: Notify::new(),
            tasks: Mutex::new(JoinSet::new()),
            max_lane_len: options.max_lane_len.max(1),
            flushed: AtomicU64::new(0),
            journal: Mutex::new(journal),
            reader,
            flush_done: Notify::new(),
            committing: AtomicBool::new(false),
            calls_in_flight: AtomicUsize::new(0),
            slot_waits,
            stats: stats::EngineStats::default(),
        });
        resume(&shared, snapshot.open_operations);
        executor::redeliver_in_background(&shared, snapshot.undelivered_alerts);
        shared.spawn(drift_watch::watch(shared.clone()));
        Ok(Engine { shared })
    }
}

/// Every L-Server of the site in memory: as the topology describes it, then as the journal's
/// snapshot left it (state, status, outcome, NIC records).
fn lserver_states(site: &Site, snapshot: &Snapshot) -> LsStates {
    let mut lservers: LsStates = site
        .lservers
        .iter()
        .map(|ls| {
            let records = ls
                .nics
                .iter()
                .map(|nic| NicRecord {
                    index: nic.index,
                    network: nic.network.clone(),
                    ip: nic.ip,
                    device_network: None,
                    last_write: None,
                })
                .collect();
            let state = LsState {
                state: LServerState::Normal,
                status: "normal".into(),
                outcome: None,
                records,
                lane: VecDeque::new(),
                running: None,
                started_ops: 0,
                last_read: vec![None; ls.nics.len()],
                worker: false,
                marks: 0,
                closed: None,
            };
            (ls.path.clone(), state)
        })
        .collect();
    for row in &snapshot.lservers {
        if let Some(ls) = lservers.get_mut(&row.path) {
            ls.state = row.state;
            ls.status = row.status.clone();
            ls.outcome = row.outcome;
        }
    }
    for (path, record) in &snapshot.nic_records {
        if let Some(slot) = lservers
            .get_mut(path)
            .and_then(|ls| ls.records.get_mut(record.index))
        {
            *slot = record.clone();
        }
    }
    lservers
}

/// One queue per device, with its `max_concurrent` slots and, for a switch whose protocol
/// carries several commands per request, its batch size (R15).
fn device_queues(
    site: &Site,
    adapters: &Adapters,
    waits: &Arc<SlotWaits>,
) -> rustc_hash::FxHashMap<String, Arc<DeviceQueue>> {
    let t = &site.topology;
    let call_timeout = t.engine.call_timeout;
    t.hypervisors
        .iter()
        .map(|h| (h.name.clone(), h.max_concurrent, 1))
        .chain(t.switches.iter().map(|s| {
            // R15: a switch whose protocol carries several commands per request takes up to
            // `max_batch` pending port changes in one call.
            let batches = adapters.switches.get(&s.name).is_some_and(|a| a.batches());
            let batch = if batches { s.max_batch.max(1) } else { 1 };
            (s.name.clone(), s.max_concurrent, batch)
        }))
        .chain(t.bmcs.iter().map(|b| (b.name.clone(), b.max_concurrent, 1)))
        .map(|(name, concurrency, batch)| {
            let queue = DeviceQueue::new(
                concurrency as usize,
                batch as usize,
                call_timeout,
                waits.clone(),
            );
            (name, queue)
        })
        .collect()
}

/// R16: every unfinished operation back on its L-Server's lane, in journal order, so each
/// lane keeps its arrival order.
fn resume(shared: &Arc<Shared>, open_operations: Vec<OpenOperation>) {
    let mut state = shared.lock();
    for open in open_operations {
        if !state.lservers.contains_key(&open.lserver) {
            tracing::warn!(lserver = %open.lserver, "journaled operation for an L-Server the topology no longer has");
            continue;
        }
        let path = open.lserver.clone();
        shared.stats.resumed(open.id, open.kind);
        let op = QueuedOp {
            id: open.id,
            kind: open.kind,
            resume: Some(open),
        };
        enqueue(shared, &mut state, &path, op);
    }
}

/// The R4 filter of a journal on a file: every pair it holds now, in a filter sized for them
/// and for the site's next outbreak ([`super::seen_detections`]).
fn seen_detections(
    journal: &Journal,
    snapshot: &Snapshot,
    lservers: usize,
) -> Result<SeenDetections, EngineError> {
    // Ids are given in order from 1, so the next one tells how many the journal holds.
    let journaled =
        usize::try_from(snapshot.next_detection_id.saturating_sub(1)).unwrap_or(usize::MAX);
    let mut seen = SeenDetections::with_bits(bits_for(journaled, lservers));
    journal.each_detection_key(|source, event_id| seen.insert(source, event_id))?;
    Ok(seen)
}
