//! One writable thing on a device (a switch port's access VLAN, a vNIC's backing) behind one
//! interface, so the function and failure-classification checks that switches and hypervisors
//! share are written once ([`write_checks`], [`classification_checks`]).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::proxy::{Fault, Matcher};
use super::target::Device;
use super::{blackhole_verdict, check, expect_class, ok, refused_url, Ctx};
use crate::adapters::{DeviceResult, Hypervisor, OutcomeClass, Switch};
use crate::sim::faults::{CallKind, FaultEffect};

/// A value the suite reads and writes through the adapter under test.
#[async_trait]
pub trait Lever: Send + Sync {
    /// The current value.
    async fn read(&self) -> DeviceResult<String>;
    /// Sets the value.
    async fn write(&self, value: &str) -> DeviceResult<()>;
    /// Logs in again after `auth` (a no-op where every request authenticates).
    async fn relogin(&self) -> DeviceResult<()> {
        Ok(())
    }
}

/// A switch port's access VLAN.
pub struct PortLever {
    /// The adapter.
    pub switch: Arc<dyn Switch>,
    /// The port.
    pub port: String,
}

#[async_trait]
impl Lever for PortLever {
    async fn read(&self) -> DeviceResult<String> {
        self.switch
            .get_port(&self.port)
            .await
            .map(|v| v.to_string())
    }
    async fn write(&self, value: &str) -> DeviceResult<()> {
        // The suite writes only VLAN numbers it chose (1-4095).
        let vlan: u16 = value.parse().unwrap_or(u16::MAX);
        self.switch.set_port(&self.port, vlan).await
    }
}

/// A vNIC's port-group backing.
pub struct NicLever {
    /// The adapter.
    pub hypervisor: Arc<dyn Hypervisor>,
    /// VM id.
    pub vm: String,
    /// vNIC key.
    pub nic: String,
}

#[async_trait]
impl Lever for NicLever {
    async fn read(&self) -> DeviceResult<String> {
        self.hypervisor.get_nic(&self.vm, &self.nic).await
    }
    async fn write(&self, value: &str) -> DeviceResult<()> {
        self.hypervisor.set_nic(&self.vm, &self.nic, value).await
    }
    async fn relogin(&self) -> DeviceResult<()> {
        self.hypervisor.login().await
    }
}

/// Builds the lever of the same object on another adapter (refused URL, faulted simulator).
pub type LeverOf<'a> = &'a (dyn Fn(Device) -> Result<Box<dyn Lever>, String> + Sync);

/// The family's ids and values for the shared checks.
pub struct Plan<'a> {
    /// `SW` or `HV`.
    pub prefix: &'static str,
    /// The operation value and the quarantine value.
    pub operation: String,
    /// See [`Plan::operation`].
    pub quarantine: String,
    /// A value the device must refuse (an invalid VLAN, an unknown port group).
    pub invalid: String,
    /// Which requests the write faults hit.
    pub writes: Matcher,
    /// Which requests the expired-session fault hits.
    pub reads: Matcher,
    /// The read and write calls, for the semantic faults of the simulator.
    pub calls: (CallKind, CallKind),
    /// The same lever on another adapter.
    pub lever_of: LeverOf<'a>,
}

impl Plan<'_> {
    fn other(&self, v: &str) -> String {
        if v == self.quarantine {
            self.operation.clone()
        } else {
            self.quarantine.clone()
        }
    }

    fn id(&self, tier: u8, n: u8) -> String {
        format!("{}-{tier}.{n}", self.prefix)
    }
}

