//! The daemon under load (R7, R18): a syslog burst as fast as one sender can write loses
//! nothing, idle connections cannot starve the API or the TCP syslog listener, and a panic in
//! an engine task halts the engine visibly.

mod common;

mod daemon_support;

use std::io::Write as _;
use std::time::{Duration, Instant};

use common::run::{json_of, sent};
use daemon_support::*;
use quarantine_lab::daemon::metrics::{Channel, Reject};
use quarantine_lab::engine::Journal;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// An Apex Central (OfficeScan) virus detection for VDI-001 as CEF, event `event`.
fn cef(event: u32) -> String {
    format!(
        "CEF:0|Trend Micro|Apex Central|2019|AV:File quarantined|TROJ_GENERIC.A|3|\
         rt=Mar 22 2018 08:23:23 GMT+00:00 dhost=VDI-001 dst=10.110.0.11 externalId={event}"
    )
}

/// The burst tests one at a time: each is one sender against the daemon, not two senders
/// sharing the machine's two cores.
static BURSTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits until `check` holds, up to `limit`.
async fn within(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

async fn health(base: &str) -> (StatusCode, Value) {
    let r = sent(http().get(format!("{base}/api/v1/health"))).await;
    let status = r.status();
    (status, r.json().await.unwrap())
}

/// Raises the soft fd limit to the hard one; false when fewer than `need` descriptors can be
/// open (the caller then skips with a message).
fn enough_fds(need: u64) -> bool {
    // SAFETY: getrlimit/setrlimit on a properly initialised struct.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return false;
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            let _ = libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        }
        limit.rlim_cur >= need
    }
}

