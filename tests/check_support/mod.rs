//! Test support for the checkers: the vdi-small site, a two-NIC site, and a builder for
//! hand-made run records.
#![allow(dead_code)]

use std::net::IpAddr;
use std::path::Path;

use quarantine_lab::check::{check_run, CheckReport, Expectations, InvariantVerdict, Status};
use quarantine_lab::model::history::*;
use quarantine_lab::model::{load_site, Site};

/// A virtual L-Server of vdi-small on vc-1 (policy: quarantine).
pub const VDI1: &str = "/tenant-a/vdi-001";
/// A virtual L-Server of vdi-small whose policy is `reboot`.
pub const VDI2: &str = "/tenant-a/vdi-002";
/// Another virtual L-Server of vdi-small (policy: quarantine).
pub const VDI3: &str = "/tenant-a/vdi-003";
/// Physical L-Servers behind sw-1.
pub const SBC1: &str = "/tenant-a/sbc-01";
/// Physical L-Servers behind sw-1.
pub const SBC2: &str = "/tenant-b/sbc-02";
/// The two-NIC L-Server of [`two_nic_site`].
pub const WEB: &str = "/t/web-01";

/// fixtures/topologies/vdi-small.toml.
pub fn site() -> Site {
    fixture_site("vdi-small")
}

/// fixtures/topologies/`name`.toml, loaded and checked.
pub fn fixture_site(name: &str) -> Site {
    let path = format!("fixtures/topologies/{name}.toml");
    load_site(Path::new(&path)).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

/// One virtual L-Server with two NICs on two operation networks.
pub fn two_nic_site() -> Site {
    fixture_site("test-two-nic")
}

/// Parses an IP address literal.
pub fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip literal")
}

/// Builds a [`RunRecord`]: history events in call order, final state starting as the topology
/// says (every NIC on its operation network, every L-Server normal).
pub struct Rec {
    /// The record being built.
    pub run: RunRecord,
    next_call: u64,
    next_seq: i64,
}

impl Rec {
    /// An empty history over `site`, everything where the topology puts it.
    pub fn new(site: &Site) -> Rec {
        let mut run = RunRecord::default();
        for ls in &site.lservers {
            for nic in &ls.nics {
                run.nics.push(FinalNic {
                    nic: NicRef {
                        lserver: ls.path.clone(),
                        nic: nic.index,
                    },
                    device_network: Some(nic.network.clone()),
                    managed_network: nic.network.clone(),
                    managed_ip: nic.ip,
                });
            }
            run.lservers.push(FinalLServer {
                path: ls.path.clone(),
                state: "normal".into(),
                status: "normal".into(),
                outcome: None,
                pending_operations: 0,
            });
        }
        Rec {
            run,
            next_call: 1,
            next_seq: 1,
        }
    }

    /// Appends an event.
    pub fn push(&mut self, at_ms: u64, kind: EventKind) -> &mut Self {
        self.run.history.push(HistoryEvent { at_ms, kind });
        self
    }

    /// DetectionAcked from `osce`.
    pub fn ack(
        &mut self,
        at: u64,
        event_id: &str,
        lserver: Option<&str>,
        disposition: &str,
        operation: Option<i64>,
    ) -> &mut Self {
        self.push(
            at,
            EventKind::DetectionAcked {
                source: "osce".into(),
                event_id: event_id.into(),
                lserver: lserver.map(String::from),
                disposition: disposition.into(),
                operation,
            },
        )
    }

    /// An accepted (with `operation`) or refused command.
    pub fn command(
        &mut self,
        at: u64,
        action: &str,
        lserver: &str,
        operation: Option<i64>,
    ) -> &mut Self {
        let refused = operation.is_none().then(|| "not allowed".to_string());
        self.push(
            at,
            EventKind::CommandSubmitted {
                action: action.into(),
                lserver: lserver.into(),
                operation,
                refused,
            },
        )
    }

