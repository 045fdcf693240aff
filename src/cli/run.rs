//! `qlab run`: selects scenarios, runs them, and writes report.json, junit.xml, summary.md and
//! report.html; report assembly (a [`RunReport`] from the runs' results) lives here.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::ValueEnum;

use super::{default_jobs, fail, parse_shard, Exit, BUILD_COMMIT};
use crate::model::history::RunRecord;
use crate::report::{self, RunReport, ScenarioReport, ScenarioStatus};
use crate::scenario::library::{self, ResultStatus, ScenarioResult, Selection};
use crate::scenario::load::{Mode, Scenario};
use crate::scenario::runner::Mutant;

/// Which modes `qlab run` runs in.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Sim,
    Wire,
    Both,
}

/// Most `--retries`: a scenario that fails more often than this is not flaky.
const MAX_RETRIES: u32 = 10;

/// `qlab run`'s arguments.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Scenario files or folders.
    #[arg(default_value = "scenarios")]
    paths: Vec<PathBuf>,
    /// sim, wire or both.
    #[arg(long, value_enum, default_value = "sim")]
    mode: ModeArg,
    /// Seed for every scenario instead of its own.
    #[arg(long)]
    seed: Option<u64>,
    /// Only scenarios with this tag (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Only scenarios whose name matches this glob.
    #[arg(long)]
    name: Option<String>,
    /// Where report.json, junit.xml and summary.md go.
    #[arg(long, default_value = "reports/latest")]
    report_dir: PathBuf,
    /// Only shard K of N, as K/N.
    #[arg(long)]
    shard: Option<String>,
    /// Worker threads (default: the machine's cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Time scale of wire mode.
    #[arg(long, default_value_t = 0.05)]
    time_scale: f64,
    /// Run every scenario twice and compare history digests (INV-11).
    #[arg(long)]
    check_determinism: bool,
    /// A declared fault that never fired fails its scenario (a warning without this flag).
    #[arg(long)]
    strict_faults: bool,
    /// Checker self-test: run a deliberately broken engine.
    #[arg(long, hide = true, value_enum)]
    mutant: Option<Mutant>,
    /// Balance --shard by the durations in a previous report.json (longest first to the
    /// emptiest shard); without it, shards split by a stable hash of the scenario name.
    #[arg(long, requires = "shard")]
    durations: Option<PathBuf>,
    /// Run a failed scenario again, up to N times; failed then passed is `flaky`.
    #[arg(long, default_value_t = 0)]
    retries: u32,
    /// Test hook: the first attempt of the scenario of this name fails.
    #[arg(long, hide = true)]
    fail_once: Option<String>,
    /// Sim mode: after each scenario's run, run it again once per crash point (after each
    /// journal commit, with each device call in flight), crashed there and restarted 1 s
    /// later; each crash run must keep every invariant and end every operation.
    #[arg(long)]
    crash_sweep: bool,
    /// With --crash-sweep: only this crash point, as `commit K` or `call K` (a failing
    /// point's name, as report.json gives it, works).
    #[arg(long, requires = "crash_sweep")]
    crash_point: Option<String>,
    /// With --crash-sweep: most crash runs per scenario, spread evenly over its points
    /// (0: every point). A large outbreak has a point per device call.
    #[arg(long, default_value_t = 200, requires = "crash_sweep")]
    crash_points_max: usize,
}

/// `qlab run`: 0 when every scenario passed (or was flaky), 1 when one failed or errored, 2 on
/// bad arguments or unwritable reports.
pub fn run(args: RunArgs) -> Exit {
    let modes = match args.mode {
        ModeArg::Sim => vec![Mode::Sim],
        ModeArg::Wire => vec![Mode::Wire],
        ModeArg::Both => vec![Mode::Sim, Mode::Wire],
    };
    if !(args.time_scale > 0.0 && args.time_scale <= 1.0) {
        let scale = args.time_scale;
        return fail(
            format!("--time-scale {scale}: must be greater than 0 and at most 1"),
            Exit::BadInput,
        );
    }
    let shard = match args.shard.as_deref().map(parse_shard).transpose() {
        Ok(s) => s,
        Err(e) => return fail(format!("--shard: {e}"), Exit::BadInput),
    };
    let durations = match args.durations.as_deref().map(RunReport::read).transpose() {
        Ok(d) => d.map(|r| report::shard::durations_of(&r)),
        Err(e) => return fail(format!("--durations: {e}"), Exit::BadInput),
    };
    let crash_point = match args
        .crash_point
        .as_deref()
        .map(crate::scenario::crash_sweep::parse_point)
        .transpose()
    {
        Ok(p) => p,
        Err(e) => return fail(format!("--crash-point: {e}"), Exit::BadInput),
    };
    if args.crash_sweep && !modes.contains(&Mode::Sim) {
        return fail(
            "--crash-sweep runs in sim mode: use --mode sim (or both)",
            Exit::BadInput,
        );
    }
    let options = library::RunOptions {
        strict_faults: args.strict_faults,
        retries: args.retries.min(MAX_RETRIES),
        fail_once: args.fail_once,
        on_record: None,
        crash_sweep: args.crash_sweep,
        crash_point,
        crash_points_max: args.crash_points_max,
    };
    let selection = Selection {
        paths: args.paths,
        tags: args.tags,
        name: args.name,
        // `run` splits shards itself (report::shard): by hash or by durations.
        shard: None,
        seed: args.seed,
        check_determinism: args.check_determinism,
        jobs: args.jobs.unwrap_or_else(default_jobs),
        mutant: args.mutant,
        modes,
        time_scale: args.time_scale,
    };
    run_selection(
        &selection,
        &options,
        shard,
        durations.as_ref(),
        &args.report_dir,
    )
}

