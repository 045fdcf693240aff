//! The target of a certification and the adapter under test.
//!
//! A sim target is the family's built-in wire simulator, started on 127.0.0.1:0 over HTTPS
//! with a CA generated for the run, over a one-device site generated from `[resources]`; from
//! then on it is treated exactly like a real target (a URL, a user, a password, a CA), so the
//! sim path exercises the real-target path. Only the semantic faults (`SimOnly` checks) need
//! the simulator itself: each gets a fresh simulator whose fault plan holds that one fault.
//!
//! Adapters are built by an [`AdapterFactory`] for a given endpoint (the suites point the
//! adapter at the certification proxy, or at a closed port for "connection refused").
//! [`factory`] is the one place an [`AdapterSource`] becomes a factory.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::product::Product;
use super::{CertifyError, Family};
use crate::adapters::eapi::EapiSwitch;
use crate::adapters::nxapi::NxapiSwitch;
use crate::adapters::plugin::{Family as PluginFamily, PluginAdapter, PluginDevice};
use crate::adapters::redfish::RedfishClient;
use crate::adapters::restconf::RestconfSwitch;
use crate::adapters::vcenter::VcenterClient;
use crate::adapters::{Bmc, DeviceError, Hypervisor, OutcomeClass, Switch};
use crate::model::history::NicRef;
use crate::model::Site;
use crate::sim::faults::FaultSpec;
use crate::sim::wire::site::SimTls;
use crate::sim::wire::{self, WireServer};
use crate::sim::{Recorder, SimWorld};

/// The device name of the simulated target in its generated site.
pub const SIM_DEVICE: &str = "device";

/// The built-in "adapter" of the AV family: the engine's intake (`builtin:intake`).
pub const INTAKE: &str = "intake";

/// A built-in adapter kind (`--adapter builtin:KIND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinKind {
    /// vSphere Automation REST.
    Vcenter,
    /// Cisco NX-API.
    Nxapi,
    /// Arista eAPI.
    Eapi,
    /// OpenConfig over RESTCONF.
    Restconf,
    /// DMTF Redfish.
    Redfish,
}

impl BuiltinKind {
    /// Every built-in kind.
    pub const ALL: [BuiltinKind; 5] = [
        BuiltinKind::Vcenter,
        BuiltinKind::Nxapi,
        BuiltinKind::Eapi,
        BuiltinKind::Restconf,
        BuiltinKind::Redfish,
    ];

    /// The spelling after `builtin:` and in `protocol`.
    pub fn as_str(self) -> &'static str {
        match self {
            BuiltinKind::Vcenter => "vcenter",
            BuiltinKind::Nxapi => "nxapi",
            BuiltinKind::Eapi => "eapi",
            BuiltinKind::Restconf => "restconf",
            BuiltinKind::Redfish => "redfish",
        }
    }

    /// Parses a protocol name.
    pub fn parse(text: &str) -> Option<BuiltinKind> {
        BuiltinKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// The family its adapter belongs to.
    pub fn family(self) -> Family {
        match self {
            BuiltinKind::Vcenter => Family::Hypervisor,
            BuiltinKind::Nxapi | BuiltinKind::Eapi | BuiltinKind::Restconf => Family::Switch,
            BuiltinKind::Redfish => Family::Bmc,
        }
    }
}

/// Where the adapter under test comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdapterSource {
    /// One of the adapters compiled into qlab.
    Builtin(BuiltinKind),
    /// An out-of-process adapter speaking the plugin protocol: the command and its arguments.
    Plugin(Vec<String>),
    /// The engine's own AV feed intake (`builtin:intake`): the vendor parsers, the syslog
    /// listeners, the ePO poller and the HTTP API. AV products are certified against it.
    Intake,
}

impl AdapterSource {
    /// Parses `builtin:KIND`.
    pub fn parse_builtin(text: &str) -> Result<AdapterSource, String> {
        let kind = text
            .strip_prefix("builtin:")
            .ok_or_else(|| format!("--adapter {text:?}: write builtin:KIND"))?;
        if kind == INTAKE {
            return Ok(AdapterSource::Intake);
        }
        BuiltinKind::parse(kind)
            .map(AdapterSource::Builtin)
            .ok_or_else(|| {
                let kinds: Vec<&str> = BuiltinKind::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "--adapter {text:?}: unknown kind; one of {}, {INTAKE}",
                    kinds.join(", ")
                )
            })
    }

    /// How reports name it.
    pub fn describe(&self) -> String {
        match self {
            AdapterSource::Builtin(k) => format!("builtin:{}", k.as_str()),
            AdapterSource::Plugin(cmd) => format!("plugin:{}", cmd.join(" ")),
            AdapterSource::Intake => format!("builtin:{INTAKE}"),
        }
    }
}

