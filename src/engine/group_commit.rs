//! Group commit (R7): every step is staged under the state lock and made durable by one
//! committer at a time, which gathers the steps staged meanwhile into one journal commit (one
//! fsync). What waits for a step ([`Waiting`]) decides how long its commit may wait for others.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::Instant;

use super::journal::{Entry, JournalError};
use super::state::{Halted, Shared, State};
use super::EngineEvent;

/// Whether the current runtime is multi-threaded (the daemon, the lab's wire mode) rather than
/// current-thread (the sim mode, paused clock), where a commit runs in place: there is nothing
/// else to run meanwhile, and a commit on another thread would let the paused clock move while
/// it waits.
fn multi_thread() -> bool {
    matches!(
        tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()),
        Ok(tokio::runtime::RuntimeFlavor::MultiThread)
    )
}

/// Runs a blocking call (a commit's fsync) without stalling the runtime: on a multi-thread
/// runtime the worker hands its other tasks to another thread first.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    if multi_thread() {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// How many times a committer yields at most while other tasks keep staging steps for its
/// commit. More yields mean fewer, larger commits (each an fsync and a set of WAL pages) at the
/// price of the first step's wait; measured with `qlab bench` (wire figure).
const GATHER_YIELDS: usize = 8;

/// How long a closing step waits for a commit that another step needs, while device calls wait
/// for slots and no other step is staged: calls queued behind a slow or hanging one may bring
/// no company for a long while, so the closing commits after this quiet spell, short beside any
/// device's latency.
pub const CLOSING_QUIET: std::time::Duration = std::time::Duration::from_millis(10);

/// The longest a closing step waits for company while other steps keep being staged (at least
/// one per [`CLOSING_QUIET`]), as in an outbreak whose closings come every few milliseconds.
/// Each commit is an fsync and rewrites the journal's hot pages (operations, records, alerts)
/// into the WAL, so fewer, larger commits leave the devices' callers more CPU (`qlab bench`, the
/// wire figure). Short beside a real device's latency (a vCenter reconfigure takes seconds) and
/// beside how soon anyone reads an INFO alert. Contained times do not move, and once no device
/// call waits for a slot a closing commits at once: the calls still on the wire are the
/// outbreak's last, and a commit made while they run no longer waits for them (in the wire
/// figure's rounds over TLS, a round's records were durable 0.5–0.9 ms after its last reply,
/// against 1.5–1.8 ms when the closings waited for every call to end).
pub const CLOSING_WINDOW: std::time::Duration = std::time::Duration::from_millis(50);

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
    /// commit another step needs while device calls wait for slots: for [`CLOSING_QUIET`] when
    /// no other step is staged meanwhile, for [`CLOSING_WINDOW`] at most while others keep
    /// coming; then, or once no call waits for a slot, it commits after one yield.
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

/// Records the closing steps among `entries`: each operation's `OperationFinished` is staged
/// exactly once, and only for the operation its L-Server's lane is running.
fn note_closings(state: &mut State, entries: &[Entry]) {
    for entry in entries {
        let Entry::OperationFinished { id, lserver, .. } = entry else {
            continue;
        };
        let Some(ls) = state.lservers.get_mut(lserver) else {
            continue;
        };
        assert!(
            ls.closed != Some(*id),
            "a closing step exactly once: operation {id} of {lserver} was closed twice"
        );
        debug_assert!(
            ls.running.as_ref().is_some_and(|r| r.id == *id),
            "a closing step closes the operation its lane runs: {id} of {lserver} is not running"
        );
        ls.closed = Some(*id);
    }
}

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
        Entry::Detection { .. } => {
            entry
                .detection_receipt()
                .map(
                    |((source, event_id), receipt)| EngineEvent::DetectionJournaled {
                        source,
                        event_id,
                        receipt,
                    },
                )
        }
        _ => None,
    }
}

