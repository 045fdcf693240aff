//! The AV feed suite (`AV-*`): the engine's own intake (`builtin:intake`: the vendor parsers,
//! the syslog listeners, the ePO poller, the HTTP API) for one product's transport and message
//! format. The suite starts the daemon in-process on a small site of its own, plays the AV
//! server itself over the product's transport, and reads what the engine journaled (through
//! its observer, the journal file and its counters).
//!
//! Decisions where the contract is silent (also in `docs/certification.md`):
//! - The suite's site has one AV server named as the golden fixtures name theirs (`osce` for
//!   OfficeScan, `sepm-1` for SEPM, `epo-1` for ePO) at 127.0.0.1, seven physical L-Servers on
//!   one switch, the engine's call timeout [`CALL_TIMEOUT`] and a 2 s operation deadline. The
//!   switch's URL is a closed port: tiers 1 and 2 judge intake, so the operations a detection
//!   starts fail fast and are not looked at; tier 3 runs the full engine in wire mode.
//! - The golden messages are `fixtures/payloads/` (compiled in): for syslog the vendor's lines
//!   of the product's kind, for `epo_api` the rows of `epo-query.txt` served by the ePO
//!   simulator, for `api` the expected detections of the kind as JSON bodies. Each must be
//!   journaled with the expected event id and resolve to the L-Server its IP, else MAC, else
//!   host name names in the site.
//! - "A stranger" is 127.0.0.2 for syslog (Linux routes all of 127.0.0.0/8 to loopback; where
//!   it cannot be bound the check fails saying so) and an unknown `source` for the HTTP API.
//!   The ePO Web API has no stranger (the engine calls the server it was configured with), so
//!   AV-1.3 is required only of pushed feeds.
//! - For `epo_api` the ePO simulator sits behind the certification proxy, which plays the
//!   server's 5xx, 401 and silence; the classification is read from a poller built the way the
//!   daemon builds it, the retry from the daemon's own poller ([`EPO_INTERVAL`]).
//! - Every wait for the engine is bounded by [`WAIT`]; a check that times out fails with what
//!   it saw.
//! - Real AV targets are not certified by this build: the suite needs to play the AV server
//!   (the messages, the faults), so `--url` is refused for the AV family with a message.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

use super::proxy::{CertProxy, Fault, Matcher, Transcript};
use super::target::{AdapterFactory, Target};
use super::{check, CertifyError, CheckResult, Ctx, Options};
use crate::daemon::config::EngineConfig;
use crate::daemon::metrics::{Channel, Reject};
use crate::daemon::Daemon;
use crate::engine::{EngineEvent, EngineObserver, Journal};
use crate::ingest::{epo::ipv4_from_signed, EpoPoller, IngestError};
use crate::model::{AvKind, AvTransport, Category, Detection, Site};
use crate::sim::wire::avsender;
use crate::sim::wire::epo::{EpoEventRow, EpoEvents};
use crate::sim::wire::WireServer;

/// The engine's call timeout in the suite's site; also every ePO poll's.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(500);

/// The daemon's ePO poll interval in the suite.
pub const EPO_INTERVAL: Duration = Duration::from_millis(200);

/// Longest the suite waits for the engine to show something.
pub const WAIT: Duration = Duration::from_secs(5);

/// `syslog_in.max_message_bytes` of the suite's daemon.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024;

/// `api.max_body_bytes` of the suite's daemon.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The ePO login the simulator accepts.
const EPO_USER: &str = "lab";
const EPO_PASSWORD: &str = "lab-pw";

/// The API token of the suite's daemon.
const TOKEN: &str = "qlab-certify-av-token";

/// The suite's L-Servers: path, IP, MAC, host name (those the golden fixtures name).
const LSERVERS: [(&str, &str, &str, &str); 7] = [
    ("/t/vdi-001", "10.110.0.11", "00:50:56:00:00:11", "VDI-001"),
    ("/t/vdi-002", "10.110.0.12", "00:50:56:00:00:12", "VDI-002"),
    ("/t/vdi-003", "10.110.0.13", "00:50:56:00:00:13", "VDI-003"),
    ("/t/vdi-101", "10.110.0.21", "00:50:56:00:01:01", "VDI-101"),
    ("/t/vdi-102", "10.110.0.22", "00:50:56:00:01:02", "VDI-102"),
    ("/t/vdi-103", "10.110.0.23", "00:50:56:00:01:03", "VDI-103"),
    ("/t/sbc-01", "10.110.0.50", "00:19:99:00:00:50", "SBC-01"),
];

/// Golden syslog lines and their expected detections, per kind.
const GOLDEN_CEF: [(&str, &str); 4] = [
    (
        include_str!("../../fixtures/payloads/cef-spyware.log"),
        include_str!("../../fixtures/payloads/cef-spyware.expected.json"),
    ),
    (
        include_str!("../../fixtures/payloads/cef-virus-dhost-only.log"),
        include_str!("../../fixtures/payloads/cef-virus-dhost-only.expected.json"),
    ),
    (
        include_str!("../../fixtures/payloads/cef-virus-dst.log"),
        include_str!("../../fixtures/payloads/cef-virus-dst.expected.json"),
    ),
    (
        include_str!("../../fixtures/payloads/cef-virus-escapes.log"),
        include_str!("../../fixtures/payloads/cef-virus-escapes.expected.json"),
    ),
];
const GOLDEN_SEPM: [(&str, &str); 3] = [
    (
        include_str!("../../fixtures/payloads/sepm-other.log"),
        include_str!("../../fixtures/payloads/sepm-other.expected.json"),
    ),
    (
        include_str!("../../fixtures/payloads/sepm-security-risk.log"),
        include_str!("../../fixtures/payloads/sepm-security-risk.expected.json"),
    ),
    (
        include_str!("../../fixtures/payloads/sepm-virus-found.log"),
        include_str!("../../fixtures/payloads/sepm-virus-found.expected.json"),
    ),
];
const GOLDEN_EPO: [(&str, &str); 2] = [
    (
        include_str!("../../fixtures/payloads/epo-pup.log"),
        include_str!("../../fixtures/payloads/epo-pup.expected.json"),
    ),
    (
        include_str!("../../fixtures/payloads/epo-virus.log"),
        include_str!("../../fixtures/payloads/epo-virus.expected.json"),
    ),
];
const GOLDEN_EPO_QUERY: (&str, &str) = (
    include_str!("../../fixtures/payloads/epo-query.txt"),
    include_str!("../../fixtures/payloads/epo-query.expected.json"),
);

