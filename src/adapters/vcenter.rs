//! The real vCenter client: the vSphere Automation REST API (`/api/...`, vSphere 7.0+) behind
//! the engine's [`Hypervisor`] port (R8 moves a vNIC's backing, R13 resets a VM).
//!
//! Wire format (VMware vSphere Automation REST API):
//! - `POST /api/session` with Basic auth → 201 and a bare JSON string token; every later call
//!   sends it as `vmware-api-session-id`.
//! - `GET|PATCH /api/vcenter/vm/{vm}/hardware/ethernet/{nic}` reads or sets `backing.network`;
//!   `POST /api/vcenter/vm/{vm}/power?action=reset` resets the VM. Writes answer 204.
//! - Errors are `{"error_type": "...", "messages": [...]}`; [`classify`] maps them (the one
//!   place the vendor's error table lives).

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Value};

use super::http;
use super::{DeviceError, DeviceResult, Hypervisor, OutcomeClass};

/// Header that carries the session token on every call after login.
pub const SESSION_HEADER: &str = "vmware-api-session-id";

/// vSphere `error_type` values whose class differs from what the HTTP status alone says, or
/// that must win over it. Why each entry is here:
/// - `UNAUTHENTICATED` (401): the session expired or was never valid; log in again.
/// - `SERVICE_UNAVAILABLE` (503): refused before processing (maintenance, overload).
/// - `RESOURCE_BUSY` (400!) and `CONCURRENT_CHANGE`: the VM is in transition or changed under
///   us; nothing was applied and a later retry can succeed, so `busy`, not `rejected`.
/// - `TIMED_OUT` (504): vAPI says the operation "may or may not complete" afterwards.
/// - `ERROR` / `INTERNAL_SERVER_ERROR` (500): the server failed mid-way; nothing proves the
///   change was not applied, and `rejected` must mean "definitely not applied" (R8), so these
///   are `unknown` and the engine reads device truth.
///
/// Every other `error_type` (`INVALID_ARGUMENT`, `NOT_FOUND`, `NOT_ALLOWED_IN_CURRENT_STATE`,
/// `RESOURCE_INACCESSIBLE`, `UNAUTHORIZED`, ...) is a definite refusal: `rejected`.
const ERROR_TYPES: &[(&str, OutcomeClass)] = &[
    ("UNAUTHENTICATED", OutcomeClass::Auth),
    ("SERVICE_UNAVAILABLE", OutcomeClass::Unavailable),
    ("RESOURCE_BUSY", OutcomeClass::Busy),
    ("CONCURRENT_CHANGE", OutcomeClass::Busy),
    ("TIMED_OUT", OutcomeClass::Unknown),
    ("ERROR", OutcomeClass::Unknown),
    ("INTERNAL_SERVER_ERROR", OutcomeClass::Unknown),
];

/// Classifies an error reply: the `error_type` table first, then the status by
/// [`http::status_class`] (a 5xx other than 503 is `unknown`).
pub fn classify(status: StatusCode, body: &str) -> DeviceError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error_type = parsed
        .as_ref()
        .and_then(|v| v.get("error_type"))
        .and_then(Value::as_str);
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("messages"))
        .and_then(Value::as_array)
        .and_then(|m| m.first())
        .and_then(|m| m.get("default_message"))
        .and_then(Value::as_str);
    http::table_error(status, ERROR_TYPES, error_type, error_type, message, body)
}

/// A vCenter reached over the vSphere Automation REST API.
pub struct VcenterClient {
    base: Url,
    user: String,
    password: String,
    http: reqwest::Client,
    call_timeout: Duration,
    /// The current session token.
    session: http::Shared<String>,
}

impl VcenterClient {
    /// A client for the vCenter at `base_url` (e.g. `https://vc.example.com`) logging in as
    /// `user`. Every HTTP exchange is bounded by `call_timeout` (R19). No request is sent yet.
    pub fn new(
        base_url: &str,
        user: &str,
        password: &str,
        call_timeout: Duration,
    ) -> Result<Self, DeviceError> {
        let base = http::base_url(base_url, "vCenter")?;
        Ok(VcenterClient {
            base,
            user: user.to_string(),
            password: password.to_string(),
            http: http::client(call_timeout)?,
            call_timeout,
            session: http::Shared::default(),
        })
    }

    /// The same client with the device's certificate checked as `trust` says (R18).
    pub fn with_trust(mut self, trust: &http::TlsTrust) -> Result<Self, DeviceError> {
        self.http = http::client_with(self.call_timeout, trust)?;
        Ok(self)
    }

    /// `base` plus path segments, each percent-encoded, so a VM or NIC id never changes the
    /// path's shape.
    fn url(&self, segments: &[&str]) -> DeviceResult<Url> {
        http::join_segments(&self.base, segments, "vCenter")
    }

