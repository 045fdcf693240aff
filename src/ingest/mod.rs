//! Detection intake: vendor parsers (OfficeScan/Apex Central CEF, SEPM risk log, ePO EPOEvent
//! XML), syslog framing, and the ePO Web API poller.
//!
//! Every parser is a pure function over at most [`MAX_PAYLOAD_BYTES`] of input: it never panics,
//! never truncates, and every error names what was wrong and where (a byte offset into the
//! payload the caller handed in), so the daemon can answer an HTTP 400 or count and log a syslog
//! line with [`IngestError::reason`] (R18). [`parse_detection`] is the one entry point the daemon
//! needs for pushed detections; [`EpoPoller`] pulls them from the ePO Web API.
//!
//! Choices common to all vendors:
//! - Input must be UTF-8. All three products emit UTF-8 (Apex Central CEF, SEPM syslog, ePO's
//!   XML declares it); a stray byte is rejected with its offset rather than guessed at, since a
//!   guessed host name could match the wrong L-Server.
//! - A vendor record without an event id gets `sha256-<first 16 hex digits>` of its raw text as
//!   its id: R4 dedupes on `(source, event_id)`, so the id must be the same when the AV server
//!   re-sends the same record (at-least-once delivery) and different for different records.
//!   Only the vendor part is hashed, not the syslog header, so a relay that rewrites the header
//!   timestamp or host does not defeat dedupe.

pub mod cef;
pub mod epo;
pub mod epo_poller;
pub mod sepm;
pub mod syslog;

use std::fmt;

use sha2::{Digest, Sha256};

use crate::model::{AvKind, Detection};

pub use epo_poller::EpoPoller;

/// Largest payload (one syslog line, one HTTP body, one frame) a parser accepts: detections
/// are small, and a bound keeps a hostile or broken sender from making us allocate.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Why an input was not turned into a detection, or why an ePO poll failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestError {
    /// The input is larger than allowed.
    TooLarge {
        /// What was too large (`payload`, `frame`, `ePO reply`).
        what: &'static str,
        /// Its length in bytes (or at least this many).
        len: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The input does not follow the format.
    Malformed {
        /// Which part of which format (`CEF extension`, `syslog RFC 5424`, ...).
        what: &'static str,
        /// What is wrong.
        detail: String,
        /// Byte offset into the caller's payload, when one applies.
        at: Option<usize>,
    },
    /// The input parsed but the detection fails [`Detection::check`] (no match key, a field
    /// too long, control characters).
    Invalid(String),
    /// The ePO server could not be reached, or the call timed out or was cut (R19).
    Transport(String),
    /// The ePO server refused the credentials.
    Auth(String),
    /// The ePO server answered `Error <code> :` with a message.
    Remote {
        /// The error code ePO printed (`0` for most failures).
        code: i64,
        /// ePO's message.
        message: String,
    },
    /// The ePO server answered an unexpected HTTP status.
    Status {
        /// HTTP status code.
        status: u16,
        /// Start of the body, for the log.
        body: String,
    },
}

impl IngestError {
    /// A malformed-input error at byte `at` of the payload.
    pub fn malformed(what: &'static str, detail: impl Into<String>, at: Option<usize>) -> Self {
        IngestError::Malformed {
            what,
            detail: detail.into(),
            at,
        }
    }

    /// The human-readable reason, e.g. `CEF extension: unterminated escape at byte 143`; what
    /// the daemon puts in an HTTP 400 body and the log.
    pub fn reason(&self) -> String {
        self.to_string()
    }

    /// A short stable label for counters (`too_large`, `malformed`, `invalid`, `transport`,
    /// `auth`, `remote`, `status`).
    pub fn kind(&self) -> &'static str {
        match self {
            IngestError::TooLarge { .. } => "too_large",
            IngestError::Malformed { .. } => "malformed",
            IngestError::Invalid(_) => "invalid",
            IngestError::Transport(_) => "transport",
            IngestError::Auth(_) => "auth",
            IngestError::Remote { .. } => "remote",
            IngestError::Status { .. } => "status",
        }
    }

    /// Moves a byte offset by `base`: a parser of an inner part (the CEF text after a syslog
    /// header) reports offsets into that part, the caller reports them into the whole payload.
    pub fn shifted(self, base: usize) -> Self {
        match self {
            IngestError::Malformed { what, detail, at } => IngestError::Malformed {
                what,
                detail,
                at: at.map(|a| a.saturating_add(base)),
            },
            other => other,
        }
    }
}

impl fmt::Display for IngestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IngestError::TooLarge { what, len, limit } => {
                write!(f, "{what} is {len} bytes, the limit is {limit}")
            }
            IngestError::Malformed { what, detail, at } => match at {
                Some(at) => write!(f, "{what}: {detail} at byte {at}"),
                None => write!(f, "{what}: {detail}"),
            },
            IngestError::Invalid(detail) => write!(f, "detection: {detail}"),
            IngestError::Transport(detail) => write!(f, "ePO transport: {detail}"),
            IngestError::Auth(detail) => write!(f, "ePO authentication: {detail}"),
            IngestError::Remote { code, message } => write!(f, "ePO error {code}: {message}"),
            IngestError::Status { status, body } => {
                write!(f, "ePO answered HTTP {status}: {body}")
            }
        }
    }
}

