//! Policy reload without a restart, as the modelled product re-reads its policy file: on
//! SIGHUP or `POST /api/v1/policy/reload` (scope `operate`).
//!
//! "The policy" is the topology's `[policy]` table: `default_action`, `excluded_threat_keywords`
//! and `[policy.actions]` (path or folder -> action). A reload reads the topology file again
//! and validates all of it exactly as a start would (file, line and key in any error); on any
//! error the running policy stays and the error is returned (API) and logged (SIGHUP). On
//! success the new `[policy]` replaces the old one at once: detections decided after it use
//! it, operations already queued keep the kind they were queued with.
//!
//! Everything else in the file (networks, quarantine map, AV servers, devices, L-Servers, the
//! `[engine]` timings) shapes structures the engine builds when it opens (device queues,
//! lookup indexes, IP allocations), so changes there take effect only after a restart. A
//! reload whose file differs from the running topology outside `[policy]` still applies the
//! policy and names the sections that wait for a restart (`restart_needed`; a WARN in the log).
//! Reloads are serialised: a SIGHUP during an API reload waits for it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

use crate::engine::Engine;
use crate::model::{load_site, PolicySpec, Topology};

/// The outcome of a successful reload.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ReloadReport {
    /// The policy now in force.
    pub policy: PolicySpec,
    /// Whether it differs from the one before.
    pub changed: bool,
    /// Top-level sections of the topology file that differ from the running topology and
    /// take effect only after a restart.
    pub restart_needed: Vec<String>,
}

/// Re-reads the topology file's `[policy]` into the running engine.
pub struct PolicyReloader {
    topology: PathBuf,
    engine: Arc<Engine>,
    serial: tokio::sync::Mutex<()>,
    ok: AtomicU64,
    failed: AtomicU64,
}

impl PolicyReloader {
    /// A reloader of `topology` (the config's file) into `engine`.
    pub fn new(topology: PathBuf, engine: Arc<Engine>) -> PolicyReloader {
        PolicyReloader {
            topology,
            engine,
            serial: tokio::sync::Mutex::new(()),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// Reloads; `why` (`sighup`, `api`) goes to the log. The error names file, line and key.
    pub async fn reload(&self, why: &str) -> Result<ReloadReport, String> {
        let _one_at_a_time = self.serial.lock().await;
        let path = self.topology.clone();
        let loaded = tokio::task::spawn_blocking(move || load_site(&path))
            .await
            .map_err(|e| format!("the reload task failed: {e}"))
            .and_then(|r| r.map_err(|e| e.to_string()));
        let site = match loaded {
            Ok(site) => site,
            Err(error) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(trigger = why, %error, "policy reload failed; the running policy stays");
                return Err(error);
            }
        };
        let running = self.engine.site();
        let restart_needed = differing_sections(&running.topology, &site.topology);
        let policy = site.topology.policy.clone();
        let changed = *self.engine.policy() != policy;
        self.engine.set_policy(policy.clone());
        self.ok.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            trigger = why,
            changed,
            file = %self.topology.display(),
            "policy reloaded"
        );
        if !restart_needed.is_empty() {
            tracing::warn!(
                sections = %restart_needed.join(", "),
                "the topology file changed outside [policy]; those changes take effect after a restart"
            );
        }
        Ok(ReloadReport {
            policy,
            changed,
            restart_needed,
        })
    }

    /// Reloads by result: `[("ok", n), ("error", n)]`.
    pub fn counts(&self) -> [(&'static str, u64); 2] {
        [
            ("ok", self.ok.load(Ordering::Relaxed)),
            ("error", self.failed.load(Ordering::Relaxed)),
        ]
    }
}

/// Top-level keys whose values differ between `running` and `loaded`, `policy` left out.
fn differing_sections(running: &Topology, loaded: &Topology) -> Vec<String> {
    let as_map = |t: &Topology| match serde_json::to_value(t) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (a, b) = (as_map(running), as_map(loaded));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| k.as_str() != "policy" && a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

/// SIGHUP, taken over when the daemon starts and before it prints its ready line: a SIGHUP
/// that came before the handler existed would end the process (the signal's default action).
pub struct Hangup {
    #[cfg(unix)]
    signal: std::io::Result<tokio::signal::unix::Signal>,
}

impl Hangup {
    /// Takes SIGHUP over from now on (Unix; elsewhere it does nothing). Needs a tokio runtime.
    pub fn register() -> Hangup {
        Hangup {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()),
        }
    }
}

/// Reloads on every SIGHUP until `stop` is set (Unix; elsewhere it does nothing).
pub async fn reload_on_sighup(
    reloader: Arc<PolicyReloader>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    hangup: Hangup,
) -> Result<(), String> {
    #[cfg(unix)]
    {
        let mut hangup = hangup
            .signal
            .map_err(|e| format!("cannot watch SIGHUP for policy reloads: {e}"))?;
        loop {
            tokio::select! {
                received = hangup.recv() => {
                    if received.is_none() {
                        return Ok(());
                    }
                    // Errors are logged by `reload`; the daemon keeps running on the old policy.
                    let _ = reloader.reload("sighup").await;
                }
                _ = stop.changed() => return Ok(()),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (reloader, hangup, stop.changed().await);
        Ok(())
    }
}
