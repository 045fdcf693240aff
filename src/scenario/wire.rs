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
//! so after sending the runner waits until the engine's per-transport counter
//! (`qlab_detections_received_total`) has moved once per detection sent (taken) or the
//! transport's rejection counters have moved (refused: a `DetectionRefused` with the reasons);
//! counters that stand still for [`RECEIPT_TIMEOUT`] leave the rest recorded as refused too (`no
//! receipt`). Which detection went unacknowledged is known from the engine's own
//! acknowledgements (the history observer counts them per source and event id). The next step
//! of the scenario starts only then, exactly as after the API's 202, so a crash right after a
//! detection finds it journaled in both modes, and INV-7 judges the same acknowledgements. A
//! duplicated delivery is sent again and journaled as a duplicate (the vendor formats carry the
//! sender's event id or a digest of an identical line), a reordered one is sent in its new
//! place. While the engine is down the AV server holds its notifications and sends them after
//! the restart, one after the other (as with the API).
//!
//! # Same-instant detections are one burst
//!
//! The timeline is played by [`super::player`], as in sim mode: detections due at one instant
//! are sent together, without waiting for one receipt before sending the next (API requests
//! concurrently, syslog lines and ePO rows back to back), and their receipts are awaited
//! together. A burst larger than [`BURST_WINDOW`] on one transport goes out a window at a time,
//! each window's receipts awaited before the next (a sender's window: a syslog listener's
//! socket buffer is finite, and a UDP datagram it cannot take is lost).
//!
//! The report counts each scenario's detections per transport from the engine's counters
//! (summed over restarts): report.json `transports`, and a total in summary.md.

use std::collections::{BTreeMap, HashMap};

use futures::StreamExt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::load::Scenario;
use super::player::{self, build_timeline, command_names, Backend, PlayedStep};
use super::runner::{collect, drift_watch_end, HistoryObserver, ScenarioRun};
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
use crate::sim::wire::epo::EpoEventRow;
use crate::sim::wire::site::WireSite;
use crate::sim::{Recorder, SimWorld};

/// The API token of the in-process engine (loopback only, one run).
const LAB_TOKEN: &str = "qlab-wire-lab";

/// Smallest scaled call timeout: below this, loopback scheduling noise would decide outcomes.
const MIN_CALL_TIMEOUT: Duration = Duration::from_millis(50);

/// Longest the runner waits for the engine's counters to show a detection sent over syslog or
/// through ePO (see the module docs).
pub const RECEIPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most detections of one burst on one transport sent before their receipts are awaited: a
/// sender's window, so a burst of thousands does not overrun a syslog listener's socket buffer
/// (a burst the size of the window or smaller goes out whole, as in sim mode).
pub const BURST_WINDOW: usize = 256;

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
    let (record, faults, transports, played) = played?;
    Ok(ScenarioRun::checked(
        scenario, record, faults, transports, played,
    ))
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
) -> Result<
    (
        RunRecord,
        Vec<FaultAccount>,
        TransportCounts,
        Vec<PlayedStep>,
    ),
    String,
> {
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
    let observer = Arc::new(HistoryObserver::counting_acks(recorder.clone()));
    let call_timeout = site
        .topology
        .engine
        .call_timeout
        .max(Duration::from_secs(2));
    let engine_spec = site.topology.engine;
    let settle = scenario
        .settle
        .map(scale)
        .unwrap_or(engine_spec.operation_deadline + engine_spec.call_timeout);
    // On a real clock a loaded machine stretches every call a little: the cap gets a margin
    // (the run still ends as soon as the engine is idle).
    let settle = settle.mul_f64(1.5) + Duration::from_millis(500);

    // The timeline is built on the scenario's own clock, from a world of the unscaled site and
    // faults (the one sim mode plays), and scaled only when the backend waits for a step: both
    // modes then walk the same steps in the same order (the same-instant order is the seed's
    // per instant of the scenario's clock).
    let plan = SimWorld::new(
        scenario.site.clone(),
        scenario.faults.clone(),
        Recorder::new(),
        seed,
    );
    let timeline = build_timeline(scenario, &plan);
    drop(plan);
    let mut backend = WireBackend {
        site: &site,
        config: &config,
        observer: &observer,
        recorder: &recorder,
        // Set again below, once the simulators and the engine are up.
        origin: Instant::now(),
        k,
        call_timeout,
        settle,
        daemon: None,
        client: None,
        sender: AvSender {
            site: &site,
            wire: &wire,
            recorder: &recorder,
            next_auto_id: 0,
        },
        transports: TransportCounts::new(),
    };
    backend.start().await?;
    // The scenario's clock starts now, with every simulator and the engine ready to accept:
    // an event `at` a time reaches the engine at that time, as in sim mode, not after the
    // setup (160 ms of scenario time at the median, seconds on a large topology, at 0.05).
    // Every time of the run counts from here: the steps' waits, the fault plan's windows and
    // the history's stamps (the recorder's clock), divided by the time scale at the end.
    backend.origin = recorder.restart_clock();
    let played = player::play(&mut backend, &world, &recorder, timeline).await?;
    let journal_path = config.journal.clone();
    let mut record = collect(
        &site,
        &world,
        &recorder,
        backend.daemon.as_ref().map(|d| &**d.engine()),
        &journal_path,
    )?;
    let mut transports = std::mem::take(&mut backend.transports);
    if let Some(d) = backend.daemon.take() {
        add_counts(&mut transports, d.metrics());
        d.shutdown().await;
    }
    for event in &mut record.history {
        event.at_ms = (event.at_ms as f64 / k).round() as u64;
    }
    // The same fault plan decided every call of the wire faces, so it accounts for them too.
    Ok((record, world.fault_accounting(), transports, played))
}

