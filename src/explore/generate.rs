//! Scenario generation: one [`ScenarioFile`] from `(seed, index)` alone.
//!
//! Everything is drawn from ChaCha8 generators seeded by a mix of the exploration seed, the run
//! index and a purpose constant (schedule, faults, swarm subset), so adding a draw for one purpose
//! never shifts the others, and the same `(seed, index, profile)` always gives the same scenario
//! (INV-11 for the lab itself). The generated file is the same type `qlab run` loads, so a shrunk
//! failure is written out as a scenario file without any translation.
//!
//! Decisions the spec leaves open (also listed in the module doc of [`super`]):
//! - Schedules are small: 1–6 events in the first 20 s, 0–4 faults. Small schedules keep runs
//!   fast and failures readable; swarm subsets supply the variety.
//! - Times are multiples of 100 ms, so a shrunk file reads like a hand-written one.
//! - `settle` is one operation budget (deadline plus call timeout, plus 10 %) per event plus one,
//!   so a lane's queued operations can all finish before the run ends; the run still ends as
//!   soon as the engine is idle.
//! - Fault effects are drawn only for the calls they can act on (the table in
//!   [`effect_calls`]); `reboot_loses_unsaved` always gets `from`. A fault lands on a device the
//!   events touch 85 % of the time (any device that fits otherwise), and names one VM, port or
//!   L-Server behind it 30 % of the time.
//! - Detections: 70 % by IP, 10 % by MAC, 10 % by host name, 10 % from an address no L-Server
//!   has (TEST-NET-1); 75 % virus or malware, else any category; 10 % carry an excluded keyword;
//!   30 % of the time an event id repeats an earlier one of the same source (R4).
//! - `--liveness`: the fault period is 2–20 s; every fault inside it ends (`until`) by then; at
//!   its end every faulted device heals, except 0–2 devices that fail for good (`unavailable` on
//!   every call from then on, never healed). INV-1, INV-9 and INV-10 then say whether every
//!   operation ended by its deadline and every NIC left behind has its ERROR alert.

use std::time::Duration;

use rand::rngs::ChaCha8Rng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};

use crate::model::{Category, NicLocation, Site};
use crate::scenario::file::{CommandAction, CommandFile, DetectFile, EventFile, ScenarioFile};
use crate::scenario::load::Mode;
use crate::sim::faults::{CallKind, FaultEffect, FaultMatch, FaultSpec};

/// Every effect `qlab explore` can draw in sim mode, in a fixed order (swarm subsets and
/// coverage are indexed by it). The wire-only transport faults are left out: explore runs in sim.
pub const EFFECTS: [FaultEffect; 14] = [
    FaultEffect::Reject,
    FaultEffect::Unavailable,
    FaultEffect::Timeout,
    FaultEffect::ApplyThenTimeout,
    FaultEffect::ApplyThenError,
    FaultEffect::AcceptWithoutApply,
    FaultEffect::StaleRead,
    FaultEffect::Delay,
    FaultEffect::Busy,
    FaultEffect::AuthExpired,
    FaultEffect::RebootLosesUnsaved,
    FaultEffect::Drop,
    FaultEffect::Duplicate,
    FaultEffect::Reorder,
];

/// The serde spelling of an effect (`apply_then_timeout`).
pub fn effect_name(effect: FaultEffect) -> String {
    serde_json::to_value(effect)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{effect:?}"))
}

/// Parses [`effect_name`] for the effects of [`EFFECTS`].
pub fn parse_effect(text: &str) -> Option<FaultEffect> {
    EFFECTS.into_iter().find(|e| effect_name(*e) == text)
}

/// Device families, for the effect table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Hypervisor,
    Switch,
    Bmc,
    Av,
}

/// The calls `effect` can act on for a device of `family`; `None` inside means "no `call` key"
/// (effects scheduled on the device as a whole). Empty: the effect does not apply.
fn effect_calls(effect: FaultEffect, family: Family) -> Vec<Option<CallKind>> {
    use CallKind::*;
    if effect == FaultEffect::RebootLosesUnsaved {
        // Not a call: the switch reboots at `from`, so the fault names no call.
        return if family == Family::Switch {
            vec![None]
        } else {
            Vec::new()
        };
    }
    let family_calls: &[CallKind] = match family {
        Family::Av => &[Send],
        Family::Hypervisor => &[Login, GetNic, SetNic, PowerReset],
        Family::Switch => &[GetPort, SetPort, SaveConfig],
        Family::Bmc => &[Reset],
    };
    // The loader's own table of which calls an effect applies to, so a generated fault is
    // never one the loader refuses.
    effect
        .calls()
        .iter()
        .filter(|c| family_calls.contains(c))
        .map(|c| Some(*c))
        .collect()
}

