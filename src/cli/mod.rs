//! The bodies of `qlab`'s subcommands: the binary (`src/main.rs`) parses the command line with
//! clap, calls one function here and turns the [`Exit`] it gets back into the process's exit
//! code. Everything a command does besides parsing (selecting and running scenarios, assembling
//! report.json, talking to a running engine, printing) lives here, in the library, where tests
//! reach it without spawning the binary.
//!
//! The arguments of each subcommand are clap `Args` structs beside the code that uses them
//! ([`run::RunArgs`], [`engine::NotifyArgs`], ...); `src/main.rs` names the subcommands and their
//! help. Exit codes (`docs/cli.md`): 0 success, 1 a scenario failed or the engine refused, 2
//! invalid input, 3 the engine could not be reached.
//!
//! Decisions where the spec is silent:
//! - The commit a report names (`git_sha`) is the one the binary was built from, taken by
//!   `build.rs` at build time ([`BUILD_COMMIT`]); `unknown` when the build did not happen in a
//!   git checkout and `QLAB_GIT_SHA` was not set for it. A report therefore names the build, not
//!   whatever checkout the command happens to run in.

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

/// `print!` that survives a closed stdout, as [`println!`].
macro_rules! print {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that survives a closed stderr (`qlab run 2>&1 | head`), as [`println!`].
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod engine;
pub mod lab;
pub mod run;

pub use crate::BUILD_COMMIT;

/// How a command ended; `src/main.rs` turns it into the process's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done (a run whose scenarios all passed, a reply 2xx, ...).
    Success,
    /// 1: a scenario failed, the engine refused, a gate found a regression, a later failure.
    Failed,
    /// 2: invalid input (arguments, files, a rejected token).
    BadInput,
    /// 3: the engine's API could not be reached (refused, timed out, reply cut): an AV server's
    /// script can tell an outage, worth retrying later, from a mistake in its arguments (2).
    Unreachable,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failed => 1,
            Exit::BadInput => 2,
            Exit::Unreachable => 3,
        }
    }

    /// [`Exit::Success`] when `ok`, else [`Exit::Failed`].
    pub fn success_if(ok: bool) -> Exit {
        if ok {
            Exit::Success
        } else {
            Exit::Failed
        }
    }

    /// The exit for a numeric code the library already decided (0, 1, 2 or 3).
    pub fn from_code(code: u8) -> Exit {
        match code {
            0 => Exit::Success,
            2 => Exit::BadInput,
            3 => Exit::Unreachable,
            _ => Exit::Failed,
        }
    }
}

/// Prints `error: {e}` and returns `exit`.
fn fail(e: impl std::fmt::Display, exit: Exit) -> Exit {
    eprintln!("error: {e}");
    exit
}

/// Worker threads when `--jobs` is not given: the machine's cores.
fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `--shard K/N`, with 1 ≤ K ≤ N.
pub fn parse_shard(text: &str) -> Result<(usize, usize), String> {
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

/// A runtime for a command that needs one: the current-thread kind for a client, the
/// multi-thread kind for servers.
fn runtime(multi_thread: bool) -> Result<tokio::runtime::Runtime, Exit> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| fail(format!("cannot start the async runtime: {e}"), Exit::Failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_parses_k_of_n_and_refuses_out_of_range() {
        assert_eq!(parse_shard("2/4"), Ok((2, 4)));
        assert!(parse_shard("0/4").is_err());
        assert!(parse_shard("5/4").is_err());
        assert!(parse_shard("4").is_err());
    }

    #[test]
    fn build_commit_is_a_sha_or_unknown() {
        assert!(
            BUILD_COMMIT == "unknown"
                || (BUILD_COMMIT.len() >= 7 && BUILD_COMMIT.chars().all(|c| c.is_ascii_hexdigit())),
            "{BUILD_COMMIT}"
        );
    }
}
