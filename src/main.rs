//! `qlab`: the command line. Parses the arguments, calls the subcommand's body in the library
//! (`quarantine_lab::cli`) and turns how it ended into the exit code (0 success, 1 a scenario
//! failed or the engine refused, 2 invalid input, 3 the engine could not be reached;
//! `docs/cli.md`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use quarantine_lab::cli::{engine, lab, run, Exit};

/// The lab allocates many small short-lived values per run (history events, journal rows,
/// futures); mimalloc serves them faster than the system allocator (`qlab bench` shows it).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Quarantine engine and simulation lab.
#[derive(Parser)]
#[command(name = "qlab", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs scenarios against the engine and writes reports.
    Run(run::RunArgs),
    /// Report folders: merge the shards of a run.
    Report {
        #[command(subcommand)]
        command: lab::ReportCommand,
    },
    /// Compares a run with a baseline; fails on a regression (see --help).
    ///
    /// Fails (exit 1) on a new failure, a new flaky scenario, a scenario missing from the run,
    /// a fault that stopped firing, or time-to-contain p99 or a makespan ratio worse than the
    /// baseline beyond its threshold: exactly in sim mode, by a 95 % confidence interval over
    /// repeated runs in wire mode (give one REPORT per run). Prints why in one table. Exit 2 on
    /// unreadable input.
    Gate(lab::GateArgs),
    /// Explores generated scenarios: random schedules and faults, every invariant checked.
    ///
    /// Each run builds a scenario from (seed, run index) alone and runs it in sim mode; failures
    /// are grouped by signature (failed invariants and fault effects), shrunk to a minimal
    /// scenario file that `qlab run FILE` replays, and the fault to blame is named where one is.
    /// Writes explore.json, summary.md, junit.xml and the shrunk files to --report-dir. Exits 0
    /// when no run violated an invariant, 1 otherwise, 2 on bad input.
    Explore(lab::ExploreArgs),
    /// Simulators.
    Sim {
        #[command(subcommand)]
        command: lab::SimCommand,
    },
    /// Scenario files.
    Scenario {
        #[command(subcommand)]
        command: lab::ScenarioCommand,
    },
    /// Topology files.
    Topology {
        #[command(subcommand)]
        command: lab::TopologyCommand,
    },
    /// The quarantine engine: run it, or talk to a running one over its HTTP API.
    Engine {
        #[command(subcommand)]
        command: engine::EngineCommand,
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
    Notify(engine::NotifyArgs),
    /// Measures the speed figures side by side and prints them next to their targets.
    ///
    /// Sim-mode runs/s of the 10-L-Server bench scenario, durable journal operations/s with fsync
    /// on, CEF lines parsed/s, the engine's time per switchover in wire mode against a bare HTTP
    /// client, the outbreak and the scaling curve (10,000 to 100,000 L-Servers), the library's
    /// wall time in sim mode on one job, and every library scenario's makespan / lower bound. Run it from the crate root on a release build
    /// (`cargo run --release -- bench`). Exits 0 when it measured, whether or not targets are met.
    Bench(lab::BenchArgs),
    /// Certifies an adapter and its device in tiers (function, failure classification, the
    /// engine), writes reports and an evidence bundle; `verify` checks a bundle, `diff` compares
    /// a target's replies with the simulator's. See docs/certification.md.
    Certify(Box<quarantine_lab::certify::cli::CertifyArgs>),
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
    let exit = match Cli::parse().command {
        Command::Run(args) => run::run(args),
        Command::Report { command } => lab::report(command),
        Command::Gate(args) => lab::gate(args),
        Command::Explore(args) => lab::explore(args),
        Command::Sim { command } => lab::sim(command),
        Command::Scenario { command } => lab::scenario(command),
        Command::Topology { command } => lab::topology(command),
        Command::Engine { command } => engine::engine(command),
        Command::Notify(args) => engine::notify(args),
        Command::Bench(args) => lab::bench(args),
        Command::Certify(args) => Exit::from_code(quarantine_lab::certify::cli::main(*args)),
    };
    exit_code(exit)
}

/// The process exit code of how a command ended (`docs/cli.md`).
fn exit_code(exit: Exit) -> ExitCode {
    ExitCode::from(exit.code())
}
