//! Checks of `[[lservers]]`: paths, references, virtual versus physical settings and the
//! uniqueness of IPs, MACs, host names, switch ports and vNICs across all L-Servers.

use std::collections::HashMap;
use std::net::IpAddr;

use super::{host_address_problem, undefined, Checker};
use crate::model::detection::normalize_mac;
use crate::model::load::KeySeg;
use crate::model::topology::{LServerKind, LServerSpec, NetworkRole};

impl<'t> Checker<'t> {
    pub(super) fn lservers(&mut self) {
        let t = self.t;
        let mut seen = Seen::default();
        for (i, ls) in t.lservers.iter().enumerate() {
            let here = |rest: Vec<KeySeg>| [at!("lservers", i), rest].concat();
            if let Some(msg) = lserver_path_problem(&ls.path) {
                self.bad(here(at!("path")), msg);
            } else if let Some(j) = seen.paths.insert(&ls.path, i) {
                seen.paths.insert(&ls.path, j);
                self.bad(
                    here(at!("path")),
                    format!("path `{}` is already used by lservers[{j}]", ls.path),
                );
            }
            if let Some(tenant) = &ls.tenant {
                let names = t.tenants.iter().map(|x| &x.name);
                self.defined(here(at!("tenant")), "tenant", tenant, "tenants", names);
            }
            if let Some(hostname) = &ls.hostname {
                let folded = hostname.to_lowercase();
                if hostname.trim().is_empty() {
                    self.bad(
                        here(at!("hostname")),
                        "the hostname is empty; set it or remove it".into(),
                    );
                } else if let Some(&j) = seen.hostnames.get(&folded) {
                    let msg = format!(
                        "hostname `{hostname}` is already used by lservers[{j}] (`{}`); \
                         hostnames are compared without case",
                        t.lservers[j].path
                    );
                    self.bad(here(at!("hostname")), msg);
                } else {
                    seen.hostnames.insert(folded, i);
                }
            }
            if ls.nics.is_empty() {
                self.bad(
                    here(at!("nics")),
                    "the L-Server has no NICs; add at least one".into(),
                );
            }
            match ls.kind {
                LServerKind::Virtual => self.virtual_lserver(i, ls, &mut seen),
                LServerKind::Physical => self.physical_lserver(i, ls, &mut seen),
            }
            for (j, nic) in ls.nics.iter().enumerate() {
                let nic_path = |key: &str| here(at!("nics", j, key));
                match self.network(&nic.network) {
                    None => {
                        let names = t.networks.iter().map(|n| &n.name);
                        let msg = undefined("network", &nic.network, "networks", names);
                        self.bad(nic_path("network"), msg);
                    }
                    Some((_, n)) if n.role != NetworkRole::Operation => {
                        let msg = format!(
                            "`{}` is a quarantine network; a NIC is listed on its operation \
                             network and the engine moves it to quarantine",
                            nic.network
                        );
                        self.bad(nic_path("network"), msg);
                    }
                    Some((_, n)) => {
                        if let Some(msg) = host_address_problem(&n.subnet, nic.ip, &n.name) {
                            self.bad(nic_path("ip"), msg);
                        }
                    }
                }
                if let Some((a, b)) = seen.ips.insert(nic.ip, (i, j)) {
                    seen.ips.insert(nic.ip, (a, b));
                    let msg = format!(
                        "IP {} is already used by lservers[{a}].nics[{b}] (`{}`); every NIC \
                         needs its own IP",
                        nic.ip, t.lservers[a].path
                    );
                    self.bad(nic_path("ip"), msg);
                }
                match normalize_mac(&nic.mac) {
                    None => {
                        let msg = format!(
                            "`{}` is not a MAC address; write six hex pairs, e.g. \
                             \"00:50:56:00:00:11\"",
                            nic.mac
                        );
                        self.bad(nic_path("mac"), msg);
                    }
                    Some(mac) => {
                        if let Some(&(a, b)) = seen.macs.get(&mac) {
                            let msg = format!(
                                "MAC {mac} is already used by lservers[{a}].nics[{b}] (`{}`); \
                                 every NIC needs its own MAC",
                                t.lservers[a].path
                            );
                            self.bad(nic_path("mac"), msg);
                        } else {
                            seen.macs.insert(mac, (i, j));
                        }
                    }
                }
            }
        }
    }

