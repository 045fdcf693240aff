//! Generated detections: the `outbreak = { ... }` event, one detection per L-Server under a path
//! prefix, so a 10,000-L-Server outbreak is a short scenario file.
//!
//! The scenario format lists `detect`, `command`, `crash` and `heal`; this event kind is the lab's
//! extension (documented in `scenarios/README.md`, "Format extensions"). It expands into plain
//! detections only when the runner builds its timeline ([`super::runner::build_timeline`], used by
//! both the sim and the wire runner), so the loaded scenario stays small and both modes send
//! exactly the same detections.
//!
//! The expansion is deterministic: the matching L-Servers in path order (byte order of the path
//! text), detection `n` (1-based) of `N` at `at + over * (n - 1) / (N - 1)` (all at `at` when
//! `N = 1`), with the L-Server's first NIC's IP and the event id `outbreak-<event>-<n>`, where
//! `<event>` is the event's position among the file's `[[events]]` (0-based, as in error keys).

use std::net::IpAddr;
use std::time::Duration;

use crate::model::{Category, Detection, LServer, Site};

/// Most detections the `outbreak` events of one scenario may generate together: the most
/// L-Servers `[generate]` can add, so every generated site can be reported in full, while a
/// scenario file cannot ask for an unbounded timeline.
pub const MAX_OUTBREAK_DETECTIONS: u64 = crate::model::generate::MAX_GENERATED;

/// A validated `outbreak = { ... }` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbreak {
    /// Position of the event among the file's `[[events]]` (0-based): part of every event id,
    /// so two outbreak events never generate the same id.
    pub event: usize,
    /// AV server that reports every detection.
    pub source: String,
    /// Path prefix of the L-Servers reported (`"/"`: all of them).
    pub lservers: String,
    /// Time from the first detection to the last one.
    pub over: Duration,
    /// Threat name of every detection.
    pub threat: String,
    /// Threat category of every detection.
    pub category: Category,
}

impl Outbreak {
    /// The event id of detection `n` (1-based).
    pub fn event_id(&self, n: usize) -> String {
        event_id(self.event, n)
    }

    /// The L-Servers of `site` this event reports, in path order.
    pub fn matching<'s>(&self, site: &'s Site) -> Vec<&'s LServer> {
        matching(site, &self.lservers)
    }

    /// The detections, each with its offset from the event's `at`, in sending order.
    pub fn detections(&self, site: &Site) -> Vec<(Duration, Detection)> {
        let lservers = self.matching(site);
        let count = lservers.len();
        lservers
            .into_iter()
            .enumerate()
            .map(|(i, ls)| {
                let detection = Detection {
                    source: self.source.clone(),
                    event_id: self.event_id(i + 1),
                    ip: first_ip(ls),
                    mac: None,
                    hostname: None,
                    threat: self.threat.clone(),
                    category: self.category,
                };
                (offset(self.over, i, count), detection)
            })
            .collect()
    }
}

/// `outbreak-<event>-<n>`.
pub(crate) fn event_id(event: usize, n: usize) -> String {
    format!("outbreak-{event}-{n}")
}

/// The L-Servers whose path starts with `prefix`, sorted by path.
pub(crate) fn matching<'s>(site: &'s Site, prefix: &str) -> Vec<&'s LServer> {
    let mut found: Vec<&LServer> = site
        .lservers
        .iter()
        .filter(|ls| ls.path.starts_with(prefix))
        .collect();
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

/// The IP the detection names: the L-Server's first NIC's (every L-Server has one).
pub(crate) fn first_ip(ls: &LServer) -> Option<IpAddr> {
    ls.nics.first().map(|n| n.ip)
}

/// Offset of detection `i` (0-based) of `count` spread evenly over `over`: the first at 0, the
/// last at `over`. Computed in whole nanoseconds, rounded down.
fn offset(over: Duration, i: usize, count: usize) -> Duration {
    if count < 2 {
        return Duration::ZERO;
    }
    let nanos = over.as_nanos() * i as u128 / (count as u128 - 1);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_spread_from_zero_to_over() {
        let over = Duration::from_secs(1);
        assert_eq!(offset(over, 0, 1), Duration::ZERO);
        assert_eq!(offset(over, 0, 5), Duration::ZERO);
        assert_eq!(offset(over, 1, 5), Duration::from_millis(250));
        assert_eq!(offset(over, 4, 5), over);
        // 3 detections over 1 ns: 0, 0 (rounded down), 1 ns.
        let tiny = Duration::from_nanos(1);
        let got: Vec<Duration> = (0..3).map(|i| offset(tiny, i, 3)).collect();
        assert_eq!(got, [Duration::ZERO, Duration::ZERO, tiny]);
    }

    #[test]
    fn event_ids_name_the_event_and_the_position() {
        assert_eq!(event_id(0, 1), "outbreak-0-1");
        assert_eq!(event_id(12, 10_000), "outbreak-12-10000");
        assert_ne!(event_id(1, 11), event_id(11, 1));
    }
}
