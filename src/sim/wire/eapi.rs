//! The eAPI face of a simulated switch: `POST /command-api` `runCmds` over the switch model, in
//! the shapes of [`crate::adapters::eapi`] (where the unconfirmed choices are written down).
//!
//! The CLI modes are modelled as far as the engine's commands need them: `enable` before
//! `configure`, `configure` before `interface`, an interface before `switchport access vlan`,
//! `enable` before `copy`; `show` runs anywhere. A line out of its mode fails like a typo.

use std::io;

use serde_json::{json, Value};
use wiremock::matchers::any;
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use super::nxapi::{authorized, switch_credentials, unauthorized, Batch, MAX_COMMANDS};
use super::{render, WireServer};
use crate::adapters::eapi::{
    error_reply, ok_reply, switchport_body, EapiError, RunCmdsParams, CODE_BUSY,
    CODE_COMMAND_FAILED, CODE_INTERNAL, CODE_INVALID_PARAMS, CODE_INVALID_REQUEST,
    CODE_METHOD_NOT_FOUND, CODE_PARSE_ERROR, PATH,
};
use crate::adapters::{DeviceError, OutcomeClass};
use crate::model::{Credentials, SwitchKind};
use crate::sim::{DeviceOp, Reply, SimWorld};

/// Starts the eAPI simulator of switch `device` (which must be an `eapi` switch of the world's
/// site) on 127.0.0.1 behind a fault proxy.
pub async fn start(world: SimWorld, device: &str) -> io::Result<WireServer> {
    let credentials = switch_credentials(&world, device, SwitchKind::Eapi)?;
    let face = EapiFace {
        world,
        device: device.to_string(),
        credentials,
    };
    WireServer::start(vec![Mock::given(any()).respond_with(face)]).await
}

/// Where the CLI session is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Exec,
    Privileged,
    Config,
    Interface(String),
}

/// One parsed CLI line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cli {
    Enable,
    Configure,
    Exit,
    End,
    Interface(String),
    AccessVlan(u16),
    Show(String),
    Save,
}

fn parse_cli(cmd: &str) -> Result<Cli, String> {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    match words.as_slice() {
        ["enable"] => Ok(Cli::Enable),
        ["configure"] | ["configure", "terminal"] => Ok(Cli::Configure),
        ["exit"] => Ok(Cli::Exit),
        ["end"] => Ok(Cli::End),
        ["interface", port] => Ok(Cli::Interface(port.to_string())),
        ["switchport", "access", "vlan", vlan] => vlan
            .parse()
            .map(Cli::AccessVlan)
            .map_err(|_| format!("Invalid input (VLAN id out of range: '{vlan}')")),
        ["show", "interfaces" | "interface", port, "switchport"] => Ok(Cli::Show(port.to_string())),
        ["copy", "running-config", "startup-config"] => Ok(Cli::Save),
        _ => Err("Invalid input".into()),
    }
}

/// A request that passed the protocol checks.
struct Parsed {
    id: Value,
    cmds: Vec<String>,
}

/// A protocol error: id (when known), code, message.
type ProtocolError = (Value, i64, String);

fn parse_request(request: &Request) -> Result<Parsed, ProtocolError> {
    let body: Value = serde_json::from_slice(&request.body)
        .map_err(|e| (Value::Null, CODE_PARSE_ERROR, format!("Parse error: {e}")))?;
    let Value::Object(object) = body else {
        let msg = "Expected a JSON object".to_string();
        return Err((Value::Null, CODE_INVALID_REQUEST, msg));
    };
    let field = |name: &str| {
        object.get(name).ok_or_else(|| {
            let msg = format!("Expected field '{name}' not specified");
            (Value::Null, CODE_INVALID_REQUEST, msg)
        })
    };
    if field("jsonrpc")? != "2.0" {
        let msg = "Expected jsonrpc version '2.0'".to_string();
        return Err((Value::Null, CODE_INVALID_REQUEST, msg));
    }
    let id = field("id")?.clone();
    if !(id.is_string() || id.is_number()) {
        let msg = "Expected field 'id' to be a string or a number".to_string();
        return Err((Value::Null, CODE_INVALID_REQUEST, msg));
    }
    let method = field("method")?;
    if method != "runCmds" {
        let msg = format!("Method not found: {method}");
        return Err((id, CODE_METHOD_NOT_FOUND, msg));
    }
    let invalid = |msg: String| (id.clone(), CODE_INVALID_PARAMS, msg);
    let params: RunCmdsParams = serde_json::from_value(field("params")?.clone())
        .map_err(|e| invalid(format!("Invalid params: {e}")))?;
    if !(params.version == json!(1) || params.version == json!("latest")) {
        return Err(invalid(
            "Invalid params: version must be 1 or 'latest'".into(),
        ));
    }
    if params.format.as_deref().is_some_and(|f| f != "json") {
        return Err(invalid(
            "Invalid params: this device answers format 'json' only".into(),
        ));
    }
    if params.cmds.is_empty() || params.cmds.len() > MAX_COMMANDS {
        let msg = format!("Invalid params: 1 to {MAX_COMMANDS} commands expected");
        return Err(invalid(msg));
    }
    let mut cmds = Vec::with_capacity(params.cmds.len());
    for cmd in &params.cmds {
        // A command is a string, or `{"cmd": ..., "input": ...}` for interactive input.
        let text = match cmd {
            Value::String(text) => Some(text.clone()),
            Value::Object(o) => o.get("cmd").and_then(Value::as_str).map(str::to_string),
            _ => None,
        };
        cmds.push(text.ok_or_else(|| invalid(format!("Invalid params: bad command {cmd}")))?);
    }
    Ok(Parsed { id, cmds })
}

