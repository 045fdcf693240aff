//! The real Redfish client (Fujitsu iRMC and other DMTF Redfish BMCs) behind the engine's
//! [`Bmc`] port: `ForceRestart` of a physical server (R13).
//!
//! Wire format (Redfish: DMTF DSP0266 / DSP0268):
//! - Discovery, once per client: `GET /redfish/v1` (no credentials). When the root links a
//!   session collection (`Links.Sessions`), the client logs in there:
//!   `POST {Sessions}` `{"UserName","Password"}` → 201 with the token in `X-Auth-Token`,
//!   sent on later requests. A root without that link, or a login answered 404/405/501 (no
//!   usable session service), makes the client send HTTP Basic credentials instead.
//! - The system: `GET {Systems}/{system_id}` when the config sets `system_id`, else the only
//!   member of `GET {Systems}` (none or several is an error naming the count). Its
//!   `Actions["#ComputerSystem.Reset"].target` is where the reset goes; when the action lists
//!   `ResetType@Redfish.AllowableValues` without `ForceRestart` the reset is refused here.
//! - `POST {target}` `{"ResetType":"ForceRestart"}` → 204 (or 200/202 with a task: the BMC
//!   took the reset, which is what we asked).
//! - Errors are `{"error":{"code":"Base.1.0.GeneralError","message":"...",
//!   "@Message.ExtendedInfo":[{"MessageId":"Base.1.8.ResourceInUse",...}]}}`; [`classify`]
//!   maps them (the one place the vendor's error table lives).

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode, Url};
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
    let keys = extended.iter().copied().chain(code).map(message_key);
    let id = extended.first().copied().or(code);
    http::table_error(status, MESSAGE_KEYS, keys, id, message, body)
}

/// The reset this client asks for (R13).
const FORCE_RESTART: &str = "ForceRestart";

/// What discovery learnt about the service; kept for the client's life.
#[derive(Debug, Clone)]
struct Service {
    /// The session collection to log in at; `None`: HTTP Basic on every request.
    sessions: Option<Url>,
    /// Where `ComputerSystem.Reset` is posted (the action's `target`).
    reset_target: Url,
}

/// How one request authenticates.
enum Auth<'a> {
    /// No credentials (the service root, the login itself).
    Anonymous,
    /// A session token.
    Token(&'a str),
    /// HTTP Basic with the configured user.
    Basic,
}

/// One Redfish computer system reached through its BMC.
pub struct RedfishClient {
    base: Url,
    user: String,
    password: String,
    /// The configured system id; `None`: the Systems collection's only member.
    system_id: Option<String>,
    http: reqwest::Client,
    call_timeout: Duration,
    /// What discovery found.
    service: http::Shared<Service>,
    /// The current session token.
    session: http::Shared<String>,
}

/// A failure while finding the reset or logging in: nothing was reset, so what would be `unknown` for the
/// reset itself (a cut-off read, a 5xx to a `GET`) is `unavailable` here: retrying is safe.
fn before_reset(mut e: DeviceError) -> DeviceError {
    if e.class == OutcomeClass::Unknown {
        e.class = OutcomeClass::Unavailable;
    }
    e.detail = format!("before the reset: {}", e.detail);
    e
}

/// The `@odata.id` at `pointer` in `body`.
fn link<'v>(body: &'v Value, pointer: &str) -> Option<&'v str> {
    body.pointer(pointer)
        .and_then(|v| v.get("@odata.id"))
        .and_then(Value::as_str)
}

impl RedfishClient {
    /// A client for system `system_id` (`None`: the one the BMC at `base_url` lists), logging
    /// in as `user`. Every HTTP exchange is bounded by `call_timeout` (R19). No request is sent
    /// yet.
    pub fn new(
        base_url: &str,
        user: &str,
        password: &str,
        system_id: Option<&str>,
        call_timeout: Duration,
    ) -> Result<Self, DeviceError> {
        let base = http::base_url(base_url, "Redfish")?;
        Ok(RedfishClient {
            base,
            user: user.to_string(),
            password: password.to_string(),
            system_id: system_id.map(str::to_string),
            http: http::client(call_timeout)?,
            call_timeout,
            service: http::Shared::default(),
            session: http::Shared::default(),
        })
    }

