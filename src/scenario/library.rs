//! Running a selection of the scenario library: filtering (`--tag`, `--name`, `--shard`),
//! parallel jobs, the determinism check (INV-11), `--strict-faults` and one result per scenario
//! and mode.
//!
//! Under `--retries N` a run that failed or errored runs again, up to N more times; one that
//! then passes is `flaky` and keeps its earlier attempts. `--fail-once NAME` (hidden) makes the
//! first attempt of scenario NAME fail with a `fail-once` expectation whatever happened: the
//! deterministic failure the retry tests need, in either mode.
//!
//! Under `--strict-faults` a `[[faults]]` entry that never fired adds a failed expectation
//! `faults[i] fires` to its run (a fault that never fires makes a scenario pass for the wrong
//! reason); without it the same entry is only a warning in summary.md.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use globset::{Glob, GlobMatcher};

use super::crash_sweep::{self, CrashPointFailure, CrashSweep, SweepPoint};
use super::load::{load_all, Mode, Scenario, ScenarioError};
use super::runner::{run_sim_trapped, Mutant};
use super::wire::run_wire;
use crate::check::{self, CheckReport, ExpectationVerdict, Status};
use crate::model::history::{FaultAccount, RunRecord};
use crate::sim::{CrashPoint, CrashTrap};

/// Which scenarios to run and how.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Files or folders.
    pub paths: Vec<PathBuf>,
    /// Only scenarios carrying one of these tags (all when empty).
    pub tags: Vec<String>,
    /// Only scenarios whose name matches this glob.
    pub name: Option<String>,
    /// `(k, n)`: only the k-th of n shards (1-based), by position in the sorted list.
    pub shard: Option<(usize, usize)>,
    /// Seed for every scenario instead of its own.
    pub seed: Option<u64>,
    /// Run each scenario twice and compare history digests (INV-11).
    pub check_determinism: bool,
    /// Worker threads.
    pub jobs: usize,
    /// A deliberately broken engine (checker self-tests only; sim mode).
    pub mutant: Option<Mutant>,
    /// Modes to run, each scenario in those it allows.
    pub modes: Vec<Mode>,
    /// Wire mode's time scale (`docs/formats/scenario.md`: default 0.05).
    pub time_scale: f64,
}

/// How a scenario run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultStatus {
    /// Expectations and invariants held.
    Passed,
    /// Something was violated.
    Failed,
    /// The scenario could not run.
    Errored,
    /// An attempt failed or errored, then a retry passed.
    Flaky,
}

/// Called with each finished attempt's record (history and final state) before it is dropped:
/// report.html keeps a timeline of it, so a large library never holds every history at once.
pub type RecordHook<'a> = &'a (dyn Fn(&Scenario, &ScenarioResult, &RunRecord) + Sync);

/// How `qlab run` runs each selected scenario beyond the selection itself.
#[derive(Clone, Default)]
pub struct RunOptions<'a> {
    /// A declared fault that never fired fails the run (`--strict-faults`).
    pub strict_faults: bool,
    /// Runs again after a failure, at most this many times (`--retries`).
    pub retries: u32,
    /// Test hook (`--fail-once`): the first attempt of the scenario of this name fails.
    pub fail_once: Option<String>,
    /// Sees each attempt's record; the last call for a scenario run is the attempt reported.
    pub on_record: Option<RecordHook<'a>>,
    /// `--crash-sweep`: after its normal run, each sim run is run again crashed at each of its
    /// crash points ([`crash_sweep`]).
    pub crash_sweep: bool,
    /// `--crash-point`: sweep only this point.
    pub crash_point: Option<CrashPoint>,
    /// `--crash-points-max`: most crash runs per scenario, spread evenly over its points (0:
    /// every point).
    pub crash_points_max: usize,
}

/// An attempt that failed or errored and was run again.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    /// Failed or errored.
    pub status: ResultStatus,
    /// Wall time of the attempt.
    pub duration_ms: u64,
    /// What failed, `INV-3: detail` / `what: detail` / `error: ...`.
    pub failures: Vec<String>,
    /// History digest of the attempt (empty when errored).
    pub history_digest: String,
}

