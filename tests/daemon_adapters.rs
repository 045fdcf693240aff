//! The daemon's outbound adapters (R17): plain SMTP with outcome classes, and alerts reaching
//! the configured syslog collector and mail server from a running daemon.

mod daemon_support;

use std::time::Duration;

use daemon_support::*;
use quarantine_lab::adapters::smtp::SmtpMailer;
use quarantine_lab::adapters::{Email, Mailer, OutcomeClass};
use quarantine_lab::sim::wire::smtp_sink::SmtpSink;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};

fn email() -> Email {
    Email {
        id: "qlab.alert.7.1500".into(),
        to: "admin-a@example.com".into(),
        subject: "quarantine failed".into(),
        body: "line one\n.\nline three".into(),
    }
}

/// A one-connection SMTP server that answers RCPT with `rcpt_reply`, and after the data's
/// final dot answers nothing when `hang_after_data`.
async fn fake_smtp(rcpt_reply: &'static str, hang_after_data: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let _ = write.write_all(b"220 fake ESMTP\r\n").await;
        let mut in_data = false;
        while let Ok(Some(line)) = lines.next_line().await {
            let reply: &str = if in_data {
                if line != "." {
                    continue;
                }
                in_data = false;
                if hang_after_data {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                "250 queued\r\n"
            } else {
                match line.get(..4).unwrap_or("").to_ascii_uppercase().as_str() {
                    "EHLO" | "HELO" => "250 fake\r\n",
                    "MAIL" => "250 ok\r\n",
                    "RCPT" => rcpt_reply,
                    "DATA" => {
                        in_data = true;
                        "354 go ahead\r\n"
                    }
                    "QUIT" => "221 bye\r\n",
                    _ => "250 ok\r\n",
                }
            };
            if write.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    port
}

/// The `Message-ID` header of a received message (one line; the sink keeps it unfolded).
fn message_id(data: &str) -> Option<String> {
    data.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        l.split_once(':')
            .filter(|(name, _)| name.eq_ignore_ascii_case("message-id"))
            .map(|(_, v)| v.trim().to_string())
    })
}

/// A started SMTP sink and a mailer sending to it (from qlab@example.com, 2 s timeout).
async fn smtp_sink() -> (SmtpSink, SmtpMailer) {
    let sink = SmtpSink::start().await.unwrap();
    let timeout = Duration::from_secs(2);
    let mailer = SmtpMailer::new("127.0.0.1", sink.port(), "qlab@example.com", timeout).unwrap();
    (sink, mailer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r17_r16_each_email_carries_a_message_id_that_a_resend_keeps() {
    let (sink, mailer) = smtp_sink().await;
    // The same alert sent twice (a resend after a restart), then an email without an id.
    mailer.send(&email()).await.unwrap();
    mailer.send(&email()).await.unwrap();
    let anonymous = Email {
        id: String::new(),
        ..email()
    };
    mailer.send(&anonymous).await.unwrap();
    mailer.send(&anonymous).await.unwrap();
    let ids: Vec<String> = sink
        .mails()
        .iter()
        .map(|m| message_id(&m.data).unwrap_or_else(|| panic!("no Message-ID in {}", m.data)))
        .collect();
    assert_eq!(ids.len(), 4);
    assert_eq!(ids[0], "<qlab.alert.7.1500@example.com>");
    assert_eq!(ids[1], ids[0], "a resent alert keeps its Message-ID");
    // RFC 5322 msg-id: "<" id-left "@" id-right ">", each side non-empty, no spaces.
    for id in &ids[2..] {
        let inner = id.strip_prefix('<').and_then(|i| i.strip_suffix('>'));
        let (left, right) = inner.and_then(|i| i.split_once('@')).unwrap_or_default();
        assert!(!left.is_empty() && !right.is_empty(), "{id}");
        assert!(!id.contains(char::is_whitespace), "{id}");
    }
    assert_ne!(ids[2], ids[3], "emails without an id get distinct ones");
    // The engine's alerts name themselves by journal sequence and time.
    let alert = quarantine_lab::engine::Alert {
        seq: 7,
        at_ms: 1500,
        code: quarantine_lab::engine::AlertCode::QuarantineFailed,
        lserver: Some("/tenant-a/vdi-001".into()),
        ip: None,
        operation: Some(3),
        detail: "d".into(),
    };
    assert_eq!(alert.email("admin-a@example.com", true).id, email().id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_delivers_to_a_sink_and_classifies_failures() {
    let (sink, mailer) = smtp_sink().await;
    mailer.send(&email()).await.unwrap();
    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, vec!["admin-a@example.com".to_string()]);
    assert!(mails[0].data.contains("Subject: quarantine failed"));

    let timeout = Duration::from_secs(2);
    let send = |port| async move {
        SmtpMailer::new("127.0.0.1", port, "qlab@example.com", timeout)
            .unwrap()
            .send(&email())
            .await
            .unwrap_err()
            .class
    };
    assert_eq!(
        send(fake_smtp("550 no such user\r\n", false).await).await,
        OutcomeClass::Rejected
    );
    assert_eq!(
        send(fake_smtp("451 try later\r\n", false).await).await,
        OutcomeClass::Busy
    );
    // The data went out, the reply never came: it may have been delivered.
    assert_eq!(
        send(fake_smtp("250 ok\r\n", true).await).await,
        OutcomeClass::Unknown
    );
    assert_eq!(send(closed_port()).await, OutcomeClass::Unavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r17_alerts_reach_the_syslog_collector_and_the_tenant_mailbox() {
    let sink = SmtpSink::start().await.unwrap();
    let collector = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let extra = format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {}\nfrom = \"qlab@example.com\"\n\
         [syslog_out]\nudp = \"{}\"\n",
        sink.port(),
        collector.local_addr().unwrap()
    );
    let lab = lab_with(|t| t, &extra);
    let daemon = start(&lab).await;
    // The devices are unreachable, so a manual quarantine starts and then fails.
    let reply = post_with_token(format!(
        "{}/api/v1/lservers/tenant-a/vdi-003/quarantine",
        daemon.api_url()
    ))
    .await;
    assert_eq!(reply.status(), reqwest::StatusCode::ACCEPTED);
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(10), collector.recv(&mut buf))
        .await
        .expect("no syslog line within 10 s")
        .unwrap();
    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(line.starts_with('<'), "{line}");
    assert!(line.contains("quarantine-started"), "{line}");
    let mut mailed = false;
    for _ in 0..150 {
        if !sink.mails().is_empty() {
            mailed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(mailed, "no email within 15 s");
    assert_eq!(sink.mails()[0].to, vec!["admin-a@example.com".to_string()]);
    daemon.shutdown().await;
}
