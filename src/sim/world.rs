//! The simulated world: every device model of a site behind one lock, the fault plan, and the
//! call protocol every face goes through ([`SimWorld::call`]):
//!
//! 1. record `Invoke` and decide the call's fault at its arrival (run time on the recorder
//!    clock), so the fault window is judged when the request reaches the device;
//! 2. sleep the device's latency, plus a draw in `[0, jitter]` from the run's seed (stream
//!    `jitter/<device>`, so each device's draws are numbered in its own call order), plus any
//!    `delay` fault, on the tokio clock;
//! 3. apply the effect to the model, recording `TruthChanged` / `Reset` the moment state changes;
//! 4. record `Return` (`ok | fail | unknown`). A drop guard records `unknown` when the caller
//!    drops the call mid-flight (its own call timeout), so no `Invoke` is left without a `Return`.
//!
//! Concurrency is only measured (`max_in_flight`), never limited: proving that the engine keeps
//! `max_concurrent` (R15) is the point.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::bmc::BmcModel;
use super::crash::{CallFate, CrashTrap};
use super::faults::{FaultEffect, FaultSpec};
use super::hypervisor::HypervisorModel;
use super::index::{portgroup_network, vlan_network, DeviceOp, SiteIndex, Target};
use super::plan::{FaultPlan, DEFAULT_HANG, DEFAULT_STALE_WINDOW};
use super::recorder::{lock, Recorder};
use super::rng::SeededRng;
use super::switch::SwitchModel;
use super::wire::proxy::ProxyFault;
use crate::adapters::{DeviceError, DeviceResult, Email, OutcomeClass};
use crate::model::history::{EventKind, FaultAccount, NicRef};
use crate::model::Site;

/// A successful call's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A write, reset, save or login succeeded.
    Done,
    /// A vNIC read: the port group id.
    Portgroup(String),
    /// A port read: the access VLAN.
    Vlan(u16),
}

/// One device of the world.
#[derive(Debug, Clone)]
pub(crate) enum DeviceModel {
    Hypervisor(HypervisorModel),
    Switch(SwitchModel),
    Bmc(BmcModel),
}

impl DeviceModel {
    /// `(latency, jitter)` of one call.
    fn latency(&self) -> (Duration, Duration) {
        match self {
            DeviceModel::Hypervisor(h) => (h.latency, h.jitter),
            DeviceModel::Switch(s) => (s.latency, s.jitter),
            DeviceModel::Bmc(b) => (b.latency, b.jitter),
        }
    }
}

/// Everything that changes during a run, under one lock.
pub(crate) struct WorldState {
    pub devices: BTreeMap<String, DeviceModel>,
    pub plan: FaultPlan,
    /// The run's seeded generator for the models' own draws (latency jitter).
    pub rng: SeededRng,
    pub in_flight: BTreeMap<String, u32>,
    pub max_in_flight: BTreeMap<String, u32>,
    pub emails: Vec<Email>,
    pub syslog: Vec<String>,
}

pub(crate) struct Inner {
    pub site: Arc<Site>,
    pub recorder: Recorder,
    pub index: SiteIndex,
    pub state: Mutex<WorldState>,
    seed: u64,
    /// `--crash-sweep`: counts the calls and crashes the engine at one (see [`super::crash`]).
    trap: OnceLock<Arc<CrashTrap>>,
}

impl Inner {
    /// Records call `call`'s `Invoke`; the callers hold the state lock, so a call's `Invoke`
    /// and its planning stay together in the history.
    fn record_invoke(&self, call: u64, device: &str, op: &DeviceOp, target: &Target) {
        self.recorder.record(EventKind::Invoke {
            call,
            device: device.to_string(),
            op: op.kind().as_str().to_string(),
            nic: target.nic.clone(),
            lserver: target.lserver.clone(),
            value: target.value.clone(),
        });
    }
}

/// The simulated devices of one site with their fault plan. Cloning is cheap and shares state.
#[derive(Clone)]
pub struct SimWorld {
    pub(crate) inner: Arc<Inner>,
}

