//! The Redfish protocol simulator (Fujitsu iRMC and other BMCs), served over the world's BMC
//! model so wire mode fails like sim mode. Its shapes follow DMTF DSP0266 (protocol) and
//! DSP0268 / the DMTF public mockups (resources); `fixtures/devices/redfish/` holds the
//! published samples the tests compare it with.
//!
//! Resources (paths may end with `/`):
//! - `GET /redfish` → `{"v1": "/redfish/v1/"}`; `GET /redfish/v1` → the service root;
//!   `GET /redfish/v1/$metadata` → CSDL referencing the DMTF schema files used here;
//!   `GET /redfish/v1/odata` → the OData service document. These four need no credentials.
//! - `GET /redfish/v1/Systems` → a collection of one system; `GET /redfish/v1/Systems/{id}` →
//!   the `ComputerSystem` with `PowerState` and `Actions/#ComputerSystem.Reset` (its `target`
//!   and `ResetType@Redfish.AllowableValues`).
//! - `POST {target}` `{"ResetType":"ForceRestart"}` → 204: the one device call (`reset`).
//! - `GET /redfish/v1/SessionService`; `GET`/`POST /redfish/v1/SessionService/Sessions`
//!   (`POST` needs no credentials: it is the login; 201 with `X-Auth-Token` and `Location`);
//!   `GET`/`DELETE /redfish/v1/SessionService/Sessions/{id}`.
//!
//! Protocol behaviour: every reply carries `OData-Version: 4.0` and `Cache-Control: no-cache`;
//! resource replies carry `Allow`, `Link: <schema>; rel=describedby` and `ETag` (a weak tag over
//! the body), answer `If-None-Match` with 304 and `HEAD` like `GET` without a body; a method a
//! known resource does not allow is a 405 with `Allow`; requests authenticate with an
//! `X-Auth-Token` of this server or HTTP Basic (a 401 names `Basic` in `WWW-Authenticate`);
//! error bodies are `{"error":{"code","message","@Message.ExtendedInfo":[...]}}` with Base
//! registry messages.
//!
//! Decisions where the standard leaves a choice:
//! - Only `ForceRestart` is allowed (the engine's one reset, R13); another `ResetType` is a 400
//!   `ActionParameterValueNotInList`. A force restart leaves the server `On`, so `PowerState`
//!   is always `On` (the model has no other power state).
//! - `If-Match` is honoured on the reset action (against the system's ETag) and on a session's
//!   `DELETE`: a mismatch is a 412 `PreconditionFailed` and changes nothing. No resource here
//!   is writable (`PATCH`/`PUT` are 405), so there is no other place it is due.
//! - Query parameters the service would have to act on (`$…`, `only`, `excerpt`) are a 501
//!   `QueryNotSupported`; `ProtocolFeaturesSupported` says none is supported.
//! - Sessions do not expire on idle (the `auth_expired` fault plays expiry); at most
//!   [`MAX_SESSIONS`] live at once, a new login ending the oldest.
//! - Creating, reading or ending a session and every `GET` are not device calls: the BMC model
//!   only knows resets, so faults act on the reset they hit, and an `auth` answer there ends
//!   the session that sent it.

use std::collections::BTreeMap;
use std::io;
use std::sync::Mutex;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wiremock::matchers::any;
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use super::vcenter::{basic_credentials, segments};
use super::{accepted_credentials, render, WireServer};
use crate::adapters::{DeviceError, OutcomeClass};
use crate::model::Credentials;
use crate::sim::recorder::lock;
use crate::sim::{DeviceOp, Reply, SimWorld};

/// The system id a simulated BMC serves unless told otherwise.
pub const DEFAULT_SYSTEM_ID: &str = "1";

/// Most sessions alive at once on one simulator; a login beyond it ends the oldest.
pub const MAX_SESSIONS: usize = 64;

/// Header that carries the session token.
const TOKEN_HEADER: &str = "X-Auth-Token";

