//! Connection limits shared by the API and the TCP syslog listener, and the API's accept loop
//! (R18: bounded everything; no client may starve the others).
//!
//! Every accepted connection takes a place in a [`ConnTable`], which caps connections overall
//! and per source address. When a cap is reached, the new connection is not refused: the
//! connection of the same source (for the per-source cap) or of any source (for the overall
//! cap) that has been idle longest is closed to make room, and counted. Idle means no request
//! in progress (API) or no frame under way (syslog). So a flood of idle connections, even from
//! the address of a legitimate sender, cannot keep a fresh connection from being served: each
//! newcomer pushes out the oldest idler. Only when every connection under the cap is busy is a
//! newcomer refused (closed at once), and that is counted too.
//!
//! The API is served by hyper's HTTP/1 connection directly (axum's `serve` has no header
//! timeout), with:
//! - [`HEADER_READ_TIMEOUT`]: a request's headers must arrive within it (slow-header clients),
//! - [`KEEP_ALIVE_IDLE`]: a connection with no request in progress for that long is closed,
//! - the request timeout of the API's guard layer (`api::REQUEST_TIMEOUT`), which bounds the
//!   body upload and the handler together.
//!
//! HTTPS: with `[api] tls_cert` and `tls_key` both set ([`api_tls`]) every connection is TLS
//! (rustls through tokio-rustls, TLS 1.2 and 1.3, no client certificates); plain HTTP is not
//! served beside it. The handshake runs in the connection's own task and must finish within
//! [`HEADER_READ_TIMEOUT`]; until it has, the connection counts as idle, so a flood of
//! half-done handshakes is evicted like idle connections are.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use super::config::ApiConfig;
use super::metrics::{Metrics, Reject};
use super::DaemonError;
use crate::model::load::KeySeg;

/// Most API connections open at once.
pub const MAX_API_CONNECTIONS: usize = 256;

/// Most API connections open at once from one source address.
pub const MAX_API_CONNECTIONS_PER_SOURCE: usize = 64;

/// A request's headers must be complete this long after the connection is ready for one.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// An API connection with no request in progress for this long is closed.
pub const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(30);

/// How long a connection closed to make room (or at shutdown) may finish what it is sending.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Caps on open connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Overall.
    pub total: usize,
    /// Per source address.
    pub per_source: usize,
}

/// Open connections of one listener, by id.
pub struct ConnTable {
    caps: Caps,
    inner: Mutex<TableInner>,
}

#[derive(Default)]
struct TableInner {
    next_id: u64,
    conns: HashMap<u64, Slot>,
}

struct Slot {
    ip: IpAddr,
    /// When the connection last became idle (or opened).
    idle_since: Instant,
    /// Requests or frames in progress.
    busy: usize,
    close: Arc<Notify>,
}

