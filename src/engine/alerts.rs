//! Alerts (R17): stable codes, RFC 5424 syslog lines and email bodies.
//!
//! Messages reuse the shapes operators of the modelled product grep for
//! (`FJSVrcx:INFO:21143:<operation>:started`, `FJSVrcx:ERROR:67198:...quarantine failed(detail=...)`),
//! so existing log rules keep working.

use std::net::IpAddr;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::adapters::Email;

/// Severity of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Progress and success.
    Info,
    /// A failure that needs an operator.
    Error,
}

impl Severity {
    /// `INFO` or `ERROR`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Error => "ERROR",
        }
    }
}

/// Stable alert codes (R17). Documented in the README; never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "kebab-case")]
pub enum AlertCode {
    /// An operation that moves NICs started.
    QuarantineStarted,
    /// Every NIC confirmed on quarantine (R9).
    QuarantineCompleted,
    /// A quarantine could not be confirmed; records rolled back (R10).
    QuarantineFailed,
    /// A detection matched no L-Server (R3).
    LserverNotFound,
    /// The plan could not be made from the topology (R6).
    ConfigError,
    /// A reset succeeded (R13).
    RebootCompleted,
    /// A reset failed (R13).
    RebootFailed,
    /// Every NIC back on operation (R14).
    ReleaseCompleted,
    /// Some NIC still on quarantine after a release (R14).
    ReleaseFailed,
    /// Policy `none`: the tenant administrator must choose (R5).
    DecisionRequired,
    /// An engine task panicked: the engine stopped all device work and must be restarted.
    EngineHalted,
    /// The drift watch found a quarantined NIC off its quarantine network (R20).
    QuarantineDrift,
    /// NICs that drifted are back on quarantine, verified (R20).
    QuarantineRestored,
}

impl AlertCode {
    /// Every code, for documentation and parsing.
    pub const ALL: &'static [AlertCode] = <AlertCode as strum::VariantArray>::VARIANTS;

    /// The stable spelling, e.g. `quarantine-failed`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Parses [`AlertCode::as_str`].
    pub fn parse(text: &str) -> Option<AlertCode> {
        text.parse().ok()
    }

    /// ERROR for failures, INFO otherwise.
    pub fn severity(self) -> Severity {
        match self {
            AlertCode::QuarantineFailed
            | AlertCode::LserverNotFound
            | AlertCode::ConfigError
            | AlertCode::RebootFailed
            | AlertCode::ReleaseFailed
            | AlertCode::EngineHalted
            | AlertCode::QuarantineDrift => Severity::Error,
            _ => Severity::Info,
        }
    }

    /// Whether the tenant administrator gets an email for it (when the tenant has an address).
    /// Matches the modelled product: one email after a quarantine, one after a reboot, one
    /// before a decision, and one per failure.
    pub fn emails_tenant(self) -> bool {
        !matches!(
            self,
            AlertCode::QuarantineStarted
                | AlertCode::ReleaseCompleted
                | AlertCode::LserverNotFound
                | AlertCode::EngineHalted
        )
    }
}

/// One alert, as journaled and sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Alert {
    /// Journal sequence number, increasing.
    pub seq: i64,
    /// Engine time in milliseconds since the Unix epoch (or since the run start in the lab).
    pub at_ms: u64,
    /// Stable code.
    pub code: AlertCode,
    /// L-Server it concerns.
    pub lserver: Option<String>,
    /// IP it concerns (for `lserver-not-found`).
    pub ip: Option<IpAddr>,
    /// Operation it belongs to.
    pub operation: Option<i64>,
    /// Human detail: NIC states, remedy.
    pub detail: String,
}

impl Alert {
    /// Severity from the code.
    pub fn severity(&self) -> Severity {
        self.code.severity()
    }

    /// The NICs this alert names as in unknown state: the items `nicN mac M device=unknown`
    /// of its detail (the failure alerts list each NIC left behind that way, separated by
    /// `; `). INV-4 lets a `release_failed` NIC whose last read failed differ from its record
    /// only when the alert names it so.
    pub fn nics_named_unknown(&self) -> Vec<usize> {
        self.detail
            .split("; ")
            .filter_map(|item| {
                let item = item.rsplit(": ").next().unwrap_or(item);
                let index = item.strip_prefix("nic")?.split(' ').next()?;
                let unknown = item.split(' ').any(|word| word == "device=unknown");
                unknown.then(|| index.parse().ok()).flatten()
            })
            .collect()
    }

