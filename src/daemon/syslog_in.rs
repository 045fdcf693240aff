//! Syslog listeners for AV servers' detections (R18): UDP (one message per datagram) and TCP
//! (RFC 6587 octet counting or LF framing). A message is taken only from the topology
//! `address` of an AV server; that server's kind picks the parser and its name becomes the
//! detection's `source`. Everything rejected is counted and logged with its reason; nothing
//! here panics or grows without bound.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};

use super::metrics::{Channel, Metrics, Reject};
use crate::engine::Engine;
use crate::ingest::{self, syslog::FrameDecoder, syslog::Framing, IngestError};
use crate::model::{AvKind, Site};

/// Most syslog TCP connections open at once; more are closed at once and counted.
pub const MAX_TCP_CONNECTIONS: usize = 64;

/// A TCP connection that sends nothing for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Largest UDP payload: a datagram cannot be larger.
const MAX_DATAGRAM: usize = 65_535;

/// Turns accepted messages into detections for the engine.
pub(crate) struct Intake {
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    /// AV servers by syslog source address, in topology order (several may share one).
    sources: HashMap<IpAddr, Vec<(String, AvKind)>>,
    max_message: usize,
}

impl Intake {
    /// Intake for `site`'s AV servers; messages above `max_message` bytes are refused.
    pub fn new(
        engine: Arc<Engine>,
        metrics: Arc<Metrics>,
        site: &Site,
        max_message: usize,
    ) -> Intake {
        let mut sources: HashMap<IpAddr, Vec<(String, AvKind)>> = HashMap::new();
        for av in &site.topology.av_servers {
            sources
                .entry(av.address.to_canonical())
                .or_default()
                .push((av.name.clone(), av.kind));
        }
        Intake {
            engine,
            metrics,
            sources,
            // The parsers refuse more than MAX_PAYLOAD_BYTES anyway: clamp so an oversized
            // message is counted as oversized, not as unparsable.
            max_message: max_message.clamp(1, ingest::MAX_PAYLOAD_BYTES),
        }
    }

    /// Whether `peer` is some AV server's address.
    fn knows(&self, peer: IpAddr) -> bool {
        self.sources.contains_key(&peer.to_canonical())
    }

    /// Parses one message from `peer` and submits it; every refusal is counted.
    pub async fn accept(&self, peer: IpAddr, message: &[u8]) {
        if message.len() > self.max_message {
            self.metrics.reject(
                Reject::SyslogOversized,
                &format!(
                    "{peer}: {} bytes, the limit is {} (syslog_in.max_message_bytes)",
                    message.len(),
                    self.max_message
                ),
            );
            return;
        }
        let Some(candidates) = self.sources.get(&peer.to_canonical()) else {
            self.metrics.reject(
                Reject::SyslogUnknownSource,
                &format!("{peer} is not the address of any AV server in the topology"),
            );
            return;
        };
        // Several AV servers may share an address: the first whose parser understands the
        // message is its sender (vendor formats do not overlap). An ePO message may carry
        // several events: all or none of them are taken.
        let mut errors = Vec::new();
        let mut detections = None;
        for (name, kind) in candidates {
            match ingest::parse_detections(*kind, name, message) {
                Ok(d) => {
                    detections = Some(d);
                    break;
                }
                Err(e) => errors.push(format!("as {name}: {}", e.reason())),
            }
        }
        let Some(detections) = detections else {
            self.metrics.reject(
                Reject::SyslogUnparsable,
                &format!("from {peer}: {}", errors.join("; ")),
            );
            return;
        };
        for detection in detections {
            let (source, event_id) = (detection.source.clone(), detection.event_id.clone());
            match self.engine.submit_detection(detection).await {
                Ok(receipt) => {
                    self.metrics.accepted(Channel::Syslog);
                    tracing::info!(
                        %peer, source, event_id, id = receipt.id,
                        disposition = receipt.disposition.as_str(),
                        "syslog detection journaled"
                    );
                }
                Err(e) => self.metrics.reject(
                    Reject::SyslogRefused,
                    &format!("{source}/{event_id} from {peer}: {e}"),
                ),
            }
        }
    }
}

