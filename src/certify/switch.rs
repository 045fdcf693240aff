//! The switch suite (`SW-*`): access VLANs of the product's resource ports.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::proxy::{Fault, Matcher};
use super::target::Device;
use super::{blackhole_verdict, expect_class, ok, refused_url, Ctx};
use crate::adapters::{OutcomeClass, Switch};
use crate::sim::faults::{CallKind, FaultEffect};

/// A VLAN no switch accepts on an access port.
const INVALID_VLAN: u16 = 4095;

fn as_switch(device: Device) -> Result<Arc<dyn Switch>, String> {
    match device {
        Device::Switch(s) => Ok(s),
        _ => Err("the adapter is not a switch adapter".into()),
    }
}

/// Runs every switch check up to the asked tier (tier 3 is [`super::tier3`]'s).
pub async fn run(ctx: &mut Ctx<'_>) {
    let product = ctx.options.product.clone();
    let ports = product.resources.ports.clone();
    let vlans = product
        .resources
        .vlans
        .expect("validated: a switch has vlans");
    let (op, qr) = (vlans.operation, vlans.quarantine);
    let p0 = ports[0].clone();
    let sw = match ctx.adapter_at(&ctx.endpoint()).and_then(as_switch) {
        Ok(sw) => sw,
        Err(e) => {
            for def in super::checks::catalogue(ctx.options.family) {
                if def.tier <= 2 && ctx.should_run(def.id) {
                    ctx.finish(def.id, Instant::now(), Err(e.clone()));
                }
            }
            return;
        }
    };
    let other = |v: u16| if v == qr { op } else { qr };

    // SW-1.1: read every resource port; what is read is what gets restored.
    let mut initial: BTreeMap<String, u16> = BTreeMap::new();
    if ctx.should_run("SW-1.1") {
        let t = Instant::now();
        let mut errors = Vec::new();
        for port in &ports {
            match sw.get_port(port).await {
                Ok(v) => {
                    initial.insert(port.clone(), v);
                }
                Err(e) => errors.push(format!("{port}: {e}")),
            }
        }
        let outcome = if errors.is_empty() {
            Ok(format!("{initial:?}"))
        } else {
            Err(errors.join("; "))
        };
        ctx.finish("SW-1.1", t, outcome);
    }
    let start0 = initial.get(&p0).copied().unwrap_or(op);
    let flipped = other(start0);

    if ctx.should_run("SW-1.2") {
        let t = Instant::now();
        let outcome = async {
            ok("set", sw.set_port(&p0, flipped).await)?;
            let read = ok("read back", sw.get_port(&p0).await)?;
            if read != flipped {
                return Err(format!("set {p0} to {flipped}, read back {read}"));
            }
            Ok(format!("{p0}: {start0} -> {flipped}, read back {read}"))
        }
        .await;
        ctx.finish("SW-1.2", t, outcome);
    }
    if ctx.should_run("SW-1.3") {
        let t = Instant::now();
        let outcome = async {
            let now = ok("read", sw.get_port(&p0).await)?;
            ok("rewrite", sw.set_port(&p0, now).await)?;
            let read = ok("read back", sw.get_port(&p0).await)?;
            if read != now {
                return Err(format!("rewrote {p0} with {now}, read back {read}"));
            }
            Ok(format!("{p0}: {now} rewritten, still {read}"))
        }
        .await;
        ctx.finish("SW-1.3", t, outcome);
    }
    if ctx.should_run("SW-1.4") {
        let t = Instant::now();
        let outcome = ok("save", sw.save_config().await).map(|_| "saved".to_string());
        ctx.finish("SW-1.4", t, outcome);
    }
    if ctx.should_run("SW-1.5") {
        let t = Instant::now();
        let outcome = async {
            if !sw.batches() {
                return Err("batch is claimed but the adapter does not batch".to_string());
            }
            let changes: Vec<(String, u16)> = ports.iter().map(|p| (p.clone(), qr)).collect();
            let results = sw.set_ports(&changes).await;
            if results.len() != changes.len() {
                return Err(format!(
                    "{} results for {} changes",
                    results.len(),
                    changes.len()
                ));
            }
            for (r, (port, _)) in results.into_iter().zip(&changes) {
                ok(&format!("batch set {port}"), r)?;
            }
            let reads = sw.get_ports(&ports).await;
            if reads.len() != ports.len() {
                return Err(format!("{} results for {} reads", reads.len(), ports.len()));
            }
            for (r, port) in reads.into_iter().zip(&ports) {
                let v = ok(&format!("batch read {port}"), r)?;
                if v != qr {
                    return Err(format!("{port}: batch set {qr}, read {v}"));
                }
            }
            Ok(format!(
                "{} ports set and read in one request each",
                ports.len()
            ))
        }
        .await;
        ctx.finish("SW-1.5", t, outcome);
    }
    if ctx.should_run("SW-1.6") {
        let t = Instant::now();
        let outcome = async {
            let before = ok("read", sw.get_port(&p0).await)?;
            let result = sw.set_port(&p0, INVALID_VLAN).await;
            let class = expect_class(&result, OutcomeClass::Rejected)?;
            let after = ok("read back", sw.get_port(&p0).await)?;
            if after != before {
                return Err(format!("{p0} changed from {before} to {after}"));
            }
            Ok(class)
        }
        .await;
        ctx.finish("SW-1.6", t, outcome);
    }
    if ctx.should_run("SW-1.7") {
        let t = Instant::now();
        let absent = product.resources.absent_port().to_string();
        let outcome = expect_class(&sw.get_port(&absent).await, OutcomeClass::Rejected);
        ctx.finish("SW-1.7", t, outcome);
    }

    tier2(ctx, &sw, &p0, op, qr).await;

    // SW-1.8: restore, whatever happened before.
    if ctx.should_run("SW-1.8") {
        let t = Instant::now();
        let outcome = async {
            if initial.is_empty() {
                return Err("the initial VLANs could not be read (SW-1.1)".to_string());
            }
            for (port, vlan) in &initial {
                let now = sw.get_port(port).await;
                if now.as_ref().ok() != Some(vlan) {
                    ok(&format!("restore {port}"), sw.set_port(port, *vlan).await)?;
                }
            }
            if product.capabilities.persist {
                ok("save", sw.save_config().await)?;
            }
            for (port, vlan) in &initial {
                let read = ok(&format!("read {port}"), sw.get_port(port).await)?;
                if read != *vlan {
                    return Err(format!("{port}: restored to {vlan}, read {read}"));
                }
            }
            Ok(format!("{initial:?}"))
        }
        .await;
        ctx.finish("SW-1.8", t, outcome);
    }
}

