//! The runner's wire mode: the same scenario with the real engine behind the daemon's code path
//! (HTTP API, real device clients, SMTP and syslog out) talking over loopback to the protocol
//! simulators of the same device models. Real clock; every duration of the scenario and its
//! topology is multiplied by `time_scale`, and the history's times divided by it again, so the
//! checkers judge a wire run on the same scale as a sim run.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::load::Scenario;
use super::runner::{
    build_timeline, collect, command_names, drift_watch_until, schedule_restart, HistoryObserver,
    ScenarioRun, Step,
};
use crate::check;
use crate::daemon::client::ApiClient;
use crate::daemon::config::{EngineConfig, SyslogInConfig};
use crate::daemon::Daemon;
use crate::engine::Command;
use crate::model::history::{EventKind, FaultAccount, RunRecord};
use crate::model::{Detection, Site, Topology};
use crate::sim::faults::FaultSpec;
use crate::sim::wire::site::WireSite;
use crate::sim::{Recorder, SimWorld};

/// The API token of the in-process engine (loopback only, one run).
const LAB_TOKEN: &str = "qlab-wire-lab";

/// Smallest scaled call timeout: below this, loopback scheduling noise would decide outcomes.
const MIN_CALL_TIMEOUT: Duration = Duration::from_millis(50);

