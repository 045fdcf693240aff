//! A TCP fault proxy for the wire transport faults of `docs/formats/scenario.md`: `reset` (the request reaches
//! the device, then the client's connection is reset, so the client cannot know whether it was
//! applied) and `blackhole` (nothing comes back).
//!
//! The decision stays in the device model (`SimWorld::call_now`): the wire face marks its reply
//! with the header [`FAULT_HEADER`], and the proxy in front of it carries the fault out. Device
//! clients open one connection per call, so a fault per connection is a fault per call.
//!
//! The proxy can also terminate TLS ([`FaultProxy::start_tls`]): the device's HTTPS face. The
//! faults are then carried out below TLS (a `reset` is a TCP RST under the TLS session), as a
//! real device's failing network would. No ALPN is offered, so clients speak HTTP/1.1, whose
//! reply head the proxy reads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A transport fault the proxy carries out.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum ProxyFault {
    /// The request was delivered; the reply is dropped and the client connection reset.
    Reset,
    /// The reply never comes; the connection stays open until the client gives up.
    Blackhole,
}

impl ProxyFault {
    /// The value of [`FAULT_HEADER`].
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Reply header by which a wire face asks the proxy for a transport fault.
pub const FAULT_HEADER: &str = "x-qlab-transport-fault";

/// How long a blackholed connection is held at most, so proxy tasks end by themselves.
const BLACKHOLE_HOLD: Duration = Duration::from_secs(600);

/// Longest TLS handshake a client gets, so a silent client does not hold a task.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running proxy in front of one upstream address.
pub struct FaultProxy {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (any free port) and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        FaultProxy::start_with(upstream, None).await
    }

    /// Like [`FaultProxy::start`], but clients speak TLS to the proxy with `config`'s
    /// certificate; the upstream stays plain HTTP.
    pub async fn start_tls(
        upstream: SocketAddr,
        config: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<FaultProxy> {
        FaultProxy::start_with(upstream, Some(TlsAcceptor::from(config))).await
    }

    async fn start_with(
        upstream: SocketAddr,
        tls: Option<TlsAcceptor>,
    ) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                // No Nagle: a TLS handshake is several small flights, and each would wait for
                // a delayed ACK (tens of ms, more than a scaled-down lab call budget).
                let _ = client.set_nodelay(true);
                let tls = tls.clone();
                tokio::spawn(async move {
                    let _ = match tls {
                        None => serve(client, upstream).await,
                        Some(acceptor) => serve_tls(acceptor, client, upstream).await,
                    };
                });
            }
        });
        Ok(FaultProxy { addr, task })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

async fn serve(mut client: TcpStream, upstream: SocketAddr) -> std::io::Result<()> {
    let mut server = TcpStream::connect(upstream).await?;
    match relay(&mut client, &mut server).await? {
        Some(ProxyFault::Reset) => reset(client),
        Some(ProxyFault::Blackhole) => hold(&mut client).await,
        None => Ok(()),
    }
}

async fn serve_tls(
    acceptor: TlsAcceptor,
    client: TcpStream,
    upstream: SocketAddr,
) -> std::io::Result<()> {
    let mut client: TlsStream<TcpStream> =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(client))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let mut server = TcpStream::connect(upstream).await?;
    let fault = relay(&mut client, &mut server).await?;
    match fault {
        Some(ProxyFault::Reset) => reset(client.into_inner().0),
        Some(ProxyFault::Blackhole) => hold(&mut client).await,
        None => {
            // close_notify, so the client sees a clean end of the TLS session.
            let _ = client.shutdown().await;
            Ok(())
        }
    }
}

/// Keeps a blackholed connection open (reading and dropping what comes) until the client
/// gives up or [`BLACKHOLE_HOLD`] passes.
async fn hold<C: AsyncRead + Unpin>(client: &mut C) -> std::io::Result<()> {
    let mut sink = vec![0u8; 16 * 1024];
    let _ = tokio::time::timeout(BLACKHOLE_HOLD, async {
        while let Ok(n) = client.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    Ok(())
}

/// Copies the request up and the reply down until the reply head shows a fault marker; returns
/// the fault (the reply is then withheld) or `None` once the exchange ended normally.
async fn relay<C: AsyncRead + AsyncWrite + Unpin>(
    client: &mut C,
    server: &mut TcpStream,
) -> std::io::Result<Option<ProxyFault>> {
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut server_read, mut server_write) = server.split();
    let upload = tokio::io::copy(&mut client_read, &mut server_write);
    let download = async {
        let mut head = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        // Read until the reply head is complete, then decide.
        loop {
            let n = server_read.read(&mut buf).await?;
            if n == 0 {
                client_write.write_all(&head).await?;
                client_write.flush().await?;
                return Ok::<Option<ProxyFault>, std::io::Error>(None);
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") || head.len() > 64 * 1024 {
                break;
            }
        }
        let fault = fault_in(&head);
        if fault.is_none() {
            client_write.write_all(&head).await?;
            client_write.flush().await?;
            tokio::io::copy(&mut server_read, &mut client_write).await?;
        }
        Ok(fault)
    };
    let fault = tokio::select! {
        result = download => result?,
        _ = upload => None,
    };
    Ok(fault)
}

/// Closes with an RST instead of a FIN: SO_LINGER with a zero timeout does exactly that and
/// does not block (the deprecation warns about non-zero linger).
#[allow(deprecated)]
fn reset(client: TcpStream) -> std::io::Result<()> {
    client.set_linger(Some(Duration::ZERO))?;
    drop(client);
    Ok(())
}

fn fault_in(head: &[u8]) -> Option<ProxyFault> {
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let value = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(FAULT_HEADER)
                .and_then(|r| r.strip_prefix(':'))
        })?
        .trim()
        .to_string();
    value.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_header_is_found_case_insensitively() {
        let head = b"HTTP/1.1 204 No Content\r\nX-Qlab-Transport-Fault: reset\r\n\r\n";
        assert_eq!(fault_in(head), Some(ProxyFault::Reset));
        assert_eq!(fault_in(b"HTTP/1.1 200 OK\r\n\r\n"), None);
    }
}
