//! The simulated AV servers' syslog senders against the daemon's intake: one detection per
//! vendor format, each journaled for the right L-Server under the right source (R3, R7, R18).

mod daemon_support;

use daemon_support::*;
use quarantine_lab::engine::Journal;
use quarantine_lab::ingest::parse_detection;
use quarantine_lab::model::{AvKind, Category, Detection};
use quarantine_lab::sim::wire::avsender::{send_udp, syslog_line};

const MORE_AV_SERVERS: &str = "address = \"127.0.0.1\"\n\n[[av_servers]]\nname = \"sepm\"\nkind = \"sepm\"\naddress = \"127.0.0.1\"\n\n[[av_servers]]\nname = \"epo\"\nkind = \"epo\"\naddress = \"127.0.0.1\"\n";

fn detection(source: &str, ip: &str, hostname: &str) -> Detection {
    Detection {
        source: source.into(),
        event_id: format!("{source}-event-1"),
        ip: Some(ip.parse().unwrap()),
        mac: None,
        hostname: Some(hostname.into()),
        threat: "WORM_DOWNAD.AD".into(),
        category: Category::Virus,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_each_vendors_syslog_line_is_journaled_for_its_lserver() {
    let lab = lab_with(
        |t| t.replacen("address = \"127.0.0.1\"\n", MORE_AV_SERVERS, 1),
        "",
    );
    let daemon = start(&lab).await;
    let to = daemon.syslog_udp_addr().unwrap();
    let sent = [
        (
            AvKind::Officescan,
            detection("osce", "10.110.0.11", "VDI-001"),
            "/tenant-a/vdi-001",
        ),
        (
            AvKind::Sepm,
            detection("sepm", "10.110.0.12", "VDI-002"),
            "/tenant-a/vdi-002",
        ),
        (
            AvKind::Epo,
            detection("epo", "10.110.0.13", "VDI-003"),
            "/tenant-a/vdi-003",
        ),
    ];
    let mut expected = Vec::new();
    for (kind, d, lserver) in &sent {
        let line = syslog_line(*kind, d);
        // What the engine will make of the line: the id it journals it under.
        let parsed = parse_detection(*kind, &d.source, line.as_bytes()).unwrap();
        assert_eq!(parsed.ip, d.ip, "{kind:?}: {line}");
        assert!(parsed.category.triggers_action(), "{kind:?}");
        send_udp(to, &line).await.unwrap();
        expected.push((d.source.clone(), parsed.event_id, lserver.to_string()));
    }
    let journal_path = lab.journal.clone();
    assert!(
        eventually(|| Journal::open(&journal_path)
            .unwrap()
            .detection_count()
            .unwrap()
            == 3)
        .await,
        "all three detections journaled"
    );
    let journal = Journal::open(&lab.journal).unwrap();
    for (source, event_id, lserver) in expected {
        let id = journal
            .find_detection(&source, &event_id)
            .unwrap()
            .unwrap_or_else(|| panic!("{source}/{event_id}"));
        let receipt = journal.detection_receipt(id).unwrap().unwrap();
        assert_eq!(
            receipt.lserver.as_deref(),
            Some(lserver.as_str()),
            "{source}"
        );
    }
    daemon.shutdown().await;
}
