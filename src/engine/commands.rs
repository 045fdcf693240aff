//! Administrators' commands: manual quarantine (R12), release (R14) and the decision on an
//! L-Server waiting for one (R5), each checked against the L-Server's state and queued on its
//! lane once durable.

use super::journal::Entry;
use super::state::{QueuedOp, Ticket, Waiting};
use super::{
    apply_lserver_entries, enqueue, Command, Engine, EngineError, LServerState, OperationId,
    OperationKind,
};
use crate::model::Action;

impl Engine {
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
}
