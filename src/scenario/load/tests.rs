//! One test per check: each breaks a valid scenario in one place and checks the error's key,
//! line and text; plus discovery, `load_all` and the file-level limits.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::model::{Action, Category};
use crate::sim::faults::{CallKind, FaultEffect};

/// The fixture topology every test scenario points at (absolute, so any scenario path works).
fn topology() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/topologies/vdi-small.toml")
        .display()
        .to_string()
}

/// A valid scenario using every section; `@TOPOLOGY@` is replaced by [`topology`].
const BASE: &str = include_str!("../../../fixtures/scenarios/test-unit.toml");

fn base() -> String {
    BASE.replace("@TOPOLOGY@", &topology())
}

fn load(source: &str) -> Result<Scenario, ScenarioError> {
    load_scenario_str(Path::new("unit.toml"), source)
}

/// Loads `BASE` with `from` replaced by `to` (which must occur) and returns the error.
fn broken(from: &str, to: &str) -> ScenarioError {
    let base = base();
    assert!(base.contains(from), "test bug: {from:?} is not in BASE");
    let source = base.replacen(from, to, 1);
    match load(&source) {
        Ok(_) => panic!("expected an error after replacing {from:?} with {to:?}"),
        Err(e) => e,
    }
}

/// Loads `BASE` with `extra` appended and returns the error.
fn with_extra(extra: &str) -> ScenarioError {
    match load(&format!("{}{extra}", base())) {
        Ok(_) => panic!("expected an error after appending {extra:?}"),
        Err(e) => e,
    }
}

/// 1-based line of the first line of `BASE` containing `needle`.
fn line(needle: &str) -> usize {
    BASE.lines()
        .position(|l| l.contains(needle))
        .expect("needle in BASE")
        + 1
}

/// Asserts the key and that the message contains `text`.
fn assert_error(e: &ScenarioError, key: &str, text: &str) {
    assert_eq!(e.key, key, "{e}");
    assert!(e.message.contains(text), "{e}");
    assert_eq!(e.file, PathBuf::from("unit.toml"), "{e}");
}

#[test]
fn base_loads_with_sorted_events_and_defaults() {
    let s = load(&base()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.name, "unit");
    assert_eq!(s.modes, vec![Mode::Sim, Mode::Wire]);
    assert_eq!(s.seed, 3);
    assert_eq!(s.topology_file, PathBuf::from(topology()));
    assert_eq!(s.site.lservers.len(), 8);
    let at: Vec<u64> = s.events.iter().map(|e| e.at.as_secs()).collect();
    assert_eq!(at, vec![0, 2, 2, 5]);
    match &s.events[0].action {
        EventAction::Detect(d) => {
            assert_eq!(d.category, Category::Virus);
            assert_eq!(d.ip, Some("10.110.0.11".parse().expect("ip")));
        }
        other => panic!("{other:?}"),
    }
    // Same `at`: file order is kept.
    assert_eq!(
        s.events[1].action,
        EventAction::Crash {
            restart_after: Duration::from_secs(1)
        }
    );
    assert_eq!(s.events[2].action, EventAction::Heal("vc-1".into()));
    assert_eq!(
        s.events[3].action,
        EventAction::Command(Command::Decide {
            lserver: "/tenant-a/vdi-001".into(),
            choice: Action::Quarantine
        })
    );
    assert_eq!(s.faults[0].call, Some(CallKind::SetNic));
    assert_eq!(s.expect.violations, vec!["INV-3".to_string()]);
}

#[test]
fn unknown_key_in_an_event_names_key_and_line() {
    let e = broken("crash = \"engine\"", "crash = \"engine\"\nwhen = \"now\"");
    assert_error(&e, "events[1].when", "unknown key `when`");
    assert_eq!(e.line, Some(line("crash = \"engine\"") + 1));
}

#[test]
fn bad_duration_names_the_key() {
    let e = broken("at = \"2s\"", "at = \"soon\"");
    assert_error(&e, "events[1].at", "bad duration \"soon\"");
    assert_eq!(e.line, Some(line("at = \"2s\"")));
}

