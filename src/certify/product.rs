//! `PRODUCT.toml`: what a vendor certifies (family, protocol, capabilities), what the suite may
//! touch (`[resources]`) and which checks it declares it cannot pass (`[[deviations]]`).
//!
//! Errors name the file, the line when known and the key, like the topology loader's (they are
//! the same [`TopologyError`] shape), and are input errors: `qlab certify` exits 2 on them.
//!
//! Decisions where the contract is silent:
//! - Switch resources are `ports` plus `vlans = { operation, quarantine }`; hypervisor
//!   resources are `vms = [{ vm, nic }]` plus `portgroups = { operation, quarantine }`; a BMC
//!   has an optional `system` (the Redfish system id; the only member when absent). A family's
//!   resources must be complete; another family's keys are refused.
//! - An AV feed product (`family = "av"`) names its transport as `protocol` (`syslog_udp`,
//!   `syslog_tcp`, `epo_api`, `api`) and its message format as `[resources] av_kind`
//!   (`officescan`, `sepm`, `epo`, as the topology's `av_servers` spell it); `epo_api` needs
//!   `av_kind = "epo"`. The suite registers one AV server of that kind in its own site.
//! - `absent_port` / `absent_vm` name an object that does not exist on the device, for the
//!   "unknown port/VM is rejected" checks (defaults `qlab-absent-port`, `qlab-absent-vm`).
//! - A deviation must name catalogue ids of the product's family and give a non-empty `why`.

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::checks;
use super::Family;
use crate::model::load::{locate, located_toml_error, KeySeg, TopologyError};
use crate::model::{AvKind, AvTransport};

/// The transports an AV feed product may name as its `protocol`.
pub const AV_PROTOCOLS: [&str; 4] = ["syslog_udp", "syslog_tcp", "epo_api", "api"];

/// Largest PRODUCT.toml read.
pub const MAX_PRODUCT_BYTES: u64 = 1024 * 1024;

/// Default name of a port that does not exist on the switch.
pub const DEFAULT_ABSENT_PORT: &str = "qlab-absent-port";
/// Default id of a VM that does not exist on the hypervisor manager.
pub const DEFAULT_ABSENT_VM: &str = "qlab-absent-vm";

/// A `PRODUCT.toml` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// Who makes the device.
    pub vendor: String,
    /// The device or software product.
    pub product: String,
    /// Firmware or software version certified.
    pub version: String,
    /// Adapter family.
    pub family: Family,
    /// Wire protocol (`vcenter`, `nxapi`, `eapi`, `restconf`, `redfish`), an AV feed's
    /// transport (`syslog_udp`, `syslog_tcp`, `epo_api`, `api`) or the plugin's name.
    pub protocol: String,
    /// What the device can do.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// What the suite may touch; restored afterwards.
    #[serde(default)]
    pub resources: Resources,
    /// Checks the product declares it does not pass, each with a reason.
    #[serde(default)]
    pub deviations: Vec<Deviation>,
}

/// `[capabilities]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Several port changes in one request (switches).
    #[serde(default)]
    pub batch: bool,
    /// The running config must be saved to survive a reboot (switches).
    #[serde(default)]
    pub persist: bool,
    /// Calls the device takes at once.
    #[serde(default = "one")]
    pub max_concurrent: u32,
}

fn one() -> u32 {
    1
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            batch: false,
            persist: false,
            max_concurrent: 1,
        }
    }
}

/// `vlans = { operation, quarantine }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VlanPair {
    /// The VLAN the ports carry in normal operation.
    pub operation: u16,
    /// The quarantine VLAN the suite moves them to.
    pub quarantine: u16,
}

/// `portgroups = { operation, quarantine }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortgroupPair {
    /// The port group the vNICs are backed by in normal operation.
    pub operation: String,
    /// The quarantine port group the suite moves them to.
    pub quarantine: String,
}

/// One vNIC the suite may move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmNic {
    /// VM id.
    pub vm: String,
    /// vNIC key.
    pub nic: String,
}

