//! Snapshots of the scenario errors users see: each must name the file, the line and the key,
//! and say what is wrong and how to fix it. A changed message is a changed product interface.
//! Plus one valid scenario that uses every event kind and every fault field.

#[macro_use]
mod common;

use std::path::PathBuf;
use std::time::Duration;

use quarantine_lab::engine::Command;
use quarantine_lab::model::{Action, Category};
use quarantine_lab::scenario::load::{load_scenario, EventAction, Mode, Scenario};
use quarantine_lab::sim::faults::{CallKind, FaultEffect, FaultMatch};

/// The fixture topology, absolute, so the scenario can live in a temporary folder.
fn topology() -> String {
    common::fixture_path("topologies/vdi-small.toml")
        .display()
        .to_string()
}

/// A small valid scenario; each test breaks one thing in it. `@TOPOLOGY@` becomes [`topology`].
const BASE: &str = include_str!("../fixtures/scenarios/test-snapshots.toml");

/// Writes `source` as `scenario.toml` in a fresh temporary folder and loads it.
fn load_text(source: &str) -> (tempfile::TempDir, Result<Scenario, String>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("scenario.toml");
    std::fs::write(&path, source.replace("@TOPOLOGY@", &topology())).expect("write");
    let result = load_scenario(&path).map_err(|e| e.to_string());
    (dir, result)
}

/// Loads `BASE` with `from` replaced by `to` (which must occur) and returns the error text, with
/// the temporary folder left out so the snapshot is stable.
fn error_after(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "test bug: {from:?} is not in BASE");
    let (dir, result) = load_text(&BASE.replacen(from, to, 1));
    match result {
        Ok(_) => panic!("expected an error after replacing {from:?} with {to:?}"),
        Err(e) => {
            let prefix = format!("{}/", dir.path().display());
            e.replace(&prefix, "")
        }
    }
}

snapshot_after! {
    error_after;
    unknown_key_in_an_event: "at = \"30s\"\n" => "at = \"30s\"\nafter = \"10s\"\n";
    bad_duration: "until = \"20s\"" => "until = \"twenty\"";
    unknown_device_in_a_fault: "device = \"vc-1\"" => "device = \"vc-2\"";
    unknown_av_source: "source = \"osce\"" => "source = \"sepm\"";
    event_with_two_actions: "at = \"30s\"\n" => "at = \"30s\"\nheal = \"all\"\n";
    wrong_nic_count_in_device_networks: "device_networks = [\"op-a\"]" => "device_networks = [\"op-a\", \"qr-a\"]";
    wire_only_effect_in_sim_mode: "effect = \"apply_then_timeout\"" => "effect = \"reset\"";
    expected_outcome_count_larger_than_the_site: "[expect.lservers." => "[expect]\noutcomes = { quarantined = 9 }\n\n[expect.lservers.";
    expected_outcome_count_of_an_unknown_outcome: "[expect.lservers." => "[expect]\noutcomes = { contained = 1 }\n\n[expect.lservers.";
    makespan_ratio_below_one: "[expect.lservers." => "[expect]\nmakespan_ratio_max = 0.95\n\n[expect.lservers.";
    /// Once accepted, then an overflow when the run added times: now an input error.
    r18_event_time_beyond_seven_days: "at = \"30s\"" => "at = \"18446744073709551615s\"";
    r18_fault_window_beyond_seven_days: "until = \"20s\"" => "until = \"8d\"";
    stale_read_on_a_write: "effect = \"apply_then_timeout\"" => "effect = \"stale_read\"";
    apply_then_timeout_on_a_login: "call = \"set_nic\"" => "call = \"login\"";
    apply_then_timeout_on_a_read: "call = \"set_nic\"" => "call = \"get_nic\"";
    timeout_on_an_av_send: "device = \"vc-1\"\ncall = \"set_nic\"\neffect = \"apply_then_timeout\"" => "device = \"osce\"\ncall = \"send\"\neffect = \"timeout\"";
    device_call_effect_on_an_av_server_without_call: "device = \"vc-1\"\ncall = \"set_nic\"\neffect = \"apply_then_timeout\"" => "device = \"osce\"\neffect = \"reject\"";
    drop_on_a_device_call: "effect = \"apply_then_timeout\"" => "effect = \"drop\"";
    probability_above_one: "times = 1\n" => "times = 1\nprobability = 1.5\n";
}

#[test]
fn base_scenario_is_valid() {
    let (_dir, result) = load_text(BASE);
    let s = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.events.len(), 2);
}

