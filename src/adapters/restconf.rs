//! OpenConfig-over-RESTCONF (RFC 8040) switch client behind the engine's [`Switch`] port, plus
//! the wire shapes its simulator (`sim::wire::restconf`) builds from.
//!
//! # Wire shapes
//! From vendor-protocols.md: `PATCH /restconf/data/openconfig-interfaces:interfaces/
//! interface=<port>/ethernet/switched-vlan/config`, `Content-Type: application/yang-data+json`,
//! body `{"openconfig-vlan:config":{"interface-mode":"ACCESS","access-vlan":910}}` → 204; `GET`
//! of the same path returns the config; errors `{"ietf-restconf:errors":{"error":[{"error-type":
//! ..,"error-tag":..,"error-message":..}]}}` with 400 invalid-value, 404 data-missing, 409
//! in-use / lock-denied, 415 wrong content type. The list key is percent-encoded (RFC 8040
//! §3.5.3), so `Ethernet1/5` travels as `interface=Ethernet1%2F5`.
//!
//! Unconfirmed (chosen here and only here):
//! - Saving: no OpenConfig model defines a save RPC, and whether a RESTCONF write reaches the
//!   startup config differs by platform. The simulator keeps running and saved config apart,
//!   so `save_config` invokes an explicit RPC, [`SAVE_RPC_PATH`], modelled on Cisco IOS XE's
//!   `POST /restconf/operations/cisco-ia:save-config` (no input; any 2xx is success, IOS XE
//!   answers 200 `{"cisco-ia:output":{"result":"Save running config successful"}}`).
//! - A 500 (`operation-failed`, `partial-operation`, ...) means the device failed while
//!   executing: `unknown`, since nothing proves the change did not land.
//! - One port per request: the topology format names only NX-API and eAPI for batching (`max_batch`),
//!   and a merge of several interfaces would need a different resource.
//!
//! # Class mapping (the one table, [`classify`])
//! | reply | class |
//! |---|---|
//! | 2xx | ok |
//! | 401 | `auth` |
//! | 503 | `unavailable` |
//! | 409 with error-tag `in-use` or `lock-denied`, or 429 | `busy` |
//! | other 4xx (400 invalid-value, 404 data-missing, 409 data-exists, 415, ...) | `rejected` |
//! | 5xx other than 503, 1xx/3xx, or a 200 GET without a readable config | `unknown` |
//! | transport failure | [`http::transport_error`] (refused `unavailable`, later `unknown`) |

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::http;
use super::nxapi::{endpoint, vlan_value};
use super::{DeviceError, DeviceResult, OutcomeClass, Switch};

/// Media type of requests and replies.
pub const MEDIA_TYPE: &str = "application/yang-data+json";
/// Path of the interface list, up to the key.
pub const INTERFACE_PREFIX: &str = "/restconf/data/openconfig-interfaces:interfaces/interface=";
/// Path below one interface to its switched-VLAN config.
pub const CONFIG_SUFFIX: &str = "/ethernet/switched-vlan/config";
/// The save RPC (unconfirmed, see the module docs).
pub const SAVE_RPC_PATH: &str = "/restconf/operations/cisco-ia:save-config";
/// Top-level member of the config document (RFC 7951 module-qualified).
pub const CONFIG_MEMBER: &str = "openconfig-vlan:config";
/// `interface-mode` of an access port.
pub const ACCESS_MODE: &str = "ACCESS";

/// The `openconfig-vlan:config` document the client writes and the simulator reads strictly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VlanConfigDoc {
    /// The config container.
    #[serde(rename = "openconfig-vlan:config")]
    pub config: VlanConfig,
}

/// `switched-vlan/config` leaves this system uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VlanConfig {
    /// `ACCESS` or `TRUNK`.
    #[serde(
        default,
        rename = "interface-mode",
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_mode: Option<String>,
    /// The access VLAN.
    #[serde(
        default,
        rename = "access-vlan",
        skip_serializing_if = "Option::is_none"
    )]
    pub access_vlan: Option<u16>,
}

/// The body that puts a port in access mode on `vlan` (also the GET reply).
pub fn config_body(vlan: u16) -> VlanConfigDoc {
    VlanConfigDoc {
        config: VlanConfig {
            interface_mode: Some(ACCESS_MODE.into()),
            access_vlan: Some(vlan),
        },
    }
}

/// Reads `access-vlan` from a GET reply; other leaves a device adds are ignored.
pub fn parse_config(body: &str) -> Option<u16> {
    let value: Value = serde_json::from_str(body).ok()?;
    let config = value.get(CONFIG_MEMBER).or_else(|| value.get("config"))?;
    vlan_value(config.get("access-vlan")?)
}

/// The data resource of `port`'s switched-VLAN config, key percent-encoded.
pub fn config_path(port: &str) -> String {
    format!("{INTERFACE_PREFIX}{}{CONFIG_SUFFIX}", encode_key(port))
}

/// The port named by a [`config_path`]-shaped path: `None` when the path is another resource,
/// `Some(None)` when the key is not validly encoded.
pub fn parse_config_path(path: &str) -> Option<Option<String>> {
    let key = path
        .strip_prefix(INTERFACE_PREFIX)?
        .strip_suffix(CONFIG_SUFFIX)?;
    if key.contains('/') {
        return None;
    }
    Some(decode_key(key).filter(|k| !k.is_empty()))
}

