//! The lab's commands: `qlab gate`, `report merge`, `explore`, `bench`, `sim serve`,
//! `scenario validate|list` and `topology validate`.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::{default_jobs, fail, parse_shard, runtime, Exit};
use crate::explore;
use crate::model::load_site;
use crate::scenario::load::load_all;
use crate::scenario::runner::Mutant;
use crate::sim::faults::FaultEffect;

/// `qlab report ...`.
#[derive(Subcommand)]
pub enum ReportCommand {
    /// Merges shard reports (report.json, junit.xml, summary.md, report.html) into one.
    ///
    /// Refuses reports of different builds or runs and overlapping shards; names missing
    /// shards. Exit 0 merged, 1 refused, 2 unreadable input.
    Merge {
        /// The shards' report folders.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Where the merged reports go.
        #[arg(long)]
        out: PathBuf,
        /// Merge even when shards are missing (they are listed as warnings).
        #[arg(long)]
        allow_missing: bool,
    },
}

/// `qlab sim ...`.
#[derive(Subcommand)]
pub enum SimCommand {
    /// Starts every simulator of a topology on 127.0.0.1 and prints one JSON ready line.
    Serve {
        /// Topology file.
        #[arg(long)]
        topology: PathBuf,
        /// Also write an engine config that points at the simulators (over HTTPS, with the
        /// simulators' CA written beside it as ca.pem). `--print-config` is the old name.
        #[arg(long, alias = "print-config")]
        write_config: Option<PathBuf>,
        /// Serve plain HTTP instead of HTTPS (for tools that cannot be given a CA).
        #[arg(long)]
        plain_http: bool,
    },
}

