//! `qlab report merge DIR... --out DIR`: one report from the reports of a run's shards.
//!
//! Refused (nothing written): reports of different builds (`tool_version`, `git_sha`, or
//! `binary_sha256` where both name one), of different runs (`mode`, `seed`, shard count or
//! assignment), a shard given twice, a scenario run present in two reports, a mix of sharded and
//! unsharded reports. Missing shards are named; the merge is refused unless `allow_missing`, and
//! then the missing shards are listed as warnings. When every shard is there, the scenario runs
//! must add up to the `selected` each shard recorded.
//!
//! The merged report has no `shard`, starts at the earliest shard's `started_at`, and lists the
//! scenario runs by file, then mode (the order of an unsharded run of one folder). report.html
//! takes each scenario's section from its shard's page as it is.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::html::{render_from_sections, sections_of};
use super::{write_reports, RunReport};

/// A merged report, its page and what the merge warns about.
#[derive(Debug)]
pub struct Merged {
    /// The merged report.json.
    pub report: RunReport,
    /// The merged report.html.
    pub html: String,
    /// Missing shards under `allow_missing`.
    pub warnings: Vec<String>,
}

/// Reads and merges the reports in `dirs`.
pub fn merge_dirs(dirs: &[PathBuf], allow_missing: bool) -> Result<Merged, String> {
    if dirs.is_empty() {
        return Err("no report folder to merge".into());
    }
    let mut inputs: Vec<(PathBuf, RunReport, HashMap<String, String>)> = Vec::new();
    for dir in dirs {
        let report = RunReport::read(dir)?;
        let page = dir.join("report.html");
        let sections = if page.is_file() {
            sections_of(&super::read_capped(&page)?)
        } else {
            HashMap::new()
        };
        inputs.push((dir.clone(), report, sections));
    }
    let reports: Vec<(&Path, &RunReport)> =
        inputs.iter().map(|(d, r, _)| (d.as_path(), r)).collect();
    let warnings = check(&reports, allow_missing)?;
    let first = &inputs[0].1;
    let mut scenarios = Vec::new();
    let mut sections = HashMap::new();
    for (_, r, s) in &inputs {
        scenarios.extend(r.scenarios.iter().cloned());
        sections.extend(s.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    scenarios.sort_by(|a, b| {
        a.file
            .cmp(&b.file)
            .then_with(|| a.mode.cmp(&b.mode))
            .then_with(|| a.name.cmp(&b.name))
    });
    let report = RunReport {
        tool_version: first.tool_version.clone(),
        git_sha: first.git_sha.clone(),
        started_at: inputs
            .iter()
            .map(|(_, r, _)| r.started_at.clone())
            .min()
            .unwrap_or_default(),
        mode: first.mode.clone(),
        seed: first.seed,
        binary_sha256: inputs.iter().find_map(|(_, r, _)| r.binary_sha256.clone()),
        shard: None,
        scenarios,
    };
    let html = render_from_sections(&report, &sections);
    Ok(Merged {
        report,
        html,
        warnings,
    })
}

/// Writes a merged report (report.json, junit.xml, summary.md, report.html) into `out`.
pub fn write_merged(out: &Path, merged: &Merged) -> std::io::Result<()> {
    write_reports(out, &merged.report)?;
    std::fs::write(out.join("report.html"), &merged.html)
}

/// The refusals; on success, the warnings.
fn check(reports: &[(&Path, &RunReport)], allow_missing: bool) -> Result<Vec<String>, String> {
    let (first_dir, first) = reports[0];
    for (dir, r) in &reports[1..] {
        let differ = |what: &str, a: &str, b: &str| {
            format!(
                "{} and {} come from different builds: {what} {a} vs {b}; merge only the shards \
                 of one run of one build",
                first_dir.display(),
                dir.display()
            )
        };
        if r.tool_version != first.tool_version {
            return Err(differ("tool_version", &first.tool_version, &r.tool_version));
        }
        if r.git_sha != first.git_sha {
            return Err(differ("git_sha", &first.git_sha, &r.git_sha));
        }
        if let (Some(a), Some(b)) = (&first.binary_sha256, &r.binary_sha256) {
            if a != b {
                return Err(differ("binary_sha256", a, b));
            }
        }
        let runs = |what: &str, a: String, b: String| {
            format!(
                "{} and {} are not shards of one run: {what} {a} vs {b}",
                first_dir.display(),
                dir.display()
            )
        };
        if r.mode != first.mode {
            return Err(runs("mode", first.mode.clone(), r.mode.clone()));
        }
        if r.seed != first.seed {
            return Err(runs(
                "seed",
                format!("{:?}", first.seed),
                format!("{:?}", r.seed),
            ));
        }
    }
    let mut seen: HashMap<(String, String), &Path> = HashMap::new();
    for (dir, r) in reports {
        for s in &r.scenarios {
            if let Some(other) = seen.insert((s.name.clone(), s.mode.clone()), dir) {
                return Err(format!(
                    "shards overlap: {} ({}) is in both {} and {}",
                    s.name,
                    s.mode,
                    other.display(),
                    dir.display()
                ));
            }
        }
    }
    let sharded = reports.iter().filter(|(_, r)| r.shard.is_some()).count();
    if sharded == 0 {
        return Ok(Vec::new());
    }
    if sharded != reports.len() {
        let plain: Vec<String> = reports
            .iter()
            .filter(|(_, r)| r.shard.is_none())
            .map(|(d, _)| d.display().to_string())
            .collect();
        return Err(format!(
            "{} hold a whole run, not a shard; merge shards of one run only",
            plain.join(", ")
        ));
    }
    let mut indices: HashMap<usize, &Path> = HashMap::new();
    let Some(info) = reports[0].1.shard.clone() else {
        return Ok(Vec::new());
    };
    for (dir, r) in reports {
        let Some(s) = &r.shard else { continue };
        if s.count != info.count || s.assignment != info.assignment || s.selected != info.selected {
            return Err(format!(
                "{} and {} are not shards of one run: shard {}/{} ({}, {} selected) vs {}/{} ({}, \
                 {} selected); give every shard the same --shard N and the same --durations file",
                reports[0].0.display(),
                dir.display(),
                info.index,
                info.count,
                info.assignment,
                info.selected,
                s.index,
                s.count,
                s.assignment,
                s.selected
            ));
        }
        if let Some(other) = indices.insert(s.index, dir) {
            return Err(format!(
                "shards overlap: shard {}/{} is both {} and {}",
                s.index,
                s.count,
                other.display(),
                dir.display()
            ));
        }
    }
    let present: BTreeSet<usize> = indices.keys().copied().collect();
    let missing: Vec<String> = (1..=info.count)
        .filter(|k| !present.contains(k))
        .map(|k| format!("{k}/{}", info.count))
        .collect();
    if !missing.is_empty() {
        let text = format!("missing shards: {}", missing.join(", "));
        if allow_missing {
            return Ok(vec![text]);
        }
        return Err(format!(
            "{text} (pass --allow-missing to merge what is there)"
        ));
    }
    let runs: usize = reports.iter().map(|(_, r)| r.scenarios.len()).sum();
    if runs != info.selected {
        return Err(format!(
            "the shards hold {runs} scenario runs but the run selected {}: were they run with the \
             same paths, --tag and --name?",
            info.selected
        ));
    }
    Ok(Vec::new())
}
