//! `qlab engine serve`: the engine as a daemon with its HTTP API, syslog listeners and pollers,
//! wired to the real adapters.

pub mod config;
