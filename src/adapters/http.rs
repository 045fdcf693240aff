//! What every HTTP device client shares: one way to build a client and one mapping of transport
//! failures and status codes onto the outcome classes (R8). Vendor clients refine the status
//! mapping from their error bodies; a transport failure after the request was sent is always
//! `unknown`, never `rejected`.
//!
//! Device TLS (R18): a [`TlsTrust`] says how a device's certificate is checked. With a CA bundle
//! (`ca_file`) only those CAs are trusted, not the built-in web roots: a device's CA is a
//! private one, and trusting the whole web PKI beside it would let any public certificate for
//! that name pass. With a SHA-256 pin (`tls_fingerprint`) the device's own (leaf) certificate
//! must hash to the pin; the pin replaces chain and name checks (self-signed device certificates
//! are the usual case), unless a CA is also given, when both must hold. With neither, the
//! built-in web roots (webpki-roots, the set reqwest ships) apply. `insecure` skips every check
//! and cannot be combined with the others. Every verified connection goes through one rustls
//! verifier (`DeviceVerifier`) so that a certificate failure carries the device's name: a
//! handshake that fails on the certificate is `unavailable` (nothing was sent) and its detail
//! reads `device vc-1: certificate not trusted: ...` or `device vc-1: fingerprint mismatch: ...`.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::StatusCode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use super::{DeviceError, OutcomeClass};

/// How a device's TLS certificate is verified (R18). The default trusts the built-in web roots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsTrust {
    /// The device's name, for certificate errors (the configured name, not the URL's host).
    pub device: Option<String>,
    /// DER certificates of the CAs to trust instead of the built-in roots (from a PEM bundle).
    pub ca_der: Vec<Vec<u8>>,
    /// SHA-256 of the device's leaf certificate (DER).
    pub fingerprint: Option<[u8; 32]>,
    /// Accept any certificate. Callers must report this loudly.
    pub insecure: bool,
}

impl TlsTrust {
    /// Trust the CAs of a PEM bundle; an empty bundle or one that is not PEM is an error.
    pub fn with_ca_pem(mut self, pem: &[u8]) -> Result<TlsTrust, String> {
        let mut found = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
            self.ca_der.push(cert.as_ref().to_vec());
            found += 1;
        }
        if found == 0 {
            return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into());
        }
        Ok(self)
    }

    /// Pins the leaf certificate's SHA-256, written `sha256:AB:CD:...` (32 hex pairs, colons
    /// optional, any case).
    pub fn with_fingerprint(mut self, text: &str) -> Result<TlsTrust, String> {
        self.fingerprint = Some(parse_fingerprint(text)?);
        Ok(self)
    }

    /// Names the device in certificate errors.
    pub fn for_device(mut self, name: &str) -> TlsTrust {
        self.device = Some(name.to_string());
        self
    }

    /// Whether this is the default (built-in roots, no pin, not insecure), whatever the name.
    pub fn is_default(&self) -> bool {
        self.ca_der.is_empty() && self.fingerprint.is_none() && !self.insecure
    }
}

/// Parses `sha256:AB:CD:...` into 32 bytes.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], String> {
    let hex = text.strip_prefix("sha256:").ok_or_else(|| {
        format!("{text:?} must start with \"sha256:\" (e.g. \"sha256:AB:CD:...\")")
    })?;
    let digits: String = hex.chars().filter(|c| *c != ':').collect();
    if digits.len() != 64 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "{text:?} must be \"sha256:\" and 32 hex byte pairs (64 hex digits)"
        ));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16)
            .map_err(|e| format!("{text:?}: {e}"))?;
    }
    Ok(out)
}

/// Writes a SHA-256 as `sha256:AB:CD:...`, the form `tls_fingerprint` takes.
pub fn format_fingerprint(digest: &[u8]) -> String {
    let pairs: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    format!("sha256:{}", pairs.join(":"))
}

/// The `tls_fingerprint` of a DER certificate.
pub fn fingerprint_of(der: &[u8]) -> String {
    format_fingerprint(&Sha256::digest(der))
}

/// Longest response body a device client reads; a larger one is an error, not an allocation.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// A client for one device. Each call gets its own connection (no idle pool) so that a transport
/// fault hits exactly the call it happened to, and a half-dead pooled connection never turns a
/// fresh call into an `unknown`; one loopback or LAN handshake per call is small next to a
/// device's own latency. `timeout` bounds connect plus the whole exchange (R19). The
/// certificate is checked against the built-in web roots; see [`client_with`].
pub fn client(timeout: Duration) -> Result<reqwest::Client, DeviceError> {
    client_with(timeout, &TlsTrust::default())
}

