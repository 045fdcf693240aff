//! Scenario loading and validation, discovery of scenario files, and the runner.

pub mod crash_sweep;
pub mod file;
pub mod library;
pub mod load;
mod mutants;
pub mod outbreak;
pub mod player;
pub mod runner;
pub mod serve;
pub mod wire;