    /// The message body in the product's shapes.
    pub fn message(&self) -> String {
        let subject = self
            .lserver
            .clone()
            .or_else(|| self.ip.map(|ip| format!("ip={ip}")))
            .unwrap_or_default();
        let detail = sanitize(&self.detail);
        match self.code {
            AlertCode::QuarantineStarted => format!("FJSVrcx:INFO:21143:quarantine {subject}:started"),
            AlertCode::QuarantineCompleted => {
                format!("FJSVrcx:INFO:21144:quarantine {subject}:completed ({detail})")
            }
            AlertCode::RebootCompleted => format!("FJSVrcx:INFO:21144:reboot {subject}:completed"),
            AlertCode::ReleaseCompleted => format!("FJSVrcx:INFO:21144:release {subject}:completed"),
            AlertCode::DecisionRequired => {
                format!("FJSVrcx:INFO:21146:decision required {subject}:{detail}")
            }
            AlertCode::QuarantineFailed | AlertCode::ConfigError => format!(
                "FJSVrcx:ERROR:67198:command execution error.quarantine failed(detail={subject}: {detail})"
            ),
            AlertCode::LserverNotFound => {
                format!("FJSVrcx:ERROR:67198:L-Server not found. {subject}")
            }
            AlertCode::RebootFailed => format!("FJSVrcx:ERROR:61143:reboot {subject}:failed(detail={detail})"),
            AlertCode::ReleaseFailed => format!("FJSVrcx:ERROR:61143:release {subject}:failed(detail={detail})"),
            // The product has no such message; the same shape as its other engine errors.
            AlertCode::EngineHalted => format!("FJSVrcx:ERROR:67198:engine halted(detail={detail})"),
            AlertCode::QuarantineDrift => format!("FJSVrcx:ERROR:61143:quarantine {subject}:drift(detail={detail})"),
            AlertCode::QuarantineRestored => {
                format!("FJSVrcx:INFO:21144:quarantine {subject}:restored ({detail})")
            }
        }
    }

    /// The RFC 5424 line: `<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG`, facility local0.
    pub fn syslog_line(&self, hostname: &str) -> String {
        // Facility local0 (16): INFO is severity 6, ERROR severity 3.
        let severity = match self.severity() {
            Severity::Info => 6,
            Severity::Error => 3,
        };
        let pri = 16 * 8 + severity;
        let timestamp =
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(self.at_ms));
        let mut sd = format!("[qlab@32473 code=\"{}\"", self.code.as_str());
        if let Some(ls) = &self.lserver {
            sd.push_str(&format!(" lserver=\"{}\"", escape_sd(ls)));
        }
        if let Some(ip) = self.ip {
            sd.push_str(&format!(" ip=\"{ip}\""));
        }
        if let Some(op) = self.operation {
            sd.push_str(&format!(" operation=\"{op}\""));
        }
        sd.push(']');
        let host = if hostname.is_empty() { "-" } else { hostname };
        format!(
            "<{pri}>1 {timestamp} {host} qlab - {} {sd} {}",
            self.code.as_str(),
            self.message()
        )
    }

    /// The left part of its email's `Message-ID`: `qlab.alert.<seq>.<at_ms>`. The journal
    /// sequence number names the alert; its journaled time tells apart two journals that reuse
    /// a number. Both are journaled, so a resent alert (R16) gets the same id.
    pub fn message_id(&self) -> String {
        format!("qlab.alert.{}.{}", self.seq, self.at_ms)
    }

    /// The email for the tenant administrator at `to`.
    pub fn email(&self, to: &str, release_hint: bool) -> Email {
        let who = self.lserver.as_deref().unwrap_or("-");
        let subject = format!(
            "[qlab] {} {}: {}",
            self.severity().as_str(),
            who,
            self.code.as_str()
        );
        let mut body = format!(
            "L-Server: {who}\nEvent: {}\n\n{}\n",
            self.code.as_str(),
            self.detail
        );
        match self.code {
            AlertCode::QuarantineCompleted if release_hint => body.push_str(&format!(
                "\nWhen the risk is removed, switch the L-Server back with:\n  qlab engine release {who}\n"
            )),
            AlertCode::DecisionRequired => body.push_str(&format!(
                "\nChoose one action:\n  qlab engine decide {who} --choice quarantine\n  qlab engine decide {who} --choice reboot\n  qlab engine decide {who} --choice quarantine_reboot\n"
            )),
            _ => {}
        }
        Email {
            id: self.message_id(),
            to: to.to_string(),
            subject,
            body,
        }
    }
}

