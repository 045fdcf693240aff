//! ePO pollers (`[[epo_pollers]]`): events are submitted, bad rows counted, and the cursor is
//! stored only after the batch is durable (R7), so a restart does not submit them again.

mod daemon_support;

use daemon_support::*;
use quarantine_lab::daemon::metrics::{Channel, Reject};
use quarantine_lab::engine::Journal;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const REPLY: &str = r#"OK:
[{"EPOEvents.AutoID": 41, "EPOEvents.TargetIPV4": "10.110.0.11", "EPOEvents.TargetHostName": "VDI-001",
  "EPOEvents.ThreatName": "W32/Generic", "EPOEvents.ThreatType": "virus", "EPOEvents.ThreatCategory": "av.detect"},
 {"EPOEvents.AutoID": 42, "EPOEvents.TargetIPV4": "10.110.0.12"}]"#;

fn with_epo(topology: String) -> String {
    topology.replacen(
        "[[hypervisors]]",
        "[[av_servers]]\nname = \"epo-1\"\nkind = \"epo\"\naddress = \"127.0.0.3\"\n\n[[hypervisors]]",
        1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epo_events_are_journaled_once_and_the_cursor_survives_a_restart() {
    let epo = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/remote/core.executeQuery"))
        .respond_with(ResponseTemplate::new(200).set_body_string(REPLY))
        .mount(&epo)
        .await;
    let extra = format!(
        "[[epo_pollers]]\nsource = \"epo-1\"\nurl = \"{}\"\nuser = \"qlab\"\npassword = \"qlab\"\ninterval = \"100ms\"\n",
        epo.uri()
    );
    let lab = lab_with(with_epo, &extra);
    let daemon = start(&lab).await;
    let m = daemon.metrics().clone();
    assert!(
        eventually(|| m.accepted_count(Channel::Epo) == 1 && m.rejected(Reject::EpoBadRow) == 1)
            .await,
        "accepted {:?}, rejected {:?}",
        m.accepted_map(),
        m.rejected_map()
    );
    let cursor = lab.dir.path().join("journal.sqlite.epo-cursor.epo-1");
    assert!(eventually(|| std::fs::read_to_string(&cursor).ok().as_deref() == Some("42")).await);
    daemon.shutdown().await;
    let journal = Journal::open(&lab.journal).unwrap();
    assert!(journal
        .find_detection("epo-1", "epo-autoid-41")
        .unwrap()
        .is_some());
    drop(journal);

    // After a restart the stored cursor skips what is already journaled.
    let daemon = start(&lab).await;
    let polls_before = epo.received_requests().await.unwrap_or_default().len();
    let server = &epo;
    let mut polled_again = false;
    for _ in 0..50 {
        // Two polls since the restart: the first one's reply has been fully handled.
        if server.received_requests().await.unwrap_or_default().len() > polls_before + 1 {
            polled_again = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(polled_again);
    assert_eq!(daemon.metrics().accepted_count(Channel::Epo), 0);
    daemon.shutdown().await;
    let journal = Journal::open(&lab.journal).unwrap();
    assert_eq!(journal.detection_count().unwrap(), 1);
}