/// `qlab scenario ...`.
#[derive(Subcommand)]
pub enum ScenarioCommand {
    /// Loads and validates scenario files (and their topologies).
    Validate {
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Lists scenarios: name, modes, tags, file.
    List {
        /// Files or folders.
        #[arg(default_value = "scenarios")]
        paths: Vec<PathBuf>,
    },
}

/// `qlab topology ...`.
#[derive(Subcommand)]
pub enum TopologyCommand {
    /// Loads and validates topology files; prints one line per file.
    Validate {
        /// Topology files (TOML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// `qlab gate`'s arguments.
#[derive(clap::Args)]
pub struct GateArgs {
    /// The baseline file (reports/baselines/*.json).
    #[arg(long)]
    baseline: PathBuf,
    /// Report folders (or report.json files): one run, or repeated runs.
    #[arg(required = true)]
    reports: Vec<PathBuf>,
    /// Write the baseline from these reports instead of gating (keeps its thresholds).
    #[arg(long)]
    update: bool,
}

/// `qlab explore`'s arguments.
#[derive(clap::Args)]
pub struct ExploreArgs {
    /// The topology explored.
    #[arg(long)]
    topology: PathBuf,
    /// Runs in all, over every shard (default 1000 without --duration).
    #[arg(long, conflicts_with = "duration")]
    runs: Option<u64>,
    /// Run for this long instead, e.g. 30s.
    #[arg(long)]
    duration: Option<humantime::Duration>,
    /// Exploration seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads (default: the machine's cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Only shard K of N, as K/N (run indices i with i % N == K - 1).
    #[arg(long)]
    shard: Option<String>,
    /// Fault effects that may be drawn, comma-separated (default: every sim effect).
    #[arg(long, value_enum, value_delimiter = ',')]
    effects: Vec<FaultEffect>,
    /// Each run enables a random subset of the fault kinds.
    #[arg(long)]
    swarm: bool,
    /// A fault period, then everything heals or some devices fail for good.
    #[arg(long)]
    liveness: bool,
    /// Engine crashes with restarts.
    #[arg(long)]
    crashes: bool,
    /// Where explore.json, summary.md, junit.xml and shrunk scenarios go.
    #[arg(long, default_value = "reports/explore")]
    report_dir: PathBuf,
    /// Rebuild and run one run, SEED:INDEX, with the same generation flags.
    #[arg(long)]
    replay: Option<String>,
    /// Checker self-test: explore a deliberately broken engine.
    #[arg(long, hide = true, value_enum)]
    mutant: Option<Mutant>,
}

/// `qlab bench`'s arguments.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Halve every timed budget (1 s per figure instead of 2 s; the wire figure 2 s, not 4 s).
    #[arg(long)]
    quick: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// The throughput scenario.
    #[arg(long, default_value = crate::bench::workload::BENCH_SCENARIO)]
    scenario: PathBuf,
    /// The scenario library (a file or folder).
    #[arg(long, default_value = crate::bench::workload::LIBRARY)]
    library: PathBuf,
    /// The wire-mode site: virtual L-Servers on vCenter simulators, zero latency.
    #[arg(long, default_value = crate::bench::workload::WIRE_TOPOLOGY)]
    wire_topology: PathBuf,
    /// The outbreak scenario: timed once, makespan against its bounds.
    #[arg(long, default_value = crate::bench::workload::OUTBREAK_SCENARIO)]
    outbreak: PathBuf,
    /// The scaling curve's scenarios, comma-separated, each timed once (default: the
    /// outbreaks of 10,000, 25,000, 50,000 and 100,000 L-Servers).
    #[arg(long, value_delimiter = ',')]
    scaling: Vec<PathBuf>,
}

/// `qlab report merge`.
pub fn report(command: ReportCommand) -> Exit {
    let ReportCommand::Merge {
        dirs,
        out,
        allow_missing,
    } = command;
    merge(&dirs, &out, allow_missing)
}

/// `qlab scenario validate|list`.
pub fn scenario(command: ScenarioCommand) -> Exit {
    let (paths, list) = match command {
        ScenarioCommand::Validate { paths } => (paths, false),
        ScenarioCommand::List { paths } => (paths, true),
    };
    let scenarios = match load_all(&paths) {
        Ok(s) => s,
        Err(e) => return fail(e, Exit::BadInput),
    };
    for s in &scenarios {
        if list {
            let modes: Vec<&str> = s.modes.iter().map(|m| m.as_str()).collect();
            println!(
                "{}\t{}\t{}\t{}",
                s.name,
                modes.join(","),
                s.tags.join(","),
                s.file.display()
            );
        } else {
            println!("ok: {} ({})", s.file.display(), s.name);
        }
    }
    Exit::Success
}

/// `qlab topology validate`.
pub fn topology(command: TopologyCommand) -> Exit {
    let TopologyCommand::Validate { files } = command;
    validate_topologies(&files)
}

/// `qlab sim serve`.
pub fn sim(command: SimCommand) -> Exit {
    let SimCommand::Serve {
        topology,
        write_config,
        plain_http,
    } = command;
    sim_serve(&topology, write_config.as_deref(), plain_http)
}

/// `qlab explore`: an exploration, or one `--replay`; 2 on bad arguments.
pub fn explore(args: ExploreArgs) -> Exit {
    let shard = match args.shard.as_deref().map(parse_shard).transpose() {
        Ok(s) => s,
        Err(e) => return fail(format!("--shard: {e}"), Exit::BadInput),
    };
    let effects = if args.effects.is_empty() {
        explore::EFFECTS.to_vec()
    } else {
        // A repeated effect is drawn as often as one named once.
        let mut unique = Vec::with_capacity(args.effects.len());
        for effect in args.effects {
            if !unique.contains(&effect) {
                unique.push(effect);
            }
        }
        unique
    };
    let options = explore::ExploreOptions {
        topology: args.topology,
        runs: args.runs,
        duration: args.duration.map(Into::into),
        seed: args.seed,
        jobs: args.jobs.unwrap_or_else(default_jobs),
        shard: shard.map_or((1, 1), |(k, n)| (k as u64, n as u64)),
        profile: explore::Profile {
            swarm: args.swarm,
            liveness: args.liveness,
            crashes: args.crashes,
            effects,
        },
        report_dir: args.report_dir,
        mutant: args.mutant,
    };
    explore_command(&options, args.replay.as_deref())
}

/// `qlab bench`: 0 when it measured, whether or not targets are met.
pub fn bench(args: BenchArgs) -> Exit {
    let defaults = crate::bench::BenchOptions::default();
    let options = crate::bench::BenchOptions {
        quick: args.quick,
        scenario: args.scenario,
        library: args.library,
        wire_topology: args.wire_topology,
        outbreak: args.outbreak,
        scaling: if args.scaling.is_empty() {
            defaults.scaling
        } else {
            args.scaling
        },
    };
    match crate::bench::run(&options, &|what| eprintln!("measuring {what}...")) {
        Ok(report) if args.json => {
            println!("{}", report.to_json());
            Exit::Success
        }
        Ok(report) => {
            print!("{}", report.table());
            Exit::Success
        }
        Err(e) => fail(&e, Exit::from_code(e.exit_code())),
    }
}

/// `qlab explore`: an exploration, or one `--replay`.
fn explore_command(options: &explore::ExploreOptions, replay: Option<&str>) -> Exit {
    let exit = |e: explore::ExploreError| {
        eprintln!("error: {e}");
        match e {
            explore::ExploreError::Input(_) => Exit::BadInput,
            explore::ExploreError::Io(_) => Exit::Failed,
        }
    };
    if let Some(text) = replay {
        let replayed = match explore::parse_replay(text)
            .and_then(|(seed, index)| explore::replay(options, seed, index))
        {
            Ok(r) => r,
            Err(e) => return exit(e),
        };
        println!("scenario: {}", replayed.file.display());
        if replayed.failed.is_empty() {
            println!("no violation");
            return Exit::Success;
        }
        let ids: Vec<&str> = replayed.failed.iter().map(String::as_str).collect();
        println!("violated: {}", ids.join(", "));
        return Exit::Failed;
    }
    let report = match explore::explore(options) {
        Ok(r) => r,
        Err(e) => return exit(e),
    };
    println!(
        "{} runs, {:.0} runs/s, {} signatures; report in {}",
        report.runs,
        report.runs_per_second,
        report.violations.len(),
        options.report_dir.display()
    );
    for v in &report.violations {
        println!(
            "  {} ({} runs): {}",
            v.signature,
            v.count,
            v.shrunk_file
                .as_deref()
                .map(|f| options.report_dir.join(f).display().to_string())
                .unwrap_or_else(|| v.replay.clone())
        );
    }
    if let Some(first) = &report.first_invalid {
        println!(
            "  {} generated scenarios did not load: {first}",
            report.invalid_scenarios
        );
    }
    if report.clean() {
        Exit::Success
    } else {
        Exit::Failed
    }
}

/// `qlab report merge`.
fn merge(dirs: &[PathBuf], out: &Path, allow_missing: bool) -> Exit {
    for d in dirs {
        if !d.join("report.json").is_file() {
            eprintln!("error: {}: no report.json there", d.display());
            return Exit::BadInput;
        }
    }
    let merged = match crate::report::merge::merge_dirs(dirs, allow_missing) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Failed;
        }
    };
    for w in &merged.warnings {
        eprintln!("warning: {w}");
    }
    if let Err(e) = crate::report::merge::write_merged(out, &merged) {
        eprintln!("error: cannot write reports to {}: {e}", out.display());
        return Exit::BadInput;
    }
    let summary = merged.report.summary();
    println!(
        "merged {} reports: {} passed, {} failed, {} errored, {} flaky of {} scenarios; reports in {}",
        dirs.len(),
        summary.passed,
        summary.failed,
        summary.errored,
        summary.flaky,
        summary.scenarios,
        out.display()
    );
    Exit::Success
}

