//! The write-ahead journal (R7): one SQLite file in WAL mode with `synchronous = FULL`.
//!
//! The engine builds each step as a list of [`Entry`] values and commits it as one transaction,
//! so a step is either wholly durable or absent: never a half-written entry. Device calls happen
//! only after the step that plans them has committed. The schema is plain tables that the
//! `sqlite3` shell reads; it is documented in ARCHITECTURE.md.

use std::net::IpAddr;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

mod entry;
pub mod migrate;

pub use entry::*;

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
}

/// R4: the id of an already received `(source, event_id)`.
const FIND_DETECTION: &str = "SELECT id FROM detections WHERE source = ?1 AND event_id = ?2";

/// R4: what a journaled detection was acknowledged with.
const DETECTION_RECEIPT: &str =
    "SELECT disposition, lserver, operation_id FROM detections WHERE id = ?1";

/// The journal file.
pub struct Journal {
    conn: Connection,
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
}

impl Journal {
    /// Opens or creates the journal at `path`, fsyncing every commit (R7).
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        Self::open_with(path, Durability::PowerLoss)
    }

    /// Opens or creates the journal at `path` with the given durability.
    pub fn open_with(path: &Path, durability: Durability) -> Result<Journal, JournalError> {
        let conn = Connection::open(path)?;
        Self::init(conn, durability)
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
        let synchronous = match durability {
            Durability::PowerLoss => "FULL",
            Durability::ProcessCrash => "OFF",
        };
        conn.pragma_update(None, "synchronous", synchronous)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // A journal at the current version (a restart, a seeded file) reads one header field
        // and skips the DDL: parsing it cost more than a small lab run's whole work.
        migrate::upgrade(&conn)?;
        // Room for every statement `entry::apply` runs, so none is parsed twice.
        conn.set_prepared_statement_cache_capacity(64);
        Ok(Journal {
            conn,
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
        let Some(path) = self.conn.path().filter(|p| !p.is_empty()) else {
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
            conn,
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
                        .map(|j| j.conn)
                        .map_err(|e| e.to_string())
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
    /// process died right after that step. The lab and the crash tests use it.
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

    /// Commits `entries` as one transaction: all or nothing.
    pub fn commit(&mut self, entries: &[Entry]) -> Result<(), JournalError> {
        if let Some(limit) = self.commit_limit {
            if self.commits >= limit {
                return Err(JournalError::Halted(limit));
            }
        }
        // BEGIN / COMMIT through the statement cache: a transaction per group commit, so their
        // parsing showed in profiles of the lab.
        self.conn.prepare_cached("BEGIN")?.execute([])?;
        let mut statements = Statements::new(&self.conn);
        let applied = entries
            .iter()
            .try_for_each(|entry| apply(&mut statements, entry, self.alerts_delivered_at_insert));
        // Back to the connection's cache, where the next commit finds them.
        drop(statements);
        let committed = applied.and_then(|()| self.conn.prepare_cached("COMMIT")?.execute([]));
        if let Err(error) = committed {
            // All or nothing: a failed step leaves no trace (R7, R18).
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            return Err(error.into());
        }
        self.commits += 1;
        Ok(())
    }

    /// The id of an already received `(source, event_id)` (R4).
    pub fn find_detection(
        &self,
        source: &str,
        event_id: &str,
    ) -> Result<Option<DetectionId>, JournalError> {
        // Cached: the daemon asks once per detection it receives.
        Ok(self
            .conn
            .prepare_cached(FIND_DETECTION)?
            .query_row(params![source, event_id], |r| r.get(0))
            .optional()?)
    }

    /// The disposition, L-Server and operation of a journaled detection.
    pub fn detection_receipt(
        &self,
        id: DetectionId,
    ) -> Result<Option<DetectionReceipt>, JournalError> {
        Ok(self
            .conn
            .prepare_cached(DETECTION_RECEIPT)?
            .query_row([id], |r| {
                let disposition: String = r.get(0)?;
                Ok(DetectionReceipt {
                    id,
                    disposition: parse_disposition(&disposition),
                    lserver: r.get(1)?,
                    operation: r.get(2)?,
                })
            })
            .optional()?)
    }

    /// Whether operation `operation` journaled an `ok` outcome of any of `calls` (R16: a reset
    /// that succeeded before a restart is not sent again).
    pub fn has_successful_call(
        &self,
        operation: OperationId,
        calls: &[&str],
    ) -> Result<bool, JournalError> {
        for call in calls {
            let found: Option<i64> = self
                .conn
                .query_row(
                    "SELECT id FROM device_calls WHERE operation_id = ?1 AND call = ?2 AND outcome = 'ok' LIMIT 1",
                    params![operation, call],
                    |r| r.get(0),
                )
                .optional()?;
            if found.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Number of journaled detections.
    pub fn detection_count(&self) -> Result<u64, JournalError> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM detections", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    /// One operation.
    pub fn operation(&self, id: OperationId) -> Result<Option<OperationView>, JournalError> {
        let row = self
            .conn
            .query_row(
                "SELECT lserver, kind, status, outcome, detail, requested_by FROM operations WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                    ))
                },
            )
            .optional()?;
        row.map(|(lserver, kind, status, outcome, detail, requested_by)| {
            Ok(OperationView {
                id,
                lserver,
                kind: parse_kind(&kind)?,
                status,
                outcome: outcome.as_deref().map(parse_outcome).transpose()?,
                detail,
                requested_by,
            })
        })
        .transpose()
    }

    /// Operations in id order (for reports and the API).
    pub fn operations(&self) -> Result<Vec<OperationView>, JournalError> {
        let mut stmt = self.conn.prepare("SELECT id FROM operations ORDER BY id")?;
        let ids: Vec<i64> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        ids.into_iter()
            .filter_map(|id| self.operation(id).transpose())
            .collect()
    }

    /// Alerts with `seq > since`, in order, at most `limit`.
    pub fn alerts_since(&self, since: i64, limit: usize) -> Result<Vec<Alert>, JournalError> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, at_ms, code, lserver, ip, operation_id, detail FROM alerts
             WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![since, limit as i64], read_alert)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row??);
        }
        Ok(out)
    }

    /// Reads what the engine keeps in memory.
    pub fn snapshot(&self) -> Result<Snapshot, JournalError> {
        let mut snap = Snapshot::default();
        let mut stmt = self
            .conn
            .prepare("SELECT path, state, status, outcome FROM lservers")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?;
        for row in rows {
            let (path, state, status, outcome) = row?;
            snap.lservers.push(LServerRow {
                path,
                state: LServerState::parse(&state)
                    .ok_or_else(|| JournalError::Corrupt(format!("unknown state {state:?}")))?,
                status,
                outcome: outcome.as_deref().map(parse_outcome).transpose()?,
            });
        }
        let mut stmt = self.conn.prepare(
            "SELECT lserver, nic_index, network, ip, device_network FROM nic_records ORDER BY lserver, nic_index",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        for row in rows {
            let (lserver, index, network, ip, device_network) = row?;
            snap.nic_records.push((
                lserver,
                NicRecord {
                    index: index as usize,
                    network,
                    ip: parse_ip(&ip)?,
                    device_network,
                },
            ));
        }
        let mut stmt = self.conn.prepare(
            "SELECT network, ip, lserver, nic_index FROM ip_allocations ORDER BY network, ip",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (network, ip, lserver, nic) = row?;
            snap.allocations
                .push((network, parse_ip(&ip)?, lserver, nic as usize));
        }
        let mut stmt = self.conn.prepare(
            "SELECT id, lserver, kind, status, phase, detection_id FROM operations
             WHERE status <> 'done' ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<i64>>(5)?,
            ))
        })?;
        for row in rows {
            let (id, lserver, kind, status, phase, detection) = row?;
            snap.open_operations.push(OpenOperation {
                id,
                lserver,
                kind: parse_kind(&kind)?,
                status,
                phase,
                detection,
                plan: Vec::new(),
            });
        }
        for op in &mut snap.open_operations {
            op.plan = self.plan(op.id)?;
        }
        let mut stmt = self.conn.prepare(
            "SELECT seq, at_ms, code, lserver, ip, operation_id, detail FROM alerts
             WHERE delivered = 0 ORDER BY seq",
        )?;
        for row in stmt.query_map([], read_alert)? {
            snap.undelivered_alerts.push(row??);
        }
        let max = |sql: &str| -> Result<i64, JournalError> {
            Ok(self
                .conn
                .query_row(sql, [], |r| r.get::<_, Option<i64>>(0))?
                .unwrap_or(0))
        };
        snap.next_detection_id = max("SELECT MAX(id) FROM detections")? + 1;
        snap.next_operation_id = max("SELECT MAX(id) FROM operations")? + 1;
        snap.next_alert_seq = max("SELECT MAX(seq) FROM alerts")? + 1;
        Ok(snap)
    }

    fn plan(&self, operation: OperationId) -> Result<Vec<PlanNic>, JournalError> {
        let mut stmt = self.conn.prepare(
            "SELECT nic_index, from_network, from_ip, to_network, to_ip FROM plan_nics
             WHERE operation_id = ?1 ORDER BY nic_index",
        )?;
        let rows = stmt.query_map([operation], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut plan = Vec::new();
        for row in rows {
            let (nic, from_network, from_ip, to_network, to_ip) = row?;
            plan.push(PlanNic {
                nic_index: nic as usize,
                from_network,
                from_ip: parse_ip(&from_ip)?,
                to_network,
                to_ip: parse_ip(&to_ip)?,
            });
        }
        Ok(plan)
    }
}

