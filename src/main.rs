//! `qlab`: the command line. Parses, calls into the library, maps errors to exit codes
//! (0 success, 1 a scenario failed or the engine refused, 2 invalid input, 3 the engine could
//! not be reached; `docs/cli.md`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand, ValueEnum};

/// `println!` that survives a closed stdout. Rust ignores SIGPIPE, so a write to a pipe whose
/// reader has gone (`qlab scenario list | head -1`) fails, and std's `println!` panics on that.
/// Output nobody reads is dropped instead, and the command ends with the exit code of what it
/// did (a `qlab run | head -1` whose scenarios failed still exits 1). SIGPIPE stays ignored
/// rather than reset to its default: `qlab engine serve` and the in-process daemon of wire mode
/// must not die because a peer or a child went away.
macro_rules! println {
    () => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout());
    }};
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that survives a closed stderr (`qlab run 2>&1 | head`), as [`println!`].
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Exit code when the engine's API cannot be reached (refused, timed out, reply cut): an AV
/// server's script can tell an outage, worth retrying later, from a mistake in its arguments (2).
const EXIT_UNREACHABLE: u8 = 3;

/// The lab allocates many small short-lived values per run (history events, journal rows,
/// futures); mimalloc serves them faster than the system allocator (`qlab bench` shows it).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use quarantine_lab::daemon::{self, client};
use quarantine_lab::explore;
use quarantine_lab::model::topology::Action;
use quarantine_lab::model::{load_site, Category, Detection};
use quarantine_lab::report::{self, RunReport, ScenarioReport, ScenarioStatus};
use quarantine_lab::scenario::library::{self, ResultStatus, ScenarioResult, Selection};
use quarantine_lab::scenario::load::{load_all, Mode};
use quarantine_lab::scenario::runner::Mutant;
use quarantine_lab::sim::faults::FaultEffect;

/// Quarantine engine and simulation lab.
#[derive(Parser)]
#[command(name = "qlab", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Sim,
    Wire,
    Both,
}

