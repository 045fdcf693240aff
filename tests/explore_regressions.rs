//! The minimal scenarios `qlab explore` shrank from failures it found, once the defects were
//! fixed (tests/scenarios/explore-regressions/): each must now pass with every invariant kept.
//! They guard R8's evidence across operations (no blind rewrite after a write that may have
//! landed, a contradicting read read again after `confirm_read_after`), R10's save after any
//! write that may have landed, R14's read after a release's save, R19's last read that does
//! not log in past the deadline, R20's drift watch retrying a failed read and alerting a NIC it
//! cannot read, and INV-6 judged on the engine's evidence (INV-1, INV-4, INV-6, INV-10, INV-12).

use std::path::PathBuf;

use quarantine_lab::bench::measure::library_selection;
use quarantine_lab::scenario::library::{self, ResultStatus, RunOptions, Selection};

/// Every scenario file of the folder (a `*.topology.toml` beside one is its topology).
fn regression_files() -> Vec<PathBuf> {
    let dir = PathBuf::from("tests/scenarios/explore-regressions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.ends_with(".toml") && !name.ends_with(".topology.toml")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn r8_inv4_inv6_inv12_every_fixed_explore_finding_now_passes() {
    let files = regression_files();
    assert!(
        files.len() >= 10,
        "the folder lost its scenarios: {files:?}"
    );
    let selection = Selection {
        paths: files.clone(),
        ..library_selection(PathBuf::new(), 2)
    };
    let scenarios = library::select(&selection).unwrap();
    assert_eq!(scenarios.len(), files.len());
    let results =
        library::run_selected_opts(&scenarios, &selection, &RunOptions::default(), &|_| {});
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r.status != ResultStatus::Passed)
        .map(|r| {
            let violated: Vec<String> = r
                .check
                .iter()
                .flat_map(|c| &c.invariants)
                .filter(|i| i.status == quarantine_lab::check::Status::Failed)
                .map(|i| format!("{} {}", i.id, i.detail))
                .collect();
            format!("{}: {:?} {:?} {violated:?}", r.name, r.status, r.error)
        })
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
}
