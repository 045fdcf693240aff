//! Cisco NX-API client (JSON-RPC 2.0 over HTTP, `POST /ins`) behind the engine's [`Switch`]
//! port, plus the wire shapes its simulator (`sim::wire::nxapi`) builds from, so that client and
//! simulator cannot drift apart.
//!
//! # Wire shapes
//! From vendor-protocols.md: a request is a JSON array with one `{"jsonrpc":"2.0","method":"cli",
//! "params":{"cmd":...,"version":1},"id":n}` per CLI line; configuration commands answer
//! `"result":null`; errors come with HTTP 500 as `{"jsonrpc":"2.0","error":{"code":-32602,
//! "message":"Invalid params","data":{"msg":...}},"id":n}`.
//!
//! Unconfirmed (no public source showed them; chosen here and only here):
//! - `show interface <port> switchport` answers `"result":{"body":{"TABLE_interface":
//!   {"ROW_interface":{"interface":"Ethernet1/5","switchport":"Enabled","oper_mode":"access",
//!   "access_vlan":910}}}}`. NX-OS renders a single row as an object and several as an array,
//!   and prints numbers as numbers or strings depending on the release, so [`parse_switchport`]
//!   accepts all of these.
//! - Busy: HTTP 500 with error code [`CODE_BUSY`] (-32001, in JSON-RPC's implementation-defined
//!   server-error range, so it cannot collide with a CLI error).
//! - Internal error -32603 is treated as "may have been applied" (`unknown`): the device failed
//!   while executing, and nothing proves it had not changed the port yet.
//! - Execution stops at the first failing command; the reply holds the results of the commands
//!   before it, then the error. The reply to a one-object request may be a bare object.
//!
//! # Class mapping (the one table, [`interpret`] and [`code_class`])
//! | reply | class |
//! |---|---|
//! | HTTP 401 | `auth` |
//! | HTTP 503 | `unavailable` |
//! | JSON-RPC error [`CODE_BUSY`] | `busy` |
//! | JSON-RPC error [`CODE_INTERNAL`] | `unknown` |
//! | any other JSON-RPC error (CLI -32602, protocol -32600/-32601/-32700) | `rejected` |
//! | 5xx without a JSON-RPC error, or a 2xx that is not a complete reply | `unknown` |
//! | any other 4xx | [`http::status_class`] (429 `busy`, else `rejected`) |
//! | transport failure | [`http::transport_error`] (refused `unavailable`, later `unknown`) |

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::http;
use super::{DeviceError, DeviceResult, OutcomeClass, Switch};

/// The NX-API endpoint.
pub const PATH: &str = "/ins";
/// Request content type.
pub const CONTENT_TYPE: &str = "application/json-rpc";
/// JSON-RPC: the body is not JSON.
pub const CODE_PARSE_ERROR: i64 = -32700;
/// JSON-RPC: not a valid request object.
pub const CODE_INVALID_REQUEST: i64 = -32600;
/// JSON-RPC: method other than `cli`.
pub const CODE_METHOD_NOT_FOUND: i64 = -32601;
/// A CLI command failed (NX-API reports CLI errors as "Invalid params").
pub const CODE_CLI_ERROR: i64 = -32602;
/// The device failed while executing (maps to `unknown`).
pub const CODE_INTERNAL: i64 = -32603;
/// The device is busy, retry later (unconfirmed, see the module docs).
pub const CODE_BUSY: i64 = -32001;
/// Saves the running config.
pub const SAVE_COMMAND: &str = "copy running-config startup-config";
/// CLI lines [`set_commands`] emits per port.
pub const SET_COMMANDS_PER_PORT: usize = 2;

/// The class of a JSON-RPC error code (see the module's table).
pub fn code_class(code: i64) -> OutcomeClass {
    match code {
        CODE_BUSY => OutcomeClass::Busy,
        CODE_INTERNAL => OutcomeClass::Unknown,
        _ => OutcomeClass::Rejected,
    }
}

/// One CLI line of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliParams {
    /// One CLI line.
    pub cmd: String,
    /// Always 1.
    pub version: u32,
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcError {
    /// Error code (see the `CODE_*` constants).
    pub code: i64,
    /// Short text.
    #[serde(default)]
    pub message: String,
    /// `{"msg": "..."}` with the CLI's own words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
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

/// A successful reply object.
pub fn ok_reply(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "result": result, "id": id})
}

/// An error reply object.
pub fn error_reply(id: &Value, code: i64, message: &str, msg: &str) -> Value {
    json!({"jsonrpc": "2.0", "error": {"code": code, "message": message, "data": {"msg": msg}}, "id": id})
}

