//! THE quarantine engine: intake of detections and commands, policy, planner, executor,
//! rollback, release, recovery, journal and alerts (rules R1–R19 of `docs/rules.md`).
//!
//! It knows devices only through the traits in [`crate::adapters`] and reads time only from
//! tokio's clock, so the same code runs in production, on the lab's paused clock and on the wire.

pub mod alerts;
mod allocator;
mod clock;
mod commands;
mod device_queue;
mod drift_watch;
mod executor;
mod group_commit;
mod intake;
pub mod journal;
mod operation;
mod recovery;
mod seen_detections;
mod state;
pub mod stats;
mod tasks;
pub mod types;
mod views;

use std::sync::Arc;

pub use alerts::{Alert, AlertCode, Severity};
pub use group_commit::{CLOSING_QUIET, CLOSING_WINDOW};
pub use journal::{Journal, JournalError};
pub use types::*;

use crate::model::PolicySpec;
use journal::Entry;
use state::{QueuedOp, Shared, State};

/// Something the engine did, for observers such as the lab's history recorder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEvent {
    /// A journal step committed; `commit` counts them since open.
    Committed {
        /// Commit number.
        commit: u64,
    },
    /// A detection was made durable (R7), or recognized as already journaled (R4).
    DetectionJournaled {
        /// The AV server.
        source: String,
        /// The sender's event id.
        event_id: String,
        /// What the engine acknowledged.
        receipt: DetectionReceipt,
    },
    /// An operation started: announced by the commit that makes its start durable, or at once
    /// when it resumes past its start after a restart.
    OperationStarted {
        /// Id.
        id: OperationId,
        /// L-Server.
        lserver: String,
        /// Kind.
        kind: OperationKind,
    },
    /// An operation ended.
    OperationFinished {
        /// Id.
        id: OperationId,
        /// L-Server.
        lserver: String,
        /// Outcome.
        outcome: Outcome,
    },
    /// An alert was journaled (R17).
    Alert(Alert),
    /// The journal failed or an engine task panicked; the engine stopped all device work.
    Halted {
        /// Why.
        reason: String,
    },
}

/// Receives [`EngineEvent`]s synchronously; must not block.
pub trait EngineObserver: Send + Sync {
    /// Called for every event, in order.
    fn on_event(&self, event: &EngineEvent);
}

/// How to run an engine beyond what the topology says.
#[derive(Clone)]
pub struct EngineOptions {
    /// Host name in syslog lines.
    pub hostname: String,
    /// Milliseconds that engine time reads at open (wall time in production, 0 in the lab).
    pub origin_ms: u64,
    /// Event observer.
    pub observer: Option<Arc<dyn EngineObserver>>,
    /// Most queued commands per L-Server; more are refused (R15 with a bound).
    pub max_lane_len: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            hostname: "qlab".into(),
            origin_ms: 0,
            observer: None,
            max_lane_len: 64,
        }
    }
}

/// Why the engine refused a request.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The journal failed; nothing was made durable.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The engine halted after a journal failure and accepts nothing more.
    #[error("the engine has halted after a journal failure")]
    Halted,
    /// The input is malformed or unknown (R18).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// No such L-Server.
    #[error("no L-Server {0}")]
    UnknownLServer(String),
    /// The command is not allowed in the L-Server's state.
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// Too many queued operations for one L-Server.
    #[error("too many queued operations for {0}")]
    QueueFull(String),
}

/// A running quarantine engine. Dropping it aborts every task at once, like a crash: the
/// journal is what survives (R16). Dropping is a crash only when the last handle goes and no
/// task of the engine runs on another thread at that moment; [`Engine::kill`] is a crash
/// whatever other handles and threads do.
pub struct Engine {
    shared: Arc<Shared>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        let mut tasks = self.shared.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.abort_all();
    }
}

impl Engine {
    /// Replaces the policy without a restart (the modelled product re-reads its policy file).
    pub fn set_policy(&self, policy: PolicySpec) {
        *self.shared.policy.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
    }

    /// Whether the engine halted (a journal failure or a task's panic).
    pub fn is_halted(&self) -> bool {
        self.shared.is_halted()
    }

    /// Why the engine halted, once it did.
    pub fn halt_reason(&self) -> Option<String> {
        self.shared
            .halt_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Resolves once the engine halted and said so (alert journaled, events emitted); at
    /// once when it has.
    pub async fn halted(&self) {
        loop {
            let notified = self.shared.halt_notice.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self
                .shared
                .halt_announced
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                return;
            }
            notified.await;
        }
    }

    /// Makes an engine task panic, to show that a panic halts the engine visibly. Only for
    /// tests of that path; nothing in the daemon calls it.
    #[doc(hidden)]
    pub fn panic_an_engine_task_for_tests(&self) {
        self.shared
            .spawn(async { panic!("a task panicked on purpose (test hook)") });
    }

    /// Ends the engine the way a process crash ends it, and returns once it is over: after
    /// this returns the engine commits nothing more and no task of it runs. A commit under way
    /// when it is called ends first and is announced, as one the process made durable before
    /// it died. The engine then stays halted for whoever still holds it.
    ///
    /// Dropping the engine is not enough for a crash inside one process (the lab's wire mode
    /// restarts the daemon in-process on the same journal): the daemon's request and intake
    /// tasks hold the engine until the runtime gets round to dropping them, and on a
    /// multi-thread runtime an aborted task that is running carries on to its next await. Both
    /// let the old engine commit after its successor read the journal: two engines on one
    /// journal, whose steps collide (R16 resumes what the old one is still doing).
    pub async fn kill(&self) {
        let shared = &self.shared;
        shared.set_halted("the engine was killed".into());
        {
            // Under the journal's lock: a commit under way ends first, and every later one
            // fails as if the process had died after the last (no statement reaches SQLite).
            let mut journal = shared.journal();
            let commits = journal.commits();
            journal.set_commit_limit(Some(commits));
        }
        // A committer announces its commit after the journal's lock is released: let it.
        loop {
            let done = shared.flush_done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if !shared.committing.load(std::sync::atomic::Ordering::Acquire) {
                break;
            }
            done.await;
        }
        let mut tasks =
            std::mem::take(&mut *shared.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        tasks.shutdown().await;
    }

    /// Waits until no operation is queued or running (or the engine halted).
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.shared.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.shared.is_halted() || self.shared.lock().running_lanes == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Mirrors committed `LServer` entries in memory.
fn apply_lserver_entries(state: &mut State, entries: &[Entry]) {
    for entry in entries {
        if let Entry::LServer {
            path,
            state: s,
            status,
            outcome,
        } = entry
        {
            let ls = state.ls(path);
            ls.state = *s;
            ls.status = status.clone();
            ls.outcome = *outcome;
        }
    }
}

/// Appends to an L-Server's lane and starts its worker when none runs (R15).
fn enqueue(shared: &Arc<Shared>, state: &mut State, path: &str, op: QueuedOp) {
    let ls = state.ls(path);
    ls.lane.push_back(op);
    if !ls.worker {
        ls.worker = true;
        state.running_lanes += 1;
        let s = shared.clone();
        let p = path.to_string();
        shared.spawn(operation::lane_worker(s, p));
    }
}
