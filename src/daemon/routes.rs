//! The API's handlers. Each one answers JSON; refusals go through [`ApiState::reject`] so they
//! are counted and logged with their reason (R18).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::api::{ApiError, ApiState};
use super::auth::Caller;
use super::metrics::{Channel, Extra, Reject};
use crate::engine::{Alert, Command, Disposition, LServerView};
use crate::model::{Action, Detection};

/// Largest page of `GET /lservers` and `GET /alerts`.
pub const MAX_PAGE: usize = 1000;

/// The page size a `limit` asks for: [`MAX_PAGE`] when absent, else clamped to 1..=MAX_PAGE.
fn page_limit(limit: Option<usize>) -> usize {
    limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE)
}

type ApiResult = Result<Response, ApiError>;

/// Body of `GET /api/v1/health`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct HealthReply {
    /// `false` once the engine halted.
    ok: bool,
    /// Whether a journal failure or a panicking engine task stopped all device work.
    halted: bool,
    /// Why the engine halted (absent while it runs).
    halt_reason: Option<String>,
    /// Detections accepted, per channel (`api`, `syslog`, ...).
    accepted: BTreeMap<&'static str, u64>,
    /// Refusals per reason (only reasons counted at least once).
    rejected: BTreeMap<&'static str, u64>,
    /// Devices whose certificates are not verified (`tls_insecure`).
    tls_insecure: Vec<String>,
    /// The syslog intake's buffer and queue.
    syslog_in: super::metrics::IntakeHealth,
}

/// `GET /api/v1/health`: liveness, whether the engine halted, and the rejection counters.
/// 503 once the engine halted (a journal failure stops all device work).
pub(crate) async fn health(State(s): State<ApiState>) -> Response {
    let halted = s.engine.is_halted();
    let status = if halted {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = HealthReply {
        ok: !halted,
        halted,
        halt_reason: s.engine.halt_reason(),
        accepted: s.metrics.accepted_map(),
        rejected: s.metrics.rejected_map(),
        tls_insecure: s.tls_insecure.to_vec(),
        syslog_in: s.metrics.intake.health(),
    };
    (status, Json(body)).into_response()
}

/// `GET /api/v1/openapi.json`: the API's OpenAPI document ([`super::api::openapi`]), built
/// once: the route needs no token, so a request costs no more than copying bytes.
pub(crate) async fn openapi() -> Response {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = DOCUMENT.get_or_init(|| super::api::openapi::document().to_string());
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        text.clone(),
    )
        .into_response()
}

/// Reply of `POST /api/v1/detections`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct DetectionReceipt {
    /// Journal id of the detection (the first one's id for a repeated event).
    id: i64,
    /// What became of it.
    disposition: Disposition,
    /// The matched L-Server.
    lserver: Option<String>,
    /// The operation it started.
    operation: Option<i64>,
}

/// `POST /api/v1/detections`: 202 only once the detection is durable (R7).
pub(crate) async fn post_detection(
    State(s): State<ApiState>,
    caller: Option<Extension<Caller>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let bytes = s.body(body)?;
    let detection: Detection = s.json(&bytes)?;
    if !s.sources.contains(&detection.source) {
        let mut known: Vec<&str> = s.sources.iter().map(String::as_str).collect();
        known.sort_unstable();
        return Err(s.reject(
            StatusCode::BAD_REQUEST,
            Reject::UnknownSource,
            format!(
                "unknown source {:?}: the topology's AV servers are {}",
                detection.source,
                known.join(", ")
            ),
        ));
    }
    let receipt = s
        .engine
        .submit_detection_by(detection, caller.map(|Extension(c)| c.name))
        .await
        .map_err(|e| s.engine_error(e))?;
    s.metrics.accepted(Channel::Api);
    let body = DetectionReceipt {
        id: receipt.id,
        disposition: receipt.disposition,
        lserver: receipt.lserver,
        operation: receipt.operation,
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// `offset`/`limit` of `GET /lservers`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    /// Index of the first L-Server of the page (default 0).
    #[serde(default)]
    offset: usize,
    /// Most L-Servers in the page, 1 to 1000 (default and upper bound 1000; 0 counts as 1).
    #[serde(default)]
    limit: Option<usize>,
}

/// Reply of `GET /lservers`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct LServerPage {
    /// The page, in topology order.
    lservers: Vec<LServerView>,
    /// How many L-Servers the topology has.
    total: usize,
    /// `offset` of the following page; `null` after the last.
    next: Option<usize>,
}