/// Runs `scenario` in wire mode. Errors are setup failures.
pub fn run_wire(scenario: &Scenario, seed: u64, time_scale: f64) -> Result<ScenarioRun, String> {
    if !(time_scale > 0.0 && time_scale <= 1.0) {
        return Err(format!("--time-scale {time_scale}: must be in (0, 1]"));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let played = runtime.block_on(play(scenario, seed, time_scale));
    runtime.shutdown_timeout(Duration::from_secs(1));
    let (record, faults) = played?;
    let history_digest = check::history_digest(&record.history);
    let check = check::check_run(&scenario.site, &record, &scenario.expect);
    let passed = check::verdict(&check, &scenario.expect);
    Ok(ScenarioRun {
        record,
        history_digest,
        check,
        passed,
        faults,
    })
}

/// The topology with every duration multiplied by `k`.
fn scaled_topology(topology: &Topology, k: f64) -> Topology {
    let scale = |d: Duration| d.mul_f64(k);
    let mut t = topology.clone();
    for h in &mut t.hypervisors {
        h.latency = h.latency.map(scale);
        h.jitter = h.jitter.map(scale);
    }
    for s in &mut t.switches {
        s.latency = s.latency.map(scale);
        s.jitter = s.jitter.map(scale);
    }
    for b in &mut t.bmcs {
        b.latency = b.latency.map(scale);
        b.jitter = b.jitter.map(scale);
    }
    for a in &mut t.av_servers {
        a.jitter = a.jitter.map(scale);
    }
    t.engine.call_timeout = scale(t.engine.call_timeout).max(MIN_CALL_TIMEOUT);
    t.engine.operation_deadline = scale(t.engine.operation_deadline).max(t.engine.call_timeout);
    t.engine.retry.backoff = scale(t.engine.retry.backoff);
    // The drift watch keeps its pace relative to the run: rounds scaled like every other
    // duration, and as many reads per scaled second as per second of the scenario.
    t.engine.watch_interval = scale(t.engine.watch_interval);
    t.engine.watch_calls_per_second = (f64::from(t.engine.watch_calls_per_second) / k)
        .ceil()
        .min(f64::from(u32::MAX)) as u32;
    t
}

async fn play(
    scenario: &Scenario,
    seed: u64,
    k: f64,
) -> Result<(RunRecord, Vec<FaultAccount>), String> {
    let scale = |d: Duration| d.mul_f64(k);
    let site = Arc::new(Site::new(scaled_topology(&scenario.site.topology, k))?);
    let faults: Vec<FaultSpec> = scenario
        .faults
        .iter()
        .map(|f| FaultSpec {
            from: f.from.map(scale),
            until: f.until.map(scale),
            delay: f.delay.map(scale),
            ..f.clone()
        })
        .collect();
    let recorder = Recorder::new();
    let origin = Instant::now();
    let world = SimWorld::new(site.clone(), faults, recorder.clone(), seed);
    let wire = WireSite::start_tls(world.clone())
        .await
        .map_err(|e| format!("cannot start the simulators: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a journal folder: {e}"))?;
    let ca_file = match wire.ca_pem() {
        Some(pem) => {
            let path = dir.path().join(super::serve::CA_FILE_NAME);
            std::fs::write(&path, pem).map_err(|e| format!("{}: {e}", path.display()))?;
            Some(path)
        }
        None => None,
    };
    let config = engine_config(&site, &wire, dir.path().join("journal.sqlite"), ca_file);
    let observer = Arc::new(HistoryObserver::new(recorder.clone()));
    let start = || {
        Daemon::start_with(
            site.clone(),
            config.clone(),
            LAB_TOKEN.to_string(),
            Some(observer.clone()),
        )
    };
    let call_timeout = site
        .topology
        .engine
        .call_timeout
        .max(Duration::from_secs(2));

    let mut timeline = build_timeline(scenario, &world, scale);
    let drift_until = drift_watch_until(&site, &timeline);
    // A restart starts the drift watch afresh: a drift gets its bound again from there.
    let mut last_restart: Option<Duration> = None;

    let mut daemon = Some(start().await.map_err(|e| e.to_string())?);
    let mut client = api_client(daemon.as_ref(), call_timeout)?;
    let mut held: Vec<Detection> = Vec::new();
    let mut index = 0;
    while index < timeline.len() {
        let at = timeline[index].0;
        tokio::time::sleep_until(origin + at).await;
        let step = std::mem::replace(&mut timeline[index].1, Step::Heal(String::new()));
        index += 1;
        match step {
            Step::Detect(d) => {
                recorder.record(EventKind::DetectionSent {
                    source: d.source.clone(),
                    event_id: d.event_id.clone(),
                    ip: d.ip,
                });
                match &client {
                    Some(c) => notify(c, &recorder, d).await,
                    None => {
                        recorder.record(EventKind::DetectionRefused {
                            source: d.source.clone(),
                            event_id: d.event_id.clone(),
                            reason: "engine down".into(),
                        });
                        held.push(d);
                    }
                }
            }
            Step::Command(c) => {
                let (action, lserver) = command_names(&c);
                let choice = match &c {
                    Command::Decide { choice, .. } => Some(choice.as_str()),
                    _ => None,
                };
                let (operation, refused) = match &client {
                    Some(api) => match api.command(&lserver, &action, choice).await {
                        Ok(reply) if reply.status == 202 => {
                            (reply.body.get("operation").and_then(|v| v.as_i64()), None)
                        }
                        Ok(reply) => (None, Some(format!("{}: {}", reply.status, reply.body))),
                        Err(e) => (None, Some(e.to_string())),
                    },
                    None => (None, Some("engine down".to_string())),
                };
                recorder.record(EventKind::CommandSubmitted {
                    action,
                    lserver,
                    operation,
                    refused,
                });
            }
            Step::Crash(restart_after) => {
                if let Some(d) = daemon.take() {
                    // Abrupt: tasks aborted mid-call, the journal is what survives.
                    drop(d);
                    client = None;
                    recorder.record(EventKind::Crash);
                    schedule_restart(&mut timeline, index, at + restart_after);
                }
            }
            Step::Restart => {
                last_restart = Some(at);
                let d = start().await.map_err(|e| e.to_string())?;
                recorder.record(EventKind::Restart);
                client = api_client(Some(&d), call_timeout)?;
                daemon = Some(d);
                if let Some(c) = &client {
                    for d in held.drain(..) {
                        notify(c, &recorder, d).await;
                    }
                }
            }
            Step::Heal(target) if target.is_empty() => {}
            Step::Heal(target) => world.heal(&target),
            Step::RebootSwitch(device, fault) => {
                world.reboot_switch_for_fault(&device, fault);
            }
            Step::ExternalChange(fault) => {
                world.external_change_for_fault(fault);
            }
            Step::FaultHit(fault, lserver) => world.count_fault_hit(fault, lserver.as_deref()),
        }
    }
    let engine_spec = site.topology.engine;
    let settle = scenario
        .settle
        .map(scale)
        .unwrap_or(engine_spec.operation_deadline + engine_spec.call_timeout);
    // On a real clock a loaded machine stretches every call a little: the cap gets a margin
    // (the run still ends as soon as the engine is idle).
    let settle = settle.mul_f64(1.5) + Duration::from_millis(500);
    if let Some(d) = &daemon {
        // As in sim mode: a drift gets INV-12's detection bound (with the same real-clock
        // margin) before the run waits for the engine to be idle.
        if let Some(until) = drift_until {
            let restarted = last_restart
                .map(|at| at + check::drift_detection_bound(&site))
                .unwrap_or_default();
            let until = until.max(restarted);
            tokio::time::sleep_until(origin + until.mul_f64(1.5) + Duration::from_millis(500))
                .await;
        }
        let _ = tokio::time::timeout(settle, d.engine().wait_idle()).await;
    }
    let journal_path = config.journal.clone();
    let mut record = collect(
        &site,
        &world,
        &recorder,
        daemon.as_ref().map(|d| &**d.engine()),
        &journal_path,
    )?;
    if let Some(d) = daemon.take() {
        d.shutdown().await;
    }
    for event in &mut record.history {
        event.at_ms = (event.at_ms as f64 / k).round() as u64;
    }
    // The same fault plan decided every call of the wire faces, so it accounts for them too.
    Ok((record, world.fault_accounting()))
}

/// The generated config of `qlab sim serve`, with the lab's token and no syslog listeners
/// (detections go through the API); the devices are reached over TLS, trusting `ca_file`.
fn engine_config(
    site: &Site,
    wire: &WireSite,
    journal: std::path::PathBuf,
    ca_file: Option<std::path::PathBuf>,
) -> EngineConfig {
    let mut config =
        super::serve::engine_config(site, wire, std::path::PathBuf::new(), journal, ca_file);
    config.token = LAB_TOKEN.into();
    config.syslog_in = SyslogInConfig {
        udp: None,
        tcp: None,
        ..SyslogInConfig::default()
    };
    config
}

fn api_client(daemon: Option<&Daemon>, timeout: Duration) -> Result<Option<ApiClient>, String> {
    daemon
        .map(|d| ApiClient::new(d.api_url(), LAB_TOKEN, timeout).map_err(|e| e.to_string()))
        .transpose()
}

/// Sends a detection the way `qlab notify` does; the acknowledgement is recorded by the engine
/// observer, a refusal here.
async fn notify(client: &ApiClient, recorder: &Recorder, d: Detection) {
    let (source, event_id) = (d.source.clone(), d.event_id.clone());
    let reason = match client.notify(&d, 3, Duration::from_millis(20)).await {
        Ok(reply) if reply.status == 202 => return,
        Ok(reply) => format!("{}: {}", reply.status, reply.body),
        Err(e) => e.to_string(),
    };
    recorder.record(EventKind::DetectionRefused {
        source,
        event_id,
        reason,
    });
}