/// Wire mode's side of the player: the daemon in-process on the real clock, detections over
/// their AV servers' transports, commands through the API, a crash that drops the daemon.
struct WireBackend<'a> {
    site: &'a Arc<Site>,
    config: &'a EngineConfig,
    observer: &'a Arc<HistoryObserver>,
    recorder: &'a Recorder,
    origin: Instant,
    /// The time scale: the scenario's clock times `k` is the run's real clock.
    k: f64,
    /// The API client's timeout.
    call_timeout: Duration,
    /// Longest wait for the engine to be idle at the end (scaled, with a real-clock margin).
    settle: Duration,
    daemon: Option<Daemon>,
    client: Option<ApiClient>,
    sender: AvSender<'a>,
    /// The counters of the engine lives that ended in a crash.
    transports: TransportCounts,
}

impl WireBackend<'_> {
    /// Starts the daemon on the run's journal.
    async fn start(&mut self) -> Result<(), String> {
        let daemon = Daemon::start_with(
            self.site.clone(),
            self.config.clone(),
            LAB_TOKEN.to_string(),
            Some(self.observer.clone()),
        )
        .await
        .map_err(|e| e.to_string())?;
        self.client = api_client(Some(&daemon), self.call_timeout)?;
        self.daemon = Some(daemon);
        Ok(())
    }
}

