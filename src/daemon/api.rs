//! The engine's HTTP API (`docs/formats/http-api.md`): router, bearer-token check, request
//! bounds and the one error shape `{"error": "<what is wrong>", "reason": "<counter>"}`. The
//! handlers are in [`super::routes`]; every refusal is counted under its reason (shown by
//! `GET /api/v1/health`) and logged (R18).
//!
//! | request | success | refusals (status `reason`) |
//! |---|---|---|
//! | any but health and openapi.json | | 401 `unauthorized` (no or wrong `Authorization: Bearer`), 403 `forbidden` (the token lacks the route's scope, [`super::auth`]), 503 `overloaded` (more than [`MAX_IN_FLIGHT`] in flight), 408 `request_timeout` (over [`REQUEST_TIMEOUT`]), 404 `not_found` (no such path), 405 `method_not_allowed` |
//! | `POST /detections` | 202 `{"id","disposition","lserver","operation"}` once journaled (R7) | 413 `body_too_large`, 400 `malformed_json` / `unknown_field` / `invalid_field` / `unknown_source` / `invalid_detection`, 503 `halted`, 500 `journal_error` |
//! | `GET /lservers?offset&limit` | 200 `{"lservers","total","next"}` (pages of at most 1000) | 400 `bad_request` |
//! | `GET /lservers/{path}` | 200 the L-Server view | 404 `unknown_lserver` |
//! | `POST /lservers/{path}/quarantine\|release\|decide` | 202 `{"operation","lserver","action"}` once journaled | 404 `unknown_lserver` / `not_found` (other action), 409 `not_allowed`, 429 `queue_full`, 400 `invalid_field` (choice) / `unknown_field` / `malformed_json`, 413, 503 `halted` |
//! | `GET /operations/{id}` | 200 the operation view | 400 `bad_request`, 404 `not_found` |
//! | `GET /alerts?since&limit` | 200 `{"alerts","next"}` (at most 1000) | 400 `bad_request` |
//! | `GET /metrics` (scope `read`) | 200 Prometheus text format 0.0.4 (docs/metrics.md) | |
//! | `POST /policy/reload` (scope `operate`) | 200 `{"policy","changed","restart_needed"}` | 422 `policy_invalid` (the old policy stays; the error names file, line and key) |
//! | `GET /openapi.json` (no token) | 200 the OpenAPI 3.0 document ([`openapi`]) | |
//! | `GET /health` (no token) | 200 `{"ok":true,"halted":false,"accepted","rejected","tls_insecure":[...]}` | 503 with `"ok":false,"halted":true` after a journal failure |
//!
//! The routes are the entries of [`openapi::ROUTES`]: the router and the document are built
//! from that one table.
//!
//! The content type of a request body is not checked: the body must simply be JSON (AV
//! server scripts often forget the header). Bodies of quarantine and release may be empty.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::handler::Handler;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use super::auth::{Caller, Scope, Tokens};
use super::metrics::{Metrics, Reject};
use super::policy::PolicyReloader;
use super::routes;
use crate::engine::{Engine, EngineError};
use openapi::{ErrorBody, Method, Op};

/// Longest time one request may take, body upload included (a slow client cannot hold a
/// slot forever).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Most requests handled at once; more get 503 with a reason.
pub const MAX_IN_FLIGHT: usize = 128;

/// The path that needs no token.
pub const HEALTH_PATH: &str = "/api/v1/health";

// The document is part of the API: it is built from the table this router routes.
#[path = "openapi.rs"]
pub(crate) mod openapi;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct ApiState {
    pub engine: Arc<Engine>,
    pub metrics: Arc<Metrics>,
    /// The accepted tokens, known by their SHA-256 only: comparing digests takes the same time
    /// whatever the input's length or content (no timing oracle on a token).
    tokens: Arc<Tokens>,
    /// AV server names of the topology (a detection's `source` must be one).
    pub sources: Arc<HashSet<String>>,
    in_flight: Arc<Semaphore>,
    /// `api.max_body_bytes`, enforced by the limit layer; kept here for the 413 message.
    max_body_bytes: usize,
    /// Devices whose certificates are not verified (`tls_insecure`), reported by `/health`.
    pub tls_insecure: Arc<Vec<String>>,
    /// Policy reloads (`POST /policy/reload`, SIGHUP).
    pub reloader: Arc<PolicyReloader>,
}

