//! Intake of detections (R1–R5): validation, the duplicate check (R4), the policy's decision
//! (R1, R2, R5), resolution of the L-Server (R3), and staging the detection with what it
//! queued, acknowledged once durable (R7).

use std::net::IpAddr;
use std::sync::MutexGuard;

use super::journal::{self, Entry};
use super::state::{QueuedOp, Shared, State, Ticket, Waiting};
use super::{
    apply_lserver_entries, enqueue, executor, Alert, AlertCode, DetectionId, DetectionReceipt,
    Disposition, Engine, EngineError, EngineEvent, JournalError, LServerState, OperationKind,
    Outcome,
};
use crate::model::{Detection, PolicySpec};

impl Engine {
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
            ignore(&mut state, lserver.as_deref(), &mut entries)
        } else if let Some(path) = &lserver {
            let (disposition, op) =
                act(&mut state, policy, path, &detection, id, now, &mut entries);
            queued = op;
            disposition
        } else {
            not_found(&mut state, &detection, now, &mut entries)
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
            // Never journaled nor staged (the filter holds every pair that was): new, without
            // a read of the journal.
            if state
                .seen_detections
                .as_ref()
                .is_some_and(|seen| !seen.may_contain(source, event_id))
            {
                return Ok((state, None));
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

/// R1, R2: a category that does not act, or a threat the policy excludes. The L-Server's
/// outcome says `ignored` when it had none.
fn ignore(state: &mut State, lserver: Option<&str>, entries: &mut Vec<Entry>) -> Disposition {
    if let Some(path) = lserver {
        let ls = state.ls(path);
        if ls.outcome.is_none() {
            entries.push(Entry::LServer {
                path: path.to_string(),
                state: ls.state,
                status: ls.status.clone(),
                outcome: Some(Outcome::Ignored),
            });
        }
    }
    Disposition::Ignored
}

/// R5, R4: the policy's action for `path`: an operation queued, a decision asked for, or a
/// duplicate of what is already under way.
fn act(
    state: &mut State,
    policy: &PolicySpec,
    path: &str,
    detection: &Detection,
    id: DetectionId,
    now: u64,
    entries: &mut Vec<Entry>,
) -> (Disposition, Option<QueuedOp>) {
    let action = policy.action_for(path);
    let ls = state.ls(path);
    let busy_quarantining = ls.will_be_quarantined();
    match OperationKind::for_action(action) {
        None if busy_quarantining || ls.state == LServerState::PendingDecision => {
            (Disposition::Duplicate, None)
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
                path: path.to_string(),
                state: LServerState::PendingDecision,
                status,
                outcome: Some(Outcome::PendingDecision),
            });
            entries.push(Entry::Alert(alert));
            (Disposition::PendingDecision, None)
        }
        Some(kind)
            if (kind.quarantines() && busy_quarantining)
                || (!kind.quarantines() && ls.has_unfinished(|o| o.kind == kind)) =>
        {
            (Disposition::Duplicate, None)
        }
        Some(kind) => {
            let op = state.next_operation_id;
            state.next_operation_id += 1;
            entries.push(Entry::OperationQueued {
                id: op,
                lserver: path.to_string(),
                kind,
                detection: Some(id),
                created_ms: now,
                requested_by: None,
            });
            let queued = QueuedOp {
                id: op,
                kind,
                resume: None,
            };
            (Disposition::Accepted, Some(queued))
        }
    }
}

/// R3: nobody to quarantine, one ERROR alert naming the address.
fn not_found(
    state: &mut State,
    detection: &Detection,
    now: u64,
    entries: &mut Vec<Entry>,
) -> Disposition {
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
}
