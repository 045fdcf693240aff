//! The timeline player: the one walk over a scenario's timeline that sim and wire mode share.
//!
//! [`build_timeline`] turns the scenario into timed steps (detections after the AV servers'
//! delivery faults, commands, crashes, heals, the fault plan's switch reboots and external
//! changes); [`play`] walks them in order and asks a [`Backend`] to do what only a mode knows how
//! to do: wait on its clock, send detections and commands to its engine, crash it, restart it,
//! and wait for it to become idle at the end. Everything else is decided here, once, so the two
//! modes cannot drift apart:
//!
//! - **Order.** Steps play in time order; at one instant the delivery faults' hits come first,
//!   then the detections (in the seed's order: [`SimWorld::deliveries_counted`] draws it from the
//!   run's same-instant stream, semantics.md "Seeded randomness"), then the file's other events in
//!   file order, then the fault plan's reboots and external changes. A restart goes behind every
//!   step due at its instant.
//! - **Same-instant detections are one burst** in both modes: they are recorded as sent together
//!   and the backend sends them without waiting for one acknowledgement before the next, as an AV
//!   server flushing its queue does, which is what an outbreak is. (Sim mode always did this;
//!   wire mode used to await each receipt in turn, which let the engine see a burst as a trickle.)
//! - **Engine down.** Detections sent while the engine is down are refused (`engine down`) and
//!   held by their sender; commands are refused and not held (an operator sees the refusal).
//!   After a restart the held detections are sent again one after the other, as a sender working
//!   through its backlog does. Detections the engine did not acknowledge before a crash cut them
//!   off are held too (`engine crashed before acknowledging`).
//! - **World steps.** Heals, switch reboots, external changes and delivery-fault hits act on the
//!   simulated world, which both modes share (the wire faces decide through the same models):
//!   the player applies them itself, so no backend can play them differently.
//!
//! The player keeps the list of what it did ([`PlayedStep`], [`crate::scenario::runner::ScenarioRun::played`]):
//! the same scenario and seed take the same path in both modes (INV-11 for the sim digest; the
//! path is what a wire run can be compared on, its timings being real).

use std::future::Future;
use std::time::Duration;

use super::load::{EventAction, Scenario};
use crate::engine::{Command, Engine};
use crate::model::history::EventKind;
use crate::model::Detection;
use crate::sim::{Recorder, SimWorld};

/// One thing the player does at a time on the timeline.
pub(super) enum Step {
    Detect(Detection),
    Command(Command),
    Crash(Duration),
    Restart,
    Heal(String),
    /// A `reboot_loses_unsaved` fault (its index) reboots this switch.
    RebootSwitch(String, usize),
    /// An `external_change` fault (its index) moves the NICs it matches (R20, INV-12).
    ExternalChange(usize),
    /// An AV delivery fault (its index) acted on a notification of this L-Server sent now:
    /// counted now, when it is known whether an operation runs. Leaves nothing in the history.
    FaultHit(usize, Option<String>),
    /// A step already played (the timeline is walked once, front to back).
    Played,
}

/// What the player did, in order: the path a run took through its timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlayedStep {
    /// Detections sent together at one instant: their event ids, in sending order.
    Detect(Vec<String>),
    /// Held detections sent again after a restart, one after the other: their event ids.
    Resend(Vec<String>),
    /// A command: its action and L-Server.
    Command(String, String),
    /// The engine crashed (a scenario's `crash`, or a crash sweep's point).
    Crash,
    /// The engine was started again on its journal.
    Restart,
    /// A `heal` event and its target.
    Heal(String),
    /// A `reboot_loses_unsaved` fault (its index) rebooted this switch.
    RebootSwitch(String, usize),
    /// An `external_change` fault (its index) moved NICs at their device.
    ExternalChange(usize),
    /// An AV delivery fault (its index) was counted.
    FaultHit(usize),
    /// The timeline was played out and the run waited for the engine to be idle.
    Idle,
}

