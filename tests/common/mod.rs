//! Test support: fake devices with scripted outcomes behind the adapter traits, a small site,
//! and a harness that opens, crashes and reopens an engine on one journal file.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use quarantine_lab::adapters::*;
use quarantine_lab::engine::*;
use quarantine_lab::model::*;

/// What a scripted call does instead of the normal behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Behaves normally (a placeholder that keeps a scripted sequence in order).
    Pass,
    Reject,
    Unavailable,
    Busy,
    Auth,
    /// No reply, not applied.
    Timeout,
    /// Applied, reply lost.
    ApplyThenTimeout,
    /// Applied, error reply.
    ApplyThenError,
    /// Ok reply, nothing changed.
    AcceptWithoutApply,
    /// Reads return the previous value.
    StaleRead,
    /// Never returns (a crash test drops the engine meanwhile).
    Hang,
}

#[derive(Debug, Clone)]
struct Script {
    device: String,
    call: &'static str,
    /// Only calls on this `vm/nic` or port, when set.
    object: Option<String>,
    effect: Effect,
    times: Option<u32>,
}

/// One call the engine made, as the device saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub device: String,
    pub call: &'static str,
    /// `vm/nic` or port.
    pub object: String,
    /// Value written.
    pub value: Option<String>,
}

#[derive(Default)]
struct Devices {
    vnics: HashMap<(String, String, String), String>,
    previous_vnics: HashMap<(String, String, String), String>,
    ports: HashMap<(String, String), u16>,
    previous_ports: HashMap<(String, String), u16>,
    saves: HashMap<String, u32>,
    resets: Vec<String>,
    calls: Vec<Call>,
    scripts: Vec<Script>,
    emails: Vec<Email>,
    syslog: Vec<String>,
    latency: HashMap<String, Duration>,
    in_flight: HashMap<String, u32>,
    max_in_flight: HashMap<String, u32>,
}

/// Device truth for a whole site, shared by every fake adapter.
#[derive(Clone, Default)]
pub struct Fakes {
    inner: Arc<Mutex<Devices>>,
}

impl Fakes {
    /// Every NIC starts on its operation network.
    pub fn from_site(site: &Site) -> Fakes {
        let fakes = Fakes::default();
        {
            let mut d = fakes.inner.lock().unwrap();
            for ls in &site.lservers {
                for nic in &ls.nics {
                    match &nic.location {
                        NicLocation::Virtual {
                            hypervisor,
                            vm,
                            device,
                        } => {
                            let pg = site
                                .portgroup(hypervisor, &nic.network)
                                .unwrap()
                                .to_string();
                            d.vnics
                                .insert((hypervisor.clone(), vm.clone(), device.clone()), pg);
                        }
                        NicLocation::Physical { switch, port } => {
                            let vlan = site.network(&nic.network).unwrap().vlan;
                            d.ports.insert((switch.clone(), port.clone()), vlan);
                        }
                    }
                }
            }
        }
        fakes
    }

    /// Scripts `effect` for the next `times` calls (`None`: every call) of `call` on `device`.
    pub fn script(&self, device: &str, call: &'static str, effect: Effect, times: Option<u32>) {
        self.inner.lock().unwrap().scripts.push(Script {
            device: device.into(),
            call,
            object: None,
            effect,
            times,
        });
    }

    /// Like [`Fakes::script`], for calls on one `vm/nic` or port only.
    pub fn script_object(
        &self,
        device: &str,
        call: &'static str,
        object: &str,
        effect: Effect,
        times: Option<u32>,
    ) {
        let object = Some(object.to_string());
        self.inner.lock().unwrap().scripts.push(Script {
            device: device.into(),
            call,
            object,
            effect,
            times,
        });
    }

    /// Makes every call to `device` take `latency`.
    pub fn set_latency(&self, device: &str, latency: Duration) {
        self.inner
            .lock()
            .unwrap()
            .latency
            .insert(device.into(), latency);
    }

