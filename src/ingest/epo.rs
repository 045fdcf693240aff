//! McAfee / Trellix ePO threat events as its syslog forwarding sends them: RFC 5424 (APP-NAME
//! `EPOEvents`, MSGID `EventFwd`, structured data `agentInfo@3401`) with an EPOEvent XML body:
//! `<EPOEvent><MachineInfo>...</MachineInfo><SoftwareInfo ...><Event>...<CommonFields>...`.
//!
//! XML safety: quick-xml never expands entities beyond the five predefined ones and character
//! references; a DOCTYPE (where entity definitions would live) is refused outright, nesting is
//! capped at [`MAX_DEPTH`], and the size at [`super::MAX_PAYLOAD_BYTES`].
//!
//! Mapping to a [`Detection`]:
//! - ip / hostname / mac from `MachineInfo` (`IPAddress`, `MachineName`, `RawMACAddress`): the
//!   reporting agent's machine is the infected one; the event's `TargetIPV4`,
//!   `TargetHostName`, `TargetMAC` stand in when MachineInfo lacks them.
//! - threat = `ThreatName`; category from `ThreatType` and `ThreatCategory` by [`category`].
//! - event id = `epo-<AgentGUID>-<ThreatEventID>-<DetectedUTC or GMTTime>`: ePO's syslog event
//!   carries no unique id, but one agent reports one event type at one instant once. If any part
//!   is missing, [`super::hash_id`] of the XML (with `#<n>` appended for the n-th event after the
//!   first) keeps R4 dedupe working.
//! - APP-NAME and MSGID are not checked: trust comes from the sender's address (R18).

use std::net::{IpAddr, Ipv4Addr};

use quick_xml::events::Event;
use quick_xml::Reader;

use super::IngestError;
use crate::model::{normalize_mac, Category, Detection};

/// Deepest element nesting accepted (a real EPOEvent nests 4 deep).
pub const MAX_DEPTH: usize = 32;

const W: &str = "ePO XML";

/// The fields of one threat event, with its machine's fields copied in. Absent elements are
/// `None`; text is unescaped and trimmed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpoEvent {
    /// `MachineInfo/MachineName`.
    pub machine_name: Option<String>,
    /// `MachineInfo/AgentGUID`.
    pub agent_guid: Option<String>,
    /// `MachineInfo/IPAddress`.
    pub ip_address: Option<String>,
    /// `MachineInfo/RawMACAddress`.
    pub raw_mac: Option<String>,
    /// `Event/GMTTime`.
    pub gmt_time: Option<String>,
    /// `ThreatName`.
    pub threat_name: Option<String>,
    /// `ThreatType` (`virus`, `trojan`, `pup`, ...).
    pub threat_type: Option<String>,
    /// `ThreatCategory` (`av.detect`, `av.pup`, ...).
    pub threat_category: Option<String>,
    /// `ThreatEventID` (1027 deleted, ...).
    pub threat_event_id: Option<String>,
    /// `DetectedUTC`.
    pub detected_utc: Option<String>,
    /// `TargetHostName`.
    pub target_host_name: Option<String>,
    /// `TargetIPV4` (dotted, or ePO's signed 32-bit integer).
    pub target_ipv4: Option<String>,
    /// `TargetMAC`.
    pub target_mac: Option<String>,
}

/// Where a text node lands.
fn slot<'a>(ev: &'a mut EpoEvent, machine: bool, name: &str) -> Option<&'a mut Option<String>> {
    let n = name.to_ascii_lowercase();
    Some(match (machine, n.as_str()) {
        (true, "machinename") => &mut ev.machine_name,
        (true, "agentguid") => &mut ev.agent_guid,
        (true, "ipaddress") => &mut ev.ip_address,
        (true, "rawmacaddress") => &mut ev.raw_mac,
        (false, "gmttime") => &mut ev.gmt_time,
        (false, "threatname") => &mut ev.threat_name,
        (false, "threattype") => &mut ev.threat_type,
        (false, "threatcategory") => &mut ev.threat_category,
        (false, "threateventid") => &mut ev.threat_event_id,
        (false, "detectedutc") => &mut ev.detected_utc,
        (false, "targethostname") => &mut ev.target_host_name,
        (false, "targetipv4") => &mut ev.target_ipv4,
        (false, "targetmac") => &mut ev.target_mac,
        _ => return None,
    })
}

