//! Scenario files → validated [`Scenario`] values: size cap, TOML parsing, topology loading and
//! the semantic checks of `checks.rs`, plus discovery of scenario files in folders.
//!
//! Every error is a [`ScenarioError`] that prints `file:line: key: message`, exactly like a
//! topology error, because users fix both kinds of file the same way. Errors inside the topology
//! a scenario points at keep the topology file's own name and line.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::file;
use super::outbreak::Outbreak;
use crate::check::Expectations;
use crate::engine::Command;
use crate::model::load::{locate, located_toml_error, KeySeg, Locator};
use crate::model::{load_site, Detection, Site, TopologyError};
use crate::sim::faults::FaultSpec;

mod checks;
#[cfg(test)]
mod tests;

/// A scenario that cannot be used. It is the topology loader's error type: the same
/// `file:line: key: message` shape, with `file` naming the scenario (or, for a broken topology,
/// the topology file).
pub type ScenarioError = TopologyError;

/// Largest scenario file accepted (1 MiB). Scenarios are hand-written; anything bigger is a
/// mistake or hostile, so never read more than this.
pub const MAX_SCENARIO_BYTES: u64 = 1024 * 1024;

/// How a scenario runs (`docs/formats/scenario.md`, "Modes").
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Mode {
    /// In one process on a paused virtual clock, deterministic from the seed.
    Sim,
    /// The real engine over loopback against protocol-level simulators.
    Wire,
}

impl Mode {
    /// Every mode, in the order runs report them; also the default of a scenario.
    pub const ALL: &'static [Mode] = <Mode as strum::VariantArray>::VARIANTS;

    /// The spelling in files, reports and `--mode`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Parses [`Mode::as_str`].
    pub fn parse(text: &str) -> Option<Mode> {
        text.parse().ok()
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated scenario, ready to run.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Unique name in the library.
    pub name: String,
    /// What the scenario shows.
    pub description: String,
    /// The scenario file, as it was given.
    pub file: PathBuf,
    /// The topology file: the scenario's `topology` joined to the scenario file's folder.
    pub topology_file: PathBuf,
    /// The loaded topology; scenarios loaded together share one site per topology file.
    pub site: Arc<Site>,
    /// Labels `--tag` selects on.
    pub tags: Vec<String>,
    /// Modes it runs in, in [`Mode::ALL`] order, without repeats, never empty.
    pub modes: Vec<Mode>,
    /// Seed of the simulation (`--seed` overrides it).
    pub seed: u64,
    /// Time the run goes on after the last event; the operation deadline when `None`.
    pub settle: Option<Duration>,
    /// Events sorted by `at`; events at the same time keep their file order.
    pub events: Vec<ScenarioEvent>,
    /// Device faults, in file order.
    pub faults: Vec<FaultSpec>,
    /// What must hold at the end.
    pub expect: Expectations,
}

impl Scenario {
    /// Whether the scenario runs in `mode`.
    pub fn runs_in(&self, mode: Mode) -> bool {
        self.modes.contains(&mode)
    }
}

/// One event of a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioEvent {
    /// Run time at which it happens.
    pub at: Duration,
    /// What happens.
    pub action: EventAction,
}

/// What an event does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventAction {
    /// An AV server sends this detection.
    Detect(Detection),
    /// An AV server reports many L-Servers; the runner expands it into detections when it
    /// builds its timeline.
    Outbreak(Outbreak),
    /// An administrator issues this command.
    Command(Command),
    /// The engine stops abruptly and restarts after `restart_after`.
    Crash {
        /// Down time before the restart.
        restart_after: Duration,
    },
    /// Remove every fault (`"all"`) or those of one device.
    Heal(String),
}

/// Reads, parses and validates the scenario at `path`, loading its topology.
pub fn load_scenario(path: &Path) -> Result<Scenario, ScenarioError> {
    let source = read_capped(path)?;
    load_str_cached(path, &source, &mut SiteCache::default()).map(|(s, _)| s)
}

/// Validates scenario text `source` as if it were the file `file`: the topology path is resolved
/// against `file`'s folder and errors name `file`.
pub fn load_scenario_str(file: &Path, source: &str) -> Result<Scenario, ScenarioError> {
    load_str_cached(file, source, &mut SiteCache::default()).map(|(s, _)| s)
}

