//! Golden tests: every payload under `fixtures/payloads/` parses to its `*.expected.json`.
//! The file name's prefix picks the vendor and the AV server name: `cef-` OfficeScan (`osce`),
//! `sepm-` SEPM (`sepm-1`), `epo-query` an ePO Web API reply (`epo-1`), other `epo-` ePO syslog.

use std::path::{Path, PathBuf};

use quarantine_lab::ingest::{self, epo_poller};
use quarantine_lab::model::{AvKind, Detection};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/payloads")
}

fn expected<T: serde::de::DeserializeOwned>(payload: &Path) -> T {
    let stem = payload.file_stem().unwrap().to_string_lossy().into_owned();
    let path = payload.with_file_name(format!("{stem}.expected.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn payloads() -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".expected.json"))
        .collect();
    all.sort();
    all
}

#[test]
fn every_payload_parses_to_its_expected_detection() {
    let all = payloads();
    let mut seen = (0, 0, 0, 0);
    for path in &all {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(path).unwrap();
        if name.starts_with("epo-query") {
            let body = String::from_utf8(bytes).unwrap();
            let reply = epo_poller::parse_reply("epo-1", 200, &body, 0, 500)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(reply.rejected.is_empty(), "{name}: {:?}", reply.rejected);
            let got: Vec<Detection> = reply.detections.into_iter().map(|(_, d)| d).collect();
            assert_eq!(got, expected::<Vec<Detection>>(path), "{name}");
            seen.3 += 1;
            continue;
        }
        let (kind, source) = match name.split('-').next() {
            Some("cef") => {
                seen.0 += 1;
                (AvKind::Officescan, "osce")
            }
            Some("sepm") => {
                seen.1 += 1;
                (AvKind::Sepm, "sepm-1")
            }
            Some("epo") => {
                seen.2 += 1;
                (AvKind::Epo, "epo-1")
            }
            _ => panic!("{name}: unknown fixture prefix"),
        };
        let got = ingest::parse_detection(kind, source, &bytes)
            .unwrap_or_else(|e| panic!("{name}: {}", e.reason()));
        assert_eq!(got, expected::<Detection>(path), "{name}");
    }
    // The brief's minimum: 3 CEF, 3 SEPM, 2 ePO syslog, 1 executeQuery reply.
    assert!(
        seen.0 >= 3 && seen.1 >= 3 && seen.2 >= 2 && seen.3 >= 1,
        "{seen:?}"
    );
}

#[test]
fn r1_fixture_categories_cover_acting_and_ignored() {
    let read = |n: &str| std::fs::read(dir().join(n)).unwrap();
    let acting =
        ingest::parse_detection(AvKind::Sepm, "s", &read("sepm-security-risk.log")).unwrap();
    assert!(acting.category.triggers_action());
    let ignored =
        ingest::parse_detection(AvKind::Officescan, "o", &read("cef-spyware.log")).unwrap();
    assert!(!ignored.category.triggers_action());
}

#[test]
fn r4_the_same_record_behind_another_header_keeps_its_id() {
    // A relay rewriting the syslog header must not defeat dedupe: only the vendor text is hashed.
    let line = std::fs::read_to_string(dir().join("cef-virus-dst.log")).unwrap();
    let cef = &line[line.find("CEF:").unwrap()..];
    let relayed = format!("<134>1 2024-03-22T09:00:00Z relay01 ApexCentral - - - {cef}");
    let a = ingest::parse_detection(AvKind::Officescan, "osce", line.as_bytes()).unwrap();
    let b = ingest::parse_detection(AvKind::Officescan, "osce", relayed.as_bytes()).unwrap();
    let c = ingest::parse_detection(AvKind::Officescan, "osce", cef.as_bytes()).unwrap();
    assert_eq!(a, b);
    assert_eq!(a, c);
}