/// The Base message registry version the error bodies cite.
const BASE_REGISTRY: &str = "Base.1.16";

/// The one reset the simulated BMC performs.
const FORCE_RESTART: &str = "ForceRestart";

/// Versioned resource types served, with the DMTF CSDL file each comes from. `$metadata`
/// references exactly these files (and `RedfishExtensions_v1.xml` for annotations).
const SERVICE_ROOT: &str = "ServiceRoot.v1_20_0";
const COMPUTER_SYSTEM: &str = "ComputerSystem.v1_27_0";
const SESSION_SERVICE: &str = "SessionService.v1_2_0";
const SESSION: &str = "Session.v1_8_0";
/// `(file, namespaces it brings)` for `$metadata`.
const SCHEMA_FILES: &[(&str, &[&str])] = &[
    ("ServiceRoot_v1.xml", &["ServiceRoot", SERVICE_ROOT]),
    (
        "ComputerSystemCollection_v1.xml",
        &["ComputerSystemCollection"],
    ),
    (
        "ComputerSystem_v1.xml",
        &["ComputerSystem", COMPUTER_SYSTEM],
    ),
    (
        "SessionService_v1.xml",
        &["SessionService", SESSION_SERVICE],
    ),
    ("SessionCollection_v1.xml", &["SessionCollection"]),
    ("Session_v1.xml", &["Session", SESSION]),
    ("Resource_v1.xml", &["Resource", "Resource.v1_0_0"]),
];

/// Starts the Redfish simulator for BMC `device` of the world's site on 127.0.0.1, serving
/// system [`DEFAULT_SYSTEM_ID`] and accepting the topology's credentials (else `qlab`/`qlab`).
pub async fn start(world: SimWorld, device: &str) -> io::Result<WireServer> {
    start_with_system_id(world, device, DEFAULT_SYSTEM_ID).await
}

/// Like [`start`], serving system `system_id` instead (as a BMC whose system is not `1`).
pub async fn start_with_system_id(
    world: SimWorld,
    device: &str,
    system_id: &str,
) -> io::Result<WireServer> {
    let bmcs = &world.site().topology.bmcs;
    let spec = super::find_device(bmcs, |b| b.name == device, device, "a BMC of the topology")?;
    if system_id.is_empty() || system_id.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("system id {system_id:?} must be one non-empty path segment"),
        ));
    }
    let face = RedfishFace {
        credentials: accepted_credentials(spec.credentials.as_ref()),
        world,
        device: device.to_string(),
        system_id: system_id.to_string(),
        sessions: Mutex::new(Sessions::default()),
    };
    WireServer::start(vec![Mock::given(any()).respond_with(face)]).await
}

/// One live session.
struct Session {
    token: String,
    user: String,
}

/// Sessions this server created and has not ended, by session id (ids only grow, so the
/// first entry is the oldest). The id is in the session's URL; the token only ever travels
/// in headers.
#[derive(Default)]
struct Sessions {
    next: u64,
    live: BTreeMap<u64, Session>,
}

impl Sessions {
    fn id_of_token(&self, token: &str) -> Option<u64> {
        self.live
            .iter()
            .find(|(_, s)| s.token == token)
            .map(|(id, _)| *id)
    }
}

/// Who sent a request.
enum Caller {
    /// A session of this server (its token).
    Session(String),
    /// Right HTTP Basic credentials.
    Basic,
}

/// The resources this service knows, from a request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource<'a> {
    Redfish,
    Root,
    Metadata,
    OData,
    Systems,
    System,
    Reset,
    SessionService,
    Sessions,
    /// `Sessions/Members`: a `POST` there is a `POST` to the collection (DSP0266).
    SessionsMembers,
    Session(&'a str),
}

