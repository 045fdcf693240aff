//! What the runner and the checkers ask of the world besides device calls: heals, scheduled
//! switch reboots, final device truth and the measurements (resets, concurrency, sinks).

use std::time::Duration;

use super::faults::{FaultEffect, FaultSpec};
use super::index::{portgroup_network, vlan_network};
use super::recorder::lock;
use super::world::{record_truth, DeviceModel, SimWorld};
use crate::adapters::Email;
use crate::model::history::{EventKind, NicRef};
use crate::model::NicLocation;

impl SimWorld {
    /// Removes the faults of `target` (a device name, or `all`) from now on and records `Heal`.
    /// Sessions a fault expired stay expired until the client logs in, as on a real device.
    pub fn heal(&self, target: &str) {
        let inner = &self.inner;
        let mut state = lock(&inner.state);
        state.plan.heal(target, inner.recorder.elapsed());
        inner.recorder.record(EventKind::Heal {
            target: target.to_string(),
        });
    }

    /// Adds `spec` to the fault plan from now on, after every rule already there (the first
    /// matching rule wins), and returns its index for [`SimWorld::fault_accounting`] and
    /// [`SimWorld::external_change_for_fault`]: a fault that starts mid-run where its moment
    /// is known only then (a test's "from here on the device refuses", an operator's hand at
    /// the console). Like [`SimWorld::new`] it trusts `spec`: the scenario loader is where
    /// faults are checked, and the plan never applies an effect to a call it cannot act on.
    /// Scheduled effects (`reboot_loses_unsaved`, `external_change`) added this way are carried
    /// out only when asked ([`SimWorld::reboot_switch_for_fault`],
    /// [`SimWorld::external_change_for_fault`]).
    pub fn add_fault(&self, spec: FaultSpec) -> usize {
        lock(&self.inner.state).plan.push(spec)
    }

    /// `(from, switch)` of every `reboot_loses_unsaved` fault, in time order: the runner calls
    /// [`SimWorld::reboot_switch`] for each at its time.
    pub fn switch_reboots(&self) -> Vec<(Duration, String)> {
        self.scheduled_reboots()
            .into_iter()
            .map(|(at, device, _)| (at, device))
            .collect()
    }

    /// Like [`SimWorld::switch_reboots`], with the index of the fault that schedules each, for
    /// [`SimWorld::reboot_switch_for_fault`].
    pub fn scheduled_reboots(&self) -> Vec<(Duration, String, usize)> {
        lock(&self.inner.state).plan.switch_reboots()
    }

    /// [`SimWorld::reboot_switch`] on behalf of fault `index`: a reboot that happens counts as
    /// that fault's hit (in an operation when any operation runs: a reboot concerns no one
    /// L-Server).
    pub fn reboot_switch_for_fault(&self, device: &str, index: usize) -> bool {
        let rebooted = self.reboot_switch(device);
        if rebooted {
            let in_operation = self.inner.recorder.in_operation(None);
            lock(&self.inner.state).plan.count_hit(index, in_operation);
        }
        rebooted
    }

    /// Reboots `device`: its running config becomes its saved config. Records `SwitchRebooted`
    /// and a `TruthChanged` for every port that changed. Returns false (and does nothing) when
    /// `device` is not a switch, or when every `reboot_loses_unsaved` fault of it was healed.
    pub fn reboot_switch(&self, device: &str) -> bool {
        let inner = &self.inner;
        let mut state = lock(&inner.state);
        if !state.plan.reboot_due(device, inner.recorder.elapsed()) {
            return false;
        }
        let Some(DeviceModel::Switch(switch)) = state.devices.get_mut(device) else {
            return false;
        };
        let changes = switch.reboot();
        inner.recorder.record(EventKind::SwitchRebooted {
            device: device.to_string(),
        });
        for change in changes {
            if let Some(nic) = inner.index.port_nic(device, &change.port) {
                record_truth(
                    &inner.recorder,
                    nic,
                    vlan_network(&inner.site, change.from),
                    vlan_network(&inner.site, change.to),
                    Some("switch_reboot"),
                );
            }
        }
        true
    }

    /// `(from, fault index)` of every `external_change` fault, in time order: the runner calls
    /// [`SimWorld::external_change_for_fault`] for each at its time.
    pub fn scheduled_external_changes(&self) -> Vec<(Duration, usize)> {
        lock(&self.inner.state).plan.external_changes()
    }