/// `GET /api/v1/lservers?offset=N&limit=M`: a page of L-Servers in topology order;
/// `next` is the offset of the following page, `null` after the last.
pub(crate) async fn list_lservers(
    State(s): State<ApiState>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult {
    let Query(page) = query.map_err(|e| bad_query(&s, e))?;
    let limit = page_limit(page.limit);
    let all = s.engine.lservers();
    let total = all.len();
    let items: Vec<_> = all.into_iter().skip(page.offset).take(limit).collect();
    let end = page.offset.saturating_add(items.len());
    let next = (end < total).then_some(end);
    let page = LServerPage {
        lservers: items,
        total,
        next,
    };
    Ok(Json(page).into_response())
}

/// `GET /api/v1/lservers/{path}`: `/api/v1/lservers/tenant-a/vdi-001` is `/tenant-a/vdi-001`.
pub(crate) async fn get_lserver(
    State(s): State<ApiState>,
    rest: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let path = lserver_path(&s, rest)?;
    let view = s.engine.lserver(&path);
    json_or_404(&s, view, Reject::UnknownLServer, || {
        format!("no L-Server {path}")
    })
}

/// `view` as the JSON reply; none is a 404 counted under `reason` that says `missing`.
fn json_or_404<T: Serialize>(
    s: &ApiState,
    view: Option<T>,
    reason: Reject,
    missing: impl FnOnce() -> String,
) -> ApiResult {
    match view {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(s.reject(StatusCode::NOT_FOUND, reason, missing())),
    }
}

/// Body of `POST .../decide`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecideBody {
    /// What to do with the L-Server pending a decision.
    #[schemars(extend("enum" = ["quarantine", "reboot", "quarantine_reboot"]))]
    choice: String,
}

/// Body of `POST .../quarantine`, `.../release` and `/policy/reload`: empty or `{}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmptyBody {}

/// Reply of `POST /lservers/{path}/quarantine|release|decide`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct CommandReceipt {
    /// Id of the queued operation (`GET /operations/{id}`).
    operation: i64,
    /// The L-Server's path.
    lserver: String,
    /// The action asked for.
    #[schemars(extend("enum" = ["quarantine", "release", "decide"]))]
    action: String,
}

/// `POST /api/v1/lservers/{path}/quarantine|release|decide`: 202 `{"operation": id}` once the
/// command is durable; 404 unknown L-Server; 409 not allowed in its state.
pub(crate) async fn post_lserver(
    State(s): State<ApiState>,
    caller: Option<Extension<Caller>>,
    rest: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let full = lserver_path(&s, rest)?;
    let bytes = s.body(body)?;
    let Some((path, action)) = full.rsplit_once('/').filter(|(p, _)| !p.is_empty()) else {
        return Err(unknown_action(&s, &full));
    };
    let lserver = path.to_string();
    let command = match action {
        "quarantine" | "release" => {
            if !bytes.iter().all(u8::is_ascii_whitespace) {
                let _: EmptyBody = s.json(&bytes)?;
            }
            if action == "quarantine" {
                Command::Quarantine { lserver }
            } else {
                Command::Release { lserver }
            }
        }
        "decide" => {
            let body: DecideBody = s.json(&bytes)?;
            let choice = Action::parse(&body.choice)
                .filter(|a| *a != Action::None)
                .ok_or_else(|| {
                    s.reject(
                        StatusCode::BAD_REQUEST,
                        Reject::InvalidField,
                        format!(
                            "choice {:?} is not one of quarantine, reboot, quarantine_reboot",
                            body.choice
                        ),
                    )
                })?;
            Command::Decide { lserver, choice }
        }
        _ => return Err(unknown_action(&s, &full)),
    };
    let path = command.lserver().to_string();
    let by = caller.map(|Extension(c)| c.name);
    let id = s
        .engine
        .submit_command_by(command, by.clone())
        .await
        .map_err(|e| s.engine_error(e))?;
    // The journal has it too (`operations.requested_by`); the log line is for the operator.
    tracing::info!(lserver = %path, action, operation = id, token = by.as_deref().unwrap_or("-"), "command accepted");
    let body = CommandReceipt {
        operation: id,
        lserver: path,
        action: action.to_string(),
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// `GET /api/v1/operations/{id}`: status, outcome and `requested_by`, the name of the token
/// whose command queued it (`null` when a detection did).
pub(crate) async fn get_operation(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let Path(text) = id.map_err(|e| bad_path(&s, e))?;
    let Ok(id) = text.parse::<i64>() else {
        return Err(s.reject(
            StatusCode::BAD_REQUEST,
            Reject::BadRequest,
            format!("operation id {text:?} is not a number"),
        ));
    };
    let view = s.engine.operation(id).map_err(|e| s.engine_error(e))?;
    json_or_404(&s, view, Reject::NotFound, || format!("no operation {id}"))
}

/// `since`/`limit` of `GET /alerts`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertQuery {
    /// Sequence number after which alerts are listed (default 0: from the first).
    #[serde(default)]
    since: i64,
    /// Most alerts listed, 1 to 1000 (default and upper bound 1000; 0 counts as 1).
    #[serde(default)]
    limit: Option<usize>,
}

/// Reply of `GET /alerts`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct AlertPage {
    /// Alerts in sequence order.
    alerts: Vec<Alert>,
    /// `since` for the following page.
    next: i64,
}

