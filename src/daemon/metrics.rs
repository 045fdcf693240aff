//! Counters of rejected input by reason (R18), shown by `GET /api/v1/health` so an operator
//! sees a misconfigured AV server or a scanner knocking on the API without reading logs; and
//! [`Metrics::render`], the Prometheus text exposition (format 0.0.4) of `GET /api/v1/metrics`
//! (every metric is described in docs/metrics.md).
//!
//! The exposition is written here from plain snapshots rather than through a metrics library:
//! the engine owns its counters ([`crate::engine::stats`]) without depending on how they are
//! exported, and the text format needs only escaping of label values and cumulative buckets.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::engine::stats::{Histogram, StatsSnapshot};
use crate::engine::Disposition;

/// Why an input was turned away. The spellings are stable: monitoring may key on them.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum Reject {
    /// API request without a valid bearer token.
    Unauthorized,
    /// API request whose token lacks the route's scope.
    Forbidden,
    /// A policy reload whose topology file is invalid (the old policy stays).
    PolicyInvalid,
    /// API body larger than `api.max_body_bytes`.
    BodyTooLarge,
    /// API body that is not JSON or not valid UTF-8.
    MalformedJson,
    /// API body with a field the schema does not have.
    UnknownField,
    /// API body with a missing or mistyped field.
    InvalidField,
    /// A detection that failed the engine's checks (sizes, match keys).
    InvalidDetection,
    /// A detection naming an AV server the topology does not have.
    UnknownSource,
    /// A command or lookup for an L-Server the topology does not have.
    #[strum(serialize = "unknown_lserver")]
    UnknownLServer,
    /// A command the L-Server's state does not allow.
    NotAllowed,
    /// Too many operations already queued for the L-Server.
    QueueFull,
    /// The engine halted after a journal failure.
    Halted,
    /// The journal failed while reading or writing.
    JournalError,
    /// A malformed path or query parameter.
    BadRequest,
    /// No such API route or operation.
    NotFound,
    /// A known API path called with the wrong method.
    MethodNotAllowed,
    /// Too many API requests in flight.
    Overloaded,
    /// An API request that took longer than the request timeout.
    RequestTimeout,
    /// An idle API connection closed to admit a new one (connection caps).
    ApiConnectionEvicted,
    /// An API connection refused: every connection under the cap was busy.
    ApiTooManyConnections,
    /// Syslog from an address that is no AV server's topology address.
    SyslogUnknownSource,
    /// Syslog message larger than `syslog_in.max_message_bytes`.
    SyslogOversized,
    /// Syslog message no parser of the sender's kind understood.
    SyslogUnparsable,
    /// Syslog TCP stream whose framing is broken.
    SyslogBadFraming,
    /// Syslog TCP connection refused because too many are open.
    SyslogTooManyConnections,
    /// Syslog TCP connection closed after being idle too long.
    SyslogIdleTimeout,
    /// Syslog detection the engine refused.
    SyslogRefused,
    /// Syslog message dropped because the intake queue was full (UDP only: TCP waits).
    SyslogQueueFull,
    /// An idle syslog TCP connection closed to admit a new one (connection caps).
    SyslogConnectionEvicted,
    /// ePO poll that failed (transport, HTTP status, unparsable reply).
    EpoPollFailed,
    /// ePO detection the engine refused.
    EpoRefused,
    /// ePO event row that could not become a detection.
    EpoBadRow,
}

/// Every reason, in the order of the counter array.
const ALL: &[Reject] = <Reject as strum::VariantArray>::VARIANTS;

impl Reject {
    /// The stable spelling used in `/health` and in log lines.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    fn index(self) -> usize {
        ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Rejections of one reason logged before sampling starts.
pub const LOG_FIRST: u64 = 20;

/// After [`LOG_FIRST`], one rejection in this many is logged.
pub const LOG_EVERY: u64 = 1000;

/// Rejection counters plus the count of accepted detections per channel.
#[derive(Debug)]
pub struct Metrics {
    rejected: [AtomicU64; ALL.len()],
    /// Durable detections by [`Channel`], in [`CHANNELS`] order.
    accepted: [AtomicU64; CHANNELS.len()],
    /// The syslog intake's buffer and queue (`/health`).
    pub intake: IntakeGauges,
}

// By hand: `Default` for arrays stops at 32 elements.
impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            rejected: std::array::from_fn(|_| AtomicU64::new(0)),
            accepted: std::array::from_fn(|_| AtomicU64::new(0)),
            intake: IntakeGauges::default(),
        }
    }
}