/// How a call will end, decided when it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Planned {
    Normal,
    /// A read within this window of the last write answers the value before it.
    StaleRead(Duration),
    AcceptWithoutApply,
    ApplyThenError,
    /// No reply within `hang`; `apply` says whether the change happens first.
    Hang {
        apply: bool,
        hang: Duration,
    },
    Fail(OutcomeClass, &'static str),
    /// Wire only: the transport fails; `apply` says whether the device got the request.
    Transport {
        apply: bool,
        fault: ProxyFault,
    },
}

/// A call answered at once by a wire face (whose handlers are synchronous): the result, how
/// long to hold the reply back (latency, `delay`, hangs), and a transport fault for the proxy
/// in front of the server to carry out.
#[derive(Debug)]
pub struct WireCall {
    /// What the device answers.
    pub result: DeviceResult<Reply>,
    /// How long the reply is held back.
    pub delay: Duration,
    /// `reset` or `blackhole`, for the fault proxy.
    pub transport: Option<ProxyFault>,
}

/// Records the `Return` of a call and leaves its in-flight slot, also when the caller drops the
/// call future before it completes.
struct CallGuard {
    world: SimWorld,
    device: String,
    call: u64,
    /// Whether this call counts towards the device's requests in flight (a batch counts once).
    counted: bool,
    /// `(result, detail)` once the call completed.
    done: Option<(&'static str, String)>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let (result, detail) = self
            .done
            .take()
            .unwrap_or(("unknown", "cut off by the caller".to_string()));
        let inner = &self.world.inner;
        let mut state = lock(&inner.state);
        if let Some(n) = state
            .in_flight
            .get_mut(&self.device)
            .filter(|_| self.counted)
        {
            *n = n.saturating_sub(1);
        }
        inner.recorder.record(EventKind::Return {
            call: self.call,
            result: result.to_string(),
            detail,
        });
    }
}

impl SimWorld {
    /// Builds every hypervisor, switch and BMC of `site` with each NIC on its operation network,
    /// and the fault plan of `faults`. `seed` drives every random draw of the world (latency
    /// jitter, fault probabilities, AV delivery delays; see [`super::rng`]); a site and plan
    /// without `jitter` or `probability` draw nothing, so their runs do not depend on it.
    pub fn new(site: Arc<Site>, faults: Vec<FaultSpec>, recorder: Recorder, seed: u64) -> SimWorld {
        let mut devices = BTreeMap::new();
        let topology = &site.topology;
        for h in &topology.hypervisors {
            let model = HypervisorModel::new(h, &site);
            devices.insert(h.name.clone(), DeviceModel::Hypervisor(model));
        }
        for s in &topology.switches {
            devices.insert(
                s.name.clone(),
                DeviceModel::Switch(SwitchModel::new(s, &site)),
            );
        }
        for b in &topology.bmcs {
            devices.insert(b.name.clone(), DeviceModel::Bmc(BmcModel::new(b)));
        }
        let state = WorldState {
            devices,
            plan: FaultPlan::new(faults, seed),
            rng: SeededRng::new(seed),
            in_flight: BTreeMap::new(),
            max_in_flight: BTreeMap::new(),
            emails: Vec::new(),
            syslog: Vec::new(),
        };
        SimWorld {
            inner: Arc::new(Inner {
                index: SiteIndex::new(&site),
                site,
                recorder,
                state: Mutex::new(state),
                seed,
                trap: OnceLock::new(),
            }),
        }
    }

    /// The site the world models.
    pub fn site(&self) -> &Arc<Site> {
        &self.inner.site
    }

    /// The recorder the world writes its history into.
    pub fn recorder(&self) -> &Recorder {
        &self.inner.recorder
    }

    /// Hands every later device call of the sim face to `trap` first (`--crash-sweep`); a
    /// second trap is ignored.
    pub fn set_crash_trap(&self, trap: Arc<CrashTrap>) {
        let _ = self.inner.trap.set(trap);
    }

    /// Whether a crash point has frozen the world (the engine is dead, its calls go nowhere).
    fn frozen(&self) -> bool {
        self.inner.trap.get().is_some_and(|t| t.frozen())
    }

    /// The run's seed.
    pub fn seed(&self) -> u64 {
        self.inner.seed
    }

