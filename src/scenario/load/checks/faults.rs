//! Checks of `[[faults]]`: the device exists, the call and the effect fit its kind, wire-only
//! effects only in wire mode, and `match` keys name objects behind the device, because a fault
//! that can never fire would make a scenario pass for the wrong reason.

use super::{Checker, DeviceKind};
use crate::model::load::KeySeg;
use crate::model::NicLocation;
use crate::scenario::load::Mode;
use crate::sim::faults::{CallKind, FaultEffect, FaultSpec};

/// Whether an effect reads the fault's `delay`.
fn uses_delay(effect: FaultEffect) -> bool {
    matches!(
        effect,
        FaultEffect::Delay
            | FaultEffect::Timeout
            | FaultEffect::ApplyThenTimeout
            | FaultEffect::Blackhole
            // How much later a duplicate or a reordered notification arrives.
            | FaultEffect::Duplicate
            | FaultEffect::Reorder
    )
}

impl Checker<'_, '_> {
    pub(super) fn fault(&mut self, i: usize, f: &FaultSpec, modes: &[Mode]) {
        let key = |field: &str| at!("faults", i, field);
        let kind = self.device_kind(&f.device);
        if kind.is_none() {
            let message = format!(
                "unknown device `{}`; a fault names a hypervisor, switch, BMC or AV server of \
                 the topology ({})",
                f.device,
                self.known_devices()
            );
            self.bad(key("device"), message);
        }
        if let (Some(kind), Some(call)) = (kind, f.call) {
            if !kind.calls().contains(&call) {
                let calls: Vec<&str> = kind.calls().iter().map(|c| c.as_str()).collect();
                let message = format!(
                    "`{}` is {}, which has no call `{}`; its calls are {}",
                    f.device,
                    kind.label(),
                    call.as_str(),
                    calls.join(", ")
                );
                self.bad(key("call"), message);
            }
        }
        self.fault_effect(i, f, kind, modes);
        self.fault_calls(i, f, kind);
        if let Some(p) = f.probability {
            if !(0.0..=1.0).contains(&p) {
                self.bad(
                    key("probability"),
                    format!(
                        "probability = {p} is not a chance; write a number from 0 to 1 (0.3: \
                         three matching calls in ten), or remove it to affect every matching call"
                    ),
                );
            }
        }
        if f.times == Some(0) {
            self.bad(
                key("times"),
                "times = 0 affects no call; set 1 or more, or remove `times` to affect every \
                 matching call"
                    .into(),
            );
        }
        if let (Some(from), Some(until)) = (f.from, f.until) {
            if from > until {
                let message = format!(
                    "the window ends ({}) before it starts (from = {}); make `until` later",
                    humantime::format_duration(until),
                    humantime::format_duration(from)
                );
                self.bad(key("until"), message);
            }
        }
        self.fault_match(i, f, kind);
    }

    fn fault_effect(&mut self, i: usize, f: &FaultSpec, kind: Option<DeviceKind>, modes: &[Mode]) {
        let key = |field: &str| at!("faults", i, field);
        let effect = f.effect.as_str();
        if f.effect.is_delivery() {
            let av_server = |k| k == DeviceKind::AvServer;
            let notifications = "applies to an AV server's notifications";
            let reported = self.wrong_device(i, f, kind, av_server, notifications);
            if !reported && f.call.is_some_and(|c| c != CallKind::Send) {
                self.bad(
                    key("call"),
                    format!("effect `{effect}` only affects `send`; set call = \"send\" or remove `call`"),
                );
            }
        }
        if f.effect == FaultEffect::RebootLosesUnsaved {
            let switch = |k| k == DeviceKind::Switch;
            self.wrong_device(i, f, kind, switch, "only applies to switches");
            self.needs_from(i, f, "the switch reboots");
        }
        if f.effect == FaultEffect::ExternalChange {
            self.external_change(i, f, kind);
        } else if f.to_network.is_some() {
            self.bad(
                key("to_network"),
                format!("effect `{effect}` ignores `to_network` (only external_change uses it); remove it"),
            );
        }
        if f.effect.wire_only() && modes.contains(&Mode::Sim) {
            self.bad(
                key("effect"),
                format!(
                    "effect `{effect}` is a transport fault that exists only in wire mode, but \
                     this scenario also runs in sim mode; set modes = [\"wire\"]"
                ),
            );
        }
        if f.effect == FaultEffect::Delay && f.delay.is_none() {
            self.bad(
                key("delay"),
                "effect `delay` needs `delay`, the time it adds, e.g. delay = \"2s\"".into(),
            );
        }
        if f.delay.is_some() && !uses_delay(f.effect) {
            self.bad(
                key("delay"),
                format!(
                    "effect `{effect}` ignores `delay` (only delay, timeout, apply_then_timeout, \
                     blackhole, duplicate and reorder use it); remove it"
                ),
            );
        }
    }

