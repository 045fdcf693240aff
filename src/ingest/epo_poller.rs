//! The ePO Web API poller: pulls threat events with `core.executeQuery` past an `AutoID`
//! cursor.
//!
//! One poll is one call:
//! `GET {url}/remote/core.executeQuery?target=EPOEvents&select=(select (top N) EPOEvents.AutoID ...)&where=(where (gt EPOEvents.AutoID <cursor>))&order=(order (asc EPOEvents.AutoID))&:output=json`
//! with HTTP Basic. The reply is `OK:` and a JSON array of rows keyed `EPOEvents.<column>`, or
//! `Error <code> :` and a message.
//!
//! Choices:
//! - `where` is wrapped in `(where ...)` and the batch is bounded with `(top N)`, as ePO's
//!   query language (SQUID) spells them in public clients; rows are still sorted and cut to N
//!   here, so a server that ignores `top` cannot make a batch unbounded.
//! - At least once: [`EpoPoller::poll_once`] does not keep the cursor; the caller stores the
//!   detections durably, then the new cursor. A crash in between re-reads the batch, and the
//!   event id lets R4 drop the repeats.
//! - Event id: `epo-<AgentGUID>-<ThreatEventID>-<DetectedUTC>` when the row has all three, the
//!   id ePO's syslog forwarding gets ([`super::epo`]), so one event read both ways (or stored
//!   twice by the server) is one event; `epo-autoid-<AutoID>` otherwise.
//! - A row that cannot become a detection (no threat name, no match key, a bad address) is set
//!   aside in [`EpoPoller::take_rejected`] and the cursor still moves past it: one bad row must
//!   not stall every later detection. The whole reply is refused only when it is not the
//!   documented shape (then the cursor stays, and the next poll retries).
//! - ePO returns IPv4 columns as signed 32-bit integers ([`super::epo::ipv4_from_signed`]);
//!   a dotted string is accepted too.
//! - 401 and 403 are authentication failures; `Error <code> :` is a remote failure whatever
//!   the HTTP status (the status ePO uses for it is unconfirmed).

use std::time::Duration;

use serde_json::{Map, Value};

use super::epo::{category, ipv4_from_signed};
use super::IngestError;
use crate::model::{normalize_mac, Detection};

/// Rows asked for per poll unless [`EpoPoller::with_batch`] says otherwise.
pub const DEFAULT_BATCH: usize = 500;
/// Largest batch accepted by [`EpoPoller::with_batch`].
pub const MAX_BATCH: usize = 5000;
/// Largest reply body read; a bigger one is an error rather than an allocation.
pub const MAX_REPLY_BYTES: usize = 8 * 1024 * 1024;

/// The columns asked for, in order.
pub const COLUMNS: [&str; 10] = [
    "EPOEvents.AutoID",
    "EPOEvents.AgentGUID",
    "EPOEvents.DetectedUTC",
    "EPOEvents.TargetIPV4",
    "EPOEvents.TargetHostName",
    "EPOEvents.TargetMAC",
    "EPOEvents.ThreatName",
    "EPOEvents.ThreatCategory",
    "EPOEvents.ThreatType",
    "EPOEvents.ThreatEventID",
];

/// One ePO server's poller.
pub struct EpoPoller {
    source: String,
    base_url: String,
    user: String,
    password: String,
    call_timeout: Duration,
    batch: usize,
    client: reqwest::Client,
    rejected: Vec<(i64, IngestError)>,
}

impl std::fmt::Debug for EpoPoller {
    // Hand-written so the password never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpoPoller")
            .field("source", &self.source)
            .field("base_url", &self.base_url)
            .field("user", &self.user)
            .field("call_timeout", &self.call_timeout)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl EpoPoller {
    /// A poller for the AV server named `source` at `base_url` (e.g. `https://epo:8443`);
    /// every call is cut at `call_timeout` (R19).
    pub fn new(
        source: impl Into<String>,
        base_url: impl Into<String>,
        user: impl Into<String>,
        password: impl Into<String>,
        call_timeout: Duration,
    ) -> Result<EpoPoller, IngestError> {
        let client = build_client(call_timeout, None)?;
        Ok(EpoPoller {
            source: source.into(),
            base_url: base_url.into().trim_end_matches('/').to_string(),
            user: user.into(),
            password: password.into(),
            call_timeout,
            batch: DEFAULT_BATCH,
            client,
            rejected: Vec::new(),
        })
    }

    /// Also trusts the CA certificate(s) in `pem`: ePO serves a certificate signed by its own
    /// CA on 8443. There is deliberately no "accept any certificate" switch.
    pub fn with_ca_pem(mut self, pem: &[u8]) -> Result<Self, IngestError> {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| IngestError::Transport(format!("bad CA certificate: {e}")))?;
        if certs.is_empty() {
            return Err(IngestError::Transport(
                "no certificate in the CA PEM".into(),
            ));
        }
        self.client = build_client(self.call_timeout, Some(certs))?;
        Ok(self)
    }

