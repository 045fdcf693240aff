//! The fault plan at run time: the scenario's `[[faults]]` with their remaining `times` and heal
//! state, and the one decision every device call and every AV notification goes through.
//!
//! The decision lives here, not in a face, so the in-process face and a wire face fail the same
//! way for the same calls, and so does the accounting of what each fault did (report.json
//! `faults`): a rule's hit is a call or notification it was applied to (a `delay` that added
//! time, the effect chosen for a call, a notification dropped, duplicated or held back), and for
//! `reboot_loses_unsaved` a reboot it caused.
//!
//! A rule with `probability` draws from its own stream of the run's seed (`fault/<index>`) each
//! time it would otherwise apply; a draw that says no neither uses up `times` nor counts a hit,
//! and leaves the call to the later rules.

use std::time::Duration;

use super::faults::{CallKind, FaultEffect, FaultSpec};
use super::rng::SeededRng;
use crate::model::history::FaultAccount;

/// What a fault decision looks at: the device, the call and the object it concerns.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Subject<'a> {
    /// Device name.
    pub device: &'a str,
    /// The call; `None` only for AV notifications judged without a call kind.
    pub call: Option<CallKind>,
    /// VM id, when the call concerns a VM.
    pub vm: Option<&'a str>,
    /// vNIC key, when the call concerns a vNIC.
    pub nic: Option<&'a str>,
    /// Switch port, when the call concerns a port.
    pub port: Option<&'a str>,
    /// L-Server the object belongs to.
    pub lserver: Option<&'a str>,
}

/// The effect chosen for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chosen {
    /// What happens.
    pub effect: FaultEffect,
    /// The rule's `delay`, if it set one.
    pub delay: Option<Duration>,
}

/// The decision for one device call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Extra latency from active `delay` faults (they add up and combine with any other effect).
    pub extra_delay: Duration,
    /// The first active non-delay fault, if any.
    pub effect: Option<Chosen>,
}

/// Extra latency of a `delay` fault that does not say how much: enough to be visible in a
/// history, short against the default call timeout.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(1);

/// How long a `timeout` or `apply_then_timeout` call hangs when the fault sets no `delay`: far
/// beyond any sane call timeout, so the caller's own timeout cuts it first.
pub const DEFAULT_HANG: Duration = Duration::from_secs(3600);

/// How long after a write a `stale_read` that sets no `delay` keeps answering the value from
/// before it: the bounded staleness formats.md gives as the default.
pub const DEFAULT_STALE_WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct Rule {
    spec: FaultSpec,
    /// Calls it may still affect; `None`: unlimited.
    remaining: Option<u32>,
    /// Run time from which a heal disabled it.
    healed_at: Option<Duration>,
    /// Calls or notifications it affected.
    hits: u64,
    /// Of those, the ones that fell while an operation ran (see [`FaultAccount`]).
    hits_in_operation: u64,
    /// The stream its `probability` draws from.
    purpose: String,
}

impl Rule {
    fn active_at(&self, now: Duration) -> bool {
        let from = self.spec.from.unwrap_or(Duration::ZERO);
        let before_until = self.spec.until.is_none_or(|until| now < until);
        let before_heal = self.healed_at.is_none_or(|healed| now < healed);
        from <= now && before_until && before_heal && self.remaining != Some(0)
    }

    fn matches(&self, subject: &Subject<'_>) -> bool {
        if self.spec.device != subject.device {
            return false;
        }
        if let (Some(wanted), Some(call)) = (self.spec.call, subject.call) {
            if wanted != call {
                return false;
            }
        }
        // A matcher field the call's object lacks does not match: a fault for one VM never
        // hits a `login`, a fault for one port never hits a `save_config`.
        let m = &self.spec.matcher;
        field_matches(m.vm.as_deref(), subject.vm)
            && field_matches(m.nic.as_deref(), subject.nic)
            && field_matches(m.port.as_deref(), subject.port)
            && field_matches(m.lserver.as_deref(), subject.lserver)
    }

