//! The runner: one scenario on a current-thread tokio runtime with a paused clock, the real
//! engine against the simulated world, events played at their times, crashes that abort the
//! engine's tasks and reopen its journal, and the run's history for the checkers.

use std::collections::{HashMap, HashSet};
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
use crate::sim::{CrashTrap, Recorder, SimWorld};

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
    run_sim_trapped(scenario, seed, mutant, None)
}

/// [`run_sim`] with a crash trap (`--crash-sweep`): a counting trap counts the run's crash
/// points, an armed one crashes the engine at its point (see [`crate::sim::crash`]).
pub fn run_sim_trapped(
    scenario: &Scenario,
    seed: u64,
    mutant: Option<Mutant>,
    trap: Option<Arc<CrashTrap>>,
) -> Result<ScenarioRun, String> {
    let (record, faults) = play_sim(scenario, seed, mutant, trap)?;
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

/// Plays `scenario` on its own paused-clock runtime: the record and the fault accounting,
/// unchecked.
pub fn play_sim(
    scenario: &Scenario,
    seed: u64,
    mutant: Option<Mutant>,
    trap: Option<Arc<CrashTrap>>,
) -> Result<(RunRecord, Vec<FaultAccount>), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let played = runtime.block_on(play(scenario, seed, mutant, trap));
    // Dropping the runtime cancels whatever the engine left (it was idle or past settle).
    drop(runtime);
    played
}

/// Feeds engine events into the history.
pub(super) struct HistoryObserver {
    recorder: Recorder,
    failed: Mutex<Vec<String>>,
    /// `--crash-sweep`: counts commits, trips at one, and drops what a crash lost.
    trap: Option<Arc<CrashTrap>>,
    /// Under a trap, the detections acknowledged so far (`source`, `event_id`): a burst cut by
    /// a crash point resends only the others.
    acked: Mutex<HashSet<(String, String)>>,
}

impl HistoryObserver {
    pub(super) fn new(recorder: Recorder) -> HistoryObserver {
        HistoryObserver::with_trap(recorder, None)
    }

    pub(super) fn with_trap(recorder: Recorder, trap: Option<Arc<CrashTrap>>) -> HistoryObserver {
        HistoryObserver {
            recorder,
            failed: Mutex::new(Vec::new()),
            trap,
            acked: Mutex::new(HashSet::new()),
        }
    }

    /// Whether the engine acknowledged `d` (tracked under a trap only).
    fn acked(&self, d: &Detection) -> bool {
        self.acked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&(d.source.clone(), d.event_id.clone()))
    }
}