/// How the intake is doing, for `/health`.
#[derive(Debug, Default)]
pub struct IntakeGauges {
    /// `syslog_in.udp_recv_buffer_bytes` as configured.
    pub udp_recv_buffer_requested: AtomicU64,
    /// SO_RCVBUF as the kernel reports it after setting.
    pub udp_recv_buffer_granted: AtomicU64,
    /// Messages queued, not yet submitted.
    pub queued: AtomicU64,
    /// Largest queue depth seen.
    pub queued_peak: AtomicU64,
    /// `syslog_in.queue_messages`.
    pub queue_capacity: AtomicU64,
    /// The UDP socket's inode (0: none or unknown), to read its kernel drop counter.
    pub udp_socket_inode: AtomicU64,
}

impl IntakeGauges {
    /// Datagrams the kernel dropped before the daemon could read them (the receive buffer was
    /// full); `None` without a UDP listener or where the kernel does not say.
    pub fn udp_kernel_drops(&self) -> Option<u64> {
        super::syslog_in::udp_kernel_drops(self.udp_socket_inode.load(Ordering::Relaxed))
    }

    /// The `/health` object.
    pub fn health(&self) -> IntakeHealth {
        IntakeHealth {
            udp_recv_buffer_bytes: RecvBuffer {
                requested: self.udp_recv_buffer_requested.load(Ordering::Relaxed),
                granted: self.udp_recv_buffer_granted.load(Ordering::Relaxed),
            },
            udp_kernel_drops: self.udp_kernel_drops(),
            queue: QueueHealth {
                depth: self.queued.load(Ordering::Relaxed),
                peak: self.queued_peak.load(Ordering::Relaxed),
                capacity: self.queue_capacity.load(Ordering::Relaxed),
            },
        }
    }
}

/// `/health` `syslog_in`: the intake's receive buffer and queue.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct IntakeHealth {
    /// SO_RCVBUF asked for and granted by the kernel.
    pub udp_recv_buffer_bytes: RecvBuffer,
    /// Datagrams the kernel dropped on the UDP socket (absent where the kernel does not say).
    pub udp_kernel_drops: Option<u64>,
    /// The bounded intake queue.
    pub queue: QueueHealth,
}

/// The UDP receive buffer, in bytes.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct RecvBuffer {
    /// `syslog_in.udp_recv_buffer_bytes`.
    pub requested: u64,
    /// What the kernel reports after setting it.
    pub granted: u64,
}

/// Depth of the intake queue.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct QueueHealth {
    /// Messages queued now.
    pub depth: u64,
    /// The largest depth seen.
    pub peak: u64,
    /// `syslog_in.queue_messages`.
    pub capacity: u64,
}

/// Where an accepted detection came in: the transport it travelled.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum Channel {
    /// `POST /api/v1/detections` (`qlab notify`).
    Api,
    /// The UDP syslog listener.
    SyslogUdp,
    /// The TCP syslog listener.
    SyslogTcp,
    /// An ePO poller.
    Epo,
}

/// Every channel, in the order of the counter array.
pub const CHANNELS: [Channel; 4] = [
    Channel::Api,
    Channel::SyslogUdp,
    Channel::SyslogTcp,
    Channel::Epo,
];

impl Channel {
    /// The stable spelling of `/health` `accepted` and the `channel` label of
    /// `qlab_detections_received_total`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    fn index(self) -> usize {
        CHANNELS.iter().position(|c| *c == self).unwrap_or(0)
    }
}

impl Metrics {
    /// Counts one rejection and logs it with its reason and detail. The first
    /// [`LOG_FIRST`] of each reason are logged, then every [`LOG_EVERY`]th, so a flood (a
    /// scanner, a misconfigured sender) cannot flood the log; the counters stay exact.
    pub fn reject(&self, reason: Reject, detail: &str) {
        let n = self.rejected[reason.index()].fetch_add(1, Ordering::Relaxed) + 1;
        if n <= LOG_FIRST || n.is_multiple_of(LOG_EVERY) {
            tracing::warn!(
                reason = reason.as_str(),
                count = n,
                detail,
                "rejected input"
            );
        }
    }

