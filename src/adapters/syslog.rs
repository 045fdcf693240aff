//! Outbound syslog for alerts (R17): RFC 5424 lines over UDP (RFC 5426, one datagram per
//! message) or TCP (RFC 6587 octet counting, `LEN SP MSG`).
//!
//! Every send is bounded by a timeout (R19). Classes: a connection that cannot be opened is
//! `unavailable`; a line too large for a datagram is `rejected`; a TCP write that fails or times
//! out part way is `unknown` (the collector may have the message). Alert delivery is at least
//! once (ARCHITECTURE.md), so the TCP sender re-sends once on a fresh connection when a kept
//! connection turns out to be dead.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Mutex;

use super::{DeviceError, DeviceResult, OutcomeClass, SyslogOut};

/// Largest syslog message sent: the largest UDP payload over IPv4. TCP uses the same bound so
/// both transports accept the same alerts.
pub const MAX_SYSLOG_MESSAGE: usize = 65_507;

enum Transport {
    Udp,
    /// The kept connection; `None` until the first send or after a failure.
    Tcp(Mutex<Option<TcpStream>>),
}

/// Sends RFC 5424 lines to one collector.
pub struct SyslogSender {
    target: SocketAddr,
    timeout: Duration,
    transport: Transport,
}

impl std::fmt::Debug for SyslogSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.transport {
            Transport::Udp => "udp",
            Transport::Tcp(_) => "tcp",
        };
        f.debug_struct("SyslogSender")
            .field("target", &self.target)
            .field("transport", &kind)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl SyslogSender {
    /// A sender of one UDP datagram per message to `target`.
    pub fn udp(target: SocketAddr, timeout: Duration) -> SyslogSender {
        SyslogSender {
            target,
            timeout,
            transport: Transport::Udp,
        }
    }

    /// A sender over one kept TCP connection to `target`, octet-counting framed.
    pub fn tcp(target: SocketAddr, timeout: Duration) -> SyslogSender {
        SyslogSender {
            target,
            timeout,
            transport: Transport::Tcp(Mutex::new(None)),
        }
    }

    /// Where the messages go.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    async fn send_udp(&self, message: &[u8]) -> DeviceResult<()> {
        let local: IpAddr = match self.target {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let unavailable = |e: std::io::Error| {
            DeviceError::new(
                OutcomeClass::Unavailable,
                format!("syslog udp {}: {e}", self.target),
            )
        };
        let socket = UdpSocket::bind(SocketAddr::new(local, 0))
            .await
            .map_err(unavailable)?;
        socket.connect(self.target).await.map_err(unavailable)?;
        // A datagram leaves whole or not at all, so any failure means it was not sent.
        socket.send(message).await.map_err(unavailable)?;
        Ok(())
    }

    async fn send_tcp(&self, slot: &Mutex<Option<TcpStream>>, message: &[u8]) -> DeviceResult<()> {
        let mut frame = format!("{} ", message.len()).into_bytes();
        frame.extend_from_slice(message);
        let mut kept = slot.lock().await;
        if let Some(stream) = kept.as_mut() {
            if stream.write_all(&frame).await.is_ok() {
                return Ok(());
            }
            // The kept connection died since the last alert (collector restart): at least
            // once delivery allows one more try on a fresh connection.
            *kept = None;
        }
        let mut stream = TcpStream::connect(self.target).await.map_err(|e| {
            DeviceError::new(
                OutcomeClass::Unavailable,
                format!("syslog tcp {}: {e}", self.target),
            )
        })?;
        stream.write_all(&frame).await.map_err(|e| {
            DeviceError::new(
                OutcomeClass::Unknown,
                format!("syslog tcp {}: write failed: {e}", self.target),
            )
        })?;
        *kept = Some(stream);
        Ok(())
    }
}

#[async_trait]
impl SyslogOut for SyslogSender {
    async fn send(&self, line: &str) -> DeviceResult<()> {
        // The alert line is one message; a trailing newline would be part of it on TCP.
        let message = line.trim_end_matches(['\r', '\n']).as_bytes();
        if message.len() > MAX_SYSLOG_MESSAGE {
            return Err(DeviceError::new(
                OutcomeClass::Rejected,
                format!(
                    "syslog message is {} bytes, the limit is {MAX_SYSLOG_MESSAGE}",
                    message.len()
                ),
            ));
        }
        let work = async {
            match &self.transport {
                Transport::Udp => self.send_udp(message).await,
                Transport::Tcp(slot) => self.send_tcp(slot, message).await,
            }
        };
        // Bound first, so the cut future (and any lock it held) is gone before the match.
        let outcome = tokio::time::timeout(self.timeout, work).await;
        match outcome {
            Ok(result) => result,
            Err(_) => {
                if let Transport::Tcp(slot) = &self.transport {
                    // A write cut mid-frame leaves the stream unusable; start clean next time.
                    if let Ok(mut kept) = slot.try_lock() {
                        *kept = None;
                    }
                }
                Err(DeviceError::new(
                    OutcomeClass::Unknown,
                    format!(
                        "syslog {}: no progress within {:?}",
                        self.target, self.timeout
                    ),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn udp_sends_one_datagram_per_line() {
        let sink = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let sender = SyslogSender::udp(sink.local_addr().unwrap(), Duration::from_secs(1));
        sender.send("<134>1 - h qlab - - - one\n").await.unwrap();
        let mut buf = [0u8; 128];
        let n = sink.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"<134>1 - h qlab - - - one");
    }

    #[tokio::test]
    async fn tcp_frames_with_octet_counting() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sender = SyslogSender::tcp(listener.local_addr().unwrap(), Duration::from_secs(1));
        sender.send("abc").await.unwrap();
        sender.send("de").await.unwrap();
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 9];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, b"3 abc2 de");
    }

    #[tokio::test]
    async fn tcp_refused_is_unavailable_and_oversized_is_rejected() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let sender = SyslogSender::tcp(addr, Duration::from_secs(1));
        let e = sender.send("x").await.unwrap_err();
        assert_eq!(e.class, OutcomeClass::Unavailable);
        let e = sender
            .send(&"x".repeat(MAX_SYSLOG_MESSAGE + 1))
            .await
            .unwrap_err();
        assert_eq!(e.class, OutcomeClass::Rejected);
    }
}
