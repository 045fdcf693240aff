//! The example Python plugin (`examples/plugins/restconf_switch.py`) as the engine daemon's
//! switch adapter: `qlab engine serve` starts it, a detection comes in, and the port of the
//! physical L-Server ends on its quarantine VLAN on the RESTCONF simulator. Then the plugin's
//! own classification of the simulator's failures, through the Rust client of the protocol.
//!
//! Needs python3 (on PATH, or `QLAB_PYTHON`): `cargo test --test plugin_python -- --ignored`
//! (`.ci/run` runs it).

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::run::first_line;
use quarantine_lab::adapters::plugin::{Family, PluginAdapter, PluginDevice, Supervision};
use quarantine_lab::adapters::{OutcomeClass, Switch};
use quarantine_lab::model::{load_site, Site};
use quarantine_lab::sim::wire::site::SimTls;
use quarantine_lab::sim::wire::{self, WireServer};
use quarantine_lab::sim::{CallKind, FaultEffect, FaultSpec, Recorder, SimWorld};
use serde_json::{json, Value};

const TOKEN: &str = "plugin-test-token";
/// rc-1's password on the simulator: it must never appear in the daemon's log.
const PASSWORD: &str = "plugin-pw-7781";
/// The switch and the physical L-Server whose one NIC is on it (op-b, VLAN 111 → qr-b, 911).
const SWITCH: &str = "rc-1";
const PORT: &str = "Ethernet1/31";
const LSERVER: &str = "tenant-c/sbc-31";

/// python3, or what `QLAB_PYTHON` names; a clear failure when there is none.
fn python() -> String {
    let python = std::env::var("QLAB_PYTHON").unwrap_or_else(|_| "python3".into());
    let found = Command::new(&python)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "this test needs python3: {python:?} cannot be run (install python3 or set QLAB_PYTHON)"
    );
    python
}

fn plugin_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plugins/restconf_switch.py")
}

/// The mixed-site fixture with tenant C's L-Servers quarantined on detection and rc-1 guarded
/// by [`PASSWORD`].
fn topology_text() -> String {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/topologies/mixed-site.toml");
    let text = std::fs::read_to_string(fixture).expect("fixture");
    let text = text.replace("\"/tenant-c\" = \"none\"\n", "");
    let text = text.replace(
        "name = \"rc-1\"\n",
        &format!(
            "name = \"rc-1\"\ncredentials = {{ user = \"qlab\", password = \"{PASSWORD}\" }}\n"
        ),
    );
    assert!(
        text.contains(PASSWORD),
        "the fixture changed: rc-1 not found"
    );
    text
}

/// A fresh folder holding [`topology_text`] as `site.toml`, and that file's path.
fn topology_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.toml");
    std::fs::write(&path, topology_text()).unwrap();
    (dir, path)
}

