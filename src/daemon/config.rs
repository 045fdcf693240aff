//! The engine's configuration file (`qlab engine serve --config FILE`): where the topology and
//! journal are, what the daemon listens on, and how each device of the topology is reached.
//! `qlab sim serve --write-config FILE` writes one that points at the simulators.
//!
//! ```toml
//! topology = "site.toml"            # relative to this file
//! journal = "qlab-journal.sqlite"   # relative to this file
//! token = "change-me"               # QLAB_TOKEN overrides it; the all-scope token "default"
//! hostname = "qlab-engine"          # HOSTNAME field of outgoing syslog lines
//!
//! [api]
//! listen = "127.0.0.1:8080"         # port 0: any free port (the ready line tells which)
//! max_body_bytes = 65536
//! # tls_cert = "api-cert.pem"       # both set: the API serves HTTPS (PEM chain, leaf first)
//! # tls_key = "api-key.pem"         # PEM private key (PKCS#8, PKCS#1 or SEC1)
//!
//! [syslog_in]                       # AV servers' syslog (R18: only from their topology address)
//! udp = "127.0.0.1:0"
//! tcp = "127.0.0.1:0"
//! max_message_bytes = 65536
//! udp_recv_buffer_bytes = 8388608  # SO_RCVBUF asked for; /health shows what was granted
//! queue_messages = 65536            # intake queue bounds; UDP beyond them is dropped, counted
//! queue_bytes = 67108864
//!
//! [[devices]]                       # one per hypervisor, switch, BMC of the topology
//! name = "vc-1"
//! url = "https://127.0.0.1:9001"
//! user = "qlab"
//! password = "qlab"                 # or password_env = "VC1_PASSWORD" or password_file = "vc1.pw"
//! ca_file = "ca.pem"                # TLS: trust this CA (PEM) for the device's certificate
//! # tls_fingerprint = "sha256:AB:CD:..." # or pin the device certificate's SHA-256
//! # tls_insecure = true             # or skip verification: logged as a WARN, shown in /health
//!
//! [[devices]]                       # a BMC: Redfish; session or Basic auth found by the client
//! name = "irmc-1"
//! url = "http://127.0.0.1:9002"
//! user = "qlab"
//! password = "qlab"
//! system_id = "1"                   # optional: unset, the BMC's one listed system is reset
//!
//! [[devices]]                       # an out-of-process adapter (docs/plugins.md)
//! name = "sw-9"
//! plugin = ["python3", "plugins/my_switch.py"]  # run in this file's folder
//! url = "https://192.0.2.9"         # passed to the plugin with the credentials
//! user = "qlab"
//! password_env = "SW9_PASSWORD"
//!
//! [smtp]                            # optional: tenant emails
//! host = "127.0.0.1"
//! port = 2525
//! from = "qlab@example.com"
//!
//! [syslog_out]                      # optional: where alerts go (RFC 5424 over UDP or TCP)
//! udp = "127.0.0.1:5514"
//!
//! [[tokens]]                        # optional: named tokens with scopes (see `auth`)
//! name = "osce-1-script"
//! scopes = ["notify"]               # notify, read, operate
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//!
//! [[tokens]]
//! name = "soc"
//! scopes = ["read", "operate"]
//! file = "tokens/soc.token"         # the token itself, relative to this file
//!
//! [[epo_pollers]]                   # optional: ePO Web API core.executeQuery pollers
//! source = "epo-1"
//! url = "http://127.0.0.1:9443"
//! user = "qlab"
//! password = "qlab"
//! interval = "5s"
//! # ca_file = "ca.pem"              # trust this CA (PEM) for an https:// url
//! ```
//!
//! Device TLS and secrets (R18): `ca_file` and `password_file` are relative to this file. With
//! neither `ca_file` nor `tls_fingerprint` the built-in web roots verify the device; `ca_file`
//! replaces them; a fingerprint pins the leaf certificate (and with `ca_file` both must hold).
//! `tls_insecure` cannot be combined with either. Exactly one of `password`, `password_env`,
//! `password_file` is set; a password file's trailing line break is not part of the password.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::adapters::http::TlsTrust;
use crate::model::duration;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Topology file, relative to the config file.
    pub topology: PathBuf,
    /// Journal file, relative to the config file.
    pub journal: PathBuf,
    /// API bearer token with every scope, named `default`; `QLAB_TOKEN` overrides it. May be
    /// empty when `[[tokens]]` lists at least one token.
    #[serde(default)]
    pub token: String,
    /// Named API tokens with scopes ([`super::auth`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<TokenConfig>,
    /// HOSTNAME of outgoing syslog lines.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// HTTP API.
    #[serde(default)]
    pub api: ApiConfig,
    /// Syslog listeners for AV servers.
    #[serde(default)]
    pub syslog_in: SyslogInConfig,
    /// How each device is reached.
    #[serde(default)]
    pub devices: Vec<DeviceEndpoint>,
    /// Outgoing email.
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// Outgoing syslog.
    #[serde(default)]
    pub syslog_out: Option<SyslogOutConfig>,
    /// ePO Web API pollers.
    #[serde(default)]
    pub epo_pollers: Vec<EpoPollerConfig>,
}

