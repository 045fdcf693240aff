//! The BMC model (Redfish): it only counts `ForceRestart` resets (R13).

use std::time::Duration;

use crate::model::BmcSpec;

/// State of one simulated BMC.
#[derive(Debug, Clone)]
pub(crate) struct BmcModel {
    /// Simulated latency of one call.
    pub latency: Duration,
    /// Most extra latency a call draws from the run's seed.
    pub jitter: Duration,
    /// Resets performed.
    pub resets: u32,
}

impl BmcModel {
    /// The BMC `spec`, never reset yet.
    pub fn new(spec: &BmcSpec) -> BmcModel {
        BmcModel {
            latency: spec.latency.unwrap_or(Duration::ZERO),
            jitter: spec.jitter.unwrap_or(Duration::ZERO),
            resets: 0,
        }
    }

    /// `ComputerSystem.Reset` with `ForceRestart`.
    pub fn reset(&mut self) {
        self.resets = self.resets.saturating_add(1);
    }
}
