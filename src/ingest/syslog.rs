//! Syslog as the AV servers send it: RFC 5424 and RFC 3164 headers, and the two TCP framings of
//! RFC 6587 (octet counting and LF-terminated) as an incremental decoder a listener feeds with
//! whatever chunks the socket returns.
//!
//! Header fields are kept as text: the engine keys nothing on syslog timestamps (the vendor body
//! carries the detection time), so they are validated for shape but not converted.

mod framing;

pub use framing::{FrameDecoder, Framing};

use super::IngestError;

/// Which header a line carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogFormat {
    /// `<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG`.
    Rfc5424,
    /// `<PRI>Mmm dd hh:mm:ss HOST TAG: MSG`.
    Rfc3164,
}

/// One RFC 5424 structured-data element with its unescaped parameters, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdElement {
    /// SD-ID, e.g. `agentInfo@3401`.
    pub id: String,
    /// `(name, value)` pairs, values unescaped.
    pub params: Vec<(String, String)>,
}

/// The header of one syslog message. A NILVALUE (`-`) or an absent field is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogHeader {
    /// Which RFC.
    pub format: SyslogFormat,
    /// PRI / 8.
    pub facility: u8,
    /// PRI % 8.
    pub severity: u8,
    /// Timestamp as sent.
    pub timestamp: Option<String>,
    /// HOSTNAME.
    pub hostname: Option<String>,
    /// APP-NAME (5424) or TAG (3164).
    pub app_name: Option<String>,
    /// PROCID (5424) or the `[pid]` of a 3164 tag.
    pub proc_id: Option<String>,
    /// MSGID (5424 only).
    pub msg_id: Option<String>,
    /// STRUCTURED-DATA (5424 only).
    pub structured_data: Vec<SdElement>,
}

/// A parsed line: header, body, and where the body starts in the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogMessage<'a> {
    /// Header fields.
    pub header: SyslogHeader,
    /// MSG (5424, without a BOM) or the content after `TAG: ` (3164).
    pub body: &'a str,
    /// Byte offset of `body` in the line.
    pub body_offset: usize,
    /// Byte offset of the content in the line: for 3164 where the TAG starts (a tag-less
    /// sender's first word may look like a tag, e.g. `CEF:0|...`), for 5424 `body_offset`.
    pub content_offset: usize,
}

/// Whether `text` starts with `<digit`, i.e. a syslog PRI rather than a bare vendor body
/// (an XML body starts with `<?` or `<E`).
pub fn starts_with_pri(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() > 1 && b[0] == b'<' && b[1].is_ascii_digit()
}

/// Parses an RFC 5424 or RFC 3164 line (told apart by the version digit after PRI).
pub fn parse(line: &str) -> Result<SyslogMessage<'_>, IngestError> {
    super::check_size(line.as_bytes())?;
    let mut c = Cursor::new(line);
    let pri = c.pri()?;
    let b = line.as_bytes();
    let digits = b[c.pos..].iter().take_while(|x| x.is_ascii_digit()).count();
    if digits > 0 && b.get(c.pos + digits) == Some(&b' ') {
        parse_5424(c, pri)
    } else {
        parse_3164(c, pri)
    }
}

fn header(format: SyslogFormat, pri: u8) -> SyslogHeader {
    SyslogHeader {
        format,
        facility: pri / 8,
        severity: pri % 8,
        timestamp: None,
        hostname: None,
        app_name: None,
        proc_id: None,
        msg_id: None,
        structured_data: Vec::new(),
    }
}

const R5424: &str = "syslog RFC 5424";
const R3164: &str = "syslog RFC 3164";

