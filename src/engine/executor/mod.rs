//! Device steps (R8, R19): every call bounded by a timeout and a device slot, its outcome
//! journaled as it happens, writes retried with backoff and verified by a read, and `unknown`
//! outcomes resolved by reading device truth.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::device_queue::{bounded, Budget, Class};
use super::journal::Entry;
use super::state::{Halted, Shared, Waiting};
use super::types::{OperationId, OperationKind};
use super::EngineEvent;
use crate::adapters::{DeviceError, DeviceResult, OutcomeClass, Switch};
use crate::model::{LServer, Nic, NicLocation};

mod delivery;
mod device;
mod nic;
mod truth;

pub(crate) use delivery::{deliver_alerts, deliver_alerts_in_background, redeliver_in_background};
pub(crate) use truth::Truth;

/// How moving one NIC ended.
#[derive(Debug, Clone)]
pub(crate) struct NicMove {
    pub index: usize,
    pub confirmed: bool,
    /// Last known device truth.
    pub truth: Truth,
    /// When not confirmed: the last device error met on the way, for the alert (a device too
    /// slow for the load says so here, not as a bare `unavailable`).
    pub why: Option<String>,
    /// When not confirmed: a network written after the last read that showed a value, whose
    /// write may have landed, or else the network of an answer that contradicted the evidence
    /// and could not be read again (the device last showed the NIC there); the NIC's record
    /// carries it into the next operation, which reads before it writes (R8, INV-6).
    pub written: Option<String>,
    /// The network the move's last read that answered showed, or a write the device
    /// acknowledged after it: evidence that a later failed or unconfirmed read does not erase,
    /// and what the next operation weighs a contradicting read against (R8).
    pub seen: Option<String>,
}

impl NicMove {
    /// The network the NIC's record says the device last showed after this move: its last
    /// read if that answered, else [`NicMove::seen`] (an earlier read that answered, or a write
    /// the device acknowledged after it), else what the record said `before`
    /// ([`Truth::evidence_after`]).
    pub fn evidence_after(&self, before: Option<&str>) -> Option<String> {
        self.truth.evidence_after(self.seen.as_deref().or(before))
    }
}

/// The context of one operation's device work.
pub(crate) struct OpCtx<'a> {
    pub shared: &'a Arc<Shared>,
    pub op: OperationId,
    pub kind: OperationKind,
    pub ls: &'a LServer,
    pub deadline: Instant,
    /// Resumed after a restart while it was running: a write may have been in flight when the
    /// engine stopped (R8, R16).
    pub resumed: bool,
    /// The ticket of this operation's latest journaled call outcome: durable before its next
    /// write (R7).
    pub required: AtomicU64,
}

impl OpCtx<'_> {
    /// Announces the start of an operation that resumes past its start step, so commits no
    /// `OperationStarted` entry (a reboot after a restart). Its queueing and start are durable
    /// from before the restart.
    pub fn announce_resumed(&self) {
        self.shared.emit(EngineEvent::OperationStarted {
            id: self.op,
            lserver: self.ls.path.clone(),
            kind: self.kind,
        });
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Runs one device call, `fut` being the whole interaction including its device queue and
    /// timeout ([`OpCtx::slot`], the batch helpers), and journals its outcome before anything
    /// acts on it (R7).
    async fn call<T, F>(
        &self,
        device: &str,
        call: DeviceCall,
        nic: Option<usize>,
        target: Option<String>,
        fut: F,
    ) -> Result<DeviceResult<T>, Halted>
    where
        F: Future<Output = DeviceResult<T>>,
        T: std::fmt::Debug + ToTarget,
    {
        if self.shared.is_halted() {
            return Err(Halted);
        }
        // R7: the plan was durable before the first call (the flows publish it first); before
        // a call that changes a device, so is every earlier outcome of this operation. A read or
        // a login changes nothing, so it does not wait for a commit.
        if call.changes_device() {
            let required = self.required.load(Ordering::Acquire);
            self.shared.durable(required, Waiting::DeviceCall).await?;
        }
        let under_way = self.shared.call_started();
        let started = Instant::now();
        let result = fut.await;
        let took = started.elapsed();
        drop(under_way);
        let (outcome, detail, seen) = match &result {
            Ok(value) => ("ok".to_string(), String::new(), value.to_target()),
            Err(e) => (e.class.as_str().to_string(), e.detail.clone(), None),
        };
        self.shared.stats.device_call(device, &outcome, took);
        let entry = Entry::DeviceCall {
            operation: self.op,
            nic_index: nic,
            device: device.to_string(),
            call: call.name().to_string(),
            target: target.or(seen),
            outcome,
            detail,
            at_ms: self.shared.now_ms(),
        };
        // Staged, not awaited: whatever acts on this outcome outside the engine (the next device
        // call, an alert) waits for a commit that carries it.
        let ticket = self.shared.stage(&mut self.shared.lock(), vec![entry])?;
        self.required.fetch_max(ticket, Ordering::AcqRel);
        Ok(result)
    }

    /// Waits before retry number `attempt` (1-based): the configured backoff, doubled on each
    /// further attempt, never past the deadline (R8, R19).
    async fn back_off(&self, attempt: u32) {
        let backoff = self.shared.settings.retry.backoff;
        let wait = backoff.saturating_mul(1 << (attempt - 1).min(16));
        tokio::time::sleep(wait.min(self.remaining())).await;
    }

    /// The budget of a call that changes a device: it may wait for a slot until the operation
    /// deadline, and must end by it (R19: no write runs past the deadline). Waiting in the
    /// device queue costs no call timeout and no attempt (device_queue.rs).
    fn change_budget(&self) -> Budget {
        Budget {
            wait_until: self.deadline,
            end_by: self.deadline,
            call_timeout: self.shared.settings.call_timeout,
        }
    }

    /// The budget of a read or a login (they change nothing): a slot until the deadline, or for
    /// one call timeout when that is later (R19's last read after the deadline), and the call
    /// over by the deadline plus one call timeout, as INV-10 allows.
    fn read_budget(&self) -> Budget {
        let call_timeout = self.shared.settings.call_timeout;
        let now = Instant::now();
        Budget {
            wait_until: self.deadline.max(now + call_timeout),
            end_by: self.deadline.max(now) + call_timeout,
            call_timeout,
        }
    }

    /// `fut` under a slot of `device` in service class `class`, within `budget` (R15, R19).
    async fn slot<T>(
        &self,
        device: &str,
        class: Class,
        budget: Budget,
        fut: impl Future<Output = DeviceResult<T>>,
    ) -> DeviceResult<T> {
        match self.shared.devices.get(device) {
            Some(queue) => queue.run(class, budget, fut).await,
            None => bounded(budget.call_timeout_now(), fut).await,
        }
    }
}

