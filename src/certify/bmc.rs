//! The BMC suite (`BMC-*`): the Redfish reset of the product's system.

use std::sync::Arc;
use std::time::Instant;

use super::proxy::{Fault, Matcher};
use super::target::Device;
use super::{blackhole_verdict, check, expect_class, ok, refused_url, Ctx};
use crate::adapters::{Bmc, OutcomeClass};
use crate::sim::faults::{CallKind, FaultEffect};

fn as_bmc(device: Device) -> Result<Arc<dyn Bmc>, String> {
    match device {
        Device::Bmc(b) => Ok(b),
        _ => Err("the adapter is not a BMC adapter".into()),
    }
}

/// The reset action itself, not discovery or the session.
fn reset_action() -> Matcher {
    Matcher {
        not_get: true,
        path_contains: Some("Actions".into()),
        path_excludes: None,
    }
}

/// Runs every BMC check up to the asked tier (tier 3 is [`super::tier3`]'s).
pub async fn run(ctx: &mut Ctx<'_>) {
    let bmc = match ctx.adapter_at(&ctx.endpoint()).and_then(as_bmc) {
        Ok(b) => b,
        Err(e) => return super::fail_all(ctx, &e),
    };
    for id in ["BMC-1.1", "BMC-1.2"] {
        check!(
            ctx,
            id,
            ok("reset", bmc.reset().await).map(|_| "reset".to_string())
        );
    }
    let timeout = ctx.options.call_timeout;
    check!(
        ctx,
        "BMC-2.1",
        async {
            let url = refused_url().await?;
            let bmc = ctx.adapter_at(&ctx.endpoint_at(&url)).and_then(as_bmc)?;
            expect_class(&bmc.reset().await, OutcomeClass::Unavailable)
        }
        .await
    );
    for (id, fault, class) in [
        ("BMC-2.2", Fault::Unavailable, OutcomeClass::Unavailable),
        ("BMC-2.3", Fault::BadRequest, OutcomeClass::Rejected),
        ("BMC-2.4", Fault::Reset, OutcomeClass::Unknown),
    ] {
        check!(ctx, id, {
            ctx.proxy.arm(fault, reset_action());
            let result = bmc.reset().await;
            ctx.proxy.disarm();
            expect_class(&result, class)
        });
    }
    check!(ctx, "BMC-2.5", {
        let sent = Instant::now();
        ctx.proxy.arm(Fault::Blackhole, reset_action());
        let result = bmc.reset().await;
        ctx.proxy.disarm();
        blackhole_verdict(&result, sent.elapsed(), timeout)
    });
    check!(ctx, "BMC-2.6", {
        ctx.proxy.arm(Fault::Unauthorized, reset_action());
        let result = bmc.reset().await;
        ctx.proxy.disarm();
        let first = match &result {
            Ok(()) => Ok("logged in again by itself".to_string()),
            Err(_) => expect_class(&result, OutcomeClass::Auth),
        };
        match first {
            Ok(d) => ok("the reset after", bmc.reset().await).map(|_| format!("{d}; then reset")),
            Err(e) => Err(e),
        }
    });
    check!(
        ctx,
        "BMC-2.7",
        async {
            let f = ctx.faulted(CallKind::Reset, FaultEffect::Busy).await?;
            let bmc = as_bmc(f.device)?;
            let class = expect_class(&bmc.reset().await, OutcomeClass::Busy)?;
            let resets = f
                .target
                .sim
                .as_ref()
                .map(|s| s.world.reset_count(super::target::SIM_DEVICE))
                .unwrap_or(0);
            if resets != 0 {
                return Err(format!("{class}, yet the system was reset {resets} times"));
            }
            Ok(class)
        }
        .await
    );
}