    /// Counts one durable detection.
    pub fn accepted(&self, channel: Channel) {
        self.accepted[channel.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// How many inputs were rejected for `reason`.
    pub fn rejected(&self, reason: Reject) -> u64 {
        self.rejected[reason.index()].load(Ordering::Relaxed)
    }

    /// How many detections came in durably through `channel`.
    pub fn accepted_count(&self, channel: Channel) -> u64 {
        self.accepted[channel.index()].load(Ordering::Relaxed)
    }

    /// Non-zero rejection counters by reason spelling.
    pub fn rejected_map(&self) -> BTreeMap<&'static str, u64> {
        ALL.iter()
            .map(|r| (r.as_str(), self.rejected(*r)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Accepted detections by channel spelling.
    pub fn accepted_map(&self) -> BTreeMap<&'static str, u64> {
        CHANNELS
            .into_iter()
            .map(|c| (c.as_str(), self.accepted_count(c)))
            .collect()
    }
}

/// Every detection disposition, so each source's series exist from the start (at 0).
const DISPOSITIONS: [Disposition; 5] = [
    Disposition::Accepted,
    Disposition::Ignored,
    Disposition::NotFound,
    Disposition::Duplicate,
    Disposition::PendingDecision,
];

/// A label value escaped for the text format: backslash, double quote and line feed.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// `{a="x",b="y"}` from label pairs; empty for none.
fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// The text exposition being written.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, pairs: &[(&str, &str)], value: impl std::fmt::Display) {
        let _ = writeln!(self.0, "{name}{} {value}", labels(pairs));
    }

    /// A family of one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A family with one label: one sample per `(value, n)` of `samples`.
    fn by_label<'a, V: std::fmt::Display>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        label: &str,
        samples: impl IntoIterator<Item = (&'a str, V)>,
    ) {
        self.family(name, kind, help);
        for (value, n) in samples {
            self.sample(name, &[(label, value)], n);
        }
    }

    /// A histogram family of one unlabelled histogram.
    fn single_histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.family(name, "histogram", help);
        self.histogram(name, &[], h);
    }

    /// A counter family with two labels: one sample per `((a, b), n)` of `samples`.
    fn counters_by_pair<A: AsRef<str>, B: AsRef<str>>(
        &mut self,
        name: &str,
        help: &str,
        [label_a, label_b]: [&str; 2],
        samples: &BTreeMap<(A, B), u64>,
    ) {
        self.family(name, "counter", help);
        for ((a, b), n) in samples {
            self.sample(name, &[(label_a, a.as_ref()), (label_b, b.as_ref())], n);
        }
    }

    fn histogram(&mut self, name: &str, pairs: &[(&str, &str)], h: &Histogram) {
        let bucket = format!("{name}_bucket");
        for (bound, count) in h.bounds.iter().zip(h.cumulative()) {
            let le = bound.to_string();
            let mut with_le = pairs.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, count);
        }
        let mut inf = pairs.to_vec();
        inf.push(("le", "+Inf"));
        self.sample(&bucket, &inf, h.count);
        self.sample(&format!("{name}_sum"), pairs, h.sum);
        self.sample(&format!("{name}_count"), pairs, h.count);
    }
}