/// The engine's counter of an AV transport.
pub fn channel(transport: AvTransport) -> Channel {
    match transport {
        AvTransport::SyslogUdp => Channel::SyslogUdp,
        AvTransport::SyslogTcp => Channel::SyslogTcp,
        AvTransport::EpoApi => Channel::Epo,
        AvTransport::Api => Channel::Api,
    }
}

/// The AV server's name in the suite's site: the one the golden fixtures carry.
pub fn source_name(kind: AvKind) -> &'static str {
    match kind {
        AvKind::Officescan => "osce",
        AvKind::Sepm => "sepm-1",
        AvKind::Epo => "epo-1",
    }
}

/// One journaled detection as the engine announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Journaled {
    source: String,
    event_id: String,
    disposition: &'static str,
    lserver: Option<String>,
    operation: bool,
    id: i64,
}

/// The engine observer: every detection journaled (or recognized as a duplicate), in order.
#[derive(Default)]
struct Seen(Mutex<Vec<Journaled>>);

impl EngineObserver for Seen {
    fn on_event(&self, event: &EngineEvent) {
        if let EngineEvent::DetectionJournaled {
            source,
            event_id,
            receipt,
        } = event
        {
            if let Ok(mut all) = self.0.lock() {
                all.push(Journaled {
                    source: source.clone(),
                    event_id: event_id.clone(),
                    disposition: receipt.disposition.as_str(),
                    lserver: receipt.lserver.clone(),
                    operation: receipt.operation.is_some(),
                    id: receipt.id,
                });
            }
        }
    }
}

impl Seen {
    fn all(&self) -> Vec<Journaled> {
        self.0.lock().map(|a| a.clone()).unwrap_or_default()
    }

    fn len(&self) -> usize {
        self.0.lock().map(|a| a.len()).unwrap_or(0)
    }

    fn since(&self, mark: usize) -> Vec<Journaled> {
        self.all().into_iter().skip(mark).collect()
    }
}

