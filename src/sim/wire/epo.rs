//! An ePO Web API simulator: `GET /remote/core.executeQuery` over a shared list of threat
//! events, in ePO's text format (`OK:` + JSON rows keyed `EPOEvents.<column>`, IPv4 columns as
//! signed 32-bit integers; `Error 0 :` + message for a query it does not understand; 401 for
//! bad credentials).
//!
//! It understands the queries [`crate::ingest::EpoPoller`] sends and the reference's bare form:
//! `target=EPOEvents`, `select=(select [(top N)] EPOEvents.X ...)`, `where=(where (gt
//! EPOEvents.AutoID N))` or `(gt EPOEvents.AutoID N)` or none, `order` ascending by AutoID (the
//! only order it produces), `:output=json`. Error replies use HTTP 400 (unconfirmed for the
//! real product; the poller reads the body whatever the status).

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use super::WireServer;
use crate::ingest::epo::ipv4_to_signed;

/// One row of the simulated `EPOEvents` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpoEventRow {
    /// `EPOEvents.AutoID`: unique, rising.
    pub auto_id: i64,
    /// `EPOEvents.AgentGUID`: the reporting agent, `{...}`.
    pub agent_guid: Option<String>,
    /// `EPOEvents.DetectedUTC`.
    pub detected_utc: String,
    /// `EPOEvents.TargetIPV4` (sent signed).
    pub target_ipv4: Option<Ipv4Addr>,
    /// `EPOEvents.TargetHostName`.
    pub target_host_name: Option<String>,
    /// `EPOEvents.TargetMAC` (ePO writes 12 hex digits).
    pub target_mac: Option<String>,
    /// `EPOEvents.ThreatName`.
    pub threat_name: String,
    /// `EPOEvents.ThreatCategory`, e.g. `av.detect`.
    pub threat_category: String,
    /// `EPOEvents.ThreatType`, e.g. `virus`.
    pub threat_type: String,
    /// `EPOEvents.ThreatEventID`, e.g. 1027.
    pub threat_event_id: i64,
}

impl EpoEventRow {
    /// The row as ePO's JSON output writes it (every column).
    pub fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let mut put = |k: &str, v: Value| {
            m.insert(format!("EPOEvents.{k}"), v);
        };
        put("AutoID", self.auto_id.into());
        put("AgentGUID", self.agent_guid.clone().into());
        put("DetectedUTC", self.detected_utc.clone().into());
        put("TargetIPV4", self.target_ipv4.map(ipv4_to_signed).into());
        put("TargetHostName", self.target_host_name.clone().into());
        put("TargetMAC", self.target_mac.clone().into());
        put("ThreatName", self.threat_name.clone().into());
        put("ThreatCategory", self.threat_category.clone().into());
        put("ThreatType", self.threat_type.clone().into());
        put("ThreatEventID", self.threat_event_id.into());
        m
    }
}

/// The events the simulator serves; tests and scenarios append to it while it runs.
pub type EpoEvents = Arc<Mutex<Vec<EpoEventRow>>>;

/// Starts the simulator behind a fault proxy; it accepts only `user` / `password`.
pub async fn start(events: EpoEvents, user: &str, password: &str) -> std::io::Result<WireServer> {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let responder = Responder {
        events,
        authorization: format!("Basic {token}"),
    };
    let mock = Mock::given(method("GET"))
        .and(path("/remote/core.executeQuery"))
        .respond_with(responder);
    WireServer::start(vec![mock]).await
}

struct Responder {
    events: EpoEvents,
    authorization: String,
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let auth = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if auth != Some(self.authorization.as_str()) {
            return ResponseTemplate::new(401).set_body_string("Unauthorized");
        }
        let params: Vec<(String, String)> = request.url.query_pairs().into_owned().collect();
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let rows = {
            // A panicked holder cannot leave the list half-written: rows are pushed whole.
            let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
            events.clone()
        };
        match answer(&rows, param) {
            Ok(body) => ResponseTemplate::new(200).set_body_string(body),
            Err(message) => {
                ResponseTemplate::new(400).set_body_string(format!("Error 0 :\n{message}"))
            }
        }
    }
}

/// The reply body for a query over `rows`, or the message of an `Error 0 :` reply.
pub fn answer<'a>(
    rows: &[EpoEventRow],
    param: impl Fn(&str) -> Option<&'a str>,
) -> Result<String, String> {
    if param("target") != Some("EPOEvents") {
        return Err(format!(
            "Unknown target: {}",
            param("target").unwrap_or("(none)")
        ));
    }
    if param(":output").is_some_and(|o| o != "json") {
        return Err("Only :output=json is simulated".into());
    }
    let (top, columns) = parse_select(param("select"))?;
    let after = parse_where(param("where"))?;
    if let Some(order) = param("order") {
        let words = words(order);
        if words != ["order", "asc", "EPOEvents.AutoID"] {
            return Err(format!("Unsupported order: {order}"));
        }
    }
    let mut selected: Vec<&EpoEventRow> = rows
        .iter()
        .filter(|r| after.is_none_or(|a| r.auto_id > a))
        .collect();
    selected.sort_by_key(|r| r.auto_id);
    selected.truncate(top.unwrap_or(usize::MAX));
    let out: Vec<Value> = selected
        .into_iter()
        .map(|r| {
            let mut m = r.to_json();
            if let Some(cols) = &columns {
                m.retain(|k, _| cols.contains(k));
            }
            Value::Object(m)
        })
        .collect();
    Ok(format!(
        "OK:\n{}",
        serde_json::to_string_pretty(&out).unwrap_or_default()
    ))
}

/// The words of an S-expression, parentheses dropped.
fn words(sexpr: &str) -> Vec<&str> {
    sexpr
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|w| !w.is_empty())
        .collect()
}

type Selection = (Option<usize>, Option<Vec<String>>);

fn parse_select(select: Option<&str>) -> Result<Selection, String> {
    let Some(select) = select else {
        return Ok((None, None));
    };
    let w = words(select);
    let Some(("select", mut rest)) = w.split_first().map(|(a, b)| (*a, b)) else {
        return Err(format!("Bad select: {select}"));
    };
    let mut top = None;
    if let ["top", n, tail @ ..] = rest {
        top = Some(n.parse::<usize>().map_err(|_| format!("Bad top: {n}"))?);
        rest = tail;
    }
    let known: Vec<String> = EpoEventRow::default_columns();
    for c in rest {
        if !known.iter().any(|k| k == c) {
            return Err(format!("Unknown column: {c}"));
        }
    }
    let columns = (!rest.is_empty()).then(|| rest.iter().map(|c| c.to_string()).collect());
    Ok((top, columns))
}

fn parse_where(clause: Option<&str>) -> Result<Option<i64>, String> {
    let Some(clause) = clause else {
        return Ok(None);
    };
    let w = words(clause);
    let w = w.strip_prefix(&["where"]).unwrap_or(&w);
    match w {
        ["gt", "EPOEvents.AutoID", n] => n
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("Bad AutoID: {n}")),
        _ => Err(format!("Unsupported where: {clause}")),
    }
}

impl EpoEventRow {
    fn default_columns() -> Vec<String> {
        [
            "AutoID",
            "AgentGUID",
            "DetectedUTC",
            "TargetIPV4",
            "TargetHostName",
            "TargetMAC",
            "ThreatName",
            "ThreatCategory",
            "ThreatType",
            "ThreatEventID",
        ]
        .iter()
        .map(|c| format!("EPOEvents.{c}"))
        .collect()
    }
}
