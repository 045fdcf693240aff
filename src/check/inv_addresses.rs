//! INV-8 addresses: quarantine IPs are unique per network, inside its subnet, never its
//! network, first (gateway) or broadcast address, and freed by rollback and release.

use super::hash::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

use super::facts::{Facts, Problems};
use super::InvariantVerdict;

/// L-Server states that keep quarantine IPs (R9; R14 for NICs a release could not bring back).
const HOLDING_STATES: [&str; 2] = ["quarantined", "release_failed"];

fn as_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Whether a NIC of `lserver` is still recorded on `network` with `ip`: a restore that failed
/// (R20) keeps the records on quarantine, and with them their addresses.
fn recorded_on(f: &Facts<'_>, lserver: &str, network: &str, ip: IpAddr) -> bool {
    f.final_nics(lserver)
        .iter()
        .any(|n| n.managed_network == network && n.managed_ip == ip)
}

/// Why `ip` may not be handed out from `subnet`, if it may not.
fn reserved(subnet: &IpNet, ip: IpAddr) -> Option<&'static str> {
    if !subnet.contains(&ip) {
        return Some("outside the subnet");
    }
    let network = as_u128(subnet.network());
    let value = as_u128(ip);
    if value == network {
        Some("the network address")
    } else if value == network.saturating_add(1) {
        Some("the first (gateway) address")
    } else if matches!(subnet, IpNet::V4(_)) && ip == subnet.broadcast() {
        // IPv6 has no broadcast; the engine hands out the last address there.
        Some("the broadcast address")
    } else {
        None
    }
}

/// INV-8, from the final allocations and management records.
pub(crate) fn addresses(f: &Facts<'_>) -> InvariantVerdict {
    let mut problems = Problems::new();
    let mut seen: HashSet<(&str, IpAddr)> = HashSet::default();
    let mut checked = 0;
    for (network, ip, lserver) in &f.run.allocations {
        checked += 1;
        if !seen.insert((network, *ip)) {
            problems.push(format!("{ip} allocated twice on {network}"));
        }
        match f.site.network(network) {
            None => problems.push(format!("{ip} allocated on unknown network {network}")),
            Some(net) if !f.is_quarantine(Some(network)) => problems.push(format!(
                "{ip} allocated on {}, not a quarantine network",
                net.name
            )),
            Some(net) => {
                if let Some(why) = reserved(&net.subnet, *ip) {
                    problems.push(format!(
                        "{ip} allocated on {network} is {why} {}",
                        net.subnet
                    ));
                }
            }
        }
        let holder = f.final_lserver(lserver);
        let holds = holder.is_some_and(|l| {
            HOLDING_STATES.contains(&l.state.as_str())
                // An operation still under way holds its plan's IPs; INV-10 reports it.
                || l.pending_operations > 0
        }) || recorded_on(f, lserver, network, *ip);
        if !holds {
            let state = holder.map_or("unknown", |l| l.state.as_str());
            problems.push(format!(
                "{ip} on {network} still allocated to {lserver}, which is {state}"
            ));
        }
    }
    // The other direction: a NIC recorded on quarantine must own its IP (R9). Indexed, not
    // scanned per NIC: a 100,000-L-Server run has as many allocations.
    let owners: HashSet<(&str, IpAddr, &str)> = f
        .run
        .allocations
        .iter()
        .map(|(net, ip, l)| (net.as_str(), *ip, l.as_str()))
        .collect();
    for ls in &f.run.lservers {
        if !HOLDING_STATES.contains(&ls.state.as_str()) {
            continue;
        }
        for n in f.final_nics(&ls.path) {
            if !f.is_quarantine(Some(&n.managed_network)) {
                continue;
            }
            checked += 1;
            let owned =
                owners.contains(&(n.managed_network.as_str(), n.managed_ip, ls.path.as_str()));
            if !owned {
                problems.push(format!(
                    "{} nic {} recorded on {} {} without an allocation",
                    ls.path, n.nic.nic, n.managed_network, n.managed_ip
                ));
            }
        }
    }
    problems.verdict("INV-8", checked, "quarantine addresses")
}