/// Waits until `check` holds, at most [`WAIT`].
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + WAIT;
    while Instant::now() < until {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// The ePO simulator's side of an `epo_api` run.
struct EpoSide {
    events: EpoEvents,
    /// The simulator's own URL (a second proxy in front of it classifies failures).
    url: String,
    next_auto_id: i64,
    _server: WireServer,
}

/// The running intake and the AV server the suite plays.
struct Feed {
    transport: AvTransport,
    kind: AvKind,
    source: String,
    daemon: Daemon,
    seen: Arc<Seen>,
    journal: std::path::PathBuf,
    epo: Option<EpoSide>,
    /// The API through the certification proxy (pushed over `api`) or the ePO server's URL
    /// through it (`epo_api`).
    proxied: String,
    http: reqwest::Client,
    next_event: u32,
    _dir: tempfile::TempDir,
}

/// The suite's site.
fn site_text(kind: AvKind, transport: AvTransport) -> String {
    let kind_text = match kind {
        AvKind::Officescan => "officescan",
        AvKind::Sepm => "sepm",
        AvKind::Epo => "epo",
    };
    let credentials = if transport == AvTransport::EpoApi {
        format!("credentials = {{ user = \"{EPO_USER}\", password = \"{EPO_PASSWORD}\" }}\n")
    } else {
        String::new()
    };
    let mut t = format!(
        "name = \"certify-av\"\n\
         [[networks]]\nname = \"op\"\nrole = \"operation\"\nvlan = 110\nsubnet = \"10.110.0.0/24\"\n\
         [[networks]]\nname = \"qr\"\nrole = \"quarantine\"\nvlan = 910\nsubnet = \"10.210.0.0/24\"\n\
         [quarantine_map]\n\"op\" = \"qr\"\n\
         [[av_servers]]\nname = \"{}\"\nkind = \"{kind_text}\"\naddress = \"127.0.0.1\"\n{credentials}\
         [[switches]]\nname = \"sw-1\"\nkind = \"restconf\"\nmax_concurrent = 4\n\
         [[tenants]]\nname = \"t\"\nemail = \"admin@example.com\"\n\
         [policy]\ndefault_action = \"quarantine\"\n\
         [engine]\ncall_timeout = \"{}ms\"\noperation_deadline = \"2s\"\n",
        source_name(kind),
        CALL_TIMEOUT.as_millis()
    );
    for (i, (path, ip, mac, host)) in LSERVERS.iter().enumerate() {
        t.push_str(&format!(
            "[[lservers]]\npath = \"{path}\"\ntenant = \"t\"\nkind = \"physical\"\nhostname = \"{host}\"\n\
             nics = [ {{ network = \"op\", ip = \"{ip}\", mac = \"{mac}\", switch = \"sw-1\", port = \"Ethernet1/{}\" }} ]\n",
            i + 1
        ));
    }
    t
}

fn setup(what: &str, e: impl std::fmt::Display) -> CertifyError {
    CertifyError::Setup(format!("AV suite: {what}: {e}"))
}

impl Feed {
    /// Starts the ePO simulator (for `epo_api`), the daemon, and the proxy in front of the
    /// ePO simulator or of the daemon's API.
    async fn start(
        kind: AvKind,
        transport: AvTransport,
        transcript: &Transcript,
        edit: &SiteEdit,
    ) -> Result<(Feed, CertProxy, Target), CertifyError> {
        let dir = tempfile::tempdir().map_err(|e| setup("temporary folder", e))?;
        let site_file = dir.path().join("site.toml");
        let text = edit(site_text(kind, transport));
        std::fs::write(&site_file, &text).map_err(|e| setup("site file", e))?;
        let topology = crate::model::load::load_topology_str(&site_file, &text)
            .map_err(|e| setup("site", e))?;
        let site = Arc::new(Site::new(topology).map_err(|e| setup("site", e))?);
        let closed = super::refused_url().await.map_err(|e| setup("switch", e))?;
        let mut epo = None;
        let mut epo_proxy = None;
        let mut pollers = String::new();
        if transport == AvTransport::EpoApi {
            let events = EpoEvents::default();
            let server = crate::sim::wire::epo::start(events.clone(), EPO_USER, EPO_PASSWORD)
                .await
                .map_err(|e| setup("ePO simulator", e))?;
            transcript.add_secret(EPO_PASSWORD);
            let proxy = CertProxy::start(&server.url(), None, "sim:epo", transcript.clone())
                .await
                .map_err(|e| setup("proxy", e))?;
            pollers = format!(
                "[[epo_pollers]]\nsource = \"{}\"\nurl = \"{}\"\nuser = \"{EPO_USER}\"\npassword = \"{EPO_PASSWORD}\"\ninterval = \"{}ms\"\n",
                source_name(kind),
                proxy.url(),
                EPO_INTERVAL.as_millis()
            );
            epo = Some(EpoSide {
                events,
                url: server.url(),
                next_auto_id: 1,
                _server: server,
            });
            epo_proxy = Some(proxy);
        }
        let config_text = format!(
            "topology = \"site.toml\"\njournal = \"journal.sqlite\"\ntoken = \"{TOKEN}\"\n\
             [api]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = {MAX_BODY_BYTES}\n\
             [syslog_in]\nudp = \"127.0.0.1:0\"\ntcp = \"127.0.0.1:0\"\nmax_message_bytes = {MAX_MESSAGE_BYTES}\n\
             [[devices]]\nname = \"sw-1\"\nurl = \"{closed}\"\nuser = \"qlab\"\npassword = \"qlab\"\n{pollers}"
        );
        let config_file = dir.path().join("engine.toml");
        std::fs::write(&config_file, config_text).map_err(|e| setup("engine config", e))?;
        let config = EngineConfig::load(&config_file).map_err(|e| setup("engine config", e))?;
        let journal = config.journal.clone();
        let seen = Arc::new(Seen::default());
        let daemon = Daemon::start_with(site, config, TOKEN.into(), Some(seen.clone()))
            .await
            .map_err(|e| setup("daemon", e))?;
        transcript.add_secret(TOKEN);
        let (proxy, target_url) = match epo_proxy {
            Some(proxy) => {
                let url = proxy.url();
                (proxy, url)
            }
            None => {
                let proxy =
                    CertProxy::start(daemon.api_url(), None, "intake:api", transcript.clone())
                        .await
                        .map_err(|e| setup("proxy", e))?;
                let url = daemon.api_url().to_string();
                (proxy, url)
            }
        };
        let target = Target {
            url: target_url,
            user: String::new(),
            password: String::new(),
            ca_pem: None,
            sim: None,
        };
        let http = reqwest::Client::builder()
            .timeout(WAIT)
            .build()
            .map_err(|e| setup("HTTP client", e))?;
        let feed = Feed {
            transport,
            kind,
            source: source_name(kind).to_string(),
            daemon,
            seen,
            journal,
            epo,
            proxied: proxy.url(),
            http,
            next_event: 0,
            _dir: dir,
        };
        Ok((feed, proxy, target))
    }

    fn udp(&self) -> Result<SocketAddr, String> {
        self.daemon
            .syslog_udp_addr()
            .ok_or_else(|| "the daemon has no UDP syslog listener".to_string())
    }

    fn tcp(&self) -> Result<SocketAddr, String> {
        self.daemon
            .syslog_tcp_addr()
            .ok_or_else(|| "the daemon has no TCP syslog listener".to_string())
    }

    fn rejected(&self, reason: Reject) -> u64 {
        self.daemon.metrics().rejected(reason)
    }

    fn accepted(&self) -> u64 {
        self.daemon
            .metrics()
            .accepted_count(channel(self.transport))
    }

    /// Detections the engine counted for the suite's AV server, any disposition.
    fn received(&self) -> u64 {
        self.daemon
            .engine()
            .stats()
            .detections
            .iter()
            .filter(|((source, _), _)| *source == self.source)
            .map(|(_, n)| n)
            .sum()
    }

    /// A fresh detection for `lserver` (an index into [`LSERVERS`]) with a new event id.
    fn detection(&mut self, lserver: usize, tag: &str) -> Detection {
        self.next_event += 1;
        let (_, ip, mac, host) = LSERVERS[lserver];
        Detection {
            source: self.source.clone(),
            event_id: format!("qlab-cert-{tag}-{}", self.next_event),
            ip: ip.parse().ok(),
            mac: Some(mac.to_string()),
            hostname: Some(host.to_string()),
            threat: "TROJ_GENERIC.A".into(),
            category: Category::Virus,
        }
    }

    /// The event id the engine will journal for `d` as this feed carries it.
    fn engine_event_id(&self, d: &Detection) -> String {
        match self.transport {
            AvTransport::Api => d.event_id.clone(),
            // The sender puts its id in the agent GUID; the poller builds the id from the
            // GUID, the threat event id and the detection time.
            AvTransport::EpoApi => format!("epo-{{{}}}-1027-2026-01-01T00:00:00", d.event_id),
            // What the engine's parser makes of the line the sender writes.
            _ => match crate::ingest::parse_detection(
                self.kind,
                &self.source,
                avsender::syslog_line(self.kind, d).as_bytes(),
            ) {
                Ok(parsed) => parsed.event_id,
                Err(_) => d.event_id.clone(),
            },
        }
    }

    /// Hands `d` over the product's transport.
    async fn deliver(&mut self, d: &Detection) -> Result<(), String> {
        match self.transport {
            AvTransport::SyslogUdp | AvTransport::SyslogTcp => {
                let line = avsender::syslog_line(self.kind, d);
                self.push_raw(LOCAL, line.as_bytes()).await
            }
            AvTransport::EpoApi => {
                let epo = self.epo.as_mut().ok_or("no ePO simulator")?;
                let row = avsender::epo_row(epo.next_auto_id, d);
                epo.next_auto_id += 1;
                epo.events
                    .lock()
                    .map_err(|_| "ePO rows poisoned")?
                    .push(row);
                Ok(())
            }
            AvTransport::Api => {
                let body = serde_json::to_vec(d).map_err(|e| e.to_string())?;
                let status = self.post_raw(body).await?;
                if status != 202 {
                    return Err(format!("POST /api/v1/detections answered {status}"));
                }
                Ok(())
            }
        }
    }

    /// Adds a raw ePO row (`epo_api`), numbered next unless it carries its own `AutoID`.
    fn push_row(&mut self, mut row: EpoEventRow) -> Result<(), String> {
        let epo = self.epo.as_mut().ok_or("no ePO simulator")?;
        if row.auto_id < epo.next_auto_id {
            row.auto_id = epo.next_auto_id;
        }
        epo.next_auto_id = row.auto_id + 1;
        epo.events
            .lock()
            .map_err(|_| "ePO rows poisoned")?
            .push(row);
        Ok(())
    }

    /// Sends raw bytes from `from`: one datagram (UDP), one octet-counted frame on a new
    /// connection (TCP), or one request body (API).
    async fn push_raw(&self, from: IpAddr, payload: &[u8]) -> Result<(), String> {
        match self.transport {
            AvTransport::SyslogUdp => {
                let socket = UdpSocket::bind((from, 0))
                    .await
                    .map_err(|e| format!("cannot bind {from}: {e}"))?;
                socket
                    .send_to(payload, self.udp()?)
                    .await
                    .map_err(|e| format!("UDP send: {e}"))?;
                Ok(())
            }
            AvTransport::SyslogTcp => {
                let mut stream = connect_from(from, self.tcp()?).await?;
                let mut frame = format!("{} ", payload.len()).into_bytes();
                frame.extend_from_slice(payload);
                // A stranger's connection may be closed before the frame is written.
                let _ = stream.write_all(&frame).await;
                let _ = stream.shutdown().await;
                Ok(())
            }
            AvTransport::Api => self.post_raw(payload.to_vec()).await.map(|_| ()),
            AvTransport::EpoApi => Err("the ePO Web API is polled, nothing is pushed".into()),
        }
    }

    /// `POST /api/v1/detections` with `body` through the proxy; the status.
    async fn post_raw(&self, body: Vec<u8>) -> Result<u16, String> {
        let reply = self
            .http
            .post(format!("{}/api/v1/detections", self.proxied))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("POST /api/v1/detections: {e}"))?;
        Ok(reply.status().as_u16())
    }

    /// Waits until `event_id` was journaled; its first announcement.
    async fn wait_for(&self, event_id: &str) -> Result<Journaled, String> {
        let find = || {
            self.seen
                .all()
                .into_iter()
                .find(|j| j.source == self.source && j.event_id == event_id)
        };
        if eventually(|| find().is_some()).await {
            find().ok_or_else(|| "vanished".to_string())
        } else {
            Err(format!(
                "event {event_id:?} was not journaled within {WAIT:?} (rejections: {:?})",
                self.daemon.metrics().rejected_map()
            ))
        }
    }

    /// Waits until counter `reason` passed `before`.
    async fn wait_rejected(&self, reason: Reject, before: u64) -> Result<u64, String> {
        if eventually(|| self.rejected(reason) > before).await {
            Ok(self.rejected(reason) - before)
        } else {
            Err(format!(
                "{} stayed at {before} within {WAIT:?} (rejections: {:?})",
                reason.as_str(),
                self.daemon.metrics().rejected_map()
            ))
        }
    }

    /// Delivers a fresh detection and waits for it: the intake still takes messages.
    async fn still_takes(&mut self, lserver: usize) -> Result<Journaled, String> {
        let d = self.detection(lserver, "next");
        self.deliver(&d).await?;
        let id = self.engine_event_id(&d);
        self.wait_for(&id).await
    }

    /// The next detection is taken and nothing else was journaled after `mark`.
    async fn only_next_taken(&mut self, mark: usize, lserver: usize) -> Result<(), String> {
        let next = self.still_takes(lserver).await?;
        self.only_journaled(mark, &[next.event_id.as_str()])
    }

    /// The intake refused something as `reason` (counter past `before`), then took the next
    /// detection and nothing else after `mark`: how many `reason` counted.
    async fn refused_then_takes(
        &mut self,
        reason: Reject,
        before: u64,
        mark: usize,
        lserver: usize,
    ) -> Result<u64, String> {
        let n = self.wait_rejected(reason, before).await?;
        self.only_next_taken(mark, lserver).await?;
        Ok(n)
    }

    /// Fails when anything but `allowed` event ids was journaled after `mark`.
    fn only_journaled(&self, mark: usize, allowed: &[&str]) -> Result<(), String> {
        let extra: Vec<String> = self
            .seen
            .since(mark)
            .into_iter()
            .filter(|j| !allowed.contains(&j.event_id.as_str()))
            .map(|j| format!("{}/{} ({})", j.source, j.event_id, j.disposition))
            .collect();
        if extra.is_empty() {
            Ok(())
        } else {
            Err(format!("journaled what it must not: {}", extra.join(", ")))
        }
    }
}