type AlertRow = Result<Alert, JournalError>;

fn read_alert(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertRow> {
    let seq: i64 = r.get(0)?;
    let at_ms: i64 = r.get(1)?;
    let code: String = r.get(2)?;
    let lserver: Option<String> = r.get(3)?;
    let ip: Option<String> = r.get(4)?;
    let operation: Option<i64> = r.get(5)?;
    let detail: String = r.get(6)?;
    Ok((|| {
        Ok(Alert {
            seq,
            at_ms: at_ms as u64,
            code: AlertCode::parse(&code)
                .ok_or_else(|| JournalError::Corrupt(format!("unknown alert code {code:?}")))?,
            lserver,
            ip: ip.as_deref().map(parse_ip).transpose()?,
            operation,
            detail,
        })
    })())
}

fn parse_ip(text: &str) -> Result<IpAddr, JournalError> {
    text.parse()
        .map_err(|_| JournalError::Corrupt(format!("bad IP address {text:?}")))
}

fn parse_kind(text: &str) -> Result<OperationKind, JournalError> {
    OperationKind::parse(text)
        .ok_or_else(|| JournalError::Corrupt(format!("unknown operation kind {text:?}")))
}

fn parse_outcome(text: &str) -> Result<Outcome, JournalError> {
    Outcome::parse(text).ok_or_else(|| JournalError::Corrupt(format!("unknown outcome {text:?}")))
}

fn parse_disposition(text: &str) -> Disposition {
    match text {
        "accepted" => Disposition::Accepted,
        "ignored" => Disposition::Ignored,
        "not_found" => Disposition::NotFound,
        "pending_decision" => Disposition::PendingDecision,
        _ => Disposition::Duplicate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Category, Detection};

    fn detection(event_id: &str) -> Detection {
        Detection {
            source: "osce".into(),
            event_id: event_id.into(),
            ip: Some("10.0.0.1".parse().unwrap()),
            mac: None,
            hostname: None,
            threat: "TROJ".into(),
            category: Category::Virus,
        }
    }

    #[test]
    fn r7_a_seeded_journal_is_a_complete_empty_journal_that_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seeded.sqlite");
        let mut conn = Connection::open(&path).unwrap();
        Journal::seed(&mut conn).unwrap();
        assert_eq!(migrate::version(&conn).unwrap(), Some(SCHEMA_VERSION));
        let mut journal = Journal::open(&path).unwrap();
        let step = [Entry::Detection {
            id: 1,
            detection: detection("e-1"),
            received_ms: 0,
            lserver: None,
            disposition: Disposition::NotFound,
            operation: None,
            submitted_by: None,
        }];
        journal.commit(&step).unwrap();
        drop(journal);
        let reopened = Journal::open(&path).unwrap();
        assert_eq!(reopened.find_detection("osce", "e-1").unwrap(), Some(1));
    }

    #[test]
    fn r4_the_reader_sees_every_commit_and_writes_nothing() {
        assert!(Journal::open_in_memory()
            .unwrap()
            .open_reader()
            .unwrap()
            .is_none());
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(&dir.path().join("journal.sqlite")).unwrap();
        let reader = journal
            .open_reader()
            .unwrap()
            .expect("a file journal has a reader");
        let entry = |id: i64, event_id: &str| Entry::Detection {
            id,
            detection: detection(event_id),
            received_ms: 0,
            lserver: None,
            disposition: Disposition::NotFound,
            operation: None,
            submitted_by: None,
        };
        journal.commit(&[entry(1, "e-1")]).unwrap();
        assert_eq!(reader.find_detection("osce", "e-1").unwrap(), Some(1));
        // Its cached statement must not pin an old snapshot: a later commit is seen too.
        journal.commit(&[entry(2, "e-2")]).unwrap();
        assert_eq!(reader.find_detection("osce", "e-2").unwrap(), Some(2));
        let mut reader = reader;
        let refused = reader.commit(&[entry(3, "e-3")]).err().unwrap();
        assert!(refused.to_string().contains("readonly"), "{refused}");
        assert_eq!(journal.find_detection("osce", "e-3").unwrap(), None);
    }

    #[test]
    fn a_journal_with_an_unknown_meta_version_and_no_user_version_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO meta (key, value) VALUES ('schema_version', '99');",
        )
        .unwrap();
        let error = Journal::init(conn, Durability::PowerLoss).err().unwrap();
        assert!(error.to_string().contains("schema version 99"), "{error}");
    }

    #[test]
    fn r7_a_step_is_all_or_nothing() {
        let mut j = Journal::open_in_memory().unwrap();
        let entry = |id| Entry::Detection {
            id,
            detection: detection("e-1"),
            received_ms: 0,
            lserver: None,
            disposition: Disposition::NotFound,
            operation: None,
            submitted_by: None,
        };
        j.commit(&[entry(1)]).unwrap();
        // The second entry repeats (source, event_id): the whole step must be rolled back.
        let queued = Entry::OperationQueued {
            id: 1,
            lserver: "/a".into(),
            kind: OperationKind::Quarantine,
            detection: None,
            created_ms: 0,
            requested_by: None,
        };
        assert!(j.commit(&[queued, entry(2)]).is_err());
        let snap = j.snapshot().unwrap();
        assert!(
            snap.open_operations.is_empty(),
            "half-written step survived"
        );
        assert_eq!(snap.next_detection_id, 2);
    }

    #[test]
    fn r16_commit_limit_halts_like_a_crash() {
        let mut j = Journal::open_in_memory().unwrap();
        j.set_commit_limit(Some(1));
        j.commit(&[]).unwrap();
        assert!(matches!(j.commit(&[]), Err(JournalError::Halted(1))));
    }

    #[test]
    fn r7_journal_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sqlite");
        {
            let mut j = Journal::open(&path).unwrap();
            j.commit(&[Entry::OperationQueued {
                id: 5,
                lserver: "/a".into(),
                kind: OperationKind::Release,
                detection: None,
                created_ms: 1,
                requested_by: None,
            }])
            .unwrap();
        }
        let j = Journal::open(&path).unwrap();
        let snap = j.snapshot().unwrap();
        assert_eq!(snap.open_operations.len(), 1);
        assert_eq!(snap.open_operations[0].kind, OperationKind::Release);
        assert_eq!(snap.next_operation_id, 6);
    }
}
