//! A minimal `tracing` subscriber for the daemon: one line per event on stderr,
//! `LEVEL target: message key=value ...`, filtered by level (`QLAB_LOG`, default `info`).
//! Rejected input (R18) and delivery failures are logged through it. Spans are not tracked:
//! the daemon's log lines carry their context as fields.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Environment variable with the most verbose level logged: `error`, `warn`, `info`, `debug`
/// or `trace`.
pub const LOG_ENV: &str = "QLAB_LOG";

/// Writes events at or above a level to stderr.
#[derive(Debug)]
pub struct StderrLogger {
    max: Level,
    next_span: AtomicU64,
}

impl StderrLogger {
    /// A logger for events at `max` and more severe.
    pub fn new(max: Level) -> StderrLogger {
        StderrLogger {
            max,
            next_span: AtomicU64::new(1),
        }
    }
}

/// Installs a [`StderrLogger`] as the global subscriber with the level from [`LOG_ENV`];
/// does nothing when a subscriber is already installed.
pub fn init_from_env() {
    let level = std::env::var(LOG_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<Level>().ok())
        .unwrap_or(Level::INFO);
    let _ = tracing::subscriber::set_global_default(StderrLogger::new(level));
}

struct Line(String);

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl Subscriber for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // Level ordering: TRACE > DEBUG > INFO > WARN > ERROR (more verbose is greater).
        *metadata.level() <= self.max
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed).max(1))
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let mut line = Line(format!("{} {}:", meta.level(), meta.target()));
        event.record(&mut line);
        line.0.push('\n');
        // A failed write to stderr has nowhere to be reported.
        let _ = std::io::stderr().lock().write_all(line.0.as_bytes());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}
