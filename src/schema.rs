//! JSON Schemas of the files people write (topology, scenario) and the report scripts read
//! (report.json), generated from the Rust types that parse or write them, so the schemas cannot
//! drift from the code. They are committed under `schemas/` for editors (taplo, VS Code's Even
//! Better TOML) and tools; `tests/schemas.rs` fails when a committed file is out of date and
//! rewrites them when `QLAB_UPDATE_SCHEMAS=1` is set.
//!
//! Draft-07, the newest draft every TOML editor's validator understands. The schemas check
//! shape (keys, types, spellings); rules across keys (a name defined elsewhere, a duration of at
//! most 7 days, an effect that applies to its call) stay with the loaders, whose errors name the
//! file, line and key.

use schemars::generate::{Contract, SchemaSettings};
use schemars::JsonSchema;
use serde_json::Value;

use crate::model::topology::Topology;
use crate::scenario::file::ScenarioFile;

/// File name under `schemas/` and the schema itself, for every schema the project publishes.
pub fn all() -> Vec<(&'static str, Value)> {
    vec![
        ("topology.schema.json", topology()),
        ("scenario.schema.json", scenario()),
        ("report.schema.json", report()),
        ("product.schema.json", product()),
    ]
}

/// A topology file (`docs/formats/topology.md`).
pub fn topology() -> Value {
    input::<Topology>()
}

/// A scenario file (`docs/formats/scenario.md`).
pub fn scenario() -> Value {
    input::<ScenarioFile>()
}

/// report.json (`docs/formats/reports.md`), as `qlab run` writes it.
pub fn report() -> Value {
    crate::report::json_schema(settings(Contract::Serialize))
}

/// A `PRODUCT.toml` of `qlab certify` (`docs/certification.md`).
pub fn product() -> Value {
    input::<crate::certify::product::Product>()
}

/// The schema of a file the lab reads: what deserializes.
fn input<T: JsonSchema>() -> Value {
    settings(Contract::Deserialize)
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

fn settings(contract: Contract) -> SchemaSettings {
    SchemaSettings::draft07().with(|s| s.contract = contract)
}