/// Parses an EPOEvent document into its threat events (machine fields copied into each);
/// offsets in errors are into `xml`.
pub fn parse(xml: &str) -> Result<Vec<EpoEvent>, IngestError> {
    super::check_size(xml.as_bytes())?;
    let mut reader = Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<String> = Vec::new();
    let mut machine = EpoEvent::default();
    let mut events: Vec<EpoEvent> = Vec::new();
    // Index in `stack` of the open <Event>, when inside one.
    let mut in_event: Option<usize> = None;
    let mut root_seen = false;
    loop {
        let pos = reader.buffer_position() as usize;
        let event = reader.read_event().map_err(|e| {
            let at = reader.error_position() as usize;
            IngestError::malformed(W, e.to_string(), Some(at))
        })?;
        match event {
            Event::Start(start) => {
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                if stack.is_empty() {
                    if root_seen || !name.eq_ignore_ascii_case("EPOEvent") {
                        let detail = format!("expected one <EPOEvent> root, found <{name}>");
                        return Err(IngestError::malformed(W, detail, Some(pos)));
                    }
                    root_seen = true;
                }
                if stack.len() >= MAX_DEPTH {
                    let detail = format!("elements nest deeper than {MAX_DEPTH}");
                    return Err(IngestError::malformed(W, detail, Some(pos)));
                }
                if in_event.is_none() && name.eq_ignore_ascii_case("Event") {
                    in_event = Some(stack.len());
                    events.push(EpoEvent::default());
                }
                stack.push(name);
                // A second <ThreatName> (or any mapped field) makes the event ambiguous.
                if target(&mut machine, &mut events, &stack, in_event).is_some_and(|s| s.is_some())
                {
                    let detail = format!("duplicate <{}>", stack[stack.len() - 1]);
                    return Err(IngestError::malformed(W, detail, Some(pos)));
                }
            }
            Event::End(_) => {
                stack.pop();
                if in_event.is_some_and(|i| i == stack.len()) {
                    in_event = None;
                }
            }
            Event::Empty(start) if stack.is_empty() => {
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                let detail = format!("expected one <EPOEvent> root, found empty <{name}/>");
                return Err(IngestError::malformed(W, detail, Some(pos)));
            }
            Event::Text(text) => {
                let value = text
                    .unescape()
                    .map_err(|e| IngestError::malformed(W, e.to_string(), Some(pos)))?;
                if stack.is_empty() && !value.trim().is_empty() {
                    return Err(IngestError::malformed(
                        W,
                        "text outside the root",
                        Some(pos),
                    ));
                }
                store(&mut machine, &mut events, &stack, in_event, &value);
            }
            Event::CData(data) => {
                let value = String::from_utf8_lossy(&data).into_owned();
                store(&mut machine, &mut events, &stack, in_event, &value);
            }
            Event::DocType(_) => {
                return Err(IngestError::malformed(
                    W,
                    "DOCTYPE is not allowed",
                    Some(pos),
                ));
            }
            Event::Eof => break,
            // Declarations, comments, processing instructions and empty elements carry
            // nothing we map.
            _ => {}
        }
    }
    if !stack.is_empty() {
        let detail = format!("unclosed <{}>", stack.join("><"));
        return Err(IngestError::malformed(W, detail, Some(xml.len())));
    }
    if !root_seen {
        return Err(IngestError::malformed(W, "no <EPOEvent> element", Some(0)));
    }
    if events.is_empty() {
        return Err(IngestError::malformed(W, "no <Event> element", None));
    }
    for ev in &mut events {
        ev.machine_name = machine.machine_name.clone();
        ev.agent_guid = machine.agent_guid.clone();
        ev.ip_address = machine.ip_address.clone();
        ev.raw_mac = machine.raw_mac.clone();
    }
    Ok(events)
}

/// The field the innermost open element maps to, if any.
fn target<'a>(
    machine: &'a mut EpoEvent,
    events: &'a mut [EpoEvent],
    stack: &[String],
    in_event: Option<usize>,
) -> Option<&'a mut Option<String>> {
    let name = stack.last()?;
    match in_event {
        Some(_) => events.last_mut().and_then(|ev| slot(ev, false, name)),
        None if stack.len() == 3 && stack[1].eq_ignore_ascii_case("MachineInfo") => {
            slot(machine, true, name)
        }
        None => None,
    }
}

fn store(
    machine: &mut EpoEvent,
    events: &mut [EpoEvent],
    stack: &[String],
    in_event: Option<usize>,
    value: &str,
) {
    let value = value.trim();
    if let Some(slot) = target(machine, events, stack, in_event) {
        match slot {
            // Text split by a comment or CDATA section is joined.
            Some(existing) => existing.push_str(value),
            None if !value.is_empty() => *slot = Some(value.to_string()),
            None => {}
        }
    }
}

