//! The journal's step entries and what it hands back at open.

use std::net::IpAddr;

use rusqlite::params;

use super::super::alerts::Alert;
use super::super::types::*;
use crate::model::Detection;

/// One NIC of an operation's plan (R6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanNic {
    /// NIC index.
    pub nic_index: usize,
    /// Network and IP before the operation.
    pub from_network: String,
    /// IP before the operation.
    pub from_ip: IpAddr,
    /// Target network.
    pub to_network: String,
    /// Target IP (allocated quarantine IP, or the original operation IP for a release).
    pub to_ip: IpAddr,
}

/// One element of a journal step.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A received detection and what became of it.
    Detection {
        /// Id.
        id: DetectionId,
        /// The detection.
        detection: Detection,
        /// Receipt time.
        received_ms: u64,
        /// Matched L-Server.
        lserver: Option<String>,
        /// Disposition.
        disposition: Disposition,
        /// Operation it started.
        operation: Option<OperationId>,
        /// Name of the API token that submitted it; `None` for syslog, ePO and the lab.
        submitted_by: Option<String>,
    },
    /// A new queued operation.
    OperationQueued {
        /// Id.
        id: OperationId,
        /// L-Server.
        lserver: String,
        /// Kind.
        kind: OperationKind,
        /// Detection that started it.
        detection: Option<DetectionId>,
        /// Creation time.
        created_ms: u64,
        /// Name of the API token whose command queued it; `None` when a detection did, or a
        /// caller without tokens (the lab).
        requested_by: Option<String>,
    },
    /// An operation started, with its plan (R7: before its first device call).
    OperationStarted {
        /// Id.
        id: OperationId,
        /// The L-Server (announced to observers; the journal has it from the queueing).
        lserver: String,
        /// The kind (announced to observers; the journal has it from the queueing).
        kind: OperationKind,
        /// Start time.
        started_ms: u64,
        /// Deadline (R19).
        deadline_ms: u64,
        /// Plan; replaces any earlier plan of the operation.
        plan: Vec<PlanNic>,
    },
    /// A named phase of a multi-step operation (quarantine_reboot) was reached.
    OperationPhase {
        /// Id.
        id: OperationId,
        /// Phase name.
        phase: String,
    },
    /// An operation ended.
    OperationFinished {
        /// Id.
        id: OperationId,
        /// L-Server (already in the operation's row; carried for observers).
        lserver: String,
        /// Outcome.
        outcome: Outcome,
        /// Detail.
        detail: String,
        /// End time.
        finished_ms: u64,
    },
    /// A quarantine IP was allocated (R6, INV-8).
    Allocate {
        /// Quarantine network.
        network: String,
        /// IP.
        ip: IpAddr,
        /// Owner.
        lserver: String,
        /// NIC index.
        nic_index: usize,
    },
    /// A quarantine IP was freed (R10, R14).
    Free {
        /// Quarantine network.
        network: String,
        /// IP.
        ip: IpAddr,
    },
    /// A NIC's management record.
    NicRecord {
        /// L-Server.
        lserver: String,
        /// The record.
        record: NicRecord,
    },
    /// The outcome of one device call (R7).
    DeviceCall {
        /// Operation.
        operation: OperationId,
        /// NIC index, if the call concerns one NIC.
        nic_index: Option<usize>,
        /// Device name.
        device: String,
        /// Call name (`set_nic`, `get_port`, ...).
        call: String,
        /// Target value written or value read.
        target: Option<String>,
        /// `ok` or the outcome class.
        outcome: String,
        /// Device detail.
        detail: String,
        /// Time.
        at_ms: u64,
    },
    /// An L-Server's state, status and last outcome.
    LServer {
        /// Path.
        path: String,
        /// State.
        state: LServerState,
        /// Console status.
        status: String,
        /// Last outcome.
        outcome: Option<Outcome>,
    },
    /// An alert (delivered later, then marked).
    Alert(Alert),
    /// An alert reached syslog and email.
    AlertDelivered {
        /// Sequence number.
        seq: i64,
    },
}

/// An operation that was not finished when the journal was last closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOperation {
    /// Id.
    pub id: OperationId,
    /// L-Server.
    pub lserver: String,
    /// Kind.
    pub kind: OperationKind,
    /// `queued` or `running`.
    pub status: String,
    /// Last phase reached.
    pub phase: Option<String>,
    /// Detection that started it.
    pub detection: Option<DetectionId>,
    /// Plan, when it started.
    pub plan: Vec<PlanNic>,
}

/// An L-Server row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LServerRow {
    /// Path.
    pub path: String,
    /// State.
    pub state: LServerState,
    /// Status.
    pub status: String,
    /// Last outcome.
    pub outcome: Option<Outcome>,
}

/// Everything the engine needs in memory, read at open.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// L-Server rows.
    pub lservers: Vec<LServerRow>,
    /// (L-Server, record).
    pub nic_records: Vec<(String, NicRecord)>,
    /// (network, ip, L-Server, NIC index).
    pub allocations: Vec<(String, IpAddr, String, usize)>,
    /// Unfinished operations in id order.
    pub open_operations: Vec<OpenOperation>,
    /// Alerts not yet delivered, in order.
    pub undelivered_alerts: Vec<Alert>,
    /// Next free ids.
    pub next_detection_id: DetectionId,
    /// Next operation id.
    pub next_operation_id: OperationId,
    /// Next alert sequence number.
    pub next_alert_seq: i64,
}

/// The alerts among a step's entries: what it tells the world once durable (R17).
pub fn alerts_in(entries: &[Entry]) -> Vec<Alert> {
    entries
        .iter()
        .filter_map(|e| match e {
            Entry::Alert(a) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

/// The statements of one commit. An engine step repeats the same dozen statements: parsing
/// them anew each time cost more than running them, so each comes from the connection's
/// statement cache, once per commit, and goes back to it when the commit ends. Looking one up in
/// that cache hashes its whole text, which showed in profiles when done for every entry of a
/// large group commit; here a statement is found by its text's address and length.
pub(super) struct Statements<'c> {
    conn: &'c rusqlite::Connection,
    held: Vec<(&'static str, rusqlite::CachedStatement<'c>)>,
}

impl<'c> Statements<'c> {
    pub(super) fn new(conn: &'c rusqlite::Connection) -> Statements<'c> {
        Statements {
            conn,
            held: Vec::new(),
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
        Entry::OperationQueued {
            id,
            lserver,
            kind,
            detection,
            created_ms,
            requested_by,
        } => {
            tx.exec(
                "INSERT INTO operations (id, lserver, kind, detection_id, status, created_ms, requested_by)
                 VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6)",
                params![id, lserver, kind.as_str(), detection, *created_ms as i64, requested_by],
            )?;
        }
        Entry::OperationStarted {
            id,
            started_ms,
            deadline_ms,
            plan,
            ..
        } => {
            tx.exec("UPDATE operations SET status = 'running', started_ms = ?2, deadline_ms = ?3 WHERE id = ?1",
                params![id, *started_ms as i64, *deadline_ms as i64],
            )?;
            tx.exec("DELETE FROM plan_nics WHERE operation_id = ?1", [id])?;
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
            tx.exec("INSERT INTO nic_records (lserver, nic_index, network, ip, device_network)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (lserver, nic_index) DO UPDATE SET network = ?3, ip = ?4, device_network = ?5",
                params![
                    lserver,
                    record.index as i64,
                    record.network,
                    record.ip.to_string(),
                    record.device_network
                ],
            )?;
        }
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
    }
    Ok(())
}
