//! The runner: one scenario on a current-thread tokio runtime with a paused clock, the real
//! engine against the simulated world, events played at their times by the timeline player
//! ([`super::player`], the one wire mode uses too; this file is its sim backend), crashes that
//! abort the engine's tasks and reopen its journal, and the run's history for the checkers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use tokio::time::Instant;

use super::load::{EventAction, Scenario};
use super::player::{self, build_timeline, command_names, Backend, PlayedStep};
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
    /// An engine task panics after the run's first step, so the engine halts mid-run: proof
    /// that the runner fails such a run with the halt's reason instead of taking it for idle.
    HaltEngine,
}

impl Mutant {
    /// Every broken engine, in the order help texts list them.
    pub const ALL: [Mutant; 7] = [
        Mutant::TrustDevice,
        Mutant::RevertOnFailure,
        Mutant::DropOnCrash,
        Mutant::RewriteOnReadFailure,
        Mutant::LeakIpOnRollback,
        Mutant::NoDriftWatch,
        Mutant::HaltEngine,
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
            Mutant::HaltEngine => "halt-engine",
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
    /// The path the timeline player took (the same in sim and wire mode for the same scenario
    /// and seed; see [`super::player`]).
    pub played: Vec<PlayedStep>,
}

/// Sites from this many L-Servers on write their journal behind
/// ([`crate::engine::Journal::commit_behind`]). Below, a writer thread per run costs more than
/// it saves: with a thread per run, exploring the mixed site (18 L-Servers) fell from 2,836 to
/// 2,251 runs/s; an outbreak of 100,000 L-Servers spent 5.0 s instead of 7.3 s playing.
const WRITE_BEHIND_LSERVERS: usize = 1_000;

/// Numbers the runs of this process, so each gets its own in-memory journal.
static NEXT_RUN: AtomicU64 = AtomicU64::new(0);

/// When a run with a drift at `last_drift` has given the drift watch INV-12's `bound` to find
/// it: that bound after the drift, and after the last restart (a restarted engine watches
/// again from its start).
pub(crate) fn drift_watch_end(
    last_drift: Duration,
    last_restart: Option<Duration>,
    bound: Duration,
) -> Duration {
    let restarted = last_restart.map(|at| at + bound).unwrap_or_default();
    (last_drift + bound).max(restarted)
}

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
    let (record, faults, played) = play_sim_path(scenario, seed, mutant, trap)?;
    Ok(ScenarioRun::checked(
        scenario,
        record,
        faults,
        Default::default(),
        played,
    ))
}

impl ScenarioRun {
    /// The run of `scenario` that played `record`: its history digest, the checks and the
    /// verdict (the same in sim and wire mode).
    pub(crate) fn checked(
        scenario: &Scenario,
        record: RunRecord,
        faults: Vec<FaultAccount>,
        transports: std::collections::BTreeMap<String, u64>,
        played: Vec<PlayedStep>,
    ) -> ScenarioRun {
        // The digest and the checks only read the record: a large run computes them side by
        // side.
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
        ScenarioRun {
            record,
            history_digest,
            check,
            passed,
            faults,
            transports,
            played,
        }
    }
}

/// Plays `scenario` on its own paused-clock runtime: the record and the fault accounting,
/// unchecked.
pub fn play_sim(
    scenario: &Scenario,
    seed: u64,
    mutant: Option<Mutant>,
    trap: Option<Arc<CrashTrap>>,
) -> Result<(RunRecord, Vec<FaultAccount>), String> {
    play_sim_path(scenario, seed, mutant, trap).map(|(record, faults, _)| (record, faults))
}

/// [`play_sim`] with the path the player took.
fn play_sim_path(
    scenario: &Scenario,
    seed: u64,
    mutant: Option<Mutant>,
    trap: Option<Arc<CrashTrap>>,
) -> Result<(RunRecord, Vec<FaultAccount>, Vec<PlayedStep>), String> {
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
    /// Under a trap or in wire mode, how often the engine acknowledged each detection
    /// (`source`, `event_id`): a burst cut by a crash point resends only the others, and a
    /// wire burst knows which of its detections went unacknowledged.
    acks: Option<Mutex<HashMap<(String, String), u32>>>,
}

impl HistoryObserver {
    pub(super) fn new(recorder: Recorder) -> HistoryObserver {
        HistoryObserver::with_trap(recorder, None)
    }

    /// An observer that counts acknowledgements per detection ([`HistoryObserver::acks`]).
    pub(super) fn counting_acks(recorder: Recorder) -> HistoryObserver {
        HistoryObserver {
            acks: Some(Mutex::new(HashMap::new())),
            ..HistoryObserver::new(recorder)
        }
    }

    pub(super) fn with_trap(recorder: Recorder, trap: Option<Arc<CrashTrap>>) -> HistoryObserver {
        HistoryObserver {
            recorder,
            failed: Mutex::new(Vec::new()),
            acks: trap.as_ref().map(|_| Mutex::new(HashMap::new())),
            trap,
        }
    }

