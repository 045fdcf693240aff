//! `qlab certify` suites: every built-in adapter certifies against its simulator (tier 3 for one
//! protocol per family here; `.ci/run` certifies every built-in adapter at tier 3), writes touch
//! only `[resources]` and are restored, and deliberately wrong adapters fail exactly the checks
//! that exist to catch them (R8: the outcome class is what makes rollback correct).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use quarantine_lab::adapters::{DeviceError, DeviceResult, OutcomeClass, Switch};
use quarantine_lab::certify::target::{builtin_factory, AdapterFactory, BuiltinKind, Device};
use quarantine_lab::certify::{run, run_with, CheckStatus, Options};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn options(product: &str, tier: u8) -> Options {
    let mut o = Options::sim(&root().join("fixtures/products").join(product), tier).unwrap();
    o.library = root().join("scenarios");
    o
}

/// Asserts `outcome` (of `what`) certified `tier`; a failure lists the failed checks.
fn assert_tier(outcome: &quarantine_lab::certify::Outcome, tier: u8, what: &str) {
    let r = &outcome.report;
    assert_eq!(
        r.certified.label,
        format!("tier-{tier}"),
        "{what}: failed {:?}\n{}",
        r.failed_ids(),
        quarantine_lab::certify::report::render_summary(r)
    );
}

/// Certifies `product` at `tier` and asserts it reached that tier with every check of the
/// catalogue in the report, in catalogue order.
fn certified(product: &str, tier: u8) -> quarantine_lab::certify::Outcome {
    let outcome = run(&options(product, tier)).unwrap();
    assert_tier(&outcome, tier, product);
    let r = &outcome.report;
    let ids: Vec<&str> = r.checks.iter().map(|c| c.id.as_str()).collect();
    let want: Vec<&str> = quarantine_lab::certify::checks::catalogue(r.family)
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, want, "{product}");
    outcome
}

fn assert_certified(product: &str, tier: u8) {
    let outcome = certified(product, tier);
    let r = &outcome.report;
    // Resources restored: the simulator's truth at the end is the truth at the start.
    // (A BMC has no state to restore: a reset is the whole of it.)
    if r.family != quarantine_lab::certify::Family::Bmc {
        assert!(!outcome.sim_truth_before.is_empty());
    }
    assert_eq!(
        outcome.sim_truth_before, outcome.sim_truth_after,
        "{product}"
    );
}

#[test]
fn r8_tier3_restconf_switch_certifies_against_its_simulator() {
    assert_certified("switch-restconf.toml", 3);
}

#[test]
fn r8_tier3_vcenter_certifies_against_its_simulator() {
    assert_certified("hypervisor-vcenter.toml", 3);
}

#[test]
fn r13_tier3_redfish_certifies_against_its_simulator() {
    assert_certified("bmc-redfish.toml", 3);
}

#[test]
fn r8_tier2_nxapi_and_eapi_certify_against_their_simulators() {
    assert_certified("switch-nxapi.toml", 2);
    assert_certified("switch-eapi.toml", 2);
}

#[test]
fn r8_writes_touch_only_resource_ports() {
    let outcome = run(&options("switch-restconf.toml", 2)).unwrap();
    let writes: Vec<_> = outcome
        .transcript
        .exchanges()
        .into_iter()
        .filter(|e| e.method != "GET" && e.path.contains("interface="))
        .collect();
    assert!(!writes.is_empty());
    for w in writes {
        assert!(
            w.path.contains("interface=ge-0%2F0%2F10")
                || w.path.contains("interface=ge-0%2F0%2F11"),
            "a write outside [resources]: {} {}",
            w.method,
            w.path
        );
    }
    // The transcript never holds the password (the simulator's is `qlab`, also the user name,
    // so look for the Basic header's form instead).
    let text = outcome.transcript.to_jsonl();
    assert!(
        !text.to_ascii_lowercase().contains("authorization"),
        "{text}"
    );
}

/// A switch adapter that turns one outcome class into another, or `unknown` into ok.
struct Wrong {
    inner: Arc<dyn Switch>,
    bend: fn(DeviceError) -> DeviceResult<()>,
    bend_reads: bool,
}

#[async_trait]
impl Switch for Wrong {
    async fn get_port(&self, port: &str) -> DeviceResult<u16> {
        match self.inner.get_port(port).await {
            Err(e) if self.bend_reads => match (self.bend)(e.clone()) {
                Ok(()) => Err(e),
                Err(bent) => Err(bent),
            },
            other => other,
        }
    }
    async fn set_port(&self, port: &str, vlan: u16) -> DeviceResult<()> {
        self.inner.set_port(port, vlan).await.or_else(self.bend)
    }
    async fn save_config(&self) -> DeviceResult<()> {
        self.inner.save_config().await.or_else(self.bend)
    }
}

fn wrong(bend: fn(DeviceError) -> DeviceResult<()>, bend_reads: bool) -> AdapterFactory {
    let builtin = builtin_factory(BuiltinKind::Restconf);
    Arc::new(move |e, timeout: Duration| match builtin(e, timeout)? {
        Device::Switch(inner) => Ok(Device::Switch(Arc::new(Wrong {
            inner,
            bend,
            bend_reads,
        }))),
        other => Ok(other),
    })
}

