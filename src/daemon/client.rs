//! The client side of the engine API, for `qlab engine quarantine|release|status|decide` and
//! `qlab notify`: one bounded HTTP exchange per call, replies read up to a cap, and the exit
//! code rules the CLI documents.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{StatusCode, Url};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::model::Detection;

/// Largest reply read (a full page of 1000 L-Servers is far below it).
pub const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// Most pages `status` without an L-Server follows (1000 L-Servers each).
const MAX_PAGES: usize = 1000;

/// Why a call did not get an HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The base URL is unusable.
    #[error("bad --url {0}")]
    BadUrl(String),
    /// The `--ca-file` is unusable.
    #[error("bad --ca-file: {0}")]
    BadCa(String),
    /// Connecting, sending or reading failed (engine down, timeout, cut reply).
    #[error("cannot reach the engine at {url}: {detail}")]
    Transport {
        /// The request URL.
        url: String,
        /// What failed.
        detail: String,
    },
}

/// An HTTP answer: status and body (JSON when it parses, else the text as a JSON string).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Value,
}

impl Reply {
    /// The CLI exit code for this answer: 0 for 2xx; 2 when the request itself is wrong
    /// (400 bad input, 401/403 token, 413 too large); 1 for every other refusal (404 unknown
    /// L-Server, 409 not allowed, 429 queue full, 5xx).
    pub fn exit_code(&self) -> u8 {
        match self.status {
            200..=299 => 0,
            400 | 401 | 403 | 413 => 2,
            _ => 1,
        }
    }
}

