//! Test support for the rule tests: the lab's simulated world ([`SimWorld`], the one the
//! scenario runner plays) behind the engine's ports, a small site, builders for the lab's
//! fault plans ([`FaultSpec`]), and a harness that opens, crashes and reopens an engine on one
//! journal file. Device truth comes from the world's models, the calls the engine made from the
//! world's history (`Invoke` / `Return`), mail and syslog from the world's sinks.
//!
//! Faults are the scenario format's own: a test names the effect, the call, the object
//! (`match`) and `times`, at the start (`Harness::with_faults`) or from a moment of the test on
//! (`Harness::fault_now`). A NIC moved by someone else is an `external_change` fault carried
//! out at once (`Harness::move_by_hand`); a device that slows down mid-run is a `delay` fault.
//!
//! Shared by every test file that includes it: [`run`] (the `qlab` binary and replies of the
//! servers under test), [`fixture_path`], and `snapshot_after!` (one named snapshot test per
//! edit of a file's base text).
//!
//! Texts the tests load live in `fixtures/`, named `test-*`: `fixtures/topologies/test-*.toml`
//! are valid topologies (CI validates every file there); `fixtures/scenarios/test-*.toml` are
//! scenarios that load only where a test puts them: `@TOPOLOGY@` becomes the fixture topology's
//! absolute path, or the test writes the `topology.toml` they name next to them. Both folders
//! are under `tests/schemas.rs`'s check, so each file is a whole topology or scenario. Where a
//! test asserts line numbers, a fixture's comment sits where it moves no line.
#![allow(dead_code)]

pub mod run;

