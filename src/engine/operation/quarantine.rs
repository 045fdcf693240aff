//! The quarantine flow (R6–R12): plan, moves, then R9 or the R10 rollback of the records.

use futures::future::join_all;

use super::{commit_step, is_quarantine, save_switches, stage_locked, started, Staged};
use crate::engine::alerts::AlertCode;
use crate::engine::executor::{NicMove, OpCtx, Truth};
use crate::engine::journal::{Entry, PlanNic};
use crate::engine::state::{Halted, QueuedOp, Shared, State, Waiting};
use crate::engine::types::*;
use crate::model::{LServer, LServerKind, NetworkRole};

/// Makes the plan (R6): every NIC to the quarantine network its operation network maps to, with
/// a fresh IP. A NIC already recorded on that quarantine network keeps its IP. On error nothing
/// stays allocated.
fn make_plan(
    shared: &Shared,
    state: &mut State,
    ls: &LServer,
) -> Result<(Vec<PlanNic>, Vec<Entry>), String> {
    let mut plan = Vec::new();
    let mut entries = Vec::new();
    let records = state.ls(&ls.path).records.clone();
    for nic in &ls.nics {
        let record = &records[nic.index];
        let Some(quarantine) = shared.site.quarantine_network_for(&nic.network) else {
            for p in plan
                .iter()
                .filter(|p: &&PlanNic| p.from_network != p.to_network)
            {
                state.allocator.free(&p.to_network, p.to_ip);
            }
            return Err(format!(
                "nic{} is on network {} which has no quarantine network in quarantine_map",
                nic.index, nic.network
            ));
        };
        // Topology validation maps operation networks to quarantine networks only.
        assert!(
            quarantine.role == NetworkRole::Quarantine,
            "R11: a quarantine of {} would target {}, which is not a quarantine network",
            ls.path,
            quarantine.name
        );
        let to_ip = if record.network == quarantine.name {
            record.ip
        } else {
            match state.allocator.allocate(quarantine, &ls.path) {
                Some(ip) => {
                    entries.push(Entry::Allocate {
                        network: quarantine.name.clone(),
                        ip,
                        lserver: ls.path.clone(),
                        nic_index: nic.index,
                    });
                    ip
                }
                None => {
                    for p in plan
                        .iter()
                        .filter(|p: &&PlanNic| p.from_network != p.to_network)
                    {
                        state.allocator.free(&p.to_network, p.to_ip);
                    }
                    return Err(format!(
                        "quarantine network {} has no free address in {}",
                        quarantine.name, quarantine.subnet
                    ));
                }
            }
        };
        plan.push(PlanNic {
            nic_index: nic.index,
            from_network: record.network.clone(),
            from_ip: record.ip,
            to_network: quarantine.name.clone(),
            to_ip,
        });
    }
    Ok((plan, entries))
}

