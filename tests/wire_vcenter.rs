//! The real vCenter client against the vCenter protocol simulator over loopback HTTP, one
//! test per device call outcome (R8): what the client reports, and whether the simulated
//! device really changed (device truth from the world).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quarantine_lab::adapters::vcenter::VcenterClient;
use quarantine_lab::adapters::{Adapters, Hypervisor, OutcomeClass};
use quarantine_lab::engine::{Command, Engine, EngineOptions, Journal, LServerState};
use quarantine_lab::model::history::NicRef;
use quarantine_lab::model::{load_site, Site};
use quarantine_lab::sim::wire::proxy::FAULT_HEADER;
use quarantine_lab::sim::wire::{vcenter, WireServer, DEFAULT_PASSWORD, DEFAULT_USER};
use quarantine_lab::sim::{CallKind, FaultEffect, FaultSpec, Recorder, SimWorld};
use serde_json::Value;
use wiremock::matchers::{any, body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

mod golden_support;
use common::run::{json_of, sent};
use golden_support::{assert_classified, assert_shape, golden, same_shape};

const VC: &str = "vc-1";
const VM: &str = "vm-1001";
const NIC: &str = "4000";
const LSERVER: &str = "/tenant-a/vdi-001";
const OP_PG: &str = "dvportgroup-110";
const QR_PG: &str = "dvportgroup-910";
/// Short, so the hang tests stay fast; far above the fixture's 40 ms latency.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// A hang well past the client's timeout.
const HANG: Duration = Duration::from_secs(2);

fn site() -> Arc<Site> {
    Arc::new(load_site(Path::new("fixtures/topologies/vdi-small.toml")).expect("fixture loads"))
}

fn fault(call: CallKind, effect: FaultEffect) -> FaultSpec {
    FaultSpec::new(VC, Some(call), effect)
}

fn nic() -> NicRef {
    NicRef {
        lserver: LSERVER.into(),
        nic: 0,
    }
}

async fn setup(faults: Vec<FaultSpec>) -> (SimWorld, WireServer, VcenterClient) {
    let world = SimWorld::new(site(), faults, Recorder::new(), 0);
    let server = vcenter::start(world.clone(), VC).await.unwrap();
    let client =
        VcenterClient::new(&server.url(), DEFAULT_USER, DEFAULT_PASSWORD, CALL_TIMEOUT).unwrap();
    (world, server, client)
}

/// Runs one `set_nic` to quarantine against a world with `faults` and returns its error class
/// (None: ok) and the NIC's device truth afterwards.
async fn set_with(faults: Vec<FaultSpec>) -> (Option<OutcomeClass>, Option<String>) {
    let (world, _server, client) = setup(faults).await;
    let result = client.set_nic(VM, NIC, QR_PG).await;
    (result.err().map(|e| e.class), world.nic_network(&nic()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ok_get_set_and_reset() {
    let (world, _server, client) = setup(vec![]).await;
    assert_eq!(client.get_nic(VM, NIC).await.unwrap(), OP_PG);
    client.set_nic(VM, NIC, QR_PG).await.unwrap();
    assert_eq!(world.nic_network(&nic()).as_deref(), Some("qr-a"));
    assert_eq!(client.get_nic(VM, NIC).await.unwrap(), QR_PG);
    client.power_reset(VM).await.unwrap();
    assert_eq!(world.reset_count(VC), 1);
}

/// One test per `set_nic` fault (R8): `name: effect [after delay] => class, truth;` runs one
/// `set_nic` to quarantine against that fault and asserts the client's error class (`None`: ok)
/// and the network the simulated device really has afterwards.
macro_rules! set_nic_outcomes {
    ($($(#[$doc:meta])* $name:ident: $effect:ident $(after $delay:expr)? => $class:expr, $truth:literal;)+) => {
        $(
            $(#[$doc])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                #[allow(unused_mut)]
                let mut spec = fault(CallKind::SetNic, FaultEffect::$effect);
                $(spec.delay = Some($delay);)?
                let (class, truth) = set_with(vec![spec]).await;
                assert_eq!(class, $class, "class after {}", stringify!($effect));
                assert_eq!(truth.as_deref(), Some($truth), "truth after {}", stringify!($effect));
            }
        )+
    };
}

set_nic_outcomes! {
    reject_is_rejected_and_not_applied: Reject => Some(OutcomeClass::Rejected), "op-a";
    unavailable_is_unavailable_and_not_applied: Unavailable => Some(OutcomeClass::Unavailable), "op-a";
    resource_busy_is_busy_and_not_applied: Busy => Some(OutcomeClass::Busy), "op-a";
    apply_then_timeout_is_unknown_and_applied: ApplyThenTimeout after HANG => Some(OutcomeClass::Unknown), "qr-a";
    /// The reply (500 ERROR) arrives in time, but nothing proves the change did not land.
    a_hang_shorter_than_the_call_timeout_is_still_unknown: ApplyThenTimeout after Duration::from_millis(100) => Some(OutcomeClass::Unknown), "qr-a";
    apply_then_error_is_rejected_but_applied: ApplyThenError => Some(OutcomeClass::Rejected), "qr-a";
    accept_without_apply_is_ok_and_not_applied: AcceptWithoutApply => None, "op-a";
    transport_reset_is_unknown_and_applied: Reset => Some(OutcomeClass::Unknown), "qr-a";
    blackhole_is_unknown_and_not_applied: Blackhole => Some(OutcomeClass::Unknown), "op-a";
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_objects_are_rejected() {
    let (_world, _server, client) = setup(vec![]).await;
    let e = client.get_nic("vm-9999", NIC).await.unwrap_err();
    assert_eq!(e.class, OutcomeClass::Rejected, "{e}");
    assert!(e.detail.contains("NOT_FOUND"), "{e}");
    let e = client
        .set_nic(VM, NIC, "dvportgroup-4242")
        .await
        .unwrap_err();
    assert_eq!(e.class, OutcomeClass::Rejected, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_expired_is_auth_then_login_renews() {
    let mut expire = fault(CallKind::SetNic, FaultEffect::AuthExpired);
    expire.times = Some(1);
    let (world, _server, client) = setup(vec![expire]).await;
    assert_eq!(client.get_nic(VM, NIC).await.unwrap(), OP_PG);
    let e = client.set_nic(VM, NIC, QR_PG).await.unwrap_err();
    assert_eq!(e.class, OutcomeClass::Auth, "{e}");
    assert_eq!(world.nic_network(&nic()).as_deref(), Some("op-a"));
    assert_eq!(world.session_valid(VC), Some(false));
    // What the engine does on `auth`: log in, then call again.
    client.login().await.unwrap();
    client.set_nic(VM, NIC, QR_PG).await.unwrap();
    assert_eq!(world.nic_network(&nic()).as_deref(), Some("qr-a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_after_auth_logs_in_by_itself() {
    let mut expire = fault(CallKind::GetNic, FaultEffect::AuthExpired);
    expire.times = Some(1);
    let (_world, _server, client) = setup(vec![expire]).await;
    let e = client.get_nic(VM, NIC).await.unwrap_err();
    assert_eq!(e.class, OutcomeClass::Auth, "{e}");
    // The session was dropped, so this call opens a new one first.
    assert_eq!(client.get_nic(VM, NIC).await.unwrap(), OP_PG);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_is_unknown_and_not_applied() {
    let mut hang = fault(CallKind::SetNic, FaultEffect::Timeout);
    hang.delay = Some(HANG);
    let started = Instant::now();
    let (class, truth) = set_with(vec![hang]).await;
    assert_eq!(class, Some(OutcomeClass::Unknown));
    assert_eq!(truth.as_deref(), Some("op-a"));
    assert!(
        started.elapsed() < HANG,
        "the client must give up at its call timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_read_returns_the_previous_backing() {
    let (world, _server, client) =
        setup(vec![fault(CallKind::GetNic, FaultEffect::StaleRead)]).await;
    client.set_nic(VM, NIC, QR_PG).await.unwrap();
    assert_eq!(world.nic_network(&nic()).as_deref(), Some("qr-a"));
    assert_eq!(client.get_nic(VM, NIC).await.unwrap(), OP_PG);
}

/// The client's side of the transport faults, whatever the fault plan decides: a reply the
/// proxy resets or swallows after the request went out is `unknown`, never `rejected`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_transport_faults_are_unknown() {
    for fault in ["reset", "blackhole"] {
        let reply = ResponseTemplate::new(201)
            .insert_header(FAULT_HEADER, fault)
            .set_body_json("token");
        let server = WireServer::start(vec![Mock::given(any()).respond_with(reply)])
            .await
            .unwrap();
        let client =
            VcenterClient::new(&server.url(), DEFAULT_USER, DEFAULT_PASSWORD, CALL_TIMEOUT)
                .unwrap();
        let e = client.login().await.unwrap_err();
        assert_eq!(e.class, OutcomeClass::Unknown, "{fault}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_unavailable() {
    let (_world, server, client) = setup(vec![]).await;
    client.login().await.unwrap();
    golden_support::stop(server).await;
    let e = client.set_nic(VM, NIC, QR_PG).await.unwrap_err();
    assert_eq!(e.class, OutcomeClass::Unavailable, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_faults_and_wrong_credentials_fail_the_login() {
    let (_world, server, _client) =
        setup(vec![fault(CallKind::Login, FaultEffect::Unavailable)]).await;
    let client =
        VcenterClient::new(&server.url(), DEFAULT_USER, DEFAULT_PASSWORD, CALL_TIMEOUT).unwrap();
    let e = client.login().await.unwrap_err();
    assert_eq!(e.class, OutcomeClass::Unavailable, "{e}");
    let wrong = VcenterClient::new(&server.url(), DEFAULT_USER, "nope", CALL_TIMEOUT).unwrap();
    let e = wrong.get_nic(VM, NIC).await.unwrap_err();
    assert_eq!(e.class, OutcomeClass::Auth, "{e}");
}

/// Raw HTTP against the simulator: what a vSphere client that is not ours would see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_speaks_the_vsphere_format() {
    let (_server, http, base, nic_url) = raw_simulator().await;

    let r = http.get(&nic_url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error_type"], "UNAUTHENTICATED");

    let token = session(&http, &base).await;
    let r = sent(
        http.get(format!("{base}/api/vcenter/vm/{VM}/hardware/ethernet"))
            .header("vmware-api-session-id", &token),
    )
    .await;
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.unwrap();
    assert_eq!(list, serde_json::json!([{"nic": NIC}]));

    let r = sent(http.get(&nic_url).header("vmware-api-session-id", &token)).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["mac_address"], "00:50:56:00:00:11");
    assert_eq!(body["backing"]["network"], OP_PG);
    assert_eq!(body["backing"]["type"], "DISTRIBUTED_PORTGROUP");
    assert_eq!(body["label"], "Network adapter 1");

    let r = sent(
        http.patch(&nic_url)
            .header("vmware-api-session-id", &token)
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error_type"], "INVALID_ARGUMENT");
}

/// A simulator without faults for raw HTTP: the server (keep it), a client, its base URL and
/// the URL of vdi-001's vNIC.
async fn raw_simulator() -> (WireServer, reqwest::Client, String, String) {
    let (_world, server, _client) = setup(vec![]).await;
    let base = server.url();
    let nic_url = format!("{base}/api/vcenter/vm/{VM}/hardware/ethernet/{NIC}");
    (server, reqwest::Client::new(), base, nic_url)
}

/// Logs in with the default credentials; the reply's body (the session id as a JSON string).
async fn session_reply(http: &reqwest::Client, base: &str) -> Value {
    let r = sent(
        http.post(format!("{base}/api/session"))
            .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD)),
    )
    .await;
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

/// A session id of the default user.
async fn session(http: &reqwest::Client, base: &str) -> String {
    let reply = session_reply(http, base).await;
    reply.as_str().expect("a JSON string").to_string()
}

/// The real engine quarantines a VDI desktop through the real client and the simulator, and
/// the simulator's own REST API shows the vNIC on the quarantine port group (R8, R9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_quarantines_through_the_wire() {
    let site = site();
    let world = SimWorld::new(site.clone(), vec![], Recorder::new(), 0);
    let server = vcenter::start(world.clone(), VC).await.unwrap();
    let client = VcenterClient::new(
        &server.url(),
        DEFAULT_USER,
        DEFAULT_PASSWORD,
        Duration::from_secs(2),
    )
    .unwrap();
    let mut adapters = Adapters::default();
    adapters.hypervisors.insert(VC.into(), Arc::new(client));
    let journal = Journal::open_in_memory().unwrap();
    let engine = Engine::open(site, journal, adapters, EngineOptions::default()).unwrap();
    engine
        .submit_command(Command::Quarantine {
            lserver: LSERVER.into(),
        })
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), engine.wait_idle())
        .await
        .expect("the quarantine ends");
    let view = engine.lserver(LSERVER).unwrap();
    assert_eq!(view.state, LServerState::Quarantined, "{view:?}");
    assert_eq!(view.nics[0].network, "qr-a");

    let http = reqwest::Client::new();
    let base = server.url();
    let token = session(&http, &base).await;
    let body: Value = json_of(
        http.get(format!(
            "{base}/api/vcenter/vm/{VM}/hardware/ethernet/{NIC}"
        ))
        .header("vmware-api-session-id", &token),
    )
    .await;
    assert_eq!(body["backing"]["network"], QR_PG);
}

// ---- Goldens: vSphere's documented shapes in fixtures/devices/vmware-vcenter/ ----

const GOLDENS: &str = "vmware-vcenter";

/// The error goldens, the HTTP status vCenter sends each with, and the class R8 needs.
const ERROR_GOLDENS: &[(&str, u16, OutcomeClass)] = &[
    ("error-not-found.reply.json", 404, OutcomeClass::Rejected),
    ("error-resource-busy.reply.json", 400, OutcomeClass::Busy),
    ("error-unauthenticated.reply.json", 401, OutcomeClass::Auth),
    (
        "error-service-unavailable.reply.json",
        503,
        OutcomeClass::Unavailable,
    ),
    (
        "error-invalid-argument.reply.json",
        400,
        OutcomeClass::Rejected,
    ),
];

/// A vCenter that answers only with the goldens: the login, then the vNIC read, each only
/// with the golden session id.
async fn golden_vcenter() -> MockServer {
    let server = MockServer::start().await;
    let token = golden(GOLDENS, "session-create.reply.json");
    let token = token
        .as_str()
        .expect("the session golden is a string")
        .to_string();
    Mock::given(method("POST"))
        .and(path("/api/session"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(golden(GOLDENS, "session-create.reply.json")),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/api/vcenter/vm/{VM}/hardware/ethernet/{NIC}"
        )))
        .and(header("vmware-api-session-id", token.as_str()))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(golden(GOLDENS, "ethernet-get.reply.json")),
        )
        .mount(&server)
        .await;
    server
}

/// R8: the client reads the backing out of the documented reply, with every optional field a
/// real vCenter sends for a distributed port group around it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_r8_vcenter_client_reads_the_documented_vnic_reply() {
    let server = golden_vcenter().await;
    let client =
        VcenterClient::new(&server.uri(), DEFAULT_USER, DEFAULT_PASSWORD, CALL_TIMEOUT).unwrap();
    let expected = golden(GOLDENS, "ethernet-get.reply.json")["backing"]["network"].clone();
    assert_eq!(
        client.get_nic(VM, NIC).await.unwrap(),
        expected.as_str().unwrap()
    );
}

/// R8: the move is the documented update spec and nothing else (unset fields stay unchanged
/// on a real vCenter, so sending more would change what the quarantine must not touch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_r8_vcenter_client_sends_the_documented_update_spec() {
    let server = golden_vcenter().await;
    let spec = golden(GOLDENS, "ethernet-update.request.json");
    Mock::given(method("PATCH"))
        .and(path(format!(
            "/api/vcenter/vm/{VM}/hardware/ethernet/{NIC}"
        )))
        .and(body_json(&spec))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let client =
        VcenterClient::new(&server.uri(), DEFAULT_USER, DEFAULT_PASSWORD, CALL_TIMEOUT).unwrap();
    let target = spec["backing"]["network"].as_str().unwrap();
    client.set_nic(VM, NIC, target).await.unwrap();
}

/// R8: each documented error lands in the class that decides retry, re-login or rollback.
#[test]
fn golden_r8_vcenter_client_classifies_the_documented_errors() {
    assert_classified(
        GOLDENS,
        ERROR_GOLDENS,
        quarantine_lab::adapters::vcenter::classify,
    );
}

/// The simulator answers every documented exchange in the documented shape: login, list, read,
/// update, and each error a fault or a bad request produces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_vcenter_simulator_answers_in_the_documented_shapes() {
    let (_server, http, base, nic_url) = raw_simulator().await;
    let check = |name: &str, actual: &Value| assert_shape(GOLDENS, name, actual);

    let r = http.get(&nic_url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    check("error-unauthenticated.reply.json", &r.json().await.unwrap());

    let token = session_reply(&http, &base).await;
    check("session-create.reply.json", &token);
    let token = token.as_str().unwrap().to_string();
    let get = |url: String| {
        http.get(url)
            .header("vmware-api-session-id", token.as_str())
            .send()
    };

    let r = get(format!("{base}/api/vcenter/vm/{VM}/hardware/ethernet"))
        .await
        .unwrap();
    check("ethernet-list.reply.json", &r.json().await.unwrap());
    let r = get(nic_url.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    let info: Value = r.json().await.unwrap();
    check("ethernet-get.reply.json", &info);
    let documented = golden(GOLDENS, "ethernet-get.reply.json");
    assert_eq!(info["backing"]["type"], documented["backing"]["type"]);
    assert!(
        info["backing"].get("network_name").is_none(),
        "network_name belongs to standard port groups only: {info}"
    );

    let mut spec = golden(GOLDENS, "ethernet-update.request.json");
    spec["backing"]["network"] = Value::from(QR_PG);
    let r = sent(
        http.patch(&nic_url)
            .header("vmware-api-session-id", token.as_str())
            .json(&spec),
    )
    .await;
    assert_eq!(r.status(), 204);

    let r = get(format!("{base}/api/vcenter/vm/{VM}/hardware/ethernet/4099"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    check("error-not-found.reply.json", &body);
    assert_eq!(body["error_type"], "NOT_FOUND");

    let r = sent(
        http.patch(&nic_url)
            .header("vmware-api-session-id", token.as_str())
            .json(&serde_json::json!({"backing": {"type": "FLOPPY", "network": QR_PG}})),
    )
    .await;
    assert_eq!(r.status(), 400);
    check(
        "error-invalid-argument.reply.json",
        &r.json().await.unwrap(),
    );
}

/// The simulator's faults reach the wire as the documented errors, with vCenter's statuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_vcenter_simulator_faults_are_the_documented_errors() {
    let cases = [
        (
            FaultEffect::Busy,
            "error-resource-busy.reply.json",
            400,
            "RESOURCE_BUSY",
        ),
        (
            FaultEffect::Unavailable,
            "error-service-unavailable.reply.json",
            503,
            "SERVICE_UNAVAILABLE",
        ),
    ];
    for (effect, name, status, error_type) in cases {
        let (_world, server, _client) = setup(vec![fault(CallKind::SetNic, effect)]).await;
        let http = reqwest::Client::new();
        let base = server.url();
        let token = session(&http, &base).await;
        let r = sent(
            http.patch(format!(
                "{base}/api/vcenter/vm/{VM}/hardware/ethernet/{NIC}"
            ))
            .header("vmware-api-session-id", &token)
            .json(&golden(GOLDENS, "ethernet-update.request.json")),
        )
        .await;
        assert_eq!(r.status(), status, "{name}");
        let body: Value = r.json().await.unwrap();
        same_shape(&golden(GOLDENS, name), &body, name).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body["error_type"], error_type);
    }
}
