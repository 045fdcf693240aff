//! `[generate]`: appends many L-Servers to a topology without listing them, deterministically,
//! so a 2 500-VM site is a ten-line file and every run of the lab sees the same site.
//!
//! Virtual L-Servers are `/generated/vdi-00001`… spread round-robin over the hypervisors;
//! physical ones are `/generated/sbc-00001`… spread round-robin over the switches on ports
//! `Ethernet1/1`, `Ethernet1/2`, … of each switch. All get one NIC on the first operation network
//! that has a quarantine mapping, with the next free host address of its subnet.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

use super::detection::normalize_mac;
use super::topology::{LServerKind, LServerSpec, Network, NetworkRole, NicSpec, Topology};

/// Most L-Servers `[generate]` may add: beyond this a site is a typo, not a test.
pub const MAX_GENERATED: u64 = 100_000;

/// The network generated NICs live on and the quarantine network it maps to: the first
/// operation network, in file order, whose `quarantine_map` entry names a quarantine network.
pub fn generation_networks(t: &Topology) -> Option<(&Network, &Network)> {
    t.networks
        .iter()
        .filter(|n| n.role == NetworkRole::Operation)
        .find_map(|op| {
            let target = t.quarantine_map.get(&op.name)?;
            let qr = t
                .networks
                .iter()
                .find(|n| &n.name == target && n.role == NetworkRole::Quarantine)?;
            Some((op, qr))
        })
}

/// Appends the L-Servers `[generate]` asks for; leaves everything else as it is.
///
/// Fails with a message fit for the user when the site cannot hold them (no hypervisor, no
/// switch, no mapped operation network, operation subnet exhausted).
pub fn expand(mut t: Topology) -> Result<Topology, String> {
    let Some(spec) = t.generate else {
        return Ok(t);
    };
    let virtual_count = u64::from(spec.virtual_count);
    let physical_count = u64::from(spec.physical_count);
    if virtual_count + physical_count == 0 {
        return Ok(t);
    }
    if virtual_count + physical_count > MAX_GENERATED {
        return Err(format!(
            "asks for {} L-Servers; at most {MAX_GENERATED} can be generated",
            virtual_count + physical_count
        ));
    }
    if virtual_count > 0 && t.hypervisors.is_empty() {
        return Err("`virtual` needs at least one entry in `[[hypervisors]]`".into());
    }
    if physical_count > 0 && t.switches.is_empty() {
        return Err("`physical` needs at least one entry in `[[switches]]`".into());
    }
    let network = generation_networks(&t)
        .map(|(op, _)| op.clone())
        .ok_or_else(|| {
            "generated L-Servers need an operation network mapped to a quarantine network in \
             `[quarantine_map]`; add one"
                .to_string()
        })?;

    let mut used_ips: HashSet<IpAddr> = HashSet::new();
    let mut used_macs: HashSet<String> = HashSet::new();
    let mut used_ports: HashSet<(String, String)> = HashSet::new();
    for ls in &t.lservers {
        for nic in &ls.nics {
            used_ips.insert(nic.ip);
            used_macs.insert(normalize_mac(&nic.mac).unwrap_or_else(|| nic.mac.clone()));
            if let (Some(sw), Some(port)) = (&nic.switch, &nic.port) {
                used_ports.insert((sw.clone(), port.clone()));
            }
        }
    }
    let mut hosts = HostAddresses::new(network.subnet);
    let mut next_ip = |used: &mut HashSet<IpAddr>| -> Result<IpAddr, String> {
        let ip = hosts
            .by_ref()
            .find(|ip| !used.contains(ip))
            .ok_or_else(|| {
                format!(
                    "operation network `{}` ({}) has no free host address left for the generated \
                 L-Servers; use a larger subnet or generate fewer",
                    network.name, network.subnet
                )
            })?;
        used.insert(ip);
        Ok(ip)
    };
    let mut mac_counter = MacCounter::default();

    let mut added = Vec::new();
    for k in 0..virtual_count {
        let n = k + 1;
        let hypervisor = &t.hypervisors[(k % t.hypervisors.len() as u64) as usize];
        added.push(LServerSpec {
            path: format!("/generated/vdi-{n:05}"),
            tenant: None,
            kind: LServerKind::Virtual,
            hypervisor: Some(hypervisor.name.clone()),
            vm: Some(format!("vm-g{n:05}")),
            bmc: None,
            hostname: Some(format!("GEN-VDI-{n:05}")),
            nics: vec![NicSpec {
                network: network.name.clone(),
                ip: next_ip(&mut used_ips)?,
                mac: mac_counter.next(0x00, &mut used_macs)?,
                device: Some("4000".to_string()),
                switch: None,
                port: None,
            }],
        });
    }
    let mut next_port = vec![1u64; t.switches.len()];
    for k in 0..physical_count {
        let n = k + 1;
        let s = (k % t.switches.len().max(1) as u64) as usize;
        let switch = t.switches[s].name.clone();
        // Ports already cabled to listed servers are skipped, not shared.
        let port = loop {
            let candidate = format!("Ethernet1/{}", next_port[s]);
            next_port[s] += 1;
            if used_ports.insert((switch.clone(), candidate.clone())) {
                break candidate;
            }
        };
        added.push(LServerSpec {
            path: format!("/generated/sbc-{n:05}"),
            tenant: None,
            kind: LServerKind::Physical,
            hypervisor: None,
            vm: None,
            bmc: None,
            hostname: Some(format!("GEN-SBC-{n:05}")),
            nics: vec![NicSpec {
                network: network.name.clone(),
                ip: next_ip(&mut used_ips)?,
                mac: mac_counter.next(0x01, &mut used_macs)?,
                device: None,
                switch: Some(switch),
                port: Some(port),
            }],
        });
    }
    t.lservers.extend(added);
    Ok(t)
}

