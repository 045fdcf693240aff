//! What a read of device truth gave, in the topology's terms.

use crate::model::Site;

/// What a read of a NIC's device truth gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Truth {
    /// On this network of the topology.
    Network(String),
    /// On something the topology does not name (a foreign port group or VLAN).
    Foreign(String),
    /// The read failed.
    Unknown,
}

impl Truth {
    pub fn network(&self) -> Option<&str> {
        match self {
            Truth::Network(n) => Some(n),
            _ => None,
        }
    }

    /// The network a NIC's record says the device last showed, after this read: a failed read
    /// leaves what the engine knew `before` (R8: evidence changes only with a read that
    /// answers, or a write; a write that may have landed is kept apart, in `last_write`).
    pub fn evidence_after(&self, before: Option<&str>) -> Option<String> {
        match self {
            Truth::Unknown => before.map(str::to_string),
            known => known.network().map(str::to_string),
        }
    }

    /// What a hypervisor's answer `portgroup` stands for.
    pub fn of_portgroup(site: &Site, hypervisor: &str, portgroup: String) -> Truth {
        match site.network_by_portgroup(hypervisor, &portgroup) {
            Some(n) => Truth::Network(n.name.clone()),
            None => Truth::Foreign(portgroup),
        }
    }

    /// What a switch's answer `vlan` stands for.
    pub fn of_vlan(site: &Site, vlan: u16) -> Truth {
        match site.network_by_vlan(vlan) {
            Some(n) => Truth::Network(n.name.clone()),
            None => Truth::Foreign(format!("vlan {vlan}")),
        }
    }

    /// How the alert detail names it.
    pub fn describe(&self) -> String {
        match self {
            Truth::Network(n) => n.clone(),
            Truth::Foreign(v) => format!("foreign({v})"),
            Truth::Unknown => "unknown".into(),
        }
    }
}