/// `GET /api/v1/alerts?since=N&limit=M`: alerts with a sequence number above `since`, at most
/// [`MAX_PAGE`]; `next` is the `since` for the following page.
pub(crate) async fn get_alerts(
    State(s): State<ApiState>,
    query: Result<Query<AlertQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = query.map_err(|e| bad_query(&s, e))?;
    let limit = page_limit(q.limit);
    let alerts = s
        .engine
        .alerts_since(q.since, limit)
        .map_err(|e| s.engine_error(e))?;
    let next = alerts.last().map_or(q.since, |a| a.seq);
    Ok(Json(AlertPage { alerts, next }).into_response())
}

/// `GET /api/v1/metrics`: the Prometheus text exposition (docs/metrics.md).
pub(crate) async fn get_metrics(State(s): State<ApiState>) -> Response {
    let stats = s.engine.stats();
    let extra = Extra {
        // The exposition sorts its series itself: the set's order does not show.
        sources: s.sources.iter().map(String::as_str).collect(),
        halted: s.engine.is_halted(),
        policy_reloads: s.reloader.counts(),
    };
    let text = s.metrics.render(&stats, &extra);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// `POST /api/v1/policy/reload`: re-reads the topology file's `[policy]`; 422 with the
/// file's error, the old policy kept, when the file is invalid.
pub(crate) async fn reload_policy(
    State(s): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let bytes = s.body(body)?;
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        let _: EmptyBody = s.json(&bytes)?;
    }
    match s.reloader.reload("api").await {
        Ok(report) => Ok(Json(report).into_response()),
        Err(error) => Err(s.reject(
            StatusCode::UNPROCESSABLE_ENTITY,
            Reject::PolicyInvalid,
            format!("policy not reloaded, the running policy stays: {error}"),
        )),
    }
}

/// Any other path.
pub(crate) async fn no_route(State(s): State<ApiState>, uri: Uri) -> ApiError {
    s.reject(
        StatusCode::NOT_FOUND,
        Reject::NotFound,
        format!("no such endpoint {}", uri.path()),
    )
}

/// A known path with the wrong method.
pub(crate) async fn no_method(State(s): State<ApiState>, uri: Uri) -> ApiError {
    s.reject(
        StatusCode::METHOD_NOT_ALLOWED,
        Reject::MethodNotAllowed,
        format!("method not allowed on {}", uri.path()),
    )
}

/// The L-Server path of a `{*rest}` capture, with its leading slash.
fn lserver_path(
    s: &ApiState,
    rest: Result<Path<String>, PathRejection>,
) -> Result<String, ApiError> {
    let Path(rest) = rest.map_err(|e| bad_path(s, e))?;
    let trimmed = rest.trim_start_matches('/');
    Ok(format!("/{trimmed}"))
}

fn unknown_action(s: &ApiState, full: &str) -> ApiError {
    s.reject(
        StatusCode::NOT_FOUND,
        Reject::NotFound,
        format!("POST {full}: the path must end in /quarantine, /release or /decide"),
    )
}

fn bad_path(s: &ApiState, e: PathRejection) -> ApiError {
    s.reject(
        StatusCode::BAD_REQUEST,
        Reject::BadRequest,
        format!("bad path: {e}"),
    )
}

fn bad_query(s: &ApiState, e: QueryRejection) -> ApiError {
    s.reject(
        StatusCode::BAD_REQUEST,
        Reject::BadRequest,
        format!("bad query: {}", e.body_text()),
    )
}
