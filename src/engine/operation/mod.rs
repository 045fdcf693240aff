//! Operations: the per-L-Server lane worker (R15) and the step helpers the flows share. The
//! flows live beside it: quarantine (R6–R12), reboot (R13), release (R14), restore (R20), each
//! resumable after a restart (R16).

mod quarantine;
mod reboot;
mod release;
mod restore;

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::time::Instant;

use futures::future::join_all;

use super::alerts::{Alert, AlertCode};
use super::executor::{deliver_alerts, NicMove, OpCtx, Truth};
use super::journal::{alerts_in, Entry, PlanNic};
use super::state::{Halted, QueuedOp, Shared, State, Ticket, Waiting};
use super::types::*;
use crate::model::{NetworkRole, Nic, NicLocation};

/// Drains one L-Server's lane, one operation at a time in arrival order (R15).
pub(crate) async fn lane_worker(shared: Arc<Shared>, path: String) {
    loop {
        let quiet = {
            let mut state = shared.lock();
            let ls = state.ls(&path);
            ls.lane.is_empty().then_some(ls.marks)
        };
        if let Some(marks) = quiet {
            // Before the lane goes quiet, what its work left staged (alert delivery marks) is
            // made durable, so an idle engine has nothing pending. Its own marks only: waiting
            // for everything staged would hold every lane up for the others' commits.
            let _ = shared.durable(marks, Waiting::Closing).await;
        }
        let next = {
            let mut state = shared.lock();
            let ls = state.ls(&path);
            match ls.lane.pop_front() {
                Some(op) if !shared.is_halted() => {
                    ls.running = Some(op.clone());
                    ls.started_ops += 1;
                    op
                }
                _ => {
                    ls.running = None;
                    ls.worker = false;
                    state.running_lanes -= 1;
                    let engine_idle = state.running_lanes == 0;
                    drop(state);
                    // Only the last lane wakes `wait_idle`: waking it for every lane that ends
                    // cost a cross-thread wake-up per operation.
                    if engine_idle {
                        shared.idle.notify_waiters();
                    }
                    return;
                }
            }
        };
        // The operation may start before its queueing is durable: its first step is staged after
        // the queueing, so the commit that makes that step durable carries the queueing and its
        // cause too, and announces them first (R7). One commit, not two, before the first call.
        let result = run_operation(&shared, &path, &next).await;
        {
            let mut state = shared.lock();
            let ls = state.ls(&path);
            debug_assert!(
                result.is_err() || ls.closed == Some(next.id),
                "a closing step exactly once: operation {} of {path} ended without one",
                next.id
            );
            ls.running = None;
        }
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
        kind: op.kind,
        ls,
        // A resumed operation gets a fresh deadline: the downtime was not its fault, and
        // containment matters more than the clock (R16, R19).
        deadline: Instant::now() + shared.settings.operation_deadline,
        resumed: op
            .resume
            .as_ref()
            .is_some_and(|r| r.status == OperationStatus::Running),
        required: AtomicU64::new(0),
    };
    // Its start and end are announced by the commits that make them durable (`Shared::flush`);
    // a flow that resumes past its start announces it itself (`OpCtx::announce_resumed`).
    match op.kind {
        OperationKind::Quarantine | OperationKind::ManualQuarantine => {
            quarantine::quarantine(&ctx, op, true).await?
        }
        OperationKind::QuarantineReboot => {
            let phase = op.resume.as_ref().and_then(|r| r.phase.as_deref());
            if phase == Some("reboot") {
                ctx.announce_resumed();
                reboot::reboot(&ctx, op).await?
            } else {
                match quarantine::quarantine(&ctx, op, false).await? {
                    Outcome::Quarantined => reboot::reboot(&ctx, op).await?,
                    other => other,
                }
            }
        }
        OperationKind::Reboot => reboot::reboot(&ctx, op).await?,
        OperationKind::Release => release::release(&ctx).await?,
        OperationKind::Restore => restore::restore(&ctx).await?,
    };
    Ok(())
}

/// Commits a step, applies it to memory with `apply`, and delivers the alerts it carries once
/// it is durable; `waiting` is what waits for it.
pub(super) async fn commit_step(
    shared: &Arc<Shared>,
    entries: Vec<Entry>,
    waiting: Waiting,
    apply: impl FnOnce(&mut State),
) -> Result<(), Halted> {
    let staged = {
        let mut state = shared.lock();
        stage_locked(shared, &mut state, entries, apply)?
    };
    staged.publish(shared, waiting).await
}