/// Runs the selection (the shard of it, when `--shard` is given) and writes the reports.
fn run_selection(
    selection: &Selection,
    options: &library::RunOptions,
    shard: Option<(usize, usize)>,
    durations: Option<&HashMap<String, u64>>,
    report_dir: &Path,
) -> Exit {
    let scenarios = match library::select(selection) {
        Ok(s) => s,
        Err(e) => return fail(e, Exit::BadInput),
    };
    let selected: usize = scenarios
        .iter()
        .map(|s| selection.modes.iter().filter(|m| s.runs_in(**m)).count())
        .sum();
    let shard_info = shard.map(|(k, n)| report::ShardInfo {
        index: k,
        count: n,
        selected,
        assignment: report::shard::assignment_name(durations).into(),
    });
    let scenarios = match shard {
        Some((k, n)) => shard_of(scenarios, k, n, durations),
        None => scenarios,
    };
    let bar = progress_bar(scenarios.len() as u64);
    let progress = |r: &ScenarioResult| {
        let line = format!(
            "{} {} ({} ms)",
            status_word(r.status),
            r.name,
            r.duration_ms
        );
        match &bar {
            Some(bar) => {
                bar.inc(1);
                if r.status != ResultStatus::Passed {
                    bar.println(&line);
                }
                bar.set_message(r.name.clone());
            }
            None => eprintln!("{line}"),
        }
    };
    // Each run's timeline is drawn as it finishes; its history is dropped right after.
    let timelines: std::sync::Mutex<HashMap<(String, Mode), report::html::Timeline>> =
        Default::default();
    let keep = |scenario: &Scenario, r: &ScenarioResult, record: &RunRecord| {
        let t = timeline_of(scenario, r, record);
        timelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((r.name.clone(), r.mode), t);
    };
    let options = library::RunOptions {
        on_record: Some(&keep),
        ..options.clone()
    };
    let results = library::run_selected_opts(&scenarios, selection, &options, &progress);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = report_of(selection, shard_info, &results);
    let mut by_run = timelines.into_inner().unwrap_or_else(|e| e.into_inner());
    let timelines: Vec<Option<report::html::Timeline>> = results
        .iter()
        .map(|r| by_run.remove(&(r.name.clone(), r.mode)))
        .collect();
    drop(results);
    let html = report::html::render_html(&report, &timelines);
    drop(timelines);
    if let Err(e) = report::write_reports(report_dir, &report)
        .and_then(|()| std::fs::write(report_dir.join("report.html"), html))
    {
        let dir = report_dir.display();
        return fail(
            format!("cannot write reports to {dir}: {e}"),
            Exit::BadInput,
        );
    }
    print_outcome(&report, report_dir);
    Exit::success_if(report.all_passed())
}

/// The scenarios of shard `k` of `n`: by the durations of a previous run when given, else by a
/// stable hash of the names (`report::shard`).
fn shard_of(
    scenarios: Vec<Scenario>,
    k: usize,
    n: usize,
    durations: Option<&HashMap<String, u64>>,
) -> Vec<Scenario> {
    let names: Vec<&str> = scenarios.iter().map(|s| s.name.as_str()).collect();
    let shards = report::shard::assign(&names, n, durations);
    scenarios
        .into_iter()
        .zip(shards)
        .filter(|(_, s)| *s == k)
        .map(|(s, _)| s)
        .collect()
}

/// A progress bar on stderr when it is a terminal; one line per finished run otherwise.
fn progress_bar(total: u64) -> Option<indicatif::ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    })
}

/// report.json's content for a run: the build, the selection and one entry per scenario run.
pub fn report_of(
    selection: &Selection,
    shard: Option<report::ShardInfo>,
    results: &[ScenarioResult],
) -> RunReport {
    RunReport {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        git_sha: BUILD_COMMIT.into(),
        started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        mode: match selection.modes.as_slice() {
            [Mode::Sim] => "sim".into(),
            [Mode::Wire] => "wire".into(),
            _ => "both".into(),
        },
        seed: selection.seed,
        binary_sha256: binary_sha256(),
        shard,
        scenarios: results.iter().map(to_report).collect(),
    }
}

