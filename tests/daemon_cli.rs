//! `qlab notify`, `qlab engine quarantine|release|status|decide` and `qlab engine serve` as a
//! user or an AV server runs them (exit codes of `docs/cli.md`).

mod common;

mod daemon_support;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::run::{engine_serve, first_line, qlab_command as qlab};
use daemon_support::*;
use quarantine_lab::daemon::metrics::Channel;
use serde_json::Value;

/// Runs the binary off the async workers (the daemon under test runs on them).
async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn notify(url: &str, token: &str, ip: &str) -> Command {
    let mut c = qlab();
    c.args(["notify", "--url", url, "--token", token, "--source", "osce"])
        .args(["--ip", ip, "--threat", "TROJ_GENERIC.A", "--attempts", "2"]);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r7_notify_exits_0_only_after_202() {
    let (_lab, daemon) = started().await;
    let url = daemon.api_url().to_string();
    let ok = run(notify(&url, TOKEN, "10.110.0.11")).await;
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    let reply: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(reply["lserver"], "/tenant-a/vdi-001");
    assert_eq!(daemon.metrics().accepted_count(Channel::Api), 1);

    let wrong = run(notify(&url, "wrong-token", "10.110.0.11")).await;
    assert_eq!(wrong.status.code(), Some(2), "{wrong:?}");
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("401"));

    // The token may come from QLAB_TOKEN instead of --token.
    let mut env = qlab();
    env.env("QLAB_TOKEN", TOKEN)
        .args([
            "notify",
            "--url",
            &url,
            "--source",
            "osce",
            "--hostname",
            "VDI-002",
        ])
        .args(["--threat", "X", "--event-id", "ev-7"]);
    let from_env = run(env).await;
    assert_eq!(from_env.status.code(), Some(0), "{from_env:?}");
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_without_an_engine_fails_after_bounded_retries() {
    let url = format!("http://127.0.0.1:{}", closed_port());
    let started = std::time::Instant::now();
    let out = run(notify(&url, TOKEN, "10.110.0.11")).await;
    // 3, not 2: an outage is not a mistake in the arguments (`docs/cli.md`, "Exit codes").
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the engine"));
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_commands_map_refusals_to_exit_1() {
    let (_lab, daemon) = started().await;
    let url = daemon.api_url().to_string();
    let engine = |args: &[&str]| {
        let mut c = qlab();
        c.arg("engine")
            .args(args)
            .args(["--url", &url, "--token", TOKEN]);
        c
    };
    let status = run(engine(&["status", "/tenant-a/vdi-001"])).await;
    assert_eq!(status.status.code(), Some(0), "{status:?}");
    let view: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(view["path"], "/tenant-a/vdi-001");

    let all = run(engine(&["status"])).await;
    assert_eq!(all.status.code(), Some(0), "{all:?}");
    let all: Value = serde_json::from_slice(&all.stdout).unwrap();
    assert_eq!(all["total"], 8);

    let missing = run(engine(&["quarantine", "/tenant-a/nope"])).await;
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    let refused = run(engine(&["release", "/tenant-a/vdi-003"])).await;
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let not_pending = run(engine(&[
        "decide",
        "tenant-a/vdi-003",
        "--choice",
        "reboot",
    ]))
    .await;
    assert_eq!(not_pending.status.code(), Some(1), "{not_pending:?}");
    let ok = run(engine(&["quarantine", "/tenant-a/vdi-003"])).await;
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    let reply: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert!(reply["operation"].is_i64());
    daemon.shutdown().await;

    let mut no_token = qlab();
    no_token.args(["engine", "status", "--url", &url]);
    assert_eq!(run(no_token).await.status.code(), Some(2));
}

#[test]
fn engine_serve_prints_the_ready_line() {
    let lab = lab();
    let mut child = engine_serve(&lab.config);
    let line = first_line(child.stdout.take().unwrap(), Duration::from_secs(30));
    let health = line.as_ref().and_then(|line| {
        let ready: Value = serde_json::from_str(line).ok()?;
        let api = ready["api"].as_str()?.to_string();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async { http().get(format!("{api}/api/v1/health")).send().await.ok() })
            .map(|r| (ready, r.status()))
    });
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("no ready line within 30 s");
    let (ready, status) = health.unwrap_or_else(|| panic!("bad ready line {line:?}"));
    assert_eq!(ready["ready"], true);
    assert!(ready["api"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:"));
    assert!(ready["syslog_udp"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert!(ready["syslog_tcp"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(status, reqwest::StatusCode::OK);
}

/// `qlab engine serve --config <config>` run to its exit (a config it refuses).
fn serve_to_exit(config: &std::path::Path) -> Output {
    qlab()
        .args(["engine", "serve", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

#[test]
fn engine_serve_exits_2_on_a_bad_config_naming_file_and_line() {
    let lab = lab_with(|t| t, "[[devices]]\nname = \"vc-9\"\nurl = \"http://127.0.0.1:1\"\nuser = \"u\"\npassword = \"p\"\n");
    let out = serve_to_exit(&lab.config);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("engine.toml:"), "{stderr}");
    assert!(stderr.contains("devices[4].name"), "{stderr}");
    assert!(stderr.contains("vc-9"), "{stderr}");

    // An empty token is refused too.
    let empty = lab_with(|t| t, "");
    let text = std::fs::read_to_string(&empty.config).unwrap();
    std::fs::write(&empty.config, text.replace(TOKEN, "")).unwrap();
    let out = serve_to_exit(&empty.config);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("token"));
}

#[test]
fn r18_engine_serve_logs_json_with_timestamps_and_exits_non_zero_when_a_task_panics() {
    // The hidden test hook makes an engine task panic once started: whatever makes a task
    // panic, the daemon must not go on saying ok.
    let lab = lab();
    let mut child = qlab()
        .args(["engine", "serve", "--config"])
        .arg(&lab.config)
        .env(quarantine_lab::daemon::TEST_PANIC_ENV, "1")
        .env("QLAB_LOG_FORMAT", "json")
        .env("QLAB_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line =
        first_line(child.stdout.take().unwrap(), Duration::from_secs(30)).unwrap_or_default();
    let Ok(ready) = serde_json::from_str::<Value>(&line) else {
        let out = child.wait_with_output().unwrap();
        panic!("no ready line: {line:?}; {out:?}");
    };
    let api = ready["api"].as_str().unwrap().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // /health says 503 while the daemon lingers, then the process exits non-zero.
    let health = rt.block_on(async {
        for _ in 0..40 {
            if let Ok(r) = http().get(format!("{api}/api/v1/health")).send().await {
                if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                    return r.json::<Value>().await.ok();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    });
    // Once halted, nothing is acknowledged that would never be acted on.
    let posted = rt.block_on(async {
        http()
            .post(format!("{api}/api/v1/detections"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({
                "source": "osce", "event_id": "deadline-1", "ip": "10.110.0.11",
                "threat": "TROJ_GENERIC.A", "category": "virus"
            }))
            .send()
            .await
            .map(|r| r.status())
    });
    let deadline =
        std::time::Instant::now() + quarantine_lab::daemon::HALT_LINGER + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(posted.ok(), Some(reqwest::StatusCode::SERVICE_UNAVAILABLE));
    let health = health.unwrap_or_else(|| panic!("/health never said 503; stderr:\n{stderr}"));
    assert_eq!(health["ok"], false);
    assert!(health["halt_reason"].as_str().unwrap().contains("panicked"));
    let status = status.unwrap_or_else(|| panic!("engine serve did not exit; stderr:\n{stderr}"));
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    // Every log line is JSON with a timestamp; the halt is an ERROR line.
    let logs: Vec<Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!logs.is_empty(), "{stderr}");
    assert!(logs.iter().all(|l| l["timestamp"].is_string()), "{stderr}");
    assert!(
        logs.iter()
            .any(|l| l["level"] == "ERROR" && l.to_string().contains("panicked")),
        "{stderr}"
    );
    assert!(stderr.contains("error: the engine halted"), "{stderr}");
}