/// Where and as whom an adapter connects.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Base URL.
    pub url: String,
    /// User.
    pub user: String,
    /// Password.
    pub password: String,
    /// Redfish system id (BMC).
    pub system: Option<String>,
}

/// An adapter of one family.
#[derive(Clone)]
pub enum Device {
    /// A hypervisor manager.
    Hypervisor(Arc<dyn Hypervisor>),
    /// A switch.
    Switch(Arc<dyn Switch>),
    /// A BMC.
    Bmc(Arc<dyn Bmc>),
}

/// Builds the adapter under test for an endpoint, cutting every call at the call timeout.
pub type AdapterFactory =
    Arc<dyn Fn(&Endpoint, Duration) -> Result<Device, DeviceError> + Send + Sync>;

/// The factory of `source` for `family`. Out-of-process adapters are constructed here, and
/// only here.
pub fn factory(source: &AdapterSource, family: Family) -> Result<AdapterFactory, CertifyError> {
    match source {
        AdapterSource::Builtin(kind) => Ok(builtin_factory(*kind)),
        AdapterSource::Plugin(cmd) => plugin_factory(cmd.clone(), family),
        AdapterSource::Intake if family == Family::Av => Ok(Arc::new(|_: &Endpoint, _| {
            Err(DeviceError::new(
                OutcomeClass::Rejected,
                "the AV feed intake drives no device",
            ))
        })),
        AdapterSource::Intake => Err(CertifyError::Input(format!(
            "--adapter builtin:{INTAKE} certifies AV feeds; a {} product needs its device adapter",
            family.as_str()
        ))),
    }
}

/// The factory of an out-of-process adapter: each adapter the suites ask for is a fresh plugin
/// process (started and initialized with the endpoint's URL and credentials), stopped when the
/// suite drops it, so one check's plugin state cannot leak into the next.
fn plugin_factory(cmd: Vec<String>, family: Family) -> Result<AdapterFactory, CertifyError> {
    let plugin_family = match family {
        Family::Hypervisor => PluginFamily::Hypervisor,
        Family::Switch => PluginFamily::Switch,
        Family::Bmc => PluginFamily::Bmc,
        Family::Av => {
            return Err(CertifyError::Input(
                "--plugin: the plugin protocol has no AV feed family".into(),
            ))
        }
    };
    Ok(Arc::new(move |e: &Endpoint, timeout: Duration| {
        let device = PluginDevice::new("certified", plugin_family, &e.url, &e.user, &e.password);
        // The suites run on a multi-thread runtime and build adapters from synchronous code;
        // starting a plugin is async (spawn, then `initialize`), so this worker blocks on it.
        let spawned = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(PluginAdapter::spawn(&cmd, device, timeout))
        })
        .map_err(|e| DeviceError::new(OutcomeClass::Unavailable, format!("plugin: {e}")))?;
        Ok(match family {
            Family::Hypervisor => Device::Hypervisor(spawned),
            Family::Bmc => Device::Bmc(spawned),
            _ => Device::Switch(spawned),
        })
    }))
}

/// The factory of a built-in adapter; the proxy in front of the target speaks plain HTTP, so no
/// TLS trust is needed here.
pub fn builtin_factory(kind: BuiltinKind) -> AdapterFactory {
    Arc::new(move |e: &Endpoint, timeout: Duration| {
        let (url, user, pw) = (e.url.as_str(), e.user.as_str(), e.password.as_str());
        Ok(match kind {
            BuiltinKind::Vcenter => {
                Device::Hypervisor(Arc::new(VcenterClient::new(url, user, pw, timeout)?))
            }
            BuiltinKind::Nxapi => {
                Device::Switch(Arc::new(NxapiSwitch::new(url, user, pw, timeout)?))
            }
            BuiltinKind::Eapi => Device::Switch(Arc::new(EapiSwitch::new(url, user, pw, timeout)?)),
            BuiltinKind::Restconf => {
                Device::Switch(Arc::new(RestconfSwitch::new(url, user, pw, timeout)?))
            }
            BuiltinKind::Redfish => Device::Bmc(Arc::new(RedfishClient::new(
                url,
                user,
                pw,
                e.system.as_deref(),
                timeout,
            )?)),
        })
    })
}

