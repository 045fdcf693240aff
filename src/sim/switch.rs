//! The switch model: per access port the running and the saved (startup) VLAN and the running
//! VLAN before the last write (for `stale_read`). `save_config` copies running to saved; a reboot
//! loads saved into running, which is how unsaved changes get lost. Whether to save is the
//! engine's business (`persist`), so the model never saves on its own.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::adapters::{DeviceError, DeviceResult, OutcomeClass};
use crate::model::{NicLocation, Site, SwitchSpec};

/// One access port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Port {
    running: u16,
    saved: u16,
    /// Running VLAN before the last applied write; `None` before the first write.
    previous: Option<u16>,
    /// Run time of the last applied write (bounded staleness of `stale_read`).
    changed_at: Duration,
}

/// A VLAN change of one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VlanChange {
    /// Port name.
    pub port: String,
    /// VLAN before.
    pub from: u16,
    /// VLAN after.
    pub to: u16,
}

/// State of one simulated switch.
#[derive(Debug, Clone)]
pub(crate) struct SwitchModel {
    /// Simulated latency of one call.
    pub latency: Duration,
    /// Most extra latency a call draws from the run's seed.
    pub jitter: Duration,
    ports: BTreeMap<String, Port>,
}

/// Highest usable 802.1Q VLAN id; 0 and 4095 are reserved.
const MAX_VLAN: u16 = 4094;

impl SwitchModel {
    /// The switch `spec` with every port of the site's L-Servers on it carrying the VLAN of the
    /// NIC's operation network, in running and saved config alike.
    pub fn new(spec: &SwitchSpec, site: &Site) -> SwitchModel {
        let mut ports = BTreeMap::new();
        for ls in &site.lservers {
            for nic in &ls.nics {
                let NicLocation::Physical { switch, port } = &nic.location else {
                    continue;
                };
                if switch != &spec.name {
                    continue;
                }
                // A validated topology knows every network; VLAN 1 (the default VLAN, on no
                // topology network) stands in otherwise, so device truth shows None.
                let vlan = site.network(&nic.network).map_or(1, |n| n.vlan);
                ports.insert(
                    port.clone(),
                    Port {
                        running: vlan,
                        saved: vlan,
                        previous: None,
                        changed_at: Duration::ZERO,
                    },
                );
            }
        }
        SwitchModel {
            latency: spec.latency.unwrap_or(Duration::ZERO),
            jitter: spec.jitter.unwrap_or(Duration::ZERO),
            ports,
        }
    }

    /// Running VLAN of `port`.
    pub fn running(&self, port: &str) -> Option<u16> {
        self.ports.get(port).map(|p| p.running)
    }

    /// Saved (startup) VLAN of `port`.
    pub fn saved(&self, port: &str) -> Option<u16> {
        self.ports.get(port).map(|p| p.saved)
    }

    /// Reads the running VLAN; with `stale` = (now, window), a read within `window` of the
    /// last write returns the VLAN before it instead (bounded staleness).
    pub fn get_port(&self, port: &str, stale: Option<(Duration, Duration)>) -> DeviceResult<u16> {
        let p = self.ports.get(port).ok_or_else(|| no_port(port))?;
        Ok(match (p.previous, stale) {
            (Some(previous), Some((now, window))) if now < p.changed_at.saturating_add(window) => {
                previous
            }
            _ => p.running,
        })
    }

    /// Sets the running VLAN. Returns the change, or `None` when the port already had it.
    pub fn set_port(
        &mut self,
        port: &str,
        vlan: u16,
        now: Duration,
    ) -> DeviceResult<Option<VlanChange>> {
        if vlan == 0 || vlan > MAX_VLAN {
            return Err(DeviceError::new(
                OutcomeClass::Rejected,
                format!("invalid VLAN {vlan}: use 1-{MAX_VLAN}"),
            ));
        }
        let p = self.ports.get_mut(port).ok_or_else(|| no_port(port))?;
        let before = std::mem::replace(&mut p.running, vlan);
        p.previous = Some(before);
        p.changed_at = now;
        Ok((before != vlan).then(|| VlanChange {
            port: port.to_string(),
            from: before,
            to: vlan,
        }))
    }

    /// Copies the running config to the startup config.
    pub fn save_config(&mut self) {
        for p in self.ports.values_mut() {
            p.saved = p.running;
        }
    }

    /// Reboots: running := saved. Returns the ports whose running VLAN changed, in port order.
    pub fn reboot(&mut self) -> Vec<VlanChange> {
        let mut changes = Vec::new();
        for (name, p) in &mut self.ports {
            if p.running != p.saved {
                changes.push(VlanChange {
                    port: name.clone(),
                    from: p.running,
                    to: p.saved,
                });
                p.running = p.saved;
            }
        }
        changes
    }
}

fn no_port(port: &str) -> DeviceError {
    DeviceError::new(OutcomeClass::Rejected, format!("no such interface {port}"))
}
