//! A validated topology with the lookups the engine needs: L-Servers by path, IP, MAC and host
//! name; networks by name and VLAN; port groups per hypervisor.

use std::net::IpAddr;

use super::detection::normalize_mac;
use super::topology::*;

/// The site's indexes hash with FxHash: their keys come from the topology alone, never from
/// a detection (a lookup with a crafted key cannot lengthen a chain), and SipHash's cost
/// showed in profiles of large outbreaks, where every step looks an L-Server up by path.
type HashMap<K, V> = rustc_hash::FxHashMap<K, V>;

/// Where a NIC lives and therefore which device moves it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NicLocation {
    /// A vNIC: the hypervisor manager changes its port-group backing.
    Virtual {
        /// Hypervisor manager name.
        hypervisor: String,
        /// VM id.
        vm: String,
        /// vNIC key, e.g. `4000`.
        device: String,
    },
    /// A physical NIC: the adjacent switch port's access VLAN changes.
    Physical {
        /// Switch name.
        switch: String,
        /// Port name.
        port: String,
    },
}

impl NicLocation {
    /// Name of the device that moves this NIC.
    pub fn device_name(&self) -> &str {
        match self {
            NicLocation::Virtual { hypervisor, .. } => hypervisor,
            NicLocation::Physical { switch, .. } => switch,
        }
    }
}

/// One NIC of an L-Server as the topology defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// Position in the L-Server's NIC list.
    pub index: usize,
    /// Operation network (the topology's `network`).
    pub network: String,
    /// Operation IP address.
    pub ip: IpAddr,
    /// Normalized MAC address.
    pub mac: String,
    /// Device and port or vNIC.
    pub location: NicLocation,
}

/// One L-Server, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LServer {
    /// Folder path, e.g. `/tenant-a/vdi-001`.
    pub path: String,
    /// Owning tenant.
    pub tenant: Option<String>,
    /// Virtual or physical.
    pub kind: LServerKind,
    /// Hypervisor and VM (virtual only).
    pub vm: Option<(String, String)>,
    /// Management controller (physical only).
    pub bmc: Option<String>,
    /// Host name.
    pub hostname: Option<String>,
    /// NICs in order.
    pub nics: Vec<Nic>,
}

/// A validated site. Build it with [`Site::new`] from a topology that passed validation.
#[derive(Debug, Clone)]
pub struct Site {
    /// The topology, with `[generate]` already expanded.
    pub topology: Topology,
    /// L-Servers in topology order.
    pub lservers: Vec<LServer>,
    by_path: HashMap<String, usize>,
    by_ip: HashMap<IpAddr, usize>,
    by_mac: HashMap<String, usize>,
    by_hostname: HashMap<String, usize>,
    network_index: HashMap<String, usize>,
    network_by_vlan: HashMap<u16, usize>,
    /// (hypervisor, port group id) -> network name.
    network_by_portgroup: HashMap<(String, String), String>,
}

impl Site {
    /// Indexes a topology. The topology must have passed `validate`; references that do not
    /// resolve here are reported as an error string rather than a panic.
    pub fn new(topology: Topology) -> Result<Site, String> {
        let mut lservers = Vec::with_capacity(topology.lservers.len());
        for spec in &topology.lservers {
            let mut nics = Vec::with_capacity(spec.nics.len());
            for (index, n) in spec.nics.iter().enumerate() {
                let location =
                    match spec.kind {
                        LServerKind::Virtual => NicLocation::Virtual {
                            hypervisor: spec.hypervisor.clone().ok_or_else(|| {
                                format!("{}: virtual without hypervisor", spec.path)
                            })?,
                            vm: spec
                                .vm
                                .clone()
                                .ok_or_else(|| format!("{}: virtual without vm", spec.path))?,
                            device: n
                                .device
                                .clone()
                                .unwrap_or_else(|| (4000 + index).to_string()),
                        },
                        LServerKind::Physical => NicLocation::Physical {
                            switch: n.switch.clone().ok_or_else(|| {
                                format!("{}: nic {index} without switch", spec.path)
                            })?,
                            port: n.port.clone().ok_or_else(|| {
                                format!("{}: nic {index} without port", spec.path)
                            })?,
                        },
                    };
                nics.push(Nic {
                    index,
                    network: n.network.clone(),
                    ip: n.ip,
                    mac: normalize_mac(&n.mac).unwrap_or_else(|| n.mac.to_ascii_lowercase()),
                    location,
                });
            }
            lservers.push(LServer {
                path: spec.path.clone(),
                tenant: spec.tenant.clone(),
                kind: spec.kind,
                vm: spec.hypervisor.clone().zip(spec.vm.clone()),
                bmc: spec.bmc.clone(),
                hostname: spec.hostname.clone(),
                nics,
            });
        }
        let mut site = Site {
            by_path: HashMap::default(),
            by_ip: HashMap::default(),
            by_mac: HashMap::default(),
            by_hostname: HashMap::default(),
            network_index: HashMap::default(),
            network_by_vlan: HashMap::default(),
            network_by_portgroup: HashMap::default(),
            lservers,
            topology,
        };
        for (i, net) in site.topology.networks.iter().enumerate() {
            site.network_index.insert(net.name.clone(), i);
            site.network_by_vlan.insert(net.vlan, i);
        }
        for h in &site.topology.hypervisors {
            for (net, pg) in &h.portgroups {
                site.network_by_portgroup
                    .insert((h.name.clone(), pg.clone()), net.clone());
            }
        }
        for (i, ls) in site.lservers.iter().enumerate() {
            site.by_path.insert(ls.path.clone(), i);
            if let Some(h) = &ls.hostname {
                site.by_hostname.insert(h.to_ascii_lowercase(), i);
            }
            for nic in &ls.nics {
                site.by_ip.insert(nic.ip, i);
                site.by_mac.insert(nic.mac.clone(), i);
            }
        }
        Ok(site)
    }