/// One snapshot test per edit: `snapshot_after! { f; name: from => to; ... }` makes a test
/// `name` that snapshots `f(from, to)` (the including file's error text after replacing `from`
/// with `to` in its base text); the snapshot is named after the test.
#[allow(unused_macros)]
macro_rules! snapshot_after {
    ($error:ident; $($(#[$doc:meta])* $name:ident: $from:expr => $to:expr;)+) => {
        $(
            $(#[$doc])*
            #[test]
            fn $name() {
                insta::assert_snapshot!($error($from, $to));
            }
        )+
    };
}

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use quarantine_lab::engine::*;
use quarantine_lab::model::history::EventKind;
use quarantine_lab::model::*;
use quarantine_lab::sim::{CallKind, FaultEffect, FaultMatch, FaultSpec, Recorder, SimWorld};

/// A fault of `effect` on every `call` of `device`: the whole run, every matching call, every
/// object. Narrow it with [`Narrow`].
pub fn fault(device: &str, call: CallKind, effect: FaultEffect) -> FaultSpec {
    FaultSpec::new(device, Some(call), effect)
}

/// Narrows a [`FaultSpec`] the way a scenario file's `times` and `match` do.
pub trait Narrow {
    /// Only the next `n` matching calls.
    fn times(self, n: u32) -> FaultSpec;
    /// Only calls on vNIC `nic` of VM `vm`.
    fn on_vnic(self, vm: &str, nic: &str) -> FaultSpec;
    /// Only calls on switch port `port`.
    fn on_port(self, port: &str) -> FaultSpec;
}

impl Narrow for FaultSpec {
    fn times(self, n: u32) -> FaultSpec {
        FaultSpec {
            times: Some(n),
            ..self
        }
    }

    fn on_vnic(self, vm: &str, nic: &str) -> FaultSpec {
        let matcher = FaultMatch {
            vm: Some(vm.into()),
            nic: Some(nic.into()),
            ..FaultMatch::default()
        };
        FaultSpec { matcher, ..self }
    }

    fn on_port(self, port: &str) -> FaultSpec {
        let matcher = FaultMatch {
            port: Some(port.into()),
            ..FaultMatch::default()
        };
        FaultSpec { matcher, ..self }
    }
}

/// A `delay` fault: every call of `device` takes `delay` longer (a device slowing down).
pub fn slow(device: &str, delay: Duration) -> FaultSpec {
    FaultSpec {
        delay: Some(delay),
        ..FaultSpec::new(device, None, FaultEffect::Delay)
    }
}

/// One device call as the world's history shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The history's call id.
    pub id: u64,
    pub device: String,
    /// `set_nic`, `get_port`, `login`, ...
    pub op: String,
    /// The L-Server the object belongs to.
    pub lserver: Option<String>,
    /// The NIC's index within its L-Server, when the object is a NIC.
    pub nic: Option<usize>,
    /// The network written (writes only).
    pub value: Option<String>,
    /// `ok`, `fail` or `unknown`; `None` while the call is in flight.
    pub result: Option<String>,
}

/// Every file below `dir` (and its subfolders) whose extension is `extension`, sorted; none
/// when `dir` does not exist.
pub fn files_below(dir: &std::path::Path, extension: &str) -> Vec<PathBuf> {
    fn walk(dir: &std::path::Path, extension: &str, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.expect("readable folder").path();
            if path.is_dir() {
                walk(&path, extension, out);
            } else if path.extension().is_some_and(|e| e == extension) {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, extension, &mut out);
    out.sort();
    out
}

/// `fixtures/<rel>` as an absolute path, so a scenario written anywhere can point at it.
pub fn fixture_path(rel: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// A small site: two tenants, virtual and physical L-Servers, one with two NICs.
pub const SITE: &str = include_str!("../../fixtures/topologies/test-site.toml");

/// Parses a topology text (with `edit` applied to it first).
pub fn site_with(edit: impl FnOnce(&str) -> String) -> Arc<Site> {
    let text = edit(SITE);
    let topology = load_topology_str(std::path::Path::new("test-site.toml"), &text).unwrap();
    Arc::new(Site::new(topology).unwrap())
}

/// [`SITE`] with every call to `vc-1` taking `latency` (the topology's own `latency`).
pub fn site_with_vc_latency(latency: &str) -> Arc<Site> {
    site_with(|s| {
        s.replace(
            "max_concurrent = 8\n",
            &format!("max_concurrent = 8\nlatency = \"{latency}\"\n"),
        )
    })
}

/// An engine over a simulated world on a journal file that survives reopening.
pub struct Harness {
    pub site: Arc<Site>,
    /// The devices, their fault plan and the history of every call.
    pub world: SimWorld,
    pub engine: Option<Engine>,
    pub journal_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// `site` without faults.
    pub fn new(site: Arc<Site>) -> Harness {
        Harness::with_faults(site, Vec::new())
    }

    /// `site` with the fault plan `faults` from the start of the run.
    pub fn with_faults(site: Arc<Site>, faults: Vec<FaultSpec>) -> Harness {
        Harness::seeded(site, faults, 0)
    }

    /// Like [`Harness::with_faults`], with the run's seed (it drives `probability`).
    pub fn seeded(site: Arc<Site>, faults: Vec<FaultSpec>, seed: u64) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let journal_path = dir.path().join("journal.sqlite");
        let world = SimWorld::new(site.clone(), faults, Recorder::new(), seed);
        let mut h = Harness {
            site,
            world,
            engine: None,
            journal_path,
            _dir: dir,
        };
        h.reopen(None);
        h
    }

    /// [`SITE`] without faults.
    pub fn standard() -> Harness {
        Harness::new(site_with(|s| s.to_string()))
    }

    /// [`SITE`] with `faults`.
    pub fn standard_with(faults: Vec<FaultSpec>) -> Harness {
        Harness::with_faults(site_with(|s| s.to_string()), faults)
    }

    /// [`SITE`] with `faults`, after a detection of `ip` (event `e-1`) has settled.
    pub async fn standard_detected(faults: Vec<FaultSpec>, ip: &str) -> Harness {
        let h = Harness::standard_with(faults);
        h.detect_settled(ip).await;
        h
    }

    /// Drops the engine (aborting its tasks, like a crash) and opens a new one on the same
    /// journal, with an optional commit limit. The world lives on, as devices do.
    pub fn reopen(&mut self, commit_limit: Option<u64>) {
        self.engine = None;
        let mut journal = Journal::open(&self.journal_path).unwrap();
        journal.set_commit_limit(commit_limit);
        let engine = Engine::open(
            self.site.clone(),
            journal,
            self.world.adapters(),
            EngineOptions::default(),
        )
        .unwrap();
        self.engine = Some(engine);
    }

    pub fn engine(&self) -> &Engine {
        self.engine.as_ref().unwrap()
    }

    pub async fn detect(&self, ip: &str, event_id: &str) -> DetectionReceipt {
        self.engine()
            .submit_detection(detection(ip, event_id))
            .await
            .unwrap()
    }

    pub async fn settle(&self) {
        self.engine().wait_idle().await;
        // Let background alert deliveries finish.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    /// Adds `spec` to the world's fault plan from now on; returns its index.
    pub fn fault_now(&self, spec: FaultSpec) -> usize {
        self.world.add_fault(spec)
    }

    /// Moves NIC `nic` of `path` to `network` at its device, as an operator would at the
    /// console: an `external_change` fault of the lab, carried out now.
    pub fn move_by_hand(&self, path: &str, nic: usize, network: &str) {
        let spec = match &self.site.lserver(path).unwrap().nics[nic].location {
            NicLocation::Virtual {
                hypervisor,
                vm,
                device,
            } => FaultSpec::new(hypervisor.as_str(), None, FaultEffect::ExternalChange)
                .on_vnic(vm, device),
            NicLocation::Physical { switch, port } => {
                FaultSpec::new(switch.as_str(), None, FaultEffect::ExternalChange).on_port(port)
            }
        };
        let spec = FaultSpec {
            to_network: Some(network.into()),
            ..spec
        };
        let index = self.world.add_fault(spec);
        assert_eq!(
            self.world.external_change_for_fault(index),
            1,
            "{path} nic{nic} moved to {network}"
        );
    }

    /// How many calls fault `index` of the plan acted on so far (report.json `faults`): a test
    /// whose fault never fired proves nothing.
    pub fn hits(&self, index: usize) -> u64 {
        self.world.fault_accounting()[index].hits
    }

    /// Removes every fault from now on.
    pub fn heal(&self) {
        self.world.heal("all");
    }

    pub fn view(&self, path: &str) -> LServerView {
        self.engine().lserver(path).unwrap()
    }

    /// The engine's records of `path`'s NICs, as network names.
    pub fn managed(&self, path: &str) -> Vec<String> {
        self.view(path)
            .nics
            .iter()
            .map(|n| n.network.clone())
            .collect()
    }

    /// Device truth of every NIC of `path`, as network names (`?` off every topology network).
    pub fn device(&self, path: &str) -> Vec<String> {
        let truth = self.world.final_truth();
        truth
            .into_iter()
            .filter(|(nic, _)| nic.lserver == path)
            .map(|(_, network)| network.unwrap_or_else(|| "?".into()))
            .collect()
    }

    /// Every device call the engine made, in order of arrival.
    pub fn calls(&self) -> Vec<Call> {
        let mut calls: Vec<Call> = Vec::new();
        for event in self.world.recorder().events() {
            match event.kind {
                EventKind::Invoke {
                    call,
                    device,
                    op,
                    nic,
                    lserver,
                    value,
                } => calls.push(Call {
                    id: call,
                    device,
                    op,
                    lserver,
                    nic: nic.map(|n| n.nic),
                    value,
                    result: None,
                }),
                EventKind::Return { call, result, .. } => {
                    if let Some(c) = calls.iter_mut().rev().find(|c| c.id == call) {
                        c.result = Some(result);
                    }
                }
                _ => {}
            }
        }
        calls
    }

    /// Write calls (`set_nic`, `set_port`) on a NIC of `path`.
    pub fn writes_for(&self, path: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| {
                matches!(c.op.as_str(), "set_nic" | "set_port")
                    && c.lserver.as_deref() == Some(path)
            })
            .collect()
    }

    /// The L-Servers a device reset (VM or BMC), one entry per reset performed.
    pub fn resets(&self) -> Vec<String> {
        self.world
            .recorder()
            .events()
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::Reset { lserver } => Some(lserver),
                _ => None,
            })
            .collect()
    }

    /// Config saves `switch` answered ok.
    pub fn saves(&self, switch: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| {
                c.device == switch && c.op == "save_config" && c.result.as_deref() == Some("ok")
            })
            .count()
    }

    pub fn alerts(&self) -> Vec<Alert> {
        self.engine().alerts_since(0, 10_000).unwrap()
    }

    pub fn alert_codes(&self, path: &str) -> Vec<&'static str> {
        self.alerts()
            .iter()
            .filter(|a| a.lserver.as_deref() == Some(path))
            .map(|a| a.code.as_str())
            .collect()
    }

    /// The last outcome of `path`.
    pub fn outcome(&self, path: &str) -> Option<Outcome> {
        self.view(path).outcome
    }

    /// The alerts of severity `error`.
    pub fn errors(&self) -> Vec<Alert> {
        self.alerts()
            .into_iter()
            .filter(|a| a.severity() == Severity::Error)
            .collect()
    }

    /// The first alert with `code`; fails the test when there is none.
    pub fn alert(&self, code: AlertCode) -> Alert {
        let alerts = self.alerts();
        let found = alerts.iter().find(|a| a.code == code).cloned();
        found.unwrap_or_else(|| panic!("no {code:?} alert in {alerts:?}"))
    }

    /// Detects `ip` (event `e-1`) and waits until the engine is idle.
    pub async fn detect_settled(&self, ip: &str) -> DetectionReceipt {
        let receipt = self.detect(ip, "e-1").await;
        self.settle().await;
        receipt
    }

    /// Asks for the release of `path`, as an operator's command would.
    pub async fn release(&self, path: &str) -> Result<OperationId, EngineError> {
        self.engine()
            .submit_command(Command::Release {
                lserver: path.into(),
            })
            .await
    }

    /// Submits `command` and waits until the engine is idle.
    pub async fn command_settled(&self, command: Command) {
        self.engine().submit_command(command).await.unwrap();
        self.settle().await;
    }

    /// The journal as a second connection reads it.
    pub fn snapshot(&self) -> quarantine_lab::engine::journal::Snapshot {
        Journal::open(&self.journal_path)
            .unwrap()
            .snapshot()
            .unwrap()
    }
}

/// A virus detection from `osce` for `ip`.
pub fn detection(ip: &str, event_id: &str) -> Detection {
    Detection {
        source: "osce".into(),
        event_id: event_id.into(),
        ip: Some(ip.parse().unwrap()),
        mac: None,
        hostname: None,
        threat: "TROJ_GENERIC.A".into(),
        category: Category::Virus,
    }
}
