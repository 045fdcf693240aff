//! The hypervisor suite (`HV-*`): vNIC backings of the product's resource VMs. The checks
//! shared with switches are in [`super::lever`].

use std::sync::Arc;

use super::lever::{self, Lever, NicLever, Plan};
use super::proxy::Matcher;
use super::target::Device;
use super::{check, expect_class, ok, Ctx};
use crate::adapters::{Hypervisor, OutcomeClass};
use crate::sim::faults::CallKind;

/// A port group id no manager has.
const ABSENT_PORTGROUP: &str = "qlab-absent-portgroup";

fn as_hv(device: Device) -> Result<Arc<dyn Hypervisor>, String> {
    match device {
        Device::Hypervisor(h) => Ok(h),
        _ => Err("the adapter is not a hypervisor adapter".into()),
    }
}

/// Requests other than the session's; `not_get`: only those that change something.
fn not_session(not_get: bool) -> Matcher {
    Matcher {
        not_get,
        path_contains: None,
        path_excludes: Some("session".into()),
    }
}

/// Runs every hypervisor check up to the asked tier (tier 3 is [`super::tier3`]'s).
pub async fn run(ctx: &mut Ctx<'_>) {
    let product = ctx.options.product.clone();
    let res = &product.resources;
    let pgs = res.portgroups.clone().expect("validated: portgroups");
    let hv = match ctx.adapter_at(&ctx.endpoint()).and_then(as_hv) {
        Ok(hv) => hv,
        Err(e) => return super::fail_all(ctx, &e),
    };
    let nic_lever = |hv: &Arc<dyn Hypervisor>, vm: &str, nic: &str| -> Box<dyn Lever> {
        Box::new(NicLever {
            hypervisor: hv.clone(),
            vm: vm.to_string(),
            nic: nic.to_string(),
        })
    };
    let levers: Vec<(String, Box<dyn Lever>)> = res
        .vms
        .iter()
        .map(|v| (format!("{}/{}", v.vm, v.nic), nic_lever(&hv, &v.vm, &v.nic)))
        .collect();
    let (vm, nic) = (res.vms[0].vm.clone(), res.vms[0].nic.clone());
    let lever_of = |device: Device| -> Result<Box<dyn Lever>, String> {
        Ok(nic_lever(&as_hv(device)?, &vm, &nic))
    };
    let plan = Plan {
        prefix: "HV",
        operation: pgs.operation.clone(),
        quarantine: pgs.quarantine.clone(),
        invalid: ABSENT_PORTGROUP.to_string(),
        writes: not_session(true),
        reads: not_session(false),
        calls: (CallKind::GetNic, CallKind::SetNic),
        lever_of: &lever_of,
    };

    let mut initial = Vec::new();
    check!(
        ctx,
        "HV-1.1",
        async {
            ok("login", hv.login().await)?;
            initial = lever::read_all(&levers).await?;
            Ok(format!("{initial:?}"))
        }
        .await
    );
    lever::write_checks(ctx, &plan, &levers, &initial).await;
    check!(
        ctx,
        "HV-1.4",
        ok("power reset", hv.power_reset(&vm).await).map(|_| format!("{vm} reset"))
    );
    check!(
        ctx,
        "HV-1.5",
        expect_class(
            &hv.get_nic(res.absent_vm(), &nic).await,
            OutcomeClass::Rejected,
        )
    );

    lever::classification_checks(ctx, &plan, levers[0].1.as_ref()).await;

    check!(
        ctx,
        "HV-1.7",
        async {
            lever::restore(&levers, &initial).await?;
            lever::verify_restored(&levers, &initial).await
        }
        .await
    );
}
