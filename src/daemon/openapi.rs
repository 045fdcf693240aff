//! The API's OpenAPI 3.0 document, served at `GET /api/v1/openapi.json`.
//!
//! [`ROUTES`] is the one table of the API's routes: [`super::router`] routes exactly its
//! entries (a handler per [`Op`], the scope each entry names) and [`document`] describes exactly
//! them, so a route cannot exist without its entry in the document. Request and response bodies
//! are described by schemas that schemars generates from the Rust types the handlers parse and
//! write (`SchemaSettings::openapi3`); query parameters come from the handlers' query types.
//!
//! Decisions the contract leaves open:
//! - The document needs no token, like `/api/v1/health`: it is derived from the program alone
//!   and names no token, L-Server or device, and API tools fetch it before they hold credentials.
//! - `POST /api/v1/lservers/{path}/{action}` is one handler; the document lists each action as
//!   its own path (`.../quarantine`, `.../release`, `.../decide`) because their bodies differ.
//!   The `lserver` parameter is the L-Server's path without its leading slash; its inner
//!   slashes may be sent as they are or percent-encoded (`tenant-a%2Fvdi-001`).
//! - Every refusal names the `reason` values it can carry, so a client (and a schema checker)
//!   can tell exactly which refusals a route gives.
//! - A known path asked with a method it does not serve answers 405 `method_not_allowed` with
//!   an `Allow` header; the document says so once (`info.description`,
//!   `components.responses.MethodNotAllowed`) rather than under operations that do not exist.

use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::daemon::auth::Scope;
use crate::daemon::metrics::Reject;
use crate::daemon::policy::ReloadReport;
use crate::daemon::routes::{
    AlertPage, AlertQuery, CommandReceipt, DecideBody, DetectionReceipt, EmptyBody, HealthReply,
    LServerPage, PageQuery,
};
use crate::engine::{LServerView, OperationView};
use crate::model::Detection;

/// Path of the document itself.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// The handler a route reaches ([`super::router`] maps each to its function).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Health,
    OpenApi,
    PostDetection,
    ListLServers,
    GetLServer,
    PostLServer,
    GetOperation,
    GetAlerts,
    GetMetrics,
    ReloadPolicy,
}

/// The HTTP methods the API serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
}

impl Method {
    /// Lower-case, as OpenAPI spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
        }
    }
}

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// A request or reply body.
#[derive(Clone, Copy)]
pub(crate) enum Body {
    /// JSON of the given schema.
    Json(SchemaFn),
    /// Prometheus text format 0.0.4.
    PrometheusText,
    /// Any JSON object (the document itself).
    AnyObject,
}

/// One route: where, which handler, which scope, what it takes and what it answers.
pub(crate) struct Route {
    pub method: Method,
    /// The path as the document shows it.
    pub path: &'static str,
    /// The path as the router matches it.
    pub axum_path: &'static str,
    pub op: Op,
    /// The token scope it needs; `None`: no token.
    pub scope: Option<Scope>,
    pub summary: &'static str,
    /// Request body and whether it is required.
    pub request: Option<(SchemaFn, bool)>,
    /// Query parameters, from the handler's query type.
    pub query: Option<SchemaFn>,
    /// Success status, its description and body.
    pub ok: (u16, &'static str, Body),
    /// Refusals particular to the route (the guard's are added to every route).
    pub refusals: &'static [(u16, &'static [Reject])],
}

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

const LSERVER_POST_REFUSALS: &[(u16, &[Reject])] = &[
    (
        400,
        &[
            Reject::BadRequest,
            Reject::MalformedJson,
            Reject::UnknownField,
            Reject::InvalidField,
            Reject::InvalidDetection,
        ],
    ),
    (404, &[Reject::UnknownLServer, Reject::NotFound]),
    (409, &[Reject::NotAllowed]),
    (413, &[Reject::BodyTooLarge]),
    (429, &[Reject::QueueFull]),
    (500, &[Reject::JournalError]),
    (503, &[Reject::Halted]),
];

/// `POST /api/v1/lservers/{lserver}/<action>`: one handler and one set of refusals for every
/// action; only the path, the summary and the body differ (see the module doc).
const fn lserver_post(
    path: &'static str,
    summary: &'static str,
    request: (SchemaFn, bool),
) -> Route {
    Route {
        method: Method::Post,
        path,
        axum_path: "/api/v1/lservers/{*rest}",
        op: Op::PostLServer,
        scope: Some(Scope::Operate),
        summary,
        request: Some(request),
        query: None,
        ok: (202, "Journaled", Body::Json(schema::<CommandReceipt>)),
        refusals: LSERVER_POST_REFUSALS,
    }
}

