//! Trend Micro OfficeScan / Apex One logs as Apex Central forwards them: ArcSight CEF,
//! `CEF:0|vendor|product|version|event class|name|severity|key=value ...`.
//!
//! Mapping to a [`Detection`] (vendor-protocols.md, "Trend Micro"):
//! - threat = the header's name field (Apex Central puts the threat name there);
//! - ip = `dst`, else `c6a3` (the endpoint's IPv6 address); hostname = `dhost`;
//! - mac = `dmac`; `smac` only when the record names no destination at all (no `dst`, `c6a3`,
//!   `dhost`, `dmac`): then the endpoint is on the source side. Otherwise `smac` is the peer
//!   that sent the threat, and matching it (R3) would quarantine the wrong machine.
//! - category from the event class id: `AV:<action>` is the virus/malware log, whose class does
//!   not tell virus from malware; both act the same under R1, so it is `virus`. A class starting
//!   `SPYWARE` is `spyware`, one containing `GRAYWARE` is `grayware`, anything else `other`.
//! - event id = `externalId` (CEF's "ID used by the originating device" for the event). Not
//!   `deviceExternalId`: that names the *device*, so every record from one Apex Central would
//!   share it and R4 would drop all but the first. Without `externalId` (Apex Central's virus
//!   log carries no id) the id is [`super::hash_id`] of the CEF text, trailing whitespace
//!   trimmed, because a re-sent record must dedupe (R4) and `rt` keeps distinct detections apart.
//!
//! Escapes: header `\|` `\\`; extension `\=` `\\` `\n` `\r`. Any other backslash pair is kept
//! as written (Windows paths from lax producers). A value runs until the next ` key=`; trailing
//! spaces of a value are dropped (they cannot be told from the separator).

use std::net::IpAddr;

use super::IngestError;
use crate::model::{normalize_mac, Category, Detection};

/// One extension field with the byte offset of its value in the CEF text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CefField {
    /// Key, e.g. `dst`.
    pub key: String,
    /// Unescaped value.
    pub value: String,
    /// Byte offset of the value in the CEF text (for error positions).
    pub at: usize,
}

/// A parsed CEF record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CefEvent {
    /// CEF version (0 or 1).
    pub version: u32,
    /// Device vendor.
    pub vendor: String,
    /// Device product.
    pub product: String,
    /// Device version.
    pub product_version: String,
    /// Device event class id, e.g. `AV:File quarantined`.
    pub event_class: String,
    /// Name: the threat name in Apex Central logs.
    pub name: String,
    /// Severity as written.
    pub severity: String,
    /// Extension fields in order.
    pub extension: Vec<CefField>,
}

impl CefEvent {
    /// The first value of extension `key`, if any.
    pub fn get(&self, key: &str) -> Option<&CefField> {
        self.extension.iter().find(|f| f.key == key)
    }
}

const HEADER: &str = "CEF header";
const EXT: &str = "CEF extension";

/// Parses CEF text starting with `CEF:`; offsets in errors are into `text`.
pub fn parse(text: &str) -> Result<CefEvent, IngestError> {
    super::check_size(text.as_bytes())?;
    let Some(rest) = text.strip_prefix("CEF:") else {
        return Err(IngestError::malformed(HEADER, "expected `CEF:`", Some(0)));
    };
    let mut fields: Vec<String> = Vec::with_capacity(7);
    let mut cur = String::new();
    let mut ext_start = None;
    let mut chars = rest.char_indices();
    while let Some((i, ch)) = chars.next() {
        match ch {
            '\\' => match chars.next() {
                Some((_, c @ ('|' | '\\'))) => cur.push(c),
                Some((_, c)) => {
                    cur.push('\\');
                    cur.push(c);
                }
                None => {
                    let at = 4 + i;
                    return Err(IngestError::malformed(
                        HEADER,
                        "unterminated escape",
                        Some(at),
                    ));
                }
            },
            '|' => {
                fields.push(std::mem::take(&mut cur));
                if fields.len() == 7 {
                    ext_start = Some(4 + i + 1);
                    break;
                }
            }
            _ => cur.push(ch),
        }
    }
    let Some(ext_start) = ext_start else {
        let found = fields.len() + 1;
        let detail = format!("expected 8 `|`-separated fields, found {found}");
        return Err(IngestError::malformed(HEADER, detail, Some(text.len())));
    };
    let version = match fields[0].parse::<u32>() {
        Ok(v @ (0 | 1)) => v,
        _ => {
            let detail = format!("unsupported version `{}`", fields[0]);
            return Err(IngestError::malformed(HEADER, detail, Some(4)));
        }
    };
    let mut it = fields.into_iter().skip(1);
    let mut next = || it.next().unwrap_or_default();
    Ok(CefEvent {
        version,
        vendor: next(),
        product: next(),
        product_version: next(),
        event_class: next(),
        name: next(),
        severity: next(),
        extension: parse_extension(text, ext_start)?,
    })
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// Length of a `key=` at `i` (the key's length), if one starts there.
fn key_at(b: &[u8], i: usize) -> Option<usize> {
    let len = b[i..].iter().take_while(|&&x| is_key_byte(x)).count();
    (len > 0 && b.get(i + len) == Some(&b'=')).then_some(len)
}

fn parse_extension(text: &str, start: usize) -> Result<Vec<CefField>, IngestError> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = start;
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    while i < b.len() {
        if b[i..].iter().all(u8::is_ascii_whitespace) {
            break;
        }
        let Some(key_len) = key_at(b, i) else {
            return Err(IngestError::malformed(EXT, "expected `key=`", Some(i)));
        };
        let key = text[i..i + key_len].to_string();
        let value_start = i + key_len + 1;
        let mut j = value_start;
        let mut next_key = b.len();
        while j < b.len() {
            match b[j] {
                b'\\' if j + 1 == b.len() => {
                    return Err(IngestError::malformed(EXT, "unterminated escape", Some(j)));
                }
                b'\\' => j += 2,
                b' ' => {
                    let k = j + b[j..].iter().take_while(|&&x| x == b' ').count();
                    if k < b.len() && key_at(b, k).is_some() {
                        next_key = k;
                        break;
                    }
                    j = k;
                }
                _ => j += 1,
            }
        }
        let raw = &text[value_start..j.min(b.len())];
        let value = unescape_value(raw.trim_end());
        out.push(CefField {
            key,
            value,
            at: value_start,
        });
        i = next_key;
    }
    Ok(out)
}

