//! `qlab certify verify`: a fresh bundle is accepted; a changed file, a missing required check,
//! an undeclared skip or a tool version outside the window is refused; a declared deviation is
//! accepted and labelled as such (a tier reached with deviations is never a plain tier).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use quarantine_lab::certify::bundle::{read_bundle, write_bundle, write_raw};
use quarantine_lab::certify::cli::bundle_files;
use quarantine_lab::certify::report::CertifyReport;
use quarantine_lab::certify::verify::verify;
use quarantine_lab::certify::{run, CheckStatus, Options};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tier-2 bundle of `product` (tier 2 keeps the test short; tier 3 adds only checks).
fn fresh(dir: &Path, product: &str) -> PathBuf {
    let options = Options::sim(&root().join("fixtures/products").join(product), 2).unwrap();
    let outcome = run(&options).unwrap();
    assert_eq!(outcome.report.certified.label, "tier-2");
    let files = bundle_files(&options, &outcome.report, &outcome.transcript.to_jsonl()).unwrap();
    let path = dir.join(format!("{product}.tar.gz"));
    write_bundle(&path, &files).unwrap();
    path
}

fn edit_report(
    bundle: &Path,
    out: &Path,
    edit: impl FnOnce(&mut CertifyReport),
) -> BTreeMap<String, Vec<u8>> {
    let mut files = read_bundle(bundle).unwrap();
    let mut report: CertifyReport = serde_json::from_slice(&files["report.json"]).unwrap();
    edit(&mut report);
    files.insert("report.json".into(), serde_json::to_vec(&report).unwrap());
    files.remove("MANIFEST.sha256");
    // A fresh manifest: only the content is wrong, not the digests.
    write_bundle(out, &files).unwrap();
    files
}

/// The labels of the bundle at `path`, which must be accepted.
fn accepted_labels(path: &Path) -> Vec<String> {
    let v = verify(path);
    assert!(v.accepted(), "{:?}", v.rejections);
    v.labels
}

/// Marks check `id` of `report` skipped.
fn skip(report: &mut CertifyReport, id: &str) {
    let check = report.checks.iter_mut().find(|c| c.id == id);
    check.unwrap_or_else(|| panic!("no check {id}")).status = CheckStatus::Skipped;
}

fn rejections(path: &Path) -> String {
    let v = verify(path);
    assert!(!v.accepted(), "accepted: {:?}", v.labels);
    v.rejections.join("\n")
}

/// Asserts `bundle` with check `id` left out of its report is rejected: `id` is required.
fn assert_required(dir: &Path, bundle: &Path, id: &str) {
    let missing = dir.join(format!("missing-{id}.tar.gz"));
    edit_report(bundle, &missing, |r| r.checks.retain(|c| c.id != id));
    let text = rejections(&missing);
    let want = format!("{id} is required for tier 2 but missing");
    assert!(text.contains(&want), "{want:?} not in: {text}");
}

/// Asserts `bundle` with check `id` skipped, and no deviation declared, is rejected.
fn assert_not_skippable(dir: &Path, bundle: &Path, id: &str) {
    let skipped = dir.join(format!("skipped-{id}.tar.gz"));
    edit_report(bundle, &skipped, |r| skip(r, id));
    let text = rejections(&skipped);
    let want = format!("{id} was skipped and no deviation");
    assert!(text.contains(&want), "{want:?} not in: {text}");
}

#[test]
fn inv_bundle_verify_accepts_fresh_and_refuses_tampered_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = fresh(dir.path(), "switch-restconf.toml");
    let labels = accepted_labels(&bundle);
    assert!(labels.contains(&"tier-2".to_string()), "{:?}", labels);
    assert!(!labels.contains(&"deviations-declared".to_string()));

    // A changed file, manifest untouched.
    let mut files = read_bundle(&bundle).unwrap();
    files.insert("summary.md".into(), b"# all green, trust me\n".to_vec());
    let changed = dir.path().join("changed.tar.gz");
    write_raw(&changed, &files).unwrap();
    assert!(rejections(&changed).contains("summary.md was changed"));

    // A required check missing.
    assert_required(dir.path(), &bundle, "SW-2.4");

    // A required check skipped without a deviation.
    assert_not_skippable(dir.path(), &bundle, "SW-2.5");

    // A tool version outside the supported window.
    let future = dir.path().join("future.tar.gz");
    edit_report(&bundle, &future, |r| r.tool_version = "9.0.0".into());
    assert!(rejections(&future).contains("outside the supported window"));

    // A file the manifest does not list.
    let mut files = read_bundle(&bundle).unwrap();
    files.insert("extra.txt".into(), b"x".to_vec());
    let extra = dir.path().join("extra.tar.gz");
    write_raw(&extra, &files).unwrap();
    assert!(rejections(&extra).contains("extra.txt is not in MANIFEST.sha256"));
}

#[test]
fn inv_bundle_a_declared_deviation_is_tier_with_deviations_never_plain() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = fresh(dir.path(), "switch-restconf-with-deviation.toml");
    // The device could not take the session expiry: SW-2.6 skipped, as PRODUCT.toml declares.
    let out = dir.path().join("deviation.tar.gz");
    let files = edit_report(&bundle, &out, |r| {
        skip(r, "SW-2.6");
        r.certified.with_deviations = true;
        r.certified.label = "tier-2 with deviations".into();
    });
    let product = String::from_utf8(files["PRODUCT.toml"].clone()).unwrap();
    assert!(product.contains("SW-2.6"));
    let labels = accepted_labels(&out);
    assert!(labels.contains(&"tier-2".to_string()), "{:?}", labels);
    assert!(
        labels.contains(&"deviations-declared".to_string()),
        "{:?}",
        labels
    );

    // The same skip claimed as a plain tier 2 is refused: the label must say "with deviations".
    let plain = dir.path().join("plain.tar.gz");
    edit_report(&bundle, &plain, |r| skip(r, "SW-2.6"));
    assert!(rejections(&plain).contains("tier-2 with deviations"));
}

#[test]
fn inv_bundle_an_av_feed_bundle_verifies_and_its_required_checks_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = fresh(dir.path(), "av-sepm-syslog.toml");
    let labels = accepted_labels(&bundle);
    assert!(labels.contains(&"family-av".to_string()), "{:?}", labels);

    // Over syslog TCP the peer-close check is required of tier 2.
    assert_required(dir.path(), &bundle, "AV-2.3");
    assert_not_skippable(dir.path(), &bundle, "AV-1.4");
}
