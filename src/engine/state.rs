//! The engine's shared state: the in-memory mirror of the journal, per L-Server lanes, device
//! queues, and what every task shares ([`Shared`]). The clock (`clock.rs`), the IP allocator
//! (`allocator.rs`), group commit (`group_commit.rs`) and task spawning and halting
//! (`tasks.rs`) are beside it.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::alerts::{Alert, AlertCode};
pub(crate) use super::allocator::Allocator;
pub(crate) use super::clock::Clock;
use super::device_queue::{DeviceQueue, SlotWaits};
pub(crate) use super::group_commit::{Ticket, Waiting};
use super::journal::{Entry, Journal, OpenOperation};
use super::types::*;
use super::{EngineEvent, EngineObserver};
use crate::adapters::Adapters;
use crate::model::{EngineSpec, PolicySpec, Site};

/// The engine stopped because its journal failed; every task ends at its next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Halted;

/// A queued operation in an L-Server's lane.
#[derive(Debug, Clone)]
pub(crate) struct QueuedOp {
    pub id: OperationId,
    pub kind: OperationKind,
    /// Set when recovery resumes an operation that had started before a restart (R16).
    pub resume: Option<OpenOperation>,
}

/// One L-Server's management view and lane.
#[derive(Debug, Clone)]
pub(crate) struct LsState {
    pub state: LServerState,
    pub status: String,
    pub outcome: Option<Outcome>,
    pub records: Vec<NicRecord>,
    pub lane: VecDeque<QueuedOp>,
    pub running: Option<QueuedOp>,
    /// Operations this L-Server's lane has started since open: a drift-watch read (R20) that
    /// saw it change while the read was under way throws its answer away.
    pub started_ops: u64,
    /// Per NIC, the last successful read of its device truth (engine ms, and the topology
    /// network it showed, `None` for a foreign one): an operation's read or a drift-watch read.
    /// In memory only: a restart forgets it.
    pub last_read: Vec<Option<(u64, Option<String>)>>,
    /// A lane worker task is alive for this L-Server.
    pub worker: bool,
    /// The ticket of the latest alert delivery marks staged for this L-Server: its lane makes
    /// them durable before it goes quiet.
    pub marks: Ticket,
    /// The latest operation whose closing step (`OperationFinished`) was staged: an operation
    /// is closed exactly once.
    pub closed: Option<OperationId>,
}

impl LsState {
    /// Whether an unfinished operation of `kind` exists (R4).
    pub fn has_unfinished(&self, predicate: impl Fn(&QueuedOp) -> bool) -> bool {
        self.running.iter().chain(self.lane.iter()).any(predicate)
    }

    /// Whether the L-Server will end its queued work quarantined: the last unfinished
    /// quarantining or release operation decides, else the current state (R4). A detection
    /// that arrives while a release is pending is therefore not a duplicate.
    pub fn will_be_quarantined(&self) -> bool {
        let last = self
            .running
            .iter()
            .chain(self.lane.iter())
            .rfind(|o| o.kind.quarantines() || o.kind == OperationKind::Release);
        match last {
            Some(op) => op.kind.quarantines(),
            None => self.state == LServerState::Quarantined,
        }
    }

    pub fn pending(&self) -> usize {
        self.lane.len() + usize::from(self.running.is_some())
    }
}

/// Every L-Server's state by path. FxHash: the paths come from the topology alone (a detection
/// only looks one up), and SipHash's cost showed in profiles of large outbreaks.
pub(crate) type LsStates = rustc_hash::FxHashMap<String, LsState>;

/// Everything under the engine's one lock. Never held across an `.await`.
pub(crate) struct State {
    pub lservers: LsStates,
    pub allocator: Allocator,
    pub next_detection_id: DetectionId,
    pub next_operation_id: OperationId,
    pub next_alert_seq: i64,
    pub running_lanes: usize,
    /// Entries staged for the next group commit, in step order.
    pub pending: Vec<Entry>,
    /// The last committed batch's vector, emptied: the next batch is staged into it.
    pub spare: Vec<Entry>,
    /// The detections among `pending`, by `(source, event_id)`, for the R4 check.
    pub pending_detections: HashMap<(String, String), DetectionReceipt>,
    /// The detections of the commit in progress: neither staged nor in the journal yet.
    pub inflight_detections: HashMap<(String, String), DetectionReceipt>,
    /// Every `(source, event_id)` journaled or staged, as a filter that lets a new pair skip
    /// the R4 lookup in the journal; only for a journal on a file (`seen_detections`).
    pub seen_detections: Option<super::seen_detections::SeenDetections>,
    /// Commits finished so far; a reader that looked in the journal without the state lock
    /// compares it to know that no commit ended in between (R4).
    pub flush_epoch: u64,
    /// Steps staged so far; a step's ticket is this count right after it was staged.
    pub staged: Ticket,
}