/// What a mode does for the player. Static dispatch (the player is generic over it): sim mode
/// plays outbreaks of 100,000 detections, one step each.
pub(super) trait Backend {
    /// Whether the engine is running.
    fn up(&self) -> bool;

    /// A crash the backend itself brought about since it was last asked (a crash sweep's point):
    /// when it took the engine down, the time its restart is due (on the scenario's clock).
    fn crashed_itself(&mut self) -> Result<Option<Duration>, String>;

    /// Waits until `at` on the scenario's clock (a backend on another scale converts it);
    /// `false` when the engine crashed meanwhile (the player then asks
    /// [`Backend::crashed_itself`] before going on).
    fn wait_until(&mut self, at: Duration) -> impl Future<Output = bool>;

    /// Sends `burst` at once, without waiting for one acknowledgement before the next; returns
    /// the detections a crash kept the engine from acknowledging. Refusals by the engine are
    /// the backend's to record.
    fn detect(&mut self, burst: Vec<Detection>) -> impl Future<Output = Vec<Detection>>;

    /// Sends `backlog` one detection after the other; returns those a crash left
    /// unacknowledged, with the rest of the backlog.
    fn resend(&mut self, backlog: Vec<Detection>) -> impl Future<Output = Vec<Detection>>;

    /// Submits `command` and records its answer; returns it when a crash came before its
    /// queueing was journaled (the operator sends it again after the restart).
    fn command(
        &mut self,
        command: Command,
    ) -> impl Future<Output = Result<Option<Command>, String>>;

    /// Stops the engine abruptly (its tasks die mid-call; the journal is what survives), and
    /// returns once nothing of it can touch the journal again: the restart must find the
    /// journal as the crash left it.
    fn crash(&mut self) -> impl Future<Output = ()>;

    /// Starts the engine again on its journal, `at` on the run clock.
    fn restart(&mut self, at: Duration) -> impl Future<Output = Result<(), String>>;

    /// The end of the run, with the engine up: waits until the drift watch has had its bound
    /// after `last_drift` (and after `last_restart`; both on the scenario's clock), then until
    /// the engine is idle or the settle time has passed. `false` when a crash interrupted the
    /// wait.
    fn idle(
        &mut self,
        last_drift: Option<Duration>,
        last_restart: Option<Duration>,
    ) -> impl Future<Output = Result<bool, String>>;

    /// After every step and at the end (the `revert-on-failure` mutant acts here).
    fn stepped(&mut self) -> impl Future<Output = ()> {
        async {}
    }
}

/// The scenario's events as one timeline on the scenario's own clock: detections (`outbreak`
/// events expanded here, see [`super::outbreak`]) after the AV servers' delivery faults (drop,
/// duplicate, reorder; heals counted; AV `jitter`), commands, crashes, heals and scheduled switch
/// reboots. Stable: at equal times the delivery faults' hits come first, then detections (in
/// the seed's order, see [`SimWorld::deliveries_counted`]), then file order. `world` must hold
/// the scenario's unscaled site and faults: both modes build their timeline from such a world,
/// so they play the same steps in the same order (wire mode scales the times only when it waits
/// for them, [`Backend::wait_until`]; the same-instant order is drawn per instant, so scaling
/// first would draw it differently).
pub(super) fn build_timeline(scenario: &Scenario, world: &SimWorld) -> Vec<(Duration, Step)> {
    let mut timeline = Vec::new();
    let mut detections = Vec::new();
    for e in &scenario.events {
        match &e.action {
            EventAction::Detect(d) => detections.push((e.at, d.clone())),
            EventAction::Outbreak(o) => detections.extend(
                o.detections(&scenario.site)
                    .into_iter()
                    .map(|(offset, d)| (e.at.saturating_add(offset), d)),
            ),
            _ => {}
        }
    }
    let heals: Vec<(Duration, String)> = scenario
        .events
        .iter()
        .filter_map(|e| match &e.action {
            EventAction::Heal(target) => Some((e.at, target.clone())),
            _ => None,
        })
        .collect();
    let (deliveries, hits) = world.deliveries_counted(detections, &heals);
    // Hits first: a notification's fault is counted when it is sent, before the engine sees
    // anything of that instant (the stable sort below keeps them ahead).
    for hit in hits {
        timeline.push((hit.at, Step::FaultHit(hit.fault, hit.lserver)));
    }
    for (at, d) in deliveries {
        timeline.push((at, Step::Detect(d)));
    }
    for e in &scenario.events {
        let step = match &e.action {
            EventAction::Detect(_) | EventAction::Outbreak(_) => continue,
            EventAction::Command(c) => Step::Command(c.clone()),
            EventAction::Crash { restart_after } => Step::Crash(*restart_after),
            EventAction::Heal(target) => Step::Heal(target.clone()),
        };
        timeline.push((e.at, step));
    }
    // Switch reboots come from the fault plan.
    for (at, device, fault) in world.scheduled_reboots() {
        timeline.push((at, Step::RebootSwitch(device, fault)));
    }
    for (at, fault) in world.scheduled_external_changes() {
        timeline.push((at, Step::ExternalChange(fault)));
    }
    timeline.sort_by_key(|(at, _)| *at);
    timeline
}

