//! The certification report: `report.json` (`qlab.certify/v1`), `junit.xml` (one test suite per
//! tier, one case per check) and `summary.md`.
//!
//! The certified tier is computed from the checks by [`certified`], which `qlab certify verify`
//! calls again on the bundle's own PRODUCT.toml rather than trusting the label written here.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::checks;
use super::product::Product;
use super::{CheckResult, CheckStatus, Family, Options};

/// The schema id of report.json.
pub const SCHEMA: &str = "qlab.certify/v1";

/// What was certified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProductLine {
    /// Vendor.
    pub vendor: String,
    /// Product.
    pub product: String,
    /// Version.
    pub version: String,
    /// Protocol.
    pub protocol: String,
}

/// The tier reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Certified {
    /// 0 when not even tier 1 holds.
    pub tier: u8,
    /// Whether a declared deviation was needed.
    pub with_deviations: bool,
    /// `tier-2`, `tier-2 with deviations`, `not certified`.
    pub label: String,
}

/// report.json of `qlab certify`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CertifyReport {
    /// [`SCHEMA`].
    pub schema: String,
    /// qlab's version.
    pub tool_version: String,
    /// The commit qlab was built from (`unknown` outside a git checkout).
    pub git_sha: String,
    /// RFC 3339.
    pub started_at: String,
    /// Family.
    pub family: Family,
    /// Product.
    pub product: ProductLine,
    /// `builtin:KIND` or `plugin:CMD`.
    pub adapter: String,
    /// `sim` or the target's URL.
    pub target: String,
    /// The tier asked for.
    pub tier_requested: u8,
    /// The tier reached.
    pub certified: Certified,
    /// Every check of the catalogue, in order.
    pub checks: Vec<CheckResult>,
}

/// The tier reached by `results` for `product` asked at `requested`: the highest tier whose
/// required checks, and those of every lower tier, passed or are excused by a deviation the
/// product declares.
pub fn certified(product: &Product, results: &[CheckResult], requested: u8) -> Certified {
    let mut tier = 0;
    let mut with_deviations = false;
    for t in 1..=requested {
        let mut holds = true;
        let mut excused = false;
        for r in results.iter().filter(|r| r.tier == t && r.required) {
            if r.status == CheckStatus::Passed {
                continue;
            }
            if product.deviation_for(&r.id).is_some() {
                excused = true;
            } else {
                holds = false;
            }
        }
        if !holds {
            break;
        }
        tier = t;
        with_deviations |= excused;
    }
    let label = match (tier, with_deviations) {
        (0, _) => "not certified".to_string(),
        (t, false) => format!("tier-{t}"),
        (t, true) => format!("tier-{t} with deviations"),
    };
    Certified {
        tier,
        with_deviations,
        label,
    }
}

impl CertifyReport {
    /// The report of a run.
    pub fn build(options: &Options, started_at: String, results: Vec<CheckResult>) -> Self {
        let p = &options.product;
        let certified = certified(p, &results, options.tier);
        CertifyReport {
            schema: SCHEMA.into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            git_sha: crate::BUILD_COMMIT.to_string(),
            started_at,
            family: options.family,
            product: ProductLine {
                vendor: p.vendor.clone(),
                product: p.product.clone(),
                version: p.version.clone(),
                protocol: p.protocol.clone(),
            },
            adapter: options.adapter.describe(),
            target: options
                .real
                .as_ref()
                .map_or_else(|| "sim".to_string(), |r| r.url.clone()),
            tier_requested: options.tier,
            certified,
            checks: results,
        }
    }

    /// Whether the tier asked for was reached.
    pub fn passed(&self) -> bool {
        self.certified.tier >= self.tier_requested
    }

    /// Ids of the checks that failed.
    pub fn failed_ids(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|c| c.status == CheckStatus::Failed)
            .map(|c| c.id.as_str())
            .collect()
    }
}

/// report.json as text.
pub fn render_json(report: &CertifyReport) -> io::Result<String> {
    let mut text = serde_json::to_string_pretty(report).map_err(io::Error::other)?;
    text.push('\n');
    Ok(text)
}