    /// The same client with the device's certificate checked as `trust` says (R18).
    pub fn with_trust(mut self, trust: &http::TlsTrust) -> Result<Self, DeviceError> {
        self.http = http::client_with(self.call_timeout, trust)?;
        Ok(self)
    }

    /// `base` plus percent-encoded path segments.
    fn url(&self, segments: &[&str]) -> DeviceResult<Url> {
        http::join_segments(&self.base, segments, "Redfish")
    }

    /// A URI the service gave (`@odata.id`, `target`, `Location`) as a URL. Credentials only
    /// ever go to the configured BMC: a URI on another scheme, host or port is refused.
    fn service_url(&self, uri: &str) -> DeviceResult<Url> {
        let url = self.base.join(uri).map_err(|e| {
            DeviceError::new(
                OutcomeClass::Rejected,
                format!("the BMC gave a bad URI {uri:?}: {e}"),
            )
        })?;
        if url.origin() != self.base.origin() {
            return Err(DeviceError::new(
                OutcomeClass::Rejected,
                format!("the BMC pointed at {url}, outside {}", self.base),
            ));
        }
        Ok(url)
    }

    /// One exchange: status, the `X-Auth-Token` reply header, and the body.
    async fn exchange(
        &self,
        method: Method,
        url: Url,
        auth: Auth<'_>,
        body: Option<&Value>,
    ) -> DeviceResult<(StatusCode, Option<String>, String)> {
        let mut request = self
            .http
            .request(method, url)
            .header("OData-Version", "4.0")
            .header("Accept", "application/json");
        request = match auth {
            Auth::Anonymous => request,
            Auth::Token(token) => request.header(TOKEN_HEADER, token),
            Auth::Basic => request.basic_auth(&self.user, Some(&self.password)),
        };
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
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
        Ok((status, token, text))
    }

    /// Logs in at `sessions`: `Ok(Some(token))`, or `Ok(None)` when the service has no usable
    /// session service there (404, 405, 501).
    async fn login(&self, sessions: &Url) -> DeviceResult<Option<String>> {
        let body = json!({"UserName": self.user, "Password": self.password});
        let (status, token, text) = self
            .exchange(Method::POST, sessions.clone(), Auth::Anonymous, Some(&body))
            .await?;
        if matches!(status.as_u16(), 404 | 405 | 501) {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(classify(status, &text));
        }
        let token = token.ok_or_else(|| {
            DeviceError::new(
                OutcomeClass::Auth,
                format!("session created without an {TOKEN_HEADER} header"),
            )
        })?;
        self.session.set(token.clone());
        Ok(Some(token))
    }

    /// The session token, logging in at `sessions` when there is none.
    async fn session(&self, sessions: &Url) -> DeviceResult<String> {
        if let Some(token) = self.session.get() {
            return Ok(token);
        }
        self.login(sessions).await?.ok_or_else(|| {
            DeviceError::new(
                OutcomeClass::Auth,
                format!("{sessions} no longer takes logins"),
            )
        })
    }

    /// One authenticated exchange: HTTP Basic, or the session with one renewal on a 401 (a 401
    /// means the BMC did not process the request, so resending is safe). Returns the status and
    /// body of the last attempt; a second 401 also forgets the session.
    async fn authed(
        &self,
        sessions: Option<&Url>,
        method: Method,
        url: &Url,
        body: Option<&Value>,
    ) -> DeviceResult<(StatusCode, String)> {
        let Some(sessions) = sessions else {
            let (status, _, text) = self
                .exchange(method, url.clone(), Auth::Basic, body)
                .await?;
            return Ok((status, text));
        };
        let token = self.session(sessions).await.map_err(before_reset)?;
        let (status, _, text) = self
            .exchange(method.clone(), url.clone(), Auth::Token(&token), body)
            .await?;
        if status != StatusCode::UNAUTHORIZED {
            return Ok((status, text));
        }
        self.session.forget(&token);
        let token = self.session(sessions).await.map_err(before_reset)?;
        let (status, _, text) = self
            .exchange(method, url.clone(), Auth::Token(&token), body)
            .await?;
        if status == StatusCode::UNAUTHORIZED {
            self.session.forget(&token);
        }
        Ok((status, text))
    }

