//! The topology file (`docs/formats/topology.md`) as plain serde data.
//!
//! Every struct denies unknown keys so a typo in a site file is an error, never a silently
//! ignored setting. Loading (with file/line/key errors) lives in `load.rs`, semantic checks in
//! `validate.rs`, and the `[generate]` expansion in `generate.rs`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration;

/// A whole site: networks, devices, L-Servers, policy and engine settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Site name, used in reports and alerts.
    pub name: String,
    /// Operation and quarantine networks.
    #[serde(default)]
    pub networks: Vec<Network>,
    /// Operation network name -> quarantine network name.
    #[serde(default)]
    pub quarantine_map: BTreeMap<String, String>,
    /// Antivirus management servers that may send detections.
    #[serde(default)]
    pub av_servers: Vec<AvServer>,
    /// Hypervisor managers (vCenter) that own virtual NICs.
    #[serde(default)]
    pub hypervisors: Vec<HypervisorSpec>,
    /// Switches whose access ports carry physical NICs.
    #[serde(default)]
    pub switches: Vec<SwitchSpec>,
    /// Baseboard management controllers of physical L-Servers.
    #[serde(default)]
    pub bmcs: Vec<BmcSpec>,
    /// Tenants and their administrators' email addresses.
    #[serde(default)]
    pub tenants: Vec<Tenant>,
    /// Managed servers.
    #[serde(default)]
    pub lservers: Vec<LServerSpec>,
    /// What to do on a detection (R5) and which threats to ignore (R2).
    #[serde(default)]
    pub policy: PolicySpec,
    /// Engine tunables (R8, R19).
    #[serde(default)]
    pub engine: EngineSpec,
    /// Optional bulk L-Server generation for large sites.
    #[serde(default)]
    pub generate: Option<GenerateSpec>,
}

/// Role of a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NetworkRole {
    /// A production network L-Servers normally live on.
    Operation,
    /// An isolated network infected L-Servers are moved to.
    Quarantine,
}

/// One network: VLAN and subnet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Unique network name.
    pub name: String,
    /// Operation or quarantine.
    pub role: NetworkRole,
    /// 802.1Q VLAN id used on switch access ports.
    pub vlan: u16,
    /// IP subnet; quarantine IPs are allocated from it (R6).
    #[schemars(with = "String")]
    pub subnet: IpNet,
}

/// Kind of antivirus management server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AvKind {
    /// Trend Micro OfficeScan / Apex Central.
    Officescan,
    /// Symantec Endpoint Protection Manager.
    Sepm,
    /// McAfee / Trellix ePolicy Orchestrator.
    Epo,
}

/// How an AV server hands its detections to the engine. The engine itself accepts every
/// transport it is configured for; the key says which one this server uses, so the lab's wire
/// mode sends each detection the way the server would and `qlab sim serve` writes the config
/// the server needs (an ePO poller for `epo_api`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum AvTransport {
    /// Syslog over UDP, one message per datagram, in the vendor's format (the default: what
    /// every supported kind can forward).
    #[default]
    SyslogUdp,
    /// Syslog over TCP (RFC 6587 octet counting), in the vendor's format.
    SyslogTcp,
    /// The ePO Web API (`core.executeQuery`), polled by the engine (kind `epo` only; the
    /// server's `credentials` are the poller's login).
    EpoApi,
    /// `POST /api/v1/detections`: a command the AV server runs on a detection (`qlab notify`,
    /// SEPM notifications, ePO registered executables).
    Api,
}

impl AvTransport {
    /// The spelling in files, reports and the engine's counters.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    fn is_default(&self) -> bool {
        *self == AvTransport::default()
    }
}

/// User name and password a simulator accepts and an adapter presents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Login name.
    pub user: String,
    /// Password.
    pub password: String,
}

/// An antivirus management server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AvServer {
    /// Unique device name; detections name it as their `source`.
    pub name: String,
    /// Vendor.
    pub kind: AvKind,
    /// Syslog source address accepted for it (R18).
    pub address: IpAddr,
    /// Credentials for pull APIs (ePO Web API).
    #[serde(default)]
    pub credentials: Option<Credentials>,
    /// Simulated delivery variation (the lab only): each notification reaches the engine a
    /// draw in `[0, jitter]` from the run's seed after it is sent.
    #[serde(default, with = "duration::OptionalText")]
    pub jitter: Option<Duration>,
    /// How it delivers detections (default `syslog_udp`).
    #[serde(default, skip_serializing_if = "AvTransport::is_default")]
    pub transport: AvTransport,
}

/// Kind of hypervisor manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HypervisorKind {
    /// VMware vCenter (vSphere Automation REST).
    Vcenter,
}

