//! The real Redfish client (Fujitsu iRMC and other DMTF Redfish BMCs) behind the engine's
//! [`Bmc`] port: `ForceRestart` of a physical server (R13).
//!
//! Wire format (reference/vendor-protocols.md, "Redfish"):
//! - `POST /redfish/v1/SessionService/Sessions` `{"UserName","Password"}` → 201 with the token
//!   in the `X-Auth-Token` header; later calls send that header.
//! - `POST /redfish/v1/Systems/{id}/Actions/ComputerSystem.Reset` `{"ResetType":"ForceRestart"}`
//!   → 204 (or 200/202 with a task: the BMC took the reset, which is what we asked).
//! - Errors are `{"error":{"code":"Base.1.0.GeneralError","message":"...",
//!   "@Message.ExtendedInfo":[{"MessageId":"Base.1.8.ResourceInUse",...}]}}`; [`classify`]
//!   maps them (the one place the vendor's error table lives).

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{StatusCode, Url};
use serde_json::{json, Value};

use super::http;
use super::{Bmc, DeviceError, DeviceResult, OutcomeClass};

/// Header that carries the session token.
pub const TOKEN_HEADER: &str = "X-Auth-Token";

/// Base registry message keys (the `MessageId` without registry and version, so
/// `Base.1.8.ResourceInUse` is `ResourceInUse`) that decide the class. Why each is here:
/// - `NoValidSession`: the session expired; a new session fixes it (`auth`).
/// - `ServiceTemporarilyUnavailable`, `ServiceShuttingDown`, `ServiceInUnknownState`: refused
///   before processing (`unavailable`).
/// - `ResourceInUse`: the system is in transition (e.g. a reset already running); nothing was
///   done and a retry can succeed (`busy`).
/// - `InternalError`: the service failed while handling the request; nothing proves the reset
///   was not started, and `rejected` must mean "definitely not applied" (R8), so `unknown`.
///
/// `GeneralError` and every other key fall back to the status (see [`classify`]).
const MESSAGE_KEYS: &[(&str, OutcomeClass)] = &[
    ("NoValidSession", OutcomeClass::Auth),
    ("ServiceTemporarilyUnavailable", OutcomeClass::Unavailable),
    ("ServiceShuttingDown", OutcomeClass::Unavailable),
    ("ServiceInUnknownState", OutcomeClass::Unavailable),
    ("ResourceInUse", OutcomeClass::Busy),
    ("InternalError", OutcomeClass::Unknown),
];

/// The message key of a Redfish `MessageId` or error `code`: its last dot-separated part.
fn message_key(id: &str) -> &str {
    id.rsplit('.').next().unwrap_or(id)
}

/// Classifies an error reply: the first known message key among `@Message.ExtendedInfo` and
/// `error.code`, else the status by [`http::status_class`] (401 `auth`, 503 `unavailable`,
/// 429 `busy`, another 5xx `unknown`, else `rejected`).
pub fn classify(status: StatusCode, body: &str) -> DeviceError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let code = error.and_then(|e| e.get("code")).and_then(Value::as_str);
    let message = error.and_then(|e| e.get("message")).and_then(Value::as_str);
    let extended: Vec<&str> = error
        .and_then(|e| e.get("@Message.ExtendedInfo"))
        .and_then(Value::as_array)
        .map(|infos| {
            infos
                .iter()
                .filter_map(|i| i.get("MessageId").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let by_key = extended.iter().copied().chain(code).find_map(|id| {
        let key = message_key(id);
        MESSAGE_KEYS
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, class)| *class)
    });
    let class = by_key.unwrap_or_else(|| http::status_class(status));
    let id = extended.first().copied().or(code);
    let detail = match (id, message) {
        (Some(id), Some(m)) => format!("{status} {id}: {m}"),
        (Some(id), None) => format!("{status} {id}"),
        _ => format!("{status}: {}", body.chars().take(200).collect::<String>()),
    };
    DeviceError::new(class, detail)
}

/// One Redfish computer system reached through its BMC.
pub struct RedfishClient {
    base: Url,
    user: String,
    password: String,
    system_id: String,
    http: reqwest::Client,
    /// The current session token. A std mutex, never held across an `.await`.
    session: Mutex<Option<String>>,
}

