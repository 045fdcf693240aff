//! The release flow (R14).

use futures::future::join_all;

use super::{
    is_quarantine, move_plan, nic_device, plan_detail, push_save_failures, record_entry,
    save_switches, settled_record, stage_ending, start_or_cancel, Ending, Staged,
};
use crate::engine::alerts::AlertCode;
use crate::engine::executor::{NicMove, OpCtx};
use crate::engine::journal::{Entry, PlanNic};
use crate::engine::state::{Halted, State, Waiting};
use crate::engine::types::*;
use crate::model::{LServerKind, Nic, NicLocation};

/// The release flow (R14): every NIC found on a quarantine network goes back to its operation
/// network; records follow device truth.
pub(super) async fn release(ctx: &OpCtx<'_>) -> Result<Outcome, Halted> {
    let shared = ctx.shared;
    let ls = ctx.ls;
    let path = ls.path.as_str();
    let prepare = |state: &mut State| {
        let current = state.ls(path).state;
        if current.allows_release() {
            let records = state.ls(path).records.clone();
            let plan: Vec<PlanNic> = ls
                .nics
                .iter()
                .map(|nic| PlanNic {
                    nic_index: nic.index,
                    from_network: records[nic.index].network.clone(),
                    from_ip: records[nic.index].ip,
                    to_network: nic.network.clone(),
                    to_ip: nic.ip,
                })
                .collect();
            Ok(plan)
        } else {
            Err(format!(
                "release needs a quarantined, quarantine_failed or release_failed L-Server; it is {}",
                current.as_str()
            ))
        }
    };
    let Some(plan) = start_or_cancel(ctx, prepare).await? else {
        return Ok(Outcome::Cancelled);
    };

    // Read first: only device truth says which NICs are on quarantine (R14). The plan holds
    // every NIC, in order, with its operation network as the target.
    let moves = move_plan(ctx, &plan, true).await?;
    let save_failures = save_switches(ctx, &moves).await?;
    let moves = if save_failures.is_empty() {
        verify_saved(ctx, moves).await?
    } else {
        moves
    };

    let (outcome, staged) = finish_release(ctx, &plan, &moves, &save_failures)?;
    staged.publish(shared, Waiting::Closing).await?;
    Ok(outcome)
}

/// Reads again, after the save, every port a release moved on a persisting switch. A switch
/// that reboots between the read that confirmed the move and the save comes back with its
/// saved config (the quarantine VLAN), and the save then persists that: only a read after the
/// save shows it (INV-4). A port found elsewhere than its operation network, or not read,
/// counts as not moved back; an answer that contradicts the confirming read is read again
/// `confirm_read_after` later first (R8: it may be stale). The drift watch covers the same race
/// for a quarantine; nothing watches a released L-Server.
async fn verify_saved(ctx: &OpCtx<'_>, mut moves: Vec<NicMove>) -> Result<Vec<NicMove>, Halted> {
    let saved = |mv: &NicMove| {
        let nic = &ctx.ls.nics[mv.index];
        mv.confirmed
            && matches!(&nic.location, NicLocation::Physical { switch, .. }
                if ctx.shared.site.switch(switch).is_some_and(|spec| spec.persist))
    };
    let reads = join_all(
        moves
            .iter()
            .enumerate()
            .filter(|(_, mv)| saved(mv))
            // Weighed against the confirmed move (R8): a stale answer from before the write
            // is read again `confirm_read_after` later.
            .map(|(at, mv)| async move {
                (
                    at,
                    ctx.observe(&ctx.ls.nics[mv.index], Some(&mv.truth)).await,
                )
            }),
    )
    .await;
    for (at, read) in reads {
        let observed = read?;
        let (truth, error) = (observed.truth, observed.failure);
        let mv = &mut moves[at];
        let network = &ctx.ls.nics[mv.index].network;
        if truth.network() != Some(network.as_str()) {
            mv.confirmed = false;
            mv.why = Some(error.unwrap_or_else(|| {
                format!("after the save the switch shows {}", truth.describe())
            }));
            mv.truth = truth;
        }
    }
    Ok(moves)
}