fn parse_5424(mut c: Cursor<'_>, pri: u8) -> Result<SyslogMessage<'_>, IngestError> {
    let mut h = header(SyslogFormat::Rfc5424, pri);
    let at = c.pos;
    let version = c.token();
    if version != "1" {
        return Err(c.err(R5424, format!("unsupported version `{version}`"), at));
    }
    c.space(R5424, "after the version")?;
    let at = c.pos;
    let ts = c.token();
    if ts != "-" && !is_rfc3339(ts) {
        return Err(c.err(R5424, format!("timestamp `{ts}` is not RFC 3339"), at));
    }
    h.timestamp = nil(ts);
    c.space(R5424, "after the timestamp")?;
    h.hostname = c.header_field(R5424, "HOSTNAME", 255)?;
    c.space(R5424, "after HOSTNAME")?;
    h.app_name = c.header_field(R5424, "APP-NAME", 48)?;
    c.space(R5424, "after APP-NAME")?;
    h.proc_id = c.header_field(R5424, "PROCID", 128)?;
    c.space(R5424, "after PROCID")?;
    h.msg_id = c.header_field(R5424, "MSGID", 32)?;
    c.space(R5424, "after MSGID")?;
    h.structured_data = c.structured_data()?;
    let mut body_offset = c.pos;
    if c.pos < c.text.len() {
        c.space(R5424, "before MSG")?;
        body_offset = c.pos;
        if c.text[c.pos..].starts_with('\u{feff}') {
            body_offset += '\u{feff}'.len_utf8();
        }
    }
    Ok(SyslogMessage {
        header: h,
        body: &c.text[body_offset..],
        body_offset,
        content_offset: body_offset,
    })
}

fn parse_3164(mut c: Cursor<'_>, pri: u8) -> Result<SyslogMessage<'_>, IngestError> {
    let mut h = header(SyslogFormat::Rfc3164, pri);
    let rest = &c.text[c.pos..];
    // RFC 3164 section 4.3.2: without a valid timestamp there is no HOSTNAME either and
    // everything after PRI is content. Some senders use an RFC 3339 timestamp instead.
    let ts_len = bsd_timestamp_len(rest).or_else(|| {
        let token = rest.split(' ').next().unwrap_or("");
        is_rfc3339(token).then_some(token.len())
    });
    if let Some(len) = ts_len {
        h.timestamp = Some(rest[..len].to_string());
        c.pos += len;
        c.space(R3164, "after the timestamp")?;
        let at = c.pos;
        let token = c.token();
        // A token with `:` or `[` is a tag (the sender left HOSTNAME out), unless it is an
        // IPv6 address standing in for the host name.
        if token.is_empty()
            || (token.contains([':', '[']) && token.parse::<std::net::IpAddr>().is_err())
        {
            c.pos = at;
        } else {
            h.hostname = Some(token.to_string());
            if c.pos < c.text.len() {
                c.space(R3164, "after HOSTNAME")?;
            }
        }
    }
    let content_offset = c.pos;
    let content = &c.text[content_offset..];
    let tag_len = content
        .bytes()
        .take_while(|b| !matches!(b, b':' | b'[' | b' ') && !b.is_ascii_control())
        .count();
    let mut body_offset = content_offset;
    if (1..=48).contains(&tag_len) {
        let after = &content[tag_len..];
        let (pid, colon) = match after.strip_prefix('[') {
            Some(p) => match p.find(']') {
                Some(end) if p[end + 1..].starts_with(':') => (Some(&p[..end]), end + 2),
                _ => (None, usize::MAX),
            },
            None if after.starts_with(':') => (None, 0),
            None => (None, usize::MAX),
        };
        if colon != usize::MAX {
            h.app_name = Some(content[..tag_len].to_string());
            h.proc_id = pid.map(str::to_string);
            body_offset = content_offset + tag_len + colon + 1;
            if c.text[body_offset..].starts_with(' ') {
                body_offset += 1;
            }
        }
    }
    Ok(SyslogMessage {
        header: h,
        body: &c.text[body_offset..],
        body_offset,
        content_offset,
    })
}

fn nil(token: &str) -> Option<String> {
    (token != "-").then(|| token.to_string())
}

/// Length of a BSD timestamp `Mmm dd hh:mm:ss` (day space-padded or not) at the start.
fn bsd_timestamp_len(s: &str) -> Option<usize> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = s.as_bytes();
    if b.len() < 14 || !MONTHS.iter().any(|m| s.starts_with(m)) || b[3] != b' ' {
        return None;
    }
    let mut i = 4;
    if b[i] == b' ' {
        i += 1;
    }
    let day = b[i..].iter().take_while(|x| x.is_ascii_digit()).count();
    if !(1..=2).contains(&day) {
        return None;
    }
    i += day;
    let time = b.get(i..i + 9)?;
    let ok = time[0] == b' '
        && time[3] == b':'
        && time[6] == b':'
        && [1, 2, 4, 5, 7, 8].iter().all(|&k| time[k].is_ascii_digit());
    ok.then_some(i + 9)
}

/// `YYYY-MM-DDThh:mm:ss[.frac](Z|+hh:mm|-hh:mm)`, RFC 5424's TIMESTAMP.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|x| x.iter().all(u8::is_ascii_digit));
    if !(digits(0..4) && b.get(4) == Some(&b'-') && digits(5..7) && b.get(7) == Some(&b'-'))
        || !(digits(8..10) && matches!(b.get(10), Some(b'T' | b't')) && digits(11..13))
        || !(b.get(13) == Some(&b':') && digits(14..16) && b.get(16) == Some(&b':'))
        || !digits(17..19)
    {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        let frac = b[i + 1..].iter().take_while(|x| x.is_ascii_digit()).count();
        if !(1..=6).contains(&frac) {
            return false;
        }
        i += 1 + frac;
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            i + 6 == b.len() && digits(i + 1..i + 3) && b[i + 3] == b':' && digits(i + 4..i + 6)
        }
        _ => false,
    }
}

