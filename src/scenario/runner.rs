//! The runner: one scenario on a current-thread tokio runtime with a paused clock, the real
//! engine against the simulated world, events played at their times, crashes that abort the
//! engine's tasks and reopen its journal, and the run's history for the checkers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use tokio::time::Instant;

use super::load::{EventAction, Scenario};
use crate::check::{self, CheckReport};
use crate::engine::journal::Durability;
use crate::engine::{
    Engine, EngineEvent, EngineObserver, EngineOptions, Journal, OperationKind, Outcome,
};
use crate::model::history::{EventKind, FaultAccount, FinalLServer, FinalNic, NicRef, RunRecord};
use crate::model::{Detection, Site};
use crate::sim::{Recorder, SimWorld};

/// A deliberately broken engine, used only to prove that the checkers bite (tests/checkers_bite.rs,
/// `qlab explore --mutant`). Each breaks one rule from outside the engine, through its ports or
/// its journal, so the engine itself carries no test-only code.
/// On the command line (`--mutant`, hidden) it is spelt as [`Mutant::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mutant {
    /// Trusts the device's ok without the verifying read (should trip INV-1).
    TrustDevice,
    /// Moves NICs back to operation after a failed quarantine (should trip INV-2/INV-3).
    RevertOnFailure,
    /// Loses acknowledged detections whose operation was unfinished at a crash (INV-7).
    DropOnCrash,
    /// Writes a NIC's last target again whenever a read of that NIC fails, although that write
    /// may already have landed (INV-6).
    RewriteOnReadFailure,
    /// Keeps the quarantine IPs of a failed quarantine allocated instead of freeing them on
    /// rollback (INV-8).
    LeakIpOnRollback,
    /// No drift watch (R20): the engine runs with a `watch_interval` of the longest duration a
    /// file may give, so within the run it never re-reads a quarantined NIC (INV-12).
    NoDriftWatch,
}

impl Mutant {
    /// Every broken engine, in the order help texts list them.
    pub const ALL: [Mutant; 6] = [
        Mutant::TrustDevice,
        Mutant::RevertOnFailure,
        Mutant::DropOnCrash,
        Mutant::RewriteOnReadFailure,
        Mutant::LeakIpOnRollback,
        Mutant::NoDriftWatch,
    ];

    /// The spelling on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mutant::TrustDevice => "trust-device",
            Mutant::RevertOnFailure => "revert-on-failure",
            Mutant::DropOnCrash => "drop-on-crash",
            Mutant::RewriteOnReadFailure => "rewrite-on-read-failure",
            Mutant::LeakIpOnRollback => "leak-ip-on-rollback",
            Mutant::NoDriftWatch => "no-drift-watch",
        }
    }

    /// Parses [`Mutant::name`].
    pub fn parse(text: &str) -> Option<Mutant> {
        Mutant::ALL.into_iter().find(|m| m.name() == text)
    }
}

/// What one run of one scenario produced.
#[derive(Debug, Clone)]
pub struct ScenarioRun {
    /// History and final state.
    pub record: RunRecord,
    /// SHA-256 of the history, hex (INV-11).
    pub history_digest: String,
    /// Checker verdicts and measures.
    pub check: CheckReport,
    /// Whether the scenario passed (expectations, invariants, `expect.violations`).
    pub passed: bool,
    /// What each `[[faults]]` entry did (report.json `faults`).
    pub faults: Vec<FaultAccount>,
    /// Wire mode: detections the engine took, by transport, from its own counters (empty in
    /// sim mode, where detections reach the engine directly).
    pub transports: std::collections::BTreeMap<String, u64>,
}

/// Numbers the runs of this process, so each gets its own in-memory journal.
static NEXT_RUN: AtomicU64 = AtomicU64::new(0);

