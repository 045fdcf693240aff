//! The API's handlers. Each one answers JSON; refusals go through [`ApiState::reject`] so they
//! are counted and logged with their reason (R18).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::api::{ApiError, ApiState};
use super::auth::Caller;
use super::metrics::{Channel, Extra, Reject};
use crate::engine::Command;
use crate::model::{Action, Detection};

/// Largest page of `GET /lservers` and `GET /alerts`.
pub const MAX_PAGE: usize = 1000;

type ApiResult = Result<Response, ApiError>;

/// `GET /api/v1/health`: liveness, whether the engine halted, and the rejection counters.
/// 503 once the engine halted (a journal failure stops all device work).
pub(crate) async fn health(State(s): State<ApiState>) -> Response {
    let halted = s.engine.is_halted();
    let status = if halted {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = json!({
        "ok": !halted,
        "halted": halted,
        "halt_reason": s.engine.halt_reason(),
        "accepted": s.metrics.accepted_map(),
        "rejected": s.metrics.rejected_map(),
        "tls_insecure": *s.tls_insecure,
        "syslog_in": s.metrics.intake.to_json(),
    });
    (status, Json(body)).into_response()
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
    let body = json!({
        "id": receipt.id,
        "disposition": receipt.disposition.as_str(),
        "lserver": receipt.lserver,
        "operation": receipt.operation,
    });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// `offset`/`limit` of `GET /lservers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    #[serde(default)]
    offset: usize,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /api/v1/lservers?offset=N&limit=M`: a page of L-Servers in topology order;
/// `next` is the offset of the following page, `null` after the last.
pub(crate) async fn list_lservers(
    State(s): State<ApiState>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult {
    let Query(page) = query.map_err(|e| bad_query(&s, e))?;
    let limit = page.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    let all = s.engine.lservers();
    let total = all.len();
    let items: Vec<_> = all.into_iter().skip(page.offset).take(limit).collect();
    let end = page.offset.saturating_add(items.len());
    let next = (end < total).then_some(end);
    Ok(Json(json!({"lservers": items, "total": total, "next": next})).into_response())
}

/// `GET /api/v1/lservers/{path}`: `/api/v1/lservers/tenant-a/vdi-001` is `/tenant-a/vdi-001`.
pub(crate) async fn get_lserver(
    State(s): State<ApiState>,
    rest: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let path = lserver_path(&s, rest)?;
    match s.engine.lserver(&path) {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(s.reject(
            StatusCode::NOT_FOUND,
            Reject::UnknownLServer,
            format!("no L-Server {path}"),
        )),
    }
}

/// Body of `POST .../decide`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    choice: String,
}

/// Body of `POST .../quarantine` and `.../release`: empty or `{}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmptyBody {}

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
    let body = json!({"operation": id, "lserver": path, "action": action});
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
    match s.engine.operation(id).map_err(|e| s.engine_error(e))? {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(s.reject(
            StatusCode::NOT_FOUND,
            Reject::NotFound,
            format!("no operation {id}"),
        )),
    }
}

/// `since`/`limit` of `GET /alerts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertQuery {
    #[serde(default)]
    since: i64,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /api/v1/alerts?since=N&limit=M`: alerts with a sequence number above `since`, at most
/// [`MAX_PAGE`]; `next` is the `since` for the following page.
pub(crate) async fn get_alerts(
    State(s): State<ApiState>,
    query: Result<Query<AlertQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = query.map_err(|e| bad_query(&s, e))?;
    let limit = q.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    let alerts = s
        .engine
        .alerts_since(q.since, limit)
        .map_err(|e| s.engine_error(e))?;
    let next = alerts.last().map_or(q.since, |a| a.seq);
    Ok(Json(json!({"alerts": alerts, "next": next})).into_response())
}

/// `GET /api/v1/metrics`: the Prometheus text exposition (docs/metrics.md).
pub(crate) async fn get_metrics(State(s): State<ApiState>) -> Response {
    let stats = s.engine.stats();
    let sources: Vec<&str> = s
        .engine
        .site()
        .topology
        .av_servers
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    let extra = Extra {
        sources,
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