/// A step staged under the lock; [`Staged::publish`] makes it durable and then tells the world.
#[must_use = "a staged step is neither durable nor announced until published"]
pub(super) struct Staged {
    ticket: Ticket,
    alerts: Vec<Alert>,
}

impl Staged {
    /// Waits until the step is durable (group commit), then delivers its alerts (R7, R17).
    /// Their delivery marks ride a later commit (at the latest when the lane goes quiet).
    pub(super) async fn publish(
        self,
        shared: &Arc<Shared>,
        waiting: Waiting,
    ) -> Result<(), Halted> {
        shared.durable(self.ticket, waiting).await?;
        deliver_alerts(shared, self.alerts).await;
        Ok(())
    }
}

/// Stages a step under an already held lock and applies it to memory; the caller publishes
/// it once the lock is released.
pub(super) fn stage_locked(
    shared: &Shared,
    state: &mut State,
    entries: Vec<Entry>,
    apply: impl FnOnce(&mut State),
) -> Result<Staged, Halted> {
    let alerts = alerts_in(&entries);
    let ticket = shared.stage(state, entries)?;
    apply(state);
    Ok(Staged { ticket, alerts })
}

pub(super) fn started(ctx: &OpCtx<'_>, plan: Vec<PlanNic>) -> Entry {
    Entry::OperationStarted {
        id: ctx.op,
        lserver: ctx.ls.path.clone(),
        kind: ctx.kind,
        started_ms: ctx.shared.now_ms(),
        deadline_ms: ctx.shared.now_ms()
            + ctx.shared.settings.operation_deadline.as_millis() as u64,
        plan,
    }
}

/// Asks `prepare`, under the state lock, for the operation's plan, or for why the L-Server's
/// state no longer allows it. Journals the start of the operation with the plan (R7: before any
/// device call) and returns the plan; or journals its start and its end as `cancelled` with the
/// reason in one step, and returns `None`.
pub(super) async fn start_or_cancel(
    ctx: &OpCtx<'_>,
    prepare: impl FnOnce(&mut State) -> Result<Vec<PlanNic>, String>,
) -> Result<Option<Vec<PlanNic>>, Halted> {
    let now = ctx.shared.now_ms();
    let prepared = prepare(&mut ctx.shared.lock());
    match prepared {
        Ok(plan) => {
            let entries = vec![started(ctx, plan.clone())];
            commit_step(ctx.shared, entries, Waiting::DeviceCall, |_| {}).await?;
            Ok(Some(plan))
        }
        Err(detail) => {
            let entries = vec![
                started(ctx, Vec::new()),
                Entry::OperationFinished {
                    id: ctx.op,
                    lserver: ctx.ls.path.clone(),
                    outcome: Outcome::Cancelled,
                    detail,
                    finished_ms: now,
                },
            ];
            commit_step(ctx.shared, entries, Waiting::Closing, |_| {}).await?;
            Ok(None)
        }
    }
}

pub(super) fn is_quarantine(shared: &Shared, network: &str) -> bool {
    shared
        .site
        .network(network)
        .is_some_and(|n| n.role == NetworkRole::Quarantine)
}

