//! The journal's step entries and what it hands back at open.

use std::net::IpAddr;

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
    /// `Queued` or `Running`.
    pub status: OperationStatus,
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

impl Entry {
    /// A detection entry's `(source, event_id)` and receipt (R4); `None` for other entries.
    pub fn detection_receipt(&self) -> Option<((String, String), DetectionReceipt)> {
        let Entry::Detection {
            id,
            detection,
            lserver,
            disposition,
            operation,
            ..
        } = self
        else {
            return None;
        };
        let key = (detection.source.clone(), detection.event_id.clone());
        let receipt = DetectionReceipt {
            id: *id,
            disposition: *disposition,
            lserver: lserver.clone(),
            operation: *operation,
        };
        Some((key, receipt))
    }
}
