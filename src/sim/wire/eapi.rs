//! The eAPI face of a simulated switch: `POST /command-api` `runCmds` over the switch model,
//! answered as EOS does (samples in `fixtures/devices/arista-eapi/`, each with its source):
//! `{"jsonrpc":"2.0","method":"runCmds","params":{"version":1,"cmds":[...],"format":"json"|
//! "text"},"id":"1"}` (pyeapi also sends a top-level `"streaming": false`, accepted) answered
//! `{"jsonrpc":"2.0","id":"1","result":[...]}`, one output per command: JSON objects, or
//! `{"output":"<text>"}` in the text format. Execution stops at the first failing command:
//! `"error":{"code":1002,"message":"CLI command k of n '...' failed: invalid command",
//! "data":[...outputs of the commands that ran..., {"errors":["..."]}]}`.
//!
//! The commands, modes (`enable` before `configure`/`copy`, `configure` before `interface`, an
//! interface before `switchport ...`; `show` runs anywhere) and device calls are the shared
//! switch CLI of [`super::jsonrpc`]; this file only reads eAPI requests and renders EOS outputs.
//! It builds its shapes itself: the client (`adapters::eapi`) and this simulator meet only in
//! the goldens.
//!
//! Decisions where no source says:
//! - Command and protocol errors come with HTTP 200 (eAPI reports them in the JSON-RPC body).
//! - Busy is error code -32001 (JSON-RPC's implementation-defined server-error range) with
//!   `data` like a 1002; a failure that may have applied is -32603 with HTTP 500.
//! - `show running-config` in the JSON format fails with 1003 (pyeapi's `enable()` then asks
//!   for text, as it does on EOS releases without JSON for it).

use std::io;

use serde_json::{json, Map, Value};
use wiremock::matchers::any;
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use super::jsonrpc::{
    json_template, refuse_route, unauthorized, Batch, CliFailure, Output, SwitchSite, VlanRow,
    BUSY, INTERNAL, INVALID_PARAMS, INVALID_REQUEST, MAX_COMMANDS, METHOD_NOT_FOUND, PARSE_ERROR,
};
use super::{render, WireServer};
use crate::adapters::{DeviceError, OutcomeClass};
use crate::model::SwitchKind;
use crate::sim::SimWorld;

const PATH: &str = "/command-api";
const CONTENT_TYPE: &str = "application/json";
const COMMAND_FAILED: i64 = 1002;
const NOT_CONVERTED: i64 = 1003;
/// The EOS release the simulator claims.
const RELEASE: &str = "4.28.3M";

/// Starts the eAPI simulator of switch `device` (which must be an `eapi` switch of the world's
/// site) on 127.0.0.1 behind a fault proxy.
pub async fn start(world: SimWorld, device: &str) -> io::Result<WireServer> {
    let face = EapiFace(SwitchSite::new(world, device, SwitchKind::Eapi)?);
    WireServer::start(vec![Mock::given(any()).respond_with(face)]).await
}

/// A request that passed the protocol checks.
struct Parsed {
    id: Value,
    cmds: Vec<String>,
    json: bool,
}

fn error_body(id: &Value, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({"code": code, "message": message});
    if let Some(data) = data {
        error["data"] = data;
    }
    json!({"jsonrpc": "2.0", "id": id, "error": error})
}

/// A protocol error: the reply to send (boxed: a template is large).
type Refusal = Box<ResponseTemplate>;

fn refusal(id: &Value, code: i64, message: String) -> Refusal {
    let body = error_body(id, code, &message, None);
    Box::new(json_template(200, &body, CONTENT_TYPE))
}