    /// Uses up one of its `times` and counts the hit.
    fn consume(&mut self, in_operation: bool) {
        if let Some(n) = self.remaining.as_mut() {
            *n = n.saturating_sub(1);
        }
        self.hits = self.hits.saturating_add(1);
        if in_operation {
            self.hits_in_operation = self.hits_in_operation.saturating_add(1);
        }
    }

    /// Whether its `probability` lets it act on this call (always, without one).
    fn draw(&self, rng: &mut SeededRng) -> bool {
        match self.spec.probability {
            Some(p) => rng.chance(&self.purpose, p),
            None => true,
        }
    }
}

fn field_matches(wanted: Option<&str>, actual: Option<&str>) -> bool {
    match wanted {
        None => true,
        Some(w) => actual == Some(w),
    }
}

/// Whether `effect` can act on one device call of kind `call` ([`FaultEffect::calls`]).
/// Effects that cannot are skipped (not consumed), so a `stale_read` rule without `call` waits
/// for a read instead of being used up by a write. AV notifications (`send`) are decided by
/// [`FaultPlan::decide_delivery`], and `reboot_loses_unsaved` is scheduled by the runner.
pub(crate) fn applies_to_call(effect: FaultEffect, call: CallKind) -> bool {
    call != CallKind::Send && effect.calls().contains(&call)
}

/// The scenario's faults with their run-time state.
#[derive(Debug, Clone, Default)]
pub(crate) struct FaultPlan {
    rules: Vec<Rule>,
    /// The run's seeded generator; rules draw from their own purposes only.
    rng: SeededRng,
}

impl FaultPlan {
    /// A plan of `faults`, in file order (the first matching rule wins), drawing its
    /// probabilities from `seed`.
    pub fn new(faults: Vec<FaultSpec>, seed: u64) -> FaultPlan {
        let mut plan = FaultPlan {
            rules: Vec::with_capacity(faults.len()),
            rng: SeededRng::new(seed),
        };
        for spec in faults {
            plan.push(spec);
        }
        plan
    }

    /// Appends `spec` as the last rule (the lowest priority) and returns its index. Its `from`
    /// and `until` are run times like any rule's, so one added at run time without `from`
    /// acts on the calls that arrive from then on.
    pub fn push(&mut self, spec: FaultSpec) -> usize {
        let index = self.rules.len();
        self.rules.push(Rule {
            remaining: spec.times,
            healed_at: None,
            hits: 0,
            hits_in_operation: 0,
            purpose: format!("fault/{index}"),
            spec,
        });
        index
    }

    /// Decides one device call at run time `now` and uses up the rules it applies.
    /// `in_operation` says whether the call falls inside an operation (for the accounting).
    pub fn decide_call(
        &mut self,
        subject: &Subject<'_>,
        now: Duration,
        in_operation: bool,
    ) -> Decision {
        let Some(call) = subject.call else {
            return Decision::default();
        };
        let mut decision = Decision::default();
        for rule in &mut self.rules {
            let delay = rule.spec.effect == FaultEffect::Delay;
            if !applies_to_call(rule.spec.effect, call)
                || (!delay && decision.effect.is_some())
                || !rule.active_at(now)
                || !rule.matches(subject)
                || !rule.draw(&mut self.rng)
            {
                continue;
            }
            rule.consume(in_operation);
            if delay {
                let add = rule.spec.delay.unwrap_or(DEFAULT_DELAY);
                decision.extra_delay = decision.extra_delay.saturating_add(add);
            } else {
                decision.effect = Some(Chosen {
                    effect: rule.spec.effect,
                    delay: rule.spec.delay,
                });
            }
        }
        decision
    }