    /// What each of the scenario's `[[faults]]` did so far (report.json `faults`), in file order.
    pub fn fault_accounting(&self) -> Vec<FaultAccount> {
        lock(&self.inner.state).plan.accounting()
    }

    /// Counts a hit of fault `index` decided before the run (an AV notification's delivery
    /// fault), now that it takes effect: in an operation when one runs on `lserver` (or on any
    /// L-Server when the notification names none).
    pub fn count_fault_hit(&self, index: usize, lserver: Option<&str>) {
        let in_operation = self.inner.recorder.in_operation(lserver);
        lock(&self.inner.state).plan.count_hit(index, in_operation);
    }

    /// Runs one device call through the fault plan, latency and the device model, recording
    /// `Invoke`, state changes and `Return` (see the module docs). Every face calls this.
    pub async fn call(&self, device: &str, op: DeviceOp) -> DeviceResult<Reply> {
        self.call_counted(device, op, true).await
    }

    /// Runs several calls to `device` as one request (R15 batching: NX-API and eAPI carry many
    /// commands): one request in flight, the latency once, and each item through the fault
    /// plan and the model as if alone, so faults matching one port hit only that port's item
    /// and the history keeps one `Invoke` and `Return` per port.
    pub async fn call_batch(&self, device: &str, ops: Vec<DeviceOp>) -> Vec<DeviceResult<Reply>> {
        let calls = ops
            .into_iter()
            .enumerate()
            .map(|(i, op)| self.call_counted(device, op, i == 0));
        futures::future::join_all(calls).await
    }

