//! The wire figure: the engine's time per switchover in wire mode against a bare HTTP
//! client making the same calls to the same simulator, both on devices with zero latency.
//!
//! One *round* quarantines every L-Server of the wire bench site once
//! ([`super::workload::WIRE_TOPOLOGY`]: virtual L-Servers with one vNIC each on vCenter
//! simulators). Each round starts fresh simulators, so every NIC starts on its operation network
//! and every switchover really writes; start-up, login and the checks after the round are not
//! timed. The physical path (switch writes, batching, config saves) is not part of this figure.
//!
//! - **Engine** ([`EngineRound`]): the real [`Engine`] with the real vCenter client
//!   ([`VcenterClient`], built as `qlab engine serve` builds it) and a journal file in `TMPDIR`
//!   opened with production durability ([`Journal::open`]: `synchronous = FULL`, an fsync per
//!   commit). Timed: every detection submitted at once (`submit_detection`, which returns once
//!   the detection is durable) until the engine is idle, every L-Server quarantined. No syslog or
//!   mail adapter is configured, since the bare client has no counterpart for them: alerts are
//!   journaled as delivered, with nowhere to send them. The same rounds with the journal opened
//!   without fsync ([`Durability::ProcessCrash`]) show how much of the
//!   engine's time is fsync: a diagnostic, not the figure.
//! - **Bare** ([`BareRound`]): a reqwest client from [`http::client`] (the adapters' own
//!   builder, so the same connection policy: a new connection per call, no idle pool) making the
//!   calls the engine makes for an automatic quarantine of a normal L-Server: per NIC the `PATCH`
//!   that moves the backing, then the `GET` that verifies it (R8). The engine reads before
//!   writing only when records may disagree with devices (manual quarantine, recovery, a
//!   non-normal state), which no round has, so the bare client does not read first either. One
//!   task per L-Server, every call waiting for one of the hypervisor's `max_concurrent` slots,
//!   as the engine's device slots do.
//!
//! Both sides log in once before the clock starts and run on the same kind of runtime as the
//! daemon ([`runtime`]: multi-threaded, two workers). A turn is one round of each side, the bare
//! one first every other turn; the ratio of their totals comes with its 95 % interval over the
//! turns ([`TurnSums`]), and each round's process CPU time is kept beside its wall time: with
//! zero device latency the simulators, the TLS handshakes and the engine share both cores, so a
//! round is as long as the CPU work it holds, and the CPU ratio shows the engine's extra work
//! whatever the machine's other load did to wall time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::adapters::vcenter::{VcenterClient, SESSION_HEADER};
use crate::adapters::{http, Adapters, Hypervisor};
use crate::engine::journal::Durability;
use crate::engine::{Disposition, Engine, EngineOptions, Journal, LServerState};
use crate::model::{Category, Detection, NicLocation, Site};
use crate::sim::wire::accepted_credentials;
use crate::sim::wire::site::WireSite;
use crate::sim::{Recorder, SimWorld};

/// Threat name of the bench detections (a virus: R1 quarantines it).
const THREAT: &str = "WORM_DOWNAD.AD";

/// The runtime both sides run on: multi-threaded with two workers, like `qlab engine serve` on a
/// two-core machine and like the lab's wire mode.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// One NIC to move: where it is, and the port group it must end on.
#[derive(Debug, Clone)]
struct Move {
    hypervisor: String,
    vm: String,
    nic: String,
    portgroup: String,
}

/// What a round moves, derived once from the site.
#[derive(Debug, Clone)]
pub struct WireWorkload {
    pub(crate) site: Arc<Site>,
    moves: Vec<Move>,
    pub(crate) detections: Vec<Detection>,
    concurrency: usize,
    /// Whether the simulators serve HTTPS (a CA per round) and both sides verify them.
    tls: bool,
}

