//! The hypervisor suite (`HV-*`): vNIC backings of the product's resource VMs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::proxy::{Fault, Matcher};
use super::target::Device;
use super::{blackhole_verdict, expect_class, ok, refused_url, Ctx};
use crate::adapters::{Hypervisor, OutcomeClass};
use crate::sim::faults::{CallKind, FaultEffect};

/// A port group id no manager has.
const ABSENT_PORTGROUP: &str = "qlab-absent-portgroup";

fn as_hv(device: Device) -> Result<Arc<dyn Hypervisor>, String> {
    match device {
        Device::Hypervisor(h) => Ok(h),
        _ => Err("the adapter is not a hypervisor adapter".into()),
    }
}

/// Requests that change a vNIC or reset a VM (not the session's).
fn writes() -> Matcher {
    Matcher {
        not_get: true,
        path_contains: None,
        path_excludes: Some("session".into()),
    }
}

/// Requests other than the session's.
fn not_session() -> Matcher {
    Matcher {
        path_excludes: Some("session".into()),
        ..Matcher::default()
    }
}

/// Runs every hypervisor check up to the asked tier (tier 3 is [`super::tier3`]'s).
pub async fn run(ctx: &mut Ctx<'_>) {
    let product = ctx.options.product.clone();
    let res = &product.resources;
    let pgs = res.portgroups.clone().expect("validated: portgroups");
    let (op, qr) = (pgs.operation.clone(), pgs.quarantine.clone());
    let (vm, nic) = (res.vms[0].vm.clone(), res.vms[0].nic.clone());
    let hv = match ctx.adapter_at(&ctx.endpoint()).and_then(as_hv) {
        Ok(hv) => hv,
        Err(e) => {
            for def in super::checks::catalogue(ctx.options.family) {
                if def.tier <= 2 && ctx.should_run(def.id) {
                    ctx.finish(def.id, Instant::now(), Err(e.clone()));
                }
            }
            return;
        }
    };
    let other = |v: &str| if v == qr { op.clone() } else { qr.clone() };

    let mut initial: BTreeMap<(String, String), String> = BTreeMap::new();
    if ctx.should_run("HV-1.1") {
        let t = Instant::now();
        let outcome = async {
            ok("login", hv.login().await)?;
            let mut errors = Vec::new();
            for v in &res.vms {
                match hv.get_nic(&v.vm, &v.nic).await {
                    Ok(pg) => {
                        initial.insert((v.vm.clone(), v.nic.clone()), pg);
                    }
                    Err(e) => errors.push(format!("{}/{}: {e}", v.vm, v.nic)),
                }
            }
            if errors.is_empty() {
                Ok(format!("{initial:?}"))
            } else {
                Err(errors.join("; "))
            }
        }
        .await;
        ctx.finish("HV-1.1", t, outcome);
    }
    let start0 = initial
        .get(&(vm.clone(), nic.clone()))
        .cloned()
        .unwrap_or(op.clone());
    let flipped = other(&start0);
    if ctx.should_run("HV-1.2") {
        let t = Instant::now();
        let outcome = async {
            ok("set", hv.set_nic(&vm, &nic, &flipped).await)?;
            let read = ok("read back", hv.get_nic(&vm, &nic).await)?;
            if read != flipped {
                return Err(format!("set {vm}/{nic} to {flipped}, read back {read}"));
            }
            Ok(format!("{vm}/{nic}: {start0} -> {flipped}"))
        }
        .await;
        ctx.finish("HV-1.2", t, outcome);
    }
    if ctx.should_run("HV-1.3") {
        let t = Instant::now();
        let outcome = async {
            let now = ok("read", hv.get_nic(&vm, &nic).await)?;
            ok("rewrite", hv.set_nic(&vm, &nic, &now).await)?;
            let read = ok("read back", hv.get_nic(&vm, &nic).await)?;
            if read != now {
                return Err(format!("rewrote {now}, read back {read}"));
            }
            Ok(format!("{vm}/{nic}: {now} rewritten"))
        }
        .await;
        ctx.finish("HV-1.3", t, outcome);
    }
    if ctx.should_run("HV-1.4") {
        let t = Instant::now();
        let outcome = ok("power reset", hv.power_reset(&vm).await).map(|_| format!("{vm} reset"));
        ctx.finish("HV-1.4", t, outcome);
    }
    if ctx.should_run("HV-1.5") {
        let t = Instant::now();
        let outcome = expect_class(
            &hv.get_nic(res.absent_vm(), &nic).await,
            OutcomeClass::Rejected,
        );
        ctx.finish("HV-1.5", t, outcome);
    }
    if ctx.should_run("HV-1.6") {
        let t = Instant::now();
        let outcome = async {
            let before = ok("read", hv.get_nic(&vm, &nic).await)?;
            let class = expect_class(
                &hv.set_nic(&vm, &nic, ABSENT_PORTGROUP).await,
                OutcomeClass::Rejected,
            )?;
            let after = ok("read back", hv.get_nic(&vm, &nic).await)?;
            if after != before {
                return Err(format!("{vm}/{nic} changed from {before} to {after}"));
            }
            Ok(class)
        }
        .await;
        ctx.finish("HV-1.6", t, outcome);
    }

    let timeout = ctx.options.call_timeout;
    if ctx.should_run("HV-2.1") {
        let t = Instant::now();
        let outcome = async {
            let url = refused_url().await?;
            let hv = ctx.adapter_at(&ctx.endpoint_at(&url)).and_then(as_hv)?;
            expect_class(&hv.set_nic(&vm, &nic, &qr).await, OutcomeClass::Unavailable)
        }
        .await;
        ctx.finish("HV-2.1", t, outcome);
    }
    for (id, fault, class) in [
        ("HV-2.2", Fault::Unavailable, OutcomeClass::Unavailable),
        ("HV-2.3", Fault::BadRequest, OutcomeClass::Rejected),
    ] {
        if ctx.should_run(id) {
            let t = Instant::now();
            let outcome = async {
                let now = ok("read", hv.get_nic(&vm, &nic).await)?;
                ctx.proxy.arm(fault, writes());
                let result = hv.set_nic(&vm, &nic, &other(&now)).await;
                ctx.proxy.disarm();
                expect_class(&result, class)
            }
            .await;
            ctx.finish(id, t, outcome);
        }
    }
    if ctx.should_run("HV-2.4") {
        let t = Instant::now();
        let outcome = async {
            let now = ok("read", hv.get_nic(&vm, &nic).await)?;
            let to = other(&now);
            ctx.proxy.arm(Fault::Reset, writes());
            let result = hv.set_nic(&vm, &nic, &to).await;
            ctx.proxy.disarm();
            let class = expect_class(&result, OutcomeClass::Unknown)?;
            let read = ok("resolving read", hv.get_nic(&vm, &nic).await)?;
            if read != to {
                return Err(format!(
                    "{class}; the device applied {to} but the read says {read}"
                ));
            }
            Ok(format!("{class}; the read resolves it: {read}"))
        }
        .await;
        ctx.finish("HV-2.4", t, outcome);
    }
    if ctx.should_run("HV-2.5") {
        let t = Instant::now();
        let outcome = async {
            let now = ok("read", hv.get_nic(&vm, &nic).await)?;
            ctx.proxy.arm(Fault::Blackhole, writes());
            let sent = Instant::now();
            let result = hv.set_nic(&vm, &nic, &other(&now)).await;
            ctx.proxy.disarm();
            blackhole_verdict(&result, sent.elapsed(), timeout)
        }
        .await;
        ctx.finish("HV-2.5", t, outcome);
    }
    if ctx.should_run("HV-2.6") {
        let t = Instant::now();
        let outcome = async {
            ctx.proxy.arm(Fault::Unauthorized, not_session());
            let result = hv.get_nic(&vm, &nic).await;
            ctx.proxy.disarm();
            let class = expect_class(&result, OutcomeClass::Auth)?;
            ok("new login", hv.login().await)?;
            let read = ok("the call after", hv.get_nic(&vm, &nic).await)?;
            Ok(format!("{class}; logged in again, read {read}"))
        }
        .await;
        ctx.finish("HV-2.6", t, outcome);
    }
    let semantic: [(&str, CallKind, FaultEffect); 4] = [
        ("HV-2.7", CallKind::SetNic, FaultEffect::ApplyThenError),
        ("HV-2.8", CallKind::SetNic, FaultEffect::AcceptWithoutApply),
        ("HV-2.9", CallKind::GetNic, FaultEffect::StaleRead),
        ("HV-2.10", CallKind::SetNic, FaultEffect::Busy),
    ];
    for (id, call, effect) in semantic {
        if !ctx.should_run(id) {
            continue;
        }
        let t = Instant::now();
        let outcome = async {
            let f = ctx.faulted(call, effect).await?;
            let hv = as_hv(f.device)?;
            ok("login", hv.login().await)?;
            let result = hv.set_nic(&vm, &nic, &qr).await;
            match effect {
                FaultEffect::ApplyThenError => {
                    let Err(e) = result else {
                        return Err("the device replied with an error; the adapter said ok".into());
                    };
                    let read = ok("read", hv.get_nic(&vm, &nic).await)?;
                    if read != qr {
                        return Err(format!("{e}; the device applied {qr} but the read says {read}"));
                    }
                    Ok(format!("{e}; the read shows {read}"))
                }
                FaultEffect::AcceptWithoutApply => {
                    ok("set", result)?;
                    let read = ok("read", hv.get_nic(&vm, &nic).await)?;
                    if read != op {
                        return Err(format!(
                            "the device did not apply {qr} but the read says {read} (a cached read?)"
                        ));
                    }
                    Ok(format!("ok, then the read shows {read}"))
                }
                FaultEffect::StaleRead => {
                    ok("set", result)?;
                    let stale = ok("first read", hv.get_nic(&vm, &nic).await)?;
                    let fresh = ok("second read", hv.get_nic(&vm, &nic).await)?;
                    if stale != op || fresh != qr {
                        return Err(format!(
                            "the device answered {op} then {qr}; the adapter read {stale} then {fresh}"
                        ));
                    }
                    Ok(format!("read {stale} (stale), then {fresh}"))
                }
                _ => {
                    let class = expect_class(&result, OutcomeClass::Busy)?;
                    let read = ok("read", hv.get_nic(&vm, &nic).await)?;
                    if read != op {
                        return Err(format!("{class}, yet the read says {read}"));
                    }
                    Ok(class)
                }
            }
        }
        .await;
        ctx.finish(id, t, outcome);
    }

    if ctx.should_run("HV-1.7") {
        let t = Instant::now();
        let outcome = async {
            if initial.is_empty() {
                return Err("the initial backings could not be read (HV-1.1)".to_string());
            }
            for ((vm, nic), pg) in &initial {
                let now = hv.get_nic(vm, nic).await;
                if now.as_ref().ok() != Some(pg) {
                    ok(
                        &format!("restore {vm}/{nic}"),
                        hv.set_nic(vm, nic, pg).await,
                    )?;
                }
            }
            for ((vm, nic), pg) in &initial {
                let read = ok(&format!("read {vm}/{nic}"), hv.get_nic(vm, nic).await)?;
                if &read != pg {
                    return Err(format!("{vm}/{nic}: restored to {pg}, read {read}"));
                }
            }
            Ok(format!("{initial:?}"))
        }
        .await;
        ctx.finish("HV-1.7", t, outcome);
    }
}
