//! Arista eAPI client (JSON-RPC 2.0 `runCmds` over HTTP, `POST /command-api`) behind the
//! engine's [`Switch`] port, plus the wire shapes its simulator (`sim::wire::eapi`) builds from.
//!
//! # Wire shapes
//! From vendor-protocols.md: `{"jsonrpc":"2.0","method":"runCmds","params":{"version":1,
//! "cmds":[...],"format":"json"},"id":"1"}`; success `{"jsonrpc":"2.0","id":"1","result":[{},..]}`
//! with one object per command; execution stops at the first failing command:
//! `"error":{"code":1002,"message":"CLI command 4 of 4 '...' failed: ...","data":[{},{},{},
//! {"errors":["..."]}]}` (`data` holds the outputs of the commands that ran, the failing one
//! last); protocol errors `{"error":{"code":-32600,"message":"Expected field 'jsonrpc' not
//! specified"},"id":null}`.
//!
//! Unconfirmed (chosen here and only here):
//! - `show interfaces <port> switchport` answers `{"switchports":{"Ethernet5":{"enabled":true,
//!   "switchportInfo":{"mode":"access","accessVlanId":910}}}}` (the shape pyeapi reads).
//! - Command and protocol errors come with HTTP 200 (eAPI reports them in the JSON-RPC body).
//! - Busy: error code [`CODE_BUSY`] (-32001, JSON-RPC's implementation-defined server-error
//!   range, so it cannot collide with a CLI error code), with `data` like a 1002.
//! - Internal error -32603, sent with HTTP 500, means "may have been applied" (`unknown`).
//!
//! # Class mapping (the one table, [`interpret`] and [`code_class`])
//! | reply | class |
//! |---|---|
//! | HTTP 401 | `auth` |
//! | HTTP 503 | `unavailable` |
//! | JSON-RPC error [`CODE_BUSY`] | `busy` |
//! | JSON-RPC error [`CODE_INTERNAL`] | `unknown` |
//! | any other JSON-RPC error (1002 command failed, -32600/-32601/-32602/-32700 protocol) | `rejected` |
//! | a command error whose failing command cannot be told | `unknown` |
//! | 5xx without a JSON-RPC error, or a 2xx that is not a complete reply | `unknown` |
//! | any other 4xx | [`http::status_class`] (429 `busy`, else `rejected`) |
//! | transport failure | [`http::transport_error`] (refused `unavailable`, later `unknown`) |

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::http;
use super::nxapi::{
    check_port, endpoint, first_result, per_change, per_read, vlan_value, CommandOutcome,
};
use super::{DeviceError, DeviceResult, OutcomeClass, Switch};

/// The eAPI endpoint.
pub const PATH: &str = "/command-api";
/// JSON-RPC: the body is not JSON.
pub const CODE_PARSE_ERROR: i64 = -32700;
/// JSON-RPC: not a valid request object.
pub const CODE_INVALID_REQUEST: i64 = -32600;
/// JSON-RPC: method other than `runCmds`.
pub const CODE_METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC: bad `params`.
pub const CODE_INVALID_PARAMS: i64 = -32602;
/// The device failed while executing (maps to `unknown`).
pub const CODE_INTERNAL: i64 = -32603;
/// A CLI command failed.
pub const CODE_COMMAND_FAILED: i64 = 1002;
/// The device is busy, retry later (unconfirmed, see the module docs).
pub const CODE_BUSY: i64 = -32001;
/// Commands that open configuration mode before the per-port lines of [`set_commands`].
pub const CONFIG_PREAMBLE: [&str; 2] = ["enable", "configure"];
/// CLI lines [`set_commands`] emits per port, after [`CONFIG_PREAMBLE`].
pub const SET_COMMANDS_PER_PORT: usize = 2;

/// The class of a JSON-RPC error code (see the module's table).
pub fn code_class(code: i64) -> OutcomeClass {
    match code {
        CODE_BUSY => OutcomeClass::Busy,
        CODE_INTERNAL => OutcomeClass::Unknown,
        _ => OutcomeClass::Rejected,
    }
}

/// A `runCmds` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunCmdsRequest {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// Always `"runCmds"`.
    pub method: String,
    /// The commands.
    pub params: RunCmdsParams,
    /// Request id, echoed in the reply.
    pub id: Value,
}

/// `params` of a [`RunCmdsRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunCmdsParams {
    /// API version: 1 (or `"latest"`).
    pub version: Value,
    /// CLI lines, each a string or `{"cmd": ..., "input": ...}`.
    pub cmds: Vec<Value>,
    /// `"json"` (the default) or `"text"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Whether to add timestamps to outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamps: Option<bool>,
    /// Whether abbreviated commands are expanded.
    #[serde(
        default,
        rename = "autoComplete",
        skip_serializing_if = "Option::is_none"
    )]
    pub auto_complete: Option<bool>,
    /// Whether aliases are expanded.
    #[serde(
        default,
        rename = "expandAliases",
        skip_serializing_if = "Option::is_none"
    )]
    pub expand_aliases: Option<bool>,
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EapiError {
    /// Error code (see the `CODE_*` constants).
    pub code: i64,
    /// Text, `CLI command k of n '...' failed: ...` for command errors.
    #[serde(default)]
    pub message: String,
    /// Outputs of the commands that ran; the failing one last, as `{"errors": [...]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// A reply as the client reads it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RunCmdsReply {
    /// One output per command.
    #[serde(default)]
    pub result: Option<Vec<Value>>,
    /// Set when a command (or the request) failed.
    #[serde(default)]
    pub error: Option<EapiError>,
}

