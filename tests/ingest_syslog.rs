//! Syslog headers (RFC 5424, RFC 3164) and TCP framing (RFC 6587) as the AV servers send them.

use quarantine_lab::ingest::syslog::{self, FrameDecoder, Framing, SyslogFormat};
use quarantine_lab::ingest::IngestError;

#[test]
fn rfc5424_header_structured_data_and_bom() {
    let line = "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\"][x@1 v=\"q\\\"b\\\\c\\]d\\e\"] \u{feff}An application event";
    let m = syslog::parse(line).unwrap();
    let h = &m.header;
    assert_eq!(h.format, SyslogFormat::Rfc5424);
    assert_eq!((h.facility, h.severity), (20, 5));
    assert_eq!(h.timestamp.as_deref(), Some("2003-10-11T22:14:15.003Z"));
    assert_eq!(h.hostname.as_deref(), Some("mymachine.example.com"));
    assert_eq!(h.app_name.as_deref(), Some("evntslog"));
    assert_eq!(h.proc_id, None);
    assert_eq!(h.msg_id.as_deref(), Some("ID47"));
    assert_eq!(h.structured_data.len(), 2);
    assert_eq!(
        h.structured_data[0].params[1],
        ("eventSource".into(), "Application".into())
    );
    // `\"`, `\\`, `\]` unescape; any other backslash stays (RFC 5424 6.3.3).
    assert_eq!(h.structured_data[1].params[0].1, "q\"b\\c]d\\e");
    assert_eq!(m.body, "An application event");
    assert_eq!(&line[m.body_offset..], m.body);
}

#[test]
fn rfc5424_nil_values_and_empty_message() {
    let m = syslog::parse("<29>1 - - - - - -").unwrap();
    assert_eq!(m.header.timestamp, None);
    assert_eq!(m.header.hostname, None);
    assert!(m.header.structured_data.is_empty());
    assert_eq!(m.body, "");
}

#[test]
fn rfc5424_errors_say_what_and_where() {
    let reason = |l: &str| syslog::parse(l).unwrap_err().reason();
    assert_eq!(
        reason("<192>1 - - - - - -"),
        "syslog PRI: 192 is above 191 at byte 1"
    );
    assert_eq!(
        reason("13>1 - - - - - -"),
        "syslog PRI: expected `<` at byte 0"
    );
    assert_eq!(
        reason("<13>2 - - - - - -"),
        "syslog RFC 5424: unsupported version `2` at byte 4"
    );
    assert_eq!(
        reason("<13>1 2024-13-01 h a - - -"),
        "syslog RFC 5424: timestamp `2024-13-01` is not RFC 3339 at byte 6"
    );
    assert_eq!(
        reason("<13>1 - h a - - [id k=\"v]"),
        "syslog structured data: unterminated PARAM-VALUE at byte 23"
    );
    assert_eq!(
        reason("<13>1 - h a - - x"),
        "syslog structured data: expected `-` or `[` at byte 16"
    );
}

#[test]
fn rfc3164_host_tag_pid_and_variants() {
    let m = syslog::parse("<51>Oct 4 10:51:33 sepm01 SymantecServer: Virus found,x").unwrap();
    assert_eq!(m.header.format, SyslogFormat::Rfc3164);
    assert_eq!(m.header.timestamp.as_deref(), Some("Oct 4 10:51:33"));
    assert_eq!(m.header.hostname.as_deref(), Some("sepm01"));
    assert_eq!(m.header.app_name.as_deref(), Some("SymantecServer"));
    assert_eq!(m.body, "Virus found,x");

    let m = syslog::parse("<51>Oct  4 10:51:33 sepm01 SymantecServer[77]: body").unwrap();
    assert_eq!(m.header.proc_id.as_deref(), Some("77"));
    assert_eq!(m.body, "body");

    // No HOSTNAME: the first word is the tag.
    let m = syslog::parse("<51>Oct 14 10:51:33 SymantecServer: body").unwrap();
    assert_eq!(m.header.hostname, None);
    assert_eq!(m.header.app_name.as_deref(), Some("SymantecServer"));

    // An IPv6 address as HOSTNAME is not a tag.
    let m = syslog::parse("<51>Oct 14 10:51:33 2001:db8::1 tag: body").unwrap();
    assert_eq!(m.header.hostname.as_deref(), Some("2001:db8::1"));
    assert_eq!(m.body, "body");

    // Apex Central: `host CEF:0|...` reads as tag `CEF`; the content starts at the tag.
    let line = "<134>Mar 22 08:23:23 apex CEF:0|Trend Micro|x";
    let m = syslog::parse(line).unwrap();
    assert_eq!(m.header.app_name.as_deref(), Some("CEF"));
    assert_eq!(&line[m.content_offset..], "CEF:0|Trend Micro|x");

    // No valid timestamp: everything after PRI is content (RFC 3164 4.3.2).
    let m = syslog::parse("<13>hello world").unwrap();
    assert_eq!(m.header.timestamp, None);
    assert_eq!(m.body, "hello world");
}

