//! `qlab bench` as a script runs it: `--quick --json` prints one JSON object with every figure
//! of issue 5 as a positive number. No timing assertions: speed depends on the machine and its
//! disk; this only proves the command measures everything it claims to.

use std::process::{Command, Output};

fn qlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qlab"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

/// Every figure key `qlab bench` promises, and whether it carries a target.
const FIGURES: [(&str, bool); 7] = [
    ("sim_runs_per_sec", true),
    ("sim_commits_per_run", false),
    ("journal_ops_per_sec", true),
    ("journal_engine_ops_per_sec", false),
    ("cef_lines_per_sec", true),
    ("library_wall_ms", false),
    ("makespan_ratio_worst", true),
];

#[test]
fn quick_json_has_every_figure_as_a_positive_number() {
    let out = qlab(&["bench", "--quick", "--json"]);
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
    let scenarios = json["scenarios"].as_array().expect("scenarios");
    assert!(!scenarios.is_empty(), "no scenario with a lower bound");
    for s in scenarios {
        assert!(s["lower_bound_ms"].as_u64().unwrap() > 0, "{s}");
        assert!(s["ratio"].as_f64().unwrap() >= 0.0, "{s}");
        assert!(s["met"].is_boolean(), "{s}");
    }
}

#[test]
fn missing_bench_scenario_is_bad_input() {
    let out = qlab(&[
        "bench",
        "--quick",
        "--scenario",
        "benches/fixtures/no-such.toml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such.toml"), "{stderr}");
}
