//! From config plus topology to adapters: one wire client per hypervisor, switch and BMC of
//! the topology (its kind picks the protocol, `[[devices]]` says where and as whom), the SMTP
//! mailer and the syslog sender. Every mismatch between the two files is an error naming the
//! config key, so `qlab engine serve` fails at start rather than at the first detection.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::config::{DeviceEndpoint, EngineConfig};
use super::DaemonError;
use crate::adapters::eapi::EapiSwitch;
use crate::adapters::http::TlsTrust;
use crate::adapters::nxapi::NxapiSwitch;
use crate::adapters::plugin::{Family, PluginAdapter, PluginDevice, Supervision};
use crate::adapters::redfish::RedfishClient;
use crate::adapters::restconf::RestconfSwitch;
use crate::adapters::smtp::SmtpMailer;
use crate::adapters::syslog::SyslogSender;
use crate::adapters::vcenter::VcenterClient;
use crate::adapters::{Adapters, Bmc, DeviceError, Hypervisor, Switch};
use crate::model::load::KeySeg;
use crate::model::{AvKind, BmcKind, HypervisorKind, Site, SwitchKind};

/// Smallest `api.max_body_bytes` accepted: a detection with short fields fits.
pub const MIN_BODY_BYTES: usize = 256;

fn config_error(key: Vec<KeySeg>, message: impl Into<String>) -> DaemonError {
    DaemonError::Config {
        key,
        message: message.into(),
    }
}

/// Checks `[[devices]]` and `[[epo_pollers]]` against the topology.
pub(crate) fn check(config: &EngineConfig, site: &Site) -> Result<(), DaemonError> {
    let t = &site.topology;
    let hypervisors: HashSet<&str> = t.hypervisors.iter().map(|h| h.name.as_str()).collect();
    let switches: HashSet<&str> = t.switches.iter().map(|s| s.name.as_str()).collect();
    let bmcs: HashSet<&str> = t.bmcs.iter().map(|b| b.name.as_str()).collect();
    let mut seen = HashSet::new();
    for (i, d) in config.devices.iter().enumerate() {
        let key = |field: &str| device_key(i, field);
        let name = d.name.as_str();
        if !(hypervisors.contains(name) || switches.contains(name) || bmcs.contains(name)) {
            return Err(config_error(
                key("name"),
                format!("{name:?} is not a hypervisor, switch or BMC of the topology"),
            ));
        }
        if !seen.insert(name) {
            return Err(config_error(
                key("name"),
                format!("device {name:?} is listed twice"),
            ));
        }
        if d.system_id.is_some() && !bmcs.contains(name) {
            return Err(config_error(
                key("system_id"),
                format!("{name:?} is not a BMC; only BMCs have a Redfish system id"),
            ));
        }
        match &d.plugin {
            // A plugin interprets its url itself.
            Some(cmd) => {
                check_plugin(cmd).map_err(|message| config_error(key("plugin"), message))?
            }
            None if !(d.url.starts_with("http://") || d.url.starts_with("https://")) => {
                return Err(config_error(
                    key("url"),
                    format!("{:?} must start with http:// or https://", d.url),
                ));
            }
            None => {}
        }
        d.resolve_password()
            .map_err(|(field, message)| config_error(key(field), message))?;
        // Checked here so a bad `ca_file` or pin stops the start, naming its key.
        d.trust()
            .map_err(|(field, message)| config_error(key(field), message))?;
    }
    let all = hypervisors.iter().chain(&switches).chain(&bmcs);
    for name in all {
        if config.device(name).is_none() {
            return Err(config_error(
                vec!["devices".into()],
                format!(
                    "no [[devices]] entry for {name:?}: every hypervisor, switch and BMC of the \
                     topology needs its url, user and password"
                ),
            ));
        }
    }
    let mut pollers = HashSet::new();
    for (i, p) in config.epo_pollers.iter().enumerate() {
        let key = |field: &str| vec![KeySeg::from("epo_pollers"), KeySeg::from(i), field.into()];
        match t.av_servers.iter().find(|a| a.name == p.source) {
            Some(a) if a.kind == AvKind::Epo => {}
            Some(_) => {
                return Err(config_error(
                    key("source"),
                    format!("AV server {:?} is not of kind epo", p.source),
                ))
            }
            None => {
                return Err(config_error(
                    key("source"),
                    format!("{:?} is not an AV server of the topology", p.source),
                ))
            }
        }
        if !pollers.insert(p.source.as_str()) {
            return Err(config_error(
                key("source"),
                format!("{:?} is polled twice", p.source),
            ));
        }
        if p.interval.is_zero() {
            return Err(config_error(key("interval"), "must be longer than 0s"));
        }
    }
    if config.api.max_body_bytes < MIN_BODY_BYTES {
        return Err(config_error(
            vec!["api".into(), "max_body_bytes".into()],
            format!("must be at least {MIN_BODY_BYTES}: smaller refuses every detection"),
        ));
    }
    if let Some(out) = &config.syslog_out {
        if out.udp.is_some() == out.tcp.is_some() {
            return Err(config_error(
                vec!["syslog_out".into()],
                "set exactly one of `udp` or `tcp`",
            ));
        }
    }
    Ok(())
}

