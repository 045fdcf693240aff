//! The NX-API, eAPI and RESTCONF clients against their protocol simulators over loopback, on the
//! real clock: every fault of `docs/formats/scenario.md` maps to the outcome class R8 needs, and the simulated
//! switch shows whether the change landed. Then the real engine quarantines physical L-Servers
//! through these clients.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quarantine_lab::adapters::eapi::EapiSwitch;
use quarantine_lab::adapters::nxapi::NxapiSwitch;
use quarantine_lab::adapters::restconf::RestconfSwitch;
use quarantine_lab::adapters::{Adapters, DeviceResult, OutcomeClass, Switch};
use quarantine_lab::engine::{Command, Engine, EngineOptions, Journal, Outcome};
use quarantine_lab::model::{load_site, Site};
use quarantine_lab::sim::wire::{self, WireServer};
use quarantine_lab::sim::{CallKind, FaultEffect, FaultSpec, Recorder, SimWorld};
use serde_json::Value;

mod golden_support;
use golden_support::{assert_classified, assert_shape, golden, same_shape};

/// Client call timeout: well above the simulated latency, well below a hang.
const TIMEOUT: Duration = Duration::from_millis(400);
const LATENCY: Duration = Duration::from_millis(20);
/// How long `timeout` faults hang: beyond [`TIMEOUT`].
const HANG: Duration = Duration::from_secs(2);
/// The VLAN the tests write (qr-a).
const TARGET: u16 = 910;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vendor {
    Nxapi,
    Eapi,
    Restconf,
}

impl Vendor {
    fn device(self) -> &'static str {
        match self {
            Vendor::Nxapi => "nx-1",
            Vendor::Eapi => "ea-1",
            Vendor::Restconf => "rc-1",
        }
    }

    fn port(self) -> &'static str {
        match self {
            Vendor::Nxapi => "Ethernet1/11",
            Vendor::Eapi => "Ethernet11",
            Vendor::Restconf => "Ethernet1/21",
        }
    }

    /// The port's VLAN in the fixture (its NIC's operation network).
    fn initial(self) -> u16 {
        match self {
            Vendor::Nxapi => 110,
            Vendor::Eapi | Vendor::Restconf => 111,
        }
    }

    fn of(device: &str) -> Vendor {
        match device.get(..2) {
            Some("nx") => Vendor::Nxapi,
            Some("ea") => Vendor::Eapi,
            _ => Vendor::Restconf,
        }
    }

    async fn start(self, world: &SimWorld, device: &str) -> WireServer {
        let world = world.clone();
        let server = match self {
            Vendor::Nxapi => wire::nxapi::start(world, device).await,
            Vendor::Eapi => wire::eapi::start(world, device).await,
            Vendor::Restconf => wire::restconf::start(world, device).await,
        };
        server.expect("simulator starts")
    }

    fn client(self, url: &str, password: &str, timeout: Duration) -> Arc<dyn Switch> {
        let built: Result<Arc<dyn Switch>, _> = match self {
            Vendor::Nxapi => {
                NxapiSwitch::new(url, "qlab", password, timeout).map(|c| Arc::new(c) as _)
            }
            Vendor::Eapi => {
                EapiSwitch::new(url, "qlab", password, timeout).map(|c| Arc::new(c) as _)
            }
            Vendor::Restconf => {
                RestconfSwitch::new(url, "qlab", password, timeout).map(|c| Arc::new(c) as _)
            }
        };
        built.expect("client builds")
    }
}

/// The mixed-site fixture with short switch latencies, so the file runs in seconds.
fn site() -> Arc<Site> {
    let mut site = load_site(Path::new("fixtures/topologies/mixed-site.toml")).expect("fixture");
    for switch in &mut site.topology.switches {
        switch.latency = Some(LATENCY);
    }
    Arc::new(site)
}

fn fault(v: Vendor, call: CallKind, effect: FaultEffect) -> FaultSpec {
    FaultSpec {
        delay: Some(HANG),
        ..FaultSpec::new(v.device(), Some(call), effect)
    }
}

/// One simulated switch of one vendor with its client.
struct Rig {
    vendor: Vendor,
    world: SimWorld,
    server: WireServer,
}

impl Rig {
    async fn start(vendor: Vendor, faults: Vec<FaultSpec>) -> Rig {
        let world = SimWorld::new(site(), faults, Recorder::new(), 0);
        let server = vendor.start(&world, vendor.device()).await;
        Rig {
            vendor,
            world,
            server,
        }
    }

    fn client(&self) -> Arc<dyn Switch> {
        self.vendor.client(&self.server.url(), "qlab", TIMEOUT)
    }

    /// `(running, saved)` of the vendor's test port.
    fn vlans(&self) -> (u16, u16) {
        self.world
            .port_vlans(self.vendor.device(), self.vendor.port())
            .expect("port exists")
    }
}

