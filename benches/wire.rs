//! Wire mode with zero device latency: the engine's time per switchover against a bare
//! HTTP client making the same calls to the same simulator. One group, `wire`, one element per
//! switchover (criterion prints time per round and switchovers per second):
//!
//! - `wire/engine`: the real engine with the real vCenter client and a journal file in `TMPDIR`
//!   with production durability (fsync on), every L-Server of the wire bench site
//!   (`benches/fixtures/topologies/wire-100.toml`) detected at once, until the engine is idle;
//! - `wire/engine_no_fsync`: the same with the journal opened without fsync (diagnostic: the
//!   engine's cost besides fsync);
//! - `wire/adapter`: the engine's vCenter client alone making those calls (`set_nic`, then
//!   `get_nic`) with the bare client's tasks and slots (diagnostic: what the adapter costs);
//! - `wire/bare_client`: a reqwest client from the adapters' own builder making the same PATCH
//!   and verifying GET per NIC, with as many calls in flight as the engine may make.
//!
//! Every iteration is one round on fresh simulators (and, for the engine, a fresh journal);
//! only the switchovers are timed (`iter_custom`). `qlab bench` prints the same comparison as
//! one ratio. `cargo bench --bench wire`.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use quarantine_lab::bench::wire::{
    self, AdapterRound, BareRound, EngineRound, RoundResult, WireWorkload,
};
use quarantine_lab::bench::workload;
use quarantine_lab::engine::journal::Durability;
use quarantine_lab::model::load_site;

fn wire_bench(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(workload::WIRE_TOPOLOGY);
    let site = load_site(&path).unwrap_or_else(|e| panic!("{e}"));
    let workload = WireWorkload::new(Arc::new(site)).unwrap_or_else(|e| panic!("{e}"));
    let runtime = wire::runtime().expect("runtime");
    let mut group = c.benchmark_group("wire");
    // A round takes from tens of milliseconds to seconds: flat sampling, ten samples.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.throughput(Throughput::Elements(workload.switchovers() as u64));
    for (name, durability) in [
        ("engine", Durability::PowerLoss),
        ("engine_no_fsync", Durability::ProcessCrash),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|rounds| {
                timed(&runtime, rounds, || async {
                    let round = EngineRound::prepare(&workload, durability).await?;
                    round.run(&workload).await
                })
            })
        });
    }
    group.bench_function("adapter", |b| {
        b.iter_custom(|rounds| {
            timed(&runtime, rounds, || async {
                AdapterRound::prepare(&workload).await?.run(&workload).await
            })
        })
    });
    group.bench_function("bare_client", |b| {
        b.iter_custom(|rounds| {
            timed(&runtime, rounds, || async {
                BareRound::prepare(&workload).await?.run(&workload).await
            })
        })
    });
    group.finish();
}

/// The timed switchovers of `rounds` rounds, each prepared afresh by `round` (only the
/// switchovers count, not the preparation).
fn timed<F, Round>(runtime: &tokio::runtime::Runtime, rounds: u64, round: F) -> Duration
where
    F: Fn() -> Round,
    Round: Future<Output = Result<RoundResult, String>>,
{
    runtime.block_on(async {
        let mut total = Duration::ZERO;
        for _ in 0..rounds {
            total += round().await.unwrap_or_else(|e| panic!("{e}")).elapsed;
        }
        total
    })
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = wire_bench
}
criterion_main!(benches);
