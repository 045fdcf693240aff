//! Cisco NX-API client (JSON-RPC 2.0 over HTTP, `POST /ins`) behind the engine's [`Switch`]
//! port: the NX-API dialect of [`super::jsonrpc`]. Its shapes are checked against the vendor
//! samples in `fixtures/devices/cisco-nxapi/` (`tests/wire_switches.rs`), never against the
//! simulator's code.
//!
//! # Wire shapes
//! From vendor-protocols.md and nxapi-plumbing (the library inside NAPALM's NX-OS driver), see
//! `fixtures/devices/cisco-nxapi/README.md`: a request is a JSON array with one
//! `{"jsonrpc":"2.0","method":"cli","params":{"cmd":...,"version":1},"id":n}` per CLI line; configuration commands answer
//! `"result":null`; errors come with HTTP 500 as `{"jsonrpc":"2.0","error":{"code":-32602,
//! "message":"Invalid params","data":{"msg":...}},"id":n}`.
//!
//! Unconfirmed (no device capture showed them; chosen here and only here):
//! - `show interface <port> switchport` answers `"result":{"body":{"TABLE_interface":
//!   {"ROW_interface":{"interface":"Ethernet1/5","oper_mode":"access","access_vlan":"910",...}}}}`
//!   (the keys an NX-API helper library reads, see the golden's README). NX-OS renders a single row as an object and several as an array,
//!   and prints numbers as numbers or strings depending on the release, so [`parse_switchport`]
//!   accepts all of these.
//! - Busy: HTTP 500 with error code -32001 ([`super::jsonrpc::CODE_BUSY`], in JSON-RPC's
//!   implementation-defined server-error range, so it cannot collide with a CLI error).
//! - Internal error -32603 is treated as "may have been applied" (`unknown`): the device failed
//!   while executing, and nothing proves it had not changed the port yet.
//! - Execution stops at the first failing command; the reply holds the results of the commands
//!   before it, then the error. The reply to a one-object request may be a bare object.
//!
//! # Class mapping (the one table, [`interpret`] and [`code_class`](super::jsonrpc::code_class))
//! | reply | class |
//! |---|---|
//! | HTTP 401 | `auth` |
//! | HTTP 503 | `unavailable` |
//! | JSON-RPC error [`CODE_BUSY`](super::jsonrpc::CODE_BUSY) | `busy` |
//! | JSON-RPC error [`CODE_INTERNAL`](super::jsonrpc::CODE_INTERNAL) | `unknown` |
//! | any other JSON-RPC error (CLI -32602, protocol -32600/-32601/-32700) | `rejected` |
//! | 5xx without a JSON-RPC error, or a 2xx that is not a complete reply | `unknown` |
//! | any other 4xx | [`super::http::status_class`] (429 `busy`, else `rejected`) |
//! | transport failure | [`super::http::transport_error`] (refused `unavailable`, later `unknown`) |

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::jsonrpc::{
    command_failure, unreadable, whole_request_failure, CliDialect, CliSwitch, CommandOutcome,
    RpcError,
};
use super::{DeviceError, OutcomeClass};

pub(crate) use super::jsonrpc::{endpoint, vlan_value};

/// The NX-API endpoint.
pub const PATH: &str = "/ins";
/// Request content type.
pub const CONTENT_TYPE: &str = "application/json-rpc";
/// Saves the running config.
pub const SAVE_COMMAND: &str = "copy running-config startup-config";

/// One CLI line of a request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CliRequest {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// Always `"cli"`.
    pub method: String,
    /// The command.
    pub params: CliParams,
    /// Request id; the client numbers its lines from 1.
    pub id: Value,
}

/// `params` of a [`CliRequest`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CliParams {
    /// One CLI line.
    pub cmd: String,
    /// Always 1.
    pub version: u32,
}

/// One reply object as the client reads it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RpcReply {
    /// The command's result (`null` for configuration commands).
    #[serde(default)]
    pub result: Option<Value>,
    /// Set when the command failed.
    #[serde(default)]
    pub error: Option<RpcError>,
    /// The request id it answers.
    #[serde(default)]
    pub id: Value,
}

