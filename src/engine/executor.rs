//! Device steps (R8, R19): every call bounded by a timeout and a device slot, its outcome
//! journaled as it happens, writes retried with backoff and verified by a read, and `unknown`
//! outcomes resolved by reading device truth.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::alerts::Alert;
use super::device_queue::{bounded, Budget, Class};
use super::journal::Entry;
use super::state::{Halted, Shared, Waiting};
use super::types::{OperationId, OperationKind};
use super::EngineEvent;
use crate::adapters::{DeviceError, DeviceResult, OutcomeClass, Switch};
use crate::model::{LServer, Nic, NicLocation, Site};

/// What a read of a NIC's device truth gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Truth {
    /// On this network of the topology.
    Network(String),
    /// On something the topology does not name (a foreign port group or VLAN).
    Foreign(String),
    /// The read failed.
    Unknown,
}

impl Truth {
    pub fn network(&self) -> Option<&str> {
        match self {
            Truth::Network(n) => Some(n),
            _ => None,
        }
    }

    /// What a hypervisor's answer `portgroup` stands for.
    pub fn of_portgroup(site: &Site, hypervisor: &str, portgroup: String) -> Truth {
        match site.network_by_portgroup(hypervisor, &portgroup) {
            Some(n) => Truth::Network(n.name.clone()),
            None => Truth::Foreign(portgroup),
        }
    }

    /// What a switch's answer `vlan` stands for.
    pub fn of_vlan(site: &Site, vlan: u16) -> Truth {
        match site.network_by_vlan(vlan) {
            Some(n) => Truth::Network(n.name.clone()),
            None => Truth::Foreign(format!("vlan {vlan}")),
        }
    }

    /// How the alert detail names it.
    pub fn describe(&self) -> String {
        match self {
            Truth::Network(n) => n.clone(),
            Truth::Foreign(v) => format!("foreign({v})"),
            Truth::Unknown => "unknown".into(),
        }
    }
}

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
}

