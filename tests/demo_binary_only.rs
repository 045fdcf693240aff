//! The README's walk-through with nothing but the binary: `qlab sim serve` + `qlab engine
//! serve` + one OfficeScan CEF syslog datagram → the simulated vCenter's own REST API shows the
//! vNIC on the quarantine port group and `qlab engine status` shows the L-Server quarantined.

mod common;

use common::run::{first_line, json_of, qlab_command as qlab};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `command` and returns it with its first stdout line parsed as JSON.
fn start_ready(mut command: Command) -> (Killed, serde_json::Value) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = first_line(child.stdout.take().unwrap(), Duration::from_secs(60))
        .expect("a ready line within 60 s");
    let ready: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("ready line {line:?}: {e}"));
    assert_eq!(ready["ready"], true);
    (Killed(child), ready)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cef_datagram_moves_the_vnic_to_quarantine_on_the_simulated_vcenter() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("engine.toml");
    let mut sim = qlab();
    sim.args([
        "sim",
        "serve",
        "--topology",
        "fixtures/topologies/vdi-small.toml",
        "--write-config",
    ])
    .arg(&config);
    let (_sim, sim_ready) = start_ready(sim);
    let vcenter = sim_ready["devices"]["vc-1"].as_str().unwrap().to_string();

    let mut engine = qlab();
    engine.args(["engine", "serve", "--config"]).arg(&config);
    let (_engine, engine_ready) = start_ready(engine);
    let api = engine_ready["api"].as_str().unwrap().to_string();
    let syslog = engine_ready["syslog_udp"].as_str().unwrap().to_string();

    // One OfficeScan / Apex Central virus log, as its syslog forwarder sends it (R18: from the
    // AV server's configured address, 127.0.0.1).
    let cef = "<134>1 2026-11-26T10:00:00Z apex-central - - - - CEF:0|Trend Micro|Apex Central|2019|AV:File renamed|TROJ_GENERIC.A|3|rt=Nov 26 2026 10:00:00 GMT+00:00 dst=10.110.0.11 dhost=VDI-001 act=File renamed externalId=demo-1";
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.send_to(cef.as_bytes(), &syslog).unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut status = String::new();
    while Instant::now() < deadline {
        let out = qlab()
            .args([
                "engine",
                "status",
                "/tenant-a/vdi-001",
                "--url",
                &api,
                "--token",
                "qlab-sim-token",
            ])
            .output()
            .unwrap();
        status = String::from_utf8_lossy(&out.stdout).into_owned();
        if status.contains("\"quarantined\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        status.contains("\"state\": \"quarantined\"")
            || status.contains("\"state\":\"quarantined\""),
        "{status}"
    );

    // The simulated vCenter's own REST API, as an operator would query it: over HTTPS,
    // trusting the CA `qlab sim serve` wrote beside the config (R18).
    assert!(vcenter.starts_with("https://"), "{vcenter}");
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let http = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let session: String = json_of(
        http.post(format!("{vcenter}/api/session"))
            .basic_auth("qlab", Some("qlab")),
    )
    .await;
    let nic: serde_json::Value = json_of(
        http.get(format!(
            "{vcenter}/api/vcenter/vm/vm-1001/hardware/ethernet/4000"
        ))
        .header("vmware-api-session-id", session),
    )
    .await;
    assert_eq!(nic["backing"]["network"], "dvportgroup-910", "{nic}");
    assert!(Path::new(&dir.path().join("qlab-journal.sqlite")).exists());
}