/// The quarantine flow (R6–R12). With `finish` false (quarantine_reboot) a success records the
/// `reboot` phase instead of ending the operation.
pub(super) async fn quarantine(
    ctx: &OpCtx<'_>,
    op: &QueuedOp,
    finish: bool,
) -> Result<Outcome, Halted> {
    let shared = ctx.shared;
    let ls = ctx.ls;
    let path = ls.path.as_str();
    let now = shared.now_ms();
    // Plan under the lock, then commit outside it: a guard never lives across an await.
    let planned = {
        let mut state = shared.lock();
        // Read before writing whenever records may disagree with devices: manual quarantine
        // (R12), a resumed operation (R16), or an L-Server that is not in its normal state.
        let read_first = op.kind == OperationKind::ManualQuarantine
            || op.resume.is_some()
            || state.ls(path).state != LServerState::Normal;
        let resumed_plan = op
            .resume
            .as_ref()
            .filter(|r| r.status == "running" && r.plan.len() == ls.nics.len())
            .map(|r| r.plan.clone());
        let resumed = resumed_plan.is_some();
        match resumed_plan
            .map(|p| Ok((p, Vec::new())))
            .unwrap_or_else(|| make_plan(shared, &mut state, ls))
        {
            Ok((plan, mut entries)) => {
                entries.insert(0, started(ctx, plan.clone()));
                // A resumed operation was announced before the crash: one start alert each.
                if !resumed {
                    let alert = state.alert(
                        now,
                        AlertCode::QuarantineStarted,
                        Some(path),
                        None,
                        Some(op.id),
                        String::new(),
                    );
                    entries.push(Entry::Alert(alert));
                }
                Ok((plan, read_first, entries))
            }
            Err(reason) => {
                let alert = state.alert(
                    now,
                    AlertCode::ConfigError,
                    Some(path),
                    None,
                    Some(op.id),
                    reason.clone(),
                );
                let current = state.ls(path).state;
                let status = state.ls(path).status.clone();
                Err(vec![
                    started(ctx, Vec::new()),
                    Entry::OperationFinished {
                        id: op.id,
                        lserver: path.to_string(),
                        outcome: Outcome::QuarantineFailed,
                        detail: reason,
                        finished_ms: now,
                    },
                    Entry::LServer {
                        path: path.to_string(),
                        state: current,
                        status,
                        outcome: Some(Outcome::QuarantineFailed),
                    },
                    Entry::Alert(alert),
                ])
            }
        }
    };
    let (plan, read_first) = match planned {
        Ok((plan, read_first, entries)) => {
            // R7: the plan and its IPs are durable before the first device call.
            commit_step(shared, entries, Waiting::DeviceCall, |_| {}).await?;
            (plan, read_first)
        }
        Err(entries) => {
            // R6: a NIC on an unmapped network fails the plan before any device call.
            commit_step(shared, entries, Waiting::Closing, |s| {
                s.ls(path).outcome = Some(Outcome::QuarantineFailed)
            })
            .await?;
            return Ok(Outcome::QuarantineFailed);
        }
    };

    let moves = join_all(
        plan.iter()
            .map(|p| ctx.move_nic(&ls.nics[p.nic_index], &p.to_network, read_first)),
    )
    .await
    .into_iter()
    .collect::<Result<Vec<NicMove>, Halted>>()?;
    let save_failures = save_switches(ctx, &moves).await?;

    let (outcome, staged) = finish_quarantine(ctx, op, finish, &plan, &moves, &save_failures)?;
    // A quarantine_reboot that succeeded goes on to its reset: that step is not a closing one.
    let waiting = if finish || outcome != Outcome::Quarantined {
        Waiting::Closing
    } else {
        Waiting::DeviceCall
    };
    staged.publish(shared, waiting).await?;
    Ok(outcome)
}