/// The scenario files under `paths`: files as given, folders searched recursively for `*.toml`.
/// The result is sorted and has no file twice (compared after resolving links and `..`). A path
/// that does not exist is an error, so a typo on the command line never runs nothing silently.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ScenarioError> {
    let mut found = Vec::new();
    let mut visited = HashSet::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| {
            whole_file(
                path,
                format!("cannot read this scenario file or folder: {e}"),
            )
        })?;
        if meta.is_dir() {
            walk(path, &mut found, &mut visited)?;
        } else {
            found.push(path.clone());
        }
    }
    found.sort();
    let mut seen = HashSet::new();
    found.retain(|p| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
    Ok(found)
}

/// Adds the `*.toml` files below `dir` to `found`. `visited` holds the folders already searched
/// (resolved), so a symbolic link back up the tree cannot loop forever.
fn walk(
    dir: &Path,
    found: &mut Vec<PathBuf>,
    visited: &mut HashSet<PathBuf>,
) -> Result<(), ScenarioError> {
    let resolved = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    if !visited.insert(resolved) {
        return Ok(());
    }
    let cannot = |e: std::io::Error| whole_file(dir, format!("cannot list this folder: {e}"));
    for entry in std::fs::read_dir(dir).map_err(cannot)? {
        let path = entry.map_err(cannot)?.path();
        let is_toml = path.extension().is_some_and(|ext| ext == "toml");
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => walk(&path, found, visited)?,
            Ok(_) if is_toml => found.push(path),
            Ok(_) => {}
            // A dangling link named like a scenario is a scenario the user expects to run.
            Err(e) if is_toml => {
                return Err(whole_file(
                    &path,
                    format!("cannot read this scenario file: {e}"),
                ))
            }
            Err(_) => {}
        }
    }
    Ok(())
}

/// Discovers and loads every scenario under `paths` (see [`discover`]), checking that names are
/// unique across the set. Scenarios that name the same topology file share one loaded site.
pub fn load_all(paths: &[PathBuf]) -> Result<Vec<Scenario>, ScenarioError> {
    let files = discover(paths)?;
    let mut cache = SiteCache::default();
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    let mut scenarios = Vec::with_capacity(files.len());
    for path in files {
        let source = read_capped(&path)?;
        let (scenario, name_line) = load_str_cached(&path, &source, &mut cache)?;
        if let Some(first) = names.get(&scenario.name) {
            return Err(ScenarioError {
                file: path,
                line: name_line,
                key: "name".into(),
                message: format!(
                    "scenario name `{}` is already used by {}; names must be unique in the \
                     library because reports and `--name` select by name",
                    scenario.name,
                    first.display()
                ),
            });
        }
        names.insert(scenario.name.clone(), path);
        scenarios.push(scenario);
    }
    Ok(scenarios)
}

/// Loaded sites by resolved topology path, so a library of scenarios over one large generated
/// topology loads and validates it once.
#[derive(Default)]
struct SiteCache {
    sites: HashMap<PathBuf, Arc<Site>>,
}

impl SiteCache {
    fn get(&mut self, topology: &Path) -> Result<Arc<Site>, ScenarioError> {
        let key = std::fs::canonicalize(topology).unwrap_or_else(|_| topology.to_path_buf());
        if let Some(site) = self.sites.get(&key) {
            return Ok(Arc::clone(site));
        }
        // Errors inside the topology keep its own file and line: that is where the fix goes.
        let site = Arc::new(load_site(topology)?);
        self.sites.insert(key, Arc::clone(&site));
        Ok(site)
    }
}

