//! Every protocol simulator of a topology at once: one wire server per hypervisor, switch and
//! BMC (by kind), an SMTP sink and a syslog sink, all on 127.0.0.1 ephemeral ports, over one
//! `SimWorld`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use super::smtp_sink::SmtpSink;
use super::{eapi, nxapi, redfish, restconf, vcenter, WireServer};
use crate::model::{HypervisorKind, SwitchKind};
use crate::sim::SimWorld;

/// The running simulators of one site.
pub struct WireSite {
    /// The device models behind every server.
    pub world: SimWorld,
    servers: BTreeMap<String, WireServer>,
    /// Tenant emails land here.
    pub smtp: SmtpSink,
    syslog_addr: SocketAddr,
    syslog_lines: Arc<Mutex<Vec<String>>>,
    syslog_task: JoinHandle<()>,
}

impl Drop for WireSite {
    fn drop(&mut self) {
        self.syslog_task.abort();
    }
}

/// Most alert lines the syslog sink keeps.
const MAX_SYSLOG_LINES: usize = 100_000;

impl WireSite {
    /// Starts a server for every device of the world's site.
    pub async fn start(world: SimWorld) -> std::io::Result<WireSite> {
        let site = world.site().clone();
        let mut servers = BTreeMap::new();
        for h in &site.topology.hypervisors {
            let server = match h.kind {
                HypervisorKind::Vcenter => vcenter::start(world.clone(), &h.name).await?,
            };
            servers.insert(h.name.clone(), server);
        }
        for s in &site.topology.switches {
            let server = match s.kind {
                SwitchKind::Nxapi => nxapi::start(world.clone(), &s.name).await?,
                SwitchKind::Eapi => eapi::start(world.clone(), &s.name).await?,
                SwitchKind::Restconf => restconf::start(world.clone(), &s.name).await?,
            };
            servers.insert(s.name.clone(), server);
        }
        for b in &site.topology.bmcs {
            servers.insert(
                b.name.clone(),
                redfish::start(world.clone(), &b.name).await?,
            );
        }
        let smtp = SmtpSink::start().await?;
        let socket = UdpSocket::bind(("127.0.0.1", 0)).await?;
        let syslog_addr = socket.local_addr()?;
        let syslog_lines = Arc::new(Mutex::new(Vec::new()));
        let store = syslog_lines.clone();
        let syslog_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok((n, _)) = socket.recv_from(&mut buf).await {
                let mut lines = store.lock().unwrap_or_else(|e| e.into_inner());
                if lines.len() < MAX_SYSLOG_LINES {
                    lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        });
        Ok(WireSite {
            world,
            servers,
            smtp,
            syslog_addr,
            syslog_lines,
            syslog_task,
        })
    }

    /// Base URL of every device server, by device name.
    pub fn urls(&self) -> BTreeMap<String, String> {
        self.servers
            .iter()
            .map(|(name, server)| (name.clone(), server.url()))
            .collect()
    }

    /// Where the engine sends its alert lines (UDP).
    pub fn syslog_addr(&self) -> SocketAddr {
        self.syslog_addr
    }

    /// Alert lines received.
    pub fn syslog_lines(&self) -> Vec<String> {
        self.syslog_lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