/// A target as the suites see it.
pub struct Target {
    /// Base URL of the device.
    pub url: String,
    /// User.
    pub user: String,
    /// Password.
    pub password: String,
    /// CA certificates (PEM) that sign the device's certificate; the web roots when `None`.
    pub ca_pem: Option<Vec<u8>>,
    /// The running simulator, for a sim target.
    pub sim: Option<SimTarget>,
}

impl Target {
    /// A certification proxy in front of this target, recording into `transcript` with the
    /// password redacted; `via` names the target in the transcript.
    pub async fn proxy(
        &self,
        via: &str,
        transcript: &super::proxy::Transcript,
    ) -> Result<super::proxy::CertProxy, String> {
        transcript.add_secret(&self.password);
        super::proxy::CertProxy::start(&self.url, self.ca_pem.as_deref(), via, transcript.clone())
            .await
    }
}

/// A simulated target: its site, world and server.
pub struct SimTarget {
    /// The simulator's protocol.
    pub kind: BuiltinKind,
    /// The generated one-device site.
    pub site: Arc<Site>,
    /// The device model.
    pub world: SimWorld,
    /// Kept alive while the target is in use.
    _server: WireServer,
}

impl SimTarget {
    /// Device truth of every resource, as text (`port -> vlan`, `vm/nic -> portgroup`).
    pub fn truth(&self, product: &Product) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for port in &product.resources.ports {
            if let Some((running, _saved)) = self.world.port_vlans(SIM_DEVICE, port) {
                out.insert(port.clone(), running.to_string());
            }
        }
        for ls in &self.site.lservers {
            for (i, nic) in ls.nics.iter().enumerate() {
                if let crate::model::NicLocation::Virtual { vm, device, .. } = &nic.location {
                    let r = NicRef {
                        lserver: ls.path.clone(),
                        nic: i,
                    };
                    let network = self.world.nic_network(&r).unwrap_or_default();
                    out.insert(format!("{vm}/{device}"), network);
                }
            }
        }
        out
    }
}

/// Starts the family's simulator for `product` (protocol `kind`) with `faults` in its plan.
pub async fn start_sim(
    product: &Product,
    kind: BuiltinKind,
    faults: Vec<FaultSpec>,
) -> Result<Target, CertifyError> {
    let source = sim_topology(product, kind, None);
    let topology = crate::model::load::load_topology_str(Path::new("<certify sim>"), &source)
        .map_err(|e| CertifyError::Setup(format!("the simulator's site: {e}")))?;
    let site = Arc::new(Site::new(topology).map_err(CertifyError::Setup)?);
    let world = SimWorld::new(site.clone(), faults, Recorder::new(), 1);
    let setup = |e: std::io::Error| CertifyError::Setup(format!("cannot start the simulator: {e}"));
    let mut server = match kind {
        BuiltinKind::Vcenter => wire::vcenter::start(world.clone(), SIM_DEVICE).await,
        BuiltinKind::Nxapi => wire::nxapi::start(world.clone(), SIM_DEVICE).await,
        BuiltinKind::Eapi => wire::eapi::start(world.clone(), SIM_DEVICE).await,
        BuiltinKind::Restconf => wire::restconf::start(world.clone(), SIM_DEVICE).await,
        BuiltinKind::Redfish => match &product.resources.system {
            Some(id) => wire::redfish::start_with_system_id(world.clone(), SIM_DEVICE, id).await,
            None => wire::redfish::start(world.clone(), SIM_DEVICE).await,
        },
    }
    .map_err(setup)?;
    let tls = SimTls::generate().map_err(CertifyError::Setup)?;
    server
        .serve_tls(tls.server_config.clone())
        .await
        .map_err(setup)?;
    Ok(Target {
        url: server.url(),
        user: wire::DEFAULT_USER.into(),
        password: wire::DEFAULT_PASSWORD.into(),
        ca_pem: Some(tls.ca_pem.into_bytes()),
        sim: Some(SimTarget {
            kind,
            site,
            world,
            _server: server,
        }),
    })
}

