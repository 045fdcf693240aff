//! The quarantine IP allocator (R6, INV-8).

use std::net::IpAddr;

use ipnet::IpNet;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::model::Network;

/// Quarantine IP allocation (R6, INV-8): lowest free host address, never the network,
/// broadcast or first (gateway) address, unique per network.
#[derive(Debug, Default)]
pub(crate) struct Allocator {
    // Keyed by topology network names and by addresses the allocator chose itself: nothing
    // outside picks these keys, so a fast hash is safe.
    used: FxHashMap<String, FxHashSet<IpAddr>>,
    owner_by_ip: FxHashMap<IpAddr, String>,
    cursor: FxHashMap<String, u128>,
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
                assert!(
                    network.subnet.contains(&ip),
                    "INV-8: {ip} allocated outside {}'s subnet {}",
                    network.name,
                    network.subnet
                );
                let previous = self.owner_by_ip.insert(ip, lserver.to_string());
                assert!(
                    previous.is_none(),
                    "INV-8: {ip} allocated to {lserver} while {} holds it",
                    previous.unwrap_or_default()
                );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NetworkRole;
    use std::collections::HashSet;

    fn quarantine(subnet: &str) -> Network {
        Network {
            name: "q".into(),
            role: NetworkRole::Quarantine,
            vlan: 999,
            subnet: subnet.parse().unwrap(),
        }
    }

    #[test]
    fn inv8_allocations_stay_inside_the_subnet_skip_reserved_addresses_and_never_repeat() {
        let net = quarantine("10.9.0.0/29");
        let mut allocator = Allocator::default();
        let mut seen = HashSet::new();
        while let Some(ip) = allocator.allocate(&net, "/t/a") {
            assert!(net.subnet.contains(&ip), "{ip}");
            assert!(seen.insert(ip), "{ip} handed out twice");
        }
        // .0 network, .1 gateway, .7 broadcast: .2 to .6 only.
        let mut got: Vec<IpAddr> = seen.into_iter().collect();
        got.sort();
        let want: Vec<IpAddr> = (2..=6)
            .map(|h| format!("10.9.0.{h}").parse().unwrap())
            .collect();
        assert_eq!(got, want);
        let freed: IpAddr = "10.9.0.4".parse().unwrap();
        allocator.free("q", freed);
        assert_eq!(allocator.allocate(&net, "/t/b"), Some(freed));
        assert_eq!(allocator.owner(freed), Some("/t/b"));
    }

    #[test]
    fn inv8_an_address_the_journal_holds_is_not_handed_out_again() {
        let net = quarantine("10.9.0.0/29");
        let mut allocator = Allocator::default();
        let held: IpAddr = "10.9.0.2".parse().unwrap();
        allocator.insert("q", held, "/t/a");
        let ip = allocator.allocate(&net, "/t/b").unwrap();
        assert_ne!(ip, held);
        assert_eq!(allocator.owner(held), Some("/t/a"));
    }
}
