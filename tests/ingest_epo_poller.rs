//! The ePO Web API poller against the ePO simulator over loopback HTTP: the cursor advances,
//! batches are bounded, signed IPv4 columns convert, `Error 0 :` and bad credentials fail
//! clearly, a hung server is cut at the call timeout (R19), and a bad row does not stall the
//! cursor.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quarantine_lab::ingest::{EpoPoller, IngestError};
use quarantine_lab::model::Category;
use quarantine_lab::sim::wire::epo::{self, EpoEventRow, EpoEvents};
use quarantine_lab::sim::wire::WireServer;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

const TIMEOUT: Duration = Duration::from_secs(2);

fn row(auto_id: i64, host: &str, ip: Option<&str>, threat_type: &str) -> EpoEventRow {
    EpoEventRow {
        auto_id,
        agent_guid: None,
        detected_utc: format!("2024-03-22T08:{:02}:00", auto_id % 60),
        target_ipv4: ip.map(|i| i.parse().unwrap()),
        target_host_name: Some(host.into()),
        target_mac: Some("005056000011".into()),
        threat_name: format!("Threat.{auto_id}"),
        threat_category: "av.detect".into(),
        threat_type: threat_type.into(),
        threat_event_id: 1027,
    }
}

async fn sim(rows: Vec<EpoEventRow>) -> (EpoEvents, WireServer) {
    let events: EpoEvents = Arc::new(Mutex::new(rows));
    let server = epo::start(events.clone(), "qlab", "secret").await.unwrap();
    (events, server)
}

/// `core.executeQuery` of the simulator with `params` (JSON output), as user `qlab`.
async fn query(server: &WireServer, params: &str) -> reqwest::Response {
    let url = format!(
        "{}/remote/core.executeQuery?{params}&:output=json",
        server.url()
    );
    reqwest::Client::new()
        .get(url)
        .basic_auth("qlab", Some("secret"))
        .send()
        .await
        .unwrap()
}

/// A stand-in ePO server that gives `reply` to every request.
async fn answering(reply: ResponseTemplate) -> MockServer {
    let mock = MockServer::start().await;
    Mock::given(any()).respond_with(reply).mount(&mock).await;
    mock
}

/// The error of one poll from `cursor` of a server answering 200 with `body`.
async fn poll_error(body: &str, cursor: i64) -> IngestError {
    let mock = answering(ResponseTemplate::new(200).set_body_string(body)).await;
    poller(&mock.uri(), "secret")
        .poll_once(cursor)
        .await
        .unwrap_err()
}

fn poller(url: &str, password: &str) -> EpoPoller {
    EpoPoller::new("epo-1", url, "qlab", password, TIMEOUT).unwrap()
}

#[tokio::test]
async fn cursor_advances_and_only_new_events_come_back() {
    let (events, server) = sim(vec![
        row(1, "VDI-001", Some("10.110.0.11"), "virus"),
        row(2, "VDI-002", Some("10.110.0.12"), "pup"),
    ])
    .await;
    let mut p = poller(&server.url(), "secret");
    let (got, cursor) = p.poll_once(0).await.unwrap();
    assert_eq!(cursor, 2);
    let ids: Vec<i64> = got.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![1, 2]);
    let (_, first) = &got[0];
    assert_eq!(first.source, "epo-1");
    assert_eq!(first.event_id, "epo-autoid-1");
    assert_eq!(first.ip, Some("10.110.0.11".parse().unwrap()));
    assert_eq!(first.mac.as_deref(), Some("00:50:56:00:00:11"));
    assert_eq!(first.category, Category::Virus);
    assert_eq!(got[1].1.category, Category::Spyware);

    // Nothing new: same cursor, no detections.
    assert_eq!(p.poll_once(cursor).await.unwrap(), (vec![], 2));

    events
        .lock()
        .unwrap()
        .push(row(7, "VDI-003", Some("10.110.0.13"), "trojan"));
    let (got, cursor) = p.poll_once(cursor).await.unwrap();
    assert_eq!(cursor, 7);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.event_id, "epo-autoid-7");

    // At least once: polling again from an old cursor returns the same ids (R4 dedupes them).
    let (again, _) = p.poll_once(2).await.unwrap();
    assert_eq!(again, got);
}

#[tokio::test]
async fn batches_are_bounded() {
    let rows = (1..=5)
        .map(|i| row(i, "VDI-001", Some("10.110.0.11"), "virus"))
        .collect();
    let (_, server) = sim(rows).await;
    let mut p = poller(&server.url(), "secret").with_batch(2);
    let (got, cursor) = p.poll_once(0).await.unwrap();
    assert_eq!((got.len(), cursor), (2, 2));
    let (got, cursor) = p.poll_once(cursor).await.unwrap();
    assert_eq!((got.len(), cursor), (2, 4));
    let (got, cursor) = p.poll_once(cursor).await.unwrap();
    assert_eq!((got.len(), cursor), (1, 5));
}