#[derive(Subcommand)]
enum Command {
    /// Runs scenarios against the engine and writes reports.
    Run {
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
    },
    /// Report folders: merge the shards of a run.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Compares a run with a baseline; fails on a regression (see --help).
    ///
    /// Fails (exit 1) on a new failure, a new flaky scenario, a scenario missing from the run,
    /// a fault that stopped firing, or time-to-contain p99 or a makespan ratio worse than the
    /// baseline beyond its threshold: exactly in sim mode, by a 95 % confidence interval over
    /// repeated runs in wire mode (give one REPORT per run). Prints why in one table. Exit 2 on
    /// unreadable input.
    Gate {
        /// The baseline file (reports/baselines/*.json).
        #[arg(long)]
        baseline: PathBuf,
        /// Report folders (or report.json files): one run, or repeated runs.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Write the baseline from these reports instead of gating (keeps its thresholds).
        #[arg(long)]
        update: bool,
    },
    /// Explores generated scenarios: random schedules and faults, every invariant checked.
    ///
    /// Each run builds a scenario from (seed, run index) alone and runs it in sim mode; failures
    /// are grouped by signature (failed invariants and fault effects), shrunk to a minimal
    /// scenario file that `qlab run FILE` replays, and the fault to blame is named where one is.
    /// Writes explore.json, summary.md, junit.xml and the shrunk files to --report-dir. Exits 0
    /// when no run violated an invariant, 1 otherwise, 2 on bad input.
    Explore {
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
    },
    /// Simulators.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// Scenario files.
    Scenario {
        #[command(subcommand)]
        command: ScenarioCommand,
    },
    /// Topology files.
    Topology {
        #[command(subcommand)]
        command: TopologyCommand,
    },
    /// The quarantine engine: run it, or talk to a running one over its HTTP API.
    Engine {
        #[command(subcommand)]
        command: EngineCommand,
    },
    /// Reports a detection to a running engine (what an AV server runs on a detection).
    ///
    /// Exits 0 only when the engine answered 202, i.e. made the detection durable (R7); 1 when
    /// the engine refused it (5xx after the retries); 2 on bad arguments or a rejected token; 3
    /// when the engine could not be reached after the retries. Connection errors and 5xx answers are retried (--attempts in all, 250 ms
    /// backoff doubling up to 5 s); a retry is safe because the event id makes a repeat a
    /// duplicate (R4).
    ///
    /// Without --event-id the id is `notify-` and 16 hex digits of the SHA-256 of source, ip,
    /// mac, hostname, threat, category and the current UTC minute, computed once per run: the
    /// run's retries and a second run for the same event within the minute are deduplicated,
    /// while a later re-infection still acts. Pass the AV server's own event id when it has one.
    Notify {
        #[command(flatten)]
        api: ApiArgs,
        /// AV server name in the topology.
        #[arg(long)]
        source: String,
        /// Infected host's IP address.
        #[arg(long, required_unless_present_any = ["hostname", "mac"])]
        ip: Option<std::net::IpAddr>,
        /// Infected host's name.
        #[arg(long)]
        hostname: Option<String>,
        /// Infected host's MAC address.
        #[arg(long)]
        mac: Option<String>,
        /// Threat name.
        #[arg(long)]
        threat: String,
        /// Threat category; only virus and malware start an operation (R1).
        #[arg(long, value_enum, default_value_t = Category::Virus)]
        category: Category,
        /// The AV server's event id (dedupe key with --source, R4); default: a hash of the
        /// fields and the current minute (see --help).
        #[arg(long)]
        event_id: Option<String>,
        /// Tries in all on connection errors and 5xx answers (backoff 250 ms, doubling).
        #[arg(long, default_value_t = 5)]
        attempts: u32,
    },
    /// Measures the speed figures side by side and prints them next to their targets.
    ///
    /// Sim-mode runs/s of the 10-L-Server bench scenario, durable journal operations/s with fsync
    /// on, CEF lines parsed/s, the engine's time per switchover in wire mode against a bare HTTP
    /// client, the outbreak and the scaling curve (10,000 to 100,000 L-Servers), the library's
    /// wall time in sim mode on one job, and every library scenario's makespan / lower bound. Run it from the crate root on a release build
    /// (`cargo run --release -- bench`). Exits 0 when it measured, whether or not targets are met.
    Bench {
        /// Halve every timed budget (1 s per figure instead of 2 s; the wire figure 2 s, not 4 s).
        #[arg(long)]
        quick: bool,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// The throughput scenario.
        #[arg(long, default_value = quarantine_lab::bench::workload::BENCH_SCENARIO)]
        scenario: PathBuf,
        /// The scenario library (a file or folder).
        #[arg(long, default_value = quarantine_lab::bench::workload::LIBRARY)]
        library: PathBuf,
        /// The wire-mode site: virtual L-Servers on vCenter simulators, zero latency.
        #[arg(long, default_value = quarantine_lab::bench::workload::WIRE_TOPOLOGY)]
        wire_topology: PathBuf,
        /// The outbreak scenario: timed once, makespan against its bounds.
        #[arg(long, default_value = quarantine_lab::bench::workload::OUTBREAK_SCENARIO)]
        outbreak: PathBuf,
        /// The scaling curve's scenarios, comma-separated, each timed once (default: the
        /// outbreaks of 10,000, 25,000, 50,000 and 100,000 L-Servers).
        #[arg(long, value_delimiter = ',')]
        scaling: Vec<PathBuf>,
    },
    /// Certifies an adapter and its device in tiers (function, failure classification, the
    /// engine), writes reports and an evidence bundle; `verify` checks a bundle, `diff` compares
    /// a target's replies with the simulator's. See docs/certification.md.
    Certify(Box<quarantine_lab::certify::cli::CertifyArgs>),
}

