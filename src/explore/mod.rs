//! `qlab explore`: generated scenarios by the thousand, in-process in sim mode, every invariant
//! checked on every run; failures grouped by signature, each signature shrunk once to a minimal
//! scenario file that `qlab run` replays, and the fault to blame named where one is.
//!
//! In the manner of FoundationDB's simulation and TigerBeetle's VOPR: a run is a pure function of
//! `(seed, index)` and the generation flags, so `--replay SEED:INDEX` (with the same flags)
//! rebuilds exactly the scenario that failed. Swarm testing (Groce et al.) gives each run a random
//! subset of the fault kinds, so faults that mask one another do not always travel together.
//!
//! Decisions where the spec is silent:
//! - Runs without `--runs` or `--duration`: 1,000. With `--shard K/N` a shard runs the indices
//!   `i` with `i % N == K - 1` below `--runs` (or until `--duration` is spent).
//! - Run `index` uses scenario seed `run_seed(seed, index, 0)`; its name is
//!   `explore-SEED-INDEX`. `--replay` needs the same `--swarm/--liveness/--crashes/--effects`
//!   flags as the exploration: they are part of what generated the run (explore.json and
//!   summary.md print the full replay command).
//! - A signature is the sorted failed invariants plus the sorted fault effects of the *shrunk*
//!   scenario (`INV-1+INV-4|accept_without_apply`). Failures are grouped first by invariants;
//!   a later failure whose effects include every effect of an already shrunk signature with the
//!   same invariants counts toward it, otherwise it is shrunk too (at most [`MAX_SHRINKS`]
//!   shrinks; beyond that, failures are grouped unshrunk by invariants and generated effects).
//! - `attributed_fault` is set when exactly one fault of the minimal scenario, removed, makes
//!   it pass every invariant; `null` when none does or several do.
//! - A shrunk scenario file points at the explored topology by absolute path, or at
//!   `<name>.topology.toml` beside it when L-Servers or devices were dropped.
//! - A generated scenario the loader refuses is a lab defect, not an engine violation: it is
//!   counted in `invalid_scenarios` (with the first message) and fails the exploration (exit 1).
//! - INV-11 (determinism) is checked on one run in [`DETERMINISM_EVERY`] (run twice, digests
//!   compared), on every `--replay`, and on every shrink candidate of an INV-11 signature.
//!   INV-12 is checked when the checkers check it (`check_run`); explore adds nothing for it.
//! - `runs_per_second` counts the exploration phase only (not shrinking or report writing).
//! - `fault_coverage` counts, per effect and per `effect@call`, the runs that drew it, and per
//!   effect the runs in which it met something to act on (`met`: a call of its kind reached its
//!   device inside its window, a detection from its AV server did, or its switch rebooted;
//!   `times` and `match` other than `lserver` are not judged).

pub mod generate;
mod report;
pub mod shrink;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::check::{determinism_verdict, Status};
use crate::model::history::{EventKind, HistoryEvent};
use crate::model::{load_site, Site};
use crate::scenario::file::{EventFile, ScenarioFile};
use crate::scenario::load::from_file_form;
use crate::scenario::runner::{run_sim, Mutant};
use crate::sim::faults::{FaultEffect, FaultSpec};

pub use generate::{Catalog, Profile, EFFECTS};
pub use report::{ExploreReport, Violation};
pub use shrink::{Attribution, Case};

/// Most distinct failures shrunk in one exploration.
pub const MAX_SHRINKS: usize = 24;

/// Runs when neither `--runs` nor `--duration` is given.
pub const DEFAULT_RUNS: u64 = 1_000;

/// Most runs one exploration may make (`--runs`): a bound on time and on the report.
pub const MAX_RUNS: u64 = 100_000_000;