impl Resource<'_> {
    /// The methods the resource allows (the `Allow` header).
    fn allow(self) -> &'static str {
        match self {
            Resource::Reset => "POST",
            Resource::Sessions => "GET, HEAD, POST",
            Resource::SessionsMembers => "POST",
            Resource::Session(_) => "GET, HEAD, DELETE",
            _ => "GET, HEAD",
        }
    }

    /// Whether the resource is readable without credentials (DSP0266: the service root,
    /// `/redfish`, `$metadata` and the OData service document).
    fn open(self) -> bool {
        matches!(
            self,
            Resource::Redfish | Resource::Root | Resource::Metadata | Resource::OData
        )
    }
}

/// The request handler: one per server.
struct RedfishFace {
    world: SimWorld,
    device: String,
    credentials: Credentials,
    system_id: String,
    sessions: Mutex<Sessions>,
}

/// A JSON reply.
fn json_reply(status: u16, body: &Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(
        serde_json::to_vec(body).unwrap_or_default(),
        "application/json;charset=utf-8",
    )
}

/// A Redfish error reply: `code` and `message` from the Base registry message `key`, the same
/// message in `@Message.ExtendedInfo` (DSP0266 "Error responses").
fn error_reply(status: u16, key: &str, message: &str, resolution: &str) -> ResponseTemplate {
    let id = format!("{BASE_REGISTRY}.{key}");
    json_reply(
        status,
        &json!({
            "error": {
                "code": id,
                "message": message,
                "@Message.ExtendedInfo": [{
                    "@odata.type": "#Message.v1_1_1.Message",
                    "MessageId": id,
                    "Message": message,
                    "MessageArgs": [],
                    "Severity": "Critical",
                    "Resolution": resolution,
                }],
            },
        }),
    )
}

/// The Redfish reply for a device error of the model, in one table: `busy` is a 409
/// `ResourceInUse`, `unavailable` a 503 `ServiceTemporarilyUnavailable` with `Retry-After`,
/// `auth` a 401 `NoValidSession`, a hang that ends before the client gives up a 500
/// `InternalError`, and `rejected` a 400 `GeneralError`.
fn device_error(error: &DeviceError) -> ResponseTemplate {
    let detail = error.detail.as_str();
    let retry = "Retry the request.";
    match error.class {
        OutcomeClass::Rejected => error_reply(400, "GeneralError", detail, "None."),
        OutcomeClass::Busy => error_reply(409, "ResourceInUse", detail, retry),
        OutcomeClass::Unavailable => {
            error_reply(503, "ServiceTemporarilyUnavailable", detail, retry)
                .insert_header("Retry-After", "1")
        }
        OutcomeClass::Auth => unauthorized(detail),
        OutcomeClass::Unknown => error_reply(500, "InternalError", detail, retry),
    }
}

fn unauthorized(message: &str) -> ResponseTemplate {
    error_reply(
        401,
        "NoValidSession",
        message,
        "Establish a session before sending the request, or send valid Basic credentials.",
    )
    .insert_header("WWW-Authenticate", "Basic realm=\"Redfish\"")
}

fn no_session() -> ResponseTemplate {
    unauthorized("There is no valid session established with the implementation.")
}

fn not_found(path: &str) -> ResponseTemplate {
    error_reply(
        404,
        "ResourceNotFound",
        &format!("The requested resource at {path} was not found."),
        "Provide a valid resource identifier and resubmit the request.",
    )
}

fn malformed_json() -> ResponseTemplate {
    error_reply(
        400,
        "MalformedJSON",
        "The request body submitted was malformed JSON and could not be parsed by the receiving service.",
        "Ensure that the request body is valid JSON and resubmit the request.",
    )
}

/// A weak entity tag over a resource's body.
fn etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("W/\"{hex}\"")
}

/// Whether a precondition header (`If-Match` / `If-None-Match`) names `tag` or `*`.
fn names_tag(header: &str, tag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == tag || t.trim_start_matches("W/") == tag.trim_start_matches("W/"))
}

fn header<'r>(request: &'r Request, name: &str) -> Option<&'r str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The path without a trailing slash, for messages.
fn shown_path(request: &Request) -> String {
    let p = request.url.path();
    p.strip_suffix('/').unwrap_or(p).to_string()
}