    /// Decides one AV notification sent at run time `at` and uses up the rule it applies.
    /// Returns the effect and the index of the rule that chose it.
    pub fn decide_delivery(
        &mut self,
        subject: &Subject<'_>,
        at: Duration,
    ) -> Option<(usize, Chosen)> {
        let rng = &mut self.rng;
        let (index, rule) = self.rules.iter_mut().enumerate().find(|(_, rule)| {
            rule.spec.effect.is_delivery()
                && rule.spec.call.is_none_or(|c| c == CallKind::Send)
                && rule.active_at(at)
                && rule.matches(subject)
                && rule.draw(rng)
        })?;
        // Counted when the notification is sent ([`FaultPlan::count_hit`]): whether an
        // operation runs then is only known during the run.
        if let Some(n) = rule.remaining.as_mut() {
            *n = n.saturating_sub(1);
        }
        Some((
            index,
            Chosen {
                effect: rule.spec.effect,
                delay: rule.spec.delay,
            },
        ))
    }

    /// Counts one hit of rule `index` decided ahead of the run (a notification's delivery fault,
    /// a scheduled reboot) at the moment it takes effect.
    pub fn count_hit(&mut self, index: usize, in_operation: bool) {
        if let Some(rule) = self.rules.get_mut(index) {
            rule.hits = rule.hits.saturating_add(1);
            if in_operation {
                rule.hits_in_operation = rule.hits_in_operation.saturating_add(1);
            }
        }
    }

    /// What each rule did so far, in file order.
    pub fn accounting(&self) -> Vec<FaultAccount> {
        self.rules
            .iter()
            .enumerate()
            .map(|(index, rule)| FaultAccount {
                index,
                device: rule.spec.device.clone(),
                call: rule.spec.call.map(|c| c.as_str().to_string()),
                effect: rule.spec.effect.as_str().to_string(),
                hits: rule.hits,
                hits_in_operation: rule.hits_in_operation,
            })
            .collect()
    }

    /// Disables, from run time `now`, every rule of `target` (a device name, or `all`).
    pub fn heal(&mut self, target: &str, now: Duration) {
        for rule in &mut self.rules {
            if (target == "all" || rule.spec.device == target) && rule.healed_at.is_none() {
                rule.healed_at = Some(now);
            }
        }
    }