    /// The L-Server at `path`.
    pub fn lserver(&self, path: &str) -> Option<&LServer> {
        self.by_path.get(path).map(|&i| &self.lservers[i])
    }

    /// The L-Server owning the operation IP `ip`.
    pub fn lserver_by_ip(&self, ip: IpAddr) -> Option<&LServer> {
        self.by_ip.get(&ip).map(|&i| &self.lservers[i])
    }

    /// The L-Server owning MAC `mac` (any accepted MAC spelling).
    pub fn lserver_by_mac(&self, mac: &str) -> Option<&LServer> {
        let mac = normalize_mac(mac)?;
        self.by_mac.get(&mac).map(|&i| &self.lservers[i])
    }

    /// The L-Server with host name `name` (case-insensitive).
    pub fn lserver_by_hostname(&self, name: &str) -> Option<&LServer> {
        self.by_hostname
            .get(&name.to_ascii_lowercase())
            .map(|&i| &self.lservers[i])
    }

    /// The network called `name`.
    pub fn network(&self, name: &str) -> Option<&Network> {
        self.network_index
            .get(name)
            .map(|&i| &self.topology.networks[i])
    }

    /// The network carried on VLAN `vlan`.
    pub fn network_by_vlan(&self, vlan: u16) -> Option<&Network> {
        self.network_by_vlan
            .get(&vlan)
            .map(|&i| &self.topology.networks[i])
    }

    /// The quarantine network an operation network maps to (R6).
    pub fn quarantine_network_for(&self, operation_network: &str) -> Option<&Network> {
        let target = self.topology.quarantine_map.get(operation_network)?;
        self.network(target)
    }

    /// The port group id of `network` on hypervisor `hypervisor`.
    pub fn portgroup(&self, hypervisor: &str, network: &str) -> Option<&str> {
        self.topology
            .hypervisors
            .iter()
            .find(|h| h.name == hypervisor)?
            .portgroups
            .get(network)
            .map(String::as_str)
    }

    /// The network behind port group `portgroup` on hypervisor `hypervisor`.
    pub fn network_by_portgroup(&self, hypervisor: &str, portgroup: &str) -> Option<&Network> {
        let name = self
            .network_by_portgroup
            .get(&(hypervisor.to_string(), portgroup.to_string()))?;
        self.network(name)
    }

    /// The email address of a tenant, when it has one.
    pub fn tenant_email(&self, tenant: &str) -> Option<&str> {
        self.topology
            .tenants
            .iter()
            .find(|t| t.name == tenant)?
            .email
            .as_deref()
    }

    /// `max_concurrent` of the named hypervisor, switch or BMC.
    pub fn device_concurrency(&self, device: &str) -> Option<u32> {
        let t = &self.topology;
        t.hypervisors
            .iter()
            .find(|h| h.name == device)
            .map(|h| h.max_concurrent)
            .or_else(|| {
                t.switches
                    .iter()
                    .find(|s| s.name == device)
                    .map(|s| s.max_concurrent)
            })
            .or_else(|| {
                t.bmcs
                    .iter()
                    .find(|b| b.name == device)
                    .map(|b| b.max_concurrent)
            })
    }

    /// The switch called `name`.
    pub fn switch(&self, name: &str) -> Option<&SwitchSpec> {
        self.topology.switches.iter().find(|s| s.name == name)
    }
}