    /// Most calls that were in flight at once on `device`.
    pub fn max_in_flight(&self, device: &str) -> u32 {
        self.inner
            .lock()
            .unwrap()
            .max_in_flight
            .get(device)
            .copied()
            .unwrap_or(0)
    }

    /// Removes every script (a fault heals).
    pub fn heal(&self) {
        self.inner.lock().unwrap().scripts.clear();
    }

    fn take_effect(&self, device: &str, call: &'static str, object: &str) -> Option<Effect> {
        let mut d = self.inner.lock().unwrap();
        let script = d.scripts.iter_mut().find(|s| {
            s.device == device
                && s.call == call
                && s.times != Some(0)
                && s.object.as_deref().is_none_or(|o| o == object)
        })?;
        if let Some(t) = script.times.as_mut() {
            *t -= 1;
        }
        Some(script.effect)
    }

    /// Adapters for every device of `site`.
    pub fn adapters(&self, site: &Site) -> Adapters {
        let mut a = Adapters::default();
        for h in &site.topology.hypervisors {
            a.hypervisors.insert(
                h.name.clone(),
                Arc::new(FakeDevice {
                    name: h.name.clone(),
                    fakes: self.clone(),
                }) as Arc<dyn Hypervisor>,
            );
        }
        for s in &site.topology.switches {
            a.switches.insert(
                s.name.clone(),
                Arc::new(FakeDevice {
                    name: s.name.clone(),
                    fakes: self.clone(),
                }) as Arc<dyn Switch>,
            );
        }
        for b in &site.topology.bmcs {
            a.bmcs.insert(
                b.name.clone(),
                Arc::new(FakeDevice {
                    name: b.name.clone(),
                    fakes: self.clone(),
                }) as Arc<dyn Bmc>,
            );
        }
        a.mailer = Some(Arc::new(FakeDevice {
            name: "smtp".into(),
            fakes: self.clone(),
        }));
        a.syslog = Some(Arc::new(FakeDevice {
            name: "syslog".into(),
            fakes: self.clone(),
        }));
        a
    }

    /// Device truth of every NIC of `path`, as network names.
    pub fn networks(&self, site: &Site, path: &str) -> Vec<String> {
        let d = self.inner.lock().unwrap();
        site.lserver(path)
            .unwrap()
            .nics
            .iter()
            .map(|nic| match &nic.location {
                NicLocation::Virtual {
                    hypervisor,
                    vm,
                    device,
                } => {
                    let pg = &d.vnics[&(hypervisor.clone(), vm.clone(), device.clone())];
                    site.network_by_portgroup(hypervisor, pg)
                        .unwrap()
                        .name
                        .clone()
                }
                NicLocation::Physical { switch, port } => site
                    .network_by_vlan(d.ports[&(switch.clone(), port.clone())])
                    .unwrap()
                    .name
                    .clone(),
            })
            .collect()
    }

    /// Moves a NIC by hand, as an operator would at the device.
    pub fn set_network(&self, site: &Site, path: &str, nic: usize, network: &str) {
        let mut d = self.inner.lock().unwrap();
        match &site.lserver(path).unwrap().nics[nic].location {
            NicLocation::Virtual {
                hypervisor,
                vm,
                device,
            } => {
                let pg = site.portgroup(hypervisor, network).unwrap().to_string();
                d.vnics
                    .insert((hypervisor.clone(), vm.clone(), device.clone()), pg);
            }
            NicLocation::Physical { switch, port } => {
                let vlan = site.network(network).unwrap().vlan;
                d.ports.insert((switch.clone(), port.clone()), vlan);
            }
        }
    }

    /// Every call made, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// Write calls (`set_nic`, `set_port`) that touched an object of `path`.
    pub fn writes_for(&self, site: &Site, path: &str) -> Vec<Call> {
        let objects = objects_of(site, path);
        self.calls()
            .into_iter()
            .filter(|c| {
                matches!(c.call, "set_nic" | "set_port")
                    && objects.contains(&(c.device.clone(), c.object.clone()))
            })
            .collect()
    }