async fn ok_set_get_save(v: Vendor) {
    let rig = Rig::start(v, vec![]).await;
    let client = rig.client();
    assert_eq!(client.get_port(v.port()).await, Ok(v.initial()));
    client.set_port(v.port(), TARGET).await.expect("set");
    assert_eq!(
        rig.vlans(),
        (TARGET, v.initial()),
        "running changed, saved not yet"
    );
    assert_eq!(client.get_port(v.port()).await, Ok(TARGET));
    client.save_config().await.expect("save");
    assert_eq!(rig.vlans(), (TARGET, TARGET));
}

/// A `set_port` under `effect`: the class it returns (`None`: ok) and whether it landed.
async fn set_under(v: Vendor, effect: FaultEffect, class: Option<OutcomeClass>, applied: bool) {
    let rig = Rig::start(v, vec![fault(v, CallKind::SetPort, effect)]).await;
    let started = Instant::now();
    let result = rig.client().set_port(v.port(), TARGET).await;
    assert_eq!(
        result.as_ref().err().map(|e| e.class),
        class,
        "{v:?} {effect:?}: {result:?}"
    );
    assert!(
        started.elapsed() < TIMEOUT + Duration::from_secs(1),
        "cut at the call timeout"
    );
    let running = if applied { TARGET } else { v.initial() };
    assert_eq!(rig.vlans(), (running, v.initial()), "{v:?} {effect:?}");
}

async fn wrong_password_is_auth(v: Vendor) {
    let rig = Rig::start(v, vec![]).await;
    let client = v.client(&rig.server.url(), "wrong", TIMEOUT);
    let error = client
        .set_port(v.port(), TARGET)
        .await
        .expect_err("refused");
    assert_eq!(error.class, OutcomeClass::Auth, "{error}");
    assert_eq!(rig.vlans().0, v.initial());
    let error = client.get_port(v.port()).await.expect_err("refused");
    assert_eq!(error.class, OutcomeClass::Auth);
}

/// A hang shorter than the call timeout ends in the simulator's error reply for `unknown`,
/// which the client must not take for a rejection.
async fn short_hang_reply_is_unknown(v: Vendor) {
    let mut spec = fault(v, CallKind::SetPort, FaultEffect::ApplyThenTimeout);
    spec.delay = Some(Duration::from_millis(50));
    let rig = Rig::start(v, vec![spec]).await;
    let error = rig
        .client()
        .set_port(v.port(), TARGET)
        .await
        .expect_err("fails");
    assert_eq!(error.class, OutcomeClass::Unknown, "{error}");
    assert_eq!(rig.vlans().0, TARGET);
}

async fn read_and_save_faults(v: Vendor) {
    let faults = vec![
        fault(v, CallKind::GetPort, FaultEffect::Reject),
        fault(v, CallKind::SaveConfig, FaultEffect::Busy),
    ];
    let rig = Rig::start(v, faults).await;
    let client = rig.client();
    let read = client.get_port(v.port()).await.expect_err("read fails");
    assert_eq!(read.class, OutcomeClass::Rejected, "{read}");
    client.set_port(v.port(), TARGET).await.expect("set");
    let save = client.save_config().await.expect_err("save fails");
    assert_eq!(save.class, OutcomeClass::Busy, "{save}");
    assert_eq!(rig.vlans(), (TARGET, v.initial()));
}

async fn unknown_port_is_rejected(v: Vendor) {
    let rig = Rig::start(v, vec![]).await;
    let client = rig.client();
    let error = client
        .set_port("Ethernet9/99", TARGET)
        .await
        .expect_err("no port");
    assert_eq!(error.class, OutcomeClass::Rejected, "{error}");
    let error = client.get_port("Ethernet9/99").await.expect_err("no port");
    assert_eq!(error.class, OutcomeClass::Rejected, "{error}");
}

async fn refused_is_unavailable(v: Vendor) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let client = v.client(&url, "qlab", TIMEOUT);
    let set = client
        .set_port(v.port(), TARGET)
        .await
        .expect_err("refused");
    assert_eq!(set.class, OutcomeClass::Unavailable, "{set}");
    let save = client.save_config().await.expect_err("refused");
    assert_eq!(save.class, OutcomeClass::Unavailable, "{save}");
}

