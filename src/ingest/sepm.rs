//! Symantec Endpoint Protection Manager risk log as its external logging sends it: after the
//! RFC 3164 header and tag `SymantecServer:`, comma-separated `Label: value` fields whose first
//! field is the event type, e.g.
//! `Virus found,IP Address: 10.110.0.11,Computer name: VDI-001,Source: Auto-Protect scan,Risk name: EICAR Test String,Occurrences: 1,C:\Users\u\eicar.com,,Actual action: ...`.
//!
//! Choices:
//! - The tag is not checked: trust comes from the sender's address (R18), and the first field
//!   tells a risk record from anything else.
//! - Category: `Virus found` is `virus`. `Security risk found` is `malware`: SEPM reports its
//!   non-signature detections there (reputation detections such as `WS.Reputation.1`, i.e.
//!   files judged malicious by Insight), and an operator expects those contained (R1). Every
//!   other event type is `other` (journaled as ignored).
//! - SEPM does not escape commas, so a value containing a comma splits into an extra unlabeled
//!   field; the file path is the first unlabeled field after the event type (or a `File path:`
//!   field, which some versions write).
//! - Event id: the risk log has no id field, so it is [`super::hash_id`] of the body with
//!   trailing whitespace trimmed (see the module docs of [`super`]).
//! - SEPM's risk log carries no MAC address.

use std::net::IpAddr;

use super::IngestError;
use crate::model::{Category, Detection};

const W: &str = "SEPM";

/// One comma-separated field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SepmField {
    /// The label before `: `, if the field has one.
    pub label: Option<String>,
    /// The value (the whole field when unlabeled), trimmed.
    pub value: String,
    /// Byte offset of the field in the body.
    pub at: usize,
}

/// A parsed risk-log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SepmRecord {
    /// First field, e.g. `Virus found`.
    pub event_type: String,
    /// The fields after the event type.
    pub fields: Vec<SepmField>,
}

impl SepmRecord {
    /// The field labelled `label` (case-insensitive).
    pub fn get(&self, label: &str) -> Option<&SepmField> {
        self.fields.iter().find(|f| {
            f.label
                .as_deref()
                .is_some_and(|l| l.eq_ignore_ascii_case(label))
        })
    }

    /// The infected file: the first unlabeled non-empty field, or `File path:`.
    pub fn file_path(&self) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.label.is_none() && !f.value.is_empty())
            .or_else(|| self.get("File path"))
            .map(|f| f.value.as_str())
    }

    /// `Event time:` as written (`YYYY-MM-DD hh:mm:ss`).
    pub fn event_time(&self) -> Option<&str> {
        self.get("Event time").map(|f| f.value.as_str())
    }

    /// `Occurrences:`, when it is a number.
    pub fn occurrences(&self) -> Option<u64> {
        self.get("Occurrences").and_then(|f| f.value.parse().ok())
    }
}

/// The label of a field: letters first, then letters, digits, spaces and `()/_-`, ending in
/// `: ` or `:` at the end of the field. `e:\path` has no label (no space after the colon).
fn split_label(field: &str) -> Option<(&str, &str)> {
    let colon = field.find(':')?;
    let (label, rest) = (&field[..colon], &field[colon + 1..]);
    let starts_ok = label
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic());
    let chars_ok = label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b' ' | b'(' | b')' | b'/' | b'_' | b'-'));
    if !starts_ok || !chars_ok || !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    Some((label.trim(), rest.trim()))
}

/// Parses a risk-log body (after the syslog header); offsets in errors are into `body`.
pub fn parse(body: &str) -> Result<SepmRecord, IngestError> {
    super::check_size(body.as_bytes())?;
    let body = body.trim_end();
    let mut at = 0;
    let mut parts = Vec::new();
    for part in body.split(',') {
        parts.push((at, part));
        at += part.len() + 1;
    }
    let (_, first) = parts[0];
    let event_type = first.trim();
    if event_type.is_empty() {
        return Err(IngestError::malformed(
            W,
            "empty event type (first field)",
            Some(0),
        ));
    }
    if let Some((label, _)) = split_label(first) {
        let detail = format!("first field must be the event type, found label `{label}`");
        return Err(IngestError::malformed(W, detail, Some(0)));
    }
    let fields = parts[1..]
        .iter()
        .map(|&(at, part)| match split_label(part) {
            Some((label, value)) => SepmField {
                label: Some(label.to_string()),
                value: value.to_string(),
                at,
            },
            None => SepmField {
                label: None,
                value: part.trim().to_string(),
                at,
            },
        })
        .collect();
    Ok(SepmRecord {
        event_type: event_type.to_string(),
        fields,
    })
}

/// The R1 category of an event type (see the module docs).
pub fn category(event_type: &str) -> Category {
    let t = event_type.trim();
    if t.eq_ignore_ascii_case("Virus found") {
        Category::Virus
    } else if t.eq_ignore_ascii_case("Security risk found") {
        Category::Malware
    } else {
        Category::Other
    }
}