/// A hypervisor manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HypervisorSpec {
    /// Unique device name.
    pub name: String,
    /// Protocol family.
    pub kind: HypervisorKind,
    /// Most calls the engine keeps in flight to it at once (R15).
    #[serde(default = "default_hypervisor_concurrency")]
    pub max_concurrent: u32,
    /// Simulated latency of one call (simulators only).
    #[serde(default, with = "duration::OptionalText")]
    pub latency: Option<Duration>,
    /// Simulated latency variation (simulators only): each call takes `latency` plus a draw in
    /// `[0, jitter]` from the run's seed.
    #[serde(default, with = "duration::OptionalText")]
    pub jitter: Option<Duration>,
    /// Network name -> port group id on this manager.
    #[serde(default)]
    pub portgroups: BTreeMap<String, String>,
    /// Login credentials; simulators default to `qlab`/`qlab`.
    #[serde(default)]
    pub credentials: Option<Credentials>,
}

fn default_hypervisor_concurrency() -> u32 {
    8
}

/// Kind of switch API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SwitchKind {
    /// Cisco NX-API JSON-RPC.
    Nxapi,
    /// Arista eAPI runCmds.
    Eapi,
    /// OpenConfig over RESTCONF.
    Restconf,
}

/// A switch adjacent to physical L-Servers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchSpec {
    /// Unique device name.
    pub name: String,
    /// Protocol family.
    pub kind: SwitchKind,
    /// Most calls in flight at once (R15).
    #[serde(default = "default_switch_concurrency")]
    pub max_concurrent: u32,
    /// Simulated latency of one call (simulators only).
    #[serde(default, with = "duration::OptionalText")]
    pub latency: Option<Duration>,
    /// Simulated latency variation (simulators only): each call takes `latency` plus a draw in
    /// `[0, jitter]` from the run's seed.
    #[serde(default, with = "duration::OptionalText")]
    pub jitter: Option<Duration>,
    /// Save running config to startup config after a change (R8).
    #[serde(default)]
    pub persist: bool,
    /// Port changes one call may carry (R15 batching).
    #[serde(default = "default_max_batch")]
    pub max_batch: u32,
    /// Login credentials; simulators default to `qlab`/`qlab`.
    #[serde(default)]
    pub credentials: Option<Credentials>,
}

fn default_switch_concurrency() -> u32 {
    1
}

fn default_max_batch() -> u32 {
    1
}

/// Kind of management controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BmcKind {
    /// DMTF Redfish (Fujitsu iRMC and others).
    Redfish,
}

/// A baseboard management controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BmcSpec {
    /// Unique device name.
    pub name: String,
    /// Protocol family.
    pub kind: BmcKind,
    /// Most calls in flight at once.
    #[serde(default = "default_bmc_concurrency")]
    pub max_concurrent: u32,
    /// Simulated latency of one call (simulators only).
    #[serde(default, with = "duration::OptionalText")]
    pub latency: Option<Duration>,
    /// Simulated latency variation (simulators only): each call takes `latency` plus a draw in
    /// `[0, jitter]` from the run's seed.
    #[serde(default, with = "duration::OptionalText")]
    pub jitter: Option<Duration>,
    /// Login credentials; simulators default to `qlab`/`qlab`.
    #[serde(default)]
    pub credentials: Option<Credentials>,
}

fn default_bmc_concurrency() -> u32 {
    1
}

/// A tenant and its administrator's email.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// Unique tenant name.
    pub name: String,
    /// Administrator address; no address means no email for this tenant.
    #[serde(default)]
    pub email: Option<String>,
}

/// Virtual (behind a hypervisor) or physical (behind switch ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LServerKind {
    /// A VM whose vNICs a hypervisor manager moves.
    Virtual,
    /// A bare-metal server whose switch ports change VLAN.
    Physical,
}

/// One managed server as written in the topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LServerSpec {
    /// Folder path such as `/tenant-a/vdi-001`.
    pub path: String,
    /// Owning tenant, if any.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Virtual or physical.
    pub kind: LServerKind,
    /// Hypervisor manager (virtual only).
    #[serde(default)]
    pub hypervisor: Option<String>,
    /// VM id on the hypervisor manager (virtual only).
    #[serde(default)]
    pub vm: Option<String>,
    /// Management controller (physical only).
    #[serde(default)]
    pub bmc: Option<String>,
    /// Host name the AV server may report.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Network interfaces, in order.
    pub nics: Vec<NicSpec>,
}

/// One network interface as written in the topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NicSpec {
    /// Operation network the NIC lives on.
    pub network: String,
    /// Operation IP address.
    pub ip: IpAddr,
    /// MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// vNIC key on the hypervisor (virtual only), e.g. `4000`.
    #[serde(default)]
    pub device: Option<String>,
    /// Adjacent switch (physical only).
    #[serde(default)]
    pub switch: Option<String>,
    /// Port on the adjacent switch (physical only), e.g. `Ethernet1/5`.
    #[serde(default)]
    pub port: Option<String>,
}