/// `<P>-1.2` write and read back, `<P>-1.3` idempotent rewrite, `<P>-1.6` an invalid value is
/// rejected and changes nothing; on the first of `levers`, flipped away from its value in
/// `initial` (the operation value when the first read failed).
pub async fn write_checks(
    ctx: &mut Ctx<'_>,
    plan: &Plan<'_>,
    levers: &[(String, Box<dyn Lever>)],
    initial: &[(String, String)],
) {
    let lever = levers[0].1.as_ref();
    let start = initial.first().map_or(&plan.operation, |(_, v)| v);
    let flipped = plan.other(start);
    check!(
        ctx,
        plan.id(1, 2),
        async {
            ok("set", lever.write(&flipped).await)?;
            let read = ok("read back", lever.read().await)?;
            if read != flipped {
                return Err(format!("set {flipped}, read back {read}"));
            }
            Ok(format!("{start} -> {flipped}, read back {read}"))
        }
        .await
    );
    check!(
        ctx,
        plan.id(1, 3),
        async {
            let now = ok("read", lever.read().await)?;
            ok("rewrite", lever.write(&now).await)?;
            let read = ok("read back", lever.read().await)?;
            if read != now {
                return Err(format!("rewrote {now}, read back {read}"));
            }
            Ok(format!("{now} rewritten, still {read}"))
        }
        .await
    );
    check!(
        ctx,
        plan.id(1, 6),
        async {
            let before = ok("read", lever.read().await)?;
            let class = expect_class(&lever.write(&plan.invalid).await, OutcomeClass::Rejected)?;
            let after = ok("read back", lever.read().await)?;
            if after != before {
                return Err(format!("changed from {before} to {after}"));
            }
            Ok(class)
        }
        .await
    );
}

/// `<P>-2.1` to `<P>-2.10`: the proxy's faults on `lever`, then the simulator's semantic faults.
pub async fn classification_checks(ctx: &mut Ctx<'_>, plan: &Plan<'_>, lever: &dyn Lever) {
    let timeout = ctx.options.call_timeout;
    check!(
        ctx,
        plan.id(2, 1),
        async {
            let url = refused_url().await?;
            let refused = (plan.lever_of)(ctx.adapter_at(&ctx.endpoint_at(&url))?)?;
            expect_class(
                &refused.write(&plan.quarantine).await,
                OutcomeClass::Unavailable,
            )
        }
        .await
    );
    for (n, fault, class) in [
        (2, Fault::Unavailable, OutcomeClass::Unavailable),
        (3, Fault::BadRequest, OutcomeClass::Rejected),
    ] {
        check!(
            ctx,
            plan.id(2, n),
            async {
                let now = ok("read", lever.read().await)?;
                ctx.proxy.arm(fault, plan.writes.clone());
                let result = lever.write(&plan.other(&now)).await;
                ctx.proxy.disarm();
                expect_class(&result, class)
            }
            .await
        );
    }
    check!(
        ctx,
        plan.id(2, 4),
        async {
            let to = plan.other(&ok("read", lever.read().await)?);
            ctx.proxy.arm(Fault::Reset, plan.writes.clone());
            let result = lever.write(&to).await;
            ctx.proxy.disarm();
            let class = expect_class(&result, OutcomeClass::Unknown)?;
            let read = ok("resolving read", lever.read().await)?;
            if read != to {
                return Err(format!(
                    "{class}; the device applied {to} but the read says {read}"
                ));
            }
            Ok(format!("{class}; the read resolves it: {read}"))
        }
        .await
    );
    check!(
        ctx,
        plan.id(2, 5),
        async {
            let to = plan.other(&ok("read", lever.read().await)?);
            ctx.proxy.arm(Fault::Blackhole, plan.writes.clone());
            let sent = Instant::now();
            let result = lever.write(&to).await;
            ctx.proxy.disarm();
            blackhole_verdict(&result, sent.elapsed(), timeout)
        }
        .await
    );
    check!(
        ctx,
        plan.id(2, 6),
        async {
            ctx.proxy.arm(Fault::Unauthorized, plan.reads.clone());
            let result = lever.read().await;
            ctx.proxy.disarm();
            let class = expect_class(&result, OutcomeClass::Auth)?;
            ok("new login", lever.relogin().await)?;
            let read = ok("the call after", lever.read().await)?;
            Ok(format!("{class}; then read {read}"))
        }
        .await
    );
    let (read_call, write_call) = plan.calls;
    for (n, call, effect) in [
        (7, write_call, FaultEffect::ApplyThenError),
        (8, write_call, FaultEffect::AcceptWithoutApply),
        (9, read_call, FaultEffect::StaleRead),
        (10, write_call, FaultEffect::Busy),
    ] {
        check!(ctx, plan.id(2, n), semantic(ctx, plan, call, effect).await);
    }
}

