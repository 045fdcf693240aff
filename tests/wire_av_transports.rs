//! Wire mode sends each detection over its AV server's topology `transport` (syslog over UDP,
//! syslog over TCP, the ePO Web API the engine polls, the HTTP API): one scenario per transport,
//! on vdi-small with its one AV server switched to that transport. Each detection must end in a
//! quarantine, and the engine's own counter for that transport (and only that one) must show
//! it (R3, R7, R18; INV-7 judges the acknowledgements).

use std::path::Path;

use quarantine_lab::model::history::EventKind;
use quarantine_lab::scenario::load::load_scenario;
use quarantine_lab::scenario::runner::ScenarioRun;
use quarantine_lab::scenario::wire::run_wire;

/// vdi-small with its AV server `osce` delivering over `transport` (and made an ePO server
/// for `epo_api`), written into `dir`.
fn topology(dir: &Path, transport: &str) -> std::path::PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/topologies/vdi-small.toml");
    let text = std::fs::read_to_string(fixture).expect("fixture");
    let kind = if transport == "epo_api" {
        "kind = \"epo\"\ncredentials = { user = \"lab\", password = \"lab-pw\" }"
    } else {
        "kind = \"officescan\""
    };
    let text = text.replacen(
        "name = \"osce\"\nkind = \"officescan\"\naddress = \"127.0.0.1\"\n",
        &format!("name = \"osce\"\n{kind}\naddress = \"127.0.0.1\"\ntransport = \"{transport}\"\n"),
        1,
    );
    assert!(text.contains(&format!("transport = \"{transport}\"")));
    let path = dir.join("site.toml");
    std::fs::write(&path, text).expect("write");
    path
}

/// One detection for vdi-001 (sent twice under `duplicate`), expected quarantined.
fn run(transport: &str, duplicate: bool) -> ScenarioRun {
    let dir = tempfile::tempdir().expect("tempdir");
    let topology = topology(dir.path(), transport);
    let fault = if duplicate {
        "[[faults]]\ndevice = \"osce\"\ncall = \"send\"\neffect = \"duplicate\"\n"
    } else {
        ""
    };
    let text = format!(
        r#"name = "over-{transport}"
topology = {topology:?}

[[events]]
at = "0s"
detect = {{ source = "osce", ip = "10.110.0.11", threat = "TROJ_GENERIC.A", category = "virus", event_id = "e-1" }}

{fault}
[expect]
device_writes_max = 1

[expect.lservers."/tenant-a/vdi-001"]
outcome = "quarantined"
device_networks = ["qr-a"]
managed_networks = ["qr-a"]
"#
    );
    let path = dir.path().join("scenario.toml");
    std::fs::write(&path, text).expect("write");
    let scenario = load_scenario(&path).unwrap_or_else(|e| panic!("{e}"));
    run_wire(&scenario, 0, 0.05).unwrap_or_else(|e| panic!("{transport}: {e}"))
}

/// Runs one detection over `transport` and checks the counters: `channel` moved by `expected`,
/// every other transport stayed at 0.
fn check(transport: &str, channel: &str) {
    let run = run(transport, false);
    assert!(run.passed, "{transport}: {:?}", run.check);
    for (name, n) in &run.transports {
        let expected = u64::from(name == channel);
        assert_eq!(*n, expected, "{transport}: counters {:?}", run.transports);
    }
    assert!(run.transports.contains_key(channel), "{:?}", run.transports);
    let refused = run
        .record
        .history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::DetectionRefused { .. }))
        .count();
    assert_eq!(refused, 0, "{transport}");
}

#[test]
fn r18_a_detection_over_syslog_udp_is_quarantined_and_counted_as_syslog_udp() {
    check("syslog_udp", "syslog_udp");
}

#[test]
fn r18_a_detection_over_syslog_tcp_is_quarantined_and_counted_as_syslog_tcp() {
    check("syslog_tcp", "syslog_tcp");
}

#[test]
fn r3_a_detection_through_the_epo_web_api_is_quarantined_and_counted_as_epo() {
    check("epo_api", "epo");
}

#[test]
fn r18_a_detection_through_the_http_api_is_quarantined_and_counted_as_api() {
    check("api", "api");
}

#[test]
fn r4_inv7_a_duplicated_delivery_keeps_its_meaning_on_every_transport() {
    for (transport, channel) in [
        ("syslog_udp", "syslog_udp"),
        ("syslog_tcp", "syslog_tcp"),
        ("epo_api", "epo"),
    ] {
        let run = run(transport, true);
        // Both copies reach the engine over the transport; the second is journaled as a
        // duplicate of the same event, so one quarantine, one write.
        assert!(run.passed, "{transport}: {:?}", run.check);
        assert_eq!(run.transports.get(channel), Some(&2), "{transport}");
        let dispositions: Vec<&str> = run
            .record
            .history
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::DetectionAcked { disposition, .. } => Some(disposition.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(dispositions, ["accepted", "duplicate"], "{transport}");
    }
}