/// Asserts every edit of `BASE` fails at its key with its text; a failure names the edit.
/// Each row is `from => to, key, text;`.
macro_rules! assert_broken {
    ($($from:expr => $to:expr, $key:expr, $text:expr;)+) => {
        for (from, to, key, text) in [$(($from, $to, $key, $text)),+] {
            let (from, to, key, text): (&str, &str, &str, &str) = (from, to, key, text);
            let e = broken(from, to);
            let case = format!("{from:?} -> {to:?}");
            assert_eq!(e.key, key, "{case}: {e}");
            assert!(e.message.contains(text), "{case}: {e}");
            assert_eq!(e.file, PathBuf::from("unit.toml"), "{case}: {e}");
        }
    };
}

/// Asserts `BASE` with `from` replaced by `to` loads.
fn assert_loads(from: &str, to: &str) -> Scenario {
    load(&base().replace(from, to)).unwrap_or_else(|e| panic!("{from:?} -> {to:?}: {e}"))
}

#[test]
fn event_needs_exactly_one_action() {
    let heal = "heal = \"vc-1\"";
    let e = broken(heal, "heal = \"vc-1\"\ncrash = \"engine\"");
    assert_error(&e, "events[2].crash", "exactly one action");
    assert!(e.message.contains("`heal` and `crash`"), "{e}");
    assert_eq!(e.line, Some(line(heal) + 1));
    let e = broken(heal, "");
    assert_error(&e, "events[2]", "has no action");
    assert_eq!(e.line, Some(line(heal) - 2));
    assert_broken! {
        heal => "crash = \"engine\"\nheal = \"vc-1\"", "events[2].heal", "`crash` and `heal`";
        heal => "heal = \"vc-1\"\nrestart_after = \"1s\"", "events[2].restart_after", "only applies to `crash`";
    }
}

#[test]
fn crash_and_heal_targets_are_checked() {
    assert_broken! {
        "crash = \"engine\"" => "crash = \"journal\"", "events[1].crash", "only \"engine\"";
        "heal = \"vc-1\"" => "heal = \"vc-9\"", "events[2].heal", "unknown heal target `vc-9`";
    }
    for target in ["all", "sw-1", "irmc-sbc-01", "osce"] {
        assert_loads("heal = \"vc-1\"", &format!("heal = \"{target}\""));
    }
}

#[test]
fn detect_fields_are_checked() {
    let (source, ip, id) = (
        "source = \"osce\"",
        "ip = \"10.110.0.11\"",
        "event_id = \"e-1\"",
    );
    assert_broken! {
        source => "source = \"sepm-1\"", "events[3].detect.source", "unknown AV server `sepm-1`";
        source => "source = \"sepm-1\"", "events[3].detect.source", "`osce`";
        ip => "ip = \"10.110.0.300\"", "events[3].detect.ip", "\"10.110.0.300\" is not an IP address";
        ip => "mac = \"00:50\"", "events[3].detect.mac", "not a MAC address";
        id => "event_id = \"\"", "events[3].detect.event_id", "empty";
        "ip = \"10.110.0.11\", " => "", "events[3].detect", "at least one of `ip`, `mac` or `hostname`";
        id => "event_id = \"e-1\", category = \"worm\"", "events[3].detect.category", "unknown value `worm`";
    }
}

#[test]
fn command_fields_are_checked() {
    let e = broken(", choice = \"quarantine\"", "");
    assert_error(&e, "events[0].command.choice", "needs a `choice`");
    assert_eq!(e.line, Some(line("action = \"decide\"")));
    let decide = "action = \"decide\"";
    assert_broken! {
        "lserver = \"/tenant-a/vdi-001\", choice" => "lserver = \"/x\", choice", "events[0].command.lserver", "unknown L-Server `/x`";
        "choice = \"quarantine\"" => "choice = \"none\"", "events[0].command.choice", "unknown choice `none`";
        decide => "action = \"release\"", "events[0].command.choice", "only applies to action = \"decide\"";
        decide => "action = \"reboot\"", "events[0].command.action", "unknown value `reboot`";
    }
}

