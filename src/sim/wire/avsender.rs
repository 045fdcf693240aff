//! The simulated AV servers' senders: a detection written the way OfficeScan/Apex Central
//! (CEF), SEPM (risk-log line after a 3164 header) or ePO (EPOEvent XML in 5424) would send
//! it, over UDP or TCP to the engine's syslog listener, or as the row an ePO server's
//! `EPOEvents` table would hold for the engine's poller to read.
//!
//! Each sender writes from its AV server's topology `address` (R18: the engine takes syslog
//! only from there); Linux routes all of 127.0.0.0/8 to loopback, so `127.0.0.2` works as is.
//! Over TCP each message goes on its own connection, octet-counted (RFC 6587 3.4.1): the engine
//! may restart between two detections, and a fresh connection per message never writes into a
//! connection the engine already dropped.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, UdpSocket};

use super::epo::EpoEventRow;
use crate::ingest::{cef, epo, sepm, syslog};
use crate::model::{AvKind, Category, Detection};

/// Longest a TCP sender waits to connect and hand over one message.
pub const TCP_SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Fixed timestamps keep formatted lines identical for identical detections, so a duplicated
/// notification dedupes (R4) even where the vendor format carries no event id.
const TIMESTAMP_5424: &str = "2026-01-01T00:00:00Z";
const TIMESTAMP_3164: &str = "Jan  1 00:00:00";

/// The syslog line an AV server of `kind` sends for `detection`.
pub fn syslog_line(kind: AvKind, detection: &Detection) -> String {
    match kind {
        AvKind::Officescan => {
            let event = cef::from_detection(detection, "Jan 01 2026 00:00:00 GMT+00:00");
            syslog::format_5424(
                134,
                TIMESTAMP_5424,
                "apex-central",
                "-",
                "-",
                &[],
                &cef::format(&event),
            )
        }
        AvKind::Sepm => {
            let event_type = match detection.category {
                Category::Virus => "Virus found",
                Category::Malware => "Security risk found",
                _ => "Risk repair failed",
            };
            let risk = sepm::SepmRisk {
                event_type: event_type.into(),
                ip: detection.ip,
                computer: detection.hostname.clone(),
                risk_name: detection.threat.replace(',', " "),
                file_path: format!(
                    "c:\\users\\public\\{}.exe",
                    detection.event_id.replace(',', "_")
                ),
                event_time: "2026-01-01 00:00:00".into(),
            };
            syslog::format_3164(
                54,
                TIMESTAMP_3164,
                "sepm01",
                "SymantecServer",
                &sepm::format(&risk),
            )
        }
        AvKind::Epo => {
            let event = epo::EpoEvent {
                machine_name: detection.hostname.clone(),
                // The sender's event id rides in the agent GUID, so the engine's id names it.
                agent_guid: Some(format!("{{{}}}", detection.event_id)),
                ip_address: detection.ip.map(|ip| ip.to_string()),
                raw_mac: detection.mac.as_ref().map(|m| m.replace([':', '-'], "")),
                gmt_time: Some("2026-01-01T00:00:00".into()),
                threat_name: Some(detection.threat.clone()),
                threat_type: Some(match detection.category {
                    Category::Virus | Category::Malware => "virus".into(),
                    Category::Spyware => "spyware".into(),
                    _ => "other".into(),
                }),
                threat_category: Some("av.detect".into()),
                threat_event_id: Some("1027".into()),
                detected_utc: Some("2026-01-01T00:00:00".into()),
                target_host_name: detection.hostname.clone(),
                target_ipv4: None,
                target_mac: None,
            };
            epo::syslog_line(TIMESTAMP_5424, "epo01", &epo::format(&event))
        }
    }
}

/// The `EPOEvents` row an ePO server stores for `detection`, numbered `auto_id`. As in
/// [`syslog_line`], the sender's event id rides in the agent GUID, so a delivery of the same
/// event twice is one event for the engine (R4), whichever way it is read.
pub fn epo_row(auto_id: i64, detection: &Detection) -> EpoEventRow {
    EpoEventRow {
        auto_id,
        agent_guid: Some(format!("{{{}}}", detection.event_id)),
        detected_utc: "2026-01-01T00:00:00".into(),
        target_ipv4: match detection.ip {
            Some(IpAddr::V4(ip)) => Some(ip),
            _ => None,
        },
        target_host_name: detection.hostname.clone(),
        target_mac: detection.mac.as_ref().map(|m| m.replace([':', '-'], "")),
        threat_name: detection.threat.clone(),
        threat_category: "av.detect".into(),
        threat_type: match detection.category {
            Category::Virus | Category::Malware => "virus".into(),
            Category::Spyware => "spyware".into(),
            _ => "other".into(),
        },
        threat_event_id: 1027,
    }
}

/// Sends `line` as one UDP datagram from 127.0.0.1 (the AV servers' address in the fixtures).
pub async fn send_udp(to: SocketAddr, line: &str) -> std::io::Result<()> {
    send_udp_from(IpAddr::V4(Ipv4Addr::LOCALHOST), to, line).await
}

/// Sends `line` as one UDP datagram from `from` (an AV server's topology address).
pub async fn send_udp_from(from: IpAddr, to: SocketAddr, line: &str) -> std::io::Result<()> {
    let socket = UdpSocket::bind((from, 0)).await?;
    socket.send_to(line.as_bytes(), to).await?;
    Ok(())
}

/// Sends `line` over a new TCP connection from `from`, octet-counted, and closes it; fails
/// after [`TCP_SEND_TIMEOUT`].
pub async fn send_tcp_from(from: IpAddr, to: SocketAddr, line: &str) -> std::io::Result<()> {
    let send = async {
        let socket = match from {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(from, 0))?;
        let mut stream = socket.connect(to).await?;
        let frame = format!("{} {line}", line.len());
        stream.write_all(frame.as_bytes()).await?;
        stream.shutdown().await
    };
    tokio::time::timeout(TCP_SEND_TIMEOUT, send)
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("syslog over TCP to {to}: no room within {TCP_SEND_TIMEOUT:?}"),
            )
        })?
}
