//! Journal schema versions and the migrations between them.
//!
//! The version is SQLite's `PRAGMA user_version` (in the file header, so reading it parses no
//! schema); `meta.schema_version` repeats it for readers using the `sqlite3` shell. Versions:
//!
//! | version | layout | how a file of it is recognised |
//! |---|---|---|
//! | 1 | the first layout: every table has a rowid, `device_calls.id` is AUTOINCREMENT | `user_version` 0, `meta.schema_version` "1", `lservers` not `WITHOUT ROWID` |
//! | 2 | tables keyed by text or a pair are `WITHOUT ROWID`, `device_calls` has no AUTOINCREMENT (fewer pages per commit) | `user_version` 0, `meta.schema_version` "1", `lservers` `WITHOUT ROWID` |
//! | 3 | `operations.requested_by`, `detections.submitted_by`: the API token that asked | `user_version` 3 |
//! | 4 | `nic_records.last_write`: a write that may have landed since the NIC's last read (R8) | `user_version` 4 |
//!
//! Builds before version 3 wrote `user_version` 0 and `meta.schema_version` "1" for both
//! physical layouts, so a file without a `user_version` is told apart by its `lservers` table.
//! Every migration runs in one transaction together with the new version number: a crash in
//! the middle leaves the file at the version before, and the next open runs it again. A
//! journal newer than [`CURRENT`] is refused before anything is written to it (an older binary
//! cannot know what a newer layout means); its message names the file and both versions.
//! Migrations only go forward: a journal migrated by this build is not read by older builds.

use rusqlite::{Connection, OptionalExtension};

use super::JournalError;

/// The schema version this build writes and reads.
pub const CURRENT: i64 = 4;

/// One step from `to - 1` to `to`.
struct Migration {
    to: i64,
    sql: &'static str,
}

/// Every migration, in order; `MIGRATIONS[i].to == i + 2`.
const MIGRATIONS: &[Migration] = &[
    Migration {
        to: 2,
        sql: TO_2_WITHOUT_ROWID,
    },
    Migration {
        to: 3,
        sql: TO_3_REQUESTERS,
    },
    Migration {
        to: 4,
        sql: TO_4_LAST_WRITE,
    },
];

/// Version 1 to 2: rebuilds the tables keyed by text or a pair as `WITHOUT ROWID` and
/// `device_calls` without AUTOINCREMENT, copying every row.
const TO_2_WITHOUT_ROWID: &str = "
ALTER TABLE plan_nics RENAME TO plan_nics_v1;
CREATE TABLE plan_nics (
    operation_id INTEGER NOT NULL, nic_index INTEGER NOT NULL,
    from_network TEXT NOT NULL, from_ip TEXT NOT NULL, to_network TEXT NOT NULL, to_ip TEXT NOT NULL,
    PRIMARY KEY (operation_id, nic_index)) WITHOUT ROWID;
INSERT INTO plan_nics (operation_id, nic_index, from_network, from_ip, to_network, to_ip)
    SELECT operation_id, nic_index, from_network, from_ip, to_network, to_ip FROM plan_nics_v1;
DROP TABLE plan_nics_v1;
ALTER TABLE ip_allocations RENAME TO ip_allocations_v1;
CREATE TABLE ip_allocations (
    network TEXT NOT NULL, ip TEXT NOT NULL, lserver TEXT NOT NULL, nic_index INTEGER NOT NULL,
    PRIMARY KEY (network, ip)) WITHOUT ROWID;
INSERT INTO ip_allocations (network, ip, lserver, nic_index)
    SELECT network, ip, lserver, nic_index FROM ip_allocations_v1;
DROP TABLE ip_allocations_v1;
ALTER TABLE nic_records RENAME TO nic_records_v1;
CREATE TABLE nic_records (
    lserver TEXT NOT NULL, nic_index INTEGER NOT NULL, network TEXT NOT NULL, ip TEXT NOT NULL,
    device_network TEXT, PRIMARY KEY (lserver, nic_index)) WITHOUT ROWID;
