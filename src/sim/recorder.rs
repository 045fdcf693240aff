//! The run's history recorder: one append-only list of [`HistoryEvent`]s stamped with the
//! simulator's clock (milliseconds since the run started on the tokio clock, which is paused and
//! virtual in `sim` mode, so the stamps are deterministic).
//!
//! Every part of a run (the runner for engine events, the device models for calls and truth
//! changes) records into one shared recorder, so the history has one total order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::model::history::{EventKind, HistoryEvent};

/// Shared handle to a run's history. Cloning is cheap; every clone appends to the same history.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Mutex<RecorderState>>,
}

struct RecorderState {
    /// Run start on the tokio clock.
    origin: Instant,
    events: Vec<HistoryEvent>,
    /// Id of the next device call; ids start at 1 so 0 never names a call.
    next_call: u64,
    /// L-Servers whose release operation is running (INV-2 needs to know).
    releasing: BTreeSet<String>,
    /// Operations started and not finished, by L-Server (fault accounting needs to know).
    running: BTreeMap<String, BTreeSet<i64>>,
}

/// Locks a mutex even when a panicking thread poisoned it: the recorder's state stays
/// consistent after every single statement, so a poisoned lock carries no torn data.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// A recorder whose run starts now on the tokio clock. Call it inside the runtime that runs
    /// the scenario (with `start_paused` the clock is virtual).
    pub fn new() -> Recorder {
        Recorder::with_capacity(0)
    }

    /// A recorder with room for `events` before its history grows. A large run's history
    /// (about a dozen events per L-Server, over a million at 100,000) grown by doubling copies
    /// itself again and again and touches twice its size in fresh pages; room reserved up
    /// front is only address space until an event lands in it.
    pub fn with_capacity(events: usize) -> Recorder {
        Recorder {
            inner: Arc::new(Mutex::new(RecorderState {
                origin: Instant::now(),
                events: Vec::with_capacity(events),
                next_call: 1,
                releasing: BTreeSet::new(),
                running: BTreeMap::new(),
            })),
        }
    }

    /// Starts the run's clock again now and returns its new origin. Wire mode starts the
    /// scenario's clock once its simulators and engine are up, so that `at = "0s"` is the
    /// moment the engine can take a detection, as in sim mode, and not the start of the setup.
    /// Events recorded before it happened before the run began: they are stamped 0.
    pub fn restart_clock(&self) -> Instant {
        let mut state = lock(&self.inner);
        state.origin = Instant::now();
        for event in &mut state.events {
            event.at_ms = 0;
        }
        state.origin
    }

    /// Time since the run started.
    pub fn elapsed(&self) -> Duration {
        let origin = lock(&self.inner).origin;
        Instant::now().saturating_duration_since(origin)
    }

    /// Milliseconds since the run started.
    pub fn now_ms(&self) -> u64 {
        millis(self.elapsed())
    }

    /// Appends `kind`, stamped with the current run time.
    pub fn record(&self, kind: EventKind) {
        let mut state = lock(&self.inner);
        let at_ms = millis(Instant::now().saturating_duration_since(state.origin));
        state.events.push(HistoryEvent { at_ms, kind });
    }

    /// A call id not used before in this run.
    pub fn next_call_id(&self) -> u64 {
        let mut state = lock(&self.inner);
        let id = state.next_call;
        state.next_call = state.next_call.saturating_add(1);
        id
    }

    /// A copy of the history so far, in recording order.
    pub fn events(&self) -> Vec<HistoryEvent> {
        lock(&self.inner).events.clone()
    }

    /// Moves the history out, leaving the recorder empty: the end of a run hands its history
    /// to the checkers without copying it (a 100,000-L-Server history is over a million events).
    pub fn take_events(&self) -> Vec<HistoryEvent> {
        std::mem::take(&mut lock(&self.inner).events)
    }

    /// Number of events recorded so far (cheaper than `events().len()`).
    pub fn len(&self) -> usize {
        lock(&self.inner).events.len()
    }

    /// Whether nothing has been recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marks whether a release of `lserver` is running. The runner toggles it from engine events
    /// so that device truth changes can say whether they happened inside a release (INV-2).
    pub fn set_releasing(&self, lserver: &str, on: bool) {
        let mut state = lock(&self.inner);
        if on {
            state.releasing.insert(lserver.to_string());
        } else {
            state.releasing.remove(lserver);
        }
    }

    /// Marks operation `id` on `lserver` as running (`on`) or finished. An operation runs from
    /// its start to its finish, across engine crashes: an unfinished one resumes on restart.
    pub fn set_running(&self, lserver: &str, id: i64, on: bool) {
        let mut state = lock(&self.inner);
        if on {
            state
                .running
                .entry(lserver.to_string())
                .or_default()
                .insert(id);
        } else if let Some(ids) = state.running.get_mut(lserver) {
            ids.remove(&id);
            if ids.is_empty() {
                state.running.remove(lserver);
            }
        }
    }

    /// Whether an operation runs on `lserver`, or, for `None` (something that concerns no
    /// L-Server), on any L-Server.
    pub fn in_operation(&self, lserver: Option<&str>) -> bool {
        let state = lock(&self.inner);
        match lserver {
            Some(path) => state.running.contains_key(path),
            None => !state.running.is_empty(),
        }
    }

    /// Whether a release of `lserver` is running.
    pub fn is_releasing(&self, lserver: &str) -> bool {
        lock(&self.inner).releasing.contains(lserver)
    }
}

/// Whole milliseconds, saturating (a run never lasts 584 million years).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn stamps_follow_the_virtual_clock() {
        let r = Recorder::new();
        r.record(EventKind::Crash);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        r.record(EventKind::Restart);
        let events = r.events();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].at_ms, 0);
        assert_eq!(events[1].at_ms, 1500);
        assert_eq!(r.now_ms(), 1500);
    }

    #[tokio::test(start_paused = true)]
    async fn a_restarted_clock_stamps_from_its_new_origin() {
        // Wire mode's scenario clock starts when the engine can take a detection: an event at
        // the start of the run is stamped 0 however long the setup took.
        let r = Recorder::new();
        r.record(EventKind::Crash);
        tokio::time::sleep(Duration::from_millis(700)).await;
        let origin = r.restart_clock();
        assert_eq!(origin, Instant::now());
        r.record(EventKind::Restart);
        tokio::time::sleep(Duration::from_millis(40)).await;
        r.record(EventKind::Crash);
        let stamps: Vec<u64> = r.events().iter().map(|e| e.at_ms).collect();
        assert_eq!(
            stamps,
            vec![0, 0, 40],
            "setup event, start, 40 ms into the run"
        );
        assert_eq!(r.now_ms(), 40);
    }

    #[tokio::test(start_paused = true)]
    async fn call_ids_are_unique_and_release_flags_toggle() {
        let r = Recorder::new();
        let a = r.next_call_id();
        let b = r.clone().next_call_id();
        assert_ne!(a, b);
        assert!(!r.is_releasing("/t/x"));
        r.set_releasing("/t/x", true);
        assert!(r.is_releasing("/t/x"));
        r.set_releasing("/t/x", false);
        assert!(!r.is_releasing("/t/x"));
    }
}