impl Backend for WireBackend<'_> {
    fn up(&self) -> bool {
        self.daemon.is_some()
    }

    fn crashed_itself(&mut self) -> Result<Option<Duration>, String> {
        Ok(None)
    }

    async fn wait_until(&mut self, at: Duration) -> bool {
        tokio::time::sleep_until(self.origin + at.mul_f64(self.k)).await;
        true
    }

    async fn detect(&mut self, burst: Vec<Detection>) -> Vec<Detection> {
        match (&self.daemon, &self.client) {
            (Some(daemon), Some(client)) => {
                self.sender
                    .deliver_burst(daemon, client, self.observer, burst)
                    .await;
                Vec::new()
            }
            _ => burst,
        }
    }

    async fn resend(&mut self, backlog: Vec<Detection>) -> Vec<Detection> {
        let (Some(daemon), Some(client)) = (&self.daemon, &self.client) else {
            return backlog;
        };
        for d in backlog {
            self.sender
                .deliver_burst(daemon, client, self.observer, vec![d])
                .await;
        }
        Vec::new()
    }

    async fn command(&mut self, c: Command) -> Result<Option<Command>, String> {
        let (action, lserver) = command_names(&c);
        let choice = match &c {
            Command::Decide { choice, .. } => Some(choice.as_str()),
            _ => None,
        };
        let (operation, refused) = match &self.client {
            Some(api) => match api.command(&lserver, &action, choice).await {
                Ok(reply) if reply.status == 202 => {
                    (reply.body.get("operation").and_then(|v| v.as_i64()), None)
                }
                Ok(reply) => (None, Some(format!("{}: {}", reply.status, reply.body))),
                Err(e) => (None, Some(e.to_string())),
            },
            None => (None, Some("engine down".to_string())),
        };
        self.recorder.record(EventKind::CommandSubmitted {
            action,
            lserver,
            operation,
            refused,
        });
        Ok(None)
    }

    async fn crash(&mut self) {
        if let Some(d) = self.daemon.take() {
            add_counts(&mut self.transports, d.metrics());
            self.client = None;
            // Abrupt: tasks aborted mid-call, the journal is what survives. Killed, not just
            // dropped: the daemon's connections hold the engine after a drop, and its tasks on
            // the other worker thread run on, so the restart's recovery would read a journal
            // the old engine was still writing (two engines' steps colliding halt the new one).
            d.kill().await;
        }
    }

    async fn restart(&mut self, _at: Duration) -> Result<(), String> {
        self.start().await
    }

    async fn idle(
        &mut self,
        last_drift: Option<Duration>,
        last_restart: Option<Duration>,
    ) -> Result<bool, String> {
        let Some(d) = &self.daemon else {
            return Ok(true);
        };
        // As in sim mode: a drift gets INV-12's whole bound (with the same real-clock
        // margin) before the run waits for the engine to be idle.
        if let Some(last) = last_drift {
            let bound = check::drift_settle_bound(self.site);
            let last_restart = last_restart.map(|at| at.mul_f64(self.k));
            let until = drift_watch_end(last.mul_f64(self.k), last_restart, bound);
            tokio::time::sleep_until(self.origin + until.mul_f64(1.5) + Duration::from_millis(500))
                .await;
        }
        let _ = tokio::time::timeout(self.settle, d.engine().wait_idle()).await;
        player::not_halted(d.engine())?;
        Ok(true)
    }
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

    /// Sends `burst` to `daemon`, each detection over its AV server's transport, without
    /// waiting for one receipt before the next (at most [`BURST_WINDOW`] per transport at a
    /// time), then waits for the engine's receipts; a refusal or a missing receipt is recorded
    /// as `DetectionRefused` for each detection the engine did not acknowledge (`observer`
    /// counts the acknowledgements, so a refusal lands on the right detection).
    async fn deliver_burst(
        &mut self,
        daemon: &Daemon,
        client: &ApiClient,
        observer: &HistoryObserver,
        burst: Vec<Detection>,
    ) {
        let mut api = Vec::new();
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        let mut epo = Vec::new();
        for d in burst {
            match self.route(&d.source) {
                Route::Api => api.push(d),
                Route::Syslog {
                    kind,
                    from,
                    channel,
                } => {
                    let line = avsender::syslog_line(kind, &d);
                    let out = Outgoing::Syslog { d, line, from };
                    match channel {
                        Channel::SyslogTcp => tcp.push(out),
                        _ => udp.push(out),
                    }
                }
                Route::Epo => {
                    // Rows get their ids in sending order: ids only rise.
                    self.next_auto_id += 1;
                    let row = avsender::epo_row(self.next_auto_id, &d);
                    epo.push(Outgoing::Epo { d, row });
                }
            }
        }
        let this = &*self;
        let api = futures::stream::iter(api)
            .map(|d| notify(client, this.recorder, d))
            .buffer_unordered(BURST_WINDOW)
            .collect::<Vec<()>>();
        futures::join!(
            api,
            this.over_channel(daemon, observer, Channel::SyslogUdp, udp),
            this.over_channel(daemon, observer, Channel::SyslogTcp, tcp),
            this.over_channel(daemon, observer, Channel::Epo, epo),
        );
    }

    /// Sends `outgoing` over `channel` a window at a time and waits for each window's
    /// receipts (see [`AvSender::deliver_burst`]).
    async fn over_channel(
        &self,
        daemon: &Daemon,
        observer: &HistoryObserver,
        channel: Channel,
        mut outgoing: Vec<Outgoing>,
    ) {
        while !outgoing.is_empty() {
            let rest = outgoing.split_off(outgoing.len().min(BURST_WINDOW));
            let window = std::mem::replace(&mut outgoing, rest);
            let before = Receipts::read(daemon.metrics(), channel);
            let acks_before: Vec<u32> = window
                .iter()
                .map(|o| observer.acks(o.detection()))
                .collect();
            let mut sent = Vec::with_capacity(window.len());
            for out in window {
                match self.send(daemon, channel, &out).await {
                    Ok(()) => sent.push(out),
                    Err(reason) => self.refused(out.detection(), reason),
                }
            }
            if sent.is_empty() {
                continue;
            }
            let (taken, reason) = before.wait(daemon.metrics(), channel, sent.len()).await;
            if taken >= sent.len() as u64 {
                continue;
            }
            // Fewer receipts than sends: the detections the engine acknowledged are known by
            // their (source, event id); a key sent twice (a duplicated delivery) counts each
            // acknowledgement once, in sending order.
            let mut taken_per_key: HashMap<(&str, &str), u32> = HashMap::new();
            for (out, before) in sent.iter().zip(&acks_before) {
                let d = out.detection();
                taken_per_key
                    .entry((d.source.as_str(), d.event_id.as_str()))
                    .or_insert_with(|| observer.acks(d).saturating_sub(*before));
            }
            let mut unacked = Vec::new();
            for out in &sent {
                let d = out.detection();
                match taken_per_key.get_mut(&(d.source.as_str(), d.event_id.as_str())) {
                    Some(n) if *n > 0 => *n -= 1,
                    _ => unacked.push(d.clone()),
                }
            }
            for d in unacked {
                self.refused(&d, reason.clone());
            }
        }
    }

    /// Puts one detection on its transport (no receipt awaited).
    async fn send(&self, daemon: &Daemon, channel: Channel, out: &Outgoing) -> Result<(), String> {
        match out {
            Outgoing::Syslog { d: _, line, from } => {
                let to = match channel {
                    Channel::SyslogTcp => daemon.syslog_tcp_addr(),
                    _ => daemon.syslog_udp_addr(),
                };
                let Some(to) = to else {
                    return Err(format!("the engine has no {} listener", channel.as_str()));
                };
                let sent = if channel == Channel::SyslogTcp {
                    avsender::send_tcp_from(*from, to, line).await
                } else {
                    avsender::send_udp_from(*from, to, line).await
                };
                sent.map_err(|e| format!("{} to {to}: {e}", channel.as_str()))
            }
            Outgoing::Epo { d, row } => match self.wire.epo_events(&d.source) {
                None => Err(format!("no ePO simulator for {}", d.source)),
                Some(events) => {
                    events
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(row.clone());
                    Ok(())
                }
            },
        }
    }

    fn refused(&self, d: &Detection, reason: String) {
        self.recorder.record(EventKind::DetectionRefused {
            source: d.source.clone(),
            event_id: d.event_id.clone(),
            reason,
        });
    }
}