/// Runs `scenario` in sim mode with `seed`. Errors are setup failures (the scenario could not run).
pub fn run_sim(
    scenario: &Scenario,
    seed: u64,
    mutant: Option<Mutant>,
) -> Result<ScenarioRun, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let (record, faults) = runtime.block_on(play(scenario, seed, mutant))?;
    // Dropping the runtime cancels whatever the engine left (it was idle or past settle).
    drop(runtime);
    // The digest and the checks only read the record: a large run computes them side by side.
    let (history_digest, check) = if record.history.len() >= check::PARALLEL_EVENTS {
        std::thread::scope(|scope| {
            let digest = scope.spawn(|| check::history_digest(&record.history));
            let check = check::check_run(&scenario.site, &record, &scenario.expect);
            let digest = digest
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (digest, check)
        })
    } else {
        (
            check::history_digest(&record.history),
            check::check_run(&scenario.site, &record, &scenario.expect),
        )
    };
    let passed = check::verdict(&check, &scenario.expect);
    Ok(ScenarioRun {
        record,
        history_digest,
        check,
        passed,
        faults,
        transports: Default::default(),
    })
}

/// Feeds engine events into the history.
pub(super) struct HistoryObserver {
    recorder: Recorder,
    failed: Mutex<Vec<String>>,
}

impl HistoryObserver {
    pub(super) fn new(recorder: Recorder) -> HistoryObserver {
        HistoryObserver {
            recorder,
            failed: Mutex::new(Vec::new()),
        }
    }
}

impl EngineObserver for HistoryObserver {
    fn on_event(&self, event: &EngineEvent) {
        let kind = match event {
            EngineEvent::Committed { commit } => EventKind::Commit { n: *commit },
            EngineEvent::DetectionJournaled {
                source,
                event_id,
                receipt,
            } => EventKind::DetectionAcked {
                source: source.clone(),
                event_id: event_id.clone(),
                lserver: receipt.lserver.clone(),
                disposition: receipt.disposition.as_str().into(),
                operation: receipt.operation,
            },
            EngineEvent::Halted { .. } => return,
            EngineEvent::OperationStarted { id, lserver, kind } => {
                self.recorder.set_running(lserver, *id, true);
                if *kind == OperationKind::Release {
                    self.recorder.set_releasing(lserver, true);
                }
                EventKind::OperationStarted {
                    id: *id,
                    lserver: lserver.clone(),
                    kind: kind.as_str().into(),
                }
            }
            EngineEvent::OperationFinished {
                id,
                lserver,
                outcome,
            } => {
                self.recorder.set_releasing(lserver, false);
                self.recorder.set_running(lserver, *id, false);
                if *outcome == Outcome::QuarantineFailed {
                    self.failed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(lserver.clone());
                }
                EventKind::OperationFinished {
                    id: *id,
                    lserver: lserver.clone(),
                    outcome: outcome.as_str().into(),
                }
            }
            EngineEvent::Alert(a) => EventKind::Alert {
                seq: a.seq,
                code: a.code.as_str().into(),
                severity: a.severity().as_str().into(),
                lserver: a.lserver.clone(),
                ip: a.ip,
                operation: a.operation,
            },
        };
        self.recorder.record(kind);
    }
}

/// One thing the runner does at a time on the timeline.
pub(super) enum Step {
    Detect(Detection),
    Command(crate::engine::Command),
    Crash(Duration),
    Restart,
    Heal(String),
    /// A `reboot_loses_unsaved` fault (its index) reboots this switch.
    RebootSwitch(String, usize),
    /// An `external_change` fault (its index) moves the NICs it matches (R20, INV-12).
    ExternalChange(usize),
    /// An AV delivery fault (its index) acted on a notification of this L-Server sent now:
    /// counted now, when it is known whether an operation runs. Leaves nothing in the history.
    FaultHit(usize, Option<String>),
}

