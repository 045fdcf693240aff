//! `qlab sim serve`: every simulator of a topology on loopback, an engine config that points
//! at them, and one JSON ready line, so a person can drive the real daemon against simulated
//! devices with nothing but the binary.
//!
//! The simulators speak HTTPS by default (R18): the site's CA is written as `ca.pem` beside the
//! printed config, whose HTTPS devices name it in `ca_file` (a relative path, so the pair can
//! be moved together). `--plain-http` serves plain HTTP for tools that cannot be given a CA.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::daemon::config::{
    ApiConfig, DeviceEndpoint, EngineConfig, EpoPollerConfig, SmtpConfig, SyslogInConfig,
    SyslogOutConfig,
};
use crate::model::{load_site, Site};
use crate::sim::wire::accepted_credentials;
use crate::sim::wire::site::WireSite;
use crate::sim::{Recorder, SimWorld};

/// The token written into a generated config (`QLAB_TOKEN` overrides it when the engine starts).
pub const GENERATED_TOKEN: &str = "qlab-sim-token";

/// The ready line of `qlab sim serve`.
#[derive(Debug, Clone, Serialize)]
pub struct SimReady {
    /// Always true.
    pub ready: bool,
    /// Base URL of each device's simulator, by device name.
    pub devices: BTreeMap<String, String>,
    /// Base URL of the ePO Web API simulator of each AV server whose transport is `epo_api`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub epo: BTreeMap<String, String>,
    /// SMTP sink (`127.0.0.1:PORT`) that receives the engine's emails.
    pub smtp: String,
    /// UDP syslog sink (`127.0.0.1:PORT`) that receives the engine's alerts.
    pub syslog: String,
}

/// Running simulators of one topology.
pub struct SimServer {
    /// The servers (dropping them stops them).
    pub site: WireSite,
    /// What the ready line says.
    pub ready: SimReady,
}

/// Name of the CA file written beside a printed config.
pub const CA_FILE_NAME: &str = "ca.pem";

/// Starts every simulator of `topology` (over HTTPS unless `plain_http`) and, with
/// `print_config`, writes an engine config there that points at them (topology path absolute,
/// journal beside the config) and, over HTTPS, the CA beside it as [`CA_FILE_NAME`].
pub async fn start(
    topology: &Path,
    print_config: Option<&Path>,
    plain_http: bool,
) -> Result<SimServer, String> {
    let site = Arc::new(load_site(topology).map_err(|e| e.to_string())?);
    let world = SimWorld::new(site.clone(), Vec::new(), Recorder::new(), 0);
    let wire = if plain_http {
        WireSite::start(world).await
    } else {
        WireSite::start_tls(world).await
    }
    .map_err(|e| format!("cannot start the simulators: {e}"))?;
    if let Some(path) = print_config {
        let topology =
            std::fs::canonicalize(topology).map_err(|e| format!("{}: {e}", topology.display()))?;
        let ca_file = match wire.ca_pem() {
            Some(pem) => {
                let ca_path = path.with_file_name(CA_FILE_NAME);
                std::fs::write(&ca_path, pem).map_err(|e| format!("{}: {e}", ca_path.display()))?;
                Some(PathBuf::from(CA_FILE_NAME))
            }
            None => None,
        };
        let config = engine_config(
            &site,
            &wire,
            topology,
            PathBuf::from("qlab-journal.sqlite"),
            ca_file,
        );
        let text = toml::to_string(&config).map_err(|e| format!("cannot write the config: {e}"))?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let ready = SimReady {
        ready: true,
        devices: wire.urls(),
        epo: wire
            .epo_servers()
            .into_iter()
            .map(|(name, (url, _))| (name, url))
            .collect(),
        smtp: format!("127.0.0.1:{}", wire.smtp.port()),
        syslog: wire.syslog_addr().to_string(),
    };
    Ok(SimServer { site: wire, ready })
}

/// The poll interval of the ePO pollers a generated config sets.
pub const EPO_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// An engine config for `site` whose devices, mail and alert output are `wire`'s simulators;
/// its HTTPS devices trust the CA in `ca_file`. The syslog listeners are on (127.0.0.1, any
/// free port) and every AV server whose transport is `epo_api` gets an ePO poller of its
/// simulator, polling every [`EPO_POLL_INTERVAL`].
pub fn engine_config(
    site: &Site,
    wire: &WireSite,
    topology: PathBuf,
    journal: PathBuf,
    ca_file: Option<PathBuf>,
) -> EngineConfig {
    let t = &site.topology;
    let configured = |name: &str| {
        t.hypervisors
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| h.credentials.as_ref())
            .or_else(|| {
                t.switches
                    .iter()
                    .find(|s| s.name == name)
                    .and_then(|s| s.credentials.as_ref())
            })
            .or_else(|| {
                t.bmcs
                    .iter()
                    .find(|b| b.name == name)
                    .and_then(|b| b.credentials.as_ref())
            })
    };
    let devices = wire
        .urls()
        .into_iter()
        .map(|(name, url)| {
            let credentials = accepted_credentials(configured(&name));
            let mut endpoint =
                DeviceEndpoint::new(&name, &url, &credentials.user, &credentials.password);
            if url.starts_with("https://") {
                endpoint.ca_file = ca_file.clone();
            }
            endpoint
        })
        .collect();
    EngineConfig {
        topology,
        journal,
        token: GENERATED_TOKEN.into(),
        tokens: Vec::new(),
        hostname: "qlab-engine".into(),
        api: ApiConfig::default(),
        syslog_in: SyslogInConfig::default(),
        devices,
        smtp: Some(SmtpConfig {
            host: "127.0.0.1".into(),
            port: wire.smtp.port(),
            from: "qlab@example.com".into(),
        }),
        syslog_out: Some(SyslogOutConfig {
            udp: Some(wire.syslog_addr()),
            tcp: None,
        }),
        epo_pollers: wire
            .epo_servers()
            .into_iter()
            .map(|(source, (url, login))| EpoPollerConfig {
                ca_file: if url.starts_with("https://") {
                    ca_file.clone()
                } else {
                    None
                },
                source,
                url,
                user: login.user,
                password: login.password,
                interval: EPO_POLL_INTERVAL,
            })
            .collect(),
    }
}