/// Every event kind and every fault field, each spelled as `docs/formats/scenario.md` documents it.
const EVERYTHING: &str = include_str!("../fixtures/scenarios/test-everything.toml");

#[test]
fn valid_scenario_with_every_event_kind_and_fault_field() {
    let (dir, result) = load_text(EVERYTHING);
    let s = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.name, "every-event-and-fault-field");
    assert_eq!(s.description, "A tour of the format.");
    assert_eq!(s.file, dir.path().join("scenario.toml"));
    assert_eq!(s.topology_file, PathBuf::from(topology()));
    assert_eq!(s.tags, ["virtual", "physical", "tour"]);
    assert_eq!(s.modes, [Mode::Wire]);
    assert_eq!((s.seed, s.settle), (7, Some(Duration::from_secs(15))));

    let at: Vec<u64> = s.events.iter().map(|e| e.at.as_secs()).collect();
    assert_eq!(at, [0, 2, 5, 6, 30, 31, 32], "sorted by `at`");
    let EventAction::Detect(d) = &s.events[0].action else {
        panic!("{:?}", s.events[0]);
    };
    assert_eq!(d.category, Category::Malware);
    assert_eq!(d.ip, Some("10.110.0.11".parse().expect("ip")));
    assert_eq!(d.mac.as_deref(), Some("00-50-56-00-00-11"));
    assert_eq!(d.hostname.as_deref(), Some("VDI-001"));
    assert_eq!((d.source.as_str(), d.event_id.as_str()), ("osce", "e-1"));
    let actions: Vec<&EventAction> = s.events[1..].iter().map(|e| &e.action).collect();
    assert_eq!(
        actions,
        [
            &EventAction::Crash {
                restart_after: Duration::from_secs(3)
            },
            &EventAction::Heal("all".into()),
            &EventAction::Heal("sw-1".into()),
            &EventAction::Command(Command::Release {
                lserver: "/tenant-a/vdi-001".into()
            }),
            &EventAction::Command(Command::Quarantine {
                lserver: "/tenant-a/sbc-01".into()
            }),
            &EventAction::Command(Command::Decide {
                lserver: "/tenant-a/vdi-003".into(),
                choice: Action::QuarantineReboot
            }),
        ]
    );

    let f = &s.faults[0];
    assert_eq!(f.device, "vc-1");
    assert_eq!(f.call, Some(CallKind::SetNic));
    assert_eq!(f.effect, FaultEffect::ApplyThenTimeout);
    assert_eq!(f.times, Some(1));
    assert_eq!(f.from, Some(Duration::ZERO));
    assert_eq!(f.until, Some(Duration::from_secs(20)));
    assert_eq!(
        f.matcher,
        FaultMatch {
            vm: Some("vm-1001".into()),
            nic: Some("4000".into()),
            port: None,
            lserver: Some("/tenant-a/vdi-001".into()),
        }
    );
    assert_eq!(f.delay, Some(Duration::from_secs(10)));
    assert_eq!(s.faults[1].effect, FaultEffect::RebootLosesUnsaved);
    assert_eq!(s.faults[1].matcher.port.as_deref(), Some("Ethernet1/5"));
    assert_eq!(s.faults[2].probability, Some(0.5));
    assert_eq!(s.faults[3].effect, FaultEffect::Reorder);
    assert_eq!(
        (s.faults[4].call, s.faults[4].effect),
        (None, FaultEffect::Blackhole)
    );

    let e = &s.expect;
    assert_eq!(e.time_to_contain_max, Some(Duration::from_secs(2)));
    assert_eq!(e.device_writes_max, Some(3));
    assert_eq!(e.violations, ["INV-11"]);
    let vdi = &e.lservers["/tenant-a/vdi-001"];
    assert_eq!(vdi.outcome.as_deref(), Some("released"));
    assert_eq!(
        vdi.managed_networks.as_deref(),
        Some(&["op-a".to_string()][..])
    );
    assert_eq!(vdi.device_writes_max, Some(2));
    assert_eq!(
        e.lservers["/tenant-a/sbc-01"].status.as_deref(),
        Some("unknown")
    );
    assert_eq!(e.alerts.len(), 2);
    assert_eq!(
        (e.alerts[1].code.as_str(), e.alerts[1].count),
        ("lserver-not-found", 0)
    );
}