/// The context of one operation's device work.
pub(crate) struct OpCtx<'a> {
    pub shared: &'a Arc<Shared>,
    pub op: OperationId,
    pub kind: OperationKind,
    pub ls: &'a LServer,
    pub deadline: Instant,
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
        call: &str,
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
        if changes_device(call) {
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
            call: call.to_string(),
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

    /// Sets `port` to `vlan`, in one call with the switch's other pending changes (R15).
    async fn set_port(
        &self,
        switch: &str,
        adapter: &Arc<dyn Switch>,
        port: &str,
        vlan: u16,
        budget: Budget,
    ) -> DeviceResult<()> {
        let Some(queue) = self.shared.devices.get(switch) else {
            return bounded(budget.call_timeout_now(), adapter.set_port(port, vlan)).await;
        };
        let adapter = adapter.clone();
        let call = move |changes: Vec<(String, u16)>| {
            let adapter = adapter.clone();
            async move { adapter.set_ports(&changes).await }
        };
        let item = (port.to_string(), vlan);
        queue
            .batched(&queue.set_ports, Class::Write, item, budget, call)
            .await
    }

    /// Reads `port`, in one call with the switch's other pending reads (R15).
    async fn get_port(
        &self,
        switch: &str,
        adapter: &Arc<dyn Switch>,
        port: &str,
        budget: Budget,
    ) -> DeviceResult<u16> {
        let Some(queue) = self.shared.devices.get(switch) else {
            return bounded(budget.call_timeout_now(), adapter.get_port(port)).await;
        };
        let adapter = adapter.clone();
        let call = move |ports: Vec<String>| {
            let adapter = adapter.clone();
            async move { adapter.get_ports(&ports).await }
        };
        queue
            .batched(
                &queue.get_ports,
                Class::Read,
                port.to_string(),
                budget,
                call,
            )
            .await
    }

    /// Saves the switch's config; saves pending together share one call, which persists every
    /// change made before it started.
    async fn save(
        &self,
        switch: &str,
        adapter: &Arc<dyn Switch>,
        budget: Budget,
    ) -> DeviceResult<()> {
        let Some(queue) = self.shared.devices.get(switch) else {
            return bounded(budget.call_timeout_now(), adapter.save_config()).await;
        };
        let adapter = adapter.clone();
        let call = move |waiting: Vec<()>| {
            let adapter = adapter.clone();
            async move { vec![adapter.save_config().await; waiting.len()] }
        };
        queue
            .batched(&queue.saves, Class::Save, (), budget, call)
            .await
    }

    /// Reads where `nic` is at the device; a failed read also says why.
    pub async fn read(&self, nic: &Nic) -> Result<(Truth, Option<String>), Halted> {
        let site = &self.shared.site;
        match &nic.location {
            NicLocation::Virtual {
                hypervisor,
                vm,
                device,
            } => {
                let Some(h) = self.shared.adapters.hypervisors.get(hypervisor) else {
                    return Ok((Truth::Unknown, Some(missing(hypervisor).detail)));
                };
                let r = self
                    .call(
                        hypervisor,
                        "get_nic",
                        Some(nic.index),
                        None,
                        self.slot(
                            hypervisor,
                            Class::Read,
                            self.read_budget(),
                            h.get_nic(vm, device),
                        ),
                    )
                    .await?;
                let result = match r {
                    Ok(pg) => (Truth::of_portgroup(site, hypervisor, pg), None),
                    Err(e) if e.class == OutcomeClass::Auth => {
                        self.login(hypervisor).await?;
                        (Truth::Unknown, Some(e.detail))
                    }
                    Err(e) => (Truth::Unknown, Some(e.detail)),
                };
                self.shared.note_truth(&self.ls.path, nic.index, &result.0);
                Ok(result)
            }
            NicLocation::Physical { switch, port } => {
                let Some(s) = self.shared.adapters.switches.get(switch) else {
                    return Ok((Truth::Unknown, Some(missing(switch).detail)));
                };
                let r = self
                    .call(
                        switch,
                        "get_port",
                        Some(nic.index),
                        None,
                        self.get_port(switch, s, port, self.read_budget()),
                    )
                    .await?;
                let result = match r {
                    Ok(vlan) => (Truth::of_vlan(site, vlan), None),
                    Err(e) => (Truth::Unknown, Some(e.detail)),
                };
                self.shared.note_truth(&self.ls.path, nic.index, &result.0);
                Ok(result)
            }
        }
    }

    async fn login(&self, hypervisor: &str) -> Result<(), Halted> {
        if let Some(h) = self.shared.adapters.hypervisors.get(hypervisor) {
            // A failed login needs no handling here: the retried call fails with `auth` again
            // and counts against the attempts.
            let _login = self
                .call(
                    hypervisor,
                    "login",
                    None,
                    None,
                    self.slot(hypervisor, Class::Write, self.read_budget(), h.login()),
                )
                .await?;
        }
        Ok(())
    }

    /// Writes `network` to the NIC at its device.
    async fn write(&self, nic: &Nic, network: &str) -> Result<DeviceResult<()>, Halted> {
        let site = &self.shared.site;
        let budget = self.change_budget();
        match &nic.location {
            NicLocation::Virtual {
                hypervisor,
                vm,
                device,
            } => {
                let (Some(h), Some(pg)) = (
                    self.shared.adapters.hypervisors.get(hypervisor),
                    site.portgroup(hypervisor, network),
                ) else {
                    return Ok(Err(missing(hypervisor)));
                };
                self.call(
                    hypervisor,
                    "set_nic",
                    Some(nic.index),
                    Some(pg.to_string()),
                    self.slot(hypervisor, Class::Write, budget, h.set_nic(vm, device, pg)),
                )
                .await
            }
            NicLocation::Physical { switch, port } => {
                let (Some(s), Some(net)) = (
                    self.shared.adapters.switches.get(switch),
                    site.network(network),
                ) else {
                    return Ok(Err(missing(switch)));
                };
                let vlan = net.vlan;
                self.call(
                    switch,
                    "set_port",
                    Some(nic.index),
                    Some(vlan.to_string()),
                    self.set_port(switch, s, port, vlan, budget),
                )
                .await
            }
        }
    }

    /// Moves one NIC to `target` (R8). With `read_first` the device is read before any write,
    /// so a NIC already there is confirmed without a write (R12, INV-6).
    pub async fn move_nic(
        &self,
        nic: &Nic,
        target: &str,
        read_first: bool,
    ) -> Result<NicMove, Halted> {
        let settings = self.shared.settings;
        let max_attempts = settings.retry.attempts.max(1);
        let mut must_read = read_first;
        let mut truth = Truth::Unknown;
        let mut truth_fresh = false;
        // The last device error met: what the alert says when the NIC is not confirmed.
        let mut why: Option<String> = None;
        // A write since the last read that showed the NIC elsewhere: it may have landed. It
        // starts from the evidence an earlier operation left (R8, "evidence across
        // operations"): a record whose last known device network is the target means a failed
        // read-first read leads to another read, never to a blind write (INV-6).
        let mut may_have_applied = self.last_known(nic).as_deref() == Some(target);
        let mut attempts = 0u32;
        let done = |truth: Truth, why: Option<String>| {
            let confirmed = truth.network() == Some(target);
            NicMove {
                index: nic.index,
                confirmed,
                truth,
                why: why.filter(|_| !confirmed),
            }
        };
        loop {
            if must_read {
                let (read, failure) = self.read(nic).await?;
                truth = read;
                why = failure.or(why);
                truth_fresh = true;
                must_read = false;
                match &truth {
                    Truth::Network(n) if n == target => return Ok(done(truth, None)),
                    Truth::Network(_) | Truth::Foreign(_) => may_have_applied = false,
                    Truth::Unknown => {}
                }
            }
            if attempts >= max_attempts || self.remaining().is_zero() {
                break;
            }
            if attempts > 0 {
                self.back_off(attempts).await;
                if self.remaining().is_zero() {
                    break;
                }
            }
            attempts += 1;
            if may_have_applied && truth == Truth::Unknown {
                // An earlier write may have landed and no read has said otherwise: read again
                // rather than write blind (INV-6).
                must_read = true;
                continue;
            }
            truth_fresh = false;
            match self.write(nic, target).await? {
                Ok(()) if !settings.verify_writes => {
                    return Ok(done(Truth::Network(target.to_string()), None));
                }
                Ok(()) => {
                    may_have_applied = true;
                    // R8: a device that says ok without applying is caught by this read.
                    let (read, failure) = self.read(nic).await?;
                    truth = read;
                    why = failure.or(why);
                    truth_fresh = true;
                    if truth.network() == Some(target) {
                        return Ok(done(truth, None));
                    }
                    // A stale read or an unapplied write: read again before writing again.
                    must_read = true;
                }
                Err(e) => {
                    match e.class {
                        // May have been applied: only device truth can tell (R8). An error reply
                        // is read too: a device that applies and then errors must not be written
                        // twice (INV-6), and a read costs less than a wrong write.
                        OutcomeClass::Unknown | OutcomeClass::Rejected | OutcomeClass::Busy => {
                            may_have_applied = true;
                            must_read = true
                        }
                        OutcomeClass::Auth => {
                            if let NicLocation::Virtual { hypervisor, .. } = &nic.location {
                                self.login(hypervisor).await?;
                            }
                        }
                        // Refused before processing: nothing changed, nothing to read.
                        OutcomeClass::Unavailable => {}
                    }
                    why = Some(e.detail);
                }
            }
        }
        if !truth_fresh {
            // R19: past the deadline, one more read tells where the NIC really is.
            let (read, failure) = self.read(nic).await?;
            truth = read;
            why = failure.or(why);
        }
        Ok(done(truth, why))
    }

    /// Where the engine's records last saw `nic` at its device, if they know.
    fn last_known(&self, nic: &Nic) -> Option<String> {
        let mut state = self.shared.lock();
        state
            .ls(&self.ls.path)
            .records
            .iter()
            .find(|r| r.index == nic.index)
            .and_then(|r| r.device_network.clone())
    }

    /// Saves a switch's running config (R8 with `persist`), retried like a write.
    pub async fn save_config(&self, switch: &str) -> Result<Result<(), DeviceError>, Halted> {
        let Some(s) = self.shared.adapters.switches.get(switch) else {
            return Ok(Err(missing(switch)));
        };
        let retry = self.shared.settings.retry;
        let mut last = Err(DeviceError::new(
            OutcomeClass::Unavailable,
            "deadline passed before saving",
        ));
        for attempt in 0..retry.attempts.max(1) {
            if attempt > 0 {
                self.back_off(attempt).await;
            }
            if self.remaining().is_zero() {
                break;
            }
            // Saving twice is harmless, so `unknown` is simply retried.
            last = self
                .call(
                    switch,
                    "save_config",
                    None,
                    None,
                    self.save(switch, s, self.change_budget()),
                )
                .await?;
            if last.is_ok() {
                break;
            }
        }
        Ok(last)
    }

    /// Resets the server (R13): the hypervisor for a virtual L-Server, the BMC for a physical
    /// one. An `unknown` outcome is not retried: a second reset could cut a reboot in progress.
    pub async fn reset(&self) -> Result<Result<(), DeviceError>, Halted> {
        let retry = self.shared.settings.retry;
        let mut last = Err(DeviceError::new(
            OutcomeClass::Unavailable,
            "deadline passed before the reset",
        ));
        for attempt in 0..retry.attempts.max(1) {
            if attempt > 0 {
                self.back_off(attempt).await;
            }
            if self.remaining().is_zero() {
                break;
            }
            let budget = self.change_budget();
            last = match (&self.ls.vm, &self.ls.bmc) {
                (Some((hypervisor, vm)), _) => {
                    match self.shared.adapters.hypervisors.get(hypervisor) {
                        Some(h) => {
                            self.call(
                                hypervisor,
                                "power_reset",
                                None,
                                None,
                                self.slot(hypervisor, Class::Write, budget, h.power_reset(vm)),
                            )
                            .await?
                        }
                        None => Err(missing(hypervisor)),
                    }
                }
                (None, Some(bmc)) => match self.shared.adapters.bmcs.get(bmc) {
                    Some(b) => {
                        self.call(
                            bmc,
                            "reset",
                            None,
                            None,
                            self.slot(bmc, Class::Write, budget, b.reset()),
                        )
                        .await?
                    }
                    None => Err(missing(bmc)),
                },
                (None, None) => Err(DeviceError::new(
                    OutcomeClass::Rejected,
                    "no hypervisor VM or BMC is configured for this L-Server",
                )),
            };
            match &last {
                Ok(()) => break,
                Err(e) if e.class == OutcomeClass::Unknown => break,
                Err(e) if e.class == OutcomeClass::Auth => {
                    if let Some((hypervisor, _)) = &self.ls.vm {
                        self.login(hypervisor).await?;
                    }
                }
                Err(_) => {}
            }
        }
        Ok(last)
    }
}