/// What failed (with the replay command) and was flaky on stderr, the counts on stdout.
fn print_outcome(report: &RunReport, report_dir: &Path) {
    let summary = report.summary();
    for s in report.scenarios.iter().filter(|s| !s.status.is_pass()) {
        eprintln!(
            "{} {}: {}",
            s.status.as_str().to_uppercase(),
            s.name,
            s.failures().join("; ")
        );
        eprintln!("  replay: {}", s.replay);
    }
    for s in report
        .scenarios
        .iter()
        .filter(|s| s.status == ScenarioStatus::Flaky)
    {
        eprintln!(
            "FLAKY {}: passed on attempt {}",
            s.name,
            s.retries.len() + 1
        );
    }
    println!(
        "{} passed, {} failed, {} errored{} of {} scenarios; reports in {}",
        summary.passed,
        summary.failed,
        summary.errored,
        if summary.flaky > 0 {
            format!(", {} flaky", summary.flaky)
        } else {
            String::new()
        },
        summary.scenarios,
        report_dir.display()
    );
}

fn status_word(status: ResultStatus) -> &'static str {
    match status {
        ResultStatus::Passed => "PASS",
        ResultStatus::Failed => "FAIL",
        ResultStatus::Errored => "ERROR",
        ResultStatus::Flaky => "FLAKY",
    }
}

/// The timeline report.html draws for one run: its record, with the windows of its scenario's
/// faults. Histories are on the scenario's clock in both modes (wire mode divides its times by
/// the time scale again), so the windows are taken as written.
fn timeline_of(
    scenario: &Scenario,
    r: &ScenarioResult,
    record: &RunRecord,
) -> report::html::Timeline {
    let ms = |d: Duration| d.as_millis() as u64;
    let windows = scenario
        .faults
        .iter()
        .enumerate()
        .map(|(index, f)| report::html::FaultWindow {
            index,
            device: f.device.clone(),
            effect: f.effect.as_str().to_string(),
            from_ms: f.from.map_or(0, ms),
            until_ms: f.until.map(ms),
        })
        .collect();
    let failures = if r.status == ResultStatus::Passed {
        Vec::new()
    } else {
        r.failures()
    };
    report::html::Timeline::build(&scenario.site, record, windows, &failures)
}

/// SHA-256 of this executable, naming the build in report.json.
fn binary_sha256() -> Option<String> {
    use sha2::{Digest, Sha256};
    let exe = std::env::current_exe().ok()?;
    let mut file = std::fs::File::open(exe).ok()?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).ok()?;
    Some(format!("{:x}", hasher.finalize()))
}

/// One scenario run as report.json lists it.
fn to_report(r: &ScenarioResult) -> ScenarioReport {
    let check = r.check.clone().unwrap_or_default();
    ScenarioReport {
        name: r.name.clone(),
        file: r.file.display().to_string(),
        mode: r.mode.as_str().into(),
        seed: r.seed,
        status: match r.status {
            ResultStatus::Passed => ScenarioStatus::Passed,
            ResultStatus::Failed => ScenarioStatus::Failed,
            ResultStatus::Errored => ScenarioStatus::Errored,
            ResultStatus::Flaky => ScenarioStatus::Flaky,
        },
        duration_ms: r.duration_ms,
        invariants: check.invariants,
        expectations: check.expectations,
        measures: check.measures,
        faults: r.faults.clone(),
        transports: r.transports.clone(),
        history_digest: r.history_digest.clone(),
        replay: r.replay.clone(),
        error: r.error.clone(),
        retries: r
            .retries
            .iter()
            .map(|a| report::Attempt {
                status: match a.status {
                    ResultStatus::Errored => ScenarioStatus::Errored,
                    _ => ScenarioStatus::Failed,
                },
                duration_ms: a.duration_ms,
                failures: a.failures.clone(),
                history_digest: a.history_digest.clone(),
            })
            .collect(),
        crash_points: r.crash_sweep.as_ref().map(|c| c.crash_points),
        crash_points_swept: r
            .crash_sweep
            .as_ref()
            .map(|c| c.swept)
            .filter(|swept| Some(*swept) != r.crash_sweep.as_ref().map(|c| c.crash_points)),
        crash_failures: r
            .crash_sweep
            .iter()
            .flat_map(|c| &c.failures)
            .map(|f| report::CrashPointFailure {
                point: f.point.clone(),
                failures: f.failures.clone(),
            })
            .collect(),
        crash_sweep_ms: r.crash_sweep.as_ref().map(|c| c.duration_ms),
    }
}
