//! Device connections over TLS (R18): the simulators' HTTPS faces, a client that trusts their
//! CA or pins their certificate gets through, one that does not fails before sending anything
//! (`unavailable`) with the reason in the detail, and the daemon reports it for the device.

use std::sync::Arc;
use std::time::Duration;

use quarantine_lab::adapters::http::TlsTrust;
use quarantine_lab::adapters::redfish::RedfishClient;
use quarantine_lab::adapters::vcenter::VcenterClient;
use quarantine_lab::adapters::{Bmc, DeviceError, Hypervisor, OutcomeClass};
use quarantine_lab::model::load_site;
use quarantine_lab::sim::wire::site::{SimTls, WireSite};
use quarantine_lab::sim::wire::{DEFAULT_PASSWORD, DEFAULT_USER};
use quarantine_lab::sim::{Recorder, SimWorld};

const TOPOLOGY: &str = "fixtures/topologies/vdi-small.toml";
const TIMEOUT: Duration = Duration::from_secs(5);

async fn tls_site() -> WireSite {
    let site = Arc::new(load_site(std::path::Path::new(TOPOLOGY)).unwrap());
    let world = SimWorld::new(site, Vec::new(), Recorder::new(), 0);
    WireSite::start_tls(world).await.unwrap()
}

fn url(site: &WireSite, device: &str) -> String {
    site.urls().remove(device).unwrap()
}

async fn login(site: &WireSite, trust: &TlsTrust) -> Result<(), DeviceError> {
    VcenterClient::new(&url(site, "vc-1"), DEFAULT_USER, DEFAULT_PASSWORD, TIMEOUT)?
        .with_trust(trust)?
        .login()
        .await
}

fn ca_trust(site: &WireSite) -> TlsTrust {
    TlsTrust::default()
        .with_ca_pem(site.ca_pem().unwrap().as_bytes())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_a_client_trusting_the_site_ca_logs_in_over_https() {
    let site = tls_site().await;
    assert!(url(&site, "vc-1").starts_with("https://127.0.0.1:"));
    login(&site, &ca_trust(&site)).await.unwrap();
    // Redfish too: discovery, session login and a reset all over TLS.
    let bmc = site
        .urls()
        .into_iter()
        .find(|(name, _)| name.starts_with("irmc"))
        .unwrap();
    let client = RedfishClient::new(&bmc.1, DEFAULT_USER, DEFAULT_PASSWORD, None, TIMEOUT)
        .unwrap()
        .with_trust(&ca_trust(&site))
        .unwrap();
    client.reset().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_an_untrusted_certificate_is_unavailable_and_says_why() {
    let site = tls_site().await;
    // Built-in web roots only: the site's private CA is unknown.
    let e = login(&site, &TlsTrust::default()).await.unwrap_err();
    assert_eq!(e.class, OutcomeClass::Unavailable, "{e}");
    assert!(e.detail.contains("certificate not trusted"), "{e}");
    assert!(e.detail.contains("127.0.0.1"), "{e}");
    // Another CA: the same.
    let other = SimTls::generate().unwrap();
    let trust = TlsTrust::default()
        .with_ca_pem(other.ca_pem.as_bytes())
        .unwrap();
    let e = login(&site, &trust).await.unwrap_err();
    assert_eq!(e.class, OutcomeClass::Unavailable, "{e}");
    assert!(e.detail.contains("certificate not trusted"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_a_pinned_fingerprint_is_enough_and_a_wrong_pin_is_refused() {
    let site = tls_site().await;
    let pin = site.certificate_fingerprint().unwrap();
    let trust = TlsTrust::default().with_fingerprint(&pin).unwrap();
    login(&site, &trust).await.unwrap();
    // Pin and CA together: both hold.
    let both = ca_trust(&site).with_fingerprint(&pin).unwrap();
    login(&site, &both).await.unwrap();
    let other = SimTls::generate().unwrap();
    let wrong = quarantine_lab::adapters::http::fingerprint_of(&other.server_der);
    let trust = TlsTrust::default()
        .with_fingerprint(&wrong)
        .unwrap()
        .for_device("vc-1");
    let e = login(&site, &trust).await.unwrap_err();
    assert_eq!(e.class, OutcomeClass::Unavailable, "{e}");
    assert!(
        e.detail.contains("device vc-1: fingerprint mismatch"),
        "{e}"
    );
    assert!(
        e.detail.contains(&pin),
        "the detail names what was presented: {e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_insecure_skips_verification() {
    let site = tls_site().await;
    let trust = TlsTrust {
        insecure: true,
        ..TlsTrust::default()
    };
    login(&site, &trust).await.unwrap();
}

/// Starts the daemon on the simulators with `edit` applied to the generated config.
async fn daemon_on(
    site: &WireSite,
    dir: &std::path::Path,
    edit: impl FnOnce(&mut quarantine_lab::daemon::config::EngineConfig),
) -> quarantine_lab::daemon::Daemon {
    let topology = std::fs::canonicalize(TOPOLOGY).unwrap();
    let loaded = load_site(&topology).unwrap();
    let mut config = quarantine_lab::scenario::serve::engine_config(
        &loaded,
        site,
        topology,
        dir.join("journal.sqlite"),
        None,
    );
    edit(&mut config);
    quarantine_lab::daemon::Daemon::start(config, "t0ken".into())
        .await
        .unwrap()
}

async fn get_json(url: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(url)
        .bearer_auth("t0ken")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_the_engine_reports_an_untrusted_device_by_name_and_reason() {
    let site = tls_site().await;
    let dir = tempfile::tempdir().unwrap();
    // The generated config without `ca_file`: the simulators' CA is not trusted.
    let daemon = daemon_on(&site, dir.path(), |_| {}).await;
    let api = daemon.api_url();
    let detection = serde_json::json!({
        "source": "osce", "event_id": "tls-1", "ip": "10.110.0.11",
        "threat": "TROJ_GENERIC.A", "category": "virus"
    });
    let reply = reqwest::Client::new()
        .post(format!("{api}/api/v1/detections"))
        .bearer_auth("t0ken")
        .json(&detection)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 202);
    let mut alerts = serde_json::Value::Null;
    for _ in 0..200 {
        alerts = get_json(&format!("{api}/api/v1/alerts")).await;
        if alerts.to_string().contains("certificate not trusted") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = alerts.to_string();
    assert!(
        text.contains("device vc-1: certificate not trusted"),
        "{alerts:#}"
    );
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_tls_insecure_devices_are_listed_in_health() {
    let site = tls_site().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon_on(&site, dir.path(), |config| {
        for d in &mut config.devices {
            if d.name == "vc-1" {
                d.tls_insecure = true;
            }
        }
    })
    .await;
    let health = get_json(&format!("{}/api/v1/health", daemon.api_url())).await;
    assert_eq!(
        health["tls_insecure"],
        serde_json::json!(["vc-1"]),
        "{health}"
    );
    daemon.shutdown().await;
}
