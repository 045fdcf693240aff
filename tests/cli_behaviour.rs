//! The command line as scripts meet it (`docs/cli.md`): a closed pipe is not a crash, an
//! unreachable engine has its own exit code (3), closed sets of values are checked by the parser
//! (exit 2, listing the possible values), and renamed flags keep their old spelling.

mod common;

use common::run::qlab_command as qlab;
use std::net::TcpListener;
use std::process::{Output, Stdio};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts `out` (of the case `what`) exited with `code`, its stderr saying `needle`.
fn assert_exit(out: &Output, code: i32, needle: &str, what: &str) {
    assert_eq!(out.status.code(), Some(code), "{what}: {out:?}");
    let stderr = stderr(out);
    assert!(stderr.contains(needle), "{what}: {stderr}");
}

/// A loopback URL where nothing listens: a port the kernel handed out, then closed again.
fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("local addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// `qlab scenario list | head -1`: the reader is gone before qlab writes its first line.
#[test]
fn listing_into_a_closed_pipe_exits_0_without_a_panic() {
    let mut child = qlab()
        .args(["scenario", "list", "scenarios/ingest"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qlab");
    // Close the read end at once: every line qlab writes meets a broken pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("qlab ends");
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn r7_notify_exits_3_when_the_engine_cannot_be_reached() {
    let url = closed_port_url();
    let out = qlab()
        .args(["notify", "--url", &url, "--token", "t", "--source", "osce"])
        .args(["--ip", "10.110.0.11", "--threat", "TROJ_GENERIC.A"])
        .args(["--attempts", "2", "--timeout", "2s"])
        .output()
        .expect("run qlab");
    assert_exit(&out, 3, "cannot reach the engine", "notify");
}

#[test]
fn engine_commands_exit_3_when_the_engine_cannot_be_reached() {
    let url = closed_port_url();
    for args in [
        vec!["engine", "status"],
        vec!["engine", "quarantine", "/tenant-a/vdi-001"],
        vec![
            "engine",
            "decide",
            "/tenant-a/vdi-001",
            "--choice",
            "reboot",
        ],
    ] {
        let out = qlab()
            .args(&args)
            .args(["--url", &url, "--token", "t", "--timeout", "2s"])
            .output()
            .expect("run qlab");
        assert_eq!(out.status.code(), Some(3), "{args:?}: {out:?}");
    }
}

#[test]
fn a_bad_url_or_a_missing_token_is_bad_input_not_an_outage() {
    let bad_url = qlab()
        .args(["engine", "status", "--url", "not a url", "--token", "t"])
        .output()
        .expect("run qlab");
    assert_eq!(bad_url.status.code(), Some(2), "{bad_url:?}");
    let no_token = qlab()
        .args(["engine", "status", "--url", &closed_port_url()])
        .output()
        .expect("run qlab");
    assert_eq!(no_token.status.code(), Some(2), "{no_token:?}");
}

#[test]
fn r1_r5_closed_sets_are_checked_by_the_parser_with_their_values() {
    for (args, listed) in [
        (
            vec![
                "notify", "--source", "osce", "--ip", "10.0.0.1", "--threat", "T",
            ]
            .into_iter()
            .chain(["--category", "worm"])
            .collect::<Vec<_>>(),
            "virus, malware, spyware, grayware, cnc, outbreak, other",
        ),
        (
            vec!["engine", "decide", "/a", "--choice", "none"],
            "quarantine, reboot, quarantine_reboot",
        ),
        (
            vec!["explore", "--topology", "t.toml", "--effects", "busy,reset"],
            "reject, unavailable, timeout",
        ),
        (vec!["run", "--mode", "fast"], "sim, wire, both"),
    ] {
        let out = qlab().args(&args).output().expect("run qlab");
        assert_exit(&out, 2, listed, &format!("{args:?}"));
    }
}

#[test]
fn sim_serve_takes_write_config_and_its_old_name() {
    for flag in ["--write-config", "--print-config"] {
        let out = qlab()
            .args(["sim", "serve", "--topology", "no-such-topology.toml"])
            .args([flag, "engine.toml"])
            .output()
            .expect("run qlab");
        // The flag parsed (no usage error); the missing topology is what fails.
        assert_exit(&out, 2, "no-such-topology.toml", flag);
    }
}

/// A value the command line takes is spelt as in files, the API and the journal: the parser's
/// spelling of each closed set is the serde one, and only the values that make no sense on the
/// command line are left out (`docs/cli.md`).
#[test]
fn command_line_values_are_spelt_as_in_files() {
    use clap::ValueEnum;
    use quarantine_lab::model::topology::Action;
    use quarantine_lab::model::Category;
    use quarantine_lab::scenario::runner::Mutant;
    use quarantine_lab::sim::faults::FaultEffect;

    /// The values the parser offers, spelt by serde; panics where the parser spells one otherwise.
    fn offered<T: ValueEnum + serde::Serialize>() -> Vec<String> {
        T::value_variants()
            .iter()
            .map(|value| {
                let serde = serde_json::to_value(value).unwrap();
                let name = value
                    .to_possible_value()
                    .expect("offered")
                    .get_name()
                    .to_string();
                assert_eq!(Some(name.as_str()), serde.as_str());
                name
            })
            .collect()
    }
    assert_eq!(offered::<Category>().len(), 7);
    // `none` is a policy action, not an administrator's choice.
    assert_eq!(
        offered::<Action>(),
        ["quarantine", "reboot", "quarantine_reboot"]
    );
    // Only the effects sim mode plays: no wire-only `reset` or `blackhole`.
    let effects: Vec<String> = quarantine_lab::explore::EFFECTS
        .iter()
        .map(|e| {
            serde_json::to_value(e)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(offered::<FaultEffect>(), effects);
    // Mutants are not in files: their spelling is `Mutant::name`.
    for m in Mutant::ALL {
        let p = m.to_possible_value().expect("every mutant is offered");
        assert_eq!(p.get_name(), m.name());
    }
}
