//! Arista eAPI client (JSON-RPC 2.0 `runCmds` over HTTP, `POST /command-api`) behind the
//! engine's [`Switch`] port: the eAPI dialect of [`super::jsonrpc`]. Its shapes are checked
//! against the vendor samples in `fixtures/devices/arista-eapi/` (`tests/wire_switches.rs`),
//! never against the simulator's code.
//!
//! # Wire shapes
//! From vendor-protocols.md and pyeapi, see `fixtures/devices/arista-eapi/README.md`: `{"jsonrpc":"2.0","method":"runCmds","params":{"version":1,
//! "cmds":[...],"format":"json"},"id":"1"}`; success `{"jsonrpc":"2.0","id":"1","result":[{},..]}`
//! with one object per command; execution stops at the first failing command:
//! `"error":{"code":1002,"message":"CLI command 4 of 4 '...' failed: ...","data":[{},{},{},
//! {"errors":["..."]}]}` (`data` holds the outputs of the commands that ran, the failing one
//! last); protocol errors `{"error":{"code":-32600,"message":"Expected field 'jsonrpc' not
//! specified"},"id":null}`.
//!
//! Unconfirmed (chosen here and only here):
//! - `show interfaces <port> switchport` answers `{"switchports":{"Ethernet5":{"enabled":true,
//!   "switchportInfo":{"mode":"access","accessVlanId":910}}}}` (no public capture was found;
//!   pyeapi reads the running config instead, which the simulator serves too).
//! - Command and protocol errors come with HTTP 200 (eAPI reports them in the JSON-RPC body).
//! - Busy: error code -32001 ([`super::jsonrpc::CODE_BUSY`], JSON-RPC's implementation-defined
//!   server-error range, so it cannot collide with a CLI error code), with `data` like a 1002.
//! - Internal error -32603, sent with HTTP 500, means "may have been applied" (`unknown`).
//!
//! # Class mapping (the one table, [`interpret`] and [`code_class`](super::jsonrpc::code_class))
//! | reply | class |
//! |---|---|
//! | HTTP 401 | `auth` |
//! | HTTP 503 | `unavailable` |
//! | JSON-RPC error [`CODE_BUSY`](super::jsonrpc::CODE_BUSY) | `busy` |
//! | JSON-RPC error [`CODE_INTERNAL`](super::jsonrpc::CODE_INTERNAL) | `unknown` |
//! | any other JSON-RPC error (1002 command failed, -32600/-32601/-32602/-32700 protocol) | `rejected` |
//! | a command error whose failing command cannot be told | `unknown` |
//! | 5xx without a JSON-RPC error, or a 2xx that is not a complete reply | `unknown` |
//! | any other 4xx | [`super::http::status_class`] (429 `busy`, else `rejected`) |
//! | transport failure | [`super::http::transport_error`] (refused `unavailable`, later `unknown`) |

use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::jsonrpc::{
    command_failure, unreadable, vlan_value, whole_request_failure, CliDialect, CliSwitch,
    CommandOutcome, RpcError,
};
use super::{DeviceError, OutcomeClass};

/// The eAPI endpoint.
pub const PATH: &str = "/command-api";
/// Request content type (pyeapi sends `application/json-rpc`; EOS takes both).
pub const CONTENT_TYPE: &str = "application/json";
/// JSON-RPC: the body is not JSON.
pub const CODE_PARSE_ERROR: i64 = -32700;
/// JSON-RPC: not a valid request object.
pub const CODE_INVALID_REQUEST: i64 = -32600;
/// JSON-RPC: method other than `runCmds`.
pub const CODE_METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC: bad `params`.
pub const CODE_INVALID_PARAMS: i64 = -32602;
/// A CLI command failed.
pub const CODE_COMMAND_FAILED: i64 = 1002;
/// Commands that open configuration mode before the per-port lines of a change.
pub const CONFIG_PREAMBLE: [&str; 2] = ["enable", "configure"];

/// A `runCmds` request.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunCmdsParams {
    /// API version: 1 (or `"latest"`).
    pub version: Value,
    /// CLI lines, each a string or `{"cmd": ..., "input": ...}`.
    pub cmds: Vec<Value>,
    /// `"json"` (the default) or `"text"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Whether to add timestamps to outputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamps: Option<bool>,
    /// Whether abbreviated commands are expanded.
    #[serde(rename = "autoComplete", skip_serializing_if = "Option::is_none")]
    pub auto_complete: Option<bool>,
    /// Whether aliases are expanded.
    #[serde(rename = "expandAliases", skip_serializing_if = "Option::is_none")]
    pub expand_aliases: Option<bool>,
}