/// A `GET` that needs a `read` token and takes no body, routed at the path the document shows.
const fn read(
    path: &'static str,
    op: Op,
    summary: &'static str,
    query: Option<SchemaFn>,
    ok: (u16, &'static str, Body),
    refusals: &'static [(u16, &'static [Reject])],
) -> Route {
    Route {
        method: Method::Get,
        path,
        axum_path: path,
        op,
        scope: Some(Scope::Read),
        summary,
        request: None,
        query,
        ok,
        refusals,
    }
}

/// Every route of the API.
pub(crate) const ROUTES: &[Route] = &[
    Route {
        method: Method::Get,
        path: super::HEALTH_PATH,
        axum_path: super::HEALTH_PATH,
        op: Op::Health,
        scope: None,
        summary: "Liveness, whether the engine halted, and the refusal counters (no token)",
        request: None,
        query: None,
        ok: (200, "The engine runs", Body::Json(schema::<HealthReply>)),
        // 503 with the health body once halted: see `health_refusals` below.
        refusals: &[],
    },
    Route {
        method: Method::Get,
        path: OPENAPI_PATH,
        axum_path: OPENAPI_PATH,
        op: Op::OpenApi,
        scope: None,
        summary: "This document (no token)",
        request: None,
        query: None,
        ok: (200, "The OpenAPI document", Body::AnyObject),
        refusals: &[],
    },
    Route {
        method: Method::Post,
        path: "/api/v1/detections",
        axum_path: "/api/v1/detections",
        op: Op::PostDetection,
        scope: Some(Scope::Notify),
        summary: "Submit a detection; answered once it is journaled (R7)",
        request: Some((schema::<Detection>, true)),
        query: None,
        ok: (202, "Journaled", Body::Json(schema::<DetectionReceipt>)),
        refusals: &[
            (
                400,
                &[
                    Reject::MalformedJson,
                    Reject::UnknownField,
                    Reject::InvalidField,
                    Reject::UnknownSource,
                    Reject::InvalidDetection,
                ],
            ),
            (413, &[Reject::BodyTooLarge]),
            (500, &[Reject::JournalError]),
            (503, &[Reject::Halted]),
        ],
    },
    read(
        "/api/v1/lservers",
        Op::ListLServers,
        "A page of L-Servers in topology order",
        Some(schema::<PageQuery>),
        (200, "A page", Body::Json(schema::<LServerPage>)),
        &[(400, &[Reject::BadRequest])],
    ),
    Route {
        axum_path: "/api/v1/lservers/{*rest}",
        ..read(
            "/api/v1/lservers/{lserver}",
            Op::GetLServer,
            "One L-Server",
            None,
            (200, "The L-Server", Body::Json(schema::<LServerView>)),
            &[
                (400, &[Reject::BadRequest]),
                (404, &[Reject::UnknownLServer]),
            ],
        )
    },
    lserver_post(
        "/api/v1/lservers/{lserver}/quarantine",
        "Quarantine an L-Server by hand; answered once the command is journaled",
        (schema::<EmptyBody>, false),
    ),
    lserver_post(
        "/api/v1/lservers/{lserver}/release",
        "Release a quarantined L-Server; answered once the command is journaled",
        (schema::<EmptyBody>, false),
    ),
    lserver_post(
        "/api/v1/lservers/{lserver}/decide",
        "Decide for an L-Server pending a decision; answered once journaled",
        (schema::<DecideBody>, true),
    ),
    read(
        "/api/v1/operations/{id}",
        Op::GetOperation,
        "One operation: status, outcome, who requested it",
        None,
        (200, "The operation", Body::Json(schema::<OperationView>)),
        &[
            (400, &[Reject::BadRequest]),
            (404, &[Reject::NotFound]),
            (500, &[Reject::JournalError]),
        ],
    ),
    read(
        "/api/v1/alerts",
        Op::GetAlerts,
        "Alerts after a sequence number",
        Some(schema::<AlertQuery>),
        (200, "A page of alerts", Body::Json(schema::<AlertPage>)),
        &[(400, &[Reject::BadRequest]), (500, &[Reject::JournalError])],
    ),
    read(
        "/api/v1/metrics",
        Op::GetMetrics,
        "Prometheus text exposition (docs/metrics.md)",
        None,
        (200, "The metrics", Body::PrometheusText),
        &[],
    ),
    Route {
        method: Method::Post,
        path: "/api/v1/policy/reload",
        axum_path: "/api/v1/policy/reload",
        op: Op::ReloadPolicy,
        scope: Some(Scope::Operate),
        summary: "Re-read the topology file's [policy]",
        request: Some((schema::<EmptyBody>, false)),
        query: None,
        ok: (200, "Reloaded", Body::Json(schema::<ReloadReport>)),
        refusals: &[
            (
                400,
                &[
                    Reject::MalformedJson,
                    Reject::UnknownField,
                    Reject::InvalidField,
                ],
            ),
            (413, &[Reject::BodyTooLarge]),
            (422, &[Reject::PolicyInvalid]),
        ],
    },
];

