//! The NX-API face of a simulated switch: `POST /ins` JSON-RPC over the switch model, in the
//! shapes of [`crate::adapters::nxapi`] (where the unconfirmed choices are written down).
//!
//! Also home of what every switch face shares: the credentials check and [`Batch`], which runs
//! the commands of one request in order against the world and stops at the first failure, like
//! the real devices.

use std::io;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use wiremock::matchers::any;
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use super::proxy::ProxyFault;
use super::{accepted_credentials, render, WireServer};
use crate::adapters::nxapi::{
    error_reply, ok_reply, switchport_body, CliRequest, CODE_BUSY, CODE_CLI_ERROR, CODE_INTERNAL,
    CODE_INVALID_REQUEST, CODE_METHOD_NOT_FOUND, CODE_PARSE_ERROR, CONTENT_TYPE, PATH,
};
use crate::adapters::{DeviceError, OutcomeClass};
use crate::model::{Credentials, SwitchKind};
use crate::sim::{DeviceOp, Reply, SimWorld, WireCall};

/// Most commands one request may carry; more is a protocol error, not an allocation.
pub(crate) const MAX_COMMANDS: usize = 1024;

/// Starts the NX-API simulator of switch `device` (which must be an `nxapi` switch of the
/// world's site) on 127.0.0.1 behind a fault proxy.
pub async fn start(world: SimWorld, device: &str) -> io::Result<WireServer> {
    let credentials = switch_credentials(&world, device, SwitchKind::Nxapi)?;
    let face = NxapiFace {
        world,
        device: device.to_string(),
        credentials,
    };
    WireServer::start(vec![Mock::given(any()).respond_with(face)]).await
}

/// The credentials switch `device` of kind `kind` accepts; an error when the site has no such
/// switch (a face for the wrong device would serve a model that does not exist).
pub(crate) fn switch_credentials(
    world: &SimWorld,
    device: &str,
    kind: SwitchKind,
) -> io::Result<Credentials> {
    let spec = world
        .site()
        .topology
        .switches
        .iter()
        .find(|s| s.name == device && s.kind == kind)
        .ok_or_else(|| {
            let text = format!("{device} is not a {kind:?} switch of the site");
            io::Error::new(io::ErrorKind::InvalidInput, text)
        })?;
    Ok(accepted_credentials(spec.credentials.as_ref()))
}

/// Whether the request carries HTTP Basic credentials equal to `accepted`.
pub(crate) fn authorized(request: &Request, accepted: &Credentials) -> bool {
    let Some(value) = request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Ok(pair) = String::from_utf8(decoded) else {
        return false;
    };
    pair.split_once(':') == Some((accepted.user.as_str(), accepted.password.as_str()))
}

/// A 401 asking for Basic credentials.
pub(crate) fn unauthorized(realm: &str) -> ResponseTemplate {
    ResponseTemplate::new(401)
        .insert_header("www-authenticate", format!("Basic realm=\"{realm}\""))
        .set_body_string("Unauthorized")
}

/// The content type of a request, lowercased, without parameters.
pub(crate) fn media_type(request: &Request) -> String {
    request
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The commands of one request run against the world in order, stopping at the first failure,
/// folded into one [`WireCall`] for [`render`]: delays add up, the first failure or transport
/// fault ends the request (later commands never run, as on the real devices).
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Outputs of the commands that succeeded, in order.
    pub results: Vec<Value>,
    delay: Duration,
    failure: Option<DeviceError>,
    transport: Option<ProxyFault>,
    device_calls: usize,
}

impl Batch {
    /// Whether a command failed, so nothing more runs.
    pub fn stopped(&self) -> bool {
        self.failure.is_some() || self.transport.is_some()
    }

    /// Makes one device call; its reply, or `None` when it failed (the batch has stopped).
    pub fn call(&mut self, world: &SimWorld, device: &str, op: DeviceOp) -> Option<Reply> {
        let call = world.call_now(device, op);
        self.delay = self.delay.saturating_add(call.delay);
        let earlier_calls = self.device_calls;
        self.device_calls += 1;
        if let Some(fault) = call.transport {
            self.transport = Some(fault);
            return None;
        }
        match call.result {
            Ok(reply) => Some(reply),
            Err(error) => {
                // 503 and 401 refuse a whole request before it runs, which cannot be said once
                // an earlier command of it changed the device: report a mid-way failure.
                let whole_request =
                    matches!(error.class, OutcomeClass::Unavailable | OutcomeClass::Auth);
                self.failure = Some(if whole_request && earlier_calls > 0 {
                    let detail = format!("failed after earlier commands ran: {}", error.detail);
                    DeviceError::new(OutcomeClass::Unknown, detail)
                } else {
                    error
                });
                None
            }
        }
    }

