//! Device queues (R15): each device's `max_concurrent` slots, handed out containment first, and
//! on switches that take several commands per request, the pending port changes (and reads) of
//! many operations carried by one call.
//!
//! Order of service, per device:
//! 1. **Urgent waiters**: a waiter whose wait budget ends within one call timeout is served
//!    first (the class fronts compared by budget), so a storm of writes cannot starve a
//!    verification read or a config save past its operation's deadline (R19).
//! 2. **Writes** (vNIC and port moves, logins, resets): what isolates a NIC, so an outbreak's
//!    last NIC is contained as early as the device allows (`docs/measures.md`).
//! 3. **Reads** (verification, recovery, release): they confirm what writes did.
//! 4. **Config saves**: one save persists every port changed before it, so all pending saves
//!    of a switch share one call.
//! 5. **Watch reads** (R20): the drift watch's re-reads of quarantined NICs, served after
//!    every other call and never urgent, so the watch never delays an operation.
//!
//! **Time in the queue is not call time.** A call's [`Budget`] says how long it may wait for a
//! slot (the operation's deadline) and, separately, how long the call may take once sent (the
//! call timeout, never past the budget's end). A healthy device with a queue longer than the
//! call timeout therefore serves every call in turn: waiting costs no attempt and no timeout.
//! A call is `unavailable` only when the device refused it, or when the budget ran out while it
//! waited; then its error says how long the queue was and how fast the device was serving it,
//! so the alert tells a device too slow for the outbreak from a device that is down.
//!
//! Urgency looks only at the front waiter of each class (the oldest): scanning every waiter on
//! each release would make an outbreak of n queued calls cost n².
//!
//! Batching: a caller queues its item, then competes for a slot. Whoever gets the slot takes
//! the oldest pending items of its kind (up to the switch's `max_batch`) and makes one call for
//! all (after a [`BATCH_WINDOW`] when the call is not full); the others find their result
//! waiting. A caller whose item is still queued when its wait budget runs out withdraws it:
//! `unavailable`, never sent. Once taken, an item's result comes from the call that carried it,
//! which is bounded by the taker's call timeout.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use crate::adapters::{DeviceError, DeviceResult, OutcomeClass};

mod batch;

pub(crate) use batch::BatchQueue;

/// Service class of a call: lower is served first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Moves, logins and resets.
    Write = 0,
    /// Reads of device truth.
    Read = 1,
    /// Config saves.
    Save = 2,
    /// Drift-watch reads (R20): after everything else, never urgent.
    Watch = 3,
}

const CLASSES: usize = 4;

/// How long a call that is not full waits for more items before it goes out: long enough for
/// the detections of one burst to reach the queue, short beside any switch's latency.
pub(crate) const BATCH_WINDOW: Duration = Duration::from_millis(1);

/// How long one call may wait for a slot and how long it may then take (R19).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// The last moment the call may still get a slot.
    pub wait_until: Instant,
    /// The last moment the call may still be running.
    pub end_by: Instant,
    /// The longest one call may take once sent.
    pub call_timeout: Duration,
}

impl Budget {
    /// The timeout of a call sent now: the call timeout, never past `end_by`.
    pub fn call_timeout_now(&self) -> Duration {
        self.call_timeout
            .min(self.end_by.saturating_duration_since(Instant::now()))
    }
}

/// Calls waiting for a slot on any of the engine's devices, counted by all their queues. While
/// some wait, more operations will end soon, and an operation's closing step can share their
/// commit (`group_commit`); once none waits, every call still under way is on the wire, and
/// waiting for it would only hold the records of the operations that ended back.
#[derive(Debug, Default)]
pub(crate) struct SlotWaits {
    waiting: AtomicUsize,
    /// Woken when the last waiting call leaves its queue.
    pub none_left: Notify,
}

impl SlotWaits {
    /// Whether some call waits for a slot.
    pub fn any(&self) -> bool {
        self.waiting.load(Ordering::Acquire) > 0
    }

    fn joined(&self) {
        self.waiting.fetch_add(1, Ordering::AcqRel);
    }

    fn left(&self) {
        let before = self.waiting.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "a call left a device queue it never joined");
        if before == 1 {
            self.none_left.notify_waiters();
        }
    }
}

struct Waiter {
    wait_until: Instant,
    grant: oneshot::Sender<()>,
}

