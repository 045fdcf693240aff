//! Semantic checks of a parsed topology: names, references, addresses and limits.
//!
//! Serde already rejected unknown keys and bad types; what remains are the rules that need the
//! whole site (a NIC's network must exist, a quarantine subnet must hold every NIC that can be
//! moved to it, R6). Every problem carries its key path so the user gets file, line and key; the
//! reported one is the first in file order, so the same file always gives the same error.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

use super::generate::{generation_networks, usable_hosts, MAX_GENERATED};
use super::load::{key_path_string, KeySeg, Locator, TopologyError};
use super::topology::{
    AvKind, AvTransport, Network, NetworkRole, Topology, MAX_WATCH_CALLS_PER_SECOND,
    MIN_WATCH_INTERVAL,
};

/// A key path built from mixed segments: `at!("lservers", i, "nics", j, "ip")`.
macro_rules! at {
    ($($seg:expr),* $(,)?) => { vec![$(KeySeg::from($seg)),*] };
}

// Declared after `at!` so the macro is in scope there.
mod lservers;
#[cfg(test)]
pub(crate) mod tests;

/// One broken rule, at a key path.
struct Problem {
    path: Vec<KeySeg>,
    message: String,
}

/// Checks `t`, parsed from `source` (the text of `file`), and returns the first problem in file
/// order.
pub fn validate(file: &Path, source: &str, t: &Topology) -> Result<(), TopologyError> {
    first_error(file, source, Checker::run(t, false), usize::MAX)
}

/// Checks a topology after `[generate]` added L-Servers behind the `listed` ones of the file.
/// Problems of generated L-Servers are reported on the `[generate]` line, since the file has no
/// line for them.
pub fn validate_expanded(
    file: &Path,
    source: &str,
    t: &Topology,
    listed: usize,
) -> Result<(), TopologyError> {
    first_error(file, source, Checker::run(t, true), listed)
}

fn first_error(
    file: &Path,
    source: &str,
    problems: Vec<Problem>,
    listed: usize,
) -> Result<(), TopologyError> {
    if problems.is_empty() {
        return Ok(());
    }
    let locator = Locator::new(source);
    let generate_line = locator.line_of(&[KeySeg::from("generate")]);
    let located = problems.into_iter().map(|p| {
        let generated = match p.path.get(..2) {
            Some([KeySeg::Key(k), KeySeg::Index(i)]) => k == "lservers" && *i >= listed,
            _ => false,
        };
        if generated {
            let message = format!(
                "a generated L-Server breaks a rule ({}: {}); change `[generate]` or the \
                 listed L-Servers it collides with",
                key_path_string(&p.path),
                p.message
            );
            (generate_line, "generate".to_string(), message)
        } else {
            let line = locator.line_of(&p.path);
            (line, key_path_string(&p.path), p.message)
        }
    });
    // Stable minimum: among problems on the same line the first one found wins.
    let (line, key, message) = located
        .min_by_key(|(line, _, _)| line.unwrap_or(usize::MAX))
        .unwrap_or((None, String::new(), String::new()));
    Err(TopologyError {
        file: file.to_path_buf(),
        line,
        key,
        message,
    })
}

/// Collects every problem of one topology.
struct Checker<'t> {
    t: &'t Topology,
    networks: HashMap<&'t str, (usize, &'t Network)>,
    problems: Vec<Problem>,
}

impl<'t> Checker<'t> {
    /// `expanded`: `[generate]` was already applied, so its L-Servers are in `t.lservers` and
    /// must not be counted twice.
    fn run(t: &'t Topology, expanded: bool) -> Vec<Problem> {
        let mut c = Checker {
            t,
            networks: HashMap::new(),
            problems: Vec::new(),
        };
        if t.name.trim().is_empty() {
            c.bad(
                at!("name"),
                "the site name is empty; give the site a name".into(),
            );
        }
        c.networks();
        c.quarantine_map();
        c.capacity(expanded);
        c.devices();
        c.tenants();
        c.lservers();
        c.policy();
        c.engine();
        if !expanded {
            c.generate();
        }
        c.problems
    }

    fn bad(&mut self, path: Vec<KeySeg>, message: String) {
        self.problems.push(Problem { path, message });
    }

