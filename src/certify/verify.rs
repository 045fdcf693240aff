//! `qlab certify verify BUNDLE`: checks an evidence bundle the way a conformance bot would.
//!
//! Rules (each failure is a line `rejected: ...`; any makes the exit status 1):
//! 1. The bundle holds PRODUCT.toml, report.json, junit.xml, summary.md, transcript.jsonl and
//!    MANIFEST.sha256; the manifest lists every other file, and every digest matches.
//! 2. PRODUCT.toml is valid and report.json is `qlab.certify/v1` for the same family and product.
//! 3. The tool version is within the supported window: from [`MIN_SUPPORTED`] to this
//!    build's version (a newer tool may have checks this one does not know).
//! 4. For the tier the report claims, every check the catalogue requires of this product on this
//!    kind of target (and of every lower tier) is present; each passed, or failed or was
//!    skipped under a deviation PRODUCT.toml declares. A deviation the report names but
//!    PRODUCT.toml does not declare is refused.
//! 5. The claimed label equals the one computed again from the checks and PRODUCT.toml.
//!
//! Labels printed on success: `tier-N`, `deviations-declared` when one was needed,
//! `family-<family>`, `target-sim` or `target-real`, `digests-ok`, `tool-version-ok`.

use std::path::Path;

use super::bundle::{read_bundle, sha256_hex, MANIFEST};
use super::checks;
use super::product::parse_product;
use super::report::{certified, CertifyReport, SCHEMA};
use super::CheckStatus;

/// Oldest tool version whose bundles this build accepts.
pub const MIN_SUPPORTED: &str = "0.1.0";

/// Files every bundle holds.
pub const REQUIRED_FILES: &[&str] = &[
    "PRODUCT.toml",
    "report.json",
    "junit.xml",
    "summary.md",
    "transcript.jsonl",
    MANIFEST,
];

/// The verdict on a bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Labels earned.
    pub labels: Vec<String>,
    /// Why the bundle is refused (empty: accepted).
    pub rejections: Vec<String>,
}

impl Verdict {
    /// Whether the bundle is accepted.
    pub fn accepted(&self) -> bool {
        self.rejections.is_empty()
    }
}

fn version(text: &str) -> Option<(u64, u64, u64)> {
    let core = text.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

/// Verifies the bundle at `path`.
pub fn verify(path: &Path) -> Verdict {
    let mut v = Verdict::default();
    let files = match read_bundle(path) {
        Ok(f) => f,
        Err(e) => {
            v.rejections.push(e);
            return v;
        }
    };
    for name in REQUIRED_FILES {
        if !files.contains_key(*name) {
            v.rejections.push(format!("{name} is missing"));
        }
    }
    if !v.accepted() {
        return v;
    }
    // 1. Digests.
    let manifest = String::from_utf8_lossy(&files[MANIFEST]).into_owned();
    let mut listed = std::collections::BTreeSet::new();
    for (i, line) in manifest.lines().enumerate() {
        let Some((digest, name)) = line.split_once("  ") else {
            v.rejections
                .push(format!("{MANIFEST} line {}: not `<sha256>  <name>`", i + 1));
            continue;
        };
        listed.insert(name.to_string());
        match files.get(name) {
            None => v
                .rejections
                .push(format!("{name} is in {MANIFEST} but not in the bundle")),
            Some(bytes) if sha256_hex(bytes) != digest => v.rejections.push(format!(
                "{name} was changed: its SHA-256 differs from {MANIFEST}"
            )),
            Some(_) => {}
        }
    }
    for name in files.keys().filter(|n| n.as_str() != MANIFEST) {
        if !listed.contains(name) {
            v.rejections.push(format!("{name} is not in {MANIFEST}"));
        }
    }
    let digests_ok = v.accepted();
    // 2. Product and report.
    let product_text = String::from_utf8_lossy(&files["PRODUCT.toml"]).into_owned();
    let product = match parse_product(Path::new("PRODUCT.toml"), &product_text) {
        Ok(p) => p,
        Err(e) => {
            v.rejections.push(e.to_string());
            return v;
        }
    };
    let report: CertifyReport = match serde_json::from_slice(&files["report.json"]) {
        Ok(r) => r,
        Err(e) => {
            v.rejections.push(format!("report.json: {e}"));
            return v;
        }
    };
    if report.schema != SCHEMA {
        v.rejections.push(format!(
            "report.json: schema {:?}, expected {SCHEMA:?}",
            report.schema
        ));
    }
    if report.family != product.family {
        v.rejections.push(format!(
            "report.json is for family {} but PRODUCT.toml says {}",
            report.family.as_str(),
            product.family.as_str()
        ));
    }
    let p = &report.product;
    if (&p.vendor, &p.product, &p.version, &p.protocol)
        != (
            &product.vendor,
            &product.product,
            &product.version,
            &product.protocol,
        )
    {
        v.rejections
            .push("report.json names another product than PRODUCT.toml".into());
    }
    // 3. Tool version window.
    let ours = env!("CARGO_PKG_VERSION");
    match (
        version(&report.tool_version),
        version(MIN_SUPPORTED),
        version(ours),
    ) {
        (Some(t), Some(min), Some(max)) if t >= min && t <= max => {}
        _ => v.rejections.push(format!(
            "tool version {:?} is outside the supported window {MIN_SUPPORTED} to {ours}",
            report.tool_version
        )),
    }
    let version_ok = v.rejections.iter().all(|r| !r.starts_with("tool version"));
    // 4. Required checks of the claimed tier.
    let claimed = report.certified.tier;
    if claimed == 0 {
        v.rejections.push("the report claims no tier".into());
    }
    let sim = report.target == "sim";
    for def in checks::catalogue(product.family) {
        if def.tier > claimed || !checks::required(def, &product, sim) {
            continue;
        }
        let declared = product.deviation_for(def.id).is_some();
        match report.checks.iter().find(|c| c.id == def.id) {
            None => v.rejections.push(format!(
                "{} is required for tier {claimed} but missing",
                def.id
            )),
            Some(c) if c.status == CheckStatus::Passed => {}
            Some(c) if declared => {
                let _ = c;
            }
            Some(c) if c.status == CheckStatus::Skipped => v.rejections.push(format!(
                "{} was skipped and no deviation in PRODUCT.toml declares it",
                def.id
            )),
            Some(_) => v.rejections.push(format!(
                "{} failed and no deviation in PRODUCT.toml declares it",
                def.id
            )),
        }
    }
    for c in &report.checks {
        if c.deviation.is_some() && product.deviation_for(&c.id).is_none() {
            v.rejections.push(format!(
                "{} names a deviation PRODUCT.toml does not declare",
                c.id
            ));
        }
    }
    // 5. The label.
    let again = certified(&product, &report.checks, claimed.max(1));
    if again.tier != claimed || again.with_deviations != report.certified.with_deviations {
        v.rejections.push(format!(
            "the report claims {:?}, the checks give {:?}",
            report.certified.label, again.label
        ));
    }
    if v.accepted() {
        v.labels.push(format!("tier-{claimed}"));
        if again.with_deviations {
            v.labels.push("deviations-declared".into());
        }
        v.labels.push(format!("family-{}", product.family.as_str()));
        v.labels
            .push(if sim { "target-sim" } else { "target-real" }.into());
    }
    if digests_ok {
        v.labels.push("digests-ok".into());
    }
    if version_ok {
        v.labels.push("tool-version-ok".into());
    }
    v
}
