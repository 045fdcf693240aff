//! Reading a topology file: size cap, TOML parsing, semantic validation and `[generate]`
//! expansion, with every error naming the file, the line and the dotted key.
//!
//! Errors point into the file the user wrote, so this module also finds lines: [`locate`] maps a
//! key path such as `lservers[3].nics[0].network` to its line, and [`Locator::path_at`] maps a
//! byte offset reported by the TOML deserializer back to the key path around it.

use std::fmt;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml_edit::{ArrayOfTables, ImDocument, Item, Table, Value};

use super::site::Site;
use super::topology::Topology;
use super::{generate, validate};

/// A topology that cannot be used, located as precisely as the input allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TopologyError {
    /// The topology file.
    pub file: PathBuf,
    /// 1-based line of the offending key, when known.
    pub line: Option<usize>,
    /// Dotted key path such as `lservers[2].nics[0].switch`; empty when no key is involved.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for TopologyError {
    /// `{file}:{line}: {key}: {message}`; the line and key parts are left out when unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl TopologyError {
    /// An error about the file as a whole (I/O, size), not about one key.
    fn whole_file(file: &Path, message: String) -> TopologyError {
        TopologyError {
            file: file.to_path_buf(),
            line: None,
            key: String::new(),
            message,
        }
    }
}

/// Largest topology file accepted (16 MiB). A generated site of 100 000 L-Servers is written with
/// `[generate]`, so anything bigger is a mistake or hostile; never read more than this.
pub const MAX_TOPOLOGY_BYTES: u64 = 16 * 1024 * 1024;

/// Reads, parses, validates and expands the topology at `path`, then indexes it.
pub fn load_site(path: &Path) -> Result<Site, TopologyError> {
    let source = read_capped(path)?;
    let topology = load_topology_str(path, &source)?;
    Site::new(topology)
        .map_err(|e| TopologyError::whole_file(path, format!("cannot index the topology: {e}")))
}