/// The R1 category of an ePO threat. `ThreatType` decides when it is known: `pup`,
/// `spyware`, `potentially unwanted program` are `spyware`; `adware`, `joke` are `grayware`;
/// `virus`, `trojan`, `worm` are `virus`; `malware`, `ransomware`, `backdoor`, `rootkit`,
/// `exploit`, `bot`, `dropper`, `downloader` are `malware`. Otherwise `ThreatCategory`:
/// `av.pup*` is `spyware`, `av.detect` is `virus` (the signature detection category), other
/// `av.detect.*` (heuristics: events 1053/1054/1056) is `malware`. Anything else (`hip.*`,
/// `fw.*`, `ops.*`) is `other`. PUP is checked first, so a PUP never triggers an action even
/// when filed under `av.detect`.
pub fn category(threat_type: Option<&str>, threat_category: Option<&str>) -> Category {
    let t = threat_type.unwrap_or("").trim().to_ascii_lowercase();
    let c = threat_category.unwrap_or("").trim().to_ascii_lowercase();
    match t.as_str() {
        "pup" | "spyware" | "potentially unwanted program" => return Category::Spyware,
        "adware" | "joke" => return Category::Grayware,
        "virus" | "trojan" | "worm" => return Category::Virus,
        "malware" | "ransomware" | "backdoor" | "rootkit" | "exploit" | "bot" | "dropper"
        | "downloader" => return Category::Malware,
        _ => {}
    }
    if c.starts_with("av.pup") {
        Category::Spyware
    } else if c == "av.detect" {
        Category::Virus
    } else if c.starts_with("av.detect.") {
        Category::Malware
    } else {
        Category::Other
    }
}

/// ePO's signed 32-bit IPv4 column value to an address (add 2^31).
pub fn ipv4_from_signed(value: i64) -> Option<Ipv4Addr> {
    let unsigned = value.checked_add(1 << 31)?;
    u32::try_from(unsigned).ok().map(Ipv4Addr::from)
}

/// An address as ePO's signed 32-bit IPv4 column value (subtract 2^31).
pub fn ipv4_to_signed(ip: Ipv4Addr) -> i64 {
    i64::from(u32::from(ip)) - (1 << 31)
}

/// An IP written dotted (or IPv6), or as ePO's signed integer.
fn parse_ip(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>().ok().or_else(|| {
        text.parse::<i64>()
            .ok()
            .and_then(ipv4_from_signed)
            .map(IpAddr::V4)
    })
}

/// Maps one event to a detection (source left empty). `xml` and `index` feed the fallback id.
pub fn to_detection(ev: &EpoEvent, xml: &str, index: usize) -> Result<Detection, IngestError> {
    let nth = index + 1;
    let Some(threat) = ev.threat_name.clone() else {
        return Err(IngestError::malformed(
            W,
            format!("event {nth} has no <ThreatName>"),
            None,
        ));
    };
    let ip = match ev.ip_address.as_deref().or(ev.target_ipv4.as_deref()) {
        Some(text) => Some(parse_ip(text).ok_or_else(|| {
            let detail = format!("event {nth}: `{text}` is not an IP address");
            IngestError::malformed(W, detail, None)
        })?),
        None => None,
    };
    let mac = match ev.raw_mac.as_deref().or(ev.target_mac.as_deref()) {
        Some(text) => Some(normalize_mac(text).ok_or_else(|| {
            let detail = format!("event {nth}: `{text}` is not a MAC address");
            IngestError::malformed(W, detail, None)
        })?),
        None => None,
    };
    let time = ev.detected_utc.as_deref().or(ev.gmt_time.as_deref());
    let event_id = match (&ev.agent_guid, &ev.threat_event_id, time) {
        (Some(guid), Some(id), Some(time)) => format!("epo-{guid}-{id}-{time}"),
        _ if index == 0 => super::hash_id(xml),
        _ => super::hash_id(&format!("{xml}#{index}")),
    };
    Ok(Detection {
        source: String::new(),
        event_id,
        ip,
        mac,
        hostname: ev
            .machine_name
            .clone()
            .or_else(|| ev.target_host_name.clone()),
        threat,
        category: category(ev.threat_type.as_deref(), ev.threat_category.as_deref()),
    })
}

/// Parses an EPOEvent document into detections (sources left empty for the caller).
pub fn parse_detections(xml: &str) -> Result<Vec<Detection>, IngestError> {
    let trimmed = xml.trim_end();
    parse(trimmed)?
        .iter()
        .enumerate()
        .map(|(i, ev)| to_detection(ev, trimmed, i))
        .collect()
}

