//! Every protocol simulator of a topology at once: one wire server per hypervisor, switch and
//! BMC (by kind), one ePO Web API server per AV server whose `transport` is `epo_api`, an SMTP
//! sink and a syslog sink, all on 127.0.0.1 ephemeral ports, over one `SimWorld`.
//!
//! With [`WireSite::start_tls`] the device servers speak HTTPS (R18): one CA is generated per
//! site (never written anywhere but where the caller puts [`WireSite::ca_pem`]), and one server
//! certificate for `127.0.0.1` and `localhost` signed by it serves every device. Keys come from
//! the operating system's randomness, not the run's seed: they never reach a history, so the
//! history digest (INV-11) does not depend on them.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use super::epo::EpoEvents;
use super::smtp_sink::SmtpSink;
use super::{accepted_credentials, eapi, epo, nxapi, redfish, restconf, vcenter, WireServer};
use crate::adapters::http::fingerprint_of;
use crate::model::{AvTransport, Credentials, HypervisorKind, SwitchKind};
use crate::sim::SimWorld;

/// The TLS material of one site: a CA and a server certificate it signed.
pub struct SimTls {
    /// The CA certificate (PEM): what an engine's `ca_file` holds.
    pub ca_pem: String,
    /// The server certificate (DER): what `tls_fingerprint` pins.
    pub server_der: Vec<u8>,
    /// Server configuration for the fault proxies.
    pub server_config: Arc<rustls::ServerConfig>,
}

impl SimTls {
    /// A fresh CA and a certificate for `127.0.0.1` and `localhost` signed by it.
    pub fn generate() -> Result<SimTls, String> {
        let err = |what: &str, e: &dyn std::fmt::Display| format!("cannot {what}: {e}");
        let ca_key = KeyPair::generate().map_err(|e| err("generate the CA key", &e))?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| err("build the CA certificate", &e))?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "qlab simulator CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .map_err(|e| err("sign the CA certificate", &e))?;
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate().map_err(|e| err("generate the server key", &e))?;
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| err("build the server certificate", &e))?;
        params.subject_alt_names = vec![
            SanType::DnsName(
                "localhost"
                    .try_into()
                    .map_err(|e| err("name the server", &e))?,
            ),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ];
        params
            .distinguished_name
            .push(DnType::CommonName, "qlab simulated device");
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| err("sign the server certificate", &e))?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_der = cert.der().to_vec();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| err("configure TLS", &e))?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(server_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .map_err(|e| err("configure TLS", &e))?;
        Ok(SimTls {
            ca_pem: ca_cert.pem(),
            server_der,
            server_config: Arc::new(config),
        })
    }
}

/// The running simulators of one site.
pub struct WireSite {
    /// The device models behind every server.
    pub world: SimWorld,
    servers: BTreeMap<String, WireServer>,
    /// ePO Web API servers by AV server name: the server, its event table, its login.
    epo: BTreeMap<String, (WireServer, EpoEvents, Credentials)>,
    /// Tenant emails land here.
    pub smtp: SmtpSink,
    syslog_addr: SocketAddr,
    syslog_lines: Arc<Mutex<Vec<String>>>,
    syslog_task: JoinHandle<()>,
    tls: Option<SimTls>,
}

impl Drop for WireSite {
    fn drop(&mut self) {
        self.syslog_task.abort();
    }
}

/// Most alert lines the syslog sink keeps.
const MAX_SYSLOG_LINES: usize = 100_000;

impl WireSite {
    /// Starts a plain-HTTP server for every device of the world's site.
    pub async fn start(world: SimWorld) -> std::io::Result<WireSite> {
        WireSite::start_with(world, None).await
    }

    /// Starts every device server over HTTPS with a CA generated for this site.
    pub async fn start_tls(world: SimWorld) -> std::io::Result<WireSite> {
        let tls = SimTls::generate().map_err(std::io::Error::other)?;
        WireSite::start_with(world, Some(tls)).await
    }