    /// Resets sent (`device/object`).
    pub fn resets(&self) -> Vec<String> {
        self.inner.lock().unwrap().resets.clone()
    }

    /// Config saves per switch.
    pub fn saves(&self, switch: &str) -> u32 {
        self.inner
            .lock()
            .unwrap()
            .saves
            .get(switch)
            .copied()
            .unwrap_or(0)
    }

    /// Emails sent.
    pub fn emails(&self) -> Vec<Email> {
        self.inner.lock().unwrap().emails.clone()
    }

    /// Syslog lines sent.
    pub fn syslog(&self) -> Vec<String> {
        self.inner.lock().unwrap().syslog.clone()
    }

    fn record(&self, device: &str, call: &'static str, object: String, value: Option<String>) {
        self.inner.lock().unwrap().calls.push(Call {
            device: device.into(),
            call,
            object,
            value,
        });
    }

    /// Waits the device's latency while counting the call as in flight.
    async fn latency(&self, device: &str) {
        let latency = {
            let mut d = self.inner.lock().unwrap();
            let n = {
                let n = d.in_flight.entry(device.into()).or_default();
                *n += 1;
                *n
            };
            let max = d.max_in_flight.entry(device.into()).or_default();
            *max = (*max).max(n);
            d.latency.get(device).copied().unwrap_or_default()
        };
        tokio::time::sleep(latency).await;
        *self
            .inner
            .lock()
            .unwrap()
            .in_flight
            .get_mut(device)
            .unwrap() -= 1;
    }
}

/// `(device, object)` pairs of an L-Server's NICs.
pub fn objects_of(site: &Site, path: &str) -> Vec<(String, String)> {
    site.lserver(path)
        .unwrap()
        .nics
        .iter()
        .map(|nic| match &nic.location {
            NicLocation::Virtual {
                hypervisor,
                vm,
                device,
            } => (hypervisor.clone(), format!("{vm}/{device}")),
            NicLocation::Physical { switch, port } => (switch.clone(), port.clone()),
        })
        .collect()
}

struct FakeDevice {
    name: String,
    fakes: Fakes,
}

const FOREVER: Duration = Duration::from_secs(24 * 3600);

impl FakeDevice {
    /// Runs the scripted effect of a write; `apply` changes the device truth.
    async fn write(
        &self,
        call: &'static str,
        object: &str,
        apply: impl FnOnce(&mut Devices),
    ) -> DeviceResult<()> {
        let effect = self.fakes.take_effect(&self.name, call, object);
        let err = |class, text: &str| Err(DeviceError::new(class, text));
        match effect {
            None | Some(Effect::Pass) => {
                apply(&mut self.fakes.inner.lock().unwrap());
                Ok(())
            }
            Some(Effect::Reject) => err(OutcomeClass::Rejected, "INVALID_ARGUMENT"),
            Some(Effect::Unavailable) => err(OutcomeClass::Unavailable, "SERVICE_UNAVAILABLE"),
            Some(Effect::Busy) => err(OutcomeClass::Busy, "RESOURCE_BUSY"),
            Some(Effect::Auth) => err(OutcomeClass::Auth, "UNAUTHENTICATED"),
            Some(Effect::Timeout) | Some(Effect::Hang) => {
                tokio::time::sleep(FOREVER).await;
                err(OutcomeClass::Unknown, "never")
            }
            Some(Effect::ApplyThenTimeout) => {
                apply(&mut self.fakes.inner.lock().unwrap());
                tokio::time::sleep(FOREVER).await;
                err(OutcomeClass::Unknown, "never")
            }
            Some(Effect::ApplyThenError) => {
                apply(&mut self.fakes.inner.lock().unwrap());
                err(
                    OutcomeClass::Unknown,
                    "connection reset after the request was sent",
                )
            }
            Some(Effect::AcceptWithoutApply) | Some(Effect::StaleRead) => Ok(()),
        }
    }

