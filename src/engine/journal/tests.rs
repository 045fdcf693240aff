//! The journal's own tests: atomic steps, reopening, the reader, the commit limit.

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

/// Detection `id` of `event_id` that matched no L-Server (a step of one entry, nothing else
/// to follow).
fn not_found(id: i64, event_id: &str) -> Entry {
    Entry::Detection {
        id,
        detection: detection(event_id),
        received_ms: 0,
        lserver: None,
        disposition: Disposition::NotFound,
        operation: None,
        submitted_by: None,
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
    journal.commit(&[not_found(1, "e-1")]).unwrap();
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
    journal.commit(&[not_found(1, "e-1")]).unwrap();
    assert_eq!(reader.find_detection("osce", "e-1").unwrap(), Some(1));
    // Its cached statement must not pin an old snapshot: a later commit is seen too.
    journal.commit(&[not_found(2, "e-2")]).unwrap();
    assert_eq!(reader.find_detection("osce", "e-2").unwrap(), Some(2));
    let mut reader = reader;
    let refused = reader.commit(&[not_found(3, "e-3")]).err().unwrap();
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

/// A step whose first entry, a queued operation, applies and whose second repeats event
/// `e-1`'s (source, event id), so it fails half way.
fn half_failing_step() -> [Entry; 2] {
    let queued = Entry::OperationQueued {
        id: 1,
        lserver: "/a".into(),
        kind: OperationKind::Quarantine,
        detection: None,
        created_ms: 0,
        requested_by: None,
    };
    [queued, not_found(2, "e-1")]
}

/// An in-memory journal of `durability` after event `e-1` and then [`half_failing_step`].
fn after_a_failed_step(durability: Durability) -> Snapshot {
    let mut conn = Connection::open_in_memory().unwrap();
    Journal::seed(&mut conn).unwrap();
    let mut j = Journal::from_connection(conn, durability).unwrap();
    j.commit(&[not_found(1, "e-1")]).unwrap();
    assert!(j.commit(&half_failing_step()).is_err(), "{durability:?}");
    j.snapshot().unwrap()
}

#[test]
fn r7_a_step_is_all_or_nothing() {
    for durability in [Durability::PowerLoss, Durability::ProcessCrash] {
        let snap = after_a_failed_step(durability);
        assert!(
            snap.open_operations.is_empty(),
            "{durability:?}: half-written step survived"
        );
        assert_eq!(snap.next_detection_id, 2);
    }
}

#[test]
fn r18_a_scratch_journal_keeps_the_applied_half_of_a_failed_step() {
    // No rollback journal: the queued operation applied before the failure stays. That is the
    // price of the mode, and why only an engine that halts on the failure may own one.
    let snap = after_a_failed_step(Durability::Scratch);
    assert_eq!(snap.open_operations.len(), 1);
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

/// A seeded in-memory scratch journal, with write-behind on when `behind`.
fn scratch(behind: bool) -> Journal {
    let mut conn = Connection::open_in_memory().unwrap();
    Journal::seed(&mut conn).unwrap();
    let mut j = Journal::from_connection(conn, Durability::Scratch).unwrap();
    if behind {
        j.commit_behind().unwrap();
    }
    j
}

/// Steps that open, advance and finish operations among detections, one commit each, with
/// reads in between (which take the connection back from a write-behind writer).
fn play_steps(j: &mut Journal) -> Vec<String> {
    let mut seen = Vec::new();
    for n in 1..=40_i64 {
        j.commit(&[not_found(n, &format!("e-{n}")), queued(n, n as u64)])
            .unwrap();
        if n % 3 == 0 {
            j.commit(&[Entry::OperationFinished {
                id: n - 1,
                lserver: format!("/t/srv-{}", n - 1),
                outcome: Outcome::Quarantined,
                detail: String::new(),
                finished_ms: n as u64,
            }])
            .unwrap();
        }
        if n % 10 == 0 {
            seen.push(format!("{:?}", j.snapshot().unwrap().open_operations.len()));
        }
        seen.push(format!(
            "{:?} {:?}",
            j.find_detection("osce", &format!("e-{}", n / 2)).unwrap(),
            j.find_detection("osce", &format!("e-{}", n + 1)).unwrap(),
        ));
        seen.push(format!("{:?}", j.detection_receipt(n / 2).unwrap()));
    }
    seen.push(format!("{:?}", j.snapshot().unwrap()));
    seen.push(format!("{:?}", j.operations().unwrap()));
    seen.push(all_rows(j));
    seen
}

/// Quarantine `n` queued by detection `n` at `created_ms`.
fn queued(n: i64, created_ms: u64) -> Entry {
    Entry::OperationQueued {
        id: n,
        lserver: format!("/t/srv-{n}"),
        kind: OperationKind::Quarantine,
        detection: Some(n),
        created_ms,
        requested_by: None,
    }
}

#[test]
fn r7_r4_a_write_behind_journal_reads_what_a_synchronous_one_does() {
    let synchronous = play_steps(&mut scratch(false));
    let mut behind = scratch(true);
    assert_eq!(play_steps(&mut behind), synchronous);
    assert_eq!(behind.commits(), 40 + 13);
}

#[test]
fn r18_a_write_behind_commit_that_fails_is_reported_not_lost() {
    let mut j = scratch(true);
    j.commit(&[not_found(1, "e-1")]).unwrap();
    // Handed over: the failure shows at the next call, and at every one after it.
    j.commit(&half_failing_step()).unwrap();
    let error = j
        .snapshot()
        .expect_err("a read after a failed commit fails");
    assert!(error.to_string().contains("UNIQUE"), "{error}");
    let later = j
        .commit(&[not_found(3, "e-3")])
        .expect_err("later commits fail");
    assert!(
        later.to_string().contains("earlier commit failed"),
        "{later}"
    );
    assert!(j.find_detection("osce", "e-1").is_err());
    assert!(j.operations().is_err());
}

#[test]
fn write_behind_is_refused_where_r4_or_a_crash_needs_the_file() {
    let mut durable = Journal::open_in_memory().unwrap();
    assert!(durable.commit_behind().is_err(), "power-loss journal");
    let mut limited = scratch(false);
    limited.set_commit_limit(Some(5));
    assert!(limited.commit_behind().is_err(), "commit limit");
    let mut used = scratch(false);
    used.commit(&[not_found(1, "e-1")]).unwrap();
    assert!(used.commit_behind().is_err(), "detections journaled before");
    // Refused means synchronous: R4 still finds the detection.
    assert_eq!(used.find_detection("osce", "e-1").unwrap(), Some(1));
}

/// Every row of every table the engine writes, in a fixed order.
fn all_rows(j: &Journal) -> String {
    let conn = j.conn().unwrap();
    let mut out = String::new();
    for table in [
        "detections",
        "operations",
        "plan_nics",
        "ip_allocations",
        "nic_records",
        "lservers",
        "device_calls",
        "alerts",
    ] {
        let mut statement = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY 1, 2"))
            .unwrap();
        let columns = statement.column_count();
        let rows = statement
            .query_map([], |row| {
                (0..columns)
                    .map(|i| row.get::<_, rusqlite::types::Value>(i))
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap();
        for row in rows {
            out.push_str(&format!("{table} {:?}\n", row.unwrap()));
        }
    }
    out
}

/// A start of operation `id` with a plan of one NIC, `nic_index`, at `at_ms`.
fn started(id: i64, nic_index: usize, at_ms: u64) -> Entry {
    Entry::OperationStarted {
        id,
        lserver: format!("/t/srv-{id}"),
        kind: OperationKind::Quarantine,
        started_ms: at_ms,
        deadline_ms: at_ms + 60_000,
        plan: vec![PlanNic {
            nic_index,
            from_network: "op-a".into(),
            from_ip: "10.110.0.11".parse().unwrap(),
            to_network: "qr-a".into(),
            to_ip: "10.210.0.11".parse().unwrap(),
        }],
    }
}

/// The steps of quarantine `n`, one commit each: its detection and queueing, its start, its
/// write, its end.
fn quarantine_steps(n: i64) -> Vec<Vec<Entry>> {
    let lserver = format!("/t/srv-{n}");
    vec![
        vec![
            Entry::Detection {
                id: n,
                detection: detection(&format!("e-{n}")),
                received_ms: 0,
                lserver: Some(lserver.clone()),
                disposition: Disposition::Accepted,
                operation: Some(n),
                submitted_by: None,
            },
            queued(n, 1),
        ],
        vec![started(n, 0, 2)],
        vec![Entry::DeviceCall {
            operation: n,
            nic_index: Some(0),
            device: "vc-1".into(),
            call: "set_nic".into(),
            target: Some("dvportgroup-910".into()),
            outcome: "ok".into(),
            detail: String::new(),
            at_ms: 3,
        }],
        vec![Entry::OperationFinished {
            id: n,
            lserver,
            outcome: Outcome::Quarantined,
            detail: String::new(),
            finished_ms: 4,
        }],
    ]
}

#[test]
fn r7_an_operation_queued_and_started_in_one_commit_ends_with_the_rows_of_one_commit_per_step() {
    // One commit per step: the queueing, then the start, each written on its own.
    let mut stepwise = scratch(false);
    // A burst: each operation's steps in one commit, its queueing and its start folded into
    // one row; operation 2 starts a second time in that commit (a new plan replaces the
    // first), operation 4 is left running.
    let mut burst = scratch(false);
    for n in 1..=4_i64 {
        let mut steps = quarantine_steps(n);
        match n {
            2 => steps.insert(2, vec![started(n, 1, 7)]),
            4 => steps.truncate(2),
            _ => {}
        }
        for step in &steps {
            stepwise.commit(step).unwrap();
        }
        burst.commit(&steps.concat()).unwrap();
    }
    let rows = all_rows(&stepwise);
    assert!(rows.contains("plan_nics [Integer(2), Integer(1)"), "{rows}");
    assert!(
        !rows.contains("plan_nics [Integer(2), Integer(0)"),
        "{rows}"
    );
    assert!(rows.contains("Text(\"running\")"), "{rows}");
    assert_eq!(all_rows(&burst), rows);
}
