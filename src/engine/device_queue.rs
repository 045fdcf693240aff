//! Device queues (R15): each device's `max_concurrent` slots, handed out containment first, and
//! on switches that take several commands per request, the pending port changes (and reads) of
//! many operations carried by one call.
//!
//! Order of service, per device:
//! 1. **Writes** (vNIC and port moves, logins, resets): what isolates a NIC, so an outbreak's
//!    last NIC is contained as early as the device allows (semantics.md, Measures).
//! 2. **Reads** (verification, recovery, release): they confirm what writes did.
//! 3. **Config saves**: one save persists every port changed before it, so all pending saves
//!    of a switch share one call.
//!
//! A waiter older than [`PROMOTE_AT`] of its call timeout is served before younger ones of any
//! class, so a storm of writes cannot starve a verification read into a timeout (R19): the slot
//! wait counts against the call timeout, and a read that gets no slot in time proves nothing.
//!
//! Batching: a caller queues its item, then competes for a slot. Whoever gets the slot takes
//! the oldest pending items of its kind (up to the switch's `max_batch`) and makes one call for
//! all (after a [`BATCH_WINDOW`] when the call is not full); the others find their result
//! waiting. A caller whose item is still queued when its
//! timeout runs out withdraws it: `unavailable`, never sent. Once taken, an item's result comes
//! from the call that carried it, which is bounded by the taker's timeout.

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
}

const CLASSES: usize = 3;

/// The share of the call timeout after which a waiter goes first whatever its class: late
/// enough that a burst's writes all go before its reads, early enough to leave the read its slot.
pub(crate) const PROMOTE_AT: f64 = 0.8;

/// How long a call that is not full waits for more items before it goes out: long enough for
/// the detections of one burst to reach the queue, short beside any switch's latency.
pub(crate) const BATCH_WINDOW: Duration = Duration::from_millis(1);

struct Waiter {
    since: Instant,
    grant: oneshot::Sender<()>,
}

#[derive(Default)]
struct Slots {
    free: usize,
    waiting: [VecDeque<Waiter>; CLASSES],
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
}

/// The queue of one device.
pub(crate) struct DeviceQueue {
    slots: Mutex<Slots>,
    /// A waiter this old is served before younger ones of any class.
    promote_after: Duration,
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
    /// deciding when a waiter is promoted ([`PROMOTE_AT`]).
    pub fn new(concurrency: usize, batch: usize, call_timeout: Duration) -> Arc<DeviceQueue> {
        Arc::new(DeviceQueue {
            slots: Mutex::new(Slots {
                free: concurrency.max(1),
                waiting: Default::default(),
            }),
            promote_after: call_timeout.mul_f64(PROMOTE_AT),
            set_ports: BatchQueue::new(batch),
            get_ports: BatchQueue::new(batch),
            saves: BatchQueue::new(usize::MAX),
        })
    }

