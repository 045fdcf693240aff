//! What the engine shows: L-Servers and their records, operations, alerts, the journal's
//! snapshot, the policy in force, counters (`GET /lservers`, `/operations`, `/alerts`,
//! `/metrics`).

use std::sync::Arc;

use super::state::LsState;
use super::{journal, stats, Alert, Engine, EngineError, LServerView, OperationId, OperationView};
use crate::model::{PolicySpec, Site};

impl Engine {
    /// The engine's counters and histograms with the queue depths of this moment
    /// (monitoring: `GET /metrics`).
    pub fn stats(&self) -> stats::StatsSnapshot {
        let mut queues = stats::QueueDepths::default();
        {
            let state = self.shared.lock();
            for ls in state.lservers.values() {
                queues.operations_queued += ls.lane.len();
                queues.operations_running += usize::from(ls.running.is_some());
            }
            queues.journal_pending_entries = state.pending.len();
        }
        for (name, queue) in &self.shared.devices {
            queues.devices.insert(name.clone(), queue.depth());
        }
        self.shared.stats.snapshot(queues)
    }

    /// The policy in force (the topology's, or the last one [`Engine::set_policy`] set).
    pub fn policy(&self) -> Arc<PolicySpec> {
        self.shared
            .policy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The site the engine manages.
    pub fn site(&self) -> &Arc<Site> {
        &self.shared.site
    }

    /// One L-Server's records and state.
    pub fn lserver(&self, path: &str) -> Option<LServerView> {
        let state = self.shared.lock();
        state.lservers.get(path).map(|ls| view(path, ls))
    }

    /// Every L-Server in topology order.
    pub fn lservers(&self) -> Vec<LServerView> {
        let state = self.shared.lock();
        self.shared
            .site
            .lservers
            .iter()
            .filter_map(|l| state.lservers.get(&l.path).map(|ls| view(&l.path, ls)))
            .collect()
    }

    /// One operation from the journal.
    pub fn operation(&self, id: OperationId) -> Result<Option<OperationView>, EngineError> {
        Ok(self.shared.journal().operation(id)?)
    }

    /// Every operation from the journal, in id order.
    pub fn operations(&self) -> Result<Vec<OperationView>, EngineError> {
        Ok(self.shared.journal().operations()?)
    }

    /// Alerts after sequence number `since`, at most `limit`.
    pub fn alerts_since(&self, since: i64, limit: usize) -> Result<Vec<Alert>, EngineError> {
        Ok(self.shared.journal().alerts_since(since, limit)?)
    }

    /// What the journal holds (committed steps only), read through the engine's own connection.
    pub fn journal_snapshot(&self) -> Result<journal::Snapshot, EngineError> {
        Ok(self.shared.journal().snapshot()?)
    }
}

fn view(path: &str, ls: &LsState) -> LServerView {
    LServerView {
        path: path.to_string(),
        state: ls.state,
        status: ls.status.clone(),
        outcome: ls.outcome,
        pending_operations: ls.pending(),
        nics: ls.records.clone(),
        // Verified: the latest read showed the NIC where its record says.
        last_verified_ms: ls
            .records
            .iter()
            .map(|r| match ls.last_read.get(r.index) {
                Some(Some((at, Some(network)))) if *network == r.network => Some(*at),
                _ => None,
            })
            .collect(),
    }
}