    /// OperationStarted.
    pub fn started(&mut self, at: u64, id: i64, lserver: &str, kind: &str) -> &mut Self {
        self.push(
            at,
            EventKind::OperationStarted {
                id,
                lserver: lserver.into(),
                kind: kind.into(),
            },
        )
    }

    /// The operation the last acknowledgement or command named starts at that moment.
    pub fn starts(&mut self, kind: &str) -> &mut Self {
        let (at, id, lserver) = match self.run.history.last() {
            Some(HistoryEvent {
                at_ms,
                kind:
                    EventKind::DetectionAcked {
                        lserver: Some(lserver),
                        operation: Some(id),
                        ..
                    }
                    | EventKind::CommandSubmitted {
                        lserver,
                        operation: Some(id),
                        ..
                    },
            }) => (*at_ms, *id, lserver.clone()),
            _ => panic!("starts follows an accepted detection or command"),
        };
        self.started(at, id, &lserver, kind)
    }

    /// A detection of `lserver` acknowledged as accepted at `at`, and the operation `id` of
    /// `kind` it started, at the same moment.
    pub fn accepted(
        &mut self,
        at: u64,
        event_id: &str,
        lserver: &str,
        id: i64,
        kind: &str,
    ) -> &mut Self {
        self.ack(at, event_id, Some(lserver), "accepted", Some(id))
            .starts(kind)
    }

    /// OperationFinished.
    pub fn finished(&mut self, at: u64, id: i64, lserver: &str, outcome: &str) -> &mut Self {
        self.push(
            at,
            EventKind::OperationFinished {
                id,
                lserver: lserver.into(),
                outcome: outcome.into(),
            },
        )
    }

    /// Operation `id` of `kind` ends `<kind>_failed` at `at`, with the one ERROR alert
    /// `<kind>-failed` that says so (R9).
    pub fn failed(&mut self, at: u64, id: i64, lserver: &str, kind: &str) -> &mut Self {
        let code = format!("{kind}-failed");
        self.alert(at, &code, "ERROR", Some(lserver), Some(id))
            .finished(at, id, lserver, &format!("{kind}_failed"))
    }

    /// An Invoke of `op` on NIC `nic` of `lserver`, and its `ok` Return one device latency
    /// later (vc-1 40 ms, sw-1 150 ms, as in vdi-small). Writes carry `value`.
    pub fn call(
        &mut self,
        at: u64,
        device: &str,
        op: &str,
        lserver: &str,
        nic: Option<usize>,
        value: Option<&str>,
    ) -> &mut Self {
        let latency = match device {
            "vc-1" => 40,
            "sw-1" => 150,
            _ => 0,
        };
        let call = next(&mut self.next_call);
        self.push(
            at,
            EventKind::Invoke {
                call,
                device: device.into(),
                op: op.into(),
                nic: nic.map(|n| NicRef {
                    lserver: lserver.into(),
                    nic: n,
                }),
                lserver: Some(lserver.into()),
                value: value.map(String::from),
            },
        );
        self.push(
            at + latency,
            EventKind::Return {
                call,
                result: "ok".into(),
                detail: value.unwrap_or_default().into(),
            },
        )
    }

    /// A read of NIC `nic` of `lserver` that answers `shows` (the device's answer, which a
    /// stale read makes differ from its truth).
    pub fn read(
        &mut self,
        at: u64,
        device: &str,
        op: &str,
        lserver: &str,
        nic: usize,
        shows: &str,
    ) -> &mut Self {
        self.call(at, device, op, lserver, Some(nic), None)
            .reply("ok", shows)
    }

    /// Gives the last call's `Return` this result (ok | fail | unknown) and detail.
    pub fn reply(&mut self, result: &str, detail: &str) -> &mut Self {
        match self.run.history.last_mut() {
            Some(HistoryEvent {
                kind:
                    EventKind::Return {
                        result: r,
                        detail: d,
                        ..
                    },
                ..
            }) => {
                *r = result.into();
                *d = detail.into();
            }
            _ => panic!("reply follows a call"),
        }
        self
    }