/// The slots and what the device has shown of its speed.
#[derive(Default)]
struct Slots {
    free: usize,
    waiting: [VecDeque<Waiter>; CLASSES],
    /// Calls that came back, and the time they took in all: the device's service rate.
    calls_done: u64,
    busy: Duration,
}

/// The queue of one device.
pub(crate) struct DeviceQueue {
    slots: Mutex<Slots>,
    /// Slots in all (`max_concurrent`).
    concurrency: usize,
    /// A front waiter whose budget ends within this is served first.
    urgent_within: Duration,
    /// The count of waiting calls this queue shares with the engine's other queues. A waiter
    /// is counted from its joining to its leaving the line (granted, or passed over once it
    /// gave up), so one that gives up stays counted until the next slot comes free.
    waits: Arc<SlotWaits>,
    /// Port changes waiting for a switch call.
    pub set_ports: BatchQueue<(String, u16), ()>,
    /// Port reads waiting for a switch call.
    pub get_ports: BatchQueue<String, u16>,
    /// Config saves waiting: one call serves all.
    pub saves: BatchQueue<(), ()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A held slot; dropping it hands the slot to the next waiter.
pub(crate) struct Permit {
    queue: Arc<DeviceQueue>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.queue.release();
    }
}

/// A wait for a slot; if dropped after the slot was granted but before it was taken, the slot
/// goes back to the queue rather than being lost.
struct SlotWait {
    queue: Arc<DeviceQueue>,
    grant: Option<oneshot::Receiver<()>>,
}

impl Drop for SlotWait {
    fn drop(&mut self) {
        if let Some(mut grant) = self.grant.take() {
            grant.close();
            if grant.try_recv().is_ok() {
                self.queue.release();
            }
        }
    }
}

impl DeviceQueue {
    /// A queue with `concurrency` slots, batches of at most `batch` items, and `call_timeout`
    /// deciding when a waiter becomes urgent; its waiters are counted in `waits`.
    pub fn new(
        concurrency: usize,
        batch: usize,
        call_timeout: Duration,
        waits: Arc<SlotWaits>,
    ) -> Arc<DeviceQueue> {
        let concurrency = concurrency.max(1);
        Arc::new(DeviceQueue {
            slots: Mutex::new(Slots {
                free: concurrency,
                ..Slots::default()
            }),
            concurrency,
            urgent_within: call_timeout,
            waits,
            set_ports: BatchQueue::new(batch),
            get_ports: BatchQueue::new(batch),
            saves: BatchQueue::new(usize::MAX),
        })
    }

    /// Waits for a slot of `class`; `wait_until` orders urgent waiters (see the module docs).
    pub async fn acquire(self: &Arc<Self>, class: Class, wait_until: Instant) -> Permit {
        let grant = {
            let mut slots = lock(&self.slots);
            if slots.free > 0 {
                slots.free -= 1;
                debug_assert!(
                    slots.free < self.concurrency,
                    "slots in use ≤ max_concurrent"
                );
                return Permit {
                    queue: self.clone(),
                };
            }
            let (tx, rx) = oneshot::channel();
            slots.waiting[class as usize].push_back(Waiter {
                wait_until,
                grant: tx,
            });
            self.waits.joined();
            rx
        };
        let mut wait = SlotWait {
            queue: self.clone(),
            grant: Some(grant),
        };
        let granted = match wait.grant.as_mut() {
            Some(rx) => rx.await.is_ok(),
            None => false,
        };
        // Taken: the slot is ours now, so the drop guard must not give it back.
        wait.grant = None;
        if !granted {
            // The queue never drops a waiter it has not granted; treat it as granted anyway so
            // the slot count stays right.
            tracing::warn!("device slot wait ended without a grant");
        }
        Permit {
            queue: self.clone(),
        }
    }

    /// Hands a freed slot to the next waiter: the urgent front with the earliest budget, else
    /// the first of the highest class; or puts it back.
    fn release(&self) {
        let mut slots = lock(&self.slots);
        let now = Instant::now();
        loop {
            let urgent = (0..Class::Watch as usize)
                .filter_map(|c| slots.waiting[c].front().map(|w| (w.wait_until, c)))
                .filter(|(until, _)| until.saturating_duration_since(now) <= self.urgent_within)
                .min()
                .map(|(_, c)| c);
            let class = urgent.or_else(|| (0..CLASSES).find(|c| !slots.waiting[*c].is_empty()));
            let Some(class) = class else {
                slots.free += 1;
                assert!(
                    slots.free <= self.concurrency,
                    "a device queue freed more slots than it has"
                );
                return;
            };
            let Some(waiter) = slots.waiting[class].pop_front() else {
                continue;
            };
            self.waits.left();
            if waiter.grant.send(()).is_ok() {
                return;
            }
            // That waiter gave up; try the next.
        }
    }

