//! The in-process face of the models: adapter-trait implementations that call
//! [`SimWorld::call`] directly on the tokio clock. The engine cannot tell them from real
//! wire clients; the mail and syslog sinks just keep what they are given.

use std::sync::Arc;

use async_trait::async_trait;

use super::index::DeviceOp;
use super::recorder::lock;
use super::world::{Reply, SimWorld};
use crate::adapters::{
    Adapters, Bmc, DeviceError, DeviceResult, Email, Hypervisor, Mailer, OutcomeClass, Switch,
    SyslogOut,
};

/// A simulated hypervisor manager as the engine's [`Hypervisor`] port.
#[derive(Clone)]
pub struct SimHypervisor {
    world: SimWorld,
    name: String,
}

/// A simulated switch as the engine's [`Switch`] port.
#[derive(Clone)]
pub struct SimSwitch {
    world: SimWorld,
    name: String,
}

/// A simulated BMC as the engine's [`Bmc`] port.
#[derive(Clone)]
pub struct SimBmc {
    world: SimWorld,
    name: String,
}

/// The mail sink: keeps every email (see [`SimWorld::emails`]).
#[derive(Clone)]
pub struct SimMailer {
    world: SimWorld,
}

/// The syslog sink: keeps every line (see [`SimWorld::syslog_lines`]).
#[derive(Clone)]
pub struct SimSyslog {
    world: SimWorld,
}

/// A reply of the wrong shape: a bug in the world, reported as a refusal rather than a panic.
fn unexpected(reply: Reply) -> DeviceError {
    DeviceError::new(
        OutcomeClass::Rejected,
        format!("simulator bug: unexpected reply {reply:?}"),
    )
}

fn done(reply: Reply) -> DeviceResult<()> {
    match reply {
        Reply::Done => Ok(()),
        other => Err(unexpected(other)),
    }
}

#[async_trait]
impl Hypervisor for SimHypervisor {
    async fn login(&self) -> DeviceResult<()> {
        done(self.world.call(&self.name, DeviceOp::Login).await?)
    }

    async fn get_nic(&self, vm: &str, nic: &str) -> DeviceResult<String> {
        let op = DeviceOp::GetNic {
            vm: vm.to_string(),
            nic: nic.to_string(),
        };
        match self.world.call(&self.name, op).await? {
            Reply::Portgroup(pg) => Ok(pg),
            other => Err(unexpected(other)),
        }
    }

    async fn set_nic(&self, vm: &str, nic: &str, portgroup: &str) -> DeviceResult<()> {
        let op = DeviceOp::SetNic {
            vm: vm.to_string(),
            nic: nic.to_string(),
            portgroup: portgroup.to_string(),
        };
        done(self.world.call(&self.name, op).await?)
    }

    async fn power_reset(&self, vm: &str) -> DeviceResult<()> {
        let op = DeviceOp::PowerReset { vm: vm.to_string() };
        done(self.world.call(&self.name, op).await?)
    }
}

#[async_trait]
impl Switch for SimSwitch {
    async fn get_port(&self, port: &str) -> DeviceResult<u16> {
        let op = DeviceOp::GetPort {
            port: port.to_string(),
        };
        match self.world.call(&self.name, op).await? {
            Reply::Vlan(vlan) => Ok(vlan),
            other => Err(unexpected(other)),
        }
    }

    async fn set_port(&self, port: &str, vlan: u16) -> DeviceResult<()> {
        let op = DeviceOp::SetPort {
            port: port.to_string(),
            vlan,
        };
        done(self.world.call(&self.name, op).await?)
    }

    async fn save_config(&self) -> DeviceResult<()> {
        done(self.world.call(&self.name, DeviceOp::SaveConfig).await?)
    }

    fn batches(&self) -> bool {
        true
    }

    async fn set_ports(&self, changes: &[(String, u16)]) -> Vec<DeviceResult<()>> {
        let ops = changes
            .iter()
            .map(|(port, vlan)| DeviceOp::SetPort {
                port: port.clone(),
                vlan: *vlan,
            })
            .collect();
        self.world
            .call_batch(&self.name, ops)
            .await
            .into_iter()
            .map(|r| r.and_then(done))
            .collect()
    }

    async fn get_ports(&self, ports: &[String]) -> Vec<DeviceResult<u16>> {
        let ops = ports
            .iter()
            .map(|port| DeviceOp::GetPort { port: port.clone() })
            .collect();
        self.world
            .call_batch(&self.name, ops)
            .await
            .into_iter()
            .map(|r| match r? {
                Reply::Vlan(vlan) => Ok(vlan),
                other => Err(unexpected(other)),
            })
            .collect()
    }
}

#[async_trait]
impl Bmc for SimBmc {
    async fn reset(&self) -> DeviceResult<()> {
        done(self.world.call(&self.name, DeviceOp::Reset).await?)
    }
}

#[async_trait]
impl Mailer for SimMailer {
    async fn send(&self, email: &Email) -> DeviceResult<()> {
        lock(&self.world.inner.state).emails.push(email.clone());
        Ok(())
    }
}

#[async_trait]
impl SyslogOut for SimSyslog {
    async fn send(&self, line: &str) -> DeviceResult<()> {
        lock(&self.world.inner.state).syslog.push(line.to_string());
        Ok(())
    }
}

impl SimWorld {
    /// The in-process face of every device of the site, plus the mail and syslog sinks.
    pub fn adapters(&self) -> Adapters {
        let topology = &self.inner.site.topology;
        let mut adapters = Adapters::default();
        for h in &topology.hypervisors {
            let face = SimHypervisor {
                world: self.clone(),
                name: h.name.clone(),
            };
            adapters.hypervisors.insert(h.name.clone(), Arc::new(face));
        }
        for s in &topology.switches {
            let face = SimSwitch {
                world: self.clone(),
                name: s.name.clone(),
            };
            adapters.switches.insert(s.name.clone(), Arc::new(face));
        }
        for b in &topology.bmcs {
            let face = SimBmc {
                world: self.clone(),
                name: b.name.clone(),
            };
            adapters.bmcs.insert(b.name.clone(), Arc::new(face));
        }
        adapters.mailer = Some(Arc::new(SimMailer {
            world: self.clone(),
        }));
        adapters.syslog = Some(Arc::new(SimSyslog {
            world: self.clone(),
        }));
        adapters
    }
}
