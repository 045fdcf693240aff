//! Shared setup of the daemon tests: a tempdir holding a copy of `vdi-small.toml`, an engine
//! config whose devices point at closed loopback ports, and a started [`Daemon`].
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use quarantine_lab::daemon::config::EngineConfig;
use quarantine_lab::daemon::Daemon;

/// The API token every test daemon uses.
pub const TOKEN: &str = "test-token-123";

/// A tempdir with `site.toml`, `engine.toml` and (once started) `journal.sqlite`.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub journal: PathBuf,
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Writes the lab; `edit` may rewrite the topology text (e.g. the AV server's address).
pub fn lab_with(edit: impl FnOnce(String) -> String, extra_config: &str) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/topologies/vdi-small.toml"
    );
    let topology = std::fs::read_to_string(fixture).unwrap();
    // Short deadlines: the devices are unreachable, operations should end quickly.
    let topology = topology
        .replace(
            "operation_deadline = \"60s\"",
            "operation_deadline = \"2s\"",
        )
        .replace("call_timeout = \"5s\"", "call_timeout = \"500ms\"");
    std::fs::write(dir.path().join("site.toml"), edit(topology)).unwrap();
    let mut config = format!(
        "topology = \"site.toml\"\njournal = \"journal.sqlite\"\ntoken = \"{TOKEN}\"\n\
         [api]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 4096\n\
         [syslog_in]\nudp = \"127.0.0.1:0\"\ntcp = \"127.0.0.1:0\"\nmax_message_bytes = 2048\n"
    );
    for device in ["vc-1", "sw-1", "irmc-sbc-01", "irmc-sbc-02"] {
        config.push_str(&format!(
            "[[devices]]\nname = \"{device}\"\nurl = \"http://127.0.0.1:{}\"\nuser = \"qlab\"\npassword = \"qlab\"\n",
            closed_port()
        ));
    }
    config.push_str(extra_config);
    let config_path = dir.path().join("engine.toml");
    std::fs::write(&config_path, config).unwrap();
    Lab {
        journal: dir.path().join("journal.sqlite"),
        config: config_path,
        dir,
    }
}

/// The lab with the fixture as it is.
pub fn lab() -> Lab {
    lab_with(|t| t, "")
}

/// Starts a daemon on the lab's config.
pub async fn start(lab: &Lab) -> Daemon {
    let config = EngineConfig::load(&lab.config).unwrap();
    Daemon::start(config, TOKEN.into()).await.unwrap()
}

/// The fixture lab and a daemon started on it (keep the lab: its folder holds the journal).
pub async fn started() -> (Lab, Daemon) {
    let lab = lab();
    let daemon = start(&lab).await;
    (lab, daemon)
}

/// How many detections the lab's journal holds (read through a connection of its own).
pub fn journaled_detections(lab: &Lab) -> u64 {
    let journal = quarantine_lab::engine::Journal::open(&lab.journal).unwrap();
    journal.detection_count().unwrap()
}

/// An HTTP client with a short timeout.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `GET url` with the test token.
pub async fn get_with_token(url: String) -> reqwest::Response {
    http().get(url).bearer_auth(TOKEN).send().await.unwrap()
}

/// `POST url` with the test token and no body.
pub async fn post_with_token(url: String) -> reqwest::Response {
    http().post(url).bearer_auth(TOKEN).send().await.unwrap()
}

/// A reply's JSON body.
pub async fn body(response: reqwest::Response) -> serde_json::Value {
    response.json().await.unwrap()
}

/// Waits until `check` holds, up to 5 s.
pub async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}