async fn tier2(ctx: &mut Ctx<'_>, sw: &Arc<dyn Switch>, p0: &str, op: u16, qr: u16) {
    let timeout = ctx.options.call_timeout;
    let other = |v: u16| if v == qr { op } else { qr };
    if ctx.should_run("SW-2.1") {
        let t = Instant::now();
        let outcome = async {
            let url = refused_url().await?;
            let sw = ctx.adapter_at(&ctx.endpoint_at(&url)).and_then(as_switch)?;
            expect_class(&sw.set_port(p0, qr).await, OutcomeClass::Unavailable)
        }
        .await;
        ctx.finish("SW-2.1", t, outcome);
    }
    for (id, fault, class) in [
        ("SW-2.2", Fault::Unavailable, OutcomeClass::Unavailable),
        ("SW-2.3", Fault::BadRequest, OutcomeClass::Rejected),
    ] {
        if ctx.should_run(id) {
            let t = Instant::now();
            let outcome = async {
                let now = ok("read", sw.get_port(p0).await)?;
                ctx.proxy.arm(fault, Matcher::any());
                let result = sw.set_port(p0, other(now)).await;
                ctx.proxy.disarm();
                expect_class(&result, class)
            }
            .await;
            ctx.finish(id, t, outcome);
        }
    }
    if ctx.should_run("SW-2.4") {
        let t = Instant::now();
        let outcome = async {
            let now = ok("read", sw.get_port(p0).await)?;
            let to = other(now);
            ctx.proxy.arm(Fault::Reset, Matcher::any());
            let result = sw.set_port(p0, to).await;
            ctx.proxy.disarm();
            let class = expect_class(&result, OutcomeClass::Unknown)?;
            let read = ok("resolving read", sw.get_port(p0).await)?;
            if read != to {
                return Err(format!(
                    "{class}; the device applied {to} but the read says {read}"
                ));
            }
            Ok(format!("{class}; the read resolves it: {read}"))
        }
        .await;
        ctx.finish("SW-2.4", t, outcome);
    }
    if ctx.should_run("SW-2.5") {
        let t = Instant::now();
        let outcome = async {
            let now = ok("read", sw.get_port(p0).await)?;
            ctx.proxy.arm(Fault::Blackhole, Matcher::any());
            let sent = Instant::now();
            let result = sw.set_port(p0, other(now)).await;
            ctx.proxy.disarm();
            blackhole_verdict(&result, sent.elapsed(), timeout)
        }
        .await;
        ctx.finish("SW-2.5", t, outcome);
    }
    if ctx.should_run("SW-2.6") {
        let t = Instant::now();
        let outcome = async {
            ctx.proxy.arm(Fault::Unauthorized, Matcher::any());
            let result = sw.get_port(p0).await;
            ctx.proxy.disarm();
            let class = expect_class(&result, OutcomeClass::Auth)?;
            let read = ok("the call after", sw.get_port(p0).await)?;
            Ok(format!("{class}; then read {read}"))
        }
        .await;
        ctx.finish("SW-2.6", t, outcome);
    }
    // Semantic faults: each on a fresh simulator, p0 starting on the operation VLAN.
    let semantic: [(&str, CallKind, FaultEffect); 4] = [
        ("SW-2.7", CallKind::SetPort, FaultEffect::ApplyThenError),
        ("SW-2.8", CallKind::SetPort, FaultEffect::AcceptWithoutApply),
        ("SW-2.9", CallKind::GetPort, FaultEffect::StaleRead),
        ("SW-2.10", CallKind::SetPort, FaultEffect::Busy),
    ];
    for (id, call, effect) in semantic {
        if !ctx.should_run(id) {
            continue;
        }
        let t = Instant::now();
        let outcome = async {
            let f = ctx.faulted(call, effect).await?;
            let sw = as_switch(f.device)?;
            let result = sw.set_port(p0, qr).await;
            match effect {
                FaultEffect::ApplyThenError => {
                    let Err(e) = result else {
                        return Err("the device replied with an error; the adapter said ok".into());
                    };
                    let read = ok("read", sw.get_port(p0).await)?;
                    if read != qr {
                        return Err(format!("{e}; the device applied {qr} but the read says {read}"));
                    }
                    Ok(format!("{e}; the read shows {read}"))
                }
                FaultEffect::AcceptWithoutApply => {
                    ok("set", result)?;
                    let read = ok("read", sw.get_port(p0).await)?;
                    if read != op {
                        return Err(format!(
                            "the device did not apply {qr} but the read says {read} (a cached read?)"
                        ));
                    }
                    Ok(format!("ok, then the read shows {read}"))
                }
                FaultEffect::StaleRead => {
                    ok("set", result)?;
                    let stale = ok("first read", sw.get_port(p0).await)?;
                    let fresh = ok("second read", sw.get_port(p0).await)?;
                    if stale != op || fresh != qr {
                        return Err(format!(
                            "the device answered {op} then {qr}; the adapter read {stale} then {fresh}"
                        ));
                    }
                    Ok(format!("read {stale} (stale), then {fresh}"))
                }
                _ => {
                    let class = expect_class(&result, OutcomeClass::Busy)?;
                    let read = ok("read", sw.get_port(p0).await)?;
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
}