/// How runs are generated: the command line's `--swarm`, `--liveness`, `--crashes`, `--effects`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Each run enables a random subset of the fault kinds.
    pub swarm: bool,
    /// A fault period that ends with heals, or with some devices failed for good.
    pub liveness: bool,
    /// Engine crashes with restarts.
    pub crashes: bool,
    /// The effects that may be drawn (a subset of [`EFFECTS`]).
    pub effects: Vec<FaultEffect>,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            swarm: false,
            liveness: false,
            crashes: false,
            effects: EFFECTS.to_vec(),
        }
    }
}

/// What the generator knows about a site, computed once per exploration.
#[derive(Debug, Clone)]
pub struct Catalog {
    lservers: Vec<LsInfo>,
    av_servers: Vec<String>,
    /// (device, family) for every device a fault can name.
    devices: Vec<(String, Family)>,
    excluded_keywords: Vec<String>,
    settle_unit: Duration,
}

#[derive(Debug, Clone)]
struct LsInfo {
    path: String,
    ips: Vec<String>,
    macs: Vec<String>,
    hostname: Option<String>,
    /// (hypervisor, vm) of a virtual L-Server.
    vm: Option<(String, String)>,
    /// (switch, port) of each physical NIC.
    ports: Vec<(String, String)>,
    bmc: Option<String>,
}

impl Catalog {
    /// Indexes `site` for generation.
    pub fn new(site: &Site) -> Catalog {
        let t = &site.topology;
        let lservers = site
            .lservers
            .iter()
            .map(|ls| LsInfo {
                path: ls.path.clone(),
                ips: ls.nics.iter().map(|n| n.ip.to_string()).collect(),
                macs: ls.nics.iter().map(|n| n.mac.clone()).collect(),
                hostname: ls.hostname.clone(),
                vm: ls.vm.clone(),
                ports: ls
                    .nics
                    .iter()
                    .filter_map(|n| match &n.location {
                        NicLocation::Physical { switch, port } => {
                            Some((switch.clone(), port.clone()))
                        }
                        NicLocation::Virtual { .. } => None,
                    })
                    .collect(),
                bmc: ls.bmc.clone(),
            })
            .collect();
        let mut devices = Vec::new();
        devices.extend(
            t.hypervisors
                .iter()
                .map(|h| (h.name.clone(), Family::Hypervisor)),
        );
        devices.extend(t.switches.iter().map(|s| (s.name.clone(), Family::Switch)));
        devices.extend(t.bmcs.iter().map(|b| (b.name.clone(), Family::Bmc)));
        devices.extend(t.av_servers.iter().map(|a| (a.name.clone(), Family::Av)));
        let budget = t
            .engine
            .operation_deadline
            .saturating_add(t.engine.call_timeout);
        Catalog {
            lservers,
            av_servers: t.av_servers.iter().map(|a| a.name.clone()).collect(),
            devices,
            excluded_keywords: t.policy.excluded_threat_keywords.clone(),
            settle_unit: budget.saturating_add(budget / 10),
        }
    }
}

/// Purposes of the per-run generators: each has its own stream.
const SCHEDULE: u64 = 0x5343_4845_4455_4c45;
const FAULTS: u64 = 0x4641_554c_5453_0000;
const SWARM: u64 = 0x5357_4152_4d00_0000;

/// SplitMix64's finalizer: spreads `(seed, index, purpose)` over the 64-bit seed space.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of run `index` for `purpose`.
pub fn run_seed(seed: u64, index: u64, purpose: u64) -> u64 {
    mix(mix(seed ^ purpose).wrapping_add(index))
}

fn rng(seed: u64, index: u64, purpose: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(run_seed(seed, index, purpose))
}

/// A time in `[lo, hi]` seconds on a 100 ms grid.
fn time(r: &mut ChaCha8Rng, lo_ms: u64, hi_ms: u64) -> Duration {
    let steps = (hi_ms.saturating_sub(lo_ms)) / 100;
    Duration::from_millis(lo_ms + 100 * r.random_range(0..=steps))
}

/// The name of run `index`'s scenario.
pub fn scenario_name(seed: u64, index: u64) -> String {
    format!("explore-{seed}-{index}")
}

