//! The Redfish protocol simulator (Fujitsu iRMC and other BMCs): sessions and
//! `ComputerSystem.Reset`, served over the world's BMC model so wire mode fails like sim mode.
//!
//! - `GET /redfish/v1` → the service root (no session needed, as the standard says).
//! - `POST /redfish/v1/SessionService/Sessions` `{"UserName","Password"}` → 201 with
//!   `X-Auth-Token` and `Location`; `DELETE` on that location ends the session.
//! - `POST /redfish/v1/Systems/{id}/Actions/ComputerSystem.Reset` `{"ResetType":"ForceRestart"}`
//!   → 204. Needs a session of this server (or Basic auth). Only `ForceRestart` is simulated.
//!
//! Creating a session is not a device call: the BMC model has no session (each request is
//! authenticated), so an `auth_expired` fault refuses just the reset it hits, and the reply
//! ends the session that sent it.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::Mutex;

use serde_json::{json, Value};
use wiremock::matchers::any;
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use super::vcenter::{basic_credentials, segments};
use super::{accepted_credentials, render, WireServer};
use crate::adapters::{DeviceError, OutcomeClass};
use crate::model::Credentials;
use crate::sim::recorder::lock;
use crate::sim::{DeviceOp, Reply, SimWorld};

/// The system id every simulated BMC serves (the engine config's default).
pub const DEFAULT_SYSTEM_ID: &str = "1";

/// Header that carries the session token.
const TOKEN_HEADER: &str = "X-Auth-Token";

/// Starts the Redfish simulator for BMC `device` of the world's site on 127.0.0.1, serving
/// system [`DEFAULT_SYSTEM_ID`] and accepting the topology's credentials (else `qlab`/`qlab`).
pub async fn start(world: SimWorld, device: &str) -> io::Result<WireServer> {
    start_with_system_id(world, device, DEFAULT_SYSTEM_ID).await
}

/// Like [`start`], also serving system `system_id` (an engine config's `system_id`).
pub async fn start_with_system_id(
    world: SimWorld,
    device: &str,
    system_id: &str,
) -> io::Result<WireServer> {
    let spec = world
        .site()
        .topology
        .bmcs
        .iter()
        .find(|b| b.name == device)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{device} is not a BMC of the topology"),
            )
        })?;
    let systems = [DEFAULT_SYSTEM_ID, system_id]
        .into_iter()
        .map(str::to_string)
        .collect();
    let face = RedfishFace {
        credentials: accepted_credentials(spec.credentials.as_ref()),
        world,
        device: device.to_string(),
        systems,
        sessions: Mutex::new(Sessions::default()),
    };
    WireServer::start(vec![Mock::given(any()).respond_with(face)]).await
}

/// Sessions this server created and has not ended: session id -> token. The id is in the
/// session's URL; the token only ever travels in headers.
#[derive(Default)]
struct Sessions {
    next: u64,
    valid: BTreeMap<String, String>,
}

impl Sessions {
    fn has_token(&self, token: &str) -> bool {
        self.valid.values().any(|t| t == token)
    }

    fn end_token(&mut self, token: &str) {
        self.valid.retain(|_, t| t != token);
    }
}

/// The request handler: one per server.
struct RedfishFace {
    world: SimWorld,
    device: String,
    credentials: Credentials,
    systems: BTreeSet<String>,
    sessions: Mutex<Sessions>,
}

/// A Redfish error reply: the generic `code` the reference shows, with the specific Base
/// registry message in `@Message.ExtendedInfo` (how iRMC and most BMCs report it).
fn error_reply(status: u16, message_key: &str, message: &str) -> ResponseTemplate {
    let id = format!("Base.1.8.{message_key}");
    ResponseTemplate::new(status).set_body_json(json!({
        "error": {
            "code": "Base.1.0.GeneralError",
            "message": message,
            "@Message.ExtendedInfo": [{
                "@odata.type": "#Message.v1_1_1.Message",
                "MessageId": id,
                "Message": message,
                "Severity": "Critical",
            }],
        },
    }))
}

/// The Redfish reply for a device error of the model, in one table: `busy` is a 409
/// `ResourceInUse`, `unavailable` a 503 `ServiceTemporarilyUnavailable` with `Retry-After`,
/// `auth` a 401 `NoValidSession`, a hang that ends before the client gives up a 500
/// `InternalError` (the client treats it as `unknown`), and `rejected` a 400 `GeneralError`.
fn device_error(error: &DeviceError) -> ResponseTemplate {
    let detail = error.detail.as_str();
    match error.class {
        OutcomeClass::Rejected => error_reply(400, "GeneralError", detail),
        OutcomeClass::Busy => error_reply(409, "ResourceInUse", detail),
        OutcomeClass::Unavailable => error_reply(503, "ServiceTemporarilyUnavailable", detail)
            .insert_header("Retry-After", "1"),
        OutcomeClass::Auth => error_reply(401, "NoValidSession", detail),
        OutcomeClass::Unknown => error_reply(500, "InternalError", detail),
    }
}