#[test]
fn fault_device_and_call_are_checked() {
    let (device, call) = ("device = \"sw-1\"", "call = \"set_port\"");
    assert_broken! {
        device => "device = \"sw-9\"", "faults[1].device", "unknown device `sw-9`";
        device => "device = \"sw-9\"", "faults[1].device", "`irmc-sbc-01`";
        call => "call = \"set_nic\"", "faults[1].call", "`sw-1` is a switch, which has no call `set_nic`";
        call => "call = \"reboot\"", "faults[1].call", "unknown value `reboot`";
    }
}

#[test]
fn fault_effect_fits_the_device() {
    let fault = "\n[[faults]]\ndevice = \"osce\"\neffect = \"duplicate\"\n";
    load(&format!("{}{fault}", base())).unwrap_or_else(|e| panic!("{e}"));
    let e = with_extra("\n[[faults]]\ndevice = \"osce\"\ncall = \"set_nic\"\neffect = \"drop\"\n");
    assert_error(
        &e,
        "faults[2].call",
        "`osce` is an AV server, which has no call `set_nic`",
    );
    let reject = "effect = \"reject\"";
    assert_broken! {
        reject => "effect = \"drop\"", "faults[1].effect", "applies to an AV server's notifications";
        "effect = \"apply_then_timeout\"" => "effect = \"reboot_loses_unsaved\"", "faults[0].effect", "only applies to switches";
        reject => "effect = \"reboot_loses_unsaved\"", "faults[1].from", "needs `from`";
    }
}

#[test]
fn wire_only_effects_need_wire_mode() {
    let e = broken("effect = \"reject\"", "effect = \"blackhole\"");
    assert_error(&e, "faults[1].effect", "set modes = [\"wire\"]");
    let source = base()
        .replace("seed = 3", "seed = 3\nmodes = [\"wire\"]")
        .replace("effect = \"reject\"", "effect = \"reset\"");
    let s = load(&source).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.modes, vec![Mode::Wire]);
    assert_eq!(s.faults[1].effect, FaultEffect::Reset);
}

#[test]
fn fault_window_times_and_delay_are_checked() {
    assert_loads("from = \"0s\"", "from = \"20s\"");
    assert_broken! {
        "from = \"0s\"" => "from = \"30s\"", "faults[0].until", "before it starts";
        "times = 1" => "times = 0", "faults[0].times", "times = 0";
        "effect = \"reject\"" => "effect = \"delay\"", "faults[1].delay", "needs `delay`";
        "effect = \"apply_then_timeout\"" => "effect = \"busy\"", "faults[0].delay", "ignores `delay`";
    }
}

#[test]
fn fault_match_keys_must_exist_behind_the_device() {
    let port = "port = \"Ethernet1/5\"";
    let sbc = "lserver = \"/tenant-a/sbc-01\"";
    assert_broken! {
        "vm = \"vm-1001\"" => "vm = \"vm-9\"", "faults[0].match.vm", "no L-Server has VM `vm-9` on `vc-1`";
        "nic = \"4000\"" => "nic = \"4001\"", "faults[0].match.nic", "no vNIC `4001`";
        port => "port = \"Ethernet9/9\"", "faults[1].match.port", "no L-Server uses port `Ethernet9/9`";
        port => "vm = \"vm-1001\"", "faults[1].match.vm", "only applies to faults on a hypervisor";
        sbc => "lserver = \"/tenant-a/vdi-002\"", "faults[1].match.lserver", "is not behind `sw-1`";
        sbc => "lserver = \"/nope\"", "faults[1].match.lserver", "unknown L-Server `/nope`";
        port => "slot = 1", "faults[1].match.slot", "unknown key `slot`";
    }
}