INSERT INTO nic_records (lserver, nic_index, network, ip, device_network)
    SELECT lserver, nic_index, network, ip, device_network FROM nic_records_v1;
DROP TABLE nic_records_v1;
ALTER TABLE lservers RENAME TO lservers_v1;
CREATE TABLE lservers (
    path TEXT PRIMARY KEY, state TEXT NOT NULL, status TEXT NOT NULL, outcome TEXT) WITHOUT ROWID;
INSERT INTO lservers (path, state, status, outcome)
    SELECT path, state, status, outcome FROM lservers_v1;
DROP TABLE lservers_v1;
ALTER TABLE device_calls RENAME TO device_calls_v1;
CREATE TABLE device_calls (
    id INTEGER PRIMARY KEY, operation_id INTEGER NOT NULL, nic_index INTEGER,
    device TEXT NOT NULL, call TEXT NOT NULL, target TEXT, outcome TEXT NOT NULL, detail TEXT,
    at_ms INTEGER NOT NULL);
INSERT INTO device_calls (id, operation_id, nic_index, device, call, target, outcome, detail, at_ms)
    SELECT id, operation_id, nic_index, device, call, target, outcome, detail, at_ms FROM device_calls_v1;
DROP TABLE device_calls_v1;
";

/// Version 2 to 3: who asked. NULL where nobody did through the API (operations queued by a
/// detection, detections from syslog and ePO, everything journaled before version 3).
const TO_3_REQUESTERS: &str = "
ALTER TABLE operations ADD COLUMN requested_by TEXT;
ALTER TABLE detections ADD COLUMN submitted_by TEXT;
";

/// Version 3 to 4: the write evidence a NIC carries into its next operation (R8, "evidence
/// across operations"). NULL for every record journaled before: those builds kept no such
/// evidence, and no write is known to be pending.
const TO_4_LAST_WRITE: &str = "
ALTER TABLE nic_records ADD COLUMN last_write TEXT;
";

/// The layout of version [`CURRENT`], for a new journal.
pub(super) const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE detections (
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, event_id TEXT NOT NULL,
    received_ms INTEGER NOT NULL, ip TEXT, mac TEXT, hostname TEXT, threat TEXT NOT NULL,
    category TEXT NOT NULL, lserver TEXT, disposition TEXT NOT NULL, operation_id INTEGER,
    submitted_by TEXT, UNIQUE (source, event_id));
CREATE TABLE operations (
    id INTEGER PRIMARY KEY, lserver TEXT NOT NULL, kind TEXT NOT NULL,
    detection_id INTEGER, status TEXT NOT NULL, phase TEXT, outcome TEXT, detail TEXT,
    created_ms INTEGER NOT NULL, started_ms INTEGER, deadline_ms INTEGER, finished_ms INTEGER,
    requested_by TEXT);
CREATE TABLE plan_nics (
    operation_id INTEGER NOT NULL, nic_index INTEGER NOT NULL,
    from_network TEXT NOT NULL, from_ip TEXT NOT NULL, to_network TEXT NOT NULL, to_ip TEXT NOT NULL,
    PRIMARY KEY (operation_id, nic_index)) WITHOUT ROWID;
CREATE TABLE ip_allocations (
    network TEXT NOT NULL, ip TEXT NOT NULL, lserver TEXT NOT NULL, nic_index INTEGER NOT NULL,
    PRIMARY KEY (network, ip)) WITHOUT ROWID;
CREATE TABLE nic_records (
    lserver TEXT NOT NULL, nic_index INTEGER NOT NULL, network TEXT NOT NULL, ip TEXT NOT NULL,
    device_network TEXT, last_write TEXT, PRIMARY KEY (lserver, nic_index)) WITHOUT ROWID;
CREATE TABLE lservers (
    path TEXT PRIMARY KEY, state TEXT NOT NULL, status TEXT NOT NULL, outcome TEXT) WITHOUT ROWID;
