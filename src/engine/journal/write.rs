//! Writing the journal: one commit's statements and the rows each [`Entry`] writes.

use rusqlite::params;

use super::Entry;
use crate::engine::types::OperationId;

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
            tx.exec("INSERT INTO detections (id, source, event_id, received_ms, ip, mac, hostname, threat,
                 category, lserver, disposition, operation_id, submitted_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    id,
                    d.source,
                    d.event_id,
                    *received_ms as i64,
                    d.ip.map(|ip| ip.to_string()),
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
            tx.exec("INSERT INTO alerts (seq, at_ms, severity, code, lserver, ip, operation_id, detail, delivered)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    a.seq,
                    a.at_ms as i64,
                    a.severity().as_str(),
                    a.code.as_str(),
                    a.lserver,
                    a.ip.map(|ip| ip.to_string()),
                    a.operation,
                    a.detail,
                    alerts_delivered
                ],
            )?;
        }
        Entry::AlertDelivered { seq } => {
            tx.exec("UPDATE alerts SET delivered = 1 WHERE seq = ?1", [seq])?;
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
                    "INSERT INTO operations (id, lserver, kind, detection_id, status, created_ms, requested_by, started_ms, deadline_ms)
                     VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?7, ?8)",
                    params![id, lserver, kind.as_str(), detection, *created_ms as i64, requested_by, started_ms as i64, deadline_ms as i64],
                )?;
            }
            None => {
                tx.exec(
                    "INSERT INTO operations (id, lserver, kind, detection_id, status, created_ms, requested_by)
                     VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6)",
                    params![id, lserver, kind.as_str(), detection, *created_ms as i64, requested_by],
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
                tx.exec("UPDATE operations SET status = 'running', started_ms = ?2, deadline_ms = ?3 WHERE id = ?1",
                    params![id, *started_ms as i64, *deadline_ms as i64],
                )?;
                tx.exec("DELETE FROM plan_nics WHERE operation_id = ?1", [id])?;
            }
            for p in plan {
                tx.exec("INSERT INTO plan_nics (operation_id, nic_index, from_network, from_ip, to_network, to_ip)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        id,
                        p.nic_index as i64,
                        p.from_network,
                        p.from_ip.to_string(),
                        p.to_network,
                        p.to_ip.to_string()
                    ],
                )?;
            }
        }
        Entry::OperationPhase { id, phase } => {
            tx.exec(
                "UPDATE operations SET phase = ?2 WHERE id = ?1",
                params![id, phase],
            )?;
        }
        Entry::OperationFinished {
            id,
            outcome,
            detail,
            finished_ms,
            ..
        } => {
            tx.exec("UPDATE operations SET status = 'done', outcome = ?2, detail = ?3, finished_ms = ?4 WHERE id = ?1",
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
            tx.exec("INSERT INTO device_calls (operation_id, nic_index, device, call, target, outcome, detail, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
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
            tx.exec("INSERT INTO ip_allocations (network, ip, lserver, nic_index) VALUES (?1, ?2, ?3, ?4)",
                params![network, ip.to_string(), lserver, *nic_index as i64],
            )?;
        }
        Entry::Free { network, ip } => {
            tx.exec(
                "DELETE FROM ip_allocations WHERE network = ?1 AND ip = ?2",
                params![network, ip.to_string()],
            )?;
        }
        Entry::NicRecord { lserver, record } => {
            tx.exec("INSERT INTO nic_records (lserver, nic_index, network, ip, device_network, last_write)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (lserver, nic_index) DO UPDATE SET network = ?3, ip = ?4, device_network = ?5, last_write = ?6",
                params![
                    lserver,
                    record.index as i64,
                    record.network,
                    record.ip.to_string(),
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
                "INSERT INTO lservers (path, state, status, outcome) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (path) DO UPDATE SET state = ?2, status = ?3, outcome = ?4",
                params![path, state.as_str(), status, outcome.map(|o| o.as_str())],
            )?;
        }
        _ => unreachable!(
            "`apply` sends only device calls, allocations and the L-Servers' records here"
        ),
    }
    Ok(())
}
