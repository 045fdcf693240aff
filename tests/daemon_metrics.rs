//! `GET /api/v1/metrics`: the exposition parses as Prometheus text format 0.0.4 under a strict
//! parser written here (names, labels and their escapes, values, one TYPE per family before
//! its samples, cumulative histogram buckets ending in `+Inf` = `_count`), and its numbers
//! move as detections are processed against simulated devices.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::run::sent;
use quarantine_lab::daemon::config::EngineConfig;
use quarantine_lab::daemon::Daemon;
use quarantine_lab::scenario::serve::{self, GENERATED_TOKEN};
use reqwest::StatusCode;
use serde_json::json;

/// One sample: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses `{k="v",...}` at the start of `s`; the labels and the rest.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').ok_or("no {")?;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let key = &rest[..eq];
        if !is_name(key) || key.starts_with("__") {
            return Err(format!("bad label name {key:?}"));
        }
        let mut value = String::new();
        let mut chars = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("unquoted label value")?
            .char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    other => return Err(format!("bad escape \\{other}")),
                },
                (_, '\n') => return Err("line feed in a label value".into()),
                (_, c) => value.push(c),
            }
        };
        if labels.insert(key.to_string(), value).is_some() {
            return Err(format!("label {key} twice"));
        }
        rest = &rest[eq + 1 + 1 + end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("bad value {s:?}")),
    }
}

/// Parses the whole exposition strictly; the samples and each family's type.
fn parse(text: &str) -> Result<(Vec<Sample>, BTreeMap<String, String>), String> {
    let mut samples = Vec::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(name), Some(_)) if is_name(name) => {}
                (Some("TYPE"), Some(name), Some(kind)) if is_name(name) => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(at(format!("unknown type {kind}")));
                    }
                    if samples
                        .iter()
                        .any(|(s, _, _): &Sample| family_of(s, &types) == name)
                    {
                        return Err(at("TYPE after the family's samples".into()));
                    }
                    if types.insert(name.to_string(), kind.to_string()).is_some() {
                        return Err(at("TYPE twice".into()));
                    }
                }
                _ => return Err(at("bad comment".into())),
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
        let name = &line[..name_end];
        if !is_name(name) {
            return Err(at(format!("bad metric name {name:?}")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(at)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let mut fields = rest.trim_start_matches(' ').split(' ');
        let value = parse_value(fields.next().unwrap_or("")).map_err(at)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|_| at("bad timestamp".into()))?;
        }
        if !types.contains_key(family_of(name, &types)) {
            return Err(at("sample before its TYPE".into()));
        }
        samples.push((name.to_string(), labels, value));
    }
    // Histograms: per label set, cumulative buckets ending in +Inf equal to _count.
    for (family, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        let mut counts = BTreeMap::new();
        for (name, labels, value) in &samples {
            if *name == format!("{family}_bucket") {
                let mut key = labels.clone();
                let le = key
                    .remove("le")
                    .ok_or(format!("{family}: bucket without le"))?;
                series
                    .entry(key)
                    .or_default()
                    .push((parse_value(&le)?, *value));
            } else if *name == format!("{family}_count") {
                counts.insert(labels.clone(), *value);
            }
        }
        for (key, buckets) in &series {
            if !buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
            {
                return Err(format!("{family}{key:?}: buckets not cumulative"));
            }
            let last = buckets.last().unwrap();
            if last.0 != f64::INFINITY || Some(&last.1) != counts.get(key) {
                return Err(format!("{family}{key:?}: +Inf bucket is not _count"));
            }
        }
    }
    Ok((samples, types))
}

/// The family a sample belongs to (histogram samples carry suffixes).
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types.get(base).is_some_and(|k| k == "histogram") {
                return base;
            }
        }
    }
    name
}

/// A sample's labels to match: `(name, value)` pairs.
type Labels = [(&'static str, &'static str)];

fn value(samples: &[Sample], name: &str, labels: &Labels) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

