//! Writing the journal: one commit's statements and the rows each [`Entry`] writes.

use rusqlite::params;

use super::Entry;
use crate::engine::types::OperationId;

// The statements a commit runs: one per kind of row change, named for what it does.

const INSERT_DETECTION: &str =
    "INSERT INTO detections (id, source, event_id, received_ms, ip, mac, hostname, threat,
                 category, lserver, disposition, operation_id, submitted_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";

const INSERT_ALERT: &str =
    "INSERT INTO alerts (seq, at_ms, severity, code, lserver, ip, operation_id, detail, delivered)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

const MARK_ALERT_DELIVERED: &str = "UPDATE alerts SET delivered = 1 WHERE seq = ?1";

const INSERT_RUNNING_OPERATION: &str = "INSERT INTO operations (id, lserver, kind, detection_id, status, created_ms, requested_by, started_ms, deadline_ms)
                     VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?7, ?8)";

const INSERT_QUEUED_OPERATION: &str =
    "INSERT INTO operations (id, lserver, kind, detection_id, status, created_ms, requested_by)
                     VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6)";

const START_OPERATION: &str =
    "UPDATE operations SET status = 'running', started_ms = ?2, deadline_ms = ?3 WHERE id = ?1";

const DELETE_PLAN: &str = "DELETE FROM plan_nics WHERE operation_id = ?1";

const INSERT_PLAN_NIC: &str =
    "INSERT INTO plan_nics (operation_id, nic_index, from_network, from_ip, to_network, to_ip)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

const SET_PHASE: &str = "UPDATE operations SET phase = ?2 WHERE id = ?1";

const FINISH_OPERATION: &str = "UPDATE operations SET status = 'done', outcome = ?2, detail = ?3, finished_ms = ?4 WHERE id = ?1";

const INSERT_DEVICE_CALL: &str = "INSERT INTO device_calls (operation_id, nic_index, device, call, target, outcome, detail, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

const INSERT_ALLOCATION: &str =
    "INSERT INTO ip_allocations (network, ip, lserver, nic_index) VALUES (?1, ?2, ?3, ?4)";

const DELETE_ALLOCATION: &str = "DELETE FROM ip_allocations WHERE network = ?1 AND ip = ?2";

const UPSERT_NIC_RECORD: &str = "INSERT INTO nic_records (lserver, nic_index, network, ip, device_network, last_write)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (lserver, nic_index) DO UPDATE SET network = ?3, ip = ?4, device_network = ?5, last_write = ?6";

const UPSERT_LSERVER: &str =
    "INSERT INTO lservers (path, state, status, outcome) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (path) DO UPDATE SET state = ?2, status = ?3, outcome = ?4";

/// Every statement a commit runs, prepared at open by a journal on a file ([`prepare_all`]).
const ALL: [&str; 15] = [
    INSERT_DETECTION,
    INSERT_ALERT,
    MARK_ALERT_DELIVERED,
    INSERT_RUNNING_OPERATION,
    INSERT_QUEUED_OPERATION,
    START_OPERATION,
    DELETE_PLAN,
    INSERT_PLAN_NIC,
    SET_PHASE,
    FINISH_OPERATION,
    INSERT_DEVICE_CALL,
    INSERT_ALLOCATION,
    DELETE_ALLOCATION,
    UPSERT_NIC_RECORD,
    UPSERT_LSERVER,
];

/// Prepares every statement a commit runs into `conn`'s cache. A long-running engine (its
/// journal is a file) pays for parsing them at open, not in the first detection burst after a
/// start, where a device call waits for the first commit (R7).
pub(super) fn prepare_all(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    for sql in ["BEGIN", "COMMIT"].into_iter().chain(ALL) {
        conn.prepare_cached(sql)?;
    }
    Ok(())
}

/// An address as the journal's text columns hold it (its `Display` form), formatted on the
/// stack: a quarantine binds five of them, and `to_string` (the formatting machinery and a heap
/// string each) showed in profiles of the engine's commits.
struct IpText {
    buf: [u8; IpText::CAPACITY],
    len: usize,
}

impl IpText {
    /// The longest `Display` form of an IPv6 address, `ffff:…:ffff` with its last 32 bits as a
    /// dotted quad.
    const CAPACITY: usize = 45;

    fn new(ip: std::net::IpAddr) -> IpText {
        let mut text = IpText {
            buf: [0; IpText::CAPACITY],
            len: 0,
        };
        match ip {
            std::net::IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    if octet >= 100 {
                        text.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        text.push(b'0' + octet / 10 % 10);
                    }
                    text.push(b'0' + octet % 10);
                }
            }
            std::net::IpAddr::V6(v6) => {
                use std::io::Write;
                let mut rest = &mut text.buf[..];
                write!(rest, "{v6}").expect("an IPv6 address's text fits in 45 bytes");
                text.len = IpText::CAPACITY - rest.len();
            }
        }
        text
    }

    fn push(&mut self, byte: u8) {
        self.buf[self.len] = byte;
        self.len += 1;
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).expect("an address's text is ASCII")
    }
}