/// The scenario's events as one timeline, times passed through `scale`: detections (`outbreak`
/// events expanded here, see [`super::outbreak`]) after the AV servers' delivery faults (drop,
/// duplicate, reorder; heals counted; AV `jitter`), commands, crashes, heals and scheduled switch
/// reboots. Stable: at equal times the delivery faults' hits come first, then detections (in
/// the seed's order, see [`SimWorld::deliveries_counted`]), then file order. The sim and the
/// wire runner both build their timeline here, so they send the same detections.
pub(super) fn build_timeline(
    scenario: &Scenario,
    world: &SimWorld,
    scale: impl Fn(Duration) -> Duration,
) -> Vec<(Duration, Step)> {
    let mut timeline = Vec::new();
    let mut detections = Vec::new();
    for e in &scenario.events {
        match &e.action {
            EventAction::Detect(d) => detections.push((scale(e.at), d.clone())),
            EventAction::Outbreak(o) => detections.extend(
                o.detections(&scenario.site)
                    .into_iter()
                    .map(|(offset, d)| (scale(e.at.saturating_add(offset)), d)),
            ),
            _ => {}
        }
    }
    let heals: Vec<(Duration, String)> = scenario
        .events
        .iter()
        .filter_map(|e| match &e.action {
            EventAction::Heal(target) => Some((scale(e.at), target.clone())),
            _ => None,
        })
        .collect();
    let (deliveries, hits) = world.deliveries_counted(detections, &heals);
    // Hits first: a notification's fault is counted when it is sent, before the engine sees
    // anything of that instant (the stable sort below keeps them ahead).
    for hit in hits {
        timeline.push((hit.at, Step::FaultHit(hit.fault, hit.lserver)));
    }
    for (at, d) in deliveries {
        timeline.push((at, Step::Detect(d)));
    }
    for e in &scenario.events {
        let step = match &e.action {
            EventAction::Detect(_) | EventAction::Outbreak(_) => continue,
            EventAction::Command(c) => Step::Command(c.clone()),
            EventAction::Crash { restart_after } => Step::Crash(scale(*restart_after)),
            EventAction::Heal(target) => Step::Heal(target.clone()),
        };
        timeline.push((scale(e.at), step));
    }
    // Switch reboots come from the fault plan, already on the (scaled) run clock.
    for (at, device, fault) in world.scheduled_reboots() {
        timeline.push((at, Step::RebootSwitch(device, fault)));
    }
    for (at, fault) in world.scheduled_external_changes() {
        timeline.push((at, Step::ExternalChange(fault)));
    }
    timeline.sort_by_key(|(at, _)| *at);
    timeline
}

/// Puts the restart after a crash at `restart_at`, behind every step due by then.
pub(super) fn schedule_restart(
    timeline: &mut Vec<(Duration, Step)>,
    next: usize,
    restart_at: Duration,
) {
    let pos = timeline[next..]
        .iter()
        .position(|(t, _)| *t > restart_at)
        .map_or(timeline.len(), |p| p + next);
    timeline.insert(pos, (restart_at, Step::Restart));
}

