//! The vCenter protocol simulator: the vSphere Automation REST subset the real client speaks
//! (VMware's vSphere Automation REST API reference), served over the world's hypervisor model so wire mode fails
//! exactly like sim mode.
//!
//! - `POST /api/session` (Basic auth) → 201 `"<token>"`; `DELETE /api/session` logs out.
//! - `GET /api/vcenter/vm/{vm}/hardware/ethernet` → `[{"nic": "4000"}, ...]`.
//! - `GET|PATCH /api/vcenter/vm/{vm}/hardware/ethernet/{nic}` → the vNIC / 204.
//! - `POST /api/vcenter/vm/{vm}/power?action=reset` → 204.
//!
//! Every `/api/vcenter` call needs a token issued by a login to *this* server; a device call
//! that the model answers `auth` (an expired session) invalidates the token it came with.

use std::collections::BTreeSet;
use std::io;
use std::sync::Mutex;

use base64::Engine as _;
use serde_json::{json, Value};
use wiremock::matchers::any;
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use super::{accepted_credentials, render, WireServer};
use crate::adapters::{DeviceError, OutcomeClass};
use crate::model::{Credentials, NicLocation};
use crate::sim::recorder::lock;
use crate::sim::{DeviceOp, Reply, SimWorld};

/// Header that carries the session token.
const SESSION_HEADER: &str = "vmware-api-session-id";

/// Backing types vSphere accepts in a vNIC update.
const BACKING_TYPES: &[&str] = &[
    "STANDARD_PORTGROUP",
    "DISTRIBUTED_PORTGROUP",
    "OPAQUE_NETWORK",
];

/// Starts the vCenter simulator for hypervisor `device` of the world's site on 127.0.0.1,
/// accepting the credentials the topology sets for it (else `qlab`/`qlab`).
pub async fn start(world: SimWorld, device: &str) -> io::Result<WireServer> {
    let hypervisors = &world.site().topology.hypervisors;
    let what = "a hypervisor of the topology";
    let spec = super::find_device(hypervisors, |h| h.name == device, device, what)?;
    let face = VcenterFace {
        credentials: accepted_credentials(spec.credentials.as_ref()),
        world,
        device: device.to_string(),
        sessions: Mutex::new(Sessions::default()),
    };
    WireServer::start(vec![Mock::given(any()).respond_with(face)]).await
}

/// Tokens this server issued and has not invalidated.
#[derive(Default)]
struct Sessions {
    next: u64,
    valid: BTreeSet<String>,
}

/// The request handler: one per server.
struct VcenterFace {
    world: SimWorld,
    device: String,
    credentials: Credentials,
    sessions: Mutex<Sessions>,
}

/// A vSphere error reply `{"error_type", "messages"}`.
fn error_reply(status: u16, error_type: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error_type": error_type,
        "messages": [{
            "id": format!("qlab.sim.{}", error_type.to_ascii_lowercase()),
            "default_message": message,
            "args": [],
        }],
    }))
}

/// The vSphere reply for a device error of the model, in one table. `rejected` keeps the
/// model's own error type when its detail starts with one (`NOT_FOUND: no vNIC ...`), else it
/// is `INVALID_ARGUMENT`; `busy` is vSphere's `RESOURCE_BUSY`, which vCenter sends as a 400 (the
/// client must look at `error_type`); a hang that ends before the client gives up is a 500
/// `ERROR`, which the client treats as `unknown`.
fn device_error(error: &DeviceError) -> ResponseTemplate {
    let detail = error.detail.as_str();
    let (status, error_type) = match error.class {
        OutcomeClass::Rejected => match detail.split_once(':').map(|(t, _)| t) {
            Some("NOT_FOUND") => (404, "NOT_FOUND"),
            Some("NOT_ALLOWED_IN_CURRENT_STATE") => (400, "NOT_ALLOWED_IN_CURRENT_STATE"),
            Some("RESOURCE_INACCESSIBLE") => (400, "RESOURCE_INACCESSIBLE"),
            _ => (400, "INVALID_ARGUMENT"),
        },
        OutcomeClass::Busy => (400, "RESOURCE_BUSY"),
        OutcomeClass::Unavailable => (503, "SERVICE_UNAVAILABLE"),
        OutcomeClass::Auth => (401, "UNAUTHENTICATED"),
        OutcomeClass::Unknown => (500, "ERROR"),
    };
    error_reply(status, error_type, detail)
}

fn unauthenticated() -> ResponseTemplate {
    error_reply(401, "UNAUTHENTICATED", "Authentication required.")
}

fn invalid_argument(message: &str) -> ResponseTemplate {
    error_reply(400, "INVALID_ARGUMENT", message)
}

