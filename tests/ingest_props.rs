//! Property tests for the intake parsers (R18): arbitrary input never panics and every error
//! has a reason; generated valid events, including characters that need escaping, survive a
//! trip through the vendor formatter and the parser unchanged.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use quarantine_lab::ingest::epo::{self, EpoEvent};
use quarantine_lab::ingest::sepm::{self, SepmRisk};
use quarantine_lab::ingest::syslog::{self, FrameDecoder, Framing};
use quarantine_lab::ingest::{self, cef, hash_id, IngestError};
use quarantine_lab::model::{normalize_mac, AvKind, Category, Detection};

fn has_reason(e: &IngestError) -> bool {
    !e.reason().trim().is_empty() && !e.kind().is_empty()
}

const KINDS: [AvKind; 3] = [AvKind::Officescan, AvKind::Sepm, AvKind::Epo];

/// Bytes that look a little like each format, so the fuzzing reaches past the first check.
fn noisy() -> impl Strategy<Value = Vec<u8>> {
    let prefix = prop_oneof![
        Just(Vec::new()),
        Just(b"<13>1 - h a - - - ".to_vec()),
        Just(b"<134>Mar 22 08:23:23 apex ".to_vec()),
        Just(b"CEF:0|T|P|1|AV:x|n|3|".to_vec()),
        Just(b"Virus found,IP Address: ".to_vec()),
        Just(b"<EPOEvent><MachineInfo><MachineName>".to_vec()),
    ];
    let tail = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        "[ -~\\\\|=<>&;\"\\[\\]]{0,200}".prop_map(String::into_bytes),
    ];
    (prefix, tail).prop_map(|(mut p, t)| {
        p.extend(t);
        p
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_payloads_never_panic(payload in noisy()) {
        for kind in KINDS {
            if let Err(e) = ingest::parse_detections(kind, "av", &payload) {
                prop_assert!(has_reason(&e), "{e:?}");
            }
        }
        if let Ok(text) = std::str::from_utf8(&payload) {
            let errors = [
                syslog::parse(text).err(),
                cef::parse(text).err(),
                sepm::parse(text).err(),
                epo::parse(text).err(),
            ];
            for e in errors.into_iter().flatten() {
                prop_assert!(has_reason(&e), "{e:?}");
            }
        }
    }

    #[test]
    fn framing_never_panics_and_stays_bounded(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16),
        framing in prop_oneof![Just(Framing::OctetCounting), Just(Framing::Newline), Just(Framing::Auto)],
    ) {
        let mut d = FrameDecoder::new(framing, 32);
        for c in &chunks {
            for f in d.feed(c) {
                match f {
                    Ok(frame) => prop_assert!(frame.len() <= 32),
                    Err(e) => prop_assert!(has_reason(&e)),
                }
            }
            prop_assert!(d.buffered() <= 32 + 2 + 64 + 11);
        }
    }

    #[test]
    fn framed_messages_come_back_whatever_the_chunking(
        msgs in proptest::collection::vec("<[0-9]{1,3}>[ -~]{0,40}", 1..8),
        cuts in proptest::collection::vec(0usize..400, 0..6),
        counted in any::<bool>(),
    ) {
        let mut stream = Vec::new();
        for m in &msgs {
            if counted {
                stream.extend(format!("{} {m}", m.len()).into_bytes());
            } else {
                stream.extend(format!("{m}\n").into_bytes());
            }
        }
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(stream.len())).collect();
        cuts.sort();
        let mut d = FrameDecoder::new(Framing::Auto, 1024);
        let mut got = Vec::new();
        let mut last = 0;
        for c in cuts.into_iter().chain([stream.len()]) {
            got.extend(d.feed(&stream[last..c]));
            last = c;
        }
        let got: Vec<String> = got.into_iter().map(|f| String::from_utf8(f.unwrap()).unwrap()).collect();
        prop_assert_eq!(got, msgs);
    }
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        3 => any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        1 => any::<u128>().prop_map(|v| IpAddr::V6(Ipv6Addr::from(v))),
    ]
}

fn mac() -> impl Strategy<Value = String> {
    any::<[u8; 6]>().prop_map(|b| {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    })
}

