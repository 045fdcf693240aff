//! The release flow (R14).

use futures::future::join_all;

use super::{is_quarantine, save_switches, stage_locked, start_or_cancel, Staged};
use crate::engine::alerts::AlertCode;
use crate::engine::executor::{NicMove, OpCtx};
use crate::engine::journal::{Entry, PlanNic};
use crate::engine::state::{Halted, QueuedOp, Waiting};
use crate::engine::types::*;
use crate::model::{LServerKind, NicLocation};

/// The release flow (R14): every NIC found on a quarantine network goes back to its operation
/// network; records follow device truth.
pub(super) async fn release(ctx: &OpCtx<'_>, op: &QueuedOp) -> Result<Outcome, Halted> {
    let shared = ctx.shared;
    let ls = ctx.ls;
    let path = ls.path.as_str();
    let now = shared.now_ms();
    let prepared = {
        let mut state = shared.lock();
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
    let Some(plan) = start_or_cancel(ctx, prepared, now).await? else {
        return Ok(Outcome::Cancelled);
    };

    // Read first: only device truth says which NICs are on quarantine (R14).
    let moves = join_all(
        ls.nics
            .iter()
            .map(|nic| ctx.move_nic(nic, &nic.network, true)),
    )
    .await
    .into_iter()
    .collect::<Result<Vec<NicMove>, Halted>>()?;
    let save_failures = save_switches(ctx, &moves).await?;
    let moves = if save_failures.is_empty() {
        verify_saved(ctx, moves).await?
    } else {
        moves
    };

    let (outcome, staged) = finish_release(ctx, op, &plan, &moves, &save_failures)?;
    staged.publish(shared, Waiting::Closing).await?;
    Ok(outcome)
}

/// Reads again, after the save, every port a release moved on a persisting switch. A switch
/// that reboots between the read that confirmed the move and the save comes back with its
/// saved config (the quarantine VLAN), and the save then persists that: only a read after the
/// save shows it (INV-4). A port found elsewhere than its operation network, or not read,
/// counts as not moved back. The drift watch covers the same race for a quarantine; nothing
/// watches a released L-Server.
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
            .map(|(at, mv)| async move { (at, ctx.read(&ctx.ls.nics[mv.index]).await) }),
    )
    .await;
    for (at, read) in reads {
        let (truth, error) = read?;
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
    op: &QueuedOp,
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
        let old = state.ls(path).records[nic.index].clone();
        let record = if mv.confirmed {
            if is_quarantine(shared, &old.network) {
                state.allocator.free(&old.network, old.ip);
                entries.push(Entry::Free {
                    network: old.network.clone(),
                    ip: old.ip,
                });
            }
            NicRecord {
                index: nic.index,
                network: nic.network.clone(),
                ip: nic.ip,
                device_network: Some(nic.network.clone()),
                last_write: None,
            }
        } else {
            still.push(format!(
                "nic{} mac {} device={}",
                nic.index,
                nic.mac,
                mv.truth.describe()
            ));
            match mv.truth.network() {
                Some(q) if is_quarantine(shared, q) => {
                    let q_net = shared.site.network(q).cloned();
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
                        Some(ip) => NicRecord {
                            index: nic.index,
                            network: q.to_string(),
                            ip,
                            device_network: Some(q.to_string()),
                            last_write: None,
                        },
                        None => NicRecord {
                            device_network: Some(q.to_string()),
                            last_write: None,
                            ..old
                        },
                    }
                }
                other => NicRecord {
                    device_network: other.map(str::to_string),
                    last_write: mv.written.clone(),
                    ..old
                },
            }
        };
        entries.push(Entry::NicRecord {
            lserver: path.to_string(),
            record: record.clone(),
        });
        records.push(record);
    }
    let all_back = still.is_empty() && save_failures.is_empty();
    let (outcome, new_state, code) = if all_back {
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
    let status = if !all_back && ls.kind == LServerKind::Physical {
        "unknown"
    } else {
        "normal"
    }
    .to_string();
    let mut detail = if all_back {
        plan.iter()
            .map(|p| format!("nic{} {} ip {}", p.nic_index, p.to_network, p.to_ip))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        format!("still on quarantine or unknown: {}", still.join("; "))
    };
    for failure in save_failures {
        detail.push_str(&format!("; {failure}"));
    }
    if !all_back {
        detail.push_str(&format!(
            "; remedy: fix the device, then run `qlab engine release {path}` again"
        ));
    }
    entries.push(Entry::LServer {
        path: path.to_string(),
        state: new_state,
        status: status.clone(),
        outcome: Some(outcome),
    });
    entries.push(Entry::OperationFinished {
        id: op.id,
        lserver: path.to_string(),
        outcome,
        detail: detail.clone(),
        finished_ms: now,
    });
    let alert = state.alert(now, code, Some(path), None, Some(op.id), detail);
    entries.push(Entry::Alert(alert));
    let staged = stage_locked(shared, &mut state, entries, |s| {
        let ls_state = s.ls(path);
        ls_state.records = records;
        ls_state.state = new_state;
        ls_state.status = status;
        ls_state.outcome = Some(outcome);
    })?;
    Ok((outcome, staged))
}
