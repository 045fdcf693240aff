//! Proof that the checkers bite: deliberately broken engines run scenarios that name, in
//! `expect.violations`, exactly the invariants the breakage must trip; the correct engine runs the
//! same scenarios without a single violation.

use std::path::Path;

use quarantine_lab::scenario::load::load_scenario;
use quarantine_lab::scenario::runner::{run_sim, Mutant};

fn bites(file: &str, mutant: Mutant, expected: &[&str]) {
    let scenario = load_scenario(Path::new(file)).unwrap();
    let broken = run_sim(&scenario, scenario.seed, Some(mutant)).unwrap();
    let failed: Vec<&str> = broken.check.failed_invariants().into_iter().collect();
    assert_eq!(failed, expected, "{file}: broken engine");
    assert!(
        broken.passed,
        "{file}: the scenario's expect.violations must match"
    );

    let correct = run_sim(&scenario, scenario.seed, None).unwrap();
    assert!(
        correct.check.failed_invariants().is_empty(),
        "{file}: the correct engine violates {:?}",
        correct.check.failed_invariants()
    );
    assert!(
        !correct.passed,
        "{file}: without the violations the scenario must fail"
    );
}

#[test]
fn inv1_catches_an_engine_that_trusts_the_device() {
    bites(
        "tests/scenarios/mutants/trust-device.toml",
        Mutant::TrustDevice,
        &["INV-1", "INV-4"],
    );
}

#[test]
fn inv2_inv3_catch_an_engine_that_reverts_on_failure() {
    bites(
        "tests/scenarios/mutants/revert-on-failure.toml",
        Mutant::RevertOnFailure,
        &["INV-2", "INV-3"],
    );
}

#[test]
fn inv7_catches_an_engine_that_drops_a_detection_on_crash() {
    bites(
        "tests/scenarios/mutants/drop-on-crash.toml",
        Mutant::DropOnCrash,
        &["INV-1", "INV-10", "INV-7", "INV-8"],
    );
}

#[test]
fn inv6_catches_an_engine_that_rewrites_a_nic_while_reads_fail() {
    bites(
        "tests/scenarios/mutants/rewrite-on-read-failure.toml",
        Mutant::RewriteOnReadFailure,
        &["INV-6"],
    );
}

#[test]
fn inv8_catches_an_engine_that_leaks_quarantine_ips_on_rollback() {
    bites(
        "tests/scenarios/mutants/leak-ip-on-rollback.toml",
        Mutant::LeakIpOnRollback,
        &["INV-8"],
    );
}

#[test]
fn inv12_catches_an_engine_without_a_drift_watch() {
    bites(
        "tests/scenarios/mutants/no-drift-watch.toml",
        Mutant::NoDriftWatch,
        &["INV-1", "INV-12"],
    );
}

/// R18: an engine that halts mid-run (here a task's panic) fails its run with the halt's reason.
/// A runner that took the halted engine for an idle one ended such a run quietly, and passed it
/// when the invariants happened to hold at that point.
#[test]
fn r18_a_run_whose_engine_halted_is_an_error_naming_the_halt() {
    let file = "tests/scenarios/mutants/trust-device.toml";
    let scenario = load_scenario(Path::new(file)).unwrap();
    let error = match run_sim(&scenario, scenario.seed, Some(Mutant::HaltEngine)) {
        Ok(run) => panic!(
            "{file}: a halted engine's run ended as a run (passed: {})",
            run.passed
        ),
        Err(error) => error,
    };
    assert!(
        error.contains("the engine halted") && error.contains("panicked on purpose"),
        "{file}: {error}"
    );
    assert!(
        run_sim(&scenario, scenario.seed, None).is_ok(),
        "{file}: the correct engine runs to the end"
    );
}