impl ApiState {
    /// Counts and logs a rejection and builds its reply.
    pub fn reject(&self, status: StatusCode, reason: Reject, message: String) -> ApiError {
        self.metrics.reject(reason, &message);
        ApiError {
            status,
            reason,
            message,
        }
    }

    /// Maps an engine refusal onto its status and reason.
    pub fn engine_error(&self, error: EngineError) -> ApiError {
        let (status, reason) = match &error {
            EngineError::Invalid(_) => (StatusCode::BAD_REQUEST, Reject::InvalidDetection),
            EngineError::UnknownLServer(_) => (StatusCode::NOT_FOUND, Reject::UnknownLServer),
            EngineError::NotAllowed(_) => (StatusCode::CONFLICT, Reject::NotAllowed),
            EngineError::QueueFull(_) => (StatusCode::TOO_MANY_REQUESTS, Reject::QueueFull),
            EngineError::Halted => (StatusCode::SERVICE_UNAVAILABLE, Reject::Halted),
            EngineError::Journal(_) => (StatusCode::INTERNAL_SERVER_ERROR, Reject::JournalError),
        };
        self.reject(status, reason, error.to_string())
    }

    /// The body of a request, or 413 / 400 with a reason.
    pub fn body(&self, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
        body.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                self.reject(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Reject::BodyTooLarge,
                    format!(
                        "request body too large: the limit is {} bytes (api.max_body_bytes)",
                        self.max_body_bytes
                    ),
                )
            } else {
                self.reject(
                    StatusCode::BAD_REQUEST,
                    Reject::MalformedJson,
                    format!("cannot read the request body: {rejection}"),
                )
            }
        })
    }

    /// Parses a JSON body, telling syntax errors, unknown fields and bad values apart.
    pub fn json<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, ApiError> {
        serde_json::from_slice(bytes).map_err(|e| {
            let text = e.to_string();
            let reason = match e.classify() {
                serde_json::error::Category::Data if text.starts_with("unknown field") => {
                    Reject::UnknownField
                }
                serde_json::error::Category::Data => Reject::InvalidField,
                _ => Reject::MalformedJson,
            };
            let message = match reason {
                Reject::MalformedJson => format!("malformed JSON: {text}"),
                _ => format!("invalid request: {text}"),
            };
            self.reject(StatusCode::BAD_REQUEST, reason, message)
        })
    }
}

/// A refused request: status plus `{"error": message, "reason": reason}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    reason: Reject,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.message,
                reason: self.reason.as_str(),
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"qlab\""),
            );
        }
        response
    }
}

