//! The RESTCONF face of a simulated switch: the OpenConfig switched-VLAN config resource and the
//! save RPC over the switch model. One request is one device call. Its bodies are built here,
//! from RFC 8040 and the openconfig-vlan model, not from the client's code: both are held to
//! `fixtures/devices/openconfig-restconf/`. Shared with the client are only the resource paths
//! and media type (where the unconfirmed save RPC is written down).

use std::io;

use serde_json::{json, Value};
use wiremock::matchers::any;
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use super::nxapi::{authorized, media_type, switch_credentials, unauthorized};
use super::{render, WireServer};
use crate::adapters::restconf::{parse_config_path, MEDIA_TYPE, SAVE_RPC_PATH};
use crate::adapters::{DeviceError, OutcomeClass};
use crate::model::{Credentials, SwitchKind};
use crate::sim::{DeviceOp, Reply, SimWorld};

/// Starts the RESTCONF simulator of switch `device` (which must be a `restconf` switch of the
/// world's site) on 127.0.0.1 behind a fault proxy.
pub async fn start(world: SimWorld, device: &str) -> io::Result<WireServer> {
    let credentials = switch_credentials(&world, device, SwitchKind::Restconf)?;
    let face = RestconfFace {
        world,
        device: device.to_string(),
        credentials,
    };
    WireServer::start(vec![Mock::given(any()).respond_with(face)]).await
}

/// An `ietf-restconf:errors` body with one error (RFC 8040 §7.1).
fn errors_body(error_type: &str, tag: &str, message: &str) -> Value {
    json!({"ietf-restconf:errors": {"error": [{
        "error-type": error_type,
        "error-tag": tag,
        "error-message": message,
    }]}})
}

/// The switched-VLAN config container of an access port, as a device returns it: every leaf
/// of the container, including the native VLAN the quarantine never touches.
fn config_reply(vlan: u16) -> Value {
    json!({"openconfig-vlan:config": {
        "interface-mode": "ACCESS",
        "access-vlan": vlan,
        "native-vlan": 1,
    }})
}

/// A reply with an `ietf-restconf:errors` body.
fn error(status: u16, error_type: &str, tag: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(
        errors_body(error_type, tag, message).to_string(),
        MEDIA_TYPE,
    )
}

/// The reply for a failed device call, by class.
fn device_error(e: &DeviceError) -> ResponseTemplate {
    let message = e.detail.as_str();
    match e.class {
        // The switch model's wording for an unknown port (sim::switch): the resource is missing.
        OutcomeClass::Rejected if message.starts_with("no such interface") => {
            error(404, "application", "data-missing", message)
        }
        OutcomeClass::Rejected => error(400, "application", "invalid-value", message),
        OutcomeClass::Busy => error(409, "protocol", "in-use", message),
        OutcomeClass::Unavailable => error(503, "transport", "resource-denied", message),
        OutcomeClass::Auth => unauthorized("restconf").set_body_raw(
            errors_body("protocol", "access-denied", message).to_string(),
            MEDIA_TYPE,
        ),
        OutcomeClass::Unknown => error(500, "application", "operation-failed", message),
    }
}

fn json_template(status: u16, body: &Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.to_string(), MEDIA_TYPE)
}

/// A request refused before it reaches the device: status, error-type, error-tag, message.
struct Refusal(u16, &'static str, &'static str, String);

impl Refusal {
    fn reply(&self) -> ResponseTemplate {
        error(self.0, self.1, self.2, &self.3)
    }
}

fn wrong_media_type() -> Refusal {
    let message = format!("Content-Type must be {MEDIA_TYPE}");
    Refusal(415, "protocol", "invalid-value", message)
}