/// Whether a request path needs no token.
pub(crate) fn is_public(path: &str) -> bool {
    ROUTES
        .iter()
        .any(|r| r.scope.is_none() && r.axum_path == path)
}

/// The body of every refusal: `{"error": "<what is wrong>", "reason": "<counter>"}`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct ErrorBody {
    /// What is wrong, for a person.
    pub error: String,
    /// The stable reason, the counter it is counted under (`GET /api/v1/health`).
    pub reason: &'static str,
}

/// The OpenAPI 3.0 document of the API.
pub fn document() -> Value {
    let mut out = SchemaSettings::openapi3().for_serialize().into_generator();
    let mut inp = SchemaSettings::openapi3()
        .for_deserialize()
        .into_generator();
    let error = out.subschema_for::<ErrorBody>();
    let health = out.subschema_for::<HealthReply>();
    let mut paths = Map::new();
    for route in ROUTES {
        let operation = operation(route, &mut out, &mut inp, &error, &health);
        let item = paths
            .entry(route.path)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("path items are objects");
        item.insert(route.method.as_str().into(), operation);
    }
    let mut schemas = out.take_definitions(true);
    for (name, schema) in inp.take_definitions(true) {
        // A type both read and written keeps the name of its written form; a different read
        // form gets its own name.
        match schemas.get(&name) {
            Some(existing) if *existing != schema => {
                schemas.insert(format!("{name}Input"), schema);
            }
            _ => {
                schemas.insert(name, schema);
            }
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "qlab engine API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The quarantine engine's HTTP API (docs/formats/http-api.md). \
                Every request but `/api/v1/health` and `/api/v1/openapi.json` needs \
                `Authorization: Bearer <token>` whose scope covers the route (notify, read, \
                operate). Every refusal is `{\"error\", \"reason\"}`. A known path asked with \
                another method answers 405 `method_not_allowed` with an `Allow` header; an \
                unknown path answers 404 `not_found`. Request bodies must be JSON whatever \
                their Content-Type says.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "MethodNotAllowed": refusal("A known path asked with a method it does not \
                    serve; `Allow` lists the ones it does", &error, &[Reject::MethodNotAllowed]),
                "NotFound": refusal("No such path", &error, &[Reject::NotFound]),
            },
        },
    })
}

fn operation(
    route: &Route,
    out: &mut SchemaGenerator,
    inp: &mut SchemaGenerator,
    error: &Schema,
    health: &Schema,
) -> Value {
    let mut op = Map::new();
    op.insert("summary".into(), route.summary.into());
    op.insert(
        "operationId".into(),
        format!("{}{}", route.method.as_str(), route.path).into(),
    );
    let mut parameters = Vec::new();
    if route.path.contains("{lserver}") {
        parameters.push(json!({
            "name": "lserver", "in": "path", "required": true,
            "description": "The L-Server's path without its leading slash \
                (`tenant-a/vdi-001`); inner slashes may be percent-encoded.",
            "schema": {"type": "string", "minLength": 1},
        }));
    }
    if route.path.contains("{id}") {
        parameters.push(json!({
            "name": "id", "in": "path", "required": true,
            "description": "The operation's id.",
            "schema": {"type": "integer", "format": "int64"},
        }));
    }
    if let Some(query) = route.query {
        parameters.extend(query_parameters(query));
    }
    if !parameters.is_empty() {
        op.insert("parameters".into(), parameters.into());
    }
    if let Some((body, required)) = route.request {
        let schema = body(inp);
        op.insert(
            "requestBody".into(),
            json!({"required": required, "content": {"application/json": {"schema": schema}}}),
        );
    }
    let mut responses = Map::new();
    let (status, description, body) = route.ok;
    let content = match body {
        Body::Json(f) => json!({"application/json": {"schema": f(out)}}),
        Body::PrometheusText => json!({"text/plain": {"schema": {"type": "string"}}}),
        Body::AnyObject => json!({"application/json": {"schema": {"type": "object"}}}),
    };
    responses.insert(
        status.to_string(),
        json!({"description": description, "content": content}),
    );
    // The guard's refusals, on every route.
    let mut refusals: Vec<(u16, Vec<Reject>)> = vec![
        (408, vec![Reject::RequestTimeout]),
        (503, vec![Reject::Overloaded]),
    ];
    if route.scope.is_some() {
        refusals.push((401, vec![Reject::Unauthorized]));
        refusals.push((403, vec![Reject::Forbidden]));
    }
    for (status, reasons) in route.refusals {
        match refusals.iter_mut().find(|(s, _)| s == status) {
            Some((_, known)) => known.extend_from_slice(reasons),
            None => refusals.push((*status, reasons.to_vec())),
        }
    }
    refusals.sort_by_key(|(status, _)| *status);
    for (status, reasons) in refusals {
        let mut reply = refusal(description_of(status), error, &reasons);
        if status == 401 {
            reply["headers"] = json!({"WWW-Authenticate": {
                "description": "`Bearer realm=\"qlab\"`", "schema": {"type": "string"}}});
        }
        if route.op == Op::Health && status == 503 {
            // Halted: the health body; overloaded: the error body.
            reply["description"] = "Halted (health body) or overloaded (error body)".into();
            reply["content"]["application/json"]["schema"] = json!({"anyOf": [
                health, reply["content"]["application/json"]["schema"].clone()
            ]});
        }
        responses.insert(status.to_string(), reply);
    }
    op.insert("responses".into(), responses.into());
    if route.scope.is_some() {
        op.insert("security".into(), json!([{"bearer": []}]));
    } else {
        op.insert("security".into(), json!([]));
    }
    Value::Object(op)
}

