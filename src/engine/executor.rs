//! Device steps (R8, R19): every call bounded by a timeout and a device slot, its outcome
//! journaled as it happens, writes retried with backoff and verified by a read, and `unknown`
//! outcomes resolved by reading device truth.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::alerts::Alert;
use super::journal::Entry;
use super::state::{Halted, Shared};
use super::types::OperationId;
use crate::adapters::{DeviceError, DeviceResult, OutcomeClass};
use crate::model::{LServer, Nic, NicLocation};

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
}

/// The context of one operation's device work.
pub(crate) struct OpCtx<'a> {
    pub shared: &'a Arc<Shared>,
    pub op: OperationId,
    pub ls: &'a LServer,
    pub deadline: Instant,
}

impl OpCtx<'_> {
    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Runs one device call: waits for a slot of `device` (R15), bounds it by `timeout` (R19),
    /// and journals its outcome before anything acts on it (R7).
    async fn call<T, F>(
        &self,
        device: &str,
        call: &str,
        nic: Option<usize>,
        target: Option<String>,
        timeout: Duration,
        fut: F,
    ) -> Result<DeviceResult<T>, Halted>
    where
        F: Future<Output = DeviceResult<T>>,
        T: std::fmt::Debug + ToTarget,
    {
        if self.shared.is_halted() {
            return Err(Halted);
        }
        let result = match self.shared.device_slots.get(device) {
            Some(slots) => match tokio::time::timeout(timeout, slots.acquire()).await {
                Ok(Ok(_permit)) => bounded(timeout, fut).await,
                _ => Err(DeviceError::new(
                    OutcomeClass::Unavailable,
                    format!("no free slot on {device} within {timeout:?}"),
                )),
            },
            None => bounded(timeout, fut).await,
        };
        let (outcome, detail, seen) = match &result {
            Ok(value) => ("ok".to_string(), String::new(), value.to_target()),
            Err(e) => (e.class.as_str().to_string(), e.detail.clone(), None),
        };
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
        let mut state = self.shared.lock();
        self.shared.commit(&mut state, &[entry])?;
        Ok(result)
    }

    /// Waits before retry number `attempt` (1-based): the configured backoff, doubled on each
    /// further attempt, never past the deadline (R8, R19).
    async fn back_off(&self, attempt: u32) {
        let backoff = self.shared.settings.retry.backoff;
        let wait = backoff.saturating_mul(1 << (attempt - 1).min(16));
        tokio::time::sleep(wait.min(self.remaining())).await;
    }

    fn write_timeout(&self) -> Duration {
        self.shared.settings.call_timeout.min(self.remaining())
    }

    /// Reads where `nic` is at the device.
    pub async fn read(&self, nic: &Nic, timeout: Duration) -> Result<Truth, Halted> {
        let site = &self.shared.site;
        match &nic.location {
            NicLocation::Virtual {
                hypervisor,
                vm,
                device,
            } => {
                let Some(h) = self.shared.adapters.hypervisors.get(hypervisor) else {
                    return Ok(Truth::Unknown);
                };
                let r = self
                    .call(
                        hypervisor,
                        "get_nic",
                        Some(nic.index),
                        None,
                        timeout,
                        h.get_nic(vm, device),
                    )
                    .await?;
                Ok(match r {
                    Ok(pg) => match site.network_by_portgroup(hypervisor, &pg) {
                        Some(n) => Truth::Network(n.name.clone()),
                        None => Truth::Foreign(pg),
                    },
                    Err(e) if e.class == OutcomeClass::Auth => {
                        self.login(hypervisor).await?;
                        Truth::Unknown
                    }
                    Err(_) => Truth::Unknown,
                })
            }
            NicLocation::Physical { switch, port } => {
                let Some(s) = self.shared.adapters.switches.get(switch) else {
                    return Ok(Truth::Unknown);
                };
                let r = self
                    .call(
                        switch,
                        "get_port",
                        Some(nic.index),
                        None,
                        timeout,
                        s.get_port(port),
                    )
                    .await?;
                Ok(match r {
                    Ok(vlan) => match site.network_by_vlan(vlan) {
                        Some(n) => Truth::Network(n.name.clone()),
                        None => Truth::Foreign(format!("vlan {vlan}")),
                    },
                    Err(_) => Truth::Unknown,
                })
            }
        }
    }

    async fn login(&self, hypervisor: &str) -> Result<(), Halted> {
        if let Some(h) = self.shared.adapters.hypervisors.get(hypervisor) {
            let timeout = self.shared.settings.call_timeout;
            // A failed login needs no handling here: the retried call fails with `auth` again
            // and counts against the attempts.
            let _login = self
                .call(hypervisor, "login", None, None, timeout, h.login())
                .await?;
        }
        Ok(())
    }

    /// Writes `network` to the NIC at its device.
    async fn write(&self, nic: &Nic, network: &str) -> Result<DeviceResult<()>, Halted> {
        let site = &self.shared.site;
        let timeout = self.write_timeout();
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
                    timeout,
                    h.set_nic(vm, device, pg),
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
                    timeout,
                    s.set_port(port, vlan),
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
        // A write since the last read that showed the NIC elsewhere: it may have landed.
        let mut may_have_applied = false;
        let mut attempts = 0u32;
        loop {
            if must_read {
                // Reads get the whole call timeout even at the deadline: R19's one last read.
                truth = self.read(nic, settings.call_timeout).await?;
                truth_fresh = true;
                must_read = false;
                match &truth {
                    Truth::Network(n) if n == target => {
                        return Ok(NicMove {
                            index: nic.index,
                            confirmed: true,
                            truth,
                        });
                    }
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
                    return Ok(NicMove {
                        index: nic.index,
                        confirmed: true,
                        truth: Truth::Network(target.to_string()),
                    });
                }
                Ok(()) => {
                    may_have_applied = true;
                    // R8: a device that says ok without applying is caught by this read.
                    truth = self.read(nic, settings.call_timeout).await?;
                    truth_fresh = true;
                    if truth.network() == Some(target) {
                        return Ok(NicMove {
                            index: nic.index,
                            confirmed: true,
                            truth,
                        });
                    }
                    // A stale read or an unapplied write: read again before writing again.
                    must_read = true;
                }
                Err(e) => match e.class {
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
                },
            }
        }
        if !truth_fresh {
            // R19: past the deadline, one more read tells where the NIC really is.
            truth = self.read(nic, self.shared.settings.call_timeout).await?;
        }
        let confirmed = truth.network() == Some(target);
        Ok(NicMove {
            index: nic.index,
            confirmed,
            truth,
        })
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
                    self.write_timeout(),
                    s.save_config(),
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
            let timeout = self.write_timeout();
            last = match (&self.ls.vm, &self.ls.bmc) {
                (Some((hypervisor, vm)), _) => {
                    match self.shared.adapters.hypervisors.get(hypervisor) {
                        Some(h) => {
                            self.call(
                                hypervisor,
                                "power_reset",
                                None,
                                None,
                                timeout,
                                h.power_reset(vm),
                            )
                            .await?
                        }
                        None => Err(missing(hypervisor)),
                    }
                }
                (None, Some(bmc)) => match self.shared.adapters.bmcs.get(bmc) {
                    Some(b) => {
                        self.call(bmc, "reset", None, None, timeout, b.reset())
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

async fn bounded<T>(
    timeout: Duration,
    fut: impl Future<Output = DeviceResult<T>>,
) -> DeviceResult<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        // Sent but not answered in time: it may have been applied (R8).
        Err(_) => Err(DeviceError::new(
            OutcomeClass::Unknown,
            format!("no reply within {timeout:?}"),
        )),
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

/// Sends alerts to syslog and email, then marks them delivered. Delivery is at least once: an
/// alert whose mark did not commit before a crash is sent again on start (R16, R17).
pub(crate) async fn deliver_alerts(shared: &Arc<Shared>, alerts: Vec<Alert>) {
    if alerts.is_empty() {
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
    let marks: Vec<Entry> = alerts
        .iter()
        .map(|a| Entry::AlertDelivered { seq: a.seq })
        .collect();
    let mut state = shared.lock();
    // A failed mark only means the alert is sent again after a restart.
    let _ = shared.commit(&mut state, &marks);
}

fn tenant_email(shared: &Shared, alert: &Alert) -> Option<String> {
    let ls = shared.site.lserver(alert.lserver.as_deref()?)?;
    shared
        .site
        .tenant_email(ls.tenant.as_deref()?)
        .map(str::to_string)
}