/// Ends a quarantine: R9 when every NIC is confirmed, else the R10 rollback of the records.
fn finish_quarantine(
    ctx: &OpCtx<'_>,
    op: &QueuedOp,
    finish: bool,
    plan: &[PlanNic],
    moves: &[NicMove],
    save_failures: &[String],
) -> Result<(Outcome, Staged), Halted> {
    let shared = ctx.shared;
    let ls = ctx.ls;
    let path = ls.path.as_str();
    let now = shared.now_ms();
    let mut state = shared.lock();
    let all_confirmed = moves.iter().all(|m| m.confirmed) && save_failures.is_empty();
    let mut entries = Vec::new();
    if all_confirmed {
        // R9: records follow the devices onto quarantine.
        let records: Vec<NicRecord> = plan
            .iter()
            .map(|p| NicRecord {
                index: p.nic_index,
                network: p.to_network.clone(),
                ip: p.to_ip,
                device_network: Some(p.to_network.clone()),
                last_write: None,
            })
            .collect();
        let status = if ls.kind == LServerKind::Physical {
            "unknown"
        } else {
            "normal"
        }
        .to_string();
        let detail = plan
            .iter()
            .map(|p| format!("nic{} {} ip {}", p.nic_index, p.to_network, p.to_ip))
            .collect::<Vec<_>>()
            .join(", ");
        for r in &records {
            entries.push(Entry::NicRecord {
                lserver: path.to_string(),
                record: r.clone(),
            });
        }
        entries.push(Entry::LServer {
            path: path.to_string(),
            state: LServerState::Quarantined,
            status: status.clone(),
            outcome: Some(Outcome::Quarantined),
        });
        if finish {
            entries.push(Entry::OperationFinished {
                id: op.id,
                lserver: path.to_string(),
                outcome: Outcome::Quarantined,
                detail: detail.clone(),
                finished_ms: now,
            });
        } else {
            entries.push(Entry::OperationPhase {
                id: op.id,
                phase: "reboot".into(),
            });
        }
        let alert = state.alert(
            now,
            AlertCode::QuarantineCompleted,
            Some(path),
            None,
            Some(op.id),
            detail,
        );
        entries.push(Entry::Alert(alert));
        let staged = stage_locked(shared, &mut state, entries, |s| {
            let ls_state = s.ls(path);
            ls_state.records = records;
            ls_state.state = LServerState::Quarantined;
            ls_state.status = status;
            ls_state.outcome = Some(Outcome::Quarantined);
        })?;
        return Ok((Outcome::Quarantined, staged));
    }

    // R10: records return to the operation networks; devices are not touched, so a NIC that
    // reached quarantine stays there to prevent the spread of infection.
    let mut records = Vec::new();
    let mut nic_states = Vec::new();
    for nic in &ls.nics {
        let moved = moves.iter().find(|m| m.index == nic.index);
        let truth = moved.map(|m| m.truth.clone()).unwrap_or(Truth::Unknown);
        let why = moved
            .and_then(|m| m.why.as_deref())
            .map(|w| format!("; last error: {w}"))
            .unwrap_or_default();
        let note = match &truth {
            Truth::Network(n) if is_quarantine(shared, n) => {
                "stays on quarantine to prevent the spread of infection"
            }
            Truth::Network(_) => "not moved",
            Truth::Foreign(_) => "on a network the topology does not name",
            Truth::Unknown => "state unknown, left alone",
        };
        nic_states.push(format!(
            "nic{} mac {} device={} ({note}{why})",
            nic.index,
            nic.mac,
            truth.describe()
        ));
        records.push(NicRecord {
            index: nic.index,
            network: nic.network.clone(),
            ip: nic.ip,
            device_network: truth.network().map(str::to_string),
            last_write: moved.and_then(|m| m.written.clone()),
        });
    }
    for p in plan.iter().filter(|p| is_quarantine(shared, &p.to_network)) {
        state.allocator.free(&p.to_network, p.to_ip);
        entries.push(Entry::Free {
            network: p.to_network.clone(),
            ip: p.to_ip,
        });
    }
    let mut detail = nic_states.join("; ");
    for failure in save_failures {
        detail.push_str(&format!("; {failure}"));
    }
    detail.push_str(&format!(
        "; remedy: move the NICs to the quarantine network by hand (the virtualization software for vNICs, the switch VLAN for ports), then run `qlab engine quarantine {path}`"
    ));
    for r in &records {
        entries.push(Entry::NicRecord {
            lserver: path.to_string(),
            record: r.clone(),
        });
    }
    entries.push(Entry::LServer {
        path: path.to_string(),
        state: LServerState::QuarantineFailed,
        status: "normal".into(),
        outcome: Some(Outcome::QuarantineFailed),
    });
    entries.push(Entry::OperationFinished {
        id: op.id,
        lserver: path.to_string(),
        outcome: Outcome::QuarantineFailed,
        detail: detail.clone(),
        finished_ms: now,
    });
    let alert = state.alert(
        now,
        AlertCode::QuarantineFailed,
        Some(path),
        None,
        Some(op.id),
        detail,
    );
    entries.push(Entry::Alert(alert));
    let staged = stage_locked(shared, &mut state, entries, |s| {
        let ls_state = s.ls(path);
        ls_state.records = records;
        ls_state.state = LServerState::QuarantineFailed;
        ls_state.status = "normal".into();
        ls_state.outcome = Some(Outcome::QuarantineFailed);
    })?;
    Ok((Outcome::QuarantineFailed, staged))
}