    async fn call_counted(&self, device: &str, op: DeviceOp, counted: bool) -> DeviceResult<Reply> {
        let inner = &self.inner;
        let fate = match inner.trap.get() {
            Some(trap) => trap.on_call(|| call_label(device, &op)),
            None => CallFate::Proceed,
        };
        if fate == CallFate::Frozen {
            // The engine died before sending it: nothing reaches the device or the history.
            return std::future::pending().await;
        }
        let call = inner.recorder.next_call_id();
        let target = inner.index.target(&inner.site, device, &op);
        let (wait, planned, landed) = {
            let mut state = lock(&inner.state);
            inner.record_invoke(call, device, &op, &target);
            // Whether the crash's own call reached the device: the run's seed decides.
            let landed = fate == CallFate::CrashHere && state.rng.chance("crash/landed", 0.5);
            let in_flight = state.in_flight.entry(device.to_string()).or_insert(0);
            *in_flight = in_flight.saturating_add(u32::from(counted));
            let now_in_flight = *in_flight;
            let max = state.max_in_flight.entry(device.to_string()).or_insert(0);
            *max = (*max).max(now_in_flight);
            let (wait, planned) = plan_call(&mut state, &inner.recorder, device, &op, &target);
            (wait, planned, landed)
        };
        // From here on the guard owns the `Return`: created before the first await, so a caller
        // that drops this future at any await still leaves a complete history.
        let mut guard = CallGuard {
            world: self.clone(),
            device: device.to_string(),
            call,
            counted,
            done: None,
        };
        if fate == CallFate::CrashHere {
            // The engine dies with this call in flight: the device acts on it (as the fault
            // plan says) or never got it, and the reply goes nowhere.
            let detail = if landed {
                self.finish_now(device, &op, &target, planned);
                "the engine crashed with this call in flight; the device got it"
            } else {
                "the engine crashed with this call in flight; the device never got it"
            };
            guard.done = Some(("unknown", detail.to_string()));
            return std::future::pending().await;
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        if self.frozen() {
            // The engine crashed while this call was on its way: it never reached the device.
            guard.done = Some((
                "unknown",
                "the engine crashed with this call in flight; the device never got it".into(),
            ));
            return std::future::pending().await;
        }
        let result = self.finish(device, &op, &target, planned).await;
        guard.done = Some(match &result {
            Ok(reply) => ("ok", self.reply_detail(device, reply)),
            Err(e) if e.class == OutcomeClass::Unknown => ("unknown", e.to_string()),
            Err(e) => ("fail", e.to_string()),
        });
        result
    }

    async fn finish(
        &self,
        device: &str,
        op: &DeviceOp,
        target: &Target,
        planned: Planned,
    ) -> DeviceResult<Reply> {
        match planned {
            Planned::Normal => self.perform(device, op, target, None),
            Planned::StaleRead(window) => self.perform(device, op, target, Some(window)),
            Planned::AcceptWithoutApply => Ok(Reply::Done),
            Planned::ApplyThenError => self.perform(device, op, target, None).and_then(|_| {
                Err(DeviceError::new(
                    OutcomeClass::Rejected,
                    "error reply after applying",
                ))
            }),
            Planned::Hang { apply, hang } => {
                if apply {
                    // The device applied it; only the reply is lost, so the outcome is ignored.
                    let _applied = self.perform(device, op, target, None);
                }
                tokio::time::sleep(hang).await;
                Err(DeviceError::new(
                    OutcomeClass::Unknown,
                    format!("no reply within {hang:?}"),
                ))
            }
            Planned::Fail(class, detail) => Err(DeviceError::new(class, detail)),
            Planned::Transport { apply, fault } => {
                if apply {
                    let _applied = self.perform(device, op, target, None);
                }
                Err(DeviceError::new(
                    OutcomeClass::Unknown,
                    format!("transport fault {fault:?}"),
                ))
            }
        }
    }

    /// The wire face's entry: the same fault plan and device model as [`SimWorld::call`], but
    /// decided and applied at once, with the waiting left to the server (reply delay) and the
    /// transport faults left to the proxy. `Invoke` and `Return` are recorded at arrival.
    pub fn call_now(&self, device: &str, op: DeviceOp) -> WireCall {
        let inner = &self.inner;
        let call = inner.recorder.next_call_id();
        let target = inner.index.target(&inner.site, device, &op);
        let (wait, planned) = {
            let mut state = lock(&inner.state);
            inner.record_invoke(call, device, &op, &target);
            plan_call(&mut state, &inner.recorder, device, &op, &target)
        };
        let (result, delay, transport) = match planned {
            Planned::Normal => (self.perform(device, &op, &target, None), wait, None),
            Planned::StaleRead(window) => {
                (self.perform(device, &op, &target, Some(window)), wait, None)
            }
            Planned::AcceptWithoutApply => (Ok(Reply::Done), wait, None),
            Planned::ApplyThenError => (
                self.perform(device, &op, &target, None).and_then(|_| {
                    Err(DeviceError::new(
                        OutcomeClass::Rejected,
                        "error reply after applying",
                    ))
                }),
                wait,
                None,
            ),
            Planned::Hang { apply, hang } => {
                if apply {
                    let _applied = self.perform(device, &op, &target, None);
                }
                let error =
                    DeviceError::new(OutcomeClass::Unknown, format!("no reply within {hang:?}"));
                (Err(error), wait.saturating_add(hang), None)
            }
            Planned::Fail(class, detail) => (Err(DeviceError::new(class, detail)), wait, None),
            Planned::Transport { apply, fault } => {
                if apply {
                    let _applied = self.perform(device, &op, &target, None);
                }
                let error =
                    DeviceError::new(OutcomeClass::Unknown, format!("transport fault {fault:?}"));
                (Err(error), wait, Some(fault))
            }
        };
        let (kind, detail) = match &result {
            Ok(reply) => ("ok", self.reply_detail(device, reply)),
            Err(e) if e.class == OutcomeClass::Unknown => ("unknown", e.to_string()),
            Err(e) => ("fail", e.to_string()),
        };
        inner.recorder.record(EventKind::Return {
            call,
            result: kind.to_string(),
            detail,
        });
        WireCall {
            result,
            delay,
            transport,
        }
    }

    /// What `planned` does to the device, at once and without a reply: the effect of a call
    /// that landed while the engine crashed.
    fn finish_now(&self, device: &str, op: &DeviceOp, target: &Target, planned: Planned) {
        let applies = match planned {
            Planned::Normal | Planned::ApplyThenError => true,
            Planned::Hang { apply, .. } | Planned::Transport { apply, .. } => apply,
            Planned::StaleRead(_) | Planned::AcceptWithoutApply | Planned::Fail(..) => false,
        };
        if applies {
            let _applied = self.perform(device, op, target, None);
        }
    }

    /// Applies `op` to the model and records the state changes it makes.
    fn perform(
        &self,
        device: &str,
        op: &DeviceOp,
        target: &Target,
        stale: Option<Duration>,
    ) -> DeviceResult<Reply> {
        let inner = &self.inner;
        let site = &inner.site;
        let recorder = &inner.recorder;
        let mut state = lock(&inner.state);
        let now = recorder.elapsed();
        let unsupported = || {
            DeviceError::new(
                OutcomeClass::Rejected,
                format!("{device} does not support {}", op.kind().as_str()),
            )
        };
        let Some(model) = state.devices.get_mut(device) else {
            return Err(no_device(device));
        };
        match (model, op) {
            (DeviceModel::Hypervisor(h), DeviceOp::Login) => {
                h.login();
                Ok(Reply::Done)
            }
            (DeviceModel::Hypervisor(h), DeviceOp::GetNic { vm, nic }) => h
                .get_nic(vm, nic, stale.map(|w| (now, w)))
                .map(Reply::Portgroup),
            (DeviceModel::Hypervisor(h), DeviceOp::SetNic { vm, nic, portgroup }) => {
                if let Some(change) = h.set_nic(vm, nic, portgroup, now)? {
                    if let Some(nic) = &target.nic {
                        record_truth(
                            recorder,
                            nic,
                            portgroup_network(site, device, &change.from),
                            portgroup_network(site, device, &change.to),
                            None,
                        );
                    }
                }
                Ok(Reply::Done)
            }
            (DeviceModel::Hypervisor(h), DeviceOp::PowerReset { vm }) => {
                h.power_reset(vm)?;
                record_reset(recorder, target);
                Ok(Reply::Done)
            }
            (DeviceModel::Switch(s), DeviceOp::GetPort { port }) => {
                s.get_port(port, stale.map(|w| (now, w))).map(Reply::Vlan)
            }
            (DeviceModel::Switch(s), DeviceOp::SetPort { port, vlan }) => {
                if let Some(change) = s.set_port(port, *vlan, now)? {
                    if let Some(nic) = &target.nic {
                        record_truth(
                            recorder,
                            nic,
                            vlan_network(site, change.from),
                            vlan_network(site, change.to),
                            None,
                        );
                    }
                }
                Ok(Reply::Done)
            }
            (DeviceModel::Switch(s), DeviceOp::SaveConfig) => {
                s.save_config();
                Ok(Reply::Done)
            }
            (DeviceModel::Bmc(b), DeviceOp::Reset) => {
                b.reset();
                record_reset(recorder, target);
                Ok(Reply::Done)
            }
            _ => Err(unsupported()),
        }
    }

    /// What a `Return` shows for a successful call: the network read when it maps to one.
    fn reply_detail(&self, device: &str, reply: &Reply) -> String {
        let site = &self.inner.site;
        match reply {
            Reply::Done => String::new(),
            Reply::Portgroup(pg) => super::index::portgroup_name(site, device, pg),
            Reply::Vlan(vlan) => super::index::vlan_name(site, *vlan),
        }
    }
}

/// Decides how a call arriving now (the recorder's run time) will end, and the time it takes
/// before that.
fn plan_call(
    state: &mut WorldState,
    recorder: &Recorder,
    device: &str,
    op: &DeviceOp,
    target: &Target,
) -> (Duration, Planned) {
    let now = recorder.elapsed();
    let Some(model) = state.devices.get(device) else {
        return (
            Duration::ZERO,
            Planned::Fail(OutcomeClass::Unavailable, "no such device"),
        );
    };
    let (latency, jitter) = model.latency();
    // Drawn only when the device has jitter, so a site without it never touches the seed.
    let latency = if jitter.is_zero() {
        latency
    } else {
        let purpose = format!("jitter/{device}");
        latency.saturating_add(state.rng.duration_up_to(&purpose, jitter))
    };
    let is_login = *op == DeviceOp::Login;
    if let DeviceModel::Hypervisor(h) = model {
        // An expired session refuses everything but a login before any processing, so no fault
        // rule is used up by such a call.
        if !h.session_valid() && !is_login {
            return (
                latency,
                Planned::Fail(OutcomeClass::Auth, "session expired: log in again"),
            );
        }
    }
    let in_operation = recorder.in_operation(target.lserver.as_deref());
    let decision = state
        .plan
        .decide_call(&target.subject(device, op.kind()), now, in_operation);
    let wait = latency.saturating_add(decision.extra_delay);
    let Some(chosen) = decision.effect else {
        return (wait, Planned::Normal);
    };
    let hang = chosen.delay.unwrap_or(DEFAULT_HANG);
    let planned = match chosen.effect {
        FaultEffect::Reject => Planned::Fail(OutcomeClass::Rejected, "error reply (fault: reject)"),
        FaultEffect::Unavailable => Planned::Fail(
            OutcomeClass::Unavailable,
            "503 service unavailable (fault: unavailable)",
        ),
        FaultEffect::Busy => Planned::Fail(
            OutcomeClass::Busy,
            "resource busy, retry later (fault: busy)",
        ),
        FaultEffect::AuthExpired => {
            // Hypervisors keep a session, so it stays invalid until a login succeeds. Switches
            // and BMCs authenticate every request, so only this call is refused.
            if let Some(DeviceModel::Hypervisor(h)) = state.devices.get_mut(device) {
                h.expire_session();
            }
            Planned::Fail(OutcomeClass::Auth, "session expired (fault: auth_expired)")
        }
        FaultEffect::Timeout => Planned::Hang { apply: false, hang },
        FaultEffect::ApplyThenTimeout => Planned::Hang { apply: true, hang },
        FaultEffect::ApplyThenError => Planned::ApplyThenError,
        FaultEffect::AcceptWithoutApply => Planned::AcceptWithoutApply,
        FaultEffect::StaleRead => Planned::StaleRead(chosen.delay.unwrap_or(DEFAULT_STALE_WINDOW)),
        // Never chosen for a device call (see `plan::applies_to_call`).
        FaultEffect::Delay
        | FaultEffect::RebootLosesUnsaved
        | FaultEffect::ExternalChange
        | FaultEffect::Drop
        | FaultEffect::Duplicate
        | FaultEffect::Reorder => Planned::Normal,
        // Wire only (the scenario loader refuses them in sim mode): the request reaches the
        // device and the connection is reset, or it never arrives.
        FaultEffect::Reset => Planned::Transport {
            apply: true,
            fault: ProxyFault::Reset,
        },
        FaultEffect::Blackhole => Planned::Transport {
            apply: false,
            fault: ProxyFault::Blackhole,
        },
    };
    (wait, planned)
}

/// `<op> <device> <target>` of a call, as a crash point names it: `set_port sw-1 Eth1/3`.
fn call_label(device: &str, op: &DeviceOp) -> String {
    let kind = op.kind().as_str();
    match op {
        DeviceOp::GetNic { vm, nic } | DeviceOp::SetNic { vm, nic, .. } => {
            format!("{kind} {device} {vm}/{nic}")
        }
        DeviceOp::PowerReset { vm } => format!("{kind} {device} {vm}"),
        DeviceOp::GetPort { port } | DeviceOp::SetPort { port, .. } => {
            format!("{kind} {device} {port}")
        }
        _ => format!("{kind} {device}"),
    }
}

/// Records a NIC's move at the device; `by` names who moved it when no device call did (see
/// `EventKind::TruthChanged`).
pub(crate) fn record_truth(
    recorder: &Recorder,
    nic: &NicRef,
    from: Option<String>,
    to: Option<String>,
    by: Option<&str>,
) {
    let in_release = recorder.is_releasing(&nic.lserver);
    recorder.record(EventKind::TruthChanged {
        nic: nic.clone(),
        from,
        to,
        in_release,
        by: by.map(str::to_string),
    });
}

fn record_reset(recorder: &Recorder, target: &Target) {
    // Every VM and BMC a model accepts belongs to an L-Server of the site; one that does not
    // has no L-Server to name, so it leaves no `Reset` entry.
    if let Some(lserver) = &target.lserver {
        recorder.record(EventKind::Reset {
            lserver: lserver.clone(),
        });
    }
}

fn no_device(device: &str) -> DeviceError {
    DeviceError::new(
        OutcomeClass::Unavailable,
        format!("no such device {device}"),
    )
}