/// Saves the config of every persisting switch a NIC moved on (confirmed, or a write that may
/// have landed, or found on quarantine); returns what failed.
pub(super) async fn save_switches(
    ctx: &OpCtx<'_>,
    moves: &[NicMove],
) -> Result<Vec<String>, Halted> {
    // R10: saved after any write that may have landed, confirmed or not, so a NIC that
    // reached quarantine stays there across a reboot.
    let switches: BTreeSet<&str> = moves
        .iter()
        .filter(|m| {
            m.confirmed
                || m.written.is_some()
                || m.truth
                    .network()
                    .is_some_and(|n| is_quarantine(ctx.shared, n))
        })
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

/// Moves every NIC of `plan` to its target at once (R8, R15); `read_first` reads each before
/// any write. The moves come back in plan order.
pub(super) async fn move_plan(
    ctx: &OpCtx<'_>,
    plan: &[PlanNic],
    read_first: bool,
) -> Result<Vec<NicMove>, Halted> {
    join_all(
        plan.iter()
            .map(|p| ctx.move_nic(&ctx.ls.nics[p.nic_index], &p.to_network, read_first)),
    )
    .await
    .into_iter()
    .collect()
}

/// The record of a NIC whose device is confirmed on `network`, recorded there with `ip`: no
/// write left open (R8).
pub(super) fn settled_record(index: usize, network: &str, ip: std::net::IpAddr) -> NicRecord {
    NicRecord {
        index,
        network: network.to_string(),
        ip,
        device_network: Some(network.to_string()),
        last_write: None,
    }
}

/// The journal entry of `record`, one NIC of the L-Server at `path`.
pub(super) fn record_entry(path: &str, record: &NicRecord) -> Entry {
    Entry::NicRecord {
        lserver: path.to_string(),
        record: record.clone(),
    }
}

/// The plan as a success alert lists it: `nic0 <network> ip <ip>, …`.
pub(super) fn plan_detail(plan: &[PlanNic]) -> String {
    plan.iter()
        .map(|p| format!("nic{} {} ip {}", p.nic_index, p.to_network, p.to_ip))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One NIC's device state as a failure alert lists it: `nic0 mac <mac> device=<truth>`.
pub(super) fn nic_device(nic: &Nic, truth: &Truth) -> String {
    format!(
        "nic{} mac {} device={}",
        nic.index,
        nic.mac,
        truth.describe()
    )
}

/// The last device error of a NIC not confirmed, as a failure alert appends it.
pub(super) fn last_error(why: Option<&str>) -> String {
    why.map(|w| format!("; last error: {w}"))
        .unwrap_or_default()
}

/// Appends the switches whose config was not saved to an alert detail.
pub(super) fn push_save_failures(detail: &mut String, save_failures: &[String]) {
    for failure in save_failures {
        detail.push_str(&format!("; {failure}"));
    }
}

/// The remedy a failed quarantine or restore names: NICs that are not on quarantine are moved
/// there by hand, then a manual quarantine (R12) reads and confirms them.
pub(super) fn quarantine_remedy(path: &str) -> String {
    format!(
        "; remedy: move the NICs to the quarantine network by hand (the virtualization software for vNICs, the switch VLAN for ports), then run `qlab engine quarantine {path}`"
    )
}

/// How an operation's device work ends: what the L-Server becomes and the alert that says so.
pub(super) struct Ending {
    pub outcome: Outcome,
    pub state: LServerState,
    pub status: String,
    /// Every NIC's record after the operation.
    pub records: Vec<NicRecord>,
    pub code: AlertCode,
    pub detail: String,
    /// `false` for the quarantine of a quarantine_reboot that succeeded: it records the
    /// `reboot` phase and goes on, it does not end.
    pub last_step: bool,
}

/// Stages the closing step of an operation under the held lock: `entries` (its NIC records,
/// the addresses it freed or allocated), then the L-Server's state, the operation's end (or its
/// next phase) and the alert, in that order; and applies the ending to memory.
pub(super) fn stage_ending(
    ctx: &OpCtx<'_>,
    state: &mut State,
    now: u64,
    mut entries: Vec<Entry>,
    ending: Ending,
) -> Result<Staged, Halted> {
    debug_assert!(
        !entries.iter().any(|e| matches!(
            e,
            Entry::LServer { .. } | Entry::OperationFinished { .. } | Entry::Alert(_)
        )),
        "a closing step exactly once: operation {} of {} staged its end before stage_ending",
        ctx.op,
        ctx.ls.path
    );
    let path = ctx.ls.path.as_str();
    let Ending {
        outcome,
        state: new_state,
        status,
        records,
        code,
        detail,
        last_step,
    } = ending;
    entries.push(Entry::LServer {
        path: path.to_string(),
        state: new_state,
        status: status.clone(),
        outcome: Some(outcome),
    });
    if last_step {
        entries.push(Entry::OperationFinished {
            id: ctx.op,
            lserver: path.to_string(),
            outcome,
            detail: detail.clone(),
            finished_ms: now,
        });
    } else {
        entries.push(Entry::OperationPhase {
            id: ctx.op,
            phase: "reboot".into(),
        });
    }
    let alert = state.alert(now, code, Some(path), None, Some(ctx.op), detail);
    entries.push(Entry::Alert(alert));
    stage_locked(ctx.shared, state, entries, |s| {
        let ls_state = s.ls(path);
        ls_state.records = records;
        ls_state.state = new_state;
        ls_state.status = status;
        ls_state.outcome = Some(outcome);
    })
}