impl WireWorkload {
    /// The workload of `site`: one detection per L-Server, every NIC to its quarantine port
    /// group. Every L-Server must be virtual on a hypervisor with port groups for both networks,
    /// and the site needs an AV server to send the detections from.
    pub fn new(site: Arc<Site>) -> Result<WireWorkload, String> {
        let t = &site.topology;
        let source = t
            .av_servers
            .first()
            .map(|a| a.name.clone())
            .ok_or("the wire bench site has no AV server to send detections from")?;
        if site.lservers.is_empty() {
            return Err("the wire bench site has no L-Server".into());
        }
        let mut moves = Vec::new();
        let mut detections = Vec::new();
        for (i, ls) in site.lservers.iter().enumerate() {
            let first = ls
                .nics
                .first()
                .ok_or_else(|| format!("{}: the wire bench needs a NIC per L-Server", ls.path))?;
            for nic in &ls.nics {
                let NicLocation::Virtual {
                    hypervisor,
                    vm,
                    device,
                } = &nic.location
                else {
                    return Err(format!(
                        "{}: the wire bench measures virtual L-Servers only",
                        ls.path
                    ));
                };
                let portgroup = site
                    .quarantine_network_for(&nic.network)
                    .and_then(|q| site.portgroup(hypervisor, &q.name))
                    .ok_or_else(|| {
                        format!(
                            "{} nic{}: no quarantine port group on {hypervisor}",
                            ls.path, nic.index
                        )
                    })?;
                moves.push(Move {
                    hypervisor: hypervisor.clone(),
                    vm: vm.clone(),
                    nic: device.clone(),
                    portgroup: portgroup.to_string(),
                });
            }
            detections.push(Detection {
                source: source.clone(),
                event_id: format!("wire-bench-{i}"),
                ip: Some(first.ip),
                mac: None,
                hostname: None,
                threat: THREAT.into(),
                category: Category::Virus,
            });
        }
        let concurrency = t
            .hypervisors
            .iter()
            .map(|h| h.max_concurrent as usize)
            .sum::<usize>()
            .max(1);
        Ok(WireWorkload {
            site,
            moves,
            detections,
            concurrency,
            tls: false,
        })
    }

    /// The same workload over TLS: the simulators serve HTTPS with a CA generated per round,
    /// and the engine's client and the bare client both verify it, each call on its own
    /// connection (the production connection policy, so a handshake per call on both sides).
    pub fn over_tls(&self) -> WireWorkload {
        WireWorkload {
            tls: true,
            ..self.clone()
        }
    }

    /// How clients of `wire` verify its certificates: its CA when it serves HTTPS.
    fn trust(&self, wire: &WireSite) -> Result<http::TlsTrust, String> {
        match wire.ca_pem() {
            Some(pem) => http::TlsTrust::default().with_ca_pem(pem.as_bytes()),
            None => Ok(http::TlsTrust::default()),
        }
    }

    /// Switchovers per round: one per L-Server.
    pub fn switchovers(&self) -> usize {
        self.detections.len()
    }

    /// NICs moved per round.
    pub fn nics(&self) -> usize {
        self.moves.len()
    }

    /// Device slots in all (the hypervisors' `max_concurrent`): how many calls are in flight at
    /// most, on both sides.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Fresh simulators for one round: every NIC on its operation network.
    async fn simulators(&self) -> Result<WireSite, String> {
        let world = SimWorld::new(self.site.clone(), Vec::new(), Recorder::new(), 0);
        let started = if self.tls {
            WireSite::start_tls(world).await
        } else {
            WireSite::start(world).await
        };
        started.map_err(|e| format!("cannot start the simulators: {e}"))
    }

    /// Base URL, user and password of `hypervisor`'s simulator.
    /// The engine's vCenter client for `hypervisor`'s simulator, logged in.
    async fn logged_in_client(
        &self,
        wire: &WireSite,
        hypervisor: &str,
        timeout: Duration,
    ) -> Result<VcenterClient, String> {
        let e = self.endpoint(wire, hypervisor)?;
        let trust = self.trust(wire)?;
        let client = VcenterClient::new(&e.url, &e.user, &e.password, timeout)
            .and_then(|c| c.with_trust(&trust))
            .map_err(|e| e.to_string())?;
        client
            .login()
            .await
            .map_err(|e| format!("login to {hypervisor}: {e}"))?;
        Ok(client)
    }

