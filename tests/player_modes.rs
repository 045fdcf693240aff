//! One timeline player serves sim and wire mode (src/scenario/player.rs): the same scenario and
//! seed take the same path through the timeline in both modes (INV-11 holds the sim digest to
//! the seed; the path is what a wire run, on a real clock, is compared on), and same-instant
//! detections go out as one burst in both.

use std::path::Path;

use quarantine_lab::model::history::EventKind;
use quarantine_lab::scenario::load::{load_scenario, Scenario};
use quarantine_lab::scenario::player::PlayedStep;
use quarantine_lab::scenario::runner::{run_sim, ScenarioRun};
use quarantine_lab::scenario::wire::run_wire;

/// vdi-small with its AV server `osce` delivering over `transport`, written into `dir`.
fn topology(dir: &Path, transport: &str) -> std::path::PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/topologies/vdi-small.toml");
    let text = std::fs::read_to_string(fixture).expect("fixture");
    let text = text.replacen(
        "name = \"osce\"\nkind = \"officescan\"\naddress = \"127.0.0.1\"\n",
        &format!(
            "name = \"osce\"\nkind = \"officescan\"\naddress = \"127.0.0.1\"\ntransport = \"{transport}\"\n"
        ),
        1,
    );
    assert!(text.contains(&format!("transport = \"{transport}\"")));
    let path = dir.join("site.toml");
    std::fs::write(&path, text).expect("write");
    path
}

/// A burst of three detections at 1 s (one duplicated by the AV server), a crash at
/// 2 s that keeps the engine down for 1 s, a detection while it is down (held, sent again at
/// the restart), a release command and a heal.
fn scenario(dir: &Path, transport: &str) -> Scenario {
    let topology = topology(dir, transport);
    let detect = |at: &str, ip: &str, id: &str| {
        format!(
            "[[events]]\nat = \"{at}\"\ndetect = {{ source = \"osce\", ip = \"{ip}\", threat = \"TROJ_GENERIC.A\", category = \"virus\", event_id = \"{id}\" }}\n\n"
        )
    };
    let text = format!(
        r#"name = "player-{transport}"
topology = {topology:?}

{}{}{}[[events]]
at = "2s"
crash = "engine"
restart_after = "1s"

{}[[events]]
at = "4s"
command = {{ action = "release", lserver = "/tenant-a/vdi-001" }}

[[events]]
at = "4s"
heal = "all"

[[faults]]
device = "osce"
call = "send"
effect = "duplicate"
times = 1
"#,
        detect("1s", "10.110.0.11", "e-1"),
        detect("1s", "10.110.0.13", "e-3"),
        detect("1s", "10.110.0.21", "e-101"),
        detect("2500ms", "10.110.0.22", "e-102"),
    );
    let path = dir.join("scenario.toml");
    std::fs::write(&path, text).expect("write");
    load_scenario(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// The event ids of every `DetectionSent` before the first acknowledgement or refusal.
fn sent_before_any_answer(run: &ScenarioRun) -> Vec<String> {
    run.record
        .history
        .iter()
        .take_while(|e| {
            !matches!(
                e.kind,
                EventKind::DetectionAcked { .. } | EventKind::DetectionRefused { .. }
            )
        })
        .filter_map(|e| match &e.kind {
            EventKind::DetectionSent { event_id, .. } => Some(event_id.clone()),
            _ => None,
        })
        .collect()
}

fn both_modes_take_one_path(transport: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = scenario(dir.path(), transport);
    let sim = run_sim(&s, 7, None).expect("sim runs");
    let again = run_sim(&s, 7, None).expect("sim runs again");
    assert_eq!(sim.history_digest, again.history_digest, "INV-11");
    let wire = run_wire(&s, 7, 0.05).unwrap_or_else(|e| panic!("{transport}: {e}"));
    assert_eq!(wire.played, sim.played, "{transport}: one player, one path");

    // The path itself: the three same-instant detections as one burst (in the seed's order),
    // the AV server's duplicate a delivery step later, the held detection sent again right
    // after the restart.
    let bursts: Vec<&Vec<String>> = sim
        .played
        .iter()
        .filter_map(|s| match s {
            PlayedStep::Detect(ids) => Some(ids),
            _ => None,
        })
        .collect();
    assert_eq!(bursts.len(), 3, "{:?}", sim.played);
    let mut first = bursts[0].clone();
    first.sort();
    assert_eq!(first, ["e-1", "e-101", "e-3"], "{bursts:?}");
    assert_eq!(*bursts[1], ["e-1"], "the duplicate: {bursts:?}");
    assert_eq!(*bursts[2], ["e-102"]);
    let restart = sim
        .played
        .iter()
        .position(|s| *s == PlayedStep::Restart)
        .expect("a restart");
    assert_eq!(
        sim.played[restart + 1],
        PlayedStep::Resend(vec!["e-102".into()])
    );
    assert_eq!(sim.played.last(), Some(&PlayedStep::Idle));

    // A burst is sent before any answer comes back, in both modes.
    for run in [&sim, &wire] {
        assert_eq!(sent_before_any_answer(run).len(), 3, "{transport}");
        assert!(run.passed, "{transport}: {:?}", run.check);
    }
    // Every detection of the burst reached the engine over the wire too (the duplicate as R4's
    // duplicate): nothing refused but the one sent while the engine was down, and every one of
    // them acknowledged.
    let refused: Vec<(&str, &str)> = wire
        .record
        .history
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::DetectionRefused {
                event_id, reason, ..
            } => Some((event_id.as_str(), reason.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(refused, [("e-102", "engine down")], "{transport}");
    let acked = |run: &ScenarioRun| {
        run.record
            .history
            .iter()
            .filter(|e| matches!(e.kind, EventKind::DetectionAcked { .. }))
            .count()
    };
    assert_eq!(acked(&wire), acked(&sim), "{transport}");
    assert_eq!(acked(&sim), 5, "three, the duplicate, the resent one");
}

#[test]
fn inv11_sim_and_wire_take_the_same_player_path_over_syslog_udp() {
    both_modes_take_one_path("syslog_udp");
}

#[test]
fn inv11_sim_and_wire_take_the_same_player_path_over_the_api() {
    both_modes_take_one_path("api");
}
