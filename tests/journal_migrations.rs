//! Journal migrations: a journal of every earlier schema version (fixtures/journals/vN.sql,
//! built with that version's own DDL) opens, migrates to the current version and keeps every
//! row; a journal newer than this build is refused untouched, naming file and versions.

use std::path::{Path, PathBuf};

use quarantine_lab::engine::journal::{migrate, Entry, Journal, JournalError, SCHEMA_VERSION};
use quarantine_lab::engine::{LServerState, OperationKind};
use rusqlite::Connection;

/// Builds the journal of `fixtures/journals/{name}.sql` in `dir`.
fn journal_from_fixture(dir: &Path, name: &str) -> PathBuf {
    let sql = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/journals/{name}.sql")),
    )
    .unwrap();
    let path = dir.join(format!("{name}.sqlite"));
    Connection::open(&path)
        .unwrap()
        .execute_batch(&sql)
        .unwrap();
    path
}

fn user_version(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

fn table_sql(path: &Path, table: &str) -> String {
    Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )
        .unwrap()
}

fn r7_migrates_keeping_every_row(name: &str, found: i64) {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_from_fixture(dir.path(), name);
    let conn = Connection::open(&path).unwrap();
    assert_eq!(migrate::version(&conn).unwrap(), Some(found));
    drop(conn);

    let mut journal = Journal::open(&path).unwrap();
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    assert!(table_sql(&path, "lservers").contains("WITHOUT ROWID"));
    assert!(!table_sql(&path, "device_calls").contains("AUTOINCREMENT"));
    assert!(table_sql(&path, "operations").contains("requested_by"));

    // Everything the engine resumes from is still there (R16).
    let snap = journal.snapshot().unwrap();
    assert_eq!(snap.open_operations.len(), 1);
    let open = &snap.open_operations[0];
    assert_eq!((open.id, open.kind), (2, OperationKind::Quarantine));
    assert_eq!(open.plan.len(), 1);
    assert_eq!(open.plan[0].to_ip.to_string(), "10.99.0.2");
    assert_eq!(snap.allocations.len(), 1);
    assert_eq!(snap.nic_records.len(), 1);
    assert_eq!(snap.lservers.len(), 2);
    assert!(snap
        .lservers
        .iter()
        .all(|l| l.state == LServerState::Normal));
    assert_eq!(snap.undelivered_alerts.len(), 1);
    assert_eq!(
        (
            snap.next_detection_id,
            snap.next_operation_id,
            snap.next_alert_seq
        ),
        (2, 3, 2)
    );
    assert_eq!(
        journal.find_detection("osce-1", "evt-0001").unwrap(),
        Some(1)
    );
    assert_eq!(journal.operation(1).unwrap().unwrap().requested_by, None);
    let device_calls: i64 = Connection::open(&path)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM device_calls", [], |r| r.get(0))
        .unwrap();
    assert_eq!(device_calls, 2);

    // And it takes new steps in the new layout, then reopens without migrating again.
    journal
        .commit(&[Entry::OperationQueued {
            id: 3,
            lserver: "/tenant-a/vdi-002".into(),
            kind: OperationKind::ManualQuarantine,
            detection: None,
            created_ms: 2000,
            requested_by: Some("soc-console".into()),
        }])
        .unwrap();
    drop(journal);
    let reopened = Journal::open(&path).unwrap();
    let op = reopened.operation(3).unwrap().unwrap();
    assert_eq!(op.requested_by.as_deref(), Some("soc-console"));
}

#[test]
fn r7_a_version_1_journal_opens_and_migrates() {
    r7_migrates_keeping_every_row("v1", 1);
}

#[test]
fn r7_a_version_2_journal_opens_and_migrates() {
    r7_migrates_keeping_every_row("v2", 2);
}

#[test]
fn r7_a_journal_newer_than_the_binary_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.sqlite");
    drop(Journal::open(&path).unwrap());
    let future = SCHEMA_VERSION + 1;
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", future)
        .unwrap();
    let error = Journal::open(&path)
        .err()
        .expect("a newer journal is refused");
    match &error {
        JournalError::TooNew {
            path: named,
            found,
            supported,
        } => {
            assert_eq!((*found, *supported), (future, SCHEMA_VERSION));
            assert!(named.ends_with("future.sqlite"), "{named}");
        }
        other => panic!("expected TooNew, got {other}"),
    }
    let message = error.to_string();
    assert!(message.contains("future.sqlite"), "{message}");
    assert!(message.contains(&future.to_string()), "{message}");
    assert!(message.contains(&SCHEMA_VERSION.to_string()), "{message}");
    assert_eq!(user_version(&path), future, "the refused file was changed");
}

#[test]
fn r7_a_new_journal_is_created_at_the_current_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.sqlite");
    drop(Journal::open(&path).unwrap());
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    let meta: String = Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(meta, SCHEMA_VERSION.to_string());
}

#[test]
fn r7_a_migration_that_fails_leaves_the_journal_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_from_fixture(dir.path(), "v1");
    // A stray table in the way of the migration's renames makes it fail halfway.
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE lservers_v1 (x)")
        .unwrap();
    let error = Journal::open(&path).err().expect("the migration fails");
    let message = error.to_string();
    assert!(message.contains("v1.sqlite"), "{message}");
    assert!(message.contains("from schema version 1 to 2"), "{message}");
    // Nothing of the half-run migration stayed: still version 1, every row there.
    let conn = Connection::open(&path).unwrap();
    assert_eq!(migrate::version(&conn).unwrap(), Some(1));
    assert!(!table_sql(&path, "plan_nics").contains("WITHOUT ROWID"));
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM plan_nics", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1);
    assert!(conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE name = 'plan_nics_v1'",
            [],
            |_| Ok(())
        )
        .is_err());
}