/// `qlab gate`.
pub fn gate(args: GateArgs) -> Exit {
    let (baseline, reports, update) = (args.baseline.as_path(), &args.reports, args.update);
    use crate::gate;
    let reports = match gate::read_reports(reports) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::BadInput;
        }
    };
    if update {
        let policy = if baseline.exists() {
            match gate::read_baseline(baseline) {
                Ok(b) => b.policy,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Exit::BadInput;
                }
            }
        } else {
            gate::Policy::default()
        };
        let written = gate::baseline_of(&reports, policy);
        if let Err(e) = gate::write_baseline(baseline, &written) {
            eprintln!("error: {e}");
            return Exit::BadInput;
        }
        println!(
            "baseline {} written: {} runs",
            baseline.display(),
            written.runs.len()
        );
        return Exit::Success;
    }
    let base = match gate::read_baseline(baseline) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::BadInput;
        }
    };
    let verdict = gate::gate(&base, &reports);
    print!("{}", verdict.table());
    if verdict.passed() {
        Exit::Success
    } else {
        Exit::Failed
    }
}

fn validate_topologies(files: &[PathBuf]) -> Exit {
    let mut failed = false;
    for file in files {
        match load_site(file) {
            Ok(site) => {
                let nics: usize = site.lservers.iter().map(|l| l.nics.len()).sum();
                println!(
                    "ok: {} (site {:?}: {} L-Servers, {} NICs)",
                    file.display(),
                    site.topology.name,
                    site.lservers.len(),
                    nics
                );
            }
            Err(error) => {
                eprintln!("error: {error}");
                failed = true;
            }
        }
    }
    if failed {
        Exit::BadInput
    } else {
        Exit::Success
    }
}

/// `qlab sim serve`: runs until interrupted; exit 2 when the topology or config cannot be used.
fn sim_serve(topology: &Path, write_config: Option<&Path>, plain_http: bool) -> Exit {
    let runtime = match runtime(true) {
        Ok(r) => r,
        Err(exit) => return exit,
    };
    runtime.block_on(async {
        let server = match crate::scenario::serve::start(topology, write_config, plain_http).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::BadInput;
            }
        };
        println!(
            "{}",
            serde_json::to_string(&server.ready).unwrap_or_default()
        );
        let _ = tokio::signal::ctrl_c().await;
        drop(server);
        Exit::Success
    })
}
