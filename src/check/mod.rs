//! Invariants (INV-1–INV-10, INV-12) and expectations: pure functions over a run's history and final
//! device truth, the way an auditor would check them. Never asks the engine anything.
//!
//! [`check_run`] is the one entry point: it indexes the history once ([`facts`]), runs every
//! invariant, evaluates the scenario's `[expect]` and computes the measures of
//! `docs/measures.md`. INV-11 (determinism) needs two runs, so the runner decides it with
//! [`determinism_verdict`] and adds it with [`CheckReport::push_invariant`]. Whether a scenario
//! passes is [`verdict`]: the rule of `expect.violations` lives there and nowhere else.

pub mod expect;
mod expectations;
mod facts;
mod inv_addresses;
mod inv_journal;
mod inv_recontain;
mod inv_state;
mod inv_writes;
mod measures;

/// The checkers' hash maps and sets. Their keys come from the run's own history and site (L-Server
/// paths, operation ids, call sequence numbers), never from outside the lab, so they need no
/// protection against crafted collisions: FxHash costs a fraction of SipHash, which showed in
/// profiles of the 100,000-L-Server outbreak. Nothing iterates them where order would reach a
/// report.
mod hash {
    pub(super) type HashMap<K, V> = rustc_hash::FxHashMap<K, V>;
    pub(super) type HashSet<T> = rustc_hash::FxHashSet<T>;
}

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use expect::{AlertExpect, Expectations, LServerExpect};
pub use inv_recontain::drift_settle_bound;
pub use measures::{Measures, Summary};

use crate::model::history::{HistoryEvent, RunRecord};
use crate::model::Site;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Status {
    /// The rule held.
    Passed,
    /// The rule was broken; `detail` says where.
    Failed,
    /// Nothing in this run exercised the rule (or, for INV-11, there was no second run).
    Skipped,
}

impl Status {
    /// The spelling used in reports.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The verdict on one invariant: `{"id","status","detail"}` in report.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InvariantVerdict {
    /// `INV-1` … `INV-11`.
    pub id: String,
    /// Outcome.
    pub status: Status,
    /// What was checked, or the first violations found.
    pub detail: String,
}

impl InvariantVerdict {
    /// A verdict with the given status.
    pub fn new(id: &str, status: Status, detail: impl Into<String>) -> Self {
        InvariantVerdict {
            id: id.to_string(),
            status,
            detail: detail.into(),
        }
    }
}

/// The verdict on one expectation: `{"what","status","detail"}` in report.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExpectationVerdict {
    /// What was expected, e.g. `/tenant-a/vdi-001 outcome`.
    pub what: String,
    /// Outcome (`skipped` is not used for expectations).
    pub status: Status,
    /// `expected X, got Y`.
    pub detail: String,
}

/// Everything the checkers found in one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// INV-1 … INV-12 in id order (INV-11 is added by the runner).
    pub invariants: Vec<InvariantVerdict>,
    /// One verdict per key of `[expect]`.
    pub expectations: Vec<ExpectationVerdict>,
    /// Time-to-contain and friends.
    pub measures: Measures,
}

/// The `what` of the verdict on `expect.violations`.
pub const VIOLATIONS_WHAT: &str = "violations";

/// Failed invariants and expectations as `INV-3: detail` / `what: detail` lines, invariants
/// first.
pub fn failure_lines(
    invariants: &[InvariantVerdict],
    expectations: &[ExpectationVerdict],
) -> Vec<String> {
    let invariants = invariants
        .iter()
        .filter(|v| v.status == Status::Failed)
        .map(|v| format!("{}: {}", v.id, v.detail));
    let expectations = expectations
        .iter()
        .filter(|v| v.status == Status::Failed)
        .map(|v| format!("{}: {}", v.what, v.detail));
    invariants.chain(expectations).collect()
}

impl CheckReport {
    /// [`failure_lines`] of this report.
    pub fn failures(&self) -> Vec<String> {
        failure_lines(&self.invariants, &self.expectations)
    }

    /// Ids of the invariants that failed, sorted.
    pub fn failed_invariants(&self) -> BTreeSet<&str> {
        self.invariants
            .iter()
            .filter(|v| v.status == Status::Failed)
            .map(|v| v.id.as_str())
            .collect()
    }

    /// Adds a verdict decided outside [`check_run`] (the runner's INV-11) and refreshes the
    /// `violations` expectation, which depends on every invariant.
    pub fn push_invariant(&mut self, verdict: InvariantVerdict, expect: &Expectations) {
        self.invariants.retain(|v| v.id != verdict.id);
        self.invariants.push(verdict);
        self.invariants.sort_by_key(|v| invariant_number(&v.id));
        self.expectations.retain(|e| e.what != VIOLATIONS_WHAT);
        if let Some(v) = expectations::violations_verdict(self, expect) {
            self.expectations.push(v);
        }
    }
}

/// One L-Server asked to be quarantined, for timelines: when the first request arrived, when
/// its devices had every NIC on quarantine, and when its records said `quarantined` (R9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainmentMark {
    /// L-Server path.
    pub lserver: String,
    /// Receipt of the first request.
    pub received_ms: u64,
    /// Last NIC contained, when that happened.
    pub contained_ms: Option<u64>,
    /// R9 confirmation, when that happened.
    pub confirmed_ms: Option<u64>,
}

