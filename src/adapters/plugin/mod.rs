//! Out-of-process adapters: a hypervisor, switch or BMC driven by a plugin program that speaks
//! JSON-RPC 2.0 on its stdin/stdout (`docs/plugins.md`, and formats.md "Adapter plugin
//! protocol"). [`PluginAdapter`] implements [`Hypervisor`], [`Switch`] and [`Bmc`] by calling the
//! plugin; the engine cannot tell it from a built-in client.
//!
//! # Use
//! ```no_run
//! # use std::time::Duration;
//! # use quarantine_lab::adapters::plugin::{Family, PluginAdapter, PluginDevice};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let device = PluginDevice::new("sw-1", Family::Switch, "https://192.0.2.10", "qlab", "secret");
//! let cmd = ["python3".to_string(), "examples/plugins/restconf_switch.py".to_string()];
//! let switch = PluginAdapter::spawn(&cmd, device, Duration::from_secs(5)).await?;
//! // `switch` is an `Arc<PluginAdapter>`: use it as `Arc<dyn Switch>`.
//! switch.stop().await; // `shutdown`, then the plugin exits
//! # Ok(()) }
//! ```
//! [`PluginAdapter::spawn`] starts the program, sends `initialize` (the only message that
//! carries the password) and fails unless the plugin claims protocol version 1 and the
//! device's family. [`PluginAdapter::spawn_with`] takes the [`Supervision`] bounds (working
//! folder, backoff, timeouts, line cap).
//!
//! # Outcome classes
//! | what happened | class |
//! |---|---|
//! | `result` | ok |
//! | error with `data.class` | that class |
//! | any other error, or an answer with neither or both of `result` and `error` | `unknown` |
//! | no answer within the call timeout | `unknown` |
//! | the plugin exited (or its output closed) with the call in flight | `unknown` |
//! | a successful read whose result lacks the value (`vlan` in 1..=4094, `portgroup`) | `unknown` |
//! | not sent: plugin down and not back within the call timeout, or not reading its input | `unavailable` |
//! | not sent: [`rpc::MAX_PENDING`] calls already in flight | `busy` |
//! | not sent: the request line is over the line cap, or the method is not of the plugin's family | `rejected` |
//!
//! # Decisions the protocol leaves open
//! - Supervision: a plugin that exits, or closes its stdout, is started again after 200 ms,
//!   doubling after every failed start up to 30 s; a plugin that ran 60 s before exiting starts
//!   again after 200 ms. Each start sends `initialize` again. While it is down, calls wait for
//!   it up to their call timeout and are then `unavailable` (never sent).
//! - `initialize` may take 10 s (start-up included) or the call timeout, whichever is longer;
//!   `shutdown` 2 s, then the plugin's exit 2 s more after its stdin is closed, then it is
//!   killed. Dropping the adapter stops the plugin the same way.
//! - Limits: lines of at most [`rpc::MAX_LINE_BYTES`] either way. A longer answer is read and
//!   dropped without being buffered (its call ends `unknown` at its deadline); the connection
//!   goes on. Stderr lines are logged (INFO, field `plugin`) cut at
//!   [`process::MAX_STDERR_LINE_BYTES`]; error details are cut at [`rpc::MAX_DETAIL_CHARS`].
//! - The password is sent in `initialize` only and never logged; as a second line of defence
//!   it is replaced by `***` in the plugin's stderr lines and error details before they are
//!   logged or returned.
//! - `options` carries what the engine knows beyond name, url and credentials:
//!   `call_timeout_ms` (the plugin should give up on a device request before it), and when set
//!   in the config `ca_file` (absolute path), `tls_fingerprint`, `tls_insecure`, `system_id`.
//! - Batches: with `capabilities.batch`, `set_ports`/`get_ports` go out as one call each of at
//!   most `capabilities.max_batch` entries (absent: no bound beyond the topology's `max_batch`).
//!   A batch call that fails as a whole gives every entry its error; a `results` array of the
//!   wrong length makes every entry `unknown`. A `max_batch` of 0 fails `initialize`.
//! - A restarted plugin that claims other capabilities is used with them, with a warning: the
//!   engine sized its batches at start.
//! - A method of another family (a switch call on a hypervisor plugin) is `rejected` without
//!   being sent.

pub mod process;
pub mod rpc;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Bmc, DeviceError, DeviceResult, Hypervisor, OutcomeClass, Switch};
pub use process::Supervision;
use process::{Running, Shared};
use rpc::Connection;