    fn endpoint(&self, wire: &WireSite, hypervisor: &str) -> Result<Endpoint, String> {
        let spec = self
            .site
            .topology
            .hypervisors
            .iter()
            .find(|h| h.name == hypervisor)
            .ok_or_else(|| format!("{hypervisor} is not a hypervisor of the site"))?;
        let url = wire
            .urls()
            .remove(hypervisor)
            .ok_or_else(|| format!("no simulator for {hypervisor}"))?;
        let credentials = accepted_credentials(spec.credentials.as_ref());
        Ok(Endpoint {
            url,
            user: credentials.user,
            password: credentials.password,
        })
    }

    /// A round without the engine: the tasks `spawn` starts, sharing
    /// [`WireWorkload::concurrency`] call slots, timed from their start to the last one's end;
    /// then device truth is checked. `side` names the round in a failed task's error.
    async fn timed_round(
        &self,
        side: &str,
        wire: &WireSite,
        spawn: impl FnOnce(Arc<Semaphore>) -> Vec<tokio::task::JoinHandle<Result<(), String>>>,
    ) -> Result<RoundResult, String> {
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let cpu_before = process_cpu();
        let start = Instant::now();
        let tasks = spawn(slots);
        let results = join_all(tasks).await;
        let elapsed = start.elapsed();
        let cpu = process_cpu().saturating_sub(cpu_before);
        for result in results {
            result.map_err(|e| format!("{side} task failed: {e}"))??;
        }
        self.check_truth(wire)?;
        Ok(RoundResult {
            elapsed,
            cpu,
            commits: 0,
        })
    }

    /// Checks that every NIC ended on its quarantine network at the device.
    fn check_truth(&self, wire: &WireSite) -> Result<(), String> {
        for (nic, network) in wire.world.final_truth() {
            let expected = self
                .site
                .lserver(&nic.lserver)
                .and_then(|ls| ls.nics.get(nic.nic))
                .and_then(|n| self.site.quarantine_network_for(&n.network))
                .map(|q| q.name.as_str());
            if network.as_deref() != expected || expected.is_none() {
                return Err(format!(
                    "{} nic{} is on {network:?} at the device after the round, not on {expected:?}",
                    nic.lserver, nic.nic
                ));
            }
        }
        Ok(())
    }
}

struct Endpoint {
    url: String,
    user: String,
    password: String,
}

/// One timed round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundResult {
    /// Wall time of the switchovers alone.
    pub elapsed: Duration,
    /// CPU time the whole process spent meanwhile (user and system, every thread: the
    /// simulators' too, which both sides share).
    pub cpu: Duration,
    /// Journal commits during the timed part (0 for the bare client).
    pub commits: u64,
}