CREATE TABLE device_calls (
    id INTEGER PRIMARY KEY, operation_id INTEGER NOT NULL, nic_index INTEGER,
    device TEXT NOT NULL, call TEXT NOT NULL, target TEXT, outcome TEXT NOT NULL, detail TEXT,
    at_ms INTEGER NOT NULL);
CREATE TABLE alerts (
    seq INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, severity TEXT NOT NULL, code TEXT NOT NULL,
    lserver TEXT, ip TEXT, operation_id INTEGER, detail TEXT NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0);
CREATE INDEX operations_open ON operations (status) WHERE status <> 'done';
CREATE INDEX alerts_undelivered ON alerts (delivered) WHERE delivered = 0;
";

/// The file `conn` is on, for messages.
fn describe(conn: &Connection) -> String {
    match conn.path() {
        Some(path) if !path.is_empty() => path.to_string(),
        _ => "(in memory)".into(),
    }
}

/// The version of the journal on `conn`: `None` for an empty database.
pub fn version(conn: &Connection) -> Result<Option<i64>, JournalError> {
    let user_version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if user_version != 0 {
        return Ok(Some(user_version));
    }
    let has_meta = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if !has_meta {
        return Ok(None);
    }
    let recorded: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if recorded.as_deref() != Some("1") {
        return Err(JournalError::Corrupt(format!(
            "{}: no user_version and meta schema version {}: not a journal any qlab wrote",
            describe(conn),
            recorded.as_deref().unwrap_or("missing"),
        )));
    }
    let lservers: Option<String> = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'lservers'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let Some(lservers) = lservers else {
        return Err(JournalError::Corrupt(format!(
            "{}: schema version 1 without an lservers table",
            describe(conn)
        )));
    };
    let without_rowid = lservers.to_ascii_uppercase().contains("WITHOUT ROWID");
    Ok(Some(if without_rowid { 2 } else { 1 }))
}

/// Brings the journal on `conn` to [`CURRENT`]: creates it when empty, runs every migration
/// after its version, refuses one newer than this build. Returns the version found (`None`
/// for a new journal).
pub fn upgrade(conn: &Connection) -> Result<Option<i64>, JournalError> {
    let found = version(conn)?;
    match found {
        Some(v) if v == CURRENT => {}
        Some(v) if v > CURRENT => {
            return Err(JournalError::TooNew {
                path: describe(conn),
                found: v,
                supported: CURRENT,
            })
        }
        Some(v) if v < 1 => {
            return Err(JournalError::Corrupt(format!(
                "{}: schema version {v} was never written by qlab",
                describe(conn)
            )))
        }
        Some(v) => {
            for migration in MIGRATIONS.iter().filter(|m| m.to > v) {
                in_transaction(conn, migration.sql, migration.to).map_err(|e| {
                    JournalError::Corrupt(format!(
                        "{}: migrating the journal from schema version {} to {} failed: {e}",
                        describe(conn),
                        migration.to - 1,
                        migration.to
                    ))
                })?;
                tracing::info!(
                    journal = %describe(conn),
                    from = migration.to - 1,
                    to = migration.to,
                    "journal migrated"
                );
            }
        }
        None => {
            let create = format!(
                "{SCHEMA}INSERT INTO meta (key, value) VALUES ('schema_version', '{CURRENT}');"
            );
            in_transaction(conn, &create, CURRENT)?;
        }
    }
    Ok(found)
}

/// Runs `sql` and records `version` in one transaction.
fn in_transaction(conn: &Connection, sql: &str, version: i64) -> Result<(), rusqlite::Error> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let done = conn
        .execute_batch(sql)
        .and_then(|()| conn.pragma_update(None, "user_version", version))
        .and_then(|()| {
            conn.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
                [version.to_string()],
            )
            .map(drop)
        })
        .and_then(|()| conn.execute_batch("COMMIT"));
    if done.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_one_after_another_up_to_current() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.to, i as i64 + 2);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.to), Some(CURRENT));
    }
}
