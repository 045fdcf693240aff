//! The switch suite (`SW-*`): access VLANs of the product's resource ports. The checks shared
//! with hypervisors are in [`super::lever`].

use std::sync::Arc;

use super::lever::{self, Lever, Plan, PortLever};
use super::proxy::Matcher;
use super::target::Device;
use super::{check, expect_class, ok, Ctx};
use crate::adapters::{OutcomeClass, Switch};
use crate::sim::faults::CallKind;

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
    let sw = match ctx.adapter_at(&ctx.endpoint()).and_then(as_switch) {
        Ok(sw) => sw,
        Err(e) => return super::fail_all(ctx, &e),
    };
    let port_lever = |sw: &Arc<dyn Switch>, port: &str| -> Box<dyn Lever> {
        Box::new(PortLever {
            switch: sw.clone(),
            port: port.to_string(),
        })
    };
    let levers: Vec<(String, Box<dyn Lever>)> = ports
        .iter()
        .map(|p| (p.clone(), port_lever(&sw, p)))
        .collect();
    let p0 = ports[0].clone();
    let lever_of = |device: Device| -> Result<Box<dyn Lever>, String> {
        Ok(port_lever(&as_switch(device)?, &p0))
    };
    let plan = Plan {
        prefix: "SW",
        operation: vlans.operation.to_string(),
        quarantine: vlans.quarantine.to_string(),
        invalid: INVALID_VLAN.to_string(),
        writes: Matcher::any(),
        reads: Matcher::any(),
        calls: (CallKind::GetPort, CallKind::SetPort),
        lever_of: &lever_of,
    };

    // SW-1.1: read every resource port; what is read is what gets restored.
    let mut initial = Vec::new();
    check!(
        ctx,
        "SW-1.1",
        lever::read_all(&levers).await.map(|values| {
            initial = values;
            format!("{initial:?}")
        })
    );
    lever::write_checks(ctx, &plan, &levers, &initial).await;
    check!(
        ctx,
        "SW-1.4",
        ok("save", sw.save_config().await).map(|_| "saved".to_string())
    );
    check!(ctx, "SW-1.5", batch(&sw, &ports, vlans.quarantine).await);
    check!(ctx, "SW-1.7", {
        let absent = product.resources.absent_port();
        expect_class(&sw.get_port(absent).await, OutcomeClass::Rejected)
    });

    lever::classification_checks(ctx, &plan, levers[0].1.as_ref()).await;

    // SW-1.8: restore, whatever happened before; saved when the switch persists.
    check!(
        ctx,
        "SW-1.8",
        async {
            lever::restore(&levers, &initial).await?;
            if product.capabilities.persist {
                ok("save", sw.save_config().await)?;
            }
            lever::verify_restored(&levers, &initial).await
        }
        .await
    );
}

/// SW-1.5: every resource port set to `vlan` in one request, then read in one.
async fn batch(sw: &Arc<dyn Switch>, ports: &[String], vlan: u16) -> Result<String, String> {
    if !sw.batches() {
        return Err("batch is claimed but the adapter does not batch".to_string());
    }
    let changes: Vec<(String, u16)> = ports.iter().map(|p| (p.clone(), vlan)).collect();
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
    let reads = sw.get_ports(ports).await;
    if reads.len() != ports.len() {
        return Err(format!("{} results for {} reads", reads.len(), ports.len()));
    }
    for (r, port) in reads.into_iter().zip(ports) {
        let v = ok(&format!("batch read {port}"), r)?;
        if v != vlan {
            return Err(format!("{port}: batch set {vlan}, read {v}"));
        }
    }
    Ok(format!(
        "{} ports set and read in one request each",
        ports.len()
    ))
}
