//! The engine's vocabulary: operation kinds, outcomes, L-Server states, views and events.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::model::Action;

/// Journal id of an operation.
pub type OperationId = i64;

/// Journal id of a detection.
pub type DetectionId = i64;

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum OperationKind {
    /// Move every NIC to quarantine (R6–R10).
    Quarantine,
    /// Reset the server (R13).
    Reboot,
    /// Quarantine, then reset (R13).
    QuarantineReboot,
    /// Operator-requested quarantine that confirms by reading first (R12).
    ManualQuarantine,
    /// Move NICs back to their operation networks (R14).
    Release,
    /// Move NICs that drifted off quarantine back onto it (R20): started by the drift watch.
    Restore,
}

impl OperationKind {
    /// The spelling used in the journal and the API.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The operation a policy action starts (`None` starts none: it waits for a decision).
    pub fn for_action(action: Action) -> Option<OperationKind> {
        match action {
            Action::Quarantine => Some(OperationKind::Quarantine),
            Action::Reboot => Some(OperationKind::Reboot),
            Action::QuarantineReboot => Some(OperationKind::QuarantineReboot),
            Action::None => None,
        }
    }

    /// Whether the operation moves NICs to quarantine.
    pub fn quarantines(self) -> bool {
        matches!(
            self,
            OperationKind::Quarantine
                | OperationKind::QuarantineReboot
                | OperationKind::ManualQuarantine
        )
    }
}

/// How an operation, or a detection that started none, ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Outcome {
    /// Every NIC confirmed on quarantine (R9).
    Quarantined,
    /// At least one NIC not confirmed; records rolled back (R10).
    QuarantineFailed,
    /// Reset done (R13).
    Rebooted,
    /// Reset failed; a quarantine before it stays (R13).
    RebootFailed,
    /// Every NIC back on operation (R14).
    Released,
    /// Some NIC still on quarantine after a release (R14).
    ReleaseFailed,
    /// Category or keyword excluded (R1, R2).
    Ignored,
    /// No L-Server matched (R3).
    NotFound,
    /// Policy `none`: waiting for an administrator's decision (R5).
    PendingDecision,
    /// Not applicable when its turn came (e.g. a release of an L-Server that is not quarantined).
    Cancelled,
}

impl Outcome {
    /// The spelling used in the journal, the API and scenario files.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Parses [`Outcome::as_str`].
    pub fn parse(text: &str) -> Option<Outcome> {
        text.parse().ok()
    }

    /// Whether this outcome is a failure that carries one ERROR alert (R17).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Outcome::QuarantineFailed | Outcome::RebootFailed | Outcome::ReleaseFailed
        )
    }
}

/// Where an operation is in its life: journaled as the `operations` row's `status` and shown
/// by the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum OperationStatus {
    /// Waiting on its L-Server's lane.
    Queued,
    /// Started: its plan is journaled and device calls may have been made.
    Running,
    /// Finished with an outcome.
    Done,
}

/// Where an L-Server stands, as the management records say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum LServerState {
    /// On its operation networks.
    Normal,
    /// Every NIC recorded on quarantine (R9).
    Quarantined,
    /// Last quarantine failed; records on operation, some NICs may be on quarantine (R10).
    QuarantineFailed,
    /// Last release left NICs on quarantine (R14).
    ReleaseFailed,
    /// Waiting for an administrator's decision (R5).
    PendingDecision,
}

impl LServerState {
    /// The spelling used in the journal and the API.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether a release may run from this state (R14).
    pub fn allows_release(self) -> bool {
        matches!(
            self,
            LServerState::Quarantined
                | LServerState::QuarantineFailed
                | LServerState::ReleaseFailed
        )
    }
}

/// A NIC's management record and last known device network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NicRecord {
    /// NIC index.
    pub index: usize,
    /// Network the engine records the NIC on.
    pub network: String,
    /// IP the engine records for the NIC.
    pub ip: IpAddr,
    /// Network last read from or confirmed at the device; `None` when unknown.
    pub device_network: Option<String>,
    /// A network the engine wrote to the NIC after its last successful read, when that write
    /// may have landed (ok, or an outcome that leaves it open), or else a network a read
    /// answered against the evidence that no later read settled: the NIC may be on it, so the
    /// engine reads before it writes that NIC again (R8, "evidence across operations").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_write: Option<String>,
}

/// An L-Server as the API and the lab see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LServerView {
    /// Path.
    pub path: String,
    /// Management state.
    pub state: LServerState,
    /// Console status: `unknown` for a quarantined physical L-Server (R9), else `normal`.
    pub status: String,
    /// Outcome of the last operation (or detection) on it.
    pub outcome: Option<Outcome>,
    /// Operations queued or running for it.
    pub pending_operations: usize,
    /// Per-NIC records.
    pub nics: Vec<NicRecord>,
    /// Per NIC, in the order of `nics`: when (engine ms) the latest read of its device truth
    /// showed it where its record says — by an operation or by the drift watch (R20); `None`
    /// when the latest read showed it elsewhere, or no read succeeded since the engine started.
    #[serde(default)]
    pub last_verified_ms: Vec<Option<u64>>,
}

/// One operation as the API sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OperationView {
    /// Id.
    pub id: OperationId,
    /// L-Server path.
    pub lserver: String,
    /// Kind.
    pub kind: OperationKind,
    /// Where it is in its life.
    pub status: OperationStatus,
    /// Outcome once done.
    pub outcome: Option<Outcome>,
    /// Free-text detail of the end (failed NICs, remedy).
    pub detail: Option<String>,
    /// Name of the API token whose command queued it (audit); `null` when a detection did.
    #[serde(default)]
    pub requested_by: Option<String>,
}

/// What became of a submitted detection (R1–R5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Disposition {
    /// An operation was queued.
    Accepted,
    /// Excluded by category or keyword (R1, R2).
    Ignored,
    /// No L-Server matched (R3).
    NotFound,
    /// Same event again, or the L-Server's quarantine is in progress or done (R4).
    Duplicate,
    /// Waiting for an administrator's decision (R5).
    PendingDecision,
}

impl Disposition {
    /// The spelling used in the journal and the API.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The durable acknowledgement of a detection (R7): returned only after the journal commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectionReceipt {
    /// Journal id (the first receipt's id for a repeated event).
    pub id: DetectionId,
    /// What became of it.
    pub disposition: Disposition,
    /// The matched L-Server.
    pub lserver: Option<String>,
    /// The operation it started.
    pub operation: Option<OperationId>,
}

/// An administrator's command (API or CLI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Command {
    /// Manual quarantine (R12).
    Quarantine {
        /// L-Server path.
        lserver: String,
    },
    /// Release (R14).
    Release {
        /// L-Server path.
        lserver: String,
    },
    /// Decision for a `pending_decision` L-Server (R5).
    Decide {
        /// L-Server path.
        lserver: String,
        /// `quarantine`, `reboot` or `quarantine_reboot`.
        choice: Action,
    },
}

impl Command {
    /// The L-Server the command names.
    pub fn lserver(&self) -> &str {
        match self {
            Command::Quarantine { lserver }
            | Command::Release { lserver }
            | Command::Decide { lserver, .. } => lserver,
        }
    }
}
