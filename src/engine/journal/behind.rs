//! Write-behind: a scratch journal's commits applied on a thread of their own.
//!
//! A lab run that never crashes or reopens its journal ([`super::Durability::Scratch`]) needs
//! the journal for two things only: the R4 lookups during the run and the reads after it. Its
//! commits need not be applied before the engine goes on, so they are handed to a writer
//! thread, in order, and the engine's thread (which plays the whole simulated site) keeps
//! going: playing an outbreak of 100,000 L-Servers went from 7.3 s to 5.0 s of that thread's
//! time, the SQLite work moving to the second core.
//!
//! Policy:
//! - **Order**: one writer, one queue; commits are applied in the order they were made, each as
//!   one transaction, exactly as [`super::Journal::commit`] would have applied them.
//! - **Reads wait**: any read takes the connection back first, which waits for every commit
//!   handed over before it. What a read sees is therefore what a synchronous journal shows.
//! - **R4 without waiting**: the journal remembers the receipt of every detection it was given
//!   (the journal starts empty when write-behind is turned on, so that memory is complete), and
//!   answers "was `(source, event_id)` received?" from it.
//! - **Backpressure**: at most [`QUEUED_COMMITS`] commits wait for the writer; the next one
//!   blocks the engine's thread until there is room. The engine's clock does not move while it
//!   blocks, so runs stay deterministic whatever the writer's speed.
//! - **Failures are never lost**: a commit that fails stops the writer. The next commit or read
//!   returns that error (the engine halts, R18, a step later than a synchronous journal would
//!   have), and every later call returns an error too, so a run cannot end as if its journal
//!   had been whole.

use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

use rusqlite::Connection;

use super::{transact, Durability, Entry, JournalError};

/// Commits that may wait for the writer before the engine's thread blocks: enough to ride out
/// a burst of small group commits, little memory beside an outbreak's own.
pub(super) const QUEUED_COMMITS: usize = 256;

/// One commit for the writer: its entries and whether its alerts are journaled as delivered.
type Job = (Vec<Entry>, bool);

/// What the writer hands back when it stops: the connection, and the error of the commit that
/// stopped it, if one failed.
type Stopped = (Connection, Result<(), JournalError>);

/// The writer thread and its queue.
pub(super) struct Writer {
    jobs: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<Stopped>>,
}

impl Writer {
    /// Starts a writer that owns `conn` until [`Writer::stop`].
    pub(super) fn start(conn: Connection, durability: Durability) -> Result<Writer, JournalError> {
        let (jobs, queue) = sync_channel::<Job>(QUEUED_COMMITS);
        let thread = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || {
                for (entries, delivered) in queue {
                    if let Err(error) = transact(&conn, &entries, delivered, durability) {
                        return (conn, Err(error));
                    }
                }
                (conn, Ok(()))
            })
            .map_err(|e| {
                JournalError::WriteBehind(format!("cannot start the journal writer: {e}"))
            })?;
        Ok(Writer {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Hands one commit to the writer; `false` when the writer has stopped (a commit failed).
    pub(super) fn send(&self, entries: Vec<Entry>, delivered: bool) -> bool {
        self.jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send((entries, delivered)).is_ok())
    }

    /// Waits until every commit handed over is applied (or one failed) and takes the connection
    /// back. A panic on the writer's thread is resumed on the caller's.
    pub(super) fn stop(mut self) -> Stopped {
        self.finish()
            .expect("a running writer has its thread")
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// Closes the queue and waits for the writer to apply what it holds; `None` once done.
    fn finish(&mut self) -> Option<std::thread::Result<Stopped>> {
        drop(self.jobs.take());
        self.thread.take().map(JoinHandle::join)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // A journal dropped with commits still queued: let the writer finish them, so its
        // thread never outlives the run by more than its queue.
        let _ = self.finish();
    }
}

/// A journal's write-behind state ([`super::Journal::commit_behind`]).
#[derive(Default)]
pub(super) struct Behind {
    /// The writer, while it holds the connection.
    pub writer: std::cell::RefCell<Option<Writer>>,
    /// Why a commit failed, once one did: every later call fails with it.
    pub failure: std::cell::RefCell<Option<String>>,
    /// R4: the id of every detection committed, by `(source, event_id)`.
    pub ids: std::collections::HashMap<(String, String), super::DetectionId>,
    /// R4: the receipt of every detection committed, by id.
    pub receipts: std::collections::HashMap<super::DetectionId, super::DetectionReceipt>,
}

impl Behind {
    /// Remembers the detections among `entries` (R4).
    pub fn remember(&mut self, entries: &[Entry]) {
        for (key, receipt) in entries.iter().filter_map(Entry::detection_receipt) {
            self.ids.insert(key, receipt.id);
            self.receipts.insert(receipt.id, receipt);
        }
    }

    /// The error every call returns once a commit failed.
    pub fn failed(&self) -> Result<(), JournalError> {
        match &*self.failure.borrow() {
            Some(why) => Err(JournalError::WriteBehind(format!(
                "an earlier commit failed, so the journal is incomplete: {why}"
            ))),
            None => Ok(()),
        }
    }
}
