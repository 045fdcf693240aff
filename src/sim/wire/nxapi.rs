//! The NX-API face of a simulated switch: `POST /ins` over the switch model, in two request
//! formats, both as NX-OS answers them (samples in `fixtures/devices/cisco-nxapi/`, each with
//! its source):
//! - JSON-RPC (`Content-Type: application/json-rpc`): an array (or one object) of
//!   `{"jsonrpc":"2.0","method":"cli"|"cli_ascii","params":{"cmd":...,"version":1},"id":n}`.
//!   `version` is any JSON number or numeric string equal to 1 (nxapi-plumbing sends `1.0`).
//!   `cli` answers `{"body":{...}}` for shows and `null` for configuration lines, `cli_ascii`
//!   `{"msg":"<text>"}`; a failing line answers HTTP 500 with the replies of the lines before
//!   it and its error (`-32602 Invalid params`, `data.msg` the CLI's words). One reply is a
//!   bare object even for a one-element array (as nxapi-plumbing's recorded replies show).
//! - ins_api (`Content-Type: application/json`): `{"ins_api":{"version":"1.0","type":
//!   "cli_show"|"cli_show_ascii"|"cli_conf","chunk":"0","sid":"1","input":"a ;b",
//!   "output_format":"json"}}`, answered `{"ins_api":{"type":..,"version":"1.0","sid":"eoc",
//!   "outputs":{"output":...}}}` with one output per command (an object when there is one).
//!
//! The commands, modes and device calls are the shared switch CLI of [`super::jsonrpc`]; this
//! file only reads NX-API requests and renders NX-OS outputs. It builds its shapes itself: the
//! client (`adapters::nxapi`) and this simulator meet only in the goldens.
//!
//! Decisions where no source says:
//! - Busy is JSON-RPC error -32001 (JSON-RPC's implementation-defined server-error range);
//!   a failure mid-execution that may have applied is -32603 (`unknown`), both with HTTP 500.
//! - ins_api: a CLI error is output code `"400"` `Input CLI command error` with `clierror`, a
//!   show without structured output `"501"`, both with HTTP 200; busy and internal failures
//!   are output code `"500"` with HTTP 500. `cli_conf` answers one output per command (`body`
//!   `{}`), like `cli_show`. Execution stops at the first failing command in both formats.

use std::io;

use serde_json::{json, Map, Value};
use wiremock::matchers::any;
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use super::jsonrpc::{
    json_template, refuse_route, Batch, CliFailure, Output, SwitchSite, VlanRow, BUSY, INTERNAL,
    INVALID_PARAMS, INVALID_REQUEST, MAX_COMMANDS, METHOD_NOT_FOUND, PARSE_ERROR,
};
use super::{render, WireServer};
use crate::adapters::{DeviceError, OutcomeClass};
use crate::model::SwitchKind;
use crate::sim::SimWorld;

const PATH: &str = "/ins";
const JSON_RPC: &str = "application/json-rpc";
const INS_API: &str = "application/json";
/// The NX-OS release the simulator claims.
const RELEASE: &str = "9.3(8)";

/// Starts the NX-API simulator of switch `device` (which must be an `nxapi` switch of the
/// world's site) on 127.0.0.1 behind a fault proxy.
pub async fn start(world: SimWorld, device: &str) -> io::Result<WireServer> {
    let face = NxapiFace(SwitchSite::new(world, device, SwitchKind::Nxapi)?);
    WireServer::start(vec![Mock::given(any()).respond_with(face)]).await
}

/// Re-exports for the RESTCONF face, which shares the credentials checks.
pub(crate) use super::jsonrpc::{authorized, media_type, switch_credentials, unauthorized};

/// One command of a request and whether it wants structured output.
struct Line {
    cmd: String,
    json: bool,
    id: Value,
}

/// Which request format a request used.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    /// JSON-RPC.
    JsonRpc,
    /// ins_api with its message type.
    InsApi(InsType),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum InsType {
    Show,
    ShowAscii,
    Conf,
}

