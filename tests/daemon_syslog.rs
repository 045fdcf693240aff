//! Syslog intake (R18): messages are taken only from an AV server's topology address, parsed
//! by that server's kind, and journaled; everything else is counted with its reason.

mod daemon_support;

use std::time::Duration;

use daemon_support::*;
use quarantine_lab::daemon::metrics::{Channel, Reject};
use quarantine_lab::engine::Journal;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

/// An Apex Central (OfficeScan) virus detection for VDI-001 as CEF.
fn cef(event: u32) -> String {
    format!(
        "CEF:0|Trend Micro|Apex Central|2019|AV:File quarantined|TROJ_GENERIC.A|3|\
         rt=Mar 22 2018 08:23:23 GMT+00:00 dhost=VDI-001 dst=10.110.0.11 externalId={event}"
    )
}

async fn udp_from(local: &str) -> Option<UdpSocket> {
    UdpSocket::bind(format!("{local}:0")).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_udp_syslog_from_the_av_servers_address_is_journaled() {
    let (lab, daemon) = started().await;
    let target = daemon.syslog_udp_addr().unwrap();
    let socket = udp_from("127.0.0.1").await.unwrap();
    socket.send_to(cef(1).as_bytes(), target).await.unwrap();
    // With an RFC 5424 header and a trailing newline too.
    let line = format!("<134>1 2024-05-01T10:00:00Z apex CEF - - - {}\n", cef(2));
    socket.send_to(line.as_bytes(), target).await.unwrap();
    let m = daemon.metrics().clone();
    assert!(
        eventually(|| m.accepted_count(Channel::SyslogUdp) == 2).await,
        "rejected: {:?}",
        m.rejected_map()
    );
    daemon.shutdown().await;
    let journal = Journal::open(&lab.journal).unwrap();
    assert_eq!(journal.detection_count().unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_syslog_from_another_address_is_rejected_and_counted() {
    // The AV server now lives at 127.0.0.2; 127.0.0.1 is a stranger.
    let lab = lab_with(
        |t| t.replace("address = \"127.0.0.1\"", "address = \"127.0.0.2\""),
        "",
    );
    let daemon = start(&lab).await;
    let target = daemon.syslog_udp_addr().unwrap();
    let stranger = udp_from("127.0.0.1").await.unwrap();
    stranger.send_to(cef(1).as_bytes(), target).await.unwrap();
    let m = daemon.metrics().clone();
    assert!(eventually(|| m.rejected(Reject::SyslogUnknownSource) == 1).await);

    // TCP from the stranger is closed before a byte is read.
    let tcp_target = daemon.syslog_tcp_addr().unwrap();
    let mut conn = TcpStream::connect(tcp_target).await.unwrap();
    let _ = conn
        .write_all(format!("{} {}", cef(2).len(), cef(2)).as_bytes())
        .await;
    assert!(eventually(|| m.rejected(Reject::SyslogUnknownSource) == 2).await);

    // Linux routes all of 127.0.0.0/8 to loopback, so the real AV server can be played too;
    // where the OS does not allow binding 127.0.0.2 the rejection above is the whole test.
    if let Some(av) = udp_from("127.0.0.2").await {
        av.send_to(cef(3).as_bytes(), target).await.unwrap();
        assert!(
            eventually(|| m.accepted_count(Channel::SyslogUdp) == 1).await,
            "rejected: {:?}",
            m.rejected_map()
        );
    }
    assert_eq!(
        m.accepted_count(Channel::SyslogUdp),
        m.rejected(Reject::SyslogUnknownSource) - 1
    );
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_oversized_and_unparsable_messages_are_counted_not_journaled() {
    let (lab, daemon) = started().await;
    let target = daemon.syslog_udp_addr().unwrap();
    let socket = udp_from("127.0.0.1").await.unwrap();
    // max_message_bytes is 2048 in the test config.
    socket.send_to(&[b'x'; 3000], target).await.unwrap();
    socket
        .send_to(b"<13>hello, not a detection", target)
        .await
        .unwrap();
    socket
        .send_to(b"\xff\xfe\x00garbage", target)
        .await
        .unwrap();
    let m = daemon.metrics().clone();
    assert!(eventually(|| m.rejected(Reject::SyslogOversized) == 1).await);
    assert!(eventually(|| m.rejected(Reject::SyslogUnparsable) == 2).await);
    daemon.shutdown().await;
    assert_eq!(journaled_detections(&lab), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_syslog_takes_octet_counting_and_lf_framing() {
    let (_lab, daemon) = started().await;
    let mut conn = TcpStream::connect(daemon.syslog_tcp_addr().unwrap())
        .await
        .unwrap();
    let counted = cef(1);
    let framed = format!("{} {}{}\n", counted.len(), counted, cef(2));
    // Split mid-frame: the decoder must wait for the rest.
    let (a, b) = framed.as_bytes().split_at(20);
    conn.write_all(a).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn.write_all(b).await.unwrap();
    // A broken octet count closes the connection after counting it.
    conn.write_all(b"12x34 junk").await.unwrap();
    let m = daemon.metrics().clone();
    assert!(
        eventually(|| m.accepted_count(Channel::SyslogTcp) == 2).await,
        "rejected: {:?}",
        m.rejected_map()
    );
    assert!(eventually(|| m.rejected(Reject::SyslogBadFraming) == 1).await);
    daemon.shutdown().await;
}