    /// Notes that a call came back after `took`: the device's service rate for alerts.
    fn served(&self, took: Duration) {
        let mut slots = lock(&self.slots);
        slots.calls_done += 1;
        slots.busy = slots.busy.saturating_add(took);
    }

    /// Why a call got no slot within its budget: the queue it stood in and the device's pace.
    fn no_slot(&self) -> DeviceError {
        DeviceError::new(
            OutcomeClass::Unavailable,
            format!(
                "device too slow for the load: no free slot before the operation deadline ({})",
                self.load()
            ),
        )
    }

    /// A call the deadline cut short after the queue had eaten its time: `unknown` like any
    /// call without a reply (it may have been applied), but saying why it had so little time.
    /// `waited` is how long the call stood in the queue: without a wait, the deadline alone
    /// cut it, and the plain error says so.
    fn cut_short(
        &self,
        error: DeviceError,
        timeout: Duration,
        waited: Duration,
        budget: &Budget,
    ) -> DeviceError {
        if error.class != OutcomeClass::Unknown
            || timeout >= budget.call_timeout
            || waited.is_zero()
        {
            return error;
        }
        DeviceError::new(
            OutcomeClass::Unknown,
            format!(
                "device too slow for the load: no reply within the {timeout:?} the operation \
                 deadline left after the queue ({})",
                self.load()
            ),
        )
    }

    /// Calls (and batch items) waiting for a slot, and slots in use: monitoring's queue depth.
    pub fn depth(&self) -> (usize, usize) {
        let (waiting, free) = {
            let slots = lock(&self.slots);
            (
                slots.waiting.iter().map(VecDeque::len).sum::<usize>(),
                slots.free,
            )
        };
        let queued = waiting + self.set_ports.len() + self.get_ports.len() + self.saves.len();
        (queued, self.concurrency.saturating_sub(free))
    }

    /// The queue's length and the device's pace, for errors.
    fn load(&self) -> String {
        let (waiting, rate) = {
            let slots = lock(&self.slots);
            let waiting: usize = slots.waiting.iter().map(VecDeque::len).sum();
            let rate = (slots.calls_done > 0 && !slots.busy.is_zero()).then(|| {
                self.concurrency as f64 * slots.calls_done as f64 / slots.busy.as_secs_f64()
            });
            (waiting, rate)
        };
        let queued = waiting + self.set_ports.len() + self.get_ports.len() + self.saves.len();
        let pace = match rate {
            Some(r) => format!(
                "the device serves about {r:.1} calls/s ({} at a time)",
                self.concurrency
            ),
            None => "the device has not answered a call yet".to_string(),
        };
        format!("{queued} calls still queued; {pace}")
    }

    /// Runs `call` under a slot of `class`: the wait bounded by `budget.wait_until`, the call
    /// by its call timeout. No slot in time is `unavailable` (never sent), no reply in time is
    /// `unknown` (R8, R19).
    pub async fn run<T>(
        self: &Arc<Self>,
        class: Class,
        budget: Budget,
        call: impl Future<Output = DeviceResult<T>>,
    ) -> DeviceResult<T> {
        let queued = Instant::now();
        let acquired =
            tokio::time::timeout_at(budget.wait_until, self.acquire(class, budget.wait_until))
                .await;
        let Ok(_permit) = acquired else {
            return Err(self.no_slot());
        };
        let sent = Instant::now();
        let timeout = budget.call_timeout_now();
        let result = bounded(timeout, call).await;
        self.served(sent.elapsed());
        let waited = sent.saturating_duration_since(queued);
        result.map_err(|e| self.cut_short(e, timeout, waited, &budget))
    }
}

/// `fut` bounded by `timeout`; no reply in time is `unknown`: it may have been applied (R8).
pub(crate) async fn bounded<T>(
    timeout: Duration,
    fut: impl Future<Output = DeviceResult<T>>,
) -> DeviceResult<T> {
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or_else(|_| Err(no_reply(timeout)))
}

fn no_reply(timeout: Duration) -> DeviceError {
    DeviceError::new(
        OutcomeClass::Unknown,
        format!("no reply within {timeout:?}"),
    )
}

#[cfg(test)]
mod tests;
