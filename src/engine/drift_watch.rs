//! The drift watch (R20): something other than the engine may move a quarantined NIC back
//! (a switch reboot that lost unsaved config, a person at the console). The watch re-reads the
//! device truth of every NIC of every `quarantined` L-Server that has no operation queued or
//! running, and a NIC found off its recorded quarantine network starts a restore operation on
//! the L-Server's lane.
//!
//! Decisions where the spec is silent:
//! - **Rounds.** The first round starts one `watch_interval` after the engine opens; each round
//!   starts `watch_interval` after the previous one started, or at once when a round took longer
//!   (more NICs on one device than `watch_calls_per_second × watch_interval`). Which NICs a round
//!   reads is decided when it starts.
//! - **Pacing.** Per device, the round's reads start `1 s / watch_calls_per_second` apart, so a
//!   device gets at most that many watch reads in any second; devices are read side by side.
//! - **Priority.** Watch reads take the lowest service class of the device queue
//!   ([`Class::Watch`]): served after every other call and never urgent. A read that gets no slot
//!   within `watch_interval` gives up; the next round reads the NIC again.
//! - **The lane decides.** A watch read starts only while the L-Server is `quarantined` with an
//!   empty lane and no running operation. It never holds the lane up: an operation that arrives
//!   meanwhile starts at once, and the read's answer is thrown away when the lane started an
//!   operation during the read or holds one after it (that operation decides: a release must not
//!   be undone, and a stale answer must not raise a false drift).
//! - **Not journaled.** Watch reads change nothing, so, unlike an operation's calls, they are not
//!   journaled; what they find is: the `quarantine-drift` alert and the restore operation are
//!   staged in one step. A failed read (timeout, busy, device down) is retried like an
//!   operation's calls (`retry.attempts` with doubling backoff), and like an operation's calls
//!   only within `operation_deadline` from the NIC's first read of the round (R19): a retry
//!   budget of many attempts with doubling backoff would otherwise postpone the alert below
//!   past INV-12's bound while the device stays down.
//! - **A NIC the watch cannot read** (every attempt of a round failed: the device is down, or
//!   refuses the engine's credentials) may have drifted without the engine knowing, and R8
//!   forbids a blind write. The watch raises one ERROR `quarantine-failed` alert naming the NIC
//!   and the last error (containment cannot be verified), and reads it again every round; the
//!   alert is raised again only after a read has succeeded in between. It belongs to no
//!   operation and changes no state: the L-Server stays `quarantined` (INV-1, INV-12).
//! - **The drift alert** names the L-Server, the NIC, its MAC and what the device showed; it
//!   belongs to no operation (its `operation` is empty), so the restore operation, when it fails,
//!   has exactly one ERROR alert of its own, `quarantine-failed` (R17, INV-9).
//! - **A drift is read twice.** A read that shows the NIC off its quarantine network is read
//!   again `confirm_read_after` later (R8), and only that second read raises the drift: a device
//!   may serve the value from before the quarantine's write for a while.
//! - **Hypervisor sessions.** A watch read refused for an expired session logs in (at the same
//!   low priority) before the read is retried.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::join_all;
use tokio::time::Instant;

use super::alerts::{Alert, AlertCode};
use super::device_queue::{bounded, Budget, Class};
use super::enqueue;
use super::executor::{missing, Truth};
use super::journal::Entry;
use super::operation::{stage_locked, Staged};
use super::state::{QueuedOp, Shared, State, Waiting};
use super::types::{LServerState, OperationKind};
use crate::adapters::{DeviceResult, OutcomeClass};
use crate::model::{Nic, NicLocation};

/// One NIC the round reads: its L-Server and index.
#[derive(Debug, Clone)]
struct Watched {
    path: String,
    index: usize,
}

impl Watched {
    /// An alert of the watch about this NIC's L-Server: it names no IP and no operation, since
    /// the watch reads outside any operation (R20).
    fn alert(&self, state: &mut State, now: u64, code: AlertCode, detail: String) -> Alert {
        state.alert(now, code, Some(&self.path), None, None, detail)
    }
}

/// NICs (L-Server path, index) whose failed reads were alerted and have not been read since.
type Unverified = Mutex<BTreeSet<(String, usize)>>;

/// Runs the drift watch until the engine is dropped (its task is aborted) or halts.
pub(crate) async fn watch(shared: Arc<Shared>) {
    let interval = shared.settings.watch_interval;
    let mut round_start = Instant::now() + interval;
    let unverified = Unverified::default();
    loop {
        tokio::time::sleep_until(round_start).await;
        if shared.is_halted() {
            return;
        }
        round(&shared, &unverified).await;
        // The next round one interval after this one started, or now when this one overran.
        round_start = (round_start + interval).max(Instant::now());
    }
}