/// The protocol version this engine speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The device family a plugin drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Family {
    /// A hypervisor manager ([`Hypervisor`]).
    Hypervisor,
    /// A switch ([`Switch`]).
    Switch,
    /// A BMC ([`Bmc`]).
    Bmc,
}

impl Family {
    /// The spelling in the protocol.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The device a plugin is started for: what `initialize` tells it.
#[derive(Clone, PartialEq, Eq)]
pub struct PluginDevice {
    /// Device name in the topology.
    pub name: String,
    /// The family the plugin must claim.
    pub family: Family,
    /// Where the device answers (passed as written; the plugin interprets it).
    pub url: String,
    /// Login name.
    pub user: String,
    /// Password; sent in `initialize` only, never logged.
    pub password: String,
    /// Anything else the plugin may need (see the module docs for what the engine sets).
    pub options: Map<String, Value>,
}

impl PluginDevice {
    /// A device without options.
    pub fn new(name: &str, family: Family, url: &str, user: &str, password: &str) -> Self {
        PluginDevice {
            name: name.into(),
            family,
            url: url.into(),
            user: user.into(),
            password: password.into(),
            options: Map::new(),
        }
    }

    /// The `device` member of `initialize`.
    fn wire(&self) -> Value {
        json!({
            "name": self.name,
            "family": self.family.as_str(),
            "url": self.url,
            "user": self.user,
            "password": self.password,
            "options": self.options,
        })
    }
}

impl fmt::Debug for PluginDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginDevice")
            .field("name", &self.name)
            .field("family", &self.family)
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &"***")
            .field("options", &self.options)
            .finish()
    }
}

/// What a plugin said it can do in `initialize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// `set_ports`/`get_ports` carry several ports per call.
    pub batch: bool,
    /// Most entries per batch call; `None`: no bound of its own.
    pub max_batch: Option<usize>,
}

/// Why a plugin could not be started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The command is empty or cannot be run.
    #[error("{0}")]
    Command(String),
    /// `initialize` failed or its answer is unusable.
    #[error("initialize failed: {0}")]
    Initialize(String),
    /// The plugin drives another family than the device's.
    #[error("the plugin drives a {claimed:?} device; this device is a {expected}")]
    Family {
        /// The device's family.
        expected: Family,
        /// What the plugin claimed.
        claimed: String,
    },
}

