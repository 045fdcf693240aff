//! The explore report folder: explore.json (`qlab.explore/v1`), summary.md, junit.xml (one
//! case per signature) and one shrunk scenario file per signature.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use serde::Serialize;

use super::generate::{effect_name, Profile};
use super::shrink::{topology_text, Attribution, Case};
use super::Failure;

/// The `schema` of explore.json.
pub const SCHEMA: &str = "qlab.explore/v1";

/// One signature: `{"signature","invariants","first_run","count","shrunk_file",
/// "attributed_fault"}` plus what helps a person read it.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    /// Failed invariants and fault effects of the minimal scenario.
    pub signature: String,
    /// Failed invariant ids, sorted.
    pub invariants: Vec<String>,
    /// Index of the first run that showed it.
    pub first_run: u64,
    /// Runs that showed it.
    pub count: u64,
    /// The shrunk scenario file, relative to the report folder; `null` past the shrink cap.
    pub shrunk_file: Option<String>,
    /// The fault whose removal makes the minimal scenario pass, where exactly one does.
    pub attributed_fault: Option<Attribution>,
    /// Runs the shrink spent.
    pub shrink_runs: usize,
    /// Events of the minimal scenario.
    pub events: usize,
    /// Faults of the minimal scenario.
    pub faults: usize,
    /// The command that rebuilds the first run.
    pub replay: String,
    /// Invariants and effects of the minimal scenario: a later failure with these invariants
    /// and at least these effects counts toward this signature.
    #[serde(skip)]
    pub(super) key: Option<(BTreeSet<String>, BTreeSet<String>)>,
}

impl Violation {
    /// A failure past the shrink cap: grouped by its generated effects, not shrunk.
    pub(super) fn unshrunk(
        signature: String,
        invariants: &BTreeSet<String>,
        first_run: u64,
        replay: String,
    ) -> Violation {
        Violation {
            signature,
            invariants: invariants.iter().cloned().collect(),
            first_run,
            count: 1,
            shrunk_file: None,
            attributed_fault: None,
            shrink_runs: 0,
            events: 0,
            faults: 0,
            replay,
            key: None,
        }
    }

    /// Whether `f` is explained by this (shrunk) signature.
    pub(super) fn explains(&self, f: &Failure) -> bool {
        self.key
            .as_ref()
            .is_some_and(|(inv, eff)| *inv == f.invariants && eff.is_subset(&f.effects))
    }
}

/// Counts of one effect in `fault_coverage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EffectCoverage {
    /// Runs that drew it.
    pub drawn: u64,
    /// Runs in which it met a call, detection or reboot it could act on.
    pub met: u64,
}

/// `fault_coverage`: per effect, per `effect@call`, and the effects never drawn.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Coverage {
    /// Per effect.
    pub effects: BTreeMap<String, EffectCoverage>,
    /// Per `effect@call` (`@any` for faults without `call`): runs that drew it.
    pub calls: BTreeMap<String, u64>,
    /// Effects allowed by `--effects` that no run drew.
    pub never_drawn: Vec<String>,
}

pub(super) fn coverage(
    by_effect: &BTreeMap<String, (u64, u64)>,
    by_pair: &BTreeMap<String, u64>,
    profile: &Profile,
) -> Coverage {
    let effects: BTreeMap<String, EffectCoverage> = by_effect
        .iter()
        .map(|(e, (drawn, met))| {
            (
                e.clone(),
                EffectCoverage {
                    drawn: *drawn,
                    met: *met,
                },
            )
        })
        .collect();
    let never_drawn = profile
        .effects
        .iter()
        .map(|e| effect_name(*e))
        .filter(|e| !effects.contains_key(e))
        .collect();
    Coverage {
        effects,
        calls: by_pair.clone(),
        never_drawn,
    }
}

/// explore.json.
#[derive(Debug, Clone, Serialize)]
pub struct ExploreReport {
    /// Exploration seed.
    pub seed: u64,
    /// Runs made.
    pub runs: u64,
    /// Runs per second of wall time, exploration phase only.
    pub runs_per_second: f64,
    /// Wall time of the exploration phase.
    pub elapsed_ms: u64,
    /// Worker threads.
    pub jobs: usize,
    /// `K/N`.
    pub shard: String,
    /// The explored topology file.
    pub topology: String,
    /// The broken engine explored, if any.
    pub mutant: Option<String>,
    /// Generation flags every replay must repeat.
    pub replay_flags: String,
    /// One entry per signature.
    pub violations: Vec<Violation>,
    /// Generated scenarios the loader refused (a lab defect).
    pub invalid_scenarios: u64,
    /// The first such refusal.
    pub first_invalid: Option<String>,
    /// What the runs drew and what the faults met.
    pub fault_coverage: Coverage,
}

impl ExploreReport {
    /// Whether nothing failed: no violation and no invalid scenario (exit 0).
    pub fn clean(&self) -> bool {
        self.violations.is_empty() && self.invalid_scenarios == 0
    }
}

/// explore.json's top level, `schema` first.
#[derive(Serialize)]
struct Json<'a> {
    schema: &'static str,
    #[serde(flatten)]
    report: &'a ExploreReport,
}

/// Writes explore.json, summary.md and junit.xml into `dir`.
pub(super) fn write(dir: &Path, report: &ExploreReport) -> io::Result<()> {
    let mut json = serde_json::to_string_pretty(&Json {
        schema: SCHEMA,
        report,
    })
    .map_err(io::Error::other)?;
    json.push('\n');
    std::fs::write(dir.join("explore.json"), json)?;
    std::fs::write(dir.join("summary.md"), summary(report))?;
    std::fs::write(dir.join("junit.xml"), junit(report)?)?;
    Ok(())
}