/// Generates run `index` of the exploration with `seed` over `topology` (the path written into
/// the file, as given).
pub fn generate(
    catalog: &Catalog,
    profile: &Profile,
    topology: &str,
    seed: u64,
    index: u64,
) -> ScenarioFile {
    let mut sched = rng(seed, index, SCHEDULE);
    let mut fr = rng(seed, index, FAULTS);
    let mut sw = rng(seed, index, SWARM);

    // Swarm: a random non-empty subset of the allowed kinds for this run.
    let mut effects = profile.effects.clone();
    if profile.swarm && !effects.is_empty() {
        let kept: Vec<FaultEffect> = effects
            .iter()
            .copied()
            .filter(|_| sw.random_bool(0.5))
            .collect();
        effects = if kept.is_empty() {
            vec![*effects.choose(&mut sw).unwrap_or(&FaultEffect::Reject)]
        } else {
            kept
        };
    }

    let mut events = Vec::new();
    let n_events = sched.random_range(1..=6usize);
    let mut ids: Vec<(String, String)> = Vec::new();
    for _ in 0..n_events {
        let at = time(&mut sched, 0, 20_000);
        let roll = sched.random_range(0..100u32);
        let event = if roll < 65 || catalog.lservers.is_empty() {
            detect_event(catalog, &mut sched, &mut ids, at)
        } else if roll < 88 || !profile.crashes {
            command_event(catalog, &mut sched, at)
        } else {
            Some(EventFile {
                crash: Some("engine".into()),
                restart_after: Some(time(&mut sched, 100, 3_000)),
                ..blank(at)
            })
        };
        if let Some(e) = event {
            events.push(e);
        }
    }

    let mut faults = Vec::new();
    let fault_period = time(&mut fr, 2_000, 20_000);
    let n_faults = if effects.is_empty() {
        0
    } else {
        fr.random_range(0..=4usize)
    };
    let touched = touched_devices(catalog, &events);
    for _ in 0..n_faults {
        if let Some(f) = fault(
            catalog,
            &effects,
            &touched,
            &mut fr,
            profile.liveness,
            fault_period,
        ) {
            faults.push(f);
        }
    }
    if profile.liveness {
        liveness_tail(catalog, &mut fr, &mut faults, &mut events, fault_period);
    } else if fr.random_bool(0.15) && !catalog.devices.is_empty() {
        let target = if fr.random_bool(0.5) {
            "all".to_string()
        } else {
            catalog
                .devices
                .choose(&mut fr)
                .map(|d| d.0.clone())
                .unwrap_or_default()
        };
        events.push(EventFile {
            heal: Some(target),
            ..blank(time(&mut fr, 0, 20_000))
        });
    }

    let ops = events.len() as u32 + 1;
    ScenarioFile {
        name: scenario_name(seed, index),
        description: format!("Generated by `qlab explore` (seed {seed}, run {index})."),
        topology: topology.to_string(),
        tags: vec!["explore".into()],
        modes: Some(vec![Mode::Sim]),
        // 63 bits: TOML integers are signed, and the file must hold the seed.
        seed: run_seed(seed, index, 0) >> 1,
        settle: Some(catalog.settle_unit.saturating_mul(ops)),
        events,
        faults,
        expect: Default::default(),
    }
}

fn blank(at: Duration) -> EventFile {
    EventFile {
        at,
        detect: None,
        outbreak: None,
        command: None,
        crash: None,
        restart_after: None,
        heal: None,
    }
}

const CATEGORIES: [Category; 7] = [
    Category::Virus,
    Category::Malware,
    Category::Spyware,
    Category::Grayware,
    Category::Cnc,
    Category::Outbreak,
    Category::Other,
];

fn detect_event(
    catalog: &Catalog,
    r: &mut ChaCha8Rng,
    ids: &mut Vec<(String, String)>,
    at: Duration,
) -> Option<EventFile> {
    let source = catalog.av_servers.choose(r)?.clone();
    let ls = catalog.lservers.choose(r)?;
    let (mut ip, mut mac, mut hostname) = (None, None, None);
    match r.random_range(0..100u32) {
        0..=69 => ip = ls.ips.choose(r).cloned(),
        70..=79 => mac = ls.macs.choose(r).cloned(),
        80..=89 if ls.hostname.is_some() => hostname = ls.hostname.clone(),
        // An address no L-Server has (TEST-NET-1): `lserver-not-found`.
        _ => ip = Some(format!("192.0.2.{}", r.random_range(1..255u32))),
    }
    let category = if r.random_bool(0.75) {
        *[Category::Virus, Category::Malware].choose(r)?
    } else {
        *CATEGORIES.choose(r)?
    };
    let threat = match catalog.excluded_keywords.choose(r) {
        Some(k) if r.random_bool(0.1) => format!("{k}-Sample"),
        _ => format!("TROJ_GEN.{}", r.random_range(1..100u32)),
    };
    // Duplicates (R4): now and then the sender repeats an earlier event id.
    let event_id = match ids.choose(r) {
        Some((src, id)) if *src == source && r.random_bool(0.3) => id.clone(),
        _ => {
            let id = format!("e-{}", ids.len() + 1);
            ids.push((source.clone(), id.clone()));
            id
        }
    };
    Some(EventFile {
        detect: Some(DetectFile {
            source,
            ip,
            threat,
            category,
            event_id,
            mac,
            hostname,
        }),
        ..blank(at)
    })
}