    /// TruthChanged of NIC `nic` of `lserver` from one network to another.
    pub fn truth(
        &mut self,
        at: u64,
        lserver: &str,
        nic: usize,
        from: &str,
        to: &str,
        in_release: bool,
    ) -> &mut Self {
        self.push(
            at,
            EventKind::TruthChanged {
                nic: NicRef {
                    lserver: lserver.into(),
                    nic,
                },
                from: Some(from.into()),
                to: Some(to.into()),
                in_release,
                by: None,
            },
        )
    }

    /// Says that the last TruthChanged was made by no device call of the engine: `by` is
    /// `external_change` or `switch_reboot` (R20).
    pub fn by(&mut self, by: &str) -> &mut Self {
        match self.run.history.last_mut() {
            Some(HistoryEvent {
                kind: EventKind::TruthChanged { by: b, .. },
                ..
            }) => *b = Some(by.into()),
            _ => panic!("by follows a truth change"),
        }
        self
    }

    /// The last call's write lands: its NIC moves from `from` to the value written when the
    /// call returns.
    pub fn lands(&mut self, from: &str, in_release: bool) -> &mut Self {
        let (returned, call) = match self.run.history.last() {
            Some(HistoryEvent {
                at_ms,
                kind: EventKind::Return { call, .. },
            }) => (*at_ms, *call),
            _ => panic!("lands follows a call"),
        };
        let written = self.run.history.iter().rev().find_map(|e| match &e.kind {
            EventKind::Invoke {
                call: c,
                nic: Some(nic),
                value: Some(value),
                ..
            } if *c == call => Some((nic.clone(), value.clone())),
            _ => None,
        });
        let (nic, to) = written.expect("lands follows a write of a NIC");
        self.truth(returned, &nic.lserver, nic.nic, from, &to, in_release)
    }

    /// An alert naming `lserver` and `operation`.
    pub fn alert(
        &mut self,
        at: u64,
        code: &str,
        severity: &str,
        lserver: Option<&str>,
        operation: Option<i64>,
    ) -> &mut Self {
        let seq = next(&mut self.next_seq);
        self.push(
            at,
            EventKind::Alert {
                seq,
                code: code.into(),
                severity: severity.into(),
                lserver: lserver.map(String::from),
                ip: None,
                operation,
                unknown_nics: Vec::new(),
            },
        )
    }

    /// Sets a NIC's final device truth and management record.
    pub fn final_nic(
        &mut self,
        lserver: &str,
        nic: usize,
        device: Option<&str>,
        managed: &str,
        managed_ip: &str,
    ) -> &mut Self {
        if let Some(n) = self
            .run
            .nics
            .iter_mut()
            .find(|n| n.nic.lserver == lserver && n.nic.nic == nic)
        {
            n.device_network = device.map(String::from);
            n.managed_network = managed.into();
            n.managed_ip = ip(managed_ip);
        }
        self
    }

    /// Sets an L-Server's final state, status and outcome.
    pub fn final_state(
        &mut self,
        lserver: &str,
        state: &str,
        status: &str,
        outcome: Option<&str>,
    ) -> &mut Self {
        if let Some(l) = self.run.lservers.iter_mut().find(|l| l.path == lserver) {
            l.state = state.into();
            l.status = status.into();
            l.outcome = outcome.map(String::from);
        }
        self
    }

    /// Adds a final quarantine IP allocation.
    pub fn allocation(&mut self, network: &str, address: &str, lserver: &str) -> &mut Self {
        self.run
            .allocations
            .push((network.into(), ip(address), lserver.into()));
        self
    }

    /// NIC 0 of `lserver` finally on quarantine `network` at `address`, on the device and in
    /// the records, and the L-Server quarantined.
    pub fn final_quarantined(&mut self, lserver: &str, network: &str, address: &str) -> &mut Self {
        self.final_nic(lserver, 0, Some(network), network, address)
            .final_state(lserver, "quarantined", "normal", Some("quarantined"))
            .allocation(network, address, lserver)
    }

