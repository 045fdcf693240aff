//! The history of one lab run (`ARCHITECTURE.md`, "The lab in one page"): every detection, operation, device
//! call (`invoke`, then `ok | fail | unknown`, the Jepsen convention), device-truth change, journal
//! commit, alert, crash and restart, stamped with the simulator's clock. Checkers, measures and
//! reports are computed from it; its digest proves determinism (INV-11).

use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One entry of a history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// Milliseconds since the run started, on the simulator's clock.
    pub at_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Where a NIC lives, as histories name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NicRef {
    /// L-Server path.
    pub lserver: String,
    /// NIC index.
    pub nic: usize,
}

/// The kinds of history entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// An AV server sent a detection (after its own drop/duplicate/reorder faults).
    DetectionSent {
        /// AV server.
        source: String,
        /// Event id.
        event_id: String,
        /// Reported IP.
        ip: Option<IpAddr>,
    },
    /// The engine acknowledged a detection: it is durable (R7).
    DetectionAcked {
        /// AV server.
        source: String,
        /// Event id.
        event_id: String,
        /// Matched L-Server.
        lserver: Option<String>,
        /// accepted | ignored | not_found | duplicate | pending_decision.
        disposition: String,
        /// Started operation.
        operation: Option<i64>,
    },
    /// The engine refused a detection (not durable, not acknowledged).
    DetectionRefused {
        /// AV server.
        source: String,
        /// Event id.
        event_id: String,
        /// Why.
        reason: String,
    },
    /// An administrator's command was submitted.
    CommandSubmitted {
        /// quarantine | release | decide.
        action: String,
        /// L-Server.
        lserver: String,
        /// Operation id when accepted.
        operation: Option<i64>,
        /// Refusal reason.
        refused: Option<String>,
    },
    /// An operation began executing.
    OperationStarted {
        /// Id.
        id: i64,
        /// L-Server.
        lserver: String,
        /// Kind.
        kind: String,
    },
    /// An operation ended.
    OperationFinished {
        /// Id.
        id: i64,
        /// L-Server.
        lserver: String,
        /// Outcome.
        outcome: String,
    },
    /// A device call was sent.
    Invoke {
        /// Call id, unique in the run.
        call: u64,
        /// Device name.
        device: String,
        /// Call name (`set_nic`, `get_port`, ...).
        op: String,
        /// The NIC it concerns, when one.
        nic: Option<NicRef>,
        /// The L-Server it concerns (NIC owner, or the reset target).
        lserver: Option<String>,
        /// Network written (for writes).
        value: Option<String>,
    },
    /// A device call returned (or was cut off).
    Return {
        /// Call id of the invoke.
        call: u64,
        /// ok | fail | unknown.
        result: String,
        /// Value read, or the error.
        detail: String,
    },
    /// A NIC moved at the device.
    TruthChanged {
        /// The NIC.
        nic: NicRef,
        /// Network before (None: not a topology network).
        from: Option<String>,
        /// Network after.
        to: Option<String>,
        /// Whether a release operation of this L-Server was running (INV-2).
        in_release: bool,
        /// Who moved it when no device call of the engine did (INV-2 blames only the engine's
        /// moves; INV-12 checks they are undone): `switch_reboot` (a reboot that lost unsaved
        /// config) or `external_change` (the fault effect). Absent for the engine's own writes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// A server was reset.
    Reset {
        /// L-Server.
        lserver: String,
    },
    /// A switch rebooted and dropped its unsaved config.
    SwitchRebooted {
        /// Switch.
        device: String,
    },
    /// A journal step committed.
    Commit {
        /// Commits since the engine (re)started.
        n: u64,
    },
    /// An alert was journaled.
    Alert {
        /// Sequence number.
        seq: i64,
        /// Code.
        code: String,
        /// INFO | ERROR.
        severity: String,
        /// L-Server.
        lserver: Option<String>,
        /// IP.
        ip: Option<IpAddr>,
        /// Operation.
        operation: Option<i64>,
        /// NICs (by index) the alert names as in unknown state; absent when none, so the
        /// histories of runs without such alerts keep their digests.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        unknown_nics: Vec<usize>,
    },
    /// The engine stopped abruptly.
    Crash,
    /// The engine started again on its journal.
    Restart,
    /// Faults were removed (`all` or a device name).
    Heal {
        /// What healed.
        target: String,
    },
}

/// A NIC's final state: where the device has it and what the engine records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalNic {
    /// The NIC.
    pub nic: NicRef,
    /// Device truth (None: not a topology network).
    pub device_network: Option<String>,
    /// Management record network.
    pub managed_network: String,
    /// Management record IP.
    pub managed_ip: IpAddr,
}

/// An L-Server's final state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalLServer {
    /// Path.
    pub path: String,
    /// Engine state (`normal`, `quarantined`, ...).
    pub state: String,
    /// Console status.
    pub status: String,
    /// Last outcome, if any.
    pub outcome: Option<String>,
    /// Operations still queued or running.
    pub pending_operations: usize,
}

/// What a run leaves for the checkers: the history and the final device truth and records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Every event in order.
    pub history: Vec<HistoryEvent>,
    /// Every NIC at the end.
    pub nics: Vec<FinalNic>,
    /// Every L-Server at the end.
    pub lservers: Vec<FinalLServer>,
    /// Allocated quarantine IPs at the end: (network, ip, L-Server).
    pub allocations: Vec<(String, IpAddr, String)>,
}

/// What one `[[faults]]` entry did during a run (report.json `faults`, per scenario).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FaultAccount {
    /// Position of the entry among the scenario's `[[faults]]`, from 0.
    pub index: usize,
    /// The device it names.
    pub device: String,
    /// Its `call`, when it names one.
    pub call: Option<String>,
    /// Its effect, as spelt in files.
    pub effect: String,
    /// Calls or notifications it affected (for `reboot_loses_unsaved`: reboots it caused).
    pub hits: u64,
    /// Hits that fell while an operation was running on the L-Server concerned, or, for a call
    /// that concerns no L-Server (a login, a config save, a reboot), while any operation ran.
    pub hits_in_operation: u64,
}
