//! The journal figure of issue 5 with group commit: durable operations per second of the real
//! engine, journal opened with production durability (`synchronous = FULL`, an fsync per
//! commit), quarantining the wire bench site's L-Servers all at once against in-process
//! simulated devices that answer in zero time. What is timed is therefore the engine and its
//! journal: how many operations one fsync carries decides the figure.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;

use super::wire::{CommitCounter, WireWorkload};
use crate::engine::{Disposition, Engine, EngineOptions, Journal, LServerState};
use crate::sim::{Recorder, SimWorld};

/// What the timed rounds did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupCommit {
    /// Operations that ended quarantined.
    pub operations: u64,
    /// Journal commits (fsyncs) they took.
    pub commits: u64,
    /// Timed wall time.
    pub elapsed: Duration,
}

impl GroupCommit {
    /// Durable operations per second.
    pub fn per_sec(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// Operations one commit carried, on average.
    pub fn operations_per_commit(&self) -> f64 {
        self.operations as f64 / self.commits.max(1) as f64
    }
}

/// Runs rounds (each: fresh simulated devices, a fresh journal file in `TMPDIR`, every detection
/// submitted at once, until the engine is idle) for `budget`, at least one.
pub async fn measure(workload: &WireWorkload, budget: Duration) -> Result<GroupCommit, String> {
    let mut total = GroupCommit {
        operations: 0,
        commits: 0,
        elapsed: Duration::ZERO,
    };
    while total.elapsed < budget || total.operations == 0 {
        let round = round(workload).await?;
        total.operations += round.operations;
        total.commits += round.commits;
        total.elapsed += round.elapsed;
    }
    Ok(total)
}

async fn round(workload: &WireWorkload) -> Result<GroupCommit, String> {
    let site = workload.site.clone();
    let world = SimWorld::new(site.clone(), Vec::new(), Recorder::new(), 0);
    let dir = tempfile::tempdir()
        .map_err(|e| format!("cannot create a temporary folder for the journal: {e}"))?;
    let journal = Journal::open(&dir.path().join("journal.sqlite"))
        .map_err(|e| format!("cannot open the journal: {e}"))?;
    let commits = Arc::new(CommitCounter::default());
    let options = EngineOptions {
        observer: Some(commits.clone()),
        ..EngineOptions::default()
    };
    let engine = Arc::new(
        Engine::open(site, journal, world.adapters(), options)
            .map_err(|e| format!("cannot open the engine: {e}"))?,
    );
    let before = commits.0.load(Ordering::Relaxed);
    let start = Instant::now();
    let tasks: Vec<_> = workload
        .detections
        .iter()
        .cloned()
        .map(|d| {
            let engine = engine.clone();
            tokio::spawn(async move { engine.submit_detection(d).await })
        })
        .collect();
    let receipts = join_all(tasks).await;
    engine.wait_idle().await;
    let elapsed = start.elapsed();
    let commits = commits.0.load(Ordering::Relaxed) - before;
    for receipt in receipts {
        let receipt = receipt
            .map_err(|e| format!("detection task failed: {e}"))?
            .map_err(|e| format!("detection refused: {e}"))?;
        if receipt.disposition != Disposition::Accepted {
            return Err(format!("detection not accepted: {receipt:?}"));
        }
    }
    let views = engine.lservers();
    if let Some(ls) = views.iter().find(|v| v.state != LServerState::Quarantined) {
        return Err(format!("{} is {:?} after the round", ls.path, ls.state));
    }
    Ok(GroupCommit {
        operations: views.len() as u64,
        commits,
        elapsed,
    })
}
