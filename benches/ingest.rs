//! Detection parsing per vendor format: one OfficeScan CEF line, one SEPM line and one
//! ePO EPOEvent XML message, each through the daemon's entry point (`ingest::parse_detection`:
//! size check, UTF-8, syslog header, vendor body, detection check) and through the vendor
//! parser alone on the body (no syslog framing). The payloads are the golden-test fixtures.
//!
//! `cargo bench --bench ingest`; `qlab bench` prints the CEF figure next to its target.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use quarantine_lab::bench::workload;
use quarantine_lab::ingest;
use quarantine_lab::model::AvKind;

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("ingest");
    // Each line is one element, so criterion also prints lines per second.
    group.throughput(Throughput::Elements(1));
    for (name, kind, line) in [
        ("cef_line", AvKind::Officescan, workload::CEF_LINE),
        ("sepm_line", AvKind::Sepm, workload::SEPM_LINE),
        ("epo_xml_line", AvKind::Epo, workload::EPO_LINE),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| ingest::parse_detection(kind, "av-1", black_box(line.as_bytes())))
        });
    }
    group.bench_function("cef_body", |b| {
        b.iter(|| ingest::cef::parse_detection(black_box(workload::cef_body())))
    });
    group.bench_function("sepm_body", |b| {
        b.iter(|| ingest::sepm::parse_detection(black_box(workload::sepm_body())))
    });
    group.bench_function("epo_xml_body", |b| {
        b.iter(|| ingest::epo::parse_detections(black_box(workload::epo_body())))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // Sub-microsecond work: a short warm-up and measurement keep the whole file under ~15 s.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1))
        .sample_size(50);
    targets = parse
}
criterion_main!(benches);
