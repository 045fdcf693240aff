//! Operations: the per-L-Server lane worker (R15) and the quarantine (R6–R12), reboot (R13) and
//! release (R14) flows, including resumption after a restart (R16).

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::join_all;
use tokio::time::Instant;

use super::alerts::{Alert, AlertCode};
use super::executor::{deliver_alerts, NicMove, OpCtx, Truth};
use super::journal::{Entry, PlanNic};
use super::state::{Halted, QueuedOp, Shared, State};
use super::types::*;
use super::EngineEvent;
use crate::adapters::DeviceError;
use crate::model::{LServer, LServerKind, NetworkRole, NicLocation};

/// Drains one L-Server's lane, one operation at a time in arrival order (R15).
pub(crate) async fn lane_worker(shared: Arc<Shared>, path: String) {
    loop {
        let next = {
            let mut state = shared.lock();
            let ls = state.ls(&path);
            match ls.lane.pop_front() {
                Some(op) if !shared.is_halted() => {
                    ls.running = Some(op.clone());
                    op
                }
                _ => {
                    ls.running = None;
                    ls.worker = false;
                    state.running_lanes -= 1;
                    drop(state);
                    shared.idle.notify_waiters();
                    return;
                }
            }
        };
        let result = run_operation(&shared, &path, &next).await;
        shared.lock().ls(&path).running = None;
        if result.is_err() {
            // Halted: the journal failed, so nothing more may happen (R7).
            shared.idle.notify_waiters();
            return;
        }
    }
}

async fn run_operation(shared: &Arc<Shared>, path: &str, op: &QueuedOp) -> Result<(), Halted> {
    let site = shared.site.clone();
    let Some(ls) = site.lserver(path) else {
        return Ok(());
    };
    let ctx = OpCtx {
        shared,
        op: op.id,
        ls,
        // A resumed operation gets a fresh deadline: the downtime was not its fault, and
        // containment matters more than the clock (R16, R19).
        deadline: Instant::now() + shared.settings.operation_deadline,
    };
    shared.emit(EngineEvent::OperationStarted {
        id: op.id,
        lserver: path.to_string(),
        kind: op.kind,
    });
    // Its end is announced by the commit that makes it durable (`Shared::commit`).
    match op.kind {
        OperationKind::Quarantine | OperationKind::ManualQuarantine => {
            quarantine(&ctx, op, true).await?
        }
        OperationKind::QuarantineReboot => {
            let phase = op.resume.as_ref().and_then(|r| r.phase.as_deref());
            if phase == Some("reboot") {
                reboot(&ctx, op).await?
            } else {
                match quarantine(&ctx, op, false).await? {
                    Outcome::Quarantined => reboot(&ctx, op).await?,
                    other => other,
                }
            }
        }
        OperationKind::Reboot => reboot(&ctx, op).await?,
        OperationKind::Release => release(&ctx, op).await?,
    };
    Ok(())
}

/// Commits a step, applies it to memory with `apply`, and delivers the alerts it carries.
async fn commit_step(
    shared: &Arc<Shared>,
    entries: Vec<Entry>,
    apply: impl FnOnce(&mut State),
) -> Result<(), Halted> {
    let alerts: Vec<Alert> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Alert(a) => Some(a.clone()),
            _ => None,
        })
        .collect();
    {
        let mut state = shared.lock();
        shared.commit(&mut state, &entries)?;
        apply(&mut state);
    }
    deliver_alerts(shared, alerts).await;
    Ok(())
}

/// Commits a step under an already held lock and applies it to memory; returns the alerts to
/// deliver once the lock is released.
fn commit_locked(
    shared: &Shared,
    state: &mut State,
    entries: Vec<Entry>,
    apply: impl FnOnce(&mut State),
) -> Result<Vec<Alert>, Halted> {
    shared.commit(state, &entries)?;
    apply(state);
    Ok(entries
        .into_iter()
        .filter_map(|e| match e {
            Entry::Alert(a) => Some(a),
            _ => None,
        })
        .collect())
}

