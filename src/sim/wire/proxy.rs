//! A TCP fault proxy for the wire transport faults of formats.md: `reset` (the request reaches
//! the device, then the client's connection is reset, so the client cannot know whether it was
//! applied) and `blackhole` (nothing comes back).
//!
//! The decision stays in the device model (`SimWorld::call_now`): the wire face marks its reply
//! with the header [`FAULT_HEADER`], and the proxy in front of it carries the fault out. Device
//! clients open one connection per call, so a fault per connection is a fault per call.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A transport fault the proxy carries out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyFault {
    /// The request was delivered; the reply is dropped and the client connection reset.
    Reset,
    /// The reply never comes; the connection stays open until the client gives up.
    Blackhole,
}

impl ProxyFault {
    /// The value of [`FAULT_HEADER`].
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyFault::Reset => "reset",
            ProxyFault::Blackhole => "blackhole",
        }
    }
}

/// Reply header by which a wire face asks the proxy for a transport fault.
pub const FAULT_HEADER: &str = "x-qlab-transport-fault";

/// How long a blackholed connection is held at most, so proxy tasks end by themselves.
const BLACKHOLE_HOLD: Duration = Duration::from_secs(600);

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
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = serve(client, upstream).await;
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
    let fault = relay(&mut client, &mut server).await?;
    match fault {
        Some(ProxyFault::Reset) => reset(client),
        Some(ProxyFault::Blackhole) => {
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
        None => Ok(()),
    }
}

/// Copies the request up and the reply down until the reply head shows a fault marker; returns
/// the fault (the reply is then withheld) or `None` once the exchange ended normally.
async fn relay(
    client: &mut TcpStream,
    server: &mut TcpStream,
) -> std::io::Result<Option<ProxyFault>> {
    let (mut client_read, mut client_write) = client.split();
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
    match value.as_str() {
        "reset" => Some(ProxyFault::Reset),
        "blackhole" => Some(ProxyFault::Blackhole),
        _ => None,
    }
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
