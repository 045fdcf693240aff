//! The scenario file (`docs/formats/scenario.md`) as plain serde data.
//!
//! Every struct denies unknown keys, so a misspelt key is an error with its line, never a
//! silently ignored setting. Values that need the topology to be judged (device names, paths,
//! outcome spellings) stay plain strings here; `load.rs` checks them and builds a
//! [`Scenario`](super::load::Scenario).

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::load::Mode;
use crate::check::Expectations;
use crate::model::duration;
use crate::model::Category;
use crate::sim::faults::FaultSpec;

/// A whole scenario file, as written. Not `Eq`: `[expect]` holds a float ratio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// Unique name in the library; reports and `--name` use it.
    pub name: String,
    /// What the scenario shows, for people reading the library.
    #[serde(default)]
    pub description: String,
    /// Topology file, relative to the scenario file.
    pub topology: String,
    /// Free labels that `--tag` selects on.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Modes the scenario runs in; both when absent.
    #[serde(default)]
    pub modes: Option<Vec<Mode>>,
    /// Seed of the simulation; `--seed` overrides it.
    #[serde(default)]
    pub seed: u64,
    /// How long the run goes on after the last event; the operation deadline when absent.
    #[serde(default, with = "duration::OptionalText")]
    pub settle: Option<Duration>,
    /// What happens, and when.
    #[serde(default)]
    pub events: Vec<EventFile>,
    /// Device faults.
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
    /// What must hold at the end.
    #[serde(default)]
    pub expect: Expectations,
}

/// One `[[events]]` entry. Exactly one of `detect`, `outbreak`, `command`, `crash` and `heal`
/// must be set;
/// they are separate optional keys (not a serde enum) so that an event with two actions or none
/// gets a message that says so, rather than serde's generic "data did not match any variant".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventFile {
    /// Run time of the event.
    #[serde(with = "duration::Text")]
    pub at: Duration,
    /// An AV server reports a detection.
    #[serde(default)]
    pub detect: Option<DetectFile>,
    /// An AV server reports every L-Server under a path prefix (the lab's extension; see
    /// [`crate::scenario::outbreak`]).
    #[serde(default)]
    pub outbreak: Option<OutbreakFile>,
    /// An administrator's command.
    #[serde(default)]
    pub command: Option<CommandFile>,
    /// What crashes; only `"engine"` exists.
    #[serde(default)]
    pub crash: Option<String>,
    /// For `crash`: how long the engine stays down; 1 s when absent.
    #[serde(default, with = "duration::OptionalText")]
    pub restart_after: Option<Duration>,
    /// Remove faults: `"all"` or one device name.
    #[serde(default)]
    pub heal: Option<String>,
}

/// `detect = { ... }`: a detection as the AV server sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DetectFile {
    /// AV server name from the topology.
    pub source: String,
    /// Infected host's IP address. Text here, so a bad address gets a message naming the event.
    #[serde(default)]
    pub ip: Option<String>,
    /// Threat name.
    pub threat: String,
    /// Threat category; `virus` when absent.
    #[serde(default = "default_category")]
    pub category: Category,
    /// The sender's event id (the dedupe key with `source`).
    pub event_id: String,
    /// Infected host's MAC address.
    #[serde(default)]
    pub mac: Option<String>,
    /// Infected host's name.
    #[serde(default)]
    pub hostname: Option<String>,
}

/// `outbreak = { ... }`: one detection per L-Server whose path starts with `lservers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutbreakFile {
    /// AV server name from the topology.
    pub source: String,
    /// Path prefix of the L-Servers reported; `"/"` reports all of them.
    pub lservers: String,
    /// Time from the first detection (at the event's `at`) to the last; `0s` when absent.
    #[serde(default, with = "duration::OptionalText")]
    pub over: Option<Duration>,
    /// Threat name of every detection.
    pub threat: String,
    /// Threat category of every detection; `virus` when absent.
    #[serde(default = "default_category")]
    pub category: Category,
}

fn default_category() -> Category {
    Category::Virus
}

/// What an administrator's command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommandAction {
    /// Manual quarantine (R12).
    Quarantine,
    /// Release (R14).
    Release,
    /// Decision for a `pending_decision` L-Server (R5).
    Decide,
}

/// `command = { ... }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandFile {
    /// What to do.
    pub action: CommandAction,
    /// L-Server path.
    pub lserver: String,
    /// For `decide`: `quarantine`, `reboot` or `quarantine_reboot`. Text here because the
    /// policy's `none` is an action but not a choice, so serde's enum would accept too much.
    #[serde(default)]
    pub choice: Option<String>,
}

/// Parses scenario text into its file form. Errors are `toml`'s; `load.rs` locates them.
pub fn parse(source: &str) -> Result<ScenarioFile, toml::de::Error> {
    toml::from_str(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_file_gets_the_documented_defaults() {
        let f = parse("name = \"n\"\ntopology = \"t.toml\"\n").expect("valid");
        assert_eq!(f.description, "");
        assert_eq!(f.modes, None);
        assert_eq!(f.seed, 0);
        assert_eq!(f.settle, None);
        assert!(f.events.is_empty() && f.faults.is_empty() && f.tags.is_empty());
        assert_eq!(f.expect, Expectations::default());
    }

    #[test]
    fn every_event_key_parses() {
        let f = parse(
            r#"name = "n"
topology = "t.toml"
modes = ["wire"]
settle = "3s"
[[events]]
at = "1s"
detect = { source = "osce", ip = "10.0.0.1", threat = "T", event_id = "e", mac = "m", hostname = "h" }
[[events]]
at = "2s"
command = { action = "decide", lserver = "/a", choice = "reboot" }
[[events]]
at = "3s"
crash = "engine"
restart_after = "500ms"
[[events]]
at = "4s"
heal = "all"
"#,
        )
        .expect("valid");
        assert_eq!(f.modes, Some(vec![Mode::Wire]));
        assert_eq!(f.settle, Some(Duration::from_secs(3)));
        let d = f.events[0].detect.as_ref().expect("detect");
        assert_eq!(d.category, Category::Virus);
        let c = f.events[1].command.as_ref().expect("command");
        assert_eq!(c.action, CommandAction::Decide);
        assert_eq!(c.choice.as_deref(), Some("reboot"));
        assert_eq!(f.events[2].restart_after, Some(Duration::from_millis(500)));
        assert_eq!(f.events[3].heal.as_deref(), Some("all"));
    }

    #[test]
    fn unknown_keys_are_rejected_at_every_level() {
        for text in [
            "name = \"n\"\ntopology = \"t\"\nnmae = 1\n",
            "name = \"n\"\ntopology = \"t\"\n[[events]]\nat = \"1s\"\nheal = \"all\"\nwhen = 1\n",
            "name = \"n\"\ntopology = \"t\"\n[[events]]\nat = \"1s\"\n\
             command = { action = \"release\", lserver = \"/a\", force = true }\n",
        ] {
            let e = parse(text).expect_err(text);
            assert!(e.message().contains("unknown field"), "{e}");
        }
    }
}