/// The CLI line that reads a port's switchport state.
pub fn show_command(port: &str) -> String {
    format!("show interface {port} switchport")
}

/// The request body for `commands`, ids 1..=n.
pub fn request_body(commands: &[String]) -> Vec<CliRequest> {
    commands
        .iter()
        .enumerate()
        .map(|(i, cmd)| CliRequest {
            jsonrpc: "2.0".into(),
            method: "cli".into(),
            params: CliParams {
                cmd: cmd.clone(),
                version: 1,
            },
            id: json!(i + 1),
        })
        .collect()
}

/// Reads the access VLAN of `port` from the `body` of `show interface <port> switchport`: the
/// row naming the port (case-insensitively), or a single row that names none.
pub fn parse_switchport(port: &str, body: &Value) -> Option<u16> {
    let rows = body.get("TABLE_interface")?.get("ROW_interface")?;
    let rows: Vec<&Value> = match rows {
        Value::Array(items) => items.iter().collect(),
        row => vec![row],
    };
    let named = |row: &&Value| -> bool {
        row.get("interface")
            .and_then(Value::as_str)
            .is_some_and(|name| name.eq_ignore_ascii_case(port))
    };
    let row: &Value = match rows.iter().copied().find(named) {
        Some(row) => row,
        // One unnamed row can only be the port asked for.
        None if rows.len() == 1 => rows
            .first()
            .copied()
            .filter(|r| r.get("interface").is_none())?,
        None => return None,
    };
    vlan_value(row.get("access_vlan")?)
}

