//! Device queue tests: slots, classes, urgency, budgets and batching (R15, R19, R20).

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

/// `count` writes of `takes` each, queued at once under one `budget`; their results in order.
async fn run_writes(
    queue: &Arc<DeviceQueue>,
    count: usize,
    budget: Budget,
    takes: Duration,
) -> Vec<DeviceResult<()>> {
    let calls: Vec<_> = (0..count)
        .map(|_| {
            let queue = queue.clone();
            tokio::spawn(async move {
                queue
                    .run(Class::Write, budget, async {
                        tokio::time::sleep(takes).await;
                        Ok(())
                    })
                    .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.expect("the call task panicked"));
    }
    results
}

/// A task that waits for a slot of `class` until `wait_until` and, once served, writes `name`
/// into `order`.
fn spawn_waiter(
    queue: &Arc<DeviceQueue>,
    order: &Arc<Mutex<Vec<&'static str>>>,
    (class, name): (Class, &'static str),
    wait_until: Instant,
) -> tokio::task::JoinHandle<()> {
    let (queue, order) = (queue.clone(), order.clone());
    tokio::spawn(async move {
        let _permit = queue.acquire(class, wait_until).await;
        lock(&order).push(name);
    })
}

#[tokio::test(start_paused = true)]
async fn r15_a_waiter_that_gives_up_does_not_keep_the_slot() {
    let queue = DeviceQueue::new(1, 1, Duration::from_secs(5), Arc::default());
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
    let queue = DeviceQueue::new(1, 8, Duration::from_secs(5), Arc::default());
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
    assert_eq!(queue.set_ports.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn r19_slot_waits_longer_than_the_call_timeout_cost_no_call() {
    // One slot, a 1 s call timeout, twenty calls of 500 ms queued at once: the last waits
    // 9.5 s for its slot. Every call is served, none cut, none withdrawn.
    let call_timeout = Duration::from_secs(1);
    let queue = DeviceQueue::new(1, 1, call_timeout, Arc::default());
    let budget = budget(Duration::from_secs(60), call_timeout);
    let started = Instant::now();
    let results = run_writes(&queue, 20, budget, Duration::from_millis(500)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn r19_a_device_too_slow_for_the_budget_says_how_slow() {
    let call_timeout = Duration::from_secs(5);
    let queue = DeviceQueue::new(2, 1, call_timeout, Arc::default());
    let budget = budget(Duration::from_secs(3), call_timeout);
    let results = run_writes(&queue, 10, budget, Duration::from_secs(2)).await;
    let refused: Vec<_> = results.into_iter().filter_map(Result::err).collect();
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
    let queue = DeviceQueue::new(1, 1, Duration::from_secs(4), Arc::default());
    let order = Arc::new(Mutex::new(Vec::new()));
    // A read with a 10 s budget waits behind a held slot; a write arrives later. Within one
    // call timeout (4 s) of the end of its budget, the read goes first.
    for (write_after, served) in [(0, ["write", "read"]), (6500, ["read", "write"])] {
        lock(&order).clear();
        let held = queue.acquire(Class::Write, far()).await;
        let read = spawn_waiter(
            &queue,
            &order,
            (Class::Read, "read"),
            Instant::now() + Duration::from_secs(10),
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(write_after)).await;
        let write = spawn_waiter(&queue, &order, (Class::Write, "write"), far());
        tokio::task::yield_now().await;
        drop(held);
        write.await.unwrap();
        read.await.unwrap();
        assert_eq!(*lock(&order), served, "write after {write_after} ms");
    }
}

#[tokio::test(start_paused = true)]
async fn r20_watch_reads_are_served_after_every_other_class_even_when_due() {
    let queue = DeviceQueue::new(1, 1, Duration::from_secs(4), Arc::default());
    let held = queue.acquire(Class::Write, far()).await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let waiter = |class: Class, name: &'static str, wait_until: Instant| {
        spawn_waiter(&queue, &order, (class, name), wait_until)
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

#[tokio::test(start_paused = true)]
async fn r15_a_waiter_that_gave_up_leaves_the_count_when_the_slot_comes_free() {
    let waits = Arc::new(SlotWaits::default());
    let queue = DeviceQueue::new(1, 1, Duration::from_secs(5), waits.clone());
    let held = queue.acquire(Class::Write, far()).await;
    assert!(!waits.any(), "a call that got a slot at once never waited");
    let gave_up =
        tokio::time::timeout(Duration::from_millis(10), queue.acquire(Class::Read, far())).await;
    assert!(gave_up.is_err(), "the slot was held: the wait ran out");
    assert!(
        waits.any(),
        "a waiter that gave up stays in line until a free slot passes it over"
    );
    drop(held);
    assert!(
        !waits.any(),
        "the free slot passed the waiter that gave up over, and the count says so"
    );
    let again =
        tokio::time::timeout(Duration::from_millis(1), queue.acquire(Class::Write, far())).await;
    assert!(again.is_ok(), "the slot went back to the queue");
}
