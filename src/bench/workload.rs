//! The inputs every benchmark uses, shared by `qlab bench` and the criterion benches under
//! `benches/`, so both measure the same work and their figures can be compared.

use std::net::{IpAddr, Ipv4Addr};

use crate::engine::journal::{Entry, PlanNic};
use crate::engine::{
    Alert, AlertCode, Disposition, LServerState, NicRecord, OperationKind, Outcome,
};
use crate::model::{Category, Detection};

/// The 10-L-Server bench scenario (zero device latency), relative to the crate root.
pub const BENCH_SCENARIO: &str = "benches/fixtures/scenarios/bench-10-lservers.toml";

/// The wire bench site (100 virtual L-Servers, one vNIC each, on one vCenter with
/// zero latency), relative to the crate root.
pub const WIRE_TOPOLOGY: &str = "benches/fixtures/topologies/wire-100.toml";

/// The 10,000-L-Server outbreak, relative to the crate root.
pub const OUTBREAK_SCENARIO: &str = "scenarios/outbreak/outbreak-10000.toml";

/// The scaling curve: the same outbreak at four sizes, relative to the crate root.
pub const SCALING_SCENARIOS: [&str; 4] = [
    "scenarios/outbreak/outbreak-10000.toml",
    "scenarios/outbreak/outbreak-25000.toml",
    "scenarios/outbreak/outbreak-50000.toml",
    "scenarios/outbreak/outbreak-100000.toml",
];

/// The scenario library, relative to the crate root.
pub const LIBRARY: &str = "scenarios";

/// An OfficeScan / Apex Central detection as it arrives on the wire: an RFC 3164 syslog line
/// carrying CEF. It is the golden-test payload `fixtures/payloads/cef-virus-dst.log`, embedded so
/// the figure is about a line the parser is known to accept, not about reading a file.
pub const CEF_LINE: &str = include_str!("../../fixtures/payloads/cef-virus-dst.log");

/// A SEPM "Virus found" syslog line (golden payload `sepm-virus-found.log`).
pub const SEPM_LINE: &str = include_str!("../../fixtures/payloads/sepm-virus-found.log");

/// An ePO EPOEvent XML message in an RFC 5424 syslog line (golden payload `epo-virus.log`).
pub const EPO_LINE: &str = include_str!("../../fixtures/payloads/epo-virus.log");

/// The CEF body of [`CEF_LINE`] without its syslog header: what `ingest::cef::parse_detection`
/// takes, so a bench can separate CEF parsing from syslog framing.
pub fn cef_body() -> &'static str {
    let line = CEF_LINE.trim_end();
    line.find("CEF:").map_or(line, |at| &line[at..])
}

/// The SEPM body of [`SEPM_LINE`] (after `SymantecServer: `).
pub fn sepm_body() -> &'static str {
    let line = SEPM_LINE.trim_end();
    line.find("SymantecServer: ")
        .map_or(line, |at| &line[at + "SymantecServer: ".len()..])
}

/// The XML of [`EPO_LINE`] (from `<?xml`).
pub fn epo_body() -> &'static str {
    let line = EPO_LINE.trim_end();
    line.find("<?xml").map_or(line, |at| &line[at..])
}

/// Detection number `n` for the decision-path bench: `spyware` from `osce` on `ip`, with a fresh
/// event id each time. Spyware is journaled as ignored (R1), so the engine resolves the L-Server
/// (R3), checks the event id (R4) and commits one step, but queues no operation and calls no
/// device: the detection-to-decision path without device I/O.
pub fn ignored_detection(n: u64, ip: IpAddr) -> Detection {
    Detection {
        source: "osce".into(),
        event_id: format!("bench-ignored-{n}"),
        ip: Some(ip),
        mac: None,
        hostname: None,
        threat: "TSPY_BENCH.A".into(),
        category: Category::Spyware,
    }
}

/// A quarantine IP for operation `n`: distinct for every `n` below 2^24 so the `ip_allocations`
/// primary key never collides however long a bench runs.
fn quarantine_ip(n: i64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0A00_0000u32 | (n as u32 & 0x00FF_FFFF)))
}