/// The engine quarantines `lserver` through wire clients for every switch it touches; each port
/// ends on its quarantine VLAN, saved on persisting switches.
async fn engine_quarantines(lserver: &str, expected: &[(&str, &str, u16)]) {
    let site = site();
    let world = SimWorld::new(site.clone(), vec![], Recorder::new(), 0);
    let mut servers = Vec::new();
    let mut adapters = Adapters::default();
    for (device, _, _) in expected {
        let v = Vendor::of(device);
        let server = v.start(&world, device).await;
        let client = v.client(&server.url(), "qlab", Duration::from_secs(2));
        adapters.switches.insert(device.to_string(), client);
        servers.push(server);
    }
    let journal = Journal::open_in_memory().expect("journal");
    let engine = Engine::open(site.clone(), journal, adapters, EngineOptions::default())
        .expect("engine opens");
    let command = Command::Quarantine {
        lserver: lserver.into(),
    };
    engine.submit_command(command).await.expect("accepted");
    tokio::time::timeout(Duration::from_secs(20), engine.wait_idle())
        .await
        .expect("engine settles");
    let view = engine.lserver(lserver).expect("L-Server");
    assert_eq!(view.outcome, Some(Outcome::Quarantined), "{view:?}");
    let persist: HashMap<&str, bool> = site
        .topology
        .switches
        .iter()
        .map(|s| (s.name.as_str(), s.persist))
        .collect();
    for (device, port, vlan) in expected {
        let (running, saved) = world.port_vlans(device, port).expect("port");
        assert_eq!(running, *vlan, "{device} {port} running");
        if persist.get(device).copied().unwrap_or(false) {
            assert_eq!(saved, *vlan, "{device} {port} saved");
        } else {
            assert_ne!(saved, *vlan, "{device} {port} must not be saved");
        }
    }
}

/// One multi-threaded async test per name, each awaiting its check.
macro_rules! async_tests {
    ($($name:ident => $check:expr;)+) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $check.await;
        }
    )+};
}

macro_rules! vendor_suite {
    ($module:ident, $vendor:expr) => {
        mod $module {
            use super::*;
            const V: Vendor = $vendor;
            use FaultEffect::*;
            use OutcomeClass::*;

            async_tests! {
                set_get_save_ok => ok_set_get_save(V);
                reject_is_rejected_not_applied => set_under(V, Reject, Some(Rejected), false);
                apply_then_error_is_rejected_but_applied => set_under(V, ApplyThenError, Some(Rejected), true);
                unavailable_is_unavailable => set_under(V, FaultEffect::Unavailable, Some(OutcomeClass::Unavailable), false);
                busy_is_busy => set_under(V, FaultEffect::Busy, Some(OutcomeClass::Busy), false);
                expired_session_is_auth => set_under(V, AuthExpired, Some(Auth), false);
                wrong_password_is_auth_error => wrong_password_is_auth(V);
                timeout_is_unknown_not_applied => set_under(V, Timeout, Some(Unknown), false);
                apply_then_timeout_is_unknown_applied => set_under(V, ApplyThenTimeout, Some(Unknown), true);
                short_hang_is_unknown => short_hang_reply_is_unknown(V);
                accept_without_apply_is_ok_not_applied => set_under(V, AcceptWithoutApply, None, false);
                reset_is_unknown_applied => set_under(V, FaultEffect::Reset, Some(Unknown), true);
                blackhole_is_unknown_not_applied => set_under(V, Blackhole, Some(Unknown), false);
                connection_refused_is_unavailable => refused_is_unavailable(V);
                read_and_save_errors_are_classified => read_and_save_faults(V);
                unknown_port_is_rejected_error => unknown_port_is_rejected(V);
            }
        }
    };
}

