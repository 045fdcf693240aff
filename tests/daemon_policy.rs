//! Policy reload without a restart (R2, R5: the policy decides what a detection starts): on
//! `POST /api/v1/policy/reload` and on SIGHUP the topology file's `[policy]` is validated and
//! replaces the running one; an invalid file leaves the running policy in force and says why.

mod common;

mod daemon_support;

use std::process::Command;
use std::time::Duration;

use common::run::{engine_serve, first_line, qlab_command, sent};
use daemon_support::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

const POLICY_ACTIONS: &str = "[policy.actions]\n\"/tenant-a/vdi-002\" = \"reboot\"\n";

async fn notify(base: &str, event_id: &str, ip: &str) -> Value {
    let reply = sent(
        http()
            .post(format!("{base}/api/v1/detections"))
            .bearer_auth(TOKEN)
            .json(&json!({"source": "osce", "event_id": event_id, "ip": ip,
                      "threat": "TROJ_GENERIC.A", "category": "virus"})),
    )
    .await;
    assert_eq!(reply.status(), StatusCode::ACCEPTED);
    reply.json().await.unwrap()
}

async fn reload(base: &str) -> (StatusCode, Value) {
    let reply = post_with_token(format!("{base}/api/v1/policy/reload")).await;
    (reply.status(), reply.json().await.unwrap())
}

/// `original` (the lab's topology as written) with `extra` added to `[policy.actions]`.
fn with_actions(original: &str, extra: &str) -> String {
    assert!(original.contains(POLICY_ACTIONS));
    original.replace(POLICY_ACTIONS, &format!("{POLICY_ACTIONS}{extra}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r5_a_reloaded_policy_decides_the_next_detection_and_an_invalid_one_keeps_the_old() {
    let lab = lab();
    let site = lab.dir.path().join("site.toml");
    let original = std::fs::read_to_string(&site).unwrap();
    let daemon = start(&lab).await;
    let base = daemon.api_url().to_string();
    assert_eq!(
        notify(&base, "p-1", "10.110.0.21").await["disposition"],
        "accepted"
    );

    // Tenant B now waits for a decision (R5).
    std::fs::write(&site, with_actions(&original, "\"/tenant-b\" = \"none\"\n")).unwrap();
    let (status, report) = reload(&base).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["changed"], true);
    assert_eq!(report["restart_needed"], json!([]));
    assert_eq!(report["policy"]["actions"]["/tenant-b"], "none");
    assert_eq!(
        notify(&base, "p-2", "10.110.0.22").await["disposition"],
        "pending_decision"
    );

    // A broken file is refused with its line; the policy loaded before stays in force.
    std::fs::write(&site, "name = \"broken\"\n[policy\n").unwrap();
    let (status, error) = reload(&base).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["reason"], "policy_invalid");
    let message = error["error"].as_str().unwrap();
    assert!(message.contains("site.toml:2"), "{message}");
    assert_eq!(
        notify(&base, "p-3", "10.110.0.23").await["disposition"],
        "pending_decision"
    );

    // A semantically invalid policy (an action no engine knows) is refused the same way.
    std::fs::write(
        &site,
        with_actions(&original, "\"/tenant-b\" = \"explode\"\n"),
    )
    .unwrap();
    let (status, _) = reload(&base).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Changes outside [policy] are named as waiting for a restart; the policy still applies.
    let text =
        with_actions(&original, "").replace("call_timeout = \"500ms\"", "call_timeout = \"1s\"");
    std::fs::write(&site, text).unwrap();
    let (status, report) = reload(&base).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["restart_needed"], json!(["engine"]));
    assert_eq!(report["changed"], true);
    assert_eq!(
        notify(&base, "p-4", "10.110.0.50").await["disposition"],
        "accepted"
    );
    assert_eq!(daemon.policy_reloader().counts(), [("ok", 2), ("error", 2)]);

    // `qlab engine reload-policy` does the same: exit 1 while the file is broken, 0 once fixed.
    let cli = |base: String| async move {
        tokio::task::spawn_blocking(move || {
            qlab_command()
                .args(["engine", "reload-policy", "--url", &base, "--token", TOKEN])
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    std::fs::write(&site, "[policy\n").unwrap();
    let out = cli(base.clone()).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    std::fs::write(&site, &original).unwrap();
    let out = cli(base.clone()).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"changed\""));
    daemon.shutdown().await;
}

#[cfg(unix)]
#[test]
fn r5_sighup_reloads_the_policy_of_a_running_engine_serve() {
    let lab = lab();
    let original = std::fs::read_to_string(lab.dir.path().join("site.toml")).unwrap();
    let mut child = engine_serve(&lab.config);
    let line = first_line(child.stdout.take().unwrap(), Duration::from_secs(30));
    let outcome = (|| {
        let line = line?;
        let ready: Value = serde_json::from_str(&line).ok()?;
        let base = ready["api"].as_str()?.to_string();
        std::fs::write(
            lab.dir.path().join("site.toml"),
            with_actions(&original, "\"/tenant-b\" = \"none\"\n"),
        )
        .ok()?;
        let sent = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .ok()?;
        assert!(sent.success());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            // The reload runs in the daemon's own time: wait until its metrics count it.
            for _ in 0..100 {
                let text = http()
                    .get(format!("{base}/api/v1/metrics"))
                    .bearer_auth(TOKEN)
                    .send()
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                if text.contains("qlab_policy_reloads_total{result=\"ok\"} 1") {
                    return Some(notify(&base, "hup-1", "10.110.0.21").await);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None
        })
    })();
    let alive = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(alive, "SIGHUP stopped the daemon");
    let receipt = outcome.expect("the policy was not reloaded within 10 s of SIGHUP");
    assert_eq!(receipt["disposition"], "pending_decision");
}