/// One scenario in one mode.
#[derive(Debug, Clone)]
pub struct ScenarioResult {
    /// Scenario name.
    pub name: String,
    /// Scenario file.
    pub file: PathBuf,
    /// Mode.
    pub mode: Mode,
    /// Seed used.
    pub seed: u64,
    /// Verdict.
    pub status: ResultStatus,
    /// Wall time of the run(s).
    pub duration_ms: u64,
    /// Checker output (absent when errored).
    pub check: Option<CheckReport>,
    /// History digest of the (first) run.
    pub history_digest: String,
    /// The command that reruns exactly this.
    pub replay: String,
    /// Why it errored.
    pub error: Option<String>,
    /// What each `[[faults]]` entry did in the (first) run; empty when errored.
    pub faults: Vec<FaultAccount>,
    /// Wire mode: detections the engine took per transport in the (first) run.
    pub transports: std::collections::BTreeMap<String, u64>,
    /// Attempts before this one that failed, under `--retries`.
    pub retries: Vec<AttemptResult>,
    /// Under `--crash-sweep` (sim mode): what the crash runs found.
    pub crash_sweep: Option<CrashSweep>,
    /// Under `--crash-sweep`: the crash points still to run (filled by the normal run).
    pub crash_plan: Vec<SweepPoint>,
}

impl ScenarioResult {
    /// Failed checks as `INV-3: detail` / `what: detail` lines, and the error of an errored run.
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self.error.iter().map(|e| format!("error: {e}")).collect();
        if let Some(sweep) = &self.crash_sweep {
            out.extend(sweep.failures.iter().map(CrashPointFailure::to_string));
        }
        if let Some(check) = &self.check {
            out.extend(check.failures());
        }
        out
    }
}

/// Loads the selection (input errors are returned before anything runs).
pub fn select(selection: &Selection) -> Result<Vec<Scenario>, ScenarioError> {
    let matcher: Option<GlobMatcher> = match &selection.name {
        Some(pattern) => Some(
            Glob::new(pattern)
                .map_err(|e| ScenarioError {
                    file: PathBuf::from("--name"),
                    line: None,
                    key: String::new(),
                    message: format!("bad glob {pattern:?}: {e}"),
                })?
                .compile_matcher(),
        ),
        None => None,
    };
    let mut scenarios: Vec<Scenario> = load_all(&selection.paths)?
        .into_iter()
        .filter(|s| selection.tags.is_empty() || s.tags.iter().any(|t| selection.tags.contains(t)))
        .filter(|s| matcher.as_ref().is_none_or(|m| m.is_match(&s.name)))
        .collect();
    if let Some((k, n)) = selection.shard {
        scenarios = scenarios
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % n == k - 1)
            .map(|(_, s)| s)
            .collect();
    }
    Ok(scenarios)
}

/// Runs every selected scenario in each selected mode it allows (file order, then mode order)
/// on `jobs` threads. `progress` is called once per finished run.
pub fn run_selected(
    scenarios: &[Scenario],
    selection: &Selection,
    progress: &(dyn Fn(&ScenarioResult) + Sync),
) -> Vec<ScenarioResult> {
    run_selected_with(scenarios, selection, false, progress)
}

/// [`run_selected`], where `strict_faults` (`qlab run --strict-faults`) fails every run in
/// which a declared fault never fired.
pub fn run_selected_with(
    scenarios: &[Scenario],
    selection: &Selection,
    strict_faults: bool,
    progress: &(dyn Fn(&ScenarioResult) + Sync),
) -> Vec<ScenarioResult> {
    let options = RunOptions {
        strict_faults,
        ..RunOptions::default()
    };
    run_selected_opts(scenarios, selection, &options, progress)
}

/// [`run_selected`] with `qlab run`'s options (strict faults, retries, the record hook).
pub fn run_selected_opts(
    scenarios: &[Scenario],
    selection: &Selection,
    options: &RunOptions,
    progress: &(dyn Fn(&ScenarioResult) + Sync),
) -> Vec<ScenarioResult> {
    let runnable: Vec<(&Scenario, Mode)> = scenarios
        .iter()
        .flat_map(|s| {
            selection
                .modes
                .iter()
                .filter(|m| s.runs_in(**m))
                .map(move |m| (s, *m))
        })
        .collect();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<ScenarioResult>>> = Mutex::new(vec![None; runnable.len()]);
    std::thread::scope(|scope| {
        for _ in 0..selection.jobs.clamp(1, 64) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((scenario, mode)) = runnable.get(i) else {
                    break;
                };
                let result = run_retrying(scenario, *mode, selection, options);
                // A swept run is reported once its crash runs are in.
                if !options.crash_sweep || result.crash_sweep.is_none() {
                    progress(&result);
                }
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(result);
            });
        }
    });
    let mut results: Vec<ScenarioResult> = results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect();
    if options.crash_sweep {
        let scenarios: Vec<&Scenario> = runnable.iter().map(|(s, _)| *s).collect();
        sweep_all(&scenarios, &mut results, selection, progress);
    }
    results
}