/// The end of a run whose engine is idle: `wait_idle` also returns when the engine halted (a
/// journal failure, a task's panic), and that is no end of the run but its failure, with no
/// event in the history. Both modes' [`Backend::idle`] end with it.
pub(super) fn not_halted(engine: &Engine) -> Result<(), String> {
    match engine.halt_reason() {
        Some(reason) => Err(format!("the engine halted: {reason}")),
        None => Ok(()),
    }
}

/// Puts the restart after a crash at `restart_at`, behind every step due by then.
fn schedule_restart(timeline: &mut Vec<(Duration, Step)>, next: usize, restart_at: Duration) {
    let pos = timeline[next..]
        .iter()
        .position(|(t, _)| *t > restart_at)
        .map_or(timeline.len(), |p| p + next);
    timeline.insert(pos, (restart_at, Step::Restart));
}

/// The last drift step of the timeline (`reboot_loses_unsaved`, `external_change`): the run
/// lasts until the drift watch has had its bound after it. `None` without drift.
fn last_drift(timeline: &[(Duration, Step)]) -> Option<Duration> {
    timeline
        .iter()
        .filter(|(_, s)| matches!(s, Step::RebootSwitch(..) | Step::ExternalChange(_)))
        .map(|(at, _)| *at)
        .max()
}

/// The command's action and L-Server, as the history names them.
pub(super) fn command_names(c: &Command) -> (String, String) {
    let action = match c {
        Command::Quarantine { .. } => "quarantine",
        Command::Release { .. } => "release",
        Command::Decide { .. } => "decide",
    };
    (action.into(), c.lserver().into())
}

fn ids(detections: &[Detection]) -> Vec<String> {
    detections.iter().map(|d| d.event_id.clone()).collect()
}

/// Records the refusal of every detection of `unsent` for `reason` and holds them.
fn hold(recorder: &Recorder, held: &mut Vec<Detection>, unsent: Vec<Detection>, reason: &str) {
    for d in unsent {
        recorder.record(EventKind::DetectionRefused {
            source: d.source.clone(),
            event_id: d.event_id.clone(),
            reason: reason.into(),
        });
        held.push(d);
    }
}