/// What the exposition reports beyond the engine's counters.
pub struct Extra<'a> {
    /// AV servers of the topology: their detection series exist at 0 from the start.
    pub sources: Vec<&'a str>,
    /// Whether the engine halted.
    pub halted: bool,
    /// Policy reloads by result (`ok`, `error`).
    pub policy_reloads: [(&'static str, u64); 2],
}

impl Metrics {
    /// The Prometheus text exposition of the engine's `stats`, these counters and `extra`.
    pub fn render(&self, stats: &StatsSnapshot, extra: &Extra<'_>) -> String {
        let mut out = Exposition(String::with_capacity(16 * 1024));
        self.render_intake(&mut out, stats, extra);
        render_work(&mut out, stats);
        render_queues(&mut out, stats);
        let o = &mut out;
        o.by_label(
            "qlab_policy_reloads_total",
            "counter",
            "Policy reloads by result (error: the old policy was kept).",
            "result",
            extra.policy_reloads,
        );
        o.single(
            "qlab_engine_halted",
            "gauge",
            "1 once the engine halted after a journal failure.",
            u8::from(extra.halted),
        );
        out.0
    }

    /// What came in: detections by source and disposition, by channel, and what was refused.
    fn render_intake(&self, o: &mut Exposition, stats: &StatsSnapshot, extra: &Extra<'_>) {
        let mut detections = stats.detections.clone();
        for source in &extra.sources {
            for d in DISPOSITIONS {
                detections
                    .entry(((*source).to_string(), d.as_str()))
                    .or_default();
            }
        }
        o.counters_by_pair(
            "qlab_detections_total",
            "Detections journaled, by AV server and disposition (resent copies of a journaled event are not counted).",
            ["source", "disposition"],
            &detections,
        );
        o.by_label(
            "qlab_detections_received_total",
            "counter",
            "Detections acknowledged, by the transport they came in on (api, syslog_udp, syslog_tcp, epo).",
            "channel",
            self.accepted_map(),
        );
        o.by_label(
            "qlab_rejected_total",
            "counter",
            "Inputs turned away, by reason (the reasons of /api/v1/health).",
            "reason",
            ALL.iter().map(|&r| (r.as_str(), self.rejected(r))),
        );
    }
}

/// What the engine did: operations, device calls and their latency, containment, the journal
/// and drift.
fn render_work(o: &mut Exposition, stats: &StatsSnapshot) {
    o.counters_by_pair(
        "qlab_operations_total",
        "Operations finished, by kind and outcome.",
        ["kind", "outcome"],
        &stats.operations,
    );
    o.counters_by_pair(
        "qlab_device_calls_total",
        "Device calls ended, by device and outcome (ok, rejected, unknown, unavailable, busy, auth).",
        ["device", "outcome"],
        &stats.device_calls,
    );
    o.family(
        "qlab_device_call_duration_seconds",
        "histogram",
        "Device call latency by device, from asking for a slot in the device queue to the reply or timeout.",
    );
    for (device, h) in &stats.call_seconds {
        o.histogram(
            "qlab_device_call_duration_seconds",
            &[("device", device)],
            h,
        );
    }
    o.single_histogram(
        "qlab_time_to_contain_seconds",
        "From an operation's queueing (a detection's receipt) to the durable record of its L-Server quarantined.",
        &stats.time_to_contain,
    );
    o.single_histogram(
        "qlab_journal_commit_duration_seconds",
        "Journal group commit latency, fsync included.",
        &stats.commit_seconds,
    );
    o.single_histogram(
        "qlab_journal_entries_per_commit",
        "Journal entries per group commit.",
        &stats.entries_per_commit,
    );
    o.single(
        "qlab_drift_findings_total",
        "counter",
        "Quarantined NICs found off their quarantine network without a release.",
        stats.drift_findings,
    );
}

/// What waits now: the gauges of the lanes, the journal stage and the device queues.
fn render_queues(o: &mut Exposition, stats: &StatsSnapshot) {
    let q = &stats.queues;
    o.single(
        "qlab_operations_queued",
        "gauge",
        "Operations waiting behind another on their L-Server's lane.",
        q.operations_queued,
    );
    o.single(
        "qlab_operations_running",
        "gauge",
        "Operations running.",
        q.operations_running,
    );
    o.single(
        "qlab_journal_pending_entries",
        "gauge",
        "Journal entries staged for the next group commit.",
        q.journal_pending_entries,
    );
    o.by_label(
        "qlab_device_queue_depth",
        "gauge",
        "Device calls (or batched items) waiting for a slot of the device.",
        "device",
        q.devices
            .iter()
            .map(|(d, (waiting, _))| (d.as_str(), waiting)),
    );
    o.by_label(
        "qlab_device_calls_in_progress",
        "gauge",
        "Slots of the device in use (at most its max_concurrent).",
        "device",
        q.devices.iter().map(|(d, (_, busy))| (d.as_str(), busy)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(labels(&[("k", "v")]), "{k=\"v\"}");
        assert_eq!(labels(&[]), "");
    }

    #[test]
    fn every_reason_has_its_own_counter() {
        let m = Metrics::default();
        for (i, r) in ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            m.reject(*r, "test");
        }
        assert!(ALL.iter().all(|r| m.rejected(*r) == 1));
        assert_eq!(m.rejected_map().len(), ALL.len());
    }
}