fn started(ctx: &OpCtx<'_>, plan: Vec<PlanNic>) -> Entry {
    Entry::OperationStarted {
        id: ctx.op,
        started_ms: ctx.shared.now_ms(),
        deadline_ms: ctx.shared.now_ms()
            + ctx.shared.settings.operation_deadline.as_millis() as u64,
        plan,
    }
}

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
async fn quarantine(ctx: &OpCtx<'_>, op: &QueuedOp, finish: bool) -> Result<Outcome, Halted> {
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
            commit_step(shared, entries, |_| {}).await?;
            (plan, read_first)
        }
        Err(entries) => {
            // R6: a NIC on an unmapped network fails the plan before any device call.
            commit_step(shared, entries, |s| {
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

    let (outcome, alerts) = finish_quarantine(ctx, op, finish, &plan, &moves, &save_failures)?;
    deliver_alerts(shared, alerts).await;
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
) -> Result<(Outcome, Vec<Alert>), Halted> {
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
        let alerts = commit_locked(shared, &mut state, entries, |s| {
            let ls_state = s.ls(path);
            ls_state.records = records;
            ls_state.state = LServerState::Quarantined;
            ls_state.status = status;
            ls_state.outcome = Some(Outcome::Quarantined);
        })?;
        return Ok((Outcome::Quarantined, alerts));
    }

    // R10: records return to the operation networks; devices are not touched, so a NIC that
    // reached quarantine stays there to prevent the spread of infection.
    let mut records = Vec::new();
    let mut nic_states = Vec::new();
    for nic in &ls.nics {
        let truth = moves
            .iter()
            .find(|m| m.index == nic.index)
            .map(|m| m.truth.clone())
            .unwrap_or(Truth::Unknown);
        let note = match &truth {
            Truth::Network(n) if is_quarantine(shared, n) => {
                "stays on quarantine to prevent the spread of infection"
            }
            Truth::Network(_) => "not moved",
            Truth::Foreign(_) => "on a network the topology does not name",
            Truth::Unknown => "state unknown, left alone",
        };
        nic_states.push(format!(
            "nic{} mac {} device={} ({note})",
            nic.index,
            nic.mac,
            truth.describe()
        ));
        records.push(NicRecord {
            index: nic.index,
            network: nic.network.clone(),
            ip: nic.ip,
            device_network: truth.network().map(str::to_string),
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
    let alerts = commit_locked(shared, &mut state, entries, |s| {
        let ls_state = s.ls(path);
        ls_state.records = records;
        ls_state.state = LServerState::QuarantineFailed;
        ls_state.status = "normal".into();
        ls_state.outcome = Some(Outcome::QuarantineFailed);
    })?;
    Ok((Outcome::QuarantineFailed, alerts))
}

fn is_quarantine(shared: &Shared, network: &str) -> bool {
    shared
        .site
        .network(network)
        .is_some_and(|n| n.role == NetworkRole::Quarantine)
}

/// Saves the config of every persisting switch a confirmed NIC moved on; returns what failed.
async fn save_switches(ctx: &OpCtx<'_>, moves: &[NicMove]) -> Result<Vec<String>, Halted> {
    let switches: BTreeSet<&str> = moves
        .iter()
        .filter(|m| m.confirmed)
        .filter_map(|m| match &ctx.ls.nics[m.index].location {
            NicLocation::Physical { switch, .. } => Some(switch.as_str()),
            NicLocation::Virtual { .. } => None,
        })
        .filter(|s| ctx.shared.site.switch(s).is_some_and(|spec| spec.persist))
        .collect();
    let mut failures = Vec::new();
    for switch in switches {
        if let Err(e) = ctx.save_config(switch).await? {
            failures.push(format!("switch {switch}: running config not saved ({e}); a reboot of the switch would undo the change"));
        }
    }
    Ok(failures)
}

/// The reboot flow (R13). The L-Server's state is unchanged: a quarantine before it stays.
async fn reboot(ctx: &OpCtx<'_>, op: &QueuedOp) -> Result<Outcome, Halted> {
    let shared = ctx.shared;
    if op.kind == OperationKind::Reboot && op.resume.as_ref().is_none_or(|r| r.status != "running")
    {
        commit_step(shared, vec![started(ctx, Vec::new())], |_| {}).await?;
    }
    // A reset whose success was journaled before a restart is not sent again.
    let already = match &op.resume {
        Some(_) => shared
            .lock()
            .journal
            .has_successful_call(op.id, &["power_reset", "reset"])
            .unwrap_or(false),
        None => false,
    };
    let result = if already { Ok(()) } else { ctx.reset().await? };
    let (outcome, alerts) = finish_reboot(ctx, op, result)?;
    deliver_alerts(shared, alerts).await;
    Ok(outcome)
}

/// Ends a reboot with its alert (R13, R17).
fn finish_reboot(
    ctx: &OpCtx<'_>,
    op: &QueuedOp,
    result: Result<(), DeviceError>,
) -> Result<(Outcome, Vec<Alert>), Halted> {
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
    let alerts = commit_locked(shared, &mut state, entries, |s| {
        s.ls(path).outcome = Some(outcome)
    })?;
    Ok((outcome, alerts))
}

/// The release flow (R14): every NIC found on a quarantine network goes back to its operation
/// network; records follow device truth.
async fn release(ctx: &OpCtx<'_>, op: &QueuedOp) -> Result<Outcome, Halted> {
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
    let plan = match prepared {
        Ok(plan) => {
            commit_step(shared, vec![started(ctx, plan.clone())], |_| {}).await?;
            plan
        }
        Err(detail) => {
            let entries = vec![
                started(ctx, Vec::new()),
                Entry::OperationFinished {
                    id: op.id,
                    lserver: path.to_string(),
                    outcome: Outcome::Cancelled,
                    detail,
                    finished_ms: now,
                },
            ];
            commit_step(shared, entries, |_| {}).await?;
            return Ok(Outcome::Cancelled);
        }
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

    let (outcome, alerts) = finish_release(ctx, op, &plan, &moves, &save_failures)?;
    deliver_alerts(shared, alerts).await;
    Ok(outcome)
}

/// Ends a release: records follow device truth (R14).
fn finish_release(
    ctx: &OpCtx<'_>,
    op: &QueuedOp,
    plan: &[PlanNic],
    moves: &[NicMove],
    save_failures: &[String],
) -> Result<(Outcome, Vec<Alert>), Halted> {
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
                        },
                        None => NicRecord {
                            device_network: Some(q.to_string()),
                            ..old
                        },
                    }
                }
                other => NicRecord {
                    device_network: other.map(str::to_string),
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
    let alerts = commit_locked(shared, &mut state, entries, |s| {
        let ls_state = s.ls(path);
        ls_state.records = records;
        ls_state.state = new_state;
        ls_state.status = status;
        ls_state.outcome = Some(outcome);
    })?;
    Ok((outcome, alerts))
}