    /// Sets the rows per poll (clamped to 1..=[`MAX_BATCH`]).
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.clamp(1, MAX_BATCH);
        self
    }

    /// The AV server name detections carry.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The query URL for `cursor`.
    pub fn query_url(&self, cursor: i64) -> Result<reqwest::Url, IngestError> {
        let base = format!("{}/remote/core.executeQuery", self.base_url);
        let mut url = reqwest::Url::parse(&base)
            .map_err(|e| IngestError::Transport(format!("bad ePO URL `{base}`: {e}")))?;
        let select = format!("(select (top {}) {})", self.batch, COLUMNS.join(" "));
        url.query_pairs_mut()
            .append_pair("target", "EPOEvents")
            .append_pair("select", &select)
            .append_pair("where", &format!("(where (gt EPOEvents.AutoID {cursor}))"))
            .append_pair("order", "(order (asc EPOEvents.AutoID))");
        // `:output` is appended raw: ePO documents the parameter with its colon.
        let query = format!("{}&:output=json", url.query().unwrap_or(""));
        url.set_query(Some(&query));
        Ok(url)
    }

    /// One poll: the detections after `cursor` (at most one batch, ascending `AutoID`) and the
    /// cursor to store once they are durable. Rows that could not be mapped are kept for
    /// [`EpoPoller::take_rejected`].
    pub async fn poll_once(
        &mut self,
        cursor: i64,
    ) -> Result<(Vec<(i64, Detection)>, i64), IngestError> {
        let url = self.query_url(cursor)?;
        let call = async {
            let response = self
                .client
                .get(url)
                .basic_auth(&self.user, Some(&self.password))
                .send()
                .await
                .map_err(|e| IngestError::Transport(e.to_string()))?;
            let status = response.status().as_u16();
            let body = read_body(response).await?;
            Ok::<_, IngestError>((status, body))
        };
        // reqwest's own timeout covers the exchange; this one also bounds anything it does not.
        let (status, body) = tokio::time::timeout(self.call_timeout, call)
            .await
            .map_err(|_| {
                IngestError::Transport(format!("no reply within {:?}", self.call_timeout))
            })??;
        let reply = parse_reply(&self.source, status, &body, cursor, self.batch)?;
        self.rejected.extend(reply.rejected);
        Ok((reply.detections, reply.cursor))
    }

    /// Rows set aside by earlier polls, with why; the daemon counts and logs them (R18).
    pub fn take_rejected(&mut self) -> Vec<(i64, IngestError)> {
        std::mem::take(&mut self.rejected)
    }
}

fn build_client(
    timeout: Duration,
    roots: Option<Vec<reqwest::Certificate>>,
) -> Result<reqwest::Client, IngestError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout);
    for cert in roots.into_iter().flatten() {
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build()
        .map_err(|e| IngestError::Transport(format!("cannot build HTTP client: {e}")))
}

async fn read_body(mut response: reqwest::Response) -> Result<String, IngestError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| IngestError::Transport(e.to_string()))?
    {
        if body.len() + chunk.len() > MAX_REPLY_BYTES {
            return Err(IngestError::TooLarge {
                what: "ePO reply",
                len: body.len() + chunk.len(),
                limit: MAX_REPLY_BYTES,
            });
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|e| {
        IngestError::malformed(
            "ePO reply",
            "invalid UTF-8",
            Some(e.utf8_error().valid_up_to()),
        )
    })
}

/// What one reply yields.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryReply {
    /// `(AutoID, detection)` in ascending `AutoID`.
    pub detections: Vec<(i64, Detection)>,
    /// Rows that could not be mapped, with why.
    pub rejected: Vec<(i64, IngestError)>,
    /// The highest `AutoID` seen (the old cursor when there was none).
    pub cursor: i64,
}