    /// Waits for a slot of `class`.
    pub async fn acquire(self: &Arc<Self>, class: Class) -> Permit {
        let grant = {
            let mut slots = lock(&self.slots);
            if slots.free > 0 {
                slots.free -= 1;
                return Permit {
                    queue: self.clone(),
                };
            }
            let (tx, rx) = oneshot::channel();
            slots.waiting[class as usize].push_back(Waiter {
                since: Instant::now(),
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

    /// Hands a freed slot to the next waiter: the oldest overdue one, else the first of the
    /// highest class; or puts it back.
    fn release(&self) {
        let mut slots = lock(&self.slots);
        let now = Instant::now();
        loop {
            let overdue = (0..CLASSES)
                .filter_map(|c| slots.waiting[c].front().map(|w| (w.since, c)))
                .filter(|(since, _)| now.saturating_duration_since(*since) >= self.promote_after)
                .min()
                .map(|(_, c)| c);
            let class = overdue.or_else(|| (0..CLASSES).find(|c| !slots.waiting[*c].is_empty()));
            let Some(class) = class else {
                slots.free += 1;
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

    /// Runs `call` under a slot of `class`, both the wait and the call bounded by `timeout`: no
    /// slot in time is `unavailable` (never sent), no reply in time is `unknown` (R8, R19).
    pub async fn run<T>(
        self: &Arc<Self>,
        class: Class,
        timeout: Duration,
        call: impl Future<Output = DeviceResult<T>>,
    ) -> DeviceResult<T> {
        let Ok(_permit) = tokio::time::timeout(timeout, self.acquire(class)).await else {
            return Err(no_slot(timeout));
        };
        bounded(timeout, call).await
    }

    /// Queues `item` on `queue` and returns its result, making the batched call with `call`
    /// whenever this caller gets the slot first (see the module docs).
    pub async fn batched<I, T, F, Fut>(
        self: &Arc<Self>,
        queue: &BatchQueue<I, T>,
        class: Class,
        item: I,
        timeout: Duration,
        call: F,
    ) -> DeviceResult<T>
    where
        T: Clone,
        F: Fn(Vec<I>) -> Fut,
        Fut: Future<Output = Vec<DeviceResult<T>>>,
    {
        let (tx, mut rx) = oneshot::channel();
        let id = queue.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&queue.pending).push_back(Pending {
            id,
            item,
            reply: tx,
        });
        let deadline = Instant::now() + timeout;
        loop {
            tokio::select! {
                biased;
                result = &mut rx => return result.unwrap_or_else(|_| Err(carrier_gone())),
                permit = self.acquire(class) => {
                    if queue.limit > 1 && lock(&queue.pending).len() < queue.limit {
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
                    let results = match tokio::time::timeout(timeout, call(items)).await {
                        Ok(results) => results,
                        Err(_) => vec![Err(no_reply(timeout)); count],
                    };
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
                () = tokio::time::sleep_until(deadline) => {
                    let withdrawn = {
                        let mut pending = lock(&queue.pending);
                        let before = pending.len();
                        pending.retain(|p| p.id != id);
                        pending.len() != before
                    };
                    if withdrawn {
                        return Err(no_slot(timeout));
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

fn no_slot(timeout: Duration) -> DeviceError {
    DeviceError::new(
        OutcomeClass::Unavailable,
        format!("no free device slot within {timeout:?}"),
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

    #[tokio::test(start_paused = true)]
    async fn r15_a_waiter_that_gives_up_does_not_keep_the_slot() {
        let queue = DeviceQueue::new(1, 1, Duration::from_secs(5));
        let held = queue.acquire(Class::Write).await;
        let gave_up =
            tokio::time::timeout(Duration::from_millis(10), queue.acquire(Class::Write)).await;
        assert!(gave_up.is_err());
        drop(held);
        let again =
            tokio::time::timeout(Duration::from_millis(1), queue.acquire(Class::Read)).await;
        assert!(again.is_ok(), "the slot went to a waiter that was gone");
    }

    #[tokio::test(start_paused = true)]
    async fn r19_a_queued_item_withdrawn_at_its_timeout_is_unavailable_and_never_sent() {
        let queue = DeviceQueue::new(1, 8, Duration::from_secs(5));
        let _held = queue.acquire(Class::Write).await;
        let sent = Arc::new(AtomicUsize::new(0));
        let counter = sent.clone();
        let result = queue
            .batched(
                &queue.set_ports,
                Class::Write,
                ("Ethernet1/1".to_string(), 910),
                Duration::from_secs(1),
                move |items: Vec<(String, u16)>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async move { vec![Ok(()); items.len()] }
                },
            )
            .await;
        assert_eq!(result.unwrap_err().class, OutcomeClass::Unavailable);
        assert_eq!(sent.load(Ordering::SeqCst), 0);
        assert!(lock(&queue.set_ports.pending).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn r15_writes_go_first_but_an_overdue_read_is_not_starved() {
        let queue = DeviceQueue::new(1, 1, Duration::from_secs(4));
        let held = queue.acquire(Class::Write).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let waiter = |class: Class, name: &'static str| {
            let (queue, order) = (queue.clone(), order.clone());
            tokio::spawn(async move {
                let _permit = queue.acquire(class).await;
                lock(&order).push(name);
            })
        };
        let read = waiter(Class::Read, "read");
        tokio::task::yield_now().await;
        let write = waiter(Class::Write, "write");
        tokio::task::yield_now().await;
        drop(held);
        write.await.unwrap();
        read.await.unwrap();
        assert_eq!(*lock(&order), ["write", "read"]);

        // The same, but the read has waited past 80 % of the call timeout: it goes first.
        lock(&order).clear();
        let held = queue.acquire(Class::Write).await;
        let read = waiter(Class::Read, "read");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(3300)).await;
        let write = waiter(Class::Write, "write");
        tokio::task::yield_now().await;
        drop(held);
        write.await.unwrap();
        read.await.unwrap();
        assert_eq!(*lock(&order), ["read", "write"]);
    }
}