    fn read_effect(&self, call: &'static str, object: &str) -> Result<bool, DeviceError> {
        match self.fakes.take_effect(&self.name, call, object) {
            None | Some(Effect::Pass) => Ok(false),
            Some(Effect::StaleRead) => Ok(true),
            Some(Effect::Reject) => Err(DeviceError::new(OutcomeClass::Rejected, "read refused")),
            Some(Effect::Auth) => Err(DeviceError::new(OutcomeClass::Auth, "UNAUTHENTICATED")),
            Some(_) => Err(DeviceError::new(
                OutcomeClass::Unavailable,
                "read unavailable",
            )),
        }
    }
}

#[async_trait]
impl Hypervisor for FakeDevice {
    async fn login(&self) -> DeviceResult<()> {
        self.fakes.record(&self.name, "login", String::new(), None);
        Ok(())
    }

    async fn get_nic(&self, vm: &str, nic: &str) -> DeviceResult<String> {
        self.fakes
            .record(&self.name, "get_nic", format!("{vm}/{nic}"), None);
        self.fakes.latency(&self.name).await;
        let stale = self.read_effect("get_nic", &format!("{vm}/{nic}"))?;
        let key = (self.name.clone(), vm.to_string(), nic.to_string());
        let d = self.fakes.inner.lock().unwrap();
        let value = if stale {
            d.previous_vnics.get(&key).or(d.vnics.get(&key))
        } else {
            d.vnics.get(&key)
        };
        value
            .cloned()
            .ok_or_else(|| DeviceError::new(OutcomeClass::Rejected, "NOT_FOUND"))
    }

    async fn set_nic(&self, vm: &str, nic: &str, portgroup: &str) -> DeviceResult<()> {
        self.fakes.record(
            &self.name,
            "set_nic",
            format!("{vm}/{nic}"),
            Some(portgroup.into()),
        );
        self.fakes.latency(&self.name).await;
        let key = (self.name.clone(), vm.to_string(), nic.to_string());
        let pg = portgroup.to_string();
        self.write("set_nic", &format!("{vm}/{nic}"), move |d| {
            if let Some(old) = d.vnics.insert(key.clone(), pg) {
                d.previous_vnics.insert(key, old);
            }
        })
        .await
    }

    async fn power_reset(&self, vm: &str) -> DeviceResult<()> {
        self.fakes
            .record(&self.name, "power_reset", vm.into(), None);
        self.fakes.latency(&self.name).await;
        let name = format!("{}/{vm}", self.name);
        self.write("power_reset", vm, move |d| d.resets.push(name))
            .await
    }
}

#[async_trait]
impl Switch for FakeDevice {
    async fn get_port(&self, port: &str) -> DeviceResult<u16> {
        self.fakes.record(&self.name, "get_port", port.into(), None);
        self.fakes.latency(&self.name).await;
        let stale = self.read_effect("get_port", port)?;
        let key = (self.name.clone(), port.to_string());
        let d = self.fakes.inner.lock().unwrap();
        let value = if stale {
            d.previous_ports.get(&key).or(d.ports.get(&key))
        } else {
            d.ports.get(&key)
        };
        value
            .copied()
            .ok_or_else(|| DeviceError::new(OutcomeClass::Rejected, "no such port"))
    }

    async fn set_port(&self, port: &str, vlan: u16) -> DeviceResult<()> {
        self.fakes
            .record(&self.name, "set_port", port.into(), Some(vlan.to_string()));
        self.fakes.latency(&self.name).await;
        let key = (self.name.clone(), port.to_string());
        self.write("set_port", port, move |d| {
            if let Some(old) = d.ports.insert(key.clone(), vlan) {
                d.previous_ports.insert(key, old);
            }
        })
        .await
    }