    /// Records a command's output.
    pub fn ok(&mut self, output: Value) {
        self.results.push(output);
    }

    /// Stops the batch with a CLI error of the command at hand (not a device call).
    pub fn fail(&mut self, detail: impl Into<String>) {
        self.failure = Some(DeviceError::new(OutcomeClass::Rejected, detail));
    }

    /// The folded call and the outputs of the commands that succeeded (the failing command, if
    /// any, is the next one).
    pub fn finish(self) -> (WireCall, Vec<Value>) {
        let result = match self.failure {
            Some(error) => Err(error),
            None => Ok(Reply::Done),
        };
        let call = WireCall {
            result,
            delay: self.delay,
            transport: self.transport,
        };
        (call, self.results)
    }
}

/// One parsed CLI line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cli {
    Configure,
    End,
    Interface(String),
    AccessVlan(u16),
    Show(String),
    Save,
}

fn parse_cli(cmd: &str) -> Result<Cli, String> {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    match words.as_slice() {
        ["configure"] | ["configure", "terminal"] => Ok(Cli::Configure),
        ["end"] | ["exit"] => Ok(Cli::End),
        ["interface", port] => Ok(Cli::Interface(port.to_string())),
        ["switchport", "access", "vlan", vlan] => vlan
            .parse()
            .map(Cli::AccessVlan)
            .map_err(|_| format!("% Invalid number, range is (1-4094) at '{vlan}'")),
        ["show", "interface", port, "switchport"] => Ok(Cli::Show(port.to_string())),
        ["copy", "running-config", "startup-config"] => Ok(Cli::Save),
        _ => Err(format!("% Invalid command at '^' marker: {cmd}")),
    }
}

/// A request that passed the protocol checks.
struct Parsed {
    lines: Vec<CliRequest>,
    /// Whether the body was an array (the reply then is one too).
    array: bool,
}

/// A protocol error: code, message, detail.
type ProtocolError = (i64, &'static str, String);

fn parse_request(request: &Request) -> Result<Parsed, ProtocolError> {
    let invalid = |msg: String| (CODE_INVALID_REQUEST, "Invalid request", msg);
    if media_type(request) != CONTENT_TYPE {
        return Err(invalid(format!("Content-Type must be {CONTENT_TYPE}")));
    }
    let body: Value = serde_json::from_slice(&request.body)
        .map_err(|e| (CODE_PARSE_ERROR, "Parse error", e.to_string()))?;
    let (items, array) = match body {
        Value::Array(items) if !items.is_empty() => (items, true),
        object @ Value::Object(_) => (vec![object], false),
        _ => {
            return Err(invalid(
                "expected a request object or a non-empty array".into(),
            ))
        }
    };
    if items.len() > MAX_COMMANDS {
        return Err(invalid(format!("more than {MAX_COMMANDS} commands")));
    }
    let mut lines = Vec::with_capacity(items.len());
    for item in items {
        let line: CliRequest = serde_json::from_value(item).map_err(|e| invalid(e.to_string()))?;
        if line.jsonrpc != "2.0" {
            return Err(invalid("jsonrpc must be \"2.0\"".into()));
        }
        if line.method != "cli" {
            let msg = format!("method {:?} is not supported", line.method);
            return Err((CODE_METHOD_NOT_FOUND, "Method not found", msg));
        }
        if line.params.version != 1 {
            return Err(invalid("params.version must be 1".into()));
        }
        if !(line.id.is_number() || line.id.is_string()) {
            return Err(invalid("id must be a number or a string".into()));
        }
        lines.push(line);
    }
    Ok(Parsed { lines, array })
}

/// The NX-API responder of one switch.
struct NxapiFace {
    world: SimWorld,
    device: String,
    credentials: Credentials,
}

impl NxapiFace {
    /// Runs one CLI line; `interface` is the interface context `interface <port>` opened.
    fn execute(&self, batch: &mut Batch, interface: &mut Option<String>, cmd: &str) {
        let (world, device) = (&self.world, self.device.as_str());
        match parse_cli(cmd) {
            Err(msg) => batch.fail(msg),
            Ok(Cli::Configure) => batch.ok(Value::Null),
            Ok(Cli::End) => {
                *interface = None;
                batch.ok(Value::Null);
            }
            Ok(Cli::Interface(port)) => {
                *interface = Some(port);
                batch.ok(Value::Null);
            }
            Ok(Cli::AccessVlan(vlan)) => match interface {
                None => batch.fail("% switchport access vlan needs an interface context"),
                Some(port) => {
                    let op = DeviceOp::SetPort {
                        port: port.clone(),
                        vlan,
                    };
                    if batch.call(world, device, op).is_some() {
                        batch.ok(Value::Null);
                    }
                }
            },
            Ok(Cli::Show(port)) => {
                let op = DeviceOp::GetPort { port: port.clone() };
                match batch.call(world, device, op) {
                    Some(Reply::Vlan(vlan)) => {
                        batch.ok(json!({"body": switchport_body(&port, vlan)}));
                    }
                    Some(other) => batch.fail(format!("simulator bug: reply {other:?}")),
                    None => {}
                }
            }
            Ok(Cli::Save) => {
                if batch.call(world, device, DeviceOp::SaveConfig).is_some() {
                    batch.ok(Value::Null);
                }
            }
        }
    }
}

fn json_template(status: u16, body: &Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.to_string(), CONTENT_TYPE)
}

