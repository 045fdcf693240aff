//! Records the commit the binary is built from, so report.json names the build rather than
//! whatever checkout `qlab` happens to run in.
//!
//! `QLAB_BUILD_COMMIT` is set for the crate's code (read with `option_env!` in `src/cli`): the
//! `QLAB_GIT_SHA` environment variable when given (a build outside a checkout, e.g. a container
//! build passing it as an argument), else `git rev-parse HEAD`; when neither gives one the
//! variable is left unset and reports say `unknown`.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=QLAB_GIT_SHA");
    let commit = std::env::var("QLAB_GIT_SHA")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| git(&["rev-parse", "HEAD"]));
    // Run again when HEAD moves: a commit, a checkout, a fetch that repacks the refs. Only files
    // that exist are named (cargo reruns every time for a missing one).
    if commit.is_some() {
        let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watched.push(git(&["rev-parse", "--git-path", &branch]));
        }
        watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
        for path in watched.into_iter().flatten() {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    if let Some(commit) = commit {
        println!("cargo:rustc-env=QLAB_BUILD_COMMIT={commit}");
    }
}