/// Receives datagrams until `stop` flips.
pub(crate) async fn run_udp(
    socket: UdpSocket,
    intake: Arc<Intake>,
    mut stop: watch::Receiver<bool>,
) {
    // One byte more than the limit tells an oversized datagram from one exactly at it.
    let mut buf = vec![0u8; intake.max_message.saturating_add(1).min(MAX_DATAGRAM)];
    loop {
        let received = tokio::select! {
            _ = stop.changed() => return,
            r = socket.recv_from(&mut buf) => r,
        };
        match received {
            Ok((n, peer)) => {
                let message = trim_message(&buf[..n]);
                if !message.is_empty() {
                    intake.accept(peer.ip(), message).await;
                }
            }
            Err(e) => {
                // E.g. an ICMP error surfacing on some platforms: keep serving, do not spin.
                tracing::warn!(error = %e, "syslog UDP receive failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Accepts connections until `stop` flips.
pub(crate) async fn run_tcp(
    listener: TcpListener,
    intake: Arc<Intake>,
    stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    let mut stop_accepting = stop.clone();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop_accepting.changed() => break,
            r = listener.accept() => r,
            // Reap finished connections so the set stays as small as the open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "syslog TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !intake.knows(peer.ip()) {
            // Refuse before reading a byte: a stranger gets nothing from us (R18).
            intake.metrics.reject(
                Reject::SyslogUnknownSource,
                &format!("{peer} is not the address of any AV server in the topology"),
            );
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            intake.metrics.reject(
                Reject::SyslogTooManyConnections,
                &format!("{peer}: {MAX_TCP_CONNECTIONS} connections already open"),
            );
            continue;
        };
        let intake = intake.clone();
        let mut stop = stop.clone();
        connections.spawn(async move {
            tokio::select! {
                _ = stop.changed() => {}
                _ = serve_connection(stream, peer, &intake) => {}
            }
            drop(slot);
        });
    }
    connections.abort_all();
}

/// Reads frames from one connection until EOF, idle timeout or broken framing.
async fn serve_connection(mut stream: TcpStream, peer: SocketAddr, intake: &Intake) {
    let mut decoder = FrameDecoder::new(Framing::Auto, intake.max_message);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        while let Some(frame) = decoder.next_frame() {
            match frame {
                Ok(frame) => {
                    let message = trim_message(&frame);
                    if !message.is_empty() {
                        intake.accept(peer.ip(), message).await;
                    }
                }
                Err(e) => {
                    let reason = match e {
                        IngestError::TooLarge { .. } => Reject::SyslogOversized,
                        _ => Reject::SyslogBadFraming,
                    };
                    intake
                        .metrics
                        .reject(reason, &format!("{peer}: {}", e.reason()));
                    if decoder.is_broken() {
                        // The octet count was garbage: nothing after it can be trusted.
                        return;
                    }
                }
            }
        }
        let read = tokio::time::timeout(IDLE_TIMEOUT, stream.read(&mut chunk)).await;
        match read {
            Err(_) => {
                intake.metrics.reject(
                    Reject::SyslogIdleTimeout,
                    &format!("{peer}: nothing received for {IDLE_TIMEOUT:?}"),
                );
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "syslog TCP connection failed");
                return;
            }
            Ok(Ok(0)) => {
                if decoder.buffered() > 0 {
                    // RFC 6587: a frame ends with its count or its LF; without them the
                    // message may be cut, and a cut detection must not be acted on.
                    intake.metrics.reject(
                        Reject::SyslogBadFraming,
                        &format!(
                            "{peer}: connection closed inside a frame ({} bytes dropped)",
                            decoder.buffered()
                        ),
                    );
                }
                return;
            }
            Ok(Ok(n)) => decoder.push(&chunk[..n]),
        }
    }
}

/// Drops the trailing line end or NUL some senders add, and leading blank bytes.
fn trim_message(message: &[u8]) -> &[u8] {
    let is_blank = |b: &u8| matches!(b, b'\r' | b'\n' | b'\0' | b' ');
    let start = message
        .iter()
        .position(|b| !is_blank(b))
        .unwrap_or(message.len());
    let end = message
        .iter()
        .rposition(|b| !is_blank(b))
        .map_or(start, |i| i + 1);
    &message[start..end.max(start)]
}