/// Percent-encodes a list key: everything but RFC 3986 unreserved characters.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes a percent-encoded key; `None` for a broken escape or invalid UTF-8.
pub fn decode_key(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// An `ietf-restconf:errors` body with one error.
pub fn errors_body(error_type: &str, tag: &str, message: &str) -> Value {
    json!({"ietf-restconf:errors": {"error": [{
        "error-type": error_type,
        "error-tag": tag,
        "error-message": message,
    }]}})
}

/// The error tags of an `ietf-restconf:errors` body, with their messages.
fn error_tags(body: &str) -> Vec<(String, String)> {
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return Vec::new();
    };
    let errors = value
        .get("ietf-restconf:errors")
        .and_then(|e| e.get("error"))
        .and_then(Value::as_array);
    errors
        .into_iter()
        .flatten()
        .map(|e| {
            let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            (text("error-tag"), text("error-message"))
        })
        .collect()
}

/// Classifies a reply that is not a 2xx (the module's table).
pub fn classify(status: StatusCode, body: &str) -> DeviceError {
    let tags = error_tags(body);
    let busy_tag = tags
        .iter()
        .any(|(tag, _)| tag == "in-use" || tag == "lock-denied");
    let class = match status.as_u16() {
        401 => OutcomeClass::Auth,
        503 => OutcomeClass::Unavailable,
        409 if busy_tag => OutcomeClass::Busy,
        400..=499 => http::status_class(status),
        _ => OutcomeClass::Unknown,
    };
    let detail = match tags.first() {
        Some((tag, message)) => format!("RESTCONF {status} {tag}: {message}"),
        None => format!("RESTCONF {status}: {}", http::snippet(body)),
    };
    DeviceError::new(class, detail)
}

/// An OpenConfig switch over RESTCONF.
pub struct RestconfSwitch {
    http: reqwest::Client,
    call_timeout: Duration,
    base: String,
    user: String,
    password: String,
}

impl RestconfSwitch {
    /// A client for the switch at `base_url` (`http://host:port`), authenticating every request
    /// with HTTP Basic `user`/`password`; each call is cut at `call_timeout`.
    pub fn new(
        base_url: &str,
        user: &str,
        password: &str,
        call_timeout: Duration,
    ) -> Result<RestconfSwitch, DeviceError> {
        Ok(RestconfSwitch {
            http: http::client(call_timeout)?,
            call_timeout,
            base: endpoint(base_url, "")?,
            user: user.to_string(),
            password: password.to_string(),
        })
    }

    /// The same client with the device's certificate checked as `trust` says (R18).
    pub fn with_trust(mut self, trust: &http::TlsTrust) -> Result<Self, DeviceError> {
        self.http = http::client_with(self.call_timeout, trust)?;
        Ok(self)
    }

    /// Sends one request; `Ok` with the body of a 2xx, else the classified error.
    async fn send(&self, request: reqwest::RequestBuilder) -> DeviceResult<(StatusCode, String)> {
        let (status, text) = http::exchange(
            request
                .basic_auth(&self.user, Some(&self.password))
                .header(reqwest::header::ACCEPT, MEDIA_TYPE),
        )
        .await?;
        if status.is_success() {
            Ok((status, text))
        } else {
            Err(classify(status, &text))
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

#[async_trait]
impl Switch for RestconfSwitch {
    async fn get_port(&self, port: &str) -> DeviceResult<u16> {
        let (status, body) = self
            .send(self.http.get(self.url(&config_path(port))))
            .await?;
        parse_config(&body).ok_or_else(|| {
            DeviceError::new(
                OutcomeClass::Unknown,
                format!("RESTCONF {status} without access-vlan for {port}"),
            )
        })
    }

    async fn set_port(&self, port: &str, vlan: u16) -> DeviceResult<()> {
        let body = serde_json::to_vec(&config_body(vlan))
            .map_err(|e| DeviceError::new(OutcomeClass::Rejected, format!("cannot encode: {e}")))?;
        let request = self
            .http
            .patch(self.url(&config_path(port)))
            .header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE)
            .body(body);
        self.send(request).await.map(|_| ())
    }

    async fn save_config(&self) -> DeviceResult<()> {
        self.send(self.http.post(self.url(SAVE_RPC_PATH)))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_keys_are_percent_encoded() {
        let path = config_path("Ethernet1/21");
        assert!(path.contains("interface=Ethernet1%2F21/ethernet"), "{path}");
        assert_eq!(
            parse_config_path(&path),
            Some(Some("Ethernet1/21".to_string()))
        );
        assert_eq!(decode_key("Eth%zz"), None);
        assert_eq!(parse_config_path("/restconf/data/other"), None);
    }

    #[test]
    fn errors_classify_by_status_and_tag() {
        let class = |status: u16, tag: &str| {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT);
            classify(status, &errors_body("protocol", tag, "m").to_string()).class
        };
        assert_eq!(class(409, "in-use"), OutcomeClass::Busy);
        assert_eq!(class(409, "lock-denied"), OutcomeClass::Busy);
        assert_eq!(class(409, "data-exists"), OutcomeClass::Rejected);
        assert_eq!(class(404, "data-missing"), OutcomeClass::Rejected);
        assert_eq!(class(415, "invalid-value"), OutcomeClass::Rejected);
        assert_eq!(class(500, "operation-failed"), OutcomeClass::Unknown);
        assert_eq!(class(503, "resource-denied"), OutcomeClass::Unavailable);
        assert_eq!(class(401, "access-denied"), OutcomeClass::Auth);
    }
}