/// One round: every NIC of every idle quarantined L-Server, paced per device.
async fn round(shared: &Arc<Shared>, unverified: &Unverified) {
    let mut per_device: BTreeMap<&str, Vec<Watched>> = BTreeMap::new();
    {
        let state = shared.lock();
        // Site order: a round reads the same NICs in the same order on every run (INV-11).
        for ls in &shared.site.lservers {
            if !state.lservers.get(&ls.path).is_some_and(watchable) {
                continue;
            }
            for nic in &ls.nics {
                per_device.entry(device_of(nic)).or_default().push(Watched {
                    path: ls.path.clone(),
                    index: nic.index,
                });
            }
        }
    }
    let rate = shared.settings.watch_calls_per_second.max(1);
    let spacing = Duration::from_secs(1) / rate;
    join_all(per_device.into_values().map(|nics| async move {
        let mut next = Instant::now();
        for watched in nics {
            tokio::time::sleep_until(next).await;
            next += spacing;
            if shared.is_halted() {
                return;
            }
            check_nic(shared, &watched, unverified).await;
        }
    }))
    .await;
}

/// Whether an L-Server's NICs are watched now: quarantined, nothing queued or running.
fn watchable(ls: &super::state::LsState) -> bool {
    ls.state == LServerState::Quarantined && ls.lane.is_empty() && ls.running.is_none()
}

fn device_of(nic: &Nic) -> &str {
    match &nic.location {
        NicLocation::Virtual { hypervisor, .. } => hypervisor,
        NicLocation::Physical { switch, .. } => switch,
    }
}

/// Reads one NIC, and on drift stages the alert and the restore operation (R20); when no read
/// succeeds, stages the alert that its containment cannot be verified.
async fn check_nic(shared: &Arc<Shared>, watched: &Watched, unverified: &Unverified) {
    let Some(ls) = shared.site.lserver(&watched.path) else {
        return;
    };
    let Some(nic) = ls.nics.get(watched.index) else {
        return;
    };
    let epoch = {
        let mut state = shared.lock();
        let ls_state = state.ls(&watched.path);
        if !watchable(ls_state) {
            return;
        }
        ls_state.started_ops
    };
    // One deadline for the NIC's reads in this round, the confirming read's included (R19).
    let give_up_at = Instant::now() + shared.settings.operation_deadline;
    let mut truth = read_retrying(shared, watched, nic, give_up_at).await;
    let recorded = shared.lock().ls(&watched.path).records[watched.index]
        .network
        .clone();
    if truth
        .as_ref()
        .is_ok_and(|t| t.network() != Some(recorded.as_str()))
    {
        // R8: a read that contradicts what the engine confirmed may be a stale answer (a
        // device serving the value from before the quarantine's write): read again
        // `confirm_read_after` later and act on that read.
        tokio::time::sleep(shared.settings.confirm_read_after).await;
        if !watchable(shared.lock().ls(&watched.path)) {
            return;
        }
        truth = read_retrying(shared, watched, nic, give_up_at).await;
    }
    let key = (watched.path.clone(), watched.index);
    let staged = match truth {
        Ok(truth) => {
            lock(unverified).remove(&key);
            after_read(shared, watched, nic, truth, epoch)
        }
        Err(error) if lock(unverified).insert(key.clone()) => {
            let staged = unreadable(shared, watched, nic, &error, epoch);
            if staged.is_none() {
                // Not alerted after all (an operation took over): alert when it happens again.
                lock(unverified).remove(&key);
            }
            staged
        }
        Err(_) => None,
    };
    if let Some(staged) = staged {
        let _ = staged.publish(shared, Waiting::Reply).await;
    }
}

fn lock(unverified: &Unverified) -> std::sync::MutexGuard<'_, BTreeSet<(String, usize)>> {
    unverified
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The state, locked, while the L-Server is still the watch's: no operation started during the
/// read and none waits in the lane. Otherwise `None`: the answer may be stale, and the operation
/// decides anyway.
fn still_watched<'a>(
    shared: &'a Shared,
    watched: &Watched,
    epoch: u64,
) -> Option<MutexGuard<'a, State>> {
    let mut state = shared.lock();
    let ls_state = state.ls(&watched.path);
    (ls_state.started_ops == epoch && watchable(ls_state)).then_some(state)
}

/// The locked half of [`check_nic`] when no read succeeded: stages the `quarantine-failed`
/// alert that says the NIC's containment cannot be verified, unless an operation took over.
fn unreadable(
    shared: &Arc<Shared>,
    watched: &Watched,
    nic: &Nic,
    error: &str,
    epoch: u64,
) -> Option<Staged> {
    let mut state = still_watched(shared, watched, epoch)?;
    let recorded = state.ls(&watched.path).records[watched.index]
        .network
        .clone();
    let now = shared.now_ms();
    let detail = format!(
        "nic{} mac {}: the drift watch could not read it ({error}), so whether it is still on {recorded} \
         cannot be verified and a drift could not be undone; remedy: restore access to the device, \
         check the NIC by hand, then run `qlab engine quarantine {}`",
        nic.index, nic.mac, watched.path
    );
    let alert = watched.alert(&mut state, now, AlertCode::QuarantineFailed, detail);
    stage_locked(shared, &mut state, vec![Entry::Alert(alert)], |_| {}).ok()
}

