//! The real Redfish client against the Redfish protocol simulator over loopback HTTP: each
//! reset outcome (R13) as the client reports it, and whether the simulated BMC really reset.
//! Both sides are also held to DMTF's published samples in `fixtures/devices/redfish/`: the
//! client against a wiremock server replaying them, the simulator by comparing its replies'
//! shapes with them (neither side's code builds the other's shapes).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::run::{json_of, sent};
use quarantine_lab::adapters::redfish::RedfishClient;
use quarantine_lab::adapters::{Bmc, OutcomeClass};
use quarantine_lab::model::{load_site, Site};
use quarantine_lab::sim::wire::proxy::FAULT_HEADER;
use quarantine_lab::sim::wire::{redfish, WireServer, DEFAULT_PASSWORD, DEFAULT_USER};
use quarantine_lab::sim::{CallKind, FaultEffect, FaultSpec, Recorder, SimWorld};
use serde_json::{json, Value};
use wiremock::matchers::{any, body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

mod golden_support;

const BMC: &str = "irmc-sbc-01";
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
const HANG: Duration = Duration::from_secs(2);

fn site() -> Arc<Site> {
    Arc::new(load_site(Path::new("fixtures/topologies/vdi-small.toml")).expect("fixture loads"))
}

fn fault(effect: FaultEffect, times: Option<u32>) -> FaultSpec {
    FaultSpec {
        times,
        ..FaultSpec::new(BMC, Some(CallKind::Reset), effect)
    }
}

/// Our client for the service at `url`, with the default credentials and the short timeout.
fn client(url: &str) -> RedfishClient {
    RedfishClient::new(url, DEFAULT_USER, DEFAULT_PASSWORD, None, CALL_TIMEOUT).unwrap()
}

async fn setup(faults: Vec<FaultSpec>) -> (SimWorld, WireServer, RedfishClient) {
    let world = SimWorld::new(site(), faults, Recorder::new(), 0);
    let server = redfish::start(world.clone(), BMC).await.unwrap();
    let client = client(&server.url());
    (world, server, client)
}

/// A simulator without faults for raw HTTP: its world, the server (keep it), a client and the
/// base URL.
async fn raw_simulator() -> (SimWorld, WireServer, reqwest::Client, String) {
    let (world, server, _client) = setup(vec![]).await;
    let base = server.url();
    (world, server, reqwest::Client::new(), base)
}

/// A session login of the default user at the simulator (`POST .../Sessions`): the reply.
async fn login(http: &reqwest::Client, base: &str) -> reqwest::Response {
    let credentials = json!({"UserName": DEFAULT_USER, "Password": DEFAULT_PASSWORD});
    let url = format!("{base}/redfish/v1/SessionService/Sessions");
    sent(http.post(url).json(&credentials)).await
}

/// Sends the reset `request`: accepted with 204, and the BMC has reset once.
async fn assert_one_reset(world: &SimWorld, request: reqwest::RequestBuilder) {
    let r = sent(request).await;
    assert_eq!(r.status(), 204);
    assert_eq!(world.reset_count(BMC), 1);
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

/// One test per reset fault (R8): `name: effect [after delay] => class, resets;` runs one reset
/// against that fault and asserts the client's error class (`None`: ok) and how many resets the
/// simulated BMC really did.
macro_rules! reset_outcomes {
    ($($name:ident: $effect:ident $(after $delay:expr)? => $class:expr, $resets:literal;)+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                #[allow(unused_mut)]
                let mut spec = fault(FaultEffect::$effect, None);
                $(spec.delay = Some($delay);)?
                let r = reset_with(vec![spec]).await;
                assert_eq!(r, ($class, $resets), "{}", stringify!($effect));
            }
        )+
    };
}