/// The simulated site: one device of `kind` named [`SIM_DEVICE`] carrying every resource, on
/// networks whose VLANs and port groups are the product's.
pub fn sim_topology(product: &Product, kind: BuiltinKind, latency: Option<&str>) -> String {
    let r = &product.resources;
    let (op_vlan, qr_vlan) = r.vlans.map_or((110, 910), |v| (v.operation, v.quarantine));
    let mut t = format!(
        "name = \"certify-sim\"\n\
         [[networks]]\nname = \"op\"\nrole = \"operation\"\nvlan = {op_vlan}\nsubnet = \"10.10.0.0/16\"\n\
         [[networks]]\nname = \"qr\"\nrole = \"quarantine\"\nvlan = {qr_vlan}\nsubnet = \"10.20.0.0/16\"\n\
         [quarantine_map]\n\"op\" = \"qr\"\n\
         [[av_servers]]\nname = \"osce\"\nkind = \"officescan\"\naddress = \"127.0.0.1\"\n\
         [[tenants]]\nname = \"t\"\nemail = \"admin@example.com\"\n"
    );
    let mut max = product.capabilities.max_concurrent.to_string();
    if let Some(latency) = latency {
        max.push_str(&format!("\nlatency = \"{latency}\""));
    }
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    match kind.family() {
        Family::Switch => {
            let batch = if matches!(kind, BuiltinKind::Nxapi | BuiltinKind::Eapi) {
                "max_batch = 32\n"
            } else {
                ""
            };
            t.push_str(&format!(
                "[[switches]]\nname = \"{SIM_DEVICE}\"\nkind = \"{}\"\nmax_concurrent = {max}\npersist = {}\n{batch}",
                kind.as_str(),
                product.capabilities.persist
            ));
            for (i, port) in r.ports.iter().enumerate() {
                let n = i + 10;
                t.push_str(&format!(
                    "[[lservers]]\npath = \"/t/srv-{n}\"\ntenant = \"t\"\nkind = \"physical\"\n\
                     nics = [ {{ network = \"op\", ip = \"10.10.{}.{}\", mac = \"02:00:00:00:{:02x}:{:02x}\", switch = \"{SIM_DEVICE}\", port = {} }} ]\n",
                    n / 250,
                    n % 250 + 1,
                    n / 256,
                    n % 256,
                    q(port)
                ));
            }
        }
        Family::Hypervisor => {
            let (op, qr) = r.portgroups.as_ref().map_or(
                ("dvportgroup-110".to_string(), "dvportgroup-910".to_string()),
                |p| (p.operation.clone(), p.quarantine.clone()),
            );
            t.push_str(&format!(
                "[[hypervisors]]\nname = \"{SIM_DEVICE}\"\nkind = \"vcenter\"\nmax_concurrent = {max}\n\
                 portgroups = {{ \"op\" = {}, \"qr\" = {} }}\n",
                q(&op),
                q(&qr)
            ));
            let mut vms: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for v in &r.vms {
                vms.entry(v.vm.as_str()).or_default().push(v.nic.as_str());
            }
            let mut n = 10;
            for (i, (vm, nics)) in vms.iter().enumerate() {
                let nics: Vec<String> = nics
                    .iter()
                    .map(|nic| {
                        n += 1;
                        format!(
                            "{{ network = \"op\", ip = \"10.10.{}.{}\", mac = \"02:00:00:01:{:02x}:{:02x}\", device = {} }}",
                            n / 250,
                            n % 250 + 1,
                            n / 256,
                            n % 256,
                            q(nic)
                        )
                    })
                    .collect();
                t.push_str(&format!(
                    "[[lservers]]\npath = \"/t/vm-{i}\"\ntenant = \"t\"\nkind = \"virtual\"\nhypervisor = \"{SIM_DEVICE}\"\n\
                     vm = {}\nnics = [ {} ]\n",
                    q(vm),
                    nics.join(", ")
                ));
            }
        }
        Family::Bmc | Family::Av => {
            t.push_str(&format!(
                "[[bmcs]]\nname = \"{SIM_DEVICE}\"\nkind = \"redfish\"\nmax_concurrent = {max}\n"
            ));
        }
    }
    t
}