/// Classifies a reply to `count` commands (the module's table).
pub fn interpret(status: StatusCode, body: &str, count: usize) -> CommandOutcome {
    if let Some(error) = whole_request_failure(status, body) {
        return Err((0, error));
    }
    let Some(replies) = parse_replies(body) else {
        return Err((0, unreadable(status, body, "NX-API")));
    };
    if let Some((id, error)) = replies
        .iter()
        .find_map(|r| r.error.as_ref().map(|e| (&r.id, e)))
    {
        let msg = error
            .data
            .as_ref()
            .and_then(|d| d.get("msg"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let detail = format!(
            "NX-API error {}: {} {}",
            error.code,
            error.message,
            msg.trim()
        );
        // A protocol error has a null id.
        return Err(command_failure(
            error.code,
            command_index(id, count),
            id.is_null(),
            detail,
        ));
    }
    let mut results = vec![None; count];
    for reply in replies {
        if let Some(slot) = command_index(&reply.id, count).and_then(|i| results.get_mut(i)) {
            *slot = Some(reply.result.unwrap_or(Value::Null));
        }
    }
    let mut ordered = Vec::with_capacity(count);
    for (index, result) in results.into_iter().enumerate() {
        match result {
            Some(result) => ordered.push(result),
            None => {
                let detail = format!("NX-API reply (HTTP {status}) lacks command {}", index + 1);
                return Err((index, DeviceError::new(OutcomeClass::Unknown, detail)));
            }
        }
    }
    Ok(ordered)
}

fn parse_replies(body: &str) -> Option<Vec<RpcReply>> {
    match serde_json::from_str::<Value>(body).ok()? {
        Value::Array(items) => items
            .into_iter()
            .map(|v| serde_json::from_value(v).ok())
            .collect(),
        object @ Value::Object(_) => Some(vec![serde_json::from_value(object).ok()?]),
        _ => None,
    }
}

/// The 0-based command index of reply id `id` (ids are 1..=count).
fn command_index(id: &Value, count: usize) -> Option<usize> {
    let n = id.as_u64()?;
    let index = usize::try_from(n).ok()?.checked_sub(1)?;
    (index < count).then_some(index)
}

/// The NX-API dialect: JSON-RPC `cli` lines, ids 1..=n.
#[derive(Default)]
pub struct Nxapi;

/// A Cisco NX-API switch.
pub type NxapiSwitch = CliSwitch<Nxapi>;

impl CliDialect for Nxapi {
    const VENDOR: &'static str = "NX-API";
    const PATH: &'static str = PATH;
    const CONTENT_TYPE: &'static str = CONTENT_TYPE;
    type Request = Vec<CliRequest>;

    fn set_preamble(&self) -> &'static [&'static str] {
        // NX-API runs configuration lines without `configure terminal`.
        &[]
    }

    fn save_lines(&self) -> &'static [&'static str] {
        &[SAVE_COMMAND]
    }

    fn show_line(&self, port: &str) -> String {
        show_command(port)
    }

    fn parse_show(&self, port: &str, output: &Value) -> Option<u16> {
        parse_switchport(port, output.get("body")?)
    }

    fn request(&self, commands: &[String]) -> Vec<CliRequest> {
        request_body(commands)
    }

    fn interpret(status: StatusCode, body: &str, count: usize) -> CommandOutcome {
        interpret(status, body, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::jsonrpc::per_change;

    #[test]
    fn switchport_bodies_of_either_style_parse() {
        let one = json!({"TABLE_interface": {"ROW_interface": {
            "interface": "Ethernet1/5", "oper_mode": "access", "access_vlan": 910,
        }}});
        assert_eq!(parse_switchport("Ethernet1/5", &one), Some(910));
        let rows = json!({"TABLE_interface": {"ROW_interface": [
            {"interface": "Ethernet1/4", "access_vlan": "1"},
            {"interface": "ethernet1/5", "access_vlan": "911"},
        ]}});
        assert_eq!(parse_switchport("Ethernet1/5", &rows), Some(911));
        assert_eq!(parse_switchport("Ethernet1/6", &one), None);
    }

    #[test]
    fn replies_classify_by_code_and_failing_command() {
        let error = |code: i64| {
            let body = json!([
                {"jsonrpc": "2.0", "result": null, "id": 1},
                {"jsonrpc": "2.0", "error": {"code": code, "message": "x", "data": {"msg": "y"}}, "id": 2},
            ]);
            interpret(StatusCode::INTERNAL_SERVER_ERROR, &body.to_string(), 2)
                .map_err(|(i, e)| (i, e.class))
        };
        assert_eq!(error(-32602), Err((1, OutcomeClass::Rejected)));
        assert_eq!(error(-32001), Err((1, OutcomeClass::Busy)));
        assert_eq!(error(-32603), Err((1, OutcomeClass::Unknown)));
        let unknown = Err((0, OutcomeClass::Unknown));
        let garbage = interpret(StatusCode::INTERNAL_SERVER_ERROR, "<html>", 1);
        assert_eq!(garbage.map_err(|(i, e)| (i, e.class)), unknown);
        let partial = json!([{"jsonrpc": "2.0", "result": null, "id": 1}]).to_string();
        let short = interpret(StatusCode::OK, &partial, 2).map_err(|(i, e)| (i, e.class));
        assert_eq!(short, Err((1, OutcomeClass::Unknown)));
        let auth = interpret(StatusCode::UNAUTHORIZED, "", 1).map_err(|(i, e)| (i, e.class));
        assert_eq!(auth, Err((0, OutcomeClass::Auth)));
    }

    #[test]
    fn batch_results_split_at_the_failing_command() {
        let failure = DeviceError::new(OutcomeClass::Rejected, "bad");
        let results = per_change(Err((3, failure)), 3, 0, 2);
        let classes: Vec<_> = results
            .iter()
            .map(|r| r.as_ref().err().map(|e| e.class))
            .collect();
        assert_eq!(
            classes,
            vec![
                None,
                Some(OutcomeClass::Rejected),
                Some(OutcomeClass::Rejected)
            ]
        );
        assert!(crate::adapters::jsonrpc::check_port("Ethernet1/5\ninterface x").is_err());
    }
}