/// Checks a PATCH body strictly: the one config member, `ACCESS` mode if a mode is given, an
/// access VLAN in 1..=4094, and no leaf this switch does not model.
fn parse_patch(request: &Request) -> Result<u16, Refusal> {
    if media_type(request) != MEDIA_TYPE {
        return Err(wrong_media_type());
    }
    let invalid = |message: String| Refusal(400, "application", "invalid-value", message);
    let value: Value = serde_json::from_slice(&request.body)
        .map_err(|e| Refusal(400, "protocol", "malformed-message", e.to_string()))?;
    let Some(Value::Object(top)) = Some(value) else {
        return Err(invalid("the body must be an object".into()));
    };
    if let Some(other) = top.keys().find(|k| *k != "openconfig-vlan:config") {
        return Err(invalid(format!("unknown member {other}")));
    }
    let Some(Value::Object(config)) = top.get("openconfig-vlan:config") else {
        return Err(invalid("openconfig-vlan:config is required".into()));
    };
    if let Some(other) = config
        .keys()
        .find(|k| !matches!(k.as_str(), "interface-mode" | "access-vlan"))
    {
        return Err(invalid(format!("unknown leaf {other}")));
    }
    match config.get("interface-mode") {
        None => {}
        Some(Value::String(mode)) if mode == "ACCESS" => {}
        Some(mode) => {
            return Err(invalid(format!(
                "interface-mode {mode} is not supported; use ACCESS"
            )))
        }
    }
    let vlan = config
        .get("access-vlan")
        .ok_or_else(|| invalid("access-vlan is required".into()))?;
    vlan.as_u64()
        .and_then(|v| u16::try_from(v).ok())
        .filter(|v| (1..=4094).contains(v))
        .ok_or_else(|| invalid(format!("access-vlan {vlan} is out of range")))
}

/// Checks an RPC body: empty, or a JSON object sent as YANG data.
fn check_rpc_input(request: &Request) -> Result<(), Refusal> {
    if request.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    if media_type(request) != MEDIA_TYPE {
        return Err(wrong_media_type());
    }
    match serde_json::from_slice::<Value>(&request.body) {
        Ok(Value::Object(_)) => Ok(()),
        Ok(_) => {
            let message = "input must be an object".to_string();
            Err(Refusal(400, "application", "invalid-value", message))
        }
        Err(e) => Err(Refusal(400, "protocol", "malformed-message", e.to_string())),
    }
}

/// The RESTCONF responder of one switch.
struct RestconfFace {
    world: SimWorld,
    device: String,
    credentials: Credentials,
}

impl RestconfFace {
    fn get(&self, port: String) -> ResponseTemplate {
        let call = self
            .world
            .call_now(&self.device, DeviceOp::GetPort { port });
        render(
            call,
            |reply| match reply {
                Reply::Vlan(vlan) => json_template(200, &config_reply(vlan)),
                other => error(
                    500,
                    "application",
                    "operation-failed",
                    &format!("simulator bug: reply {other:?}"),
                ),
            },
            device_error,
        )
    }

    fn patch(&self, request: &Request, port: String) -> ResponseTemplate {
        let vlan = match parse_patch(request) {
            Ok(vlan) => vlan,
            Err(refusal) => return refusal.reply(),
        };
        let call = self
            .world
            .call_now(&self.device, DeviceOp::SetPort { port, vlan });
        render(call, |_| ResponseTemplate::new(204), device_error)
    }

    fn save(&self, request: &Request) -> ResponseTemplate {
        if let Err(refusal) = check_rpc_input(request) {
            return refusal.reply();
        }
        let call = self.world.call_now(&self.device, DeviceOp::SaveConfig);
        let output = json!({"cisco-ia:output": {"result": "Save running config successful"}});
        render(call, |_| json_template(200, &output), device_error)
    }
}

impl Respond for RestconfFace {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let path = request.url.path();
        if !path.starts_with("/restconf/") {
            return ResponseTemplate::new(404).set_body_string("Not Found");
        }
        if !authorized(request, &self.credentials) {
            let body = errors_body("protocol", "access-denied", "authentication failed");
            return unauthorized("restconf").set_body_raw(body.to_string(), MEDIA_TYPE);
        }
        let method = request.method.as_str();
        let not_supported = || {
            let message = format!("{method} is not supported on {path}");
            error(405, "protocol", "operation-not-supported", &message)
        };
        if let Some(port) = parse_config_path(path) {
            let Some(port) = port else {
                return error(400, "protocol", "invalid-value", "badly encoded list key");
            };
            return match method {
                "GET" => self.get(port),
                "PATCH" => self.patch(request, port),
                _ => not_supported(),
            };
        }
        if path == SAVE_RPC_PATH {
            return match method {
                "POST" => self.save(request),
                _ => not_supported(),
            };
        }
        error(
            404,
            "protocol",
            "invalid-value",
            &format!("no resource {path}"),
        )
    }
}