/// The containment and confirmation moments of a run, by L-Server path (the measures' own).
pub fn containment_marks(site: &Site, run: &RunRecord) -> Vec<ContainmentMark> {
    let facts = facts::Facts::new(site, run);
    let containment = measures::containment_times(&facts);
    let confirmed = measures::quarantined_at(&facts, &containment);
    containment
        .iter()
        .map(|(l, c)| ContainmentMark {
            lserver: (*l).to_string(),
            received_ms: c.received_ms,
            contained_ms: c.contained_ms,
            confirmed_ms: confirmed.get(l).copied(),
        })
        .collect()
}

/// The number of an invariant id (`INV-12` → 12), for ordering; unknown ids go last.
fn invariant_number(id: &str) -> u32 {
    id.strip_prefix("INV-")
        .and_then(|n| n.parse().ok())
        .unwrap_or(u32::MAX)
}

/// Checks one run: INV-1 … INV-10 and INV-12, the expectations and the measures.
pub fn check_run(site: &Site, run: &RunRecord, expect: &Expectations) -> CheckReport {
    let facts = facts::Facts::new(site, run);
    // The invariants and the measures read the same facts and nothing else: a large run checks
    // them on two threads, which took a tenth off an outbreak of 100,000 L-Servers. A small
    // run (the library, an exploration's thousands of runs) stays on one: a thread costs more.
    let ((invariants, re_contain), (containment, mut measures)) =
        if run.history.len() >= PARALLEL_EVENTS {
            std::thread::scope(|scope| {
                let measured = scope.spawn(|| measure_all(&facts));
                let invariants = invariants(&facts);
                let measured = measured
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                (invariants, measured)
            })
        } else {
            (invariants(&facts), measure_all(&facts))
        };
    measures.time_to_re_contain_ms = Summary::of(&re_contain);
    let mut report = CheckReport {
        invariants,
        expectations: expectations::evaluate(&facts, &containment, &measures, expect),
        measures,
    };
    if let Some(v) = expectations::violations_verdict(&report, expect) {
        report.expectations.push(v);
    }
    report
}

/// History length from which [`check_run`] and the runner spread their work over two threads.
pub const PARALLEL_EVENTS: usize = 50_000;

/// INV-1 to INV-10 and INV-12, in id order, and the time-to-re-contain samples INV-12 found.
fn invariants(facts: &facts::Facts<'_>) -> (Vec<InvariantVerdict>, Vec<u64>) {
    let (recontainment, re_contain) = inv_recontain::recontainment(facts);
    let verdicts = vec![
        inv_state::containment(facts),
        inv_state::no_reexposure(facts),
        inv_state::rollback(facts),
        inv_state::agreement(facts),
        inv_writes::no_collateral(facts),
        inv_writes::idempotence(facts),
        inv_journal::durability(facts),
        inv_addresses::addresses(facts),
        inv_journal::alerting(facts),
        inv_journal::liveness(facts),
        recontainment,
    ];
    (verdicts, re_contain)
}

/// The containment times and the measures built on them.
fn measure_all<'a>(
    facts: &facts::Facts<'a>,
) -> (BTreeMap<&'a str, measures::Containment>, Measures) {
    let containment = measures::containment_times(facts);
    let measures = measures::measure(facts, &containment);
    (containment, measures)
}

/// Whether the scenario passed. With no `expect.violations`: every invariant and expectation
/// passed (skipped counts as passed). With `expect.violations`: the failed invariant ids are
/// exactly that set and every other expectation passed — a scenario that demonstrates a
/// violation must show that one and no other.
pub fn verdict(report: &CheckReport, expect: &Expectations) -> bool {
    let expectations_ok = report
        .expectations
        .iter()
        .filter(|e| e.what != VIOLATIONS_WHAT)
        .all(|e| e.status != Status::Failed);
    let failed = report.failed_invariants();
    let wanted: BTreeSet<&str> = expect.violations.iter().map(String::as_str).collect();
    expectations_ok && failed == wanted
}

/// INV-11: the same scenario, mode `sim` and seed give a byte-identical history. `second` is
/// `None` when no second run was made (wire mode, or determinism checking turned off).
pub fn determinism_verdict(first_digest: &str, second_digest: Option<&str>) -> InvariantVerdict {
    const ID: &str = "INV-11";
    match second_digest {
        None => InvariantVerdict::new(
            ID,
            Status::Skipped,
            "no second run to compare (determinism is checked in mode sim)",
        ),
        Some(second) if second == first_digest => InvariantVerdict::new(
            ID,
            Status::Passed,
            format!("a second run reproduced history {first_digest}"),
        ),
        Some(second) => InvariantVerdict::new(
            ID,
            Status::Failed,
            format!("first run gave history {first_digest}, second run {second}"),
        ),
    }
}

/// The digest of a history: `sha256:` and the hex SHA-256 of its events, one JSON line each.
/// Offered so every caller digests histories the same way (INV-11, report `history_digest`).
pub fn history_digest(history: &[HistoryEvent]) -> String {
    // Each event's JSON goes straight into the hash, with no buffer per event: the digest of
    // a 100,000-L-Server outbreak serializes millions of events.
    struct Hashing(Sha256);
    impl std::io::Write for Hashing {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.update(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut hashing = Hashing(Sha256::new());
    for event in history {
        // Serializing plain data with string keys cannot fail, and writing into the hash
        // cannot either.
        let _ = serde_json::to_writer(&mut hashing, event);
        hashing.0.update(b"\n");
    }
    let hasher = hashing.0;
    let digest = hasher.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}