/// `POST /api/v1/detections` of a virus on vdi-001 (10.110.0.11) as event `event_id`, not yet
/// sent.
fn post_detection(base: &str, event_id: &str) -> reqwest::RequestBuilder {
    http()
        .post(format!("{base}/api/v1/detections"))
        .bearer_auth(TOKEN)
        .json(&json!({
            "source": "osce", "event_id": event_id, "category": "virus",
            "threat": "TROJ_GENERIC.A", "ip": "10.110.0.11"
        }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r7_r18_a_burst_of_10000_udp_datagrams_from_one_sender_is_journaled_whole() {
    const BURST: u32 = 10_000;
    let _one_at_a_time = BURSTS.lock().await;
    let (lab, daemon) = started().await;
    let target = daemon.syslog_udp_addr().unwrap();
    let (status, h) = health(daemon.api_url()).await;
    assert_eq!(status, StatusCode::OK);
    let granted = h["syslog_in"]["udp_recv_buffer_bytes"]["granted"]
        .as_u64()
        .unwrap();
    assert!(granted > 0, "{h}");

    // One sender, a blocking socket, as fast as it can write.
    let messages: Vec<String> = (0..BURST).map(cef).collect();
    let sent = tokio::task::spawn_blocking(move || {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let started = Instant::now();
        for m in &messages {
            socket.send_to(m.as_bytes(), target).unwrap();
        }
        started.elapsed()
    })
    .await
    .unwrap();

    let m = daemon.metrics().clone();
    let all = within(Duration::from_secs(120), || {
        m.accepted_count(Channel::SyslogUdp) == u64::from(BURST)
    })
    .await;
    assert!(
        all,
        "{} of {BURST} journaled (sent in {sent:?}); rejected: {:?}; dropped by the kernel: {:?}",
        m.accepted_count(Channel::SyslogUdp),
        m.rejected_map(),
        m.intake.udp_kernel_drops()
    );
    // On Linux the kernel's own count says nothing was dropped before the daemon read it.
    assert!(
        matches!(m.intake.udp_kernel_drops(), Some(0) | None),
        "{:?}",
        m.intake.udp_kernel_drops()
    );
    assert_eq!(m.rejected(Reject::SyslogQueueFull), 0);
    let (_, h) = health(daemon.api_url()).await;
    if cfg!(target_os = "linux") {
        assert_eq!(h["syslog_in"]["udp_kernel_drops"], 0, "{h}");
    }
    eprintln!(
        "burst of {BURST} sent in {sent:?}; queue peak {}; receive buffer {granted} bytes",
        h["syslog_in"]["queue"]["peak"]
    );
    daemon.shutdown().await;
    let journal = Journal::open(&lab.journal).unwrap();
    assert_eq!(journal.detection_count().unwrap(), u64::from(BURST));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_a_full_udp_queue_drops_are_counted_never_silent() {
    // A queue of 4 messages: a burst overflows it, and every datagram is either journaled or
    // counted as syslog_queue_full.
    const BURST: u32 = 2_000;
    let _one_at_a_time = BURSTS.lock().await;
    let lab = lab_with(|t| t, "");
    let text = std::fs::read_to_string(&lab.config).unwrap().replace(
        "max_message_bytes = 2048\n",
        "max_message_bytes = 2048\nqueue_messages = 4\n",
    );
    std::fs::write(&lab.config, text).unwrap();
    let daemon = start(&lab).await;
    let target = daemon.syslog_udp_addr().unwrap();
    tokio::task::spawn_blocking(move || {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for e in 0..BURST {
            socket.send_to(cef(e).as_bytes(), target).unwrap();
        }
    })
    .await
    .unwrap();
    let m = daemon.metrics().clone();
    let settled = within(Duration::from_secs(60), || {
        m.accepted_count(Channel::SyslogUdp) + m.rejected(Reject::SyslogQueueFull)
            == u64::from(BURST)
    })
    .await;
    assert!(
        settled,
        "accepted {} + dropped {} != {BURST}",
        m.accepted_count(Channel::SyslogUdp),
        m.rejected(Reject::SyslogQueueFull)
    );
    assert!(m.rejected(Reject::SyslogQueueFull) > 0);
    let (_, h) = health(daemon.api_url()).await;
    assert_eq!(
        h["rejected"]["syslog_queue_full"].as_u64(),
        Some(m.rejected(Reject::SyslogQueueFull))
    );
    assert_eq!(h["syslog_in"]["queue"]["capacity"], 4);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_1000_idle_connections_to_the_api_and_syslog_tcp_starve_nobody() {
    const IDLE: usize = 1000;
    if !enough_fds(2 * IDLE as u64 + 512) {
        eprintln!(
            "skipped: the process may not open {} descriptors",
            2 * IDLE + 512
        );
        return;
    }
    let (_lab, daemon) = started().await;
    let base = daemon.api_url().to_string();
    let api = daemon.api_addr();
    let syslog = daemon.syslog_tcp_addr().unwrap();
    // Connect and send nothing (a scanner, a stuck client), the API and the syslog port alike.
    let mut idle = Vec::with_capacity(2 * IDLE);
    for _ in 0..IDLE {
        idle.push(TcpStream::connect(api).await.unwrap());
        idle.push(TcpStream::connect(syslog).await.unwrap());
    }

    // The API answers and acknowledges at once.
    let started = Instant::now();
    let (status, _) = health(&base).await;
    assert_eq!(status, StatusCode::OK);
    let response = post_detection(&base, "idle-flood-1")
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .expect("the detection is acknowledged within a second");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // A syslog sender gets through too: its detection is journaled within a second.
    let m = daemon.metrics().clone();
    let started = Instant::now();
    let mut sender = TcpStream::connect(syslog).await.unwrap();
    let line = format!("{}\n", cef(7));
    sender.write_all(line.as_bytes()).await.unwrap();
    assert!(
        within(Duration::from_secs(1), || m
            .accepted_count(Channel::SyslogTcp)
            == 1)
        .await,
        "not journaled within a second; rejected: {:?}",
        m.rejected_map()
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    // Room was made by closing idle connections, and each was counted.
    assert!(m.rejected(Reject::ApiConnectionEvicted) > 0);
    assert!(m.rejected(Reject::SyslogConnectionEvicted) > 0);
    drop(idle);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_a_silent_syslog_connection_is_closed_after_the_first_byte_timeout() {
    let (_lab, daemon) = started().await;
    let syslog = daemon.syslog_tcp_addr().unwrap();
    let _silent = TcpStream::connect(syslog).await.unwrap();
    let m = daemon.metrics().clone();
    let limit = quarantine_lab::daemon::SYSLOG_FIRST_BYTE_TIMEOUT + Duration::from_secs(2);
    assert!(within(limit, || m.rejected(Reject::SyslogIdleTimeout) == 1).await);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_a_client_that_never_finishes_its_headers_is_cut_off() {
    let (_lab, daemon) = started().await;
    let mut slow = std::net::TcpStream::connect(daemon.api_addr()).unwrap();
    slow.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(
        quarantine_lab::daemon::HEADER_READ_TIMEOUT + Duration::from_secs(5),
    ))
    .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = std::io::Read::read_to_end(&mut slow, &mut rest);
    // Closed by the server (EOF, perhaps after a 408), not by our read timeout.
    assert!(read.is_ok(), "{read:?}");
    assert!(
        started.elapsed() <= quarantine_lab::daemon::HEADER_READ_TIMEOUT + Duration::from_secs(2)
    );
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_a_panicking_engine_task_halts_the_engine_visibly() {
    let (_lab, daemon) = started().await;
    let base = daemon.api_url().to_string();
    daemon.engine().panic_an_engine_task_for_tests();
    let reason = tokio::time::timeout(Duration::from_secs(5), daemon.halted())
        .await
        .expect("the engine halts");
    assert!(reason.contains("panicked"), "{reason}");

    let (status, h) = health(&base).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h["ok"], false);
    assert!(
        h["halt_reason"].as_str().unwrap().contains("panicked"),
        "{h}"
    );
    // An ERROR alert says so.
    let alerts: Value = json_of(
        http()
            .get(format!("{base}/api/v1/alerts?since=0"))
            .bearer_auth(TOKEN),
    )
    .await;
    let halted: Vec<&Value> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["code"] == "engine-halted")
        .collect();
    assert_eq!(halted.len(), 1, "{alerts}");
    // Nothing more is acknowledged that would never be acted on.
    let refused = post_detection(&base, "after-panic").send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r7_the_intake_bench_journals_every_detection_of_its_udp_and_tcp_bursts() {
    use quarantine_lab::bench::intake::{measure, Transport, BURST};
    let _one_at_a_time = BURSTS.lock().await;
    let topology = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(quarantine_lab::bench::intake::INTAKE_TOPOLOGY);
    for transport in [Transport::Udp, Transport::Tcp] {
        let burst = measure(&topology, transport, BURST).await.unwrap();
        assert_eq!(burst.journaled, u64::from(BURST));
        // Group commit batches the burst: far fewer commits than detections.
        assert!(burst.commits * 10 < u64::from(BURST), "{burst:?}");
        eprintln!(
            "{transport:?}: {BURST} durable in {:?} = {:.0}/s, written in {:?}, {} commits",
            burst.elapsed,
            burst.per_sec(),
            burst.written_in,
            burst.commits
        );
    }
}