/// Names with the characters each format must escape (`|`, `\`, `=`, `&`, `<`, ...), no
/// control characters (R18 rejects those) and no space at either end.
fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]([A-Za-z0-9 ._!#()/:|\\\\=&<>'\"-]{0,30}[A-Za-z0-9])?"
}

fn keys() -> impl Strategy<Value = (Option<IpAddr>, Option<String>, Option<String>)> {
    (
        proptest::option::of(ip()),
        proptest::option::of(mac()),
        proptest::option::of(name()),
    )
        .prop_filter("a detection needs a match key", |(i, m, h)| {
            i.is_some() || m.is_some() || h.is_some()
        })
}

/// Wraps a vendor body the ways a sender may: bare, RFC 3164, RFC 5424.
fn wrap(body: &str, how: u8, tag: &str) -> String {
    match how % 3 {
        0 => body.to_string(),
        1 => syslog::format_3164(134, "Mar 22 08:23:23", "avserver", tag, body),
        _ => syslog::format_5424(134, "2024-03-22T08:23:23Z", "avserver", tag, "-", &[], body),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn cef_round_trips(
        (ip, mac, hostname) in keys(),
        threat in name(),
        category in prop_oneof![Just(Category::Virus), Just(Category::Spyware), Just(Category::Grayware), Just(Category::Other)],
        event_id in "[A-Za-z0-9-]{1,20}",
        how in any::<u8>(),
    ) {
        let d = Detection { source: "osce".into(), event_id, ip, mac, hostname, threat, category };
        let text = cef::format(&cef::from_detection(&d, "Mar 22 2024 08:23:23 GMT+00:00"));
        let line = wrap(&text, how, "ApexCentral");
        let got = ingest::parse_detection(AvKind::Officescan, "osce", line.as_bytes());
        prop_assert_eq!(got, Ok(d), "{}", line);
    }

    #[test]
    fn sepm_round_trips(
        (ip, _, computer) in keys(),
        risk_name in name().prop_map(|n| n.replace(',', ";")),
        computer_ok in proptest::option::of("[A-Za-z0-9][A-Za-z0-9._-]{0,14}"),
        event_type in prop_oneof![Just("Virus found"), Just("Security risk found"), Just("Commercial application detected")],
        file in "[a-z]{1,8}",
        how in any::<u8>(),
    ) {
        // SEPM cannot escape commas; host names never hold them anyway.
        let computer = computer.and(computer_ok);
        prop_assume!(ip.is_some() || computer.is_some());
        let risk = SepmRisk {
            event_type: event_type.into(),
            ip,
            computer: computer.clone(),
            risk_name: risk_name.clone(),
            file_path: format!("C:\\Users\\u\\{file}.exe"),
            event_time: "2024-03-22 08:30:00".into(),
        };
        let body = sepm::format(&risk);
        let line = wrap(&body, how, "SymantecServer");
        let got = ingest::parse_detection(AvKind::Sepm, "sepm-1", line.as_bytes());
        let want = Detection {
            source: "sepm-1".into(),
            event_id: hash_id(&body),
            ip,
            mac: None,
            hostname: computer,
            threat: risk_name,
            category: sepm::category(event_type),
        };
        prop_assert_eq!(got, Ok(want), "{}", line);
        let record = sepm::parse(&body).unwrap();
        prop_assert_eq!(record.file_path(), Some(risk.file_path.as_str()));
    }

    #[test]
    fn epo_round_trips(
        (ip, mac, host) in keys(),
        threat in name(),
        threat_type in prop_oneof![Just("virus"), Just("trojan"), Just("pup"), Just("ransomware"), Just("test")],
        threat_category in prop_oneof![Just("av.detect"), Just("av.pup"), Just("hip.file")],
        guid in "\\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\\}",
        event in 1024u32..1100,
        raw_mac_style in any::<bool>(),
    ) {
        let raw_mac = mac.as_ref().map(|m| if raw_mac_style { m.replace(':', "") } else { m.to_uppercase() });
        let ev = EpoEvent {
            machine_name: host.clone(),
            agent_guid: Some(guid.clone()),
            ip_address: ip.map(|i| i.to_string()),
            raw_mac,
            gmt_time: Some("2024-03-22T08:40:00".into()),
            threat_name: Some(threat.clone()),
            threat_type: Some(threat_type.into()),
            threat_category: Some(threat_category.into()),
            threat_event_id: Some(event.to_string()),
            detected_utc: Some("2024-03-22T08:39:58".into()),
            ..EpoEvent::default()
        };
        let line = epo::syslog_line("2024-03-22T08:40:02Z", "epo01", &epo::format(&ev));
        let got = ingest::parse_detection(AvKind::Epo, "epo-1", line.as_bytes());
        let want = Detection {
            source: "epo-1".into(),
            event_id: format!("epo-{guid}-{event}-2024-03-22T08:39:58"),
            ip,
            mac: mac.as_deref().and_then(normalize_mac),
            hostname: host,
            threat,
            category: epo::category(Some(threat_type), Some(threat_category)),
        };
        prop_assert_eq!(got, Ok(want), "{}", line);
    }
}