fn no_session() -> ResponseTemplate {
    error_reply(
        401,
        "NoValidSession",
        "There is no valid session established with the implementation.",
    )
}

fn not_found() -> ResponseTemplate {
    error_reply(
        404,
        "ResourceNotFound",
        "The requested resource was not found.",
    )
}

impl Respond for RedfishFace {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let path = segments(request);
        match (request.method.as_str(), path.as_slice()) {
            ("GET", ["redfish", "v1"]) => service_root(),
            ("POST", ["redfish", "v1", "SessionService", "Sessions"]) => {
                self.create_session(request)
            }
            ("DELETE", ["redfish", "v1", "SessionService", "Sessions", id]) => {
                self.delete_session(request, id)
            }
            ("POST", ["redfish", "v1", "Systems", system, "Actions", "ComputerSystem.Reset"]) => {
                self.reset(request, system)
            }
            _ => not_found(),
        }
    }
}

fn service_root() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "@odata.id": "/redfish/v1",
        "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
        "Id": "RootService",
        "Name": "Root Service",
        "RedfishVersion": "1.8.0",
        "Systems": {"@odata.id": "/redfish/v1/Systems"},
        "SessionService": {"@odata.id": "/redfish/v1/SessionService"},
        "Links": {"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}},
    }))
}

impl RedfishFace {
    /// How the request authenticates: `Some(Some(token))` with a session of this server,
    /// `Some(None)` with right Basic credentials, `None` when it does not.
    fn authenticate(&self, request: &Request) -> Option<Option<String>> {
        if let Some(token) = request
            .headers
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            let valid = lock(&self.sessions).has_token(token);
            return valid.then(|| Some(token.to_string()));
        }
        let (user, password) = basic_credentials(request)?;
        (user == self.credentials.user && password == self.credentials.password).then_some(None)
    }

    fn create_session(&self, request: &Request) -> ResponseTemplate {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return error_reply(400, "MalformedJSON", "The request body is not valid JSON.");
        };
        let user = body.get("UserName").and_then(Value::as_str);
        let password = body.get("Password").and_then(Value::as_str);
        let (Some(user), Some(password)) = (user, password) else {
            return error_reply(
                400,
                "PropertyMissing",
                "UserName and Password are required.",
            );
        };
        if user != self.credentials.user || password != self.credentials.password {
            return error_reply(401, "NoValidSession", "Invalid user name or password.");
        }
        let (id, token) = {
            let mut sessions = lock(&self.sessions);
            sessions.next = sessions.next.saturating_add(1);
            let id = sessions.next.to_string();
            // Deterministic, and naming the device so a token of another simulator in the same
            // process is not valid here.
            let token = format!("{}-session-{id}", self.device);
            sessions.valid.insert(id.clone(), token.clone());
            (id, token)
        };
        let location = format!("/redfish/v1/SessionService/Sessions/{id}");
        ResponseTemplate::new(201)
            .insert_header(TOKEN_HEADER, token.as_str())
            .insert_header("Location", location.as_str())
            .set_body_json(json!({
                "@odata.id": location,
                "@odata.type": "#Session.v1_1_0.Session",
                "Id": id,
                "Name": "User Session",
                "UserName": user,
            }))
    }

    fn delete_session(&self, request: &Request, id: &str) -> ResponseTemplate {
        if self.authenticate(request).is_none() {
            return no_session();
        }
        if lock(&self.sessions).valid.remove(id).is_some() {
            ResponseTemplate::new(204)
        } else {
            not_found()
        }
    }

    /// `ComputerSystem.Reset`: authentication, system id and body are checked here, so only a
    /// well-formed `ForceRestart` becomes a `reset` device call.
    fn reset(&self, request: &Request, system: &str) -> ResponseTemplate {
        let Some(token) = self.authenticate(request) else {
            return no_session();
        };
        if !self.systems.contains(system) {
            return not_found();
        }
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return error_reply(400, "MalformedJSON", "The request body is not valid JSON.");
        };
        match body.get("ResetType").and_then(Value::as_str) {
            Some("ForceRestart") => {}
            Some(other) => {
                return error_reply(
                    400,
                    "ActionParameterNotSupported",
                    &format!("ResetType {other} is not simulated; use ForceRestart."),
                )
            }
            None => {
                return error_reply(
                    400,
                    "ActionParameterMissing",
                    "The action requires the parameter ResetType.",
                )
            }
        }
        let call = self.world.call_now(&self.device, DeviceOp::Reset);
        render(
            call,
            |reply| match reply {
                Reply::Done => ResponseTemplate::new(204),
                other => error_reply(
                    500,
                    "InternalError",
                    &format!("simulator bug: unexpected reply {other:?}"),
                ),
            },
            |e| {
                // An `auth` answer ends the session that sent the request.
                if let (OutcomeClass::Auth, Some(token)) = (e.class, &token) {
                    lock(&self.sessions).end_token(token);
                }
                device_error(e)
            },
        )
    }
}
