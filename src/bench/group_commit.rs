//! The journal figure with group commit: durable operations per second of the real
//! engine, journal opened with production durability (`synchronous = FULL`, an fsync per
//! commit), quarantining the wire bench site's L-Servers all at once against in-process
//! simulated devices that answer in zero time. What is timed is therefore the engine and its
//! journal: how many operations one fsync carries decides the figure.

use std::time::Duration;

use super::wire::{open_engine, quarantine_all, WireWorkload};
use crate::engine::journal::Durability;
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
    let world = SimWorld::new(workload.site.clone(), Vec::new(), Recorder::new(), 0);
    let (engine, _dir) = open_engine(workload, world.adapters(), Durability::PowerLoss)?;
    let round = quarantine_all(&engine, workload).await?;
    Ok(GroupCommit {
        operations: workload.detections.len() as u64,
        commits: round.commits,
        elapsed: round.elapsed,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use super::measure;
    use crate::bench::wire::WireWorkload;
    use crate::bench::workload::WIRE_TOPOLOGY;

    /// R7: the figure counts the engine's own commits (the engine runs without an observer, as
    /// the daemon does): a round of 100 operations takes at least one commit, and group commit
    /// gathers their steps (four or more each: detection, plan, write, closing), so at most one
    /// commit per four operations (`qlab bench` shows about one per sixteen).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn r7_the_group_commit_figure_counts_the_engines_commits() {
        let site = crate::model::load_site(Path::new(WIRE_TOPOLOGY)).expect("the wire site loads");
        let workload = WireWorkload::new(Arc::new(site)).expect("the wire workload builds");
        let figure = measure(&workload, Duration::ZERO)
            .await
            .expect("one round runs");
        assert_eq!(figure.operations, 100);
        assert!(
            (1..=figure.operations / 4).contains(&figure.commits),
            "{} commits for {} operations",
            figure.commits,
            figure.operations
        );
    }
}