/// Labels that feed the detection: a second occurrence would make it ambiguous.
const MAPPED: [&str; 3] = ["IP Address", "Computer name", "Risk name"];

/// Maps a record to a detection (source left empty); `body` is the text it came from.
pub fn to_detection(record: &SepmRecord, body: &str) -> Result<Detection, IngestError> {
    for label in MAPPED {
        let mut same = record.fields.iter().filter(|f| {
            f.label
                .as_deref()
                .is_some_and(|l| l.eq_ignore_ascii_case(label))
        });
        if let Some(dup) = same.nth(1) {
            let detail = format!("duplicate `{label}` field");
            return Err(IngestError::malformed(W, detail, Some(dup.at)));
        }
    }
    let value = |label: &str| record.get(label).filter(|f| !f.value.is_empty());
    let ip = match value("IP Address") {
        Some(f) => Some(f.value.parse::<IpAddr>().map_err(|_| {
            let detail = format!("`IP Address` value `{}` is not an IP address", f.value);
            IngestError::malformed(W, detail, Some(f.at))
        })?),
        None => None,
    };
    let Some(risk) = value("Risk name") else {
        let detail = format!("no `Risk name` field (event type `{}`)", record.event_type);
        return Err(IngestError::malformed(W, detail, None));
    };
    Ok(Detection {
        source: String::new(),
        event_id: super::hash_id(body.trim_end()),
        ip,
        mac: None,
        hostname: value("Computer name").map(|f| f.value.clone()),
        threat: risk.value.clone(),
        category: category(&record.event_type),
    })
}

/// Parses a risk-log body into a detection (source left empty for the caller).
pub fn parse_detection(body: &str) -> Result<Detection, IngestError> {
    let record = parse(body)?;
    to_detection(&record, body)
}

/// The fields a simulated SEPM writes for one risk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SepmRisk {
    /// `Virus found`, `Security risk found`, ...
    pub event_type: String,
    /// `IP Address:`.
    pub ip: Option<IpAddr>,
    /// `Computer name:`.
    pub computer: Option<String>,
    /// `Risk name:`.
    pub risk_name: String,
    /// The unlabeled file path field.
    pub file_path: String,
    /// `Event time:` (`YYYY-MM-DD hh:mm:ss`).
    pub event_time: String,
}

/// Formats a risk as SEPM writes it (values must not contain commas: SEPM has no escape).
/// The detection the engine gets has `hash_id` of this text as its id; a sender that needs
/// the id parses its own line with [`parse_detection`].
pub fn format(risk: &SepmRisk) -> String {
    let ip = risk.ip.map(|i| i.to_string()).unwrap_or_default();
    let computer = risk.computer.as_deref().unwrap_or("");
    format!(
        "{},IP Address: {ip},Computer name: {computer},Source: Auto-Protect scan,Risk name: {},Occurrences: 1,{},,Actual action: Quarantined,Requested action: Quarantined,Secondary action: Deleted,Event time: {},Inserted: {},End: {},Domain: Default,Group: My Company\\VDI,Server: sepm01,User: user1,Source computer: ,Source IP: ,Disposition: Bad",
        risk.event_type, risk.risk_name, risk.file_path, risk.event_time, risk.event_time, risk.event_time
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r"Security risk found,IP Address: 10.110.0.12,Computer name: VDI-002,Source: Auto-Protect scan,Risk name: WS.Reputation.1,Occurrences: 1,e:\removablemediaaccessutility.exe,,Actual action: All actions failed,Event time: 2019-09-03 08:12:25,Source computer: ,Source IP: ";

    #[test]
    fn reference_record_parses() {
        let r = parse(BODY).unwrap();
        assert_eq!(r.event_type, "Security risk found");
        assert_eq!(r.file_path(), Some(r"e:\removablemediaaccessutility.exe"));
        assert_eq!(r.event_time(), Some("2019-09-03 08:12:25"));
        assert_eq!(r.occurrences(), Some(1));
        let d = to_detection(&r, BODY).unwrap();
        assert_eq!(d.category, Category::Malware);
        assert_eq!(d.hostname.as_deref(), Some("VDI-002"));
        assert_eq!(d.threat, "WS.Reputation.1");
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse_detection("Virus found,IP Address: 10.1.x,Risk name: a").unwrap_err();
        assert_eq!(
            e.reason(),
            "SEPM: `IP Address` value `10.1.x` is not an IP address at byte 12"
        );
        let e = parse_detection("Virus found,IP Address: 10.1.1.1").unwrap_err();
        assert!(e.reason().contains("no `Risk name`"), "{e}");
        let e = parse_detection("Label: x,Risk name: a").unwrap_err();
        assert!(e.reason().contains("first field"), "{e}");
    }
}
