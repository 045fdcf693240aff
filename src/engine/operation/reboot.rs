//! The reboot flow (R13).

use super::{commit_step, stage_locked, started, Staged};
use crate::adapters::DeviceError;
use crate::engine::alerts::AlertCode;
use crate::engine::executor::OpCtx;
use crate::engine::journal::Entry;
use crate::engine::state::{Halted, QueuedOp, Waiting};
use crate::engine::types::*;

/// The reboot flow (R13). The L-Server's state is unchanged: a quarantine before it stays.
pub(super) async fn reboot(ctx: &OpCtx<'_>, op: &QueuedOp) -> Result<Outcome, Halted> {
    let shared = ctx.shared;
    if op.kind == OperationKind::Reboot {
        if op
            .resume
            .as_ref()
            .is_none_or(|r| r.status != OperationStatus::Running)
        {
            commit_step(
                shared,
                vec![started(ctx, Vec::new())],
                Waiting::DeviceCall,
                |_| {},
            )
            .await?;
        } else {
            ctx.announce_resumed();
        }
    }
    // A reset whose success was journaled before a restart is not sent again.
    let already = match &op.resume {
        Some(_) => shared
            .journal()
            .has_successful_call(op.id, &["power_reset", "reset"])
            .unwrap_or(false),
        None => false,
    };
    let result = if already { Ok(()) } else { ctx.reset().await? };
    let (outcome, staged) = finish_reboot(ctx, op, result)?;
    staged.publish(shared, Waiting::Closing).await?;
    Ok(outcome)
}

/// Ends a reboot with its alert (R13, R17).
fn finish_reboot(
    ctx: &OpCtx<'_>,
    op: &QueuedOp,
    result: Result<(), DeviceError>,
) -> Result<(Outcome, Staged), Halted> {
    let shared = ctx.shared;
    let path = ctx.ls.path.as_str();
    let now = shared.now_ms();
    let mut state = shared.lock();
    let (outcome, code, detail) = match result {
        Ok(()) => (Outcome::Rebooted, AlertCode::RebootCompleted, String::new()),
        Err(e) => (
            Outcome::RebootFailed,
            AlertCode::RebootFailed,
            format!(
                "{e}; remedy: reboot the server through the virtualization software or its BMC"
            ),
        ),
    };
    let current = state.ls(path).state;
    let status = state.ls(path).status.clone();
    let alert = state.alert(now, code, Some(path), None, Some(op.id), detail.clone());
    let entries = vec![
        Entry::OperationFinished {
            id: op.id,
            lserver: path.to_string(),
            outcome,
            detail,
            finished_ms: now,
        },
        Entry::LServer {
            path: path.to_string(),
            state: current,
            status,
            outcome: Some(outcome),
        },
        Entry::Alert(alert),
    ];
    let staged = stage_locked(shared, &mut state, entries, |s| {
        s.ls(path).outcome = Some(outcome)
    })?;
    Ok((outcome, staged))
}