/// One semantic fault on a fresh simulator whose object starts on the operation value.
async fn semantic(
    ctx: &Ctx<'_>,
    plan: &Plan<'_>,
    call: CallKind,
    effect: FaultEffect,
) -> Result<String, String> {
    let (op, qr) = (&plan.operation, &plan.quarantine);
    let faulted = ctx.faulted(call, effect).await?;
    let lever = (plan.lever_of)(faulted.device.clone())?;
    ok("login", lever.relogin().await)?;
    let result = lever.write(qr).await;
    match effect {
        FaultEffect::ApplyThenError => {
            let Err(e) = result else {
                return Err("the device replied with an error; the adapter said ok".into());
            };
            let read = ok("read", lever.read().await)?;
            if &read != qr {
                return Err(format!(
                    "{e}; the device applied {qr} but the read says {read}"
                ));
            }
            Ok(format!("{e}; the read shows {read}"))
        }
        FaultEffect::AcceptWithoutApply => {
            ok("set", result)?;
            let read = ok("read", lever.read().await)?;
            if &read != op {
                return Err(format!(
                    "the device did not apply {qr} but the read says {read} (a cached read?)"
                ));
            }
            Ok(format!("ok, then the read shows {read}"))
        }
        FaultEffect::StaleRead => {
            ok("set", result)?;
            let stale = ok("first read", lever.read().await)?;
            let fresh = ok("second read", lever.read().await)?;
            if &stale != op || &fresh != qr {
                return Err(format!(
                    "the device answered {op} then {qr}; the adapter read {stale} then {fresh}"
                ));
            }
            Ok(format!("read {stale} (stale), then {fresh}"))
        }
        _ => {
            let class = expect_class(&result, OutcomeClass::Busy)?;
            let read = ok("read", lever.read().await)?;
            if &read != op {
                return Err(format!("{class}, yet the read says {read}"));
            }
            Ok(class)
        }
    }
}

/// Reads every lever: `(label, value)` of those read, and the errors of the others.
pub async fn read_all(
    levers: &[(String, Box<dyn Lever>)],
) -> Result<Vec<(String, String)>, String> {
    let mut values = Vec::new();
    let mut errors = Vec::new();
    for (label, lever) in levers {
        match lever.read().await {
            Ok(v) => values.push((label.clone(), v)),
            Err(e) => errors.push(format!("{label}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors.join("; "))
    }
}

/// Writes back every value of `initial` that differs now, then reads them all back.
pub async fn restore(
    levers: &[(String, Box<dyn Lever>)],
    initial: &[(String, String)],
) -> Result<String, String> {
    if initial.len() != levers.len() {
        return Err("the values before the suite could not all be read".to_string());
    }
    for ((label, lever), (_, value)) in levers.iter().zip(initial) {
        if lever.read().await.as_ref().ok() != Some(value) {
            ok(&format!("restore {label}"), lever.write(value).await)?;
        }
    }
    Ok(String::new())
}

/// Reads every lever back and compares with `initial`.
pub async fn verify_restored(
    levers: &[(String, Box<dyn Lever>)],
    initial: &[(String, String)],
) -> Result<String, String> {
    for ((label, lever), (_, value)) in levers.iter().zip(initial) {
        let read = ok(&format!("read {label}"), lever.read().await)?;
        if &read != value {
            return Err(format!("{label}: restored to {value}, read {read}"));
        }
    }
    Ok(format!("{initial:?}"))
}