/// Where the engine's API is and how to authenticate.
#[derive(clap::Args)]
struct ApiArgs {
    /// Base URL of the engine's API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API bearer token (default: the QLAB_TOKEN environment variable).
    #[arg(long)]
    token: Option<String>,
    /// Timeout of each HTTP exchange, e.g. 10s.
    #[arg(long, default_value = "10s")]
    timeout: humantime::Duration,
    /// CA certificate(s) (PEM) to trust for an https:// --url (the engine's `[api] tls_cert`
    /// signer); only these are trusted then, not the built-in web roots.
    #[arg(long)]
    ca_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum EngineCommand {
    /// Runs the engine daemon: HTTP API, syslog listeners, pollers. Prints one JSON line when
    /// ready. The token comes from QLAB_TOKEN when set, else from the config.
    Serve {
        /// Engine config file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Log line format on stderr: text or json (default: QLAB_LOG_FORMAT, else text).
        #[arg(long)]
        log_format: Option<daemon::log::LogFormat>,
    },
    /// Manual quarantine of an L-Server (R12).
    Quarantine {
        /// L-Server path, e.g. /tenant-a/vdi-001.
        lserver: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Release of a quarantined L-Server (R14).
    Release {
        /// L-Server path.
        lserver: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Shows one L-Server, or all of them.
    Status {
        /// L-Server path; all L-Servers when absent.
        lserver: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Decides for an L-Server waiting for a decision (R5).
    Decide {
        /// L-Server path.
        lserver: String,
        /// The action to run.
        #[arg(long, value_enum)]
        choice: Action,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Reloads the policy (the topology file's [policy]) of a running engine without a restart,
    /// as SIGHUP does; an invalid file leaves the running policy in force (exit 1). Needs a
    /// token with the `operate` scope.
    ReloadPolicy {
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand)]
enum ReportCommand {
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

#[derive(Subcommand)]
enum SimCommand {
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

#[derive(Subcommand)]
enum ScenarioCommand {
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

#[derive(Subcommand)]
enum TopologyCommand {
    /// Loads and validates topology files; prints one line per file.
    Validate {
        /// Topology files (TOML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    // mimalloc asks the kernel for transparent huge pages, which are zeroed 2 MiB at a time on
    // first touch; a large lab run touches its memory sparsely, and a third of a
    // 100,000-L-Server run went to that zeroing. Ordinary pages cost only what is used.
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and changes only this process's mappings.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    // SQLite counts every allocation under one process-wide mutex by default: the lab's parallel
    // runs (one in-memory journal each) would serialize on it, and a single run pays for the
    // lock on every allocation. Nothing reads those counts. Nothing has used SQLite yet in this
    // process and no other thread runs, which is what sqlite3_config requires.
    // SAFETY: called once, before SQLite is initialized, with no other thread alive.
    unsafe {
        rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS, 0 as std::ffi::c_int);
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            paths,
            mode,
            seed,
            tags,
            name,
            report_dir,
            shard,
            jobs,
            time_scale,
            check_determinism,
            strict_faults,
            mutant,
            durations,
            retries,
            fail_once,
            crash_sweep,
            crash_point,
            crash_points_max,
        } => {
            let modes = match mode {
                ModeArg::Sim => vec![Mode::Sim],
                ModeArg::Wire => vec![Mode::Wire],
                ModeArg::Both => vec![Mode::Sim, Mode::Wire],
            };
            if !(time_scale > 0.0 && time_scale <= 1.0) {
                eprintln!("error: --time-scale {time_scale}: must be greater than 0 and at most 1");
                return ExitCode::from(2);
            }
            let shard = match shard.as_deref().map(parse_shard).transpose() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: --shard: {e}");
                    return ExitCode::from(2);
                }
            };
            let jobs = jobs.unwrap_or_else(default_jobs);
            let durations = match durations.as_deref().map(RunReport::read).transpose() {
                Ok(d) => d.map(|r| report::shard::durations_of(&r)),
                Err(e) => {
                    eprintln!("error: --durations: {e}");
                    return ExitCode::from(2);
                }
            };
            let crash_point = match crash_point
                .as_deref()
                .map(quarantine_lab::scenario::crash_sweep::parse_point)
                .transpose()
            {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: --crash-point: {e}");
                    return ExitCode::from(2);
                }
            };
            if crash_sweep && !modes.contains(&Mode::Sim) {
                eprintln!("error: --crash-sweep runs in sim mode: use --mode sim (or both)");
                return ExitCode::from(2);
            }
            let options = library::RunOptions {
                strict_faults,
                retries: retries.min(MAX_RETRIES),
                fail_once,
                on_record: None,
                crash_sweep,
                crash_point,
                crash_points_max,
            };
            let selection = Selection {
                paths,
                tags,
                name,
                // `run` splits shards itself (report::shard): by hash or by durations.
                shard: None,
                seed,
                check_determinism,
                jobs,
                mutant,
                modes,
                time_scale,
            };
            run(&selection, &options, shard, durations.as_ref(), &report_dir)
        }
        Command::Report {
            command:
                ReportCommand::Merge {
                    dirs,
                    out,
                    allow_missing,
                },
        } => merge_command(&dirs, &out, allow_missing),
        Command::Gate {
            baseline,
            reports,
            update,
        } => gate_command(&baseline, &reports, update),
        Command::Scenario {
            command: ScenarioCommand::Validate { paths },
        } => match load_all(&paths) {
            Ok(scenarios) => {
                for s in &scenarios {
                    println!("ok: {} ({})", s.file.display(), s.name);
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Scenario {
            command: ScenarioCommand::List { paths },
        } => match load_all(&paths) {
            Ok(scenarios) => {
                for s in &scenarios {
                    let modes: Vec<&str> = s.modes.iter().map(|m| m.as_str()).collect();
                    println!(
                        "{}\t{}\t{}\t{}",
                        s.name,
                        modes.join(","),
                        s.tags.join(","),
                        s.file.display()
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Topology {
            command: TopologyCommand::Validate { files },
        } => validate_topologies(&files),
        Command::Engine {
            command: EngineCommand::Serve { config, log_format },
        } => engine_serve(&config, log_format),
        Command::Engine { command } => engine_client(command),
        Command::Sim {
            command:
                SimCommand::Serve {
                    topology,
                    write_config,
                    plain_http,
                },
        } => sim_serve(&topology, write_config.as_deref(), plain_http),
        Command::Notify {
            api,
            source,
            ip,
            hostname,
            mac,
            threat,
            category,
            event_id,
            attempts,
        } => {
            let mut detection = Detection {
                source,
                event_id: event_id.unwrap_or_default(),
                ip,
                mac,
                hostname,
                threat,
                category,
            };
            if detection.event_id.is_empty() {
                detection.event_id = client::default_event_id(&detection);
            }
            if let Err(e) = detection.check() {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            with_client(&api, |client| async move {
                client
                    .notify(&detection, attempts, Duration::from_millis(250))
                    .await
            })
        }
        Command::Explore {
            topology,
            runs,
            duration,
            seed,
            jobs,
            shard,
            effects,
            swarm,
            liveness,
            crashes,
            report_dir,
            replay,
            mutant,
        } => {
            let options = (|| -> Result<explore::ExploreOptions, String> {
                let shard = shard
                    .as_deref()
                    .map(parse_shard)
                    .transpose()
                    .map_err(|e| format!("--shard: {e}"))?;
                let effects = if effects.is_empty() {
                    explore::EFFECTS.to_vec()
                } else {
                    // A repeated effect is drawn as often as one named once.
                    let mut unique = Vec::with_capacity(effects.len());
                    for effect in effects {
                        if !unique.contains(&effect) {
                            unique.push(effect);
                        }
                    }
                    unique
                };
                Ok(explore::ExploreOptions {
                    topology,
                    runs,
                    duration: duration.map(Into::into),
                    seed,
                    jobs: jobs.unwrap_or_else(default_jobs),
                    shard: shard.map_or((1, 1), |(k, n)| (k as u64, n as u64)),
                    profile: explore::Profile {
                        swarm,
                        liveness,
                        crashes,
                        effects,
                    },
                    report_dir,
                    mutant,
                })
            })();
            match options {
                Ok(options) => explore_command(&options, replay.as_deref()),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Bench {
            quick,
            json,
            scenario,
            library,
            wire_topology,
            outbreak,
            scaling,
        } => {
            let defaults = quarantine_lab::bench::BenchOptions::default();
            let options = quarantine_lab::bench::BenchOptions {
                quick,
                scenario,
                library,
                wire_topology,
                outbreak,
                scaling: if scaling.is_empty() {
                    defaults.scaling
                } else {
                    scaling
                },
            };
            match quarantine_lab::bench::run(&options, &|what| eprintln!("measuring {what}...")) {
                Ok(report) if json => {
                    println!("{}", report.to_json());
                    ExitCode::SUCCESS
                }
                Ok(report) => {
                    print!("{}", report.table());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Command::Certify(args) => ExitCode::from(quarantine_lab::certify::cli::main(*args)),
    }
}

/// `qlab engine serve`: exit 2 on a bad config, topology or token, 1 when it fails later.
fn engine_serve(config: &std::path::Path, log_format: Option<daemon::log::LogFormat>) -> ExitCode {
    daemon::log::init(log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let token = std::env::var_os(daemon::TOKEN_ENV).map(|t| t.to_string_lossy().into_owned());
    let result = runtime.block_on(daemon::serve_file(config, token, |ready| {
        println!("{}", ready.line());
        // The ready line is what scripts wait for: push it out now, not at exit.
        let _ = std::io::Write::flush(&mut std::io::stdout());
    }));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.located(config));
            ExitCode::from(if e.is_input_error() { 2 } else { 1 })
        }
    }
}

/// `qlab engine quarantine|release|status|decide`.
fn engine_client(command: EngineCommand) -> ExitCode {
    match command {
        EngineCommand::Serve { config, log_format } => engine_serve(&config, log_format),
        EngineCommand::Quarantine { lserver, api } => with_client(&api, |c| async move {
            c.command(&lserver, "quarantine", None).await
        }),
        EngineCommand::Release { lserver, api } => with_client(&api, |c| async move {
            c.command(&lserver, "release", None).await
        }),
        EngineCommand::Status { lserver, api } => {
            with_client(&api, |c| async move { c.status(lserver.as_deref()).await })
        }
        EngineCommand::Decide {
            lserver,
            choice,
            api,
        } => with_client(&api, |c| async move {
            c.command(&lserver, "decide", Some(choice.as_str())).await
        }),
        EngineCommand::ReloadPolicy { api } => with_client(&api, |c| async move {
            c.post(&["policy", "reload"], &serde_json::json!({})).await
        }),
    }
}

/// Runs one API call and prints its JSON reply. Exit 0 on 2xx; 1 when the engine refused
/// (404, 409, 429, 5xx); 2 on bad arguments or a rejected token; 3 when the engine could not be
/// reached ([`EXIT_UNREACHABLE`]).
fn with_client<F, Fut>(api: &ApiArgs, call: F) -> ExitCode
where
    F: FnOnce(client::ApiClient) -> Fut,
    Fut: std::future::Future<Output = Result<client::Reply, client::ClientError>>,
{
    let token = match api.token.clone().or_else(|| {
        std::env::var(daemon::TOKEN_ENV)
            .ok()
            .filter(|t| !t.is_empty())
    }) {
        Some(t) => t,
        None => {
            eprintln!(
                "error: no API token: pass --token or set {}",
                daemon::TOKEN_ENV
            );
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let ca_pem = match &api.ca_file {
        Some(file) => match std::fs::read(file) {
            Ok(pem) => Some(pem),
            Err(e) => {
                eprintln!("error: --ca-file {}: {e}", file.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let client =
        match client::ApiClient::with_ca(&api.url, &token, api.timeout.into(), ca_pem.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
    match runtime.block_on(call(client)) {
        Ok(reply) => {
            let text = serde_json::to_string_pretty(&reply.body)
                .unwrap_or_else(|_| reply.body.to_string());
            if reply.exit_code() == 0 {
                println!("{text}");
            } else {
                eprintln!("error: the engine answered HTTP {}", reply.status);
                println!("{text}");
            }
            ExitCode::from(reply.exit_code())
        }
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                client::ClientError::Transport { .. } => ExitCode::from(EXIT_UNREACHABLE),
                client::ClientError::BadUrl(_) | client::ClientError::BadCa(_) => ExitCode::from(2),
            }
        }
    }
}

/// `qlab sim serve`: runs until interrupted; exit 2 when the topology or config cannot be used.
fn sim_serve(
    topology: &std::path::Path,
    write_config: Option<&std::path::Path>,
    plain_http: bool,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        let server = match quarantine_lab::scenario::serve::start(
            topology,
            write_config,
            plain_http,
        )
        .await
        {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        println!(
            "{}",
            serde_json::to_string(&server.ready).unwrap_or_default()
        );
        let _ = tokio::signal::ctrl_c().await;
        drop(server);
        ExitCode::SUCCESS
    })
}

/// Worker threads when `--jobs` is not given: the machine's cores.
fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `qlab explore`: an exploration, or one `--replay`.
fn explore_command(options: &explore::ExploreOptions, replay: Option<&str>) -> ExitCode {
    let exit = |e: explore::ExploreError| {
        eprintln!("error: {e}");
        match e {
            explore::ExploreError::Input(_) => ExitCode::from(2),
            explore::ExploreError::Io(_) => ExitCode::from(1),
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
            return ExitCode::SUCCESS;
        }
        let ids: Vec<&str> = replayed.failed.iter().map(String::as_str).collect();
        println!("violated: {}", ids.join(", "));
        return ExitCode::from(1);
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
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn parse_shard(text: &str) -> Result<(usize, usize), String> {
    let (k, n) = text.split_once('/').ok_or("write it as K/N, e.g. 1/4")?;
    let k: usize = k
        .trim()
        .parse()
        .map_err(|_| format!("{k:?} is not a number"))?;
    let n: usize = n
        .trim()
        .parse()
        .map_err(|_| format!("{n:?} is not a number"))?;
    if n == 0 || k == 0 || k > n {
        return Err(format!("{text}: K must be between 1 and N"));
    }
    Ok((k, n))
}

/// Most `--retries`: a scenario that fails more often than this is not flaky.
const MAX_RETRIES: u32 = 10;

fn run(
    selection: &Selection,
    options: &library::RunOptions,
    shard: Option<(usize, usize)>,
    durations: Option<&std::collections::HashMap<String, u64>>,
    report_dir: &std::path::Path,
) -> ExitCode {
    let scenarios = match library::select(selection) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runs_of = |s: &quarantine_lab::scenario::load::Scenario| {
        selection.modes.iter().filter(|m| s.runs_in(**m)).count()
    };
    let selected: usize = scenarios.iter().map(runs_of).sum();
    let shard_info = shard.map(|(k, n)| report::ShardInfo {
        index: k,
        count: n,
        selected,
        assignment: report::shard::assignment_name(durations).into(),
    });
    let scenarios = match shard {
        Some((k, n)) => {
            let names: Vec<&str> = scenarios.iter().map(|s| s.name.as_str()).collect();
            let shards = report::shard::assign(&names, n, durations);
            scenarios
                .into_iter()
                .zip(shards)
                .filter(|(_, s)| *s == k)
                .map(|(s, _)| s)
                .collect()
        }
        None => scenarios,
    };
    let total = scenarios.len() as u64;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
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
    let timelines: std::sync::Mutex<
        std::collections::HashMap<(String, Mode), report::html::Timeline>,
    > = Default::default();
    let keep = |scenario: &quarantine_lab::scenario::load::Scenario,
                r: &ScenarioResult,
                record: &quarantine_lab::model::history::RunRecord| {
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
    let report = RunReport {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        git_sha: git_sha(),
        started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        mode: match selection.modes.as_slice() {
            [Mode::Sim] => "sim".into(),
            [Mode::Wire] => "wire".into(),
            _ => "both".into(),
        },
        seed: selection.seed,
        binary_sha256: binary_sha256(),
        shard: shard_info,
        scenarios: results.iter().map(to_report).collect(),
    };
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
        eprintln!(
            "error: cannot write reports to {}: {e}",
            report_dir.display()
        );
        return ExitCode::from(2);
    }
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
    if report.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
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
    scenario: &quarantine_lab::scenario::load::Scenario,
    r: &ScenarioResult,
    record: &quarantine_lab::model::history::RunRecord,
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

/// `qlab report merge`.
fn merge_command(dirs: &[PathBuf], out: &std::path::Path, allow_missing: bool) -> ExitCode {
    for d in dirs {
        if !d.join("report.json").is_file() {
            eprintln!("error: {}: no report.json there", d.display());
            return ExitCode::from(2);
        }
    }
    let merged = match report::merge::merge_dirs(dirs, allow_missing) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    for w in &merged.warnings {
        eprintln!("warning: {w}");
    }
    if let Err(e) = report::merge::write_merged(out, &merged) {
        eprintln!("error: cannot write reports to {}: {e}", out.display());
        return ExitCode::from(2);
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
    ExitCode::SUCCESS
}

/// `qlab gate`.
fn gate_command(baseline: &std::path::Path, reports: &[PathBuf], update: bool) -> ExitCode {
    use quarantine_lab::gate;
    let reports = match gate::read_reports(reports) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if update {
        let policy = if baseline.exists() {
            match gate::read_baseline(baseline) {
                Ok(b) => b.policy,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
        } else {
            gate::Policy::default()
        };
        let written = gate::baseline_of(&reports, policy);
        if let Err(e) = gate::write_baseline(baseline, &written) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        println!(
            "baseline {} written: {} runs",
            baseline.display(),
            written.runs.len()
        );
        return ExitCode::SUCCESS;
    }
    let base = match gate::read_baseline(baseline) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let verdict = gate::gate(&base, &reports);
    print!("{}", verdict.table());
    if verdict.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

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

fn git_sha() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn validate_topologies(files: &[PathBuf]) -> ExitCode {
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
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}