    /// Whether `name` is among `names`, the entries of `[[table]]`; if not, reports at `path`
    /// that the `what` it refers to does not exist ([`undefined`]).
    fn defined<'a>(
        &mut self,
        path: Vec<KeySeg>,
        what: &str,
        name: &str,
        table: &str,
        names: impl Iterator<Item = &'a String> + Clone,
    ) -> bool {
        let found = names.clone().any(|n| n == name);
        if !found {
            self.bad(path, undefined(what, name, table, names));
        }
        found
    }

    fn network(&self, name: &str) -> Option<(usize, &'t Network)> {
        self.networks.get(name).copied()
    }

    fn networks(&mut self) {
        let mut vlans: HashMap<u16, usize> = HashMap::new();
        for (i, n) in self.t.networks.iter().enumerate() {
            if n.name.trim().is_empty() {
                self.bad(
                    at!("networks", i, "name"),
                    "the network name is empty".into(),
                );
            }
            if let Some((j, _)) = self.network(&n.name) {
                let msg = format!("network name `{}` is already used by networks[{j}]", n.name);
                self.bad(at!("networks", i, "name"), msg);
            } else {
                self.networks.insert(&n.name, (i, n));
            }
            if !(1..=4094).contains(&n.vlan) {
                let msg = format!("VLAN {} is out of range; use 1 to 4094", n.vlan);
                self.bad(at!("networks", i, "vlan"), msg);
            } else if let Some(&j) = vlans.get(&n.vlan) {
                let msg = format!(
                    "VLAN {} is already used by networks[{j}] (`{}`); every network needs its \
                     own VLAN",
                    n.vlan, self.t.networks[j].name
                );
                self.bad(at!("networks", i, "vlan"), msg);
            } else {
                vlans.insert(n.vlan, i);
            }
            if n.subnet != n.subnet.trunc() {
                let msg = format!(
                    "subnet {} has host bits set; write {}",
                    n.subnet,
                    n.subnet.trunc()
                );
                self.bad(at!("networks", i, "subnet"), msg);
            }
            // Overlapping subnets would let a quarantine IP equal some NIC's operation IP.
            if let Some((j, other)) = self.t.networks[..i].iter().enumerate().find(|(_, o)| {
                o.subnet.contains(&n.subnet.network()) || n.subnet.contains(&o.subnet.network())
            }) {
                let msg = format!(
                    "subnet {} overlaps subnet {} of networks[{j}] (`{}`); networks must not \
                     share addresses",
                    n.subnet, other.subnet, other.name
                );
                self.bad(at!("networks", i, "subnet"), msg);
            }
        }
    }

    fn quarantine_map(&mut self) {
        for (op, qr) in &self.t.quarantine_map {
            let path = at!("quarantine_map", op);
            match self.network(op) {
                None => self.bad(
                    path.clone(),
                    format!(
                        "network `{op}` does not exist; keys of [quarantine_map] are operation \
                     networks from [[networks]]"
                    ),
                ),
                Some((_, n)) if n.role != NetworkRole::Operation => self.bad(
                    path.clone(),
                    format!(
                        "`{op}` is a quarantine network; keys of [quarantine_map] must be \
                     operation networks"
                    ),
                ),
                Some(_) => {}
            }
            match self.network(qr) {
                None => self.bad(
                    path,
                    format!(
                        "maps `{op}` to `{qr}`, which does not exist; define it in [[networks]] \
                     with role = \"quarantine\""
                    ),
                ),
                Some((_, n)) if n.role != NetworkRole::Quarantine => self.bad(
                    path,
                    format!(
                        "maps `{op}` to `{qr}`, which is an operation network; map it to a \
                     network with role = \"quarantine\""
                    ),
                ),
                Some(_) => {}
            }
        }
    }

    /// R6: every NIC that can be moved to a quarantine network needs its own address there.
    fn capacity(&mut self, expanded: bool) {
        let mut needed: HashMap<&str, u128> = HashMap::new();
        let mut sources: HashMap<&str, Vec<&str>> = HashMap::new();
        for (op, qr) in &self.t.quarantine_map {
            let op_ok = self
                .network(op)
                .is_some_and(|(_, n)| n.role == NetworkRole::Operation);
            let qr_ok = self
                .network(qr)
                .is_some_and(|(_, n)| n.role == NetworkRole::Quarantine);
            if op_ok && qr_ok {
                sources.entry(qr.as_str()).or_default().push(op.as_str());
            }
        }
        for nic in self.t.lservers.iter().flat_map(|ls| &ls.nics) {
            if let Some(qr) = self.t.quarantine_map.get(&nic.network) {
                if sources
                    .get(qr.as_str())
                    .is_some_and(|ops| ops.contains(&nic.network.as_str()))
                {
                    *needed.entry(qr.as_str()).or_default() += 1;
                }
            }
        }
        let mut generated = 0u128;
        if let (false, Some(g), Some((_, qr))) =
            (expanded, self.t.generate, generation_networks(self.t))
        {
            generated = u128::from(g.virtual_count) + u128::from(g.physical_count);
            // Over the limit, the limit is the error to report, not the capacity.
            if generated > u128::from(MAX_GENERATED) {
                generated = 0;
            }
            *needed.entry(qr.name.as_str()).or_default() += generated;
        }
        for (i, n) in self.t.networks.iter().enumerate() {
            let need = needed.get(n.name.as_str()).copied().unwrap_or(0);
            let have = usable_hosts(&n.subnet);
            if n.role != NetworkRole::Quarantine || need <= have {
                continue;
            }
            let from = sources
                .get(n.name.as_str())
                .cloned()
                .unwrap_or_default()
                .join("`, `");
            let counted = if generated > 0
                && generation_networks(self.t).is_some_and(|(_, q)| q.name == n.name)
            {
                format!(" ({generated} of them from [generate])")
            } else {
                String::new()
            };
            let msg = format!(
                "quarantine network `{}` ({}) has {} (network, first and broadcast addresses \
                 excluded) but {}{counted} on operation networks mapped to it (`{from}`) need one \
                 each; use a subnet of at least /{}",
                n.name,
                n.subnet,
                plural(have, "usable address", "usable addresses"),
                plural(need, "NIC", "NICs"),
                smallest_prefix(&n.subnet, need)
            );
            self.bad(at!("networks", i, "subnet"), msg);
        }
    }

    /// Faults and detections name devices, so all device kinds share one namespace.
    fn devices(&mut self) {
        let t = self.t;
        let mut names: HashMap<&str, String> = HashMap::new();
        let mut claim = |c: &mut Self, list: &str, i: usize, name: &'t str| {
            if name.trim().is_empty() {
                c.bad(at!(list, i, "name"), "the device name is empty".into());
            } else if let Some(first) = names.get(name) {
                c.bad(
                    at!(list, i, "name"),
                    format!(
                    "device name `{name}` is already used by {first}; av_servers, hypervisors, \
                     switches and bmcs share one namespace"
                ),
                );
            } else {
                names.insert(name, format!("{list}[{i}]"));
            }
        };
        for (i, a) in t.av_servers.iter().enumerate() {
            claim(self, "av_servers", i, &a.name);
            if a.transport == AvTransport::EpoApi && a.kind != AvKind::Epo {
                let msg = format!(
                    "transport `epo_api` is the ePO Web API; a `{kind}` server sends syslog \
                     (`syslog_udp`, `syslog_tcp`) or calls the API (`api`)",
                    kind = match a.kind {
                        AvKind::Officescan => "officescan",
                        AvKind::Sepm => "sepm",
                        AvKind::Epo => "epo",
                    }
                );
                self.bad(at!("av_servers", i, "transport"), msg);
            }
        }
        for (i, h) in t.hypervisors.iter().enumerate() {
            claim(self, "hypervisors", i, &h.name);
            self.at_least_one(at!("hypervisors", i, "max_concurrent"), h.max_concurrent);
            let mut ids: HashMap<&str, &str> = HashMap::new();
            for (net, pg) in &h.portgroups {
                let path = at!("hypervisors", i, "portgroups", net);
                if self.network(net).is_none() {
                    let msg = format!(
                        "network `{net}` does not exist; define it in [[networks]] or remove \
                         this port group"
                    );
                    self.bad(path.clone(), msg);
                }
                if let Some(other) = ids.insert(pg, net) {
                    let msg = format!(
                        "port group `{pg}` is already used for network `{other}`; each network \
                         needs its own port group"
                    );
                    self.bad(path, msg);
                }
            }
        }
        for (i, s) in t.switches.iter().enumerate() {
            claim(self, "switches", i, &s.name);
            self.at_least_one(at!("switches", i, "max_concurrent"), s.max_concurrent);
            self.at_least_one(at!("switches", i, "max_batch"), s.max_batch);
        }
        for (i, b) in t.bmcs.iter().enumerate() {
            claim(self, "bmcs", i, &b.name);
            self.at_least_one(at!("bmcs", i, "max_concurrent"), b.max_concurrent);
        }
    }

    fn at_least_one(&mut self, path: Vec<KeySeg>, value: u32) {
        if value == 0 {
            self.bad(path, "must be at least 1".into());
        }
    }

    fn tenants(&mut self) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, tenant) in self.t.tenants.iter().enumerate() {
            if tenant.name.trim().is_empty() {
                self.bad(at!("tenants", i, "name"), "the tenant name is empty".into());
            } else if let Some(j) = names.insert(&tenant.name, i) {
                names.insert(&tenant.name, j);
                let msg = format!(
                    "tenant name `{}` is already used by tenants[{j}]",
                    tenant.name
                );
                self.bad(at!("tenants", i, "name"), msg);
            }
            if let Some(email) = &tenant.email {
                if !looks_like_email(email) {
                    let msg = format!(
                        "`{email}` is not an email address; write e.g. \"admin@example.com\" \
                         or remove `email` to disable email for this tenant"
                    );
                    self.bad(at!("tenants", i, "email"), msg);
                }
            }
        }
    }

    fn policy(&mut self) {
        let p = &self.t.policy;
        for (i, k) in p.excluded_threat_keywords.iter().enumerate() {
            if k.trim().is_empty() {
                let msg = "an empty keyword matches every threat and would disable every \
                           action; remove it";
                self.bad(at!("policy", "excluded_threat_keywords", i), msg.into());
            }
        }
        for k in p.actions.keys() {
            if !k.starts_with('/') {
                let msg = format!(
                    "`{k}` is not an L-Server path or folder; keys start with `/`, e.g. \
                     \"/tenant-a\""
                );
                self.bad(at!("policy", "actions", k), msg);
            }
        }
    }

    fn engine(&mut self) {
        let e = &self.t.engine;
        if e.call_timeout.is_zero() {
            self.bad(
                at!("engine", "call_timeout"),
                "must be longer than 0s (R19: every device call has a timeout)".into(),
            );
        }
        if e.operation_deadline < e.call_timeout {
            let msg = format!(
                "operation_deadline ({}) is shorter than call_timeout ({}); an operation must \
                 allow at least one device call",
                humantime::format_duration(e.operation_deadline),
                humantime::format_duration(e.call_timeout)
            );
            self.bad(at!("engine", "operation_deadline"), msg);
        }
        if e.watch_interval < MIN_WATCH_INTERVAL {
            self.bad(
                at!("engine", "watch_interval"),
                format!(
                    "{} is too short; the drift watch (R20) re-reads every quarantined NIC at \
                     most every {} (it cannot be turned off)",
                    humantime::format_duration(e.watch_interval),
                    humantime::format_duration(MIN_WATCH_INTERVAL)
                ),
            );
        }
        if !(1..=MAX_WATCH_CALLS_PER_SECOND).contains(&e.watch_calls_per_second) {
            self.bad(
                at!("engine", "watch_calls_per_second"),
                format!(
                    "{} is out of range; use 1 to {MAX_WATCH_CALLS_PER_SECOND} drift-watch reads \
                     per second and device",
                    e.watch_calls_per_second
                ),
            );
        }
        if !(1..=100).contains(&e.retry.attempts) {
            self.bad(
                at!("engine", "retry", "attempts"),
                format!(
                    "{} attempts is out of range; use 1 to 100 (the first attempt counts)",
                    e.retry.attempts
                ),
            );
        }
    }

    fn generate(&mut self) {
        let t = self.t;
        let Some(g) = t.generate else { return };
        let total = u64::from(g.virtual_count) + u64::from(g.physical_count);
        if total == 0 {
            return;
        }
        if total > MAX_GENERATED {
            self.bad(
                at!("generate"),
                format!("asks for {total} L-Servers; at most {MAX_GENERATED} can be generated"),
            );
            return;
        }
        if g.virtual_count > 0 && t.hypervisors.is_empty() {
            self.bad(
                at!("generate", "virtual"),
                "generated virtual L-Servers need at least one entry in [[hypervisors]]".into(),
            );
        }
        if g.physical_count > 0 && t.switches.is_empty() {
            self.bad(
                at!("generate", "physical"),
                "generated physical L-Servers need at least one entry in [[switches]]".into(),
            );
        }
        let Some((op, qr)) = generation_networks(t) else {
            let msg = "generated L-Servers need an operation network mapped to a quarantine \
                       network in [quarantine_map]";
            self.bad(at!("generate"), msg.into());
            return;
        };
        if g.virtual_count > 0 {
            for h in &t.hypervisors {
                if !(h.portgroups.contains_key(&op.name) && h.portgroups.contains_key(&qr.name)) {
                    let msg = format!(
                        "hypervisor `{}` lacks a port group for `{}` or `{}`; generated VMs \
                         are spread over all hypervisors, so each needs both",
                        h.name, op.name, qr.name
                    );
                    self.bad(at!("generate", "virtual"), msg);
                }
            }
        }
        let listed: HashSet<IpAddr> = t
            .lservers
            .iter()
            .flat_map(|ls| &ls.nics)
            .map(|n| n.ip)
            .filter(|ip| host_address_problem(&op.subnet, *ip, "").is_none())
            .collect();
        let free = usable_hosts(&op.subnet).saturating_sub(listed.len() as u128);
        if u128::from(total) > free {
            let msg = format!(
                "asks for {total} L-Servers but operation network `{}` ({}) has only {free} \
                 free host addresses; use a larger subnet or generate fewer",
                op.name, op.subnet
            );
            self.bad(at!("generate"), msg);
        }
    }
}