impl RedfishClient {
    /// A client for system `system_id` (usually `1`) of the BMC at `base_url`, logging in as
    /// `user`. Every HTTP exchange is bounded by `call_timeout` (R19). No request is sent yet.
    pub fn new(
        base_url: &str,
        user: &str,
        password: &str,
        system_id: &str,
        call_timeout: Duration,
    ) -> Result<Self, DeviceError> {
        let base = Url::parse(base_url).map_err(|e| {
            DeviceError::new(
                OutcomeClass::Unavailable,
                format!("bad Redfish URL {base_url:?}: {e}"),
            )
        })?;
        if base.cannot_be_a_base() {
            return Err(DeviceError::new(
                OutcomeClass::Unavailable,
                format!("bad Redfish URL {base_url:?}: not a base URL"),
            ));
        }
        Ok(RedfishClient {
            base,
            user: user.to_string(),
            password: password.to_string(),
            system_id: system_id.to_string(),
            http: http::client(call_timeout)?,
            session: Mutex::new(None),
        })
    }

    /// `base` plus percent-encoded path segments.
    fn url(&self, segments: &[&str]) -> DeviceResult<Url> {
        let mut url = self.base.clone();
        {
            let mut path = url.path_segments_mut().map_err(|_| {
                DeviceError::new(OutcomeClass::Unavailable, "Redfish URL cannot take a path")
            })?;
            path.pop_if_empty();
            path.extend(segments);
        }
        Ok(url)
    }

    /// Forgets `token` unless a concurrent login already replaced it.
    fn drop_session(&self, token: &str) {
        let mut session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        if session.as_deref() == Some(token) {
            *session = None;
        }
    }

    /// The session token, creating a session when there is none.
    async fn session(&self) -> DeviceResult<String> {
        let current = self
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(token) = current {
            return Ok(token);
        }
        let url = self.url(&["redfish", "v1", "SessionService", "Sessions"])?;
        let body = json!({"UserName": self.user, "Password": self.password});
        let response = self
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|e| http::transport_error(&e))?;
        let status = response.status();
        let token = response
            .headers()
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        let text = http::body_text(response).await?;
        if !status.is_success() {
            return Err(classify(status, &text));
        }
        let token = token.ok_or_else(|| {
            DeviceError::new(
                OutcomeClass::Auth,
                format!("session created without an {TOKEN_HEADER} header"),
            )
        })?;
        *self.session.lock().unwrap_or_else(PoisonError::into_inner) = Some(token.clone());
        Ok(token)
    }

    /// One reset request with `token`.
    async fn post_reset(&self, token: &str) -> DeviceResult<()> {
        let url = self.url(&[
            "redfish",
            "v1",
            "Systems",
            &self.system_id,
            "Actions",
            "ComputerSystem.Reset",
        ])?;
        let response = self
            .http
            .post(url)
            .header(TOKEN_HEADER, token)
            .json(&json!({"ResetType": "ForceRestart"}))
            .send()
            .await
            .map_err(|e| http::transport_error(&e))?;
        let status = response.status();
        let text = http::body_text(response).await?;
        if status.is_success() {
            return Ok(());
        }
        Err(classify(status, &text))
    }
}

#[async_trait]
impl Bmc for RedfishClient {
    async fn reset(&self) -> DeviceResult<()> {
        // A 401 means the BMC did not process the reset, so one renewal and resend within the
        // call is safe; a second 401 goes to the engine as `auth`.
        let token = self.session().await?;
        match self.post_reset(&token).await {
            Err(e) if e.class == OutcomeClass::Auth => {
                self.drop_session(&token);
                let token = self.session().await?;
                let result = self.post_reset(&token).await;
                if let Err(e) = &result {
                    if e.class == OutcomeClass::Auth {
                        self.drop_session(&token);
                    }
                }
                result
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_win_over_status() {
        let busy = r#"{"error":{"code":"Base.1.0.GeneralError","message":"m",
            "@Message.ExtendedInfo":[{"MessageId":"Base.1.8.ResourceInUse"}]}}"#;
        assert_eq!(
            classify(StatusCode::CONFLICT, busy).class,
            OutcomeClass::Busy
        );
        let general = r#"{"error":{"code":"Base.1.0.GeneralError","message":"m"}}"#;
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, general).class,
            OutcomeClass::Rejected
        );
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, general).class,
            OutcomeClass::Unavailable
        );
        assert_eq!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, "").class,
            OutcomeClass::Unknown
        );
        assert_eq!(message_key("NoValidSession"), "NoValidSession");
    }
}
