//! JSON-RPC 2.0 over a pair of byte streams, one JSON object per line: the client half of the
//! plugin protocol, generic over any `AsyncRead`/`AsyncWrite` (a child's pipes in production,
//! `tokio::io::duplex` in tests).
//!
//! A [`Connection`] owns two tasks: a writer that sends request lines in the order calls queue
//! them, and a reader that matches answers to calls by id, in whatever order they come. Every
//! call has a deadline; its outcome class follows the protocol (module docs of
//! [`super`]): an error with `data.class` is that class, any other error, a malformed answer,
//! an answer past the deadline or a connection that closes first is `unknown`, and a call that
//! never left (connection down, too many in flight, request too large) is `unavailable`,
//! `busy` or `rejected`, none of which may have changed the device.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

use crate::adapters::{DeviceError, DeviceResult, OutcomeClass};

/// Longest line read from or written to a plugin (bytes, without the line break).
pub const MAX_LINE_BYTES: usize = 1024 * 1024;
/// Most calls in flight on one connection; one more is refused as `busy`, never sent.
pub const MAX_PENDING: usize = 1024;
/// Longest error detail kept from a plugin's answer (characters).
pub const MAX_DETAIL_CHARS: usize = 500;

/// The bounds of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line, in bytes; longer answers are dropped (their call ends at its deadline).
    pub max_line_bytes: usize,
    /// Most calls in flight.
    pub max_pending: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line_bytes: MAX_LINE_BYTES,
            max_pending: MAX_PENDING,
        }
    }
}

/// Replaces a secret (the device password) by `***` in anything the plugin says that ends up
/// in a log line or an error detail: a plugin that echoes its input must not leak it.
#[derive(Debug, Clone, Default)]
pub struct Redactor(Option<Arc<str>>);

impl Redactor {
    /// Redacts `secret`; an empty secret redacts nothing.
    pub fn new(secret: &str) -> Redactor {
        Redactor((!secret.is_empty()).then(|| Arc::from(secret)))
    }

    /// `text` with every occurrence of the secret replaced.
    pub fn apply(&self, text: &str) -> String {
        match &self.0 {
            Some(secret) if text.contains(&**secret) => text.replace(&**secret, "***"),
            _ => text.to_string(),
        }
    }
}

/// What [`read_line_capped`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineRead {
    /// A whole line (or the last bytes before the end of the stream) is in the buffer.
    Line,
    /// The line had this many bytes, more than the cap: the buffer holds its first `cap` bytes
    /// and the rest was read and dropped.
    TooLong(usize),
    /// The stream ended.
    Eof,
}

/// Reads one `\n`-terminated line into `buf` (without the break), keeping at most `cap` bytes:
/// a peer cannot make the reader buffer more than that, however long its line.
pub async fn read_line_capped<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> io::Result<LineRead> {
    buf.clear();
    let mut total = 0usize;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match total {
                0 => LineRead::Eof,
                n if n > cap => LineRead::TooLong(n),
                _ => LineRead::Line,
            });
        }
        let newline = available.iter().position(|b| *b == b'\n');
        let chunk = &available[..newline.unwrap_or(available.len())];
        let room = cap.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        total = total.saturating_add(chunk.len());
        let used = newline.map_or(available.len(), |i| i + 1);
        reader.consume(used);
        if newline.is_some() {
            return Ok(if total > cap {
                LineRead::TooLong(total)
            } else {
                LineRead::Line
            });
        }
    }
}

type Answer = DeviceResult<Value>;

/// Calls waiting for their answer, and why the connection closed once it has.
#[derive(Default)]
struct Pending {
    calls: HashMap<u64, oneshot::Sender<Answer>>,
    closed: Option<String>,
}

/// One request line.
#[derive(Serialize)]
struct Request<'a> {
    jsonrpc: &'static str,
    id: u64,
    method: &'a str,
    params: &'a Value,
}

/// A JSON-RPC client over one plugin's stdin/stdout.
pub struct Connection {
    label: Arc<str>,
    limits: Limits,
    redactor: Redactor,
    next_id: AtomicU64,
    pending: Arc<Mutex<Pending>>,
    /// Request lines for the writer; `None` once the input was closed on purpose.
    outgoing: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    closed: watch::Receiver<bool>,
}

