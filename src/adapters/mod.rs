//! The engine's ports: the traits it calls to move NICs, reboot servers and send alerts, and the
//! one error type whose outcome class drives retry and rollback (R8, R10).
//!
//! Real wire clients (vCenter, NX-API, eAPI, RESTCONF, Redfish, SMTP, syslog) implement these
//! traits; so do the lab's simulators. The engine knows nothing else about devices.

pub mod eapi;
pub mod http;
pub mod jsonrpc;
pub mod nxapi;
pub mod plugin;
pub mod redfish;
pub mod restconf;
pub mod smtp;
pub mod syslog;
pub mod vcenter;

use rustc_hash::FxHashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// How a failed device call failed. This classification is what makes rollback correct: only a
/// `Rejected`, `Unavailable`, `Busy` or `Auth` failure proves the change was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum OutcomeClass {
    /// The device answered with an error: definitely not applied.
    Rejected,
    /// The request may have been applied: timeout or connection lost after it was sent.
    Unknown,
    /// Never sent or refused before processing (connection refused, 503 before processing).
    Unavailable,
    /// The device is busy; retry later. Not applied.
    Busy,
    /// The session was rejected; log in again and retry. Not applied.
    Auth,
}

impl OutcomeClass {
    /// The spelling used in the journal and histories.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether the call may have changed the device.
    pub fn may_have_applied(self) -> bool {
        self == OutcomeClass::Unknown
    }
}

/// A failed device call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceError {
    /// How it failed.
    pub class: OutcomeClass,
    /// What the device or transport said.
    pub detail: String,
}

impl DeviceError {
    /// Builds an error of class `class`.
    pub fn new(class: OutcomeClass, detail: impl Into<String>) -> DeviceError {
        DeviceError {
            class,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class.as_str(), self.detail)
    }
}

impl std::error::Error for DeviceError {}

/// Result of one device call.
pub type DeviceResult<T> = Result<T, DeviceError>;

/// A hypervisor manager that owns virtual NICs (vCenter).
#[async_trait]
pub trait Hypervisor: Send + Sync {
    /// Opens (or renews) a session.
    async fn login(&self) -> DeviceResult<()>;
    /// Reads the port group id the vNIC `nic` of `vm` is backed by.
    async fn get_nic(&self, vm: &str, nic: &str) -> DeviceResult<String>;
    /// Sets the vNIC's backing to port group `portgroup`.
    async fn set_nic(&self, vm: &str, nic: &str, portgroup: &str) -> DeviceResult<()>;
    /// Resets the VM (R13).
    async fn power_reset(&self, vm: &str) -> DeviceResult<()>;
}

/// A switch whose access ports carry physical NICs.
#[async_trait]
pub trait Switch: Send + Sync {
    /// Reads the access VLAN of `port`.
    async fn get_port(&self, port: &str) -> DeviceResult<u16>;
    /// Sets the access VLAN of `port` in the running config.
    async fn set_port(&self, port: &str, vlan: u16) -> DeviceResult<()>;
    /// Copies the running config to the startup config.
    async fn save_config(&self) -> DeviceResult<()>;
    /// Whether [`Switch::set_ports`] and [`Switch::get_ports`] carry several ports in one
    /// request (NX-API, eAPI); the topology's `max_batch` then bounds how many (R15).
    fn batches(&self) -> bool {
        false
    }
    /// Sets several ports' access VLANs; one result per change, in order. Without batching,
    /// one call per change.
    async fn set_ports(&self, changes: &[(String, u16)]) -> Vec<DeviceResult<()>> {
        let mut results = Vec::with_capacity(changes.len());
        for (port, vlan) in changes {
            results.push(self.set_port(port, *vlan).await);
        }
        results
    }
    /// Reads several ports' access VLANs; one result per port, in order. Without batching, one
    /// call per port.
    async fn get_ports(&self, ports: &[String]) -> Vec<DeviceResult<u16>> {
        let mut results = Vec::with_capacity(ports.len());
        for port in ports {
            results.push(self.get_port(port).await);
        }
        results
    }
}

/// A baseboard management controller (Redfish).
#[async_trait]
pub trait Bmc: Send + Sync {
    /// `ComputerSystem.Reset` with `ForceRestart` (R13).
    async fn reset(&self) -> DeviceResult<()>;
}

/// One email to a tenant administrator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    /// Left part of the `Message-ID` (`<id@domain of the sender>`): the same for every
    /// sending of one alert, so a resent alert (R16) keeps its id and mail clients thread or
    /// drop the copy. Empty: the mailer makes a random one.
    #[serde(default)]
    pub id: String,
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

/// Outbound email (SMTP).
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Sends one email.
    async fn send(&self, email: &Email) -> DeviceResult<()>;
}

/// Outbound syslog (RFC 5424 lines).
#[async_trait]
pub trait SyslogOut: Send + Sync {
    /// Sends one formatted line.
    async fn send(&self, line: &str) -> DeviceResult<()>;
}

/// Every adapter the engine may call, by device name (names come from the topology, not from
/// the wire, so a fast hash is safe: every device call looks one up).
#[derive(Clone, Default)]
pub struct Adapters {
    /// Hypervisor managers by name.
    pub hypervisors: FxHashMap<String, Arc<dyn Hypervisor>>,
    /// Switches by name.
    pub switches: FxHashMap<String, Arc<dyn Switch>>,
    /// BMCs by name.
    pub bmcs: FxHashMap<String, Arc<dyn Bmc>>,
    /// Outbound email; `None` disables email.
    pub mailer: Option<Arc<dyn Mailer>>,
    /// Outbound syslog; `None` keeps alerts in the journal only.
    pub syslog: Option<Arc<dyn SyslogOut>>,
}

impl Adapters {
    /// Whether alerts have no output at all (neither syslog nor email): they live in the journal
    /// and the API only.
    pub fn alerts_go_nowhere(&self) -> bool {
        self.syslog.is_none() && self.mailer.is_none()
    }
}