    fn virtual_lserver(&mut self, i: usize, ls: &'t LServerSpec, seen: &mut Seen<'t>) {
        let t = self.t;
        let here = |rest: Vec<KeySeg>| [at!("lservers", i), rest].concat();
        let hypervisor = match &ls.hypervisor {
            None => {
                self.bad(
                    here(at!("hypervisor")),
                    "a virtual L-Server needs `hypervisor`, the manager that owns its VM".into(),
                );
                None
            }
            Some(name) => {
                let found = t.hypervisors.iter().find(|h| &h.name == name);
                if found.is_none() {
                    let names = t.hypervisors.iter().map(|h| &h.name);
                    let msg = undefined("hypervisor", name, "hypervisors", names);
                    self.bad(here(at!("hypervisor")), msg);
                }
                found
            }
        };
        let vm = ls.vm.as_deref().unwrap_or("");
        if vm.trim().is_empty() {
            self.bad(
                here(at!("vm")),
                "a virtual L-Server needs `vm`, its VM id on the hypervisor manager".into(),
            );
        }
        if ls.bmc.is_some() {
            let msg = "`bmc` is for physical L-Servers; a virtual one is reset through its \
                       hypervisor, remove it";
            self.bad(here(at!("bmc")), msg.into());
        }
        for (j, nic) in ls.nics.iter().enumerate() {
            for key in ["switch", "port"] {
                let set = if key == "switch" {
                    nic.switch.is_some()
                } else {
                    nic.port.is_some()
                };
                if set {
                    let msg = format!(
                        "`{key}` is for physical NICs; a virtual NIC is moved by its \
                         hypervisor, remove it"
                    );
                    self.bad(here(at!("nics", j, key)), msg);
                }
            }
            let device = nic.device.clone().unwrap_or_else(|| (4000 + j).to_string());
            if let (Some(h), false) = (&ls.hypervisor, vm.is_empty()) {
                if let Some((a, b)) = seen.vnics.insert((h, vm, device.clone()), (i, j)) {
                    seen.vnics.insert((h, vm, device.clone()), (a, b));
                    let msg = format!(
                        "vNIC `{device}` of VM `{vm}` on `{h}` is already used by \
                         lservers[{a}].nics[{b}]; give each NIC its own `device`"
                    );
                    self.bad(here(at!("nics", j, "device")), msg);
                }
            }
            // The engine moves a vNIC between port groups, so both ends must exist on this manager.
            let Some(h) = hypervisor else { continue };
            let quarantine = t.quarantine_map.get(&nic.network);
            for net in std::iter::once(&nic.network).chain(quarantine) {
                if self.network(net).is_some() && !h.portgroups.contains_key(net) {
                    let role = if Some(net) == quarantine {
                        format!(" (the quarantine network of `{}`)", nic.network)
                    } else {
                        String::new()
                    };
                    let msg = format!(
                        "hypervisor `{}` has no port group for network `{net}`{role}; add it \
                         to its `portgroups`",
                        h.name
                    );
                    self.bad(here(at!("nics", j, "network")), msg);
                }
            }
        }
    }

    fn physical_lserver(&mut self, i: usize, ls: &'t LServerSpec, seen: &mut Seen<'t>) {
        let t = self.t;
        let here = |rest: Vec<KeySeg>| [at!("lservers", i), rest].concat();
        for (key, set) in [
            ("hypervisor", ls.hypervisor.is_some()),
            ("vm", ls.vm.is_some()),
        ] {
            if set {
                self.bad(
                    here(at!(key)),
                    format!(
                        "`{key}` is for virtual L-Servers; remove it or set kind = \"virtual\""
                    ),
                );
            }
        }
        if let Some(bmc) = &ls.bmc {
            let names = t.bmcs.iter().map(|b| &b.name);
            if self.defined(here(at!("bmc")), "bmc", bmc, "bmcs", names) {
                if let Some(j) = seen.bmcs.insert(bmc, i) {
                    seen.bmcs.insert(bmc, j);
                    let msg = format!(
                        "bmc `{bmc}` is already used by lservers[{j}]; a reboot would reset the \
                         wrong server"
                    );
                    self.bad(here(at!("bmc")), msg);
                }
            }
        }
        for (j, nic) in ls.nics.iter().enumerate() {
            if nic.device.is_some() {
                let msg = "`device` is for virtual NICs; a physical NIC is moved by its switch \
                           port, remove it";
                self.bad(here(at!("nics", j, "device")), msg.into());
            }
            match &nic.switch {
                None => self.bad(
                    here(at!("nics", j, "switch")),
                    "a physical NIC needs `switch`, the switch its port is on".into(),
                ),
                Some(sw) => {
                    let names = t.switches.iter().map(|s| &s.name);
                    self.defined(
                        here(at!("nics", j, "switch")),
                        "switch",
                        sw,
                        "switches",
                        names,
                    );
                }
            }
            match (&nic.switch, nic.port.as_deref()) {
                (_, None) | (_, Some("")) => self.bad(
                    here(at!("nics", j, "port")),
                    "a physical NIC needs `port`, e.g. \"Ethernet1/5\"".into(),
                ),
                (Some(sw), Some(port)) => {
                    if let Some((a, b)) = seen.ports.insert((sw, port), (i, j)) {
                        seen.ports.insert((sw, port), (a, b));
                        let msg = format!(
                            "port `{port}` of switch `{sw}` is already used by \
                             lservers[{a}].nics[{b}] (`{}`)",
                            t.lservers[a].path
                        );
                        self.bad(here(at!("nics", j, "port")), msg);
                    }
                }
                (None, Some(_)) => {}
            }
        }
    }
}

/// First users of unique values, to name them in duplicate errors.
#[derive(Default)]
struct Seen<'t> {
    paths: HashMap<&'t str, usize>,
    hostnames: HashMap<String, usize>,
    ips: HashMap<IpAddr, (usize, usize)>,
    macs: HashMap<String, (usize, usize)>,
    ports: HashMap<(&'t str, &'t str), (usize, usize)>,
    vnics: HashMap<(&'t str, &'t str, String), (usize, usize)>,
    bmcs: HashMap<&'t str, usize>,
}

/// Why `path` is not an L-Server path (`/folder/name`), if it is not.
fn lserver_path_problem(path: &str) -> Option<String> {
    let fix = "write it like \"/tenant-a/vdi-001\"";
    if !path.starts_with('/') {
        Some(format!("path `{path}` does not start with `/`; {fix}"))
    } else if path.len() > 1 && path.ends_with('/') {
        Some(format!("path `{path}` ends with `/`; {fix}"))
    } else if path[1..].split('/').any(|s| s.trim().is_empty()) {
        Some(format!("path `{path}` has an empty segment; {fix}"))
    } else if path.chars().any(char::is_control) {
        Some(format!(
            "path `{path:?}` contains control characters; {fix}"
        ))
    } else {
        None
    }
}