impl State {
    pub fn ls(&mut self, path: &str) -> &mut LsState {
        self.lservers
            .get_mut(path)
            .expect("L-Server states are built for every path of the site at open")
    }

    /// Builds an alert with the next sequence number.
    pub fn alert(
        &mut self,
        now_ms: u64,
        code: AlertCode,
        lserver: Option<&str>,
        ip: Option<IpAddr>,
        operation: Option<OperationId>,
        detail: String,
    ) -> Alert {
        let seq = self.next_alert_seq;
        self.next_alert_seq += 1;
        Alert {
            seq,
            at_ms: now_ms,
            code,
            lserver: lserver.map(str::to_string),
            ip,
            operation,
            detail,
        }
    }
}

/// What every engine task shares.
pub(crate) struct Shared {
    pub site: Arc<Site>,
    pub adapters: Adapters,
    pub settings: EngineSpec,
    /// Shared, not copied, by each detection: replaced whole by `Engine::set_policy`.
    pub policy: Mutex<Arc<PolicySpec>>,
    pub state: Mutex<State>,
    /// Each device's queue: slots, service order and batches (R15).
    pub devices: rustc_hash::FxHashMap<String, Arc<DeviceQueue>>,
    pub clock: Clock,
    pub hostname: String,
    pub observer: Option<Arc<dyn EngineObserver>>,
    pub halted: AtomicBool,
    /// Why the engine halted, once it did (a journal failure or a task's panic).
    pub halt_reason: Mutex<Option<String>>,
    /// The halt is complete: its alert is journaled, its events emitted.
    pub halt_announced: AtomicBool,
    /// Woken when the halt is complete.
    pub halt_notice: Notify,
    pub idle: Notify,
    pub tasks: Mutex<JoinSet<()>>,
    pub max_lane_len: usize,
    /// Steps durable so far (compared with tickets).
    pub flushed: AtomicU64,
    /// The journal. A committer holds its lock for the commit alone and never together with the
    /// state lock, so a commit's fsync never stops the engine's other work.
    pub journal: Mutex<Journal>,
    /// A query-only connection to the journal file (`Journal::open_reader`): R4 lookups read
    /// through it, so a detection never waits for a commit's fsync to end.
    pub reader: Option<Mutex<Journal>>,
    /// Woken when a commit ends.
    pub flush_done: Notify,
    /// A task is committing (group commit has one committer at a time).
    pub committing: AtomicBool,
    /// Device calls under way, waiting for a slot or on the wire (`Shared::call_started`).
    pub calls_in_flight: AtomicUsize,
    /// Of those, the calls waiting for a slot, counted by the device queues.
    pub slot_waits: Arc<SlotWaits>,
    /// Counters for monitoring.
    pub stats: super::stats::EngineStats,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug; the state is still the journal's mirror, so
        // continuing with it is safer than poisoning every later call.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn is_halted(&self) -> bool {
        self.halted.load(Ordering::SeqCst)
    }

    pub fn emit(&self, event: EngineEvent) {
        if let Some(observer) = &self.observer {
            observer.on_event(&event);
        }
    }

    /// The journal, for reads (API views, recovery checks; R4 lookups go through
    /// [`Shared::lookup_journal`]).
    pub fn journal(&self) -> MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The journal for R4 lookups: the query-only reader when there is one (a file journal),
    /// else the journal itself.
    pub fn lookup_journal(&self) -> MutexGuard<'_, Journal> {
        match &self.reader {
            Some(reader) => reader.lock().unwrap_or_else(|e| e.into_inner()),
            None => self.journal(),
        }
    }

    /// Notes a read of a NIC's device truth (a failed read changes nothing): what
    /// `last_verified_ms` of `GET /lservers/{path}` is computed from (R20).
    pub fn note_truth(&self, path: &str, index: usize, truth: &super::executor::Truth) {
        if *truth == super::executor::Truth::Unknown {
            return;
        }
        let now = self.now_ms();
        let mut state = self.lock();
        if let Some(slot) = state
            .lservers
            .get_mut(path)
            .and_then(|ls| ls.last_read.get_mut(index))
        {
            *slot = Some((now, truth.network().map(str::to_string)));
        }
    }
}