impl Shared {
    /// Stages one step: its entries join the next group commit, after every step staged before
    /// it. The caller applies the step to memory under the same lock, and must await
    /// [`Shared::durable`] with the returned ticket before anything outside the engine may
    /// learn of it: a device call, an alert, an acknowledgement (R7).
    pub fn stage(&self, state: &mut State, entries: Vec<Entry>) -> Result<Ticket, Halted> {
        if self.is_halted() {
            return Err(Halted);
        }
        if !entries.is_empty() {
            note_closings(state, &entries);
            for (key, receipt) in entries.iter().filter_map(Entry::detection_receipt) {
                // Before its commit can start: from now on the pair is never called new (R4).
                if let Some(seen) = &mut state.seen_detections {
                    seen.insert(&key.0, &key.1);
                }
                state.pending_detections.insert(key, receipt);
            }
            state.pending.extend(entries);
            state.staged += 1;
        }
        Ok(state.staged)
    }

    /// Whether `ticket` may be waited for: never ahead of the steps staged so far, or
    /// [`Shared::durable`] would wait for a commit that nothing will make.
    fn ticket_is_staged(&self, ticket: Ticket) -> bool {
        ticket <= self.lock().staged
    }

    /// Returns once every step staged up to `ticket` is durable. The first waiter commits all
    /// staged steps in one transaction and one fsync (group commit) while the others wait; steps
    /// staged during that fsync go together in the next commit. `waiting` says how long the
    /// commit may wait for others to join it.
    pub async fn durable(self: &Arc<Self>, ticket: Ticket, waiting: Waiting) -> Result<(), Halted> {
        debug_assert!(
            self.ticket_is_staged(ticket),
            "R7: ticket {ticket} is ahead of the steps staged; its commit would never come"
        );
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
                self.commit_turn().await?;
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

    /// One committer's turn: [`Shared::flush`], then the next committer may start and the
    /// waiters wake. On a multi-thread runtime the turn runs on the blocking pool and this task
    /// awaits it: the workers go on with device calls meanwhile, and a task that stops waiting
    /// (its caller went away) cannot leave a turn half done, since the pool thread ends it. In
    /// place, `block_in_place` would hand the worker's other tasks to a new thread at every
    /// commit: the engine's rounds of the wire figure over TLS took 1–2 % longer that way, the
    /// two paths timed side by side, round for round.
    async fn commit_turn(self: &Arc<Self>) -> Result<(), Halted> {
        fn turn(shared: &Shared) -> Result<(), Halted> {
            let result = shared.flush();
            shared.committing.store(false, Ordering::Release);
            shared.flush_done.notify_waiters();
            result
        }
        if !multi_thread() {
            return turn(self);
        }
        let shared = self.clone();
        match tokio::task::spawn_blocking(move || turn(&shared)).await {
            Ok(result) => result,
            // A panic in a commit is a bug: it goes on up to the task's guard, which halts the
            // engine (`Shared::spawn`), as it did when the commit ran in place.
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // The runtime is shutting down: no commit will come.
            Err(_) => Err(Halted),
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

    /// Waits for a commit that carries `ticket` while device calls wait for slots (what they
    /// stage next may need one: a write after a failed call, a plan, a detection meanwhile):
    /// until a [`CLOSING_QUIET`] spell passes with no other step staged, or [`CLOSING_WINDOW`]
    /// at most.
    async fn ride_along(&self, ticket: Ticket) {
        let window_ends = Instant::now() + CLOSING_WINDOW;
        let mut staged = self.lock().staged;
        let mut quiet_ends = Instant::now() + CLOSING_QUIET;
        loop {
            let done = self.flush_done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            let drained = self.slot_waits.none_left.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.flushed.load(Ordering::Acquire) >= ticket
                || self.is_halted()
                || self.devices_idle()
                || !self.slot_waits.any()
            {
                return;
            }
            let woken = futures::future::select(done, drained);
            if tokio::time::timeout_at(quiet_ends.min(window_ends), woken)
                .await
                .is_ok()
            {
                // A commit ended (it may have carried this step), or the last call waiting
                // for a slot got one.
                continue;
            }
            let now = self.lock().staged;
            if now == staged || Instant::now() >= window_ends {
                return;
            }
            staged = now;
            quiet_ends = Instant::now() + CLOSING_QUIET;
        }
    }

    /// Commits every staged step as one transaction, holding the journal but not the state
    /// lock; blocking (the fsync), so run by [`Shared::commit_turn`]. On failure the engine
    /// halts: no device call may follow a step that is not durable (R7).
    fn flush(&self) -> Result<(), Halted> {
        let (batch, upto) = {
            let mut state = self.lock();
            // Swapped, not taken: the map emptied at the end of the last commit keeps its
            // room, so a burst's detections do not regrow (and rehash) a fresh map per commit.
            debug_assert!(
                state.inflight_detections.is_empty(),
                "R4: one commit at a time, and each empties its in-flight detections"
            );
            let state = &mut *state;
            std::mem::swap(
                &mut state.inflight_detections,
                &mut state.pending_detections,
            );
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
                // Announced as they become durable, in journal order, so an observer's history
                // holds what the journal holds even if the process dies right after; and before
                // `flushed` moves, so nothing a waiter does next is announced first. Built only
                // for an observer (the lab's): the daemon has none, and the events clone the
                // batch's alerts and names.
                if self.observer.is_some() {
                    self.emit(EngineEvent::Committed { commit });
                    for entry in &batch {
                        if let Some(event) = durable_event(entry) {
                            self.emit(event);
                        }
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
    pub(super) fn commit(&self, batch: &[Entry]) -> Result<u64, JournalError> {
        let mut journal = self.journal();
        blocking(|| journal.commit(batch).map(|()| journal.commits()))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::task::JoinHandle;

    use super::*;
    use crate::adapters::Adapters;
    use crate::engine::device_queue::{Class, DeviceQueue, Permit};
    use crate::engine::{Engine, EngineOptions, Journal};

    /// An idle engine on the test site, on an in-memory journal.
    async fn idle_engine() -> Engine {
        let site = crate::model::load_site(Path::new("fixtures/topologies/test-site.toml"))
            .expect("the test site loads");
        let journal = Journal::open_in_memory().expect("an in-memory journal opens");
        let engine = Engine::open(
            Arc::new(site),
            journal,
            Adapters::default(),
            EngineOptions::default(),
        )
        .expect("the engine opens");
        engine.wait_idle().await;
        engine
    }

    /// An idle engine on the test site, on a journal file with production durability (an
    /// fsync per commit) in `dir`.
    async fn idle_engine_on_file(dir: &Path) -> Engine {
        let site = crate::model::load_site(Path::new("fixtures/topologies/test-site.toml"))
            .expect("the test site loads");
        let journal = Journal::open(&dir.join("journal.sqlite")).expect("the journal opens");
        let engine = Engine::open(
            Arc::new(site),
            journal,
            Adapters::default(),
            EngineOptions::default(),
        )
        .expect("the engine opens");
        engine.wait_idle().await;
        engine
    }

    /// Stages a step that changes no row (a delivery mark of no alert); its ticket.
    fn stage_one(shared: &Shared) -> Ticket {
        let mut state = shared.lock();
        shared
            .stage(&mut state, vec![Entry::AlertDelivered { seq: 0 }])
            .expect("the engine runs")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn r7_a_waiter_that_goes_away_mid_commit_leaves_no_commit_half_done() {
        // A detection's caller may hang up while its step is being committed (the request's
        // task is dropped). The commit runs on the blocking pool; the turn must still end,
        // or the next step would wait for a committer that never comes back.
        let dir = tempfile::tempdir().expect("a temporary directory");
        let engine = idle_engine_on_file(dir.path()).await;
        let shared = engine.shared.clone();
        for round in 0..50u32 {
            let ticket = stage_one(&shared);
            let waiter = spawn_durable(&shared, ticket, Waiting::DeviceCall);
            // Drop the waiter once its commit is under way (or, rarely, once it is over).
            while !shared.committing.load(Ordering::Acquire)
                && shared.flushed.load(Ordering::Acquire) < ticket
            {
                tokio::task::yield_now().await;
            }
            for _ in 0..round % 3 {
                tokio::task::yield_now().await;
            }
            waiter.abort();
            let _ = waiter.await;
        }
        let last = stage_one(&shared);
        let settled = tokio::time::timeout(
            Duration::from_secs(10),
            shared.durable(last, Waiting::Reply),
        )
        .await;
        assert!(
            matches!(settled, Ok(Ok(()))),
            "a step staged after aborted waiters was not made durable: {settled:?}"
        );
        assert!(
            !shared.committing.load(Ordering::Acquire),
            "no commit is left in progress"
        );
    }

    /// A task waiting, as `waiting` does, for the step of `ticket` to be durable.
    fn spawn_durable(
        shared: &Arc<Shared>,
        ticket: Ticket,
        waiting: Waiting,
    ) -> JoinHandle<Result<(), Halted>> {
        let shared = shared.clone();
        tokio::spawn(async move { shared.durable(ticket, waiting).await })
    }

    /// A device with one slot, held by a call on the wire, and a second call waiting for it:
    /// the held slot (drop it to let the waiter in) and the waiter's task.
    async fn a_call_waiting_for_a_slot(shared: &Arc<Shared>) -> (Permit, JoinHandle<()>) {
        let queue = DeviceQueue::new(1, 1, Duration::from_secs(5), shared.slot_waits.clone());
        let far = Instant::now() + Duration::from_secs(3600);
        let held = queue.acquire(Class::Write, far).await;
        let waiter = tokio::spawn({
            let queue = queue.clone();
            async move {
                let _slot = queue.acquire(Class::Write, far).await;
            }
        });
        while !shared.slot_waits.any() {
            tokio::task::yield_now().await;
        }
        (held, waiter)
    }

    #[tokio::test(start_paused = true)]
    async fn r7_a_closing_commits_at_once_when_no_call_waits_for_a_slot() {
        let engine = idle_engine().await;
        let shared = engine.shared.clone();
        // A call on the wire, none waiting: the closing has nobody coming to share a commit.
        let _call = shared.call_started();
        let ticket = stage_one(&shared);
        let start = Instant::now();
        shared
            .durable(ticket, Waiting::Closing)
            .await
            .expect("durable");
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "the closing waited beside a call that was already on the wire"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn r7_a_closing_commits_once_the_last_waiting_call_gets_its_slot() {
        let engine = idle_engine().await;
        let shared = engine.shared.clone();
        let _call = shared.call_started();
        let (held, waiter) = a_call_waiting_for_a_slot(&shared).await;
        let ticket = stage_one(&shared);
        let closing = spawn_durable(&shared, ticket, Waiting::Closing);
        let start = Instant::now();
        let slot_free_after = CLOSING_QUIET / 2;
        tokio::time::sleep(slot_free_after).await;
        assert!(
            shared.flushed.load(Ordering::Acquire) < ticket,
            "the closing committed while a call still waited for a slot"
        );
        drop(held);
        closing.await.expect("the task ends").expect("durable");
        assert_eq!(
            start.elapsed(),
            slot_free_after,
            "the closing did not commit when the last waiting call got its slot"
        );
        waiter.await.expect("the waiter gets its slot");
        assert!(
            !shared.slot_waits.any(),
            "no call is left counted as waiting"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn r7_a_closing_rides_along_while_other_steps_keep_coming_up_to_its_window() {
        let engine = idle_engine().await;
        let shared = engine.shared.clone();
        let _call = shared.call_started();
        let (_held, _waiter) = a_call_waiting_for_a_slot(&shared).await;
        let ticket = stage_one(&shared);
        let closing = spawn_durable(&shared, ticket, Waiting::Closing);
        let start = Instant::now();
        // Company every quarter of a quiet spell, as an outbreak's closings come; none of it
        // needs a commit of its own.
        while shared.flushed.load(Ordering::Acquire) < ticket {
            tokio::time::sleep(CLOSING_QUIET / 4).await;
            stage_one(&shared);
        }
        let waited = start.elapsed();
        assert!(
            waited > CLOSING_QUIET * 2 && waited <= CLOSING_WINDOW + CLOSING_QUIET / 4,
            "the closing committed after {waited:?}"
        );
        closing.await.expect("the task ends").expect("durable");
    }
}