/// A successful reply.
pub fn ok_reply(id: &Value, results: Vec<Value>) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": results})
}

/// An error reply.
pub fn error_reply(id: &Value, error: &EapiError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": error})
}

/// The commands that set each `(port, vlan)` in order: [`CONFIG_PREAMBLE`], then
/// [`SET_COMMANDS_PER_PORT`] lines per port.
pub fn set_commands(changes: &[(&str, u16)]) -> Vec<String> {
    let lines = changes.iter().flat_map(|(port, vlan)| {
        [
            format!("interface {port}"),
            format!("switchport access vlan {vlan}"),
        ]
    });
    CONFIG_PREAMBLE
        .iter()
        .map(|c| c.to_string())
        .chain(lines)
        .collect()
}

/// The command that reads a port's switchport state.
pub fn show_command(port: &str) -> String {
    format!("show interfaces {port} switchport")
}

/// The commands that save the running config.
pub fn save_commands() -> Vec<String> {
    vec![
        "enable".to_string(),
        "copy running-config startup-config".to_string(),
    ]
}

/// The request for `commands`.
pub fn request_body(commands: &[String], id: &str) -> RunCmdsRequest {
    RunCmdsRequest {
        jsonrpc: "2.0".into(),
        method: "runCmds".into(),
        params: RunCmdsParams {
            version: json!(1),
            cmds: commands.iter().map(|c| json!(c)).collect(),
            format: Some("json".into()),
            timestamps: None,
            auto_complete: None,
            expand_aliases: None,
        },
        id: json!(id),
    }
}

/// The output of `show interfaces <port> switchport` (unconfirmed shape, module docs).
pub fn switchport_body(port: &str, vlan: u16) -> Value {
    json!({"switchports": {port: {
        "enabled": true,
        "switchportInfo": {"mode": "access", "accessVlanId": vlan},
    }}})
}

/// Reads the access VLAN of `port` from a [`switchport_body`]-shaped output: the entry keyed by
/// the port (exactly, then case-insensitively), or the only entry.
pub fn parse_switchport(port: &str, body: &Value) -> Option<u16> {
    let ports = body.get("switchports")?.as_object()?;
    let entry = ports
        .get(port)
        .or_else(|| {
            ports
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(port))
                .map(|(_, v)| v)
        })
        .or_else(|| (ports.len() == 1).then(|| ports.values().next()).flatten())?;
    vlan_value(entry.get("switchportInfo")?.get("accessVlanId")?)
}

/// The index of the command that failed: from `data` (outputs of the commands that ran, the
/// failing one last), else from `CLI command k of n` in the message.
fn failed_index(error: &EapiError) -> Option<usize> {
    if let Some(Value::Array(data)) = &error.data {
        return data.len().checked_sub(1);
    }
    let rest = error.message.strip_prefix("CLI command ")?;
    let k: usize = rest.split_whitespace().next()?.parse().ok()?;
    k.checked_sub(1)
}

/// Classifies a reply to `count` commands (the module's table).
pub fn interpret(status: StatusCode, body: &str, count: usize) -> CommandOutcome {
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::SERVICE_UNAVAILABLE {
        let detail = format!("HTTP {status}: {}", http::snippet(body));
        return Err((0, DeviceError::new(http::status_class(status), detail)));
    }
    let Ok(reply) = serde_json::from_str::<RunCmdsReply>(body) else {
        let class = if status.is_client_error() {
            http::status_class(status)
        } else {
            OutcomeClass::Unknown
        };
        let detail = format!(
            "unreadable eAPI reply (HTTP {status}): {}",
            http::snippet(body)
        );
        return Err((0, DeviceError::new(class, detail)));
    };
    if let Some(error) = &reply.error {
        let errors = match &error.data {
            Some(Value::Array(data)) => data
                .last()
                .and_then(|d| d.get("errors"))
                .map(Value::to_string)
                .unwrap_or_default(),
            _ => String::new(),
        };
        let detail = format!("eAPI error {}: {} {errors}", error.code, error.message);
        let class = code_class(error.code);
        let protocol = (-32700..=-32600).contains(&error.code);
        return match failed_index(error) {
            Some(index) => Err((index, DeviceError::new(class, detail))),
            // A protocol error is refused before anything runs.
            None if protocol => Err((0, DeviceError::new(class, detail))),
            // Which command failed is unknown, so neither is whether earlier ones ran.
            None => Err((0, DeviceError::new(OutcomeClass::Unknown, detail))),
        };
    }
    let results = reply.result.unwrap_or_default();
    if results.len() < count {
        let detail = format!(
            "eAPI reply (HTTP {status}) has {} of {count} outputs",
            results.len()
        );
        return Err((
            results.len(),
            DeviceError::new(OutcomeClass::Unknown, detail),
        ));
    }
    Ok(results)
}

