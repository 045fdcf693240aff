//! Expectations of a scenario (`[expect]` in `docs/formats/scenario.md`) as data.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::duration;

/// `[expect]`.
///
/// `outcomes` and `makespan_ratio_max` are the lab's extensions to the scenario format (aggregate
/// expectations for large outbreaks; `scenarios/README.md`, "Format extensions"). Not `Eq`:
/// the ratio is a float.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    /// Per L-Server expectations by path.
    #[serde(default)]
    pub lservers: BTreeMap<String, LServerExpect>,
    /// Alerts that must appear.
    #[serde(default)]
    pub alerts: Vec<AlertExpect>,
    /// Most time-to-contain of any contained L-Server.
    #[serde(default, with = "duration::OptionalText")]
    pub time_to_contain_max: Option<Duration>,
    /// Most device writes for any one L-Server.
    #[serde(default)]
    pub device_writes_max: Option<u32>,
    /// How many L-Servers of the site end with each outcome (the outcome of
    /// `expect.lservers.<path>.outcome`): `{ quarantined = 10000 }`. Exact counts; outcomes not
    /// listed are not counted.
    #[serde(default)]
    pub outcomes: BTreeMap<String, u64>,
    /// Most `makespan_ms / lower_bound_ms` and `confirmed_makespan_ms /
    /// confirmed_lower_bound_ms` may be (`docs/measures.md`): fails when a makespan is
    /// more than this many times its bound.
    #[serde(default)]
    pub makespan_ratio_max: Option<f64>,
    /// Invariants this scenario is meant to violate (exactly these), e.g. `["INV-3"]`.
    #[serde(default)]
    pub violations: Vec<String>,
}

/// `[expect.lservers."<path>"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LServerExpect {
    /// Outcome of the last operation (`untouched` when there was none).
    #[serde(default)]
    pub outcome: Option<String>,
    /// Device truth per NIC, in NIC order.
    #[serde(default)]
    pub device_networks: Option<Vec<String>>,
    /// Management record per NIC.
    #[serde(default)]
    pub managed_networks: Option<Vec<String>>,
    /// Console status (`normal` or `unknown`).
    #[serde(default)]
    pub status: Option<String>,
    /// Most device writes for this L-Server.
    #[serde(default)]
    pub device_writes_max: Option<u32>,
}

/// `[[expect.alerts]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertExpect {
    /// Alert code.
    pub code: String,
    /// L-Server it names.
    #[serde(default)]
    pub lserver: Option<String>,
    /// How many (default 1).
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}
