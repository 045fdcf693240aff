//! ePO Web API pollers (`[[epo_pollers]]`): poll every interval, submit each new event, and
//! advance the cursor only once every submitted detection is durable (R7).
//!
//! The cursor (ePO's `AutoID`) is kept in a small file next to the journal,
//! `<journal>.epo-cursor.<source>`, written after the batch's detections committed. Losing it
//! (or a crash between the commits and the cursor write) only re-reads events: their ids
//! (`epo-autoid-N`) make the repeats duplicates (R4).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::config::EpoPollerConfig;
use super::metrics::{Channel, Metrics, Reject};
use crate::engine::{Engine, EngineError};
use crate::ingest::EpoPoller;

/// Most polls in a row without waiting the interval, while a backlog drains.
const MAX_CATCH_UP_POLLS: u32 = 100;

/// Starts the poller for `config`; a poller that cannot be built is logged and counted, the
/// rest of the daemon runs on.
pub(crate) fn spawn(
    tasks: &mut JoinSet<Result<(), String>>,
    config: &EpoPollerConfig,
    journal: &Path,
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
    call_timeout: Duration,
) {
    let poller = match EpoPoller::new(
        config.source.clone(),
        config.url.clone(),
        config.user.clone(),
        config.password.clone(),
        call_timeout,
    )
    .and_then(|p| match &config.ca_file {
        None => Ok(p),
        Some(file) => match std::fs::read(file) {
            Ok(pem) => p.with_ca_pem(&pem),
            Err(e) => Err(crate::ingest::IngestError::Transport(format!(
                "ca_file {}: {e}",
                file.display()
            ))),
        },
    }) {
        Ok(p) => p,
        Err(e) => {
            metrics.reject(
                Reject::EpoPollFailed,
                &format!("{}: cannot start polling: {}", config.source, e.reason()),
            );
            return;
        }
    };
    let cursor_file = cursor_path(journal, &config.source);
    let interval = config.interval;
    tasks.spawn(async move {
        run(poller, cursor_file, interval, engine, metrics, stop).await;
        Ok(())
    });
}

/// `<journal>.epo-cursor.<source>`, with the source made safe for a file name.
fn cursor_path(journal: &Path, source: &str) -> PathBuf {
    let safe: String = source
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut name = journal.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".epo-cursor.{safe}"));
    journal.with_file_name(name)
}

fn load_cursor(file: &Path) -> i64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// Writes the cursor atomically (temp file, fsync, rename).
fn save_cursor(file: &Path, cursor: i64) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = file.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(cursor.to_string().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)
}

async fn run(
    mut poller: EpoPoller,
    cursor_file: PathBuf,
    interval: Duration,
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let source = poller.source().to_string();
    let mut cursor = load_cursor(&cursor_file);
    let mut catch_up = 0;
    loop {
        let before = cursor;
        cursor = poll(&mut poller, cursor, &cursor_file, &engine, &metrics).await;
        // A batch that moved the cursor may have left more behind it: poll again at once,
        // a bounded number of times, before waiting the interval.
        if cursor > before && catch_up < MAX_CATCH_UP_POLLS {
            catch_up += 1;
            if *stop.borrow() {
                return;
            }
            continue;
        }
        catch_up = 0;
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        tracing::debug!(source, cursor, "ePO poll");
    }
}

/// One poll; returns the cursor to keep.
async fn poll(
    poller: &mut EpoPoller,
    cursor: i64,
    cursor_file: &Path,
    engine: &Engine,
    metrics: &Metrics,
) -> i64 {
    let source = poller.source().to_string();
    let result = poller.poll_once(cursor).await;
    for (auto_id, e) in poller.take_rejected() {
        metrics.reject(
            Reject::EpoBadRow,
            &format!("{source}: event AutoID {auto_id}: {}", e.reason()),
        );
    }
    let (detections, next) = match result {
        Ok(r) => r,
        Err(e) => {
            metrics.reject(Reject::EpoPollFailed, &format!("{source}: {}", e.reason()));
            return cursor;
        }
    };
    for (auto_id, detection) in detections {
        match engine.submit_detection(detection).await {
            Ok(_) => metrics.accepted(Channel::Epo),
            Err(e @ (EngineError::Halted | EngineError::Journal(_))) => {
                // Not durable: keep the cursor so the next poll brings the batch again.
                metrics.reject(
                    Reject::EpoRefused,
                    &format!("{source}: event AutoID {auto_id}: {e}; will retry"),
                );
                return cursor;
            }
            Err(e) => {
                // A permanent refusal: skipping it keeps one bad event from stalling the rest.
                metrics.reject(
                    Reject::EpoRefused,
                    &format!("{source}: event AutoID {auto_id}: {e}"),
                );
            }
        }
    }
    if next != cursor {
        if let Err(e) = save_cursor(cursor_file, next) {
            tracing::warn!(source, error = %e, file = %cursor_file.display(),
                "cannot store the ePO cursor; a restart will re-read events (deduplicated)");
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_files_sit_next_to_the_journal_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal.sqlite");
        let file = cursor_path(&journal, "epo/1");
        assert_eq!(file, dir.path().join("journal.sqlite.epo-cursor.epo_1"));
        assert_eq!(load_cursor(&file), 0);
        save_cursor(&file, 42).unwrap();
        assert_eq!(load_cursor(&file), 42);
    }
}
