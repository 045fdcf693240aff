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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::adapters::{DeviceError, DeviceResult, OutcomeClass};

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

/// One queued item of a batchable kind and where its result goes.
struct Pending<I, T> {
    id: u64,
    item: I,
    reply: oneshot::Sender<DeviceResult<T>>,
}

/// Items of one batchable kind waiting for a call.
pub(crate) struct BatchQueue<I, T> {
    pending: Mutex<VecDeque<Pending<I, T>>>,
    next_id: AtomicU64,
    /// Most items one call may carry.
    limit: usize,
}

impl<I, T> BatchQueue<I, T> {
    fn new(limit: usize) -> BatchQueue<I, T> {
        BatchQueue {
            pending: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(0),
            limit: limit.max(1),
        }
    }

    fn len(&self) -> usize {
        lock(&self.pending).len()
    }
}

/// The queue of one device.
pub(crate) struct DeviceQueue {
    slots: Mutex<Slots>,
    /// Slots in all (`max_concurrent`).
    concurrency: usize,
    /// A front waiter whose budget ends within this is served first.
    urgent_within: Duration,
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
    /// deciding when a waiter becomes urgent.
    pub fn new(concurrency: usize, batch: usize, call_timeout: Duration) -> Arc<DeviceQueue> {
        let concurrency = concurrency.max(1);
        Arc::new(DeviceQueue {
            slots: Mutex::new(Slots {
                free: concurrency,
                ..Slots::default()
            }),
            concurrency,
            urgent_within: call_timeout,
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

    /// Queues `item` on `queue` and returns its result, making the batched call with `call`
    /// whenever this caller gets the slot first (see the module docs).
    pub async fn batched<I, T, F, Fut>(
        self: &Arc<Self>,
        queue: &BatchQueue<I, T>,
        class: Class,
        item: I,
        budget: Budget,
        call: F,
    ) -> DeviceResult<T>
    where
        T: Clone,
        F: Fn(Vec<I>) -> Fut,
        Fut: Future<Output = Vec<DeviceResult<T>>>,
    {
        let (tx, mut rx) = oneshot::channel();
        let queued = Instant::now();
        let id = queue.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&queue.pending).push_back(Pending {
            id,
            item,
            reply: tx,
        });
        loop {
            tokio::select! {
                biased;
                result = &mut rx => return result.unwrap_or_else(|_| Err(carrier_gone())),
                permit = self.acquire(class, budget.wait_until) => {
                    if queue.limit > 1 && queue.len() < queue.limit {
                        // A short window lets the changes of one burst share the call.
                        tokio::time::sleep(BATCH_WINDOW).await;
                    }
                    let batch: Vec<Pending<I, T>> = {
                        let mut pending = lock(&queue.pending);
                        let n = pending.len().min(queue.limit);
                        pending.drain(..n).collect()
                    };
                    if batch.is_empty() {
                        // Ours is on its way in another call; its result will come.
                        drop(permit);
                        return rx.await.unwrap_or_else(|_| Err(carrier_gone()));
                    }
                    let (items, replies): (Vec<I>, Vec<_>) =
                        batch.into_iter().map(|p| (p.item, p.reply)).unzip();
                    let count = replies.len();
                    let timeout = budget.call_timeout_now();
                    let sent = Instant::now();
                    let results = match tokio::time::timeout(timeout, call(items)).await {
                        Ok(results) => results,
                        Err(_) => {
                            let waited = sent.saturating_duration_since(queued);
                            let error =
                                self.cut_short(no_reply(timeout), timeout, waited, &budget);
                            vec![Err(error); count]
                        }
                    };
                    self.served(sent.elapsed());
                    drop(permit);
                    let mut results = results.into_iter();
                    for reply in replies {
                        let result = results.next().unwrap_or_else(|| {
                            Err(DeviceError::new(OutcomeClass::Unknown, "no result for this item"))
                        });
                        // A caller that gave up has nobody to tell.
                        let _ = reply.send(result);
                    }
                }
                () = tokio::time::sleep_until(budget.wait_until) => {
                    let withdrawn = {
                        let mut pending = lock(&queue.pending);
                        let before = pending.len();
                        pending.retain(|p| p.id != id);
                        pending.len() != before
                    };
                    if withdrawn {
                        return Err(self.no_slot());
                    }
                    // Already carried by a call that is bounded by its own timeout.
                    return rx.await.unwrap_or_else(|_| Err(carrier_gone()));
                }
            }
        }
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

/// The call carrying an item ended without answering it (its task was cancelled): it may have
/// been sent, so only device truth can tell.
fn carrier_gone() -> DeviceError {
    DeviceError::new(
        OutcomeClass::Unknown,
        "the call carrying this change was cut off",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A wait budget no test reaches.
    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    fn budget(wait: Duration, call_timeout: Duration) -> Budget {
        let until = Instant::now() + wait;
        Budget {
            wait_until: until,
            end_by: until + call_timeout,
            call_timeout,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn r15_a_waiter_that_gives_up_does_not_keep_the_slot() {
        let queue = DeviceQueue::new(1, 1, Duration::from_secs(5));
        let held = queue.acquire(Class::Write, far()).await;
        let gave_up = tokio::time::timeout(
            Duration::from_millis(10),
            queue.acquire(Class::Write, far()),
        )
        .await;
        assert!(gave_up.is_err());
        drop(held);
        let again =
            tokio::time::timeout(Duration::from_millis(1), queue.acquire(Class::Read, far())).await;
        assert!(again.is_ok(), "the slot went to a waiter that was gone");
    }

    #[tokio::test(start_paused = true)]
    async fn r19_a_queued_item_withdrawn_at_its_budget_is_unavailable_never_sent_and_says_why() {
        let queue = DeviceQueue::new(1, 8, Duration::from_secs(5));
        let _held = queue.acquire(Class::Write, far()).await;
        let sent = Arc::new(AtomicUsize::new(0));
        let counter = sent.clone();
        let result = queue
            .batched(
                &queue.set_ports,
                Class::Write,
                ("Ethernet1/1".to_string(), 910),
                budget(Duration::from_secs(1), Duration::from_secs(5)),
                move |items: Vec<(String, u16)>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async move { vec![Ok(()); items.len()] }
                },
            )
            .await;
        let error = result.unwrap_err();
        assert_eq!(error.class, OutcomeClass::Unavailable);
        assert!(
            error.detail.contains("too slow for the load"),
            "{}",
            error.detail
        );
        assert_eq!(sent.load(Ordering::SeqCst), 0);
        assert!(lock(&queue.set_ports.pending).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn r19_slot_waits_longer_than_the_call_timeout_cost_no_call() {
        // One slot, a 1 s call timeout, twenty calls of 500 ms queued at once: the last waits
        // 9.5 s for its slot. Every call is served, none cut, none withdrawn.
        let call_timeout = Duration::from_secs(1);
        let queue = DeviceQueue::new(1, 1, call_timeout);
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let queue = queue.clone();
                let budget = budget(Duration::from_secs(60), call_timeout);
                tokio::spawn(async move {
                    queue
                        .run(Class::Write, budget, async {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            Ok(())
                        })
                        .await
                })
            })
            .collect();
        let started = Instant::now();
        for call in calls {
            assert!(call.await.unwrap().is_ok());
        }
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn r19_a_device_too_slow_for_the_budget_says_how_slow() {
        let call_timeout = Duration::from_secs(5);
        let queue = DeviceQueue::new(2, 1, call_timeout);
        let calls: Vec<_> = (0..10)
            .map(|_| {
                let queue = queue.clone();
                let budget = budget(Duration::from_secs(3), call_timeout);
                tokio::spawn(async move {
                    queue
                        .run(Class::Write, budget, async {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                            Ok(())
                        })
                        .await
                })
            })
            .collect();
        let mut refused = Vec::new();
        for call in calls {
            if let Err(e) = call.await.unwrap() {
                refused.push(e);
            }
        }
        // Two slots, 2 s calls, a 3 s budget: four calls are served (two at 0 s, two at 2 s).
        assert_eq!(refused.len(), 6);
        for e in &refused {
            assert_eq!(e.class, OutcomeClass::Unavailable);
            assert!(
                e.detail.contains("1.0 calls/s (2 at a time)"),
                "{}",
                e.detail
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn r15_writes_go_first_but_an_urgent_read_is_not_starved() {
        let queue = DeviceQueue::new(1, 1, Duration::from_secs(4));
        let held = queue.acquire(Class::Write, far()).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let waiter = |class: Class, name: &'static str, wait_until: Instant| {
            let (queue, order) = (queue.clone(), order.clone());
            tokio::spawn(async move {
                let _permit = queue.acquire(class, wait_until).await;
                lock(&order).push(name);
            })
        };
        let read = waiter(
            Class::Read,
            "read",
            Instant::now() + Duration::from_secs(10),
        );
        tokio::task::yield_now().await;
        let write = waiter(Class::Write, "write", far());
        tokio::task::yield_now().await;
        drop(held);
        write.await.unwrap();
        read.await.unwrap();
        assert_eq!(*lock(&order), ["write", "read"]);

        // The same, but the read's budget ends within one call timeout: it goes first.
        lock(&order).clear();
        let held = queue.acquire(Class::Write, far()).await;
        let read = waiter(
            Class::Read,
            "read",
            Instant::now() + Duration::from_secs(10),
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(6500)).await;
        let write = waiter(Class::Write, "write", far());
        tokio::task::yield_now().await;
        drop(held);
        write.await.unwrap();
        read.await.unwrap();
        assert_eq!(*lock(&order), ["read", "write"]);
    }

    #[tokio::test(start_paused = true)]
    async fn r20_watch_reads_are_served_after_every_other_class_even_when_due() {
        let queue = DeviceQueue::new(1, 1, Duration::from_secs(4));
        let held = queue.acquire(Class::Write, far()).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let waiter = |class: Class, name: &'static str, wait_until: Instant| {
            let (queue, order) = (queue.clone(), order.clone());
            tokio::spawn(async move {
                let _permit = queue.acquire(class, wait_until).await;
                lock(&order).push(name);
            })
        };
        // The watch read waits first and its budget is about to end: still served last.
        let watch = waiter(
            Class::Watch,
            "watch",
            Instant::now() + Duration::from_secs(1),
        );
        tokio::task::yield_now().await;
        let save = waiter(Class::Save, "save", far());
        let read = waiter(Class::Read, "read", far());
        let write = waiter(Class::Write, "write", far());
        tokio::task::yield_now().await;
        drop(held);
        for task in [write, read, save, watch] {
            task.await.unwrap();
        }
        assert_eq!(*lock(&order), ["write", "read", "save", "watch"]);
    }
}