/// `[resources]`: the only objects the suite writes to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Switch access ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// Switch VLANs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlans: Option<VlanPair>,
    /// A port name that does not exist on the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absent_port: Option<String>,
    /// Hypervisor vNICs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vms: Vec<VmNic>,
    /// Hypervisor port groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portgroups: Option<PortgroupPair>,
    /// A VM id that does not exist on the hypervisor manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absent_vm: Option<String>,
    /// Redfish system id (BMC); the Systems collection's only member when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The AV server's kind, which picks its message format (AV feeds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub av_kind: Option<AvKind>,
}

impl Resources {
    /// The port that must not exist.
    pub fn absent_port(&self) -> &str {
        self.absent_port.as_deref().unwrap_or(DEFAULT_ABSENT_PORT)
    }

    /// The VM that must not exist.
    pub fn absent_vm(&self) -> &str {
        self.absent_vm.as_deref().unwrap_or(DEFAULT_ABSENT_VM)
    }
}

/// `[[deviations]]`: checks excused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Deviation {
    /// Check ids.
    pub checks: Vec<String>,
    /// The reason, shown in every report.
    pub why: String,
}

impl Product {
    /// The transport an AV feed product names as its `protocol`; `None` for other families.
    pub fn av_transport(&self) -> Option<AvTransport> {
        if self.family != Family::Av {
            return None;
        }
        [
            AvTransport::SyslogUdp,
            AvTransport::SyslogTcp,
            AvTransport::EpoApi,
            AvTransport::Api,
        ]
        .into_iter()
        .find(|t| t.as_str() == self.protocol)
    }

    /// Whether check `id` is excused by a deviation, and why.
    pub fn deviation_for(&self, id: &str) -> Option<&str> {
        self.deviations
            .iter()
            .find(|d| d.checks.iter().any(|c| c == id))
            .map(|d| d.why.as_str())
    }
}

/// Reads and validates `file`.
pub fn load_product(file: &Path) -> Result<(Product, String), TopologyError> {
    let whole = |message: String| TopologyError {
        file: file.to_path_buf(),
        line: None,
        key: String::new(),
        message,
    };
    let meta = std::fs::metadata(file).map_err(|e| whole(format!("cannot read: {e}")))?;
    if meta.len() > MAX_PRODUCT_BYTES {
        return Err(whole(format!(
            "{} bytes, more than the {MAX_PRODUCT_BYTES} a PRODUCT.toml may have",
            meta.len()
        )));
    }
    let source = std::fs::read_to_string(file).map_err(|e| whole(format!("cannot read: {e}")))?;
    let product = parse_product(file, &source)?;
    Ok((product, source))
}

/// Parses and validates PRODUCT.toml text; `file` names it in errors.
pub fn parse_product(file: &Path, source: &str) -> Result<Product, TopologyError> {
    let product: Product =
        toml::from_str(source).map_err(|e| located_toml_error(file, source, &e))?;
    validate(&product).map_err(|(key, message)| TopologyError {
        file: file.to_path_buf(),
        line: locate(source, &key),
        key: crate::model::load::key_path_string(&key),
        message,
    })?;
    Ok(product)
}

type KeyError = (Vec<KeySeg>, String);

fn key(parts: &[&str]) -> Vec<KeySeg> {
    parts.iter().map(|p| KeySeg::from(*p)).collect()
}

/// The first of `items` that `empty` says is empty or that is listed twice, refused under
/// `resources.<field>[i]`.
fn empty_or_twice<T: PartialEq>(
    field: &str,
    items: &[T],
    empty: impl Fn(&T) -> bool,
) -> Result<(), KeyError> {
    let bad = items
        .iter()
        .enumerate()
        .find(|(i, item)| items[..*i].contains(item) || empty(item));
    match bad {
        Some((i, _)) => Err((
            vec!["resources".into(), field.into(), i.into()],
            "empty or listed twice".into(),
        )),
        None => Ok(()),
    }
}