fn default_hostname() -> String {
    "qlab-engine".into()
}

/// `[[tokens]]`: one named API token. Exactly one of `sha256` and `file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Name journaled with every command the token makes.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<super::auth::Scope>,
    /// SHA-256 of the token, 64 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// File holding the token (relative to the config file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

/// `[api]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Listen address; port 0 picks a free port.
    #[serde(default = "loopback_any")]
    pub listen: SocketAddr,
    /// Largest accepted request body (R18: larger gets 413).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Certificate chain (PEM, leaf first), relative to the config file. With `tls_key` the API
    /// serves HTTPS only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `tls_cert`, relative to the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: loopback_any(),
            max_body_bytes: default_max_body(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

fn loopback_any() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn default_max_body() -> usize {
    64 * 1024
}

/// `[syslog_in]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogInConfig {
    /// UDP listen address; absent disables it.
    #[serde(default = "some_loopback_any")]
    pub udp: Option<SocketAddr>,
    /// TCP listen address (octet counting and newline framing); absent disables it.
    #[serde(default = "some_loopback_any")]
    pub tcp: Option<SocketAddr>,
    /// Largest accepted message; larger ones are rejected and counted (R18).
    #[serde(default = "default_max_body")]
    pub max_message_bytes: usize,
    /// SO_RCVBUF asked for the UDP socket (what the kernel granted is in `/health`).
    #[serde(default = "default_udp_recv_buffer")]
    pub udp_recv_buffer_bytes: usize,
    /// Most messages waiting for the engine; UDP datagrams beyond are dropped and counted.
    #[serde(default = "default_queue_messages")]
    pub queue_messages: usize,
    /// Most bytes of messages waiting for the engine; UDP datagrams beyond are dropped and
    /// counted.
    #[serde(default = "default_queue_bytes")]
    pub queue_bytes: usize,
}

impl Default for SyslogInConfig {
    fn default() -> Self {
        SyslogInConfig {
            udp: some_loopback_any(),
            tcp: some_loopback_any(),
            max_message_bytes: default_max_body(),
            udp_recv_buffer_bytes: default_udp_recv_buffer(),
            queue_messages: default_queue_messages(),
            queue_bytes: default_queue_bytes(),
        }
    }
}

fn default_udp_recv_buffer() -> usize {
    super::syslog_in::DEFAULT_UDP_RECV_BUFFER
}

fn default_queue_messages() -> usize {
    super::syslog_in::DEFAULT_QUEUE_MESSAGES
}

fn default_queue_bytes() -> usize {
    super::syslog_in::DEFAULT_QUEUE_BYTES
}

fn some_loopback_any() -> Option<SocketAddr> {
    Some(loopback_any())
}

/// `[[devices]]`: where a hypervisor, switch or BMC of the topology answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceEndpoint {
    /// Device name in the topology (its kind comes from there).
    pub name: String,
    /// Base URL, e.g. `http://127.0.0.1:9001`.
    pub url: String,
    /// Login name.
    pub user: String,
    /// Password, written in the file. Exactly one of `password`, `password_env`,
    /// `password_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Name of the environment variable that holds the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// File that holds the password (relative to the config file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// PEM bundle of the CAs that sign the device's certificate (relative to the config file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// SHA-256 of the device's certificate, `sha256:AB:CD:...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_fingerprint: Option<String>,
    /// Skip certificate verification (logged as a WARN at start, listed in `/health`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_insecure: bool,
    /// Redfish system id (BMCs only). Unset: the system the BMC's Systems collection lists,
    /// which must then list exactly one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_id: Option<String>,
    /// An out-of-process adapter: the program and arguments of a plugin speaking the adapter
    /// plugin protocol (`docs/plugins.md`), started in this file's folder. The topology's kind
    /// of the device is then not used; `url`, the credentials and the TLS keys are passed to
    /// the plugin in `initialize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<Vec<String>>,
    /// Folder the plugin runs in: the config file's, set by [`EngineConfig::load`].
    #[serde(skip)]
    pub plugin_dir: Option<PathBuf>,
}

/// Largest password file read.
pub const MAX_PASSWORD_FILE_BYTES: u64 = 4096;

/// Largest `ca_file` read.
pub const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