/// Keeps a syslog message on one line.
fn sanitize(text: &str) -> String {
    text.replace(['\n', '\r'], "; ")
}

/// RFC 5424 §6.3.3: `"`, `\` and `]` are escaped inside PARAM-VALUE.
fn escape_sd(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(code: AlertCode) -> Alert {
        Alert {
            seq: 1,
            at_ms: 1_700_000_000_123,
            code,
            lserver: Some("/tenant-a/vdi-001".into()),
            ip: None,
            operation: Some(7),
            detail: "nic0 device=qr-a\nremedy: switch by hand".into(),
        }
    }

    #[test]
    fn r17_release_failed_detail_names_its_unknown_nics() {
        let mut a = alert(AlertCode::ReleaseFailed);
        a.detail = "still on quarantine or unknown: nic0 mac 00:50:56:00:00:01 device=unknown; \
                    nic1 mac 00:50:56:00:00:02 device=qr-b; nic12 mac 00:50:56:00:00:03 device=unknown"
            .into();
        assert_eq!(a.nics_named_unknown(), vec![0, 12]);
        a.detail = "still on quarantine or unknown: nic0 mac 00:50:56:00:00:01 device=qr-a".into();
        assert!(a.nics_named_unknown().is_empty());
    }

    #[test]
    fn r17_codes_are_stable_and_round_trip() {
        for &code in AlertCode::ALL {
            assert_eq!(AlertCode::parse(code.as_str()), Some(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn r17_failures_are_error_severity() {
        assert_eq!(AlertCode::QuarantineFailed.severity(), Severity::Error);
        assert_eq!(AlertCode::ReleaseFailed.severity(), Severity::Error);
        assert_eq!(AlertCode::QuarantineCompleted.severity(), Severity::Info);
    }

    #[test]
    fn r20_drift_is_an_error_and_its_restoration_info() {
        assert_eq!(AlertCode::QuarantineDrift.severity(), Severity::Error);
        assert_eq!(AlertCode::QuarantineRestored.severity(), Severity::Info);
        assert_eq!(
            AlertCode::parse("quarantine-drift"),
            Some(AlertCode::QuarantineDrift)
        );
        assert!(alert(AlertCode::QuarantineDrift)
            .message()
            .contains(":drift(detail="));
    }

    #[test]
    fn r17_syslog_line_is_rfc5424_on_one_line() {
        let line = alert(AlertCode::QuarantineFailed).syslog_line("mgr01");
        assert!(line.starts_with("<131>1 2023-11-14T22:13:20.123Z mgr01 qlab - quarantine-failed [qlab@32473 code=\"quarantine-failed\" lserver=\"/tenant-a/vdi-001\" operation=\"7\"] FJSVrcx:ERROR:67198:"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn r17_structured_data_escapes_quotes() {
        let mut a = alert(AlertCode::QuarantineCompleted);
        a.lserver = Some("/t/a\"b]".into());
        assert!(a.syslog_line("h").contains("lserver=\"/t/a\\\"b\\]\""));
    }

    #[test]
    fn r9_completed_email_carries_the_release_command() {
        let email = alert(AlertCode::QuarantineCompleted).email("admin@example.com", true);
        assert!(email.body.contains("qlab engine release /tenant-a/vdi-001"));
        assert_eq!(email.to, "admin@example.com");
    }

    #[test]
    fn r5_decision_email_lists_the_choices() {
        let email = alert(AlertCode::DecisionRequired).email("a@example.com", false);
        for choice in ["quarantine", "reboot", "quarantine_reboot"] {
            assert!(
                email.body.contains(&format!("--choice {choice}\n")),
                "{choice}"
            );
        }
    }
}
