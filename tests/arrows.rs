//! The arrow ARCHITECTURE.md promises, enforced: the engine (`src/engine`) depends on `model`
//! and `adapters` only, never on the lab (`sim`, `scenario`, `check`, `report`, `bench`,
//! `explore`) nor on anything else at the crate root (`daemon`, `ingest`, …), so the code that
//! runs in production is the code the lab tests. Read from the sources: every path that names a
//! crate-root module (`crate::x`, a `use crate::{x, …}` group, or a `super::…` chain that climbs
//! out of the engine) counts, in code and in doc links alike; comments that are not doc links
//! do not.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What the engine may depend on besides itself.
const ENGINE_MAY_USE: &[&str] = &["engine", "model", "adapters"];

/// The lab: named here so the test fails loudly if a rename made it check nothing.
const LAB: &[&str] = &["sim", "scenario", "check", "report", "bench", "explore"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The crate's top-level modules, from `src/lib.rs`.
fn crate_modules() -> BTreeSet<String> {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).expect("src/lib.rs");
    lib.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("mod "))?;
            Some(rest.trim_end_matches(';').trim().to_string())
        })
        .collect()
}

/// The module depth of a file under `src/`: `engine/mod.rs` is 1 (`crate::engine`),
/// `engine/journal/entry.rs` is 3 (`crate::engine::journal::entry`).
fn module_depth(relative: &Path) -> usize {
    let parts = relative.components().count();
    match relative.file_name().and_then(|n| n.to_str()) {
        Some("mod.rs") => parts - 1,
        _ => parts,
    }
}