    async fn save_config(&self) -> DeviceResult<()> {
        self.fakes
            .record(&self.name, "save_config", String::new(), None);
        self.fakes.latency(&self.name).await;
        let name = self.name.clone();
        self.write("save_config", "", move |d| {
            *d.saves.entry(name).or_default() += 1
        })
        .await
    }
}

#[async_trait]
impl Bmc for FakeDevice {
    async fn reset(&self) -> DeviceResult<()> {
        self.fakes.record(&self.name, "reset", String::new(), None);
        self.fakes.latency(&self.name).await;
        let name = self.name.clone();
        self.write("reset", "", move |d| d.resets.push(name)).await
    }
}

#[async_trait]
impl Mailer for FakeDevice {
    async fn send(&self, email: &Email) -> DeviceResult<()> {
        self.fakes.inner.lock().unwrap().emails.push(email.clone());
        Ok(())
    }
}

#[async_trait]
impl SyslogOut for FakeDevice {
    async fn send(&self, line: &str) -> DeviceResult<()> {
        self.fakes
            .inner
            .lock()
            .unwrap()
            .syslog
            .push(line.to_string());
        Ok(())
    }
}

/// A small site: two tenants, virtual and physical L-Servers, one with two NICs.
pub const SITE: &str = r#"
name = "test-site"

[[networks]]
name = "op-a"
role = "operation"
vlan = 110
subnet = "10.110.0.0/24"

[[networks]]
name = "op-b"
role = "operation"
vlan = 120
subnet = "10.120.0.0/24"

[[networks]]
name = "op-x"
role = "operation"
vlan = 130
subnet = "10.130.0.0/24"

[[networks]]
name = "qr-a"
role = "quarantine"
vlan = 910
subnet = "10.210.0.0/24"

[[networks]]
name = "qr-b"
role = "quarantine"
vlan = 920
subnet = "10.220.0.0/24"

[quarantine_map]
"op-a" = "qr-a"
"op-b" = "qr-b"

[[av_servers]]
name = "osce"
kind = "officescan"
address = "127.0.0.1"

[[hypervisors]]
name = "vc-1"
kind = "vcenter"
max_concurrent = 8
portgroups = { "op-a" = "dvportgroup-110", "op-b" = "dvportgroup-120", "op-x" = "dvportgroup-130", "qr-a" = "dvportgroup-910", "qr-b" = "dvportgroup-920" }

[[switches]]
name = "sw-1"
kind = "nxapi"
max_concurrent = 1
persist = true

[[bmcs]]
name = "irmc-1"
kind = "redfish"

[[tenants]]
name = "tenant-a"
email = "admin-a@example.com"

[[tenants]]
name = "tenant-b"

[[lservers]]
path = "/tenant-a/vdi-001"
tenant = "tenant-a"
kind = "virtual"
hypervisor = "vc-1"
vm = "vm-1001"
hostname = "VDI-001"
nics = [ { network = "op-a", ip = "10.110.0.11", mac = "00:50:56:00:00:11", device = "4000" } ]

[[lservers]]
path = "/tenant-a/vdi-002"
tenant = "tenant-a"
kind = "virtual"
hypervisor = "vc-1"
vm = "vm-1002"
hostname = "VDI-002"
nics = [
  { network = "op-a", ip = "10.110.0.12", mac = "00:50:56:00:00:12", device = "4000" },
  { network = "op-b", ip = "10.120.0.12", mac = "00:50:56:00:01:12", device = "4001" },
]

[[lservers]]
path = "/tenant-b/vdi-003"
tenant = "tenant-b"
kind = "virtual"
hypervisor = "vc-1"
vm = "vm-1003"
hostname = "VDI-003"
nics = [ { network = "op-a", ip = "10.110.0.13", mac = "00:50:56:00:00:13", device = "4000" } ]