/// A reply of the wrong shape for the endpoint: a bug in the world, shown as a server error
/// rather than a panic.
fn unexpected(reply: &Reply) -> ResponseTemplate {
    error_reply(
        500,
        "ERROR",
        &format!("simulator bug: unexpected reply {reply:?}"),
    )
}

/// `user:password` of a `Basic` Authorization header.
pub(crate) fn basic_credentials(request: &Request) -> Option<(String, String)> {
    let header = request.headers.get("authorization")?.to_str().ok()?;
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Non-empty path segments of a request.
pub(crate) fn segments(request: &Request) -> Vec<&str> {
    request
        .url
        .path_segments()
        .map(|s| s.filter(|p| !p.is_empty()).collect())
        .unwrap_or_default()
}

impl Respond for VcenterFace {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let path = segments(request);
        let method = request.method.as_str();
        match (method, path.as_slice()) {
            ("POST", ["api", "session"]) => return self.login(request),
            ("DELETE", ["api", "session"]) => return self.logout(request),
            (_, ["api", "vcenter", ..]) => {}
            _ => return error_reply(404, "NOT_FOUND", "No such resource."),
        }
        let Some(token) = self.valid_token(request) else {
            return unauthenticated();
        };
        match (method, path.as_slice()) {
            ("GET", ["api", "vcenter", "vm", vm, "hardware", "ethernet"]) => self.list(vm),
            ("GET", ["api", "vcenter", "vm", vm, "hardware", "ethernet", nic]) => {
                self.get_nic(&token, vm, nic)
            }
            ("PATCH", ["api", "vcenter", "vm", vm, "hardware", "ethernet", nic]) => {
                self.set_nic(&token, request, vm, nic)
            }
            ("POST", ["api", "vcenter", "vm", vm, "power"]) => self.power(&token, request, vm),
            _ => error_reply(404, "NOT_FOUND", "No such resource."),
        }
    }
}

impl VcenterFace {
    /// The request's session token when this server issued it and it is still valid.
    fn valid_token(&self, request: &Request) -> Option<String> {
        let token = request.headers.get(SESSION_HEADER)?.to_str().ok()?;
        let sessions = lock(&self.sessions);
        sessions.valid.contains(token).then(|| token.to_string())
    }

    fn invalidate(&self, token: &str) {
        lock(&self.sessions).valid.remove(token);
    }

    /// The reply for a model error on a call made with `token`: an `auth` answer ends that
    /// session, as vCenter does for an expired one.
    fn device_error(&self, token: &str, error: &DeviceError) -> ResponseTemplate {
        if error.class == OutcomeClass::Auth {
            self.invalidate(token);
        }
        device_error(error)
    }

    /// `POST /api/session`: wrong credentials never reach the model; right ones are a `login`
    /// device call, so login faults apply.
    fn login(&self, request: &Request) -> ResponseTemplate {
        let authorized = basic_credentials(request).is_some_and(|(user, password)| {
            user == self.credentials.user && password == self.credentials.password
        });
        if !authorized {
            return unauthenticated();
        }
        let call = self.world.call_now(&self.device, DeviceOp::Login);
        render(
            call,
            |reply| match reply {
                Reply::Done => {
                    let mut sessions = lock(&self.sessions);
                    sessions.next = sessions.next.saturating_add(1);
                    // Deterministic, and naming the device so a token of another simulator
                    // in the same process is not valid here.
                    let token = format!("{}-session-{}", self.device, sessions.next);
                    sessions.valid.insert(token.clone());
                    ResponseTemplate::new(201).set_body_json(Value::String(token))
                }
                other => unexpected(&other),
            },
            device_error,
        )
    }

    /// `DELETE /api/session`: ends the caller's session (no device call).
    fn logout(&self, request: &Request) -> ResponseTemplate {
        match self.valid_token(request) {
            Some(token) => {
                self.invalidate(&token);
                ResponseTemplate::new(204)
            }
            None => unauthenticated(),
        }
    }

    /// The vNIC keys of `vm` from the site (inventory, not a device call).
    fn vnics_of(&self, vm: &str) -> Vec<(String, String)> {
        let site = self.world.site();
        let mut vnics = Vec::new();
        for ls in &site.lservers {
            for nic in &ls.nics {
                if let NicLocation::Virtual {
                    hypervisor,
                    vm: v,
                    device,
                } = &nic.location
                {
                    if *hypervisor == self.device && v == vm {
                        vnics.push((device.clone(), nic.mac.clone()));
                    }
                }
            }
        }
        vnics
    }

    fn list(&self, vm: &str) -> ResponseTemplate {
        let vnics = self.vnics_of(vm);
        if vnics.is_empty() {
            return error_reply(404, "NOT_FOUND", &format!("No VM {vm}."));
        }
        let body: Vec<Value> = vnics.iter().map(|(nic, _)| json!({"nic": nic})).collect();
        ResponseTemplate::new(200).set_body_json(Value::Array(body))
    }