/// Locally administered MACs `02:<kind>:00:00:00:01`…, skipping ones the file already uses.
#[derive(Default)]
struct MacCounter {
    next: [u32; 2],
}

impl MacCounter {
    fn next(&mut self, kind: u8, used: &mut HashSet<String>) -> Result<String, String> {
        let counter = &mut self.next[usize::from(kind & 1)];
        loop {
            *counter += 1;
            if *counter > 0x00ff_ffff {
                return Err("ran out of generated MAC addresses".into());
            }
            let [_, a, b, c] = counter.to_be_bytes();
            let mac = format!("02:{kind:02x}:00:{a:02x}:{b:02x}:{c:02x}");
            if used.insert(mac.clone()) {
                return Ok(mac);
            }
        }
    }
}

/// Host addresses of a subnet in ascending order, without the network address, the first
/// address (the gateway by convention) and, for IPv4, the broadcast address: the same rule R6
/// applies to quarantine addresses.
pub struct HostAddresses {
    next: u128,
    last: u128,
    v4: bool,
    done: bool,
}

impl HostAddresses {
    /// All usable host addresses of `subnet`.
    pub fn new(subnet: IpNet) -> HostAddresses {
        let (first, last, v4) = match subnet.trunc() {
            IpNet::V4(n) => (
                u128::from(u32::from(n.network())),
                u128::from(u32::from(n.broadcast())).saturating_sub(1),
                true,
            ),
            IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast()), false),
        };
        HostAddresses {
            next: first.saturating_add(2),
            last,
            v4,
            done: false,
        }
    }
}

impl Iterator for HostAddresses {
    type Item = IpAddr;

    fn next(&mut self) -> Option<IpAddr> {
        if self.done || self.next > self.last {
            return None;
        }
        let value = self.next;
        // Only the very last IPv6 address has no successor: stop instead of wrapping.
        match self.next.checked_add(1) {
            Some(n) => self.next = n,
            None => self.done = true,
        }
        if self.v4 {
            let v = u32::try_from(value).ok()?;
            Some(IpAddr::V4(v.into()))
        } else {
            Some(IpAddr::V6(value.into()))
        }
    }
}

