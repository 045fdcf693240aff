//! The engine's shared state: in-memory mirror of the journal, quarantine IP allocator, per
//! L-Server lanes, device concurrency slots, the clock, and the commit path every step goes
//! through.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::IpNet;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::alerts::{Alert, AlertCode};
use super::device_queue::DeviceQueue;
use super::journal::{Entry, Journal, JournalError, OpenOperation};
use super::types::*;
use super::{EngineEvent, EngineObserver};
use crate::adapters::Adapters;
use crate::model::{EngineSpec, Network, PolicySpec, Site};

/// Time as the engine sees it: tokio's clock, offset so that journal times read as wall time
/// in production and as run time in the lab.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    origin: Instant,
    origin_ms: u64,
}

impl Clock {
    pub(crate) fn new(origin_ms: u64) -> Clock {
        Clock {
            origin: Instant::now(),
            origin_ms,
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.origin_ms + self.origin.elapsed().as_millis() as u64
    }
}

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

/// Quarantine IP allocation (R6, INV-8): lowest free host address, never the network,
/// broadcast or first (gateway) address, unique per network.
#[derive(Debug, Default)]
pub(crate) struct Allocator {
    used: HashMap<String, HashSet<IpAddr>>,
    owner_by_ip: HashMap<IpAddr, String>,
    cursor: HashMap<String, u128>,
}

impl Allocator {
    pub fn insert(&mut self, network: &str, ip: IpAddr, lserver: &str) {
        self.used.entry(network.to_string()).or_default().insert(ip);
        self.owner_by_ip.insert(ip, lserver.to_string());
    }

    pub fn free(&mut self, network: &str, ip: IpAddr) {
        if let Some(set) = self.used.get_mut(network) {
            set.remove(&ip);
        }
        self.owner_by_ip.remove(&ip);
    }

    pub fn owner(&self, ip: IpAddr) -> Option<&str> {
        self.owner_by_ip.get(&ip).map(String::as_str)
    }

    /// Allocates the next free address of `network` after the last one handed out, wrapping
    /// once; `None` when the subnet is full.
    pub fn allocate(&mut self, network: &Network, lserver: &str) -> Option<IpAddr> {
        let (first, last) = usable_range(&network.subnet)?;
        let span = last - first + 1;
        let start = self.cursor.get(&network.name).copied().unwrap_or(first);
        let used = self.used.entry(network.name.clone()).or_default();
        for step in 0..span {
            let candidate = first + (start - first + step) % span;
            let ip = to_ip(&network.subnet, candidate);
            if !used.contains(&ip) {
                used.insert(ip);
                self.owner_by_ip.insert(ip, lserver.to_string());
                self.cursor.insert(network.name.clone(), candidate + 1);
                return Some(ip);
            }
        }
        None
    }
}

/// First and last allocatable host of a subnet as integers.
fn usable_range(subnet: &IpNet) -> Option<(u128, u128)> {
    let (network, last) = match subnet {
        IpNet::V4(n) => (
            u32::from(n.network()) as u128,
            u32::from(n.broadcast()) as u128 - 1,
        ),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    };
    // Skip the network address and the first host (the quarantine network's gateway).
    let first = network + 2;
    (first <= last).then_some((first, last))
}

fn to_ip(subnet: &IpNet, value: u128) -> IpAddr {
    match subnet {
        IpNet::V4(_) => IpAddr::V4((value as u32).into()),
        IpNet::V6(_) => IpAddr::V6(value.into()),
    }
}

/// Everything under the engine's one lock. Never held across an `.await`.
pub(crate) struct State {
    pub lservers: HashMap<String, LsState>,
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
    pub devices: HashMap<String, Arc<DeviceQueue>>,
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
    /// Counters for monitoring.
    pub stats: super::stats::EngineStats,
}

/// Runs a blocking call (a commit's fsync) without stalling the runtime: on a multi-thread
/// runtime the worker hands its other tasks to another thread first; on a current-thread runtime
/// (the lab, paused clock) there is nothing else to run meanwhile.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// How many times a committer yields at most while other tasks keep staging steps for its
/// commit. More yields mean fewer, larger commits (each an fsync and a set of WAL pages) at the
/// price of the first step's wait; measured with `qlab bench` (wire figure).
const GATHER_YIELDS: usize = 8;

/// How long a closing step waits for a commit that another step needs, while device calls are
/// under way, before it commits itself: short beside any device's latency, long enough that the
/// closings of a burst share a few commits instead of one each.
const CLOSING_WINDOW: std::time::Duration = std::time::Duration::from_millis(10);

/// What waits for a step to be durable; it decides how long the step's commit may wait for
/// others to join it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waiting {
    /// A device call (a plan before its first call, earlier outcomes before a write, a
    /// quarantine_reboot's quarantine before its reset). Committed after one yield when no
    /// device call is under way, since the devices sit idle until it is durable; else it
    /// gathers the steps staged meanwhile.
    DeviceCall,
    /// Someone outside: a detection's or a command's acknowledgement. Gathers.
    Reply,
    /// Only the operation's own end: its records, its closing alert, its delivery marks. Rides a
    /// commit another step needs, for [`CLOSING_WINDOW`] at most while device calls are under
    /// way; then, or when none is, it commits after one yield.
    Closing,
}