fn command_event(catalog: &Catalog, r: &mut ChaCha8Rng, at: Duration) -> Option<EventFile> {
    let ls = catalog.lservers.choose(r)?;
    let (action, choice) = match r.random_range(0..10u32) {
        0..=3 => (CommandAction::Quarantine, None),
        4..=7 => (CommandAction::Release, None),
        _ => (
            CommandAction::Decide,
            ["quarantine", "reboot", "quarantine_reboot"]
                .choose(r)
                .map(|c| c.to_string()),
        ),
    };
    Some(EventFile {
        command: Some(CommandFile {
            action,
            lserver: ls.path.clone(),
            choice,
        }),
        ..blank(at)
    })
}

/// Devices behind the L-Servers the events name (by path or address), and the AV servers that
/// send: faults mostly land there, or most of them would never meet a call.
fn touched_devices(catalog: &Catalog, events: &[EventFile]) -> Vec<String> {
    let mut touched: Vec<String> = Vec::new();
    let mut add = |name: &str| {
        if !touched.iter().any(|t| t == name) {
            touched.push(name.to_string());
        }
    };
    for e in events {
        let ls = if let Some(d) = &e.detect {
            add(&d.source);
            catalog.lservers.iter().find(|l| {
                d.ip.as_ref().is_some_and(|ip| l.ips.contains(ip))
                    || d.mac.as_ref().is_some_and(|m| l.macs.contains(m))
                    || (d.hostname.is_some() && d.hostname == l.hostname)
            })
        } else if let Some(c) = &e.command {
            catalog.lservers.iter().find(|l| l.path == c.lserver)
        } else {
            None
        };
        if let Some(ls) = ls {
            if let Some((h, _)) = &ls.vm {
                add(h);
            }
            for (sw, _) in &ls.ports {
                add(sw);
            }
            if let Some(b) = &ls.bmc {
                add(b);
            }
        }
    }
    touched
}

/// One fault: a device (mostly one the events touch), an effect from `effects` that applies to
/// it, a call it acts on, and a random window, `times`, `match` and `delay`.
fn fault(
    catalog: &Catalog,
    effects: &[FaultEffect],
    touched: &[String],
    r: &mut ChaCha8Rng,
    liveness: bool,
    fault_period: Duration,
) -> Option<FaultSpec> {
    let effect = *effects.choose(r)?;
    let fits: Vec<&(String, Family)> = catalog
        .devices
        .iter()
        .filter(|(_, fam)| !effect_calls(effect, *fam).is_empty())
        .collect();
    let near: Vec<&(String, Family)> = fits
        .iter()
        .copied()
        .filter(|(name, _)| touched.contains(name))
        .collect();
    let candidates = if !near.is_empty() && r.random_bool(0.85) {
        near
    } else {
        fits
    };
    let (device, family) = candidates.choose(r).copied()?;
    let calls = effect_calls(effect, *family);
    let call = *calls.choose(r)?;
    let period_ms = u64::try_from(fault_period.as_millis()).unwrap_or(20_000);
    let mut spec = FaultSpec::new(device.clone(), call, effect);
    if r.random_bool(0.5) {
        spec.times = Some(r.random_range(1..=4u32));
    }
    if r.random_bool(0.2) {
        // Seeded in the run (`docs/invariants.md`, "Seeded randomness"): some matching calls only.
        spec.probability = Some(f64::from(r.random_range(1..=9u32)) / 10.0);
    }
    if effect == FaultEffect::RebootLosesUnsaved {
        spec.from = Some(time(r, 500, period_ms.max(500)));
    } else {
        if r.random_bool(0.4) {
            spec.from = Some(time(r, 0, period_ms / 2));
        }
        if liveness || r.random_bool(0.4) {
            let lo = spec
                .from
                .map_or(100, |f| u64::try_from(f.as_millis()).unwrap_or(0) + 100);
            spec.until = Some(time(r, lo, period_ms.max(lo)));
        }
    }
    spec.delay = match effect {
        FaultEffect::Delay => Some(time(r, 100, 8_000)),
        FaultEffect::Timeout | FaultEffect::ApplyThenTimeout if r.random_bool(0.3) => {
            Some(time(r, 100, 10_000))
        }
        FaultEffect::Duplicate | FaultEffect::Reorder if r.random_bool(0.5) => {
            Some(time(r, 100, 5_000))
        }
        _ => None,
    };
    if r.random_bool(0.3) {
        spec.matcher = narrow(catalog, device, *family, r);
    }
    Some(spec)
}