    /// Carries out `external_change` fault `index` (R20, INV-12): something other than the
    /// engine sets every NIC the fault matches (its `device`, and `match` on `vm`, `nic`,
    /// `port`, `lserver`; a field a NIC lacks does not match) to the fault's `to_network`, or to
    /// the NIC's operation network. The running config only, on a switch: a person at the
    /// console does not save it either. Records a `TruthChanged` by `external_change` for each
    /// NIC that moved and counts one hit when any did. A fault healed by now does nothing.
    /// Returns how many NICs moved.
    pub fn external_change_for_fault(&self, index: usize) -> usize {
        let inner = &self.inner;
        let site = &inner.site;
        let mut state = lock(&inner.state);
        let now = inner.recorder.elapsed();
        let Some(spec) = state.plan.spec(index).cloned() else {
            return 0;
        };
        if spec.effect != FaultEffect::ExternalChange || state.plan.healed(index, now) {
            return 0;
        }
        let m = &spec.matcher;
        let wanted = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        let mut moved = Vec::new();
        for ls in &site.lservers {
            for nic in &ls.nics {
                let network = spec.to_network.as_deref().unwrap_or(&nic.network);
                let change = match &nic.location {
                    NicLocation::Virtual {
                        hypervisor,
                        vm,
                        device,
                    } if *hypervisor == spec.device
                        && wanted(&m.vm, Some(vm))
                        && wanted(&m.nic, Some(device))
                        && wanted(&m.port, None)
                        && wanted(&m.lserver, Some(&ls.path)) =>
                    {
                        let Some(pg) = site.portgroup(hypervisor, network) else {
                            continue;
                        };
                        match state.devices.get_mut(hypervisor) {
                            Some(DeviceModel::Hypervisor(h)) => {
                                match h.set_nic(vm, device, pg, now) {
                                    Ok(Some(c)) => Some((
                                        portgroup_network(site, hypervisor, &c.from),
                                        portgroup_network(site, hypervisor, &c.to),
                                    )),
                                    _ => None,
                                }
                            }
                            _ => None,
                        }
                    }
                    NicLocation::Physical { switch, port }
                        if *switch == spec.device
                            && wanted(&m.vm, None)
                            && wanted(&m.nic, None)
                            && wanted(&m.port, Some(port))
                            && wanted(&m.lserver, Some(&ls.path)) =>
                    {
                        let Some(net) = site.network(network) else {
                            continue;
                        };
                        match state.devices.get_mut(switch) {
                            Some(DeviceModel::Switch(s)) => match s.set_port(port, net.vlan, now) {
                                Ok(Some(c)) => {
                                    Some((vlan_network(site, c.from), vlan_network(site, c.to)))
                                }
                                _ => None,
                            },
                            _ => None,
                        }
                    }
                    _ => None,
                };
                if let Some((from, to)) = change {
                    let nic_ref = NicRef {
                        lserver: ls.path.clone(),
                        nic: nic.index,
                    };
                    moved.push((nic_ref, from, to));
                }
            }
        }
        for (nic, from, to) in &moved {
            record_truth(
                &inner.recorder,
                nic,
                from.clone(),
                to.clone(),
                Some("external_change"),
            );
        }
        if !moved.is_empty() {
            let in_operation = inner.recorder.in_operation(None);
            state.plan.count_hit(index, in_operation);
        }
        moved.len()
    }

    /// Device truth of every NIC of the site, in site order: the network its backing or VLAN
    /// stands for (None when it maps to no topology network).
    pub fn final_truth(&self) -> Vec<(NicRef, Option<String>)> {
        let state = lock(&self.inner.state);
        let site = &self.inner.site;
        let mut truth = Vec::new();
        for ls in &site.lservers {
            for nic in &ls.nics {
                let network = match &nic.location {
                    NicLocation::Virtual {
                        hypervisor,
                        vm,
                        device,
                    } => match state.devices.get(hypervisor) {
                        Some(DeviceModel::Hypervisor(h)) => h
                            .backing(vm, device)
                            .and_then(|pg| portgroup_network(site, hypervisor, pg)),
                        _ => None,
                    },
                    NicLocation::Physical { switch, port } => match state.devices.get(switch) {
                        Some(DeviceModel::Switch(s)) => {
                            s.running(port).and_then(|vlan| vlan_network(site, vlan))
                        }
                        _ => None,
                    },
                };
                let nic_ref = NicRef {
                    lserver: ls.path.clone(),
                    nic: nic.index,
                };
                truth.push((nic_ref, network));
            }
        }
        truth
    }

    /// Device truth of one NIC (None: unknown NIC, or not on a topology network).
    pub fn nic_network(&self, nic: &NicRef) -> Option<String> {
        self.final_truth()
            .into_iter()
            .find(|(n, _)| n == nic)
            .and_then(|(_, network)| network)
    }

    /// `(running, saved)` access VLAN of `port` on `switch`.
    pub fn port_vlans(&self, switch: &str, port: &str) -> Option<(u16, u16)> {
        match lock(&self.inner.state).devices.get(switch) {
            Some(DeviceModel::Switch(s)) => s.running(port).zip(s.saved(port)),
            _ => None,
        }
    }

    /// Resets performed by `device` (a BMC's resets, or a hypervisor's VM resets summed).
    pub fn reset_count(&self, device: &str) -> u32 {
        match lock(&self.inner.state).devices.get(device) {
            Some(DeviceModel::Hypervisor(h)) => h.reset_count(),
            Some(DeviceModel::Bmc(b)) => b.resets,
            _ => 0,
        }
    }

    /// Whether the client's session on hypervisor `device` is valid (None: not a hypervisor).
    pub fn session_valid(&self, device: &str) -> Option<bool> {
        match lock(&self.inner.state).devices.get(device) {
            Some(DeviceModel::Hypervisor(h)) => Some(h.session_valid()),
            _ => None,
        }
    }

    /// Most calls `device` ever had in flight at once (0 when it was never called).
    pub fn max_in_flight(&self, device: &str) -> u32 {
        lock(&self.inner.state)
            .max_in_flight
            .get(device)
            .copied()
            .unwrap_or(0)
    }

    /// Every email the mailer sink received, in order.
    pub fn emails(&self) -> Vec<Email> {
        lock(&self.inner.state).emails.clone()
    }

    /// Every syslog line the syslog sink received, in order.
    pub fn syslog_lines(&self) -> Vec<String> {
        lock(&self.inner.state).syslog.clone()
    }
}
