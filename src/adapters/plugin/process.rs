//! The plugin as a child process: start it, say `initialize`, log its stderr, notice when it
//! exits and start it again with backoff, and stop it with `shutdown`.
//!
//! One supervisor task per plugin owns the child. While a plugin runs, its [`Connection`] is
//! published in a `watch` channel that calls read; while it is down the channel holds `None`
//! and calls wait for the next start (up to their deadline, then `unavailable`: never sent).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::Instant;

use super::rpc::{read_line_capped, snippet, Connection, Limits, LineRead, Redactor};
use super::{Capabilities, Family, PluginDevice, PluginError, PROTOCOL_VERSION};

/// Longest plugin stderr line logged (bytes); the rest of the line is dropped.
pub const MAX_STDERR_LINE_BYTES: usize = 2048;

/// How a plugin is started and supervised.
#[derive(Debug, Clone)]
pub struct Supervision {
    /// Folder the plugin runs in; a relative program path with a `/` is resolved against it.
    /// `None`: the engine's own working directory.
    pub cwd: Option<PathBuf>,
    /// Longest the plugin may take to start and answer `initialize`.
    pub init_timeout: Duration,
    /// First wait before starting an exited plugin again; doubled after every failed start.
    pub backoff_initial: Duration,
    /// Longest wait between starts.
    pub backoff_max: Duration,
    /// A plugin that ran this long before exiting is started again after `backoff_initial`.
    pub stable_after: Duration,
    /// How long `shutdown`, then the plugin's exit, may take before it is killed.
    pub shutdown_grace: Duration,
    /// Line and in-flight bounds of the connection.
    pub limits: Limits,
}

impl Default for Supervision {
    fn default() -> Self {
        Supervision {
            cwd: None,
            init_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            stable_after: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(2),
            limits: Limits::default(),
        }
    }
}

/// What the plugin answered to `initialize`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Initialized {
    pub(super) capabilities: Capabilities,
}

/// A started plugin: its child process and the connection over its pipes.
pub(super) struct Running {
    child: Child,
    pub(super) conn: Arc<Connection>,
}

/// State the supervisor shares with the adapter.
pub(super) struct Shared {
    pub(super) device: PluginDevice,
    pub(super) command: Vec<String>,
    pub(super) supervision: Supervision,
    pub(super) current: watch::Sender<Option<Arc<Connection>>>,
    pub(super) capabilities: Mutex<Capabilities>,
    pub(super) starts: AtomicU64,
}

impl Shared {
    pub(super) fn capabilities(&self) -> Capabilities {
        *self
            .capabilities
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn set_capabilities(&self, capabilities: Capabilities) {
        let mut current = self
            .capabilities
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *current != capabilities {
            tracing::warn!(
                plugin = %self.device.name,
                before = ?*current,
                now = ?capabilities,
                "the restarted plugin claims other capabilities; the engine's batching was \
                 sized at start"
            );
            *current = capabilities;
        }
    }
}

/// The program and arguments, the program resolved against `cwd` when it is a relative path.
fn command(cmd: &[String], cwd: Option<&Path>) -> Result<Command, PluginError> {
    let (program, args) = cmd
        .split_first()
        .filter(|(p, _)| !p.is_empty())
        .ok_or_else(|| PluginError::Command("the plugin command is empty".into()))?;
    let mut program = PathBuf::from(program);
    if let Some(cwd) = cwd {
        if program.is_relative() && program.components().count() > 1 {
            program = cwd.join(program);
        }
    }
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A supervisor that goes away (runtime shut down) takes its plugin with it.
        .kill_on_drop(true);
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    Ok(command)
}

/// Starts the plugin and initializes it; the family it claims must be the device's.
pub(super) async fn start(shared: &Shared) -> Result<(Running, Initialized), PluginError> {
    let device = &shared.device;
    let supervision = &shared.supervision;
    let mut child = command(&shared.command, supervision.cwd.as_deref())?
        .spawn()
        .map_err(|e| {
            PluginError::Command(format!("cannot start {:?}: {e}", shared.command.join(" ")))
        })?;
    let redactor = Redactor::new(&device.password);
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.start_kill();
        return Err(PluginError::Command(
            "the plugin's pipes are missing".into(),
        ));
    };
    tokio::spawn(log_stderr(stderr, device.name.clone(), redactor.clone()));
    let conn = Connection::new(stdout, stdin, &device.name, supervision.limits, redactor);
    let params = json!({ "device": device.wire() });
    let answer = conn
        .call("initialize", &params, supervision.init_timeout)
        .await;
    let initialized = answer
        .map_err(|e| PluginError::Initialize(e.detail))
        .and_then(|reply| initialized(&reply, device.family));
    match initialized {
        Ok(initialized) => {
            shared.starts.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                plugin = %device.name,
                pid = child.id().unwrap_or(0),
                capabilities = ?initialized.capabilities,
                "plugin started"
            );
            Ok((Running { child, conn }, initialized))
        }
        Err(e) => {
            let _ = child.kill().await;
            Err(e)
        }
    }
}