impl InsType {
    fn as_str(self) -> &'static str {
        match self {
            InsType::Show => "cli_show",
            InsType::ShowAscii => "cli_show_ascii",
            InsType::Conf => "cli_conf",
        }
    }
}

/// A protocol error: the reply to send (boxed: a template is large).
type Refusal = Box<ResponseTemplate>;

fn rpc_error(id: &Value, code: i64, message: &str, msg: &str) -> Value {
    json!({"jsonrpc": "2.0", "error": {"code": code, "message": message, "data": {"msg": msg}}, "id": id})
}

fn rpc_refusal(code: i64, message: &str, msg: &str) -> Refusal {
    let body = rpc_error(&Value::Null, code, message, msg);
    Box::new(json_template(500, &body, JSON_RPC))
}

/// Whether an NX-API `version` is 1: a number equal to 1 or a string that parses to 1.
fn version_is_one(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.as_f64() == Some(1.0),
        Value::String(s) => s.trim().parse::<f64>() == Ok(1.0),
        _ => false,
    }
}

fn parse_json_rpc(body: &[u8]) -> Result<(Vec<Line>, Format), Refusal> {
    let invalid = |msg: String| rpc_refusal(INVALID_REQUEST, "Invalid request", &msg);
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| rpc_refusal(PARSE_ERROR, "Parse error", &e.to_string()))?;
    let items = match body {
        Value::Array(items) if !items.is_empty() => items,
        object @ Value::Object(_) => vec![object],
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
    for (index, item) in items.iter().enumerate() {
        let at = |what: &str| format!("request {}: {what}", index + 1);
        if item.get("jsonrpc") != Some(&json!("2.0")) {
            return Err(invalid(at("jsonrpc must be \"2.0\"")));
        }
        let json = match item.get("method").and_then(Value::as_str) {
            Some("cli") => true,
            Some("cli_ascii") => false,
            other => {
                let msg = at(&format!("method {other:?} is not supported"));
                return Err(rpc_refusal(METHOD_NOT_FOUND, "Method not found", &msg));
            }
        };
        let params = item.get("params");
        let Some(cmd) = params.and_then(|p| p.get("cmd")).and_then(Value::as_str) else {
            return Err(invalid(at("params.cmd must be a string")));
        };
        if !params
            .and_then(|p| p.get("version"))
            .is_some_and(version_is_one)
        {
            return Err(invalid(at("params.version must be 1")));
        }
        let id = item.get("id").cloned().unwrap_or(Value::Null);
        if !(id.is_number() || id.is_string()) {
            return Err(invalid(at("id must be a number or a string")));
        }
        lines.push(Line {
            cmd: cmd.to_string(),
            json,
            id,
        });
    }
    Ok((lines, Format::JsonRpc))
}

fn ins_refusal(msg: &str) -> Refusal {
    let output = json!({"input": "", "msg": msg, "code": "400"});
    Box::new(json_template(
        400,
        &ins_reply("cli_show", vec![output]),
        INS_API,
    ))
}

fn parse_ins_api(body: &[u8]) -> Result<(Vec<Line>, Format), Refusal> {
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| ins_refusal(&format!("Request is not valid JSON: {e}")))?;
    let Some(ins) = body.get("ins_api").and_then(Value::as_object) else {
        return Err(ins_refusal("Expected an ins_api object"));
    };
    if !ins.get("version").is_some_and(version_is_one) {
        return Err(ins_refusal("Unsupported version: expected 1.0"));
    }
    let kind = match ins.get("type").and_then(Value::as_str) {
        Some("cli_show") => InsType::Show,
        Some("cli_show_ascii") => InsType::ShowAscii,
        Some("cli_conf") => InsType::Conf,
        other => return Err(ins_refusal(&format!("Unsupported type {other:?}"))),
    };
    if ins
        .get("output_format")
        .and_then(Value::as_str)
        .is_some_and(|f| f != "json")
    {
        return Err(ins_refusal("This device answers output_format json only"));
    }
    let Some(input) = ins.get("input").and_then(Value::as_str) else {
        return Err(ins_refusal("Expected input"));
    };
    let cmds: Vec<&str> = input
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    if cmds.is_empty() || cmds.len() > MAX_COMMANDS {
        return Err(ins_refusal(&format!(
            "1 to {MAX_COMMANDS} commands expected"
        )));
    }
    let lines = cmds
        .into_iter()
        .map(|cmd| Line {
            cmd: cmd.to_string(),
            json: kind != InsType::ShowAscii,
            id: Value::Null,
        })
        .collect();
    Ok((lines, Format::InsApi(kind)))
}

