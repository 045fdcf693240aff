//! Batching (R15): the pending items of one kind that a single call carries, on switches whose
//! protocol takes several commands per request (the module docs of `device_queue` say how).

use super::*;

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
    pub(super) fn new(limit: usize) -> BatchQueue<I, T> {
        BatchQueue {
            pending: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(0),
            limit: limit.max(1),
        }
    }

    pub(super) fn len(&self) -> usize {
        lock(&self.pending).len()
    }

    /// Takes the oldest items, as many as one call may carry.
    fn take(&self) -> Vec<Pending<I, T>> {
        let mut pending = lock(&self.pending);
        let n = pending.len().min(self.limit);
        pending.drain(..n).collect()
    }

    /// Takes item `id` back out of the queue; false when a call already carries it.
    fn withdraw(&self, id: u64) -> bool {
        let mut pending = lock(&self.pending);
        let before = pending.len();
        pending.retain(|p| p.id != id);
        pending.len() != before
    }
}

impl DeviceQueue {
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
                    let batch = queue.take();
                    if batch.is_empty() {
                        // Ours is on its way in another call; its result will come.
                        drop(permit);
                        return rx.await.unwrap_or_else(|_| Err(carrier_gone()));
                    }
                    let (items, replies): (Vec<I>, Vec<_>) =
                        batch.into_iter().map(|p| (p.item, p.reply)).unzip();
                    let results = self.call_batch(items, queued, &budget, &call).await;
                    drop(permit);
                    answer(replies, results);
                }
                () = tokio::time::sleep_until(budget.wait_until) => {
                    let withdrawn = queue.withdraw(id);
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

impl DeviceQueue {
    /// Makes one call for `items` within the call timeout; on timeout every item gets the same
    /// error (the call may have reached the device, R7).
    async fn call_batch<I, T, F, Fut>(
        &self,
        items: Vec<I>,
        queued: Instant,
        budget: &Budget,
        call: &F,
    ) -> Vec<DeviceResult<T>>
    where
        T: Clone,
        F: Fn(Vec<I>) -> Fut,
        Fut: Future<Output = Vec<DeviceResult<T>>>,
    {
        let count = items.len();
        let timeout = budget.call_timeout_now();
        let sent = Instant::now();
        let results = match tokio::time::timeout(timeout, call(items)).await {
            Ok(results) => results,
            Err(_) => {
                let waited = sent.saturating_duration_since(queued);
                let error = self.cut_short(no_reply(timeout), timeout, waited, budget);
                vec![Err(error); count]
            }
        };
        self.served(sent.elapsed());
        results
    }
}

/// Hands each caller its item's result, in queue order; an item the call left unanswered is
/// unknown.
fn answer<T>(replies: Vec<oneshot::Sender<DeviceResult<T>>>, results: Vec<DeviceResult<T>>) {
    let mut results = results.into_iter();
    for reply in replies {
        let result = results.next().unwrap_or_else(|| {
            Err(DeviceError::new(
                OutcomeClass::Unknown,
                "no result for this item",
            ))
        });
        // A caller that gave up has nobody to tell.
        let _ = reply.send(result);
    }
}

/// The call carrying an item ended without answering it (its task was cancelled): it may have
/// been sent, so only device truth can tell.
fn carrier_gone() -> DeviceError {
    DeviceError::new(
        OutcomeClass::Unknown,
        "the call carrying this change was cut off",
    )
}