async fn play(
    scenario: &Scenario,
    seed: u64,
    mutant: Option<Mutant>,
) -> Result<(RunRecord, Vec<FaultAccount>), String> {
    let site = match mutant {
        Some(Mutant::TrustDevice) => {
            let mut topology = scenario.site.topology.clone();
            topology.engine.verify_writes = false;
            Arc::new(Site::new(topology)?)
        }
        Some(Mutant::NoDriftWatch) => {
            let mut topology = scenario.site.topology.clone();
            topology.engine.watch_interval = crate::model::duration::MAX_DURATION;
            Arc::new(Site::new(topology)?)
        }
        _ => scenario.site.clone(),
    };
    let recorder = Recorder::new();
    let origin = Instant::now();
    let world = SimWorld::new(
        site.clone(),
        scenario.faults.clone(),
        recorder.clone(),
        seed,
    );
    // The lab's journal lives in memory: its crashes drop the engine, not the machine, so a
    // process-shared in-memory database (SQLite's memdb) loses exactly what a file would, and
    // costs no file system work. It is seeded once; a run with crashes keeps a second
    // connection open so the database outlives each crashed engine, and any other run
    // hands the seeded connection itself to the engine.
    let journal_path = PathBuf::from(format!(
        "file:/qlab-run-{}-{}?vfs=memdb",
        std::process::id(),
        NEXT_RUN.fetch_add(1, Ordering::Relaxed)
    ));
    let crashes = scenario
        .events
        .iter()
        .any(|e| matches!(e.action, EventAction::Crash { .. }));
    // Only a run that reopens its journal (a restart, a mutant that edits it) needs it shared;
    // any other run takes a private in-memory database, which skips memdb's copy of every
    // written page at each commit.
    let reopened = crashes || mutant.is_some();
    let mut seeded = if reopened {
        rusqlite::Connection::open(&journal_path)
    } else {
        rusqlite::Connection::open_in_memory()
    }
    .map_err(|e| format!("cannot create the run's journal: {e}"))?;
    Journal::seed(&mut seeded).map_err(|e| format!("cannot create the run's journal: {e}"))?;
    let (_keeper, mut first_journal) = if reopened {
        (Some(seeded), None)
    } else {
        let journal = Journal::from_connection(seeded, Durability::ProcessCrash)
            .map_err(|e| format!("cannot open the run's journal: {e}"))?;
        (None, Some(journal))
    };
    let observer = Arc::new(HistoryObserver::new(recorder.clone()));

    let mut timeline = build_timeline(scenario, &world, |d| d);
    // The scenario's site, not a mutant's: the bound is the one the checker holds it to.
    let drift_until = drift_watch_until(&scenario.site, &timeline);
    // A restart starts the drift watch afresh: a drift gets its bound again from there.
    let mut last_restart: Option<Duration> = None;

    let mut open = || -> Result<Engine, String> {
        // The lab's crashes drop the engine, not the machine: the in-memory journal outlives
        // the engine exactly as a file outlives a real process crash.
        let journal = match first_journal.take() {
            Some(journal) => journal,
            None => Journal::open_with(&journal_path, Durability::ProcessCrash)
                .map_err(|e| e.to_string())?,
        };
        let options = EngineOptions {
            hostname: "qlab-sim".into(),
            origin_ms: 0,
            observer: Some(observer.clone()),
            ..EngineOptions::default()
        };
        let adapters = match mutant {
            Some(Mutant::RewriteOnReadFailure) => {
                super::mutants::rewrite_on_read_failure(world.adapters())
            }
            _ => world.adapters(),
        };
        Engine::open(site.clone(), journal, adapters, options).map_err(|e| e.to_string())
    };
    let mut engine = Some(open()?);
    // Detections the sender still holds because the engine was down: it sends them again.
    let mut held: Vec<Detection> = Vec::new();
    let mut index = 0;
    while index < timeline.len() {
        let at = timeline[index].0;
        tokio::time::sleep_until(origin + at).await;
        let step = std::mem::replace(&mut timeline[index].1, Step::Heal(String::new()));
        index += 1;
        match step {
            Step::Detect(first) => {
                // Detections sent at one instant travel together, as an AV server's burst
                // does: the sender does not wait for one acknowledgement before the next.
                let mut burst = vec![first];
                while index < timeline.len()
                    && timeline[index].0 == at
                    && matches!(timeline[index].1, Step::Detect(_))
                {
                    if let Step::Detect(d) =
                        std::mem::replace(&mut timeline[index].1, Step::Heal(String::new()))
                    {
                        burst.push(d);
                    }
                    index += 1;
                }
                for d in &burst {
                    recorder.record(EventKind::DetectionSent {
                        source: d.source.clone(),
                        event_id: d.event_id.clone(),
                        ip: d.ip,
                    });
                }
                match &engine {
                    Some(e) => {
                        join_all(burst.into_iter().map(|d| submit(e, &recorder, d))).await;
                    }
                    None => {
                        for d in burst {
                            recorder.record(EventKind::DetectionRefused {
                                source: d.source.clone(),
                                event_id: d.event_id.clone(),
                                reason: "engine down".into(),
                            });
                            held.push(d);
                        }
                    }
                }
            }
            Step::Command(c) => {
                let (action, lserver) = command_names(&c);
                let result = match &engine {
                    Some(e) => e.submit_command(c).await.map_err(|e| e.to_string()),
                    None => Err("engine down".to_string()),
                };
                recorder.record(EventKind::CommandSubmitted {
                    action,
                    lserver,
                    operation: result.as_ref().ok().copied(),
                    refused: result.err(),
                });
            }
            Step::Crash(restart_after) => {
                if engine.take().is_some() {
                    recorder.record(EventKind::Crash);
                    schedule_restart(&mut timeline, index, at + restart_after);
                }
            }
            Step::Restart => {
                last_restart = Some(at);
                if mutant == Some(Mutant::DropOnCrash) {
                    forget_unfinished(&journal_path)?;
                }
                let e = open()?;
                recorder.record(EventKind::Restart);
                for d in held.drain(..) {
                    submit(&e, &recorder, d).await;
                }
                engine = Some(e);
            }
            Step::Heal(target) if target.is_empty() => {}
            Step::Heal(target) => world.heal(&target),
            Step::RebootSwitch(device, fault) => {
                world.reboot_switch_for_fault(&device, fault);
            }
            Step::ExternalChange(fault) => {
                world.external_change_for_fault(fault);
            }
            Step::FaultHit(fault, lserver) => world.count_fault_hit(fault, lserver.as_deref()),
        }
        if mutant == Some(Mutant::RevertOnFailure) {
            revert_failed(&site, &world, &observer).await;
        }
    }
    // Default settle: the operation deadline plus the one read R19 allows after it, so an
    // operation that runs into its deadline can still finish inside the run.
    let engine_spec = site.topology.engine;
    let settle = scenario
        .settle
        .unwrap_or(engine_spec.operation_deadline + engine_spec.call_timeout);
    if let Some(e) = &engine {
        // A drift (a switch reboot, an external change) is the drift watch's to find: the run
        // lasts until INV-12's bound for it has passed, then until the engine is idle.
        if let Some(until) = drift_until {
            let restarted = last_restart
                .map(|at| at + crate::check::drift_detection_bound(&scenario.site))
                .unwrap_or_default();
            tokio::time::sleep_until(origin + until.max(restarted)).await;
        }
        // The run ends when the engine is idle, or `settle` after the last event.
        let _ = tokio::time::timeout(settle, e.wait_idle()).await;
        if mutant == Some(Mutant::RevertOnFailure) {
            revert_failed(&site, &world, &observer).await;
        }
    }
    if mutant == Some(Mutant::LeakIpOnRollback) {
        super::mutants::leak_rolled_back_ips(&journal_path)?;
    }
    let record = collect(&site, &world, &recorder, engine.as_ref(), &journal_path)?;
    drop(engine);
    Ok((record, world.fault_accounting()))
}