    /// The session token, logging in first when there is none.
    async fn session(&self) -> DeviceResult<String> {
        if let Some(token) = self.session.get() {
            return Ok(token);
        }
        self.login().await?;
        self.session.get().ok_or_else(|| {
            DeviceError::new(OutcomeClass::Auth, "login succeeded but left no session")
        })
    }

    /// Sends one authenticated request and returns the body of a 2xx reply. An `auth` error
    /// drops the session, so the engine's next `login` (or the next call) opens a new one.
    async fn send(&self, method: Method, url: Url, body: Option<Value>) -> DeviceResult<String> {
        let token = self.session().await?;
        let mut request = self
            .http
            .request(method, url)
            .header(SESSION_HEADER, &token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let (status, text) = http::exchange(request).await?;
        if status.is_success() {
            return Ok(text);
        }
        let error = classify(status, &text);
        if error.class == OutcomeClass::Auth {
            self.session.forget(&token);
        }
        Err(error)
    }
}

/// Reads `backing.network` from a vNIC reply. A 2xx reply we cannot read says nothing about the
/// device, so it is `unknown` rather than a refusal.
fn parse_backing(body: &str) -> DeviceResult<String> {
    let value: Value = serde_json::from_str(body).map_err(|e| {
        DeviceError::new(OutcomeClass::Unknown, format!("unreadable vNIC reply: {e}"))
    })?;
    value
        .get("backing")
        .and_then(|b| b.get("network"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            DeviceError::new(
                OutcomeClass::Unknown,
                format!(
                    "vNIC reply without backing.network: {}",
                    http::snippet(body)
                ),
            )
        })
}

/// Reads the session token from a login reply: a bare JSON string (`/api/session`), or the
/// older `{"value": "..."}` wrapper of `/rest/com/vmware/cis/session`, which some proxies keep.
fn parse_token(body: &str) -> Option<String> {
    match serde_json::from_str::<Value>(body).ok()? {
        Value::String(token) if !token.is_empty() => Some(token),
        Value::Object(map) => map
            .get("value")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        _ => None,
    }
}

#[async_trait]
impl Hypervisor for VcenterClient {
    async fn login(&self) -> DeviceResult<()> {
        let url = self.url(&["api", "session"])?;
        let (status, text) = http::exchange(
            self.http
                .post(url)
                .basic_auth(&self.user, Some(&self.password)),
        )
        .await?;
        if !status.is_success() {
            return Err(classify(status, &text));
        }
        let token = parse_token(&text).ok_or_else(|| {
            // The server says it logged us in but gave no usable token: as good as refused.
            DeviceError::new(
                OutcomeClass::Auth,
                format!(
                    "login reply without a session token: {}",
                    http::snippet(&text)
                ),
            )
        })?;
        self.session.set(token);
        Ok(())
    }

    async fn get_nic(&self, vm: &str, nic: &str) -> DeviceResult<String> {
        let url = self.url(&["api", "vcenter", "vm", vm, "hardware", "ethernet", nic])?;
        let body = self.send(Method::GET, url, None).await?;
        parse_backing(&body)
    }

    async fn set_nic(&self, vm: &str, nic: &str, portgroup: &str) -> DeviceResult<()> {
        let url = self.url(&["api", "vcenter", "vm", vm, "hardware", "ethernet", nic])?;
        // Port groups of a distributed switch are the only kind the topology maps (`portgroups`
        // names `dvportgroup-*` ids); a standard port group would need its own backing type.
        let body = json!({"backing": {"type": "DISTRIBUTED_PORTGROUP", "network": portgroup}});
        self.send(Method::PATCH, url, Some(body)).await.map(|_| ())
    }

    async fn power_reset(&self, vm: &str) -> DeviceResult<()> {
        let mut url = self.url(&["api", "vcenter", "vm", vm, "power"])?;
        url.query_pairs_mut().append_pair("action", "reset");
        self.send(Method::POST, url, None).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_types_win_over_status() {
        let busy = r#"{"error_type":"RESOURCE_BUSY","messages":[]}"#;
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, busy).class,
            OutcomeClass::Busy
        );
        let invalid = r#"{"error_type":"INVALID_ARGUMENT","messages":[]}"#;
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, invalid).class,
            OutcomeClass::Rejected
        );
        assert_eq!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, "garbage").class,
            OutcomeClass::Unknown
        );
        assert_eq!(
            classify(StatusCode::UNAUTHORIZED, "").class,
            OutcomeClass::Auth
        );
    }

    #[test]
    fn tokens_are_read_from_both_shapes() {
        assert_eq!(parse_token(r#""abc""#).as_deref(), Some("abc"));
        assert_eq!(parse_token(r#"{"value":"abc"}"#).as_deref(), Some("abc"));
        assert_eq!(parse_token(r#""""#), None);
        assert_eq!(parse_token("not json"), None);
    }
}