impl Connection {
    /// Starts the reader and writer tasks on `reader` (the plugin's stdout) and `writer` (its
    /// stdin). `label` names the plugin in log lines. Must be called inside a Tokio runtime.
    pub fn new<R, W>(
        reader: R,
        writer: W,
        label: &str,
        limits: Limits,
        redactor: Redactor,
    ) -> Arc<Connection>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let label: Arc<str> = Arc::from(label);
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (closed_tx, closed) = watch::channel(false);
        let closed_tx = Arc::new(closed_tx);
        // Bounded like the pending map: a plugin that stops reading holds back at most this many
        // lines before callers wait (and then fail at their deadline, unsent).
        let (tx, rx) = mpsc::channel(limits.max_pending.max(1));
        tokio::spawn(write_lines(
            writer,
            rx,
            pending.clone(),
            closed_tx.clone(),
            label.clone(),
        ));
        tokio::spawn(read_answers(
            reader,
            pending.clone(),
            closed_tx,
            label.clone(),
            limits,
            redactor.clone(),
        ));
        Arc::new(Connection {
            label,
            limits,
            redactor,
            next_id: AtomicU64::new(1),
            pending,
            outgoing: Mutex::new(Some(tx)),
            closed,
        })
    }

    /// Calls `method` with `params`, waiting at most `timeout` for the answer.
    pub async fn call(&self, method: &str, params: &Value, timeout: Duration) -> Answer {
        let deadline = tokio::time::Instant::now() + timeout;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut line = serde_json::to_vec(&Request {
            jsonrpc: "2.0",
            id,
            method,
            params,
        })
        .map_err(|e| DeviceError::new(OutcomeClass::Rejected, format!("cannot encode: {e}")))?;
        if line.len() > self.limits.max_line_bytes {
            return Err(DeviceError::new(
                OutcomeClass::Rejected,
                format!(
                    "plugin {}: a {method} request of {} bytes exceeds the line limit of {} \
                     bytes; not sent",
                    self.label,
                    line.len(),
                    self.limits.max_line_bytes
                ),
            ));
        }
        line.push(b'\n');
        let sender = lock(&self.outgoing).clone();
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            if let Some(reason) = &pending.closed {
                return Err(self.unsent(method, reason));
            }
            if pending.calls.len() >= self.limits.max_pending {
                return Err(DeviceError::new(
                    OutcomeClass::Busy,
                    format!(
                        "plugin {}: {} calls already in flight; {method} not sent",
                        self.label,
                        pending.calls.len()
                    ),
                ));
            }
            pending.calls.insert(id, tx);
        }
        let Some(sender) = sender else {
            self.forget(id);
            return Err(self.unsent(method, "its input is closed"));
        };
        match tokio::time::timeout_at(deadline, sender.send(line)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                self.forget(id);
                return Err(self.unsent(method, "it stopped reading its input"));
            }
            Err(_) => {
                self.forget(id);
                return Err(DeviceError::new(
                    OutcomeClass::Unavailable,
                    format!(
                        "plugin {}: {method} not sent within {timeout:?}: the plugin does not \
                         read its input",
                        self.label
                    ),
                ));
            }
        }
        tracing::trace!(plugin = %self.label, id, method, "plugin call sent");
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(DeviceError::new(
                OutcomeClass::Unknown,
                format!("plugin {}: {method} lost its answer", self.label),
            )),
            Err(_) => {
                self.forget(id);
                Err(DeviceError::new(
                    OutcomeClass::Unknown,
                    format!(
                        "plugin {}: no answer to {method} within the call timeout ({timeout:?})",
                        self.label
                    ),
                ))
            }
        }
    }

    /// Closes the plugin's input once the lines already queued are written (after
    /// `shutdown`): a plugin reading to the end of its input then exits.
    pub fn close_input(&self) {
        lock(&self.outgoing).take();
    }

    /// Resolves once the connection closed (the plugin's output ended or its input broke).
    pub async fn closed(&self) {
        let mut closed = self.closed.clone();
        let _ = closed.wait_for(|c| *c).await;
    }

    /// Whether the connection closed.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Number of calls waiting for an answer.
    pub fn in_flight(&self) -> usize {
        lock(&self.pending).calls.len()
    }

    /// Closes the connection: every call in flight ends `unknown` with `reason`, later calls
    /// are `unavailable`.
    pub fn fail_all(&self, reason: &str) {
        close(&self.pending, reason);
    }

    fn forget(&self, id: u64) {
        lock(&self.pending).calls.remove(&id);
    }

    fn unsent(&self, method: &str, reason: &str) -> DeviceError {
        DeviceError::new(
            OutcomeClass::Unavailable,
            format!(
                "plugin {}: {method} not sent: {}",
                self.label,
                self.redactor.apply(reason)
            ),
        )
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks leaves the map consistent (inserts and removes only).
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Marks the connection closed and ends every call in flight as `unknown`: it was sent and
/// nobody will say whether it was carried out.
fn close(pending: &Mutex<Pending>, reason: &str) {
    let calls = {
        let mut pending = lock(pending);
        if pending.closed.is_none() {
            pending.closed = Some(reason.to_string());
        }
        std::mem::take(&mut pending.calls)
    };
    for (_, tx) in calls {
        let _ = tx.send(Err(DeviceError::new(
            OutcomeClass::Unknown,
            format!("the call was in flight when the plugin connection closed: {reason}"),
        )));
    }
}

async fn write_lines<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut lines: mpsc::Receiver<Vec<u8>>,
    pending: Arc<Mutex<Pending>>,
    closed: Arc<watch::Sender<bool>>,
    label: Arc<str>,
) {
    while let Some(line) = lines.recv().await {
        let written = async {
            writer.write_all(&line).await?;
            writer.flush().await
        };
        if let Err(e) = written.await {
            tracing::warn!(plugin = %label, error = %e, "cannot write to the plugin");
            close(&pending, &format!("cannot write to the plugin: {e}"));
            closed.send_replace(true);
            return;
        }
    }
    // Every sender is gone: the input is closed on purpose (shutdown) or the connection was
    // dropped. Dropping the writer closes the plugin's stdin.
    let _ = writer.shutdown().await;
}