/// Plays `timeline` through `backend` (module docs); the path it took.
pub(super) async fn play<B: Backend>(
    backend: &mut B,
    world: &SimWorld,
    recorder: &Recorder,
    mut timeline: Vec<(Duration, Step)>,
) -> Result<Vec<PlayedStep>, String> {
    let drift = last_drift(&timeline);
    // A restart starts the drift watch afresh: a drift gets its bound again from there.
    let mut last_restart: Option<Duration> = None;
    // Detections the sender still holds because the engine was down: it sends them again.
    let mut held: Vec<Detection> = Vec::new();
    // Commands an operator sends again because the engine died before answering them (and
    // before journaling them).
    let mut held_commands: Vec<Command> = Vec::new();
    let mut played = Vec::new();
    let mut index = 0;
    loop {
        if let Some(restart_at) = backend.crashed_itself()? {
            recorder.record(EventKind::Crash);
            played.push(PlayedStep::Crash);
            schedule_restart(&mut timeline, index, restart_at);
        }
        if index >= timeline.len() {
            if !backend.up() {
                break;
            }
            if !backend.idle(drift, last_restart).await? {
                continue;
            }
            played.push(PlayedStep::Idle);
            backend.stepped().await;
            break;
        }
        let at = timeline[index].0;
        if !backend.wait_until(at).await {
            continue;
        }
        let step = std::mem::replace(&mut timeline[index].1, Step::Played);
        index += 1;
        match step {
            Step::Detect(first) => {
                let mut burst = vec![first];
                while index < timeline.len()
                    && timeline[index].0 == at
                    && matches!(timeline[index].1, Step::Detect(_))
                {
                    if let Step::Detect(d) = std::mem::replace(&mut timeline[index].1, Step::Played)
                    {
                        burst.push(d);
                    }
                    index += 1;
                }
                for d in &burst {
                    recorder.record(EventKind::DetectionSent {
                        source: d.source.clone(),
                        event_id: d.event_id.clone(),
                        ip: d.ip,
                    });
                }
                played.push(PlayedStep::Detect(ids(&burst)));
                if backend.up() {
                    let unsent = backend.detect(burst).await;
                    hold(
                        recorder,
                        &mut held,
                        unsent,
                        "engine crashed before acknowledging",
                    );
                } else {
                    hold(recorder, &mut held, burst, "engine down");
                }
            }
            Step::Command(c) => {
                let (action, lserver) = command_names(&c);
                if backend.up() {
                    held_commands.extend(backend.command(c).await?);
                } else {
                    recorder.record(EventKind::CommandSubmitted {
                        action: action.clone(),
                        lserver: lserver.clone(),
                        operation: None,
                        refused: Some("engine down".into()),
                    });
                }
                played.push(PlayedStep::Command(action, lserver));
            }
            Step::Crash(restart_after) => {
                if backend.up() {
                    backend.crash().await;
                    recorder.record(EventKind::Crash);
                    played.push(PlayedStep::Crash);
                    schedule_restart(&mut timeline, index, at + restart_after);
                }
            }
            Step::Restart if backend.up() => {}
            Step::Restart => {
                last_restart = Some(at);
                backend.restart(at).await?;
                recorder.record(EventKind::Restart);
                played.push(PlayedStep::Restart);
                let backlog = std::mem::take(&mut held);
                if !backlog.is_empty() {
                    played.push(PlayedStep::Resend(ids(&backlog)));
                    let unsent = backend.resend(backlog).await;
                    hold(
                        recorder,
                        &mut held,
                        unsent,
                        "engine crashed before acknowledging",
                    );
                }
                for c in std::mem::take(&mut held_commands) {
                    held_commands.extend(backend.command(c).await?);
                }
            }
            Step::Heal(target) if target.is_empty() => {}
            Step::Heal(target) => {
                world.heal(&target);
                played.push(PlayedStep::Heal(target));
            }
            Step::RebootSwitch(device, fault) => {
                world.reboot_switch_for_fault(&device, fault);
                played.push(PlayedStep::RebootSwitch(device, fault));
            }
            Step::ExternalChange(fault) => {
                world.external_change_for_fault(fault);
                played.push(PlayedStep::ExternalChange(fault));
            }
            Step::FaultHit(fault, lserver) => {
                world.count_fault_hit(fault, lserver.as_deref());
                played.push(PlayedStep::FaultHit(fault));
            }
            Step::Played => {}
        }
        backend.stepped().await;
    }
    Ok(played)
}