/// The site the simulator serves: the same file, with short latencies.
fn sim_site(path: &Path) -> Arc<Site> {
    let mut site = load_site(path).expect("topology");
    for switch in &mut site.topology.switches {
        switch.latency = Some(Duration::from_millis(10));
    }
    Arc::new(site)
}

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The engine config: rc-1 through the Python plugin, every other device on a closed port.
fn engine_config(dir: &Path, site: &Site, rc1_url: &str, python: &str) -> PathBuf {
    let mut config = format!(
        "topology = \"site.toml\"\njournal = \"journal.sqlite\"\ntoken = \"{TOKEN}\"\n\
         [api]\nlisten = \"127.0.0.1:0\"\n[syslog_in]\nudp = \"127.0.0.1:0\"\ntcp = \"127.0.0.1:0\"\n"
    );
    let t = &site.topology;
    let names = t
        .hypervisors
        .iter()
        .map(|h| &h.name)
        .chain(t.switches.iter().map(|s| &s.name))
        .chain(t.bmcs.iter().map(|b| &b.name));
    for name in names {
        if name == SWITCH {
            let cmd = json!([python, plugin_script().display().to_string()]);
            config.push_str(&format!(
                "[[devices]]\nname = \"{name}\"\nplugin = {cmd}\nurl = \"{rc1_url}\"\n\
                 user = \"qlab\"\npassword_env = \"QLAB_TEST_RC1_PASSWORD\"\nca_file = \"ca.pem\"\n"
            ));
        } else {
            config.push_str(&format!(
                "[[devices]]\nname = \"{name}\"\nurl = \"http://127.0.0.1:{}\"\n\
                 user = \"qlab\"\npassword = \"qlab\"\n",
                closed_port()
            ));
        }
    }
    let path = dir.join("engine.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// `qlab engine serve`, its API URL from the ready line, and its stderr collected.
struct Served {
    child: Child,
    api: String,
    stderr: std::thread::JoinHandle<String>,
}

fn serve(config: &Path) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qlab"))
        .args(["engine", "serve", "--config"])
        .arg(config)
        .env_remove("QLAB_TOKEN")
        .env("QLAB_LOG", "info")
        .env("QLAB_TEST_RC1_PASSWORD", PASSWORD)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qlab runs");
    let mut stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let line =
        first_line(child.stdout.take().unwrap(), Duration::from_secs(30)).unwrap_or_default();
    let Some(api) = serde_json::from_str::<Value>(&line)
        .ok()
        .and_then(|ready| ready["api"].as_str().map(str::to_string))
    else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "no ready line from qlab engine serve: {line:?}\nstderr:\n{}",
            stderr.join().unwrap_or_default()
        );
    };
    Served { child, api, stderr }
}

