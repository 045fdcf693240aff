//! Scoped API tokens and audit (R18, least privilege): a `notify` token cannot quarantine,
//! release or decide; commands are journaled with the name of the token that made them and
//! `GET /operations/{id}` shows it; the single token of older configs keeps every scope.

mod common;

mod daemon_support;

use common::run::sent;
use daemon_support::*;
use quarantine_lab::daemon::auth::digest_hex;
use quarantine_lab::daemon::config::EngineConfig;
use quarantine_lab::daemon::metrics::Reject;
use quarantine_lab::daemon::Daemon;
use reqwest::StatusCode;
use serde_json::{json, Value};

const NOTIFY_TOKEN: &str = "osce-script-secret";
const OPERATOR_TOKEN: &str = "soc-operator-secret";
const MONITOR_TOKEN: &str = "monitor-secret";

fn scoped_config() -> String {
    format!(
        "[[tokens]]\nname = \"osce-script\"\nscopes = [\"notify\"]\nsha256 = \"{}\"\n\
         [[tokens]]\nname = \"soc-operator\"\nscopes = [\"read\", \"operate\"]\nfile = \"soc.token\"\n\
         [[tokens]]\nname = \"monitor\"\nscopes = [\"read\"]\nsha256 = \"{}\"\n",
        digest_hex(NOTIFY_TOKEN),
        digest_hex(MONITOR_TOKEN)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_a_notify_token_gets_403_on_release_quarantine_and_decide_and_the_journal_names_who_released(
) {
    let lab = lab_with(|t| t, &scoped_config());
    std::fs::write(
        lab.dir.path().join("soc.token"),
        format!("{OPERATOR_TOKEN}\n"),
    )
    .unwrap();
    let config = EngineConfig::load(&lab.config).unwrap();
    // No all-scope token at all: only the three named ones.
    let daemon = Daemon::start(config, String::new()).await.unwrap();
    let base = daemon.api_url().to_string();
    let post = |token: &'static str, path: String, body: Value| {
        http()
            .post(format!("{base}/api/v1{path}"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let get = |token: &'static str, path: String| {
        sent(
            http()
                .get(format!("{base}/api/v1{path}"))
                .bearer_auth(token),
        )
    };

    // The AV server's token may notify...
    let detection = json!({
        "source": "osce", "event_id": "evt-1", "ip": "10.0.9.99",
        "threat": "TROJ_GENERIC.A", "category": "virus"
    });
    let notified = post(NOTIFY_TOKEN, "/detections".into(), detection)
        .await
        .unwrap();
    assert_eq!(notified.status(), StatusCode::ACCEPTED);
    // ...and nothing else.
    for (action, payload) in [
        ("quarantine", json!({})),
        ("release", json!({})),
        ("decide", json!({"choice": "quarantine"})),
    ] {
        let refused = post(
            NOTIFY_TOKEN,
            format!("/lservers/tenant-a/vdi-003/{action}"),
            payload,
        )
        .await
        .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{action}");
        let reply = body(refused).await;
        assert_eq!(reply["reason"], "forbidden", "{action}");
        assert!(
            reply["error"].as_str().unwrap().contains("operate"),
            "{reply}"
        );
    }
    assert_eq!(daemon.metrics().rejected(Reject::Forbidden), 3);
    // Every other route refuses a token without its scope too.
    let refused = [
        ("GET", "/lservers", NOTIFY_TOKEN),
        ("GET", "/lservers/tenant-a/vdi-003", NOTIFY_TOKEN),
        ("GET", "/operations/1", NOTIFY_TOKEN),
        ("GET", "/alerts", NOTIFY_TOKEN),
        ("GET", "/metrics", NOTIFY_TOKEN),
        ("POST", "/policy/reload", NOTIFY_TOKEN),
        ("POST", "/policy/reload", MONITOR_TOKEN),
        ("POST", "/detections", MONITOR_TOKEN),
        ("POST", "/detections", OPERATOR_TOKEN),
    ];
    for (method, path, token) in refused {
        let url = format!("{base}/api/v1{path}");
        let request = match method {
            "GET" => http().get(url),
            _ => http().post(url).body("{}"),
        };
        let reply = request.bearer_auth(token).send().await.unwrap();
        assert_eq!(reply.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }
    // A read-only token reads but does not operate.
    let monitor_reads = get(MONITOR_TOKEN, "/lservers".into()).await;
    assert_eq!(monitor_reads.status(), StatusCode::OK);
    let monitor_releases = post(
        MONITOR_TOKEN,
        "/lservers/tenant-a/vdi-003/release".into(),
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(monitor_releases.status(), StatusCode::FORBIDDEN);
    // Nothing was queued by the refused commands.
    assert!(daemon
        .engine()
        .operations()
        .unwrap()
        .iter()
        .all(|o| o.lserver != "/tenant-a/vdi-003"));

    // The operator's command on vdi-003, accepted: its operation id.
    let operate = |action: &'static str| {
        let reply = post(
            OPERATOR_TOKEN,
            format!("/lservers/tenant-a/vdi-003/{action}"),
            json!({}),
        );
        async move {
            let reply = reply.await.unwrap();
            assert_eq!(reply.status(), StatusCode::ACCEPTED, "{action}");
            body(reply).await["operation"].as_i64().unwrap()
        }
    };
    // The operator quarantines (the devices are unreachable: it ends quarantine_failed, which
    // allows a release) and releases; both are journaled with its name.
    let quarantine_id = operate("quarantine").await;
    daemon.engine().wait_idle().await;
    let release_id = operate("release").await;
    for id in [quarantine_id, release_id] {
        let op = get(OPERATOR_TOKEN, format!("/operations/{id}")).await;
        assert_eq!(op.status(), StatusCode::OK);
        assert_eq!(body(op).await["requested_by"], "soc-operator");
    }
    daemon.engine().wait_idle().await;
    daemon.shutdown().await;

    // The journal file itself names who did what.
    let conn = rusqlite::Connection::open(&lab.journal).unwrap();
    let column = |sql: &str| -> Option<String> { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        column("SELECT requested_by FROM operations WHERE kind = 'release' AND lserver = '/tenant-a/vdi-003'")
            .as_deref(),
        Some("soc-operator")
    );
    assert_eq!(
        column("SELECT submitted_by FROM detections WHERE event_id = 'evt-1'").as_deref(),
        Some("osce-script")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_the_single_token_of_older_configs_keeps_every_scope_and_is_named_default() {
    let (_lab, daemon) = started().await;
    let base = daemon.api_url().to_string();
    let quarantine = post_with_token(format!(
        "{base}/api/v1/lservers/tenant-a/vdi-003/quarantine"
    ))
    .await;
    assert_eq!(quarantine.status(), StatusCode::ACCEPTED);
    let id = body(quarantine).await["operation"].as_i64().unwrap();
    let op = get_with_token(format!("{base}/api/v1/operations/{id}")).await;
    assert_eq!(body(op).await["requested_by"], "default");
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_bad_token_entries_are_refused_at_start_naming_the_key() {
    let cases = [
        (
            "[[tokens]]\nname = \"x\"\nscopes = [\"read\"]\nsha256 = \"abc\"\n".to_string(),
            "tokens[0].sha256",
        ),
        (
            "[[tokens]]\nname = \"x\"\nscopes = [\"read\"]\nfile = \"missing.token\"\n".into(),
            "tokens[0].file",
        ),
        (
            format!(
                "[[tokens]]\nname = \"x\"\nscopes = []\nsha256 = \"{}\"\n",
                digest_hex("a")
            ),
            "tokens[0].scopes",
        ),
        (
            format!(
                "[[tokens]]\nname = \"default\"\nscopes = [\"read\"]\nsha256 = \"{}\"\n",
                digest_hex("a")
            ),
            "tokens[0].name",
        ),
    ];
    for (extra, key) in cases {
        let lab = lab_with(|t| t, &extra);
        let config = EngineConfig::load(&lab.config).unwrap();
        let error = Daemon::start(config, TOKEN.into()).await.err().unwrap();
        assert!(error.is_input_error(), "{error}");
        assert!(error.to_string().contains(key), "{key}: {error}");
    }
    // An unknown scope is a parse error naming the line.
    let lab = lab_with(
        |t| t,
        "[[tokens]]\nname = \"x\"\nscopes = [\"admin\"]\nsha256 = \"00\"\n",
    );
    let error = EngineConfig::load(&lab.config).unwrap_err();
    assert!(error.contains("engine.toml:"), "{error}");
    assert!(error.contains("admin"), "{error}");
}
