//! `qlab`: the command line. Parses, calls into the library, maps errors to exit codes
//! (0 success, 1 a check failed, 2 invalid input).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use quarantine_lab::model::load_site;

/// Quarantine engine and simulation lab.
#[derive(Parser)]
#[command(name = "qlab", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Topology files.
    Topology {
        #[command(subcommand)]
        command: TopologyCommand,
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
    let cli = Cli::parse();
    match cli.command {
        Command::Topology {
            command: TopologyCommand::Validate { files },
        } => validate_topologies(&files),
    }
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
