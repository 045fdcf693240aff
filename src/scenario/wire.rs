//! The runner's wire mode: the same scenario with the real engine behind the daemon's code path
//! (HTTP API, real device clients, SMTP and syslog out) talking over loopback to the protocol
//! simulators of the same device models. Real clock; every duration of the scenario and its
//! topology is multiplied by `time_scale`, and the history's times divided by it again, so the
//! checkers judge a wire run on the same scale as a sim run.
//!
//! # Detections travel their AV server's transport
//!
//! Each delivery of the fault plan (after `drop`, `duplicate`, `reorder` and AV `jitter`) is
//! sent the way its AV server's topology `transport` says: a syslog line in the vendor's format
//! ([`crate::sim::wire::avsender`]) over UDP or TCP (octet-counted) from the server's topology
//! address to the engine's listeners; a row appended to the server's ePO Web API simulator for
//! the engine's poller; or `POST /api/v1/detections` like `qlab notify`. A detection whose
//! source is no AV server of the topology goes through the API, which refuses it by name.
//!
//! Acknowledgement: the history's `DetectionAcked` is the engine's own record (its observer
//! sees the journal commit), whatever the transport. Syslog over UDP has no acknowledgement on
//! the wire, and neither a TCP close nor an ePO row says whether the engine took the detection,
//! so after each send the runner waits, at most [`RECEIPT_TIMEOUT`], until the engine's
//! per-transport counter (`qlab_detections_received_total`) moves (taken) or one of the
//! transport's rejection counters moves (refused: a `DetectionRefused` with the reasons);
//! neither within the bound is recorded as refused too (`no receipt`). The next step of the
//! scenario starts only then, exactly as after the API's 202, so a crash right after a
//! detection finds it journaled in both modes, and INV-7 judges the same acknowledgements. A
//! duplicated delivery is sent again and journaled as a duplicate (the vendor formats carry the
//! sender's event id or a digest of an identical line), a reordered one is sent in its new
//! place. While the engine is down the AV server holds its notifications and sends them after
//! the restart (as with the API).
//!
//! The report counts each scenario's detections per transport from the engine's counters
//! (summed over restarts): report.json `transports`, and a total in summary.md.

use std::collections::BTreeMap;
use std::net::IpAddr;
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
use crate::daemon::config::EngineConfig;
use crate::daemon::metrics::{Channel, Metrics};
use crate::daemon::Daemon;
use crate::engine::Command;
use crate::model::history::{EventKind, FaultAccount, RunRecord};
use crate::model::{AvKind, AvTransport, Detection, Site, Topology};
use crate::sim::faults::FaultSpec;
use crate::sim::wire::avsender;
use crate::sim::wire::site::WireSite;
use crate::sim::{Recorder, SimWorld};

/// The API token of the in-process engine (loopback only, one run).
const LAB_TOKEN: &str = "qlab-wire-lab";

/// Smallest scaled call timeout: below this, loopback scheduling noise would decide outcomes.
const MIN_CALL_TIMEOUT: Duration = Duration::from_millis(50);