/// An Arista eAPI switch.
pub struct EapiSwitch {
    http: reqwest::Client,
    url: String,
    user: String,
    password: String,
    next_id: AtomicU64,
}

impl EapiSwitch {
    /// A client for the switch at `base_url` (`http://host:port`), authenticating every request
    /// with HTTP Basic `user`/`password`; each call is cut at `call_timeout`.
    pub fn new(
        base_url: &str,
        user: &str,
        password: &str,
        call_timeout: Duration,
    ) -> Result<EapiSwitch, DeviceError> {
        Ok(EapiSwitch {
            http: http::client(call_timeout)?,
            url: endpoint(base_url, PATH)?,
            user: user.to_string(),
            password: password.to_string(),
            next_id: AtomicU64::new(1),
        })
    }

    /// Sets several ports' access VLANs in one request (R15 batching); one result per change,
    /// in order. eAPI stops at the first failing command, so changes before it applied.
    pub async fn set_ports(&self, changes: &[(&str, u16)]) -> Vec<DeviceResult<()>> {
        if changes.is_empty() {
            return Vec::new();
        }
        if let Some(Err(e)) = changes
            .iter()
            .map(|(p, _)| check_port(p))
            .find(Result::is_err)
        {
            return vec![Err(e); changes.len()];
        }
        let outcome = self.run(&set_commands(changes)).await;
        let offset = CONFIG_PREAMBLE.len();
        per_change(outcome, changes.len(), offset, SET_COMMANDS_PER_PORT)
    }

    /// Sends `commands` as one `runCmds` request and classifies the reply.
    async fn run(&self, commands: &[String]) -> CommandOutcome {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).to_string();
        let response = self
            .http
            .post(&self.url)
            .basic_auth(&self.user, Some(&self.password))
            .json(&request_body(commands, &id))
            .send()
            .await
            .map_err(|e| (0, http::transport_error(&e)))?;
        let status = response.status();
        let text = http::body_text(response).await.map_err(|e| (0, e))?;
        interpret(status, &text, commands.len())
    }
}

#[async_trait]
impl Switch for EapiSwitch {
    async fn get_port(&self, port: &str) -> DeviceResult<u16> {
        first_result(self.get_ports(&[port.to_string()]).await)
    }

    async fn set_port(&self, port: &str, vlan: u16) -> DeviceResult<()> {
        first_result(EapiSwitch::set_ports(self, &[(port, vlan)]).await)
    }

    fn batches(&self) -> bool {
        true
    }

    async fn set_ports(&self, changes: &[(String, u16)]) -> Vec<DeviceResult<()>> {
        let changes: Vec<(&str, u16)> = changes.iter().map(|(p, v)| (p.as_str(), *v)).collect();
        EapiSwitch::set_ports(self, &changes).await
    }

    async fn get_ports(&self, ports: &[String]) -> Vec<DeviceResult<u16>> {
        if let Some(e) = ports.iter().find_map(|p| check_port(p).err()) {
            return vec![Err(e); ports.len()];
        }
        let commands: Vec<String> = ports.iter().map(|p| show_command(p)).collect();
        per_read(self.run(&commands).await, ports, "eAPI", parse_switchport)
    }

    async fn save_config(&self) -> DeviceResult<()> {
        self.run(&save_commands())
            .await
            .map(|_| ())
            .map_err(|(_, e)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_command_is_found_in_data_or_message() {
        let with_data = EapiError {
            code: CODE_COMMAND_FAILED,
            message: String::new(),
            data: Some(json!([{}, {}, {"errors": ["x"]}])),
        };
        assert_eq!(failed_index(&with_data), Some(2));
        let with_message = EapiError {
            code: CODE_COMMAND_FAILED,
            message: "CLI command 4 of 4 'switchport access vlan 910' failed: x".into(),
            data: None,
        };
        assert_eq!(failed_index(&with_message), Some(3));
        let body = error_reply(&json!("1"), &with_message).to_string();
        let outcome = interpret(StatusCode::OK, &body, 4).map_err(|(i, e)| (i, e.class));
        assert_eq!(outcome, Err((3, OutcomeClass::Rejected)));
    }

    #[test]
    fn switchport_output_parses_by_port_name() {
        assert_eq!(
            parse_switchport("Ethernet5", &switchport_body("Ethernet5", 910)),
            Some(910)
        );
        assert_eq!(
            parse_switchport("ethernet5", &switchport_body("Ethernet5", 910)),
            Some(910)
        );
        let two = json!({"switchports": {
            "Ethernet4": {"switchportInfo": {"accessVlanId": 1}},
            "Ethernet6": {"switchportInfo": {"accessVlanId": 2}},
        }});
        assert_eq!(parse_switchport("Ethernet5", &two), None);
    }
}
