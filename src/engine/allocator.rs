//! The quarantine IP allocator (R6, INV-8).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::Network;

/// Quarantine IP allocation (R6, INV-8): lowest free host address, never the network,
/// broadcast or first (gateway) address, unique per network.
#[derive(Debug, Default)]
pub(crate) struct Allocator {
    used: HashMap<String, HashSet<IpAddr>>,
    owner_by_ip: HashMap<IpAddr, String>,
    cursor: HashMap<String, u128>,
}

impl Allocator {
    pub fn insert(&mut self, network: &str, ip: IpAddr, lserver: &str) {
        self.used.entry(network.to_string()).or_default().insert(ip);
        self.owner_by_ip.insert(ip, lserver.to_string());
    }

    pub fn free(&mut self, network: &str, ip: IpAddr) {
        if let Some(set) = self.used.get_mut(network) {
            set.remove(&ip);
        }
        self.owner_by_ip.remove(&ip);
    }

    pub fn owner(&self, ip: IpAddr) -> Option<&str> {
        self.owner_by_ip.get(&ip).map(String::as_str)
    }

    /// Allocates the next free address of `network` after the last one handed out, wrapping
    /// once; `None` when the subnet is full.
    pub fn allocate(&mut self, network: &Network, lserver: &str) -> Option<IpAddr> {
        let (first, last) = usable_range(&network.subnet)?;
        let span = last - first + 1;
        let start = self.cursor.get(&network.name).copied().unwrap_or(first);
        let used = self.used.entry(network.name.clone()).or_default();
        for step in 0..span {
            let candidate = first + (start - first + step) % span;
            let ip = to_ip(&network.subnet, candidate);
            if !used.contains(&ip) {
                used.insert(ip);
                self.owner_by_ip.insert(ip, lserver.to_string());
                self.cursor.insert(network.name.clone(), candidate + 1);
                return Some(ip);
            }
        }
        None
    }
}

/// First and last allocatable host of a subnet as integers.
fn usable_range(subnet: &IpNet) -> Option<(u128, u128)> {
    let (network, last) = match subnet {
        IpNet::V4(n) => (
            u32::from(n.network()) as u128,
            u32::from(n.broadcast()) as u128 - 1,
        ),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    };
    // Skip the network address and the first host (the quarantine network's gateway).
    let first = network + 2;
    (first <= last).then_some((first, last))
}

fn to_ip(subnet: &IpNet, value: u128) -> IpAddr {
    match subnet {
        IpNet::V4(_) => IpAddr::V4((value as u32).into()),
        IpNet::V6(_) => IpAddr::V6(value.into()),
    }
}