#[test]
fn expected_lservers_are_checked() {
    let key = |field: &str| format!("expect.lservers.\"/tenant-a/vdi-001\".{field}");
    assert_broken! {
        "[expect.lservers.\"/tenant-a/vdi-001\"]" => "[expect.lservers.\"/x\"]", "expect.lservers.\"/x\"", "unknown L-Server `/x`";
        "outcome = \"quarantined\"" => "outcome = \"contained\"", &key("outcome"), "unknown outcome";
        "device_networks = [\"qr-a\"]" => "device_networks = [\"qr-a\", \"op-a\"]", &key("device_networks"), "has 1 NIC, but this lists 2 networks";
        "managed_networks = [\"qr-a\"]" => "managed_networks = [\"qr-b\"]", &key("managed_networks[0]"), "unknown network `qr-b`";
        "status = \"normal\"" => "status = \"down\"", &key("status"), "normal or unknown";
        "status = \"normal\"" => "state = \"normal\"", &key("state"), "unknown key `state`";
    }
    assert_loads("outcome = \"quarantined\"", "outcome = \"untouched\"");
}

#[test]
fn expected_alerts_and_violations_are_checked() {
    let e = with_extra("\n[[expect.alerts]]\ncode = \"quarantine-started\"\nlserver = \"/x\"\n");
    assert_error(&e, "expect.alerts[1].lserver", "unknown L-Server `/x`");
    let violations = "violations = [\"INV-3\"]";
    let bad = |id: &str| format!("violations = [\"{id}\"]");
    assert_broken! {
        "code = \"quarantine-completed\"" => "code = \"quarantine_completed\"", "expect.alerts[0].code", "unknown alert code";
        violations => &bad("INV-13"), "expect.violations[0]", "use INV-1 to INV-12";
        violations => &bad("INV-0"), "expect.violations[0]", "use INV-1 to INV-12";
        violations => &bad("INV-03"), "expect.violations[0]", "use INV-1 to INV-12";
        violations => &bad("inv-3"), "expect.violations[0]", "use INV-1 to INV-12";
        violations => "violations = [\"INV-11\", \"INV-11\"]", "expect.violations[1]", "listed twice";
    }
}

#[test]
fn header_fields_are_checked() {
    let e = broken("seed = 3", "seed = -1");
    assert_eq!(e.key, "seed", "{e}");
    let e = broken("name = \"unit\"\n", "");
    assert_error(&e, "name", "required key `name` is missing");
    assert_eq!(e.line, None);
    let seed = "seed = 3";
    assert_broken! {
        "name = \"unit\"" => "name = \" \"", "name", "empty";
        "tags = [\"virtual\"]" => "tags = [\"virtual\", \"\"]", "tags[1]", "empty";
        seed => "seed = 3\nmodes = []", "modes", "never run";
        seed => "seed = 3\nmodes = [\"wire\", \"wire\"]", "modes[1]", "listed twice";
        seed => "seed = 3\nmodes = [\"both\"]", "modes[0]", "unknown value `both`";
        &format!("topology = \"{}\"\n", topology()) => "", "topology", "required key `topology` is missing";
    }
}

#[test]
fn the_first_problem_in_the_file_is_reported() {
    let source = base()
        .replace("status = \"normal\"", "status = \"down\"")
        .replace("source = \"osce\"", "source = \"nope\"");
    let e = load(&source).unwrap_err();
    assert_eq!(e.key, "events[3].detect.source", "{e}");
    assert_eq!(e.line, Some(line("source = \"osce\"")));
}

#[test]
fn topology_problems_are_located() {
    let e = broken(&format!("topology = \"{}\"", topology()), "topology = \"\"");
    assert_error(&e, "topology", "empty");
    let e = broken(
        &format!("topology = \"{}\"", topology()),
        "topology = \"nope.toml\"",
    );
    assert_error(&e, "topology", "cannot read the topology file nope.toml");
    assert_eq!(e.line, Some(line("topology = ")));
    // An error inside the topology keeps the topology's own file and line.
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("site.toml"), "name = \"s\"\nnmae = 1\n").expect("write");
    std::fs::write(
        dir.path().join("s.toml"),
        "name = \"s\"\ntopology = \"site.toml\"\n",
    )
    .expect("write");
    let e = load_scenario(&dir.path().join("s.toml")).unwrap_err();
    assert_eq!(e.file, dir.path().join("site.toml"), "{e}");
    assert_eq!((e.line, e.key.as_str()), (Some(2), "nmae"), "{e}");
}