/// A client for one engine's API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: Url,
    token: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client for the engine at `url` (e.g. `http://127.0.0.1:8080`); `timeout` bounds each
    /// exchange (connect included).
    pub fn new(url: &str, token: &str, timeout: Duration) -> Result<ApiClient, ClientError> {
        ApiClient::with_ca(url, token, timeout, None)
    }

    /// [`ApiClient::new`] for an engine serving HTTPS with a certificate signed by a CA of
    /// `ca_pem` (a PEM bundle, `--ca-file`): only those CAs are trusted then, not the built-in
    /// web roots, as for a device's `ca_file`.
    pub fn with_ca(
        url: &str,
        token: &str,
        timeout: Duration,
        ca_pem: Option<&[u8]>,
    ) -> Result<ApiClient, ClientError> {
        let base = Url::parse(url).map_err(|e| ClientError::BadUrl(format!("{url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(ClientError::BadUrl(format!(
                "{url:?}: use http://HOST:PORT"
            )));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout);
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError::BadCa(format!("not a PEM certificate bundle: {e}")))?;
            if certs.is_empty() {
                return Err(ClientError::BadCa(
                    "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into(),
                ));
            }
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::BadUrl(format!("cannot build an HTTP client: {e}")))?;
        Ok(ApiClient {
            base,
            token: token.to_string(),
            http,
        })
    }

    /// `{base}/api/v1/{segments...}`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        url
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &Url,
    ) -> Result<Reply, ClientError> {
        // With its causes: reqwest's own text ("error sending request") hides why (connection
        // refused, certificate not trusted).
        let transport = |e: reqwest::Error| ClientError::Transport {
            url: url.to_string(),
            detail: super::log::Chain(&e).to_string(),
        };
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        if response
            .content_length()
            .is_some_and(|n| n > MAX_REPLY_BYTES as u64)
        {
            return Err(ClientError::Transport {
                url: url.to_string(),
                detail: format!("reply larger than {MAX_REPLY_BYTES} bytes"),
            });
        }
        let bytes = response.bytes().await.map_err(transport)?;
        if bytes.len() > MAX_REPLY_BYTES {
            return Err(ClientError::Transport {
                url: url.to_string(),
                detail: format!("reply larger than {MAX_REPLY_BYTES} bytes"),
            });
        }
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(Reply { status, body })
    }

    /// `GET /api/v1/{segments}` with `query`.
    pub async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Reply, ClientError> {
        let url = self.url(segments);
        self.send(self.http.get(url.clone()).query(query), &url)
            .await
    }

    /// `POST /api/v1/{segments}` with a JSON body.
    pub async fn post(&self, segments: &[&str], body: &Value) -> Result<Reply, ClientError> {
        let url = self.url(segments);
        self.send(self.http.post(url.clone()).json(body), &url)
            .await
    }

    /// `POST /lservers/{path}/{action}`; `choice` for `decide`.
    pub async fn command(
        &self,
        lserver: &str,
        action: &str,
        choice: Option<&str>,
    ) -> Result<Reply, ClientError> {
        let mut segments = vec!["lservers"];
        segments.extend(path_segments(lserver));
        segments.push(action);
        let body = match choice {
            Some(c) => json!({ "choice": c }),
            None => json!({}),
        };
        self.post(&segments, &body).await
    }

    /// One L-Server, or every L-Server (following the pages) as `{"lservers": [...]}`.
    pub async fn status(&self, lserver: Option<&str>) -> Result<Reply, ClientError> {
        if let Some(path) = lserver {
            let mut segments = vec!["lservers"];
            segments.extend(path_segments(path));
            return self.get(&segments, &[]).await;
        }
        let mut all = Vec::new();
        let mut offset = 0u64;
        for _ in 0..MAX_PAGES {
            let page = self
                .get(&["lservers"], &[("offset", offset.to_string())])
                .await?;
            if page.status != StatusCode::OK.as_u16() {
                return Ok(page);
            }
            if let Some(items) = page.body.get("lservers").and_then(Value::as_array) {
                all.extend(items.iter().cloned());
            }
            match page.body.get("next").and_then(Value::as_u64) {
                Some(next) if next > offset => offset = next,
                _ => break,
            }
        }
        let total = all.len();
        Ok(Reply {
            status: StatusCode::OK.as_u16(),
            body: json!({ "lservers": all, "total": total }),
        })
    }

    /// `POST /detections`, retried on transport errors and 5xx: `attempts` tries in all,
    /// waiting `backoff`, then twice that, and so on (capped at 5 s). Re-sending is safe: the
    /// event id makes a repeat a duplicate (R4). Returns the last answer or error.
    pub async fn notify(
        &self,
        detection: &Detection,
        attempts: u32,
        backoff: Duration,
    ) -> Result<Reply, ClientError> {
        let body = serde_json::to_value(detection).unwrap_or(Value::Null);
        let mut wait = backoff;
        let mut last = None;
        for attempt in 1..=attempts.max(1) {
            let result = self.post(&["detections"], &body).await;
            let retry = match &result {
                Ok(reply) => reply.status >= 500,
                Err(ClientError::Transport { .. }) => true,
                Err(ClientError::BadUrl(_) | ClientError::BadCa(_)) => false,
            };
            if !retry || attempt == attempts.max(1) {
                return result;
            }
            match &result {
                Ok(reply) => eprintln!(
                    "attempt {attempt}: engine answered {}; retrying",
                    reply.status
                ),
                Err(e) => eprintln!("attempt {attempt}: {e}; retrying"),
            }
            last = Some(result);
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
        last.unwrap_or_else(|| Err(ClientError::BadUrl("no attempt made".into())))
    }
}

/// An L-Server path as URL segments: `/tenant-a/vdi-001` → `tenant-a`, `vdi-001`.
fn path_segments(lserver: &str) -> impl Iterator<Item = &str> {
    lserver.split('/').filter(|s| !s.is_empty())
}

/// The event id `qlab notify` uses when none is given: `notify-` and 16 hex digits of the
/// SHA-256 of the detection's fields and the current UTC minute. Computed once per run, so
/// the run's own retries repeat it and the engine dedupes them (R4); an AV server that runs
/// the command twice for one event within the minute is deduped the same way. A later run is
/// a new event on purpose: a re-infection after a release must act again, and a repeat while
/// the L-Server is still quarantined adds no device call anyway (R4).
pub fn default_event_id(detection: &Detection) -> String {
    let minute = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60);
    let fields = [
        detection.source.as_str(),
        &detection.ip.map(|ip| ip.to_string()).unwrap_or_default(),
        detection.mac.as_deref().unwrap_or_default(),
        detection.hostname.as_deref().unwrap_or_default(),
        detection.threat.as_str(),
        detection.category.as_str(),
        &minute.to_string(),
    ];
    let mut hasher = Sha256::new();
    for field in fields {
        // Length-prefixed so ("ab", "c") and ("a", "bc") differ.
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("notify-{hex}")
}
