//! The timed loops behind `qlab bench`. Each runs the real code path for a wall-clock budget
//! and counts what it got done; none of them changes what it measures.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::workload;
use crate::check::Status;
use crate::engine::{Journal, JournalError};
use crate::ingest::{self, IngestError};
use crate::model::history::EventKind;
use crate::model::AvKind;
use crate::scenario::library::{self, ScenarioResult, Selection};
use crate::scenario::load::{Mode, Scenario};
use crate::scenario::runner::run_sim;

/// How many times something was done in how much wall time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Times done.
    pub count: u64,
    /// Wall time they took.
    pub elapsed: Duration,
}

impl Rate {
    /// Times per second (0 when nothing was timed).
    pub fn per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.count as f64 / secs
        } else {
            0.0
        }
    }
}

/// Calls `f` until `budget` has passed and counts the calls. The clock is read once per `batch`
/// calls so that reading it does not weigh on sub-microsecond work such as parsing one line;
/// at least one batch always runs, so every rate is positive.
pub fn repeat_for<E>(
    budget: Duration,
    batch: u64,
    mut f: impl FnMut() -> Result<(), E>,
) -> Result<Rate, E> {
    let batch = batch.max(1);
    let start = Instant::now();
    let mut count = 0;
    loop {
        for _ in 0..batch {
            f()?;
        }
        count += batch;
        let elapsed = start.elapsed();
        if elapsed >= budget {
            return Ok(Rate { count, elapsed });
        }
    }
}

/// Sim-mode throughput of one scenario on this thread, and what one run commits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimThroughput {
    /// Complete `run_sim` calls (runtime, engine, simulator, checkers).
    pub runs: Rate,
    /// Journal commits in one run: each is an fsync, which is what a run mostly waits for.
    pub commits_per_run: u64,
    /// Operations that finished in one run.
    pub operations_per_run: u64,
}

/// Runs `scenario` in sim mode with its own seed again and again for `budget`. The first run
/// must pass: a throughput of runs that do not do what the scenario expects means nothing.
pub fn sim_throughput(scenario: &Scenario, budget: Duration) -> Result<SimThroughput, String> {
    let first = run_sim(scenario, scenario.seed, None)?;
    if !first.passed {
        let check = &first.check;
        let failed: Vec<String> = check
            .failed_invariants()
            .into_iter()
            .map(str::to_string)
            .chain(
                check
                    .expectations
                    .iter()
                    .filter(|e| e.status == Status::Failed)
                    .map(|e| format!("{}: {}", e.what, e.detail)),
            )
            .collect();
        return Err(format!(
            "{}: the bench scenario does not pass ({}), so its throughput would mean nothing",
            scenario.file.display(),
            failed.join("; ")
        ));
    }
    let count = |pick: fn(&EventKind) -> bool| {
        first
            .record
            .history
            .iter()
            .filter(|e| pick(&e.kind))
            .count() as u64
    };
    let commits_per_run = count(|k| matches!(k, EventKind::Commit { .. }));
    let operations_per_run = count(|k| matches!(k, EventKind::OperationFinished { .. }));
    let runs = repeat_for(budget, 1, || {
        run_sim(scenario, scenario.seed, None).map(|run| {
            std::hint::black_box(run);
        })
    })?;
    Ok(SimThroughput {
        runs,
        commits_per_run,
        operations_per_run,
    })
}

/// One timed sim run of an outbreak scenario.
pub struct OutbreakRun {
    /// The run, checked.
    pub run: crate::scenario::runner::ScenarioRun,
    /// Its wall time, runtime to checker verdict.
    pub elapsed: Duration,
}

/// Runs `scenario` once in sim mode with its own seed, timed.
pub fn outbreak(scenario: &Scenario) -> Result<OutbreakRun, String> {
    let start = std::time::Instant::now();
    let run = run_sim(scenario, scenario.seed, None)?;
    Ok(OutbreakRun {
        run,
        elapsed: start.elapsed(),
    })
}