/// A device call under way ([`Shared::call_started`]); a call cut off (its task aborted) is
/// no longer under way either.
pub(crate) struct CallUnderWay<'a>(&'a Shared);

impl Drop for CallUnderWay<'_> {
    fn drop(&mut self) {
        if self.0.calls_in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last call ended: closing steps waiting for company need not wait any more.
            self.0.flush_done.notify_waiters();
        }
    }
}

/// A staged step's place in commit order: durable once `Shared::flushed` reaches it.
pub(crate) type Ticket = u64;

/// The observer event an entry announces once durable.
fn durable_event(entry: &Entry) -> Option<EngineEvent> {
    match entry {
        Entry::Alert(alert) => Some(EngineEvent::Alert(alert.clone())),
        Entry::OperationStarted {
            id, lserver, kind, ..
        } => Some(EngineEvent::OperationStarted {
            id: *id,
            lserver: lserver.clone(),
            kind: *kind,
        }),
        Entry::OperationFinished {
            id,
            lserver,
            outcome,
            ..
        } => Some(EngineEvent::OperationFinished {
            id: *id,
            lserver: lserver.clone(),
            outcome: *outcome,
        }),
        Entry::Detection { .. } => detection_receipt(entry).map(|((source, event_id), receipt)| {
            EngineEvent::DetectionJournaled {
                source,
                event_id,
                receipt,
            }
        }),
        _ => None,
    }
}

