//! Semantic checks of a parsed scenario against its topology.
//!
//! Serde already rejected unknown keys and bad types; what remains needs the site (a detection's
//! source must be an AV server, a fault's call must exist on its device) or the whole scenario (a
//! wire-only fault needs `modes = ["wire"]`). Every problem carries its dotted key path, in file
//! order of the entries (`events[2]` is the third `[[events]]` as written, before sorting), and
//! the one reported is the first in the file, so the same file always gives the same error.

use std::net::IpAddr;
use std::path::Path;

use super::{EventAction, Mode, ScenarioError, ScenarioEvent};
use crate::engine::Command;
use crate::model::load::{key_path_string, KeySeg, Locator};
use crate::model::{normalize_mac, Action, Detection, LServer, Site};
use crate::scenario::file::{
    CommandAction, CommandFile, DetectFile, EventFile, OutbreakFile, ScenarioFile,
};
use crate::scenario::outbreak::{self, Outbreak, MAX_OUTBREAK_DETECTIONS};
use crate::sim::faults::CallKind;

/// A key path built from mixed segments: `at!("events", i, "detect", "source")`.
macro_rules! at {
    ($($seg:expr),* $(,)?) => { vec![$(KeySeg::from($seg)),*] };
}

// Declared after `at!` so the macro is in scope there.
mod expect;
mod faults;

/// Down time of a crashed engine when `restart_after` is absent (`docs/formats/scenario.md`).
const DEFAULT_RESTART_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// One broken rule, at a key path.
pub(super) struct Problem {
    path: Vec<KeySeg>,
    message: String,
}

/// What the checks build besides the verdict.
pub(super) struct Checked {
    /// Events in file order.
    pub events: Vec<ScenarioEvent>,
    /// Modes in [`Mode::ALL`] order.
    pub modes: Vec<Mode>,
}

/// Checks `f` against `site`; on success returns the built events and modes.
///
/// `locator` is the parsed source, used to tell which of two actions of an event was written
/// second.
pub(super) fn check(
    f: &ScenarioFile,
    site: &Site,
    locator: &Locator<'_>,
) -> Result<Checked, Vec<Problem>> {
    let mut c = Checker {
        site,
        locator,
        problems: Vec::new(),
        generated: 0,
    };
    c.header(f);
    let modes = c.modes(f);
    let events = f
        .events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            c.event(i, e)
                .map(|action| ScenarioEvent { at: e.at, action })
        })
        .collect();
    c.generated_ids_unused(f);
    for (i, fault) in f.faults.iter().enumerate() {
        c.fault(i, fault, &modes);
    }
    c.expect(&f.expect);
    if c.problems.is_empty() {
        Ok(Checked { events, modes })
    } else {
        Err(c.problems)
    }
}

/// Locates `problems` in `source` and returns the first one in file order.
pub(super) fn first_error(
    file: &Path,
    locator: &Locator<'_>,
    problems: Vec<Problem>,
) -> ScenarioError {
    // Stable minimum: among problems on the same line the first one found wins.
    let (line, key, message) = problems
        .into_iter()
        .map(|p| {
            (
                locator.line_of(&p.path),
                key_path_string(&p.path),
                p.message,
            )
        })
        .min_by_key(|(line, _, _)| line.unwrap_or(usize::MAX))
        .unwrap_or((None, String::new(), "invalid scenario".into()));
    ScenarioError {
        file: file.to_path_buf(),
        line,
        key,
        message,
    }
}

/// Device families a fault or a heal can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceKind {
    Hypervisor,
    Switch,
    Bmc,
    AvServer,
}

impl DeviceKind {
    /// Calls the device family serves (`docs/formats/scenario.md`, "Fault effects").
    fn calls(self) -> &'static [CallKind] {
        match self {
            DeviceKind::Hypervisor => &[
                CallKind::Login,
                CallKind::GetNic,
                CallKind::SetNic,
                CallKind::PowerReset,
            ],
            DeviceKind::Switch => &[CallKind::GetPort, CallKind::SetPort, CallKind::SaveConfig],
            DeviceKind::Bmc => &[CallKind::Reset],
            DeviceKind::AvServer => &[CallKind::Send],
        }
    }

    fn label(self) -> &'static str {
        match self {
            DeviceKind::Hypervisor => "a hypervisor",
            DeviceKind::Switch => "a switch",
            DeviceKind::Bmc => "a BMC",
            DeviceKind::AvServer => "an AV server",
        }
    }
}