/// A device driven by a supervised plugin process.
pub struct PluginAdapter {
    shared: Arc<Shared>,
    current: watch::Receiver<Option<Arc<Connection>>>,
    call_timeout: Duration,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl PluginAdapter {
    /// Starts `cmd` (program and arguments) for `device` with the default [`Supervision`];
    /// every call is cut at `call_timeout`. Fails when the program cannot be started, does not
    /// answer `initialize` in time, or drives another family.
    pub async fn spawn(
        cmd: &[String],
        device: PluginDevice,
        call_timeout: Duration,
    ) -> Result<Arc<PluginAdapter>, PluginError> {
        PluginAdapter::spawn_with(cmd, device, call_timeout, Supervision::default()).await
    }

    /// [`PluginAdapter::spawn`] with explicit supervision bounds.
    pub async fn spawn_with(
        cmd: &[String],
        device: PluginDevice,
        call_timeout: Duration,
        mut supervision: Supervision,
    ) -> Result<Arc<PluginAdapter>, PluginError> {
        supervision.init_timeout = supervision.init_timeout.max(call_timeout);
        let (current_tx, current) = watch::channel(None);
        let shared = Arc::new(Shared {
            device,
            command: cmd.to_vec(),
            supervision,
            current: current_tx,
            capabilities: Mutex::new(Capabilities::default()),
            starts: AtomicU64::new(0),
        });
        let (running, initialized): (Running, _) = process::start(&shared).await?;
        *shared
            .capabilities
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = initialized.capabilities;
        shared.current.send_replace(Some(running.conn.clone()));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(process::supervise(shared.clone(), running, stop_rx));
        Ok(Arc::new(PluginAdapter {
            shared,
            current,
            call_timeout,
            stop,
            task: Mutex::new(Some(task)),
        }))
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.shared.device.name
    }

    /// The family the plugin drives.
    pub fn family(&self) -> Family {
        self.shared.device.family
    }

    /// What the running plugin claimed in `initialize`.
    pub fn capabilities(&self) -> Capabilities {
        self.shared.capabilities()
    }

    /// How many times the plugin was started and initialized (1 until it first exits).
    pub fn starts(&self) -> u64 {
        process::starts(&self.shared)
    }

    /// Whether a started plugin is serving calls now.
    pub fn is_running(&self) -> bool {
        self.current.borrow().is_some()
    }

    /// Sends `shutdown`, waits for the plugin to exit (killing it after the grace period) and
    /// stops supervising it. Later calls are `unavailable`.
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Calls `method` on the running plugin; waits for a restarting plugin up to the call
    /// timeout.
    pub async fn call(&self, method: &str, params: Value) -> DeviceResult<Value> {
        let deadline = tokio::time::Instant::now() + self.call_timeout;
        let mut current = self.current.clone();
        let waited = tokio::time::timeout_at(deadline, async {
            loop {
                if *self.stop.borrow() {
                    return None;
                }
                if let Some(conn) = current.borrow_and_update().clone() {
                    if !conn.is_closed() {
                        return Some(conn);
                    }
                }
                if current.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        let Ok(Some(conn)) = waited else {
            return Err(DeviceError::new(
                OutcomeClass::Unavailable,
                format!(
                    "plugin {}: not running (stopped, or restarting and not back within \
                     {:?}); {method} not sent",
                    self.name(),
                    self.call_timeout
                ),
            ));
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        conn.call(method, &params, left).await
    }

    /// Refuses a method of another family without sending it.
    fn require(&self, family: Family, method: &str) -> DeviceResult<()> {
        if self.family() == family {
            return Ok(());
        }
        Err(DeviceError::new(
            OutcomeClass::Rejected,
            format!(
                "plugin {} drives a {}, not a {family}: {method} not sent",
                self.name(),
                self.family()
            ),
        ))
    }

    async fn call_family(
        &self,
        family: Family,
        method: &str,
        params: Value,
    ) -> DeviceResult<Value> {
        self.require(family, method)?;
        self.call(method, params).await
    }

    /// The most entries one batch call may carry.
    fn batch_size(&self) -> usize {
        self.capabilities().max_batch.unwrap_or(usize::MAX).max(1)
    }
}

impl Drop for PluginAdapter {
    fn drop(&mut self) {
        // The supervisor says `shutdown` and reaps the plugin in the background.
        self.stop.send_replace(true);
    }
}

impl fmt::Debug for PluginAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginAdapter")
            .field("device", &self.shared.device)
            .field("command", &self.shared.command)
            .finish()
    }
}

/// The member `key` of a successful read, or `unknown`: the plugin said it read, but what?
fn member<'v>(reply: &'v Value, key: &str, what: &str) -> DeviceResult<&'v Value> {
    reply.get(key).ok_or_else(|| {
        DeviceError::new(
            OutcomeClass::Unknown,
            format!("plugin answer to {what} without {key:?}"),
        )
    })
}

/// A VLAN id in 1..=4094 from a `{"vlan": N}` answer.
fn vlan_of(reply: &Value, what: &str) -> DeviceResult<u16> {
    let value = member(reply, "vlan", what)?;
    value
        .as_u64()
        .and_then(|v| u16::try_from(v).ok())
        .filter(|v| (1..=4094).contains(v))
        .ok_or_else(|| {
            DeviceError::new(
                OutcomeClass::Unknown,
                format!(
                    "plugin answer to {what}: vlan {} is not in 1..=4094",
                    rpc::snippet(&value.to_string())
                ),
            )
        })
}

/// One entry of a batch `results` array: `null`/`{...}` for ok, an error object otherwise.
fn entry_error(entry: &Value, label: &str, redactor: &rpc::Redactor) -> Option<DeviceError> {
    let is_error = entry.get("code").is_some()
        || entry.get("message").is_some()
        || entry.get("data").is_some_and(|d| d.get("class").is_some());
    is_error.then(|| rpc::device_error(entry, label, redactor))
}

/// The `results` array of a batch answer with `expected` entries, or the error every entry gets.
fn batch_results(reply: DeviceResult<Value>, expected: usize) -> Result<Vec<Value>, DeviceError> {
    let reply = reply?;
    match reply.get("results").and_then(Value::as_array) {
        Some(results) if results.len() == expected => Ok(results.clone()),
        Some(results) => Err(DeviceError::new(
            OutcomeClass::Unknown,
            format!(
                "plugin batch answer with {} results for {expected} entries",
                results.len()
            ),
        )),
        None => Err(DeviceError::new(
            OutcomeClass::Unknown,
            "plugin batch answer without a results array",
        )),
    }
}

#[async_trait]
impl Hypervisor for PluginAdapter {
    async fn login(&self) -> DeviceResult<()> {
        let f = Family::Hypervisor;
        self.call_family(f, "login", json!({})).await.map(|_| ())
    }