[[lservers]]
path = "/tenant-b/unmapped"
tenant = "tenant-b"
kind = "virtual"
hypervisor = "vc-1"
vm = "vm-1009"
nics = [ { network = "op-x", ip = "10.130.0.9", mac = "00:50:56:00:00:99", device = "4000" } ]

[[lservers]]
path = "/tenant-a/sbc-01"
tenant = "tenant-a"
kind = "physical"
bmc = "irmc-1"
hostname = "SBC-01"
nics = [ { network = "op-a", ip = "10.110.0.50", mac = "00:19:99:00:00:50", switch = "sw-1", port = "Ethernet1/5" } ]

[policy]
default_action = "quarantine"
excluded_threat_keywords = ["EICAR"]

[policy.actions]
"/tenant-b/vdi-003" = "reboot"

[engine]
call_timeout = "2s"
operation_deadline = "30s"
retry = { attempts = 3, backoff = "100ms" }
"#;

/// Parses a topology text (with `edit` applied to it first).
pub fn site_with(edit: impl FnOnce(&str) -> String) -> Arc<Site> {
    let text = edit(SITE);
    let topology = load_topology_str(std::path::Path::new("test-site.toml"), &text).unwrap();
    Arc::new(Site::new(topology).unwrap())
}

/// An engine over fakes on a journal file that survives reopening.
pub struct Harness {
    pub site: Arc<Site>,
    pub fakes: Fakes,
    pub engine: Option<Engine>,
    pub journal_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub fn new(site: Arc<Site>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let journal_path = dir.path().join("journal.sqlite");
        let fakes = Fakes::from_site(&site);
        let mut h = Harness {
            site,
            fakes,
            engine: None,
            journal_path,
            _dir: dir,
        };
        h.reopen(None);
        h
    }

    pub fn standard() -> Harness {
        Harness::new(site_with(|s| s.to_string()))
    }

    /// Drops the engine (aborting its tasks, like a crash) and opens a new one on the same
    /// journal, with an optional commit limit.
    pub fn reopen(&mut self, commit_limit: Option<u64>) {
        self.engine = None;
        let mut journal = Journal::open(&self.journal_path).unwrap();
        journal.set_commit_limit(commit_limit);
        let engine = Engine::open(
            self.site.clone(),
            journal,
            self.fakes.adapters(&self.site),
            EngineOptions::default(),
        )
        .unwrap();
        self.engine = Some(engine);
    }

    pub fn engine(&self) -> &Engine {
        self.engine.as_ref().unwrap()
    }

    pub async fn detect(&self, ip: &str, event_id: &str) -> DetectionReceipt {
        self.engine()
            .submit_detection(detection(ip, event_id))
            .await
            .unwrap()
    }

    pub async fn settle(&self) {
        self.engine().wait_idle().await;
        // Let background alert deliveries finish.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    pub fn view(&self, path: &str) -> LServerView {
        self.engine().lserver(path).unwrap()
    }

    pub fn managed(&self, path: &str) -> Vec<String> {
        self.view(path)
            .nics
            .iter()
            .map(|n| n.network.clone())
            .collect()
    }

    pub fn device(&self, path: &str) -> Vec<String> {
        self.fakes.networks(&self.site, path)
    }

    pub fn alerts(&self) -> Vec<Alert> {
        self.engine().alerts_since(0, 10_000).unwrap()
    }

    pub fn alert_codes(&self, path: &str) -> Vec<&'static str> {
        self.alerts()
            .iter()
            .filter(|a| a.lserver.as_deref() == Some(path))
            .map(|a| a.code.as_str())
            .collect()
    }
}

/// A virus detection from `osce` for `ip`.
pub fn detection(ip: &str, event_id: &str) -> Detection {
    Detection {
        source: "osce".into(),
        event_id: event_id.into(),
        ip: Some(ip.parse().unwrap()),
        mac: None,
        hostname: None,
        threat: "TROJ_GENERIC.A".into(),
        category: Category::Virus,
    }
}