/// Formats one event as an EPOEvent document (for simulated ePO senders): the inverse of
/// [`parse`] for a single event, text escaped.
pub fn format(ev: &EpoEvent) -> String {
    fn el(out: &mut String, name: &str, value: &Option<String>) {
        if let Some(v) = value {
            let escaped = quick_xml::escape::escape(v.as_str());
            out.push_str(&format!("<{name}>{escaped}</{name}>"));
        }
    }
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><EPOEvent><MachineInfo>");
    el(&mut x, "MachineName", &ev.machine_name);
    el(&mut x, "AgentGUID", &ev.agent_guid);
    el(&mut x, "IPAddress", &ev.ip_address);
    el(&mut x, "RawMACAddress", &ev.raw_mac);
    x.push_str("</MachineInfo><SoftwareInfo ProductName=\"McAfee Endpoint Security\" ProductVersion=\"10.6.0\" ProductFamily=\"TVD\"><CommonFields><Analyzer>ENDP_AM_1060</Analyzer></CommonFields><Event>");
    el(&mut x, "GMTTime", &ev.gmt_time);
    x.push_str("<CommonFields>");
    el(&mut x, "ThreatCategory", &ev.threat_category);
    el(&mut x, "ThreatEventID", &ev.threat_event_id);
    el(&mut x, "ThreatName", &ev.threat_name);
    el(&mut x, "ThreatType", &ev.threat_type);
    el(&mut x, "DetectedUTC", &ev.detected_utc);
    el(&mut x, "TargetHostName", &ev.target_host_name);
    el(&mut x, "TargetIPV4", &ev.target_ipv4);
    el(&mut x, "TargetMAC", &ev.target_mac);
    x.push_str("</CommonFields></Event></SoftwareInfo></EPOEvent>");
    x
}

/// Wraps an EPOEvent document in ePO's RFC 5424 syslog header (PRI 29, `EPOEvents`,
/// `EventFwd`, `agentInfo@3401`).
pub fn syslog_line(timestamp: &str, hostname: &str, xml: &str) -> String {
    let sd = super::syslog::SdElement {
        id: "agentInfo@3401".into(),
        params: vec![
            ("tenantId".into(), "1".into()),
            ("bpsId".into(), "1".into()),
            (
                "tenantGUID".into(),
                "{00000000-0000-0000-0000-000000000000}".into(),
            ),
            ("tenantNodePath".into(), "1\\2".into()),
        ],
    };
    super::syslog::format_5424(29, timestamp, hostname, "EPOEvents", "EventFwd", &[sd], xml)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_ipv4_converts_both_ways() {
        let ip: Ipv4Addr = "10.110.0.11".parse().unwrap();
        assert_eq!(ipv4_to_signed(ip), -1972502517);
        assert_eq!(ipv4_from_signed(-1972502517), Some(ip));
        assert_eq!(
            ipv4_from_signed(i64::from(i32::MIN)),
            Some(Ipv4Addr::new(0, 0, 0, 0))
        );
        assert_eq!(ipv4_from_signed(1 << 31), None);
        assert_eq!(ipv4_from_signed(i64::MIN), None);
    }

    #[test]
    fn doctype_and_unknown_entities_are_refused() {
        let x = "<!DOCTYPE a [<!ENTITY e \"x\">]><EPOEvent>&e;</EPOEvent>";
        assert!(parse(x).unwrap_err().reason().contains("DOCTYPE"));
        let x = "<EPOEvent><Event><CommonFields><ThreatName>&e;</ThreatName></CommonFields></Event></EPOEvent>";
        assert!(parse(x).is_err());
    }

    #[test]
    fn pup_never_acts_and_av_detect_does() {
        assert_eq!(category(Some("pup"), Some("av.detect")), Category::Spyware);
        assert_eq!(category(Some("virus"), Some("av.detect")), Category::Virus);
        assert_eq!(category(None, Some("av.detect")), Category::Virus);
        assert_eq!(
            category(None, Some("av.detect.heuristics")),
            Category::Malware
        );
        assert_eq!(
            category(Some("IDS_THREAT_TYPE_VALUE_BOP"), Some("hip.bo")),
            Category::Other
        );
    }

    #[test]
    fn depth_is_capped() {
        let mut x = String::from("<EPOEvent>");
        for _ in 0..MAX_DEPTH {
            x.push_str("<a>");
        }
        assert!(parse(&x).unwrap_err().reason().contains("deeper"));
    }
}