/// Longest the runner waits for the engine's counters to show a detection sent over syslog or
/// through ePO (see the module docs).
pub const RECEIPT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the engine polls the ePO simulators in a wire run (real clock, not scaled: it
/// bounds how long each ePO delivery waits for its receipt).
const EPO_POLL_INTERVAL: Duration = Duration::from_millis(10);

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
    let (record, faults, transports) = played?;
    let history_digest = check::history_digest(&record.history);
    let check = check::check_run(&scenario.site, &record, &scenario.expect);
    let passed = check::verdict(&check, &scenario.expect);
    Ok(ScenarioRun {
        record,
        history_digest,
        check,
        passed,
        faults,
        transports,
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
    t.engine.confirm_read_after = scale(t.engine.confirm_read_after);
    // The drift watch keeps its pace relative to the run: rounds scaled like every other
    // duration, and as many reads per scaled second as per second of the scenario.
    t.engine.watch_interval = scale(t.engine.watch_interval);
    t.engine.watch_calls_per_second = (f64::from(t.engine.watch_calls_per_second) / k)
        .ceil()
        .min(f64::from(u32::MAX)) as u32;
    t
}

/// Detections the engine took, by transport spelling, summed over the run's engine lives.
pub type TransportCounts = BTreeMap<String, u64>;

async fn play(
    scenario: &Scenario,
    seed: u64,
    k: f64,
) -> Result<(RunRecord, Vec<FaultAccount>, TransportCounts), String> {
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
    let mut sender = AvSender {
        site: &site,
        wire: &wire,
        recorder: &recorder,
        next_auto_id: 0,
    };
    let mut transports = TransportCounts::new();
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
                match (&client, &daemon) {
                    (Some(c), Some(engine)) => sender.deliver(engine, c, d).await,
                    _ => {
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
                    add_counts(&mut transports, d.metrics());
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
                if let Some(c) = &client {
                    for held in held.drain(..) {
                        sender.deliver(&d, c, held).await;
                    }
                }
                daemon = Some(d);
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
        add_counts(&mut transports, d.metrics());
        d.shutdown().await;
    }
    for event in &mut record.history {
        event.at_ms = (event.at_ms as f64 / k).round() as u64;
    }
    // The same fault plan decided every call of the wire faces, so it accounts for them too.
    Ok((record, world.fault_accounting(), transports))
}

/// Adds an engine life's per-transport counters to `into`.
fn add_counts(into: &mut TransportCounts, metrics: &Metrics) {
    for (channel, n) in metrics.accepted_map() {
        *into.entry(channel.to_string()).or_default() += n;
    }
}

/// The generated config of `qlab sim serve` (syslog listeners and ePO pollers on 127.0.0.1),
/// with the lab's token and a quick ePO poll; the devices are reached over TLS, trusting
/// `ca_file`.
fn engine_config(
    site: &Site,
    wire: &WireSite,
    journal: std::path::PathBuf,
    ca_file: Option<std::path::PathBuf>,
) -> EngineConfig {
    let mut config =
        super::serve::engine_config(site, wire, std::path::PathBuf::new(), journal, ca_file);
    config.token = LAB_TOKEN.into();
    for poller in &mut config.epo_pollers {
        poller.interval = EPO_POLL_INTERVAL;
    }
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

/// The simulated AV servers of a wire run: each detection goes out over its server's transport.
struct AvSender<'a> {
    site: &'a Site,
    wire: &'a WireSite,
    recorder: &'a Recorder,
    /// Last `AutoID` given to an ePO row (one sequence for every ePO server: ids only rise).
    next_auto_id: i64,
}

/// Where a detection goes.
enum Route {
    /// A syslog line of `kind` from `from` over UDP or TCP.
    Syslog {
        kind: AvKind,
        from: IpAddr,
        channel: Channel,
    },
    /// A row in the ePO simulator of this AV server.
    Epo,
    /// `POST /api/v1/detections`.
    Api,
}

impl AvSender<'_> {
    fn route(&self, source: &str) -> Route {
        let Some(av) = self
            .site
            .topology
            .av_servers
            .iter()
            .find(|a| a.name == source)
        else {
            return Route::Api;
        };
        match av.transport {
            AvTransport::SyslogUdp => Route::Syslog {
                kind: av.kind,
                from: av.address,
                channel: Channel::SyslogUdp,
            },
            AvTransport::SyslogTcp => Route::Syslog {
                kind: av.kind,
                from: av.address,
                channel: Channel::SyslogTcp,
            },
            AvTransport::EpoApi => Route::Epo,
            AvTransport::Api => Route::Api,
        }
    }

    /// Sends `d` to `daemon` over its AV server's transport and waits for the engine's
    /// receipt; a refusal or a missing receipt is recorded as `DetectionRefused`.
    async fn deliver(&mut self, daemon: &Daemon, client: &ApiClient, d: Detection) {
        let (channel, sent) = match self.route(&d.source) {
            Route::Api => return notify(client, self.recorder, d).await,
            Route::Syslog {
                kind,
                from,
                channel,
            } => {
                let line = avsender::syslog_line(kind, &d);
                let to = match channel {
                    Channel::SyslogTcp => daemon.syslog_tcp_addr(),
                    _ => daemon.syslog_udp_addr(),
                };
                let before = Receipts::read(daemon.metrics(), channel);
                let sent = match to {
                    None => Err(format!("the engine has no {} listener", channel.as_str())),
                    Some(to) => {
                        let sent = if channel == Channel::SyslogTcp {
                            avsender::send_tcp_from(from, to, &line).await
                        } else {
                            avsender::send_udp_from(from, to, &line).await
                        };
                        sent.map_err(|e| format!("{} to {to}: {e}", channel.as_str()))
                    }
                };
                (channel, sent.map(|()| before))
            }
            Route::Epo => {
                let before = Receipts::read(daemon.metrics(), Channel::Epo);
                let sent = match self.wire.epo_events(&d.source) {
                    None => Err(format!("no ePO simulator for {}", d.source)),
                    Some(events) => {
                        self.next_auto_id += 1;
                        let row = avsender::epo_row(self.next_auto_id, &d);
                        events.lock().unwrap_or_else(|e| e.into_inner()).push(row);
                        Ok(before)
                    }
                };
                (Channel::Epo, sent)
            }
        };
        let reason = match sent {
            Err(e) => e,
            Ok(before) => match before.wait(daemon.metrics(), channel).await {
                Ok(()) => return,
                Err(reason) => reason,
            },
        };
        self.recorder.record(EventKind::DetectionRefused {
            source: d.source,
            event_id: d.event_id,
            reason,
        });
    }
}

/// A transport's counters at one moment: detections taken, and its rejections by reason.
struct Receipts {
    taken: u64,
    refused: BTreeMap<&'static str, u64>,
}

impl Receipts {
    /// Whether rejection `reason` concerns a message of `channel` (a failed ePO poll does not:
    /// the poller tries again).
    fn concerns(channel: Channel, reason: &str) -> bool {
        match channel {
            Channel::SyslogUdp | Channel::SyslogTcp => reason.starts_with("syslog_"),
            Channel::Epo => reason == "epo_refused" || reason == "epo_bad_row",
            Channel::Api => false,
        }
    }

    fn read(metrics: &Metrics, channel: Channel) -> Receipts {
        let mut refused = metrics.rejected_map();
        refused.retain(|reason, _| Receipts::concerns(channel, reason));
        Receipts {
            taken: metrics.accepted_count(channel),
            refused,
        }
    }

    /// Waits until the counters moved past `self`: Ok when the engine took the detection,
    /// the reasons when it refused it or nothing moved within [`RECEIPT_TIMEOUT`].
    async fn wait(&self, metrics: &Metrics, channel: Channel) -> Result<(), String> {
        let deadline = Instant::now() + RECEIPT_TIMEOUT;
        loop {
            let now = Receipts::read(metrics, channel);
            if now.taken > self.taken {
                return Ok(());
            }
            let moved: Vec<String> = now
                .refused
                .iter()
                .filter(|(reason, n)| self.refused.get(*reason).copied().unwrap_or(0) < **n)
                .map(|(reason, _)| reason.to_string())
                .collect();
            if !moved.is_empty() {
                return Err(format!(
                    "refused by the engine over {}: {}",
                    channel.as_str(),
                    moved.join(", ")
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no receipt over {} within {RECEIPT_TIMEOUT:?}",
                    channel.as_str()
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