/// The AV server's address in the suite's site.
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// An address that is no AV server's.
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

async fn connect_from(from: IpAddr, to: SocketAddr) -> Result<TcpStream, String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket
        .bind(SocketAddr::new(from, 0))
        .map_err(|e| format!("cannot bind {from}: {e}"))?;
    tokio::time::timeout(WAIT, socket.connect(to))
        .await
        .map_err(|_| format!("connect to {to}: no answer within {WAIT:?}"))?
        .map_err(|e| format!("connect to {to}: {e}"))
}

/// The L-Server the site resolves `d` to: by IP, else MAC, else host name.
fn expected_lserver(d: &Detection) -> Option<&'static str> {
    let by_ip = d.ip.and_then(|ip| {
        LSERVERS
            .iter()
            .find(|l| l.1.parse::<IpAddr>().ok() == Some(ip))
    });
    let by_mac = || {
        d.mac.as_deref().and_then(|m| {
            LSERVERS
                .iter()
                .find(|l| l.2.eq_ignore_ascii_case(&m.replace('-', ":")))
        })
    };
    let by_host = || {
        d.hostname
            .as_deref()
            .and_then(|h| LSERVERS.iter().find(|l| l.3.eq_ignore_ascii_case(h)))
    };
    by_ip.or_else(by_mac).or_else(by_host).map(|l| l.0)
}