impl rusqlite::ToSql for IpText {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Borrowed(
            rusqlite::types::ValueRef::Text(self.as_str().as_bytes()),
        ))
    }
}

/// The statements of one commit. An engine step repeats the same dozen statements: parsing
/// them anew each time cost more than running them, so each comes from the connection's
/// statement cache, once per commit, and goes back to it when the commit ends. Looking one up in
/// that cache hashes its whole text, which showed in profiles when done for every entry of a
/// large group commit; here a statement is found by its text's address and length.
pub(super) struct Statements<'c> {
    conn: &'c rusqlite::Connection,
    held: Vec<(&'static str, rusqlite::CachedStatement<'c>)>,
    /// The operations this commit both queues and starts, with their start: see [`fresh_starts`].
    fresh: FreshStarts,
}

/// Operations queued and started in one commit, with their start and deadline (ms).
type FreshStarts = rustc_hash::FxHashMap<OperationId, (u64, u64)>;

/// The operations that `entries` queue and then start: a burst of detections commits each
/// operation's queueing and its start together. Such an operation is written once, as running
/// (one `INSERT` instead of an `INSERT`, an `UPDATE` and a `DELETE` of a plan it cannot have yet):
/// two statements fewer per operation, the rows are the same at the end of the commit, and no
/// one sees the rows in between (a commit is all or nothing). Only the first start after the
/// queueing is folded in; any later one is written as usual.
fn fresh_starts(entries: &[Entry]) -> FreshStarts {
    let mut queued = rustc_hash::FxHashSet::<OperationId>::default();
    let mut fresh = FreshStarts::default();
    for entry in entries {
        match entry {
            Entry::OperationQueued { id, .. } => {
                queued.insert(*id);
            }
            Entry::OperationStarted {
                id,
                started_ms,
                deadline_ms,
                ..
            } if queued.contains(id) => {
                fresh.entry(*id).or_insert((*started_ms, *deadline_ms));
            }
            _ => {}
        }
    }
    fresh
}