/// Builds the API router.
pub(crate) fn router(
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    tokens: Tokens,
    max_body_bytes: usize,
    tls_insecure: Vec<String>,
    reloader: Arc<PolicyReloader>,
) -> Router {
    let sources = engine
        .site()
        .topology
        .av_servers
        .iter()
        .map(|a| a.name.clone())
        .collect();
    let state = ApiState {
        engine,
        metrics,
        tokens: Arc::new(tokens),
        sources: Arc::new(sources),
        in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        max_body_bytes,
        tls_insecure: Arc::new(tls_insecure),
        reloader,
    };
    // Each route states the scope it needs in the table (R18, least privilege).
    let needs = |scope: Scope| middleware::from_fn_with_state((state.clone(), scope), require);
    let mut paths: Vec<(&'static str, Vec<Method>, MethodRouter<ApiState>)> = Vec::new();
    for route in openapi::ROUTES {
        let filter = match route.method {
            Method::Get => MethodFilter::GET,
            Method::Post => MethodFilter::POST,
        };
        macro_rules! handler {
            ($h:expr) => {
                match route.scope {
                    Some(scope) => on(filter, $h.layer(needs(scope))),
                    None => on(filter, $h),
                }
            };
        }
        let method_router = match route.op {
            Op::Health => handler!(routes::health),
            Op::OpenApi => handler!(routes::openapi),
            Op::PostDetection => handler!(routes::post_detection),
            Op::ListLServers => handler!(routes::list_lservers),
            Op::GetLServer => handler!(routes::get_lserver),
            Op::PostLServer => handler!(routes::post_lserver),
            Op::GetOperation => handler!(routes::get_operation),
            Op::GetAlerts => handler!(routes::get_alerts),
            Op::GetMetrics => handler!(routes::get_metrics),
            Op::ReloadPolicy => handler!(routes::reload_policy),
        };
        // Several documented paths may share one routed path and handler (the L-Server
        // actions); each routed method is added once.
        match paths.iter_mut().find(|(p, _, _)| *p == route.axum_path) {
            Some((_, methods, _)) if methods.contains(&route.method) => {}
            Some((_, methods, existing)) => {
                methods.push(route.method);
                *existing = std::mem::take(existing).merge(method_router);
            }
            None => paths.push((route.axum_path, vec![route.method], method_router)),
        }
    }
    let mut router = Router::new();
    for (path, _, method_router) in paths {
        router = router.route(path, method_router);
    }
    router
        .fallback(routes::no_route)
        .method_not_allowed_fallback(routes::no_method)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// Runs before every handler: bounds in-flight requests and their duration, checks the bearer
/// token everywhere except the routes the table leaves public (health, the document; R18), and hands the [`Caller`] to the route as a
/// request extension ([`require`] checks its scope).
async fn guard(State(state): State<ApiState>, mut request: Request, next: Next) -> Response {
    let Ok(_slot) = state.in_flight.clone().try_acquire_owned() else {
        return state
            .reject(
                StatusCode::SERVICE_UNAVAILABLE,
                Reject::Overloaded,
                format!("too many requests in flight (limit {MAX_IN_FLIGHT}); retry shortly"),
            )
            .into_response();
    };
    if !openapi::is_public(request.uri().path()) {
        let caller = match check_token(&state, &request) {
            Ok(caller) => caller,
            Err(message) => {
                return state
                    .reject(
                        StatusCode::UNAUTHORIZED,
                        Reject::Unauthorized,
                        message.into(),
                    )
                    .into_response()
            }
        };
        request.extensions_mut().insert(caller);
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => state
            .reject(
                StatusCode::REQUEST_TIMEOUT,
                Reject::RequestTimeout,
                format!("request not completed within {REQUEST_TIMEOUT:?}"),
            )
            .into_response(),
    }
}

/// Runs before a routed handler: 403 `forbidden` unless the caller's token has `scope`.
async fn require(
    State((state, scope)): State<(ApiState, Scope)>,
    request: Request,
    next: Next,
) -> Response {
    let allowed = request
        .extensions()
        .get::<Caller>()
        .map(|caller| (caller.may(scope), caller.name.clone()));
    match allowed {
        Some((true, _)) => next.run(request).await,
        Some((false, name)) => {
            let message = format!(
                "token {name:?} lacks the `{}` scope that {} {} needs",
                scope.as_str(),
                request.method(),
                request.uri().path()
            );
            state
                .reject(StatusCode::FORBIDDEN, Reject::Forbidden, message)
                .into_response()
        }
        // Every routed path but health passed the token check, which names the caller.
        None => state
            .reject(
                StatusCode::UNAUTHORIZED,
                Reject::Unauthorized,
                "missing bearer token".into(),
            )
            .into_response(),
    }
}

/// Checks `Authorization: Bearer <token>` in constant time; the caller it names.
fn check_token(state: &ApiState, request: &Request) -> Result<Caller, &'static str> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Err("missing bearer token: send `Authorization: Bearer <token>`");
    };
    let value = value.as_bytes();
    // The scheme is case-insensitive (RFC 7235); exactly one space before the token.
    let token = match value.split_at_checked(7) {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case(b"bearer ") => token,
        _ => return Err("the Authorization header must use the Bearer scheme"),
    };
    state.tokens.identify(token).ok_or("invalid bearer token")
}
