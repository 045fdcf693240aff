//! The fault plan of a scenario (`[[faults]]` in `docs/formats/scenario.md`) as data. The device models decide
//! faults from it, so the in-process face and the wire face fail the same way.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::duration;

/// A device call a fault can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum CallKind {
    /// Hypervisor session login.
    Login,
    /// Hypervisor vNIC read.
    GetNic,
    /// Hypervisor vNIC write.
    SetNic,
    /// Hypervisor VM reset.
    PowerReset,
    /// Switch port read.
    GetPort,
    /// Switch port write.
    SetPort,
    /// Switch config save.
    SaveConfig,
    /// BMC reset.
    Reset,
    /// AV server notification.
    Send,
}

impl CallKind {
    /// The spelling in files and histories.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What a fault does (`docs/formats/scenario.md`, "Fault effects"). As a command-line value
/// (`qlab explore --effects`) only the effects sim mode can play are offered.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum FaultEffect {
    /// Error reply, not applied.
    Reject,
    /// Refused before processing.
    Unavailable,
    /// No reply, not applied.
    Timeout,
    /// Applied, reply lost.
    ApplyThenTimeout,
    /// Applied, error reply.
    ApplyThenError,
    /// Ok reply, nothing changed.
    AcceptWithoutApply,
    /// Reads return the previous value.
    StaleRead,
    /// Adds `delay` to the call.
    Delay,
    /// Retryable busy error.
    Busy,
    /// Session rejected until the client logs in again.
    AuthExpired,
    /// At `from` the switch reboots and drops unsaved config.
    RebootLosesUnsaved,
    /// The AV server's notification never arrives.
    Drop,
    /// It arrives twice.
    Duplicate,
    /// It arrives after later ones.
    Reorder,
    /// Wire only: connection reset after the request is sent.
    #[value(skip)]
    Reset,
    /// Wire only: the connection swallows everything.
    #[value(skip)]
    Blackhole,
    /// At `from`, something other than the engine sets the matched NICs' vNIC backing or port
    /// VLAN to `to_network` (default: each NIC's operation network) (R20, INV-12). Not offered
    /// to `qlab explore --effects`: the explorer does not generate it yet.
    #[value(skip)]
    ExternalChange,
}

/// Calls that read a device: a stale value is a read's answer.
const READS: &[CallKind] = &[CallKind::GetNic, CallKind::GetPort];

/// Calls that change a device: only these can be applied and then lose their reply, or be
/// acknowledged without being applied. A login changes nothing the engine acts on.
const CHANGES: &[CallKind] = &[
    CallKind::SetNic,
    CallKind::PowerReset,
    CallKind::SetPort,
    CallKind::SaveConfig,
    CallKind::Reset,
];

/// Every device call (everything but an AV server's `send`).
const DEVICE_CALLS: &[CallKind] = &[
    CallKind::Login,
    CallKind::GetNic,
    CallKind::SetNic,
    CallKind::PowerReset,
    CallKind::GetPort,
    CallKind::SetPort,
    CallKind::SaveConfig,
    CallKind::Reset,
];

impl FaultEffect {
    /// The calls this effect can act on. The loader refuses a fault whose `call` is not among
    /// them (`docs/formats/scenario.md`: an effect that cannot apply to its call is an input error), and the
    /// fault plan never uses a rule up on a call outside them. `reboot_loses_unsaved` acts on no
    /// call: it is scheduled at its `from`.
    pub fn calls(self) -> &'static [CallKind] {
        match self {
            FaultEffect::StaleRead => READS,
            FaultEffect::AcceptWithoutApply
            | FaultEffect::ApplyThenTimeout
            | FaultEffect::ApplyThenError => CHANGES,
            FaultEffect::Reject
            | FaultEffect::Unavailable
            | FaultEffect::Timeout
            | FaultEffect::Delay
            | FaultEffect::Busy
            | FaultEffect::AuthExpired
            | FaultEffect::Reset
            | FaultEffect::Blackhole => DEVICE_CALLS,
            FaultEffect::Drop | FaultEffect::Duplicate | FaultEffect::Reorder => &[CallKind::Send],
            FaultEffect::RebootLosesUnsaved | FaultEffect::ExternalChange => &[],
        }
    }

    /// The spelling in files and reports.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether the effect exists only in `wire` mode.
    pub fn wire_only(self) -> bool {
        matches!(self, FaultEffect::Reset | FaultEffect::Blackhole)
    }

    /// Whether the effect applies to AV servers (`send`) rather than device calls.
    pub fn is_delivery(self) -> bool {
        matches!(
            self,
            FaultEffect::Drop | FaultEffect::Duplicate | FaultEffect::Reorder
        )
    }
}

/// Narrows a fault to some objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultMatch {
    /// VM id.
    #[serde(default)]
    pub vm: Option<String>,
    /// vNIC key.
    #[serde(default)]
    pub nic: Option<String>,
    /// Switch port.
    #[serde(default)]
    pub port: Option<String>,
    /// L-Server path (for AV server faults: the detection's L-Server by IP).
    #[serde(default)]
    pub lserver: Option<String>,
}

/// One `[[faults]]` entry. Not `Eq`: `probability` is a float.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Hypervisor, switch, BMC or AV server name.
    pub device: String,
    /// The call it affects; every call of the device when absent.
    #[serde(default)]
    pub call: Option<CallKind>,
    /// What it does.
    pub effect: FaultEffect,
    /// How many matching calls it affects; every one when absent.
    #[serde(default)]
    pub times: Option<u32>,
    /// Start of the active window (run time); the start of the run when absent.
    #[serde(default, with = "duration::OptionalText")]
    pub from: Option<Duration>,
    /// End of the active window; the end of the run when absent.
    #[serde(default, with = "duration::OptionalText")]
    pub until: Option<Duration>,
    /// Which objects.
    #[serde(default, rename = "match")]
    pub matcher: FaultMatch,
    /// For `delay` and the timeouts.
    #[serde(default, with = "duration::OptionalText")]
    pub delay: Option<Duration>,
    /// Chance (0 to 1) that a matching call is affected, drawn from the run's seed; every
    /// matching call when absent.
    #[serde(default)]
    pub probability: Option<f64>,
    /// For `external_change`: the network the matched NICs are moved to (default: each NIC's
    /// operation network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_network: Option<String>,
}

impl FaultSpec {
    /// A fault on `device`'s `call` (every call when `None`) with `effect`, on every matching
    /// call of the whole run; the other keys are set with struct update syntax.
    pub fn new(
        device: impl Into<String>,
        call: Option<CallKind>,
        effect: FaultEffect,
    ) -> FaultSpec {
        FaultSpec {
            device: device.into(),
            call,
            effect,
            times: None,
            from: None,
            until: None,
            matcher: FaultMatch::default(),
            delay: None,
            probability: None,
            to_network: None,
        }
    }
}
