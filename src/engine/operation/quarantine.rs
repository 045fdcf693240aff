//! The quarantine flow (R6–R12): plan, moves, then R9 or the R10 rollback of the records.

use super::{
    commit_step, is_quarantine, last_error, move_plan, nic_device, plan_detail, push_save_failures,
    quarantine_remedy, record_entry, save_switches, settled_record, stage_ending, started, Ending,
    Staged,
};
use crate::engine::alerts::AlertCode;
use crate::engine::executor::{NicMove, OpCtx, Truth};
use crate::engine::journal::{Entry, PlanNic};
use crate::engine::state::{Halted, QueuedOp, Shared, State, Waiting};
use crate::engine::types::*;
use crate::model::{LServer, LServerKind, NetworkRole, Nic};

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
            free_new_ips(state, &plan);
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
                    free_new_ips(state, &plan);
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

/// Frees the addresses a plan that fails half-way allocated (R6: on error nothing stays
/// allocated); a NIC already on its quarantine network kept its own.
fn free_new_ips(state: &mut State, plan: &[PlanNic]) {
    for p in plan.iter().filter(|p| p.from_network != p.to_network) {
        state.allocator.free(&p.to_network, p.to_ip);
    }
}

/// The quarantine flow (R6–R12). With `finish` false (quarantine_reboot) a success records the
/// `reboot` phase instead of ending the operation.
pub(super) async fn quarantine(
    ctx: &OpCtx<'_>,
    op: &QueuedOp,
    finish: bool,
) -> Result<Outcome, Halted> {
    let shared = ctx.shared;
    let path = ctx.ls.path.as_str();
    let now = shared.now_ms();
    // Plan under the lock, then commit outside it: a guard never lives across an await.
    let planned = {
        let mut state = shared.lock();
        plan_step(ctx, op, &mut state, now)
    };
    let (plan, read_first) = match planned {
        Ok(Planned {
            plan,
            read_first,
            entries,
        }) => {
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

    let moves = move_plan(ctx, &plan, read_first).await?;
    let save_failures = save_switches(ctx, &moves).await?;

    let (outcome, staged) = finish_quarantine(ctx, finish, &plan, &moves, &save_failures)?;
    // A quarantine_reboot that succeeded goes on to its reset: that step is not a closing one.
    let waiting = if finish || outcome != Outcome::Quarantined {
        Waiting::Closing
    } else {
        Waiting::DeviceCall
    };
    staged.publish(shared, waiting).await?;
    Ok(outcome)
}

/// A quarantine's plan and the step that makes it durable.
struct Planned {
    plan: Vec<PlanNic>,
    /// Read each NIC before any write (R12, R16).
    read_first: bool,
    entries: Vec<Entry>,
}

/// The first step of a quarantine, under the lock: its start with the plan (a resumed one's, or
/// a new one, R6) and the start alert; or, when no plan can be made, the whole failed operation
/// as entries.
fn plan_step(
    ctx: &OpCtx<'_>,
    op: &QueuedOp,
    state: &mut State,
    now: u64,
) -> Result<Planned, Vec<Entry>> {
    let ls = ctx.ls;
    let path = ls.path.as_str();
    // Read before writing whenever records may disagree with devices: manual quarantine
    // (R12), a resumed operation (R16), or an L-Server that is not in its normal state.
    let read_first = op.kind == OperationKind::ManualQuarantine
        || op.resume.is_some()
        || state.ls(path).state != LServerState::Normal;
    let resumed_plan = op
        .resume
        .as_ref()
        .filter(|r| r.status == OperationStatus::Running && r.plan.len() == ls.nics.len())
        .map(|r| r.plan.clone());
    let resumed = resumed_plan.is_some();
    let (plan, mut entries) = match resumed_plan
        .map(|p| Ok((p, Vec::new())))
        .unwrap_or_else(|| make_plan(ctx.shared, state, ls))
    {
        Ok(planned) => planned,
        Err(reason) => return Err(plan_failed(ctx, state, now, reason)),
    };
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
    Ok(Planned {
        plan,
        read_first,
        entries,
    })
}

/// The entries of a quarantine whose plan failed (R6): its start with no plan, its end, the
/// L-Server's unchanged state with the outcome, and a config-error alert.
fn plan_failed(ctx: &OpCtx<'_>, state: &mut State, now: u64, reason: String) -> Vec<Entry> {
    let path = ctx.ls.path.as_str();
    let alert = state.alert(
        now,
        AlertCode::ConfigError,
        Some(path),
        None,
        Some(ctx.op),
        reason.clone(),
    );
    let current = state.ls(path).state;
    let status = state.ls(path).status.clone();
    vec![
        started(ctx, Vec::new()),
        Entry::OperationFinished {
            id: ctx.op,
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
    ]
}

/// Ends a quarantine: R9 when every NIC is confirmed, else the R10 rollback of the records.
fn finish_quarantine(
    ctx: &OpCtx<'_>,
    finish: bool,
    plan: &[PlanNic],
    moves: &[NicMove],
    save_failures: &[String],
) -> Result<(Outcome, Staged), Halted> {
    let now = ctx.shared.now_ms();
    let mut state = ctx.shared.lock();
    let all_confirmed = moves.iter().all(|m| m.confirmed) && save_failures.is_empty();
    let (entries, ending) = if all_confirmed {
        quarantined(ctx, plan, finish)
    } else {
        rolled_back(ctx, &mut state, plan, moves, save_failures)
    };
    let outcome = ending.outcome;
    let staged = stage_ending(ctx, &mut state, now, entries, ending)?;
    Ok((outcome, staged))
}

/// R9: records follow the devices onto quarantine.
fn quarantined(ctx: &OpCtx<'_>, plan: &[PlanNic], finish: bool) -> (Vec<Entry>, Ending) {
    let path = ctx.ls.path.as_str();
    let records: Vec<NicRecord> = plan
        .iter()
        .map(|p| settled_record(p.nic_index, &p.to_network, p.to_ip))
        .collect();
    let status = if ctx.ls.kind == LServerKind::Physical {
        "unknown"
    } else {
        "normal"
    }
    .to_string();
    let entries = records.iter().map(|r| record_entry(path, r)).collect();
    let ending = Ending {
        outcome: Outcome::Quarantined,
        state: LServerState::Quarantined,
        status,
        records,
        code: AlertCode::QuarantineCompleted,
        detail: plan_detail(plan),
        last_step: finish,
    };
    (entries, ending)
}

/// R10: records return to the operation networks; devices are not touched, so a NIC that
/// reached quarantine stays there to prevent the spread of infection. The quarantine IPs of
/// the plan are freed.
fn rolled_back(
    ctx: &OpCtx<'_>,
    state: &mut State,
    plan: &[PlanNic],
    moves: &[NicMove],
    save_failures: &[String],
) -> (Vec<Entry>, Ending) {
    let shared = ctx.shared;
    let path = ctx.ls.path.as_str();
    let (records, nic_states): (Vec<NicRecord>, Vec<String>) = ctx
        .ls
        .nics
        .iter()
        .map(|nic| {
            let before = state.ls(&ctx.ls.path).records[nic.index]
                .device_network
                .clone();
            let moved = moves.iter().find(|m| m.index == nic.index);
            rolled_back_nic(shared, nic, moved, before.as_deref())
        })
        .unzip();
    let mut entries = Vec::new();
    for p in plan.iter().filter(|p| is_quarantine(shared, &p.to_network)) {
        state.allocator.free(&p.to_network, p.to_ip);
        entries.push(Entry::Free {
            network: p.to_network.clone(),
            ip: p.to_ip,
        });
    }
    let mut detail = nic_states.join("; ");
    push_save_failures(&mut detail, save_failures);
    detail.push_str(&quarantine_remedy(path));
    entries.extend(records.iter().map(|r| record_entry(path, r)));
    let ending = Ending {
        outcome: Outcome::QuarantineFailed,
        state: LServerState::QuarantineFailed,
        status: "normal".into(),
        records,
        code: AlertCode::QuarantineFailed,
        detail,
        last_step: true,
    };
    (entries, ending)
}

/// One NIC after a quarantine that failed (R10): its record back on the operation network with
/// what the device last showed, and its line in the alert.
fn rolled_back_nic(
    shared: &Shared,
    nic: &Nic,
    moved: Option<&NicMove>,
    before: Option<&str>,
) -> (NicRecord, String) {
    let truth = moved.map(|m| m.truth.clone()).unwrap_or(Truth::Unknown);
    let why = last_error(moved.and_then(|m| m.why.as_deref()));
    let note = match &truth {
        Truth::Network(n) if is_quarantine(shared, n) => {
            "stays on quarantine to prevent the spread of infection"
        }
        Truth::Network(_) => "not moved",
        Truth::Foreign(_) => "on a network the topology does not name",
        Truth::Unknown => "state unknown, left alone",
    };
    let line = format!("{} ({note}{why})", nic_device(nic, &truth));
    let record = NicRecord {
        index: nic.index,
        network: nic.network.clone(),
        ip: nic.ip,
        device_network: match moved {
            Some(m) => m.evidence_after(before),
            // Never moved: nothing was read or written, so the record's evidence stands.
            None => before.map(str::to_string),
        },
        last_write: moved.and_then(|m| m.written.clone()),
    };
    (record, line)
}