#[test]
fn the_parser_refuses_what_prometheus_refuses() {
    let ok = "# TYPE a counter\na{x=\"q\\\"\\\\\"} 1\n";
    assert!(parse(ok).is_ok());
    for bad in [
        "a 1\n",                              // no TYPE
        "# TYPE a counter\na{x=q} 1\n",       // unquoted
        "# TYPE a counter\na{x=\"\\t\"} 1\n", // bad escape
        "# TYPE a counter\na one\n",          // bad value
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 1\n",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

async fn scrape(client: &reqwest::Client, base: &str) -> Vec<Sample> {
    let reply = sent(
        client
            .get(format!("{base}/api/v1/metrics"))
            .bearer_auth(GENERATED_TOKEN),
    )
    .await;
    assert_eq!(reply.status(), StatusCode::OK);
    let content_type = reply.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = reply.text().await.unwrap();
    let (samples, types) = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for family in [
        "qlab_detections_total",
        "qlab_operations_total",
        "qlab_device_calls_total",
        "qlab_device_call_duration_seconds",
        "qlab_time_to_contain_seconds",
        "qlab_journal_commit_duration_seconds",
        "qlab_journal_entries_per_commit",
        "qlab_drift_findings_total",
        "qlab_operations_queued",
        "qlab_device_queue_depth",
    ] {
        assert!(types.contains_key(family), "{family} missing\n{text}");
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_move_as_detections_are_processed() {
    let dir = tempfile::tempdir().unwrap();
    let topology = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/topologies/vdi-small.toml"
    );
    let config_path = dir.path().join("engine.toml");
    let _sims = serve::start(std::path::Path::new(topology), Some(&config_path), true)
        .await
        .unwrap();
    let config = EngineConfig::load(&config_path).unwrap();
    let daemon = Daemon::start(config, GENERATED_TOKEN.into()).await.unwrap();
    let base = daemon.api_url().to_string();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    let unauthorized = sent(client.get(format!("{base}/api/v1/metrics"))).await;
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);

    let before = scrape(&client, &base).await;
    let accepted = [("source", "osce"), ("disposition", "accepted")];
    assert_eq!(value(&before, "qlab_detections_total", &accepted), 0.0);
    assert_eq!(value(&before, "qlab_drift_findings_total", &[]), 0.0);
    assert_eq!(
        value(&before, "qlab_time_to_contain_seconds_count", &[]),
        0.0
    );

    for (event, ip, threat) in [
        ("m-1", "10.110.0.11", "TROJ_GENERIC.A"),
        ("m-2", "10.110.0.13", "EICAR_TEST_FILE"),
        ("m-3", "10.9.9.9", "TROJ_GENERIC.A"),
    ] {
        let reply = sent(
            client
                .post(format!("{base}/api/v1/detections"))
                .bearer_auth(GENERATED_TOKEN)
                .json(&json!({"source": "osce", "event_id": event, "ip": ip,
                          "threat": threat, "category": "virus"})),
        )
        .await;
        assert_eq!(reply.status(), StatusCode::ACCEPTED);
    }
    tokio::time::timeout(Duration::from_secs(30), daemon.engine().wait_idle())
        .await
        .expect("the quarantine ends");

    let after = scrape(&client, &base).await;
    let exactly: [(&str, &Labels, f64); 6] = [
        ("qlab_detections_total", &accepted, 1.0),
        (
            "qlab_detections_total",
            &[("source", "osce"), ("disposition", "ignored")],
            1.0,
        ),
        (
            "qlab_detections_total",
            &[("source", "osce"), ("disposition", "not_found")],
            1.0,
        ),
        ("qlab_detections_received_total", &[("channel", "api")], 3.0),
        (
            "qlab_operations_total",
            &[("kind", "quarantine"), ("outcome", "quarantined")],
            1.0,
        ),
        ("qlab_time_to_contain_seconds_count", &[], 1.0),
    ];
    for (name, labels, want) in exactly {
        assert_eq!(value(&after, name, labels), want, "{name} {labels:?}");
    }
    let at_least_one: [(&str, &Labels); 2] = [
        (
            "qlab_device_calls_total",
            &[("device", "vc-1"), ("outcome", "ok")],
        ),
        (
            "qlab_device_call_duration_seconds_count",
            &[("device", "vc-1")],
        ),
    ];
    for (name, labels) in at_least_one {
        assert!(value(&after, name, labels) >= 1.0, "{name} {labels:?}");
    }
    assert!(value(&after, "qlab_time_to_contain_seconds_sum", &[]) > 0.0);
    assert!(
        value(&after, "qlab_journal_commit_duration_seconds_count", &[])
            > value(&before, "qlab_journal_commit_duration_seconds_count", &[])
    );
    assert!(value(&after, "qlab_journal_entries_per_commit_sum", &[]) >= 3.0);
    assert_eq!(value(&after, "qlab_operations_running", &[]), 0.0);
    daemon.shutdown().await;
}