/// Most elements of a `plugin` command.
pub const MAX_PLUGIN_ARGS: usize = 64;
/// Longest element of a `plugin` command (bytes).
pub const MAX_PLUGIN_ARG_BYTES: usize = 4096;

/// Checks a `plugin` command's shape (whether it runs is found when it is started).
fn check_plugin(cmd: &[String]) -> Result<(), String> {
    match cmd.first() {
        None => return Err("the command is empty: give the program and its arguments".into()),
        Some(program) if program.trim().is_empty() => {
            return Err("the program (first element) is empty".into())
        }
        Some(_) => {}
    }
    if cmd.len() > MAX_PLUGIN_ARGS {
        return Err(format!(
            "{} elements, the limit is {MAX_PLUGIN_ARGS}",
            cmd.len()
        ));
    }
    for (i, arg) in cmd.iter().enumerate() {
        if arg.len() > MAX_PLUGIN_ARG_BYTES {
            return Err(format!(
                "element {i} has {} bytes, the limit is {MAX_PLUGIN_ARG_BYTES}",
                arg.len()
            ));
        }
        if arg.contains('\0') {
            return Err(format!("element {i} contains a NUL character"));
        }
    }
    Ok(())
}

/// Names of the devices whose certificates are not verified (`tls_insecure`), sorted.
pub(crate) fn insecure_devices(config: &EngineConfig) -> Vec<String> {
    let mut names: Vec<String> = config
        .devices
        .iter()
        .filter(|d| d.tls_insecure)
        .map(|d| d.name.clone())
        .collect();
    names.sort();
    names
}

/// Password and TLS trust of the `index`th device; [`check`] has validated both.
fn secrets(index: usize, d: &DeviceEndpoint) -> Result<(String, TlsTrust), DaemonError> {
    let key = |field: &str| device_key(index, field);
    let password = d
        .resolve_password()
        .map_err(|(field, message)| config_error(key(field), message))?;
    let trust = d
        .trust()
        .map_err(|(field, message)| config_error(key(field), message))?
        .for_device(&d.name);
    if trust.insecure {
        tracing::warn!(
            device = %d.name,
            "tls_insecure: the certificate of device {} is NOT verified; anyone on the path can \
             impersonate it",
            d.name
        );
    }
    Ok((password, trust))
}

/// Every adapter, and the plugins among them (the daemon stops those when it stops).
pub(crate) struct Built {
    pub(crate) adapters: Adapters,
    pub(crate) plugins: Vec<Arc<PluginAdapter>>,
}

/// Builds every adapter, starting the plugins; call [`check`] first.
pub(crate) async fn adapters(config: &EngineConfig, site: &Site) -> Result<Built, DaemonError> {
    let t = &site.topology;
    let timeout = t.engine.call_timeout;
    let mut adapters = Adapters::default();
    let mut plugins = Vec::new();
    for h in &t.hypervisors {
        let adapter = device_adapter::<dyn Hypervisor>(
            config,
            &h.name,
            Family::Hypervisor,
            timeout,
            &mut plugins,
            |p| p,
            |d, password, trust| {
                Ok(match h.kind {
                    HypervisorKind::Vcenter => Arc::new(
                        VcenterClient::new(&d.url, &d.user, password, timeout)?
                            .with_trust(trust)?,
                    ),
                })
            },
        )
        .await?;
        adapters.hypervisors.insert(h.name.clone(), adapter);
    }
    for s in &t.switches {
        let adapter = device_adapter::<dyn Switch>(
            config,
            &s.name,
            Family::Switch,
            timeout,
            &mut plugins,
            |p| p,
            |d, password, trust| switch(s.kind, d, password, trust, timeout),
        )
        .await?;
        adapters.switches.insert(s.name.clone(), adapter);
    }
    for b in &t.bmcs {
        let adapter = device_adapter::<dyn Bmc>(
            config,
            &b.name,
            Family::Bmc,
            timeout,
            &mut plugins,
            |p| p,
            |d, password, trust| {
                let client: Arc<dyn Bmc> = match b.kind {
                    BmcKind::Redfish => Arc::new(
                        RedfishClient::new(
                            &d.url,
                            &d.user,
                            password,
                            d.system_id.as_deref(),
                            timeout,
                        )?
                        .with_trust(trust)?,
                    ),
                };
                Ok(client)
            },
        )
        .await?;
        adapters.bmcs.insert(b.name.clone(), adapter);
    }
    if let Some(smtp) = &config.smtp {
        let mailer = SmtpMailer::new(&smtp.host, smtp.port, &smtp.from, timeout)
            .map_err(|e| config_error(vec!["smtp".into(), "from".into()], e.detail))?;
        adapters.mailer = Some(Arc::new(mailer));
    }
    if let Some(out) = &config.syslog_out {
        let sender = match (out.udp, out.tcp) {
            (Some(addr), _) => SyslogSender::udp(addr, timeout),
            (None, Some(addr)) => SyslogSender::tcp(addr, timeout),
            (None, None) => {
                return Err(config_error(
                    vec!["syslog_out".into()],
                    "set exactly one of `udp` or `tcp`",
                ))
            }
        };
        adapters.syslog = Some(Arc::new(sender));
    }
    Ok(Built { adapters, plugins })
}

