//! The certification proxy: an HTTP/1.1 proxy on 127.0.0.1 between the adapter under test and
//! the target, which records every exchange (the transcript) and, when armed, injects one
//! connection-level fault into the next matching request.
//!
//! Unlike the simulators' fault proxy (`sim/wire/proxy.rs`, which carries out what the device
//! model decided), this one decides by itself, so it works in front of a real device too.
//!
//! Decisions where the contract is silent:
//! - The adapter speaks plain HTTP to the proxy on loopback; the proxy speaks HTTP or HTTPS to
//!   the target (verifying it with `--ca-file`, else the web roots). The proxy must see the
//!   requests to fault them after the request (reset) or before processing (503, 4xx, 401).
//! - `reset`: the request is forwarded and answered by the target, then the adapter's
//!   connection is closed with an RST (SO_LINGER 0) instead of the reply.
//! - `blackhole`: the request is not forwarded and nothing comes back; the connection is held
//!   until the adapter gives up (at most [`BLACKHOLE_HOLD`]).
//! - 503, 400 and 401 are answered by the proxy without forwarding, with a short JSON body.
//! - A target the proxy cannot reach (refused, certificate not trusted) is answered 502 with
//!   the reason, so every check's detail names it.
//! - Transcript secrets: no header is recorded (Authorization, session tokens); a body of a
//!   request or reply whose path names a session (`session`, case-insensitive) is replaced by
//!   `"[redacted]"`, JSON members whose name contains `password` are redacted, and the password
//!   itself is replaced wherever it appears.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::adapters::http::{client_with, TlsTrust};

/// Longest a blackholed request is held.
pub const BLACKHOLE_HOLD: Duration = Duration::from_secs(120);
/// Largest request or reply body relayed.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// Most exchanges kept in a transcript.
pub const MAX_EXCHANGES: usize = 100_000;
/// Longest body text kept per exchange in the transcript.
const MAX_TRANSCRIPT_BODY: usize = 8 * 1024;

/// A fault the proxy injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Answer 503 without forwarding.
    Unavailable,
    /// Answer 400 without forwarding.
    BadRequest,
    /// Answer 401 without forwarding (the session expired).
    Unauthorized,
    /// Forward, then reset the adapter's connection instead of replying.
    Reset,
    /// Swallow the request; never reply.
    Blackhole,
}

/// Which request an armed fault hits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matcher {
    /// Only requests whose method is not GET.
    pub not_get: bool,
    /// Only requests whose path contains this text.
    pub path_contains: Option<String>,
    /// Never requests whose path contains this text (case-insensitive).
    pub path_excludes: Option<String>,
}

impl Matcher {
    /// Any request.
    pub fn any() -> Matcher {
        Matcher::default()
    }

    fn hits(&self, method: &str, path: &str) -> bool {
        if self.not_get && method.eq_ignore_ascii_case("GET") {
            return false;
        }
        if let Some(text) = &self.path_contains {
            if !path.contains(text.as_str()) {
                return false;
            }
        }
        if let Some(text) = &self.path_excludes {
            if path
                .to_ascii_lowercase()
                .contains(&text.to_ascii_lowercase())
            {
                return false;
            }
        }
        true
    }
}

/// One exchange, as `transcript.jsonl` holds it.
#[derive(Debug, Clone, Serialize)]
pub struct Exchange {
    /// Order in the transcript.
    pub seq: u64,
    /// The check under way.
    pub check: String,
    /// Which target (`target`, or a simulator started for one check).
    pub via: String,
    /// Request method.
    pub method: String,
    /// Request path and query.
    pub path: String,
    /// Request body (redacted, truncated).
    pub request: String,
    /// Reply status; `None` when no reply reached the adapter.
    pub status: Option<u16>,
    /// Reply body (redacted, truncated).
    pub reply: String,
    /// The fault injected, if any.
    pub fault: Option<Fault>,
    /// Time the exchange took.
    pub ms: u64,
}

/// The transcript shared by every proxy of one certification run.
#[derive(Clone, Default)]
pub struct Transcript {
    inner: Arc<Mutex<TranscriptInner>>,
}

#[derive(Default)]
struct TranscriptInner {
    check: String,
    secrets: Vec<String>,
    exchanges: Vec<Exchange>,
    dropped: u64,
}

impl Transcript {
    fn lock(&self) -> std::sync::MutexGuard<'_, TranscriptInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tags the following exchanges with check `id`.
    pub fn set_check(&self, id: &str) {
        self.lock().check = id.to_string();
    }

    /// A secret to replace wherever it appears.
    pub fn add_secret(&self, secret: &str) {
        if !secret.is_empty() {
            self.lock().secrets.push(secret.to_string());
        }
    }