/// Runs every crash point of every swept result on `jobs` threads, points of all scenarios in
/// one queue (a scenario with many points does not hold one thread alone), and reports each
/// scenario when its last point is in. `scenarios[i]` ran as `results[i]`.
fn sweep_all(
    scenarios: &[&Scenario],
    results: &mut [ScenarioResult],
    selection: &Selection,
    progress: &(dyn Fn(&ScenarioResult) + Sync),
) {
    let work: Vec<(usize, usize)> = results
        .iter()
        .enumerate()
        .flat_map(|(i, r)| (0..r.crash_plan.len()).map(move |p| (i, p)))
        .collect();
    let remaining: Vec<AtomicUsize> = results
        .iter()
        .map(|r| AtomicUsize::new(r.crash_plan.len()))
        .collect();
    let found: Vec<Mutex<Vec<(usize, CrashPointFailure)>>> =
        results.iter().map(|_| Mutex::new(Vec::new())).collect();
    let spent: Vec<std::sync::atomic::AtomicU64> = results
        .iter()
        .map(|_| std::sync::atomic::AtomicU64::new(0))
        .collect();
    let slots: Vec<Mutex<&mut ScenarioResult>> = results.iter_mut().map(Mutex::new).collect();
    // A scenario without points (no commit, no call) is complete already.
    for slot in &slots {
        let r = slot.lock().unwrap_or_else(|e| e.into_inner());
        if r.crash_sweep.is_some() && r.crash_plan.is_empty() {
            progress(&r);
        }
    }
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..selection.jobs.clamp(1, 64) {
            scope.spawn(|| loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(i, p)) = work.get(n) else {
                    break;
                };
                let started = Instant::now();
                let (point, seed) = {
                    let r = slots[i].lock().unwrap_or_else(|e| e.into_inner());
                    (r.crash_plan[p].clone(), r.seed)
                };
                let failures =
                    crash_sweep::run_point(scenarios[i], seed, selection.mutant, point.point);
                spent[i].fetch_add(started.elapsed().as_millis() as u64, Ordering::SeqCst);
                if !failures.is_empty() {
                    found[i].lock().unwrap_or_else(|e| e.into_inner()).push((
                        p,
                        CrashPointFailure {
                            point: point.label,
                            failures,
                        },
                    ));
                }
                if remaining[i].fetch_sub(1, Ordering::SeqCst) == 1 {
                    let mut failures =
                        std::mem::take(&mut *found[i].lock().unwrap_or_else(|e| e.into_inner()));
                    failures.sort_by_key(|(p, _)| *p);
                    let mut r = slots[i].lock().unwrap_or_else(|e| e.into_inner());
                    finish_sweep(
                        &mut r,
                        failures.into_iter().map(|(_, f)| f).collect(),
                        spent[i].load(Ordering::SeqCst),
                    );
                    progress(&r);
                }
            });
        }
    });
}

/// Puts a scenario's crash-run findings into its result: a failed point fails the scenario.
fn finish_sweep(r: &mut ScenarioResult, failures: Vec<CrashPointFailure>, spent_ms: u64) {
    r.crash_plan.clear();
    if let Some(sweep) = &mut r.crash_sweep {
        sweep.duration_ms = spent_ms;
        if !failures.is_empty() && r.status == ResultStatus::Passed {
            r.status = ResultStatus::Failed;
        }
        sweep.failures = failures;
    }
}

/// Runs one scenario in one mode, again after a failure while retries remain.
fn run_retrying(
    scenario: &Scenario,
    mode: Mode,
    selection: &Selection,
    options: &RunOptions,
) -> ScenarioResult {
    let mut earlier: Vec<AttemptResult> = Vec::new();
    let mut attempt = 0u32;
    loop {
        let fail = attempt == 0 && options.fail_once.as_deref() == Some(scenario.name.as_str());
        let mut result = run_one(scenario, mode, selection, options, fail);
        let passed = result.status == ResultStatus::Passed;
        if passed || attempt >= options.retries {
            if passed && !earlier.is_empty() {
                result.status = ResultStatus::Flaky;
            }
            result.retries = earlier;
            return result;
        }
        earlier.push(AttemptResult {
            status: result.status,
            duration_ms: result.duration_ms,
            failures: result.failures(),
            history_digest: result.history_digest.clone(),
        });
        attempt += 1;
    }
}

