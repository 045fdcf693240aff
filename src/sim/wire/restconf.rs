//! The RESTCONF face of a simulated switch: the OpenConfig switched-VLAN config resource and the
//! save RPC over the switch model, in the shapes of [`crate::adapters::restconf`] (where the
//! unconfirmed choices are written down). One request is one device call.

use std::io;

use serde_json::{json, Value};
use wiremock::matchers::any;
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use super::nxapi::{authorized, media_type, switch_credentials, unauthorized};
use super::{render, WireServer};
use crate::adapters::restconf::{
    config_body, errors_body, parse_config_path, VlanConfigDoc, ACCESS_MODE, MEDIA_TYPE,
    SAVE_RPC_PATH,
};
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

/// Checks a PATCH body strictly: the one config member, `ACCESS` mode, an access VLAN.
fn parse_patch(request: &Request) -> Result<u16, Refusal> {
    if media_type(request) != MEDIA_TYPE {
        return Err(wrong_media_type());
    }
    let value: Value = serde_json::from_slice(&request.body)
        .map_err(|e| Refusal(400, "protocol", "malformed-message", e.to_string()))?;
    let doc: VlanConfigDoc = serde_json::from_value(value)
        .map_err(|e| Refusal(400, "application", "invalid-value", e.to_string()))?;
    if let Some(mode) = doc.config.interface_mode.as_deref() {
        if mode != ACCESS_MODE {
            let message = format!("interface-mode {mode} is not supported; use {ACCESS_MODE}");
            return Err(Refusal(400, "application", "invalid-value", message));
        }
    }
    doc.config.access_vlan.ok_or_else(|| {
        let message = "access-vlan is required".to_string();
        Refusal(400, "application", "invalid-value", message)
    })
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
                Reply::Vlan(vlan) => json_template(200, &json!(config_body(vlan))),
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
