//! quarantine-lab: a quarantine engine that moves infected L-Servers to quarantine networks and
//! rolls back by fixed rules, and the simulation lab that proves it keeps those rules.
//!
//! See `ARCHITECTURE.md` at the repository root for the modules and the arrows between them.

/// The commit the binary was built from (`build.rs`), or `unknown` outside a git checkout;
/// run reports and certification bundles both name it.
pub const BUILD_COMMIT: &str = match option_env!("QLAB_BUILD_COMMIT") {
    Some(sha) => sha,
    None => "unknown",
};

pub mod adapters;
pub mod bench;
pub mod certify;
pub mod check;
pub mod cli;
pub mod daemon;
pub mod engine;
pub mod explore;
pub mod gate;
pub mod ingest;
pub mod model;
pub mod report;
pub mod scenario;
pub mod schema;
pub mod sim;