#[test]
fn file_limits_are_enforced() {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    file.as_file()
        .set_len(MAX_SCENARIO_BYTES + 1)
        .expect("sparse file");
    let e = load_scenario(file.path()).unwrap_err();
    assert!(e.message.contains("larger than"), "{e}");
    let big = format!("{}#{}\n", base(), "x".repeat(MAX_SCENARIO_BYTES as usize));
    assert!(load(&big).unwrap_err().message.contains("larger than"));
    std::fs::write(file.path(), b"name = \"\xff\"\n").expect("write");
    let e = load_scenario(file.path()).unwrap_err();
    assert!(e.message.contains("not UTF-8"), "{e}");
    let e = load_scenario(Path::new("/nonexistent/s.toml")).unwrap_err();
    assert!(e.message.contains("cannot read the scenario file"), "{e}");
}

/// Writes `BASE` renamed to `name` at `dir/rel`.
fn write_scenario(dir: &Path, rel: &str, name: &str) -> PathBuf {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    let text = base().replacen("name = \"unit\"", &format!("name = \"{name}\""), 1);
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn discover_searches_folders_sorts_and_deduplicates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let b = write_scenario(d, "b.toml", "b");
    let a = write_scenario(d, "sub/deeper/a.toml", "a");
    std::fs::write(d.join("notes.md"), "not a scenario").expect("write");
    let found = discover(&[d.to_path_buf(), b.clone(), d.join("sub/../b.toml")]).expect("ok");
    assert_eq!(found, vec![b.clone(), a.clone()]);
    // A file given directly is taken whatever its extension.
    let odd = d.join("odd.scenario");
    std::fs::copy(&b, &odd).expect("copy");
    assert_eq!(discover(std::slice::from_ref(&odd)).expect("ok"), vec![odd]);
    let e = discover(&[d.join("missing")]).unwrap_err();
    assert_eq!(e.file, d.join("missing"));
    assert!(e.message.contains("cannot read"), "{e}");
}

#[test]
fn load_all_shares_sites_and_rejects_duplicate_names() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    write_scenario(d, "one.toml", "one");
    write_scenario(d, "two.toml", "two");
    let all = load_all(&[d.to_path_buf()]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all.len(), 2);
    assert!(Arc::ptr_eq(&all[0].site, &all[1].site));
    write_scenario(d, "x/three.toml", "one");
    let e = load_all(&[d.to_path_buf()]).unwrap_err();
    assert_eq!(e.file, d.join("x/three.toml"), "{e}");
    assert_eq!((e.key.as_str(), e.line), ("name", Some(1)), "{e}");
    assert!(e.message.contains("`one` is already used by"), "{e}");
    assert!(e.message.contains("one.toml"), "{e}");
}

#[test]
fn mode_spellings_round_trip() {
    for &m in Mode::ALL {
        assert_eq!(Mode::parse(m.as_str()), Some(m));
        assert_eq!(m.to_string(), m.as_str());
    }
    assert_eq!(Mode::parse("both"), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever a user writes, loading answers with an error, never a panic.
    #[test]
    fn arbitrary_edits_never_panic(
        at in 0..BASE.len(),
        cut in 0usize..40,
        insert in "[\\[\\]{}=\",.a-z0-9/:@ \n-]{0,12}",
    ) {
        let boundary = |i: &usize| BASE.is_char_boundary(*i);
        let start = (0..=at).rev().find(boundary).unwrap_or(0);
        let end = (start + cut..=BASE.len()).find(boundary).unwrap_or(BASE.len());
        let source = format!("{}{}{}", &BASE[..start], insert, &BASE[end..])
            .replace("@TOPOLOGY@", &topology());
        let _ = load(&source);
    }
}
