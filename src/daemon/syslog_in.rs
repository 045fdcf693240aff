//! Syslog listeners for AV servers' detections (R18): UDP (one message per datagram) and TCP
//! (RFC 6587 octet counting or LF framing). A message is taken only from the topology
//! `address` of an AV server; that server's kind picks the parser and its name becomes the
//! detection's `source`. Everything rejected is counted and logged with its reason; nothing
//! here panics or grows without bound.
//!
//! # Keeping up with a burst
//!
//! An outbreak is when AV servers send the most, and syslog over UDP has no retransmission:
//! a datagram the socket buffer cannot hold is gone. So reading never waits for the journal:
//!
//! - The UDP socket is read by a dedicated thread (not a runtime task a busy runtime could
//!   delay) with a large receive buffer, `syslog_in.udp_recv_buffer_bytes` (default
//!   [`DEFAULT_UDP_RECV_BUFFER`]). Linux caps SO_RCVBUF at `net.core.rmem_max`; the daemon runs
//!   as root often enough that it then tries SO_RCVBUFFORCE, and `/health` reports what the
//!   kernel granted (`syslog_in.udp_recv_buffer_bytes.granted`, as the kernel reports it: Linux
//!   doubles the figure for its bookkeeping). What the kernel still drops when the buffer is
//!   full is read from `/proc/net/udp` and shown as `syslog_in.udp_kernel_drops` (Linux), so
//!   not even that loss is silent.
//! - Messages go into one bounded queue shared by UDP and TCP, bounded both in messages
//!   (`syslog_in.queue_messages`, default [`DEFAULT_QUEUE_MESSAGES`]) and in bytes
//!   (`syslog_in.queue_bytes`, default [`DEFAULT_QUEUE_BYTES`]). A datagram that finds the
//!   queue full is dropped and counted as `syslog_queue_full` (logged: the first ones, then
//!   one in a thousand); a TCP connection instead waits for room, so TCP's own flow control
//!   slows the sender and nothing is dropped.
//! - A dispatcher takes what is queued in batches of up to [`BATCH`] messages and submits each
//!   batch's detections concurrently, in arrival order, with up to [`BATCHES_IN_FLIGHT`]
//!   batches in flight: the journal's group commit then makes one commit of many detections
//!   instead of one per datagram. Order of staging within a batch is arrival order; a later
//!   batch may commit with an earlier one (the journal keeps staging order).
//! - At shutdown the listeners stop reading first; what is queued is submitted within the
//!   daemon's shutdown grace. A datagram is never acknowledged, so one still queued when the
//!   grace ends is lost like one the kernel dropped, but counted nowhere: the log says how many.
//!
//! # TCP connections
//!
//! Connections take a place in a [`ConnTable`] capped at [`MAX_TCP_CONNECTIONS`] overall and
//! [`MAX_TCP_CONNECTIONS_PER_SOURCE`] per source address; at a cap, the longest-idle
//! connection (one with no frame under way) is closed to admit the newcomer
//! (`syslog_connection_evicted`), so idle connections cannot lock a sender out. A connection
//! must send its first byte within [`FIRST_BYTE_TIMEOUT`], may stay silent between messages
//! for [`IDLE_TIMEOUT`], and must complete a frame within [`FRAME_TIMEOUT`] of its first byte
//! (`syslog_idle_timeout` for all three).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::listener::{accept_next, Admission, Caps, Conn, ConnTable};
use super::metrics::{Channel, Metrics, Reject};
use crate::engine::Engine;
use crate::ingest::{self, syslog::FrameDecoder, syslog::Framing, IngestError};
use crate::model::{AvKind, Detection, Site};

/// Most syslog TCP connections open at once.
pub const MAX_TCP_CONNECTIONS: usize = 64;

/// Most syslog TCP connections open at once from one address.
pub const MAX_TCP_CONNECTIONS_PER_SOURCE: usize = 16;

/// A TCP connection that sends nothing between messages for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// A TCP connection must send its first byte within this long.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);