/// [`client`] with the device's certificate checked as `trust` says.
pub fn client_with(timeout: Duration, trust: &TlsTrust) -> Result<reqwest::Client, DeviceError> {
    let build_error = |e: String| {
        DeviceError::new(
            OutcomeClass::Unavailable,
            format!("cannot build HTTP client: {e}"),
        )
    };
    let mut builder = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .connect_timeout(timeout)
        .timeout(timeout);
    if trust.insecure {
        builder = builder.danger_accept_invalid_certs(true);
    } else {
        builder = builder.use_preconfigured_tls(verified_config(trust).map_err(build_error)?);
    }
    builder.build().map_err(|e| build_error(e.to_string()))
}

/// The crypto reqwest itself uses (ring), named so no process-wide default is needed.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls client config whose `DeviceVerifier` applies `trust` (not insecure).
fn verified_config(trust: &TlsTrust) -> Result<rustls::ClientConfig, String> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    if trust.ca_der.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else {
        for der in &trust.ca_der {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| format!("bad CA certificate: {e}"))?;
        }
    }
    // A pin alone replaces the chain check; a pin with a CA needs both.
    let chain = if trust.fingerprint.is_some() && trust.ca_der.is_empty() {
        None
    } else {
        Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| e.to_string())?,
        )
    };
    let verifier = DeviceVerifier {
        device: trust.device.clone(),
        pin: trust.fingerprint,
        chain,
        provider: provider.clone(),
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// Why a device's certificate was refused; [`transport_error`] finds it by type.
#[derive(Debug)]
struct CertificateRefused {
    device: Option<String>,
    reason: String,
}

impl fmt::Display for CertificateRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.device {
            Some(device) => write!(f, "device {device}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for CertificateRefused {}

/// Checks the chain (configured CAs, else the web roots) and, when set, the leaf's SHA-256
/// pin; the handshake signatures are always verified, so the peer must hold the key of the
/// certificate it showed. Certificate failures become `CertificateRefused`.
#[derive(Debug)]
struct DeviceVerifier {
    device: Option<String>,
    pin: Option<[u8; 32]>,
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl DeviceVerifier {
    fn refused(&self, reason: String) -> rustls::Error {
        let refused = CertificateRefused {
            device: self.device.clone(),
            reason,
        };
        rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
            refused,
        ))))
    }
}

impl ServerCertVerifier for DeviceVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(pin) = &self.pin {
            let digest = Sha256::digest(end_entity.as_ref());
            if digest.as_slice() != pin {
                return Err(self.refused(format!(
                    "fingerprint mismatch: the device presented {}, the config pins {}",
                    format_fingerprint(&digest),
                    format_fingerprint(pin)
                )));
            }
        }
        if let Some(chain) = &self.chain {
            chain
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
                .map_err(|e| match e {
                    rustls::Error::InvalidCertificate(cert) => {
                        self.refused(format!("certificate not trusted: {cert}"))
                    }
                    other => other,
                })?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The certificate failure somewhere in `error`'s cause chain, as the detail an operator needs:
/// `device NAME: fingerprint mismatch: ...` or `device NAME: certificate not trusted: ...`.
fn certificate_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        if let Some(rustls::Error::InvalidCertificate(cert)) = e.downcast_ref::<rustls::Error>() {
            if let CertificateError::Other(other) = cert {
                if let Some(m) = other.0.downcast_ref::<CertificateRefused>() {
                    return Some(m.to_string());
                }
            }
            return Some(format!("certificate not trusted: {cert}"));
        }
        // tokio-rustls hands the rustls error up inside an io::Error, whose `source()` skips
        // the wrapped error itself: step into it instead.
        next = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// Classifies a transport error: refused or unreachable before sending is `unavailable`;
/// anything after the request may have left (timeout, reset, truncated reply) is `unknown`.
/// A certificate the client does not trust fails the handshake, before anything is sent:
/// `unavailable`, with the reason first in the detail.
pub fn transport_error(error: &reqwest::Error) -> DeviceError {
    if let Some(reason) = certificate_failure(error) {
        let to = error
            .url()
            .map(|u| format!(" to {}", u.origin().ascii_serialization()))
            .unwrap_or_default();
        return DeviceError::new(OutcomeClass::Unavailable, format!("TLS{to}: {reason}"));
    }
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

/// A vendor's error reply as a [`DeviceError`]: the class `table` gives the first of `keys`
/// it lists, else the status's ([`status_class`]); the detail is the status with the reply's
/// error `id` and `message` where it has them, else with the start of the body. The one
/// place the vendor clients that keep an error table (vCenter, Redfish) turn it into a class.
pub fn table_error<'a>(
    status: StatusCode,
    table: &[(&str, OutcomeClass)],
    keys: impl IntoIterator<Item = &'a str>,
    id: Option<&str>,
    message: Option<&str>,
    body: &str,
) -> DeviceError {
    let by_key = keys.into_iter().find_map(|key| {
        table
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, class)| *class)
    });
    let class = by_key.unwrap_or_else(|| status_class(status));
    let detail = match (id, message) {
        (Some(id), Some(m)) => format!("{status} {id}: {m}"),
        (Some(id), None) => format!("{status} {id}"),
        _ => format!("{status}: {}", snippet(body)),
    };
    DeviceError::new(class, detail)
}