/// Why `ip` cannot be a host of `subnet`, if it cannot.
fn host_address_problem(subnet: &IpNet, ip: IpAddr, name: &str) -> Option<String> {
    let subnet = subnet.trunc();
    if !subnet.contains(&ip) {
        return Some(format!(
            "IP {ip} is outside subnet {subnet} of network `{name}`"
        ));
    }
    let special = if ip == subnet.network() {
        "network"
    } else if matches!(subnet, IpNet::V4(_)) && subnet.prefix_len() < 31 && ip == subnet.broadcast()
    {
        "broadcast"
    } else {
        return None;
    };
    Some(format!(
        "IP {ip} is the {special} address of subnet {subnet} of network `{name}`; use a host \
         address"
    ))
}

/// `user@domain`: one `@` with text on both sides and no spaces.
fn looks_like_email(text: &str) -> bool {
    match text.split_once('@') {
        Some((user, domain)) => {
            !user.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !text.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

/// The longest prefix whose subnet holds `need` usable addresses.
fn smallest_prefix(subnet: &IpNet, need: u128) -> u8 {
    let max = subnet.max_prefix_len();
    (0..=max)
        .rev()
        .find(|&p| IpNet::new(subnet.network(), p).is_ok_and(|n| usable_hosts(&n) >= need))
        .unwrap_or(0)
}

/// `"1 NIC"`, `"3 NICs"`.
fn plural(n: u128, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A reference to `name` that `[[table]]` does not define: ``"{what} `{name}` does not exist;
/// define it in [[table]]"`` with the names it does define ([`known`]).
fn undefined<'a>(
    what: &str,
    name: &str,
    table: &str,
    names: impl Iterator<Item = &'a String>,
) -> String {
    format!(
        "{what} `{name}` does not exist; define it in [[{table}]]{}",
        known(names)
    )
}

/// `" (known: a, b)"` to help spot a typo, or `" (none defined)"`.
fn known<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).take(8).collect();
    if names.is_empty() {
        " (none defined)".to_string()
    } else {
        format!(" (known: {})", names.join(", "))
    }
}
