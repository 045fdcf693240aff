//! The daemon's log: `tracing-subscriber` on stderr, one line per event with an RFC 3339 UTC
//! timestamp, level, target, message and fields.
//!
//! - `QLAB_LOG` is an [`EnvFilter`] directive list: `info` (the default), `debug`,
//!   `warn,quarantine_lab::daemon=debug`, ... An invalid value is reported on stderr and the
//!   default is used, so a typo never silences the log.
//! - `QLAB_LOG_FORMAT=json` (or `qlab engine serve --log-format json`) writes one JSON object
//!   per line (`timestamp`, `level`, `target`, `fields`) for log collectors; `text` is the
//!   default.
//! - Errors are logged with their whole cause chain ([`Chain`]): `cannot send: connection
//!   refused (os error 111)` rather than the outermost message alone.
//!
//! Rejected input (R18) and delivery failures are logged through it; the daemon's log lines
//! carry their context as fields.

use std::fmt;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

/// Environment variable with the log filter (`EnvFilter` syntax; default `info`).
pub const LOG_ENV: &str = "QLAB_LOG";

/// Environment variable with the log format: `text` (default) or `json`.
pub const LOG_FORMAT_ENV: &str = "QLAB_LOG_FORMAT";

/// The filter when [`LOG_ENV`] is unset or invalid.
pub const DEFAULT_FILTER: &str = "info";

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-12-04T21:00:00.123456Z  INFO target: message key=value`.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format {other:?}: use \"text\" or \"json\""
            )),
        }
    }
}

/// The filter for `value` (the content of [`LOG_ENV`]); an invalid one falls back to
/// [`DEFAULT_FILTER`] with the reason.
pub fn filter(value: Option<&str>) -> (EnvFilter, Option<String>) {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => (EnvFilter::new(DEFAULT_FILTER), None),
        Some(v) => match EnvFilter::try_new(v) {
            Ok(f) => (f, None),
            Err(e) => (
                EnvFilter::new(DEFAULT_FILTER),
                Some(format!(
                    "{LOG_ENV}={v:?} is not a valid filter ({e}); logging at {DEFAULT_FILTER}"
                )),
            ),
        },
    }
}

/// Installs the global subscriber from [`LOG_ENV`] and [`LOG_FORMAT_ENV`]; `format` (a
/// command-line flag) wins over the environment. Does nothing when a subscriber is already
/// installed.
pub fn init(format: Option<LogFormat>) {
    let mut problems = Vec::new();
    let format = format.unwrap_or_else(|| match std::env::var(LOG_FORMAT_ENV) {
        Ok(v) => v.parse().unwrap_or_else(|e| {
            problems.push(format!("{LOG_FORMAT_ENV}: {e}"));
            LogFormat::Text
        }),
        Err(_) => LogFormat::Text,
    });
    let (filter, problem) = filter(std::env::var(LOG_ENV).ok().as_deref());
    problems.extend(problem);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(false).try_init(),
    };
    if installed.is_ok() {
        for problem in problems {
            tracing::warn!("{problem}");
        }
    }
}

/// Installs the subscriber from the environment alone (see [`init`]).
pub fn init_from_env() {
    init(None);
}

/// Displays an error with its causes: `outer: cause: root cause`. A cause whose text the
/// message already contains (errors that print their source themselves) is not repeated.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(c) = cause {
            let part = c.to_string();
            if !part.is_empty() && !text.contains(&part) {
                text.push_str(": ");
                text.push_str(&part);
            }
            cause = c.source();
        }
        f.write_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot deliver")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open: {0}")]
    struct SaysItsSource(#[source] std::io::Error);

    #[test]
    fn r18_errors_are_logged_with_their_cause_chain() {
        let e = Outer(std::io::Error::other("connection refused"));
        assert_eq!(Chain(&e).to_string(), "cannot deliver: connection refused");
        // A message that already prints its source does not print it twice.
        let e = SaysItsSource(std::io::Error::other("no such file"));
        assert_eq!(Chain(&e).to_string(), "cannot open: no such file");
    }

    #[test]
    fn r18_a_bad_log_filter_falls_back_with_a_reason() {
        let (_, problem) = filter(Some("info,[[["));
        assert!(problem.is_some_and(|p| p.contains(LOG_ENV)));
        let (_, problem) = filter(Some("warn,quarantine_lab::daemon=debug"));
        assert!(problem.is_none());
        assert_eq!("JSON".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert!("xml".parse::<LogFormat>().is_err());
    }
}
