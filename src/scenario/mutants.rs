//! The broken engines of [`super::runner::Mutant`] that work through the engine's ports or its
//! journal: test-only, never built into a daemon, and the engine carries no switch for them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::adapters::{Adapters, DeviceResult, Hypervisor, Switch};

/// `rewrite-on-read-failure`: every hypervisor and switch of `adapters`, wrapped so that a failed
/// read of a NIC is followed by the last write to that NIC, again. The engine's evidence says
/// that write may have landed (INV-6 forbids writing it again before a read says otherwise).
pub(super) fn rewrite_on_read_failure(mut adapters: Adapters) -> Adapters {
    for h in adapters.hypervisors.values_mut() {
        *h = Arc::new(RewriteHypervisor {
            inner: h.clone(),
            last: Mutex::default(),
        });
    }
    for s in adapters.switches.values_mut() {
        *s = Arc::new(RewriteSwitch {
            inner: s.clone(),
            last: Mutex::default(),
        });
    }
    adapters
}

struct RewriteHypervisor {
    inner: Arc<dyn Hypervisor>,
    /// (vm, nic) -> last port group written.
    last: Mutex<HashMap<(String, String), String>>,
}

#[async_trait]
impl Hypervisor for RewriteHypervisor {
    async fn login(&self) -> DeviceResult<()> {
        self.inner.login().await
    }

    async fn get_nic(&self, vm: &str, nic: &str) -> DeviceResult<String> {
        let read = self.inner.get_nic(vm, nic).await;
        if read.is_err() {
            let last = self
                .last
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&(vm.to_string(), nic.to_string()))
                .cloned();
            if let Some(portgroup) = last {
                let _ = self.inner.set_nic(vm, nic, &portgroup).await;
            }
        }
        read
    }

    async fn set_nic(&self, vm: &str, nic: &str, portgroup: &str) -> DeviceResult<()> {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((vm.to_string(), nic.to_string()), portgroup.to_string());
        self.inner.set_nic(vm, nic, portgroup).await
    }

    async fn power_reset(&self, vm: &str) -> DeviceResult<()> {
        self.inner.power_reset(vm).await
    }
}

struct RewriteSwitch {
    inner: Arc<dyn Switch>,
    /// port -> last VLAN written.
    last: Mutex<HashMap<String, u16>>,
}

impl RewriteSwitch {
    fn remember(&self, port: &str, vlan: u16) {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(port.to_string(), vlan);
    }

    async fn rewrite(&self, port: &str) {
        let last = self
            .last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(port)
            .copied();
        if let Some(vlan) = last {
            let _ = self.inner.set_port(port, vlan).await;
        }
    }
}

#[async_trait]
impl Switch for RewriteSwitch {
    async fn get_port(&self, port: &str) -> DeviceResult<u16> {
        let read = self.inner.get_port(port).await;
        if read.is_err() {
            self.rewrite(port).await;
        }
        read
    }

    async fn set_port(&self, port: &str, vlan: u16) -> DeviceResult<()> {
        self.remember(port, vlan);
        self.inner.set_port(port, vlan).await
    }

    async fn save_config(&self) -> DeviceResult<()> {
        self.inner.save_config().await
    }

    fn batches(&self) -> bool {
        self.inner.batches()
    }

    async fn set_ports(&self, changes: &[(String, u16)]) -> Vec<DeviceResult<()>> {
        for (port, vlan) in changes {
            self.remember(port, *vlan);
        }
        self.inner.set_ports(changes).await
    }

    async fn get_ports(&self, ports: &[String]) -> Vec<DeviceResult<u16>> {
        let reads = self.inner.get_ports(ports).await;
        for (port, read) in ports.iter().zip(&reads) {
            if read.is_err() {
                self.rewrite(port).await;
            }
        }
        reads
    }
}

/// `leak-ip-on-rollback`: the quarantine IPs planned by every failed quarantine are put back
/// into the journal's allocations, as if the rollback had never freed them (R10, INV-8).
pub(super) fn leak_rolled_back_ips(journal_path: &Path) -> Result<(), String> {
    let conn = rusqlite::Connection::open(journal_path).map_err(|e| e.to_string())?;
    conn.execute_batch(
        "INSERT OR IGNORE INTO ip_allocations (network, ip, lserver, nic_index)
         SELECT p.to_network, p.to_ip, o.lserver, p.nic_index
         FROM plan_nics p JOIN operations o ON o.id = p.operation_id
         WHERE o.outcome = 'quarantine_failed';",
    )
    .map_err(|e| e.to_string())
}