/// What `qlab explore` was asked to do.
#[derive(Debug, Clone)]
pub struct ExploreOptions {
    /// The topology file explored.
    pub topology: PathBuf,
    /// How many runs (over all shards); [`DEFAULT_RUNS`] when neither this nor `duration`.
    pub runs: Option<u64>,
    /// Run until this much wall time has passed.
    pub duration: Option<Duration>,
    /// Exploration seed.
    pub seed: u64,
    /// Worker threads.
    pub jobs: usize,
    /// `(k, n)`: this process runs shard k (1-based) of n.
    pub shard: (u64, u64),
    /// How runs are generated.
    pub profile: Profile,
    /// Where the report folder goes.
    pub report_dir: PathBuf,
    /// Checker self-test: a deliberately broken engine.
    pub mutant: Option<Mutant>,
}

/// An exploration that could not start: bad input (exit 2) or a report that could not be
/// written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExploreError {
    /// The command line or the topology is wrong.
    Input(String),
    /// The report folder could not be written.
    Io(String),
}

impl std::fmt::Display for ExploreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExploreError::Input(m) | ExploreError::Io(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ExploreError {}

/// Runs generated scenarios against one site. Shared by the workers, the shrinker and replay.
pub struct Probe<'a> {
    /// The explored topology file (resolved).
    pub topology_file: &'a Path,
    /// Broken engine, if any.
    pub mutant: Option<Mutant>,
}

impl Probe<'_> {
    /// Validates `file` against `site` and runs it; the failed invariants, or why it could not
    /// run (the loader's message). With `twice`, the run is repeated and a different history
    /// digest fails INV-11.
    pub fn run(
        &self,
        file: ScenarioFile,
        site: &Arc<Site>,
        twice: bool,
    ) -> Result<BTreeSet<String>, String> {
        self.run_full(file, site, twice).map(|(failed, _)| failed)
    }

    fn run_full(
        &self,
        file: ScenarioFile,
        site: &Arc<Site>,
        twice: bool,
    ) -> Result<(BTreeSet<String>, BTreeSet<String>), String> {
        let name = PathBuf::from(format!("{}.toml", file.name));
        let (events, faults) = (file.events.clone(), file.faults.clone());
        let scenario = from_file_form(&name, file, self.topology_file.to_path_buf(), site.clone())
            .map_err(|e| e.to_string())?;
        let run = run_sim(&scenario, scenario.seed, self.mutant)?;
        let mut failed: BTreeSet<String> = run
            .check
            .failed_invariants()
            .into_iter()
            .map(str::to_string)
            .collect();
        if twice {
            let again = run_sim(&scenario, scenario.seed, self.mutant)?;
            let verdict = determinism_verdict(&run.history_digest, Some(&again.history_digest));
            if verdict.status == Status::Failed {
                failed.insert(verdict.id);
            }
        }
        Ok((failed, met_effects(&events, &faults, &run.record.history)))
    }
}

/// One run in this many is run twice to check INV-11 (determinism): a 1/64 sample costs under
/// 2 % of the throughput and still checks dozens of runs per second.
pub const DETERMINISM_EVERY: u64 = 64;

/// The effects of `faults` whose fault met something it could act on: a call of its kind (and
/// L-Server, when `match` names one) reaching its device inside its window, a detection from its
/// AV server inside its window, or its switch's reboot. `times` and the other `match` keys are
/// not judged, so this is "could have fired", for coverage only.
fn met_effects(
    events: &[EventFile],
    faults: &[FaultSpec],
    history: &[HistoryEvent],
) -> BTreeSet<String> {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let mut met = BTreeSet::new();
    for f in faults {
        let from = f.from.map_or(0, ms);
        let until = f.until.map_or(u64::MAX, ms);
        let inside = |t: u64| from <= t && t < until;
        let hit = if f.effect == FaultEffect::RebootLosesUnsaved {
            history.iter().any(
                |e| matches!(&e.kind, EventKind::SwitchRebooted { device } if *device == f.device),
            )
        } else if f.effect.is_delivery() {
            events.iter().any(|e| {
                e.detect.as_ref().is_some_and(|d| d.source == f.device) && inside(ms(e.at))
            })
        } else {
            history.iter().any(|e| match &e.kind {
                EventKind::Invoke {
                    device,
                    op,
                    lserver,
                    ..
                } => {
                    *device == f.device
                        && inside(e.at_ms)
                        && f.call.is_none_or(|c| op.starts_with(c.as_str()))
                        && f.matcher
                            .lserver
                            .as_ref()
                            .is_none_or(|l| lserver.as_deref() == Some(l.as_str()))
                }
                _ => false,
            })
        };
        if hit {
            met.insert(generate::effect_name(f.effect));
        }
    }
    met
}

