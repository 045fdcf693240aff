//! The restore flow (R20): NICs of a quarantined L-Server that the drift watch found off their
//! quarantine network go back onto it, written and verified like any move (R8).
//!
//! Decisions where the spec is silent:
//! - Every NIC recorded on a quarantine network is moved with read-first (R8, R12): one that did
//!   not drift, or that something put back meanwhile, is confirmed by its read and not written.
//! - Records keep the quarantine network and IP throughout (no R10 rollback, no IP change); only
//!   each NIC's last known device network follows what the reads showed.
//! - Success ends `quarantined` with one INFO `quarantine-restored`. Failure ends
//!   `quarantine_failed` with one ERROR `quarantine-failed` listing every NIC's device state and
//!   the remedy; the L-Server's state becomes `quarantine_failed` so the watch stops re-trying it
//!   every round (an alert storm); a manual quarantine (R12) or a release takes it from there.
//! - A restore that finds its L-Server no longer `quarantined` when its turn comes (a release
//!   ran before it) ends `cancelled` and touches nothing.
//! - A persisting switch is saved after the move, so the restored VLAN survives the next reboot.

use super::{
    is_quarantine, last_error, move_plan, nic_device, push_save_failures, quarantine_remedy,
    record_entry, save_switches, stage_ending, start_or_cancel, Ending, Staged,
};
use crate::engine::alerts::AlertCode;
use crate::engine::executor::{NicMove, OpCtx};
use crate::engine::journal::PlanNic;
use crate::engine::state::{Halted, State, Waiting};
use crate::engine::types::*;

/// The restore flow (R20).
pub(super) async fn restore(ctx: &OpCtx<'_>) -> Result<Outcome, Halted> {
    let shared = ctx.shared;
    let ls = ctx.ls;
    let path = ls.path.as_str();
    let prepare = |state: &mut State| {
        let current = state.ls(path);
        if current.state == LServerState::Quarantined {
            let plan: Vec<PlanNic> = current
                .records
                .iter()
                .filter(|r| is_quarantine(shared, &r.network))
                .map(|r| PlanNic {
                    nic_index: r.index,
                    from_network: r.network.clone(),
                    from_ip: r.ip,
                    to_network: r.network.clone(),
                    to_ip: r.ip,
                })
                .collect();
            Ok(plan)
        } else {
            Err(format!(
                "restore needs a quarantined L-Server; it is {}",
                current.state.as_str()
            ))
        }
    };
    let Some(plan) = start_or_cancel(ctx, prepare).await? else {
        return Ok(Outcome::Cancelled);
    };
    let moves = move_plan(ctx, &plan, true).await?;
    let save_failures = save_switches(ctx, &moves).await?;
    let (outcome, staged) = finish_restore(ctx, &plan, &moves, &save_failures)?;
    staged.publish(shared, Waiting::Closing).await?;
    Ok(outcome)
}

/// Ends a restore: records keep the quarantine network; their last known device network
/// follows the reads (R20).
fn finish_restore(
    ctx: &OpCtx<'_>,
    plan: &[PlanNic],
    moves: &[NicMove],
    save_failures: &[String],
) -> Result<(Outcome, Staged), Halted> {
    let shared = ctx.shared;
    let ls = ctx.ls;
    let path = ls.path.as_str();
    let now = shared.now_ms();
    let mut state = shared.lock();
    let mut records = state.ls(path).records.clone();
    let mut entries = Vec::new();
    let mut nic_states = Vec::new();
    for (p, mv) in plan.iter().zip(moves) {
        let note = if mv.confirmed {
            "on quarantine"
        } else {
            "not back on quarantine"
        };
        nic_states.push(format!(
            "{} ({note}{})",
            nic_device(&ls.nics[p.nic_index], &mv.truth),
            last_error(mv.why.as_deref())
        ));
        if let Some(record) = records.get_mut(p.nic_index) {
            record.device_network = mv.evidence_after(record.device_network.as_deref());
            record.last_write = mv.written.clone();
            entries.push(record_entry(path, record));
        }
    }
    let restored = moves.iter().all(|m| m.confirmed) && save_failures.is_empty();
    let mut detail = nic_states.join("; ");
    push_save_failures(&mut detail, save_failures);
    let (outcome, new_state, code) = if restored {
        (
            Outcome::Quarantined,
            LServerState::Quarantined,
            AlertCode::QuarantineRestored,
        )
    } else {
        detail.push_str(&quarantine_remedy(path));
        (
            Outcome::QuarantineFailed,
            LServerState::QuarantineFailed,
            AlertCode::QuarantineFailed,
        )
    };
    let ending = Ending {
        outcome,
        state: new_state,
        // A restore leaves the L-Server's status as it is.
        status: state.ls(path).status.clone(),
        records,
        code,
        detail,
        last_step: true,
    };
    let staged = stage_ending(ctx, &mut state, now, entries, ending)?;
    Ok((outcome, staged))
}