async fn read_answers<R: AsyncRead + Unpin>(
    reader: R,
    pending: Arc<Mutex<Pending>>,
    closed: Arc<watch::Sender<bool>>,
    label: Arc<str>,
    limits: Limits,
    redactor: Redactor,
) {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    let reason = loop {
        match read_line_capped(&mut reader, &mut buf, limits.max_line_bytes).await {
            Ok(LineRead::Eof) => break "the plugin closed its output".to_string(),
            Err(e) => break format!("cannot read the plugin's output: {e}"),
            Ok(LineRead::TooLong(n)) => {
                // The answer cannot be matched to its call without buffering it whole: the call
                // ends `unknown` at its deadline, the connection goes on.
                tracing::warn!(
                    plugin = %label,
                    bytes = n,
                    limit = limits.max_line_bytes,
                    "plugin output line over the limit dropped"
                );
            }
            Ok(LineRead::Line) => dispatch(&buf, &pending, &label, &redactor),
        }
    };
    close(&pending, &reason);
    closed.send_replace(true);
}

/// Hands one answer line to the call waiting for it.
fn dispatch(line: &[u8], pending: &Mutex<Pending>, label: &str, redactor: &Redactor) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if text.is_empty() {
        return;
    }
    let message: Value = match serde_json::from_str(text) {
        Ok(Value::Object(m)) => Value::Object(m),
        Ok(_) | Err(_) => {
            tracing::warn!(
                plugin = %label,
                line = %snippet(&redactor.apply(text)),
                "plugin output line is not a JSON object; ignored"
            );
            return;
        }
    };
    let Some(id) = message.get("id").and_then(Value::as_u64) else {
        if message.get("method").is_some() {
            tracing::debug!(plugin = %label, "notification from the plugin ignored");
        } else {
            tracing::warn!(
                plugin = %label,
                line = %snippet(&redactor.apply(text)),
                "plugin answer without a numeric id; ignored"
            );
        }
        return;
    };
    let Some(tx) = lock(pending).calls.remove(&id) else {
        tracing::debug!(plugin = %label, id, "answer to no call in flight (late?); ignored");
        return;
    };
    let answer = match (message.get("result"), message.get("error")) {
        (Some(result), None) => Ok(result.clone()),
        (None, Some(error)) => Err(device_error(error, label, redactor)),
        _ => Err(DeviceError::new(
            OutcomeClass::Unknown,
            format!("plugin {label}: an answer needs exactly one of result and error"),
        )),
    };
    let _ = tx.send(answer);
}

/// The class a JSON-RPC error carries in `data.class`; any other error is `unknown`.
pub fn device_error(error: &Value, label: &str, redactor: &Redactor) -> DeviceError {
    let message = error.get("message").and_then(Value::as_str).unwrap_or("");
    let data = error.get("data");
    let class = data
        .and_then(|d| d.get("class"))
        .and_then(Value::as_str)
        .and_then(class_named);
    let detail = data
        .and_then(|d| d.get("detail"))
        .and_then(Value::as_str)
        .unwrap_or(message);
    let detail = snippet(&redactor.apply(detail));
    match class {
        Some(class) => DeviceError::new(class, format!("plugin {label}: {detail}")),
        None => {
            let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
            DeviceError::new(
                OutcomeClass::Unknown,
                format!("plugin {label}: error {code} without an outcome class: {detail}"),
            )
        }
    }
}

/// The class spelled `name` in the protocol.
pub fn class_named(name: &str) -> Option<OutcomeClass> {
    name.parse().ok()
}

/// The start of a text a plugin wrote: its lines are not trusted to be short.
pub fn snippet(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = chars.by_ref().take(MAX_DETAIL_CHARS).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}