    /// An authenticated `GET` of a JSON resource.
    async fn get_json(&self, sessions: Option<&Url>, url: &Url) -> DeviceResult<Value> {
        let (status, text) = self.authed(sessions, Method::GET, url, None).await?;
        if !status.is_success() {
            return Err(classify(status, &text));
        }
        serde_json::from_str(&text).map_err(|e| {
            DeviceError::new(
                OutcomeClass::Rejected,
                format!("{url}: not a Redfish JSON body: {e}"),
            )
        })
    }

    /// The service, discovering it on first use.
    async fn service(&self) -> DeviceResult<Service> {
        if let Some(service) = self.service.get() {
            return Ok(service);
        }
        let service = self.discover().await.map_err(before_reset)?;
        self.service.set(service.clone());
        Ok(service)
    }

    /// Service root → authentication → system → reset target (see the module doc).
    async fn discover(&self) -> DeviceResult<Service> {
        let root_url = self.url(&["redfish", "v1", ""])?;
        let (status, _, text) = self
            .exchange(Method::GET, root_url.clone(), Auth::Anonymous, None)
            .await?;
        if !status.is_success() {
            return Err(classify(status, &text));
        }
        let root: Value = serde_json::from_str(&text).map_err(|e| {
            DeviceError::new(
                OutcomeClass::Rejected,
                format!("{root_url}: not a Redfish service root: {e}"),
            )
        })?;
        let mut sessions = match link(&root, "/Links/Sessions") {
            Some(uri) => Some(self.service_url(uri)?),
            None => None,
        };
        if let Some(url) = &sessions {
            if self.login(url).await?.is_none() {
                sessions = None;
            }
        }
        let systems_uri = link(&root, "/Systems").ok_or_else(|| {
            DeviceError::new(
                OutcomeClass::Rejected,
                "the service root links no Systems collection",
            )
        })?;
        let systems = self.service_url(systems_uri)?;
        let system_url = match &self.system_id {
            Some(id) => {
                let mut url = systems.clone();
                url.path_segments_mut()
                    .map_err(|_| {
                        DeviceError::new(OutcomeClass::Rejected, "bad Systems collection URI")
                    })?
                    .pop_if_empty()
                    .push(id);
                url
            }
            None => {
                let collection = self.get_json(sessions.as_ref(), &systems).await?;
                let members: Vec<&str> = collection
                    .get("Members")
                    .and_then(Value::as_array)
                    .map(|m| {
                        m.iter()
                            .filter_map(|v| v.get("@odata.id").and_then(Value::as_str))
                            .collect()
                    })
                    .unwrap_or_default();
                match members.as_slice() {
                    [one] => self.service_url(one)?,
                    other => {
                        return Err(DeviceError::new(
                            OutcomeClass::Rejected,
                            format!(
                                "{systems} lists {} systems; set system_id in the engine config",
                                other.len()
                            ),
                        ))
                    }
                }
            }
        };
        let system = self.get_json(sessions.as_ref(), &system_url).await?;
        let action = system
            .pointer("/Actions/#ComputerSystem.Reset")
            .ok_or_else(|| {
                DeviceError::new(
                    OutcomeClass::Rejected,
                    format!("{system_url} offers no #ComputerSystem.Reset action"),
                )
            })?;
        if let Some(allowed) = action
            .get("ResetType@Redfish.AllowableValues")
            .and_then(Value::as_array)
        {
            if !allowed.iter().any(|v| v.as_str() == Some(FORCE_RESTART)) {
                return Err(DeviceError::new(
                    OutcomeClass::Rejected,
                    format!("{system_url} does not allow ResetType {FORCE_RESTART}"),
                ));
            }
        }
        let target = action
            .get("target")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                DeviceError::new(
                    OutcomeClass::Rejected,
                    format!("{system_url}: #ComputerSystem.Reset has no target"),
                )
            })?;
        Ok(Service {
            sessions,
            reset_target: self.service_url(target)?,
        })
    }
}

#[async_trait]
impl Bmc for RedfishClient {
    async fn reset(&self) -> DeviceResult<()> {
        let service = self.service().await?;
        let body = json!({"ResetType": FORCE_RESTART});
        let (status, text) = self
            .authed(
                service.sessions.as_ref(),
                Method::POST,
                &service.reset_target,
                Some(&body),
            )
            .await?;
        if status.is_success() {
            return Ok(());
        }
        Err(classify(status, &text))
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
