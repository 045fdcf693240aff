//! The engine's HTTP API (`docs/formats/http-api.md`; R7, R18): tokens, body bounds, JSON
//! errors with reasons, detections acknowledged only once journaled, L-Server paths with
//! slashes, command refusals, health without a token.

mod common;

mod daemon_support;

use common::run::sent;
use daemon_support::*;
use quarantine_lab::daemon::metrics::Reject;
use quarantine_lab::engine::Journal;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn detection(event_id: &str, ip: &str) -> Value {
    json!({
        "source": "osce", "event_id": event_id, "ip": ip,
        "threat": "TROJ_GENERIC.A", "category": "virus"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_requests_without_a_valid_token_get_401() {
    let (_lab, daemon) = started().await;
    let url = format!("{}/api/v1/lservers", daemon.api_url());
    let none = http().get(&url).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert!(body(none).await["error"]
        .as_str()
        .unwrap()
        .contains("missing bearer token"));
    let wrong = http().get(&url).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body(wrong).await["reason"], "unauthorized");
    // A POST without a token never reaches the engine.
    let post = sent(
        http()
            .post(format!("{}/api/v1/detections", daemon.api_url()))
            .json(&detection("e-1", "10.110.0.11")),
    )
    .await;
    assert_eq!(post.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(daemon.metrics().rejected(Reject::Unauthorized), 3);
    let ok = http().get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_bad_bodies_are_refused_with_a_reason() {
    let (lab, daemon) = started().await;
    let url = format!("{}/api/v1/detections", daemon.api_url());
    let post = |body: Vec<u8>| {
        http()
            .post(&url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let big = post(vec![b' '; 5000]).await.unwrap();
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let reply = body(big).await;
    assert_eq!(reply["reason"], "body_too_large");
    assert!(reply["error"].as_str().unwrap().contains("4096"), "{reply}");

    let malformed = post(b"{\"source\": ".to_vec()).await.unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let reply = body(malformed).await;
    assert_eq!(reply["reason"], "malformed_json");
    assert!(reply["error"]
        .as_str()
        .unwrap()
        .starts_with("malformed JSON"));

    // A detection with `key` set to `value`, refused as a bad request: the reply.
    let refused = |key: &str, value: Value| {
        let mut detection = detection("e-1", "10.110.0.11");
        detection[key] = value;
        let reply = post(serde_json::to_vec(&detection).unwrap());
        async move {
            let reply = reply.await.unwrap();
            assert_eq!(reply.status(), StatusCode::BAD_REQUEST);
            body(reply).await
        }
    };
    let reply = refused("severity", json!("high")).await;
    assert_eq!(reply["reason"], "unknown_field");
    assert!(
        reply["error"].as_str().unwrap().contains("severity"),
        "{reply}"
    );

    let reply = refused("ip", json!("10.110.0.999")).await;
    assert_eq!(reply["reason"], "invalid_field");

    let reply = refused("source", json!("mcafee-9")).await;
    assert_eq!(reply["reason"], "unknown_source");
    assert!(reply["error"].as_str().unwrap().contains("osce"), "{reply}");

    let no_key = json!({"source": "osce", "event_id": "e-2", "threat": "x", "category": "virus"});
    let check = post(serde_json::to_vec(&no_key).unwrap()).await.unwrap();
    assert_eq!(check.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body(check).await["reason"], "invalid_detection");

    let m = daemon.metrics();
    assert_eq!(m.rejected(Reject::BodyTooLarge), 1);
    assert_eq!(m.rejected(Reject::MalformedJson), 1);
    assert_eq!(m.rejected(Reject::UnknownField), 1);
    daemon.shutdown().await;
    // Nothing refused reached the journal (R18: never a partial entry).
    assert_eq!(journaled_detections(&lab), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r7_a_detection_is_acknowledged_with_202_only_once_journaled() {
    let (lab, daemon) = started().await;
    let reply = sent(
        http()
            .post(format!("{}/api/v1/detections", daemon.api_url()))
            .bearer_auth(TOKEN)
            .json(&detection("e-1", "10.110.0.11")),
    )
    .await;
    assert_eq!(reply.status(), StatusCode::ACCEPTED);
    let receipt = body(reply).await;
    let id = receipt["id"].as_i64().unwrap();
    assert_eq!(receipt["disposition"], "accepted");
    assert_eq!(receipt["lserver"], "/tenant-a/vdi-001");
    assert!(receipt["operation"].is_i64());
    // Simulate the crash right after the acknowledgement: the journal file alone has it.
    daemon.shutdown().await;
    let journal = Journal::open(&lab.journal).unwrap();
    assert_eq!(journal.find_detection("osce", "e-1").unwrap(), Some(id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lservers_are_addressed_by_paths_with_slashes() {
    let (_lab, daemon) = started().await;
    let base = daemon.api_url().to_string();
    let list = get_with_token(format!("{base}/api/v1/lservers")).await;
    assert_eq!(list.status(), StatusCode::OK);
    let list = body(list).await;
    assert_eq!(list["total"], 8);
    assert_eq!(list["lservers"][0]["path"], "/tenant-a/vdi-001");
    assert!(list["next"].is_null());

    let paged = get_with_token(format!("{base}/api/v1/lservers?offset=2&limit=3")).await;
    let paged = body(paged).await;
    assert_eq!(paged["lservers"].as_array().unwrap().len(), 3);
    assert_eq!(paged["next"], 5);

    let one = get_with_token(format!("{base}/api/v1/lservers/tenant-a/sbc-01")).await;
    assert_eq!(one.status(), StatusCode::OK);
    let one = body(one).await;
    assert_eq!(one["path"], "/tenant-a/sbc-01");
    assert_eq!(one["state"], "normal");
    assert_eq!(one["nics"][0]["network"], "op-a");
    assert_eq!(one["nics"][0]["ip"], "10.110.0.50");
    assert!(one["nics"][0]["device_network"].is_null());
    // R20: one entry per NIC; never read yet, so never verified.
    assert_eq!(one["last_verified_ms"], json!([null]));

    let missing = get_with_token(format!("{base}/api/v1/lservers/tenant-a/nope")).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(body(missing).await["reason"], "unknown_lserver");
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_answer_202_404_409_and_400_with_reasons() {
    let (_lab, daemon) = started().await;
    let base = daemon.api_url().to_string();
    let post = |path: &str, body: Value| {
        http()
            .post(format!("{base}/api/v1/lservers{path}"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
    };
    let unknown = post("/tenant-a/nope/quarantine", json!({})).await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(body(unknown).await["reason"], "unknown_lserver");

    // R14: a release needs a quarantined L-Server.
    let release = post("/tenant-a/vdi-003/release", json!({})).await.unwrap();
    assert_eq!(release.status(), StatusCode::CONFLICT);
    let reply = body(release).await;
    assert_eq!(reply["reason"], "not_allowed");
    assert!(
        reply["error"].as_str().unwrap().contains("normal"),
        "{reply}"
    );

    // R5: a decision needs an L-Server waiting for one.
    let decide = post("/tenant-a/vdi-003/decide", json!({"choice": "reboot"}))
        .await
        .unwrap();
    assert_eq!(decide.status(), StatusCode::CONFLICT);
    let bad_choice = post("/tenant-a/vdi-003/decide", json!({"choice": "explode"}))
        .await
        .unwrap();
    assert_eq!(bad_choice.status(), StatusCode::BAD_REQUEST);
    let no_action = post("/tenant-a/vdi-003/reboot", json!({})).await.unwrap();
    assert_eq!(no_action.status(), StatusCode::NOT_FOUND);

    let quarantine = post("/tenant-a/vdi-003/quarantine", json!({}))
        .await
        .unwrap();
    assert_eq!(quarantine.status(), StatusCode::ACCEPTED);
    let id = body(quarantine).await["operation"].as_i64().unwrap();
    let op = get_with_token(format!("{base}/api/v1/operations/{id}")).await;
    assert_eq!(op.status(), StatusCode::OK);
    let op = body(op).await;
    assert_eq!(op["lserver"], "/tenant-a/vdi-003");
    assert_eq!(op["kind"], "manual_quarantine");
    let none = get_with_token(format!("{base}/api/v1/operations/999")).await;
    assert_eq!(none.status(), StatusCode::NOT_FOUND);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_needs_no_token_and_alerts_page_by_sequence() {
    let (_lab, daemon) = started().await;
    let base = daemon.api_url().to_string();
    let health = sent(http().get(format!("{base}/api/v1/health"))).await;
    assert_eq!(health.status(), StatusCode::OK);
    let health = body(health).await;
    assert_eq!(health["ok"], true);
    assert_eq!(health["halted"], false);

    // R3: an address nobody has gives one lserver-not-found alert.
    let reply = sent(
        http()
            .post(format!("{base}/api/v1/detections"))
            .bearer_auth(TOKEN)
            .json(&detection("e-9", "10.99.0.1")),
    )
    .await;
    assert_eq!(reply.status(), StatusCode::ACCEPTED);
    assert_eq!(body(reply).await["disposition"], "not_found");
    let alerts = get_with_token(format!("{base}/api/v1/alerts?since=0")).await;
    assert_eq!(alerts.status(), StatusCode::OK);
    let alerts = body(alerts).await;
    let list = alerts["alerts"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["code"], "lserver-not-found");
    let next = alerts["next"].as_i64().unwrap();
    let after = get_with_token(format!("{base}/api/v1/alerts?since={next}")).await;
    assert!(body(after).await["alerts"].as_array().unwrap().is_empty());
    let bad = get_with_token(format!("{base}/api/v1/alerts?since=abc")).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    // The counters show in /health.
    let health = body(
        http()
            .get(format!("{base}/api/v1/health"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(health["rejected"]["bad_request"], 1);
    assert_eq!(health["accepted"]["api"], 1);
    daemon.shutdown().await;
}