/// The adapter of device `name` (of `family`): its plugin when its `[[devices]]` entry names
/// one (also kept in `plugins`, which the daemon stops when it stops), else the built-in client
/// `builtin` makes from the entry, its password and its TLS trust.
async fn device_adapter<D: ?Sized>(
    config: &EngineConfig,
    name: &str,
    family: Family,
    timeout: Duration,
    plugins: &mut Vec<Arc<PluginAdapter>>,
    as_port: fn(Arc<PluginAdapter>) -> Arc<D>,
    builtin: impl FnOnce(&DeviceEndpoint, &str, &TlsTrust) -> Result<Arc<D>, DeviceError>,
) -> Result<Arc<D>, DaemonError> {
    let (i, d) = endpoint(config, name)?;
    if let Some(p) = plugin(i, d, family, timeout).await? {
        plugins.push(p.clone());
        return Ok(as_port(p));
    }
    let (password, trust) = secrets(i, d)?;
    builtin(d, &password, &trust).map_err(|e| bad_endpoint(i, e))
}

/// Starts the plugin of the `index`th device when it has one: `url`, credentials and TLS keys
/// go to the plugin in `initialize`; a plugin that does not start names `devices[i].plugin`.
async fn plugin(
    index: usize,
    d: &DeviceEndpoint,
    family: Family,
    timeout: Duration,
) -> Result<Option<Arc<PluginAdapter>>, DaemonError> {
    let Some(cmd) = &d.plugin else {
        return Ok(None);
    };
    let key = |field: &str| device_key(index, field);
    let password = d
        .resolve_password()
        .map_err(|(field, message)| config_error(key(field), message))?;
    let mut device = PluginDevice::new(&d.name, family, &d.url, &d.user, &password);
    let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    device
        .options
        .insert("call_timeout_ms".into(), millis.into());
    if let Some(ca) = &d.ca_file {
        let ca = std::path::absolute(ca).unwrap_or_else(|_| ca.clone());
        let ca = ca.to_string_lossy().into_owned();
        device.options.insert("ca_file".into(), ca.into());
    }
    if let Some(pin) = &d.tls_fingerprint {
        device
            .options
            .insert("tls_fingerprint".into(), pin.clone().into());
    }
    if d.tls_insecure {
        device.options.insert("tls_insecure".into(), true.into());
    }
    if let Some(id) = &d.system_id {
        device.options.insert("system_id".into(), id.clone().into());
    }
    let supervision = Supervision {
        cwd: d.plugin_dir.clone(),
        ..Supervision::default()
    };
    let adapter = PluginAdapter::spawn_with(cmd, device, timeout, supervision)
        .await
        .map_err(|e| config_error(key("plugin"), format!("device {:?}: {e}", d.name)))?;
    Ok(Some(adapter))
}

/// The wire client for a switch of `kind`, verifying its certificate as `trust` says (R18).
fn switch(
    kind: SwitchKind,
    d: &DeviceEndpoint,
    password: &str,
    trust: &TlsTrust,
    timeout: Duration,
) -> Result<Arc<dyn Switch>, DeviceError> {
    let (url, user) = (d.url.as_str(), d.user.as_str());
    Ok(match kind {
        SwitchKind::Nxapi => {
            Arc::new(NxapiSwitch::new(url, user, password, timeout)?.with_trust(trust)?)
        }
        SwitchKind::Eapi => {
            Arc::new(EapiSwitch::new(url, user, password, timeout)?.with_trust(trust)?)
        }
        SwitchKind::Restconf => {
            Arc::new(RestconfSwitch::new(url, user, password, timeout)?.with_trust(trust)?)
        }
    })
}

fn endpoint<'c>(
    config: &'c EngineConfig,
    name: &str,
) -> Result<(usize, &'c DeviceEndpoint), DaemonError> {
    config
        .devices
        .iter()
        .enumerate()
        .find(|(_, d)| d.name == name)
        .ok_or_else(|| {
            config_error(
                vec!["devices".into()],
                format!("no [[devices]] entry for {name:?}"),
            )
        })
}

fn bad_endpoint(index: usize, error: DeviceError) -> DaemonError {
    config_error(device_key(index, "url"), error.detail)
}

/// The key `devices[index].field`.
fn device_key(index: usize, field: &str) -> Vec<KeySeg> {
    vec![KeySeg::from("devices"), KeySeg::from(index), field.into()]
}