/// Every journal entry the engine writes for one successful one-NIC VM quarantine, as the 7
/// steps it stages (detection + queued; started + plan + IP + alert; alert mark; write; verifying
/// read; records + outcome + alert; alert mark); group commit lets many operations' steps share
/// one commit, which these journal-alone figures leave out on purpose. Ids derive from `n`, so
/// consecutive `n` can be committed to one journal without key collisions.
pub fn quarantine_steps(n: i64) -> Vec<Vec<Entry>> {
    let path = format!("/bench/vdi-{n:07}");
    let (op, started_seq, done_seq) = (n, 2 * n, 2 * n + 1);
    let from_ip: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 110, 0, 11));
    let to_ip = quarantine_ip(n);
    let alert = |seq, code, detail: &str| Alert {
        seq,
        at_ms: 0,
        code,
        lserver: Some(path.clone()),
        ip: None,
        operation: Some(op),
        detail: detail.into(),
    };
    let call = |call: &str, target: &str| Entry::DeviceCall {
        operation: op,
        nic_index: Some(0),
        device: "vc-1".into(),
        call: call.into(),
        target: Some(target.into()),
        outcome: "ok".into(),
        detail: String::new(),
        at_ms: 0,
    };
    let detail = format!("nic0 qr-a ip {to_ip}");
    vec![
        vec![
            Entry::Detection {
                id: n,
                detection: Detection {
                    source: "osce".into(),
                    event_id: format!("bench-{n}"),
                    ip: Some(from_ip),
                    mac: None,
                    hostname: None,
                    threat: "WORM_DOWNAD.AD".into(),
                    category: Category::Virus,
                },
                received_ms: 0,
                lserver: Some(path.clone()),
                disposition: Disposition::Accepted,
                operation: Some(op),
                submitted_by: None,
            },
            Entry::OperationQueued {
                id: op,
                lserver: path.clone(),
                kind: OperationKind::Quarantine,
                detection: Some(n),
                created_ms: 0,
                requested_by: None,
            },
        ],
        vec![
            Entry::OperationStarted {
                id: op,
                lserver: path.clone(),
                kind: OperationKind::Quarantine,
                started_ms: 0,
                deadline_ms: 60_000,
                plan: vec![PlanNic {
                    nic_index: 0,
                    from_network: "op-a".into(),
                    from_ip,
                    to_network: "qr-a".into(),
                    to_ip,
                }],
            },
            Entry::Allocate {
                network: "qr-a".into(),
                ip: to_ip,
                lserver: path.clone(),
                nic_index: 0,
            },
            Entry::Alert(alert(started_seq, AlertCode::QuarantineStarted, "")),
        ],
        vec![Entry::AlertDelivered { seq: started_seq }],
        vec![call("set_nic", "dvportgroup-910")],
        vec![call("get_nic", "dvportgroup-910")],
        vec![
            Entry::NicRecord {
                lserver: path.clone(),
                record: NicRecord {
                    index: 0,
                    network: "qr-a".into(),
                    ip: to_ip,
                    device_network: Some("qr-a".into()),
                    last_write: None,
                },
            },
            Entry::LServer {
                path: path.clone(),
                state: LServerState::Quarantined,
                status: "normal".into(),
                outcome: Some(Outcome::Quarantined),
            },
            Entry::OperationFinished {
                id: op,
                lserver: path.clone(),
                outcome: Outcome::Quarantined,
                detail: detail.clone(),
                finished_ms: 0,
            },
            Entry::Alert(alert(done_seq, AlertCode::QuarantineCompleted, &detail)),
        ],
        vec![Entry::AlertDelivered { seq: done_seq }],
    ]
}

/// [`quarantine_steps`] flattened: one operation's whole step list, to commit as one
/// transaction (what one operation costs when it gets one fsync).
pub fn quarantine_entries(n: i64) -> Vec<Entry> {
    quarantine_steps(n).into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Journal;
    use crate::ingest;
    use crate::model::AvKind;

    #[test]
    fn sample_payloads_parse() {
        for (kind, line) in [
            (AvKind::Officescan, CEF_LINE),
            (AvKind::Sepm, SEPM_LINE),
            (AvKind::Epo, EPO_LINE),
        ] {
            ingest::parse_detection(kind, "s", line.as_bytes()).unwrap();
        }
        ingest::cef::parse_detection(cef_body()).unwrap();
        ingest::sepm::parse_detection(sepm_body()).unwrap();
        assert_eq!(ingest::epo::parse_detections(epo_body()).unwrap().len(), 1);
    }

    #[test]
    fn consecutive_operations_commit_without_collisions() {
        let mut journal = Journal::open_in_memory().unwrap();
        for n in 1..=3 {
            for step in quarantine_steps(n) {
                journal.commit(&step).unwrap();
            }
            journal.commit(&quarantine_entries(n + 100)).unwrap();
        }
        assert_eq!(journal.commits(), 3 * 8);
        assert_eq!(journal.operations().unwrap().len(), 6);
    }
}