    /// Reports, on `effect`, a fault whose device is of a kind its effect does not act on
    /// (`acts_on` says which kinds it does; `what` says what it does); whether it did.
    fn wrong_device(
        &mut self,
        i: usize,
        f: &FaultSpec,
        kind: Option<DeviceKind>,
        acts_on: impl Fn(DeviceKind) -> bool,
        what: &str,
    ) -> bool {
        let Some(kind) = kind.filter(|k| !acts_on(*k)) else {
            return false;
        };
        let message = format!(
            "effect `{}` {what}, but `{}` is {}",
            f.effect.as_str(),
            f.device,
            kind.label()
        );
        self.bad(at!("faults", i, "effect"), message);
        true
    }

    /// Reports a fault without `from` whose effect happens at `from`, when `then` happens.
    fn needs_from(&mut self, i: usize, f: &FaultSpec, then: &str) {
        if f.from.is_none() {
            let message = format!(
                "effect `{}` needs `from`: the run time {then}",
                f.effect.as_str()
            );
            self.bad(at!("faults", i, "from"), message);
        }
    }

    /// `external_change` (R20): a hypervisor's vNICs or a switch's ports, moved at `from` to
    /// `to_network` (a network the device can carry), not through any call.
    fn external_change(&mut self, i: usize, f: &FaultSpec, kind: Option<DeviceKind>) {
        let key = |field: &str| at!("faults", i, field);
        let effect = f.effect.as_str();
        let moves_nics = |k| matches!(k, DeviceKind::Hypervisor | DeviceKind::Switch);
        self.wrong_device(i, f, kind, moves_nics, "moves vNICs or switch ports");
        self.needs_from(i, f, "the NICs are moved");
        if f.call.is_some() {
            self.bad(
                key("call"),
                format!("effect `{effect}` acts on no device call (it happens at `from`); remove `call`"),
            );
        }
        for (field, set) in [
            ("times", f.times.is_some()),
            ("until", f.until.is_some()),
            ("probability", f.probability.is_some()),
        ] {
            if set {
                self.bad(
                    key(field),
                    format!("effect `{effect}` happens once, at `from`; remove `{field}`"),
                );
            }
        }
        if let Some(network) = &f.to_network {
            let carried = match kind {
                Some(DeviceKind::Hypervisor) => self.site.portgroup(&f.device, network).is_some(),
                _ => self.site.network(network).is_some(),
            };
            if !carried {
                self.bad(
                    key("to_network"),
                    format!(
                        "`{network}` is not a network of the topology that `{}` carries",
                        f.device
                    ),
                );
            }
        }
    }