impl EngineObserver for HistoryObserver {
    fn on_event(&self, event: &EngineEvent) {
        if let Some(trap) = &self.trap {
            let keep = match event {
                EngineEvent::Committed { .. } => trap.on_commit(),
                _ => !trap.muted(),
            };
            if !keep {
                return;
            }
            if let EngineEvent::DetectionJournaled {
                source, event_id, ..
            } = event
            {
                self.acked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert((source.clone(), event_id.clone()));
            }
        }
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
                unknown_nics: a.nics_named_unknown(),
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

/// Room to reserve for a run's history: an outbreak records about a dozen events per
/// L-Server (detection, plan, calls, commits, outcome); a few more leave slack for retries
/// before the history has to grow.
fn expected_events(site: &Site) -> usize {
    const EVENTS_PER_LSERVER: usize = 16;
    site.lservers.len().saturating_mul(EVENTS_PER_LSERVER)
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

/// How long the engine stays down after a sweep's crash point: the restart delay of a scenario's
/// `crash` event when the file gives none.
pub const SWEEP_RESTART_AFTER: Duration = Duration::from_secs(1);

/// The run's journal copy taken at a crash point: the connection that keeps it alive (an
/// in-memory database lives while a connection is open), or why it could not be made.
type Snapshot = Arc<Mutex<Option<Result<rusqlite::Connection, String>>>>;

/// Awaits `f` unless the crash trap trips first (`None`: the engine just died).
async fn or_crash<F: std::future::Future>(trap: Option<&CrashTrap>, f: F) -> Option<F::Output> {
    match trap {
        None => Some(f.await),
        Some(trap) => {
            tokio::select! {
                biased;
                () = trap.tripped() => None,
                out = f => Some(out),
            }
        }
    }
}

/// Copies the in-memory journal at `source` to `dest` as it stands now.
fn copy_journal(source: &Path, dest: &Path) -> Result<rusqlite::Connection, String> {
    let src = rusqlite::Connection::open(source).map_err(|e| e.to_string())?;
    let mut dst = rusqlite::Connection::open(dest).map_err(|e| e.to_string())?;
    {
        let backup = rusqlite::backup::Backup::new(&src, &mut dst).map_err(|e| e.to_string())?;
        match backup.step(-1).map_err(|e| e.to_string())? {
            rusqlite::backup::StepResult::Done => {}
            other => return Err(format!("the journal copy did not finish: {other:?}")),
        }
    }
    Ok(dst)
}

/// The highest operation id of the journal at `path` (0 when none).
fn last_operation(path: &Path) -> Result<i64, String> {
    let conn = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
    conn.query_row("SELECT COALESCE(MAX(id), 0) FROM operations", [], |r| {
        r.get(0)
    })
    .map_err(|e| e.to_string())
}

/// The operation a command on `lserver` queued after `after`, if its queueing is in the journal
/// at `path` (operations a command queues name no detection).
fn command_operation(path: &Path, lserver: &str, after: i64) -> Result<Option<i64>, String> {
    let conn = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
    let mut stmt = conn
        .prepare(
            "SELECT id FROM operations WHERE id > ?1 AND lserver = ?2 AND detection_id IS NULL \
             ORDER BY id LIMIT 1",
        )
        .map_err(|e| e.to_string())?;
    let mut rows = stmt
        .query(rusqlite::params![after, lserver])
        .map_err(|e| e.to_string())?;
    match rows.next().map_err(|e| e.to_string())? {
        Some(row) => Ok(Some(row.get(0).map_err(|e| e.to_string())?)),
        None => Ok(None),
    }
}

/// Sends `burst` at once; under a crash trap, returns the detections the engine never
/// acknowledged because it died first (the sender holds them and sends them again).
async fn send_burst(
    engine: &Engine,
    recorder: &Recorder,
    observer: &HistoryObserver,
    trap: Option<&CrashTrap>,
    burst: Vec<Detection>,
) -> Vec<Detection> {
    let answered: Vec<std::cell::Cell<bool>> =
        burst.iter().map(|_| std::cell::Cell::new(false)).collect();
    let sends = burst.iter().zip(&answered).map(|(d, done)| async move {
        submit(engine, recorder, d.clone()).await;
        done.set(true);
    });
    if or_crash(trap, join_all(sends)).await.is_some() {
        return Vec::new();
    }
    burst
        .into_iter()
        .zip(&answered)
        .filter(|(d, done)| !done.get() && !observer.acked(d))
        .map(|(d, _)| d)
        .collect()
}

async fn play(
    scenario: &Scenario,
    seed: u64,
    mutant: Option<Mutant>,
    trap: Option<Arc<CrashTrap>>,
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
    let recorder = Recorder::with_capacity(expected_events(&site));
    let origin = Instant::now();
    let world = SimWorld::new(
        site.clone(),
        scenario.faults.clone(),
        recorder.clone(),
        seed,
    );
    // A trap that trips (a sweep's crash run) crashes the engine at its point; a counting one
    // only counts the run's crash points.
    let armed = trap.as_ref().filter(|t| t.point().is_some()).cloned();
    if let Some(t) = &trap {
        world.set_crash_trap(t.clone());
    }
    // The lab's journal lives in memory: its crashes drop the engine, not the machine, so a
    // process-shared in-memory database (SQLite's memdb) loses exactly what a file would, and
    // costs no file system work. It is seeded once; a run with crashes keeps a second
    // connection open so the database outlives each crashed engine, and any other run
    // hands the seeded connection itself to the engine.
    let run_name = format!(
        "qlab-run-{}-{}",
        std::process::id(),
        NEXT_RUN.fetch_add(1, Ordering::Relaxed)
    );
    let mut journal_path = PathBuf::from(format!("file:/{run_name}?vfs=memdb"));
    let crashes = scenario
        .events
        .iter()
        .any(|e| matches!(e.action, EventAction::Crash { .. }));
    // Only a run that reopens its journal (a restart, a mutant that edits it) needs it shared;
    // any other run takes a private in-memory database, which skips memdb's copy of every
    // written page at each commit.
    let reopened = crashes || mutant.is_some() || armed.is_some();
    let mut seeded = if reopened {
        rusqlite::Connection::open(&journal_path)
    } else {
        rusqlite::Connection::open_in_memory()
    }
    .map_err(|e| format!("cannot create the run's journal: {e}"))?;
    Journal::seed(&mut seeded).map_err(|e| format!("cannot create the run's journal: {e}"))?;
    let (keeper, mut first_journal) = if reopened {
        (Some(seeded), None)
    } else {
        let journal = Journal::from_connection(seeded, Durability::ProcessCrash)
            .map_err(|e| format!("cannot open the run's journal: {e}"))?;
        (None, Some(journal))
    };
    let mut keepers: Vec<rusqlite::Connection> = keeper.into_iter().collect();
    // At the crash point the journal is copied as it stands: what the doomed engine commits
    // after it (before the runner drops it) is lost, as a real crash loses it.
    let snapshot_path = PathBuf::from(format!("file:/{run_name}-crash?vfs=memdb"));
    let snapshot: Snapshot = Arc::new(Mutex::new(None));
    if let Some(t) = &armed {
        let (source, dest, slot) = (
            journal_path.clone(),
            snapshot_path.clone(),
            snapshot.clone(),
        );
        t.set_on_trip(Box::new(move || {
            let copy = copy_journal(&source, &dest);
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(copy);
        }));
    }
    let observer = Arc::new(HistoryObserver::with_trap(recorder.clone(), trap.clone()));

    let mut timeline = build_timeline(scenario, &world, |d| d);
    // The scenario's site, not a mutant's: the bound is the one the checker holds it to.
    let drift_until = drift_watch_until(&scenario.site, &timeline);
    // A restart starts the drift watch afresh: a drift gets its bound again from there.
    let mut last_restart: Option<Duration> = None;

    let mut open = |journal_path: &Path| -> Result<Engine, String> {
        // The lab's crashes drop the engine, not the machine: the in-memory journal outlives
        // the engine exactly as a file outlives a real process crash.
        let journal = match first_journal.take() {
            Some(journal) => journal,
            None => Journal::open_with(journal_path, Durability::ProcessCrash)
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
    let mut engine = Some(open(&journal_path)?);
    // Detections the sender still holds because the engine was down: it sends them again.
    let mut held: Vec<Detection> = Vec::new();
    // Commands an operator sends again because the engine died before answering them (and
    // before journaling them).
    let mut held_commands: Vec<crate::engine::Command> = Vec::new();
    let trap_ref = armed.as_deref();
    let settle = {
        let engine_spec = site.topology.engine;
        // Default settle: the operation deadline plus the one read R19 allows after it, so an
        // operation that runs into its deadline can still finish inside the run.
        scenario
            .settle
            .unwrap_or(engine_spec.operation_deadline + engine_spec.call_timeout)
    };
    let mut index = 0;
    loop {
        // A sweep's crash point was reached: the engine dies now, its journal is the copy
        // taken at the point, and it restarts after the usual delay.
        if let Some(t) = trap_ref.filter(|t| t.take_pending()) {
            let copy = snapshot.lock().unwrap_or_else(|e| e.into_inner()).take();
            match copy {
                Some(Ok(conn)) => {
                    keepers.push(conn);
                    journal_path = snapshot_path.clone();
                }
                Some(Err(e)) => {
                    return Err(format!("cannot copy the journal at the crash point: {e}"))
                }
                None => return Err("the crash point left no journal copy".into()),
            }
            if engine.take().is_some() {
                recorder.record(EventKind::Crash);
                let now = origin.elapsed();
                schedule_restart(&mut timeline, index, now + SWEEP_RESTART_AFTER);
            } else {
                // Tripped while opening: the restart that opened it is undone.
                t.thaw();
            }
        }
        if index >= timeline.len() {
            let Some(e) = &engine else { break };
            // After a sweep's crash the resumed operations start over with a fresh deadline
            // (R16, R19) and their last read may wait for a device slot behind the others: the
            // run settles twice as long, so a crash run ends with its operations ended.
            let settle = if trap_ref.is_some_and(|t| t.fired()) {
                settle.saturating_mul(2)
            } else {
                settle
            };
            let finished = or_crash(trap_ref, async {
                // A drift (a switch reboot, an external change) is the drift watch's to find:
                // the run lasts until INV-12's bound for it has passed, then until the engine
                // is idle.
                if let Some(until) = drift_until {
                    let restarted = last_restart
                        .map(|at| at + crate::check::drift_detection_bound(&scenario.site))
                        .unwrap_or_default();
                    tokio::time::sleep_until(origin + until.max(restarted)).await;
                }
                // The run ends when the engine is idle, or `settle` after the last event.
                let _ = tokio::time::timeout(settle, e.wait_idle()).await;
            })
            .await;
            if finished.is_none() {
                continue;
            }
            if mutant == Some(Mutant::RevertOnFailure) {
                revert_failed(&site, &world, &observer).await;
            }
            break;
        }
        let at = timeline[index].0;
        if or_crash(trap_ref, tokio::time::sleep_until(origin + at))
            .await
            .is_none()
        {
            continue;
        }
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
                let (unsent, reason) = match &engine {
                    Some(e) => (
                        send_burst(e, &recorder, &observer, trap_ref, burst).await,
                        "engine crashed before acknowledging",
                    ),
                    None => (burst, "engine down"),
                };
                for d in unsent {
                    recorder.record(EventKind::DetectionRefused {
                        source: d.source.clone(),
                        event_id: d.event_id.clone(),
                        reason: reason.into(),
                    });
                    held.push(d);
                }
            }
            Step::Command(c) => match &engine {
                Some(e) => {
                    let paths = (journal_path.as_path(), snapshot_path.as_path());
                    let held_now = send_command(e, &recorder, trap_ref, paths, c).await?;
                    held_commands.extend(held_now);
                }
                None => {
                    let (action, lserver) = command_names(&c);
                    recorder.record(EventKind::CommandSubmitted {
                        action,
                        lserver,
                        operation: None,
                        refused: Some("engine down".into()),
                    });
                }
            },
            Step::Crash(restart_after) => {
                if engine.take().is_some() {
                    recorder.record(EventKind::Crash);
                    schedule_restart(&mut timeline, index, at + restart_after);
                }
            }
            Step::Restart if engine.is_some() => {}
            Step::Restart => {
                last_restart = Some(at);
                if let Some(t) = trap_ref {
                    t.thaw();
                }
                if mutant == Some(Mutant::DropOnCrash) {
                    forget_unfinished(&journal_path)?;
                }
                let e = engine.insert(open(&journal_path)?);
                recorder.record(EventKind::Restart);
                let resend = std::mem::take(&mut held);
                let unsent = send_in_turn(e, &recorder, &observer, trap_ref, resend).await;
                for d in unsent {
                    recorder.record(EventKind::DetectionRefused {
                        source: d.source.clone(),
                        event_id: d.event_id.clone(),
                        reason: "engine crashed before acknowledging".into(),
                    });
                    held.push(d);
                }
                for c in std::mem::take(&mut held_commands) {
                    let paths = (journal_path.as_path(), snapshot_path.as_path());
                    let held_now = send_command(e, &recorder, trap_ref, paths, c).await?;
                    held_commands.extend(held_now);
                }
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
    if mutant == Some(Mutant::LeakIpOnRollback) {
        super::mutants::leak_rolled_back_ips(&journal_path)?;
    }
    let record = collect(&site, &world, &recorder, engine.as_ref(), &journal_path)?;
    drop(engine);
    drop(keepers);
    Ok((record, world.fault_accounting()))
}

/// Sends a command and records its answer. Under a crash trap that trips first, the command
/// stands when its queueing made the journal copy taken at the crash (`paths`: the live
/// journal, the copy), and is returned, to be sent again after the restart, when it did not.
async fn send_command(
    engine: &Engine,
    recorder: &Recorder,
    trap: Option<&CrashTrap>,
    paths: (&Path, &Path),
    c: crate::engine::Command,
) -> Result<Option<crate::engine::Command>, String> {
    let (action, lserver) = command_names(&c);
    let before = match trap {
        Some(_) => last_operation(paths.0)?,
        None => 0,
    };
    let mut again = None;
    let result = match or_crash(trap, engine.submit_command(c.clone())).await {
        Some(result) => result.map_err(|e| e.to_string()),
        None => match command_operation(paths.1, &lserver, before)? {
            Some(id) => Ok(id),
            None => {
                again = Some(c);
                Err("engine crashed before answering".to_string())
            }
        },
    };
    recorder.record(EventKind::CommandSubmitted {
        action,
        lserver,
        operation: result.as_ref().ok().copied(),
        refused: result.err(),
    });
    Ok(again)
}

/// Sends held detections again one after the other, as a sender working through its backlog
/// does; returns those left unacknowledged by a crash (with the rest of the backlog).
async fn send_in_turn(
    engine: &Engine,
    recorder: &Recorder,
    observer: &HistoryObserver,
    trap: Option<&CrashTrap>,
    backlog: Vec<Detection>,
) -> Vec<Detection> {
    let mut backlog = backlog.into_iter();
    while let Some(d) = backlog.next() {
        if or_crash(trap, submit(engine, recorder, d.clone()))
            .await
            .is_none()
        {
            let mut left: Vec<Detection> = Vec::new();
            if !observer.acked(&d) {
                left.push(d);
            }
            left.extend(backlog);
            return left;
        }
    }
    Vec::new()
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