/// Source text without plain comments, line for line (so offsets keep their line numbers); doc
/// comments (`///`, `//!`) are kept, since a doc link to a lab item is a dependency too. Block
/// comments are dropped.
fn code_and_docs(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut in_block = 0usize;
    for line in source.lines() {
        let mut rest = line;
        let mut kept = String::new();
        loop {
            if in_block > 0 {
                match (rest.find("/*"), rest.find("*/")) {
                    (Some(open), Some(close)) if open < close => {
                        in_block += 1;
                        rest = &rest[open + 2..];
                    }
                    (_, Some(close)) => {
                        in_block -= 1;
                        rest = &rest[close + 2..];
                    }
                    _ => break,
                }
                continue;
            }
            let trimmed = rest.trim_start();
            if trimmed.starts_with("///") || trimmed.starts_with("//!") {
                kept.push_str(rest);
                break;
            }
            match (rest.find("//"), rest.find("/*")) {
                (Some(line_comment), block) if block.is_none_or(|b| line_comment < b) => {
                    kept.push_str(&rest[..line_comment]);
                    break;
                }
                (_, Some(block)) => {
                    kept.push_str(&rest[..block]);
                    in_block += 1;
                    rest = &rest[block + 2..];
                }
                _ => {
                    kept.push_str(rest);
                    break;
                }
            }
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// The identifier at the start of `text` (after blanks).
fn ident(text: &str) -> &str {
    let text = text.trim_start();
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The first identifiers of a `{a, b::c, d::{e, f}}` group's members, `text` starting after `{`.
fn group_heads(text: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut start = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                heads.push(ident(&text[start..i]).to_string());
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                heads.push(ident(&text[start..i]).to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    heads.retain(|h| !h.is_empty() && h != "self");
    heads
}

/// The crate-root modules `source` (a file at module depth `depth`) names, with the line that
/// names each: after `crate::`, or after a `super::` chain of at least `depth` links.
fn root_modules_named_at(source: &str, depth: usize) -> Vec<(usize, String)> {
    let text = code_and_docs(source);
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < text.len() {
        let at_word_start =
            i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let (climbs_to_root, after) = if !at_word_start {
            (false, i)
        } else if text[i..].starts_with("crate") && !text[i..].starts_with("crate_") {
            (true, i + "crate".len())
        } else if text[i..].starts_with("super") {
            let mut links = 0;
            let mut j = i;
            while text[j..].starts_with("super") {
                links += 1;
                j += "super".len();
                let rest = text[j..].trim_start();
                match rest.strip_prefix("::") {
                    Some(r) if r.trim_start().starts_with("super") => {
                        j = text.len() - r.trim_start().len();
                    }
                    _ => break,
                }
            }
            (links >= depth, j)
        } else {
            (false, i)
        };
        if climbs_to_root {
            if let Some(path) = text[after..].trim_start().strip_prefix("::") {
                let path = path.trim_start();
                let line = text[..i].matches('\n').count() + 1;
                match path.strip_prefix('{') {
                    Some(group) => found.extend(group_heads(group).into_iter().map(|m| (line, m))),
                    None => found.push((line, ident(path).to_string())),
                }
            }
            i = after;
        } else {
            i += text[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    found.retain(|(_, m)| !m.is_empty());
    found
}

/// [`root_modules_named_at`] without the lines.
fn root_modules_named(source: &str, depth: usize) -> Vec<String> {
    root_modules_named_at(source, depth)
        .into_iter()
        .map(|(_, m)| m)
        .collect()
}

#[test]
fn engine_names_no_lab_module_and_nothing_outside_model_and_adapters() {
    let modules = crate_modules();
    for lab in LAB {
        assert!(modules.contains(*lab), "src/lib.rs has no module {lab}");
    }
    let src = root().join("src");
    let files = common::files_below(&src.join("engine"), "rs");
    assert!(files.len() >= 10, "found only {} engine files", files.len());
    let mut violations = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src/");
        let source = std::fs::read_to_string(file).expect("readable source");
        for (line, module) in root_modules_named_at(&source, module_depth(relative)) {
            if modules.contains(&module) && !ENGINE_MAY_USE.contains(&module.as_str()) {
                violations.push(format!(
                    "src/{}:{line}: names crate::{module}",
                    relative.display()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "the engine must not depend on the lab or the daemon (ARCHITECTURE.md, \"Modules and arrows\"):\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_reader_sees_every_way_of_naming_a_root_module() {
    let named = |source: &str, depth: usize| root_modules_named(source, depth);
    assert_eq!(named("use crate::sim::world::SimWorld;", 2), ["sim"]);
    assert_eq!(named("let x = crate :: check::run();", 2), ["check"]);
    assert_eq!(
        named(
            "use crate::{model::Site, report, scenario::{load, file}};",
            2
        ),
        ["model", "report", "scenario"]
    );
    assert_eq!(named("/// See [`crate::bench::run`].", 2), ["bench"]);
    // rustfmt spreads long groups over lines.
    assert_eq!(
        named(
            "use crate::{\n    adapters::Switch,\n    ingest::parse,\n};",
            2
        ),
        ["adapters", "ingest"]
    );
    assert_eq!(
        root_modules_named_at(
            "//! Engine.\n\nuse crate::model;\n/* a\n crate::sim\n */ use crate::daemon;",
            1
        ),
        [(3, "model".to_string()), (6, "daemon".to_string())]
    );
    // From engine/journal/entry.rs (depth 3): two links stay in the engine, three reach the root.
    assert!(named("use super::super::alerts::Alert;", 3).is_empty());
    assert_eq!(
        named("use super::super::super::explore::Run;", 3),
        ["explore"]
    );
    assert_eq!(
        named("use super::super::super::{sim, model};", 3),
        ["sim", "model"]
    );
    // Plain comments, strings of other words and identifiers that merely contain the word do not count.
    assert!(named("// crate::sim is what the lab uses", 2).is_empty());
    assert!(named("/* crate::sim */ let a = 1;", 2).is_empty());
    assert!(named("let crate_sim = supersede(1);", 2).is_empty());
    assert_eq!(
        named("let a = 1; // crate::report\nuse crate::sim;", 2),
        ["sim"]
    );
}