vendor_suite!(nxapi, Vendor::Nxapi);
vendor_suite!(eapi, Vendor::Eapi);
vendor_suite!(restconf, Vendor::Restconf);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxapi_batch_stops_at_first_failing_port() {
    let v = Vendor::Nxapi;
    let rig = Rig::start(v, vec![]).await;
    let client = NxapiSwitch::new(&rig.server.url(), "qlab", "qlab", TIMEOUT).expect("client");
    let changes = [
        ("Ethernet1/11", TARGET),
        ("Ethernet9/99", TARGET),
        ("Ethernet1/48", TARGET),
    ];
    let results = client.set_ports(&changes).await;
    let classes = classes(&results);
    let rejected = Some(OutcomeClass::Rejected);
    assert_eq!(classes, vec![None, rejected, rejected], "{results:?}");
    assert_eq!(
        rig.world.port_vlans("nx-1", "Ethernet1/11"),
        Some((TARGET, 110))
    );
    assert_eq!(
        rig.world.port_vlans("nx-1", "Ethernet1/48"),
        Some((111, 111))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eapi_batch_reports_busy_port_and_applies_earlier_ones() {
    let v = Vendor::Eapi;
    let mut busy = fault(v, CallKind::SetPort, FaultEffect::Busy);
    busy.matcher.port = Some("Ethernet99".into());
    let rig = Rig::start(v, vec![busy]).await;
    let client = EapiSwitch::new(&rig.server.url(), "qlab", "qlab", TIMEOUT).expect("client");
    let results = client
        .set_ports(&[("Ethernet11", TARGET), ("Ethernet99", TARGET)])
        .await;
    let classes = classes(&results);
    assert_eq!(classes, vec![None, Some(OutcomeClass::Busy)], "{results:?}");
    assert_eq!(rig.vlans(), (TARGET, 111));
}

/// R15: one batched request is held back by the device's latency once, as the sim face's batch
/// is: a batch of more port changes than call timeouts fit latencies in still comes back, each
/// change applied (summing the delays would time out a healthy switch's batch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r15_a_batched_request_takes_the_latency_once() {
    let changes = 3 * (TIMEOUT.as_millis() / LATENCY.as_millis()) as usize;
    for v in [Vendor::Eapi, Vendor::Nxapi] {
        let rig = Rig::start(v, vec![]).await;
        let batch = vec![(v.port().to_string(), TARGET); changes];
        let results = rig.client().set_ports(&batch).await;
        let first = results.first();
        assert_eq!(classes(&results), vec![None; changes], "{v:?}: {first:?}");
    }
}

/// Posts `body` with `content_type` to the simulator and returns status and JSON body.
/// Each batch result's failure class (`None` for a change that went through).
fn classes(results: &[DeviceResult<()>]) -> Vec<Option<OutcomeClass>> {
    results
        .iter()
        .map(|r| r.as_ref().err().map(|e| e.class))
        .collect()
}

async fn raw(rig: &Rig, method: &str, path: &str, content_type: &str, body: &str) -> (u16, Value) {
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let response = client
        .request(method, format!("{}{path}", rig.server.url()))
        .basic_auth("qlab", Some("qlab"))
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .expect("reply");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_protocol_errors() {
    let nx = Rig::start(Vendor::Nxapi, vec![]).await;
    let (status, body) = raw(&nx, "POST", "/ins", "application/json-rpc", "[{").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (500, &Value::from(-32700)),
        "{body}"
    );
    let wrong_method =
        r#"[{"jsonrpc":"2.0","method":"bash","params":{"cmd":"ls","version":1},"id":1}]"#;
    let (status, body) = raw(&nx, "POST", "/ins", "application/json-rpc", wrong_method).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (500, &Value::from(-32601)),
        "{body}"
    );

    let ea = Rig::start(Vendor::Eapi, vec![]).await;
    let no_version = r#"{"method":"runCmds","params":{"version":1,"cmds":["enable"]},"id":"1"}"#;
    let (status, body) = raw(&ea, "POST", "/command-api", "application/json", no_version).await;
    assert_eq!(status, 200);
    assert_eq!(body["error"]["code"], -32600, "{body}");
    assert_eq!(
        body["error"]["message"],
        "Expected field 'jsonrpc' not specified"
    );
    let out_of_mode = r#"{"jsonrpc":"2.0","method":"runCmds","params":{"version":1,"cmds":["interface Ethernet11","switchport access vlan 910"]},"id":"7"}"#;
    let (_, body) = raw(&ea, "POST", "/command-api", "application/json", out_of_mode).await;
    assert_eq!(
        (&body["error"]["code"], &body["id"]),
        (&Value::from(1002), &Value::from("7"))
    );
    assert_eq!(ea.vlans().0, 111, "nothing ran");

    let rc = Rig::start(Vendor::Restconf, vec![]).await;
    let path = quarantine_lab::adapters::restconf::config_path("Ethernet1/21");
    assert!(path.contains("interface=Ethernet1%2F21/"), "{path}");
    let good = r#"{"openconfig-vlan:config":{"access-vlan":910}}"#;
    let (status, _) = raw(&rc, "PATCH", &path, "application/json", good).await;
    assert_eq!(status, 415);
    let extra = r#"{"openconfig-vlan:config":{"access-vlan":910,"native-vlan":1}}"#;
    let (status, body) = raw(&rc, "PATCH", &path, "application/yang-data+json", extra).await;
    assert_eq!(status, 400, "{body}");
    let tag = &body["ietf-restconf:errors"]["error"][0]["error-tag"];
    assert_eq!(tag, "invalid-value");
    let (status, _) = raw(&rc, "PATCH", &path, "application/yang-data+json", good).await;
    assert_eq!(status, 204);
    assert_eq!(rc.vlans().0, TARGET);
}

async_tests! {
    engine_quarantines_over_nxapi =>
        engine_quarantines("/shared/storage-01", &[("nx-1", "Ethernet1/48", 911)]);
    engine_quarantines_over_eapi_and_nxapi => engine_quarantines(
        "/tenant-a/sbc-11",
        &[("nx-1", "Ethernet1/11", 910), ("ea-1", "Ethernet11", 911)],
    );
    engine_quarantines_over_restconf =>
        engine_quarantines("/tenant-c/sbc-31", &[("rc-1", "Ethernet1/31", 911)]);
    // ea-2 does not persist (running only); rc-1 does.
    engine_quarantines_without_saving_on_non_persisting_switches => engine_quarantines(
        "/tenant-b/sbc-21",
        &[("ea-2", "Ethernet21", 910), ("rc-1", "Ethernet1/21", 911)],
    );
}

// ---- Goldens: the vendors' samples in fixtures/devices/ are the contract both sides meet ----

