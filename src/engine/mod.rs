//! THE quarantine engine: intake of detections and commands, policy, planner, executor,
//! rollback, release, recovery, journal and alerts (rules R1–R19 of `docs/rules.md`).
//!
//! It knows devices only through the traits in [`crate::adapters`] and reads time only from
//! tokio's clock, so the same code runs in production, on the lab's paused clock and on the wire.

pub mod alerts;
mod device_queue;
mod drift_watch;
mod executor;
pub mod journal;
mod operation;
mod state;
pub mod stats;
pub mod types;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::task::JoinSet;

pub use alerts::{Alert, AlertCode, Severity};
pub use journal::{Journal, JournalError};
pub use types::*;

use crate::adapters::Adapters;
use crate::model::{Action, Detection, PolicySpec, Site};
use device_queue::DeviceQueue;
use journal::Entry;
use state::{Allocator, Clock, LsState, QueuedOp, Shared, State, Ticket, Waiting};

/// Something the engine did, for observers such as the lab's history recorder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEvent {
    /// A journal step committed; `commit` counts them since open.
    Committed {
        /// Commit number.
        commit: u64,
    },
    /// A detection was made durable (R7), or recognized as already journaled (R4).
    DetectionJournaled {
        /// The AV server.
        source: String,
        /// The sender's event id.
        event_id: String,
        /// What the engine acknowledged.
        receipt: DetectionReceipt,
    },
    /// An operation started: announced by the commit that makes its start durable, or at once
    /// when it resumes past its start after a restart.
    OperationStarted {
        /// Id.
        id: OperationId,
        /// L-Server.
        lserver: String,
        /// Kind.
        kind: OperationKind,
    },
    /// An operation ended.
    OperationFinished {
        /// Id.
        id: OperationId,
        /// L-Server.
        lserver: String,
        /// Outcome.
        outcome: Outcome,
    },
    /// An alert was journaled (R17).
    Alert(Alert),
    /// The journal failed or an engine task panicked; the engine stopped all device work.
    Halted {
        /// Why.
        reason: String,
    },
}

/// Receives [`EngineEvent`]s synchronously; must not block.
pub trait EngineObserver: Send + Sync {
    /// Called for every event, in order.
    fn on_event(&self, event: &EngineEvent);
}

/// How to run an engine beyond what the topology says.
#[derive(Clone)]
pub struct EngineOptions {
    /// Host name in syslog lines.
    pub hostname: String,
    /// Milliseconds that engine time reads at open (wall time in production, 0 in the lab).
    pub origin_ms: u64,
    /// Event observer.
    pub observer: Option<Arc<dyn EngineObserver>>,
    /// Most queued commands per L-Server; more are refused (R15 with a bound).
    pub max_lane_len: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            hostname: "qlab".into(),
            origin_ms: 0,
            observer: None,
            max_lane_len: 64,
        }
    }
}

/// Why the engine refused a request.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The journal failed; nothing was made durable.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The engine halted after a journal failure and accepts nothing more.
    #[error("the engine has halted after a journal failure")]
    Halted,
    /// The input is malformed or unknown (R18).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// No such L-Server.
    #[error("no L-Server {0}")]
    UnknownLServer(String),
    /// The command is not allowed in the L-Server's state.
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// Too many queued operations for one L-Server.
    #[error("too many queued operations for {0}")]
    QueueFull(String),
}

/// A running quarantine engine. Dropping it aborts every task at once, like a crash: the
/// journal is what survives (R16).
pub struct Engine {
    shared: Arc<Shared>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        let mut tasks = self.shared.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.abort_all();
    }
}