/// The eAPI responder of one switch.
struct EapiFace {
    world: SimWorld,
    device: String,
    credentials: Credentials,
}

impl EapiFace {
    /// Runs one CLI line in `mode`.
    fn execute(&self, batch: &mut Batch, mode: &mut Mode, cmd: &str) {
        let (world, device) = (&self.world, self.device.as_str());
        let enabled = *mode != Mode::Exec;
        let configuring = matches!(mode, Mode::Config | Mode::Interface(_));
        match parse_cli(cmd) {
            Err(msg) => batch.fail(msg),
            Ok(Cli::Enable) => {
                if *mode == Mode::Exec {
                    *mode = Mode::Privileged;
                }
                batch.ok(json!({}));
            }
            Ok(Cli::Configure | Cli::Save) if !enabled => {
                batch.fail("Invalid input (privileged mode required)")
            }
            Ok(Cli::Configure) => {
                *mode = Mode::Config;
                batch.ok(json!({}));
            }
            Ok(Cli::Exit) => {
                *mode = match mode {
                    Mode::Interface(_) => Mode::Config,
                    Mode::Config | Mode::Privileged => Mode::Privileged,
                    Mode::Exec => Mode::Exec,
                };
                batch.ok(json!({}));
            }
            Ok(Cli::End) => {
                if configuring {
                    *mode = Mode::Privileged;
                }
                batch.ok(json!({}));
            }
            Ok(Cli::Interface(port)) if configuring => {
                *mode = Mode::Interface(port);
                batch.ok(json!({}));
            }
            Ok(Cli::Interface(_)) => batch.fail("Invalid input (configuration mode required)"),
            Ok(Cli::AccessVlan(vlan)) => match mode {
                Mode::Interface(port) => {
                    let op = DeviceOp::SetPort {
                        port: port.clone(),
                        vlan,
                    };
                    if batch.call(world, device, op).is_some() {
                        batch.ok(json!({}));
                    }
                }
                _ => batch.fail("Invalid input (interface configuration mode required)"),
            },
            Ok(Cli::Show(port)) => {
                let op = DeviceOp::GetPort { port: port.clone() };
                match batch.call(world, device, op) {
                    Some(Reply::Vlan(vlan)) => batch.ok(switchport_body(&port, vlan)),
                    Some(other) => batch.fail(format!("simulator bug: reply {other:?}")),
                    None => {}
                }
            }
            Ok(Cli::Save) => {
                if batch.call(world, device, DeviceOp::SaveConfig).is_some() {
                    batch.ok(json!({"messages": ["Copy completed successfully."]}));
                }
            }
        }
    }
}

fn json_template(status: u16, body: &Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.to_string(), "application/json")
}

fn error_template(
    id: &Value,
    cmds: &[String],
    results: &[Value],
    error: &DeviceError,
) -> ResponseTemplate {
    let (status, code, what) = match error.class {
        OutcomeClass::Auth => return unauthorized("eapi"),
        OutcomeClass::Unavailable => {
            return ResponseTemplate::new(503).set_body_string("Service Unavailable")
        }
        OutcomeClass::Rejected => (200, CODE_COMMAND_FAILED, "invalid command"),
        OutcomeClass::Busy => (200, CODE_BUSY, "could not run command (busy)"),
        OutcomeClass::Unknown => (500, CODE_INTERNAL, "internal error"),
    };
    let index = results.len();
    let cmd = cmds.get(index).map(String::as_str).unwrap_or("");
    let mut data = results.to_vec();
    data.push(json!({"errors": [error.detail]}));
    let error = EapiError {
        code,
        message: format!(
            "CLI command {} of {} '{cmd}' failed: {what}",
            index + 1,
            cmds.len()
        ),
        data: Some(Value::Array(data)),
    };
    json_template(status, &error_reply(id, &error))
}

impl Respond for EapiFace {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if request.url.path() != PATH {
            return ResponseTemplate::new(404).set_body_string("Not Found");
        }
        if request.method.as_str() != "POST" {
            return ResponseTemplate::new(405).set_body_string("Method Not Allowed");
        }
        if !authorized(request, &self.credentials) {
            return unauthorized("eapi");
        }
        let parsed = match parse_request(request) {
            Ok(parsed) => parsed,
            Err((id, code, message)) => {
                let error = EapiError {
                    code,
                    message,
                    data: None,
                };
                return json_template(200, &error_reply(&id, &error));
            }
        };
        let mut batch = Batch::default();
        let mut mode = Mode::Exec;
        for cmd in &parsed.cmds {
            if batch.stopped() {
                break;
            }
            self.execute(&mut batch, &mut mode, cmd);
        }
        let (call, results) = batch.finish();
        render(
            call,
            |_| json_template(200, &ok_reply(&parsed.id, results.clone())),
            |e| error_template(&parsed.id, &parsed.cmds, &results, e),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_lines_parse_strictly() {
        assert_eq!(
            parse_cli("show interfaces Ethernet5 switchport"),
            Ok(Cli::Show("Ethernet5".into()))
        );
        assert_eq!(
            parse_cli("switchport access vlan 910"),
            Ok(Cli::AccessVlan(910))
        );
        assert!(parse_cli("switchport access vlan x").is_err());
        assert!(parse_cli("reload").is_err());
    }
}