/// junit.xml: one suite per tier, one case per check; skipped checks are skipped cases.
pub fn render_junit(report: &CertifyReport) -> io::Result<String> {
    let mut by_tier: BTreeMap<u8, Vec<&CheckResult>> = BTreeMap::new();
    for c in &report.checks {
        by_tier.entry(c.tier).or_default().push(c);
    }
    let mut junit = Report::new("qlab certify");
    for (tier, list) in by_tier {
        let mut suite = TestSuite::new(format!("tier-{tier}"));
        let ms = list.iter().map(|c| c.duration_ms).sum::<u64>();
        suite.set_time(Duration::from_millis(ms));
        for c in list {
            let status = match c.status {
                CheckStatus::Passed => TestCaseStatus::success(),
                CheckStatus::Skipped => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(c.detail.clone());
                    s
                }
                CheckStatus::Failed => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    let message = match &c.deviation {
                        Some(why) => format!("deviation declared: {why}"),
                        None => "failed".into(),
                    };
                    s.set_message(message)
                        .set_type("check")
                        .set_description(c.detail.clone());
                    s
                }
            };
            let mut case = TestCase::new(format!("{} {}", c.id, c.title), status);
            case.set_classname(format!("qlab.certify.{}", report.family.as_str()))
                .set_time(Duration::from_millis(c.duration_ms))
                .set_system_out(format!("rule: {}\n{}", c.rule, c.detail));
            suite.add_test_case(case);
        }
        junit.add_test_suite(suite);
    }
    junit.to_string().map_err(io::Error::other)
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// summary.md.
pub fn render_summary(report: &CertifyReport) -> String {
    let p = &report.product;
    let mut out = format!(
        "# Certification: {} {} {} ({}, {})\n\n**{}** (tier {} asked) · adapter `{}` · target `{}` · qlab {} ({})\n\n",
        cell(&p.vendor),
        cell(&p.product),
        cell(&p.version),
        report.family.as_str(),
        cell(&p.protocol),
        report.certified.label,
        report.tier_requested,
        report.adapter,
        report.target,
        report.tool_version,
        report.git_sha
    );
    out.push_str(
        "| check | title | rule | required | status | detail |\n|---|---|---|---|---|---|\n",
    );
    for c in &report.checks {
        let status = match (c.status, &c.deviation) {
            (CheckStatus::Failed, Some(_)) => "failed (deviation)",
            (CheckStatus::Skipped, Some(_)) => "skipped (deviation)",
            (CheckStatus::Passed, _) => "passed",
            (CheckStatus::Failed, None) => "**FAILED**",
            (CheckStatus::Skipped, None) => "skipped",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            c.id,
            cell(&c.title),
            cell(&c.rule),
            if c.required { "yes" } else { "no" },
            status,
            cell(&c.detail)
        ));
    }
    let deviations: Vec<&CheckResult> = report
        .checks
        .iter()
        .filter(|c| c.deviation.is_some())
        .collect();
    if !deviations.is_empty() {
        out.push_str("\n## Declared deviations\n\n");
        for c in deviations {
            out.push_str(&format!(
                "- {}: {}\n",
                c.id,
                cell(c.deviation.as_deref().unwrap_or(""))
            ));
        }
    }
    out
}

/// Writes report.json, junit.xml and summary.md into `dir`.
pub fn write_reports(dir: &Path, report: &CertifyReport) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("report.json"), render_json(report)?)?;
    std::fs::write(dir.join("junit.xml"), render_junit(report)?)?;
    std::fs::write(dir.join("summary.md"), render_summary(report))?;
    Ok(())
}

/// Every check of the catalogue of `family` that `results` lacks.
pub fn missing(family: Family, results: &[CheckResult]) -> Vec<&'static str> {
    checks::catalogue(family)
        .iter()
        .filter(|d| !results.iter().any(|r| r.id == d.id))
        .map(|d| d.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certify::product::parse_product;

    fn check(id: &str, tier: u8, status: CheckStatus) -> CheckResult {
        CheckResult {
            id: id.into(),
            tier,
            title: String::new(),
            rule: String::new(),
            required: true,
            status,
            detail: String::new(),
            deviation: None,
            duration_ms: 0,
        }
    }

    #[test]
    fn a_tier_reached_through_a_deviation_is_never_plain() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/products/switch-restconf-with-deviation.toml"
        ))
        .unwrap();
        let product = parse_product(Path::new("PRODUCT.toml"), &text).unwrap();
        let mut results = vec![
            check("SW-1.1", 1, CheckStatus::Passed),
            check("SW-2.5", 2, CheckStatus::Passed),
            check("SW-2.6", 2, CheckStatus::Passed),
        ];
        assert_eq!(certified(&product, &results, 2).label, "tier-2");
        results[2].status = CheckStatus::Failed;
        let c = certified(&product, &results, 2);
        assert_eq!((c.tier, c.label.as_str()), (2, "tier-2 with deviations"));
        // An undeclared failure stops at the tier below.
        results[1].status = CheckStatus::Skipped;
        assert_eq!(certified(&product, &results, 2).label, "tier-1");
        results[0].status = CheckStatus::Failed;
        assert_eq!(certified(&product, &results, 2).label, "not certified");
    }
}