    /// The vNIC body vCenter returns for a vNIC on a distributed port group (the shape of
    /// `fixtures/devices/vmware-vcenter/ethernet-get.reply.json`): the MAC from the site, the
    /// backing from the model. `network_name` belongs to standard port groups only, so it is
    /// absent; the distributed switch's UUID, port and cookie are synthetic but stable.
    fn nic_body(&self, vm: &str, nic: &str, portgroup: &str) -> Value {
        let vnics = self.vnics_of(vm);
        let position = vnics.iter().position(|(key, _)| key == nic).unwrap_or(0);
        let mac = vnics
            .get(position)
            .map(|(_, mac)| mac.clone())
            .unwrap_or_default();
        // A stable number per (vm, nic) for the port and cookie a real switch would assign.
        let stable = format!("{vm}/{nic}")
            .bytes()
            .fold(2_166_136_261u32, |h, b| {
                (h ^ u32::from(b)).wrapping_mul(16_777_619)
            });
        json!({
            "label": format!("Network adapter {}", position.saturating_add(1)),
            "type": "VMXNET3",
            "upt_compatibility_enabled": false,
            "mac_type": "ASSIGNED",
            "mac_address": mac,
            "pci_slot_number": 192u32.saturating_add(u32::try_from(position).unwrap_or(0)),
            "wake_on_lan_enabled": false,
            "backing": {
                "type": "DISTRIBUTED_PORTGROUP",
                "network": portgroup,
                "distributed_switch_uuid": self.switch_uuid(),
                "distributed_port": (stable % 4096).to_string(),
                "connection_cookie": stable,
            },
            "state": "CONNECTED",
            "start_connected": true,
            "allow_guest_control": false,
        })
    }

    /// The distributed switch's UUID in vCenter's spelling (16 hex pairs, a dash in the
    /// middle), derived from the device name so it is stable across runs.
    fn switch_uuid(&self) -> String {
        let bytes: Vec<String> = (0..16u8)
            .map(|i| {
                let b = self
                    .device
                    .bytes()
                    .fold(i.wrapping_mul(31), |h, c| h.wrapping_mul(17) ^ c);
                format!("{b:02x}")
            })
            .collect();
        format!("{}-{}", bytes[..8].join(" "), bytes[8..].join(" "))
    }

    fn get_nic(&self, token: &str, vm: &str, nic: &str) -> ResponseTemplate {
        let op = DeviceOp::GetNic {
            vm: vm.to_string(),
            nic: nic.to_string(),
        };
        let call = self.world.call_now(&self.device, op);
        render(
            call,
            |reply| match reply {
                Reply::Portgroup(pg) => {
                    ResponseTemplate::new(200).set_body_json(self.nic_body(vm, nic, &pg))
                }
                other => unexpected(&other),
            },
            |e| self.device_error(token, e),
        )
    }

    /// `PATCH`: a malformed body is refused here, before the model sees a call.
    fn set_nic(&self, token: &str, request: &Request, vm: &str, nic: &str) -> ResponseTemplate {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return invalid_argument("The request body is not valid JSON.");
        };
        let backing = body.get("backing");
        let kind = backing.and_then(|b| b.get("type")).and_then(Value::as_str);
        let network = backing
            .and_then(|b| b.get("network"))
            .and_then(Value::as_str);
        let (Some(kind), Some(network)) = (kind, network) else {
            return invalid_argument("backing.type and backing.network are required.");
        };
        if !BACKING_TYPES.contains(&kind) {
            return invalid_argument(&format!("Unknown backing type {kind}."));
        }
        let op = DeviceOp::SetNic {
            vm: vm.to_string(),
            nic: nic.to_string(),
            portgroup: network.to_string(),
        };
        self.no_content(token, op)
    }

    /// Plays a write whose success answers 204 without a body.
    fn no_content(&self, token: &str, op: DeviceOp) -> ResponseTemplate {
        let call = self.world.call_now(&self.device, op);
        render(
            call,
            |reply| match reply {
                Reply::Done => ResponseTemplate::new(204),
                other => unexpected(&other),
            },
            |e| self.device_error(token, e),
        )
    }

    /// `POST .../power?action=reset`; the other power actions are not simulated.
    fn power(&self, token: &str, request: &Request, vm: &str) -> ResponseTemplate {
        let action = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "action")
            .map(|(_, v)| v.into_owned());
        if action.as_deref() != Some("reset") {
            return invalid_argument("Only action=reset is simulated.");
        }
        let op = DeviceOp::PowerReset { vm: vm.to_string() };
        self.no_content(token, op)
    }
}