    async fn start_with(world: SimWorld, tls: Option<SimTls>) -> std::io::Result<WireSite> {
        let site = world.site().clone();
        let config = tls.as_ref().map(|t| t.server_config.clone());
        let mut servers = BTreeMap::new();
        for h in &site.topology.hypervisors {
            let mut server = match h.kind {
                HypervisorKind::Vcenter => vcenter::start(world.clone(), &h.name).await?,
            };
            if let Some(config) = &config {
                server.serve_tls(config.clone()).await?;
            }
            servers.insert(h.name.clone(), server);
        }
        for s in &site.topology.switches {
            let mut server = match s.kind {
                SwitchKind::Nxapi => nxapi::start(world.clone(), &s.name).await?,
                SwitchKind::Eapi => eapi::start(world.clone(), &s.name).await?,
                SwitchKind::Restconf => restconf::start(world.clone(), &s.name).await?,
            };
            if let Some(config) = config.as_ref() {
                server.serve_tls(config.clone()).await?;
            }
            servers.insert(s.name.clone(), server);
        }
        for b in &site.topology.bmcs {
            let mut server = redfish::start(world.clone(), &b.name).await?;
            if let Some(config) = &config {
                server.serve_tls(config.clone()).await?;
            }
            servers.insert(b.name.clone(), server);
        }
        let mut epo_servers = BTreeMap::new();
        for a in &site.topology.av_servers {
            if a.transport != AvTransport::EpoApi {
                continue;
            }
            let events = EpoEvents::default();
            let login = accepted_credentials(a.credentials.as_ref());
            let mut server = epo::start(events.clone(), &login.user, &login.password).await?;
            if let Some(config) = &config {
                server.serve_tls(config.clone()).await?;
            }
            epo_servers.insert(a.name.clone(), (server, events, login));
        }
        let smtp = SmtpSink::start().await?;
        let socket = UdpSocket::bind(("127.0.0.1", 0)).await?;
        let syslog_addr = socket.local_addr()?;
        let syslog_lines = Arc::new(Mutex::new(Vec::new()));
        let store = syslog_lines.clone();
        let syslog_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok((n, _)) = socket.recv_from(&mut buf).await {
                let mut lines = store.lock().unwrap_or_else(|e| e.into_inner());
                if lines.len() < MAX_SYSLOG_LINES {
                    lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        });
        Ok(WireSite {
            world,
            servers,
            epo: epo_servers,
            smtp,
            syslog_addr,
            syslog_lines,
            syslog_task,
            tls,
        })
    }

    /// The CA that signed the device servers' certificate (PEM); `None` when plain HTTP.
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.ca_pem.as_str())
    }

    /// The device servers' certificate as a `tls_fingerprint`; `None` when plain HTTP.
    pub fn certificate_fingerprint(&self) -> Option<String> {
        self.tls.as_ref().map(|t| fingerprint_of(&t.server_der))
    }

    /// Base URL of every device server, by device name.
    pub fn urls(&self) -> BTreeMap<String, String> {
        self.servers
            .iter()
            .map(|(name, server)| (name.clone(), server.url()))
            .collect()
    }

    /// Base URL and accepted login of every ePO Web API server, by AV server name.
    pub fn epo_servers(&self) -> BTreeMap<String, (String, Credentials)> {
        self.epo
            .iter()
            .map(|(name, (server, _, login))| (name.clone(), (server.url(), login.clone())))
            .collect()
    }

    /// The event table of AV server `name`'s ePO Web API server (rows appended are served).
    pub fn epo_events(&self, name: &str) -> Option<&EpoEvents> {
        self.epo.get(name).map(|(_, events, _)| events)
    }

    /// Where the engine sends its alert lines (UDP).
    pub fn syslog_addr(&self) -> SocketAddr {
        self.syslog_addr
    }

    /// Alert lines received.
    pub fn syslog_lines(&self) -> Vec<String> {
        self.syslog_lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