/// Loads one scenario and also returns the line of its `name` key, for duplicate-name errors.
fn load_str_cached(
    path: &Path,
    source: &str,
    cache: &mut SiteCache,
) -> Result<(Scenario, Option<usize>), ScenarioError> {
    if source.len() as u64 > MAX_SCENARIO_BYTES {
        return Err(too_big(path));
    }
    let raw = file::parse(source).map_err(|e| parse_error(path, source, &e))?;
    let at_key = |key: &str, message: String| ScenarioError {
        file: path.to_path_buf(),
        line: locate(source, &[KeySeg::from(key)]),
        key: key.to_string(),
        message,
    };
    if raw.topology.trim().is_empty() {
        return Err(at_key(
            "topology",
            "the topology path is empty; name a topology file relative to this scenario".into(),
        ));
    }
    let topology_file = path
        .parent()
        .unwrap_or_else(|| Path::new(""))
        .join(&raw.topology);
    match std::fs::metadata(&topology_file) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => {
            return Err(at_key(
                "topology",
                format!("{} is not a file", topology_file.display()),
            ))
        }
        Err(e) => {
            return Err(at_key(
                "topology",
                format!(
                    "cannot read the topology file {}: {e}; the path is relative to the scenario \
                     file",
                    topology_file.display()
                ),
            ))
        }
    }
    let site = cache.get(&topology_file)?;
    let locator = Locator::new(source);
    let scenario = assemble(path, raw, topology_file, site, &locator)?;
    Ok((scenario, locate(source, &[KeySeg::from("name")])))
}

/// Validates a scenario built in memory (`qlab explore` generates them) against an already
/// loaded `site`, as if it were the file `file` with topology `topology_file`. The same checks
/// as a file's; errors carry no line, since there is no text yet.
pub fn from_file_form(
    file: &Path,
    raw: file::ScenarioFile,
    topology_file: PathBuf,
    site: Arc<Site>,
) -> Result<Scenario, ScenarioError> {
    assemble(file, raw, topology_file, site, &Locator::new(""))
}

/// Checks `raw` against `site` and builds the [`Scenario`].
fn assemble(
    path: &Path,
    raw: file::ScenarioFile,
    topology_file: PathBuf,
    site: Arc<Site>,
    locator: &Locator<'_>,
) -> Result<Scenario, ScenarioError> {
    let checked = checks::check(&raw, &site, locator)
        .map_err(|problems| checks::first_error(path, locator, problems))?;
    let mut events = checked.events;
    // Stable: events at the same time happen in file order, which scenarios rely on.
    events.sort_by_key(|e| e.at);
    Ok(Scenario {
        name: raw.name,
        description: raw.description,
        file: path.to_path_buf(),
        topology_file,
        site,
        tags: raw.tags,
        modes: checked.modes,
        seed: raw.seed,
        settle: raw.settle,
        events,
        faults: raw.faults,
        expect: raw.expect,
    })
}

/// Locates a TOML or serde error the way topology errors are located.
fn parse_error(path: &Path, source: &str, e: &toml::de::Error) -> ScenarioError {
    let mut error = located_toml_error(path, source, e);
    // A missing top-level key is reported with the whole document's span, which the generic
    // locator attributes to the first key of the file. Only the top level has `name` and
    // `topology`, so these two are unambiguous: name the key alone, with no line.
    for key in ["name", "topology"] {
        if e.message().trim() == format!("missing field `{key}`") {
            error.key = key.to_string();
            error.line = None;
        }
    }
    error
}

/// An error about a file as a whole (I/O, size), not about one key.
fn whole_file(file: &Path, message: String) -> ScenarioError {
    ScenarioError {
        file: file.to_path_buf(),
        line: None,
        key: String::new(),
        message,
    }
}

fn too_big(path: &Path) -> ScenarioError {
    whole_file(
        path,
        format!(
            "the scenario file is larger than {MAX_SCENARIO_BYTES} bytes; split it into \
             several scenarios"
        ),
    )
}

/// Reads at most [`MAX_SCENARIO_BYTES`] of UTF-8 text.
fn read_capped(path: &Path) -> Result<String, ScenarioError> {
    let io_error =
        |e: std::io::Error| whole_file(path, format!("cannot read the scenario file: {e}"));
    let file = std::fs::File::open(path).map_err(io_error)?;
    if file.metadata().map_err(io_error)?.len() > MAX_SCENARIO_BYTES {
        return Err(too_big(path));
    }
    // The length can change after the check (or lie, for special files): read one byte past the
    // cap so an oversized input is detected without reading all of it.
    let mut bytes = Vec::new();
    file.take(MAX_SCENARIO_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > MAX_SCENARIO_BYTES {
        return Err(too_big(path));
    }
    String::from_utf8(bytes).map_err(|e| {
        whole_file(
            path,
            format!(
                "the scenario file is not UTF-8 text (invalid byte at offset {}); save it as UTF-8",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}
