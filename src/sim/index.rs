//! Maps device objects back to the site: which L-Server and NIC a vNIC, a switch port, a VM or a
//! BMC belongs to, and which network a port group or VLAN stands for. Histories and fault
//! matchers speak in L-Servers and networks; devices speak in VMs, ports and VLAN ids.

use std::collections::BTreeMap;

use super::faults::CallKind;
use super::plan::Subject;
use crate::model::history::NicRef;
use crate::model::{NicLocation, Site};

/// One device call, as the device sees it. The same value drives the history entry, the fault
/// decision and the state change, so a wire face only has to build it from its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceOp {
    /// Hypervisor: open or renew a session.
    Login,
    /// Hypervisor: read a vNIC's port group.
    GetNic {
        /// VM id.
        vm: String,
        /// vNIC key.
        nic: String,
    },
    /// Hypervisor: set a vNIC's port group.
    SetNic {
        /// VM id.
        vm: String,
        /// vNIC key.
        nic: String,
        /// Port group id.
        portgroup: String,
    },
    /// Hypervisor: reset a VM.
    PowerReset {
        /// VM id.
        vm: String,
    },
    /// Switch: read a port's access VLAN.
    GetPort {
        /// Port name.
        port: String,
    },
    /// Switch: set a port's access VLAN in the running config.
    SetPort {
        /// Port name.
        port: String,
        /// VLAN id.
        vlan: u16,
    },
    /// Switch: copy running config to startup config.
    SaveConfig,
    /// BMC: `ForceRestart`.
    Reset,
}

impl DeviceOp {
    /// The call kind fault rules name.
    pub fn kind(&self) -> CallKind {
        match self {
            DeviceOp::Login => CallKind::Login,
            DeviceOp::GetNic { .. } => CallKind::GetNic,
            DeviceOp::SetNic { .. } => CallKind::SetNic,
            DeviceOp::PowerReset { .. } => CallKind::PowerReset,
            DeviceOp::GetPort { .. } => CallKind::GetPort,
            DeviceOp::SetPort { .. } => CallKind::SetPort,
            DeviceOp::SaveConfig => CallKind::SaveConfig,
            DeviceOp::Reset => CallKind::Reset,
        }
    }
}

/// What a call concerns, resolved against the site.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Target {
    /// The NIC, when the object is one.
    pub nic: Option<NicRef>,
    /// The owning L-Server.
    pub lserver: Option<String>,
    /// Network written (writes only); the raw port group or `vlan N` when it maps to none.
    pub value: Option<String>,
    /// VM id.
    pub vm: Option<String>,
    /// vNIC key.
    pub vnic: Option<String>,
    /// Switch port.
    pub port: Option<String>,
}

impl Target {
    /// The fault-matching view of this target.
    pub fn subject<'a>(&'a self, device: &'a str, call: CallKind) -> Subject<'a> {
        Subject {
            device,
            call: Some(call),
            vm: self.vm.as_deref(),
            nic: self.vnic.as_deref(),
            port: self.port.as_deref(),
            lserver: self.lserver.as_deref(),
        }
    }
}

/// Reverse lookups from device objects to the site.
#[derive(Debug, Clone, Default)]
pub(crate) struct SiteIndex {
    /// (hypervisor, VM, vNIC key) -> NIC.
    vnics: BTreeMap<(String, String, String), NicRef>,
    /// (switch, port) -> NIC.
    ports: BTreeMap<(String, String), NicRef>,
    /// (hypervisor, VM) -> L-Server.
    vms: BTreeMap<(String, String), String>,
    /// BMC -> L-Server.
    bmcs: BTreeMap<String, String>,
}