    /// How often the engine acknowledged `d` so far (counted under a trap or by
    /// [`HistoryObserver::counting_acks`] only; 0 otherwise).
    pub(super) fn acks(&self, d: &Detection) -> u32 {
        self.acks.as_ref().map_or(0, |acks| {
            acks.lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&(d.source.clone(), d.event_id.clone()))
                .copied()
                .unwrap_or(0)
        })
    }

    /// Whether the engine acknowledged `d` (tracked under a trap only).
    fn acked(&self, d: &Detection) -> bool {
        self.acks(d) > 0
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
        }
        if let (
            Some(acks),
            EngineEvent::DetectionJournaled {
                source, event_id, ..
            },
        ) = (&self.acks, event)
        {
            *acks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry((source.clone(), event_id.clone()))
                .or_default() += 1;
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

/// Room to reserve for a run's history: an outbreak records about a dozen events per
/// L-Server (detection, plan, calls, commits, outcome); a few more leave slack for retries
/// before the history has to grow.
fn expected_events(site: &Site) -> usize {
    const EVENTS_PER_LSERVER: usize = 16;
    site.lservers.len().saturating_mul(EVENTS_PER_LSERVER)
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
) -> Result<(RunRecord, Vec<FaultAccount>, Vec<PlayedStep>), String> {
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
    let journal_path = PathBuf::from(format!("file:/{run_name}?vfs=memdb"));
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
    let (keeper, first_journal) = if reopened {
        (Some(seeded), None)
    } else {
        // Private and never reopened: no rollback journal ([`Durability::Scratch`]); on a
        // large site its commits are applied on a thread of their own while the engine goes
        // on (write-behind).
        let mut journal = Journal::from_connection(seeded, Durability::Scratch)
            .map_err(|e| format!("cannot open the run's journal: {e}"))?;
        if site.lservers.len() >= WRITE_BEHIND_LSERVERS {
            journal
                .commit_behind()
                .map_err(|e| format!("cannot open the run's journal: {e}"))?;
        }
        (None, Some(journal))
    };
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
    let timeline = build_timeline(scenario, &world);
    let settle = {
        let engine_spec = site.topology.engine;
        // Default settle: the operation deadline plus the one read R19 allows after it, so an
        // operation that runs into its deadline can still finish inside the run.
        scenario
            .settle
            .unwrap_or(engine_spec.operation_deadline + engine_spec.call_timeout)
    };
    let mut backend = SimBackend {
        site,
        bound_site: &scenario.site,
        world: &world,
        recorder: &recorder,
        observer,
        mutant,
        trap: armed,
        origin,
        engine: None,
        first_journal,
        journal_path,
        snapshot_path,
        snapshot,
        keepers: keeper.into_iter().collect(),
        settle,
    };
    backend.engine = Some(backend.open()?);
    let played = player::play(&mut backend, &world, &recorder, timeline).await?;
    if mutant == Some(Mutant::LeakIpOnRollback) {
        super::mutants::leak_rolled_back_ips(&backend.journal_path)?;
    }
    let record = collect(
        &backend.site,
        &world,
        &recorder,
        backend.engine.as_ref(),
        &backend.journal_path,
    )?;
    // The engine goes before the connections that keep its in-memory journal alive.
    drop(backend.engine.take());
    drop(backend);
    Ok((record, world.fault_accounting(), played))
}

/// Sim mode's side of the player: the real engine on the paused clock against the simulated
/// world, its journal in memory, crashes that drop it (and, under a crash sweep's trap, crash
/// points that trip anywhere the engine awaits).
struct SimBackend<'a> {
    /// The site the engine runs on (a mutant's may differ from the scenario's).
    site: Arc<Site>,
    /// The scenario's site: the drift bound is the one the checker holds the run to.
    bound_site: &'a Site,
    world: &'a SimWorld,
    recorder: &'a Recorder,
    observer: Arc<HistoryObserver>,
    mutant: Option<Mutant>,
    /// An armed crash trap (a sweep's crash run).
    trap: Option<Arc<CrashTrap>>,
    origin: Instant,
    engine: Option<Engine>,
    /// The seeded journal of a run that never reopens it, taken by the first open.
    first_journal: Option<Journal>,
    journal_path: PathBuf,
    snapshot_path: PathBuf,
    snapshot: Snapshot,
    /// Connections that keep the in-memory journals alive across crashes.
    keepers: Vec<rusqlite::Connection>,
    settle: Duration,
}

