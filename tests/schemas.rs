//! The JSON Schemas under `schemas/` (generated from the Rust types by `quarantine_lab::schema`):
//! they are current, they accept every topology and scenario file the project ships (TOML read as
//! JSON), they refuse what the loaders refuse by shape, and report.json as written validates.
//!
//! `QLAB_UPDATE_SCHEMAS=1 cargo test --test schemas` rewrites the committed files.

mod common;

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// Folders whose TOML files are topologies or scenarios (told apart by a top-level `topology`
/// key, which only a scenario has).
const TOML_ROOTS: &[&str] = &[
    "fixtures",
    "scenarios",
    "tests/scenarios",
    "benches/fixtures",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The text a schema is committed as: pretty JSON and a final line break.
fn render(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).expect("a schema serializes");
    text.push('\n');
    text
}

/// A validator for the schema committed as `name`, built from the generated value (the same
/// text, as `committed_schemas_are_current` proves) so no test reads a file another rewrites.
fn validator(name: &str) -> jsonschema::Validator {
    let (_, schema) = quarantine_lab::schema::all()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no schema {name}"));
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name} is not a schema: {e}"))
}

/// TOML text as the JSON value an editor's validator sees.
fn toml_as_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value: toml::Value =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::to_value(value).expect("TOML converts to JSON")
}

