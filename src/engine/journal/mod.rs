//! The write-ahead journal (R7): one SQLite file in WAL mode with `synchronous = FULL`.
//!
//! The engine builds each step as a list of [`Entry`] values and commits it as one transaction,
//! so a step is either wholly durable or absent: never a half-written entry. Device calls happen
//! only after the step that plans them has committed. The schema is plain tables that the
//! `sqlite3` shell reads; it is documented in ARCHITECTURE.md.

use std::cell::{Ref, RefCell};
use std::path::Path;

use rusqlite::Connection;

mod behind;
mod entry;
pub mod migrate;
mod read;
mod write;

pub use entry::*;
use write::{apply, Statements};

use super::alerts::{Alert, AlertCode};
use super::types::*;

/// The schema version this build reads and writes (`PRAGMA user_version`).
pub use migrate::CURRENT as SCHEMA_VERSION;

/// A journal failure. The engine stops all device work on any of these: without the journal it
/// cannot keep R7.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// SQLite reported an error.
    #[error("journal: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file holds data this version cannot read.
    #[error("journal: {0}")]
    Corrupt(String),
    /// The journal was written by a newer build: its layout is unknown here, so nothing is
    /// read or written.
    #[error("journal {path}: schema version {found} is newer than the {supported} this qlab supports; run the release that wrote it, or restore a backup of the journal taken before the upgrade")]
    TooNew {
        /// The journal file.
        path: String,
        /// The version in the file.
        found: i64,
        /// The newest version this build reads.
        supported: i64,
    },
    /// The configured commit limit was reached (crash injection for tests and the lab).
    #[error("journal: halted after {0} commits (crash injection)")]
    Halted(u64),
    /// Write-behind (the lab's large runs) was refused, or its writer failed: the journal no
    /// longer holds every commit.
    #[error("journal: {0}")]
    WriteBehind(String),
}

/// R4: the id of an already received `(source, event_id)`.
const FIND_DETECTION: &str = "SELECT id FROM detections WHERE source = ?1 AND event_id = ?2";

/// R4: what a journaled detection was acknowledged with.
const DETECTION_RECEIPT: &str =
    "SELECT disposition, lserver, operation_id FROM detections WHERE id = ?1";

/// The journal file.
pub struct Journal {
    /// The connection; `None` while a write-behind writer holds it ([`Journal::conn`] takes it
    /// back).
    conn: RefCell<Option<Connection>>,
    /// Write-behind, once [`Journal::commit_behind`] turned it on.
    behind: Option<behind::Behind>,
    /// How far commits survive; a [`Durability::Scratch`] journal cannot roll back.
    durability: Durability,
    commits: u64,
    commit_limit: Option<u64>,
    /// Alerts are journaled as delivered: the engine has nowhere to send them (no syslog, no
    /// mail), so there is nothing to deliver and no mark to commit later.
    alerts_delivered_at_insert: bool,
}

/// How far a commit is durable before `commit` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync on every commit: survives power loss (production, `qlab engine serve`).
    PowerLoss,
    /// Handed to the operating system on every commit, no fsync: survives the process dying,
    /// not the machine. For journals whose crashes drop the engine, not the OS (the lab, whose
    /// journals are in memory anyway, and the benches' no-fsync diagnostic).
    ProcessCrash,
    /// Nothing outlives the engine, and there is no rollback journal either: for a private
    /// in-memory journal that dies with its one engine (the lab's runs that never crash or
    /// reopen it). Copying every page a step touches into a rollback journal cost about 5 % of
    /// an outbreak run's CPU for an undo that only a failed commit needs, and a failed commit
    /// halts the engine (R18): the entries applied before the failure stay, seen only by that
    /// halted engine and by the checker of a run that already failed.
    Scratch,
}

