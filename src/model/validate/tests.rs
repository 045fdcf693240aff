//! One test per rule: each breaks a valid site in one place and checks the error's key and text.

use std::path::Path;

use crate::model::load::{load_topology_str, TopologyError};
use crate::model::Topology;

/// A small valid site exercising every section; tests break it with [`broken`].
pub(crate) const SITE: &str = include_str!("../../../fixtures/topologies/test-unit.toml");

/// Loads [`SITE`] with the first `from` replaced by `to`.
pub(crate) fn load_with(from: &str, to: &str) -> Result<Topology, TopologyError> {
    assert!(SITE.contains(from), "test bug: {from:?} is not in SITE");
    load_topology_str(Path::new("unit.toml"), &SITE.replacen(from, to, 1))
}

/// The error after replacing `from` with `to`; fails the test when the site still loads.
pub(crate) fn broken(from: &str, to: &str) -> TopologyError {
    match load_with(from, to) {
        Ok(_) => panic!("still valid after replacing {from:?} with {to:?}"),
        Err(e) => e,
    }
}

/// Asserts the error is at `key` and its message contains every one of `words`.
fn assert_error(e: &TopologyError, key: &str, words: &[&str]) {
    assert_eq!(e.key, key, "wrong key in: {e}");
    assert!(e.line.is_some(), "no line in: {e}");
    for w in words {
        assert!(e.message.contains(w), "{w:?} missing in: {e}");
    }
}

/// Asserts [`SITE`] with `from` replaced by `to` fails at `key` with every one of `words`; a
/// failure names the edit.
fn assert_rejects(from: &str, to: &str, key: &str, words: &[&str]) {
    let e = broken(from, to);
    let case = format!("{from:?} -> {to:?}");
    assert_eq!(e.key, key, "{case}: wrong key in: {e}");
    assert!(e.line.is_some(), "{case}: no line in: {e}");
    for w in words {
        assert!(e.message.contains(w), "{case}: {w:?} missing in: {e}");
    }
}