impl std::error::Error for IngestError {}

/// Rejects a payload over [`MAX_PAYLOAD_BYTES`].
pub fn check_size(payload: &[u8]) -> Result<(), IngestError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(IngestError::TooLarge {
            what: "payload",
            len: payload.len(),
            limit: MAX_PAYLOAD_BYTES,
        });
    }
    Ok(())
}

/// Checks the size and decodes UTF-8, naming the first bad byte.
pub fn decode(payload: &[u8]) -> Result<&str, IngestError> {
    check_size(payload)?;
    std::str::from_utf8(payload)
        .map_err(|e| IngestError::malformed("payload", "invalid UTF-8", Some(e.valid_up_to())))
}

/// The synthesized event id of a record that carries none: `sha256-` and the first 16 hex
/// digits of the SHA-256 of `raw` (see the module docs for why).
pub fn hash_id(raw: &str) -> String {
    let digest = Sha256::digest(raw.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("sha256-{hex}")
}

/// Parses one pushed detection from the AV server `source` of vendor `kind`: a full syslog
/// line (RFC 5424 or RFC 3164 header, recognized by `<digits>` at the start) or the bare
/// vendor body, with trailing CR/LF ignored. Fills `source` and runs [`Detection::check`].
///
/// An ePO message carrying several events is refused here (use [`parse_detections`]): silently
/// keeping only the first would lose detections.
pub fn parse_detection(
    kind: AvKind,
    source: &str,
    payload: &[u8],
) -> Result<Detection, IngestError> {
    let mut all = parse_detections(kind, source, payload)?;
    if all.len() != 1 {
        return Err(IngestError::malformed(
            "ePO XML",
            format!("the message carries {} events, one was expected", all.len()),
            None,
        ));
    }
    Ok(all.remove(0))
}

/// Like [`parse_detection`], but returns every event of the message (ePO may put several
/// `<Event>` elements in one EPOEvent; CEF and SEPM lines always hold one). All or nothing:
/// one bad event rejects the message, so a sender's retry never half-duplicates it.
pub fn parse_detections(
    kind: AvKind,
    source: &str,
    payload: &[u8],
) -> Result<Vec<Detection>, IngestError> {
    let text = decode(payload)?;
    let text = text.trim_end_matches(['\r', '\n', '\0']);
    let (body, offset) = vendor_body(kind, text)?;
    let mut detections = match kind {
        AvKind::Officescan => vec![cef::parse_detection(body).map_err(|e| e.shifted(offset))?],
        AvKind::Sepm => vec![sepm::parse_detection(body).map_err(|e| e.shifted(offset))?],
        AvKind::Epo => epo::parse_detections(body).map_err(|e| e.shifted(offset))?,
    };
    for d in &mut detections {
        d.source = source.to_string();
        d.check().map_err(IngestError::Invalid)?;
    }
    Ok(detections)
}

/// Splits off the syslog header when there is one: returns the vendor body and its offset.
fn vendor_body(kind: AvKind, text: &str) -> Result<(&str, usize), IngestError> {
    if !syslog::starts_with_pri(text) {
        return Ok((text, 0));
    }
    let msg = syslog::parse(text)?;
    if kind == AvKind::Officescan && !msg.body.starts_with("CEF:") {
        // Apex Central writes `host CEF:0|...` after an RFC 3164 timestamp, so a 3164 parser
        // takes `CEF` for the tag; the CEF text then starts where the tag did.
        let content = &text[msg.content_offset..];
        if content.starts_with("CEF:") {
            return Ok((content, msg.content_offset));
        }
        return Err(IngestError::malformed(
            "CEF",
            "no `CEF:` after the syslog header",
            Some(msg.content_offset),
        ));
    }
    Ok((msg.body, msg.body_offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_what_and_where() {
        let e = IngestError::malformed("CEF extension", "unterminated escape", Some(143));
        assert_eq!(e.reason(), "CEF extension: unterminated escape at byte 143");
        assert_eq!(
            e.clone().shifted(10).reason(),
            "CEF extension: unterminated escape at byte 153"
        );
        assert_eq!(e.kind(), "malformed");
    }

    #[test]
    fn r18_oversized_and_non_utf8_payloads_are_rejected() {
        let big = vec![b'a'; MAX_PAYLOAD_BYTES + 1];
        let e = parse_detection(AvKind::Sepm, "s", &big).unwrap_err();
        assert_eq!(e.kind(), "too_large");
        let e = parse_detection(AvKind::Sepm, "s", b"Virus found\xff").unwrap_err();
        assert_eq!(e.reason(), "payload: invalid UTF-8 at byte 11");
    }

    #[test]
    fn hash_ids_are_stable_and_short() {
        assert_eq!(hash_id("abc"), hash_id("abc"));
        assert_ne!(hash_id("abc"), hash_id("abd"));
        assert_eq!(hash_id("abc").len(), "sha256-".len() + 16);
    }
}