fn ins_reply(kind: &str, outputs: Vec<Value>) -> Value {
    let output = match <[Value; 1]>::try_from(outputs) {
        Ok([one]) => one,
        Err(many) => Value::Array(many),
    };
    json!({"ins_api": {"type": kind, "version": "1.0", "sid": "eoc", "outputs": {"output": output}}})
}

/// NX-OS renders one row as an object and several as an array.
fn rows(mut items: Vec<Value>) -> Value {
    if items.len() == 1 {
        items.pop().unwrap_or(Value::Null)
    } else {
        Value::Array(items)
    }
}

fn vlan_name(vlans: &[VlanRow], id: u16) -> String {
    vlans
        .iter()
        .find(|v| v.id == id)
        .map_or_else(|| format!("VLAN{id:04}"), |v| v.name.clone())
}

/// The structured `body` of an output, `None` for lines that answer nothing.
fn body(output: &Output) -> Option<Value> {
    Some(match output {
        Output::Empty | Output::Saved | Output::Running { .. } => return None,
        Output::Version(device) => json!({
            "header_str": "Cisco Nexus Operating System (NX-OS) Software (simulated by quarantine-lab)\n",
            "bios_ver_str": "07.69",
            "loader_ver_str": "N/A",
            "kickstart_ver_str": RELEASE,
            "sys_ver_str": RELEASE,
            "nxos_ver_str": RELEASE,
            "bios_cmpl_time": "04/08/2021",
            "kick_file_name": "bootflash:///nxos.9.3.8.bin",
            "kick_cmpl_time": "8/31/2021 12:00:00",
            "kick_tmstmp": "08/31/2021 20:00:00",
            "isan_file_name": "bootflash:///nxos.9.3.8.bin",
            "isan_cmpl_time": "8/31/2021 12:00:00",
            "isan_tmstmp": "08/31/2021 20:00:00",
            "chassis_id": "Nexus9000 C93180YC-EX chassis",
            "module_id": "48x10/25G + 6x40/100G Ethernet Module",
            "cpu_name": "Intel(R) Xeon(R) CPU  @ 1.80GHz",
            "memory": 24632252,
            "mem_type": "kB",
            "proc_board_id": "QLAB0000001",
            "host_name": device,
            "bootflash_size": 53298520,
            "kern_uptm_days": 0,
            "kern_uptm_hrs": 0,
            "kern_uptm_mins": 0,
            "kern_uptm_secs": 0,
            "manufacturer": "Cisco Systems, Inc.",
        }),
        Output::Vlans { brief, vlans } => {
            let brief_rows = vlans
                .iter()
                .map(|v| {
                    let mut row = Map::new();
                    row.insert("vlanshowbr-vlanid".into(), json!(v.id.to_string()));
                    row.insert("vlanshowbr-vlanid-utf".into(), json!(v.id.to_string()));
                    row.insert("vlanshowbr-vlanname".into(), json!(v.name));
                    row.insert("vlanshowbr-vlanstate".into(), json!("active"));
                    row.insert("vlanshowbr-shutstate".into(), json!("noshutdown"));
                    row.insert("vlanshowplist-ifidx".into(), json!(v.ports.join(",")));
                    Value::Object(row)
                })
                .collect();
            let mut table =
                json!({"TABLE_vlanbriefxbrief": {"ROW_vlanbriefxbrief": rows(brief_rows)}});
            if !brief {
                let mtu = vlans
                    .iter()
                    .map(|v| json!({"vlanshowinfo-vlanid": v.id.to_string(), "vlanshowinfo-media-type": "enet", "vlanshowinfo-vlanmode": "ce-vlan"}))
                    .collect();
                table["TABLE_mtuinfo"] = json!({"ROW_mtuinfo": rows(mtu)});
            }
            table
        }
        Output::Switchport { port, vlan } => json!({"TABLE_interface": {"ROW_interface": {
            "interface": port,
            "switchport": "Enabled",
            "switchport_monitor": "Not enabled",
            "oper_mode": "access",
            "access_vlan": vlan.to_string(),
            "access_vlan_name": if *vlan == 1 { "default".to_string() } else { format!("VLAN{vlan:04}") },
            "native_vlan": "1",
            "native_vlan_name": "default",
            "trunk_vlans": "1-4094",
        }}}),
    })
}