/// CPU time this process has used so far, user and system, all threads (`getrusage`): a
/// round's CPU time is what it cost whatever the machine's other load did to its wall time.
fn process_cpu() -> Duration {
    // SAFETY: `getrusage` only writes the struct it is given, which is plain data.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// The engine side of one round, ready to run: fresh simulators, vCenter clients logged in, an
/// engine open on an empty journal file.
pub struct EngineRound {
    // Field order is drop order: the engine (and its tasks) before the simulators and the folder.
    engine: Arc<Engine>,
    wire: WireSite,
    _dir: tempfile::TempDir,
}

impl EngineRound {
    /// Prepares a round (not timed) whose journal commits with `durability`
    /// ([`Durability::PowerLoss`] in production). Must run inside a tokio runtime.
    pub async fn prepare(
        workload: &WireWorkload,
        durability: Durability,
    ) -> Result<EngineRound, String> {
        let wire = workload.simulators().await?;
        let timeout = workload.site.topology.engine.call_timeout;
        let mut adapters = Adapters::default();
        for h in &workload.site.topology.hypervisors {
            // The engine logs in lazily on its first call; logging in now keeps the login out
            // of the timed part, as on the bare side.
            let client = workload.logged_in_client(&wire, &h.name, timeout).await?;
            adapters
                .hypervisors
                .insert(h.name.clone(), Arc::new(client) as Arc<dyn Hypervisor>);
        }
        let (engine, dir) = open_engine(workload, adapters, durability)?;
        Ok(EngineRound {
            engine,
            wire,
            _dir: dir,
        })
    }

    /// Submits every detection at once, one task each as the daemon's API would, and waits
    /// until the engine is idle: the timed part. Then checks, untimed, that every detection was
    /// accepted, every L-Server is quarantined and every NIC is on quarantine at the device.
    pub async fn run(self, workload: &WireWorkload) -> Result<RoundResult, String> {
        let result = quarantine_all(&self.engine, workload).await?;
        workload.check_truth(&self.wire)?;
        Ok(result)
    }
}

/// Opens the engine on a fresh journal file in `TMPDIR` with `durability`, as the daemon opens
/// it: no observer (events would be built for it alone). The folder must outlive the engine.
pub(crate) fn open_engine(
    workload: &WireWorkload,
    adapters: Adapters,
    durability: Durability,
) -> Result<(Arc<Engine>, tempfile::TempDir), String> {
    let dir = tempfile::tempdir()
        .map_err(|e| format!("cannot create a temporary folder for the journal: {e}"))?;
    let journal = Journal::open_with(&dir.path().join("journal.sqlite"), durability)
        .map_err(|e| format!("cannot open the journal: {e}"))?;
    let engine = Engine::open(
        workload.site.clone(),
        journal,
        adapters,
        EngineOptions::default(),
    )
    .map_err(|e| format!("cannot open the engine: {e}"))?;
    Ok((Arc::new(engine), dir))
}

/// Journal commits the engine has made so far (its own count, as `GET /metrics` shows it).
fn commits_so_far(engine: &Engine) -> u64 {
    engine.stats().entries_per_commit.count
}

/// Submits every detection of `workload` at once, one task each as the daemon's API would, and
/// waits until the engine is idle: the timed part. Then checks, untimed, that every detection
/// was accepted and every L-Server is quarantined.
pub(crate) async fn quarantine_all(
    engine: &Arc<Engine>,
    workload: &WireWorkload,
) -> Result<RoundResult, String> {
    let before = commits_so_far(engine);
    let cpu_before = process_cpu();
    let start = Instant::now();
    let tasks: Vec<_> = workload
        .detections
        .iter()
        .cloned()
        .map(|d| {
            let engine = engine.clone();
            tokio::spawn(async move { engine.submit_detection(d).await })
        })
        .collect();
    let receipts = join_all(tasks).await;
    engine.wait_idle().await;
    let elapsed = start.elapsed();
    let cpu = process_cpu().saturating_sub(cpu_before);
    let commits = commits_so_far(engine) - before;
    for receipt in receipts {
        let receipt = receipt
            .map_err(|e| format!("detection task failed: {e}"))?
            .map_err(|e| format!("detection refused: {e}"))?;
        if receipt.disposition != Disposition::Accepted {
            return Err(format!("detection not accepted: {receipt:?}"));
        }
    }
    if let Some(ls) = engine
        .lservers()
        .into_iter()
        .find(|ls| ls.state != LServerState::Quarantined)
    {
        return Err(format!(
            "{} is {:?} after the round ({:?}), not quarantined",
            ls.path, ls.state, ls.outcome
        ));
    }
    Ok(RoundResult {
        elapsed,
        cpu,
        commits,
    })
}

/// The bare side of one round, ready to run: fresh simulators, one logged-in session per
/// hypervisor, a client from [`http::client`].
pub struct BareRound {
    client: reqwest::Client,
    /// Per move: the vNIC URL and the session token of its hypervisor.
    targets: Vec<(String, String)>,
    wire: WireSite,
}

impl BareRound {
    /// Prepares a round (not timed): simulators, client, one login per hypervisor.
    pub async fn prepare(workload: &WireWorkload) -> Result<BareRound, String> {
        let wire = workload.simulators().await?;
        let timeout = workload.site.topology.engine.call_timeout;
        let trust = workload.trust(&wire)?;
        let client = http::client_with(timeout, &trust).map_err(|e| e.to_string())?;
        let mut sessions = std::collections::HashMap::new();
        for h in &workload.site.topology.hypervisors {
            let e = workload.endpoint(&wire, &h.name)?;
            let token = login(&client, &e)
                .await
                .map_err(|reason| format!("login to {}: {reason}", h.name))?;
            sessions.insert(h.name.clone(), (e.url, token));
        }
        let targets = workload
            .moves
            .iter()
            .map(|m| {
                let (base, token) = &sessions[&m.hypervisor];
                (
                    format!("{base}/api/vcenter/vm/{}/hardware/ethernet/{}", m.vm, m.nic),
                    token.clone(),
                )
            })
            .collect();
        Ok(BareRound {
            client,
            targets,
            wire,
        })
    }

    /// Moves every NIC (PATCH, then a verifying GET) with one task per NIC and at most
    /// [`WireWorkload::concurrency`] calls in flight: the timed part. Then checks device truth.
    pub async fn run(self, workload: &WireWorkload) -> Result<RoundResult, String> {
        let spawn = |slots: Arc<Semaphore>| {
            workload
                .moves
                .iter()
                .zip(&self.targets)
                .map(|(m, (url, token))| {
                    let (client, slots) = (self.client.clone(), slots.clone());
                    let (url, token, portgroup) = (url.clone(), token.clone(), m.portgroup.clone());
                    tokio::spawn(async move {
                        switchover(&client, &slots, &url, &token, &portgroup).await
                    })
                })
                .collect()
        };
        workload.timed_round("bare client", &self.wire, spawn).await
    }
}

/// The adapter alone, without the engine: the same calls through the engine's vCenter client
/// ([`VcenterClient::set_nic`], then [`VcenterClient::get_nic`]) with the bare side's tasks and
/// slots. A diagnostic for the criterion bench: bare against adapter is what the client costs,
/// adapter against engine what the engine costs around it.
pub struct AdapterRound {
    clients: std::collections::HashMap<String, Arc<VcenterClient>>,
    wire: WireSite,
}

impl AdapterRound {
    /// Prepares a round (not timed): simulators, one logged-in client per hypervisor.
    pub async fn prepare(workload: &WireWorkload) -> Result<AdapterRound, String> {
        let wire = workload.simulators().await?;
        let timeout = workload.site.topology.engine.call_timeout;
        let mut clients = std::collections::HashMap::new();
        for h in &workload.site.topology.hypervisors {
            let client = workload.logged_in_client(&wire, &h.name, timeout).await?;
            clients.insert(h.name.clone(), Arc::new(client));
        }
        Ok(AdapterRound { clients, wire })
    }

    /// Moves every NIC through the adapter: the timed part. Then checks device truth.
    pub async fn run(self, workload: &WireWorkload) -> Result<RoundResult, String> {
        let spawn = |slots: Arc<Semaphore>| {
            workload
                .moves
                .iter()
                .map(|m| {
                    let (client, slots, m) = (
                        self.clients[&m.hypervisor].clone(),
                        slots.clone(),
                        m.clone(),
                    );
                    tokio::spawn(async move {
                        {
                            let _slot = slots.acquire().await.map_err(|e| e.to_string())?;
                            client
                                .set_nic(&m.vm, &m.nic, &m.portgroup)
                                .await
                                .map_err(|e| e.to_string())?;
                        }
                        let _slot = slots.acquire().await.map_err(|e| e.to_string())?;
                        let seen = client
                            .get_nic(&m.vm, &m.nic)
                            .await
                            .map_err(|e| e.to_string())?;
                        if seen == m.portgroup {
                            Ok(())
                        } else {
                            Err(format!("{} {}: backing {seen}", m.vm, m.nic))
                        }
                    })
                })
                .collect()
        };
        workload.timed_round("adapter", &self.wire, spawn).await
    }
}

/// `POST /api/session` with Basic auth: the session token.
async fn login(client: &reqwest::Client, e: &Endpoint) -> Result<String, String> {
    let reply = client
        .post(format!("{}/api/session", e.url))
        .basic_auth(&e.user, Some(&e.password))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = reply.status();
    let body: Value = reply.json().await.map_err(|e| e.to_string())?;
    match body {
        Value::String(token) if status.is_success() => Ok(token),
        other => Err(format!("{status}: {other}")),
    }
}

/// One NIC: the write, then the verifying read, each in a device slot.
async fn switchover(
    client: &reqwest::Client,
    slots: &Semaphore,
    url: &str,
    token: &str,
    portgroup: &str,
) -> Result<(), String> {
    let body = json!({"backing": {"type": "DISTRIBUTED_PORTGROUP", "network": portgroup}});
    call(client, slots, Method::PATCH, url, token, Some(body)).await?;
    let reply = call(client, slots, Method::GET, url, token, None).await?;
    let seen: Value = serde_json::from_str(&reply).map_err(|e| format!("GET {url}: {e}"))?;
    match seen["backing"]["network"].as_str() {
        Some(pg) if pg == portgroup => Ok(()),
        other => Err(format!("GET {url}: backing {other:?}, not {portgroup}")),
    }
}

/// One authenticated call in a device slot; the body of a 2xx reply.
async fn call(
    client: &reqwest::Client,
    slots: &Semaphore,
    method: Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> Result<String, String> {
    let _slot = slots.acquire().await.map_err(|e| e.to_string())?;
    let mut request = client
        .request(method.clone(), url)
        .header(SESSION_HEADER, token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let reply = request
        .send()
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let status = reply.status();
    let text = http::body_text(reply)
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?;
    if status.is_success() {
        Ok(text)
    } else {
        Err(format!("{method} {url}: {status} {}", http::snippet(&text)))
    }
}

/// Engine and bare rounds of one measurement, alternated so that drift weighs on both alike.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WireComparison {
    /// Switchovers per round.
    pub switchovers: usize,
    /// Calls in flight at most.
    pub concurrency: usize,
    /// Timed rounds per side.
    pub rounds: u64,
    /// Total timed wall time of the engine rounds (production durability).
    pub engine: Duration,
    /// Total timed wall time of the same engine rounds with a journal without fsync; zero when
    /// the comparison skipped them ([`FsyncDiagnostic::Skipped`]).
    pub engine_no_fsync: Duration,
    /// Total timed wall time of the bare rounds.
    pub bare: Duration,
    /// Total CPU time of the process during the engine rounds (production durability).
    pub engine_cpu: Duration,
    /// Total CPU time of the process during the bare rounds.
    pub bare_cpu: Duration,
    /// Journal commits in all engine rounds.
    pub engine_commits: u64,
    /// The turns' wall times, for the ratio's interval.
    pub turns: TurnSums,
}

/// `engine / bare`, infinite when the bare side took no time.
fn over(engine: Duration, bare: Duration) -> f64 {
    let bare = bare.as_secs_f64();
    if bare > 0.0 {
        engine.as_secs_f64() / bare
    } else {
        f64::INFINITY
    }
}

/// Sums over the turns of one comparison, each turn an engine round and a bare round, from
/// which [`TurnSums::ratio_interval`] tells how far the ratio of their totals may be from the
/// machine's long-run ratio.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TurnSums {
    n: f64,
    engine: f64,
    bare: f64,
    engine_sq: f64,
    bare_sq: f64,
    product: f64,
}

impl TurnSums {
    /// Adds a turn's two wall times.
    pub fn add(&mut self, engine: Duration, bare: Duration) {
        let (e, b) = (engine.as_secs_f64(), bare.as_secs_f64());
        self.n += 1.0;
        self.engine += e;
        self.bare += b;
        self.engine_sq += e * e;
        self.bare_sq += b * b;
        self.product += e * b;
    }

    /// The 95 % interval of the ratio of the engine's total to the bare total: the ratio of two
    /// means, its standard error by the delta method over the turns (a normal approximation,
    /// fair from a dozen turns on). A round's wall time on a shared machine swings by a third
    /// from one turn to the next, so a ratio near its target needs this to be read. `None`
    /// under three turns or without bare time.
    pub fn ratio_interval(&self) -> Option<(f64, f64)> {
        if self.n < 3.0 || self.bare <= 0.0 {
            return None;
        }
        let n = self.n;
        let (mean_e, mean_b) = (self.engine / n, self.bare / n);
        let ratio = mean_e / mean_b;
        // Sample (co)variances of the turns' wall times.
        let var_e = (self.engine_sq - n * mean_e * mean_e) / (n - 1.0);
        let var_b = (self.bare_sq - n * mean_b * mean_b) / (n - 1.0);
        let cov = (self.product - n * mean_e * mean_b) / (n - 1.0);
        let var_ratio = (var_e - 2.0 * ratio * cov + ratio * ratio * var_b).max(0.0) / n;
        let half = 1.96 * var_ratio.sqrt() / mean_b;
        Some((ratio - half, ratio + half))
    }
}

impl WireComparison {
    /// Microseconds per switchover, kept as a float: a `Duration` would round to whole
    /// nanoseconds, and the three figures would no longer divide into [`Self::ratio`] exactly.
    fn us_per_switchover(&self, total: Duration) -> f64 {
        let n = (self.rounds as f64 * self.switchovers as f64).max(1.0);
        total.as_secs_f64() * 1e6 / n
    }

    /// The engine's wall time per switchover, in microseconds.
    pub fn engine_us_per_switchover(&self) -> f64 {
        self.us_per_switchover(self.engine)
    }

    /// The engine's wall time per switchover with a journal without fsync (diagnostic), in
    /// microseconds.
    pub fn engine_no_fsync_us_per_switchover(&self) -> f64 {
        self.us_per_switchover(self.engine_no_fsync)
    }

    /// The bare client's wall time per switchover, in microseconds.
    pub fn bare_us_per_switchover(&self) -> f64 {
        self.us_per_switchover(self.bare)
    }

    /// Engine time / bare time per switchover (target: at most 1.2).
    pub fn ratio(&self) -> f64 {
        over(self.engine, self.bare)
    }

    /// The process's CPU time in the engine rounds over that in the bare rounds: the engine's
    /// extra work, which the machine's other load does not stretch as it stretches wall time.
    pub fn cpu_ratio(&self) -> f64 {
        over(self.engine_cpu, self.bare_cpu)
    }

    /// Journal commits per switchover on the engine side (each one an fsync).
    pub fn commits_per_switchover(&self) -> f64 {
        self.engine_commits as f64 / (self.rounds as f64 * self.switchovers as f64).max(1.0)
    }
}

/// Untimed warm-up turns, each an engine round with fsync, one without (when measured) and a
/// bare round: the first rounds of a process ran up to a third slower than later ones, on either
/// side (fresh threads, allocator and page cache).
const WARM_UP_TURNS: usize = 3;

/// Whether a comparison also times the engine with a journal without fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncDiagnostic {
    /// Each turn adds an engine round without fsync ([`WireComparison::engine_no_fsync`]).
    Measured,
    /// Only the engine with fsync and the bare client: the whole budget goes to the two sides
    /// the ratio compares.
    Skipped,
}