/// A frame must be complete this long after its first byte arrived.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// Default `syslog_in.udp_recv_buffer_bytes`: a few seconds of an outbreak's burst.
pub const DEFAULT_UDP_RECV_BUFFER: usize = 8 * 1024 * 1024;

/// Default `syslog_in.queue_messages`.
pub const DEFAULT_QUEUE_MESSAGES: usize = 65_536;

/// Default `syslog_in.queue_bytes`.
pub const DEFAULT_QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// Most messages the dispatcher submits together.
pub const BATCH: usize = 1024;

/// Most batches submitted at once.
pub const BATCHES_IN_FLIGHT: usize = 4;

/// Largest UDP payload: a datagram cannot be larger.
const MAX_DATAGRAM: usize = 65_535;

/// How often the UDP thread looks whether the daemon is stopping.
const UDP_STOP_POLL: Duration = Duration::from_millis(100);

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

    /// The checks that need no parsing, made before a message is queued: its size and its
    /// sender. False when refused (and counted).
    fn admissible(&self, peer: IpAddr, len: usize) -> bool {
        if len > self.max_message {
            self.metrics.reject(
                Reject::SyslogOversized,
                &format!(
                    "{peer}: {len} bytes, the limit is {} (syslog_in.max_message_bytes)",
                    self.max_message
                ),
            );
            return false;
        }
        if !self.knows(peer) {
            self.metrics.reject(
                Reject::SyslogUnknownSource,
                &format!("{peer} is not the address of any AV server in the topology"),
            );
            return false;
        }
        true
    }

    /// Parses one message from `peer`; every refusal is counted.
    fn parse(&self, peer: IpAddr, message: &[u8]) -> Option<Vec<Detection>> {
        if !self.admissible(peer, message.len()) {
            return None;
        }
        let candidates = self.sources.get(&peer.to_canonical())?;
        // Several AV servers may share an address: the first whose parser understands the
        // message is its sender (vendor formats do not overlap). An ePO message may carry
        // several events: all or none of them are taken.
        let mut errors = Vec::new();
        for (name, kind) in candidates {
            match ingest::parse_detections(*kind, name, message) {
                Ok(d) => return Some(d),
                Err(e) => errors.push(format!("as {name}: {}", e.reason())),
            }
        }
        self.metrics.reject(
            Reject::SyslogUnparsable,
            &format!("from {peer}: {}", errors.join("; ")),
        );
        None
    }

    /// Submits one detection and counts the outcome.
    async fn submit(&self, peer: IpAddr, channel: Channel, detection: Detection) {
        let (source, event_id) = (detection.source.clone(), detection.event_id.clone());
        match self.engine.submit_detection(detection).await {
            Ok(receipt) => {
                self.metrics.accepted(channel);
                tracing::debug!(
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

    /// Parses a batch and submits its detections concurrently: each submission stages its
    /// step when first polled, in order, so one group commit carries the batch.
    async fn submit_batch(&self, batch: Vec<Queued>) {
        let mut detections = Vec::with_capacity(batch.len());
        for queued in &batch {
            if let Some(parsed) = self.parse(queued.peer, &queued.message) {
                detections.extend(parsed.into_iter().map(|d| (queued.peer, queued.channel, d)));
            }
        }
        // The queue's room is given back once parsed: the detections are small.
        drop(batch);
        futures::future::join_all(
            detections
                .into_iter()
                .map(|(peer, channel, detection)| self.submit(peer, channel, detection)),
        )
        .await;
    }
}

/// One message waiting for the dispatcher; holds its bytes of the queue's byte budget.
pub(crate) struct Queued {
    peer: IpAddr,
    /// The listener it came in on (the engine counts detections per transport).
    channel: Channel,
    message: Vec<u8>,
    _room: OwnedSemaphorePermit,
    gauges: Arc<Metrics>,
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.gauges.intake.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The sending side of the intake queue.
#[derive(Clone)]
pub(crate) struct QueueSender {
    tx: mpsc::Sender<Queued>,
    bytes: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

/// Why a message could not be queued.
enum Full {
    /// The queue is full (messages or bytes).
    Full,
    /// The dispatcher is gone (the daemon is stopping).
    Closed,
}

impl QueueSender {
    fn permits(len: usize) -> u32 {
        u32::try_from(len.max(1)).unwrap_or(u32::MAX)
    }

    fn wrap(
        &self,
        peer: IpAddr,
        channel: Channel,
        message: &[u8],
        room: OwnedSemaphorePermit,
    ) -> Queued {
        let depth = self.metrics.intake.queued.fetch_add(1, Ordering::Relaxed) + 1;
        self.metrics
            .intake
            .queued_peak
            .fetch_max(depth, Ordering::Relaxed);
        Queued {
            peer,
            channel,
            message: message.to_vec(),
            _room: room,
            gauges: self.metrics.clone(),
        }
    }

    /// Queues without waiting (UDP).
    fn try_push(&self, peer: IpAddr, message: &[u8]) -> Result<(), Full> {
        let Ok(room) = self
            .bytes
            .clone()
            .try_acquire_many_owned(Self::permits(message.len()))
        else {
            return Err(Full::Full);
        };
        match self
            .tx
            .try_send(self.wrap(peer, Channel::SyslogUdp, message, room))
        {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(Full::Full),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Full::Closed),
        }
    }

    /// Queues, waiting for room (TCP: the sender is slowed by TCP's flow control instead).
    async fn push(&self, peer: IpAddr, message: &[u8]) -> Result<(), Full> {
        let Ok(room) = self
            .bytes
            .clone()
            .acquire_many_owned(Self::permits(message.len()))
            .await
        else {
            return Err(Full::Closed);
        };
        self.tx
            .send(self.wrap(peer, Channel::SyslogTcp, message, room))
            .await
            .map_err(|_| Full::Closed)
    }
}

/// The intake queue: [`QueueSender`] for the listeners, the receiver for [`run_dispatcher`].
pub(crate) fn queue(
    messages: usize,
    bytes: usize,
    metrics: Arc<Metrics>,
) -> (QueueSender, mpsc::Receiver<Queued>) {
    let (tx, rx) = mpsc::channel(messages.max(1));
    // The byte budget must hold at least one message of the largest size.
    let bytes = bytes.clamp(MAX_DATAGRAM, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    (
        QueueSender {
            tx,
            bytes: Arc::new(Semaphore::new(bytes)),
            metrics,
        },
        rx,
    )
}

/// Submits queued messages in batches until every sender is gone and the queue is empty.
pub(crate) async fn run_dispatcher(mut rx: mpsc::Receiver<Queued>, intake: Arc<Intake>) {
    let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    let mut batches = JoinSet::new();
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let mut batch = Vec::with_capacity(BATCH);
        if rx.recv_many(&mut batch, BATCH).await == 0 {
            break;
        }
        let intake = intake.clone();
        batches.spawn(async move {
            intake.submit_batch(batch).await;
            drop(permit);
        });
        while batches.try_join_next().is_some() {}
    }
    while batches.join_next().await.is_some() {}
}

/// Binds the UDP listener with a receive buffer of `recv_buffer` bytes (see the module doc);
/// the socket and the buffer size the kernel granted.
pub(crate) fn bind_udp(
    addr: SocketAddr,
    recv_buffer: usize,
) -> std::io::Result<(std::net::UdpSocket, usize)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if recv_buffer > 0 {
        socket.set_recv_buffer_size(recv_buffer)?;
        // Linux reports twice what it reserves; below the request means rmem_max capped it.
        if socket.recv_buffer_size()? < recv_buffer {
            force_recv_buffer(&socket, recv_buffer);
        }
    }
    socket.bind(&addr.into())?;
    let granted = socket.recv_buffer_size()?;
    let socket: std::net::UdpSocket = socket.into();
    socket.set_read_timeout(Some(UDP_STOP_POLL))?;
    Ok((socket, granted))
}

/// The UDP socket's inode, to find it in `/proc/net/udp` ([`udp_kernel_drops`]); 0 unknown.
#[cfg(target_os = "linux")]
pub(crate) fn socket_inode(socket: &std::net::UdpSocket) -> u64 {
    use std::os::fd::AsRawFd;
    // SAFETY: fstat on a valid descriptor into a zeroed stat buffer.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(socket.as_raw_fd(), &mut st) == 0 {
            st.st_ino as u64
        } else {
            0
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn socket_inode(_: &std::net::UdpSocket) -> u64 {
    0
}

/// Datagrams the kernel dropped for the UDP socket with `inode` (its receive buffer was
/// full), from the `drops` column of `/proc/net/udp` and `/proc/net/udp6`; `None` where the
/// kernel does not say. Shown in `/health` so not even a loss before the daemon reads is
/// silent.
pub fn udp_kernel_drops(inode: u64) -> Option<u64> {
    if inode == 0 {
        return None;
    }
    let wanted = inode.to_string();
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            text.lines().skip(1).find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                (fields.get(9) == Some(&wanted.as_str()))
                    .then(|| fields.get(12)?.parse().ok())
                    .flatten()
            })
        })
}

