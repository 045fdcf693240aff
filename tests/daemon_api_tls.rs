//! `[api] tls_cert` / `tls_key`: the daemon serves its API over HTTPS with a certificate signed
//! by a CA generated here (rcgen) for 127.0.0.1, `qlab`'s client trusts it through `--ca-file`,
//! and every misconfiguration is refused at start naming the key and the file (R18).

mod daemon_support;

use std::time::Duration;

use daemon_support::*;
use quarantine_lab::daemon::client::{ApiClient, ClientError};
use quarantine_lab::daemon::config::EngineConfig;
use quarantine_lab::daemon::Daemon;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};

/// A CA (PEM) and a server certificate and key (PEM) it signed for 127.0.0.1.
struct Pki {
    ca: String,
    cert: String,
    key: String,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
    let cert = params.signed_by(&key, &issuer).unwrap();
    Pki {
        ca: ca.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// The test lab with `[api]` extended by `api_lines` (the fixture's `[api]` table is reopened
/// by appending keys right after its header).
fn tls_lab(pki: &Pki, api_lines: &str) -> Lab {
    let lab = lab();
    std::fs::write(lab.dir.path().join("api-cert.pem"), &pki.cert).unwrap();
    std::fs::write(lab.dir.path().join("api-key.pem"), &pki.key).unwrap();
    std::fs::write(lab.dir.path().join("ca.pem"), &pki.ca).unwrap();
    let text = std::fs::read_to_string(&lab.config).unwrap();
    let text = text.replacen("[api]\n", &format!("[api]\n{api_lines}"), 1);
    std::fs::write(&lab.config, text).unwrap();
    lab
}

const BOTH: &str = "tls_cert = \"api-cert.pem\"\ntls_key = \"api-key.pem\"\n";

async fn start_error(lab: &Lab) -> String {
    let config = EngineConfig::load(&lab.config).unwrap();
    match Daemon::start(config, TOKEN.into()).await {
        Ok(_) => panic!("the daemon started"),
        Err(e) => {
            assert!(e.is_input_error(), "{e}: must exit 2");
            e.located(&lab.config)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_the_api_serves_https_to_a_client_that_trusts_its_ca() {
    let pki = pki();
    let lab = tls_lab(&pki, BOTH);
    let daemon = start(&lab).await;
    assert!(
        daemon.api_url().starts_with("https://127.0.0.1:"),
        "{}",
        daemon.api_url()
    );
    let timeout = Duration::from_secs(5);
    let trusting =
        ApiClient::with_ca(daemon.api_url(), TOKEN, timeout, Some(pki.ca.as_bytes())).unwrap();
    let reply = trusting.status(Some("/tenant-a/vdi-001")).await.unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);

    // Without the CA the certificate is not trusted: no answer, a transport error that says so.
    let default = ApiClient::new(daemon.api_url(), TOKEN, timeout).unwrap();
    let e = default.status(Some("/tenant-a/vdi-001")).await.unwrap_err();
    assert!(matches!(e, ClientError::Transport { .. }), "{e}");
    assert!(
        e.to_string().contains("certificate"),
        "the cause is kept: {e}"
    );
    // Plain HTTP on the HTTPS port gets nothing served.
    let plain = daemon.api_url().replace("https://", "http://");
    let plain = ApiClient::new(&plain, TOKEN, timeout).unwrap();
    assert!(plain.status(None).await.is_err());
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_api_tls_misconfigurations_name_the_key_and_the_file() {
    let pki = pki();
    // One without the other; a file that is not there; a key file with no key in it.
    for (extra, words) in [
        ("tls_cert = 'api-cert.pem'\n", ["api.tls_key", "missing"]),
        ("tls_key = 'api-key.pem'\n", ["api.tls_cert", "missing"]),
        (
            "tls_cert = 'nope.pem'\ntls_key = 'api-key.pem'\n",
            ["api.tls_cert", "nope.pem"],
        ),
        (
            "tls_cert = 'api-cert.pem'\ntls_key = 'ca.pem'\n",
            ["api.tls_key", "ca.pem"],
        ),
    ] {
        let e = start_error(&tls_lab(&pki, extra)).await;
        for word in words {
            assert!(e.contains(word), "{extra:?}: {word:?} missing in: {e}");
        }
    }

    // A key that belongs to another certificate.
    let other = pki_other_key();
    let mismatched = tls_lab(&pki, BOTH);
    std::fs::write(mismatched.dir.path().join("api-key.pem"), other).unwrap();
    let e = start_error(&mismatched).await;
    assert!(
        e.contains("api.tls_key") && e.contains("api-key.pem") && e.contains("api-cert.pem"),
        "{e}"
    );
}

fn pki_other_key() -> String {
    KeyPair::generate().unwrap().serialize_pem()
}