/// Reads at most `limit` bytes of `path`, naming the file in every error.
pub(crate) fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > limit {
        return Err(format!(
            "{}: {} bytes, the limit is {limit}",
            path.display(),
            meta.len()
        ));
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

impl DeviceEndpoint {
    /// A plain endpoint with the password written in the config and default TLS trust.
    pub fn new(name: &str, url: &str, user: &str, password: &str) -> DeviceEndpoint {
        DeviceEndpoint {
            name: name.into(),
            url: url.into(),
            user: user.into(),
            password: Some(password.into()),
            password_env: None,
            password_file: None,
            ca_file: None,
            tls_fingerprint: None,
            tls_insecure: false,
            system_id: None,
            plugin: None,
            plugin_dir: None,
        }
    }

    /// The password from whichever of the three keys is set; `Err((key, message))` names the
    /// key. The message never contains the password.
    pub fn resolve_password(&self) -> Result<String, (&'static str, String)> {
        let set = [
            self.password.is_some(),
            self.password_env.is_some(),
            self.password_file.is_some(),
        ];
        match set.iter().filter(|s| **s).count() {
            0 => {
                return Err((
                    "password",
                    "set one of `password`, `password_env` or `password_file`".into(),
                ))
            }
            1 => {}
            _ => {
                let key = if self.password_file.is_some() {
                    "password_file"
                } else {
                    "password_env"
                };
                return Err((
                    key,
                    "set only one of `password`, `password_env` or `password_file`".into(),
                ));
            }
        }
        if let Some(password) = &self.password {
            return Ok(password.clone());
        }
        if let Some(var) = &self.password_env {
            return match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(v),
                Ok(_) => Err((
                    "password_env",
                    format!("environment variable {var} is empty"),
                )),
                Err(_) => Err((
                    "password_env",
                    format!("environment variable {var} is not set or not UTF-8"),
                )),
            };
        }
        let path = self.password_file.as_deref().unwrap_or(Path::new(""));
        let bytes = read_capped(path, MAX_PASSWORD_FILE_BYTES).map_err(|e| ("password_file", e))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| ("password_file", format!("{}: not UTF-8", path.display())))?;
        let password = text.strip_suffix('\n').unwrap_or(&text);
        let password = password.strip_suffix('\r').unwrap_or(password);
        if password.is_empty() {
            return Err(("password_file", format!("{} is empty", path.display())));
        }
        Ok(password.to_string())
    }

    /// How the device's certificate is verified; `Err((key, message))` names the key.
    pub fn trust(&self) -> Result<TlsTrust, (&'static str, String)> {
        if self.tls_insecure {
            if self.ca_file.is_some() {
                return Err((
                    "tls_insecure",
                    "cannot be combined with `ca_file`: verify against the CA or skip verification, not both".into(),
                ));
            }
            if self.tls_fingerprint.is_some() {
                return Err((
                    "tls_insecure",
                    "cannot be combined with `tls_fingerprint`: pin the certificate or skip verification, not both".into(),
                ));
            }
            return Ok(TlsTrust {
                insecure: true,
                ..TlsTrust::default()
            });
        }
        let mut trust = TlsTrust::default();
        if let Some(path) = &self.ca_file {
            let pem = read_capped(path, MAX_CA_FILE_BYTES).map_err(|e| ("ca_file", e))?;
            trust = trust
                .with_ca_pem(&pem)
                .map_err(|e| ("ca_file", format!("{}: {e}", path.display())))?;
        }
        if let Some(pin) = &self.tls_fingerprint {
            trust = trust
                .with_fingerprint(pin)
                .map_err(|e| ("tls_fingerprint", e))?;
        }
        Ok(trust)
    }
}

/// `[smtp]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Sender address.
    pub from: String,
}

/// `[syslog_out]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogOutConfig {
    /// Send over UDP to this address.
    #[serde(default)]
    pub udp: Option<SocketAddr>,
    /// Send over TCP (octet counting) to this address.
    #[serde(default)]
    pub tcp: Option<SocketAddr>,
}

/// `[[epo_pollers]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpoPollerConfig {
    /// AV server name in the topology (kind `epo`).
    pub source: String,
    /// Base URL of the ePO server.
    pub url: String,
    /// Login name (HTTP Basic).
    pub user: String,
    /// Password.
    pub password: String,
    /// Poll interval.
    #[serde(with = "duration::Text", default = "default_interval")]
    pub interval: Duration,
    /// CA certificate(s) (PEM) trusted for an `https://` url besides the built-in roots,
    /// relative to the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

fn default_interval() -> Duration {
    Duration::from_secs(5)
}

/// Largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