/// The golden messages of the feed: (message, expected detection).
fn golden(kind: AvKind, transport: AvTransport) -> Result<Vec<(String, Detection)>, String> {
    let parse = |text: &str| -> Result<Detection, String> {
        serde_json::from_str(text).map_err(|e| format!("golden expectation: {e}"))
    };
    if transport == AvTransport::EpoApi {
        let expected: Vec<Detection> = serde_json::from_str(GOLDEN_EPO_QUERY.1)
            .map_err(|e| format!("epo-query.expected.json: {e}"))?;
        let body = GOLDEN_EPO_QUERY
            .0
            .trim_start()
            .strip_prefix("OK:")
            .ok_or("epo-query.txt: no `OK:`")?;
        let rows: Vec<serde_json::Value> =
            serde_json::from_str(body).map_err(|e| format!("epo-query.txt: {e}"))?;
        return Ok(rows
            .into_iter()
            .map(|r| r.to_string())
            .zip(expected)
            .collect());
    }
    let pairs: &[(&str, &str)] = match kind {
        AvKind::Officescan => &GOLDEN_CEF,
        AvKind::Sepm => &GOLDEN_SEPM,
        AvKind::Epo => &GOLDEN_EPO,
    };
    pairs
        .iter()
        .map(|(line, expected)| {
            let d = parse(expected)?;
            let message = if transport == AvTransport::Api {
                serde_json::to_string(&d).map_err(|e| e.to_string())?
            } else {
                line.trim_end_matches(['\r', '\n']).to_string()
            };
            Ok((message, d))
        })
        .collect()
}

/// An ePO JSON row (`EPOEvents.<column>` keys) as the simulator's row.
fn epo_row_of(json: &str) -> Result<EpoEventRow, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let s = |k: &str| {
        v.get(format!("EPOEvents.{k}"))
            .and_then(|x| x.as_str())
            .map(str::to_string)
    };
    let i = |k: &str| v.get(format!("EPOEvents.{k}")).and_then(|x| x.as_i64());
    Ok(EpoEventRow {
        auto_id: i("AutoID").ok_or("no AutoID")?,
        agent_guid: s("AgentGUID"),
        detected_utc: s("DetectedUTC").unwrap_or_default(),
        target_ipv4: i("TargetIPV4").and_then(ipv4_from_signed),
        target_host_name: s("TargetHostName"),
        target_mac: s("TargetMAC"),
        threat_name: s("ThreatName").unwrap_or_default(),
        threat_category: s("ThreatCategory").unwrap_or_default(),
        threat_type: s("ThreatType").unwrap_or_default(),
        threat_event_id: i("ThreatEventID").unwrap_or_default(),
    })
}

/// A rewrite of the suite's site text (tests break the deployment on purpose with it).
pub type SiteEdit = dyn Fn(String) -> String + Send + Sync;

/// Runs every AV check of tiers 1 and 2 up to the asked tier; the results and the transcript.
pub fn run(
    options: &Options,
    factory: AdapterFactory,
) -> Result<(Vec<CheckResult>, Transcript), CertifyError> {
    run_edited(options, factory, &|t| t)
}