/// When a run with drift (`reboot_loses_unsaved`, `external_change`) may end at the earliest:
/// INV-12's detection bound after the last drift step, so the drift watch has had its chance
/// to find it (the restore operation it starts is then awaited like any other). `None` without
/// drift.
pub(super) fn drift_watch_until(site: &Site, timeline: &[(Duration, Step)]) -> Option<Duration> {
    let last = timeline
        .iter()
        .filter(|(_, s)| matches!(s, Step::RebootSwitch(..) | Step::ExternalChange(_)))
        .map(|(at, _)| *at)
        .max()?;
    Some(last + crate::check::drift_detection_bound(site))
}

async fn submit(engine: &Engine, recorder: &Recorder, d: Detection) {
    let (source, event_id) = (d.source.clone(), d.event_id.clone());
    // The acknowledgement is recorded by the observer, in the engine's own order.
    match engine.submit_detection(d).await {
        Ok(_) => {}
        Err(e) => recorder.record(EventKind::DetectionRefused {
            source,
            event_id,
            reason: e.to_string(),
        }),
    }
}

pub(super) fn command_names(c: &crate::engine::Command) -> (String, String) {
    use crate::engine::Command;
    let action = match c {
        Command::Quarantine { .. } => "quarantine",
        Command::Release { .. } => "release",
        Command::Decide { .. } => "decide",
    };
    (action.into(), c.lserver().into())
}

/// The `revert-on-failure` mutant: after a failed quarantine, put every NIC back on its
/// operation network at the device, which a correct engine must never do (R10, R11).
async fn revert_failed(site: &Site, world: &SimWorld, observer: &HistoryObserver) {
    let failed: Vec<String> =
        std::mem::take(&mut *observer.failed.lock().unwrap_or_else(|e| e.into_inner()));
    let adapters = world.adapters();
    for path in failed {
        let Some(ls) = site.lserver(&path) else {
            continue;
        };
        for nic in &ls.nics {
            match &nic.location {
                crate::model::NicLocation::Virtual {
                    hypervisor,
                    vm,
                    device,
                } => {
                    if let (Some(h), Some(pg)) = (
                        adapters.hypervisors.get(hypervisor),
                        site.portgroup(hypervisor, &nic.network),
                    ) {
                        let _ = h.set_nic(vm, device, pg).await;
                    }
                }
                crate::model::NicLocation::Physical { switch, port } => {
                    if let (Some(s), Some(net)) =
                        (adapters.switches.get(switch), site.network(&nic.network))
                    {
                        let _ = s.set_port(port, net.vlan).await;
                    }
                }
            }
        }
    }
}

