//! The API's OpenAPI document (`GET /api/v1/openapi.json`, docs/formats/http-api.md) against
//! the running router: the document's paths and methods are exactly the routes the router
//! serves, every other method on a known path answers 405 with `Allow`, and the replies of a
//! few real requests fit the document's schemas (R18: refusals documented with their reasons).

mod common;

mod daemon_support;

use common::run::sent;
use daemon_support::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

async fn document(daemon: &quarantine_lab::daemon::Daemon) -> Value {
    let reply = sent(http().get(format!("{}/api/v1/openapi.json", daemon.api_url()))).await;
    assert_eq!(reply.status(), StatusCode::OK);
    reply.json().await.unwrap()
}

/// A concrete URL path for a documented path.
fn concrete(path: &str) -> String {
    path.replace("{lserver}", "tenant-a/vdi-001")
        .replace("{id}", "1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_openapi_document_is_served_without_a_token_and_is_openapi_3() {
    let (_lab, daemon) = started().await;
    let doc = document(&daemon).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.0"), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    for expected in [
        "/api/v1/health",
        "/api/v1/openapi.json",
        "/api/v1/detections",
        "/api/v1/lservers",
        "/api/v1/lservers/{lserver}",
        "/api/v1/lservers/{lserver}/quarantine",
        "/api/v1/lservers/{lserver}/release",
        "/api/v1/lservers/{lserver}/decide",
        "/api/v1/operations/{id}",
        "/api/v1/alerts",
        "/api/v1/metrics",
        "/api/v1/policy/reload",
    ] {
        assert!(paths.contains_key(expected), "{expected} not documented");
    }
    // The schemas are generated from the handlers' types: a view's fields are there.
    let schemas = &doc["components"]["schemas"];
    for field in [
        "path",
        "state",
        "status",
        "outcome",
        "pending_operations",
        "nics",
    ] {
        assert!(
            schemas["LServerView"]["properties"][field].is_object(),
            "{field}"
        );
    }
    assert!(schemas["Detection"]["properties"]["event_id"].is_object());
    // Every `$ref` resolves.
    let text = doc.to_string();
    for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap();
        assert!(schemas.get(name).is_some(), "dangling $ref to {name}");
    }
    daemon.shutdown().await;
}

/// The router and the document agree: with a valid token, a documented method on a documented
/// path reaches its handler (never 405), and every other method answers 405 with an `Allow`
/// header naming exactly the documented methods of that routed path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_router_serves_exactly_the_documented_methods_and_405_names_them() {
    let (_lab, daemon) = started().await;
    let doc = document(&daemon).await;
    let paths = doc["paths"].as_object().unwrap();
    // The L-Server action paths share the routed path of `GET /lservers/{lserver}`: their
    // methods are those of every path under it.
    let routed_methods = |path: &str| -> Vec<String> {
        let shared = path.starts_with("/api/v1/lservers/");
        let mut methods: Vec<String> = paths
            .iter()
            .filter(|(p, _)| {
                if shared {
                    p.starts_with("/api/v1/lservers/")
                } else {
                    p.as_str() == path
                }
            })
            .flat_map(|(_, item)| item.as_object().unwrap().keys().map(|m| m.to_uppercase()))
            .collect();
        methods.sort();
        methods.dedup();
        methods
    };
    let mut checked = 0;
    for (path, _) in paths {
        let url = format!("{}{}", daemon.api_url(), concrete(path));
        let documented = routed_methods(path);
        for method in METHODS {
            let reply = sent(
                http()
                    .request(Method::from_bytes(method.as_bytes()).unwrap(), &url)
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/json")
                    .body(if method == "POST" { "{}" } else { "" }),
            )
            .await;
            let status = reply.status();
            if documented.iter().any(|m| m == method) {
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            } else {
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                let allow = reply
                    .headers()
                    .get("allow")
                    .unwrap_or_else(|| panic!("no Allow on {method} {path}"))
                    .to_str()
                    .unwrap()
                    .to_string();
                let mut allowed: Vec<String> = allow
                    .split(',')
                    .map(|m| m.trim().to_string())
                    .filter(|m| m != "HEAD")
                    .collect();
                allowed.sort();
                assert_eq!(allowed, documented, "Allow of {path}");
                let body: Value = reply.json().await.unwrap();
                assert_eq!(body["reason"], "method_not_allowed");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, paths.len() * METHODS.len());
    // An undocumented path is no route at all.
    let reply = get_with_token(format!("{}/api/v1/nothing-here", daemon.api_url())).await;
    assert_eq!(reply.status(), StatusCode::NOT_FOUND);
    daemon.shutdown().await;
}

/// Each status a request really gets is documented for its route, with the reason the reply
/// carries among the documented ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_real_refusals_are_documented_with_their_reasons() {
    let (_lab, daemon) = started().await;
    let doc = document(&daemon).await;
    let base = daemon.api_url().to_string();
    let cases: Vec<(&str, &str, Option<&str>, Value)> = vec![
        ("/api/v1/lservers", "get", None, Value::Null),
        ("/api/v1/lservers", "get", Some(TOKEN), Value::Null),
        (
            "/api/v1/lservers/{lserver}",
            "get",
            Some(TOKEN),
            Value::Null,
        ),
        ("/api/v1/operations/{id}", "get", Some(TOKEN), Value::Null),
        (
            "/api/v1/detections",
            "post",
            Some(TOKEN),
            json!({"source": "nope", "event_id": "e", "ip": "10.0.0.1", "threat": "t", "category": "virus"}),
        ),
        (
            "/api/v1/detections",
            "post",
            Some(TOKEN),
            json!({"source": "osce", "extra": 1}),
        ),
        (
            "/api/v1/lservers/{lserver}/decide",
            "post",
            Some(TOKEN),
            json!({"choice": "maybe"}),
        ),
    ];
    for (path, method, token, body) in cases {
        let url = format!(
            "{base}{}",
            concrete(path).replace("tenant-a/vdi-001", "no/such")
        );
        let mut request = http().request(
            Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
            &url,
        );
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if !body.is_null() {
            request = request.json(&body);
        }
        let reply = request.send().await.unwrap();
        let status = reply.status().as_u16().to_string();
        let body: Value = reply.json().await.unwrap();
        let response = &doc["paths"][path][method]["responses"][&status];
        assert!(
            response.is_object(),
            "{method} {path} answered {status}, undocumented: {body}"
        );
        if let Some(reason) = body.get("reason") {
            let allowed = &response["content"]["application/json"]["schema"]["allOf"][1]
                ["properties"]["reason"]["enum"];
            assert!(
                allowed.as_array().unwrap().contains(reason),
                "{method} {path} {status}: reason {reason} not in {allowed}"
            );
        }
    }
    daemon.shutdown().await;
}
