//! The syslog intake figure: end-to-end durable detections per second through the daemon's
//! real listeners, from a burst.
//!
//! A daemon (`Daemon::start_with`, production journal: `synchronous = FULL`, an fsync per
//! commit, in `TMPDIR`) serves [`INTAKE_TOPOLOGY`]; its devices point at closed loopback ports.
//! One sender writes a burst of OfficeScan CEF detections as fast as it can: over UDP one
//! datagram each from one socket, over TCP LF-framed on one connection. The clock runs from
//! the first write to the moment the last detection is journaled (the syslog accepted counter
//! reaches the burst). Every detection names the same L-Server with its own event id, so the
//! first queues a quarantine (which fails fast on the closed ports) and the rest are journaled
//! as duplicates: what is timed is the intake and the journal, not device work. A detection
//! dropped (queue full) or refused makes the figure fail rather than look fast.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::daemon::config::EngineConfig;
use crate::daemon::metrics::Channel;
use crate::daemon::Daemon;
use crate::engine::{EngineEvent, EngineObserver};
use crate::model::load_site;

/// Counts the journal's commits.
#[derive(Default)]
struct Commits(std::sync::atomic::AtomicU64);

impl EngineObserver for Commits {
    fn on_event(&self, event: &EngineEvent) {
        if matches!(event, EngineEvent::Committed { .. }) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// The site the intake figure's daemon serves.
pub const INTAKE_TOPOLOGY: &str = "fixtures/topologies/vdi-small.toml";

/// Datagrams (or lines) per burst; `--quick` halves it.
pub const BURST: u32 = 20_000;

/// What one loopback datagram of the burst costs the receive buffer: the kernel charges the
/// socket buffer's bookkeeping (about 1 KiB for a 200-byte datagram), not the payload. The
/// bench's daemon asks for a buffer that holds the whole burst, so the figure measures the
/// intake and the journal, not whether the receiver was scheduled in time on a busy machine
/// (a burst that outruns the buffer is lost in the kernel, where no daemon can count it as
/// its own). A site sizes `syslog_in.udp_recv_buffer_bytes` for its own bursts.
const KERNEL_BYTES_PER_DATAGRAM: usize = 2048;

/// How long a burst may take to be journaled before the figure fails.
const BURST_LIMIT: Duration = Duration::from_secs(120);

/// Which listener a burst goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One datagram per detection.
    Udp,
    /// One LF-framed line per detection, one connection.
    Tcp,
}

/// One burst's outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burst {
    /// Detections journaled.
    pub journaled: u64,
    /// First write to last detection durable.
    pub elapsed: Duration,
    /// How long the sender took to write the burst.
    pub written_in: Duration,
    /// Journal commits the burst took.
    pub commits: u64,
}

impl Burst {
    /// Durable detections per second.
    pub fn per_sec(&self) -> f64 {
        self.journaled as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// A detection for VDI-001 with event id `event`.
fn cef(event: u32) -> String {
    format!(
        "CEF:0|Trend Micro|Apex Central|2019|AV:File quarantined|TROJ_GENERIC.A|3|\
         rt=Mar 22 2018 08:23:23 GMT+00:00 dhost=VDI-001 dst=10.110.0.11 externalId={event}"
    )
}

/// A loopback port nothing listens on.
fn closed_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// Sends a burst of `burst` detections over `transport` to a fresh daemon serving
/// `topology`, and waits until all are journaled.
pub async fn measure(topology: &Path, transport: Transport, burst: u32) -> Result<Burst, String> {
    let site = Arc::new(load_site(topology).map_err(|e| format!("{}: {e}", topology.display()))?);
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temp dir: {e}"))?;
    let mut text = format!(
        "topology = \"unused.toml\"\njournal = \"journal.sqlite\"\ntoken = \"bench\"\n\
         [syslog_in]\nudp = \"127.0.0.1:0\"\ntcp = \"127.0.0.1:0\"\n\
         udp_recv_buffer_bytes = {}\n",
        burst as usize * KERNEL_BYTES_PER_DATAGRAM
    );
    let devices = site
        .topology
        .hypervisors
        .iter()
        .map(|h| h.name.clone())
        .chain(site.topology.switches.iter().map(|s| s.name.clone()))
        .chain(site.topology.bmcs.iter().map(|b| b.name.clone()));
    for device in devices {
        text.push_str(&format!(
            "[[devices]]\nname = \"{device}\"\nurl = \"http://127.0.0.1:{}\"\n\
             user = \"bench\"\npassword = \"bench\"\n",
            closed_port()?
        ));
    }
    let config_path = dir.path().join("engine.toml");
    std::fs::write(&config_path, text).map_err(|e| e.to_string())?;
    let config = EngineConfig::load(&config_path)?;
    let commit_count = Arc::new(Commits::default());
    let observer: Arc<dyn EngineObserver> = commit_count.clone();
    let daemon = Daemon::start_with(site, config, "bench".into(), Some(observer))
        .await
        .map_err(|e| e.to_string())?;
    let metrics = daemon.metrics().clone();
    let commits_before = commit_count.0.load(std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    let written = match transport {
        Transport::Udp => {
            let target = daemon.syslog_udp_addr().ok_or("no UDP listener")?;
            tokio::task::spawn_blocking(move || -> Result<Duration, String> {
                let socket = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
                for e in 0..burst {
                    socket
                        .send_to(cef(e).as_bytes(), target)
                        .map_err(|e| e.to_string())?;
                }
                Ok(started.elapsed())
            })
        }
        Transport::Tcp => {
            let target = daemon.syslog_tcp_addr().ok_or("no TCP listener")?;
            tokio::task::spawn_blocking(move || -> Result<Duration, String> {
                let stream = std::net::TcpStream::connect(target).map_err(|e| e.to_string())?;
                let mut out = std::io::BufWriter::new(stream);
                for e in 0..burst {
                    out.write_all(cef(e).as_bytes())
                        .and_then(|()| out.write_all(b"\n"))
                        .map_err(|e| e.to_string())?;
                }
                out.flush().map_err(|e| e.to_string())?;
                Ok(started.elapsed())
            })
        }
    };
    let channel = match transport {
        Transport::Udp => Channel::SyslogUdp,
        Transport::Tcp => Channel::SyslogTcp,
    };
    let target = u64::from(burst);
    let mut elapsed = None;
    while started.elapsed() < BURST_LIMIT {
        if metrics.accepted_count(channel) >= target {
            elapsed = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    let written_in = written
        .await
        .map_err(|e| format!("the sender failed: {e}"))??;
    let journaled = metrics.accepted_count(channel);
    let commits = commit_count
        .0
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(commits_before);
    let rejected = metrics.rejected_map();
    let kernel_drops = metrics.intake.udp_kernel_drops();
    daemon.shutdown().await;
    let Some(elapsed) = elapsed else {
        return Err(format!(
            "{transport:?} burst: {journaled} of {burst} journaled within {BURST_LIMIT:?}; \
             rejected {rejected:?}; dropped by the kernel (UDP receive buffer full): \
             {kernel_drops:?}"
        ));
    };
    Ok(Burst {
        journaled,
        elapsed,
        written_in,
        commits,
    })
}