/// Interprets one reply (pure, for tests and fixtures): status, `OK:`/`Error` body, rows after
/// `cursor`, at most `batch` of them.
pub fn parse_reply(
    source: &str,
    status: u16,
    body: &str,
    cursor: i64,
    batch: usize,
) -> Result<QueryReply, IngestError> {
    const W: &str = "ePO reply";
    let text = body.trim_start_matches('\u{feff}').trim_start();
    if status == 401 || status == 403 {
        return Err(IngestError::Auth(format!("HTTP {status}")));
    }
    if let Some(rest) = text.strip_prefix("Error") {
        let (code, message) = rest.split_once(':').unwrap_or(("", rest));
        return Err(IngestError::Remote {
            code: code.trim().parse().unwrap_or(0),
            message: message.trim().to_string(),
        });
    }
    if status != 200 {
        let start: String = text.chars().take(200).collect();
        return Err(IngestError::Status {
            status,
            body: start,
        });
    }
    let Some(json) = text.strip_prefix("OK:") else {
        return Err(IngestError::malformed(
            W,
            "expected `OK:` or `Error`",
            Some(0),
        ));
    };
    let rows: Vec<Value> = serde_json::from_str(json)
        .map_err(|e| IngestError::malformed(W, format!("JSON after `OK:`: {e}"), None))?;
    let mut keyed = Vec::with_capacity(rows.len());
    for (i, row) in rows.into_iter().enumerate() {
        let Value::Object(map) = row else {
            return Err(IngestError::malformed(
                W,
                format!("row {} is not an object", i + 1),
                None,
            ));
        };
        let Some(id) = map.get("EPOEvents.AutoID").and_then(as_i64) else {
            let detail = format!("row {} has no integer EPOEvents.AutoID", i + 1);
            return Err(IngestError::malformed(W, detail, None));
        };
        // A server that ignores the `where` clause must not replay old rows.
        if id > cursor {
            keyed.push((id, map));
        }
    }
    keyed.sort_by_key(|(id, _)| *id);
    keyed.dedup_by_key(|(id, _)| *id);
    keyed.truncate(batch.max(1));
    let mut reply = QueryReply {
        detections: Vec::new(),
        rejected: Vec::new(),
        cursor: keyed.last().map_or(cursor, |(id, _)| *id),
    };
    for (id, map) in keyed {
        match row_detection(source, id, &map) {
            Ok(d) => reply.detections.push((id, d)),
            Err(e) => reply.rejected.push((id, e)),
        }
    }
    Ok(reply)
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text<'a>(map: &'a Map<String, Value>, column: &str) -> Option<&'a str> {
    map.get(column)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Maps one row to a detection (see the module docs).
fn row_detection(
    source: &str,
    id: i64,
    map: &Map<String, Value>,
) -> Result<Detection, IngestError> {
    let bad =
        |detail: String| IngestError::malformed("ePO row", format!("AutoID {id}: {detail}"), None);
    let ip = match map.get("EPOEvents.TargetIPV4") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(v) => {
            let ip = match v {
                Value::String(s) if s.contains(['.', ':']) => s.trim().parse().ok(),
                _ => as_i64(v)
                    .and_then(ipv4_from_signed)
                    .map(std::net::IpAddr::V4),
            };
            Some(ip.ok_or_else(|| bad(format!("TargetIPV4 `{v}` is not an IPv4 address")))?)
        }
    };
    let mac = match text(map, "EPOEvents.TargetMAC") {
        Some(m) => Some(
            normalize_mac(m).ok_or_else(|| bad(format!("TargetMAC `{m}` is not a MAC address")))?,
        ),
        None => None,
    };
    let Some(threat) = text(map, "EPOEvents.ThreatName") else {
        return Err(bad("no ThreatName".into()));
    };
    let d = Detection {
        source: source.to_string(),
        event_id: match (
            text(map, "EPOEvents.AgentGUID"),
            map.get("EPOEvents.ThreatEventID").and_then(as_i64),
            text(map, "EPOEvents.DetectedUTC"),
        ) {
            (Some(guid), Some(event), Some(time)) => format!("epo-{guid}-{event}-{time}"),
            _ => format!("epo-autoid-{id}"),
        },
        ip,
        mac,
        hostname: text(map, "EPOEvents.TargetHostName").map(str::to_string),
        threat: threat.to_string(),
        category: category(
            text(map, "EPOEvents.ThreatType"),
            text(map, "EPOEvents.ThreatCategory"),
        ),
    };
    d.check().map_err(bad)?;
    Ok(d)
}
