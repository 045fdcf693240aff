//! The real Redfish client against the Redfish protocol simulator over loopback HTTP: each
//! reset outcome (R13) as the client reports it, and whether the simulated BMC really reset.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use quarantine_lab::adapters::redfish::RedfishClient;
use quarantine_lab::adapters::{Bmc, OutcomeClass};
use quarantine_lab::model::{load_site, Site};
use quarantine_lab::sim::wire::proxy::FAULT_HEADER;
use quarantine_lab::sim::wire::{redfish, WireServer, DEFAULT_PASSWORD, DEFAULT_USER};
use quarantine_lab::sim::{CallKind, FaultEffect, FaultMatch, FaultSpec, Recorder, SimWorld};
use serde_json::{json, Value};
use wiremock::matchers::{any, path};
use wiremock::{Mock, ResponseTemplate};

const BMC: &str = "irmc-sbc-01";
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
const HANG: Duration = Duration::from_secs(2);

fn site() -> Arc<Site> {
    Arc::new(load_site(Path::new("fixtures/topologies/vdi-small.toml")).expect("fixture loads"))
}

fn fault(effect: FaultEffect, times: Option<u32>) -> FaultSpec {
    FaultSpec {
        device: BMC.into(),
        call: Some(CallKind::Reset),
        effect,
        times,
        from: None,
        until: None,
        matcher: FaultMatch::default(),
        delay: None,
        probability: None,
    }
}

async fn setup(faults: Vec<FaultSpec>) -> (SimWorld, WireServer, RedfishClient) {
    let world = SimWorld::new(site(), faults, Recorder::new(), 0);
    let server = redfish::start(world.clone(), BMC).await.unwrap();
    let client = RedfishClient::new(
        &server.url(),
        DEFAULT_USER,
        DEFAULT_PASSWORD,
        "1",
        CALL_TIMEOUT,
    )
    .unwrap();
    (world, server, client)
}

/// One reset against a world with `faults`: its error class (None: ok) and the resets done.
async fn reset_with(faults: Vec<FaultSpec>) -> (Option<OutcomeClass>, u32) {
    let (world, _server, client) = setup(faults).await;
    let result = client.reset().await;
    (result.err().map(|e| e.class), world.reset_count(BMC))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ok_resets_once() {
    assert_eq!(reset_with(vec![]).await, (None, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_is_rejected_without_a_reset() {
    let r = reset_with(vec![fault(FaultEffect::Reject, None)]).await;
    assert_eq!(r, (Some(OutcomeClass::Rejected), 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_is_unavailable_without_a_reset() {
    let r = reset_with(vec![fault(FaultEffect::Unavailable, None)]).await;
    assert_eq!(r, (Some(OutcomeClass::Unavailable), 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_is_busy_without_a_reset() {
    let r = reset_with(vec![fault(FaultEffect::Busy, None)]).await;
    assert_eq!(r, (Some(OutcomeClass::Busy), 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_renewed_within_the_call() {
    let (world, _server, client) = setup(vec![fault(FaultEffect::AuthExpired, Some(1))]).await;
    client.reset().await.unwrap();
    assert_eq!(world.reset_count(BMC), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_refusal_after_renewal_is_auth() {
    let r = reset_with(vec![fault(FaultEffect::AuthExpired, None)]).await;
    assert_eq!(r, (Some(OutcomeClass::Auth), 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_is_unknown_without_a_reset() {
    let mut hang = fault(FaultEffect::Timeout, None);
    hang.delay = Some(HANG);
    assert_eq!(
        reset_with(vec![hang]).await,
        (Some(OutcomeClass::Unknown), 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_then_timeout_is_unknown_after_a_reset() {
    let mut hang = fault(FaultEffect::ApplyThenTimeout, None);
    hang.delay = Some(HANG);
    assert_eq!(
        reset_with(vec![hang]).await,
        (Some(OutcomeClass::Unknown), 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_reset_after_send_is_unknown_after_a_reset() {
    let r = reset_with(vec![fault(FaultEffect::Reset, None)]).await;
    assert_eq!(r, (Some(OutcomeClass::Unknown), 1));
}

/// The client's side of a reset connection, whatever the fault plan decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_reset_after_send_is_unknown() {
    let session = ResponseTemplate::new(201).insert_header("X-Auth-Token", "t");
    let reply = ResponseTemplate::new(204).insert_header(FAULT_HEADER, "reset");
    let server = WireServer::start(vec![
        Mock::given(path("/redfish/v1/SessionService/Sessions")).respond_with(session),
        Mock::given(any()).respond_with(reply),
    ])
    .await
    .unwrap();
    let client = RedfishClient::new(
        &server.url(),
        DEFAULT_USER,
        DEFAULT_PASSWORD,
        "1",
        CALL_TIMEOUT,
    )
    .unwrap();
    let e = client.reset().await.unwrap_err();
    assert_eq!(e.class, OutcomeClass::Unknown, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_unavailable() {
    let (_world, server, client) = setup(vec![]).await;
    drop(server);
    // The proxy's listener closes when its aborted task is dropped; give it a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let e = client.reset().await.unwrap_err();
    assert_eq!(e.class, OutcomeClass::Unavailable, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_system_ids_are_served_and_others_are_not() {
    let world = SimWorld::new(site(), vec![], Recorder::new(), 0);
    let server = redfish::start_with_system_id(world.clone(), BMC, "System.Embedded.1")
        .await
        .unwrap();
    let url = server.url();
    for id in ["1", "System.Embedded.1"] {
        let client =
            RedfishClient::new(&url, DEFAULT_USER, DEFAULT_PASSWORD, id, CALL_TIMEOUT).unwrap();
        client.reset().await.unwrap();
    }
    let other =
        RedfishClient::new(&url, DEFAULT_USER, DEFAULT_PASSWORD, "7", CALL_TIMEOUT).unwrap();
    let e = other.reset().await.unwrap_err();
    assert_eq!(e.class, OutcomeClass::Rejected, "{e}");
    let wrong = RedfishClient::new(&url, DEFAULT_USER, "nope", "1", CALL_TIMEOUT).unwrap();
    let e = wrong.reset().await.unwrap_err();
    assert_eq!(e.class, OutcomeClass::Auth, "{e}");
    assert_eq!(world.reset_count(BMC), 2);
}

/// Raw HTTP against the simulator: what a Redfish client that is not ours would see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_speaks_the_redfish_format() {
    let (world, server, _client) = setup(vec![]).await;
    let http = reqwest::Client::new();
    let base = server.url();
    let reset_url = format!("{base}/redfish/v1/Systems/1/Actions/ComputerSystem.Reset");
    let restart = json!({"ResetType": "ForceRestart"});

    let r = http.post(&reset_url).json(&restart).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Base.1.0.GeneralError");

    let r = http
        .post(format!("{base}/redfish/v1/SessionService/Sessions"))
        .json(&json!({"UserName": DEFAULT_USER, "Password": DEFAULT_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let token = r.headers()["x-auth-token"].to_str().unwrap().to_string();
    let location = r.headers()["location"].to_str().unwrap().to_string();

    let r = http
        .post(&reset_url)
        .header("X-Auth-Token", &token)
        .json(&json!({"ResetType": "GracefulShutdown"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(&reset_url)
        .header("X-Auth-Token", &token)
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(world.reset_count(BMC), 0);

    let r = http
        .post(&reset_url)
        .header("X-Auth-Token", &token)
        .json(&restart)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(world.reset_count(BMC), 1);

    let r = http
        .delete(format!("{base}{location}"))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = http
        .post(&reset_url)
        .header("X-Auth-Token", &token)
        .json(&restart)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