/// Runs [`WARM_UP_TURNS`] untimed turns, then timed turns of an engine round, an engine round
/// without fsync (when `fsync` says so) and a bare round until `budget` has passed (at least
/// `min_rounds` of each), on one [`runtime`].
pub fn compare(
    workload: &WireWorkload,
    budget: Duration,
    min_rounds: u64,
    fsync: FsyncDiagnostic,
) -> Result<WireComparison, String> {
    let runtime = runtime().map_err(|e| format!("cannot start the runtime: {e}"))?;
    let mut comparison = WireComparison {
        switchovers: workload.switchovers(),
        concurrency: workload.concurrency(),
        rounds: 0,
        engine: Duration::ZERO,
        engine_no_fsync: Duration::ZERO,
        bare: Duration::ZERO,
        engine_cpu: Duration::ZERO,
        bare_cpu: Duration::ZERO,
        engine_commits: 0,
        turns: TurnSums::default(),
    };
    let engine_round = |durability| async move {
        let round = EngineRound::prepare(workload, durability).await?;
        round.run(workload).await
    };
    let no_fsync_round = || async {
        match fsync {
            FsyncDiagnostic::Measured => engine_round(Durability::ProcessCrash)
                .await
                .map(|r| r.elapsed),
            FsyncDiagnostic::Skipped => Ok(Duration::ZERO),
        }
    };
    let bare_round = || async {
        let round = BareRound::prepare(workload).await?;
        round.run(workload).await
    };
    runtime.block_on(async {
        for _ in 0..WARM_UP_TURNS {
            engine_round(Durability::PowerLoss).await?;
            no_fsync_round().await?;
            bare_round().await?;
        }
        let start = Instant::now();
        while comparison.rounds < min_rounds.max(1) || start.elapsed() < budget {
            // Every other turn the bare round goes first, so neither side always follows the
            // other (its leftovers: freed memory, files being unlinked, a cooler cache).
            let (engine, no_fsync, bare) = if comparison.rounds.is_multiple_of(2) {
                let engine = engine_round(Durability::PowerLoss).await?;
                let no_fsync = no_fsync_round().await?;
                (engine, no_fsync, bare_round().await?)
            } else {
                let bare = bare_round().await?;
                let no_fsync = no_fsync_round().await?;
                (engine_round(Durability::PowerLoss).await?, no_fsync, bare)
            };
            comparison.rounds += 1;
            comparison.engine += engine.elapsed;
            comparison.engine_cpu += engine.cpu;
            comparison.engine_commits += engine.commits;
            comparison.engine_no_fsync += no_fsync;
            comparison.bare += bare.elapsed;
            comparison.bare_cpu += bare.cpu;
            comparison.turns.add(engine.elapsed, bare.elapsed);
        }
        Ok::<(), String>(())
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(comparison)
}

#[cfg(test)]
mod tests {
    use super::TurnSums;
    use std::time::Duration;

    fn turns(pairs: &[(u64, u64)]) -> TurnSums {
        let mut sums = TurnSums::default();
        for &(engine, bare) in pairs {
            sums.add(Duration::from_millis(engine), Duration::from_millis(bare));
        }
        sums
    }

    #[test]
    fn the_interval_is_the_ratio_alone_when_every_turn_keeps_it() {
        // The machine's load moves both sides of a turn alike: no doubt about the ratio.
        let (low, high) = turns(&[(110, 100), (88, 80), (132, 120), (99, 90)])
            .ratio_interval()
            .unwrap();
        assert!(
            (low - 1.1).abs() < 1e-9 && (high - 1.1).abs() < 1e-9,
            "{low}..{high}"
        );
    }

    #[test]
    fn the_interval_holds_the_ratio_of_totals_and_narrows_with_more_turns() {
        let noisy = [
            (100, 100),
            (120, 100),
            (95, 90),
            (130, 110),
            (90, 95),
            (115, 100),
        ];
        let (low, high) = turns(&noisy).ratio_interval().unwrap();
        let ratio = 650.0 / 595.0;
        assert!(low < ratio && ratio < high, "{low}..{high} around {ratio}");
        // Four times the turns, same spread: half as wide.
        let (low4, high4) = turns(&noisy.repeat(4)).ratio_interval().unwrap();
        let narrowing = (high4 - low4) / (high - low);
        assert!((0.4..0.6).contains(&narrowing), "{narrowing}");
    }

    #[test]
    fn too_few_turns_give_no_interval() {
        assert_eq!(turns(&[(110, 100), (120, 100)]).ratio_interval(), None);
        assert_eq!(turns(&[(1, 0), (1, 0), (1, 0)]).ratio_interval(), None);
    }
}