/// SO_RCVBUFFORCE: past `net.core.rmem_max`, allowed with CAP_NET_ADMIN. Failing is fine:
/// the granted size is reported either way.
#[cfg(target_os = "linux")]
fn force_recv_buffer(socket: &socket2::Socket, bytes: usize) {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid socket descriptor and a c_int option value of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "SO_RCVBUFFORCE refused; the UDP receive buffer stays at net.core.rmem_max"
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn force_recv_buffer(_: &socket2::Socket, _: usize) {}

/// Starts the UDP reader thread; the returned receiver resolves when it ended (after `stop`
/// flips or its sender is dropped).
pub(crate) fn spawn_udp(
    socket: std::net::UdpSocket,
    intake: Arc<Intake>,
    queue: QueueSender,
    stop: watch::Receiver<bool>,
) -> std::io::Result<oneshot::Receiver<()>> {
    let (done, ended) = oneshot::channel();
    // The thread outlives the daemon by up to a read timeout when the daemon is dropped rather
    // than shut down (a crash in the lab): a strong reference here would keep the engine, its
    // journal and its operations alive meanwhile, beside the engine that replaces it.
    let intake = Arc::downgrade(&intake);
    std::thread::Builder::new()
        .name("qlab-syslog-udp".into())
        .spawn(move || {
            read_udp(&socket, &intake, &queue, &stop);
            let _ = done.send(());
        })?;
    Ok(ended)
}

/// The UDP thread: reads datagrams as fast as they come and queues them.
fn read_udp(
    socket: &std::net::UdpSocket,
    intake: &std::sync::Weak<Intake>,
    queue: &QueueSender,
    stop: &watch::Receiver<bool>,
) {
    let Some(max_message) = intake.upgrade().map(|i| i.max_message) else {
        return;
    };
    // One byte more than the limit tells an oversized datagram from one exactly at it.
    let mut buf = vec![0u8; max_message.saturating_add(1).min(MAX_DATAGRAM)];
    loop {
        if *stop.borrow() || stop.has_changed().is_err() {
            return;
        }
        match socket.recv_from(&mut buf) {
            Ok((n, peer)) => {
                // Gone: the daemon was dropped (the engine with it).
                let Some(intake) = intake.upgrade() else {
                    return;
                };
                let message = trim_message(&buf[..n]);
                if message.is_empty() || !intake.admissible(peer.ip(), message.len()) {
                    continue;
                }
                match queue.try_push(peer.ip(), message) {
                    Ok(()) => {}
                    Err(Full::Full) => intake.metrics.reject(
                        Reject::SyslogQueueFull,
                        &format!(
                            "{peer}: datagram of {} bytes dropped, the intake queue is full \
                             (syslog_in.queue_messages, syslog_in.queue_bytes)",
                            message.len()
                        ),
                    ),
                    Err(Full::Closed) => return,
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                // E.g. an ICMP error surfacing on some platforms: keep serving, do not spin.
                tracing::warn!(error = %super::log::Chain(&e), "syslog UDP receive failed");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Accepts connections until `stop` flips.
pub(crate) async fn run_tcp(
    listener: TcpListener,
    intake: Arc<Intake>,
    queue: QueueSender,
    stop: watch::Receiver<bool>,
) {
    let caps = Caps {
        total: MAX_TCP_CONNECTIONS,
        per_source: MAX_TCP_CONNECTIONS_PER_SOURCE,
    };
    let table = ConnTable::new(caps);
    let mut stop_accepting = stop.clone();
    let mut connections = JoinSet::new();
    let backoff = Duration::from_millis(50);
    while let Some((stream, peer)) = accept_next(
        &listener,
        &mut stop_accepting,
        &mut connections,
        "syslog TCP",
        backoff,
    )
    .await
    {
        if !intake.knows(peer.ip()) {
            // Refuse before reading a byte: a stranger gets nothing from us (R18).
            intake.metrics.reject(
                Reject::SyslogUnknownSource,
                &format!("{peer} is not the address of any AV server in the topology"),
            );
            continue;
        }
        let conn = match table.admit(peer.ip()) {
            Admission::Admitted { conn, evicted } => {
                if let Some((ip, cap)) = evicted {
                    intake.metrics.reject(
                        Reject::SyslogConnectionEvicted,
                        &format!(
                            "closed the longest-idle syslog connection of {ip} to admit {peer} \
                             ({cap} cap: {} overall, {} per source)",
                            caps.total, caps.per_source
                        ),
                    );
                }
                conn
            }
            Admission::Refused(cap) => {
                intake.metrics.reject(
                    Reject::SyslogTooManyConnections,
                    &format!(
                        "{peer}: every syslog connection under the {cap} cap is busy \
                         ({} overall, {} per source)",
                        caps.total, caps.per_source
                    ),
                );
                continue;
            }
        };
        let (intake, queue) = (intake.clone(), queue.clone());
        let mut stop = stop.clone();
        connections.spawn(async move {
            tokio::select! {
                _ = stop.changed() => {}
                _ = conn.closed() => {}
                _ = serve_connection(stream, peer, &intake, &queue, &conn) => {}
            }
        });
    }
    connections.abort_all();
}

/// Reads frames from one connection until EOF, a timeout or broken framing.
async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    intake: &Intake,
    queue: &QueueSender,
    conn: &Conn,
) {
    let mut decoder = FrameDecoder::new(Framing::Auto, intake.max_message);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut received_any = false;
    // When the frame under way started; while one is, the connection counts as busy.
    let mut frame_started: Option<Instant> = None;
    loop {
        while let Some(frame) = decoder.next_frame() {
            match frame {
                Ok(frame) => {
                    let message = trim_message(&frame);
                    if !message.is_empty() && intake.admissible(peer.ip(), message.len()) {
                        // Busy while waiting for room: closing it now would lose the frame.
                        conn.begin();
                        let pushed = queue.push(peer.ip(), message).await;
                        conn.end();
                        if pushed.is_err() {
                            return; // the daemon is stopping
                        }
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
        match (decoder.buffered() > 0, frame_started) {
            (true, None) => {
                frame_started = Some(Instant::now());
                conn.begin();
            }
            (false, Some(_)) => {
                frame_started = None;
                conn.end();
            }
            _ => {}
        }
        let (deadline, what) = match frame_started {
            Some(t) => (t + FRAME_TIMEOUT, "a frame not completed"),
            None if !received_any => (Instant::now() + FIRST_BYTE_TIMEOUT, "nothing received"),
            None => (Instant::now() + IDLE_TIMEOUT, "nothing received"),
        };
        let read = tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await;
        match read {
            Err(_) => {
                let limit = match frame_started {
                    Some(_) => FRAME_TIMEOUT,
                    None if !received_any => FIRST_BYTE_TIMEOUT,
                    None => IDLE_TIMEOUT,
                };
                intake.metrics.reject(
                    Reject::SyslogIdleTimeout,
                    &format!("{peer}: {what} within {limit:?}; connection closed"),
                );
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %super::log::Chain(&e), "syslog TCP connection failed");
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
            Ok(Ok(n)) => {
                received_any = true;
                decoder.push(&chunk[..n]);
            }
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
