//! Crash points for `qlab run --crash-sweep`: the one place where a run counts its journal
//! commits and device calls, and where a sweep run crashes the engine exactly at one of them.
//!
//! A [`CrashTrap`] is shared by the world (every device call asks it first, see
//! [`super::SimWorld::set_crash_trap`]) and by the runner's history observer (every journal
//! commit is announced to it). Counting is global over the run: `commit 7` is the seventh journal
//! commit since the run began, whatever restarts came before (the engine's own commit counter
//! starts again at each open); `call 3` is the third device call the world received.
//!
//! When the run reaches its point the trap *trips*: it runs the runner's hook at once (which copies
//! the journal as it stands, so later commits of the doomed engine are lost as a real crash loses
//! them) and freezes the world: from then on until [`CrashTrap::thaw`] no call reaches a device,
//! no call in flight completes, and the observer drops every event after the next commit. The
//! runner wakes, drops the engine and restarts it later. Decisions the spec leaves open:
//! - after `commit k`, calls that were in flight never reach their device (the crash cut them
//!   on the wire); only the named call of an `in call k` point may have landed;
//! - for `call k`, whether the call landed on the device is drawn from the run's seed (stream
//!   `crash/landed`): the device then does what the fault plan says it would have done, and the
//!   reply is lost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

/// Where a sweep run crashes the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Right after the k-th journal commit of the run (from 1), once the commit's entries are
    /// announced.
    AfterCommit(u64),
    /// While the k-th device call of the run (from 1) is in flight.
    InCall(u64),
}

/// What the world does with a device call (see [`CrashTrap::on_call`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallFate {
    /// Nothing special: the call runs.
    Proceed,
    /// The engine has crashed: the call never leaves it (no history, no effect, no reply).
    Frozen,
    /// This call is the crash point: it is in flight when the engine dies.
    CrashHere,
}

/// Counts crash points and trips at one of them (module docs).
pub struct CrashTrap {
    point: Option<CrashPoint>,
    commits: AtomicU64,
    calls: AtomicU64,
    /// Set at the trip, cleared by [`CrashTrap::thaw`]: the world is frozen meanwhile.
    frozen: AtomicBool,
    /// A commit came after the trip: the observer drops everything until the thaw.
    muted: AtomicBool,
    /// The trip happened and the runner has not yet taken it.
    pending: AtomicBool,
    /// The trip happened at all (a point past the run's end never trips).
    fired: AtomicBool,
    notify: Notify,
    on_trip: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// In a counting trap, `<op> <device> <target>` of every call, in call order.
    labels: Option<Mutex<Vec<String>>>,
}

impl CrashTrap {
    /// A trap that never trips and remembers what each call was: a run's crash points.
    pub fn counting() -> CrashTrap {
        CrashTrap::build(None, Some(Mutex::new(Vec::new())))
    }

    /// A trap that trips at `point`.
    pub fn at(point: CrashPoint) -> CrashTrap {
        CrashTrap::build(Some(point), None)
    }

    fn build(point: Option<CrashPoint>, labels: Option<Mutex<Vec<String>>>) -> CrashTrap {
        CrashTrap {
            point,
            commits: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            frozen: AtomicBool::new(false),
            muted: AtomicBool::new(false),
            pending: AtomicBool::new(false),
            fired: AtomicBool::new(false),
            notify: Notify::new(),
            on_trip: Mutex::new(None),
            labels,
        }
    }

    /// The point this trap trips at (`None` for a counting trap).
    pub fn point(&self) -> Option<CrashPoint> {
        self.point
    }

    /// Runs `hook` synchronously at the trip, before anything else happens (the runner copies
    /// the journal there).
    pub fn set_on_trip(&self, hook: Box<dyn FnOnce() + Send>) {
        *self.on_trip.lock().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// Journal commits seen so far.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    /// Device calls seen so far (frozen ones excluded).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// `<op> <device> <target>` of each call of a counting trap, in call order.
    pub fn call_labels(&self) -> Vec<String> {
        self.labels
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }

    /// A journal commit was announced. Whether the observer keeps it (and what follows it): a
    /// commit after the trip is one the crash lost.
    pub fn on_commit(&self) -> bool {
        if self.frozen.load(Ordering::SeqCst) {
            self.muted.store(true, Ordering::SeqCst);
            return false;
        }
        let n = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
        if self.point == Some(CrashPoint::AfterCommit(n)) {
            self.trip();
        }
        true
    }

    /// Whether the observer drops events now (a commit came after the trip).
    pub fn muted(&self) -> bool {
        self.muted.load(Ordering::SeqCst)
    }

    /// Whether the world is frozen (tripped, not yet thawed).
    pub fn frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }

    /// A device call arrives; `label` describes it (asked only by a counting trap).
    pub fn on_call(&self, label: impl FnOnce() -> String) -> CallFate {
        if self.frozen.load(Ordering::SeqCst) {
            return CallFate::Frozen;
        }
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(labels) = &self.labels {
            labels
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(label());
        }
        if self.point == Some(CrashPoint::InCall(n)) {
            self.trip();
            return CallFate::CrashHere;
        }
        CallFate::Proceed
    }

    fn trip(&self) {
        self.frozen.store(true, Ordering::SeqCst);
        self.fired.store(true, Ordering::SeqCst);
        let hook = self
            .on_trip
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(hook) = hook {
            hook();
        }
        self.pending.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether the trap tripped during the run.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// Takes a trip the runner has not handled yet.
    pub fn take_pending(&self) -> bool {
        self.pending.swap(false, Ordering::SeqCst)
    }

    /// Whether a trip waits for the runner.
    pub fn is_pending(&self) -> bool {
        self.pending.load(Ordering::SeqCst)
    }

    /// Returns once the trap has tripped and the runner has not handled it yet.
    pub async fn tripped(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_pending() {
                return;
            }
            notified.await;
        }
    }

    /// The engine restarted: calls reach the devices again and events are kept.
    pub fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
        self.muted.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r16_a_trap_trips_once_at_its_commit_and_freezes_calls() {
        let trap = CrashTrap::at(CrashPoint::AfterCommit(2));
        assert!(trap.on_commit());
        assert_eq!(trap.on_call(String::new), CallFate::Proceed);
        assert!(!trap.is_pending());
        assert!(trap.on_commit());
        assert!(trap.take_pending());
        assert_eq!(trap.on_call(String::new), CallFate::Frozen);
        assert!(!trap.on_commit(), "a commit after the crash point is lost");
        assert!(trap.muted());
        trap.thaw();
        assert_eq!(trap.on_call(String::new), CallFate::Proceed);
        assert!(trap.on_commit());
        assert!(!trap.is_pending(), "a trap trips once");
        assert_eq!(trap.commits(), 3);
    }

    #[test]
    fn r16_a_counting_trap_names_every_call() {
        let trap = CrashTrap::counting();
        assert_eq!(
            trap.on_call(|| "get_nic vc-1 vm-1/nic-1".into()),
            CallFate::Proceed
        );
        assert_eq!(
            trap.on_call(|| "set_nic vc-1 vm-1/nic-1".into()),
            CallFate::Proceed
        );
        assert_eq!(trap.calls(), 2);
        assert_eq!(trap.call_labels()[1], "set_nic vc-1 vm-1/nic-1");
        assert!(!trap.fired());
    }
}