impl Engine {
    /// Opens the engine on `journal`, resuming every unfinished operation (R16) and
    /// re-sending undelivered alerts. Must be called inside a tokio runtime.
    pub fn open(
        site: Arc<Site>,
        mut journal: Journal,
        adapters: Adapters,
        options: EngineOptions,
    ) -> Result<Engine, EngineError> {
        let snapshot = journal.snapshot()?;
        // With no alert output an alert is delivered once journaled (R17): no marks to commit.
        journal.set_alerts_delivered_at_insert(adapters.alerts_go_nowhere());
        let reader = journal.open_reader()?.map(Mutex::new);
        let mut lservers: HashMap<String, LsState> = site
            .lservers
            .iter()
            .map(|ls| {
                let records = ls
                    .nics
                    .iter()
                    .map(|nic| NicRecord {
                        index: nic.index,
                        network: nic.network.clone(),
                        ip: nic.ip,
                        device_network: None,
                    })
                    .collect();
                let state = LsState {
                    state: LServerState::Normal,
                    status: "normal".into(),
                    outcome: None,
                    records,
                    lane: VecDeque::new(),
                    running: None,
                    started_ops: 0,
                    last_read: vec![None; ls.nics.len()],
                    worker: false,
                    marks: 0,
                };
                (ls.path.clone(), state)
            })
            .collect();
        for row in &snapshot.lservers {
            if let Some(ls) = lservers.get_mut(&row.path) {
                ls.state = row.state;
                ls.status = row.status.clone();
                ls.outcome = row.outcome;
            }
        }
        for (path, record) in &snapshot.nic_records {
            if let Some(slot) = lservers
                .get_mut(path)
                .and_then(|ls| ls.records.get_mut(record.index))
            {
                *slot = record.clone();
            }
        }
        let mut allocator = Allocator::default();
        for (network, ip, lserver, _) in &snapshot.allocations {
            allocator.insert(network, *ip, lserver);
        }
        let t = &site.topology;
        let call_timeout = t.engine.call_timeout;
        let devices = t
            .hypervisors
            .iter()
            .map(|h| (h.name.clone(), h.max_concurrent, 1))
            .chain(t.switches.iter().map(|s| {
                // R15: a switch whose protocol carries several commands per request takes up to
                // `max_batch` pending port changes in one call.
                let batches = adapters.switches.get(&s.name).is_some_and(|a| a.batches());
                let batch = if batches { s.max_batch.max(1) } else { 1 };
                (s.name.clone(), s.max_concurrent, batch)
            }))
            .chain(t.bmcs.iter().map(|b| (b.name.clone(), b.max_concurrent, 1)))
            .map(|(name, concurrency, batch)| {
                let queue = DeviceQueue::new(concurrency as usize, batch as usize, call_timeout);
                (name, queue)
            })
            .collect();
        let state = State {
            lservers,
            allocator,
            next_detection_id: snapshot.next_detection_id,
            next_operation_id: snapshot.next_operation_id,
            next_alert_seq: snapshot.next_alert_seq,
            running_lanes: 0,
            pending: Vec::new(),
            spare: Vec::new(),
            pending_detections: HashMap::new(),
            inflight_detections: HashMap::new(),
            flush_epoch: 0,
            staged: 0,
        };
        let shared = Arc::new(Shared {
            settings: t.engine,
            policy: Mutex::new(Arc::new(t.policy.clone())),
            site: site.clone(),
            adapters,
            state: Mutex::new(state),
            devices,
            clock: Clock::new(options.origin_ms),
            hostname: options.hostname,
            observer: options.observer,
            halted: AtomicBool::new(false),
            halt_reason: Mutex::new(None),
            halt_announced: AtomicBool::new(false),
            halt_notice: Notify::new(),
            idle: Notify::new(),
            tasks: Mutex::new(JoinSet::new()),
            max_lane_len: options.max_lane_len.max(1),
            flushed: AtomicU64::new(0),
            journal: Mutex::new(journal),
            reader,
            flush_done: Notify::new(),
            committing: AtomicBool::new(false),
            calls_in_flight: AtomicUsize::new(0),
            stats: stats::EngineStats::default(),
        });
        {
            // R16: resume in journal order, so each L-Server's lane keeps its arrival order.
            let mut state = shared.lock();
            for open in snapshot.open_operations {
                if !state.lservers.contains_key(&open.lserver) {
                    tracing::warn!(lserver = %open.lserver, "journaled operation for an L-Server the topology no longer has");
                    continue;
                }
                let path = open.lserver.clone();
                shared.stats.resumed(open.id, open.kind);
                let op = QueuedOp {
                    id: open.id,
                    kind: open.kind,
                    resume: Some(open),
                };
                enqueue(&shared, &mut state, &path, op);
            }
        }
        executor::redeliver_in_background(&shared, snapshot.undelivered_alerts);
        shared.spawn(drift_watch::watch(shared.clone()));
        Ok(Engine { shared })
    }