impl SimBackend<'_> {
    fn open(&mut self) -> Result<Engine, String> {
        // The lab's crashes drop the engine, not the machine: the in-memory journal outlives
        // the engine exactly as a file outlives a real process crash.
        let journal = match self.first_journal.take() {
            Some(journal) => journal,
            None => Journal::open_with(&self.journal_path, Durability::ProcessCrash)
                .map_err(|e| e.to_string())?,
        };
        let options = EngineOptions {
            hostname: "qlab-sim".into(),
            origin_ms: 0,
            observer: Some(self.observer.clone()),
            ..EngineOptions::default()
        };
        let adapters = match self.mutant {
            Some(Mutant::RewriteOnReadFailure) => {
                super::mutants::rewrite_on_read_failure(self.world.adapters())
            }
            _ => self.world.adapters(),
        };
        Engine::open(self.site.clone(), journal, adapters, options).map_err(|e| e.to_string())
    }
}

impl Backend for SimBackend<'_> {
    fn up(&self) -> bool {
        self.engine.is_some()
    }

    fn crashed_itself(&mut self) -> Result<Option<Duration>, String> {
        // A sweep's crash point was reached: the engine dies now, its journal is the copy
        // taken at the point, and it restarts after the usual delay.
        let Some(t) = self.trap.as_deref().filter(|t| t.take_pending()) else {
            return Ok(None);
        };
        let copy = self
            .snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match copy {
            Some(Ok(conn)) => {
                self.keepers.push(conn);
                self.journal_path = self.snapshot_path.clone();
            }
            Some(Err(e)) => return Err(format!("cannot copy the journal at the crash point: {e}")),
            None => return Err("the crash point left no journal copy".into()),
        }
        if self.engine.take().is_some() {
            Ok(Some(self.origin.elapsed() + SWEEP_RESTART_AFTER))
        } else {
            // Tripped while opening: the restart that opened it is undone.
            t.thaw();
            Ok(None)
        }
    }

    async fn wait_until(&mut self, at: Duration) -> bool {
        or_crash(
            self.trap.as_deref(),
            tokio::time::sleep_until(self.origin + at),
        )
        .await
        .is_some()
    }

    async fn detect(&mut self, burst: Vec<Detection>) -> Vec<Detection> {
        let Some(e) = &self.engine else {
            return burst;
        };
        let trap = self.trap.as_deref();
        send_burst(e, self.recorder, &self.observer, trap, burst).await
    }

    async fn resend(&mut self, backlog: Vec<Detection>) -> Vec<Detection> {
        let Some(e) = &self.engine else {
            return backlog;
        };
        let trap = self.trap.as_deref();
        send_in_turn(e, self.recorder, &self.observer, trap, backlog).await
    }

    async fn command(
        &mut self,
        command: crate::engine::Command,
    ) -> Result<Option<crate::engine::Command>, String> {
        let Some(e) = &self.engine else {
            return Ok(Some(command));
        };
        let paths = (self.journal_path.as_path(), self.snapshot_path.as_path());
        send_command(e, self.recorder, self.trap.as_deref(), paths, command).await
    }

    async fn crash(&mut self) {
        // On the current-thread runtime no engine task runs while this does, and the runner
        // holds the only handle: dropping the engine is the whole crash.
        self.engine = None;
    }

    async fn restart(&mut self, _at: Duration) -> Result<(), String> {
        if let Some(t) = &self.trap {
            t.thaw();
        }
        if self.mutant == Some(Mutant::DropOnCrash) {
            forget_unfinished(&self.journal_path)?;
        }
        self.engine = Some(self.open()?);
        Ok(())
    }

    async fn idle(
        &mut self,
        last_drift: Option<Duration>,
        last_restart: Option<Duration>,
    ) -> Result<bool, String> {
        let Some(e) = &self.engine else {
            return Ok(true);
        };
        let trap = self.trap.as_deref();
        // After a sweep's crash the resumed operations start over with a fresh deadline
        // (R16, R19) and their last read may wait for a device slot behind the others: the
        // run settles twice as long, so a crash run ends with its operations ended.
        let settle = if trap.is_some_and(|t| t.fired()) {
            self.settle.saturating_mul(2)
        } else {
            self.settle
        };
        let bound = crate::check::drift_settle_bound(self.bound_site);
        let origin = self.origin;
        let finished = or_crash(trap, async {
            // A drift (a switch reboot, an external change) is the drift watch's to find:
            // the run lasts until INV-12's bound for it has passed, then until the engine
            // is idle.
            if let Some(last) = last_drift {
                tokio::time::sleep_until(origin + drift_watch_end(last, last_restart, bound)).await;
            }
            // The run ends when the engine is idle, or `settle` after the last event.
            let _ = tokio::time::timeout(settle, e.wait_idle()).await;
        })
        .await;
        // A crash trap freezes the world and never halts the engine: only a run that finished
        // can have ended on a halt.
        if finished.is_some() {
            player::not_halted(e)?;
        }
        Ok(finished.is_some())
    }

    async fn stepped(&mut self) {
        if self.mutant == Some(Mutant::RevertOnFailure) {
            revert_failed(&self.site, self.world, &self.observer).await;
        }
        if self.mutant == Some(Mutant::HaltEngine) {
            if let Some(e) = self.engine.as_ref().filter(|e| !e.is_halted()) {
                e.panic_an_engine_task_for_tests();
            }
        }
    }
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