/// One test per rule: `name { from => to, key, [words]; ... }` breaks [`SITE`] with each edit
/// and asserts the error's key and words (see [`assert_rejects`]).
macro_rules! rejects {
    ($($(#[$doc:meta])* $name:ident { $($from:expr => $to:expr, $key:expr, [$($word:expr),+];)+ })+) => {
        $(
            $(#[$doc])*
            #[test]
            fn $name() {
                $(assert_rejects($from, $to, $key, &[$($word),+]);)+
            }
        )+
    };
}

rejects! {
    device_names_share_one_namespace { "name = \"sw-1\"" => "name = \"vc-1\"", "switches[0].name", ["hypervisors[0]", "namespace"]; }
    duplicate_tenant_is_rejected { "[[lservers]]" => "[[tenants]]\nname = \"tenant-a\"\n\n[[lservers]]", "tenants[1].name", ["tenants[0]"]; }
    duplicate_lserver_path_is_rejected { "\"/tenant-a/sbc-01\"" => "\"/tenant-a/vdi-001\"", "lservers[2].path", ["lservers[0]"]; }
    duplicate_vlan_is_rejected { "vlan = 910" => "vlan = 110", "networks[2].vlan", ["VLAN 110", "networks[0]"]; }
    vlan_out_of_range_is_rejected {
        "vlan = 910" => "vlan = 0", "networks[2].vlan", ["1 to 4094"];
        "vlan = 910" => "vlan = 4095", "networks[2].vlan", ["1 to 4094"];
    }
    subnet_with_host_bits_is_rejected { "10.111.0.0/24" => "10.111.0.7/24", "networks[1].subnet", ["host bits", "10.111.0.0/24"]; }
    overlapping_subnets_are_rejected { "10.111.0.0/24" => "10.110.0.0/16", "networks[1].subnet", ["overlaps", "op-a"]; }
    duplicate_ip_across_lservers_is_rejected { "10.110.0.12" => "10.110.0.11", "lservers[1].nics[0].ip", ["10.110.0.11", "lservers[0].nics[0]"]; }
    duplicate_mac_in_another_spelling_is_rejected { "00:50:56:00:00:12" => "0050.5600.0011", "lservers[1].nics[0].mac", ["00:50:56:00:00:11"]; }
    invalid_mac_is_rejected { "00:50:56:00:00:12" => "00:50:56:00:00", "lservers[1].nics[0].mac", ["not a MAC address"]; }
    duplicate_hostname_ignores_case { "\"VDI-002\"" => "\"vdi-001\"", "lservers[1].hostname", ["lservers[0]", "case"]; }
    duplicate_switch_port_is_rejected { "\"Ethernet1/6\"" => "\"Ethernet1/5\"", "lservers[2].nics[1].port", ["Ethernet1/5", "lservers[2].nics[0]"]; }
    /// vdi-002's NIC has no `device`, so it defaults to 4000 like vdi-001's.
    duplicate_vnic_is_rejected { "vm = \"vm-2\"" => "vm = \"vm-1\"", "lservers[1].nics[0].device", ["4000", "vm-1", "lservers[0].nics[0]"]; }
    quarantine_map_key_must_be_an_operation_network {
        "\"op-a\" = \"qr-a\"" => "\"qr-a\" = \"qr-a\"", "quarantine_map.qr-a", ["keys of [quarantine_map]"];
        "\"op-a\" = \"qr-a\"" => "\"op-x\" = \"qr-a\"", "quarantine_map.op-x", ["does not exist"];
    }
    quarantine_map_value_must_be_a_quarantine_network {
        "\"op-a\" = \"qr-a\"" => "\"op-a\" = \"op-b\"", "quarantine_map.op-a", ["operation network", "role = \"quarantine\""];
        "\"op-a\" = \"qr-a\"" => "\"op-a\" = \"qr-x\"", "quarantine_map.op-a", ["`qr-x`", "does not exist"];
    }
    nic_ip_must_be_a_host_of_its_network {
        "10.110.0.12" => "10.111.0.12", "lservers[1].nics[0].ip", ["outside subnet 10.110.0.0/24"];
        "10.110.0.12" => "10.110.0.0", "lservers[1].nics[0].ip", ["network address"];
        "10.110.0.12" => "10.110.0.255", "lservers[1].nics[0].ip", ["broadcast address"];
    }
    nic_network_must_exist_and_be_operation {
        "network = \"op-a\", ip = \"10.110.0.12\"" => "network = \"op-z\", ip = \"10.110.0.12\"", "lservers[1].nics[0].network", ["`op-z` does not exist", "known: op-a"];
        "network = \"op-a\", ip = \"10.110.0.12\"" => "network = \"qr-a\", ip = \"10.210.0.4\"", "lservers[1].nics[0].network", ["quarantine network"];
    }
    virtual_lserver_rejects_physical_settings {
        "vm = \"vm-2\"\n" => "vm = \"vm-2\"\nbmc = \"bmc-1\"\n", "lservers[1].bmc", ["physical"];
        "mac = \"00:50:56:00:00:12\"" => "mac = \"00:50:56:00:00:12\", switch = \"sw-1\"", "lservers[1].nics[0].switch", ["physical NICs"];
    }
    virtual_nic_needs_port_groups_for_both_networks { ", \"qr-a\" = \"pg-910\"" => "", "lservers[0].nics[0].network", ["no port group for network `qr-a`", "quarantine network of `op-a`"]; }
    portgroups_must_name_networks_and_be_unique {
        "\"qr-a\" = \"pg-910\"" => "\"qr-a\" = \"pg-110\"", "hypervisors[0].portgroups.qr-a", ["`pg-110`", "`op-a`"];
        "\"qr-a\" = \"pg-910\"" => "\"qr-a\" = \"pg-910\", \"nope\" = \"pg-1\"", "hypervisors[0].portgroups.nope", ["does not exist"];
    }
    physical_nic_needs_an_existing_switch_and_a_port {
        ", switch = \"sw-1\", port = \"Ethernet1/5\"" => ", port = \"Ethernet1/5\"", "lservers[2].nics[0].switch", ["needs `switch`"];
        "switch = \"sw-1\", port = \"Ethernet1/5\"" => "switch = \"sw-9\", port = \"Ethernet1/5\"", "lservers[2].nics[0].switch", ["`sw-9` does not exist"];
        ", port = \"Ethernet1/5\"" => "", "lservers[2].nics[0].port", ["needs `port`"];
    }
    physical_lserver_rejects_virtual_settings_and_bad_bmc {
        "bmc = \"bmc-1\"\nhostname" => "hypervisor = \"vc-1\"\nbmc = \"bmc-1\"\nhostname", "lservers[2].hypervisor", ["virtual L-Servers"];
        "bmc = \"bmc-1\"\nhostname" => "bmc = \"bmc-9\"\nhostname", "lservers[2].bmc", ["`bmc-9` does not exist"];
        "Ethernet1/6\" }" => "Ethernet1/6\", device = \"4000\" }", "lservers[2].nics[1].device", ["virtual NICs"];
    }
    policy_keys_are_paths_and_keywords_are_not_empty {
        "\"/tenant-a/vdi-002\" = \"reboot\"" => "\"tenant-a\" = \"reboot\"", "policy.actions.tenant-a", ["start with `/`"];
        "[\"EICAR\"]" => "[\"EICAR\", \" \"]", "policy.excluded_threat_keywords[1]", ["every threat"];
    }
}

#[test]
fn valid_site_loads() {
    let t = load_with("", "").expect("SITE is valid");
    assert_eq!(t.lservers.len(), 3);
}

#[test]
fn duplicate_network_name_is_rejected() {
    let e = broken("name = \"op-b\"", "name = \"op-a\"");
    assert_error(&e, "networks[1].name", &["`op-a`", "networks[0]"]);
    assert_eq!(e.line, Some(10));
}

#[test]
fn lserver_path_must_be_absolute_without_empty_or_trailing_segments() {
    for bad in ["tenant-a/x", "/tenant-a//x", "/tenant-a/x/", "/", ""] {
        let e = broken("\"/tenant-a/vdi-002\"\nkind", &format!("{bad:?}\nkind"));
        assert_error(&e, "lservers[1].path", &["/tenant-a/vdi-001"]);
    }
}

#[test]
fn r6_unmapped_operation_network_is_accepted() {
    // sbc-01's second NIC is on op-b, which has no quarantine mapping: the plan fails at run
    // time with a config-error alert, the file itself is fine.
    assert!(load_with("", "").is_ok());
}

#[test]
fn r6_quarantine_subnet_too_small_is_rejected() {
    // /29: 8 addresses minus network, first and broadcast = 5; three op-a NICs fit, /30 does not.
    let e = broken("10.210.0.0/29", "10.210.0.0/30");
    assert_error(
        &e,
        "networks[2].subnet",
        &["1 usable address ", "3 NICs", "`op-a`", "/29"],
    );
    assert_eq!(e.line, Some(19));
}

#[test]
fn r6_quarantine_subnet_exactly_full_is_accepted() {
    // `n` more virtual L-Servers on op-a, inserted before `[policy]`.
    let more = |n: u32| {
        let servers: String = (0..n)
            .map(|k| {
                format!(
                    "[[lservers]]\npath = \"/x/{k}\"\nkind = \"virtual\"\nhypervisor = \"vc-1\"\n\
                     vm = \"vm-x{k}\"\nnics = [ {{ network = \"op-a\", ip = \"10.110.0.{}\", \
                     mac = \"02:00:00:00:00:{k:02x}\" }} ]\n\n",
                    100 + k
                )
            })
            .collect();
        servers + "[policy]"
    };
    assert!(load_with("[policy]", &more(2)).is_ok(), "5 NICs fit a /29");
    let e = broken("[policy]", &more(3));
    assert_error(&e, "networks[2].subnet", &["5 usable addresses", "6 NICs"]);
}

#[test]
fn r6_ipv6_quarantine_capacity_excludes_network_and_first() {
    // /126 = 4 addresses, minus network and first = 2 < 3 NICs.
    let e = broken("\"10.210.0.0/29\"", "\"fd00:210::/126\"");
    assert_error(&e, "networks[2].subnet", &["2 usable addresses", "3 NICs"]);
    assert!(load_with("\"10.210.0.0/29\"", "\"fd00:210::/125\"").is_ok());
}

#[test]
fn virtual_lserver_needs_an_existing_hypervisor_and_a_vm() {
    let e = broken("hypervisor = \"vc-1\"\nvm = \"vm-2\"\n", "vm = \"vm-2\"\n");
    assert_error(&e, "lservers[1].hypervisor", &["needs `hypervisor`"]);
    assert_eq!(e.line, Some(56), "reported on the L-Server's header line");
    let e = broken(
        "hypervisor = \"vc-1\"\nvm = \"vm-2\"",
        "hypervisor = \"sw-1\"\nvm = \"vm-2\"",
    );
    assert_error(&e, "lservers[1].hypervisor", &["`sw-1` does not exist"]);
    let e = broken("vm = \"vm-2\"\n", "");
    assert_error(&e, "lservers[1].vm", &["needs `vm`"]);
}

#[test]
fn tenant_must_exist_and_email_must_be_an_address() {
    let e = broken("tenant = \"tenant-a\"", "tenant = \"tenant-z\"");
    assert_error(&e, "lservers[0].tenant", &["`tenant-z` does not exist"]);
    for bad in [
        "admin",
        "@example.com",
        "admin@",
        "a@b@c",
        "ad min@example.com",
    ] {
        let e = broken("admin-a@example.com", bad);
        assert_error(&e, "tenants[0].email", &["not an email address"]);
    }
}

#[test]
fn device_and_engine_limits_are_enforced() {
    let cases = [
        ("max_batch = 8", "max_batch = 0", "switches[0].max_batch"),
        (
            "max_batch = 8",
            "max_concurrent = 0",
            "switches[0].max_concurrent",
        ),
        ("attempts = 4", "attempts = 0", "engine.retry.attempts"),
        ("attempts = 4", "attempts = 101", "engine.retry.attempts"),
        (
            "call_timeout = \"5s\"",
            "call_timeout = \"0s\"",
            "engine.call_timeout",
        ),
        (
            "operation_deadline = \"60s\"",
            "operation_deadline = \"1s\"",
            "engine.operation_deadline",
        ),
        (
            "operation_deadline = \"60s\"",
            "operation_deadline = \"60s\"\nwatch_interval = \"500ms\"",
            "engine.watch_interval",
        ),
        (
            "operation_deadline = \"60s\"",
            "operation_deadline = \"60s\"\nwatch_calls_per_second = 0",
            "engine.watch_calls_per_second",
        ),
        (
            "operation_deadline = \"60s\"",
            "operation_deadline = \"60s\"\nwatch_calls_per_second = 1001",
            "engine.watch_calls_per_second",
        ),
    ];
    for (from, to, key) in cases {
        let e = broken(from, to);
        assert_eq!(e.key, key, "{e}");
        assert!(e.line.is_some(), "{e}");
    }
}

#[test]
fn r20_watch_settings_default_to_60s_and_10_reads_per_second_and_parse() {
    let t = load_with(
        "operation_deadline = \"60s\"",
        "operation_deadline = \"60s\"",
    )
    .unwrap();
    assert_eq!(t.engine.watch_interval, std::time::Duration::from_secs(60));
    assert_eq!(t.engine.watch_calls_per_second, 10);
    let t = load_with(
        "operation_deadline = \"60s\"",
        "operation_deadline = \"60s\"\nwatch_interval = \"5s\"\nwatch_calls_per_second = 2",
    )
    .unwrap();
    assert_eq!(t.engine.watch_interval, std::time::Duration::from_secs(5));
    assert_eq!(t.engine.watch_calls_per_second, 2);
}

#[test]
fn first_error_in_file_order_wins() {
    // The L-Server error is on an earlier line than the network error, although networks are
    // checked first. Top-level keys precede tables, so `name` stays on line 1.
    let early = "name = \"unit\"\n[[lservers]]\npath = \"nope\"\nkind = \"physical\"\nnics = [ { \
        network = \"op-b\", ip = \"10.111.0.9\", mac = \"02:00:00:00:00:09\", switch = \"sw-1\", \
        port = \"Ethernet1/9\" } ]\n";
    let source = SITE
        .replacen("name = \"unit\"\n", early, 1)
        .replace("vlan = 111", "vlan = 0");
    let e = load_topology_str(Path::new("unit.toml"), &source).unwrap_err();
    assert_eq!(
        (e.key.as_str(), e.line),
        ("lservers[0].path", Some(3)),
        "{e}"
    );
}

/// A site with one mapped operation network, `devices` and a `[generate]` body.
pub(crate) fn generated(devices: &str, generate: &str) -> String {
    format!(
        "name = \"gen\"\n\n[[networks]]\nname = \"op-a\"\nrole = \"operation\"\nvlan = 110\n\
         subnet = \"10.110.0.0/24\"\n\n[[networks]]\nname = \"qr-a\"\nrole = \"quarantine\"\n\
         vlan = 910\nsubnet = \"10.210.0.0/24\"\n\n[quarantine_map]\n\"op-a\" = \"qr-a\"\n\n\
         {devices}\n[generate]\n{generate}\n"
    )
}

pub(crate) const VC: &str = "[[hypervisors]]\nname = \"vc-1\"\nkind = \"vcenter\"\n\
    portgroups = { \"op-a\" = \"pg-110\", \"qr-a\" = \"pg-910\" }\n";
pub(crate) const SW: &str = "[[switches]]\nname = \"sw-1\"\nkind = \"nxapi\"\n";

fn generate_error(source: &str) -> TopologyError {
    match load_topology_str(Path::new("gen.toml"), source) {
        Ok(t) => panic!("loaded {} L-Servers from:\n{source}", t.lservers.len()),
        Err(e) => e,
    }
}

#[test]
fn generate_needs_the_devices_it_spreads_over() {
    let e = generate_error(&generated(SW, "virtual = 1"));
    assert_error(&e, "generate.virtual", &["[[hypervisors]]"]);
    let e = generate_error(&generated(VC, "physical = 1"));
    assert_error(&e, "generate.physical", &["[[switches]]"]);
    let e = generate_error(&generated(
        &VC.replace(", \"qr-a\" = \"pg-910\"", ""),
        "virtual = 1",
    ));
    assert_error(&e, "generate.virtual", &["`vc-1`", "`qr-a`"]);
}

#[test]
fn generate_needs_a_mapped_operation_network() {
    let source = generated(VC, "virtual = 1").replace("\"op-a\" = \"qr-a\"\n", "");
    assert_error(&generate_error(&source), "generate", &["[quarantine_map]"]);
}

#[test]
fn generate_is_limited_to_100000() {
    let source = generated(&format!("{VC}{SW}"), "virtual = 50000\nphysical = 50001");
    assert_error(&generate_error(&source), "generate", &["100001", "100000"]);
}

#[test]
fn r6_generated_nics_count_toward_quarantine_capacity() {
    // Both /24s hold 253 hosts; 254 generated NICs overflow the quarantine subnet first in file
    // order.
    let e = generate_error(&generated(VC, "virtual = 254"));
    assert_error(
        &e,
        "networks[1].subnet",
        &["254 NICs (254 of them from [generate])"],
    );
}

#[test]
fn generate_beyond_the_operation_subnet_is_rejected() {
    let source = generated(VC, "virtual = 254").replace("10.210.0.0/24", "10.210.0.0/16");
    let e = generate_error(&source);
    assert_error(&e, "generate", &["253 free host addresses", "`op-a`"]);
}