/// The locked half of [`check_nic`]: ends the read and, on drift, stages the `quarantine-drift`
/// alert with the restore operation and queues it.
fn after_read(
    shared: &Arc<Shared>,
    watched: &Watched,
    nic: &Nic,
    truth: Truth,
    epoch: u64,
) -> Option<Staged> {
    let mut state = still_watched(shared, watched, epoch)?;
    let ls_state = state.ls(&watched.path);
    let now = shared.now_ms();
    if let Some(slot) = ls_state.last_read.get_mut(watched.index) {
        *slot = Some((now, truth.network().map(str::to_string)));
    }
    let record = ls_state.records[watched.index].clone();
    if truth.network() == Some(record.network.as_str()) {
        return None;
    }
    shared.stats.drift_found();
    let detail = format!(
        "nic{} mac {} is on {} at the device, its record says {}; moving it back",
        nic.index,
        nic.mac,
        truth.describe(),
        record.network
    );
    let alert = watched.alert(&mut state, now, AlertCode::QuarantineDrift, detail);
    let id = state.next_operation_id;
    state.next_operation_id += 1;
    let entries = vec![
        Entry::Alert(alert),
        Entry::OperationQueued {
            id,
            lserver: watched.path.clone(),
            kind: OperationKind::Restore,
            detection: None,
            created_ms: now,
            // Nobody asked: the engine's own watch queued it (the journal's NULL, like an
            // operation a detection queued).
            requested_by: None,
        },
    ];
    let staged = stage_locked(shared, &mut state, entries, |_| {}).ok()?;
    enqueue(
        shared,
        &mut state,
        &watched.path,
        QueuedOp {
            id,
            kind: OperationKind::Restore,
            resume: None,
        },
    );
    Some(staged)
}

/// [`read`], retried like an operation's calls (`retry.attempts`, doubling `retry.backoff`)
/// while the L-Server stays watchable: R20 asks for a read of every NIC each round, and a
/// single refused read must not leave a drift unseen for a whole `watch_interval` (INV-12).
/// No retry starts after `give_up_at`. The last error when every attempt failed; the next
/// round tries again.
async fn read_retrying(
    shared: &Arc<Shared>,
    watched: &Watched,
    nic: &Nic,
    give_up_at: Instant,
) -> Result<Truth, String> {
    let retry = shared.settings.retry;
    let mut last = String::from("no attempt");
    for attempt in 0..retry.attempts.max(1) {
        if attempt > 0 {
            let wait = retry.backoff.saturating_mul(1 << (attempt - 1).min(16));
            if Instant::now() + wait > give_up_at {
                return Err(last);
            }
            tokio::time::sleep(wait).await;
            if !watchable(shared.lock().ls(&watched.path)) {
                return Err(last);
            }
        }
        match read(shared, nic).await {
            Ok(truth) => return Ok(truth),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// Reads where `nic` is at its device at the watch's priority.
async fn read(shared: &Arc<Shared>, nic: &Nic) -> DeviceResult<Truth> {
    let settings = shared.settings;
    let budget = Budget {
        wait_until: Instant::now() + settings.watch_interval,
        end_by: Instant::now() + settings.watch_interval + settings.call_timeout,
        call_timeout: settings.call_timeout,
    };
    let site = &shared.site;
    match &nic.location {
        NicLocation::Virtual {
            hypervisor,
            vm,
            device,
        } => {
            let h = shared
                .adapters
                .hypervisors
                .get(hypervisor)
                .ok_or_else(|| missing(hypervisor))?;
            let result = slot(shared, hypervisor, budget, h.get_nic(vm, device)).await;
            if let Err(e) = &result {
                if e.class == OutcomeClass::Auth {
                    let _ = slot(shared, hypervisor, budget, h.login()).await;
                }
            }
            result.map(|pg| Truth::of_portgroup(site, hypervisor, pg))
        }
        NicLocation::Physical { switch, port } => {
            let s = shared
                .adapters
                .switches
                .get(switch)
                .ok_or_else(|| missing(switch))?
                .clone();
            let result = match shared.devices.get(switch) {
                Some(queue) => {
                    let call = move |ports: Vec<String>| {
                        let s = s.clone();
                        async move { s.get_ports(&ports).await }
                    };
                    queue
                        .batched(&queue.get_ports, Class::Watch, port.clone(), budget, call)
                        .await
                }
                None => bounded(budget.call_timeout_now(), s.get_port(port)).await,
            };
            result.map(|vlan| Truth::of_vlan(site, vlan))
        }
    }
}

/// `fut` under a watch-class slot of `device`.
async fn slot<T>(
    shared: &Shared,
    device: &str,
    budget: Budget,
    fut: impl std::future::Future<Output = DeviceResult<T>>,
) -> DeviceResult<T> {
    match shared.devices.get(device) {
        Some(queue) => queue.run(Class::Watch, budget, fut).await,
        None => bounded(budget.call_timeout_now(), fut).await,
    }
}
