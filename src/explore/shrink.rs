//! Shrinking: from a failing generated scenario to a minimal one that still fails with the same
//! invariants, then the single fault to blame, where there is one.
//!
//! Greedy and deterministic (the runs are): drop chunks of events and faults (halves first, then
//! single entries), narrow each fault (`times` down to 1, windows halved, delays halved), then drop
//! L-Servers from the topology and the devices no one uses any more; repeat until a whole pass
//! changes nothing or the run budget is spent. A candidate is kept when its run reports every
//! invariant of the target set (it may report more: a smaller scenario that shows the violation
//! is still the violation).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::Probe;
use crate::model::load::load_topology_str;
use crate::model::{Site, Topology};
use crate::scenario::file::ScenarioFile;
use crate::sim::faults::FaultSpec;

/// Most scenario runs one shrink may spend. Thousands of runs per second make this a fraction of
/// a second in a release build; it also bounds a pathological shrink.
pub const SHRINK_BUDGET: usize = 600;

/// A scenario and the topology it runs on (the shrinker may drop L-Servers and devices).
#[derive(Clone)]
pub struct Case {
    /// The scenario, in file form.
    pub file: ScenarioFile,
    /// The topology, possibly reduced.
    pub topology: Topology,
    /// `topology`, indexed.
    pub site: Arc<Site>,
    /// Whether `topology` differs from the explored one.
    pub topology_shrunk: bool,
}

/// The fault whose removal makes the minimal scenario pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attribution {
    /// Its index in the shrunk file's `[[faults]]`.
    pub index: usize,
    /// Device name.
    pub device: String,
    /// Call, when the fault names one.
    pub call: Option<String>,
    /// Effect.
    pub effect: String,
}

struct Shrinker<'a> {
    probe: &'a Probe<'a>,
    target: &'a BTreeSet<String>,
    runs: usize,
}

impl Shrinker<'_> {
    fn still_fails(&mut self, file: &ScenarioFile, site: &Arc<Site>) -> bool {
        if self.runs >= SHRINK_BUDGET {
            return false;
        }
        self.runs += 1;
        let twice = self.target.contains("INV-11");
        match self.probe.run(file.clone(), site, twice) {
            Ok(failed) => self.target.iter().all(|id| failed.contains(id)),
            // A candidate that does not validate (a command naming a dropped L-Server) is
            // simply not smaller.
            Err(_) => false,
        }
    }

    /// Drops chunks of `list(file)`: halves, quarters, ... single entries.
    fn drop_chunks<T: Clone>(
        &mut self,
        case: &mut Case,
        list: fn(&mut ScenarioFile) -> &mut Vec<T>,
    ) -> bool {
        let mut progress = false;
        let mut chunk = list(&mut case.file).len().div_ceil(2).max(1);
        loop {
            let mut start = 0;
            while start < list(&mut case.file).len() {
                let mut candidate = case.file.clone();
                let items = list(&mut candidate);
                let end = (start + chunk).min(items.len());
                items.drain(start..end);
                if self.still_fails(&candidate, &case.site) {
                    case.file = candidate;
                    progress = true;
                } else {
                    start += chunk;
                }
            }
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
        progress
    }

    fn narrow_faults(&mut self, case: &mut Case) -> bool {
        let mut progress = false;
        for i in 0..case.file.faults.len() {
            for candidate in narrower(&case.file.faults[i]) {
                let mut file = case.file.clone();
                file.faults[i] = candidate;
                if self.still_fails(&file, &case.site) {
                    case.file = file;
                    progress = true;
                }
            }
        }
        progress
    }

    /// Moves each event earlier: to the start, else halfway (on the 100 ms grid). A minimal
    /// scenario that starts at 0 s reads more easily and runs shorter.
    fn earlier_events(&mut self, case: &mut Case) -> bool {
        let mut progress = false;
        for i in 0..case.file.events.len() {
            let at = case.file.events[i].at;
            let half = Duration::from_millis(at.as_millis() as u64 / 200 * 100);
            for candidate in [Duration::ZERO, half] {
                if candidate >= at {
                    continue;
                }
                let mut file = case.file.clone();
                file.events[i].at = candidate;
                if self.still_fails(&file, &case.site) {
                    case.file = file;
                    progress = true;
                    break;
                }
            }
        }
        progress
    }

    fn drop_lservers(&mut self, case: &mut Case, topology_file: &Path) -> bool {
        let mut progress = false;
        let mut i = 0;
        while i < case.topology.lservers.len() {
            let mut topology = case.topology.clone();
            let path = topology.lservers.remove(i).path;
            topology.policy.actions.remove(&path);
            prune_devices(&mut topology, &case.file);
            match index(topology, topology_file) {
                Some((topology, site)) if self.still_fails(&case.file, &site) => {
                    case.topology = topology;
                    case.site = site;
                    case.topology_shrunk = true;
                    progress = true;
                }
                _ => i += 1,
            }
        }
        progress
    }
}