#[test]
fn golden_nxapi_client_sends_the_request_nxapi_plumbing_sends() {
    use quarantine_lab::adapters::nxapi::request_body;
    let ours = serde_json::to_value(request_body(&["show version".to_string()])).expect("json");
    let theirs = golden("cisco-nxapi", "jsonrpc-show-version.request.json");
    // nxapi-plumbing writes the version as 1.0, the client as 1: the same JSON number.
    assert_eq!(ours[0]["params"]["version"].as_f64(), Some(1.0));
    let strip = |mut v: Value| {
        v[0]["params"]["version"] = Value::Null;
        v
    };
    assert_eq!(strip(ours), strip(theirs));
}

#[test]
fn golden_nxapi_client_reads_vendor_replies() {
    use quarantine_lab::adapters::nxapi::{interpret, parse_switchport};
    use reqwest::StatusCode;
    let text = |name: &str| golden("cisco-nxapi", name).to_string();
    let version = interpret(StatusCode::OK, &text("jsonrpc-show-version.reply.json"), 1);
    let version = version.map_err(|(_, e)| e).expect("show version reads");
    assert_eq!(version[0]["body"]["host_name"], "nxos1");
    let config = interpret(StatusCode::OK, &text("jsonrpc-config.reply.json"), 3);
    assert_eq!(
        config.map_err(|(_, e)| e).expect("config"),
        vec![Value::Null; 3]
    );
    let error = text("jsonrpc-invalid-command.reply.json");
    let refused = interpret(StatusCode::INTERNAL_SERVER_ERROR, &error, 1);
    let (index, error) = refused.expect_err("invalid command");
    assert_eq!((index, error.class), (0, OutcomeClass::Rejected), "{error}");
    assert!(error.detail.contains("% Invalid command"), "{error}");
    let switchport = golden(
        "cisco-nxapi",
        "jsonrpc-show-interface-switchport.reply.json",
    );
    let body = &switchport["result"]["body"];
    assert_eq!(parse_switchport("Ethernet1/5", body), Some(10));
    assert_eq!(parse_switchport("ethernet1/5", body), Some(10));
    assert_eq!(parse_switchport("Ethernet1/6", body), None);
}

#[test]
fn golden_eapi_client_reads_vendor_replies() {
    use quarantine_lab::adapters::eapi::{interpret, parse_switchport, request_body};
    use reqwest::StatusCode;
    let text = |name: &str| golden("arista-eapi", name).to_string();
    let ours = serde_json::to_value(request_body(&["enable".into(), "show version".into()], "7"))
        .expect("json");
    let theirs = golden("arista-eapi", "runcmds-show-version.request.json");
    for key in ["jsonrpc", "method"] {
        assert_eq!(ours[key], theirs[key], "{key}");
    }
    for key in ["version", "format", "cmds"] {
        assert_eq!(ours["params"][key], theirs["params"][key], "params.{key}");
    }
    let version = interpret(StatusCode::OK, &text("runcmds-show-version.reply.json"), 2);
    let version = version.map_err(|(_, e)| e).expect("show version reads");
    assert_eq!(version[1]["modelName"], "DCS-7048T-A-F");
    let config = interpret(StatusCode::OK, &text("runcmds-config.reply.json"), 5);
    assert!(config.is_ok(), "{config:?}");
    let failed = interpret(StatusCode::OK, &text("runcmds-command-error.reply.json"), 4);
    let (index, error) = failed.expect_err("command error");
    assert_eq!((index, error.class), (3, OutcomeClass::Rejected), "{error}");
    let protocol = interpret(
        StatusCode::OK,
        &text("runcmds-protocol-error.reply.json"),
        1,
    );
    let (index, error) = protocol.expect_err("protocol error");
    assert_eq!((index, error.class), (0, OutcomeClass::Rejected), "{error}");
    let switchport = golden(
        "arista-eapi",
        "runcmds-show-interfaces-switchport.reply.json",
    );
    assert_eq!(
        parse_switchport("Ethernet5", &switchport["result"][0]),
        Some(910)
    );
}

/// Posts golden request `name` of `dir` to the simulator of `rig` and returns status and body.
/// The NX-API simulator's reply to the JSON-RPC `request`, which must have the shape of the
/// vendor's sample `reply` in fixtures/devices/cisco-nxapi/.
async fn shown(nx: &Rig, request: &str, reply: &str) -> Value {
    let (_, body) = raw(nx, "POST", "/ins", "application/json-rpc", request).await;
    same_shape(&golden("cisco-nxapi", reply), &body, reply)
        .unwrap_or_else(|e| panic!("{e}\n{body}"));
    body
}