/// A value the calls of one client share: its session token, what discovery found. A std
/// mutex, never held across an `.await`; the value is only ever replaced whole, so a lock
/// poisoned by a panicking call is taken over.
#[derive(Debug)]
pub struct Shared<T>(Mutex<Option<T>>);

impl<T> Default for Shared<T> {
    fn default() -> Self {
        Shared(Mutex::new(None))
    }
}

impl<T: Clone> Shared<T> {
    /// The value, if any.
    pub fn get(&self) -> Option<T> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the value.
    pub fn set(&self, value: T) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
    }
}

impl<T: PartialEq> Shared<T> {
    /// Forgets `value` unless a concurrent call already replaced it (a session token another
    /// call renewed stays).
    pub fn forget(&self, value: &T) {
        let mut current = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref() == Some(value) {
            *current = None;
        }
    }
}

/// Sends `request` and reads the reply: its status and its body (see [`body_text`]); a
/// failure to send or read is classified by [`transport_error`].
pub async fn exchange(
    request: reqwest::RequestBuilder,
) -> Result<(StatusCode, String), DeviceError> {
    let response = request.send().await.map_err(|e| transport_error(&e))?;
    let status = response.status();
    Ok((status, body_text(response).await?))
}

/// A device's configured base URL (e.g. `https://vc.example.com`), checked once when the
/// client is built: unparsable or not a base URL is `unavailable`, naming `vendor` and the URL.
pub fn base_url(base_url: &str, vendor: &str) -> Result<reqwest::Url, DeviceError> {
    let base = reqwest::Url::parse(base_url).map_err(|e| {
        DeviceError::new(
            OutcomeClass::Unavailable,
            format!("bad {vendor} URL {base_url:?}: {e}"),
        )
    })?;
    if base.cannot_be_a_base() {
        return Err(DeviceError::new(
            OutcomeClass::Unavailable,
            format!("bad {vendor} URL {base_url:?}: not a base URL"),
        ));
    }
    Ok(base)
}

/// `base` plus path segments, each percent-encoded, so an id never changes the path's shape.
/// `vendor` names the device kind in the error of a base that cannot take a path.
pub fn join_segments(
    base: &reqwest::Url,
    segments: &[&str],
    vendor: &str,
) -> Result<reqwest::Url, DeviceError> {
    let mut url = base.clone();
    {
        let mut path = url.path_segments_mut().map_err(|_| {
            DeviceError::new(
                OutcomeClass::Unavailable,
                format!("{vendor} URL cannot take a path"),
            )
        })?;
        path.pop_if_empty();
        path.extend(segments);
    }
    Ok(url)
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

    #[test]
    fn r18_fingerprint_round_trips_and_bad_forms_are_refused() {
        let digest: Vec<u8> = (0u8..32).collect();
        let text = format_fingerprint(&digest);
        assert!(text.starts_with("sha256:00:01:02"));
        assert_eq!(parse_fingerprint(&text).unwrap().to_vec(), digest);
        let lower = text.to_ascii_lowercase();
        assert_eq!(parse_fingerprint(&lower).unwrap().to_vec(), digest);
        assert!(parse_fingerprint(&text.replacen("sha256:", "sha1:", 1))
            .unwrap_err()
            .contains("sha256:"));
        assert!(parse_fingerprint("sha256:AB:CD")
            .unwrap_err()
            .contains("64 hex"));
        assert!(parse_fingerprint(&format!("sha256:{}", "ZZ".repeat(32))).is_err());
    }

    #[test]
    fn r18_a_ca_bundle_must_hold_a_pem_certificate() {
        let err = TlsTrust::default()
            .with_ca_pem(b"not a certificate")
            .unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
    }
}