/// The text (`cli_ascii`, `cli_show_ascii`) of an output.
fn text(output: &Output) -> String {
    match output {
        Output::Empty => String::new(),
        Output::Saved => "[########################################] 100%\nCopy complete.\n".into(),
        Output::Version(device) => format!(
            "Cisco Nexus Operating System (NX-OS) Software (simulated by quarantine-lab)\n\
             Software\n  NXOS: version {RELEASE}\n\nHardware\n  cisco Nexus9000 C93180YC-EX chassis\n\
             \n  Device name: {device}\n"
        ),
        Output::Vlans { vlans, .. } => {
            let mut out = String::from(
                "\nVLAN Name                             Status    Ports\n\
                 ---- -------------------------------- --------- -------------------------------\n",
            );
            for v in vlans {
                let ports = v.ports.join(", ");
                out.push_str(&format!("{:<4} {:<32} active    {ports}\n", v.id, v.name));
            }
            out
        }
        Output::Switchport { port, vlan } => format!(
            "Name: {port}\n  Switchport: Enabled\n  Switchport Monitor: Not enabled\n  \
             Operational Mode: access\n  Access Mode VLAN: {vlan}\n  Trunking Native Mode VLAN: 1 (default)\n  \
             Trunking VLANs Allowed: 1-4094\n"
        ),
        Output::Running {
            device,
            vlans,
            ports,
            all,
        } => {
            let mut out = format!("!Command: show running-config\n\nversion {RELEASE}\nhostname {device}\n");
            let ids: Vec<String> = vlans.iter().map(|v| v.id.to_string()).collect();
            out.push_str(&format!("vlan {}\n", ids.join(",")));
            for v in vlans.iter().filter(|v| v.id != 1) {
                out.push_str(&format!("vlan {}\n  name {}\n", v.id, v.name));
            }
            for (port, vlan) in ports {
                out.push_str(&format!("\ninterface {port}\n  switchport mode access\n"));
                if *vlan != 1 || *all {
                    out.push_str(&format!("  switchport access vlan {vlan}\n"));
                }
                if *all {
                    let name = vlan_name(vlans, *vlan);
                    out.push_str(&format!("  description access {name}\n  no shutdown\n"));
                }
            }
            out
        }
    }
}

/// A JSON-RPC `result` for an output.
fn rpc_result(output: &Output, json: bool) -> Value {
    match (output, json) {
        (Output::Empty, _) | (Output::Saved, true) => Value::Null,
        (output, true) => body(output).map_or(Value::Null, |b| json!({ "body": b })),
        (output, false) => json!({ "msg": text(output) }),
    }
}

/// An ins_api `output` for a command that succeeded.
fn ins_output(cmd: &str, output: &Output, json: bool) -> Value {
    let body = if json {
        body(output).unwrap_or_else(|| json!({}))
    } else {
        json!(text(output))
    };
    json!({"input": cmd, "msg": "Success", "code": "200", "body": body})
}

/// The NX-API responder of one switch.
struct NxapiFace(SwitchSite);

