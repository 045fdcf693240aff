//! The engine's configuration file (`qlab engine serve --config FILE`): where the topology and
//! journal are, what the daemon listens on, and how each device of the topology is reached.
//! `qlab sim serve --print-config` writes one that points at the simulators.
//!
//! ```toml
//! topology = "site.toml"            # relative to this file
//! journal = "qlab-journal.sqlite"   # relative to this file
//! token = "change-me"               # QLAB_TOKEN overrides it
//! hostname = "qlab-engine"          # HOSTNAME field of outgoing syslog lines
//!
//! [api]
//! listen = "127.0.0.1:8080"         # port 0: any free port (the ready line tells which)
//! max_body_bytes = 65536
//!
//! [syslog_in]                       # AV servers' syslog (R18: only from their topology address)
//! udp = "127.0.0.1:0"
//! tcp = "127.0.0.1:0"
//! max_message_bytes = 65536
//!
//! [[devices]]                       # one per hypervisor, switch, BMC of the topology
//! name = "vc-1"
//! url = "http://127.0.0.1:9001"
//! user = "qlab"
//! password = "qlab"
//!
//! [[devices]]                       # a BMC: Redfish; session or Basic auth found by the client
//! name = "irmc-1"
//! url = "http://127.0.0.1:9002"
//! user = "qlab"
//! password = "qlab"
//! system_id = "1"                   # optional: unset, the BMC's one listed system is reset
//!
//! [smtp]                            # optional: tenant emails
//! host = "127.0.0.1"
//! port = 2525
//! from = "qlab@example.com"
//!
//! [syslog_out]                      # optional: where alerts go (RFC 5424 over UDP or TCP)
//! udp = "127.0.0.1:5514"
//!
//! [[epo_pollers]]                   # optional: ePO Web API core.executeQuery pollers
//! source = "epo-1"
//! url = "http://127.0.0.1:9443"
//! user = "qlab"
//! password = "qlab"
//! interval = "5s"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::duration;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Topology file, relative to the config file.
    pub topology: PathBuf,
    /// Journal file, relative to the config file.
    pub journal: PathBuf,
    /// API bearer token; `QLAB_TOKEN` overrides it. Empty is refused at start.
    #[serde(default)]
    pub token: String,
    /// HOSTNAME of outgoing syslog lines.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// HTTP API.
    #[serde(default)]
    pub api: ApiConfig,
    /// Syslog listeners for AV servers.
    #[serde(default)]
    pub syslog_in: SyslogInConfig,
    /// How each device is reached.
    #[serde(default)]
    pub devices: Vec<DeviceEndpoint>,
    /// Outgoing email.
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// Outgoing syslog.
    #[serde(default)]
    pub syslog_out: Option<SyslogOutConfig>,
    /// ePO Web API pollers.
    #[serde(default)]
    pub epo_pollers: Vec<EpoPollerConfig>,
}

fn default_hostname() -> String {
    "qlab-engine".into()
}

/// `[api]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Listen address; port 0 picks a free port.
    #[serde(default = "loopback_any")]
    pub listen: SocketAddr,
    /// Largest accepted request body (R18: larger gets 413).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: loopback_any(),
            max_body_bytes: default_max_body(),
        }
    }
}

fn loopback_any() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn default_max_body() -> usize {
    64 * 1024
}

/// `[syslog_in]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogInConfig {
    /// UDP listen address; absent disables it.
    #[serde(default = "some_loopback_any")]
    pub udp: Option<SocketAddr>,
    /// TCP listen address (octet counting and newline framing); absent disables it.
    #[serde(default = "some_loopback_any")]
    pub tcp: Option<SocketAddr>,
    /// Largest accepted message; larger ones are rejected and counted (R18).
    #[serde(default = "default_max_body")]
    pub max_message_bytes: usize,
}

impl Default for SyslogInConfig {
    fn default() -> Self {
        SyslogInConfig {
            udp: some_loopback_any(),
            tcp: some_loopback_any(),
            max_message_bytes: default_max_body(),
        }
    }
}

fn some_loopback_any() -> Option<SocketAddr> {
    Some(loopback_any())
}

/// `[[devices]]`: where a hypervisor, switch or BMC of the topology answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceEndpoint {
    /// Device name in the topology (its kind comes from there).
    pub name: String,
    /// Base URL, e.g. `http://127.0.0.1:9001`.
    pub url: String,
    /// Login name.
    pub user: String,
    /// Password.
    pub password: String,
    /// Redfish system id (BMCs only). Unset: the system the BMC's Systems collection lists,
    /// which must then list exactly one.
    #[serde(default)]
    pub system_id: Option<String>,
}

/// `[smtp]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Sender address.
    pub from: String,
}

/// `[syslog_out]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogOutConfig {
    /// Send over UDP to this address.
    #[serde(default)]
    pub udp: Option<SocketAddr>,
    /// Send over TCP (octet counting) to this address.
    #[serde(default)]
    pub tcp: Option<SocketAddr>,
}

/// `[[epo_pollers]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpoPollerConfig {
    /// AV server name in the topology (kind `epo`).
    pub source: String,
    /// Base URL of the ePO server.
    pub url: String,
    /// Login name (HTTP Basic).
    pub user: String,
    /// Password.
    pub password: String,
    /// Poll interval.
    #[serde(with = "duration::required", default = "default_interval")]
    pub interval: Duration,
}

fn default_interval() -> Duration {
    Duration::from_secs(5)
}

/// Largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

impl EngineConfig {
    /// Reads and parses a config file; relative paths become relative to its folder.
    pub fn load(path: &Path) -> Result<EngineConfig, String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(format!(
                "{}: {} bytes, the limit is {MAX_CONFIG_BYTES}",
                path.display(),
                meta.len()
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut config: EngineConfig = toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            match line {
                Some(line) => format!("{}:{line}: {}", path.display(), e.message()),
                None => format!("{}: {}", path.display(), e.message()),
            }
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.topology = base.join(&config.topology);
        config.journal = base.join(&config.journal);
        Ok(config)
    }

    /// The endpoint of device `name`.
    pub fn device(&self, name: &str) -> Option<&DeviceEndpoint> {
        self.devices.iter().find(|d| d.name == name)
    }
}