async fn post_golden(rig: &Rig, dir: &str, name: &str, content_type: &str) -> (u16, Value) {
    let path = if dir == "cisco-nxapi" {
        "/ins"
    } else {
        "/command-api"
    };
    raw(
        rig,
        "POST",
        path,
        content_type,
        &golden(dir, name).to_string(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_nxapi_simulator_answers_like_nxos() {
    let nx = Rig::start(Vendor::Nxapi, vec![]).await;
    let dir = "cisco-nxapi";
    let rpc = "application/json-rpc";
    let cases = [
        ("jsonrpc-show-version", 200),
        ("jsonrpc-cli-ascii-save", 200),
        ("jsonrpc-invalid-command", 500),
    ];
    for (case, status) in cases {
        let (got, body) = post_golden(&nx, dir, &format!("{case}.request.json"), rpc).await;
        let want = golden(dir, &format!("{case}.reply.json"));
        assert_eq!(got, status, "{case}: {body}");
        same_shape(&want, &body, case).unwrap_or_else(|e| panic!("{case}: {e}\n{body}"));
    }
    assert_eq!(nx.vlans(), (110, 110), "saved what was running");
    let (status, body) = post_golden(&nx, dir, "jsonrpc-config.request.json", rpc).await;
    assert_eq!(
        (status, body),
        (200, golden(dir, "jsonrpc-config.reply.json"))
    );
    assert_eq!(nx.vlans(), (TARGET, 110), "the config lines set the port");
    let brief = r#"[{"jsonrpc":"2.0","method":"cli","params":{"cmd":"show vlan brief","version":1},"id":1}]"#;
    let body = shown(&nx, brief, "jsonrpc-show-vlan-brief.reply.json").await;
    let rows = body["result"]["body"]["TABLE_vlanbriefxbrief"]["ROW_vlanbriefxbrief"]
        .as_array()
        .expect("rows");
    let on_target = rows
        .iter()
        .find(|r| r["vlanshowbr-vlanid"] == "910")
        .expect("VLAN 910 listed");
    assert_eq!(on_target["vlanshowbr-vlanname"], "qr-a");
    assert_eq!(on_target["vlanshowplist-ifidx"], "Ethernet1/11");
    let show = r#"{"jsonrpc":"2.0","method":"cli","params":{"cmd":"show interface ethernet1/11 switchport","version":"1.0"},"id":1}"#;
    let body = shown(&nx, show, "jsonrpc-show-interface-switchport.reply.json").await;
    let row = &body["result"]["body"]["TABLE_interface"]["ROW_interface"];
    assert_eq!(
        (&row["interface"], &row["access_vlan"]),
        (&Value::from("Ethernet1/11"), &Value::from("910"))
    );

    let ins = "application/json";
    for (case, status) in [
        ("ins-api-show", 200),
        ("ins-api-conf", 200),
        ("ins-api-error", 200),
    ] {
        let (got, body) = post_golden(&nx, dir, &format!("{case}.request.json"), ins).await;
        let want = golden(dir, &format!("{case}.reply.json"));
        assert_eq!(got, status, "{case}: {body}");
        same_shape(&want, &body, case).unwrap_or_else(|e| panic!("{case}: {e}\n{body}"));
        let codes = |v: &Value| match &v["ins_api"]["outputs"]["output"] {
            Value::Array(all) => all.iter().map(|o| o["code"].clone()).collect(),
            one => vec![one["code"].clone()],
        };
        assert_eq!(codes(&body), codes(&want), "{case}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_eapi_simulator_answers_like_eos() {
    let ea = Rig::start(Vendor::Eapi, vec![]).await;
    let dir = "arista-eapi";
    // pyeapi's content type.
    let ct = "application/json-rpc";
    for case in [
        "runcmds-show-version",
        "runcmds-show-version-text",
        "runcmds-show-running-config-text",
    ] {
        let (status, body) = post_golden(&ea, dir, &format!("{case}.request.json"), ct).await;
        let want = golden(dir, &format!("{case}.reply.json"));
        assert_eq!(status, 200, "{case}: {body}");
        same_shape(&want, &body, case).unwrap_or_else(|e| panic!("{case}: {e}\n{body}"));
        assert_eq!(body["id"], want["id"], "{case}: id echoed");
    }
    let (_, body) = post_golden(&ea, dir, "runcmds-config.request.json", ct).await;
    assert_eq!(body, golden(dir, "runcmds-config.reply.json"));
    assert_eq!(ea.vlans(), (911, 111), "pyeapi's config lines set the port");
    let running = r#"{"jsonrpc":"2.0","method":"runCmds","params":{"version":1,"format":"text","cmds":["enable","show running-config all"]},"id":"r"}"#;
    let (_, body) = raw(&ea, "POST", "/command-api", ct, running).await;
    let text = body["result"][1]["output"].as_str().expect("text");
    // What pyeapi's switchports.get needs in the interface block.
    let block = text
        .split("interface Ethernet11\n")
        .nth(1)
        .and_then(|rest| rest.split("!\n").next())
        .expect("interface block");
    for line in [
        "   switchport access vlan 911\n",
        "   switchport mode access\n",
        "   switchport trunk native vlan 1\n",
        "   switchport trunk allowed vlan 1-4094\n",
    ] {
        assert!(block.contains(line), "{line:?} missing from\n{block}");
    }
    let show_vlan = r#"{"jsonrpc":"2.0","method":"runCmds","params":{"version":1,"cmds":["show vlan","show interfaces ethernet11 switchport"]},"id":"v"}"#;
    let (_, body) = raw(&ea, "POST", "/command-api", ct, show_vlan).await;
    // Keyed by data (VLAN ids, port names): compare one entry with one entry.
    let want = golden(dir, "runcmds-show-vlan.reply.json");
    let got = &body["result"][0];
    assert!(got["sourceDetail"].is_string(), "{body}");
    let mut entry = want["result"][0]["vlans"]["10"].clone();
    entry["interfaces"] = serde_json::json!({});
    same_shape(&entry, &got["vlans"]["911"], "vlan").unwrap_or_else(|e| panic!("{e}\n{body}"));
    let port = &got["vlans"]["911"]["interfaces"]["Ethernet11"];
    same_shape(
        &want["result"][0]["vlans"]["10"]["interfaces"]["Ethernet3"],
        port,
        "port",
    )
    .unwrap_or_else(|e| panic!("{e}\n{body}"));
    let want = golden(dir, "runcmds-show-interfaces-switchport.reply.json");
    same_shape(
        &want["result"][0]["switchports"]["Ethernet5"],
        &body["result"][1]["switchports"]["Ethernet11"],
        "switchport",
    )
    .unwrap_or_else(|e| panic!("{e}\n{body}"));
    let (_, body) = post_golden(&ea, dir, "runcmds-command-error.request.json", ct).await;
    let want = golden(dir, "runcmds-command-error.reply.json");
    same_shape(&want, &body, "error").unwrap_or_else(|e| panic!("{e}\n{body}"));
    assert_eq!(body["error"]["code"], want["error"]["code"]);
    assert_eq!(body["error"]["message"], want["error"]["message"]);
    assert_eq!(body["error"]["data"].as_array().map(Vec::len), Some(4));
    let (status, body) = post_golden(&ea, dir, "runcmds-protocol-error.request.json", ct).await;
    assert_eq!(
        (status, body),
        (200, golden(dir, "runcmds-protocol-error.reply.json"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv6_whole_switch_reads_are_device_calls_that_faults_drive() {
    // A read fault on the switch fails `show vlan` and `show running-config`: they read the
    // ports through the model, not around it.
    let v = Vendor::Eapi;
    let rig = Rig::start(v, vec![fault(v, CallKind::GetPort, FaultEffect::Reject)]).await;
    let request = r#"{"jsonrpc":"2.0","method":"runCmds","params":{"version":1,"format":"text","cmds":["show vlan"]},"id":"f"}"#;
    let (_, body) = raw(&rig, "POST", "/command-api", "application/json", request).await;
    assert_eq!(body["error"]["code"], 1002, "{body}");
    let nx = Rig::start(
        Vendor::Nxapi,
        vec![fault(
            Vendor::Nxapi,
            CallKind::SaveConfig,
            FaultEffect::Busy,
        )],
    )
    .await;
    let save = r#"{"jsonrpc":"2.0","method":"cli_ascii","params":{"cmd":"copy run startup-config","version":1.0},"id":1}"#;
    let (status, body) = raw(&nx, "POST", "/ins", "application/json-rpc", save).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (500, &Value::from(-32001))
    );
}

// ---- RESTCONF goldens: RFC 8040 and openconfig-vlan shapes in fixtures/devices/ ----

const RESTCONF_GOLDENS: &str = "openconfig-restconf";
const RC_PORT: &str = "Ethernet1/21";
const RC_CONFIG: &str = "/restconf/data/openconfig-interfaces:interfaces/interface=Ethernet1%2F21/ethernet/switched-vlan/config";

/// The RESTCONF error goldens, the status each comes with, and the class R8 needs.
const RESTCONF_ERRORS: &[(&str, u16, OutcomeClass)] = &[
    ("error-lock-denied.reply.json", 409, OutcomeClass::Busy),
    ("error-in-use.reply.json", 409, OutcomeClass::Busy),
    ("error-data-missing.reply.json", 404, OutcomeClass::Rejected),
    (
        "error-invalid-value.reply.json",
        400,
        OutcomeClass::Rejected,
    ),
    ("error-access-denied.reply.json", 401, OutcomeClass::Auth),
    (
        "error-resource-denied.reply.json",
        503,
        OutcomeClass::Unavailable,
    ),
    (
        "error-operation-failed.reply.json",
        500,
        OutcomeClass::Unknown,
    ),
];

fn yang(status: u16, body: Value) -> wiremock::ResponseTemplate {
    wiremock::ResponseTemplate::new(status)
        .set_body_raw(body.to_string(), "application/yang-data+json")
}

/// R8: the client writes the documented PATCH, reads the access VLAN out of a full container and
/// saves through the documented RPC reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_r8_restconf_client_speaks_the_documented_shapes() {
    use wiremock::matchers::{body_json, header, method, path};
    let server = wiremock::MockServer::start().await;
    let write = golden(RESTCONF_GOLDENS, "switched-vlan-config.request.json");
    wiremock::Mock::given(method("PATCH"))
        .and(path(RC_CONFIG))
        .and(header("content-type", "application/yang-data+json"))
        .and(body_json(&write))
        .respond_with(wiremock::ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    wiremock::Mock::given(method("GET"))
        .and(path(RC_CONFIG))
        .respond_with(yang(
            200,
            golden(RESTCONF_GOLDENS, "switched-vlan-config.reply.json"),
        ))
        .mount(&server)
        .await;
    wiremock::Mock::given(method("POST"))
        .and(path("/restconf/operations/cisco-ia:save-config"))
        .respond_with(yang(
            200,
            golden(RESTCONF_GOLDENS, "save-config.reply.json"),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let client = RestconfSwitch::new(&server.uri(), "qlab", "qlab", TIMEOUT).expect("client");
    let vlan = write["openconfig-vlan:config"]["access-vlan"]
        .as_u64()
        .unwrap();
    client
        .set_port(RC_PORT, vlan as u16)
        .await
        .expect("documented PATCH");
    let documented = golden(RESTCONF_GOLDENS, "switched-vlan-config.reply.json");
    let read = documented["openconfig-vlan:config"]["access-vlan"]
        .as_u64()
        .unwrap();
    assert_eq!(client.get_port(RC_PORT).await.expect("read"), read as u16);
    client.save_config().await.expect("save");
}

/// R8: each documented RESTCONF error lands in the class that decides retry or rollback.
#[test]
fn golden_r8_restconf_client_classifies_the_documented_errors() {
    assert_classified(
        RESTCONF_GOLDENS,
        RESTCONF_ERRORS,
        quarantine_lab::adapters::restconf::classify,
    );
}

/// The simulator answers in the documented shapes: the full config container, the PATCH the
/// documentation shows, the save RPC, and its errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_restconf_simulator_answers_in_the_documented_shapes() {
    let rig = Rig::start(Vendor::Restconf, vec![]).await;
    let media = "application/yang-data+json";
    let shape = |name: &str, actual: &Value| assert_shape(RESTCONF_GOLDENS, name, actual);
    let (status, body) = raw(&rig, "GET", RC_CONFIG, media, "").await;
    assert_eq!(status, 200, "{body}");
    shape("switched-vlan-config.reply.json", &body);

    let write = golden(RESTCONF_GOLDENS, "switched-vlan-config.request.json");
    let (status, _) = raw(&rig, "PATCH", RC_CONFIG, media, &write.to_string()).await;
    assert_eq!(status, 204);
    let vlan = write["openconfig-vlan:config"]["access-vlan"]
        .as_u64()
        .unwrap();
    assert_eq!(rig.vlans().0, vlan as u16);

    let save = "/restconf/operations/cisco-ia:save-config";
    let (status, body) = raw(&rig, "POST", save, media, "").await;
    assert_eq!(status, 200);
    shape("save-config.reply.json", &body);

    let unknown = RC_CONFIG.replace("Ethernet1%2F21", "Ethernet1%2F99");
    let (status, body) = raw(&rig, "GET", &unknown, media, "").await;
    assert_eq!(status, 404, "{body}");
    shape("error-data-missing.reply.json", &body);
    assert_eq!(
        body["ietf-restconf:errors"]["error"][0]["error-tag"],
        "data-missing"
    );

    let out_of_range =
        r#"{"openconfig-vlan:config":{"interface-mode":"ACCESS","access-vlan":5000}}"#;
    let (status, body) = raw(&rig, "PATCH", RC_CONFIG, media, out_of_range).await;
    assert_eq!(status, 400, "{body}");
    shape("error-invalid-value.reply.json", &body);
    assert_eq!(
        rig.vlans().0,
        vlan as u16,
        "a refused write changes nothing"
    );
}

/// The simulator's busy and refused calls are the documented errors with RFC 8040's statuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_restconf_simulator_faults_are_the_documented_errors() {
    let write = golden(RESTCONF_GOLDENS, "switched-vlan-config.request.json").to_string();
    let cases = [
        (FaultEffect::Busy, 409, "error-in-use.reply.json", "in-use"),
        (
            FaultEffect::Unavailable,
            503,
            "error-resource-denied.reply.json",
            "resource-denied",
        ),
    ];
    for (effect, status, name, tag) in cases {
        let mut spec = fault(Vendor::Restconf, CallKind::SetPort, effect);
        spec.delay = None;
        let rig = Rig::start(Vendor::Restconf, vec![spec]).await;
        let (got, body) = raw(
            &rig,
            "PATCH",
            RC_CONFIG,
            "application/yang-data+json",
            &write,
        )
        .await;
        assert_eq!(got, status, "{name}: {body}");
        same_shape(&golden(RESTCONF_GOLDENS, name), &body, name).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body["ietf-restconf:errors"]["error"][0]["error-tag"], tag);
    }
}