/// Checks the `initialize` answer: protocol version, family, capabilities.
fn initialized(reply: &Value, family: Family) -> Result<Initialized, PluginError> {
    let bad = |what: String| PluginError::Initialize(what);
    let version = reply.get("protocol_version").and_then(Value::as_u64);
    if version != Some(u64::from(PROTOCOL_VERSION)) {
        return Err(bad(format!(
            "protocol_version {} is not supported; the engine speaks {PROTOCOL_VERSION}",
            reply
                .get("protocol_version")
                .map_or("(missing)".to_string(), Value::to_string)
        )));
    }
    let claimed = reply.get("family").and_then(Value::as_str).unwrap_or("");
    if claimed != family.as_str() {
        return Err(PluginError::Family {
            expected: family,
            claimed: snippet(claimed),
        });
    }
    let caps = reply.get("capabilities");
    let batch = caps
        .and_then(|c| c.get("batch"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let max_batch = match caps.and_then(|c| c.get("max_batch")) {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(n) if n >= 1 => Some(n),
            _ => {
                return Err(bad(format!(
                    "capabilities.max_batch {v} is not a count >= 1"
                )))
            }
        },
    };
    Ok(Initialized {
        capabilities: Capabilities { batch, max_batch },
    })
}

/// Logs the plugin's stderr line by line, each cut at [`MAX_STDERR_LINE_BYTES`] and with the
/// password redacted.
async fn log_stderr<R: AsyncRead + Unpin>(stderr: R, plugin: String, redactor: Redactor) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        match read_line_capped(&mut reader, &mut buf, MAX_STDERR_LINE_BYTES).await {
            Ok(LineRead::Eof) | Err(_) => return,
            Ok(read) => {
                let text = redactor.apply(String::from_utf8_lossy(&buf).trim_end());
                match read {
                    LineRead::TooLong(n) => {
                        tracing::info!(plugin = %plugin, cut_from_bytes = n, "stderr: {text}…")
                    }
                    _ => tracing::info!(plugin = %plugin, "stderr: {text}"),
                }
            }
        }
    }
}

/// Runs the plugin until `stop` turns true: publishes its connection, and when it exits, ends
/// its calls in flight as `unknown` and starts it again after a doubling backoff.
pub(super) async fn supervise(
    shared: Arc<Shared>,
    mut running: Running,
    mut stop: watch::Receiver<bool>,
) {
    let supervision = shared.supervision.clone();
    let name = shared.device.name.clone();
    let mut backoff = supervision.backoff_initial;
    loop {
        let started = Instant::now();
        shared.current.send_replace(Some(running.conn.clone()));
        let why = tokio::select! {
            status = running.child.wait() => {
                // Answers the plugin wrote before exiting are still in the pipe: let the reader
                // drain them before the calls left over are declared unknown.
                let _ = tokio::time::timeout(Duration::from_secs(1), running.conn.closed()).await;
                Some(match status {
                    Ok(status) => format!("the plugin exited ({status})"),
                    Err(e) => format!("cannot wait for the plugin: {e}"),
                })
            }
            _ = running.conn.closed() => {
                let _ = running.child.start_kill();
                let _ = running.child.wait().await;
                Some("the plugin's output closed; killed".to_string())
            }
            _ = stopped(&mut stop) => None,
        };
        let Some(why) = why else {
            shared.current.send_replace(None);
            shut_down(running, &supervision, &name).await;
            return;
        };
        shared.current.send_replace(None);
        let in_flight = running.conn.in_flight();
        running.conn.fail_all(&why);
        if started.elapsed() >= supervision.stable_after {
            backoff = supervision.backoff_initial;
        }
        tracing::warn!(
            plugin = %name,
            in_flight,
            restart_in = ?backoff,
            "{why}; its calls in flight are unknown"
        );
        running = loop {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stopped(&mut stop) => return,
            }
            backoff = (backoff * 2).min(supervision.backoff_max);
            let attempt = tokio::select! {
                r = start(&shared) => r,
                _ = stopped(&mut stop) => return,
            };
            match attempt {
                Ok((running, initialized)) => {
                    shared.set_capabilities(initialized.capabilities);
                    break running;
                }
                Err(e) => tracing::warn!(
                    plugin = %name,
                    error = %e,
                    restart_in = ?backoff,
                    "the plugin did not start"
                ),
            }
        };
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it before the caller's next await.
    let _ = stop.wait_for(|s| *s).await.is_ok();
}

/// `shutdown`, close its input, wait for the exit; kill it when any step takes too long.
async fn shut_down(mut running: Running, supervision: &Supervision, name: &str) {
    let grace = supervision.shutdown_grace;
    if let Err(e) = running.conn.call("shutdown", &json!({}), grace).await {
        tracing::debug!(plugin = %name, error = %e, "shutdown not answered");
    }
    running.conn.close_input();
    match tokio::time::timeout(grace, running.child.wait()).await {
        Ok(Ok(status)) => tracing::info!(plugin = %name, %status, "plugin stopped"),
        _ => {
            tracing::warn!(plugin = %name, "the plugin did not exit after shutdown; killed");
            let _ = running.child.kill().await;
        }
    }
    running.conn.fail_all("the plugin was stopped");
}

/// Counts starts, for tests and logs.
pub(super) fn starts(shared: &Shared) -> u64 {
    shared.starts.load(Ordering::Relaxed)
}