/// Every schema error for `instance`, one line each.
fn errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn committed_schemas_are_current() {
    let update = std::env::var_os("QLAB_UPDATE_SCHEMAS").is_some_and(|v| v == "1");
    let dir = root().join("schemas");
    let mut stale = Vec::new();
    for (name, schema) in quarantine_lab::schema::all() {
        let path = dir.join(name);
        let want = render(&schema);
        if update {
            std::fs::create_dir_all(&dir).expect("create schemas/");
            std::fs::write(&path, &want).expect("write schema");
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(want.as_str()) {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "out of date in schemas/: {stale:?}; regenerate with \
         `QLAB_UPDATE_SCHEMAS=1 cargo test --test schemas` and commit them"
    );
}

#[test]
fn schemas_accept_every_shipped_topology_and_scenario() {
    let topology = validator("topology.schema.json");
    let scenario = validator("scenario.schema.json");
    let product = validator("product.schema.json");
    let mut files: Vec<PathBuf> = TOML_ROOTS
        .iter()
        .flat_map(|dir| common::files_below(&root().join(dir), "toml"))
        .collect();
    files.sort();
    let (mut topologies, mut scenarios, mut products, mut problems) = (0, 0, 0, Vec::new());
    for file in &files {
        let value = toml_as_json(file);
        let is_scenario = value.get("topology").is_some();
        // PRODUCT.toml files of `qlab certify` live under fixtures/products/.
        let is_product = file.parent().is_some_and(|d| d.ends_with("products"));
        let found = if is_product {
            products += 1;
            errors(&product, &value)
        } else if is_scenario {
            scenarios += 1;
            errors(&scenario, &value)
        } else {
            topologies += 1;
            errors(&topology, &value)
        };
        problems.extend(
            found
                .into_iter()
                .map(|e| format!("{}: {e}", file.display())),
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The walk found the library, not an empty folder.
    assert!(topologies >= 10, "{topologies} topologies");
    assert!(scenarios >= 100, "{scenarios} scenarios");
    assert!(products >= 5, "{products} PRODUCT.toml files");
}

#[test]
fn product_schema_refuses_unknown_keys_and_families() {
    let product = validator("product.schema.json");
    let good = json!({"vendor": "v", "product": "p", "version": "1", "family": "switch",
        "protocol": "restconf", "resources": {"ports": ["e1"], "vlans": {"operation": 1, "quarantine": 2}}});
    assert_eq!(errors(&product, &good), Vec::<String>::new());
    for bad in [
        json!({"vendor": "v", "product": "p", "version": "1", "family": "router", "protocol": "x"}),
        json!({"vendor": "v", "product": "p", "version": "1", "family": "bmc", "protocol": "x",
            "capabilites": {}}),
        json!({"vendor": "v", "product": "p", "version": "1", "family": "bmc", "protocol": "x",
            "deviations": [{"checks": ["BMC-2.6"]}]}),
    ] {
        assert!(!errors(&product, &bad).is_empty(), "accepted {bad}");
    }
}

#[test]
fn topology_schema_refuses_unknown_keys_and_spellings() {
    let topology = validator("topology.schema.json");
    let good = json!({"name": "s", "networks": [
        {"name": "op-a", "role": "operation", "vlan": 110, "subnet": "10.0.0.0/24"}]});
    assert_eq!(errors(&topology, &good), Vec::<String>::new());
    for bad in [
        json!({"name": "s", "nmae": "typo"}),
        json!({"name": "s", "networks": [
            {"name": "op-a", "role": "operations", "vlan": 110, "subnet": "10.0.0.0/24"}]}),
        json!({"name": "s", "networks": [
            {"name": "op-a", "role": "operation", "vlan": 70000, "subnet": "10.0.0.0/24"}]}),
        json!({"name": "s", "engine": {"call_timeout": 5}}),
        json!({"name": "s", "policy": {"default_action": "delete"}}),
    ] {
        assert!(!errors(&topology, &bad).is_empty(), "accepted {bad}");
    }
}

#[test]
fn scenario_schema_refuses_unknown_keys_and_spellings() {
    let scenario = validator("scenario.schema.json");
    let good = json!({"name": "n", "topology": "t.toml",
        "events": [{"at": "1s", "heal": "all"}],
        "faults": [{"device": "vc-1", "call": "set_nic", "effect": "timeout", "from": "0s"}]});
    assert_eq!(errors(&scenario, &good), Vec::<String>::new());
    for bad in [
        json!({"name": "n"}),
        json!({"name": "n", "topology": "t.toml", "events": [{"at": "1s", "when": 1}]}),
        json!({"name": "n", "topology": "t.toml",
            "faults": [{"device": "vc-1", "effect": "explode"}]}),
        json!({"name": "n", "topology": "t.toml",
            "faults": [{"device": "vc-1", "effect": "timeout", "call": "get_vm"}]}),
        json!({"name": "n", "topology": "t.toml", "events": [{"at": "soon", "heal": "all"}]}),
        json!({"name": "n", "topology": "t.toml", "modes": ["fast"]}),
    ] {
        assert!(!errors(&scenario, &bad).is_empty(), "accepted {bad}");
    }
}

#[test]
fn report_schema_accepts_report_json_as_written() {
    let report = validator("report.schema.json");
    // The committed snapshot of report.json (`tests/report_snapshots.rs`): insta's header, then
    // the file's text.
    let snap = root().join("tests/snapshots/report_snapshots__report_json_snapshot.snap");
    let text = std::fs::read_to_string(&snap).expect("report.json snapshot");
    let body = text.splitn(3, "---\n").nth(2).expect("insta header");
    let value: Value = serde_json::from_str(body).expect("snapshot is report.json");
    assert_eq!(errors(&report, &value), Vec::<String>::new());
    let mut wrong = value.clone();
    wrong["schema"] = json!("qlab.report/v2");
    assert!(
        !errors(&report, &wrong).is_empty(),
        "accepted another schema id"
    );
    let mut wrong = value;
    wrong["scenarios"][0]["status"] = json!("green");
    assert!(
        !errors(&report, &wrong).is_empty(),
        "accepted an unknown status"
    );
}

/// Every variant of an enum with a serde spelling: `as_str` (what logs, histories and metrics
/// print) is that spelling, and `FromStr` reads it back. Both come from the enum's
/// `serialize_all`; a rename on one side only would change a journal or report spelling.
fn assert_spellings_agree<T>(name: &str)
where
    T: strum::VariantArray + serde::Serialize + std::str::FromStr + Copy + PartialEq + Debug,
    &'static str: From<T>,
{
    for &variant in T::VARIANTS {
        let spelled: &'static str = variant.into();
        assert_eq!(
            serde_json::to_value(variant).expect("a variant serializes"),
            json!(spelled),
            "{name}::{variant:?}: as_str and serde disagree"
        );
        assert_eq!(
            spelled.parse::<T>().ok(),
            Some(variant),
            "{name}::{variant:?}: {spelled:?} does not parse back"
        );
    }
}

#[test]
fn formats_every_enum_spelling_is_serde_and_parses_back() {
    use quarantine_lab::{adapters, check, engine, model, report, scenario, sim};
    assert_spellings_agree::<engine::OperationKind>("OperationKind");
    assert_spellings_agree::<engine::Outcome>("Outcome");
    assert_spellings_agree::<engine::OperationStatus>("OperationStatus");
    assert_spellings_agree::<engine::LServerState>("LServerState");
    assert_spellings_agree::<engine::Disposition>("Disposition");
    assert_spellings_agree::<engine::AlertCode>("AlertCode");
    assert_spellings_agree::<model::AvTransport>("AvTransport");
    assert_spellings_agree::<model::Action>("Action");
    assert_spellings_agree::<model::Category>("Category");
    assert_spellings_agree::<quarantine_lab::daemon::auth::Scope>("Scope");
    assert_spellings_agree::<report::ScenarioStatus>("ScenarioStatus");
    assert_spellings_agree::<sim::faults::CallKind>("CallKind");
    assert_spellings_agree::<sim::faults::FaultEffect>("FaultEffect");
    assert_spellings_agree::<scenario::load::Mode>("Mode");
    assert_spellings_agree::<check::Status>("Status");
    assert_spellings_agree::<adapters::plugin::Family>("Family");
    assert_spellings_agree::<adapters::OutcomeClass>("OutcomeClass");
}

/// The daemon's reject reasons and channels have no serde side: their `/health` and metric
/// label spellings are pinned here, the one whose name is not plain snake case included.
#[test]
fn formats_reject_and_channel_spellings_are_stable() {
    use quarantine_lab::daemon::metrics::{Channel, Reject, CHANNELS};
    assert_eq!(Reject::UnknownLServer.as_str(), "unknown_lserver");
    assert_eq!(
        Reject::SyslogTooManyConnections.as_str(),
        "syslog_too_many_connections"
    );
    assert_eq!(Reject::EpoBadRow.as_str(), "epo_bad_row");
    let channels: Vec<&str> = CHANNELS.iter().map(|c| c.as_str()).collect();
    assert_eq!(channels, ["api", "syslog_udp", "syslog_tcp", "epo"]);
    assert_eq!(Channel::Api.as_str(), "api");
}