/// Query parameters the service would have to act on but does not support.
fn unsupported_query(request: &Request) -> Option<String> {
    request.url.query_pairs().map(|(k, _)| k).find_map(|k| {
        (k.starts_with('$') || k == "only" || k == "excerpt" || k == "includeoriginresource")
            .then(|| k.into_owned())
    })
}

impl Respond for RedfishFace {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.answer(request)
            .insert_header("OData-Version", "4.0")
            .insert_header("Cache-Control", "no-cache")
    }
}

impl RedfishFace {
    fn route<'p>(&self, path: &[&'p str]) -> Option<Resource<'p>> {
        let system = self.system_id.as_str();
        Some(match path {
            ["redfish"] => Resource::Redfish,
            ["redfish", "v1"] => Resource::Root,
            ["redfish", "v1", "$metadata"] => Resource::Metadata,
            ["redfish", "v1", "odata"] => Resource::OData,
            ["redfish", "v1", "Systems"] => Resource::Systems,
            ["redfish", "v1", "Systems", id] if *id == system => Resource::System,
            ["redfish", "v1", "Systems", id, "Actions", "ComputerSystem.Reset"]
                if *id == system =>
            {
                Resource::Reset
            }
            ["redfish", "v1", "SessionService"] => Resource::SessionService,
            ["redfish", "v1", "SessionService", "Sessions"] => Resource::Sessions,
            ["redfish", "v1", "SessionService", "Sessions", "Members"] => Resource::SessionsMembers,
            ["redfish", "v1", "SessionService", "Sessions", id] => Resource::Session(id),
            _ => return None,
        })
    }

    fn answer(&self, request: &Request) -> ResponseTemplate {
        let path = segments(request);
        let Some(resource) = self.route(&path) else {
            return not_found(&shown_path(request));
        };
        let method = request.method.as_str();
        if header(request, "OData-Version").is_some_and(|v| v.trim() != "4.0") {
            return error_reply(
                412,
                "HeaderInvalid",
                "OData-Version must be 4.0, the only version this service implements.",
                "Send OData-Version: 4.0 or no OData-Version header.",
            );
        }
        let login =
            matches!(resource, Resource::Sessions | Resource::SessionsMembers) && method == "POST";
        let caller = if resource.open() || login {
            None
        } else {
            match self.authenticate(request) {
                Some(caller) => Some(caller),
                None => return no_session(),
            }
        };
        if !resource.allow().split(", ").any(|m| m == method) {
            return error_reply(
                405,
                "OperationNotAllowed",
                &format!(
                    "The {method} method is not allowed on {}.",
                    shown_path(request)
                ),
                "Use a method the Allow header lists.",
            )
            .insert_header("Allow", resource.allow());
        }
        if let Some(param) = unsupported_query(request) {
            return error_reply(
                501,
                "QueryNotSupported",
                &format!("Querying with {param} is not supported by the implementation."),
                "Remove the query parameter and resubmit the request.",
            );
        }
        match (method, resource) {
            ("POST", Resource::Sessions | Resource::SessionsMembers) => {
                self.create_session(request)
            }
            ("DELETE", Resource::Session(id)) => self.delete_session(request, id),
            ("POST", Resource::Reset) => self.reset(request, caller),
            (_, Resource::Metadata) => {
                let reply = ResponseTemplate::new(200).insert_header("Allow", resource.allow());
                if method == "HEAD" {
                    reply.insert_header("Content-Type", "application/xml;charset=utf-8")
                } else {
                    reply.set_body_raw(metadata().into_bytes(), "application/xml;charset=utf-8")
                }
            }
            (_, resource) => match self.read(resource) {
                Some((body, schema)) => self.resource_reply(request, resource, &body, schema),
                None => not_found(&shown_path(request)),
            },
        }
    }

    /// A `GET`/`HEAD` reply for `body` described by JSON schema `schema`.
    fn resource_reply(
        &self,
        request: &Request,
        resource: Resource<'_>,
        body: &Value,
        schema: Option<&str>,
    ) -> ResponseTemplate {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let tag = etag(&bytes);
        let mut reply = if header(request, "If-None-Match").is_some_and(|h| names_tag(h, &tag)) {
            ResponseTemplate::new(304)
        } else if request.method.as_str() == "HEAD" {
            ResponseTemplate::new(200)
                .insert_header("Content-Type", "application/json;charset=utf-8")
        } else {
            ResponseTemplate::new(200).set_body_raw(bytes, "application/json;charset=utf-8")
        };
        reply = reply
            .insert_header("ETag", tag.as_str())
            .insert_header("Allow", resource.allow());
        if let Some(schema) = schema {
            let link =
                format!("<http://redfish.dmtf.org/schemas/v1/{schema}.json>; rel=describedby");
            reply = reply.insert_header("Link", link.as_str());
        }
        reply
    }

    /// The body of a readable resource and its JSON schema name (None: the resource is gone).
    fn read(&self, resource: Resource<'_>) -> Option<(Value, Option<&'static str>)> {
        let system_uri = format!("/redfish/v1/Systems/{}", self.system_id);
        Some(match resource {
            Resource::Redfish => (json!({"v1": "/redfish/v1/"}), None),
            Resource::Root => (self.service_root(), Some(SERVICE_ROOT)),
            Resource::OData => (odata_document(), None),
            Resource::Systems => (
                json!({
                    "@odata.id": "/redfish/v1/Systems",
                    "@odata.type": "#ComputerSystemCollection.ComputerSystemCollection",
                    "Name": "Computer System Collection",
                    "Members@odata.count": 1,
                    "Members": [{"@odata.id": system_uri}],
                }),
                Some("ComputerSystemCollection"),
            ),
            Resource::System => (self.system(&system_uri), Some(COMPUTER_SYSTEM)),
            Resource::SessionService => (
                json!({
                    "@odata.id": "/redfish/v1/SessionService",
                    "@odata.type": format!("#{SESSION_SERVICE}.SessionService"),
                    "Id": "SessionService",
                    "Name": "Session Service",
                    "Description": "Session Service",
                    "Status": {"State": "Enabled", "Health": "OK"},
                    "ServiceEnabled": true,
                    "SessionTimeout": 86400,
                    "Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"},
                }),
                Some(SESSION_SERVICE),
            ),
            Resource::Sessions => {
                let members: Vec<Value> = lock(&self.sessions)
                    .live
                    .keys()
                    .map(|id| json!({"@odata.id": session_uri(*id)}))
                    .collect();
                (
                    json!({
                        "@odata.id": "/redfish/v1/SessionService/Sessions",
                        "@odata.type": "#SessionCollection.SessionCollection",
                        "Name": "Session Collection",
                        "Members@odata.count": members.len(),
                        "Members": members,
                    }),
                    Some("SessionCollection"),
                )
            }
            Resource::Session(id) => {
                let id: u64 = id.parse().ok()?;
                let sessions = lock(&self.sessions);
                let session = sessions.live.get(&id)?;
                (session_body(id, &session.user), Some(SESSION))
            }
            Resource::Metadata | Resource::Reset | Resource::SessionsMembers => return None,
        })
    }

    fn service_root(&self) -> Value {
        json!({
            "@odata.id": "/redfish/v1/",
            "@odata.type": format!("#{SERVICE_ROOT}.ServiceRoot"),
            "Id": "RootService",
            "Name": "Root Service",
            "RedfishVersion": "1.15.0",
            "UUID": uuid_of(&self.device),
            "Product": "quarantine-lab simulated BMC",
            "ProtocolFeaturesSupported": {
                "ExcerptQuery": false,
                "FilterQuery": false,
                "OnlyMemberQuery": false,
                "SelectQuery": false,
                "ExpandQuery": {"ExpandAll": false, "Levels": false, "Links": false, "NoLinks": false},
            },
            "Systems": {"@odata.id": "/redfish/v1/Systems"},
            "SessionService": {"@odata.id": "/redfish/v1/SessionService"},
            "Links": {"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}},
        })
    }

    fn system(&self, uri: &str) -> Value {
        json!({
            "@odata.id": uri,
            "@odata.type": format!("#{COMPUTER_SYSTEM}.ComputerSystem"),
            "Id": self.system_id,
            "Name": self.device,
            "SystemType": "Physical",
            "Status": {"State": "Enabled", "Health": "OK"},
            // A force restart leaves the server on (see the module doc).
            "PowerState": "On",
            "Actions": {
                "#ComputerSystem.Reset": {
                    "target": format!("{uri}/Actions/ComputerSystem.Reset"),
                    "ResetType@Redfish.AllowableValues": [FORCE_RESTART],
                },
            },
        })
    }

    /// Who sent the request, if anyone this server accepts. A token header that is not a live
    /// session fails even with Basic credentials beside it.
    fn authenticate(&self, request: &Request) -> Option<Caller> {
        if let Some(token) = header(request, TOKEN_HEADER) {
            let live = lock(&self.sessions).id_of_token(token).is_some();
            return live.then(|| Caller::Session(token.to_string()));
        }
        let (user, password) = basic_credentials(request)?;
        (user == self.credentials.user && password == self.credentials.password)
            .then_some(Caller::Basic)
    }

    fn create_session(&self, request: &Request) -> ResponseTemplate {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return malformed_json();
        };
        let user = body.get("UserName").and_then(Value::as_str);
        let password = body.get("Password").and_then(Value::as_str);
        let (Some(user), Some(password)) = (user, password) else {
            return error_reply(
                400,
                "CreateFailedMissingReqProperties",
                "The create operation failed because the required properties UserName and Password were missing from the request.",
                "Correct the body to include the required properties with a valid value and resubmit the request.",
            );
        };
        if user != self.credentials.user || password != self.credentials.password {
            return unauthorized("Invalid user name or password.");
        }
        let (id, token) = {
            let mut sessions = lock(&self.sessions);
            sessions.next = sessions.next.saturating_add(1);
            let id = sessions.next;
            while sessions.live.len() >= MAX_SESSIONS {
                sessions.live.pop_first();
            }
            // Deterministic, and naming the device so a token of another simulator in the same
            // process is not valid here.
            let token = format!("{}-session-{id}", self.device);
            sessions.live.insert(
                id,
                Session {
                    token: token.clone(),
                    user: user.to_string(),
                },
            );
            (id, token)
        };
        let location = session_uri(id);
        json_reply(201, &session_body(id, user))
            .insert_header(TOKEN_HEADER, token.as_str())
            .insert_header("Location", location.as_str())
    }

    fn delete_session(&self, request: &Request, id: &str) -> ResponseTemplate {
        let Some(id) = id.parse::<u64>().ok() else {
            return not_found(&shown_path(request));
        };
        let mut sessions = lock(&self.sessions);
        let Some(session) = sessions.live.get(&id) else {
            return not_found(&shown_path(request));
        };
        if let Some(expected) = header(request, "If-Match") {
            let body = serde_json::to_vec(&session_body(id, &session.user)).unwrap_or_default();
            if !names_tag(expected, &etag(&body)) {
                return precondition_failed();
            }
        }
        sessions.live.remove(&id);
        ResponseTemplate::new(204)
    }

    /// `ComputerSystem.Reset`: the precondition and body are checked here, so only a
    /// well-formed `ForceRestart` becomes a `reset` device call.
    fn reset(&self, request: &Request, caller: Option<Caller>) -> ResponseTemplate {
        if let Some(expected) = header(request, "If-Match") {
            let uri = format!("/redfish/v1/Systems/{}", self.system_id);
            let body = serde_json::to_vec(&self.system(&uri)).unwrap_or_default();
            if !names_tag(expected, &etag(&body)) {
                return precondition_failed();
            }
        }
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return malformed_json();
        };
        match body.get("ResetType") {
            Some(Value::String(t)) if t == FORCE_RESTART => {}
            Some(other) => {
                let shown = other.to_string();
                return error_reply(
                    400,
                    "ActionParameterValueNotInList",
                    &format!("The value {shown} for the parameter ResetType in the action ComputerSystem.Reset is not in the list of acceptable values."),
                    "Choose a value from the enumeration list that the implementation can support and resubmit the request.",
                );
            }
            None => {
                return error_reply(
                    400,
                    "ActionParameterMissing",
                    "The action ComputerSystem.Reset requires the parameter ResetType to be present in the request body.",
                    "Supply the action with the required parameter in the request body.",
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
                    "None.",
                ),
            },
            |e| {
                // An `auth` answer ends the session that sent the request.
                if let (OutcomeClass::Auth, Some(Caller::Session(token))) = (e.class, &caller) {
                    let mut sessions = lock(&self.sessions);
                    if let Some(id) = sessions.id_of_token(token) {
                        sessions.live.remove(&id);
                    }
                }
                device_error(e)
            },
        )
    }
}