impl Journal {
    /// Opens or creates the journal at `path`, fsyncing every commit (R7).
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        Self::open_with(path, Durability::PowerLoss)
    }

    /// Opens or creates the journal at `path` with the given durability.
    pub fn open_with(path: &Path, durability: Durability) -> Result<Journal, JournalError> {
        let conn = Connection::open(path)?;
        let journal = Self::init(conn, durability)?;
        // A journal on a file is a long-running engine's: its first burst after a start waits
        // for the first commit (R7), and should not wait for parsing too.
        write::prepare_all(&*journal.conn()?)?;
        Ok(journal)
    }

    /// Opens the journal on an already open connection (an in-memory database the caller
    /// seeded with [`Journal::seed`], say).
    pub fn from_connection(
        conn: Connection,
        durability: Durability,
    ) -> Result<Journal, JournalError> {
        Self::init(conn, durability)
    }

    /// Opens a journal in memory (tests and throwaway runs; not durable).
    pub fn open_in_memory() -> Result<Journal, JournalError> {
        Self::init(Connection::open_in_memory()?, Durability::PowerLoss)
    }

    fn init(conn: Connection, durability: Durability) -> Result<Journal, JournalError> {
        // Durability first: switching a new file to WAL already writes it, and must not fsync
        // a journal that is meant to be OS-buffered. WAL keeps readers off the writer's back;
        // FULL makes every commit durable (R7).
        let (synchronous, journal_mode) = match durability {
            Durability::PowerLoss => ("FULL", "WAL"),
            Durability::ProcessCrash => ("OFF", "WAL"),
            Durability::Scratch => ("OFF", "OFF"),
        };
        conn.pragma_update(None, "synchronous", synchronous)?;
        conn.pragma_update(None, "journal_mode", journal_mode)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // A journal at the current version (a restart, a seeded file) reads one header field
        // and skips the DDL: parsing it cost more than a small lab run's whole work.
        migrate::upgrade(&conn)?;
        // Room for every statement `write::apply` runs, so none is parsed twice.
        conn.set_prepared_statement_cache_capacity(64);
        Ok(Journal {
            conn: RefCell::new(Some(conn)),
            behind: None,
            durability,
            commits: 0,
            commit_limit: None,
            alerts_delivered_at_insert: false,
        })
    }

    /// A second, query-only connection to the same journal file, for lookups that must not
    /// wait behind a commit: WAL lets it read the last committed state while the writer holds
    /// its fsync. `None` for a journal that is not a file on disk (in memory, or a lab journal
    /// shared in memory), whose commits never block a thread for long.
    pub fn open_reader(&self) -> Result<Option<Journal>, JournalError> {
        let conn = self.conn()?;
        let Some(path) = conn.path().filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let path = Path::new(path);
        if !path.is_file() {
            return Ok(None);
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "query_only", true)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(16);
        // Prepared now, so the first detection after a start does not pay for reading the
        // schema and parsing its lookups.
        conn.prepare_cached(FIND_DETECTION)?;
        conn.prepare_cached(DETECTION_RECEIPT)?;
        Ok(Some(Journal {
            conn: RefCell::new(Some(conn)),
            behind: None,
            durability: Durability::ProcessCrash,
            commits: 0,
            commit_limit: None,
            alerts_delivered_at_insert: false,
        }))
    }

    /// Writes an empty journal (schema and version) into `conn` by copying a template built
    /// once per thread, so a caller that creates many journals (the lab: one per run) does not
    /// parse the schema each time. A journal opened on it afterwards finds its schema ready.
    pub fn seed(conn: &mut Connection) -> Result<(), JournalError> {
        thread_local! {
            static TEMPLATE: Result<Connection, String> = Connection::open_in_memory()
                .map_err(|e| e.to_string())
                .and_then(|c| {
                    Journal::init(c, Durability::ProcessCrash)
                        .map_err(|e| e.to_string())
                        .and_then(|j| {
                            j.conn
                                .into_inner()
                                .ok_or_else(|| "a new journal holds its connection".to_string())
                        })
                });
        }
        TEMPLATE.with(|template| {
            let template = template
                .as_ref()
                .map_err(|e| JournalError::Corrupt(e.clone()))?;
            let backup = rusqlite::backup::Backup::new(template, conn)?;
            backup.run_to_completion(1_000, std::time::Duration::ZERO, None)?;
            Ok(())
        })
    }

    /// Makes every commit after the `limit`-th fail with [`JournalError::Halted`], as if the
    /// process died right after that step. The lab, the crash tests and `Engine::kill` use it.
    pub fn set_commit_limit(&mut self, limit: Option<u64>) {
        self.commit_limit = limit;
    }

    /// Journals every alert from now on as already delivered. The engine sets it when it has no
    /// alert output: an alert that goes nowhere is delivered the moment it is journaled, and
    /// marking it in a later step would cost a statement and a commit for nothing.
    pub fn set_alerts_delivered_at_insert(&mut self, delivered: bool) {
        self.alerts_delivered_at_insert = delivered;
    }

    /// Commits made through this handle.
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// Commits `entries` as one transaction: all or nothing. With write-behind on, the
    /// transaction is handed to the writer thread and applied after this returns (see
    /// [`Journal::commit_behind`]).
    pub fn commit(&mut self, entries: &[Entry]) -> Result<(), JournalError> {
        if let Some(limit) = self.commit_limit {
            if self.commits >= limit {
                return Err(JournalError::Halted(limit));
            }
        }
        if self.behind.is_some() {
            self.hand_over(entries)?;
        } else {
            let conn = self.conn()?;
            transact(
                &conn,
                entries,
                self.alerts_delivered_at_insert,
                self.durability,
            )?;
        }
        self.commits += 1;
        Ok(())
    }

    /// Turns write-behind on (the `behind` module): commits from now on are applied on a
    /// thread of their own while the caller goes on; reads wait for them. Only for a
    /// [`Durability::Scratch`] journal without a commit limit that holds no detection yet, so
    /// that R4 can be answered from memory; anything else is refused and stays synchronous.
    pub fn commit_behind(&mut self) -> Result<(), JournalError> {
        if self.durability != Durability::Scratch || self.commit_limit.is_some() {
            return Err(JournalError::WriteBehind(
                "write-behind is only for a scratch journal without a commit limit".into(),
            ));
        }
        if self.detection_count()? != 0 {
            return Err(JournalError::WriteBehind(
                "write-behind needs a journal that holds no detection yet".into(),
            ));
        }
        self.behind.get_or_insert_with(behind::Behind::default);
        Ok(())
    }

    /// Gives `entries` to the writer, starting it with the connection when it is not running.
    fn hand_over(&mut self, entries: &[Entry]) -> Result<(), JournalError> {
        let behind = self.behind.as_mut().expect("write-behind is on");
        behind.failed()?;
        let writer = behind.writer.get_mut();
        if writer.is_none() {
            let conn = self
                .conn
                .get_mut()
                .take()
                .expect("no writer: the connection is home");
            match behind::Writer::start(conn, self.durability) {
                Ok(started) => *writer = Some(started),
                Err(error) => {
                    // The connection went with the thread that never started: nothing can be
                    // read or written any more.
                    *behind.failure.get_mut() = Some(error.to_string());
                    return Err(error);
                }
            }
        }
        let sent = writer
            .as_ref()
            .is_some_and(|w| w.send(entries.to_vec(), self.alerts_delivered_at_insert));
        if !sent {
            // The writer stopped on a failed commit: taking the connection back says why.
            self.take_back()?;
            return Err(JournalError::WriteBehind(
                "the journal writer stopped".into(),
            ));
        }
        behind.remember(entries);
        Ok(())
    }

    /// The connection, taken back from the writer first (which waits for every commit handed
    /// to it); an error when a commit failed on the writer.
    fn conn(&self) -> Result<Ref<'_, Connection>, JournalError> {
        self.take_back()?;
        Ok(Ref::map(self.conn.borrow(), |conn| {
            conn.as_ref()
                .expect("the connection is home once taken back")
        }))
    }

    /// Stops the writer, if one runs, and puts the connection back.
    fn take_back(&self) -> Result<(), JournalError> {
        let Some(behind) = &self.behind else {
            return Ok(());
        };
        // Checked before borrowing mutably: a read inside another read finds the connection
        // home already, and the outer read holds a borrow of it.
        let running = behind.writer.borrow().is_some();
        if running {
            let writer = behind.writer.borrow_mut().take();
            if let Some(writer) = writer {
                let (conn, stopped) = writer.stop();
                *self.conn.borrow_mut() = Some(conn);
                if let Err(error) = stopped {
                    *behind.failure.borrow_mut() = Some(error.to_string());
                    return Err(error);
                }
            }
        }
        behind.failed()
    }
}