/// A `match` that names one object behind `device`.
fn narrow(catalog: &Catalog, device: &str, family: Family, r: &mut ChaCha8Rng) -> FaultMatch {
    let behind: Vec<&LsInfo> = catalog
        .lservers
        .iter()
        .filter(|ls| match family {
            Family::Av => true,
            Family::Hypervisor => ls.vm.as_ref().is_some_and(|(h, _)| h == device),
            Family::Switch => ls.ports.iter().any(|(s, _)| s == device),
            Family::Bmc => ls.bmc.as_deref() == Some(device),
        })
        .collect();
    let Some(ls) = behind.choose(r) else {
        return FaultMatch::default();
    };
    let mut m = FaultMatch::default();
    match family {
        Family::Hypervisor if r.random_bool(0.6) => m.vm = ls.vm.as_ref().map(|(_, vm)| vm.clone()),
        Family::Switch if r.random_bool(0.6) => {
            m.port = ls
                .ports
                .iter()
                .filter(|(s, _)| s == device)
                .map(|(_, p)| p.clone())
                .collect::<Vec<_>>()
                .choose(r)
                .cloned();
        }
        _ => m.lserver = Some(ls.path.clone()),
    }
    m
}

/// `--liveness`: at the end of the fault period every device heals, except a few (0–2) that
/// fail for good (every call `unavailable` from then on).
fn liveness_tail(
    catalog: &Catalog,
    r: &mut ChaCha8Rng,
    faults: &mut Vec<FaultSpec>,
    events: &mut Vec<EventFile>,
    fault_period: Duration,
) {
    let device_calls: Vec<&(String, Family)> = catalog
        .devices
        .iter()
        .filter(|(_, f)| *f != Family::Av)
        .collect();
    let n_dead = match r.random_range(0..10u32) {
        0..=5 => 0,
        6..=8 => 1,
        _ => 2,
    };
    let mut dead: Vec<String> = Vec::new();
    for _ in 0..n_dead {
        if let Some((name, _)) = device_calls.choose(r) {
            if !dead.contains(name) {
                dead.push(name.clone());
            }
        }
    }
    for name in &dead {
        faults.push(FaultSpec {
            from: Some(fault_period),
            ..FaultSpec::new(name.clone(), None, FaultEffect::Unavailable)
        });
    }
    if dead.is_empty() {
        events.push(EventFile {
            heal: Some("all".into()),
            ..blank(fault_period)
        });
    } else {
        // Heal every device that has a fault and is not dead; the dead stay failed.
        let mut healed: Vec<&str> = faults
            .iter()
            .map(|f| f.device.as_str())
            .filter(|d| !dead.iter().any(|x| x == d))
            .collect();
        healed.sort_unstable();
        healed.dedup();
        for device in healed {
            events.push(EventFile {
                heal: Some(device.to_string()),
                ..blank(fault_period)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_effect_applies_to_some_device_family() {
        for effect in EFFECTS {
            let families = [Family::Hypervisor, Family::Switch, Family::Bmc, Family::Av];
            assert!(
                families
                    .iter()
                    .any(|f| !effect_calls(effect, *f).is_empty()),
                "{effect:?} applies nowhere"
            );
        }
    }

    #[test]
    fn effect_names_round_trip() {
        for effect in EFFECTS {
            assert_eq!(parse_effect(&effect_name(effect)), Some(effect));
        }
        assert_eq!(
            parse_effect("reset"),
            None,
            "wire-only effects are not drawn"
        );
    }

    #[test]
    fn inv11_run_seeds_differ_per_index_and_purpose() {
        assert_ne!(run_seed(1, 0, SCHEDULE), run_seed(1, 1, SCHEDULE));
        assert_ne!(run_seed(1, 0, SCHEDULE), run_seed(1, 0, FAULTS));
        assert_ne!(run_seed(1, 0, SCHEDULE), run_seed(2, 0, SCHEDULE));
    }
}
