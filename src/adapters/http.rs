//! What every HTTP device client shares: one way to build a client and one mapping of transport
//! failures and status codes onto the outcome classes (R8). Vendor clients refine the status
//! mapping from their error bodies; a transport failure after the request was sent is always
//! `unknown`, never `rejected`.

use std::time::Duration;

use reqwest::StatusCode;

use super::{DeviceError, OutcomeClass};

/// Longest response body a device client reads; a larger one is an error, not an allocation.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// A client for one device. Each call gets its own connection (no idle pool) so that a transport
/// fault hits exactly the call it happened to, and a half-dead pooled connection never turns a
/// fresh call into an `unknown`; one loopback or LAN handshake per call is small next to a
/// device's own latency. `timeout` bounds connect plus the whole exchange (R19).
pub fn client(timeout: Duration) -> Result<reqwest::Client, DeviceError> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .map_err(|e| {
            DeviceError::new(
                OutcomeClass::Unavailable,
                format!("cannot build HTTP client: {e}"),
            )
        })
}

/// Classifies a transport error: refused or unreachable before sending is `unavailable`;
/// anything after the request may have left (timeout, reset, truncated reply) is `unknown`.
pub fn transport_error(error: &reqwest::Error) -> DeviceError {
    let class = if error.is_connect() || error.is_builder() {
        OutcomeClass::Unavailable
    } else {
        OutcomeClass::Unknown
    };
    DeviceError::new(class, format!("transport: {error}"))
}

/// The default class of an HTTP error status: 401 `auth`, 503 `unavailable` (refused before
/// processing), 429 `busy`, any other 5xx `unknown` (a server or gateway failed while the
/// request was in its hands, so nothing proves it was not applied: R8), anything else
/// `rejected`. Vendor clients refine this from their error bodies.
pub fn status_class(status: StatusCode) -> OutcomeClass {
    match status {
        StatusCode::UNAUTHORIZED => OutcomeClass::Auth,
        StatusCode::SERVICE_UNAVAILABLE => OutcomeClass::Unavailable,
        StatusCode::TOO_MANY_REQUESTS => OutcomeClass::Busy,
        s if s.is_server_error() => OutcomeClass::Unknown,
        _ => OutcomeClass::Rejected,
    }
}

/// The start of a body for error details: device replies are not trusted to be short.
pub fn snippet(body: &str) -> String {
    body.chars().take(200).collect()
}

/// Reads a response body up to [`MAX_RESPONSE_BYTES`]; a body cut off mid-way is `unknown`.
pub async fn body_text(response: reqwest::Response) -> Result<String, DeviceError> {
    if response
        .content_length()
        .is_some_and(|n| n as usize > MAX_RESPONSE_BYTES)
    {
        return Err(DeviceError::new(
            OutcomeClass::Unknown,
            format!("reply larger than {MAX_RESPONSE_BYTES} bytes"),
        ));
    }
    let bytes = response.bytes().await.map_err(|e| transport_error(&e))?;
    if bytes.len() > MAX_RESPONSE_BYTES {
        return Err(DeviceError::new(
            OutcomeClass::Unknown,
            format!("reply larger than {MAX_RESPONSE_BYTES} bytes"),
        ));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r8_a_server_failure_is_unknown_never_rejected() {
        for code in [500, 502, 504] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(status_class(status), OutcomeClass::Unknown, "{code}");
        }
        assert_eq!(
            status_class(StatusCode::SERVICE_UNAVAILABLE),
            OutcomeClass::Unavailable
        );
        assert_eq!(
            status_class(StatusCode::BAD_REQUEST),
            OutcomeClass::Rejected
        );
        assert_eq!(status_class(StatusCode::UNAUTHORIZED), OutcomeClass::Auth);
        assert_eq!(
            status_class(StatusCode::TOO_MANY_REQUESTS),
            OutcomeClass::Busy
        );
    }
}