fn validate(p: &Product) -> Result<(), KeyError> {
    for (name, value) in [
        ("vendor", &p.vendor),
        ("product", &p.product),
        ("version", &p.version),
        ("protocol", &p.protocol),
    ] {
        if value.trim().is_empty() {
            return Err((key(&[name]), "must not be empty".into()));
        }
    }
    if p.capabilities.max_concurrent == 0 || p.capabilities.max_concurrent > 256 {
        return Err((
            key(&["capabilities", "max_concurrent"]),
            "must be 1 to 256".into(),
        ));
    }
    let r = &p.resources;
    let refuse = |field: &str, family: &str| -> KeyError {
        (
            key(&["resources", field]),
            format!(
                "`{field}` is a {family} resource; a {} product does not take it",
                p.family.as_str()
            ),
        )
    };
    // The first of `others` (resources of other families) that is set, refused.
    let only_own = |others: &[&str]| match others.iter().find(|field| present(r, field)) {
        Some(field) => Err(refuse(field, other_family(field))),
        None => Ok(()),
    };
    match p.family {
        Family::Switch => {
            if r.ports.is_empty() {
                return Err((
                    key(&["resources", "ports"]),
                    "list at least one access port the suite may move".into(),
                ));
            }
            let Some(v) = r.vlans else {
                return Err((
                    key(&["resources", "vlans"]),
                    "set `vlans = { operation = N, quarantine = M }`".into(),
                ));
            };
            for (field, vlan) in [("operation", v.operation), ("quarantine", v.quarantine)] {
                if !(1..=4094).contains(&vlan) {
                    return Err((
                        key(&["resources", "vlans", field]),
                        format!("VLAN {vlan}: use 1-4094"),
                    ));
                }
            }
            if v.operation == v.quarantine {
                return Err((
                    key(&["resources", "vlans", "quarantine"]),
                    "must differ from the operation VLAN".into(),
                ));
            }
            empty_or_twice("ports", &r.ports, |port| port.trim().is_empty())?;
            if r.ports.iter().any(|port| port == r.absent_port()) {
                return Err((
                    key(&["resources", "absent_port"]),
                    "names a listed port; it must name a port the device does not have".into(),
                ));
            }
            only_own(&["vms", "portgroups", "absent_vm", "system", "av_kind"])?;
        }
        Family::Hypervisor => {
            if r.vms.is_empty() {
                return Err((
                    key(&["resources", "vms"]),
                    "list at least one `{ vm, nic }` the suite may move".into(),
                ));
            }
            let Some(pg) = &r.portgroups else {
                return Err((
                    key(&["resources", "portgroups"]),
                    "set `portgroups = { operation = \"...\", quarantine = \"...\" }`".into(),
                ));
            };
            if pg.operation.trim().is_empty() || pg.quarantine.trim().is_empty() {
                return Err((key(&["resources", "portgroups"]), "empty port group".into()));
            }
            if pg.operation == pg.quarantine {
                return Err((
                    key(&["resources", "portgroups", "quarantine"]),
                    "must differ from the operation port group".into(),
                ));
            }
            empty_or_twice("vms", &r.vms, |v| {
                v.vm.trim().is_empty() || v.nic.trim().is_empty()
            })?;
            if r.vms.iter().any(|v| v.vm == r.absent_vm()) {
                return Err((
                    key(&["resources", "absent_vm"]),
                    "names a listed VM; it must name a VM the manager does not have".into(),
                ));
            }
            only_own(&["ports", "vlans", "absent_port", "system", "av_kind"])?;
        }
        Family::Bmc | Family::Av => {
            only_own(&[
                "ports",
                "vlans",
                "absent_port",
                "vms",
                "portgroups",
                "absent_vm",
            ])?;
            if p.family == Family::Av {
                if r.system.is_some() {
                    return Err(refuse("system", "bmc"));
                }
                if !AV_PROTOCOLS.contains(&p.protocol.as_str()) {
                    return Err((
                        key(&["protocol"]),
                        format!(
                            "{:?}: an AV feed's protocol is one of {}",
                            p.protocol,
                            AV_PROTOCOLS.join(", ")
                        ),
                    ));
                }
                let Some(kind) = r.av_kind else {
                    return Err((
                        key(&["resources", "av_kind"]),
                        "set `av_kind` to officescan, sepm or epo (the message format)".into(),
                    ));
                };
                if p.protocol == "epo_api" && kind != AvKind::Epo {
                    return Err((
                        key(&["resources", "av_kind"]),
                        "the ePO Web API (epo_api) is polled from an ePO server: use av_kind = \"epo\""
                            .into(),
                    ));
                }
            } else if r.av_kind.is_some() {
                return Err(refuse("av_kind", "av"));
            }
        }
    }
    let known = checks::catalogue(p.family);
    for (i, d) in p.deviations.iter().enumerate() {
        let at = |field: &str| -> Vec<KeySeg> { vec!["deviations".into(), i.into(), field.into()] };
        if d.why.trim().is_empty() {
            return Err((at("why"), "say why the checks are excused".into()));
        }
        if d.checks.is_empty() {
            return Err((at("checks"), "name at least one check id".into()));
        }
        for id in &d.checks {
            if !known.iter().any(|c| c.id == id) {
                return Err((
                    at("checks"),
                    format!(
                        "{id:?} is not a check of the {} suite (ids look like {}-2.6)",
                        p.family.as_str(),
                        p.family.prefix()
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn present(r: &Resources, field: &str) -> bool {
    match field {
        "ports" => !r.ports.is_empty(),
        "vlans" => r.vlans.is_some(),
        "absent_port" => r.absent_port.is_some(),
        "vms" => !r.vms.is_empty(),
        "portgroups" => r.portgroups.is_some(),
        "absent_vm" => r.absent_vm.is_some(),
        "system" => r.system.is_some(),
        "av_kind" => r.av_kind.is_some(),
        _ => false,
    }
}

fn other_family(field: &str) -> &'static str {
    match field {
        "ports" | "vlans" | "absent_port" => "switch",
        "vms" | "portgroups" | "absent_vm" => "hypervisor",
        "av_kind" => "av",
        _ => "bmc",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SWITCH: &str = r#"
vendor = "Example Networks"
product = "EX-4800"
version = "23.4R1"
family = "switch"
protocol = "restconf"
[capabilities]
persist = true
[resources]
ports = ["ge-0/0/10", "ge-0/0/11"]
vlans = { operation = 110, quarantine = 910 }
[[deviations]]
checks = ["SW-2.6"]
why = "sessions cannot be expired sooner"
"#;

    #[test]
    fn a_complete_switch_product_loads() {
        let p = parse_product(Path::new("PRODUCT.toml"), SWITCH).unwrap();
        assert_eq!(p.family, Family::Switch);
        assert_eq!(
            p.deviation_for("SW-2.6"),
            Some("sessions cannot be expired sooner")
        );
        assert_eq!(p.deviation_for("SW-2.5"), None);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let bad = SWITCH.replace("quarantine = 910", "quarantine = 4095");
        let e = parse_product(Path::new("p/PRODUCT.toml"), &bad).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("p/PRODUCT.toml:"), "{text}");
        assert!(text.contains("resources.vlans.quarantine"), "{text}");
        let bad = SWITCH.replace("SW-2.6", "SW-9.9");
        let e = parse_product(Path::new("PRODUCT.toml"), &bad).unwrap_err();
        assert!(e.to_string().contains("SW-9.9"), "{e}");
        let bad = SWITCH.replace("vendor", "vendr");
        let e = parse_product(Path::new("PRODUCT.toml"), &bad).unwrap_err();
        assert!(e.to_string().contains("vendr"), "{e}");
        let bad = SWITCH.replace(
            "[resources]",
            "[resources]\nvms = [{ vm = \"a\", nic = \"b\" }]",
        );
        let e = parse_product(Path::new("PRODUCT.toml"), &bad).unwrap_err();
        assert!(e.to_string().contains("hypervisor resource"), "{e}");
    }
}