/// Durable operations per second when each operation's whole step list
/// ([`workload::quarantine_entries`]) is one commit: one fsync per operation, on a fresh
/// journal in a temporary folder (`TMPDIR`, where the runner keeps its journals too).
pub fn journal_operations(budget: Duration) -> Result<Rate, JournalError> {
    with_temp_journal(|journal| {
        let mut n = 0;
        repeat_for(budget, 1, || {
            n += 1;
            journal.commit(&workload::quarantine_entries(n))
        })
    })
}

/// Journal commits per second when every step of an operation ([`workload::quarantine_steps`])
/// is its own commit: what the engine would cost without group commit. Counts commits; divide
/// by the steps per operation for operations.
pub fn journal_steps(budget: Duration) -> Result<Rate, JournalError> {
    with_temp_journal(|journal| {
        let mut n = 0;
        let mut pending: Vec<Vec<crate::engine::journal::Entry>> = Vec::new();
        repeat_for(budget, 1, || {
            if pending.is_empty() {
                n += 1;
                pending = workload::quarantine_steps(n);
                pending.reverse();
            }
            let step = pending.pop().unwrap_or_default();
            journal.commit(&step)
        })
    })
}

fn with_temp_journal(
    f: impl FnOnce(&mut Journal) -> Result<Rate, JournalError>,
) -> Result<Rate, JournalError> {
    let dir = tempfile::tempdir()
        .map_err(|e| JournalError::Corrupt(format!("cannot create a temporary folder: {e}")))?;
    let mut journal = Journal::open(&dir.path().join("journal.sqlite"))?;
    f(&mut journal)
}

/// CEF syslog lines parsed per second on this thread: the full path the daemon runs for one
/// pushed line (size check, UTF-8, syslog header, CEF, detection check).
pub fn cef_lines(budget: Duration) -> Result<Rate, IngestError> {
    let line = workload::CEF_LINE.as_bytes();
    repeat_for(budget, 1024, || {
        ingest::parse_detection(AvKind::Officescan, "osce", std::hint::black_box(line)).map(|d| {
            std::hint::black_box(d);
        })
    })
}

/// One sim-mode pass over a library.
#[derive(Debug, Clone)]
pub struct LibraryRun {
    /// Wall time of `run_selected`, loading excluded.
    pub elapsed: Duration,
    /// One result per scenario, in library order.
    pub results: Vec<ScenarioResult>,
}

/// The sim-mode selection of every scenario under `path`, on `jobs` threads.
pub fn library_selection(path: PathBuf, jobs: usize) -> Selection {
    Selection {
        paths: vec![path],
        tags: Vec::new(),
        name: None,
        shard: None,
        seed: None,
        check_determinism: false,
        jobs,
        mutant: None,
        modes: vec![Mode::Sim],
        time_scale: 0.05,
    }
}

/// Runs `scenarios` (already loaded with [`library::select`]) once in sim mode on one thread.
pub fn library_pass(scenarios: &[Scenario], selection: &Selection) -> LibraryRun {
    let start = Instant::now();
    let results = library::run_selected(scenarios, selection, &|_| {});
    LibraryRun {
        elapsed: start.elapsed(),
        results,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_for_runs_at_least_one_batch_and_stops_on_error() {
        let rate = repeat_for(Duration::ZERO, 8, || Ok::<(), ()>(())).unwrap();
        assert_eq!(rate.count, 8);
        let mut left = 3;
        let err = repeat_for(Duration::from_secs(60), 1, || {
            left -= 1;
            if left == 0 {
                Err("stop")
            } else {
                Ok(())
            }
        });
        assert_eq!(err, Err("stop"));
    }

    #[test]
    fn rates_are_per_second() {
        let rate = Rate {
            count: 10,
            elapsed: Duration::from_millis(500),
        };
        assert_eq!(rate.per_sec(), 20.0);
    }
}