/// A detection entry's `(source, event_id)` and receipt.
fn detection_receipt(entry: &Entry) -> Option<((String, String), DetectionReceipt)> {
    let Entry::Detection {
        id,
        detection,
        lserver,
        disposition,
        operation,
        ..
    } = entry
    else {
        return None;
    };
    let key = (detection.source.clone(), detection.event_id.clone());
    let receipt = DetectionReceipt {
        id: *id,
        disposition: *disposition,
        lserver: lserver.clone(),
        operation: *operation,
    };
    Some((key, receipt))
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

    /// Stages one step: its entries join the next group commit, after every step staged before
    /// it. The caller applies the step to memory under the same lock, and must await
    /// [`Shared::durable`] with the returned ticket before anything outside the engine may
    /// learn of it: a device call, an alert, an acknowledgement (R7).
    pub fn stage(&self, state: &mut State, entries: Vec<Entry>) -> Result<Ticket, Halted> {
        if self.is_halted() {
            return Err(Halted);
        }
        if !entries.is_empty() {
            for (key, receipt) in entries.iter().filter_map(detection_receipt) {
                state.pending_detections.insert(key, receipt);
            }
            state.pending.extend(entries);
            state.staged += 1;
        }
        Ok(state.staged)
    }

    /// Returns once every step staged up to `ticket` is durable. The first waiter commits all
    /// staged steps in one transaction and one fsync (group commit) while the others wait; steps
    /// staged during that fsync go together in the next commit. `waiting` says how long the
    /// commit may wait for others to join it.
    pub async fn durable(&self, ticket: Ticket, waiting: Waiting) -> Result<(), Halted> {
        if self.flushed.load(Ordering::Acquire) >= ticket {
            return Ok(());
        }
        if waiting == Waiting::Closing {
            self.ride_along(ticket).await;
            if self.flushed.load(Ordering::Acquire) >= ticket {
                return Ok(());
            }
        }
        // One yield only (it lets a lane whose step is already durable reach its device first,
        // R15) when the devices sit idle until a step a device call waits for is durable, and
        // for a closing step, which has waited for company already.
        let hurry = match waiting {
            Waiting::DeviceCall => self.devices_idle(),
            Waiting::Closing => true,
            Waiting::Reply => false,
        };
        let gather = if hurry { 1 } else { GATHER_YIELDS };
        // Let the tasks woken with this one stage their steps first, so one fsync carries all:
        // yield while others keep staging (a burst of detections and the plans their lanes make
        // right after), a few times at most. A lone step yields once and commits.
        let mut seen = self.lock().staged;
        for _ in 0..gather {
            tokio::task::yield_now().await;
            let now = self.lock().staged;
            if now == seen {
                break;
            }
            seen = now;
        }
        loop {
            let done = self.flush_done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if self.flushed.load(Ordering::Acquire) >= ticket {
                return Ok(());
            }
            if self.is_halted() {
                return Err(Halted);
            }
            // One committer at a time; the journal lock alone cannot tell, readers take it too.
            if self
                .committing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let result = self.flush();
                self.committing.store(false, Ordering::Release);
                self.flush_done.notify_waiters();
                result?;
                // The committer is often the last task that staged (the others were still
                // staging when it looked): let the tasks this commit woke, which staged before
                // it, go on first, so devices see operations in arrival order.
                tokio::task::yield_now().await;
            } else {
                // Another task is committing; its end wakes this one.
                done.await;
            }
        }
    }

    /// Counts a device call as under way until the returned guard is dropped.
    pub fn call_started(&self) -> CallUnderWay<'_> {
        self.calls_in_flight.fetch_add(1, Ordering::AcqRel);
        CallUnderWay(self)
    }

    /// No device call is under way: nothing will need a commit soon but what waits now.
    fn devices_idle(&self) -> bool {
        self.calls_in_flight.load(Ordering::Acquire) == 0
    }

    /// Waits for a commit that carries `ticket` while device calls are under way (what they
    /// stage next may need one: a write after a failed call, a plan, a detection meanwhile),
    /// for [`CLOSING_WINDOW`] at most.
    async fn ride_along(&self, ticket: Ticket) {
        let deadline = Instant::now() + CLOSING_WINDOW;
        loop {
            let done = self.flush_done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if self.flushed.load(Ordering::Acquire) >= ticket
                || self.is_halted()
                || self.devices_idle()
            {
                return;
            }
            if tokio::time::timeout_at(deadline, done).await.is_err() {
                return;
            }
        }
    }

    /// Commits every staged step as one transaction, holding the journal but not the state
    /// lock. On failure the engine halts: no device call may follow a step that is not durable
    /// (R7).
    fn flush(&self) -> Result<(), Halted> {
        let (batch, upto) = {
            let mut state = self.lock();
            state.inflight_detections = std::mem::take(&mut state.pending_detections);
            // The last batch's vector, emptied, takes the next steps: a fresh one per commit
            // cost fresh pages (zeroed by the kernel) in profiles of detection bursts.
            let spare = std::mem::take(&mut state.spare);
            (std::mem::replace(&mut state.pending, spare), state.staged)
        };
        let result = if self.is_halted() {
            Err(None)
        } else if batch.is_empty() {
            Ok(None)
        } else {
            let started = Instant::now();
            let committed = self.commit(&batch).map(Some).map_err(Some);
            if committed.is_ok() {
                self.stats
                    .committed(&batch, started.elapsed(), self.now_ms());
            }
            committed
        };
        let outcome = match result {
            Ok(None) => {
                self.flushed.store(upto, Ordering::Release);
                Ok(())
            }
            Ok(Some(commit)) => {
                self.emit(EngineEvent::Committed { commit });
                // Announced as they become durable, in journal order, so an observer's history
                // holds what the journal holds even if the process dies right after; and before
                // `flushed` moves, so nothing a waiter does next is announced first.
                for entry in &batch {
                    if let Some(event) = durable_event(entry) {
                        self.emit(event);
                    }
                }
                self.flushed.store(upto, Ordering::Release);
                Ok(())
            }
            Err(error) => {
                if let Some(error) = error {
                    self.halt(&error);
                }
                Err(Halted)
            }
        };
        // Only now may an R4 lookup miss the batch's detections in memory and find them in the
        // journal: they are announced and `flushed` covers them, so a duplicate found there is
        // acknowledged after its original, never before.
        let mut spare = batch;
        spare.clear();
        let mut state = self.lock();
        state.inflight_detections.clear();
        state.flush_epoch += 1;
        state.spare = spare;
        drop(state);
        outcome
    }

    /// Commits `batch`; the number of commits made so far.
    fn commit(&self, batch: &[Entry]) -> Result<u64, JournalError> {
        let mut journal = self.journal();
        blocking(|| journal.commit(batch).map(|()| journal.commits()))
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

    pub fn halt(&self, error: &JournalError) {
        if self.set_halted(format!("journal failed: {error}")) {
            tracing::error!(%error, "journal failed: the engine stops all device work");
            self.emit(EngineEvent::Halted {
                reason: error.to_string(),
            });
            self.announce_halt();
        }
    }

    /// Marks the engine halted with `reason` and wakes every waiter; false when it had
    /// halted already (the first reason stays).
    fn set_halted(&self, reason: String) -> bool {
        let first = !self.halted.swap(true, Ordering::SeqCst);
        if first {
            *self.halt_reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
        }
        self.idle.notify_waiters();
        self.flush_done.notify_waiters();
        first
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

    /// The halt is complete: wakes [`super::Engine::halted`].
    fn announce_halt(&self) {
        self.halt_announced.store(true, Ordering::SeqCst);
        self.halt_notice.notify_waiters();
    }

    /// A task panicked: a bug. Its lane (or delivery, or step) stopped half way, and no later
    /// step can be trusted to keep the rules, so the whole engine halts visibly rather than
    /// go on with one L-Server silently stuck: an ERROR log line, an `engine-halted` ERROR
    /// alert (journaled straight away, as nothing else will commit again, and delivered), the
    /// observer's `Halted` event. Restarting resumes from the journal (R16).
    pub fn halt_on_panic(self: &Arc<Self>, message: &str) {
        let reason = format!("an engine task panicked: {message}");
        if !self.set_halted(reason.clone()) {
            tracing::error!(%reason, "after the engine had halted");
            return;
        }
        tracing::error!(%reason, "the engine stops all device work");
        let alert = {
            let mut state = self.lock();
            let now = self.now_ms();
            state.alert(
                now,
                AlertCode::EngineHalted,
                None,
                None,
                None,
                format!("{reason}; the engine stopped all device work and must be restarted"),
            )
        };
        match self.commit(&[Entry::Alert(alert.clone())]) {
            Ok(_) => self.emit(EngineEvent::Alert(alert.clone())),
            Err(error) => tracing::error!(%error, "cannot journal the engine-halted alert"),
        }
        self.emit(EngineEvent::Halted { reason });
        self.announce_halt();
        if !self.adapters.alerts_go_nowhere() {
            let shared = self.clone();
            // Not through `spawn`: nothing of this engine's is trusted to run any more, but
            // the operator must still hear of it.
            tokio::spawn(async move {
                super::executor::deliver_alerts(&shared, vec![alert]).await;
            });
        }
    }

    /// Runs `fut` as an engine task. A panic in it halts the engine
    /// ([`Shared::halt_on_panic`]) instead of ending one task silently.
    pub fn spawn(self: &Arc<Self>, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        use futures::FutureExt as _;
        let shared = Arc::downgrade(self);
        let guarded = async move {
            if let Err(panic) = std::panic::AssertUnwindSafe(fut).catch_unwind().await {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into());
                if let Some(shared) = shared.upgrade() {
                    shared.halt_on_panic(&message);
                }
            }
        };
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        // Reap finished tasks so the set stays as small as the work in flight.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(guarded);
    }
}