    async fn get_nic(&self, vm: &str, nic: &str) -> DeviceResult<String> {
        let params = json!({"vm": vm, "nic": nic});
        let reply = self
            .call_family(Family::Hypervisor, "get_nic", params)
            .await?;
        let portgroup = member(&reply, "portgroup", "get_nic")?;
        portgroup
            .as_str()
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                DeviceError::new(
                    OutcomeClass::Unknown,
                    "plugin answer to get_nic: portgroup is not a non-empty string",
                )
            })
    }

    async fn set_nic(&self, vm: &str, nic: &str, portgroup: &str) -> DeviceResult<()> {
        let params = json!({"vm": vm, "nic": nic, "portgroup": portgroup});
        self.call_family(Family::Hypervisor, "set_nic", params)
            .await
            .map(|_| ())
    }

    async fn power_reset(&self, vm: &str) -> DeviceResult<()> {
        let params = json!({"vm": vm});
        self.call_family(Family::Hypervisor, "power_reset", params)
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl Switch for PluginAdapter {
    async fn get_port(&self, port: &str) -> DeviceResult<u16> {
        let reply = self
            .call_family(Family::Switch, "get_port", json!({"port": port}))
            .await?;
        vlan_of(&reply, "get_port")
    }

    async fn set_port(&self, port: &str, vlan: u16) -> DeviceResult<()> {
        let params = json!({"port": port, "vlan": vlan});
        self.call_family(Family::Switch, "set_port", params)
            .await
            .map(|_| ())
    }

    async fn save_config(&self) -> DeviceResult<()> {
        self.call_family(Family::Switch, "save_config", json!({}))
            .await
            .map(|_| ())
    }

    fn batches(&self) -> bool {
        self.family() == Family::Switch && self.capabilities().batch
    }

    async fn set_ports(&self, changes: &[(String, u16)]) -> Vec<DeviceResult<()>> {
        if !self.capabilities().batch {
            let mut results = Vec::with_capacity(changes.len());
            for (port, vlan) in changes {
                results.push(self.set_port(port, *vlan).await);
            }
            return results;
        }
        let redactor = rpc::Redactor::new(&self.shared.device.password);
        let mut results = Vec::with_capacity(changes.len());
        for chunk in changes.chunks(self.batch_size()) {
            let params = json!({"changes": chunk
                .iter()
                .map(|(port, vlan)| json!({"port": port, "vlan": vlan}))
                .collect::<Vec<_>>()});
            let reply = self.call_family(Family::Switch, "set_ports", params).await;
            match batch_results(reply, chunk.len()) {
                Ok(entries) => results.extend(entries.iter().map(|entry| {
                    match entry_error(entry, self.name(), &redactor) {
                        Some(error) => Err(error),
                        None => Ok(()),
                    }
                })),
                Err(error) => results.extend(chunk.iter().map(|_| Err(error.clone()))),
            }
        }
        results
    }

    async fn get_ports(&self, ports: &[String]) -> Vec<DeviceResult<u16>> {
        if !self.capabilities().batch {
            let mut results = Vec::with_capacity(ports.len());
            for port in ports {
                results.push(self.get_port(port).await);
            }
            return results;
        }
        let redactor = rpc::Redactor::new(&self.shared.device.password);
        let mut results = Vec::with_capacity(ports.len());
        for chunk in ports.chunks(self.batch_size()) {
            let params = json!({ "ports": chunk });
            let reply = self.call_family(Family::Switch, "get_ports", params).await;
            match batch_results(reply, chunk.len()) {
                Ok(entries) => results.extend(entries.iter().map(|entry| {
                    match entry_error(entry, self.name(), &redactor) {
                        Some(error) => Err(error),
                        None => vlan_of(entry, "get_ports"),
                    }
                })),
                Err(error) => results.extend(chunk.iter().map(|_| Err(error.clone()))),
            }
        }
        results
    }
}

#[async_trait]
impl Bmc for PluginAdapter {
    async fn reset(&self) -> DeviceResult<()> {
        self.call_family(Family::Bmc, "reset", json!({}))
            .await
            .map(|_| ())
    }
}