/// The explored site, loaded once and shared by every run.
pub struct Target {
    /// The topology file, resolved.
    pub topology_file: PathBuf,
    /// The site.
    pub site: Arc<Site>,
    /// What the generator draws from.
    pub catalog: Catalog,
}

impl Target {
    /// Loads the topology at `path`; its errors are input errors.
    pub fn load(path: &Path) -> Result<Target, ExploreError> {
        let site = load_site(path).map_err(|e| ExploreError::Input(e.to_string()))?;
        let topology_file = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        Ok(Target {
            topology_file,
            catalog: Catalog::new(&site),
            site: Arc::new(site),
        })
    }

    /// The scenario of run `index`.
    pub fn generate(&self, profile: &Profile, seed: u64, index: u64) -> ScenarioFile {
        generate::generate(
            &self.catalog,
            profile,
            &self.topology_file.to_string_lossy(),
            seed,
            index,
        )
    }
}

/// One failing run, as the workers found it.
#[derive(Debug, Clone)]
struct Failure {
    index: u64,
    invariants: BTreeSet<String>,
    effects: BTreeSet<String>,
    /// Size of the generated scenario.
    events: usize,
    faults: usize,
}

/// What the workers gathered.
#[derive(Default)]
struct Gathered {
    runs: u64,
    failures: Vec<Failure>,
    invalid: u64,
    first_invalid: Option<String>,
    /// effect -> (drawn, met); `effect@call` -> drawn.
    by_effect: BTreeMap<String, (u64, u64)>,
    by_pair: BTreeMap<String, u64>,
}

/// The effects drawn in `file`, by name.
fn drawn_effects(file: &ScenarioFile) -> BTreeSet<String> {
    file.faults
        .iter()
        .map(|f| generate::effect_name(f.effect))
        .collect()
}