/// Ends a release: records follow device truth (R14).
fn finish_release(
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
    let mut entries = Vec::new();
    let mut records = Vec::new();
    let mut still = Vec::new();
    for (nic, mv) in ls.nics.iter().zip(moves) {
        let record = if mv.confirmed {
            released_nic(ctx, &mut state, &mut entries, nic)
        } else {
            still.push(nic_device(nic, &mv.truth));
            unreleased_nic(ctx, &mut state, &mut entries, nic, mv)
        };
        entries.push(record_entry(path, &record));
        records.push(record);
    }
    let all_back = still.is_empty() && save_failures.is_empty();
    let ending = release_ending(ctx, plan, records, &still, save_failures, all_back);
    let outcome = ending.outcome;
    let staged = stage_ending(ctx, &mut state, now, entries, ending)?;
    Ok((outcome, staged))
}

/// A NIC confirmed back on its operation network: its quarantine address is freed and its
/// record follows it (R14).
fn released_nic(
    ctx: &OpCtx<'_>,
    state: &mut State,
    entries: &mut Vec<Entry>,
    nic: &Nic,
) -> NicRecord {
    let old = &state.ls(&ctx.ls.path).records[nic.index];
    if is_quarantine(ctx.shared, &old.network) {
        let (network, ip) = (old.network.clone(), old.ip);
        state.allocator.free(&network, ip);
        entries.push(Entry::Free { network, ip });
    }
    settled_record(nic.index, &nic.network, nic.ip)
}

/// A NIC not confirmed back: its record follows what the device last showed (R14). One still on
/// a quarantine network is recorded there, with an address on it.
fn unreleased_nic(
    ctx: &OpCtx<'_>,
    state: &mut State,
    entries: &mut Vec<Entry>,
    nic: &Nic,
    mv: &NicMove,
) -> NicRecord {
    let path = ctx.ls.path.as_str();
    let old = state.ls(path).records[nic.index].clone();
    match mv.truth.network() {
        Some(q) if is_quarantine(ctx.shared, q) => {
            let q_net = ctx.shared.site.network(q).cloned();
            let ip = if old.network == q {
                Some(old.ip)
            } else {
                // The record follows the device onto quarantine; it needs an address there.
                q_net.and_then(|net| {
                    let ip = state.allocator.allocate(&net, path)?;
                    entries.push(Entry::Allocate {
                        network: q.to_string(),
                        ip,
                        lserver: path.to_string(),
                        nic_index: nic.index,
                    });
                    Some(ip)
                })
            };
            match ip {
                Some(ip) => settled_record(nic.index, q, ip),
                None => NicRecord {
                    device_network: Some(q.to_string()),
                    last_write: None,
                    ..old
                },
            }
        }
        _ => NicRecord {
            device_network: mv.evidence_after(old.device_network.as_deref()),
            last_write: mv.written.clone(),
            ..old
        },
    }
}

/// The outcome of a release and its alert detail: the plan when every NIC is back, else the
/// NICs still on quarantine or unknown and the remedy.
fn release_ending(
    ctx: &OpCtx<'_>,
    plan: &[PlanNic],
    records: Vec<NicRecord>,
    still: &[String],
    save_failures: &[String],
    all_back: bool,
) -> Ending {
    let path = ctx.ls.path.as_str();
    let (outcome, state, code) = if all_back {
        (
            Outcome::Released,
            LServerState::Normal,
            AlertCode::ReleaseCompleted,
        )
    } else {
        (
            Outcome::ReleaseFailed,
            LServerState::ReleaseFailed,
            AlertCode::ReleaseFailed,
        )
    };
    let status = if !all_back && ctx.ls.kind == LServerKind::Physical {
        "unknown"
    } else {
        "normal"
    }
    .to_string();
    let mut detail = if all_back {
        plan_detail(plan)
    } else {
        format!("still on quarantine or unknown: {}", still.join("; "))
    };
    push_save_failures(&mut detail, save_failures);
    if !all_back {
        detail.push_str(&format!(
            "; remedy: fix the device, then run `qlab engine release {path}` again"
        ));
    }
    Ending {
        outcome,
        state,
        status,
        records,
        code,
        detail,
        last_step: true,
    }
}