impl Respond for NxapiFace {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(refused) = refuse_route(request, PATH, &self.0.credentials, "nxapi") {
            return refused;
        }
        let parsed = match media_type(request).as_str() {
            JSON_RPC => parse_json_rpc(&request.body),
            INS_API => parse_ins_api(&request.body),
            other => Err(rpc_refusal(
                INVALID_REQUEST,
                "Invalid request",
                &format!("Content-Type {other:?}: use {JSON_RPC} or {INS_API}"),
            )),
        };
        let (lines, format) = match parsed {
            Ok(parsed) => parsed,
            Err(refusal) => return *refusal,
        };
        let mut batch = Batch::default();
        let mut session = self.0.session(false);
        for line in &lines {
            if batch.stopped() {
                break;
            }
            session.execute(&mut batch, &line.cmd, line.json);
        }
        let (call, outputs, kind) = batch.finish();
        render(
            call,
            |_| reply(&lines, &outputs, None, format),
            |e| reply(&lines, &outputs, Some((e, kind)), format),
        )
    }
}

/// The reply to `lines` whose first `outputs.len()` ran, the next one failing with `failure`.
fn reply(
    lines: &[Line],
    outputs: &[Output],
    failure: Option<(&DeviceError, Option<CliFailure>)>,
    format: Format,
) -> ResponseTemplate {
    if let Some((error, _)) = failure {
        match error.class {
            OutcomeClass::Auth => return unauthorized("nxapi"),
            OutcomeClass::Unavailable => {
                return ResponseTemplate::new(503).set_body_string("Service Unavailable")
            }
            _ => {}
        }
    }
    let ran = lines.iter().zip(outputs);
    let failed = failure.and_then(|f| Some((lines.get(outputs.len())?, f)));
    match format {
        Format::JsonRpc => {
            let mut replies: Vec<Value> = ran
                .map(|(line, out)| {
                    json!({"jsonrpc": "2.0", "result": rpc_result(out, line.json), "id": line.id})
                })
                .collect();
            let mut status = 200;
            if let Some((line, (error, kind))) = failed {
                let (code, message) = match (error.class, kind) {
                    (OutcomeClass::Busy, _) => (BUSY, "Server busy"),
                    (OutcomeClass::Unknown, _) => (INTERNAL, "Internal error"),
                    (_, Some(CliFailure::NoJson)) => {
                        (INVALID_PARAMS, "Structured output unsupported")
                    }
                    _ => (INVALID_PARAMS, "Invalid params"),
                };
                replies.push(rpc_error(
                    &line.id,
                    code,
                    message,
                    &format!("{}\n", error.detail),
                ));
                status = 500;
            }
            // NX-OS answers a one-command request with a bare object, array or not.
            let body = match <[Value; 1]>::try_from(replies) {
                Ok([one]) => one,
                Err(many) => Value::Array(many),
            };
            json_template(status, &body, JSON_RPC)
        }
        Format::InsApi(kind) => {
            let mut outputs: Vec<Value> = ran
                .map(|(line, out)| ins_output(&line.cmd, out, line.json))
                .collect();
            let mut status = 200;
            if let Some((line, (error, cli))) = failed {
                let output = match (error.class, cli) {
                    (OutcomeClass::Rejected, Some(CliFailure::NoJson)) => {
                        json!({"input": line.cmd, "msg": "Structured output unsupported", "code": "501"})
                    }
                    (OutcomeClass::Rejected, _) => json!({
                        "input": line.cmd,
                        "clierror": format!("{}\n", error.detail),
                        "msg": "Input CLI command error",
                        "code": "400",
                    }),
                    (OutcomeClass::Busy, _) => {
                        status = 500;
                        json!({"input": line.cmd, "msg": format!("Device busy, retry later: {}", error.detail), "code": "500"})
                    }
                    _ => {
                        status = 500;
                        json!({"input": line.cmd, "msg": format!("Back-end processing error: {}", error.detail), "code": "500"})
                    }
                };
                outputs.push(output);
            }
            json_template(status, &ins_reply(kind.as_str(), outputs), INS_API)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_one_is_accepted_in_every_spelling_the_libraries_send() {
        for ok in [json!(1), json!(1.0), json!("1.0"), json!("1")] {
            assert!(version_is_one(&ok), "{ok}");
        }
        for bad in [json!(2), json!("1.1"), json!(null), json!([1])] {
            assert!(!version_is_one(&bad), "{bad}");
        }
    }
}