    /// The effect must be able to act on the fault's `call`, or, without `call`, on some call of
    /// its device: `stale_read` on a write, `apply_then_timeout` on a read or a login, `timeout`
    /// on an AV `send` would never fire. Delivery effects and switch reboots are judged in
    /// [`Checker::fault_effect`], which names the device kind they need.
    fn fault_calls(&mut self, i: usize, f: &FaultSpec, kind: Option<DeviceKind>) {
        let effect = f.effect;
        let applies: Vec<&str> = effect.calls().iter().map(|c| c.as_str()).collect();
        let applies = applies.join(", ");
        if effect.is_delivery()
            || effect == FaultEffect::RebootLosesUnsaved
            || effect == FaultEffect::ExternalChange
        {
            return;
        }
        match (f.call, kind) {
            (Some(call), _) if !effect.calls().contains(&call) => {
                let message = format!(
                    "effect `{}` cannot apply to `{}`: it applies to {applies}",
                    effect.as_str(),
                    call.as_str()
                );
                self.bad(at!("faults", i, "call"), message);
            }
            (None, Some(kind)) if !kind.calls().iter().any(|c| effect.calls().contains(c)) => {
                let message = format!(
                    "effect `{}` never applies to `{}`, which is {}: it applies to {applies}",
                    effect.as_str(),
                    f.device,
                    kind.label()
                );
                self.bad(at!("faults", i, "effect"), message);
            }
            _ => {}
        }
    }

    /// `match` keys must name objects behind the fault's device, or the fault never fires.
    fn fault_match(&mut self, i: usize, f: &FaultSpec, kind: Option<DeviceKind>) {
        let key = |field: &str| at!("faults", i, "match", field);
        let m = &f.matcher;
        let device = f.device.as_str();
        let virtual_nics = || {
            self.site
                .lservers
                .iter()
                .flat_map(|ls| &ls.nics)
                .filter_map(|n| match &n.location {
                    NicLocation::Virtual {
                        hypervisor,
                        vm,
                        device: key,
                    } => Some((hypervisor.as_str(), vm.as_str(), key.as_str())),
                    NicLocation::Physical { .. } => None,
                })
        };
        let on_device = |d: &str| kind.is_none() || d == device;
        let not_for = |field: &str, want: DeviceKind| {
            kind.filter(|k| *k != want).map(|k| {
                format!(
                    "match.{field} only applies to faults on {}, but `{device}` is {}",
                    want.label(),
                    k.label()
                )
            })
        };
        if let Some(vm) = &m.vm {
            if let Some(message) = not_for("vm", DeviceKind::Hypervisor) {
                self.bad(key("vm"), message);
            } else if !virtual_nics().any(|(h, v, _)| on_device(h) && v == vm) {
                self.bad(
                    key("vm"),
                    format!("no L-Server has VM `{vm}` on `{device}`"),
                );
            }
        }
        if let Some(nic) = &m.nic {
            let vm = m.vm.as_deref();
            if let Some(message) = not_for("nic", DeviceKind::Hypervisor) {
                self.bad(key("nic"), message);
            } else if !virtual_nics()
                .any(|(h, v, n)| on_device(h) && vm.is_none_or(|want| want == v) && n == nic)
            {
                self.bad(key("nic"), format!("no vNIC `{nic}` on `{device}` matches"));
            }
        }
        if let Some(port) = &m.port {
            let exists = self.site.lservers.iter().flat_map(|ls| &ls.nics).any(|n| {
                matches!(&n.location, NicLocation::Physical { switch, port: p }
                    if on_device(switch) && p == port)
            });
            if let Some(message) = not_for("port", DeviceKind::Switch) {
                self.bad(key("port"), message);
            } else if !exists {
                self.bad(
                    key("port"),
                    format!("no L-Server uses port `{port}` on `{device}`"),
                );
            }
        }
        if let Some(path) = &m.lserver {
            let Some(ls) = self.lserver(key("lserver"), path) else {
                return;
            };
            let behind = match kind {
                None | Some(DeviceKind::AvServer) => true,
                Some(DeviceKind::Hypervisor) => ls.vm.as_ref().is_some_and(|(h, _)| h == device),
                Some(DeviceKind::Switch) => ls.nics.iter().any(|n| {
                    matches!(&n.location, NicLocation::Physical { switch, .. } if switch == device)
                }),
                Some(DeviceKind::Bmc) => ls.bmc.as_deref() == Some(device),
            };
            if !behind {
                self.bad(
                    key("lserver"),
                    format!(
                        "L-Server `{path}` is not behind `{device}`, so this fault would never \
                         fire"
                    ),
                );
            }
        }
    }
}