/// [`run`] on the suite's site rewritten by `edit`: a deliberately wrong deployment, which
/// the checks that exist to catch it must fail.
pub fn run_edited(
    options: &Options,
    factory: AdapterFactory,
    edit: &SiteEdit,
) -> Result<(Vec<CheckResult>, Transcript), CertifyError> {
    if options.real.is_some() {
        return Err(CertifyError::Input(
            "--family av --url: the AV suite plays the AV server itself (its messages and its \
             faults); this build certifies AV feeds with --target sim only"
                .into(),
        ));
    }
    let product = &options.product;
    let transport = product.av_transport().ok_or_else(|| {
        CertifyError::Input(format!(
            "{}: protocol {:?} is no AV transport (one of {})",
            options.product_file.display(),
            product.protocol,
            super::product::AV_PROTOCOLS.join(", ")
        ))
    })?;
    let kind = product.resources.av_kind.ok_or_else(|| {
        CertifyError::Input(format!(
            "{}: [resources] av_kind is missing",
            options.product_file.display()
        ))
    })?;
    if options.adapter != super::target::AdapterSource::Intake {
        return Err(CertifyError::Input(format!(
            "--adapter {}: an AV feed is certified with builtin:{}",
            options.adapter.describe(),
            super::target::INTAKE
        )));
    }
    let runtime = super::runtime()?;
    let transcript = Transcript::default();
    let results = runtime.block_on(async {
        let (mut feed, proxy, target) = Feed::start(kind, transport, &transcript, edit).await?;
        let mut ctx = Ctx {
            options,
            factory,
            target: &target,
            proxy,
            transcript: transcript.clone(),
            results: Vec::new(),
        };
        suite(&mut ctx, &mut feed).await;
        feed.daemon.shutdown().await;
        Ok::<_, CertifyError>(ctx.results)
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok((results, transcript))
}

async fn suite(ctx: &mut Ctx<'_>, feed: &mut Feed) {
    check!(ctx, "AV-1.1", golden_check(feed).await);
    check!(ctx, "AV-1.2", counted(feed).await);
    check!(ctx, "AV-1.3", stranger(feed).await);
    check!(ctx, "AV-1.4", duplicate(feed).await);
    check!(ctx, "AV-1.5", malformed(feed).await);
    check!(ctx, "AV-1.6", oversized(feed).await);
    check!(ctx, "AV-1.7", not_found(feed).await);
    check!(ctx, "AV-2.1", cut_mid_message(feed).await);
    check!(ctx, "AV-2.2", garbled(feed).await);
    check!(ctx, "AV-2.3", peer_closes(feed).await);
    check!(ctx, "AV-2.4", slow_sender(feed).await);
    for (id, fault) in [
        ("AV-2.5", Fault::Unavailable),
        ("AV-2.6", Fault::Unauthorized),
        ("AV-2.7", Fault::Blackhole),
    ] {
        check!(ctx, id, {
            let outcome = epo_fault(feed, &ctx.proxy, &ctx.transcript, fault).await;
            ctx.proxy.disarm();
            outcome
        });
    }
}

/// AV-1.1.
async fn golden_check(feed: &mut Feed) -> Result<String, String> {
    let messages = golden(feed.kind, feed.transport)?;
    for (message, _) in &messages {
        match feed.transport {
            AvTransport::EpoApi => feed.push_row(epo_row_of(message)?)?,
            AvTransport::Api => {
                let status = feed.post_raw(message.clone().into_bytes()).await?;
                if status != 202 {
                    return Err(format!("{message}: POST answered {status}"));
                }
            }
            _ => feed.push_raw(LOCAL, message.as_bytes()).await?,
        }
    }
    let mut lines = Vec::new();
    for (_, expected) in &messages {
        let j = feed.wait_for(&expected.event_id).await?;
        let want = expected_lserver(expected);
        if j.lserver.as_deref() != want {
            return Err(format!(
                "{}: resolved to {:?}, the message names {want:?}",
                expected.event_id, j.lserver
            ));
        }
        lines.push(format!(
            "{} -> {} ({})",
            expected.event_id,
            want.unwrap_or("-"),
            j.disposition
        ));
    }
    Ok(format!(
        "{} golden messages: {}",
        messages.len(),
        lines.join("; ")
    ))
}

/// AV-1.2.
async fn counted(feed: &mut Feed) -> Result<String, String> {
    let (received, accepted) = (feed.received(), feed.accepted());
    let d = feed.detection(1, "count");
    let id = feed.engine_event_id(&d);
    feed.deliver(&d).await?;
    // Over the API the 202 is the acknowledgement: the journal must hold it already (R7).
    let durable_at_ack = if feed.transport == AvTransport::Api {
        Some(journal_has(&feed.journal, &feed.source, &id)?)
    } else {
        None
    };
    feed.wait_for(&id).await?;
    if !eventually(|| feed.received() > received && feed.accepted() > accepted).await {
        return Err(format!(
            "counters did not move: detections received {received} -> {}, {} {accepted} -> {}",
            feed.received(),
            channel(feed.transport).as_str(),
            feed.accepted()
        ));
    }
    if durable_at_ack == Some(false) {
        return Err("acknowledged (202) before the journal held the detection".into());
    }
    if !journal_has(&feed.journal, &feed.source, &id)? {
        return Err(format!("{id}: announced but not in the journal"));
    }
    Ok(format!(
        "{id}: journaled{}; detections received {} -> {}, {} {} -> {}",
        if durable_at_ack.is_some() {
            " before the 202"
        } else {
            ""
        },
        received,
        feed.received(),
        channel(feed.transport).as_str(),
        accepted,
        feed.accepted()
    ))
}

/// Whether the journal file holds `(source, event_id)`, read through a connection of its own.
fn journal_has(path: &Path, source: &str, event_id: &str) -> Result<bool, String> {
    let journal = Journal::open(path).map_err(|e| format!("journal {}: {e}", path.display()))?;
    journal
        .find_detection(source, event_id)
        .map(|id| id.is_some())
        .map_err(|e| format!("journal {}: {e}", path.display()))
}

/// AV-1.3.
async fn stranger(feed: &mut Feed) -> Result<String, String> {
    let mark = feed.seen.len();
    let d = feed.detection(2, "stranger");
    let id = feed.engine_event_id(&d);
    let (reason, count) = match feed.transport {
        AvTransport::Api => {
            let mut d = d.clone();
            d.source = "qlab-absent-av".into();
            let body = serde_json::to_vec(&d).map_err(|e| e.to_string())?;
            let before = feed.rejected(Reject::UnknownSource);
            let status = feed.post_raw(body).await?;
            if !(400..500).contains(&status) {
                return Err(format!("an unknown source was answered {status}"));
            }
            (
                Reject::UnknownSource,
                feed.wait_rejected(Reject::UnknownSource, before).await?,
            )
        }
        _ => {
            let before = feed.rejected(Reject::SyslogUnknownSource);
            let line = avsender::syslog_line(feed.kind, &d);
            feed.push_raw(STRANGER, line.as_bytes()).await?;
            (
                Reject::SyslogUnknownSource,
                feed.wait_rejected(Reject::SyslogUnknownSource, before)
                    .await?,
            )
        }
    };
    feed.only_next_taken(mark, 2).await?;
    Ok(format!(
        "{} counted {count} (never journaled as {id}); the AV server's next message was taken",
        reason.as_str()
    ))
}

/// AV-1.4.
async fn duplicate(feed: &mut Feed) -> Result<String, String> {
    let mark = feed.seen.len();
    let d = feed.detection(2, "dup");
    feed.deliver(&d).await?;
    let id = feed.engine_event_id(&d);
    feed.wait_for(&id).await?;
    feed.deliver(&d).await?;
    let source = feed.source.clone();
    let mine = || -> Vec<Journaled> {
        feed.seen
            .since(mark)
            .into_iter()
            .filter(|j| j.source == source)
            .collect()
    };
    eventually(|| mine().len() >= 2).await;
    let got = mine();
    match got.as_slice() {
        [first, second]
            // The first copy may already be a duplicate by L-Server (R4: its quarantine is
            // under way from an earlier check); the second must be the same event.
            if first.event_id == second.event_id
                && second.disposition == "duplicate"
                && first.id == second.id =>
        {
            Ok(format!(
                "{}: {} then duplicate of detection {}",
                first.event_id, first.disposition, first.id
            ))
        }
        _ => Err(format!(
            "the same event twice was journaled as {:?}",
            got.iter()
                .map(|j| format!("{} {} #{}", j.event_id, j.disposition, j.id))
                .collect::<Vec<_>>()
        )),
    }
}

/// A row no detection can be made of (no match key) or whose threat name is `threat`.
fn bad_row(threat: String, with_key: bool) -> EpoEventRow {
    EpoEventRow {
        auto_id: 0,
        agent_guid: None,
        detected_utc: "2026-01-01T00:00:00".into(),
        target_ipv4: None,
        target_host_name: with_key.then(|| "VDI-003".to_string()),
        target_mac: None,
        threat_name: threat,
        threat_category: "av.detect".into(),
        threat_type: "virus".into(),
        threat_event_id: 1027,
    }
}

/// AV-1.5.
async fn malformed(feed: &mut Feed) -> Result<String, String> {
    let mark = feed.seen.len();
    let (reason, payload): (Reject, Vec<u8>) = match feed.transport {
        AvTransport::EpoApi => {
            let before = feed.rejected(Reject::EpoBadRow);
            feed.push_row(bad_row("W32/Elspy.worm".into(), false))?;
            let n = feed
                .refused_then_takes(Reject::EpoBadRow, before, mark, 2)
                .await?;
            return Ok(format!(
                "a row without a match key: epo_bad_row counted {n}; the next row was taken"
            ));
        }
        AvTransport::Api => (
            Reject::MalformedJson,
            br#"{"source": "x", "event_id": "#.to_vec(),
        ),
        _ => (
            Reject::SyslogUnparsable,
            b"<13>1 2026-01-01T00:00:00Z host app - - - this is not a detection".to_vec(),
        ),
    };
    let before = feed.rejected(reason);
    feed.push_raw(LOCAL, &payload).await?;
    let n = feed.refused_then_takes(reason, before, mark, 2).await?;
    Ok(format!(
        "{} counted {n}; the next message was taken",
        reason.as_str()
    ))
}

/// AV-1.6.
async fn oversized(feed: &mut Feed) -> Result<String, String> {
    let mark = feed.seen.len();
    let d = feed.detection(3, "big");
    let (reason, payload) = match feed.transport {
        AvTransport::EpoApi => {
            let before = feed.rejected(Reject::EpoBadRow);
            feed.push_row(bad_row("W".repeat(64 * 1024), true))?;
            let n = feed
                .refused_then_takes(Reject::EpoBadRow, before, mark, 3)
                .await?;
            return Ok(format!(
                "a row with a 64 KiB threat name: epo_bad_row counted {n}; the next row was taken"
            ));
        }
        AvTransport::Api => {
            let mut big = d.clone();
            big.threat = "W".repeat(MAX_BODY_BYTES * 2);
            (
                Reject::BodyTooLarge,
                serde_json::to_vec(&big).map_err(|e| e.to_string())?,
            )
        }
        _ => {
            let line = avsender::syslog_line(feed.kind, &d);
            // Padded inside the last field, not with blanks: the intake trims trailing
            // whitespace, and a parseable message is what must be refused for its size.
            let padded = format!("{line}{}", "x".repeat(MAX_MESSAGE_BYTES * 2));
            (Reject::SyslogOversized, padded.into_bytes())
        }
    };
    let before = feed.rejected(reason);
    feed.push_raw(LOCAL, &payload).await?;
    let n = feed.refused_then_takes(reason, before, mark, 3).await?;
    Ok(format!(
        "{} bytes: {} counted {n}; the next message was taken",
        payload.len(),
        reason.as_str()
    ))
}

/// AV-1.7.
async fn not_found(feed: &mut Feed) -> Result<String, String> {
    let mut d = feed.detection(0, "absent");
    d.ip = "10.110.0.99".parse().ok();
    d.mac = Some("02:00:00:00:99:99".into());
    d.hostname = Some("QLAB-ABSENT".into());
    let id = feed.engine_event_id(&d);
    feed.deliver(&d).await?;
    let j = feed.wait_for(&id).await?;
    if j.disposition != "not_found" || j.operation || j.lserver.is_some() {
        return Err(format!(
            "{id}: {} (L-Server {:?}, operation {})",
            j.disposition, j.lserver, j.operation
        ));
    }
    Ok(format!("{id}: not_found, no operation"))
}

/// Opens a connection from the AV server's address, writes `bytes`, then resets it (linger 0).
async fn write_then_reset(to: SocketAddr, bytes: &[u8]) -> Result<(), String> {
    let mut stream = connect_from(LOCAL, to).await?;
    stream
        .write_all(bytes)
        .await
        .map_err(|e| format!("write: {e}"))?;
    stream.flush().await.map_err(|e| format!("flush: {e}"))?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A zero linger is the point: the close sends a reset at once, it never blocks.
    #[allow(deprecated)]
    stream
        .set_linger(Some(Duration::ZERO))
        .map_err(|e| format!("linger: {e}"))?;
    drop(stream);
    Ok(())
}

/// AV-2.1.
async fn cut_mid_message(feed: &mut Feed) -> Result<String, String> {
    let mark = feed.seen.len();
    let d = feed.detection(4, "cut");
    let cut_id = feed.engine_event_id(&d);
    match feed.transport {
        AvTransport::SyslogTcp => {
            let line = avsender::syslog_line(feed.kind, &d);
            let frame = format!("{} {line}", line.len());
            write_then_reset(feed.tcp()?, &frame.as_bytes()[..frame.len() / 2]).await?;
        }
        AvTransport::Api => {
            let body = serde_json::to_string(&d).map_err(|e| e.to_string())?;
            let head = format!(
                "POST /api/v1/detections HTTP/1.1\r\nhost: qlab\r\nauthorization: Bearer {TOKEN}\r\n\
                 content-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
                body.len(),
                &body[..body.len() / 2]
            );
            write_then_reset(feed.daemon.api_addr(), head.as_bytes()).await?;
        }
        _ => return Err("not a stream transport".into()),
    }
    let next = feed.still_takes(4).await?;
    // The cut message must never show up, not even late.
    tokio::time::sleep(Duration::from_millis(200)).await;
    feed.only_journaled(mark, &[next.event_id.as_str()])?;
    Ok(format!(
        "cut mid-message: {cut_id} not journaled; the next connection's {} was",
        next.event_id
    ))
}

/// AV-2.2.
async fn garbled(feed: &mut Feed) -> Result<String, String> {
    let mark = feed.seen.len();
    let d = feed.detection(5, "garbled");
    let line = avsender::syslog_line(feed.kind, &d);
    let (reason, what) = match feed.transport {
        AvTransport::SyslogUdp => {
            let before = feed.rejected(Reject::SyslogUnparsable);
            // Cut inside the header, and a line with a byte that is no UTF-8.
            feed.push_raw(LOCAL, &line.as_bytes()[..12]).await?;
            let mut bad = line.clone().into_bytes();
            let at = bad.len() / 2;
            bad[at] = 0xff;
            feed.push_raw(LOCAL, &bad).await?;
            let n = feed.wait_rejected(Reject::SyslogUnparsable, before).await?;
            if !eventually(|| feed.rejected(Reject::SyslogUnparsable) >= before + 2).await {
                return Err(format!(
                    "of a truncated and a garbled datagram only {n} was counted"
                ));
            }
            (
                Reject::SyslogUnparsable,
                "a truncated and a garbled datagram",
            )
        }
        AvTransport::SyslogTcp => {
            let before = feed.rejected(Reject::SyslogBadFraming);
            let mut stream = connect_from(LOCAL, feed.tcp()?).await?;
            let _ = stream.write_all(b"12x34 junk").await;
            feed.wait_rejected(Reject::SyslogBadFraming, before).await?;
            (Reject::SyslogBadFraming, "a garbled octet count")
        }
        AvTransport::Api => {
            let before = feed.rejected(Reject::MalformedJson);
            let mut body = serde_json::to_vec(&d).map_err(|e| e.to_string())?;
            let at = body.len() / 2;
            body[at] = 0xff;
            let status = feed.post_raw(body).await?;
            if status != 400 {
                return Err(format!("a garbled body was answered {status}"));
            }
            feed.wait_rejected(Reject::MalformedJson, before).await?;
            (Reject::MalformedJson, "a body with a byte that is no UTF-8")
        }
        AvTransport::EpoApi => return Err("the ePO Web API is polled".into()),
    };
    feed.only_next_taken(mark, 5).await?;
    Ok(format!(
        "{what}: {} counted; the next message was taken",
        reason.as_str()
    ))
}

/// AV-2.3.
async fn peer_closes(feed: &mut Feed) -> Result<String, String> {
    let mark = feed.seen.len();
    let whole = feed.detection(6, "whole");
    let partial = feed.detection(6, "partial");
    let whole_id = feed.engine_event_id(&whole);
    let a = avsender::syslog_line(feed.kind, &whole);
    let b = avsender::syslog_line(feed.kind, &partial);
    let b_frame = format!("{} {b}", b.len());
    let mut bytes = format!("{} {a}", a.len()).into_bytes();
    bytes.extend_from_slice(&b_frame.as_bytes()[..b_frame.len() / 2]);
    let mut stream = connect_from(LOCAL, feed.tcp()?).await?;
    stream
        .write_all(&bytes)
        .await
        .map_err(|e| format!("write: {e}"))?;
    stream.shutdown().await.map_err(|e| format!("close: {e}"))?;
    drop(stream);
    feed.wait_for(&whole_id).await?;
    let next = feed.still_takes(6).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    feed.only_journaled(mark, &[whole_id.as_str(), next.event_id.as_str()])?;
    Ok(format!(
        "the complete frame ({whole_id}) was taken, the half frame before the close was not"
    ))
}

/// AV-2.4.
async fn slow_sender(feed: &mut Feed) -> Result<String, String> {
    let d = feed.detection(0, "slow");
    let id = feed.engine_event_id(&d);
    let line = avsender::syslog_line(feed.kind, &d);
    let frame = format!("{} {line}", line.len()).into_bytes();
    let mut stream = connect_from(LOCAL, feed.tcp()?).await?;
    let pieces = 8;
    let step = frame.len().div_ceil(pieces);
    for chunk in frame.chunks(step) {
        stream
            .write_all(chunk)
            .await
            .map_err(|e| format!("write: {e}"))?;
        stream.flush().await.map_err(|e| format!("flush: {e}"))?;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let _ = stream.shutdown().await;
    let j = feed.wait_for(&id).await?;
    Ok(format!(
        "{} bytes in {pieces} pieces 60 ms apart: {id} journaled ({})",
        frame.len(),
        j.disposition
    ))
}

/// AV-2.5 to AV-2.7: `fault` in front of the ePO server.
async fn epo_fault(
    feed: &mut Feed,
    proxy: &CertProxy,
    transcript: &Transcript,
    fault: Fault,
) -> Result<String, String> {
    let mark = feed.seen.len();
    let failed = feed.rejected(Reject::EpoPollFailed);
    // How a poller built like the daemon's classifies the failure, through a proxy of its own
    // (an armed fault fires once: the daemon's poller must not take this one).
    let server = feed.epo.as_ref().ok_or("no ePO simulator")?.url.clone();
    let own = CertProxy::start(&server, None, "sim:epo-classify", transcript.clone()).await?;
    own.arm(fault, Matcher::any());
    let mut poller = EpoPoller::new(
        feed.source.clone(),
        own.url(),
        EPO_USER,
        EPO_PASSWORD,
        CALL_TIMEOUT,
    )
    .map_err(|e| e.reason())?;
    let t = Instant::now();
    let result = poller.poll_once(i64::MAX - 1).await;
    let took = t.elapsed();
    let class = match (&result, fault) {
        (Err(IngestError::Status { status, .. }), Fault::Unavailable) if *status >= 500 => {
            format!(
                "HTTP {status}: {}",
                result.as_ref().err().map(|e| e.kind()).unwrap_or("")
            )
        }
        (Err(IngestError::Auth(_)), Fault::Unauthorized) => "auth".to_string(),
        (Err(IngestError::Transport(_)), Fault::Blackhole) => {
            if !super::ended_by_timeout(took, CALL_TIMEOUT) {
                return Err(format!(
                    "the silent server's poll ended after {} ms; the call timeout is {} ms",
                    took.as_millis(),
                    CALL_TIMEOUT.as_millis()
                ));
            }
            format!("transport after {} ms", took.as_millis())
        }
        (other, _) => {
            return Err(format!(
                "{fault:?} in front of ePO: the poll gave {}",
                match other {
                    Ok(_) => "ok".to_string(),
                    Err(e) => format!("{} ({})", e.kind(), e.reason()),
                }
            ))
        }
    };
    // The daemon's poller meets the fault too (armed before the event is stored, so the poll
    // that would bring it fails), counts it, keeps its cursor and brings the event later.
    let d = feed.detection(1, "epo-fault");
    let id = feed.engine_event_id(&d);
    proxy.arm(fault, Matcher::any());
    feed.deliver(&d).await?;
    feed.wait_rejected(Reject::EpoPollFailed, failed).await?;
    let healed = Instant::now();
    feed.wait_for(&id).await?;
    let after = healed.elapsed();
    let bound = EPO_INTERVAL * 2 + CALL_TIMEOUT + Duration::from_secs(1);
    if after > bound {
        return Err(format!(
            "{id} arrived {} ms after the server recovered; the bound is {} ms",
            after.as_millis(),
            bound.as_millis()
        ));
    }
    tokio::time::sleep(EPO_INTERVAL * 2).await;
    // Once: every announcement of the event names the same journaled detection.
    let copies = feed
        .seen
        .since(mark)
        .iter()
        .filter(|j| j.event_id == id)
        .map(|j| j.id)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if copies != 1 {
        return Err(format!("{id} was journaled {copies} times"));
    }
    Ok(format!(
        "classified {class}; epo_poll_failed counted {}; {id} arrived {} ms after recovery",
        feed.rejected(Reject::EpoPollFailed) - failed,
        after.as_millis()
    ))
}