fn summary(r: &ExploreReport) -> String {
    let mut s = String::new();
    s.push_str("# qlab explore\n\n");
    s.push_str(&format!(
        "{} runs, seed {}, shard {}, {} jobs: {:.0} runs/s{}.\n\n",
        r.runs,
        r.seed,
        r.shard,
        r.jobs,
        r.runs_per_second,
        r.mutant
            .as_ref()
            .map(|m| format!(", broken engine `{m}`"))
            .unwrap_or_default()
    ));
    if r.invalid_scenarios > 0 {
        s.push_str(&format!(
            "**{} generated scenarios were refused by the loader** (a lab defect): {}\n\n",
            r.invalid_scenarios,
            r.first_invalid.as_deref().unwrap_or("")
        ));
    }
    if r.violations.is_empty() {
        s.push_str("No violation.\n");
    } else {
        s.push_str("| signature | runs | first run | minimal scenario | blamed fault |\n");
        s.push_str("|---|---|---|---|---|\n");
        for v in &r.violations {
            let file = v.shrunk_file.as_deref().unwrap_or("(not shrunk)");
            let blamed = v.attributed_fault.as_ref().map_or("-".to_string(), |a| {
                format!(
                    "faults[{}]: {} {} on `{}`",
                    a.index,
                    a.effect,
                    a.call.as_deref().unwrap_or("any call"),
                    a.device
                )
            });
            s.push_str(&format!(
                "| `{}` | {} | {} | `{}` ({} events, {} faults) | {} |\n",
                v.signature, v.count, v.first_run, file, v.events, v.faults, blamed
            ));
        }
        s.push_str(
            "\nReplay a minimal scenario with `qlab run <file>`; the first run of a \
                    signature with its `replay` command from explore.json.\n",
        );
    }
    s.push_str(
        "\n## Fault coverage\n\n| effect | runs drawn | runs it met a call |\n|---|---|---|\n",
    );
    for (e, c) in &r.fault_coverage.effects {
        s.push_str(&format!("| {e} | {} | {} |\n", c.drawn, c.met));
    }
    if !r.fault_coverage.never_drawn.is_empty() {
        s.push_str(&format!(
            "\nNever drawn: {}.\n",
            r.fault_coverage.never_drawn.join(", ")
        ));
    }
    s
}

fn junit(r: &ExploreReport) -> io::Result<String> {
    let mut suite = TestSuite::new("explore");
    for v in &r.violations {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
        status
            .set_message(format!(
                "{} runs violate {}",
                v.count,
                v.invariants.join(", ")
            ))
            .set_type("violation")
            .set_description(format!(
                "minimal scenario: {}\nreplay: {}\nattributed fault: {}",
                v.shrunk_file.as_deref().unwrap_or("(not shrunk)"),
                v.replay,
                v.attributed_fault
                    .as_ref()
                    .map_or("none".to_string(), |a| format!(
                        "faults[{}] {} {} {}",
                        a.index,
                        a.device,
                        a.call.as_deref().unwrap_or("any"),
                        a.effect
                    ))
            ));
        let mut case = TestCase::new(v.signature.clone(), status);
        case.set_classname("qlab.explore");
        suite.add_test_case(case);
    }
    if r.invalid_scenarios > 0 {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        status.set_message(r.first_invalid.clone().unwrap_or_default());
        let mut case = TestCase::new("generated scenarios load", status);
        case.set_classname("qlab.explore");
        suite.add_test_case(case);
    }
    if suite.test_cases.is_empty() {
        let mut case = TestCase::new("no violation", TestCaseStatus::success());
        case.set_classname("qlab.explore")
            .set_system_out(format!("{} runs, seed {}", r.runs, r.seed));
        suite.add_test_case(case);
    }
    suite.set_time(Duration::from_millis(r.elapsed_ms));
    let mut report = Report::new("qlab-explore");
    report.add_test_suite(suite);
    report.to_string().map_err(io::Error::other)
}

/// A file-name stem from a signature: letters, digits, `-` and `_` only.
fn stem(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    out.truncate(120);
    out
}

/// Writes `case` as `<stem>.toml` in `dir` (and its reduced topology as
/// `<stem>.topology.toml`); returns the scenario file's name.
pub(super) fn write_case(dir: &Path, name: &str, case: &Case) -> io::Result<String> {
    let stem = stem(name);
    let mut file = case.file.clone();
    file.name = stem.clone();
    if case.topology_shrunk {
        let topology_name = format!("{stem}.topology.toml");
        let text = topology_text(&case.topology)
            .ok_or_else(|| io::Error::other("the reduced topology cannot be written as TOML"))?;
        std::fs::write(dir.join(&topology_name), text)?;
        file.topology = topology_name;
    }
    let mut value = toml::Value::try_from(&file).map_err(io::Error::other)?;
    if let Some(table) = value.as_table_mut() {
        // An empty [expect] says nothing; leave it out of the file a person reads.
        if file.expect == Default::default() {
            table.remove("expect");
        }
        // Likewise an empty `match` (the fault matches every object).
        if let Some(faults) = table.get_mut("faults").and_then(|f| f.as_array_mut()) {
            for fault in faults.iter_mut().filter_map(|f| f.as_table_mut()) {
                if fault
                    .get("match")
                    .and_then(|m| m.as_table())
                    .is_some_and(|m| m.is_empty())
                {
                    fault.remove("match");
                }
            }
        }
    }
    let text = toml::to_string(&value).map_err(io::Error::other)?;
    let scenario_name = format!("{stem}.toml");
    std::fs::write(dir.join(&scenario_name), text)?;
    Ok(scenario_name)
}