/// How many addresses [`HostAddresses`] yields for `subnet` (saturating at `u128::MAX`).
pub fn usable_hosts(subnet: &IpNet) -> u128 {
    let host_bits = u32::from(subnet.max_prefix_len() - subnet.prefix_len());
    // Offset of the last address: size - 1, which fits in u128 even for ::/0.
    let last = match 1u128.checked_shl(host_bits) {
        Some(size) => size - 1,
        None => u128::MAX,
    };
    match subnet {
        IpNet::V4(_) => last.saturating_sub(2),
        IpNet::V6(_) => last.saturating_sub(1),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::model::load::load_topology_str;
    use crate::model::validate::tests::{generated, SW, VC};

    /// Parses without validating, so `expand` itself is what is tested.
    fn parse(source: &str) -> Topology {
        toml::from_str(source).expect("test topology parses")
    }

    #[test]
    fn virtual_lservers_are_numbered_and_spread_round_robin() {
        let vc2 = VC.replace("vc-1", "vc-2");
        let t = expand(parse(&generated(&format!("{VC}{vc2}"), "virtual = 3"))).unwrap();
        let got: Vec<_> = t
            .lservers
            .iter()
            .map(|l| {
                let nic = &l.nics[0];
                (
                    l.path.as_str(),
                    l.hypervisor.as_deref().unwrap_or(""),
                    l.vm.as_deref().unwrap_or(""),
                    l.hostname.as_deref().unwrap_or(""),
                    nic.ip.to_string(),
                    nic.mac.as_str(),
                    nic.device.as_deref().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "/generated/vdi-00001",
                    "vc-1",
                    "vm-g00001",
                    "GEN-VDI-00001",
                    "10.110.0.2".to_string(),
                    "02:00:00:00:00:01",
                    "4000"
                ),
                (
                    "/generated/vdi-00002",
                    "vc-2",
                    "vm-g00002",
                    "GEN-VDI-00002",
                    "10.110.0.3".to_string(),
                    "02:00:00:00:00:02",
                    "4000"
                ),
                (
                    "/generated/vdi-00003",
                    "vc-1",
                    "vm-g00003",
                    "GEN-VDI-00003",
                    "10.110.0.4".to_string(),
                    "02:00:00:00:00:03",
                    "4000"
                ),
            ]
        );
        assert!(t.lservers.iter().all(|l| l.tenant.is_none()));
    }

    #[test]
    fn expansion_is_deterministic() {
        let source = generated(&format!("{VC}{SW}"), "virtual = 40\nphysical = 7");
        assert_eq!(expand(parse(&source)), expand(parse(&source)));
    }

    #[test]
    fn physical_lservers_get_ports_per_switch_skipping_used_ones() {
        let sw2 = SW.replace("sw-1", "sw-2");
        let listed =
            "[[lservers]]\npath = \"/listed/sbc\"\nkind = \"physical\"\nnics = [ { network = \
            \"op-a\", ip = \"10.110.0.3\", mac = \"02:01:00:00:00:01\", switch = \"sw-1\", port = \
            \"Ethernet1/1\" } ]\n";
        let t = expand(parse(&generated(
            &format!("{SW}{sw2}{listed}"),
            "physical = 3",
        )))
        .unwrap();
        let got: Vec<_> = t.lservers[1..]
            .iter()
            .map(|l| {
                let nic = &l.nics[0];
                let at = format!(
                    "{}:{}",
                    nic.switch.as_deref().unwrap_or(""),
                    nic.port.as_deref().unwrap_or("")
                );
                (l.path.as_str(), at, nic.ip.to_string(), nic.mac.as_str())
            })
            .collect();
        // sw-1's Ethernet1/1, the IP .3 and MAC 02:01:..:01 are taken by the listed server.
        assert_eq!(
            got,
            [
                (
                    "/generated/sbc-00001",
                    "sw-1:Ethernet1/2".to_string(),
                    "10.110.0.2".to_string(),
                    "02:01:00:00:00:02"
                ),
                (
                    "/generated/sbc-00002",
                    "sw-2:Ethernet1/1".to_string(),
                    "10.110.0.4".to_string(),
                    "02:01:00:00:00:03"
                ),
                (
                    "/generated/sbc-00003",
                    "sw-1:Ethernet1/3".to_string(),
                    "10.110.0.5".to_string(),
                    "02:01:00:00:00:04"
                ),
            ]
        );
    }

    #[test]
    fn exhausted_operation_subnet_fails_clearly() {
        // A /29 has hosts .2 to .6: five.
        let source = generated(VC, "virtual = 6").replace("10.110.0.0/24", "10.110.0.0/29");
        let e = expand(parse(&source)).unwrap_err();
        assert!(
            e.contains("no free host address") && e.contains("op-a"),
            "{e}"
        );
        let source = generated(VC, "virtual = 5").replace("10.110.0.0/24", "10.110.0.0/29");
        assert_eq!(expand(parse(&source)).unwrap().lservers.len(), 5);
    }

    #[test]
    fn host_addresses_match_usable_hosts() {
        for subnet in [
            "10.0.0.0/24",
            "10.0.0.0/29",
            "10.0.0.0/30",
            "10.0.0.0/31",
            "10.0.0.0/32",
            "fd00::/125",
            "fd00::/127",
            "fd00::/128",
        ] {
            let net: IpNet = subnet.parse().unwrap();
            assert_eq!(
                HostAddresses::new(net).count() as u128,
                usable_hosts(&net),
                "{subnet}"
            );
        }
        let first: Vec<_> = HostAddresses::new("fd00::/126".parse().unwrap()).collect();
        assert_eq!(
            first,
            [
                "fd00::2".parse::<IpAddr>().unwrap(),
                "fd00::3".parse().unwrap()
            ]
        );
        assert_eq!(usable_hosts(&"::/0".parse().unwrap()), u128::MAX - 1);
    }

    #[test]
    fn generated_collision_with_a_listed_lserver_is_blamed_on_generate() {
        let listed =
            "[[lservers]]\npath = \"/generated/vdi-00001\"\nkind = \"virtual\"\nhypervisor = \
            \"vc-1\"\nvm = \"vm-x\"\nnics = [ { network = \"op-a\", ip = \"10.110.0.9\", mac = \
            \"00:50:56:00:00:09\" } ]\n";
        let source = generated(&format!("{VC}{listed}"), "virtual = 2");
        let e = load_topology_str(Path::new("gen.toml"), &source).unwrap_err();
        assert_eq!(e.key, "generate", "{e}");
        assert_eq!(
            e.line,
            source
                .lines()
                .position(|l| l == "[generate]")
                .map(|i| i + 1)
        );
        assert!(
            e.message.contains("lservers[1].path") && e.message.contains("/generated/vdi-00001"),
            "{e}"
        );
    }
}