    /// Every exchange so far.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.lock().exchanges.clone()
    }

    /// The transcript as JSON lines.
    pub fn to_jsonl(&self) -> String {
        let inner = self.lock();
        let mut out = String::new();
        for e in &inner.exchanges {
            if let Ok(line) = serde_json::to_string(e) {
                out.push_str(&line);
                out.push('\n');
            }
        }
        if inner.dropped > 0 {
            out.push_str(&format!("{{\"dropped\":{}}}\n", inner.dropped));
        }
        out
    }

    fn record(&self, mut e: Exchange) {
        let mut inner = self.lock();
        e.check = inner.check.clone();
        e.request = redact(&e.path, &e.request, &inner.secrets);
        e.reply = redact(&e.path, &e.reply, &inner.secrets);
        if inner.exchanges.len() >= MAX_EXCHANGES {
            inner.dropped += 1;
            return;
        }
        e.seq = inner.exchanges.len() as u64 + 1;
        inner.exchanges.push(e);
    }
}

/// A body as the transcript keeps it.
pub fn redact(path: &str, body: &str, secrets: &[String]) -> String {
    if body.is_empty() {
        return String::new();
    }
    if path.to_ascii_lowercase().contains("session") {
        return "[redacted]".into();
    }
    let mut text = match serde_json::from_str::<Value>(body) {
        Ok(mut v) => {
            redact_json(&mut v);
            v.to_string()
        }
        Err(_) => body.to_string(),
    };
    for s in secrets {
        text = text.replace(s.as_str(), "[redacted]");
    }
    if text.len() > MAX_TRANSCRIPT_BODY {
        let mut end = MAX_TRANSCRIPT_BODY;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

fn redact_json(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                if k.to_ascii_lowercase().contains("password") {
                    *item = Value::String("[redacted]".into());
                } else {
                    redact_json(item);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        _ => {}
    }
}

struct Armed {
    fault: Fault,
    matcher: Matcher,
}

struct State {
    upstream: String,
    via: String,
    http: reqwest::Client,
    armed: Mutex<Option<Armed>>,
    fired: Mutex<u32>,
    transcript: Transcript,
    rewrite: Mutex<Option<Rewrite>>,
}

/// A function applied to every reply body the target sends.
pub type Rewrite = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// A running certification proxy.
pub struct CertProxy {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for CertProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CertProxy {
    /// Listens on 127.0.0.1 (any free port) and forwards to `upstream` (a base URL, `http://`
    /// or `https://`), trusting `ca_pem` (else the web roots) for HTTPS; `via` names the target
    /// in the transcript.
    pub async fn start(
        upstream: &str,
        ca_pem: Option<&[u8]>,
        via: &str,
        transcript: Transcript,
    ) -> Result<CertProxy, String> {
        let mut trust = TlsTrust::default().for_device(via);
        if let Some(pem) = ca_pem {
            trust = trust.with_ca_pem(pem)?;
        }
        // Redirects are the target's answer, relayed as they are.
        let http = client_with(Duration::from_secs(60), &trust).map_err(|e| e.detail)?;
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_string(),
            via: via.to_string(),
            http,
            armed: Mutex::new(None),
            fired: Mutex::new(0),
            transcript,
            rewrite: Mutex::new(None),
        });
        let serving = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(stream, serving.clone()));
            }
        });
        Ok(CertProxy { addr, state, task })
    }

    /// The base URL the adapter uses.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Injects `fault` into the next request `matcher` accepts (once).
    pub fn arm(&self, fault: Fault, matcher: Matcher) {
        *lock(&self.state.armed) = Some(Armed { fault, matcher });
    }

    /// Withdraws an armed fault that did not fire.
    pub fn disarm(&self) {
        *lock(&self.state.armed) = None;
    }

    /// Test hook: rewrites every reply body of the target before the adapter sees it (the
    /// diff tests change a simulator's reply shape with it, leaving the simulators alone).
    pub fn set_reply_rewrite(&self, rewrite: Rewrite) {
        *lock(&self.state.rewrite) = Some(rewrite);
    }

    /// How many faults fired so far.
    pub fn fired(&self) -> u32 {
        *lock(&self.state.fired)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type Response = hyper::Response<axum::body::Body>;

async fn connection(stream: TcpStream, state: Arc<State>) {
    // A second handle on the socket, so a reset can set SO_LINGER 0 on it while hyper owns the
    // stream: the RST goes out when the last handle closes.
    let Ok(std_stream) = stream.into_std() else {
        return;
    };
    let Ok(handle) = std_stream.try_clone() else {
        return;
    };
    let Ok(stream) = TcpStream::from_std(std_stream) else {
        return;
    };
    let reset = Arc::new(Notify::new());
    let service = {
        let (state, reset) = (state.clone(), reset.clone());
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let (state, reset) = (state.clone(), reset.clone());
            async move { Ok::<_, Infallible>(handle_request(request, state, reset).await) }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        _ = reset.notified() => {
            #[allow(deprecated)]
            let _ = socket2::SockRef::from(&handle).set_linger(Some(Duration::ZERO));
        }
    }
    drop(handle);
}

fn reply(status: u16, body: &str) -> Response {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap_or_default()
}

async fn handle_request(
    request: hyper::Request<hyper::body::Incoming>,
    state: Arc<State>,
    reset: Arc<Notify>,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let headers = request.headers().clone();
    let body =
        match axum::body::to_bytes(axum::body::Body::new(request.into_body()), MAX_BODY).await {
            Ok(b) => b,
            Err(e) => return reply(413, &format!("{{\"error\":\"request body: {e}\"}}")),
        };
    let fault = {
        let mut armed = lock(&state.armed);
        match armed.as_ref() {
            Some(a) if a.matcher.hits(method.as_str(), &path) => {
                let fault = a.fault;
                *armed = None;
                *lock(&state.fired) += 1;
                Some(fault)
            }
            _ => None,
        }
    };
    let mut exchange = Exchange {
        seq: 0,
        check: String::new(),
        via: state.via.clone(),
        method: method.to_string(),
        path: path.clone(),
        request: String::from_utf8_lossy(&body).into_owned(),
        status: None,
        reply: String::new(),
        fault,
        ms: 0,
    };
    let injected = |status: u16, text: &str, mut exchange: Exchange| {
        let body = format!("{{\"error\":\"{text} (injected by the certification proxy)\"}}");
        exchange.status = Some(status);
        exchange.reply = body.clone();
        exchange.ms = started.elapsed().as_millis() as u64;
        state.transcript.record(exchange);
        reply(status, &body)
    };
    match fault {
        Some(Fault::Unavailable) => return injected(503, "service unavailable", exchange),
        Some(Fault::BadRequest) => return injected(400, "bad request", exchange),
        Some(Fault::Unauthorized) => return injected(401, "session expired", exchange),
        Some(Fault::Blackhole) => {
            state.transcript.record(exchange);
            tokio::time::sleep(BLACKHOLE_HOLD).await;
            return reply(504, "{}");
        }
        Some(Fault::Reset) | None => {}
    }
    let url = format!("{}{}", state.upstream, path);
    let mut forward = state.http.request(method, &url).body(body.to_vec());
    for (name, value) in headers.iter() {
        if matches!(
            name.as_str(),
            "host" | "connection" | "content-length" | "transfer-encoding" | "keep-alive"
        ) {
            continue;
        }
        forward = forward.header(name, value);
    }
    let response = match forward.send().await {
        Ok(r) => r,
        Err(e) => {
            // The target cannot be reached (refused, certificate not trusted, timed out): a
            // 502 that says why, so every check's detail names the cause.
            let e = e.without_url();
            let mut why = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                why = format!("{why}: {s}");
                source = s.source();
            }
            let body = serde_json::json!({ "error": format!("certification proxy: target unreachable: {why}") })
                .to_string();
            exchange.status = Some(502);
            exchange.reply = body.clone();
            exchange.ms = started.elapsed().as_millis() as u64;
            state.transcript.record(exchange);
            return reply(502, &body);
        }
    };
    let status = response.status();
    let reply_headers = response.headers().clone();
    let mut bytes = response.bytes().await.unwrap_or_default();
    let rewrite = lock(&state.rewrite).clone();
    if let Some(rewrite) = rewrite {
        bytes = rewrite(&String::from_utf8_lossy(&bytes))
            .into_bytes()
            .into();
    }
    exchange.status = Some(status.as_u16());
    exchange.reply = String::from_utf8_lossy(&bytes).into_owned();
    exchange.ms = started.elapsed().as_millis() as u64;
    if fault == Some(Fault::Reset) {
        exchange.status = None;
        state.transcript.record(exchange);
        reset.notify_one();
        return std::future::pending().await;
    }
    state.transcript.record(exchange);
    let mut builder = hyper::Response::builder().status(status.as_u16());
    for (name, value) in reply_headers.iter() {
        if matches!(
            name.as_str(),
            "connection" | "content-length" | "transfer-encoding" | "keep-alive"
        ) {
            continue;
        }
        builder = builder.header(name.as_str(), value.as_bytes());
    }
    builder
        .body(axum::body::Body::from(bytes))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_reach_the_transcript() {
        let secrets = vec!["s3cret".to_string()];
        let body = r#"{"UserName":"qlab","Password":"s3cret","note":"pw s3cret"}"#;
        let out = redact("/redfish/v1/x", body, &secrets);
        assert!(!out.contains("s3cret"), "{out}");
        assert_eq!(redact("/api/session", "\"token\"", &secrets), "[redacted]");
    }
}