fn unescape_value(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(ch) = chars.next() {
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        match chars.next() {
            Some('=') => out.push('='),
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(c) => {
                out.push('\\');
                out.push(c);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// The R1 category of an event class id (see the module docs).
pub fn category(event_class: &str) -> Category {
    let class = event_class.trim().to_ascii_uppercase();
    if class.starts_with("AV:") {
        Category::Virus
    } else if class.starts_with("SPYWARE") {
        Category::Spyware
    } else if class.contains("GRAYWARE") {
        Category::Grayware
    } else {
        Category::Other
    }
}

/// Keys whose value feeds the detection: a second occurrence makes the match key ambiguous.
const MAPPED: [&str; 6] = ["dst", "c6a3", "dhost", "dmac", "smac", "externalId"];

/// Maps a parsed record to a detection (source left empty); `text` is the CEF text it came
/// from, for the hashed event id.
pub fn to_detection(event: &CefEvent, text: &str) -> Result<Detection, IngestError> {
    for key in MAPPED {
        if let Some(dup) = event.extension.iter().filter(|f| f.key == key).nth(1) {
            let detail = format!("duplicate `{key}`");
            return Err(IngestError::malformed(EXT, detail, Some(dup.at)));
        }
    }
    let value = |key: &str| event.get(key).filter(|f| !f.value.trim().is_empty());
    let ip = match value("dst").or_else(|| value("c6a3")) {
        Some(f) => Some(f.value.trim().parse::<IpAddr>().map_err(|_| {
            let detail = format!("`{}` value `{}` is not an IP address", f.key, f.value);
            IngestError::malformed(EXT, detail, Some(f.at))
        })?),
        None => None,
    };
    let hostname = value("dhost").map(|f| f.value.trim().to_string());
    let mac_field = match value("dmac") {
        Some(f) => Some(f),
        None if ip.is_none() && hostname.is_none() => value("smac"),
        None => None,
    };
    let mac = match mac_field {
        Some(f) => Some(normalize_mac(f.value.trim()).ok_or_else(|| {
            let detail = format!("`{}` value `{}` is not a MAC address", f.key, f.value);
            IngestError::malformed(EXT, detail, Some(f.at))
        })?),
        None => None,
    };
    if event.name.trim().is_empty() {
        return Err(IngestError::malformed(
            HEADER,
            "empty name (threat) field",
            None,
        ));
    }
    let event_id = match value("externalId") {
        Some(f) => f.value.trim().to_string(),
        None => super::hash_id(text.trim_end()),
    };
    Ok(Detection {
        source: String::new(),
        event_id,
        ip,
        mac,
        hostname,
        threat: event.name.clone(),
        category: category(&event.event_class),
    })
}

/// Parses CEF text into a detection (source left empty for the caller).
pub fn parse_detection(text: &str) -> Result<Detection, IngestError> {
    let event = parse(text)?;
    to_detection(&event, text)
}

fn escape_header(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|")
}

fn escape_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// Formats a record as CEF text (the inverse of [`parse`] for values without trailing spaces):
/// what a simulated Apex Central sends, wrapped in a syslog header by the caller.
pub fn format(event: &CefEvent) -> String {
    let header = [
        &event.vendor,
        &event.product,
        &event.product_version,
        &event.event_class,
        &event.name,
        &event.severity,
    ];
    let mut out = format!("CEF:{}", event.version);
    for field in header {
        out.push('|');
        out.push_str(&escape_header(field));
    }
    out.push('|');
    let pairs: Vec<String> = event
        .extension
        .iter()
        .map(|f| format!("{}={}", f.key, escape_value(&f.value)))
        .collect();
    out.push_str(&pairs.join(" "));
    out
}

/// The Apex Central virus-log record a detection corresponds to (for simulated senders):
/// class `AV:File quarantined` for virus and malware, `SPYWARE:...`/`GRAYWARE:...` for those,
/// `OTHER` otherwise; `rt` as given; the detection's event id as `externalId`, so the engine
/// journals the same id the sender used. Malware comes back as virus (see [`category`]).
pub fn from_detection(d: &Detection, rt: &str) -> CefEvent {
    let class = match d.category {
        Category::Virus | Category::Malware => "AV:File quarantined",
        Category::Spyware => "SPYWARE:Spyware quarantined",
        Category::Grayware => "GRAYWARE:Grayware quarantined",
        _ => "OTHER",
    };
    let mut ext = vec![("rt", rt.to_string())];
    if let Some(ip) = d.ip {
        ext.push((if ip.is_ipv4() { "dst" } else { "c6a3" }, ip.to_string()));
    }
    if let Some(h) = &d.hostname {
        ext.push(("dhost", h.clone()));
    }
    if let Some(m) = &d.mac {
        ext.push(("dmac", m.to_ascii_uppercase().replace(':', "-")));
    }
    ext.push(("act", "File quarantined".into()));
    ext.push(("externalId", d.event_id.clone()));
    CefEvent {
        version: 0,
        vendor: "Trend Micro".into(),
        product: "Apex Central".into(),
        product_version: "2019".into(),
        event_class: class.into(),
        name: d.threat.clone(),
        severity: "3".into(),
        extension: ext
            .into_iter()
            .map(|(key, value)| CefField {
                key: key.into(),
                value,
                at: 0,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "CEF:0|Trend Micro|Apex Central|2019|AV:File renamed|JS_EXPLOIT.SMDN|3|rt=Mar 22 2018 08:23:23 GMT+00:00 dhost=VDI-001 dst=10.110.0.11 cs1Label=VLF_FunctionCode cs1=Manual Scan";

    #[test]
    fn values_with_spaces_run_to_the_next_key() {
        let e = parse(LINE).unwrap();
        assert_eq!(e.get("rt").unwrap().value, "Mar 22 2018 08:23:23 GMT+00:00");
        assert_eq!(e.get("cs1").unwrap().value, "Manual Scan");
        let d = to_detection(&e, LINE).unwrap();
        assert_eq!(d.ip, Some("10.110.0.11".parse().unwrap()));
        assert_eq!(d.category, Category::Virus);
        assert!(d.event_id.starts_with("sha256-"));
    }

    #[test]
    fn escapes_decode_and_errors_have_positions() {
        let e = parse(r"CEF:0|T\|M|P|1|AV:x|a\\b|3|fname=C:\\x\=y msg=l1\nl2").unwrap();
        assert_eq!(e.vendor, "T|M");
        assert_eq!(e.name, r"a\b");
        assert_eq!(e.get("fname").unwrap().value, r"C:\x=y");
        assert_eq!(e.get("msg").unwrap().value, "l1\nl2");
        let text = r"CEF:0|T|P|1|AV:x|n|3|dhost=a\";
        let err = parse(text).unwrap_err();
        let at = text.len() - 1;
        assert_eq!(
            err.reason(),
            format!("CEF extension: unterminated escape at byte {at}")
        );
        assert!(parse("CEF:0|a|b").unwrap_err().reason().contains("found 3"));
    }

    #[test]
    fn smac_is_only_used_without_any_destination() {
        let with_dst = "CEF:0|T|P|1|AV:x|n|3|dst=10.110.0.11 smac=00-50-56-00-00-99";
        assert_eq!(parse_detection(with_dst).unwrap().mac, None);
        let alone = "CEF:0|T|P|1|AV:x|n|3|smac=00-50-56-00-00-99";
        assert_eq!(
            parse_detection(alone).unwrap().mac.as_deref(),
            Some("00:50:56:00:00:99")
        );
    }

    #[test]
    fn r4_device_external_id_is_not_an_event_id() {
        let a = "CEF:0|T|P|1|AV:x|n|3|dst=10.110.0.11 deviceExternalId=apex-1 rt=1";
        let b = "CEF:0|T|P|1|AV:x|n|3|dst=10.110.0.12 deviceExternalId=apex-1 rt=2";
        assert_ne!(
            parse_detection(a).unwrap().event_id,
            parse_detection(b).unwrap().event_id
        );
        let c = "CEF:0|T|P|1|AV:x|n|3|dst=10.110.0.11 externalId=77";
        assert_eq!(parse_detection(c).unwrap().event_id, "77");
    }
}