fn run_one(
    scenario: &Scenario,
    mode: Mode,
    selection: &Selection,
    options: &RunOptions,
    fail: bool,
) -> ScenarioResult {
    let seed = selection.seed.unwrap_or(scenario.seed);
    let started = Instant::now();
    let replay = match mode {
        Mode::Sim => format!(
            "qlab run {} --mode sim --seed {seed}",
            scenario.file.display()
        ),
        Mode::Wire => format!(
            "qlab run {} --mode wire --seed {seed} --time-scale {}",
            scenario.file.display(),
            selection.time_scale
        ),
    };
    // Under `--crash-sweep` the normal run counts the crash points as it goes (counting
    // changes nothing in the run).
    let counting =
        (options.crash_sweep && mode == Mode::Sim).then(|| Arc::new(CrashTrap::counting()));
    let run = |scenario: &Scenario| match mode {
        Mode::Sim => run_sim_trapped(scenario, seed, selection.mutant, counting.clone()),
        // Real clock: a second run could not be byte-identical, so INV-11 is sim's alone.
        Mode::Wire => run_wire(scenario, seed, selection.time_scale),
    };
    let mut result = ScenarioResult {
        name: scenario.name.clone(),
        file: scenario.file.clone(),
        mode,
        seed,
        status: ResultStatus::Errored,
        duration_ms: 0,
        check: None,
        history_digest: String::new(),
        replay,
        error: None,
        faults: Vec::new(),
        transports: Default::default(),
        retries: Vec::new(),
        crash_sweep: None,
        crash_plan: Vec::new(),
    };
    let first = match run(scenario) {
        Ok(run) => run,
        Err(e) => {
            result.error = Some(e);
            result.duration_ms = started.elapsed().as_millis() as u64;
            return result;
        }
    };
    if let Some(trap) = &counting {
        let points = crash_sweep::points_of(trap);
        result.crash_sweep = Some(CrashSweep {
            crash_points: points.len() as u64,
            ..CrashSweep::default()
        });
        result.crash_plan = match options.crash_point {
            Some(only) => points.into_iter().filter(|p| p.point == only).collect(),
            None => {
                let max = crash_sweep::points_within_budget(
                    options.crash_points_max,
                    first.record.history.len(),
                );
                crash_sweep::spread(points, max)
            }
        };
        if let Some(sweep) = &mut result.crash_sweep {
            sweep.swept = result.crash_plan.len() as u64;
        }
    }
    let mut report = first.check;
    let second_digest = if selection.check_determinism && mode == Mode::Sim {
        match run(scenario) {
            Ok(second) => Some(second.history_digest),
            Err(e) => {
                result.error = Some(format!("second run for the determinism check: {e}"));
                None
            }
        }
    } else {
        None
    };
    let determinism = check::determinism_verdict(&first.history_digest, second_digest.as_deref());
    report.push_invariant(determinism, &scenario.expect);
    if options.strict_faults {
        report.expectations.extend(unfired(&first.faults));
    }
    if fail {
        report.expectations.push(ExpectationVerdict {
            what: "fail-once".into(),
            status: Status::Failed,
            detail: "--fail-once: this attempt is failed on purpose (a test hook)".into(),
        });
    }
    // The pass rule (with `expect.violations`) lives in the checker; ask it again now that
    // INV-11 is in.
    let passed = check::verdict(&report, &scenario.expect);
    result.status = if result.error.is_some() {
        ResultStatus::Errored
    } else if passed {
        ResultStatus::Passed
    } else {
        ResultStatus::Failed
    };
    result.check = Some(report);
    result.history_digest = first.history_digest;
    result.faults = first.faults;
    result.transports = first.transports;
    result.duration_ms = started.elapsed().as_millis() as u64;
    if let Some(hook) = options.on_record {
        hook(scenario, &result, &first.record);
    }
    result
}

/// One failed expectation per fault that never fired (`--strict-faults`).
fn unfired(faults: &[FaultAccount]) -> Vec<ExpectationVerdict> {
    faults
        .iter()
        .filter(|f| f.hits == 0)
        .map(|f| ExpectationVerdict {
            what: format!("faults[{}] fires", f.index),
            status: Status::Failed,
            detail: format!(
                "{} never fired in this run (--strict-faults): make the scenario exercise it, or \
                 remove it",
                describe(f)
            ),
        })
        .collect()
}

/// `effect on device call` of a fault, for messages.
pub fn describe(f: &FaultAccount) -> String {
    match &f.call {
        Some(call) => format!("`{}` on {} `{call}`", f.effect, f.device),
        None => format!("`{}` on {}", f.effect, f.device),
    }
}