/// `a`, `b`, `c`: a short list of valid names for a message, cut after a few.
fn known<'a>(names: impl Iterator<Item = &'a str>) -> String {
    const SHOWN: usize = 8;
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        return "the topology has none".into();
    }
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    format!("known: {text}")
}

/// Collects every problem of one scenario.
struct Checker<'s, 'l> {
    site: &'s Site,
    locator: &'l Locator<'l>,
    problems: Vec<Problem>,
    /// Detections the `outbreak` events checked so far generate together.
    generated: u64,
}

impl<'s> Checker<'s, '_> {
    fn bad(&mut self, path: Vec<KeySeg>, message: String) {
        self.problems.push(Problem { path, message });
    }

    fn device_kind(&self, name: &str) -> Option<DeviceKind> {
        let t = &self.site.topology;
        if t.hypervisors.iter().any(|d| d.name == name) {
            Some(DeviceKind::Hypervisor)
        } else if t.switches.iter().any(|d| d.name == name) {
            Some(DeviceKind::Switch)
        } else if t.bmcs.iter().any(|d| d.name == name) {
            Some(DeviceKind::Bmc)
        } else if t.av_servers.iter().any(|d| d.name == name) {
            Some(DeviceKind::AvServer)
        } else {
            None
        }
    }

    fn known_devices(&self) -> String {
        let t = &self.site.topology;
        known(
            t.hypervisors
                .iter()
                .map(|d| d.name.as_str())
                .chain(t.switches.iter().map(|d| d.name.as_str()))
                .chain(t.bmcs.iter().map(|d| d.name.as_str()))
                .chain(t.av_servers.iter().map(|d| d.name.as_str())),
        )
    }

    /// The L-Server at `path`, or a problem at `key`.
    fn lserver(&mut self, key: Vec<KeySeg>, path: &str) -> Option<&'s LServer> {
        let found = self.site.lserver(path);
        if found.is_none() {
            self.bad(
                key,
                format!("unknown L-Server `{path}`; use the `path` of an L-Server of the topology"),
            );
        }
        found
    }

    fn header(&mut self, f: &ScenarioFile) {
        if f.name.trim().is_empty() {
            self.bad(
                at!("name"),
                "the scenario name is empty; give it a name".into(),
            );
        } else if f.name.trim() != f.name || f.name.chars().any(char::is_control) {
            // Names appear in reports, `--name` globs and replay commands.
            self.bad(
                at!("name"),
                "the scenario name has leading or trailing spaces or control characters; \
                 remove them"
                    .into(),
            );
        }
        for (i, tag) in f.tags.iter().enumerate() {
            if tag.trim().is_empty() {
                self.bad(at!("tags", i), "the tag is empty; remove it".into());
            }
        }
    }

    fn modes(&mut self, f: &ScenarioFile) -> Vec<Mode> {
        let Some(listed) = &f.modes else {
            return Mode::ALL.to_vec();
        };
        if listed.is_empty() {
            self.bad(
                at!("modes"),
                "`modes` is empty, so the scenario would never run; list \"sim\" and/or \
                 \"wire\", or remove it to run in both"
                    .into(),
            );
        }
        for (i, mode) in listed.iter().enumerate() {
            if listed[..i].contains(mode) {
                self.bad(at!("modes", i), format!("mode `{mode}` is listed twice"));
            }
        }
        Mode::ALL
            .iter()
            .copied()
            .filter(|m| listed.contains(m))
            .collect()
    }

    fn event(&mut self, i: usize, e: &EventFile) -> Option<EventAction> {
        let present: Vec<&str> = [
            ("detect", e.detect.is_some()),
            ("outbreak", e.outbreak.is_some()),
            ("command", e.command.is_some()),
            ("crash", e.crash.is_some()),
            ("heal", e.heal.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        if e.restart_after.is_some() && e.crash.is_none() {
            self.bad(
                at!("events", i, "restart_after"),
                "`restart_after` only applies to `crash` events; remove it".into(),
            );
        }
        match present.as_slice() {
            [] => {
                self.bad(
                    at!("events", i),
                    "the event has no action; add one of `detect`, `outbreak`, `command`, \
                     `crash` or `heal`"
                        .into(),
                );
                return None;
            }
            [_] => {}
            [..] => {
                // Blame the action written last: the user most likely added it to this event
                // by mistake.
                let mut written = present.clone();
                written.sort_by_key(|name| {
                    let path = [
                        KeySeg::from("events"),
                        KeySeg::Index(i),
                        KeySeg::from(*name),
                    ];
                    self.locator.line_of(&path)
                });
                let first = written.first().copied().unwrap_or_default();
                let last = written.last().copied().unwrap_or_default();
                let message = format!(
                    "an event has exactly one action, but this one has `{first}` and \
                     `{last}`; split it into separate [[events]] entries"
                );
                self.bad(at!("events", i, last), message);
                return None;
            }
        }
        if let Some(d) = &e.detect {
            return self.detect(i, d).map(EventAction::Detect);
        }
        if let Some(o) = &e.outbreak {
            return self.outbreak(i, o).map(EventAction::Outbreak);
        }
        if let Some(c) = &e.command {
            return self.command(i, c).map(EventAction::Command);
        }
        if let Some(target) = &e.crash {
            if target != "engine" {
                self.bad(
                    at!("events", i, "crash"),
                    format!("unknown crash target `{target}`; only \"engine\" can crash"),
                );
                return None;
            }
            return Some(EventAction::Crash {
                restart_after: e.restart_after.unwrap_or(DEFAULT_RESTART_AFTER),
            });
        }
        let target = e.heal.as_ref()?;
        if target != "all" && self.device_kind(target).is_none() {
            let message = format!(
                "unknown heal target `{target}`; write \"all\" or a device name ({})",
                self.known_devices()
            );
            self.bad(at!("events", i, "heal"), message);
            return None;
        }
        Some(EventAction::Heal(target.clone()))
    }

    fn detect(&mut self, i: usize, d: &DetectFile) -> Option<Detection> {
        let key = |field: &str| at!("events", i, "detect", field);
        let before = self.problems.len();
        self.av_source(key("source"), &d.source);
        let ip = match d.ip.as_deref().map(|text| text.trim().parse::<IpAddr>()) {
            None => None,
            Some(Ok(ip)) => Some(ip),
            Some(Err(_)) => {
                let message = format!(
                    "{:?} is not an IP address; write an IPv4 or IPv6 address, e.g. \
                     \"10.110.0.11\"",
                    d.ip.as_deref().unwrap_or_default()
                );
                self.bad(key("ip"), message);
                None
            }
        };
        if let Some(mac) = &d.mac {
            if normalize_mac(mac).is_none() {
                self.bad(
                    key("mac"),
                    format!("{mac:?} is not a MAC address; write e.g. \"00:50:56:00:00:11\""),
                );
            }
        }
        let detection = Detection {
            source: d.source.clone(),
            event_id: d.event_id.clone(),
            ip,
            mac: d.mac.clone(),
            hostname: d.hostname.clone(),
            threat: d.threat.clone(),
            category: d.category,
        };
        if let Err(message) = detection.check() {
            // `check` names the field as "field `x` ..."; point at that key when it does.
            let field = message
                .strip_prefix("field `")
                .and_then(|rest| rest.split('`').next())
                .map(str::to_string);
            let path = match field {
                Some(f) => key(&f),
                None => at!("events", i, "detect"),
            };
            self.bad(path, message);
        }
        (self.problems.len() == before).then_some(detection)
    }

    /// An AV server's name, or a problem at `key`.
    fn av_source(&mut self, key: Vec<KeySeg>, source: &str) {
        let avs = &self.site.topology.av_servers;
        if !avs.iter().any(|a| a.name == source) {
            let message = format!(
                "unknown AV server `{source}`; a detection's source is an AV server of the \
                 topology ({})",
                known(avs.iter().map(|a| a.name.as_str()))
            );
            self.bad(key, message);
        }
    }

    /// `outbreak = { ... }`: a known source, a prefix that matches at least one L-Server, a
    /// threat the engine accepts, and a total within [`MAX_OUTBREAK_DETECTIONS`].
    fn outbreak(&mut self, i: usize, o: &OutbreakFile) -> Option<Outbreak> {
        let key = |field: &str| at!("events", i, "outbreak", field);
        let before = self.problems.len();
        self.av_source(key("source"), &o.source);
        let matched = if !o.lservers.starts_with('/') {
            self.bad(
                key("lservers"),
                format!(
                    "{:?} is not a path prefix; write the start of L-Server paths, e.g. \
                     \"/generated/\", or \"/\" for every L-Server",
                    o.lservers
                ),
            );
            Vec::new()
        } else {
            let matched = outbreak::matching(self.site, &o.lservers);
            if matched.is_empty() {
                let message = format!(
                    "no L-Server path starts with {:?}, so the outbreak would report nothing; \
                     use a prefix of the topology's paths, or \"/\" for every L-Server",
                    o.lservers
                );
                self.bad(key("lservers"), message);
            }
            matched
        };
        let count = matched.len() as u64;
        self.generated = self.generated.saturating_add(count);
        if self.generated > MAX_OUTBREAK_DETECTIONS {
            let message = format!(
                "the outbreak events of this scenario generate {} detections (this one {count}); \
                 at most {MAX_OUTBREAK_DETECTIONS} are allowed: narrow `lservers` or split the \
                 scenario",
                self.generated
            );
            self.bad(key("lservers"), message);
        }
        // The engine's own input checks, on the first detection the event generates: every
        // other one differs only in its IP and the number in its event id.
        if let Some(first) = matched.first() {
            let sample = Detection {
                source: o.source.clone(),
                event_id: outbreak::event_id(i, matched.len()),
                ip: outbreak::first_ip(first),
                mac: None,
                hostname: None,
                threat: o.threat.clone(),
                category: o.category,
            };
            if let Err(message) = sample.check() {
                let path = if message.starts_with("field `threat`") {
                    key("threat")
                } else {
                    at!("events", i, "outbreak")
                };
                self.bad(path, message);
            }
        }
        (self.problems.len() == before).then(|| Outbreak {
            event: i,
            source: o.source.clone(),
            lservers: o.lservers.clone(),
            over: o.over.unwrap_or_default(),
            threat: o.threat.clone(),
            category: o.category,
        })
    }

    /// A hand-written detection must not reuse an id an `outbreak` event of the same source
    /// generates: R4 would drop one of them as a duplicate, silently.
    fn generated_ids_unused(&mut self, f: &ScenarioFile) {
        for (i, e) in f.events.iter().enumerate() {
            let Some(d) = &e.detect else { continue };
            let Some((event, n)) = d
                .event_id
                .strip_prefix("outbreak-")
                .and_then(|rest| rest.split_once('-'))
                .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
            else {
                continue;
            };
            let Some(o) = f.events.get(event).and_then(|e| e.outbreak.as_ref()) else {
                continue;
            };
            let generated = outbreak::matching(self.site, &o.lservers).len();
            if o.source == d.source && n >= 1 && n <= generated {
                self.bad(
                    at!("events", i, "detect", "event_id"),
                    format!(
                        "event id `{}` is also generated by the outbreak of events[{event}] \
                         (ids outbreak-{event}-1 to outbreak-{event}-{generated}); the engine \
                         would take one of them as a duplicate (R4), so choose another id",
                        d.event_id
                    ),
                );
            }
        }
    }

    fn command(&mut self, i: usize, c: &CommandFile) -> Option<Command> {
        let key = |field: &str| at!("events", i, "command", field);
        let before = self.problems.len();
        self.lserver(key("lserver"), &c.lserver);
        let lserver = c.lserver.clone();
        let command = match (c.action, c.choice.as_deref()) {
            (CommandAction::Quarantine, None) => Some(Command::Quarantine { lserver }),
            (CommandAction::Release, None) => Some(Command::Release { lserver }),
            (CommandAction::Quarantine | CommandAction::Release, Some(_)) => {
                self.bad(
                    key("choice"),
                    "`choice` only applies to action = \"decide\"; remove it".into(),
                );
                None
            }
            (CommandAction::Decide, None) => {
                self.bad(
                    key("choice"),
                    "action = \"decide\" needs a `choice`: quarantine, reboot or \
                     quarantine_reboot"
                        .into(),
                );
                None
            }
            (CommandAction::Decide, Some(text)) => match Action::parse(text) {
                Some(choice) if choice != Action::None => Some(Command::Decide { lserver, choice }),
                _ => {
                    self.bad(
                        key("choice"),
                        format!(
                            "unknown choice `{text}`; a decision is quarantine, reboot or \
                             quarantine_reboot"
                        ),
                    );
                    None
                }
            },
        };
        command.filter(|_| self.problems.len() == before)
    }
}
