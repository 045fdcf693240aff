//! The journal's durability modes (R7, R18): what a failed step leaves behind in each. A
//! durable journal (`PowerLoss`, `ProcessCrash`) rolls a failed step back whole; the lab's
//! scratch journal has no rollback journal, so it keeps what the step applied before it
//! failed, which is only safe because its engine halts on that failure.

use quarantine_lab::engine::journal::{Durability, Entry};
use quarantine_lab::engine::{Disposition, Journal, OperationKind};
use quarantine_lab::model::{Category, Detection};
use rusqlite::Connection;

/// A detection entry for event `e-1` with journal id `id`.
fn detection(id: i64) -> Entry {
    Entry::Detection {
        id,
        detection: Detection {
            source: "osce".into(),
            event_id: "e-1".into(),
            ip: Some("10.0.0.1".parse().unwrap()),
            mac: None,
            hostname: None,
            threat: "TROJ".into(),
            category: Category::Virus,
        },
        received_ms: 0,
        lserver: None,
        disposition: Disposition::NotFound,
        operation: None,
        submitted_by: None,
    }
}

/// A step whose second entry repeats event `e-1`'s (source, event id) and so fails after its
/// first entry, a queued operation, was applied.
fn failing_step() -> [Entry; 2] {
    let queued = Entry::OperationQueued {
        id: 1,
        lserver: "/a".into(),
        kind: OperationKind::Quarantine,
        detection: None,
        created_ms: 0,
        requested_by: None,
    };
    [queued, detection(2)]
}

/// Commits event `e-1`, then the failing step, on an in-memory journal of `durability`;
/// returns how many operations the journal holds afterwards.
fn operations_after_a_failed_step(durability: Durability) -> usize {
    let mut conn = Connection::open_in_memory().unwrap();
    Journal::seed(&mut conn).unwrap();
    let mut journal = Journal::from_connection(conn, durability).unwrap();
    journal.commit(&[detection(1)]).unwrap();
    assert!(journal.commit(&failing_step()).is_err(), "{durability:?}");
    journal.snapshot().unwrap().open_operations.len()
}

#[test]
fn r7_a_durable_journal_rolls_a_failed_step_back_whole() {
    for durability in [Durability::PowerLoss, Durability::ProcessCrash] {
        assert_eq!(
            operations_after_a_failed_step(durability),
            0,
            "{durability:?}: half of a failed step survived"
        );
    }
}

#[test]
fn r18_a_scratch_journal_keeps_what_a_failed_step_applied_and_still_commits() {
    // No rollback journal: the queued operation applied before the failure stays. This is the
    // price of the mode, written down here so that nobody hands a scratch journal to an engine
    // whose journal outlives a failed commit.
    assert_eq!(operations_after_a_failed_step(Durability::Scratch), 1);
    // And it commits and reads like any other journal.
    let mut conn = Connection::open_in_memory().unwrap();
    Journal::seed(&mut conn).unwrap();
    let mut journal = Journal::from_connection(conn, Durability::Scratch).unwrap();
    journal.commit(&failing_step()[..1]).unwrap();
    journal.commit(&[detection(1)]).unwrap();
    let snapshot = journal.snapshot().unwrap();
    assert_eq!(snapshot.open_operations.len(), 1);
    assert_eq!(snapshot.next_detection_id, 2);
}