    /// Takes a detection (R1–R5) and returns once it is durable (R7).
    pub async fn submit_detection(
        &self,
        detection: Detection,
    ) -> Result<DetectionReceipt, EngineError> {
        self.submit_detection_by(detection, None).await
    }

    /// [`Engine::submit_detection`], journaling `submitted_by` (the name of the API token
    /// that sent it) with the detection for audit.
    pub async fn submit_detection_by(
        &self,
        detection: Detection,
        submitted_by: Option<String>,
    ) -> Result<DetectionReceipt, EngineError> {
        detection.check().map_err(EngineError::Invalid)?;
        let shared = &self.shared;
        if !shared
            .site
            .topology
            .av_servers
            .iter()
            .any(|a| a.name == detection.source)
        {
            return Err(EngineError::Invalid(format!(
                "unknown AV server {:?}",
                detection.source
            )));
        }
        let policy = shared
            .policy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let (ticket, receipt, alerts, duplicate) =
            self.stage_detection(detection, &policy, submitted_by)?;
        self.shared
            .durable(ticket, Waiting::Reply)
            .await
            .map_err(|_| EngineError::Halted)?;
        if let Some(event) = duplicate {
            self.shared.emit(event);
        }
        executor::deliver_alerts_in_background(&self.shared, alerts);
        Ok(receipt)
    }

    /// The locked half of [`Engine::submit_detection`]: decides, stages and queues; returns the
    /// step's ticket, the receipt, the step's alerts and, for a duplicate, its announcement.
    #[allow(clippy::type_complexity)]
    fn stage_detection(
        &self,
        detection: Detection,
        policy: &PolicySpec,
        submitted_by: Option<String>,
    ) -> Result<(Ticket, DetectionReceipt, Vec<Alert>, Option<EngineEvent>), EngineError> {
        let shared = &self.shared;
        let (mut state, earlier) = find_detection(shared, &detection.source, &detection.event_id)?;
        if shared.is_halted() {
            return Err(EngineError::Halted);
        }
        if let Some((stored, durable_at)) = earlier {
            // R4: the same event again is acknowledged and changes nothing; the ack waits
            // until the first copy is durable (not for later steps: a journaled first copy
            // is answered at once, even while a commit is under way).
            let receipt = DetectionReceipt {
                disposition: Disposition::Duplicate,
                ..stored
            };
            let duplicate = EngineEvent::DetectionJournaled {
                source: detection.source,
                event_id: detection.event_id,
                receipt: receipt.clone(),
            };
            return Ok((durable_at, receipt, Vec::new(), Some(duplicate)));
        }
        let now = shared.now_ms();
        let id = state.next_detection_id;
        let mut entries = Vec::new();
        let mut queued = None;
        let lserver = resolve(shared, &state, &detection);
        let disposition = if !detection.category.triggers_action()
            || policy.excluded_keyword(&detection.threat).is_some()
        {
            // R1, R2.
            if let Some(path) = &lserver {
                let ls = state.ls(path);
                if ls.outcome.is_none() {
                    entries.push(Entry::LServer {
                        path: path.clone(),
                        state: ls.state,
                        status: ls.status.clone(),
                        outcome: Some(Outcome::Ignored),
                    });
                }
            }
            Disposition::Ignored
        } else if let Some(path) = &lserver {
            let action = policy.action_for(path);
            let ls = state.ls(path);
            let busy_quarantining = ls.will_be_quarantined();
            match OperationKind::for_action(action) {
                None if busy_quarantining || ls.state == LServerState::PendingDecision => {
                    Disposition::Duplicate
                }
                None => {
                    let status = ls.status.clone();
                    let detail = format!(
                        "threat {} ({}) on {path}; choose quarantine, reboot or quarantine_reboot",
                        detection.threat,
                        detection.category.as_str()
                    );
                    let alert = state.alert(
                        now,
                        AlertCode::DecisionRequired,
                        Some(path),
                        detection.ip,
                        None,
                        detail,
                    );
                    entries.push(Entry::LServer {
                        path: path.clone(),
                        state: LServerState::PendingDecision,
                        status,
                        outcome: Some(Outcome::PendingDecision),
                    });
                    entries.push(Entry::Alert(alert));
                    Disposition::PendingDecision
                }
                Some(kind)
                    if (kind.quarantines() && busy_quarantining)
                        || (!kind.quarantines() && ls.has_unfinished(|o| o.kind == kind)) =>
                {
                    Disposition::Duplicate
                }
                Some(kind) => {
                    let op = state.next_operation_id;
                    state.next_operation_id += 1;
                    entries.push(Entry::OperationQueued {
                        id: op,
                        lserver: path.clone(),
                        kind,
                        detection: Some(id),
                        created_ms: now,
                        requested_by: None,
                    });
                    queued = Some(QueuedOp {
                        id: op,
                        kind,
                        resume: None,
                    });
                    Disposition::Accepted
                }
            }
        } else {
            // R3: nobody to quarantine, one ERROR alert naming the address.
            let named = detection
                .ip
                .map(|ip| format!("ip={ip}"))
                .or(detection.mac.clone())
                .or(detection.hostname.clone())
                .unwrap_or_default();
            let alert = state.alert(
                now,
                AlertCode::LserverNotFound,
                None,
                detection.ip,
                None,
                format!("L-Server not found. {named}"),
            );
            entries.push(Entry::Alert(alert));
            Disposition::NotFound
        };
        let receipt = DetectionReceipt {
            id,
            disposition,
            lserver: lserver.clone(),
            operation: queued.as_ref().map(|q| q.id),
        };
        entries.insert(
            0,
            Entry::Detection {
                id,
                detection,
                received_ms: now,
                lserver: lserver.clone(),
                disposition,
                operation: receipt.operation,
                submitted_by,
            },
        );
        state.next_detection_id += 1;
        apply_lserver_entries(&mut state, &entries);
        let alerts = journal::alerts_in(&entries);
        let ticket = shared
            .stage(&mut state, entries)
            .map_err(|_| EngineError::Halted)?;
        // Queued at once so a second detection sees it (R4). Its lane may stage the operation's
        // first step before this one is durable; no device call comes before the commit that
        // carries both, which announces the detection first (cause before effect, R7).
        if let (Some(path), Some(op)) = (&lserver, queued) {
            enqueue(shared, &mut state, path, op);
        }
        Ok((ticket, receipt, alerts, None))
    }