/// Action taken on a qualifying detection (R5).
/// As a command-line value (`qlab engine decide --choice`) it is an administrator's choice,
/// which `none` is not.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Action {
    /// Move every NIC to its quarantine network.
    Quarantine,
    /// Reset the server only.
    Reboot,
    /// Quarantine, then reset once the quarantine succeeded.
    QuarantineReboot,
    /// Ask the tenant administrator to choose.
    #[value(skip)]
    None,
}

impl Action {
    /// The spelling used in files, the API and the journal.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Parses the spelling of [`Action::as_str`].
    pub fn parse(text: &str) -> Option<Action> {
        text.parse().ok()
    }
}

/// Policy section (R2, R5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// Action when no path rule matches.
    #[serde(default = "default_action")]
    pub default_action: Action,
    /// Threat-name keywords (case-insensitive substrings) that never trigger an action.
    #[serde(default)]
    pub excluded_threat_keywords: Vec<String>,
    /// Exact L-Server path or folder prefix -> action.
    #[serde(default)]
    pub actions: BTreeMap<String, Action>,
}

fn default_action() -> Action {
    Action::Quarantine
}

impl Default for PolicySpec {
    fn default() -> Self {
        PolicySpec {
            default_action: Action::Quarantine,
            excluded_threat_keywords: Vec::new(),
            actions: BTreeMap::new(),
        }
    }
}

/// Retry policy for transient device errors (R8).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Most attempts of one device write, the first included.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Wait before the second attempt; doubles on each further attempt.
    #[serde(default = "default_backoff", with = "duration::Text")]
    pub backoff: Duration,
}

fn default_attempts() -> u32 {
    4
}

fn default_backoff() -> Duration {
    Duration::from_millis(200)
}

impl Default for RetrySpec {
    fn default() -> Self {
        RetrySpec {
            attempts: default_attempts(),
            backoff: default_backoff(),
        }
    }
}

/// Engine section (R8, R19).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EngineSpec {
    /// Verify every write with a read (R8).
    #[serde(default = "default_true")]
    pub verify_writes: bool,
    /// Timeout of one device call (R19).
    #[serde(default = "default_call_timeout", with = "duration::Text")]
    pub call_timeout: Duration,
    /// Deadline of one operation (R19).
    #[serde(default = "default_operation_deadline", with = "duration::Text")]
    pub operation_deadline: Duration,
    /// Retries of transient device errors.
    #[serde(default)]
    pub retry: RetrySpec,
    /// How often the drift watch re-reads every quarantined NIC at least (R20).
    #[serde(default = "default_watch_interval", with = "duration::Text")]
    pub watch_interval: Duration,
    /// Most drift-watch reads per second on one device (R20).
    #[serde(default = "default_watch_calls_per_second")]
    pub watch_calls_per_second: u32,
    /// How long before a read that contradicts the engine's evidence for a NIC is read again,
    /// the later read being the one acted on (R8: a device may serve a stale value for a while
    /// after a change).
    #[serde(default = "default_confirm_read_after", with = "duration::Text")]
    pub confirm_read_after: Duration,
}

fn default_true() -> bool {
    true
}

fn default_call_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_operation_deadline() -> Duration {
    Duration::from_secs(60)
}

/// The shortest `watch_interval`: the drift watch is always on (R20), and a shorter round would
/// spend the devices' capacity on re-reading what has not moved.
pub const MIN_WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The most drift-watch reads per second a topology may allow on one device (R20).
pub const MAX_WATCH_CALLS_PER_SECOND: u32 = 1000;

fn default_watch_interval() -> Duration {
    Duration::from_secs(60)
}

fn default_watch_calls_per_second() -> u32 {
    10
}

fn default_confirm_read_after() -> Duration {
    Duration::from_secs(2)
}

impl Default for EngineSpec {
    fn default() -> Self {
        EngineSpec {
            verify_writes: true,
            call_timeout: default_call_timeout(),
            operation_deadline: default_operation_deadline(),
            retry: RetrySpec::default(),
            watch_interval: default_watch_interval(),
            watch_calls_per_second: default_watch_calls_per_second(),
            confirm_read_after: default_confirm_read_after(),
        }
    }
}

/// `[generate]`: many L-Servers without listing them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateSpec {
    /// Virtual L-Servers spread over the hypervisors.
    #[serde(default, rename = "virtual")]
    pub virtual_count: u32,
    /// Physical L-Servers spread over the switches.
    #[serde(default, rename = "physical")]
    pub physical_count: u32,
}