reset_outcomes! {
    reject_is_rejected_without_a_reset: Reject => Some(OutcomeClass::Rejected), 0;
    unavailable_is_unavailable_without_a_reset: Unavailable => Some(OutcomeClass::Unavailable), 0;
    busy_is_busy_without_a_reset: Busy => Some(OutcomeClass::Busy), 0;
    a_second_refusal_after_renewal_is_auth: AuthExpired => Some(OutcomeClass::Auth), 0;
    timeout_is_unknown_without_a_reset: Timeout after HANG => Some(OutcomeClass::Unknown), 0;
    apply_then_timeout_is_unknown_after_a_reset: ApplyThenTimeout after HANG => Some(OutcomeClass::Unknown), 1;
    connection_reset_after_send_is_unknown_after_a_reset: Reset => Some(OutcomeClass::Unknown), 1;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_renewed_within_the_call() {
    let (world, _server, client) = setup(vec![fault(FaultEffect::AuthExpired, Some(1))]).await;
    client.reset().await.unwrap();
    assert_eq!(world.reset_count(BMC), 1);
}

/// The client's side of a reset connection, whatever the fault plan decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_reset_after_send_is_unknown() {
    let reply = ResponseTemplate::new(204).insert_header(FAULT_HEADER, "reset");
    let mut mocks = golden_service();
    mocks.push(Mock::given(any()).respond_with(reply));
    let server = WireServer::start(mocks).await.unwrap();
    let client = client(&server.url());
    let e = client.reset().await.unwrap_err();
    assert_eq!(e.class, OutcomeClass::Unknown, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_unavailable() {
    let (_world, server, client) = setup(vec![]).await;
    golden_support::stop(server).await;
    let e = client.reset().await.unwrap_err();
    assert_eq!(e.class, OutcomeClass::Unavailable, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r13_configured_system_id_is_served_and_others_are_not() {
    let world = SimWorld::new(site(), vec![], Recorder::new(), 0);
    let server = redfish::start_with_system_id(world.clone(), BMC, "System.Embedded.1")
        .await
        .unwrap();
    let url = server.url();
    for id in [Some("System.Embedded.1"), None] {
        let client =
            RedfishClient::new(&url, DEFAULT_USER, DEFAULT_PASSWORD, id, CALL_TIMEOUT).unwrap();
        client.reset().await.unwrap();
    }
    let other = RedfishClient::new(
        &url,
        DEFAULT_USER,
        DEFAULT_PASSWORD,
        Some("1"),
        CALL_TIMEOUT,
    )
    .unwrap();
    let e = other.reset().await.unwrap_err();
    assert_eq!(e.class, OutcomeClass::Rejected, "{e}");
    let wrong = RedfishClient::new(&url, DEFAULT_USER, "nope", None, CALL_TIMEOUT).unwrap();
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
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"Redfish\"");
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["code"]
        .as_str()
        .unwrap()
        .ends_with(".NoValidSession"));

    let r = login(&http, &base).await;
    assert_eq!(r.status(), 201);
    let token = r.headers()["x-auth-token"].to_str().unwrap().to_string();
    let location = r.headers()["location"].to_str().unwrap().to_string();

    let r = sent(
        http.post(&reset_url)
            .header("X-Auth-Token", &token)
            .json(&json!({"ResetType": "GracefulShutdown"})),
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = sent(
        http.post(&reset_url)
            .header("X-Auth-Token", &token)
            .body("{oops"),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(world.reset_count(BMC), 0);

    assert_one_reset(
        &world,
        http.post(&reset_url)
            .header("X-Auth-Token", &token)
            .json(&restart),
    )
    .await;

    let r = sent(
        http.delete(format!("{base}{location}"))
            .header("X-Auth-Token", &token),
    )
    .await;
    assert_eq!(r.status(), 204);
    let r = sent(
        http.post(&reset_url)
            .header("X-Auth-Token", &token)
            .json(&restart),
    )
    .await;
    assert_eq!(r.status(), 401);
}

// ---- DMTF goldens --------------------------------------------------------------------------

/// The golden system's id and reset target (from `computer-system.json`).
const GOLDEN_SYSTEM: &str = "/redfish/v1/Systems/437XR1138R2";
const GOLDEN_RESET: &str = "/redfish/v1/Systems/437XR1138R2/Actions/ComputerSystem.Reset";
/// `Basic` credentials of `qlab:qlab`.
const BASIC_QLAB: &str = "Basic cWxhYjpxbGFi";

fn golden(name: &str) -> Value {
    golden_support::golden("redfish", name)
}

fn golden_token() -> String {
    golden("session-create-reply.json")["headers"]["X-Auth-Token"]
        .as_str()
        .unwrap()
        .to_string()
}

fn ok_json(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

/// A service replaying the goldens for discovery and login (no reset mock): the root, the
/// login reply, the Systems collection and the system, the last two only with the session.
/// Each test mounts the reset target itself and so decides its answer.
fn golden_service() -> Vec<Mock> {
    let login = golden("session-create-reply.json");
    let mut reply = ResponseTemplate::new(201).set_body_json(login["body"].clone());
    for (k, v) in login["headers"].as_object().unwrap() {
        reply = reply.insert_header(k.as_str(), v.as_str().unwrap());
    }
    let token = golden_token();
    vec![
        Mock::given(method("GET"))
            .and(path("/redfish/v1/"))
            .respond_with(ok_json(golden("service-root.json"))),
        Mock::given(method("POST"))
            .and(path("/redfish/v1/SessionService/Sessions"))
            .respond_with(reply),
        Mock::given(method("GET"))
            .and(path("/redfish/v1/Systems"))
            .and(header("X-Auth-Token", token.as_str()))
            .respond_with(ok_json(golden("systems.json"))),
        Mock::given(method("GET"))
            .and(path(GOLDEN_SYSTEM))
            .and(header("X-Auth-Token", token.as_str()))
            .respond_with(ok_json(golden("computer-system.json"))),
    ]
}

async fn mock_server(mocks: Vec<Mock>) -> MockServer {
    let server = MockServer::start().await;
    for m in mocks {
        m.mount(&server).await;
    }
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r13_client_finds_the_system_and_posts_the_golden_body_to_the_action_target() {
    let mut mocks = golden_service();
    mocks.push(
        Mock::given(method("POST"))
            .and(path(GOLDEN_RESET))
            .and(header("X-Auth-Token", golden_token().as_str()))
            .and(body_json(golden("reset-request.json")))
            .respond_with(ResponseTemplate::new(204))
            .expect(2),
    );
    let server = mock_server(mocks).await;
    let client = client(&server.uri());
    client.reset().await.unwrap();
    // Discovery is kept: the second reset is one request.
    client.reset().await.unwrap();
    let requests = server.received_requests().await.unwrap();
    let gets = requests
        .iter()
        .filter(|r| r.method.as_str() == "GET")
        .count();
    assert_eq!(gets, 3, "root, Systems, system: once");
    server.verify().await;
}

/// No usable session service, two ways: a root without `Links.Sessions` (no login tried), a
/// login answered 405 (tried once). Either way the client sends Basic credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r13_client_uses_basic_auth_without_a_usable_session_service() {
    let mut bare_root = golden("service-root.json");
    let root_map = bare_root.as_object_mut().unwrap();
    root_map.remove("Links");
    root_map.remove("SessionService");
    let cases = [
        (bare_root, ResponseTemplate::new(201), 0),
        (golden("service-root.json"), ResponseTemplate::new(405), 1),
    ];
    for (root, login, logins) in cases {
        let basic = |m: &str, at: &str| {
            Mock::given(method(m))
                .and(path(at))
                .and(header("Authorization", BASIC_QLAB))
        };
        let mocks = vec![
            Mock::given(method("GET"))
                .and(path("/redfish/v1/"))
                .respond_with(ok_json(root)),
            Mock::given(method("POST"))
                .and(path("/redfish/v1/SessionService/Sessions"))
                .respond_with(login)
                .expect(logins),
            basic("GET", "/redfish/v1/Systems").respond_with(ok_json(golden("systems.json"))),
            basic("GET", GOLDEN_SYSTEM).respond_with(ok_json(golden("computer-system.json"))),
            basic("POST", GOLDEN_RESET)
                .and(body_json(golden("reset-request.json")))
                .respond_with(ResponseTemplate::new(204))
                .expect(1),
        ];
        let server = mock_server(mocks).await;
        client(&server.uri()).reset().await.unwrap();
        server.verify().await;
    }
}

/// DSP0266's error example (a 400 with `PropertyValueNotInList`) is `rejected`, its message
/// id in the detail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r8_golden_error_reply_is_rejected() {
    let error = golden("error.json");
    let mut mocks = golden_service();
    mocks.push(
        Mock::given(method("POST"))
            .and(path(GOLDEN_RESET))
            .respond_with(ResponseTemplate::new(400).set_body_json(error["body"].clone())),
    );
    let server = mock_server(mocks).await;
    let e = client(&server.uri()).reset().await.unwrap_err();
    assert_eq!(e.class, OutcomeClass::Rejected, "{e}");
    assert!(e.detail.contains("PropertyValueNotInList"), "{e}");
}

/// Discovery problems refuse the reset before sending it: several systems with no
/// `system_id`, an action that does not allow `ForceRestart`, a target on another host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r13_discovery_problems_are_rejected_without_a_reset() {
    let mut two = golden("systems.json");
    two["Members"]
        .as_array_mut()
        .unwrap()
        .push(json!({"@odata.id": "/redfish/v1/Systems/2"}));
    let mut no_force = golden("computer-system.json");
    no_force["Actions"]["#ComputerSystem.Reset"]["ResetType@Redfish.AllowableValues"] =
        json!(["On", "ForceOff"]);
    let mut elsewhere = golden("computer-system.json");
    elsewhere["Actions"]["#ComputerSystem.Reset"]["target"] =
        json!("http://192.0.2.1/redfish/v1/Systems/437XR1138R2/Actions/ComputerSystem.Reset");
    let cases = [
        ("/redfish/v1/Systems", two, "lists 2 systems"),
        (
            GOLDEN_SYSTEM,
            no_force,
            "does not allow ResetType ForceRestart",
        ),
        (GOLDEN_SYSTEM, elsewhere, "outside"),
    ];
    for (at, body, expect) in cases {
        let mut mocks = vec![Mock::given(method("GET"))
            .and(path(at))
            .respond_with(ok_json(body))];
        mocks.extend(golden_service());
        mocks.push(
            Mock::given(method("POST"))
                .and(path(GOLDEN_RESET))
                .respond_with(ResponseTemplate::new(204))
                .expect(0),
        );
        let server = mock_server(mocks).await;
        let e = client(&server.uri()).reset().await.unwrap_err();
        assert_eq!(e.class, OutcomeClass::Rejected, "{e}");
        assert!(e.detail.contains(expect), "{expect}: {e}");
        server.verify().await;
    }
}

/// A discovery read cut off by the service is `unavailable` (nothing was reset), not
/// `unknown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r8_a_failed_discovery_read_is_unavailable() {
    let mut mocks = vec![Mock::given(method("GET"))
        .and(path(GOLDEN_SYSTEM))
        .respond_with(ResponseTemplate::new(500))];
    mocks.extend(golden_service());
    let server = mock_server(mocks).await;
    let e = client(&server.uri()).reset().await.unwrap_err();
    assert_eq!(e.class, OutcomeClass::Unavailable, "{e}");
}

/// Whether every field `sim` has is in `golden` with the same JSON kind, recursively
/// (arrays: their first elements). Returns the paths that differ.
fn shape_mismatches(sim: &Value, golden: &Value, at: &str, out: &mut Vec<String>) {
    match (sim, golden) {
        (Value::Object(s), Value::Object(g)) => {
            for (k, v) in s {
                match g.get(k) {
                    Some(gv) => shape_mismatches(v, gv, &format!("{at}/{k}"), out),
                    None => out.push(format!("{at}/{k}: not in the golden")),
                }
            }
        }
        (Value::Array(s), Value::Array(g)) => {
            if let (Some(s), Some(g)) = (s.first(), g.first()) {
                shape_mismatches(s, g, &format!("{at}/0"), out);
            }
        }
        (Value::String(_), Value::String(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, Value::Null) => {}
        _ => out.push(format!("{at}: {sim} vs golden {golden}")),
    }
}

/// The resource type without its version: `#ComputerSystem.v1_27_0.ComputerSystem` →
/// `ComputerSystem.ComputerSystem`.
fn unversioned_type(body: &Value) -> String {
    let t = body["@odata.type"].as_str().unwrap_or_default();
    let parts: Vec<&str> = t.trim_start_matches('#').split('.').collect();
    format!("{}.{}", parts[0], parts[parts.len() - 1])
}

fn assert_shaped_like(sim: &Value, golden_name: &str, must_have: &[&str]) {
    let g = golden(golden_name);
    assert_eq!(unversioned_type(sim), unversioned_type(&g), "{golden_name}");
    let mut out = Vec::new();
    shape_mismatches(sim, &g, "", &mut out);
    assert!(out.is_empty(), "{golden_name}: {out:?}\n{sim:#}");
    for pointer in must_have {
        assert!(
            sim.pointer(pointer).is_some() && g.pointer(pointer).is_some(),
            "{golden_name}: {pointer} missing\n{sim:#}"
        );
    }
}

/// Every resource the simulator serves, shaped like DMTF's samples of that resource; its
/// login reply and error bodies like DSP0266's; and it accepts the sample reset body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r13_simulator_replies_match_the_dmtf_goldens() {
    let (world, _server, http, base) = raw_simulator().await;
    let get = |uri: &str| {
        http.get(format!("{base}{uri}"))
            .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
            .send()
    };
    let root: Value = get("/redfish/v1/").await.unwrap().json().await.unwrap();
    assert_shaped_like(
        &root,
        "service-root.json",
        &[
            "/Systems/@odata.id",
            "/SessionService/@odata.id",
            "/Links/Sessions/@odata.id",
        ],
    );
    let systems: Value = get("/redfish/v1/Systems")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_shaped_like(&systems, "systems.json", &["/Members/0/@odata.id"]);
    let system_uri = systems["Members"][0]["@odata.id"].as_str().unwrap();
    let system: Value = get(system_uri).await.unwrap().json().await.unwrap();
    assert_shaped_like(
        &system,
        "computer-system.json",
        &[
            "/PowerState",
            "/Actions/#ComputerSystem.Reset/target",
            "/Actions/#ComputerSystem.Reset/ResetType@Redfish.AllowableValues",
        ],
    );
    let service: Value = get("/redfish/v1/SessionService")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_shaped_like(&service, "session-service.json", &["/Sessions/@odata.id"]);

    let login = login(&http, &base).await;
    let golden_login = golden("session-create-reply.json");
    assert_eq!(login.status().as_u16(), golden_login["status"]);
    for h in golden_login["headers"].as_object().unwrap().keys() {
        assert!(
            login.headers().contains_key(h.as_str()),
            "login reply lacks {h}"
        );
    }
    let token = login.headers()["x-auth-token"]
        .to_str()
        .unwrap()
        .to_string();
    let session: Value = login.json().await.unwrap();
    assert_shaped_like(&session, "session.json", &["/UserName"]);
    let sessions: Value = get("/redfish/v1/SessionService/Sessions")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_shaped_like(&sessions, "sessions.json", &["/Members/0/@odata.id"]);

    // An error body: keys as the DSP8010 error schema allows, messages shaped like DSP0266's.
    let target = system["Actions"]["#ComputerSystem.Reset"]["target"]
        .as_str()
        .unwrap();
    let r = sent(
        http.post(format!("{base}{target}"))
            .header("X-Auth-Token", &token)
            .json(&json!({"ResetType": "Nmi"})),
    )
    .await;
    assert_eq!(r.status(), 400);
    let error: Value = r.json().await.unwrap();
    let schema = golden("redfish-error.v1_0_2.schema.json");
    let contents = &schema["definitions"]["RedfishErrorContents"];
    for required in contents["required"].as_array().unwrap() {
        assert!(error["error"].get(required.as_str().unwrap()).is_some());
    }
    for key in error["error"].as_object().unwrap().keys() {
        assert!(contents["properties"].get(key).is_some(), "{key}");
    }
    let mut out = Vec::new();
    shape_mismatches(&error, &golden("error.json")["body"], "", &mut out);
    assert!(out.is_empty(), "{out:?}");

    assert_one_reset(
        &world,
        http.post(format!("{base}{target}"))
            .header("X-Auth-Token", &token)
            .json(&golden("reset-request.json")),
    )
    .await;
}

/// DSP0266 protocol rules the simulator keeps: headers, `$metadata`, 405 with `Allow`, ETags
/// and 412, HEAD, unsupported queries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r13_simulator_keeps_the_redfish_protocol_rules_and_metadata_names_committed_schemas() {
    let (world, _server, http, base) = raw_simulator().await;
    let system = format!("{base}/redfish/v1/Systems/1");
    let target = format!("{system}/Actions/ComputerSystem.Reset");

    let r = sent(http.get(format!("{base}/redfish/v1/$metadata"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["odata-version"], "4.0");
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/xml"));
    let xml = r.text().await.unwrap();
    for file in [
        "ServiceRoot_v1.xml",
        "ComputerSystem_v1.xml",
        "Session_v1.xml",
    ] {
        assert!(
            xml.contains(&format!("redfish.dmtf.org/schemas/v1/{file}")),
            "{file}"
        );
    }
    // Every schema file `$metadata` references is committed for the conformance check, whose
    // service validator reads them instead of downloading them.
    let uris: Vec<&str> = xml
        .split("Reference Uri=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(uris.len() >= 8, "{uris:?}");
    for uri in uris {
        let file = uri.rsplit('/').next().unwrap();
        let local = Path::new("conformance/redfish-schemas").join(file);
        assert!(
            local.is_file(),
            "{uri}: {} is not committed",
            local.display()
        );
    }
    let r = sent(http.get(format!("{base}/redfish/v1/odata"))).await;
    assert_eq!(r.status(), 200);

    let r = http.get(&system).send().await.unwrap();
    assert_eq!(r.status(), 401, "a system needs credentials");
    let r = sent(
        http.get(&system)
            .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD)),
    )
    .await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["odata-version"], "4.0");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["allow"], "GET, HEAD");
    assert!(h["link"].to_str().unwrap().contains("rel=describedby"));
    let tag = h["etag"].to_str().unwrap().to_string();

    let r = sent(
        http.get(&system)
            .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
            .header("If-None-Match", &tag),
    )
    .await;
    assert_eq!(r.status(), 304);
    let r = sent(
        http.head(&system)
            .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD)),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().is_empty());

    for m in [
        reqwest::Method::PATCH,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let r = sent(
            http.request(m.clone(), &system)
                .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
                .json(&json!({})),
        )
        .await;
        assert_eq!(r.status(), 405, "{m}");
        assert_eq!(r.headers()["allow"], "GET, HEAD");
    }
    let r = sent(
        http.get(format!("{base}/redfish/v1/Systems?$expand=*"))
            .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD)),
    )
    .await;
    assert_eq!(r.status(), 501);
    let r = sent(
        http.get(format!("{base}/redfish/v1/"))
            .header("OData-Version", "4.1"),
    )
    .await;
    assert_eq!(r.status(), 412);

    // A stale If-Match refuses the reset and resets nothing; the current tag lets it through.
    let restart = json!({"ResetType": "ForceRestart"});
    let r = sent(
        http.post(&target)
            .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
            .header("If-Match", "W/\"stale\"")
            .json(&restart),
    )
    .await;
    assert_eq!(r.status(), 412);
    assert_eq!(world.reset_count(BMC), 0);
    assert_one_reset(
        &world,
        http.post(&target)
            .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
            .header("If-Match", &tag)
            .json(&restart),
    )
    .await;
}

/// Logins beyond the cap end the oldest session, so a long-running simulator stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r13_simulator_sessions_are_bounded() {
    let (_world, _server, http, base) = raw_simulator().await;
    let mut first = None;
    for _ in 0..=redfish::MAX_SESSIONS {
        let r = login(&http, &base).await;
        assert_eq!(r.status(), 201);
        let token = r.headers()["x-auth-token"].to_str().unwrap().to_string();
        first.get_or_insert(token);
    }
    let sessions: Value = json_of(
        http.get(format!("{base}/redfish/v1/SessionService/Sessions"))
            .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD)),
    )
    .await;
    assert_eq!(sessions["Members@odata.count"], redfish::MAX_SESSIONS);
    let r = sent(
        http.get(format!("{base}/redfish/v1/Systems"))
            .header("X-Auth-Token", first.unwrap()),
    )
    .await;
    assert_eq!(r.status(), 401, "the oldest session was ended");
}
