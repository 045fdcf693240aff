//! Snapshots of the topology errors users see: each must name the file, the line and the key,
//! and say what is wrong and how to fix it. A changed message is a changed product interface.

#[macro_use]
mod common;

use std::path::Path;

use quarantine_lab::model::load_topology_str;

/// A small valid site; each test breaks one thing in it.
const BASE: &str = include_str!("../fixtures/topologies/test-bad.toml");

/// Loads `BASE` with `from` replaced by `to` (which must occur) and returns the error text.
fn error_after(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "test bug: {from:?} is not in BASE");
    let source = BASE.replacen(from, to, 1);
    match load_topology_str(Path::new("fixtures/bad.toml"), &source) {
        Ok(_) => panic!("expected an error after replacing {from:?} with {to:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn base_topology_is_valid() {
    let t = load_topology_str(Path::new("fixtures/bad.toml"), BASE).expect("BASE is valid");
    assert_eq!(t.lservers.len(), 3);
}

snapshot_after! {
    error_after;
    unknown_top_level_key: "name = \"bad\"\n" => "name = \"bad\"\nnmae = \"x\"\n";
    unknown_key_in_nic_inline_table: "switch = \"sw-1\", port" => "switch = \"sw-1\", vlan = 5, port";
    bad_duration: "latency = \"40ms\"" => "latency = \"fast\"";
    dangling_hypervisor_reference: "hypervisor = \"vc-1\"\nvm = \"vm-1002\"" => "hypervisor = \"vc-9\"\nvm = \"vm-1002\"";
    duplicate_ip: "10.110.0.12" => "10.110.0.11";
    /// A different spelling of the same MAC is still the same MAC.
    duplicate_mac: "00:50:56:00:00:12" => "00-50-56-00-00-11";
    quarantine_subnet_too_small: "10.210.0.0/24" => "10.210.0.0/30";
    quarantine_map_points_at_operation_network: "\"op-a\" = \"qr-a\"" => "\"op-a\" = \"op-a\"";
    bad_subnet_syntax: "10.110.0.0/24" => "10.110.0/24";
    r18_latency_beyond_seven_days: "latency = \"40ms\"" => "latency = \"1y\"";
    misspelt_jitter: "latency = \"40ms\"" => "latency = \"40ms\"\njiter = \"10ms\"";
}

/// `BASE` with `text` appended, loaded; returns the error text.
fn error_with(text: &str) -> String {
    let source = format!("{BASE}{text}");
    match load_topology_str(Path::new("fixtures/bad.toml"), &source) {
        Ok(_) => panic!("expected an error after appending {text:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn r18_operation_deadline_beyond_seven_days() {
    // Once accepted, then an overflow in the engine when it added the deadline to a time.
    insta::assert_snapshot!(error_with(
        "\n[engine]\noperation_deadline = \"18446744073709551615s\"\n"
    ));
}

#[test]
fn jitter_is_a_device_key() {
    let source = BASE.replacen(
        "latency = \"40ms\"",
        "latency = \"40ms\"\njitter = \"10ms\"",
        1,
    );
    let t = load_topology_str(Path::new("fixtures/bad.toml"), &source).expect("valid");
    assert_eq!(
        t.hypervisors[0].jitter,
        Some(std::time::Duration::from_millis(10))
    );
}

#[test]
fn r18_jitter_beyond_seven_days() {
    insta::assert_snapshot!(error_after(
        "kind = \"nxapi\"",
        "kind = \"nxapi\"\njitter = \"8d\""
    ));
}