fn failed_with(factory: AdapterFactory) -> (Vec<String>, String, String) {
    let outcome = run_with(&options("switch-restconf.toml", 2), factory).unwrap();
    let r = &outcome.report;
    let failed: Vec<String> = r.failed_ids().into_iter().map(String::from).collect();
    let summary = quarantine_lab::certify::report::render_summary(r);
    assert!(r
        .checks
        .iter()
        .all(|c| c.status != CheckStatus::Failed || summary.contains(&c.id)));
    (failed, summary, r.certified.label.clone())
}

#[test]
fn r8_an_adapter_reporting_ok_after_a_reset_fails_exactly_the_unknown_checks() {
    let (failed, summary, label) = failed_with(wrong(
        |e| {
            if e.class == OutcomeClass::Unknown {
                Ok(())
            } else {
                Err(e)
            }
        },
        false,
    ));
    assert_eq!(failed, ["SW-2.4", "SW-2.5"], "{summary}");
    assert_eq!(label, "tier-1");
}

#[test]
fn r8_an_adapter_calling_a_4xx_unknown_fails_exactly_the_rejected_checks() {
    let (failed, summary, label) = failed_with(wrong(
        |mut e| {
            if e.class == OutcomeClass::Rejected {
                e.class = OutcomeClass::Unknown;
            }
            Err(e)
        },
        true,
    ));
    assert_eq!(failed, ["SW-1.6", "SW-1.7", "SW-2.3"], "{summary}");
    assert_eq!(label, "not certified");
}

#[test]
fn plugin_adapters_have_no_av_family() {
    let mut o = options("switch-restconf.toml", 1);
    o.adapter = quarantine_lab::certify::target::AdapterSource::Plugin(vec!["python3".into()]);
    o.family = quarantine_lab::certify::Family::Av;
    let e = run(&o).err().expect("refused");
    assert!(e.to_string().contains("no AV feed family"), "{e}");
}

fn assert_av_certified(product: &str, tier: u8) {
    certified(product, tier);
}

#[test]
fn r18_tier2_officescan_over_syslog_udp_certifies_against_the_intake() {
    assert_av_certified("av-officescan-syslog.toml", 2);
}

#[test]
fn r18_tier2_sepm_over_syslog_tcp_certifies_against_the_intake() {
    assert_av_certified("av-sepm-syslog.toml", 2);
}

#[test]
fn r19_tier2_epo_web_api_certifies_against_the_intake() {
    assert_av_certified("av-epo.toml", 2);
}

#[test]
fn r7_tier2_the_http_api_feed_certifies_against_the_intake() {
    // No fixture names an API product; the OfficeScan one switched to the API transport.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("PRODUCT.toml");
    let text = std::fs::read_to_string(root().join("fixtures/products/av-officescan-syslog.toml"))
        .unwrap()
        .replace("protocol = \"syslog_udp\"", "protocol = \"api\"");
    std::fs::write(&file, text).unwrap();
    let outcome = run(&Options::sim(&file, 2).unwrap()).unwrap();
    assert_tier(&outcome, 2, "the API feed");
    // The pushes went through the certification proxy: the transcript holds them.
    assert!(outcome
        .transcript
        .exchanges()
        .iter()
        .any(|e| e.method == "POST" && e.path.contains("detections")));
}

#[test]
fn r4_tier3_epo_feed_reaches_the_engine_and_ends_quarantined() {
    let mut o = options("av-epo.toml", 3);
    o.outbreak_nics = 10;
    let outcome = run(&o).unwrap();
    assert_tier(&outcome, 3, "av-epo.toml");
}

#[test]
fn r18_a_deployment_that_takes_syslog_from_a_stranger_fails_exactly_the_stranger_check() {
    // The site also lists an AV server at the stranger's address: its syslog is taken, which
    // AV-1.3 exists to catch; nothing else may fail.
    let o = options("av-officescan-syslog.toml", 2);
    let outcome = quarantine_lab::certify::run_av_edited(&o, &|site: String| {
        site.replacen(
            "[[switches]]",
            "[[av_servers]]\nname = \"osce-2\"\nkind = \"officescan\"\naddress = \"127.0.0.2\"\n[[switches]]",
            1,
        )
    })
    .unwrap();
    let r = &outcome.report;
    assert_eq!(
        r.failed_ids(),
        ["AV-1.3"],
        "{}",
        quarantine_lab::certify::report::render_summary(r)
    );
    assert_eq!(r.certified.label, "not certified");
}

#[test]
fn r18_a_deployment_listening_for_another_address_fails_the_intake_checks() {
    // The AV server is registered at another address than the one it sends from: nothing it
    // sends is taken, and the suite must say so rather than pass.
    let o = options("av-sepm-syslog.toml", 1);
    let outcome = quarantine_lab::certify::run_av_edited(&o, &|site: String| {
        site.replace("address = \"127.0.0.1\"", "address = \"127.0.0.3\"")
    })
    .unwrap();
    let failed = outcome.report.failed_ids();
    for id in ["AV-1.1", "AV-1.2", "AV-1.4", "AV-1.7"] {
        assert!(failed.contains(&id), "{id} passed: {failed:?}");
    }
}