fn parse_request(body: &[u8]) -> Result<Parsed, Refusal> {
    let null = Value::Null;
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| refusal(&null, PARSE_ERROR, format!("Parse error: {e}")))?;
    let Value::Object(object) = body else {
        return Err(refusal(
            &null,
            INVALID_REQUEST,
            "Expected a JSON object".into(),
        ));
    };
    let field = |name: &str| {
        object.get(name).ok_or_else(|| {
            let msg = format!("Expected field '{name}' not specified");
            refusal(&null, INVALID_REQUEST, msg)
        })
    };
    if field("jsonrpc")? != "2.0" {
        let msg = "Expected jsonrpc version '2.0'".to_string();
        return Err(refusal(&null, INVALID_REQUEST, msg));
    }
    let id = field("id")?.clone();
    if !(id.is_string() || id.is_number()) {
        let msg = "Expected field 'id' to be a string or a number".to_string();
        return Err(refusal(&null, INVALID_REQUEST, msg));
    }
    let method = field("method")?;
    if method != "runCmds" {
        return Err(refusal(
            &id,
            METHOD_NOT_FOUND,
            format!("Method not found: {method}"),
        ));
    }
    let invalid = |msg: &str| refusal(&id, INVALID_PARAMS, format!("Invalid params: {msg}"));
    let params = field("params")?;
    let version = params.get("version").unwrap_or(&Value::Null);
    if !(version.as_f64() == Some(1.0) || version == "latest") {
        return Err(invalid("version must be 1 or 'latest'"));
    }
    let json = match params.get("format") {
        None | Some(Value::Null) => true,
        Some(f) if f == "json" => true,
        Some(f) if f == "text" => false,
        Some(other) => return Err(invalid(&format!("unknown format {other}"))),
    };
    let Some(list) = params.get("cmds").and_then(Value::as_array) else {
        return Err(invalid("cmds must be a list"));
    };
    if list.is_empty() || list.len() > MAX_COMMANDS {
        return Err(invalid(&format!("1 to {MAX_COMMANDS} commands expected")));
    }
    let mut cmds = Vec::with_capacity(list.len());
    for cmd in list {
        // A command is a string, or `{"cmd": ..., "input": ...}` for interactive input.
        let text = match cmd {
            Value::String(text) => Some(text.clone()),
            Value::Object(o) => o.get("cmd").and_then(Value::as_str).map(str::to_string),
            _ => None,
        };
        cmds.push(text.ok_or_else(|| invalid(&format!("bad command {cmd}")))?);
    }
    Ok(Parsed { id, cmds, json })
}

fn vlan_name(vlans: &[VlanRow], id: u16) -> String {
    vlans
        .iter()
        .find(|v| v.id == id)
        .map_or_else(|| format!("VLAN{id:04}"), |v| v.name.clone())
}

/// The JSON output of a command (`show running-config` never gets here: it has none).
fn json_output(output: &Output) -> Value {
    match output {
        Output::Empty | Output::Running { .. } => json!({}),
        Output::Saved => json!({"messages": ["Copy completed successfully."]}),
        Output::Version(_) => json!({
            "mfgName": "Arista",
            "modelName": "DCS-7050TX-64",
            "hardwareRevision": "01.11",
            "serialNumber": "QLAB0000001",
            "systemMacAddress": "00:1c:73:00:00:01",
            "hwMacAddress": "00:1c:73:00:00:01",
            "configMacAddress": "00:00:00:00:00:00",
            "version": RELEASE,
            "architecture": "x86_64",
            "internalVersion": format!("{RELEASE}-qlab"),
            "internalBuildId": "00000000-0000-0000-0000-000000000000",
            "imageFormatVersion": "3.0",
            "isIntlVersion": false,
            "uptime": 0.0,
            "bootupTimestamp": 1_764_000_000.0,
            "memTotal": 8_099_732,
            "memFree": 6_143_220,
        }),
        Output::Vlans { vlans, .. } => {
            let mut all = Map::new();
            for v in vlans {
                let interfaces: Map<String, Value> = v
                    .ports
                    .iter()
                    .map(|p| (p.clone(), json!({"privatePromoted": false})))
                    .collect();
                all.insert(
                    v.id.to_string(),
                    json!({"status": "active", "name": v.name, "interfaces": interfaces, "dynamic": false}),
                );
            }
            json!({"sourceDetail": "", "vlans": all})
        }
        Output::Switchport { port, vlan } => json!({"switchports": {port: {
            "enabled": true,
            "switchportInfo": {
                "mode": "access",
                "accessVlanId": vlan,
                "accessVlanName": if *vlan == 1 { "default".to_string() } else { format!("VLAN{vlan:04}") },
                "trunkingNativeVlanId": 1,
                "trunkingNativeVlanName": "default",
                "trunkAllowedVlans": "ALL",
                "macLearning": true,
                "tpid": "0x8100",
                "tpidStatus": true,
            },
        }}}),
    }
}