/// One detection ready for a transport that has no reply of its own.
enum Outgoing {
    /// A syslog line, sent from the AV server's address.
    Syslog {
        d: Detection,
        line: String,
        from: IpAddr,
    },
    /// A row for the AV server's ePO simulator.
    Epo { d: Detection, row: EpoEventRow },
}

impl Outgoing {
    fn detection(&self) -> &Detection {
        match self {
            Outgoing::Syslog { d, .. } | Outgoing::Epo { d, .. } => d,
        }
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

    /// Waits until the counters moved past `self` by `sent` (taken plus refused), or until
    /// they stood still for [`RECEIPT_TIMEOUT`]: how many the engine took, and the reason the
    /// others were not (the rejections that moved, or no receipt).
    async fn wait(&self, metrics: &Metrics, channel: Channel, sent: usize) -> (u64, String) {
        let sent = sent as u64;
        let mut seen = 0;
        let mut deadline = Instant::now() + RECEIPT_TIMEOUT;
        loop {
            let now = Receipts::read(metrics, channel);
            let taken = now.taken.saturating_sub(self.taken);
            let moved: Vec<(&str, u64)> = now
                .refused
                .iter()
                .map(|(reason, n)| {
                    let before = self.refused.get(*reason).copied().unwrap_or(0);
                    (*reason, n.saturating_sub(before))
                })
                .filter(|(_, n)| *n > 0)
                .collect();
            let refused: u64 = moved.iter().map(|(_, n)| n).sum();
            if taken + refused >= sent {
                let reasons: Vec<&str> = moved.iter().map(|(reason, _)| *reason).collect();
                return (
                    taken,
                    format!(
                        "refused by the engine over {}: {}",
                        channel.as_str(),
                        reasons.join(", ")
                    ),
                );
            }
            // Progress restarts the clock: a large burst is bounded per receipt, not in all.
            if taken + refused > seen {
                seen = taken + refused;
                deadline = Instant::now() + RECEIPT_TIMEOUT;
            }
            if Instant::now() >= deadline {
                return (
                    taken,
                    format!(
                        "no receipt over {} within {RECEIPT_TIMEOUT:?}",
                        channel.as_str()
                    ),
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
