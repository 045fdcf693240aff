//! The engine's costs, from the cheapest path to a whole quarantine:
//!
//! - `engine/decision_ignored_detection`: `Engine::submit_detection` of a spyware detection
//!   with a fresh event id on an in-memory journal. The engine checks the input, resolves the
//!   L-Server by IP (R3), looks the event id up (R4), applies the category rule (R1) and
//!   commits one step to SQLite in memory (no fsync, no file). No operation is queued and no
//!   device is called: this is the closest the engine has to "detection to decision, no I/O".
//!   (Planning happens later, in the lane worker, right before the first device call; it is
//!   not separable without devices, so it is part of the full quarantine below.)
//! - `journal/commit_operation`: `Journal::commit` of one one-NIC quarantine's whole step list
//!   (13 entries) as one transaction, on a file in `TMPDIR` with `synchronous = FULL`: the cost
//!   of one durable operation when it gets one fsync.
//! - `journal/commit_step`: one small step (a device call's outcome) as its own commit: the cost
//!   of one fsync, which group commit shares among the operations in flight.
//! - `sim/quarantine_bench_10`: `run_sim` of the 10-L-Server bench scenario with zero device
//!   latency: runtime, engine (in-memory journal, as the lab keeps it), simulated devices,
//!   history, checkers.
//!
//! `cargo bench --bench engine`. fsync cost depends on the file system behind `TMPDIR`.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use quarantine_lab::adapters::Adapters;
use quarantine_lab::bench::workload;
use quarantine_lab::engine::journal::Entry;
use quarantine_lab::engine::{Engine, EngineOptions, Journal};
use quarantine_lab::scenario::load::{load_scenario, Scenario};
use quarantine_lab::scenario::runner::run_sim;

fn bench_scenario() -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(workload::BENCH_SCENARIO);
    load_scenario(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn decision(c: &mut Criterion) {
    let scenario = bench_scenario();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let journal = Journal::open_in_memory().expect("journal");
    // No adapters: an ignored detection never reaches a device, and if one did the bench
    // would fail loudly instead of measuring something else.
    let engine = runtime
        .block_on(async {
            Engine::open(
                Arc::clone(&scenario.site),
                journal,
                Adapters::default(),
                EngineOptions::default(),
            )
        })
        .expect("engine");
    let ip: IpAddr = "10.110.0.11".parse().expect("ip");
    let mut n = 0;
    c.bench_function("engine/decision_ignored_detection", |b| {
        b.iter(|| {
            n += 1;
            runtime
                .block_on(engine.submit_detection(workload::ignored_detection(n, ip)))
                .expect("submit")
        })
    });
}

fn journal(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let mut journal = Journal::open(&dir.path().join("journal.sqlite")).expect("journal");
    let mut group = c.benchmark_group("journal");
    let mut n = 0;
    group.bench_function("commit_operation", |b| {
        b.iter(|| {
            n += 1;
            journal
                .commit(&workload::quarantine_entries(n))
                .expect("commit")
        })
    });
    // The write of the operations committed above, again and again: device_calls rows are
    // append-only, so the step never collides.
    let step: Vec<Entry> = workload::quarantine_steps(1).swap_remove(3);
    group.bench_function("commit_step", |b| {
        b.iter(|| journal.commit(&step).expect("commit"))
    });
    group.finish();
}

fn sim(c: &mut Criterion) {
    let scenario = bench_scenario();
    let mut group = c.benchmark_group("sim");
    // Milliseconds per run: flat sampling runs the same few iterations per sample instead of
    // criterion's growing series, which would take minutes.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.bench_function("quarantine_bench_10", |b| {
        b.iter(|| run_sim(&scenario, scenario.seed, None).expect("run"))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = decision, journal, sim
}
criterion_main!(benches);