impl Served {
    /// SIGTERM, then the exit status and everything it logged.
    fn stop(mut self) -> (Option<i32>, String) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: `kill` with the id of our own child process, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        let code = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        (code, self.stderr.join().unwrap_or_default())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3; .ci/run runs it"]
async fn r9_engine_daemon_quarantines_a_physical_lserver_through_the_python_plugin() {
    let python = python();
    let (dir, site_path) = topology_file();
    let site = sim_site(&site_path);
    let world = SimWorld::new(site.clone(), vec![], Recorder::new(), 0);
    let mut server = wire::restconf::start(world.clone(), SWITCH)
        .await
        .expect("simulator starts");
    // Over HTTPS (R18): the plugin verifies the simulator with the config's `ca_file`.
    let tls = SimTls::generate().expect("certificates");
    server.serve_tls(tls.server_config.clone()).await.unwrap();
    std::fs::write(dir.path().join("ca.pem"), &tls.ca_pem).unwrap();
    assert!(server.url().starts_with("https://"));
    assert_eq!(world.port_vlans(SWITCH, PORT), Some((111, 111)));
    let config = engine_config(dir.path(), &site, &server.url(), &python);
    let served = tokio::task::spawn_blocking(move || serve(&config))
        .await
        .unwrap();

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let detection = json!({
        "source": "osce", "event_id": "plugin-python-1", "ip": "10.111.0.131",
        "threat": "TROJ_GENERIC.A", "category": "virus"
    });
    let posted = http
        .post(format!("{}/api/v1/detections", served.api))
        .bearer_auth(TOKEN)
        .json(&detection)
        .send()
        .await
        .map(|r| r.status());
    let mut view = Value::Null;
    for _ in 0..200 {
        if let Ok(reply) = http
            .get(format!("{}/api/v1/lservers/{LSERVER}", served.api))
            .bearer_auth(TOKEN)
            .send()
            .await
        {
            view = reply.json().await.unwrap_or(Value::Null);
            if view["state"] == "quarantined" || view["outcome"] == "quarantine_failed" {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let vlans = world.port_vlans(SWITCH, PORT);
    let (code, stderr) = tokio::task::spawn_blocking(move || served.stop())
        .await
        .unwrap();
    assert_eq!(
        posted.ok(),
        Some(reqwest::StatusCode::ACCEPTED),
        "stderr:\n{stderr}"
    );
    assert_eq!(view["state"], "quarantined", "{view}\nstderr:\n{stderr}");
    // rc-1 persists: running and saved both on qr-b.
    assert_eq!(vlans, Some((911, 911)), "stderr:\n{stderr}");
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    // The plugin's stderr reached the daemon's log; the password did not; it was shut down.
    assert!(
        stderr.contains("restconf_switch: initialized for rc-1"),
        "{stderr}"
    );
    assert!(stderr.contains("plugin stopped"), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}

fn fault(effect: FaultEffect, call: CallKind) -> FaultSpec {
    FaultSpec {
        delay: Some(Duration::from_secs(3)),
        ..FaultSpec::new(SWITCH, Some(call), effect)
    }
}

/// The plugin against a simulator with `faults`; the call timeout is 1 s.
async fn plugin_against(
    faults: Vec<FaultSpec>,
    url: Option<String>,
) -> (Arc<PluginAdapter>, SimWorld, WireServer) {
    let python = python();
    let (_dir, site_path) = topology_file();
    let world = SimWorld::new(sim_site(&site_path), faults, Recorder::new(), 0);
    let server = wire::restconf::start(world.clone(), SWITCH)
        .await
        .expect("simulator starts");
    let url = url.unwrap_or_else(|| server.url());
    let mut device = PluginDevice::new(SWITCH, Family::Switch, &url, "qlab", PASSWORD);
    device.options.insert("call_timeout_ms".into(), 1000.into());
    let cmd = [python, plugin_script().display().to_string()];
    let adapter =
        PluginAdapter::spawn_with(&cmd, device, Duration::from_secs(2), Supervision::default())
            .await
            .expect("the plugin starts");
    (adapter, world, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3; .ci/run runs it"]
async fn r8_the_python_plugin_classifies_the_simulators_failures() {
    let cases = [
        (FaultEffect::Reject, Some(OutcomeClass::Rejected), false),
        (FaultEffect::Busy, Some(OutcomeClass::Busy), false),
        (
            FaultEffect::Unavailable,
            Some(OutcomeClass::Unavailable),
            false,
        ),
        (FaultEffect::AuthExpired, Some(OutcomeClass::Auth), false),
        (FaultEffect::Reset, Some(OutcomeClass::Unknown), true),
        (FaultEffect::Blackhole, Some(OutcomeClass::Unknown), false),
        (
            FaultEffect::ApplyThenTimeout,
            Some(OutcomeClass::Unknown),
            true,
        ),
        (FaultEffect::AcceptWithoutApply, None, false),
    ];
    for (effect, class, applied) in cases {
        let (adapter, world, _server) =
            plugin_against(vec![fault(effect, CallKind::SetPort)], None).await;
        let result = adapter.set_port(PORT, 911).await;
        assert_eq!(
            result.as_ref().err().map(|e| e.class),
            class,
            "{effect:?}: {result:?}"
        );
        let running = world.port_vlans(SWITCH, PORT).unwrap().0;
        assert_eq!(running == 911, applied, "{effect:?}: running {running}");
        adapter.stop().await;
    }
    // Good path, then reads and saves, an unknown port, and nothing listening.
    let (adapter, world, _server) = plugin_against(vec![], None).await;
    assert_eq!(adapter.get_port(PORT).await, Ok(111));
    adapter.set_port(PORT, 911).await.expect("set");
    adapter.save_config().await.expect("save");
    assert_eq!(world.port_vlans(SWITCH, PORT), Some((911, 911)));
    let missing = adapter
        .set_port("Ethernet9/99", 911)
        .await
        .expect_err("no port");
    assert_eq!(missing.class, OutcomeClass::Rejected, "{missing}");
    adapter.stop().await;
    // Over HTTPS: without the site's CA the handshake fails before anything is sent.
    let mut server = wire::restconf::start(world.clone(), SWITCH).await.unwrap();
    let tls = SimTls::generate().expect("certificates");
    server.serve_tls(tls.server_config.clone()).await.unwrap();
    let (untrusting, _world, _unused) = plugin_against(vec![], Some(server.url())).await;
    let refused = untrusting.get_port(PORT).await.expect_err("untrusted");
    assert_eq!(refused.class, OutcomeClass::Unavailable, "{refused}");
    assert!(
        refused.detail.contains("CERTIFICATE_VERIFY_FAILED"),
        "{refused}"
    );
    untrusting.stop().await;
    let refused = format!("http://127.0.0.1:{}", closed_port());
    let (adapter, _world, _server) = plugin_against(vec![], Some(refused)).await;
    let down = adapter.set_port(PORT, 911).await.expect_err("refused");
    assert_eq!(down.class, OutcomeClass::Unavailable, "{down}");
    adapter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3; .ci/run runs it"]
async fn the_python_plugin_serves_concurrent_calls_in_parallel() {
    let python = python();
    let (_dir, site_path) = topology_file();
    let mut site = load_site(&site_path).expect("topology");
    for switch in &mut site.topology.switches {
        switch.latency = Some(Duration::from_secs(2));
    }
    let world = SimWorld::new(Arc::new(site), vec![], Recorder::new(), 0);
    let server = wire::restconf::start(world, SWITCH)
        .await
        .expect("simulator");
    let device = PluginDevice::new(SWITCH, Family::Switch, &server.url(), "qlab", PASSWORD);
    let cmd = [python, plugin_script().display().to_string()];
    let adapter = PluginAdapter::spawn(&cmd, device, Duration::from_secs(5))
        .await
        .expect("the plugin starts");
    let started = Instant::now();
    let reads: Vec<_> = [
        "Ethernet1/21",
        "Ethernet1/31",
        "Ethernet1/21",
        "Ethernet1/31",
    ]
    .into_iter()
    .map(|port| {
        let adapter = adapter.clone();
        tokio::spawn(async move { adapter.get_port(port).await })
    })
    .collect();
    for read in reads {
        assert_eq!(read.await.unwrap(), Ok(111));
    }
    // Four 2 s reads one after the other would take 8 s; in parallel they take about 2 s.
    // The gap is wide enough that a loaded machine cannot blur the two.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(6), "{took:?}");
    adapter.stop().await;
}

/// The minimal plugin of docs/plugins.md, as written there, behaves as the page says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3; .ci/run runs it"]
async fn the_minimal_plugin_of_the_docs_works() {
    let python = python();
    let page =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/plugins.md"))
            .unwrap();
    let code = page
        .split("```python\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a python block in docs/plugins.md");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("minimal.py");
    std::fs::write(&path, code).unwrap();
    let device = PluginDevice::new("sw-9", Family::Switch, "memory:", "u", "p");
    let cmd = [python, path.display().to_string()];
    let adapter = PluginAdapter::spawn(&cmd, device, Duration::from_secs(5))
        .await
        .expect("the minimal plugin starts");
    adapter.set_port("Ethernet1/5", 910).await.expect("set");
    assert_eq!(adapter.get_port("Ethernet1/5").await, Ok(910));
    let invalid = adapter
        .set_port("Ethernet1/5", 5000)
        .await
        .expect_err("invalid");
    assert_eq!(invalid.class, OutcomeClass::Rejected, "{invalid}");
    adapter.save_config().await.expect("save");
    adapter.stop().await;
}

/// The example plugin certifies at tier 2 against the RESTCONF simulator, and its bundle
/// verifies: the plugin classifies every connection-level and semantic failure as the
/// built-in client does (R8), which is what makes rollback correct through it.
#[test]
#[ignore = "needs python3; .ci/run runs it"]
fn r8_the_python_plugin_certifies_at_tier_2_against_the_restconf_simulator() {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("plugin.tar.gz");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_qlab"))
        .current_dir(root)
        .args(["certify", "--family", "switch", "--product"])
        .arg(root.join("fixtures/products/switch-restconf.toml"))
        .args(["--target", "sim", "--tier", "2", "--bundle"])
        .arg(&bundle)
        .arg("--report-dir")
        .arg(dir.path().join("report"))
        .arg("--plugin")
        .arg(&python)
        .arg(plugin_script())
        .output()
        .expect("qlab runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("certified: tier-2"), "{text}");
    let verify = Command::new(env!("CARGO_BIN_EXE_qlab"))
        .args(["certify", "verify"])
        .arg(&bundle)
        .output()
        .expect("qlab runs");
    let text = String::from_utf8_lossy(&verify.stdout).to_string();
    assert!(verify.status.success(), "{text}");
    assert!(text.contains("labels: tier-2 "), "{text}");
}
