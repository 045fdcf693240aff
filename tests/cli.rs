//! The `qlab` command as a user runs it: exit codes (0 passed, 1 failed, 2 bad input), error
//! messages that name file, line and key, and the three report files.

mod common;

use common::run::qlab_output as qlab;
use std::path::{Path, PathBuf};
use std::process::Output;

fn topology() -> String {
    common::fixture_path("topologies/vdi-small.toml")
        .display()
        .to_string()
}

/// A scenario in a temporary folder; `body` follows the header.
fn scenario(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "name = \"{name}\"\ndescription = \"cli test\"\ntopology = {:?}\n{body}",
        topology()
    );
    std::fs::write(&path, text).unwrap();
    path
}

const QUARANTINE_VDI1: &str = r#"
[[events]]
at = "0s"
detect = { source = "osce", ip = "10.110.0.11", threat = "TROJ_GENERIC.A", category = "virus", event_id = "e-1" }
"#;

/// `qlab run` of the scenario `name` (`body` after its header, see [`scenario`]) in `dir`,
/// with reports in `dir/reports`: the run's output and that folder.
fn run_scenario(dir: &Path, name: &str, body: &str) -> (Output, PathBuf) {
    let file = scenario(dir, name, body);
    let reports = dir.join("reports");
    let out = qlab(&[
        "run",
        file.to_str().unwrap(),
        "--report-dir",
        reports.to_str().unwrap(),
    ]);
    (out, reports)
}

#[test]
fn right_expectation_passes_with_exit_0_and_writes_reports() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!("{QUARANTINE_VDI1}\n[expect.lservers.\"/tenant-a/vdi-001\"]\noutcome = \"quarantined\"\ndevice_networks = [\"qr-a\"]\n");
    let (out, reports) = run_scenario(dir.path(), "right", &body);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reports.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["schema"], "qlab.report/v1");
    assert_eq!(json["summary"]["passed"], 1);
    assert!(json["scenarios"][0]["replay"]
        .as_str()
        .unwrap()
        .contains("--seed 0"));
    assert!(std::fs::read_to_string(reports.join("junit.xml"))
        .unwrap()
        .contains("testcase"));
    assert!(std::fs::read_to_string(reports.join("summary.md"))
        .unwrap()
        .contains("right"));
}

#[test]
fn wrong_expectation_fails_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{QUARANTINE_VDI1}\n[expect.lservers.\"/tenant-a/vdi-001\"]\noutcome = \"released\"\n"
    );
    let (out, _) = run_scenario(dir.path(), "wrong", &body);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("expected released, got quarantined"),
        "{stderr}"
    );
    assert!(stderr.contains("replay: qlab run"), "{stderr}");
}

fn assert_input_error(body: &str, needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = run_scenario(dir.path(), "bad", body);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:"),
        "names the file and line: {stderr}"
    );
    assert!(stderr.contains(needle), "{stderr}");
}

#[test]
fn malformed_scenario_unknown_key_exits_2_naming_file_line_key() {
    assert_input_error("colour = \"red\"\n", "colour");
}

#[test]
fn malformed_scenario_bad_duration_exits_2() {
    assert_input_error(
        "[[events]]\nat = \"soon\"\ndetect = { source = \"osce\", ip = \"10.110.0.11\", threat = \"T\", event_id = \"e\" }\n",
        "events[0].at",
    );
}

#[test]
fn malformed_scenario_unknown_device_exits_2() {
    assert_input_error(
        "[[faults]]\ndevice = \"vc-9\"\neffect = \"reject\"\n",
        "faults[0].device",
    );
}

#[test]
fn scenario_validate_and_list_cover_the_library() {
    let out = qlab(&["scenario", "validate", "scenarios"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = qlab(&["scenario", "list"]);
    assert_eq!(out.status.code(), Some(0));
    let listed = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(
        listed >= 40,
        "the library has at least 40 scenarios, found {listed}"
    );
}

#[test]
fn bad_shard_is_an_input_error() {
    let out = qlab(&["run", "--shard", "5/4"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn malformed_outbreak_event_exits_2_naming_its_key() {
    // The outbreak event (scenarios/README.md, "Format extensions") is checked like a detection.
    assert_input_error(
        "[[events]]\nat = \"0s\"\noutbreak = { source = \"osce\", lservers = \"/nobody/\", threat = \"T\" }\n",
        "events[0].outbreak.lservers",
    );
}
