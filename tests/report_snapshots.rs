//! report.json, junit.xml and summary.md of a small fixed run: one scenario passed, one failed.

use quarantine_lab::report::*;

fn verdicts(failed: bool) -> (Vec<InvariantVerdict>, Vec<ExpectationVerdict>) {
    let mut invariants: Vec<InvariantVerdict> = (1..=11)
        .map(|n| InvariantVerdict {
            id: format!("INV-{n}"),
            status: Status::Passed,
            detail: "1 checked".into(),
        })
        .collect();
    let mut expectations = vec![ExpectationVerdict {
        what: "/tenant-a/vdi-001 outcome".into(),
        status: Status::Passed,
        detail: "expected quarantined, got quarantined".into(),
    }];
    if failed {
        invariants[2] = InvariantVerdict {
            id: "INV-3".into(),
            status: Status::Failed,
            detail: "/tenant-a/sbc-01 nic 0: record qr-a 10.210.0.2 after quarantine_failed, \
                     expected op-a 10.110.0.50"
                .into(),
        };
        expectations.push(ExpectationVerdict {
            what: "/tenant-a/sbc-01 outcome".into(),
            status: Status::Failed,
            detail: "expected quarantined, got quarantine_failed".into(),
        });
    }
    (invariants, expectations)
}

fn scenario(name: &str, failed: bool) -> ScenarioReport {
    let (invariants, expectations) = verdicts(failed);
    ScenarioReport {
        name: name.into(),
        file: format!("scenarios/{name}.toml"),
        mode: "sim".into(),
        seed: 7,
        status: if failed {
            ScenarioStatus::Failed
        } else {
            ScenarioStatus::Passed
        },
        duration_ms: if failed { 31 } else { 12 },
        invariants,
        expectations,
        measures: Measures {
            time_to_contain_ms: Summary {
                count: 2,
                p50: 40,
                p95: 450,
                p99: 450,
                max: 450,
            },
            time_to_quarantined_ms: Summary {
                count: 2,
                p50: 80,
                p95: 600,
                p99: 600,
                max: 600,
            },
            time_to_alert_ms: Summary::default(),
            device_writes: 2,
            makespan_ms: 450,
            lower_bound_ms: 150,
            confirmed_makespan_ms: 600,
            confirmed_lower_bound_ms: 450,
            time_to_re_contain_ms: Summary::default(),
        },
        // The failed run's second fault never fired: summary.md warns about it.
        faults: vec![
            FaultAccount {
                index: 0,
                device: "vc-1".into(),
                call: Some("set_nic".into()),
                effect: "apply_then_timeout".into(),
                hits: 1,
                hits_in_operation: 1,
            },
            FaultAccount {
                index: 1,
                device: "osce".into(),
                call: None,
                effect: "drop".into(),
                hits: u64::from(!failed),
                hits_in_operation: 0,
            },
        ],
        transports: Default::default(),
        history_digest: "sha256:0123abcd".into(),
        replay: format!("qlab run scenarios/{name}.toml --mode sim --seed 7"),
        error: None,
        retries: Vec::new(),
        crash_points: None,
        crash_points_swept: None,
        crash_failures: Vec::new(),
        crash_sweep_ms: None,
    }
}

fn run_report() -> RunReport {
    RunReport {
        tool_version: "0.1.0".into(),
        git_sha: "abc1234".into(),
        started_at: "2025-01-02T03:04:05Z".into(),
        mode: "sim".into(),
        seed: None,
        binary_sha256: None,
        shard: None,
        scenarios: vec![
            scenario("vcenter-happy-path", false),
            scenario("switch-save-fails", true),
        ],
    }
}

#[test]
fn report_json_snapshot() {
    insta::assert_snapshot!(render_json(&run_report()).expect("json"));
}

#[test]
fn junit_xml_snapshot() {
    insta::assert_snapshot!(render_junit(&run_report()).expect("junit"));
}

#[test]
fn summary_md_snapshot() {
    insta::assert_snapshot!(render_summary(&run_report()));
}

#[test]
fn report_json_has_the_v1_shape_and_reads_back() {
    let report = run_report();
    let text = render_json(&report).expect("json");
    let value: serde_json::Value = serde_json::from_str(&text).expect("valid json");
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    // A parsed map's key order depends on serde_json features, so compare sorted here; the
    // snapshot pins the written order.
    keys.sort_unstable();
    let mut expected = [
        "schema",
        "tool_version",
        "git_sha",
        "started_at",
        "mode",
        "seed",
        "summary",
        "scenarios",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(value["schema"], "qlab.report/v1");
    assert_eq!(value["summary"]["failed"], 1);
    assert!(text.find("\"schema\"") < text.find("\"tool_version\""));
    let back: RunReport = serde_json::from_str(&text).expect("reads back");
    assert_eq!(back, report);
}

#[test]
fn write_reports_writes_three_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("reports").join("latest");
    write_reports(&out, &run_report()).expect("written");
    for file in ["report.json", "junit.xml", "summary.md"] {
        let text = std::fs::read_to_string(out.join(file)).expect(file);
        assert!(!text.is_empty(), "{file}");
    }
}

#[test]
fn errored_scenario_carries_its_error() {
    let mut report = run_report();
    let mut errored = scenario("bad-topology", false);
    errored.status = ScenarioStatus::Errored;
    errored.error = Some("topology.toml:3: unknown key `vlna`".into());
    errored.invariants.clear();
    errored.expectations.clear();
    report.scenarios.push(errored);
    assert_eq!(report.summary().errored, 1);
    assert!(!report.all_passed());
    let junit = render_junit(&report).expect("junit");
    assert!(junit.contains("<error"), "{junit}");
    assert!(render_json(&report)
        .expect("json")
        .contains("\"error\": \"topology.toml:3"));
    assert!(render_summary(&report).contains("**errored**"));
}