    /// Takes an administrator's command and returns the queued operation's id once durable.
    pub async fn submit_command(&self, command: Command) -> Result<OperationId, EngineError> {
        self.submit_command_by(command, None).await
    }

    /// [`Engine::submit_command`], journaling `requested_by` (the name of the API token that
    /// asked) with the queued operation for audit; `GET /operations/{id}` shows it.
    pub async fn submit_command_by(
        &self,
        command: Command,
        requested_by: Option<String>,
    ) -> Result<OperationId, EngineError> {
        let (ticket, id) = self.stage_command(command, requested_by)?;
        self.shared
            .durable(ticket, Waiting::Reply)
            .await
            .map_err(|_| EngineError::Halted)?;
        Ok(id)
    }

    /// The locked half of [`Engine::submit_command`]: checks, stages and queues.
    fn stage_command(
        &self,
        command: Command,
        requested_by: Option<String>,
    ) -> Result<(Ticket, OperationId), EngineError> {
        let shared = &self.shared;
        let path = command.lserver().to_string();
        let mut state = shared.lock();
        if shared.is_halted() {
            return Err(EngineError::Halted);
        }
        let Some(ls) = state.lservers.get(&path) else {
            return Err(EngineError::UnknownLServer(path));
        };
        if ls.pending() >= shared.max_lane_len {
            return Err(EngineError::QueueFull(path));
        }
        let mut entries = Vec::new();
        let kind = match &command {
            Command::Quarantine { .. } => OperationKind::ManualQuarantine,
            Command::Release { .. } => {
                let will_be_quarantined = ls.has_unfinished(|o| o.kind.quarantines());
                if !ls.state.allows_release() && !will_be_quarantined {
                    return Err(EngineError::NotAllowed(format!(
                        "release needs a quarantined, quarantine_failed or release_failed L-Server; {path} is {}",
                        ls.state.as_str()
                    )));
                }
                OperationKind::Release
            }
            Command::Decide { choice, .. } => {
                if ls.state != LServerState::PendingDecision {
                    return Err(EngineError::NotAllowed(format!(
                        "{path} is not waiting for a decision (it is {})",
                        ls.state.as_str()
                    )));
                }
                let Some(kind) =
                    OperationKind::for_action(*choice).filter(|_| *choice != Action::None)
                else {
                    return Err(EngineError::Invalid(
                        "choice must be quarantine, reboot or quarantine_reboot".into(),
                    ));
                };
                entries.push(Entry::LServer {
                    path: path.clone(),
                    state: LServerState::Normal,
                    status: ls.status.clone(),
                    outcome: ls.outcome,
                });
                kind
            }
        };
        let id = state.next_operation_id;
        let now = shared.now_ms();
        entries.push(Entry::OperationQueued {
            id,
            lserver: path.clone(),
            kind,
            detection: None,
            created_ms: now,
            requested_by,
        });
        state.next_operation_id += 1;
        apply_lserver_entries(&mut state, &entries);
        let ticket = shared
            .stage(&mut state, entries)
            .map_err(|_| EngineError::Halted)?;
        enqueue(
            shared,
            &mut state,
            &path,
            QueuedOp {
                id,
                kind,
                resume: None,
            },
        );
        Ok((ticket, id))
    }

