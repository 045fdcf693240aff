//! Running the `qlab` binary and reading what it and the servers under test answer.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::Duration;

/// `qlab` at the crate root, without a token from the environment.
pub fn qlab_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_qlab"));
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("QLAB_TOKEN");
    command
}

/// Runs `qlab args` at the crate root to its end.
pub fn qlab_output(args: &[&str]) -> Output {
    qlab_command().args(args).output().expect("qlab runs")
}

/// Runs `qlab args`: its exit code (-1 when a signal ended it) and its stdout then stderr.
pub fn qlab_text(args: &[&str]) -> (i32, String) {
    let out = qlab_output(args);
    (out.status.code().unwrap_or(-1), text(&out))
}

/// A finished command's stdout then stderr, as text.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `qlab engine serve --config <config>` started, its stdout piped (the ready line comes first,
/// see [`first_line`]) and its stderr dropped.
pub fn engine_serve(config: &Path) -> Child {
    qlab_command()
        .args(["engine", "serve", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("qlab runs")
}

/// The first line of `stdout`, read on a thread of its own; `None` when none comes within
/// `timeout` (a server that never gets ready must not hang the test).
pub fn first_line(stdout: ChildStdout, timeout: Duration) -> Option<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(timeout).ok()
}

/// Sends `request`; fails the test on a transport error (the reply's status is the caller's).
pub async fn sent(request: reqwest::RequestBuilder) -> reqwest::Response {
    request.send().await.unwrap()
}

/// Sends `request` and decodes its JSON reply; fails the test on a transport or decoding error.
pub async fn json_of<T: serde::de::DeserializeOwned>(request: reqwest::RequestBuilder) -> T {
    sent(request).await.json().await.unwrap()
}