/// A position in a line being parsed.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor { text, pos: 0 }
    }

    fn err(&self, what: &'static str, detail: impl Into<String>, at: usize) -> IngestError {
        IngestError::malformed(what, detail, Some(at))
    }

    fn pri(&mut self) -> Result<u8, IngestError> {
        let b = self.text.as_bytes();
        if b.first() != Some(&b'<') {
            return Err(self.err("syslog PRI", "expected `<`", 0));
        }
        let digits = b[1..].iter().take_while(|x| x.is_ascii_digit()).count();
        if !(1..=3).contains(&digits) || b.get(1 + digits) != Some(&b'>') {
            return Err(self.err("syslog PRI", "expected 1 to 3 digits and `>`", 1));
        }
        let value: u16 = self.text[1..1 + digits].parse().unwrap_or(u16::MAX);
        if value > 191 {
            return Err(self.err("syslog PRI", format!("{value} is above 191"), 1));
        }
        self.pos = 2 + digits;
        Ok(value as u8)
    }

    /// The text up to the next space (or the end).
    fn token(&mut self) -> &'a str {
        let rest = &self.text[self.pos..];
        let len = rest.find(' ').unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    fn space(&mut self, what: &'static str, context: &str) -> Result<(), IngestError> {
        if self.text.as_bytes().get(self.pos) != Some(&b' ') {
            return Err(self.err(what, format!("expected a space {context}"), self.pos));
        }
        self.pos += 1;
        Ok(())
    }

    /// A 5424 header field: NILVALUE or 1..=max printable US-ASCII characters.
    fn header_field(
        &mut self,
        what: &'static str,
        name: &str,
        max: usize,
    ) -> Result<Option<String>, IngestError> {
        let at = self.pos;
        let token = self.token();
        if token.is_empty() || token.len() > max {
            return Err(self.err(what, format!("{name} must be 1 to {max} characters"), at));
        }
        if let Some(i) = token.bytes().position(|b| !(33..=126).contains(&b)) {
            return Err(self.err(
                what,
                format!("{name} has a non-printable character"),
                at + i,
            ));
        }
        Ok(nil(token))
    }

    fn structured_data(&mut self) -> Result<Vec<SdElement>, IngestError> {
        const W: &str = "syslog structured data";
        let b = self.text.as_bytes();
        if b.get(self.pos) == Some(&b'-') {
            self.pos += 1;
            return Ok(Vec::new());
        }
        if b.get(self.pos) != Some(&b'[') {
            return Err(self.err(W, "expected `-` or `[`", self.pos));
        }
        let mut elements = Vec::new();
        while b.get(self.pos) == Some(&b'[') {
            self.pos += 1;
            let id = self.sd_name(W, "SD-ID")?;
            let mut params = Vec::new();
            loop {
                match b.get(self.pos) {
                    Some(b']') => {
                        self.pos += 1;
                        break;
                    }
                    Some(b' ') => self.pos += 1,
                    Some(_) => return Err(self.err(W, "expected a space or `]`", self.pos)),
                    None => return Err(self.err(W, "unterminated element", self.pos)),
                }
                let name = self.sd_name(W, "PARAM-NAME")?;
                if b.get(self.pos) != Some(&b'=') || b.get(self.pos + 1) != Some(&b'"') {
                    return Err(self.err(W, "expected `=\"` after PARAM-NAME", self.pos));
                }
                self.pos += 2;
                let value = self.sd_value(W)?;
                params.push((name, value));
            }
            elements.push(SdElement { id, params });
        }
        Ok(elements)
    }

    fn sd_name(&mut self, what: &'static str, name: &str) -> Result<String, IngestError> {
        let at = self.pos;
        let len = self.text.as_bytes()[at..]
            .iter()
            .take_while(|&&x| (33..=126).contains(&x) && !matches!(x, b'=' | b']' | b'"'))
            .count();
        if !(1..=32).contains(&len) {
            return Err(self.err(what, format!("{name} must be 1 to 32 characters"), at));
        }
        self.pos += len;
        Ok(self.text[at..at + len].to_string())
    }

    /// A PARAM-VALUE after its opening quote: `\"`, `\\` and `\]` unescape; any other
    /// backslash stays as it is (RFC 5424 section 6.3.3).
    fn sd_value(&mut self, what: &'static str) -> Result<String, IngestError> {
        let start = self.pos;
        let mut out = String::new();
        let mut chars = self.text[start..].char_indices();
        while let Some((i, ch)) = chars.next() {
            match ch {
                '"' => {
                    self.pos = start + i + 1;
                    return Ok(out);
                }
                '\\' => match chars.clone().next() {
                    Some((_, next @ ('"' | '\\' | ']'))) => {
                        out.push(next);
                        chars.next();
                    }
                    _ => out.push('\\'),
                },
                _ => out.push(ch),
            }
        }
        Err(self.err(what, "unterminated PARAM-VALUE", start))
    }
}

/// Formats an RFC 5424 line (for simulated senders and tests): NILVALUE for absent fields,
/// structured data escaped.
pub fn format_5424(
    pri: u8,
    timestamp: &str,
    hostname: &str,
    app_name: &str,
    msg_id: &str,
    sd: &[SdElement],
    msg: &str,
) -> String {
    let mut line = format!("<{pri}>1 {timestamp} {hostname} {app_name} - {msg_id} ");
    if sd.is_empty() {
        line.push('-');
    }
    for e in sd {
        line.push('[');
        line.push_str(&e.id);
        for (name, value) in &e.params {
            let escaped = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace(']', "\\]");
            line.push_str(&format!(" {name}=\"{escaped}\""));
        }
        line.push(']');
    }
    if !msg.is_empty() {
        line.push(' ');
        line.push_str(msg);
    }
    line
}

/// Formats an RFC 3164 line `<pri>timestamp hostname tag: msg`.
pub fn format_3164(pri: u8, timestamp: &str, hostname: &str, tag: &str, msg: &str) -> String {
    format!("<{pri}>{timestamp} {hostname} {tag}: {msg}")
}