#[test]
fn formatters_round_trip() {
    let sd = syslog::SdElement {
        id: "qlab@32473".into(),
        params: vec![("k".into(), "a\"b]c\\".into())],
    };
    let line = syslog::format_5424(
        29,
        "2024-01-01T00:00:00Z",
        "h",
        "app",
        "ID",
        std::slice::from_ref(&sd),
        "msg",
    );
    let m = syslog::parse(&line).unwrap();
    assert_eq!(m.header.structured_data, vec![sd]);
    assert_eq!(m.body, "msg");
    let line = syslog::format_3164(54, "Mar 22 08:30:05", "sepm01", "SymantecServer", "a,b");
    assert_eq!(syslog::parse(&line).unwrap().body, "a,b");
}

fn frames(d: &mut FrameDecoder, chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, IngestError>> {
    chunks.iter().flat_map(|c| d.feed(c)).collect()
}

#[test]
fn octet_counting_across_every_split() {
    let stream = b"5 hello11 <13>1 - - -3 abc";
    for cut in 0..=stream.len() {
        let mut d = FrameDecoder::new(Framing::OctetCounting, 100);
        let got = frames(&mut d, &[&stream[..cut], &stream[cut..]]);
        let got: Vec<Vec<u8>> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            got,
            vec![b"hello".to_vec(), b"<13>1 - - -".to_vec(), b"abc".to_vec()],
            "cut {cut}"
        );
        assert_eq!(d.buffered(), 0);
    }
}

#[test]
fn newline_framing_drops_cr_and_empty_lines() {
    let mut d = FrameDecoder::new(Framing::Newline, 100);
    let got = frames(&mut d, &[b"a\r\n\nb", b"c\nrest"]);
    let got: Vec<Vec<u8>> = got.into_iter().map(Result::unwrap).collect();
    assert_eq!(got, vec![b"a".to_vec(), b"bc".to_vec()]);
    assert_eq!(d.buffered(), 4, "the unfinished frame is kept");
}

#[test]
fn r18_oversized_frames_are_skipped_and_reported_once() {
    let mut d = FrameDecoder::new(Framing::Newline, 4);
    let got = frames(&mut d, &[b"ok\n0123456789", b"abcdef", b"gh\nnext\n"]);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0].as_deref().unwrap(), b"ok");
    assert!(matches!(
        got[1],
        Err(IngestError::TooLarge { what: "frame", .. })
    ));
    assert_eq!(got[2].as_deref().unwrap(), b"next");

    let mut d = FrameDecoder::new(Framing::OctetCounting, 4);
    let got = frames(&mut d, &[b"10 01234", b"567892 ok"]);
    assert!(matches!(got[0], Err(IngestError::TooLarge { len: 10, .. })));
    assert_eq!(got[1].as_deref().unwrap(), b"ok");
    assert!(!d.is_broken());
}

#[test]
fn a_garbled_octet_count_breaks_the_stream() {
    let mut d = FrameDecoder::new(Framing::OctetCounting, 100);
    let got = frames(&mut d, &[b"3 abc", b"x1 b"]);
    assert_eq!(got[0].as_deref().unwrap(), b"abc");
    let reason = got[1].as_ref().unwrap_err().reason();
    assert_eq!(
        reason,
        "octet-counting frame: expected `<length> ` before the message at byte 5"
    );
    assert!(d.is_broken());
    assert!(d.next_frame().unwrap().is_err(), "stays broken");
}

#[test]
fn auto_framing_decides_per_frame() {
    let mut d = FrameDecoder::new(Framing::Auto, 100);
    let got = frames(&mut d, &[b"<13>a\n3 <1>", b"<14>b\n"]);
    let got: Vec<Vec<u8>> = got.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        got,
        vec![b"<13>a".to_vec(), b"<1>".to_vec(), b"<14>b".to_vec()]
    );
}