/// Reads at most [`MAX_TOPOLOGY_BYTES`] of UTF-8 text.
fn read_capped(path: &Path) -> Result<String, TopologyError> {
    let io_error = |e: std::io::Error| {
        TopologyError::whole_file(path, format!("cannot read the topology file: {e}"))
    };
    let too_big = || {
        TopologyError::whole_file(
            path,
            format!(
                "the topology file is larger than {MAX_TOPOLOGY_BYTES} bytes; \
                 describe large sites with `[generate]` instead of listing every L-Server"
            ),
        )
    };
    let file = std::fs::File::open(path).map_err(io_error)?;
    if file.metadata().map_err(io_error)?.len() > MAX_TOPOLOGY_BYTES {
        return Err(too_big());
    }
    // The length can change after the check (or lie, for special files): read one byte past the
    // cap so an oversized input is detected without reading all of it.
    let mut bytes = Vec::new();
    file.take(MAX_TOPOLOGY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > MAX_TOPOLOGY_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|e| {
        TopologyError::whole_file(
            path,
            format!(
                "the topology file is not UTF-8 text (invalid byte at offset {}); save it as UTF-8",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Parses `source` (the text of `file`) into a topology, validates it and expands `[generate]`.
///
/// `file` is only used in error messages. Errors name the line and dotted key.
pub fn load_topology_str(file: &Path, source: &str) -> Result<Topology, TopologyError> {
    if source.len() as u64 > MAX_TOPOLOGY_BYTES {
        return Err(TopologyError::whole_file(
            file,
            format!("the topology is larger than {MAX_TOPOLOGY_BYTES} bytes"),
        ));
    }
    let topology: Topology = toml::from_str(source).map_err(|e| toml_error(file, source, &e))?;
    validate::validate(file, source, &topology)?;
    if topology.generate.is_none() {
        return Ok(topology);
    }
    let listed = topology.lservers.len();
    let generate_error = |message: String| TopologyError {
        file: file.to_path_buf(),
        line: locate(source, &[KeySeg::from("generate")]),
        key: "generate".to_string(),
        message,
    };
    let expanded = generate::expand(topology).map_err(generate_error)?;
    // The generated L-Servers are not in the file; check the whole site again (quarantine subnet
    // capacity above all) and blame `[generate]` for anything they break.
    validate::validate_expanded(file, source, &expanded, listed)?;
    Ok(expanded)
}

/// Turns a TOML syntax or serde error into a located, explained [`TopologyError`].
fn toml_error(file: &Path, source: &str, e: &toml::de::Error) -> TopologyError {
    let raw = e.message().trim().replace('\n', "; ");
    let span = e.span();
    let line = span.as_ref().map(|s| line_at(source, s.start));
    let locator = Locator::new(source);
    let mut path = span
        .as_ref()
        .map(|s| locator.path_at(s.start))
        .unwrap_or_default();
    let message = if locator.doc.is_none() {
        // Not TOML at all: there is no key tree to point into, only the position.
        if let Some((name, _)) = backticked_after(&raw, "duplicate key ") {
            path = vec![KeySeg::Key(name)];
        }
        format!("TOML syntax error: {raw}")
    } else if let Some((name, rest)) = backticked_after(&raw, "unknown field ") {
        if path.last() != Some(&KeySeg::Key(name.clone())) {
            path.push(KeySeg::Key(name.clone()));
        }
        let expected = rest.trim_start_matches(',').trim();
        format!("unknown key `{name}` ({expected}); remove it or correct its spelling")
    } else if let Some((name, _)) = backticked_after(&raw, "missing field ") {
        path.push(KeySeg::Key(name.clone()));
        format!("required key `{name}` is missing; add it")
    } else if let Some(rest) = raw.strip_prefix("unknown variant ") {
        // "variant" is serde's word; users wrote a value.
        format!("unknown value {rest}")
    } else {
        let written = span
            .and_then(|s| source.get(s))
            .filter(|text| text.len() <= 80 && !text.contains('\n'));
        with_hint(&raw, &path, written)
    };
    TopologyError {
        file: file.to_path_buf(),
        line,
        key: key_path_string(&path),
        message,
    }
}

/// Turns a `toml` deserialization error of any TOML file the lab reads (scenarios as well as
/// topologies) into a located, explained [`TopologyError`], so every file reports unknown keys,
/// missing keys and bad values the same way.
pub fn located_toml_error(file: &Path, source: &str, e: &toml::de::Error) -> TopologyError {
    toml_error(file, source, e)
}

/// For `prefix` followed by `` `name` ``, returns the name and the text after it.
fn backticked_after(message: &str, prefix: &str) -> Option<(String, String)> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('`')?;
    let end = rest.find('`')?;
    Some((rest[..end].to_string(), rest[end + 1..].to_string()))
}

/// Adds the value as written and what a valid one looks like, when the serde message alone
/// would not say it (ipnet's is just "invalid IP address syntax").
fn with_hint(raw: &str, path: &[KeySeg], written: Option<&str>) -> String {
    let leaf = match path.last() {
        Some(KeySeg::Key(k)) => k.as_str(),
        _ => "",
    };
    let hint = match leaf {
        "subnet" => Some("write a subnet in CIDR form, e.g. \"10.110.0.0/24\""),
        "ip" | "address" => Some("write an IPv4 or IPv6 address, e.g. \"10.110.0.11\""),
        "vlan" => Some("write a VLAN id from 1 to 4094, e.g. 110"),
        _ => None,
    };
    match (hint, written) {
        (Some(hint), Some(text)) => format!("{raw} in {text}; {hint}"),
        (Some(hint), None) => format!("{raw}; {hint}"),
        (None, _) => raw.to_string(),
    }
}

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeySeg {
    /// A key inside a table or inline table.
    Key(String),
    /// An element of an array or array of tables.
    Index(usize),
}

impl From<&str> for KeySeg {
    fn from(key: &str) -> KeySeg {
        KeySeg::Key(key.to_string())
    }
}

impl From<String> for KeySeg {
    fn from(key: String) -> KeySeg {
        KeySeg::Key(key)
    }
}

impl From<&String> for KeySeg {
    fn from(key: &String) -> KeySeg {
        KeySeg::Key(key.clone())
    }
}

impl From<usize> for KeySeg {
    fn from(index: usize) -> KeySeg {
        KeySeg::Index(index)
    }
}

/// Formats a key path the way users read it: `lservers[3].nics[0].network`, quoting keys that
/// are not bare TOML keys (`policy.actions."/tenant-a"`).
pub fn key_path_string(path: &[KeySeg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            KeySeg::Index(i) => out.push_str(&format!("[{i}]")),
            KeySeg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                let bare = !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if bare {
                    out.push_str(k);
                } else {
                    out.push_str(&format!("{k:?}"));
                }
            }
        }
    }
    out
}

/// The 1-based line of `key_path` in `source`, or of its deepest existing ancestor when the key
/// itself is absent (a missing `hypervisor` is reported on its L-Server's line). `None` when the
/// source is not valid TOML or not even the first key exists.
pub fn locate(source: &str, key_path: &[KeySeg]) -> Option<usize> {
    Locator::new(source).line_of(key_path)
}

/// A parsed source kept for repeated lookups, so validating a large file parses it once.
pub struct Locator<'s> {
    doc: Option<ImDocument<&'s str>>,
    /// Byte offset of each line's start, so many lookups stay cheap on a large file.
    line_starts: Vec<usize>,
}

impl<'s> Locator<'s> {
    /// Parses `source` with spans; an unparsable source locates nothing.
    pub fn new(source: &'s str) -> Locator<'s> {
        let line_starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Locator {
            doc: ImDocument::parse(source).ok(),
            line_starts,
        }
    }

    /// See [`locate`].
    pub fn line_of(&self, key_path: &[KeySeg]) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut best: Option<Range<usize>> = None;
        let mut node = Node::Table(doc.as_table());
        for seg in key_path {
            let (next, span) = match step(node, seg) {
                Some(found) => found,
                None => break,
            };
            if span.is_some() {
                best = span;
            }
            node = next;
        }
        best.map(|span| {
            self.line_starts
                .partition_point(|&start| start <= span.start)
        })
    }

    /// The key path of the deepest key or value whose span contains byte `offset`.
    pub fn path_at(&self, offset: usize) -> Vec<KeySeg> {
        let mut path = Vec::new();
        if let Some(doc) = &self.doc {
            if let Some(found) = search_table(doc.as_table(), offset, &mut path) {
                return found;
            }
        }
        Vec::new()
    }
}

/// The 1-based line containing byte `offset`.
pub fn line_at(source: &str, offset: usize) -> usize {
    let end = offset.min(source.len());
    source.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A position inside the document while following a key path.
#[derive(Clone, Copy)]
enum Node<'a> {
    Table(&'a Table),
    Tables(&'a ArrayOfTables),
    Value(&'a Value),
    Leaf,
}

impl<'a> Node<'a> {
    fn of(item: &'a Item) -> Node<'a> {
        match item {
            Item::Table(t) => Node::Table(t),
            Item::ArrayOfTables(a) => Node::Tables(a),
            Item::Value(v) => Node::Value(v),
            Item::None => Node::Leaf,
        }
    }
}

/// Follows one segment; returns the child and the span that best marks it (the key for a key,
/// the element for an index).
fn step<'a>(node: Node<'a>, seg: &KeySeg) -> Option<(Node<'a>, Option<Range<usize>>)> {
    match (node, seg) {
        (Node::Table(t), KeySeg::Key(k)) => {
            let (key, item) = t.get_key_value(k)?;
            Some((Node::of(item), key.span().or_else(|| item.span())))
        }
        (Node::Tables(a), KeySeg::Index(i)) => {
            let t = a.get(*i)?;
            Some((Node::Table(t), t.span()))
        }
        (Node::Value(Value::InlineTable(t)), KeySeg::Key(k)) => {
            let (key, value) = t.get_key_value(k)?;
            Some((Node::of(value), key.span().or_else(|| value.span())))
        }
        (Node::Value(Value::Array(a)), KeySeg::Index(i)) => {
            let value = a.get(*i)?;
            Some((Node::Value(value), value.span()))
        }
        _ => None,
    }
}

fn search_table(t: &Table, offset: usize, path: &mut Vec<KeySeg>) -> Option<Vec<KeySeg>> {
    let children = t.iter().map(|(k, item)| {
        let key_span = t.get_key_value(k).and_then(|(key, _)| key.span());
        (KeySeg::Key(k.to_string()), key_span, item)
    });
    search_children(children, offset, path, search_item)
}

/// [`search_table`], else the table itself where its span holds `offset`. Child tables can sit
/// anywhere in the file, outside their parent's span, so this always descends before deciding
/// the table itself is the best match.
fn search_table_or_self(t: &Table, offset: usize, path: &mut Vec<KeySeg>) -> Option<Vec<KeySeg>> {
    search_table(t, offset, path).or_else(|| {
        t.span()
            .filter(|s| contains(s, offset))
            .map(|_| path.clone())
    })
}

/// Enters each child in order under its segment: a key whose own span holds `offset` is the
/// match; else the first child `search` finds a match in.
fn search_children<C>(
    children: impl Iterator<Item = (KeySeg, Option<Range<usize>>, C)>,
    offset: usize,
    path: &mut Vec<KeySeg>,
    search: impl Fn(C, usize, &mut Vec<KeySeg>) -> Option<Vec<KeySeg>>,
) -> Option<Vec<KeySeg>> {
    for (seg, key_span, child) in children {
        path.push(seg);
        if key_span.is_some_and(|s| contains(&s, offset)) {
            return Some(path.clone());
        }
        let found = search(child, offset, path);
        path.pop();
        if found.is_some() {
            return found;
        }
    }
    None
}

fn search_item(item: &Item, offset: usize, path: &mut Vec<KeySeg>) -> Option<Vec<KeySeg>> {
    match item {
        Item::None => None,
        Item::Value(v) => search_value(v, offset, path),
        Item::Table(t) => search_table_or_self(t, offset, path),
        Item::ArrayOfTables(a) => {
            let children = a
                .iter()
                .enumerate()
                .map(|(i, t)| (KeySeg::Index(i), None, t));
            search_children(children, offset, path, search_table_or_self)
        }
    }
}

fn search_value(v: &Value, offset: usize, path: &mut Vec<KeySeg>) -> Option<Vec<KeySeg>> {
    if !v.span().is_some_and(|s| contains(&s, offset)) {
        return None;
    }
    let found = match v {
        Value::InlineTable(t) => {
            let children = t.iter().map(|(k, value)| {
                let key_span = t.get_key_value(k).and_then(|(key, _)| key.span());
                (KeySeg::Key(k.to_string()), key_span, value)
            });
            search_children(children, offset, path, search_value)
        }
        Value::Array(a) => {
            let children = a
                .iter()
                .enumerate()
                .map(|(i, v)| (KeySeg::Index(i), None, v));
            search_children(children, offset, path, search_value)
        }
        _ => None,
    };
    found.or_else(|| Some(path.clone()))
}

/// Whether `offset` falls in `span`; an empty span matches its own start.
fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && (offset < span.end || span.start == span.end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::validate::tests::{broken, SITE};
    use proptest::prelude::*;

    /// 1-based line of the first line of `SITE` containing `needle`.
    fn line_containing(needle: &str) -> usize {
        SITE.lines()
            .position(|l| l.contains(needle))
            .expect("needle in SITE")
            + 1
    }

    fn path(text: &[&str]) -> Vec<KeySeg> {
        text.iter()
            .map(|s| match s.parse::<usize>() {
                Ok(i) => KeySeg::Index(i),
                Err(_) => KeySeg::from(*s),
            })
            .collect()
    }

    #[test]
    fn display_is_file_line_key_message() {
        let mut e = TopologyError {
            file: PathBuf::from("site.toml"),
            line: Some(7),
            key: "networks[0].vlan".into(),
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "site.toml:7: networks[0].vlan: bad");
        e.line = None;
        e.key.clear();
        assert_eq!(e.to_string(), "site.toml: bad");
    }

    #[test]
    fn locate_finds_keys_in_tables_arrays_and_inline_tables() {
        let cases: &[(&[&str], &str)] = &[
            (&["networks", "2", "subnet"], "10.210.0.0/29"),
            (&["quarantine_map", "op-a"], "\"op-a\" = \"qr-a\""),
            (&["hypervisors", "0", "portgroups", "qr-a"], "pg-910"),
            (&["lservers", "2", "nics", "1", "port"], "Ethernet1/6"),
            (&["lservers", "0", "nics", "0", "device"], "10.110.0.11"),
            (&["policy", "actions", "/tenant-a/vdi-002"], "= \"reboot\""),
            (&["engine", "retry", "attempts"], "attempts = 4"),
        ];
        for (key, needle) in cases {
            assert_eq!(
                locate(SITE, &path(key)),
                Some(line_containing(needle)),
                "{key:?}"
            );
        }
    }

    #[test]
    fn locate_falls_back_to_the_deepest_existing_ancestor() {
        let header = line_containing("path = \"/tenant-a/vdi-002\"") - 1;
        assert_eq!(locate(SITE, &path(&["lservers", "1", "bmc"])), Some(header));
        assert_eq!(
            locate(SITE, &path(&["lservers", "99"])),
            Some(line_containing("[[lservers]]"))
        );
        assert_eq!(locate(SITE, &path(&["nope"])), None);
        assert_eq!(locate("not = [toml", &path(&["not"])), None);
    }

    #[test]
    fn key_paths_quote_keys_that_are_not_bare() {
        let p = vec![
            KeySeg::from("policy"),
            KeySeg::from("actions"),
            KeySeg::from("/tenant-a"),
        ];
        assert_eq!(key_path_string(&p), "policy.actions.\"/tenant-a\"");
        assert_eq!(
            key_path_string(&path(&["lservers", "3", "nics", "0", "network"])),
            "lservers[3].nics[0].network"
        );
    }

    #[test]
    fn path_at_maps_an_offset_back_to_its_key() {
        let offset = SITE.find("Ethernet1/6").expect("in SITE");
        let found = Locator::new(SITE).path_at(offset);
        assert_eq!(key_path_string(&found), "lservers[2].nics[1].port");
    }

    #[test]
    fn missing_required_key_names_the_table_and_the_key() {
        let e = broken("kind = \"physical\"\n", "");
        assert_eq!(e.key, "lservers[2].kind", "{e}");
        assert_eq!(
            e.line,
            Some(line_containing("path = \"/tenant-a/sbc-01\"") - 1)
        );
        assert!(e.message.contains("required key `kind` is missing"), "{e}");
    }

    #[test]
    fn wrong_value_names_the_key_and_the_expected_values() {
        let e = broken("role = \"quarantine\"", "role = \"isolated\"");
        assert_eq!(e.key, "networks[2].role", "{e}");
        assert!(
            e.message
                .contains("unknown value `isolated`, expected `operation` or `quarantine`"),
            "{e}"
        );
        let e = broken("vlan = 111", "vlan = \"111\"");
        assert_eq!(e.key, "networks[1].vlan", "{e}");
        assert!(e.message.contains("1 to 4094"), "{e}");
        let e = broken("ip = \"10.110.0.12\"", "ip = \"10.110.0.300\"");
        assert_eq!(e.key, "lservers[1].nics[0].ip", "{e}");
        assert!(e.message.contains("\"10.110.0.300\""), "{e}");
    }

    #[test]
    fn toml_syntax_error_has_a_line() {
        let e = broken("[policy]", "[policy");
        assert_eq!(e.line, Some(line_containing("[policy]")), "{e}");
        assert!(e.message.starts_with("TOML syntax error: "), "{e}");
    }

    #[test]
    fn load_site_rejects_an_oversized_file_without_reading_it() {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        file.as_file()
            .set_len(MAX_TOPOLOGY_BYTES + 1)
            .expect("sparse file");
        let e = load_site(file.path()).unwrap_err();
        assert!(e.message.contains("larger than"), "{e}");
        assert_eq!((e.line, e.key.as_str()), (None, ""));
    }

    #[test]
    fn load_site_reports_unreadable_and_non_utf8_files() {
        let e = load_site(Path::new("/nonexistent/site.toml")).unwrap_err();
        assert!(e.message.contains("cannot read the topology file"), "{e}");
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), b"name = \"\xff\"\n").expect("write");
        let e = load_site(file.path()).unwrap_err();
        assert!(e.message.contains("not UTF-8"), "{e}");
    }

    #[test]
    fn fixtures_load_with_expected_lserver_counts() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/topologies");
        for (name, count) in [
            ("vdi-small.toml", 8),
            ("mixed-site.toml", 12),
            ("generated-2500.toml", 2500),
        ] {
            let site = load_site(&dir.join(name)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(site.lservers.len(), count, "{name}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// R18 spirit: whatever a user writes, loading answers with an error, never a panic.
        #[test]
        fn arbitrary_edits_never_panic(
            at in 0..SITE.len(),
            cut in 0usize..40,
            insert in "[\\[\\]{}=\",.a-z0-9/:@ \n-]{0,12}",
        ) {
            let boundary = |i: &usize| SITE.is_char_boundary(*i);
            let start = (0..=at).rev().find(boundary).unwrap_or(0);
            let end = (start + cut..=SITE.len()).find(boundary).unwrap_or(SITE.len());
            let source = format!("{}{}{}", &SITE[..start], insert, &SITE[end..]);
            let _ = load_topology_str(Path::new("fuzz.toml"), &source);
        }
    }
}