#[tokio::test]
async fn ipv4_columns_are_signed_on_the_wire() {
    let (_, server) = sim(vec![
        row(1, "VDI-001", Some("10.110.0.11"), "virus"),
        row(2, "HIGH", Some("200.1.2.3"), "virus"),
        row(3, "ZERO", Some("0.0.0.0"), "virus"),
    ])
    .await;
    let body = query(
        &server,
        "target=EPOEvents&select=(select EPOEvents.AutoID EPOEvents.TargetIPV4)",
    )
    .await
    .text()
    .await
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(body.strip_prefix("OK:").unwrap()).unwrap();
    assert_eq!(json[0]["EPOEvents.TargetIPV4"], -1972502517);
    assert_eq!(json[2]["EPOEvents.TargetIPV4"], i64::from(i32::MIN));
    assert!(
        json[0].get("EPOEvents.ThreatName").is_none(),
        "only selected columns"
    );

    let mut p = poller(&server.url(), "secret");
    let (got, _) = p.poll_once(0).await.unwrap();
    let ips: Vec<_> = got.iter().map(|(_, d)| d.ip.unwrap()).collect();
    let want: Vec<std::net::IpAddr> = ["10.110.0.11", "200.1.2.3", "0.0.0.0"]
        .iter()
        .map(|s| s.parse::<Ipv4Addr>().unwrap().into())
        .collect();
    assert_eq!(ips, want);
}

#[tokio::test]
async fn bad_credentials_are_an_auth_failure() {
    let (_, server) = sim(vec![row(1, "VDI-001", None, "virus")]).await;
    let err = poller(&server.url(), "wrong")
        .poll_once(0)
        .await
        .unwrap_err();
    assert!(matches!(err, IngestError::Auth(_)), "{err:?}");
    assert_eq!(err.kind(), "auth");
}

#[tokio::test]
async fn error_0_is_a_remote_failure_whatever_the_status() {
    // The simulator answers a query it does not understand with `Error 0 :` (HTTP 400).
    let (_, server) = sim(vec![]).await;
    let reply = query(&server, "target=Nope").await;
    assert_eq!(reply.status(), 400);
    assert_eq!(
        reply.text().await.unwrap(),
        "Error 0 :\nUnknown target: Nope"
    );

    // A server answering 200 with an error body is a failure too, and keeps the cursor.
    let err = poll_error("Error 0 :\nQuery failed: no such table", 5).await;
    assert_eq!(
        err,
        IngestError::Remote {
            code: 0,
            message: "Query failed: no such table".into()
        }
    );
    assert_eq!(err.reason(), "ePO error 0: Query failed: no such table");
}

#[tokio::test]
async fn a_garbled_reply_is_refused_not_half_read() {
    let err = poll_error("OK:\n[{\"EPOEvents.AutoID\": 1}, {\"x\": 2}]", 0).await;
    assert_eq!(
        err.reason(),
        "ePO reply: row 2 has no integer EPOEvents.AutoID"
    );
}

#[tokio::test]
async fn r19_a_hung_server_is_cut_at_the_call_timeout() {
    let mock = answering(
        ResponseTemplate::new(200)
            .set_body_string("OK:\n[]")
            .set_delay(Duration::from_secs(10)),
    )
    .await;
    let mut p = EpoPoller::new(
        "epo-1",
        mock.uri(),
        "qlab",
        "secret",
        Duration::from_millis(300),
    )
    .unwrap();
    let started = Instant::now();
    let err = p.poll_once(0).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.kind(), "transport", "{err:?}");
}

#[tokio::test]
async fn r18_a_bad_row_is_set_aside_and_the_cursor_moves_past_it() {
    let mut bad = row(2, "x", None, "virus");
    bad.target_host_name = None;
    bad.target_mac = None; // no match key at all
    let (_, server) = sim(vec![
        row(1, "VDI-001", None, "virus"),
        bad,
        row(3, "VDI-003", None, "virus"),
    ])
    .await;
    let mut p = poller(&server.url(), "secret");
    let (got, cursor) = p.poll_once(0).await.unwrap();
    assert_eq!(cursor, 3);
    assert_eq!(
        got.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![1, 3]
    );
    let rejected = p.take_rejected();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].0, 2);
    assert!(
        rejected[0].1.reason().contains("AutoID 2"),
        "{}",
        rejected[0].1
    );
    assert!(p.take_rejected().is_empty());
}

#[test]
fn the_query_names_the_cursor_batch_and_json_output() {
    let p = EpoPoller::new("epo-1", "https://epo:8443/", "u", "p", TIMEOUT)
        .unwrap()
        .with_batch(50);
    let url = p.query_url(1234).unwrap();
    assert!(url
        .as_str()
        .starts_with("https://epo:8443/remote/core.executeQuery?target=EPOEvents&"));
    assert!(url.as_str().ends_with("&:output=json"));
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(get("where"), "(where (gt EPOEvents.AutoID 1234))");
    assert!(get("select").starts_with("(select (top 50) EPOEvents.AutoID "));
    assert!(
        !format!("{p:?}").contains("\"p\""),
        "the password stays out of Debug"
    );
}

#[test]
fn a_ca_pem_without_certificates_is_refused() {
    let p = EpoPoller::new("epo-1", "https://epo:8443", "u", "p", TIMEOUT).unwrap();
    let err = p.with_ca_pem(b"not a certificate").unwrap_err();
    assert_eq!(err.kind(), "transport");
}
