//! `qlab bench` as a script runs it: `--quick --json` prints one JSON object with every figure
//! of the speed figures as a positive number. No timing assertions: speed depends on the machine and its
//! disk; this only proves the command measures everything it claims to.

mod common;

use common::run::qlab_output as qlab;

/// Every figure key `qlab bench` promises, and whether it carries a target.
const FIGURES: [(&str, bool); 24] = [
    ("sim_runs_per_sec", true),
    ("sim_commits_per_run", false),
    ("journal_group_commit_ops_per_sec", true),
    ("journal_ops_per_sec", false),
    ("journal_engine_ops_per_sec", false),
    ("cef_lines_per_sec", true),
    ("syslog_udp_durable_detections_per_sec", false),
    ("syslog_tcp_durable_detections_per_sec", false),
    ("wire_switchover_ratio", true),
    ("wire_engine_us_per_switchover", false),
    ("wire_engine_no_fsync_us_per_switchover", false),
    ("wire_bare_us_per_switchover", false),
    ("wire_tls_switchover_ratio", true),
    ("wire_tls_cpu_ratio", false),
    ("wire_tls_engine_us_per_switchover", false),
    ("wire_tls_bare_us_per_switchover", false),
    ("library_wall_ms", false),
    ("outbreak_wall_ms", true),
    ("outbreak_makespan_ratio", true),
    ("outbreak_confirmed_ratio", true),
    ("scaling_largest_wall_ms", true),
    ("scaling_wall_per_lserver_ratio", true),
    ("scaling_worst_makespan_ratio", true),
    ("makespan_ratio_worst", false),
];

#[test]
fn quick_json_has_every_figure_as_a_positive_number() {
    // A short curve: the default one (up to 100,000 L-Servers) is minutes in a debug build.
    let out = qlab(&[
        "bench",
        "--quick",
        "--json",
        "--scaling",
        "scenarios/outbreak/outbreak-2500.toml,scenarios/outbreak/vdi-400-desktops-on-2s-vcenters.toml",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(json["quick"], true);
    for (key, has_target) in FIGURES {
        let figure = &json["figures"][key];
        let value = figure["value"]
            .as_f64()
            .unwrap_or_else(|| panic!("{key}: no numeric value in {figure}"));
        assert!(value > 0.0, "{key} = {value}");
        assert_eq!(figure["met"].is_boolean(), has_target, "{key}: {figure}");
    }
    // The wire ratio is the engine's time over the bare client's, both from the same rounds.
    let wire = |key: &str| json["figures"][key]["value"].as_f64().unwrap();
    let ratio = wire("wire_engine_us_per_switchover") / wire("wire_bare_us_per_switchover");
    assert!(
        (wire("wire_switchover_ratio") - ratio).abs() <= 1e-6 * ratio,
        "{ratio} vs {}",
        json["figures"]["wire_switchover_ratio"]
    );
    assert_eq!(
        json["figures"]["wire_switchover_ratio"]["target"]["at_most"],
        1.2
    );
    let curve = json["scaling"].as_array().expect("scaling");
    assert_eq!(curve.len(), 2, "{curve:?}");
    // Smallest first, whatever the order given.
    assert!(curve[0]["lservers"].as_u64() < curve[1]["lservers"].as_u64());
    let not_measured = json["not_measured"].as_array().expect("not_measured");
    assert!(not_measured.is_empty(), "{not_measured:?}");
    let scenarios = json["scenarios"].as_array().expect("scenarios");
    assert!(!scenarios.is_empty(), "no scenario with a lower bound");
    for s in scenarios {
        assert!(s["lower_bound_ms"].as_u64().unwrap() > 0, "{s}");
        assert!(s["ratio"].as_f64().unwrap() >= 0.0, "{s}");
        assert!(s["met"].is_boolean(), "{s}");
    }
}

/// Asserts `qlab bench --quick <option> <file>` exits 2 before measuring, its stderr naming
/// every one of `words`.
fn assert_bad_input(option: &str, file: &str, words: &[&str]) {
    let out = qlab(&["bench", "--quick", option, file]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{option} {file}: {stderr}");
    for word in words {
        assert!(stderr.contains(word), "{option} {file}: {stderr}");
    }
}

#[test]
fn wire_topology_with_a_physical_server_is_bad_input() {
    // bench-10 has bare-metal servers behind a switch: the wire bench measures vCenter only,
    // and says so before measuring anything.
    assert_bad_input(
        "--wire-topology",
        "benches/fixtures/topologies/bench-10.toml",
        &["bench-10.toml", "virtual L-Servers only"],
    );
}

#[test]
fn missing_bench_scenario_is_bad_input() {
    assert_bad_input(
        "--scenario",
        "benches/fixtures/no-such.toml",
        &["no-such.toml"],
    );
}