/// The detection of `BASE` as an outbreak event (the lab's format extension).
const OUTBREAK: &str = r#"outbreak = { source = "osce", lservers = "/tenant-a/", over = "1s", threat = "WORM_DOWNAD.AD" }"#;
const BASE_DETECT: &str = r#"detect = { source = "osce", ip = "10.110.0.11", threat = "TROJ_GENERIC.A", event_id = "e-1" }"#;

/// `BASE` with its detection replaced by [`OUTBREAK`] with `from` replaced by `to`.
fn outbreak_error(from: &str, to: &str) -> String {
    assert!(
        OUTBREAK.contains(from),
        "test bug: {from:?} is not in OUTBREAK"
    );
    error_after(BASE_DETECT, &OUTBREAK.replacen(from, to, 1))
}

snapshot_after! {
    outbreak_error;
    outbreak_unknown_source: "source = \"osce\"" => "source = \"sepm\"";
    outbreak_matching_no_lserver: "\"/tenant-a/\"" => "\"/tenant-z/\"";
    outbreak_prefix_that_is_not_a_path: "\"/tenant-a/\"" => "\"tenant-a\"";
    outbreak_bad_duration: "over = \"1s\"" => "over = \"a second\"";
}

#[test]
fn outbreak_replaces_a_detection() {
    let (_dir, result) = load_text(&BASE.replacen(BASE_DETECT, OUTBREAK, 1));
    let s = result.unwrap_or_else(|e| panic!("{e}"));
    let EventAction::Outbreak(o) = &s.events[0].action else {
        panic!("{:?}", s.events[0]);
    };
    assert_eq!((o.event, o.over), (0, Duration::from_secs(1)));
    assert_eq!(o.category, Category::Virus, "the default category");
    let paths: Vec<&str> = o
        .matching(&s.site)
        .iter()
        .map(|l| l.path.as_str())
        .collect();
    assert_eq!(
        paths,
        [
            "/tenant-a/sbc-01",
            "/tenant-a/vdi-001",
            "/tenant-a/vdi-002",
            "/tenant-a/vdi-003"
        ]
    );
}

#[test]
fn outbreak_threat_over_the_field_limit() {
    let long = format!("threat = \"{}\"", "W".repeat(300));
    insta::assert_snapshot!(outbreak_error("threat = \"WORM_DOWNAD.AD\"", &long));
}

#[test]
fn detection_reusing_an_outbreak_event_id() {
    // The outbreak is events[0]; a later detection from the same source with id
    // outbreak-0-2 would be taken as a duplicate of the second generated one (R4).
    let text = BASE.replacen(BASE_DETECT, OUTBREAK, 1).replacen(
        "[[faults]]",
        "[[events]]\nat = \"2s\"\ndetect = { source = \"osce\", ip = \"10.110.0.21\", threat = \"T\", event_id = \"outbreak-0-2\" }\n\n[[faults]]",
        1,
    );
    let (dir, result) = load_text(&text);
    let error = result.expect_err("a reused id is an error");
    insta::assert_snapshot!(error.replace(&format!("{}/", dir.path().display()), ""));
    // Beyond the generated range the id is free.
    let free = text.replace("\"outbreak-0-2\"", "\"outbreak-0-5\"");
    let (_dir, result) = load_text(&free);
    result.unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn outbreaks_beyond_the_detection_cap() {
    // outbreak-10000 has 10,000 L-Servers: eleven outbreaks of all of them ask for 110,000
    // detections, over MAX_OUTBREAK_DETECTIONS (100,000); the eleventh is blamed.
    let topology = common::fixture_path("topologies/outbreak-10000.toml")
        .display()
        .to_string();
    let mut text = format!("name = \"cap\"\ntopology = {topology:?}\n");
    for i in 0..11 {
        text.push_str(&format!(
            "\n[[events]]\nat = \"{i}s\"\noutbreak = {{ source = \"osce\", lservers = \"/\", threat = \"T\" }}\n"
        ));
    }
    let (dir, result) = load_text(&text);
    let error = result.expect_err("over the cap");
    insta::assert_snapshot!(error.replace(&format!("{}/", dir.path().display()), ""));
}

#[test]
fn seven_days_is_still_a_duration() {
    let (_dir, result) = load_text(&BASE.replacen("until = \"20s\"", "until = \"7d\"", 1));
    let s = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.faults[0].until, Some(Duration::from_secs(7 * 86_400)));
}

#[test]
fn probability_is_read() {
    let (_dir, result) = load_text(&BASE.replacen("times = 1\n", "probability = 0.3\n", 1));
    let s = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.faults[0].probability, Some(0.3));
}