/// The `drop-on-crash` mutant: forget acknowledged detections whose operation had not finished.
fn forget_unfinished(journal_path: &Path) -> Result<(), String> {
    let conn = rusqlite::Connection::open(journal_path).map_err(|e| e.to_string())?;
    conn.execute_batch(
        "DELETE FROM detections WHERE operation_id IN (SELECT id FROM operations WHERE status <> 'done');
         DELETE FROM plan_nics WHERE operation_id IN (SELECT id FROM operations WHERE status <> 'done');
         DELETE FROM operations WHERE status <> 'done';",
    )
    .map_err(|e| e.to_string())
}

/// The run's record at its end: the history, moved out of the recorder (so call it once, last),
/// the final device truth and management records, and the allocations.
pub(super) fn collect(
    site: &Site,
    world: &SimWorld,
    recorder: &Recorder,
    engine: Option<&Engine>,
    journal_path: &Path,
) -> Result<RunRecord, String> {
    let truth: HashMap<NicRef, Option<String>> = world.final_truth().into_iter().collect();
    // A crashed engine that never restarted still has its journal: read records from a fresh
    // engine view only when one is running; otherwise from the journal snapshot.
    let snapshot = match engine {
        Some(e) => e.journal_snapshot().map_err(|e| e.to_string())?,
        None => Journal::open(journal_path)
            .and_then(|j| j.snapshot())
            .map_err(|e| e.to_string())?,
    };
    let views = engine.map(|e| e.lservers()).unwrap_or_default();
    // Indexed by path: a generated site has thousands of L-Servers.
    let view_by_path: HashMap<&str, _> = views.iter().map(|v| (v.path.as_str(), v)).collect();
    let row_by_path: HashMap<&str, _> = snapshot
        .lservers
        .iter()
        .map(|r| (r.path.as_str(), r))
        .collect();
    let mut record_by_nic: HashMap<(&str, usize), _> = HashMap::new();
    for (path, record) in &snapshot.nic_records {
        // The first row wins, as a linear search would find it.
        record_by_nic
            .entry((path.as_str(), record.index))
            .or_insert(record);
    }
    let mut nics = Vec::new();
    let mut lservers = Vec::new();
    for ls in &site.lservers {
        let view = view_by_path.get(ls.path.as_str()).copied();
        let row = row_by_path.get(ls.path.as_str()).copied();
        lservers.push(FinalLServer {
            path: ls.path.clone(),
            state: view
                .map(|v| v.state.as_str())
                .or(row.map(|r| r.state.as_str()))
                .unwrap_or("normal")
                .into(),
            status: view
                .map(|v| v.status.clone())
                .or(row.map(|r| r.status.clone()))
                .unwrap_or_else(|| "normal".into()),
            outcome: view
                .and_then(|v| v.outcome)
                .or(row.and_then(|r| r.outcome))
                .map(|o| o.as_str().to_string()),
            pending_operations: view.map_or(0, |v| v.pending_operations),
        });
        for nic in &ls.nics {
            let nic_ref = NicRef {
                lserver: ls.path.clone(),
                nic: nic.index,
            };
            let record = view
                .and_then(|v| v.nics.get(nic.index).cloned())
                .or_else(|| {
                    record_by_nic
                        .get(&(ls.path.as_str(), nic.index))
                        .map(|r| (*r).clone())
                });
            nics.push(FinalNic {
                device_network: truth.get(&nic_ref).cloned().flatten(),
                managed_network: record
                    .as_ref()
                    .map_or(nic.network.clone(), |r| r.network.clone()),
                managed_ip: record.as_ref().map_or(nic.ip, |r| r.ip),
                nic: nic_ref,
            });
        }
    }
    let allocations = snapshot
        .allocations
        .into_iter()
        .map(|(net, ip, owner, _)| (net, ip, owner))
        .collect();
    Ok(RunRecord {
        history: recorder.take_events(),
        nics,
        lservers,
        allocations,
    })
}
