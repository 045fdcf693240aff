//! The simulated AV servers' syslog senders: a detection written the way OfficeScan/Apex
//! Central (CEF), SEPM (risk-log line after a 3164 header) or ePO (EPOEvent XML in 5424) would
//! send it, over UDP to the engine's syslog listener.

use std::net::SocketAddr;

use tokio::net::UdpSocket;

use crate::ingest::{cef, epo, sepm, syslog};
use crate::model::{AvKind, Category, Detection};

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

/// Sends `line` as one UDP datagram from 127.0.0.1 (the AV servers' address in the fixtures).
pub async fn send_udp(to: SocketAddr, line: &str) -> std::io::Result<()> {
    let socket = UdpSocket::bind(("127.0.0.1", 0)).await?;
    socket.send_to(line.as_bytes(), to).await?;
    Ok(())
}
