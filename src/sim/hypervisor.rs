//! The hypervisor manager model (vCenter): per VM per vNIC the port-group backing and the value
//! before the last write (for `stale_read`), the session, and VM resets. A plain state machine:
//! no clock, no faults; the world decides faults and timing around it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::adapters::{DeviceError, DeviceResult, OutcomeClass};
use crate::model::{HypervisorSpec, NicLocation, Site};

/// One vNIC's backing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Vnic {
    /// Port group id the vNIC is backed by now.
    backing: String,
    /// Backing before the last applied write; `None` before the first write.
    previous: Option<String>,
    /// Run time of the last applied write (bounded staleness of `stale_read`).
    changed_at: Duration,
}

/// A port-group change that a write applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BackingChange {
    /// Port group before.
    pub from: String,
    /// Port group after.
    pub to: String,
}

/// State of one simulated hypervisor manager.
#[derive(Debug, Clone)]
pub(crate) struct HypervisorModel {
    /// Simulated latency of one call.
    pub latency: Duration,
    /// Most extra latency a call draws from the run's seed.
    pub jitter: Duration,
    /// (VM id, vNIC key) -> backing.
    vnics: BTreeMap<(String, String), Vnic>,
    /// VMs this manager knows (power_reset on another VM is rejected).
    vms: BTreeSet<String>,
    /// Port group ids this manager has; a write naming another one is rejected like vCenter does.
    portgroups: BTreeSet<String>,
    /// Whether the client's session is valid. Starts valid: the adapter logs in lazily.
    session_valid: bool,
    /// Resets per VM.
    resets: BTreeMap<String, u32>,
}

impl HypervisorModel {
    /// The manager `spec` with every vNIC of the site's L-Servers on it backed by the port group
    /// of the NIC's operation network.
    pub fn new(spec: &HypervisorSpec, site: &Site) -> HypervisorModel {
        let mut vnics = BTreeMap::new();
        let mut vms = BTreeSet::new();
        for ls in &site.lservers {
            for nic in &ls.nics {
                let NicLocation::Virtual {
                    hypervisor,
                    vm,
                    device,
                } = &nic.location
                else {
                    continue;
                };
                if hypervisor != &spec.name {
                    continue;
                }
                // A validated topology maps every operation network to a port group; if not,
                // the network name stands in, which maps to no network (device truth None).
                let backing = spec
                    .portgroups
                    .get(&nic.network)
                    .cloned()
                    .unwrap_or_else(|| nic.network.clone());
                vms.insert(vm.clone());
                vnics.insert(
                    (vm.clone(), device.clone()),
                    Vnic {
                        backing,
                        previous: None,
                        changed_at: Duration::ZERO,
                    },
                );
            }
        }
        HypervisorModel {
            latency: spec.latency.unwrap_or(Duration::ZERO),
            jitter: spec.jitter.unwrap_or(Duration::ZERO),
            vnics,
            vms,
            portgroups: spec.portgroups.values().cloned().collect(),
            session_valid: true,
            resets: BTreeMap::new(),
        }
    }

    /// Whether the session is valid.
    pub fn session_valid(&self) -> bool {
        self.session_valid
    }

    /// Invalidates the session (`auth_expired`).
    pub fn expire_session(&mut self) {
        self.session_valid = false;
    }

    /// A successful login.
    pub fn login(&mut self) {
        self.session_valid = true;
    }

    /// The backing of a vNIC now.
    pub fn backing(&self, vm: &str, nic: &str) -> Option<&str> {
        self.vnics
            .get(&(vm.to_string(), nic.to_string()))
            .map(|v| v.backing.as_str())
    }

    /// Reads a vNIC's backing; with `stale` = (now, window), a read within `window` of the
    /// last write returns the value before it instead (bounded staleness).
    pub fn get_nic(
        &self,
        vm: &str,
        nic: &str,
        stale: Option<(Duration, Duration)>,
    ) -> DeviceResult<String> {
        let vnic = self.vnic(vm, nic)?;
        let value = match (&vnic.previous, stale) {
            (Some(previous), Some((now, window)))
                if now < vnic.changed_at.saturating_add(window) =>
            {
                previous
            }
            _ => &vnic.backing,
        };
        Ok(value.clone())
    }

    /// Sets a vNIC's backing. Returns the change, or `None` when it already had that backing.
    pub fn set_nic(
        &mut self,
        vm: &str,
        nic: &str,
        portgroup: &str,
        now: Duration,
    ) -> DeviceResult<Option<BackingChange>> {
        let known_portgroup = self.portgroups.contains(portgroup);
        let vnic = self
            .vnics
            .get_mut(&(vm.to_string(), nic.to_string()))
            .ok_or_else(|| not_found(vm, nic))?;
        if !known_portgroup {
            return Err(DeviceError::new(
                OutcomeClass::Rejected,
                format!("NOT_FOUND: no port group {portgroup}"),
            ));
        }
        let before = std::mem::replace(&mut vnic.backing, portgroup.to_string());
        vnic.previous = Some(before.clone());
        vnic.changed_at = now;
        Ok((before != portgroup).then(|| BackingChange {
            from: before,
            to: portgroup.to_string(),
        }))
    }

    /// Resets a VM.
    pub fn power_reset(&mut self, vm: &str) -> DeviceResult<()> {
        if !self.vms.contains(vm) {
            return Err(DeviceError::new(
                OutcomeClass::Rejected,
                format!("NOT_FOUND: no VM {vm}"),
            ));
        }
        let count = self.resets.entry(vm.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        Ok(())
    }

    /// Resets of every VM, summed.
    pub fn reset_count(&self) -> u32 {
        self.resets.values().fold(0, |a, b| a.saturating_add(*b))
    }

    fn vnic(&self, vm: &str, nic: &str) -> DeviceResult<&Vnic> {
        self.vnics
            .get(&(vm.to_string(), nic.to_string()))
            .ok_or_else(|| not_found(vm, nic))
    }
}

fn not_found(vm: &str, nic: &str) -> DeviceError {
    DeviceError::new(
        OutcomeClass::Rejected,
        format!("NOT_FOUND: no vNIC {nic} on VM {vm}"),
    )
}
