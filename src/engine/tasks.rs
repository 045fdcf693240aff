//! Engine tasks and halting: every task is spawned through [`Shared::spawn`], so a panic halts
//! the whole engine visibly (alert, event, log) instead of leaving one L-Server stuck; a journal
//! failure halts it the same way.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::alerts::AlertCode;
use super::journal::{Entry, JournalError};
use super::state::Shared;
use super::EngineEvent;

impl Shared {
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
    pub(super) fn set_halted(&self, reason: String) -> bool {
        let first = !self.halted.swap(true, Ordering::SeqCst);
        if first {
            *self.halt_reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
        }
        self.idle.notify_waiters();
        self.flush_done.notify_waiters();
        first
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
        // Boxed first: an operation's lane future holds its device calls' futures and runs to
        // kilobytes, and moving it by value into the guard and then into the task copied it
        // twice per operation (profiles of a detection burst).
        let fut = Box::pin(fut);
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