/// A refusal reply: the error body whose `reason` is one of `reasons`.
fn refusal(description: &str, error: &Schema, reasons: &[Reject]) -> Value {
    let reasons: Vec<&str> = reasons.iter().map(|r| r.as_str()).collect();
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"allOf": [
            error,
            {"type": "object", "properties": {"reason": {"type": "string", "enum": reasons}}},
        ]}}},
    })
}

fn description_of(status: u16) -> &'static str {
    match status {
        400 => "Bad request (malformed or invalid JSON, bad path or query)",
        401 => "No or wrong bearer token",
        403 => "The token lacks the route's scope",
        404 => "Not found",
        408 => "Request not completed in time",
        409 => "Not allowed in the L-Server's state",
        413 => "Body over api.max_body_bytes",
        422 => "The topology file's policy is invalid; the running policy stays",
        429 => "The L-Server's operation queue is full",
        500 => "The journal failed",
        503 => "Overloaded or halted",
        _ => "Refused",
    }
}

/// Query parameters from the properties of a query type's schema.
fn query_parameters(query: SchemaFn) -> Vec<Value> {
    let mut generator = SchemaSettings::openapi3()
        .for_deserialize()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let schema = query(&mut generator).to_value();
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap_or_default();
            generator
                .definitions()
                .get(name)
                .cloned()
                .unwrap_or(Value::Null)
        }
        None => schema,
    };
    // The OpenAPI 3.0 spellings (`nullable` rather than a `null` type), as for the components.
    let mut schema = Schema::try_from(schema).unwrap_or_default();
    for transform in generator.transforms_mut() {
        transform.transform(&mut schema);
    }
    let schema = schema.to_value();
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(properties) = schema["properties"].as_object() else {
        return Vec::new();
    };
    properties
        .iter()
        .map(|(name, property)| {
            let mut property = property.clone();
            let description = property
                .as_object_mut()
                .and_then(|p| p.remove("description"))
                .unwrap_or_else(|| "".into());
            if let Some(p) = property.as_object_mut() {
                // A query value is never null: absent means the default.
                p.remove("nullable");
                p.remove("default");
            }
            json!({
                "name": name, "in": "query", "required": required.contains(&name.as_str()),
                "description": description, "schema": property,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r18_openapi_document_is_openapi_3_0_and_lists_every_route_refusal() {
        let doc = document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        // Every `$ref` points at a schema the document has.
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "dangling $ref {name}");
        }
        // OpenAPI 3.0 has no type arrays (`["integer", "null"]`): `nullable` instead.
        assert!(!text.contains("\"type\":["), "a type array in {text}");
        for route in ROUTES {
            let op = &doc["paths"][route.path][route.method.as_str()];
            assert!(
                op.is_object(),
                "{} {} missing",
                route.method.as_str(),
                route.path
            );
            for (status, _) in route.refusals {
                assert!(op["responses"][status.to_string()].is_object());
            }
        }
    }
}