/// Per-command replies for the commands that ran, plus `last` (an error) when given.
fn replies(ids: &[Value], results: &[Value], last: Option<Value>, array: bool) -> Value {
    let mut all: Vec<Value> = ids
        .iter()
        .zip(results)
        .map(|(id, r)| ok_reply(id, r.clone()))
        .collect();
    all.extend(last);
    match (array, all.len()) {
        (false, 1) => all.pop().unwrap_or(Value::Null),
        _ => Value::Array(all),
    }
}

fn error_template(
    ids: &[Value],
    results: &[Value],
    error: &DeviceError,
    array: bool,
) -> ResponseTemplate {
    let (code, message) = match error.class {
        OutcomeClass::Auth => return unauthorized("nxapi"),
        OutcomeClass::Unavailable => {
            return ResponseTemplate::new(503).set_body_string("Service Unavailable")
        }
        OutcomeClass::Rejected => (CODE_CLI_ERROR, "Invalid params"),
        OutcomeClass::Busy => (CODE_BUSY, "Server busy"),
        OutcomeClass::Unknown => (CODE_INTERNAL, "Internal error"),
    };
    let id = ids.get(results.len()).cloned().unwrap_or(Value::Null);
    let last = error_reply(&id, code, message, &error.detail);
    json_template(500, &replies(ids, results, Some(last), array))
}

impl Respond for NxapiFace {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if request.url.path() != PATH {
            return ResponseTemplate::new(404).set_body_string("Not Found");
        }
        if request.method.as_str() != "POST" {
            return ResponseTemplate::new(405).set_body_string("Method Not Allowed");
        }
        if !authorized(request, &self.credentials) {
            return unauthorized("nxapi");
        }
        let parsed = match parse_request(request) {
            Ok(parsed) => parsed,
            Err((code, message, msg)) => {
                return json_template(500, &error_reply(&Value::Null, code, message, &msg));
            }
        };
        let mut batch = Batch::default();
        let mut interface = None;
        for line in &parsed.lines {
            if batch.stopped() {
                break;
            }
            self.execute(&mut batch, &mut interface, &line.params.cmd);
        }
        let ids: Vec<Value> = parsed.lines.iter().map(|l| l.id.clone()).collect();
        let (call, results) = batch.finish();
        let array = parsed.array;
        render(
            call,
            |_| json_template(200, &replies(&ids, &results, None, array)),
            |e| error_template(&ids, &results, e, array),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_lines_parse_strictly() {
        assert_eq!(
            parse_cli("interface Ethernet1/5"),
            Ok(Cli::Interface("Ethernet1/5".into()))
        );
        assert_eq!(
            parse_cli("switchport access vlan 910"),
            Ok(Cli::AccessVlan(910))
        );
        assert!(parse_cli("switchport access vlan 99999").is_err());
        assert!(parse_cli("switchport trunk allowed vlan 1").is_err());
        assert_eq!(
            parse_cli("copy running-config startup-config"),
            Ok(Cli::Save)
        );
    }
}
