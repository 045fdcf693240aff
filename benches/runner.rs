//! The sim-mode runner over the scenario library:
//!
//! - `runner/load_library`: `library::select` of `scenarios/`: reading, parsing and validating
//!   every scenario and its topology (`[generate]` expansion included);
//! - `runner/library_sim`: `library::run_selected` of every scenario in sim mode on as many
//!   threads as the machine has cores (what `qlab run` does by default): runtimes, engines,
//!   journals in `TMPDIR`, simulated devices, checkers. `qlab bench` times the same on one job.
//!
//! One library pass takes seconds, so this bench takes ten flat samples of one pass each and
//! no more; `cargo bench --bench runner` runs for about ten library passes.

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use quarantine_lab::bench::{measure, workload};
use quarantine_lab::scenario::library;

fn runner(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(workload::LIBRARY);
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let selection = measure::library_selection(path, jobs);
    let scenarios = library::select(&selection).unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("runner");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.bench_function("load_library", |b| {
        b.iter(|| library::select(&selection).expect("library"))
    });
    group.bench_function("library_sim", |b| {
        b.iter(|| measure::library_pass(&scenarios, &selection))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // The warm-up still runs one full pass; measurement time is a floor criterion stretches to
    // fit ten samples, so a small value means "ten passes".
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1));
    targets = runner
}
criterion_main!(benches);