/// The text output of a command.
fn text_output(output: &Output) -> String {
    match output {
        Output::Empty => String::new(),
        Output::Saved => "Copy completed successfully.\n".into(),
        Output::Version(_) => format!(
            "Arista DCS-7050TX-64\nHardware version:    01.11\nSerial number:       QLAB0000001\n\
             System MAC address:  001c.7300.0001\n\nSoftware image version: {RELEASE}\n\
             Architecture:           x86_64\n\nUptime:                 0 minutes\n\
             Total memory:           8099732 kB\nFree memory:            6143220 kB\n\n"
        ),
        Output::Vlans { vlans, .. } => {
            let mut out = String::from(
                "VLAN  Name                             Status    Ports\n\
                 ----- -------------------------------- --------- -------------------------------\n",
            );
            for v in vlans {
                let ports = v.ports.join(", ");
                out.push_str(&format!("{:<5} {:<32} active    {ports}\n", v.id, v.name));
            }
            out
        }
        Output::Switchport { port, vlan } => format!(
            "Name: {port}\nSwitchport: Enabled\nAdministrative Mode: static access\n\
             Operational Mode: static access\nAccess Mode VLAN: {vlan}\n\
             Trunking Native Mode VLAN: 1 (default)\nTrunking VLANs Enabled: ALL\n"
        ),
        Output::Running {
            device,
            vlans,
            ports,
            all,
        } => {
            let what = if *all {
                "show running-config all"
            } else {
                "show running-config"
            };
            let mut out = format!(
                "! Command: {what}\n! device: {device} (DCS-7050TX-64, EOS-{RELEASE})\n!\nhostname {device}\n!\n"
            );
            for v in vlans.iter().filter(|v| v.id != 1) {
                out.push_str(&format!("vlan {}\n   name {}\n", v.id, v.name));
                if *all {
                    out.push_str("   state active\n");
                }
                out.push_str("!\n");
            }
            for (port, vlan) in ports {
                out.push_str(&format!("interface {port}\n"));
                if *all {
                    out.push_str("   no description\n   no shutdown\n");
                }
                if *vlan != 1 || *all {
                    out.push_str(&format!("   switchport access vlan {vlan}\n"));
                }
                if *all {
                    out.push_str(
                        "   switchport trunk native vlan 1\n   switchport trunk allowed vlan 1-4094\n",
                    );
                }
                out.push_str("   switchport mode access\n");
                if *all {
                    let name = vlan_name(vlans, *vlan);
                    out.push_str(&format!("   switchport\n   ! access VLAN {name}\n"));
                }
                out.push_str("!\n");
            }
            out.push_str("end\n");
            out
        }
    }
}

fn render_output(output: &Output, json: bool) -> Value {
    if json {
        json_output(output)
    } else {
        json!({ "output": text_output(output) })
    }
}

/// The reply to a request whose first `outputs.len()` commands ran, the next failing with
/// `failure`.
fn reply(
    parsed: &Parsed,
    outputs: &[Output],
    failure: Option<(&DeviceError, Option<CliFailure>)>,
) -> ResponseTemplate {
    let results: Vec<Value> = outputs
        .iter()
        .map(|o| render_output(o, parsed.json))
        .collect();
    let Some((error, kind)) = failure else {
        let body = json!({"jsonrpc": "2.0", "id": parsed.id, "result": results});
        return json_template(200, &body, CONTENT_TYPE);
    };
    let (status, code, what) = match (error.class, kind) {
        (OutcomeClass::Auth, _) => return unauthorized("eapi"),
        (OutcomeClass::Unavailable, _) => {
            return ResponseTemplate::new(503).set_body_string("Service Unavailable")
        }
        (OutcomeClass::Rejected, Some(CliFailure::NoJson)) => {
            (200, NOT_CONVERTED, "command cannot be converted to JSON")
        }
        (OutcomeClass::Rejected, _) => (200, COMMAND_FAILED, "invalid command"),
        (OutcomeClass::Busy, _) => (200, BUSY, "could not run command (busy)"),
        (OutcomeClass::Unknown, _) => (500, INTERNAL, "internal error"),
    };
    let index = outputs.len();
    let cmd = parsed.cmds.get(index).map(String::as_str).unwrap_or("");
    let mut data = results;
    data.push(json!({"errors": [error.detail]}));
    let message = format!(
        "CLI command {} of {} '{cmd}' failed: {what}",
        index + 1,
        parsed.cmds.len()
    );
    let body = error_body(&parsed.id, code, &message, Some(Value::Array(data)));
    json_template(status, &body, CONTENT_TYPE)
}

/// The eAPI responder of one switch.
struct EapiFace(SwitchSite);

impl Respond for EapiFace {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(refused) = refuse_route(request, PATH, &self.0.credentials, "eapi") {
            return refused;
        }
        let parsed = match parse_request(&request.body) {
            Ok(parsed) => parsed,
            Err(refusal) => return *refusal,
        };
        let mut batch = Batch::default();
        let mut session = self.0.session(true);
        for cmd in &parsed.cmds {
            if batch.stopped() {
                break;
            }
            session.execute(&mut batch, cmd, parsed.json);
        }
        let (call, outputs, kind) = batch.finish();
        render(
            call,
            |_| reply(&parsed, &outputs, None),
            |e| reply(&parsed, &outputs, Some((e, kind))),
        )
    }
}