/// Narrower variants of a fault, most aggressive first.
fn narrower(f: &FaultSpec) -> Vec<FaultSpec> {
    let mut out = Vec::new();
    let with = |g: &dyn Fn(&mut FaultSpec)| {
        let mut c = f.clone();
        g(&mut c);
        c
    };
    match f.times {
        None => out.push(with(&|c| c.times = Some(1))),
        Some(n) if n > 1 => {
            out.push(with(&|c| c.times = Some(1)));
            out.push(with(&|c| c.times = Some(n - 1)));
        }
        Some(_) => {}
    }
    let from = f.from.unwrap_or(Duration::ZERO);
    if f.effect != crate::sim::faults::FaultEffect::RebootLosesUnsaved {
        match f.until {
            None => out.push(with(&|c| c.until = Some(from + Duration::from_secs(10)))),
            Some(until) if until > from + Duration::from_millis(200) => {
                let half = from + (until - from) / 2;
                let half = Duration::from_millis(half.as_millis() as u64 / 100 * 100);
                out.push(with(&|c| c.until = Some(half)));
            }
            Some(_) => {}
        }
    }
    if let Some(delay) = f.delay {
        if delay > Duration::from_millis(200) {
            let half = Duration::from_millis(delay.as_millis() as u64 / 200 * 100);
            out.push(with(&|c| c.delay = Some(half)));
        }
    }
    out
}

/// Removes hypervisors, switches and BMCs no L-Server uses and no fault or heal names, and AV
/// servers no detection or fault names.
fn prune_devices(t: &mut Topology, file: &ScenarioFile) {
    let named = |name: &str| {
        file.faults.iter().any(|f| f.device == name)
            || file.events.iter().any(|e| e.heal.as_deref() == Some(name))
    };
    let used_hv: BTreeSet<String> = t
        .lservers
        .iter()
        .filter_map(|l| l.hypervisor.clone())
        .collect();
    let used_sw: BTreeSet<String> = t
        .lservers
        .iter()
        .flat_map(|l| l.nics.iter().filter_map(|n| n.switch.clone()))
        .collect();
    let used_bmc: BTreeSet<String> = t.lservers.iter().filter_map(|l| l.bmc.clone()).collect();
    t.hypervisors
        .retain(|h| used_hv.contains(&h.name) || named(&h.name));
    t.switches
        .retain(|s| used_sw.contains(&s.name) || named(&s.name));
    t.bmcs
        .retain(|b| used_bmc.contains(&b.name) || named(&b.name));
    t.av_servers.retain(|a| {
        named(&a.name)
            || file.events.iter().any(|e| {
                e.detect.as_ref().is_some_and(|d| d.source == a.name)
                    || e.outbreak.as_ref().is_some_and(|o| o.source == a.name)
            })
    });
}

/// The topology as its file would hold it, checked by the loader `qlab run` uses: a candidate
/// the loader refuses is not a candidate.
pub fn topology_text(t: &Topology) -> Option<String> {
    let mut t = t.clone();
    // The L-Servers are already expanded; a `[generate]` table would add them again.
    t.generate = None;
    toml::to_string(&t).ok()
}

fn index(topology: Topology, topology_file: &Path) -> Option<(Topology, Arc<Site>)> {
    let text = topology_text(&topology)?;
    let loaded = load_topology_str(topology_file, &text).ok()?;
    let site = Site::new(loaded.clone()).ok()?;
    Some((loaded, Arc::new(site)))
}

/// Shrinks `case`, which fails with (at least) every invariant of `target`. Returns the minimal
/// case and the number of runs spent.
pub(super) fn shrink(
    probe: &Probe<'_>,
    mut case: Case,
    target: &BTreeSet<String>,
    topology_file: &Path,
) -> (Case, usize) {
    let mut s = Shrinker {
        probe,
        target,
        runs: 0,
    };
    loop {
        let mut progress = s.drop_chunks(&mut case, |f| &mut f.events);
        progress |= s.drop_chunks(&mut case, |f| &mut f.faults);
        progress |= s.narrow_faults(&mut case);
        if !progress {
            progress = s.earlier_events(&mut case);
        }
        if !progress {
            // Topology last: dropping L-Servers costs a reload per candidate and matters only
            // once the schedule is small.
            progress = s.drop_lservers(&mut case, topology_file);
        }
        if !progress || s.runs >= SHRINK_BUDGET {
            break;
        }
    }
    (case, s.runs)
}

/// The one fault whose removal makes `case` pass every invariant, when exactly one does.
pub(super) fn attribute(probe: &Probe<'_>, case: &Case) -> Option<Attribution> {
    let mut found = None;
    for (i, f) in case.file.faults.iter().enumerate() {
        let mut file = case.file.clone();
        file.faults.remove(i);
        // Twice: "passes" includes INV-11.
        if probe
            .run(file, &case.site, true)
            .is_ok_and(|failed| failed.is_empty())
        {
            if found.is_some() {
                return None;
            }
            found = Some(Attribution {
                index: i,
                device: f.device.clone(),
                call: f.call.map(|c| c.as_str().to_string()),
                effect: super::generate::effect_name(f.effect),
            });
        }
    }
    found
}