impl<'c> Statements<'c> {
    /// The statements of a commit of `entries`.
    pub(super) fn new(conn: &'c rusqlite::Connection, entries: &[Entry]) -> Statements<'c> {
        Statements {
            conn,
            held: Vec::new(),
            fresh: fresh_starts(entries),
        }
    }

    /// Runs `sql` (always one of this file's literals) with `params`.
    fn exec(
        &mut self,
        sql: &'static str,
        params: impl rusqlite::Params,
    ) -> rusqlite::Result<usize> {
        // Same address and length: the same literal (comparing the text would cost the hash).
        if let Some((_, statement)) = self.held.iter_mut().find(|(k, _)| std::ptr::eq(*k, sql)) {
            return statement.execute(params);
        }
        let mut statement = self.conn.prepare_cached(sql)?;
        let changed = statement.execute(params)?;
        self.held.push((sql, statement));
        Ok(changed)
    }
}

/// Writes one entry; `alerts_delivered` journals an alert as already delivered
/// ([`super::Journal::set_alerts_delivered_at_insert`]).
pub(super) fn apply(
    tx: &mut Statements<'_>,
    entry: &Entry,
    alerts_delivered: bool,
) -> rusqlite::Result<()> {
    match entry {
        Entry::Detection { .. } | Entry::Alert(_) | Entry::AlertDelivered { .. } => {
            apply_intake(tx, entry, alerts_delivered)
        }
        Entry::OperationQueued { .. }
        | Entry::OperationStarted { .. }
        | Entry::OperationPhase { .. }
        | Entry::OperationFinished { .. } => apply_operation(tx, entry),
        Entry::DeviceCall { .. }
        | Entry::Allocate { .. }
        | Entry::Free { .. }
        | Entry::NicRecord { .. }
        | Entry::LServer { .. } => apply_record(tx, entry),
    }
}

/// [`apply`] for detections and alerts.
fn apply_intake(
    tx: &mut Statements<'_>,
    entry: &Entry,
    alerts_delivered: bool,
) -> rusqlite::Result<()> {
    match entry {
        Entry::Detection {
            id,
            detection: d,
            received_ms,
            lserver,
            disposition,
            operation,
            submitted_by,
        } => {
            tx.exec(
                INSERT_DETECTION,
                params![
                    id,
                    d.source,
                    d.event_id,
                    *received_ms as i64,
                    d.ip.map(IpText::new),
                    d.mac,
                    d.hostname,
                    d.threat,
                    d.category.as_str(),
                    lserver,
                    disposition.as_str(),
                    operation,
                    submitted_by
                ],
            )?;
        }
        Entry::Alert(a) => {
            tx.exec(
                INSERT_ALERT,
                params![
                    a.seq,
                    a.at_ms as i64,
                    a.severity().as_str(),
                    a.code.as_str(),
                    a.lserver,
                    a.ip.map(IpText::new),
                    a.operation,
                    a.detail,
                    alerts_delivered
                ],
            )?;
        }
        Entry::AlertDelivered { seq } => {
            tx.exec(MARK_ALERT_DELIVERED, [seq])?;
        }
        _ => unreachable!("`apply` sends only detections and alerts here"),
    }
    Ok(())
}

/// [`apply`] for operations and their plans.
fn apply_operation(tx: &mut Statements<'_>, entry: &Entry) -> rusqlite::Result<()> {
    match entry {
        Entry::OperationQueued {
            id,
            lserver,
            kind,
            detection,
            created_ms,
            requested_by,
        } => match tx.fresh.get(id).copied() {
            Some((started_ms, deadline_ms)) => {
                tx.exec(
                    INSERT_RUNNING_OPERATION,
                    params![
                        id,
                        lserver,
                        kind.as_str(),
                        detection,
                        *created_ms as i64,
                        requested_by,
                        started_ms as i64,
                        deadline_ms as i64
                    ],
                )?;
            }
            None => {
                tx.exec(
                    INSERT_QUEUED_OPERATION,
                    params![
                        id,
                        lserver,
                        kind.as_str(),
                        detection,
                        *created_ms as i64,
                        requested_by
                    ],
                )?;
            }
        },
        Entry::OperationStarted {
            id,
            started_ms,
            deadline_ms,
            plan,
            ..
        } => {
            // Written as running by its queueing in this commit, with no plan before this one.
            if tx.fresh.remove(id).is_none() {
                tx.exec(
                    START_OPERATION,
                    params![id, *started_ms as i64, *deadline_ms as i64],
                )?;
                tx.exec(DELETE_PLAN, [id])?;
            }
            for p in plan {
                tx.exec(
                    INSERT_PLAN_NIC,
                    params![
                        id,
                        p.nic_index as i64,
                        p.from_network,
                        IpText::new(p.from_ip),
                        p.to_network,
                        IpText::new(p.to_ip)
                    ],
                )?;
            }
        }
        Entry::OperationPhase { id, phase } => {
            tx.exec(SET_PHASE, params![id, phase])?;
        }
        Entry::OperationFinished {
            id,
            outcome,
            detail,
            finished_ms,
            ..
        } => {
            tx.exec(
                FINISH_OPERATION,
                params![id, outcome.as_str(), detail, *finished_ms as i64],
            )?;
        }
        _ => unreachable!("`apply` sends only operations and their plans here"),
    }
    Ok(())
}

/// [`apply`] for device calls, allocations and the L-Servers' records.
fn apply_record(tx: &mut Statements<'_>, entry: &Entry) -> rusqlite::Result<()> {
    match entry {
        Entry::DeviceCall {
            operation,
            nic_index,
            device,
            call,
            target,
            outcome,
            detail,
            at_ms,
        } => {
            tx.exec(
                INSERT_DEVICE_CALL,
                params![
                    operation,
                    nic_index.map(|i| i as i64),
                    device,
                    call,
                    target,
                    outcome,
                    detail,
                    *at_ms as i64
                ],
            )?;
        }
        Entry::Allocate {
            network,
            ip,
            lserver,
            nic_index,
        } => {
            tx.exec(
                INSERT_ALLOCATION,
                params![network, IpText::new(*ip), lserver, *nic_index as i64],
            )?;
        }
        Entry::Free { network, ip } => {
            tx.exec(DELETE_ALLOCATION, params![network, IpText::new(*ip)])?;
        }
        Entry::NicRecord { lserver, record } => {
            tx.exec(
                UPSERT_NIC_RECORD,
                params![
                    lserver,
                    record.index as i64,
                    record.network,
                    IpText::new(record.ip),
                    record.device_network,
                    record.last_write
                ],
            )?;
        }
        Entry::LServer {
            path,
            state,
            status,
            outcome,
        } => {
            tx.exec(
                UPSERT_LSERVER,
                params![path, state.as_str(), status, outcome.map(|o| o.as_str())],
            )?;
        }
        _ => unreachable!(
            "`apply` sends only device calls, allocations and the L-Servers' records here"
        ),
    }
    Ok(())
}

#[cfg(test)]
mod ip_text_tests {
    use super::IpText;
    use proptest::prelude::*;

    proptest! {
        /// R7: the journal's address columns hold what `Display` writes, for any address, so a
        /// journal written by this build reads the same as one written by `to_string`.
        #[test]
        fn r7_an_address_is_journaled_as_its_display_text(bits in any::<u128>(), v4 in any::<u32>()) {
            let v6 = std::net::IpAddr::V6(bits.into());
            prop_assert_eq!(IpText::new(v6).as_str().to_string(), v6.to_string());
            let v4 = std::net::IpAddr::V4(v4.into());
            prop_assert_eq!(IpText::new(v4).as_str().to_string(), v4.to_string());
        }
    }

    #[test]
    fn r7_the_longest_addresses_fit() {
        for text in [
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
            "0.0.0.0",
            "10.0.100.9",
        ] {
            let ip: std::net::IpAddr = text.parse().unwrap();
            assert_eq!(IpText::new(ip).as_str(), text);
        }
    }
}