fn missing(device: &str) -> DeviceError {
    DeviceError::new(
        OutcomeClass::Rejected,
        format!("no adapter or mapping for device {device}"),
    )
}

/// Whether `call` changes device state (a move, a save, a reset), as opposed to a read or login.
fn changes_device(call: &str) -> bool {
    !matches!(call, "get_nic" | "get_port" | "login")
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

/// Sends alerts to syslog and email, then marks them delivered. Delivery is at least once: an
/// alert whose mark did not commit before a crash is sent again on start (R16, R17).
pub(crate) async fn deliver_alerts(shared: &Arc<Shared>, alerts: Vec<Alert>) {
    if alerts.is_empty() || shared.adapters.alerts_go_nowhere() {
        // With no output the journal holds them as delivered already (`Engine::open`).
        return;
    }
    let timeout = shared.settings.call_timeout;
    for alert in &alerts {
        if let Some(syslog) = &shared.adapters.syslog {
            let line = alert.syslog_line(&shared.hostname);
            if let Err(e) = bounded(timeout, syslog.send(&line)).await {
                tracing::warn!(seq = alert.seq, error = %e, "syslog delivery failed");
            }
        }
        if !alert.code.emails_tenant() {
            continue;
        }
        let (Some(mailer), Some(to)) = (&shared.adapters.mailer, tenant_email(shared, alert))
        else {
            continue;
        };
        let email = alert.email(&to, true);
        if let Err(e) = bounded(timeout, mailer.send(&email)).await {
            tracing::warn!(seq = alert.seq, error = %e, "email delivery failed");
        }
    }
    stage_delivery_marks(shared, &alerts);
}

/// Stages the marks that say `alerts` went out. Staged, not awaited: a mark lost to a crash only
/// means the alert is sent again after the restart (R16), so it need not hold up the operation;
/// it rides the next commit.
fn stage_delivery_marks(shared: &Shared, alerts: &[Alert]) {
    let marks: Vec<Entry> = alerts
        .iter()
        .map(|a| Entry::AlertDelivered { seq: a.seq })
        .collect();
    let mut state = shared.lock();
    let Ok(ticket) = shared.stage(&mut state, marks) else {
        return;
    };
    // The L-Servers' lanes make their marks durable before they go quiet.
    for path in alerts.iter().filter_map(|a| a.lserver.as_deref()) {
        if let Some(ls) = state.lservers.get_mut(path) {
            ls.marks = ticket;
        }
    }
}

/// Re-sends the alerts a restart found undelivered (R16, R17) in a task of its own, and makes
/// their marks durable. With no output configured now there is nowhere to send them: they are
/// marked delivered, as an alert journaled today would be.
pub(crate) fn redeliver_in_background(shared: &Arc<Shared>, alerts: Vec<Alert>) {
    if alerts.is_empty() {
        return;
    }
    let s = shared.clone();
    shared.spawn(async move {
        if s.adapters.alerts_go_nowhere() {
            stage_delivery_marks(&s, &alerts);
        } else {
            deliver_alerts(&s, alerts).await;
        }
        let staged = s.lock().staged;
        let _ = s.durable(staged, Waiting::Closing).await;
    });
}

/// Delivers new `alerts` outside any lane (detections' alerts) in a task of their own, and
/// makes their marks durable.
pub(crate) fn deliver_alerts_in_background(shared: &Arc<Shared>, alerts: Vec<Alert>) {
    if shared.adapters.alerts_go_nowhere() {
        // Journaled as delivered already (`Engine::open`).
        return;
    }
    redeliver_in_background(shared, alerts);
}

fn tenant_email(shared: &Shared, alert: &Alert) -> Option<String> {
    let ls = shared.site.lserver(alert.lserver.as_deref()?)?;
    shared
        .site
        .tenant_email(ls.tenant.as_deref()?)
        .map(str::to_string)
}