    /// Replaces the policy without a restart (the modelled product re-reads its policy file).
    pub fn set_policy(&self, policy: PolicySpec) {
        *self.shared.policy.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
    }

    /// The engine's counters and histograms with the queue depths of this moment
    /// (monitoring: `GET /metrics`).
    pub fn stats(&self) -> stats::StatsSnapshot {
        let mut queues = stats::QueueDepths::default();
        {
            let state = self.shared.lock();
            for ls in state.lservers.values() {
                queues.operations_queued += ls.lane.len();
                queues.operations_running += usize::from(ls.running.is_some());
            }
            queues.journal_pending_entries = state.pending.len();
        }
        for (name, queue) in &self.shared.devices {
            queues.devices.insert(name.clone(), queue.depth());
        }
        self.shared.stats.snapshot(queues)
    }

    /// The policy in force (the topology's, or the last one [`Engine::set_policy`] set).
    pub fn policy(&self) -> Arc<PolicySpec> {
        self.shared
            .policy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The site the engine manages.
    pub fn site(&self) -> &Arc<Site> {
        &self.shared.site
    }

    /// One L-Server's records and state.
    pub fn lserver(&self, path: &str) -> Option<LServerView> {
        let state = self.shared.lock();
        state.lservers.get(path).map(|ls| view(path, ls))
    }

    /// Every L-Server in topology order.
    pub fn lservers(&self) -> Vec<LServerView> {
        let state = self.shared.lock();
        self.shared
            .site
            .lservers
            .iter()
            .filter_map(|l| state.lservers.get(&l.path).map(|ls| view(&l.path, ls)))
            .collect()
    }

    /// One operation from the journal.
    pub fn operation(&self, id: OperationId) -> Result<Option<OperationView>, EngineError> {
        Ok(self.shared.journal().operation(id)?)
    }

    /// Every operation from the journal, in id order.
    pub fn operations(&self) -> Result<Vec<OperationView>, EngineError> {
        Ok(self.shared.journal().operations()?)
    }

    /// Alerts after sequence number `since`, at most `limit`.
    pub fn alerts_since(&self, since: i64, limit: usize) -> Result<Vec<Alert>, EngineError> {
        Ok(self.shared.journal().alerts_since(since, limit)?)
    }

    /// What the journal holds (committed steps only), read through the engine's own connection.
    pub fn journal_snapshot(&self) -> Result<journal::Snapshot, EngineError> {
        Ok(self.shared.journal().snapshot()?)
    }

    /// Whether the engine halted (a journal failure or a task's panic).
    pub fn is_halted(&self) -> bool {
        self.shared.is_halted()
    }

    /// Why the engine halted, once it did.
    pub fn halt_reason(&self) -> Option<String> {
        self.shared
            .halt_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Resolves once the engine halted and said so (alert journaled, events emitted); at
    /// once when it has.
    pub async fn halted(&self) {
        loop {
            let notified = self.shared.halt_notice.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self
                .shared
                .halt_announced
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                return;
            }
            notified.await;
        }
    }

    /// Makes an engine task panic, to show that a panic halts the engine visibly. Only for
    /// tests of that path; nothing in the daemon calls it.
    #[doc(hidden)]
    pub fn panic_an_engine_task_for_tests(&self) {
        self.shared
            .spawn(async { panic!("a task panicked on purpose (test hook)") });
    }

    /// Waits until no operation is queued or running (or the engine halted).
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.shared.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.shared.is_halted() || self.shared.lock().running_lanes == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// R3: operation or current IP, then MAC, then host name.
fn resolve(shared: &Shared, state: &State, d: &Detection) -> Option<String> {
    let site = &shared.site;
    let by_ip = |ip: IpAddr| {
        site.lserver_by_ip(ip)
            .map(|l| l.path.clone())
            .or_else(|| state.allocator.owner(ip).map(str::to_string))
    };
    d.ip.and_then(by_ip)
        .or_else(|| {
            d.mac
                .as_deref()
                .and_then(|m| site.lserver_by_mac(m))
                .map(|l| l.path.clone())
        })
        .or_else(|| {
            d.hostname
                .as_deref()
                .and_then(|h| site.lserver_by_hostname(h))
                .map(|l| l.path.clone())
        })
}

/// Mirrors committed `LServer` entries in memory.
fn apply_lserver_entries(state: &mut State, entries: &[Entry]) {
    for entry in entries {
        if let Entry::LServer {
            path,
            state: s,
            status,
            outcome,
        } = entry
        {
            let ls = state.ls(path);
            ls.state = *s;
            ls.status = status.clone();
            ls.outcome = *outcome;
        }
    }
}

/// Appends to an L-Server's lane and starts its worker when none runs (R15).
fn enqueue(shared: &Arc<Shared>, state: &mut State, path: &str, op: QueuedOp) {
    let ls = state.ls(path);
    ls.lane.push_back(op);
    if !ls.worker {
        ls.worker = true;
        state.running_lanes += 1;
        let s = shared.clone();
        let p = path.to_string();
        shared.spawn(operation::lane_worker(s, p));
    }
}

fn view(path: &str, ls: &LsState) -> LServerView {
    LServerView {
        path: path.to_string(),
        state: ls.state,
        status: ls.status.clone(),
        outcome: ls.outcome,
        pending_operations: ls.pending(),
        nics: ls.records.clone(),
        // Verified: the latest read showed the NIC where its record says.
        last_verified_ms: ls
            .records
            .iter()
            .map(|r| match ls.last_read.get(r.index) {
                Some(Some((at, Some(network)))) if *network == r.network => Some(*at),
                _ => None,
            })
            .collect(),
    }
}

/// An earlier copy of a detection and the ticket its duplicate's acknowledgement waits for.
type Earlier = (DetectionReceipt, Ticket);

/// An earlier detection with the same `(source, event_id)`, staged, being committed or
/// journaled (R4), with the ticket a duplicate's acknowledgement waits for (0 when the earlier
/// copy is journaled: already durable), and the state lock under which that answer holds. The
/// journal is read without the state lock, through the reader when there is one (a commit may
/// be holding the journal for its fsync); the commit epoch tells whether a commit ended
/// meanwhile, in which case the search starts again.
fn find_detection<'a>(
    shared: &'a Shared,
    source: &str,
    event_id: &str,
) -> Result<(MutexGuard<'a, State>, Option<Earlier>), JournalError> {
    let key = (source.to_string(), event_id.to_string());
    // Staged or being committed: durable with the steps staged so far.
    let in_memory = |state: &State| {
        state
            .pending_detections
            .get(&key)
            .or_else(|| state.inflight_detections.get(&key))
            .map(|receipt| (receipt.clone(), state.staged))
    };
    loop {
        let epoch = {
            let state = shared.lock();
            if let Some(found) = in_memory(&state) {
                return Ok((state, Some(found)));
            }
            state.flush_epoch
        };
        let journaled = {
            let journal = shared.lookup_journal();
            match journal.find_detection(source, event_id)? {
                // The row just found: its receipt is there; the fallback keeps R4 strict.
                Some(id) => Some(journal.detection_receipt(id)?.unwrap_or(DetectionReceipt {
                    id,
                    disposition: Disposition::Duplicate,
                    lserver: None,
                    operation: None,
                })),
                None => None,
            }
        };
        let state = shared.lock();
        if state.flush_epoch != epoch {
            continue;
        }
        if let Some(found) = in_memory(&state) {
            return Ok((state, Some(found)));
        }
        return Ok((state, journaled.map(|receipt| (receipt, 0))));
    }
}
