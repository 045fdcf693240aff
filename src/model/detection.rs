//! Normalized detections: what every vendor parser and the HTTP API turn their input into.

use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Threat category of a detection (R1).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Category {
    /// A virus: triggers an action.
    Virus,
    /// Malware: triggers an action.
    Malware,
    /// Spyware: journaled as ignored.
    Spyware,
    /// Grayware: journaled as ignored.
    Grayware,
    /// Command-and-control call-back: journaled as ignored.
    Cnc,
    /// Outbreak notice: journaled as ignored.
    Outbreak,
    /// Anything else: journaled as ignored.
    Other,
}

impl Category {
    /// Whether this category starts an operation (R1).
    pub fn triggers_action(self) -> bool {
        matches!(self, Category::Virus | Category::Malware)
    }

    /// The spelling used in files, the API and the journal.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One detection from an antivirus management server, vendor-neutral.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Detection {
    /// Name of the AV server in the topology.
    pub source: String,
    /// The sender's event id; `(source, event_id)` is the dedupe key (R4).
    pub event_id: String,
    /// Infected host's IP address, the primary match key (R3).
    #[serde(default)]
    pub ip: Option<IpAddr>,
    /// Infected host's MAC address, the second match key.
    #[serde(default)]
    pub mac: Option<String>,
    /// Infected host's name, the third match key.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Threat name as the vendor reports it (R2 matches keywords in it).
    pub threat: String,
    /// Threat category (R1).
    pub category: Category,
}

/// Longest accepted text field of a detection: longer input is rejected, never truncated.
pub const MAX_DETECTION_FIELD_LEN: usize = 256;

impl Detection {
    /// Checks sizes and presence of a match key, naming the offending field.
    pub fn check(&self) -> Result<(), String> {
        let fields = [
            ("source", Some(self.source.as_str())),
            ("event_id", Some(self.event_id.as_str())),
            ("mac", self.mac.as_deref()),
            ("hostname", self.hostname.as_deref()),
            ("threat", Some(self.threat.as_str())),
        ];
        for (name, value) in fields {
            if let Some(v) = value {
                if v.len() > MAX_DETECTION_FIELD_LEN {
                    return Err(format!(
                        "field `{name}` is {} bytes long, the limit is {MAX_DETECTION_FIELD_LEN}",
                        v.len()
                    ));
                }
                if v.chars().any(char::is_control) {
                    return Err(format!("field `{name}` contains control characters"));
                }
            }
        }
        if self.source.is_empty() {
            return Err("field `source` is empty".into());
        }
        if self.event_id.is_empty() {
            return Err("field `event_id` is empty".into());
        }
        if self.ip.is_none() && self.mac.is_none() && self.hostname.is_none() {
            return Err("a detection needs at least one of `ip`, `mac` or `hostname`".into());
        }
        Ok(())
    }
}

/// Normalizes a MAC address to lowercase colon form (`00:50:56:aa:bb:cc`), accepting `-`, `:`
/// or no separators. Returns `None` when it is not 12 hex digits.
pub fn normalize_mac(text: &str) -> Option<String> {
    let hex: String = text
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let lower = hex.to_ascii_lowercase();
    let pairs: Vec<&str> = (0..6).map(|i| &lower[i * 2..i * 2 + 2]).collect();
    Some(pairs.join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r1_only_virus_and_malware_trigger() {
        assert!(Category::Virus.triggers_action());
        assert!(Category::Malware.triggers_action());
        for c in [
            Category::Spyware,
            Category::Grayware,
            Category::Cnc,
            Category::Outbreak,
            Category::Other,
        ] {
            assert!(!c.triggers_action(), "{c:?}");
        }
    }

    #[test]
    fn mac_forms_normalize_alike() {
        assert_eq!(
            normalize_mac("00-0C-29-9B-AB-65").as_deref(),
            Some("00:0c:29:9b:ab:65")
        );
        assert_eq!(
            normalize_mac("005056afc747").as_deref(),
            Some("00:50:56:af:c7:47")
        );
        assert_eq!(normalize_mac("00:50:56"), None);
    }

    #[test]
    fn r18_oversized_field_is_rejected_with_its_name() {
        let d = Detection {
            source: "osce".into(),
            event_id: "e".into(),
            ip: None,
            mac: None,
            hostname: Some("h".into()),
            threat: "x".repeat(MAX_DETECTION_FIELD_LEN + 1),
            category: Category::Virus,
        };
        assert!(d.check().unwrap_err().contains("threat"));
    }
}