fn precondition_failed() -> ResponseTemplate {
    error_reply(
        412,
        "PreconditionFailed",
        "The ETag supplied did not match the ETag required to change this resource.",
        "Try the operation again using the appropriate ETag.",
    )
}

fn session_uri(id: u64) -> String {
    format!("/redfish/v1/SessionService/Sessions/{id}")
}

fn session_body(id: u64, user: &str) -> Value {
    json!({
        "@odata.id": session_uri(id),
        "@odata.type": format!("#{SESSION}.Session"),
        "Id": id.to_string(),
        "Name": "User Session",
        "Description": "Manager User Session",
        "UserName": user,
    })
}

/// A UUID that stays the same for one device name (the service root's `UUID`).
fn uuid_of(device: &str) -> String {
    let d = Sha256::digest(device.as_bytes());
    let hex: String = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The OData service document (`/redfish/v1/odata`): the service root's top-level links.
fn odata_document() -> Value {
    let entry = |name: &str, url: &str| json!({"name": name, "kind": "Singleton", "url": url});
    json!({
        "@odata.context": "/redfish/v1/$metadata",
        "value": [
            entry("Service", "/redfish/v1/"),
            entry("Systems", "/redfish/v1/Systems"),
            entry("SessionService", "/redfish/v1/SessionService"),
            entry("Sessions", "/redfish/v1/SessionService/Sessions"),
        ],
    })
}

/// `$metadata`: a CSDL document referencing the DMTF schema files of the types served.
fn metadata() -> String {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <edmx:Edmx xmlns:edmx=\"http://docs.oasis-open.org/odata/ns/edmx\" Version=\"4.0\">\n",
    );
    for (file, namespaces) in SCHEMA_FILES {
        xml.push_str(&format!(
            "  <edmx:Reference Uri=\"http://redfish.dmtf.org/schemas/v1/{file}\">\n"
        ));
        for ns in *namespaces {
            xml.push_str(&format!("    <edmx:Include Namespace=\"{ns}\"/>\n"));
        }
        xml.push_str("  </edmx:Reference>\n");
    }
    xml.push_str(&format!(
        "  <edmx:Reference Uri=\"http://redfish.dmtf.org/schemas/v1/RedfishExtensions_v1.xml\">\n\
         \x20   <edmx:Include Namespace=\"RedfishExtensions.v1_0_0\" Alias=\"Redfish\"/>\n\
         \x20 </edmx:Reference>\n\
         \x20 <edmx:DataServices>\n\
         \x20   <Schema xmlns=\"http://docs.oasis-open.org/odata/ns/edm\" Namespace=\"Service\">\n\
         \x20     <EntityContainer Name=\"Service\" Extends=\"{SERVICE_ROOT}.ServiceContainer\"/>\n\
         \x20   </Schema>\n\
         \x20 </edmx:DataServices>\n\
         </edmx:Edmx>\n"
    ));
    xml
}