/// The error of a call to a device the site names but no adapter serves.
pub(super) fn missing(device: &str) -> DeviceError {
    DeviceError::new(
        OutcomeClass::Rejected,
        format!("no adapter or mapping for device {device}"),
    )
}

/// A device call the engine makes; its name is what the journal's `device_calls.call` column
/// and the lab's history record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeviceCall {
    /// Reads a vNIC's port group (hypervisor).
    GetNic,
    /// Moves a vNIC to a port group (hypervisor).
    SetNic,
    /// Reads an access port's VLAN (switch).
    GetPort,
    /// Sets an access port's VLAN (switch).
    SetPort,
    /// Saves the running configuration (switch, R10).
    SaveConfig,
    /// Resets a VM (hypervisor, R13).
    PowerReset,
    /// Resets a server (BMC, R13).
    Reset,
    /// Opens a session (hypervisor).
    Login,
}

impl DeviceCall {
    /// The call's name in the journal and the history.
    pub fn name(self) -> &'static str {
        match self {
            DeviceCall::GetNic => "get_nic",
            DeviceCall::SetNic => "set_nic",
            DeviceCall::GetPort => "get_port",
            DeviceCall::SetPort => "set_port",
            DeviceCall::SaveConfig => "save_config",
            DeviceCall::PowerReset => "power_reset",
            DeviceCall::Reset => "reset",
            DeviceCall::Login => "login",
        }
    }

    /// Whether the call changes device state (a move, a save, a reset), as opposed to a read
    /// or a login: only such a call waits for the operation's earlier outcomes to be durable
    /// (R7).
    pub fn changes_device(self) -> bool {
        match self {
            DeviceCall::GetNic | DeviceCall::GetPort | DeviceCall::Login => false,
            DeviceCall::SetNic
            | DeviceCall::SetPort
            | DeviceCall::SaveConfig
            | DeviceCall::PowerReset
            | DeviceCall::Reset => true,
        }
    }
}

/// The value a successful call returns, as journaled in `target`.
pub(crate) trait ToTarget {
    fn to_target(&self) -> Option<String>;
}

impl ToTarget for () {
    fn to_target(&self) -> Option<String> {
        None
    }
}

impl ToTarget for String {
    fn to_target(&self) -> Option<String> {
        Some(self.clone())
    }
}

impl ToTarget for u16 {
    fn to_target(&self) -> Option<String> {
        Some(self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::DeviceCall::{self, *};

    const ALL: [DeviceCall; 8] = [
        GetNic, SetNic, GetPort, SetPort, SaveConfig, PowerReset, Reset, Login,
    ];

    #[test]
    fn r7_only_reads_and_logins_go_out_before_earlier_outcomes_are_durable() {
        let waiting: Vec<&str> = ALL
            .iter()
            .filter(|c| c.changes_device())
            .map(|c| c.name())
            .collect();
        assert_eq!(
            waiting,
            ["set_nic", "set_port", "save_config", "power_reset", "reset"]
        );
    }

    #[test]
    fn device_call_names_are_distinct() {
        let mut names: Vec<&str> = ALL.iter().map(|c| c.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }
}