/// What [`ConnTable::admit`] decided.
pub enum Admission {
    /// Admitted; `evicted` is the address of the idle connection closed to make room.
    Admitted {
        /// The new connection's place.
        conn: Conn,
        /// Whose idle connection was closed for it, and which cap was reached.
        evicted: Option<(IpAddr, &'static str)>,
    },
    /// Refused: every connection under the reached cap is busy.
    Refused(&'static str),
}

impl ConnTable {
    /// An empty table with `caps` (each at least 1).
    pub fn new(caps: Caps) -> Arc<ConnTable> {
        Arc::new(ConnTable {
            caps: Caps {
                total: caps.total.max(1),
                per_source: caps.per_source.max(1),
            },
            inner: Mutex::new(TableInner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TableInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections open now.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.lock().conns.len()
    }

    /// Takes a place for a connection from `ip`, closing the longest-idle connection of the
    /// same source (per-source cap) or of any source (overall cap) when a cap is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Admission {
        let ip = ip.to_canonical();
        let mut inner = self.lock();
        let from_source = inner.conns.values().filter(|s| s.ip == ip).count();
        let full = if from_source >= self.caps.per_source {
            Some("per_source")
        } else if inner.conns.len() >= self.caps.total {
            Some("total")
        } else {
            None
        };
        let mut evicted = None;
        if let Some(cap) = full {
            let victim = inner
                .conns
                .iter()
                .filter(|(_, s)| s.busy == 0 && (cap == "total" || s.ip == ip))
                .min_by_key(|(id, s)| (s.idle_since, **id))
                .map(|(id, _)| *id);
            let Some(victim) = victim else {
                return Admission::Refused(cap);
            };
            if let Some(slot) = inner.conns.remove(&victim) {
                // notify_one keeps the wake-up if the connection is not waiting right now.
                slot.close.notify_one();
                evicted = Some((slot.ip, cap));
            }
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let close = Arc::new(Notify::new());
        inner.conns.insert(
            id,
            Slot {
                ip,
                idle_since: Instant::now(),
                busy: 0,
                close: close.clone(),
            },
        );
        Admission::Admitted {
            conn: Conn {
                table: self.clone(),
                id,
                close,
            },
            evicted,
        }
    }
}

/// A connection's place in its [`ConnTable`]; dropping it frees the place.
pub struct Conn {
    table: Arc<ConnTable>,
    id: u64,
    close: Arc<Notify>,
}

impl Conn {
    /// A request or frame starts: the connection is not idle until [`Conn::end`].
    pub fn begin(&self) {
        if let Some(slot) = self.table.lock().conns.get_mut(&self.id) {
            slot.busy += 1;
        }
    }

    /// A request or frame ended.
    pub fn end(&self) {
        if let Some(slot) = self.table.lock().conns.get_mut(&self.id) {
            slot.busy = slot.busy.saturating_sub(1);
            slot.idle_since = Instant::now();
        }
    }

    /// When the connection became idle, `None` while busy (or once closed to make room).
    pub fn idle_since(&self) -> Option<Instant> {
        let inner = self.table.lock();
        let slot = inner.conns.get(&self.id)?;
        (slot.busy == 0).then_some(slot.idle_since)
    }

    /// Resolves when the table closed this connection to make room for another.
    pub async fn closed(&self) {
        self.close.notified().await;
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.table.lock().conns.remove(&self.id);
    }
}

/// The API's TLS acceptor from `[api] tls_cert` / `tls_key` (paths already resolved against the
/// config file); `None` when neither is set. Errors name the key and the file: one set without
/// the other, a file that cannot be read, no certificate or key in it, a key that does not
/// match the certificate.
pub fn api_tls(config: &ApiConfig) -> Result<Option<TlsAcceptor>, DaemonError> {
    let bad = |key: &str, message: String| DaemonError::Config {
        key: vec![KeySeg::from("api"), KeySeg::from(key)],
        message,
    };
    let (cert_file, key_file) = match (&config.tls_cert, &config.tls_key) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(bad(
                "tls_key",
                "missing: `tls_cert` is set, so the API needs its private key too (set both \
                 to serve HTTPS, or neither)"
                    .into(),
            ))
        }
        (None, Some(_)) => {
            return Err(bad(
                "tls_cert",
                "missing: `tls_key` is set, so the API needs its certificate too (set both to \
                 serve HTTPS, or neither)"
                    .into(),
            ))
        }
        (Some(c), Some(k)) => (c, k),
    };
    let read = |key: &str, file: &std::path::Path| {
        std::fs::read(file).map_err(|e| bad(key, format!("cannot read {}: {e}", file.display())))
    };
    let cert_pem = read("tls_cert", cert_file)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("tls_cert", format!("{}: not PEM: {e}", cert_file.display())))?;
    if chain.is_empty() {
        return Err(bad(
            "tls_cert",
            format!(
                "{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
                cert_file.display()
            ),
        ));
    }
    let key_pem = read("tls_key", key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        bad(
            "tls_key",
            format!(
                "{}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it: {e}",
                key_file.display()
            ),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("tls_cert", format!("cannot configure TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            bad(
                "tls_key",
                format!(
                    "{} does not fit the certificate in {}: {e}",
                    key_file.display(),
                    cert_file.display()
                ),
            )
        })?;
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

/// Serves `router` on `listener` until `stop` flips: HTTP/1 (over TLS with `tls`) with the
/// timeouts and caps of the module doc. Returns when the listener stopped and open connections
/// were given [`CLOSE_GRACE`] to finish.
pub async fn serve_api(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    metrics: Arc<Metrics>,
    caps: Caps,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let table = ConnTable::new(caps);
    let mut connections = JoinSet::new();
    let backoff = Duration::from_millis(100);
    while let Some((stream, peer)) =
        accept_next(&listener, &mut stop, &mut connections, "API", backoff).await
    {
        let conn = match table.admit(peer.ip()) {
            Admission::Admitted { conn, evicted } => {
                if let Some((ip, cap)) = evicted {
                    metrics.reject(
                        Reject::ApiConnectionEvicted,
                        &format!(
                            "API: closed the longest-idle connection of {ip} to admit {peer} \
                             ({cap} cap: {} overall, {} per source)",
                            caps.total, caps.per_source
                        ),
                    );
                }
                conn
            }
            Admission::Refused(cap) => {
                metrics.reject(
                    Reject::ApiTooManyConnections,
                    &format!(
                        "API: {peer} refused, every connection under the {cap} cap is busy \
                         ({} overall, {} per source)",
                        caps.total, caps.per_source
                    ),
                );
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (router, stop) = (router.clone(), stop.clone());
        match &tls {
            None => {
                connections.spawn(serve_connection(stream, peer, router, conn, stop));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                connections.spawn(async move {
                    let handshake = tokio::select! {
                        r = tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)) => r,
                        _ = conn.closed() => return,
                    };
                    match handshake {
                        Ok(Ok(stream)) => serve_connection(stream, peer, router, conn, stop).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "API TLS handshake failed");
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "API TLS handshake timed out");
                        }
                    }
                });
            }
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(CLOSE_GRACE * 2, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.shutdown().await;
    Ok(())
}

/// The next connection `listener` accepts, reaping finished ones from `connections` meanwhile
/// (so the set stays as small as the open ones); `None` once `stop` flips. A failed accept (out
/// of file descriptors and the like) is logged as `<what> accept failed` and waits `backoff`
/// instead of spinning.
pub(crate) async fn accept_next(
    listener: &TcpListener,
    stop: &mut watch::Receiver<bool>,
    connections: &mut JoinSet<()>,
    what: &str,
    backoff: Duration,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return None,
            r = listener.accept() => r,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        match accepted {
            Ok(a) => return Some(a),
            Err(e) => {
                tracing::warn!(error = %super::log::Chain(&e), "{what} accept failed");
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

/// One API connection: hyper's HTTP/1 with the header timeout, closed when idle for
/// [`KEEP_ALIVE_IDLE`], when the table needs its place, or when the daemon stops.
async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    router: Router,
    conn: Conn,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = Arc::new(conn);
    let service = {
        let conn = conn.clone();
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let (router, conn) = (router.clone(), conn.clone());
            async move {
                conn.begin();
                let _done = EndOnDrop(&conn);
                let response = router
                    .oneshot(request.map(axum::body::Body::new))
                    .await
                    .unwrap_or_else(|e: Infallible| match e {});
                Ok::<_, Infallible>(response)
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let closing = loop {
        let idle_deadline = conn
            .idle_since()
            .map_or_else(|| Instant::now() + KEEP_ALIVE_IDLE, |t| t + KEEP_ALIVE_IDLE);
        tokio::select! {
            r = connection.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %super::log::Chain(&e), "API connection ended with an error");
                }
                return;
            }
            _ = conn.closed() => break "evicted",
            _ = stop.changed() => break "stopping",
            _ = tokio::time::sleep_until(idle_deadline) => {
                if conn.idle_since().is_some_and(|t| t.elapsed() >= KEEP_ALIVE_IDLE) {
                    break "idle";
                }
            }
        }
    };
    tracing::debug!(%peer, why = closing, "closing API connection");
    connection.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(CLOSE_GRACE, connection).await;
}

/// Marks the request ended however its future ends (completed or dropped).
struct EndOnDrop<'a>(&'a Conn);

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        self.0.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn admitted(a: Admission) -> (Conn, Option<(IpAddr, &'static str)>) {
        match a {
            Admission::Admitted { conn, evicted } => (conn, evicted),
            Admission::Refused(cap) => panic!("refused at the {cap} cap"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn r18_a_full_source_makes_room_by_closing_its_longest_idle_connection() {
        let table = ConnTable::new(Caps {
            total: 10,
            per_source: 2,
        });
        let (first, _) = admitted(table.admit(ip(1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        let (second, _) = admitted(table.admit(ip(1)));
        let (_third, evicted) = admitted(table.admit(ip(1)));
        assert_eq!(evicted, Some((ip(1), "per_source")));
        // The first (idle longest) got the close signal; the second did not.
        tokio::time::timeout(Duration::from_millis(1), first.closed())
            .await
            .expect("the longest-idle connection is told to close");
        assert!(
            tokio::time::timeout(Duration::from_millis(1), second.closed())
                .await
                .is_err()
        );
        assert_eq!(table.open(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn r18_busy_connections_are_never_closed_to_make_room() {
        let table = ConnTable::new(Caps {
            total: 2,
            per_source: 2,
        });
        let (a, _) = admitted(table.admit(ip(1)));
        let (b, _) = admitted(table.admit(ip(2)));
        a.begin();
        b.begin();
        assert!(matches!(table.admit(ip(3)), Admission::Refused("total")));
        b.end();
        let (_c, evicted) = admitted(table.admit(ip(3)));
        assert_eq!(evicted, Some((ip(2), "total")));
        drop(a);
        assert_eq!(table.open(), 1);
    }
}