/// A reply as the client reads it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RunCmdsReply {
    /// One output per command.
    #[serde(default)]
    pub result: Option<Vec<Value>>,
    /// Set when a command (or the request) failed.
    #[serde(default)]
    pub error: Option<RpcError>,
}

/// The command that reads a port's switchport state.
pub fn show_command(port: &str) -> String {
    format!("show interfaces {port} switchport")
}

/// The commands that save the running config.
pub const SAVE_COMMANDS: [&str; 2] = ["enable", "copy running-config startup-config"];

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

/// Reads the access VLAN of `port` from the output of `show interfaces <port> switchport`: the
/// entry keyed by the port (exactly, then case-insensitively), or the only entry.
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
fn failed_index(error: &RpcError) -> Option<usize> {
    if let Some(Value::Array(data)) = &error.data {
        return data.len().checked_sub(1);
    }
    let rest = error.message.strip_prefix("CLI command ")?;
    let k: usize = rest.split_whitespace().next()?.parse().ok()?;
    k.checked_sub(1)
}

/// Classifies a reply to `count` commands (the module's table).
pub fn interpret(status: StatusCode, body: &str, count: usize) -> CommandOutcome {
    if let Some(error) = whole_request_failure(status, body) {
        return Err((0, error));
    }
    let Ok(reply) = serde_json::from_str::<RunCmdsReply>(body) else {
        return Err((0, unreadable(status, body, "eAPI")));
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
        let protocol = (-32700..=-32600).contains(&error.code);
        return Err(command_failure(
            error.code,
            failed_index(error),
            protocol,
            detail,
        ));
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

/// The eAPI dialect: one `runCmds` request per call, string ids counting up from 1.
pub struct Eapi {
    next_id: AtomicU64,
}

impl Default for Eapi {
    fn default() -> Eapi {
        Eapi {
            next_id: AtomicU64::new(1),
        }
    }
}

/// An Arista eAPI switch.
pub type EapiSwitch = CliSwitch<Eapi>;

impl CliDialect for Eapi {
    const VENDOR: &'static str = "eAPI";
    const PATH: &'static str = PATH;
    const CONTENT_TYPE: &'static str = CONTENT_TYPE;
    type Request = RunCmdsRequest;

    fn set_preamble(&self) -> &'static [&'static str] {
        &CONFIG_PREAMBLE
    }

    fn save_lines(&self) -> &'static [&'static str] {
        &SAVE_COMMANDS
    }

    fn show_line(&self, port: &str) -> String {
        show_command(port)
    }

    fn parse_show(&self, port: &str, output: &Value) -> Option<u16> {
        parse_switchport(port, output)
    }

    fn request(&self, commands: &[String]) -> RunCmdsRequest {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).to_string();
        request_body(commands, &id)
    }

    fn interpret(status: StatusCode, body: &str, count: usize) -> CommandOutcome {
        interpret(status, body, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_command_is_found_in_data_or_message() {
        let with_data = RpcError {
            code: CODE_COMMAND_FAILED,
            message: String::new(),
            data: Some(json!([{}, {}, {"errors": ["x"]}])),
        };
        assert_eq!(failed_index(&with_data), Some(2));
        let with_message = RpcError {
            code: CODE_COMMAND_FAILED,
            message: "CLI command 4 of 4 'switchport access vlan 910' failed: x".into(),
            data: None,
        };
        assert_eq!(failed_index(&with_message), Some(3));
        let body = json!({"jsonrpc": "2.0", "id": "1", "error": {
            "code": 1002, "message": with_message.message,
        }})
        .to_string();
        let outcome = interpret(StatusCode::OK, &body, 4).map_err(|(i, e)| (i, e.class));
        assert_eq!(outcome, Err((3, OutcomeClass::Rejected)));
    }

    #[test]
    fn switchport_output_parses_by_port_name() {
        let one = json!({"switchports": {"Ethernet5": {"switchportInfo": {"accessVlanId": 910}}}});
        assert_eq!(parse_switchport("Ethernet5", &one), Some(910));
        assert_eq!(parse_switchport("ethernet5", &one), Some(910));
        let two = json!({"switchports": {
            "Ethernet4": {"switchportInfo": {"accessVlanId": 1}},
            "Ethernet6": {"switchportInfo": {"accessVlanId": 2}},
        }});
        assert_eq!(parse_switchport("Ethernet5", &two), None);
    }
}