impl SiteIndex {
    /// Indexes every NIC, VM and BMC of `site`.
    pub fn new(site: &Site) -> SiteIndex {
        let mut index = SiteIndex::default();
        for ls in &site.lservers {
            if let Some((hypervisor, vm)) = &ls.vm {
                index
                    .vms
                    .insert((hypervisor.clone(), vm.clone()), ls.path.clone());
            }
            if let Some(bmc) = &ls.bmc {
                index.bmcs.insert(bmc.clone(), ls.path.clone());
            }
            for nic in &ls.nics {
                let nic_ref = NicRef {
                    lserver: ls.path.clone(),
                    nic: nic.index,
                };
                match &nic.location {
                    NicLocation::Virtual {
                        hypervisor,
                        vm,
                        device,
                    } => {
                        index
                            .vnics
                            .insert((hypervisor.clone(), vm.clone(), device.clone()), nic_ref);
                    }
                    NicLocation::Physical { switch, port } => {
                        index.ports.insert((switch.clone(), port.clone()), nic_ref);
                    }
                }
            }
        }
        index
    }

    /// The NIC on `port` of `switch`.
    pub fn port_nic(&self, switch: &str, port: &str) -> Option<&NicRef> {
        self.ports.get(&(switch.to_string(), port.to_string()))
    }

    /// Resolves what `op` on `device` concerns.
    pub fn target(&self, site: &Site, device: &str, op: &DeviceOp) -> Target {
        let vnic = |vm: &str, nic: &str| {
            let nic_ref = self
                .vnics
                .get(&(device.to_string(), vm.to_string(), nic.to_string()))
                .cloned();
            let lserver = nic_ref
                .as_ref()
                .map(|n| n.lserver.clone())
                .or_else(|| self.vms.get(&(device.to_string(), vm.to_string())).cloned());
            Target {
                lserver,
                nic: nic_ref,
                vm: Some(vm.to_string()),
                vnic: Some(nic.to_string()),
                ..Target::default()
            }
        };
        let port = |port: &str| {
            let nic_ref = self.port_nic(device, port).cloned();
            Target {
                lserver: nic_ref.as_ref().map(|n| n.lserver.clone()),
                nic: nic_ref,
                port: Some(port.to_string()),
                ..Target::default()
            }
        };
        match op {
            DeviceOp::Login | DeviceOp::SaveConfig => Target::default(),
            DeviceOp::GetNic { vm, nic } => vnic(vm, nic),
            DeviceOp::SetNic { vm, nic, portgroup } => Target {
                value: Some(portgroup_name(site, device, portgroup)),
                ..vnic(vm, nic)
            },
            DeviceOp::PowerReset { vm } => Target {
                lserver: self.vms.get(&(device.to_string(), vm.clone())).cloned(),
                vm: Some(vm.clone()),
                ..Target::default()
            },
            DeviceOp::GetPort { port: p } => port(p),
            DeviceOp::SetPort { port: p, vlan } => Target {
                value: Some(vlan_name(site, *vlan)),
                ..port(p)
            },
            DeviceOp::Reset => Target {
                lserver: self.bmcs.get(device).cloned(),
                ..Target::default()
            },
        }
    }
}

/// The network behind port group `portgroup` of `hypervisor`.
pub(crate) fn portgroup_network(site: &Site, hypervisor: &str, portgroup: &str) -> Option<String> {
    site.network_by_portgroup(hypervisor, portgroup)
        .map(|n| n.name.clone())
}

/// The network behind `vlan`.
pub(crate) fn vlan_network(site: &Site, vlan: u16) -> Option<String> {
    site.network_by_vlan(vlan).map(|n| n.name.clone())
}

/// The network name of a port group, or the raw id when it maps to none (histories show what
/// was written either way).
pub(crate) fn portgroup_name(site: &Site, hypervisor: &str, portgroup: &str) -> String {
    portgroup_network(site, hypervisor, portgroup).unwrap_or_else(|| portgroup.to_string())
}

/// The network name of a VLAN, or `vlan N` when it maps to none.
pub(crate) fn vlan_name(site: &Site, vlan: u16) -> String {
    vlan_network(site, vlan).unwrap_or_else(|| format!("vlan {vlan}"))
}