impl EngineConfig {
    /// Reads and parses a config file; relative paths become relative to its folder.
    pub fn load(path: &Path) -> Result<EngineConfig, String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(format!(
                "{}: {} bytes, the limit is {MAX_CONFIG_BYTES}",
                path.display(),
                meta.len()
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut config: EngineConfig = toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            match line {
                Some(line) => format!("{}:{line}: {}", path.display(), e.message()),
                None => format!("{}: {}", path.display(), e.message()),
            }
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.topology = base.join(&config.topology);
        config.journal = base.join(&config.journal);
        for t in &mut config.tokens {
            if let Some(file) = &mut t.file {
                *file = base.join(&*file);
            }
        }
        for d in &mut config.devices {
            for path in [&mut d.ca_file, &mut d.password_file].into_iter().flatten() {
                *path = base.join(&*path);
            }
            if d.plugin.is_some() {
                let dir = if base.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    base
                };
                d.plugin_dir = Some(dir.to_path_buf());
            }
        }
        for p in &mut config.epo_pollers {
            if let Some(file) = &mut p.ca_file {
                *file = base.join(&*file);
            }
        }
        for path in [&mut config.api.tls_cert, &mut config.api.tls_key]
            .into_iter()
            .flatten()
        {
            *path = base.join(&*path);
        }
        Ok(config)
    }

    /// The endpoint of device `name`.
    pub fn device(&self, name: &str) -> Option<&DeviceEndpoint> {
        self.devices.iter().find(|d| d.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> DeviceEndpoint {
        DeviceEndpoint::new("vc-1", "https://127.0.0.1:1", "qlab", "secret-pw")
    }

    /// The message of `result`, which must be refused under `key`.
    fn refused<T>(result: Result<T, (&str, String)>, key: &str) -> String {
        let Err((k, message)) = result else {
            panic!("not refused");
        };
        assert_eq!(k, key);
        message
    }

    #[test]
    fn r18_exactly_one_password_source_and_errors_name_the_key() {
        assert_eq!(endpoint().resolve_password().unwrap(), "secret-pw");
        let mut none = endpoint();
        none.password = None;
        assert_eq!(none.resolve_password().unwrap_err().0, "password");
        let mut two = endpoint();
        two.password_env = Some("QLAB_TEST_NO_SUCH_VAR_R18".into());
        let message = refused(two.resolve_password(), "password_env");
        assert!(!message.contains("secret-pw"), "{message}");
        let mut env = none.clone();
        env.password_env = Some("QLAB_TEST_NO_SUCH_VAR_R18".into());
        let message = refused(env.resolve_password(), "password_env");
        assert!(message.contains("QLAB_TEST_NO_SUCH_VAR_R18"), "{message}");
    }

    #[test]
    fn r18_password_file_drops_the_trailing_line_break() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vc.pw");
        std::fs::write(&path, "from-file\n").unwrap();
        let mut d = endpoint();
        d.password = None;
        d.password_file = Some(path.clone());
        assert_eq!(d.resolve_password().unwrap(), "from-file");
        std::fs::write(&path, "\n").unwrap();
        assert_eq!(d.resolve_password().unwrap_err().0, "password_file");
        d.password_file = Some(dir.path().join("missing"));
        let message = refused(d.resolve_password(), "password_file");
        assert!(message.contains("missing"), "{message}");
    }

    #[test]
    fn r18_insecure_with_a_ca_or_pin_is_refused_naming_the_key() {
        let mut d = endpoint();
        d.tls_insecure = true;
        assert!(d.trust().unwrap().insecure);
        d.ca_file = Some(PathBuf::from("ca.pem"));
        let message = refused(d.trust(), "tls_insecure");
        assert!(message.contains("ca_file"), "{message}");
        d.ca_file = None;
        d.tls_fingerprint = Some(format!("sha256:{}", "AB:".repeat(31) + "AB"));
        let message = refused(d.trust(), "tls_insecure");
        assert!(message.contains("tls_fingerprint"), "{message}");
    }

    #[test]
    fn r18_ca_file_must_be_pem_and_fingerprint_well_formed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "hello").unwrap();
        let mut d = endpoint();
        d.ca_file = Some(path);
        assert_eq!(d.trust().unwrap_err().0, "ca_file");
        d.ca_file = Some(dir.path().join("absent.pem"));
        assert_eq!(d.trust().unwrap_err().0, "ca_file");
        d.ca_file = None;
        d.tls_fingerprint = Some("sha1:AB".into());
        assert_eq!(d.trust().unwrap_err().0, "tls_fingerprint");
        d.tls_fingerprint = Some(format!("sha256:{}", "0f".repeat(32)));
        assert_eq!(d.trust().unwrap().fingerprint, Some([0x0f; 32]));
    }
}