    /// NIC 0 of `lserver` finally back on operation `network` at `address`, the L-Server
    /// released and its quarantine address given back.
    pub fn final_released(&mut self, lserver: &str, network: &str, address: &str) -> &mut Self {
        self.run
            .allocations
            .retain(|(_, _, owner)| owner != lserver);
        self.final_nic(lserver, 0, Some(network), network, address)
            .final_state(lserver, "normal", "normal", Some("released"))
    }

    /// The finished record.
    pub fn build(&self) -> RunRecord {
        self.run.clone()
    }
}

/// A clean quarantine of vdi-001 (one vNIC on vc-1, 40 ms calls) by detection `e-1` acked at
/// `at`, as operation `id`: contained at `at + 40`, quarantined at `at + 80`.
pub fn quarantine_vdi(rec: &mut Rec, lserver: &str, event_id: &str, id: i64, at: u64) {
    rec.ack(at, event_id, Some(lserver), "accepted", Some(id))
        .alert(at, "quarantine-started", "INFO", Some(lserver), Some(id))
        .started(at, id, lserver, "quarantine")
        .call(at, "vc-1", "set_nic", lserver, Some(0), Some("qr-a"))
        .lands("op-a", false)
        .read(at + 40, "vc-1", "get_nic", lserver, 0, "qr-a")
        .alert(
            at + 80,
            "quarantine-completed",
            "INFO",
            Some(lserver),
            Some(id),
        )
        .finished(at + 80, id, lserver, "quarantined");
}

/// vdi-001 detected as `e-1` at 0, and its quarantine started as operation 1.
pub fn vdi1_accepted(site: &Site) -> Rec {
    let mut rec = Rec::new(site);
    rec.accepted(0, "e-1", VDI1, 1, "quarantine");
    rec
}

/// [`quarantine_vdi`] of vdi-001 at 0 with the matching final state.
pub fn quarantined_vdi1(site: &Site) -> Rec {
    let mut rec = Rec::new(site);
    quarantine_vdi(&mut rec, VDI1, "e-1", 1, 0);
    rec.final_quarantined(VDI1, "qr-a", "10.210.0.2");
    rec
}

/// Checks a hand-made record with no expectations.
pub fn check(site: &Site, rec: &Rec) -> CheckReport {
    check_run(site, &rec.build(), &Expectations::default())
}

/// The verdict of invariant `id`.
pub fn inv<'a>(report: &'a CheckReport, id: &str) -> &'a InvariantVerdict {
    report
        .invariants
        .iter()
        .find(|v| v.id == id)
        .unwrap_or_else(|| panic!("no verdict {id}"))
}

/// Asserts invariant `id` came out `status`, showing its detail when not.
pub fn assert_status(report: &CheckReport, id: &str, status: Status) {
    let v = inv(report, id);
    assert_eq!(v.status, status, "{id}: {}", v.detail);
}

/// Asserts invariant `id` failed with a detail that says `says`.
pub fn assert_fails(report: &CheckReport, id: &str, says: &str) {
    assert_status(report, id, Status::Failed);
    let detail = &inv(report, id).detail;
    assert!(detail.contains(says), "{id}: {detail}");
}

/// One test per name: invariant `$id` comes out `$status` on the clean quarantine of vdi-001
/// ([`quarantined_vdi1`]).
#[allow(unused_macros)]
macro_rules! clean_quarantine_verdicts {
    ($($name:ident: $id:literal => $status:ident),+ $(,)?) => {$(
        #[test]
        fn $name() {
            let site = site();
            assert_status(
                &check(&site, &quarantined_vdi1(&site)),
                $id,
                Status::$status,
            );
        }
    )+};
}
#[allow(unused_imports)]
pub(crate) use clean_quarantine_verdicts;

/// The counter's value, then counts one up.
fn next<T: Copy + std::ops::AddAssign + From<u8>>(counter: &mut T) -> T {
    let value = *counter;
    *counter += T::from(1);
    value
}