/// Applies `entries` on `conn` as one transaction: all or nothing.
fn transact(
    conn: &Connection,
    entries: &[Entry],
    alerts_delivered: bool,
    durability: Durability,
) -> Result<(), JournalError> {
    // BEGIN / COMMIT through the statement cache: a transaction per group commit, so their
    // parsing showed in profiles of the lab.
    conn.prepare_cached("BEGIN")?.execute([])?;
    let mut statements = Statements::new(conn, entries);
    let applied = entries
        .iter()
        .try_for_each(|entry| apply(&mut statements, entry, alerts_delivered));
    // Back to the connection's cache, where the next commit finds them.
    drop(statements);
    let committed = applied.and_then(|()| conn.prepare_cached("COMMIT")?.execute([]));
    if let Err(error) = committed {
        // All or nothing: a failed step leaves no trace (R7, R18). A scratch journal has
        // no undo (ROLLBACK is undefined without a rollback journal): it ends the
        // transaction as it stands, for its engine halts now.
        if !conn.is_autocommit() {
            let end = match durability {
                Durability::Scratch => "COMMIT",
                Durability::PowerLoss | Durability::ProcessCrash => "ROLLBACK",
            };
            let _ = conn.execute_batch(end);
        }
        return Err(error.into());
    }
    Ok(())
}

type AlertRow = Result<Alert, JournalError>;

#[cfg(test)]
mod tests;