/// The CLI lines that set each `(port, vlan)` in order, [`SET_COMMANDS_PER_PORT`] per port.
pub fn set_commands(changes: &[(&str, u16)]) -> Vec<String> {
    changes
        .iter()
        .flat_map(|(port, vlan)| {
            [
                format!("interface {port}"),
                format!("switchport access vlan {vlan}"),
            ]
        })
        .collect()
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

/// The `result.body` of `show interface <port> switchport` (unconfirmed shape, module docs).
pub fn switchport_body(port: &str, vlan: u16) -> Value {
    json!({"TABLE_interface": {"ROW_interface": {
        "interface": port,
        "switchport": "Enabled",
        "oper_mode": "access",
        "access_vlan": vlan,
    }}})
}

/// Reads the access VLAN of `port` from a [`switchport_body`]-shaped body: the row naming the
/// port (case-insensitively), or a single row that names none.
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

/// A VLAN id printed as a number or a numeric string.
pub(crate) fn vlan_value(value: &Value) -> Option<u16> {
    match value {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// How one request of several commands ended: every command's result in order, or the index
/// of the command that failed (the ones before it ran) and why. A failure of the whole request
/// (auth, unavailable, transport) has index 0.
pub type CommandOutcome = Result<Vec<Value>, (usize, DeviceError)>;

/// Classifies a reply to `count` commands (the module's table).
pub fn interpret(status: StatusCode, body: &str, count: usize) -> CommandOutcome {
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::SERVICE_UNAVAILABLE {
        let detail = format!("HTTP {status}: {}", http::snippet(body));
        return Err((0, DeviceError::new(http::status_class(status), detail)));
    }
    let Some(replies) = parse_replies(body) else {
        let class = if status.is_client_error() {
            http::status_class(status)
        } else {
            OutcomeClass::Unknown
        };
        let detail = format!(
            "unreadable NX-API reply (HTTP {status}): {}",
            http::snippet(body)
        );
        return Err((0, DeviceError::new(class, detail)));
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
        let class = code_class(error.code);
        return match command_index(id, count) {
            Some(index) => Err((index, DeviceError::new(class, detail))),
            // A protocol error (id null) is refused before anything runs.
            None if id.is_null() => Err((0, DeviceError::new(class, detail))),
            // Which command failed is unknown, so neither is whether earlier ones ran.
            None => Err((0, DeviceError::new(OutcomeClass::Unknown, detail))),
        };
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

/// Splits a [`CommandOutcome`] into one result per port change, where the commands of change
/// `i` are `offset + i * per_change ..` (`per_change` of them). Changes whose commands all ran
/// are ok; the change holding the failed command gets its error; later changes never ran and
/// get the same class (a `rejected` stays "not applied", an `unknown` stays "may have been").
/// Shared by the CLI-over-JSON-RPC clients (NX-API, eAPI).
/// One read result per port from the reply to one show command per port: a failed request
/// fails every read; a reply without a VLAN for a port is `unknown` for that port.
pub(crate) fn per_read(
    outcome: CommandOutcome,
    ports: &[String],
    vendor: &str,
    parse: impl Fn(&str, &Value) -> Option<u16>,
) -> Vec<DeviceResult<u16>> {
    match outcome {
        Ok(results) => ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                results
                    .get(i)
                    .and_then(|result| parse(port, result))
                    .ok_or_else(|| {
                        DeviceError::new(
                            OutcomeClass::Unknown,
                            format!("{vendor} reply has no access VLAN for {port}"),
                        )
                    })
            })
            .collect(),
        Err((_, error)) => vec![Err(error); ports.len()],
    }
}

/// The only result of a one-item batch.
pub(crate) fn first_result<T>(results: Vec<DeviceResult<T>>) -> DeviceResult<T> {
    results
        .into_iter()
        .next()
        .unwrap_or_else(|| Err(DeviceError::new(OutcomeClass::Unknown, "no result")))
}

pub(crate) fn per_change(
    outcome: CommandOutcome,
    changes: usize,
    offset: usize,
    per_change: usize,
) -> Vec<DeviceResult<()>> {
    match outcome {
        Ok(_) => vec![Ok(()); changes],
        Err((failed, error)) => (0..changes)
            .map(|i| {
                let start = offset + i * per_change;
                if failed >= start + per_change {
                    Ok(())
                } else if failed >= start {
                    Err(error.clone())
                } else {
                    let detail = format!("not executed: {}", error.detail);
                    Err(DeviceError::new(error.class, detail))
                }
            })
            .collect(),
    }
}

/// Refuses a port name that would not be one CLI token (empty, blanks, control characters):
/// sending it could run a different command. Never sent, so `rejected`.
pub(crate) fn check_port(port: &str) -> DeviceResult<()> {
    if port.is_empty() || port.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(DeviceError::new(
            OutcomeClass::Rejected,
            format!("invalid port name {port:?}"),
        ));
    }
    Ok(())
}

/// `base_url` joined with `path`, checked to be an http(s) URL. A bad URL is a configuration
/// error: nothing can be sent, so `unavailable`.
pub(crate) fn endpoint(base_url: &str, path: &str) -> DeviceResult<String> {
    let url = format!("{}{}", base_url.trim_end_matches('/'), path);
    match reqwest::Url::parse(&url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Ok(url),
        _ => Err(DeviceError::new(
            OutcomeClass::Unavailable,
            format!("invalid device URL {base_url:?}"),
        )),
    }
}

/// A Cisco NX-API switch.
pub struct NxapiSwitch {
    http: reqwest::Client,
    url: String,
    user: String,
    password: String,
}

impl NxapiSwitch {
    /// A client for the switch at `base_url` (`http://host:port`), authenticating every request
    /// with HTTP Basic `user`/`password`; each call is cut at `call_timeout`.
    pub fn new(
        base_url: &str,
        user: &str,
        password: &str,
        call_timeout: Duration,
    ) -> Result<NxapiSwitch, DeviceError> {
        Ok(NxapiSwitch {
            http: http::client(call_timeout)?,
            url: endpoint(base_url, PATH)?,
            user: user.to_string(),
            password: password.to_string(),
        })
    }

    /// Sets several ports' access VLANs in one request (R15 batching); one result per change,
    /// in order. The device stops at the first failing command, so changes before it applied.
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
        per_change(outcome, changes.len(), 0, SET_COMMANDS_PER_PORT)
    }

    /// Sends `commands` as one request and classifies the reply.
    async fn run(&self, commands: &[String]) -> CommandOutcome {
        let body = serde_json::to_vec(&request_body(commands)).map_err(|e| {
            let error = DeviceError::new(OutcomeClass::Rejected, format!("cannot encode: {e}"));
            (0, error)
        })?;
        let response = self
            .http
            .post(&self.url)
            .basic_auth(&self.user, Some(&self.password))
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(body)
            .send()
            .await
            .map_err(|e| (0, http::transport_error(&e)))?;
        let status = response.status();
        let text = http::body_text(response).await.map_err(|e| (0, e))?;
        interpret(status, &text, commands.len())
    }
}

#[async_trait]
impl Switch for NxapiSwitch {
    async fn get_port(&self, port: &str) -> DeviceResult<u16> {
        first_result(self.get_ports(&[port.to_string()]).await)
    }

    fn batches(&self) -> bool {
        true
    }

    async fn set_ports(&self, changes: &[(String, u16)]) -> Vec<DeviceResult<()>> {
        let changes: Vec<(&str, u16)> = changes.iter().map(|(p, v)| (p.as_str(), *v)).collect();
        NxapiSwitch::set_ports(self, &changes).await
    }

    async fn get_ports(&self, ports: &[String]) -> Vec<DeviceResult<u16>> {
        if let Some(e) = ports.iter().find_map(|p| check_port(p).err()) {
            return vec![Err(e); ports.len()];
        }
        let commands: Vec<String> = ports.iter().map(|p| show_command(p)).collect();
        per_read(
            self.run(&commands).await,
            ports,
            "NX-API",
            |port, result| parse_switchport(port, result.get("body")?),
        )
    }

    async fn set_port(&self, port: &str, vlan: u16) -> DeviceResult<()> {
        first_result(NxapiSwitch::set_ports(self, &[(port, vlan)]).await)
    }

    async fn save_config(&self) -> DeviceResult<()> {
        self.run(&[SAVE_COMMAND.to_string()])
            .await
            .map(|_| ())
            .map_err(|(_, e)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switchport_bodies_of_either_style_parse() {
        assert_eq!(
            parse_switchport("Ethernet1/5", &switchport_body("Ethernet1/5", 910)),
            Some(910)
        );
        let rows = json!({"TABLE_interface": {"ROW_interface": [
            {"interface": "Ethernet1/4", "access_vlan": "1"},
            {"interface": "ethernet1/5", "access_vlan": "911"},
        ]}});
        assert_eq!(parse_switchport("Ethernet1/5", &rows), Some(911));
        assert_eq!(
            parse_switchport("Ethernet1/6", &switchport_body("Ethernet1/5", 910)),
            None
        );
    }

    #[test]
    fn replies_classify_by_code_and_failing_command() {
        let error = |code: i64| {
            let body = json!([
                ok_reply(&json!(1), Value::Null),
                error_reply(&json!(2), code, "x", "y")
            ]);
            interpret(StatusCode::INTERNAL_SERVER_ERROR, &body.to_string(), 2)
                .map_err(|(i, e)| (i, e.class))
        };
        assert_eq!(error(CODE_CLI_ERROR), Err((1, OutcomeClass::Rejected)));
        assert_eq!(error(CODE_BUSY), Err((1, OutcomeClass::Busy)));
        assert_eq!(error(CODE_INTERNAL), Err((1, OutcomeClass::Unknown)));
        let unknown = Err((0, OutcomeClass::Unknown));
        let garbage = interpret(StatusCode::INTERNAL_SERVER_ERROR, "<html>", 1);
        assert_eq!(garbage.map_err(|(i, e)| (i, e.class)), unknown);
        let partial = json!([ok_reply(&json!(1), Value::Null)]).to_string();
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
        assert!(check_port("Ethernet1/5\ninterface x").is_err());
    }
}