/// Runs the exploration, writes the report folder and returns what it found.
pub fn explore(opts: &ExploreOptions) -> Result<ExploreReport, ExploreError> {
    let (k, n) = opts.shard;
    if n == 0 || k == 0 || k > n {
        return Err(ExploreError::Input(format!(
            "--shard {k}/{n}: K must be between 1 and N"
        )));
    }
    if opts.runs.is_some_and(|r| r > MAX_RUNS) {
        return Err(ExploreError::Input(format!(
            "--runs is at most {MAX_RUNS}; use --duration for longer explorations"
        )));
    }
    let target = Target::load(&opts.topology)?;
    let probe = Probe {
        topology_file: &target.topology_file,
        mutant: opts.mutant,
    };
    let total = match (opts.runs, opts.duration) {
        (Some(r), _) => r,
        (None, Some(_)) => MAX_RUNS,
        (None, None) => DEFAULT_RUNS,
    };
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let gathered = Mutex::new(Gathered::default());
    let started = Instant::now();
    let deadline = opts.duration.map(|d| started + d);
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.max(1) {
            scope.spawn(|| {
                let mut local = Gathered::default();
                loop {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    let slot = next.fetch_add(1, Ordering::Relaxed);
                    let Some(index) = slot.checked_mul(n).and_then(|i| i.checked_add(k - 1)) else {
                        break;
                    };
                    if index >= total {
                        break;
                    }
                    let file = target.generate(&opts.profile, opts.seed, index);
                    let size = (file.events.len(), file.faults.len());
                    let drawn = drawn_effects(&file);
                    for f in &file.faults {
                        let pair = format!(
                            "{}@{}",
                            generate::effect_name(f.effect),
                            f.call.map_or("any", |c| c.as_str())
                        );
                        *local.by_pair.entry(pair).or_default() += 1;
                    }
                    local.runs += 1;
                    let twice = index % DETERMINISM_EVERY == 0;
                    match probe.run_full(file, &target.site, twice) {
                        Ok((failed, met)) => {
                            for effect in &drawn {
                                let entry = local.by_effect.entry(effect.clone()).or_default();
                                entry.0 += 1;
                                if met.contains(effect) {
                                    entry.1 += 1;
                                }
                            }
                            if !failed.is_empty() {
                                local.failures.push(Failure {
                                    index,
                                    invariants: failed,
                                    effects: drawn,
                                    events: size.0,
                                    faults: size.1,
                                });
                            }
                        }
                        Err(e) => {
                            local.invalid += 1;
                            local
                                .first_invalid
                                .get_or_insert(format!("run {index}: {e}"));
                            // A generator defect repeats; stop early instead of flooding.
                            if local.invalid >= 10 {
                                stop.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                }
                let mut g = gathered.lock().unwrap_or_else(|e| e.into_inner());
                g.runs += local.runs;
                g.failures.extend(local.failures);
                g.invalid += local.invalid;
                if g.first_invalid.is_none() {
                    g.first_invalid = local.first_invalid;
                }
                for (e, (d, f)) in local.by_effect {
                    let entry = g.by_effect.entry(e).or_default();
                    entry.0 += d;
                    entry.1 += f;
                }
                for (p, c) in local.by_pair {
                    *g.by_pair.entry(p).or_default() += c;
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let mut g = gathered.into_inner().unwrap_or_else(|e| e.into_inner());
    g.failures.sort_by_key(|f| f.index);
    let runs_per_second = if elapsed.as_secs_f64() > 0.0 {
        g.runs as f64 / elapsed.as_secs_f64()
    } else {
        0.0
    };

    std::fs::create_dir_all(&opts.report_dir).map_err(|e| {
        ExploreError::Io(format!(
            "cannot create the report folder {}: {e}",
            opts.report_dir.display()
        ))
    })?;
    let violations = group_and_shrink(opts, &target, &probe, &g.failures)?;
    let report = ExploreReport {
        seed: opts.seed,
        runs: g.runs,
        runs_per_second,
        elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        jobs: opts.jobs.max(1),
        shard: format!("{k}/{n}"),
        topology: target.topology_file.display().to_string(),
        mutant: opts.mutant.map(|m| m.name().to_string()),
        replay_flags: replay_flags(opts),
        violations,
        invalid_scenarios: g.invalid,
        first_invalid: g.first_invalid,
        fault_coverage: report::coverage(&g.by_effect, &g.by_pair, &opts.profile),
    };
    report::write(&opts.report_dir, &report)
        .map_err(|e| ExploreError::Io(format!("cannot write the explore report: {e}")))?;
    Ok(report)
}

/// The generation flags a replay must repeat.
fn replay_flags(opts: &ExploreOptions) -> String {
    let mut flags = Vec::new();
    if opts.profile.swarm {
        flags.push("--swarm".to_string());
    }
    if opts.profile.liveness {
        flags.push("--liveness".to_string());
    }
    if opts.profile.crashes {
        flags.push("--crashes".to_string());
    }
    if opts.profile.effects.len() != EFFECTS.len() {
        let names: Vec<String> = opts
            .profile
            .effects
            .iter()
            .map(|e| generate::effect_name(*e))
            .collect();
        flags.push(format!("--effects {}", names.join(",")));
    }
    if let Some(m) = opts.mutant {
        flags.push(format!("--mutant {}", m.name()));
    }
    flags.join(" ")
}

/// Groups failures by signature and shrinks each signature once (see the module doc).
fn group_and_shrink(
    opts: &ExploreOptions,
    target: &Target,
    probe: &Probe<'_>,
    failures: &[Failure],
) -> Result<Vec<Violation>, ExploreError> {
    let mut violations: Vec<Violation> = Vec::new();
    let mut shrinks = 0;
    for f in failures {
        if let Some(v) = violations.iter_mut().find(|v| v.explains(f)) {
            v.count += 1;
            continue;
        }
        if shrinks >= MAX_SHRINKS {
            let signature = signature(&f.invariants, &f.effects);
            match violations.iter_mut().find(|v| v.signature == signature) {
                Some(v) => v.count += 1,
                None => violations.push(Violation::unshrunk(
                    signature,
                    &f.invariants,
                    f.index,
                    replay_command(opts, f.index),
                )),
            }
            continue;
        }
        shrinks += 1;
        let file = target.generate(&opts.profile, opts.seed, f.index);
        let case = Case {
            file,
            topology: target.site.topology.clone(),
            site: target.site.clone(),
            topology_shrunk: false,
        };
        let (minimal, shrink_runs) =
            shrink::shrink(probe, case, &f.invariants, &target.topology_file);
        let effects = drawn_effects(&minimal.file);
        let signature = signature(&f.invariants, &effects);
        if let Some(v) = violations.iter_mut().find(|v| v.signature == signature) {
            // Another failure already shrank to this signature.
            v.count += 1;
            continue;
        }
        let mut minimal = minimal;
        minimal.file.description = format!(
            "Shrunk by `qlab explore` from run {} of seed {} ({} events and {} faults before \
             shrinking): violates {}.",
            f.index,
            opts.seed,
            f.events,
            f.faults,
            f.invariants.iter().cloned().collect::<Vec<_>>().join(", ")
        );
        let attributed = shrink::attribute(probe, &minimal);
        let written =
            report::write_case(&opts.report_dir, &format!("shrunk-{signature}"), &minimal)
                .map_err(|e| ExploreError::Io(format!("cannot write a shrunk scenario: {e}")))?;
        violations.push(Violation {
            signature,
            invariants: f.invariants.iter().cloned().collect(),
            first_run: f.index,
            count: 1,
            shrunk_file: Some(written),
            attributed_fault: attributed,
            shrink_runs,
            events: minimal.file.events.len(),
            faults: minimal.file.faults.len(),
            replay: replay_command(opts, f.index),
            key: Some((f.invariants.clone(), effects)),
        });
    }
    Ok(violations)
}

/// `INV-1+INV-4|accept_without_apply,stale_read` (`|none` without faults).
fn signature(invariants: &BTreeSet<String>, effects: &BTreeSet<String>) -> String {
    let inv: Vec<&str> = invariants.iter().map(String::as_str).collect();
    let eff: Vec<&str> = effects.iter().map(String::as_str).collect();
    format!(
        "{}|{}",
        inv.join("+"),
        if eff.is_empty() {
            "none".to_string()
        } else {
            eff.join(",")
        }
    )
}

/// The command that reruns run `index` of this exploration.
fn replay_command(opts: &ExploreOptions, index: u64) -> String {
    let flags = replay_flags(opts);
    format!(
        "qlab explore --replay {}:{index} --topology {}{}{}",
        opts.seed,
        opts.topology.display(),
        if flags.is_empty() { "" } else { " " },
        flags
    )
}

/// What `--replay` found.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// The scenario file written (`explore-SEED-INDEX.toml` in the report folder).
    pub file: PathBuf,
    /// Failed invariants.
    pub failed: BTreeSet<String>,
}

/// `qlab explore --replay SEED:INDEX`: rebuilds run `index`, writes it as a scenario file into
/// `report_dir` and runs it once.
pub fn replay(opts: &ExploreOptions, seed: u64, index: u64) -> Result<Replayed, ExploreError> {
    let target = Target::load(&opts.topology)?;
    let probe = Probe {
        topology_file: &target.topology_file,
        mutant: opts.mutant,
    };
    let file = target.generate(&opts.profile, seed, index);
    std::fs::create_dir_all(&opts.report_dir).map_err(|e| {
        ExploreError::Io(format!(
            "cannot create the report folder {}: {e}",
            opts.report_dir.display()
        ))
    })?;
    let case = Case {
        file: file.clone(),
        topology: target.site.topology.clone(),
        site: target.site.clone(),
        topology_shrunk: false,
    };
    let written = report::write_case(&opts.report_dir, &file.name, &case)
        .map_err(|e| ExploreError::Io(format!("cannot write the scenario: {e}")))?;
    let failed = probe
        .run(file, &target.site, true)
        .map_err(|e| ExploreError::Input(format!("run {seed}:{index} cannot run: {e}")))?;
    Ok(Replayed {
        file: opts.report_dir.join(written),
        failed,
    })
}

/// Parses `SEED:INDEX`.
pub fn parse_replay(text: &str) -> Result<(u64, u64), ExploreError> {
    let bad = || {
        ExploreError::Input(format!(
            "--replay {text:?}: write SEED:INDEX, two whole numbers, e.g. 7:1234"
        ))
    };
    let (s, i) = text.split_once(':').ok_or_else(bad)?;
    Ok((
        s.trim().parse().map_err(|_| bad())?,
        i.trim().parse().map_err(|_| bad())?,
    ))
}

/// Parses `--effects reject,timeout,...`.
pub fn parse_effects(text: &str) -> Result<Vec<crate::sim::faults::FaultEffect>, ExploreError> {
    let mut out = Vec::new();
    for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let effect = generate::parse_effect(name).ok_or_else(|| {
            let known: Vec<String> = EFFECTS.iter().map(|e| generate::effect_name(*e)).collect();
            ExploreError::Input(format!(
                "--effects: unknown effect `{name}`; known in sim mode: {}",
                known.join(", ")
            ))
        })?;
        if !out.contains(&effect) {
            out.push(effect);
        }
    }
    if out.is_empty() {
        return Err(ExploreError::Input(
            "--effects is empty; name at least one effect, or leave it out for all".into(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn signatures_name_invariants_then_effects_sorted() {
        assert_eq!(
            signature(&set(&["INV-4", "INV-1"]), &set(&["stale_read", "busy"])),
            "INV-1+INV-4|busy,stale_read"
        );
        assert_eq!(signature(&set(&["INV-7"]), &set(&[])), "INV-7|none");
    }

    #[test]
    fn replay_and_effects_arguments_are_checked() {
        assert_eq!(parse_replay("7:1234"), Ok((7, 1234)));
        for bad in ["7", "7:", ":3", "a:b", "-1:2"] {
            assert!(parse_replay(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_effects("reject, busy,reject").unwrap(),
            vec![FaultEffect::Reject, FaultEffect::Busy]
        );
        assert!(
            parse_effects("reset").is_err(),
            "wire-only effects are refused"
        );
        assert!(parse_effects(" , ").is_err());
    }

    #[test]
    fn a_fault_meets_only_calls_of_its_kind_inside_its_window() {
        use crate::model::history::{HistoryEvent, NicRef};
        let invoke = |at_ms, op: &str| HistoryEvent {
            at_ms,
            kind: EventKind::Invoke {
                call: 1,
                device: "vc-1".into(),
                op: op.into(),
                nic: Some(NicRef {
                    lserver: "/a".into(),
                    nic: 0,
                }),
                lserver: Some("/a".into()),
                value: None,
            },
        };
        let fault: FaultSpec = toml::from_str(
            "device = \"vc-1\"\ncall = \"get_nic\"\neffect = \"reject\"\nfrom = \"1s\"\nuntil = \"2s\"",
        )
        .unwrap();
        let met = |history: &[HistoryEvent]| {
            !met_effects(&[], std::slice::from_ref(&fault), history).is_empty()
        };
        assert!(met(&[invoke(1500, "get_nic")]));
        assert!(!met(&[invoke(500, "get_nic")]), "before the window");
        assert!(
            !met(&[invoke(2000, "get_nic")]),
            "the window ends before `until`"
        );
        assert!(!met(&[invoke(1500, "set_nic")]), "another call");
    }
}