    /// `(from, switch, rule index)` of every `reboot_loses_unsaved` fault not healed before its
    /// time, in time order.
    pub fn switch_reboots(&self) -> Vec<(Duration, String, usize)> {
        let mut reboots: Vec<(Duration, String, usize)> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.spec.effect == FaultEffect::RebootLosesUnsaved)
            .map(|(i, r)| (r.spec.from.unwrap_or(Duration::ZERO), r, i))
            .filter(|(at, r, _)| r.healed_at.is_none_or(|healed| *at < healed))
            .map(|(at, r, i)| (at, r.spec.device.clone(), i))
            .collect();
        reboots.sort();
        reboots
    }

    /// `(from, rule index)` of every `external_change` fault not healed before its time, in
    /// time order (file order within one instant).
    pub fn external_changes(&self) -> Vec<(Duration, usize)> {
        let mut changes: Vec<(Duration, usize)> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.spec.effect == FaultEffect::ExternalChange)
            .map(|(i, r)| (r.spec.from.unwrap_or(Duration::ZERO), r, i))
            .filter(|(at, r, _)| r.healed_at.is_none_or(|healed| *at < healed))
            .map(|(at, _, i)| (at, i))
            .collect();
        changes.sort();
        changes
    }

    /// The spec of rule `index`.
    pub fn spec(&self, index: usize) -> Option<&FaultSpec> {
        self.rules.get(index).map(|r| &r.spec)
    }

    /// Whether rule `index` is healed by `now`.
    pub fn healed(&self, index: usize, now: Duration) -> bool {
        self.rules
            .get(index)
            .is_some_and(|r| r.healed_at.is_some_and(|healed| healed <= now))
    }

    /// Whether a reboot of `switch` at `now` is still due: true when the plan schedules none
    /// for it (a direct request), or when one of its reboot faults is not healed by `now`.
    pub fn reboot_due(&self, switch: &str, now: Duration) -> bool {
        let mut reboots = self.rules.iter().filter(|r| {
            r.spec.effect == FaultEffect::RebootLosesUnsaved && r.spec.device == switch
        });
        let mut any = false;
        let due = reboots.any(|r| {
            any = true;
            r.healed_at.is_none_or(|healed| now < healed)
        });
        due || !any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::faults::FaultMatch;

    /// The plan of `rule` alone, seed 0.
    fn one_rule(rule: FaultSpec) -> FaultPlan {
        FaultPlan::new(vec![rule], 0)
    }

    /// Whether the plan gives the call `s` at `at` a fault.
    fn fires(plan: &mut FaultPlan, s: &Subject, at: Duration) -> bool {
        plan.decide_call(s, at, false).effect.is_some()
    }

    fn spec(effect: FaultEffect) -> FaultSpec {
        FaultSpec::new("vc-1", None, effect)
    }

    fn set_nic(vm: &str) -> Subject<'_> {
        Subject {
            device: "vc-1",
            call: Some(CallKind::SetNic),
            vm: Some(vm),
            nic: Some("4000"),
            ..Subject::default()
        }
    }

    #[test]
    fn times_run_out() {
        let mut plan = one_rule(FaultSpec {
            times: Some(2),
            ..spec(FaultEffect::Reject)
        });
        let s = set_nic("vm-1");
        assert!(fires(&mut plan, &s, Duration::ZERO));
        assert!(fires(&mut plan, &s, Duration::ZERO));
        assert!(!fires(&mut plan, &s, Duration::ZERO));
    }

    #[test]
    fn window_is_half_open() {
        let mut plan = one_rule(FaultSpec {
            from: Some(Duration::from_secs(1)),
            until: Some(Duration::from_secs(2)),
            ..spec(FaultEffect::Busy)
        });
        let s = set_nic("vm-1");
        assert!(!fires(&mut plan, &s, Duration::from_millis(999)));
        assert!(fires(&mut plan, &s, Duration::from_secs(1)));
        assert!(!fires(&mut plan, &s, Duration::from_secs(2)));
    }

    #[test]
    fn matcher_needs_the_field_on_the_object() {
        let mut plan = one_rule(FaultSpec {
            matcher: FaultMatch {
                vm: Some("vm-1".into()),
                ..FaultMatch::default()
            },
            ..spec(FaultEffect::Reject)
        });
        let login = Subject {
            device: "vc-1",
            call: Some(CallKind::Login),
            ..Subject::default()
        };
        assert!(!fires(&mut plan, &login, Duration::ZERO));
        assert!(!fires(&mut plan, &set_nic("vm-2"), Duration::ZERO));
        assert!(fires(&mut plan, &set_nic("vm-1"), Duration::ZERO));
    }

    #[test]
    fn a_pushed_rule_comes_last_and_acts_from_then_on() {
        let mut plan = one_rule(FaultSpec {
            times: Some(1),
            ..spec(FaultEffect::Busy)
        });
        let s = set_nic("vm-1");
        let at = Duration::from_secs(5);
        assert_eq!(plan.push(spec(FaultEffect::Reject)), 1);
        // The rule already there wins while it lasts; the pushed one takes the later calls.
        let chosen =
            |plan: &mut FaultPlan| plan.decide_call(&s, at, false).effect.map(|c| c.effect);
        assert_eq!(chosen(&mut plan), Some(FaultEffect::Busy));
        assert_eq!(chosen(&mut plan), Some(FaultEffect::Reject));
        assert_eq!(plan.accounting()[1].hits, 1);
        assert_eq!(plan.accounting()[1].effect, "reject");
    }

    #[test]
    fn stale_read_waits_for_a_read_and_delays_add_up() {
        let mut plan = FaultPlan::new(
            vec![
                FaultSpec {
                    times: Some(1),
                    ..spec(FaultEffect::StaleRead)
                },
                FaultSpec {
                    delay: Some(Duration::from_millis(300)),
                    ..spec(FaultEffect::Delay)
                },
                spec(FaultEffect::Delay),
            ],
            0,
        );
        let write = plan.decide_call(&set_nic("vm-1"), Duration::ZERO, false);
        assert_eq!(write.effect, None);
        assert_eq!(write.extra_delay, Duration::from_millis(1300));
        let read = Subject {
            call: Some(CallKind::GetNic),
            ..set_nic("vm-1")
        };
        let chosen = plan.decide_call(&read, Duration::ZERO, false).effect;
        assert_eq!(chosen.map(|c| c.effect), Some(FaultEffect::StaleRead));
    }

    #[test]
    fn heal_disables_from_its_time_and_cancels_later_reboots() {
        let mut plan = FaultPlan::new(
            vec![
                spec(FaultEffect::Reject),
                FaultSpec {
                    device: "sw-1".into(),
                    from: Some(Duration::from_secs(10)),
                    ..spec(FaultEffect::RebootLosesUnsaved)
                },
            ],
            0,
        );
        plan.heal("vc-1", Duration::from_secs(5));
        let s = set_nic("vm-1");
        assert!(fires(&mut plan, &s, Duration::from_secs(4)));
        assert!(!fires(&mut plan, &s, Duration::from_secs(5)));
        assert_eq!(plan.switch_reboots().len(), 1);
        plan.heal("all", Duration::from_secs(6));
        assert!(plan.switch_reboots().is_empty());
        assert!(!plan.reboot_due("sw-1", Duration::from_secs(10)));
        assert!(plan.reboot_due("sw-2", Duration::from_secs(10)));
    }

    #[test]
    fn probability_skips_calls_without_using_times_and_accounting_counts_hits() {
        let mut plan = FaultPlan::new(
            vec![
                FaultSpec {
                    probability: Some(0.5),
                    times: Some(30),
                    ..spec(FaultEffect::Reject)
                },
                spec(FaultEffect::Busy),
            ],
            4,
        );
        let s = set_nic("vm-1");
        let mut rejected = 0;
        for i in 0..40 {
            let effect = plan.decide_call(&s, Duration::ZERO, i % 2 == 0).effect;
            match effect.map(|c| c.effect) {
                Some(FaultEffect::Reject) => rejected += 1,
                // A call the probability spares goes on to the next rule.
                other => assert_eq!(other, Some(FaultEffect::Busy)),
            }
        }
        assert!((10..30).contains(&rejected), "{rejected} of 40");
        let accounts = plan.accounting();
        assert_eq!(accounts[0].hits, rejected);
        assert_eq!(accounts[1].hits, 40 - rejected);
        assert!(accounts[0].hits_in_operation <= accounts[0].hits);
        assert_eq!(
            accounts[0].hits_in_operation + accounts[1].hits_in_operation,
            20
        );
        assert_eq!(accounts[0].effect, "reject");
        // Same seed, same choices (INV-11).
        let mut again = FaultPlan::new(
            vec![FaultSpec {
                probability: Some(0.5),
                ..spec(FaultEffect::Reject)
            }],
            4,
        );
        let mut replay = 0;
        for _ in 0..40 {
            if again
                .decide_call(&s, Duration::ZERO, false)
                .effect
                .is_some()
            {
                replay += 1;
            }
        }
        assert_eq!(replay, rejected);
    }

    #[test]
    fn effect_spelling_matches_the_file_format() {
        for effect in [
            FaultEffect::Reject,
            FaultEffect::ApplyThenTimeout,
            FaultEffect::AcceptWithoutApply,
            FaultEffect::StaleRead,
            FaultEffect::AuthExpired,
            FaultEffect::RebootLosesUnsaved,
            FaultEffect::Reorder,
            FaultEffect::Blackhole,
        ] {
            let serde = serde_json::to_value(effect).expect("serializes");
            assert_eq!(serde.as_str(), Some(effect.as_str()));
        }
    }
}
