//! Tests of the telemetry tables: where each record lands, what stays out, and the gauges.

use perf_core::conformance::{self, pool, transfer};
use perf_core::{FailureKind, FallbackReason, Method, MetricsSink, ReplyRecord};

use super::*;
use crate::histogram::DURATION_BOUNDS_NS;

fn telemetry() -> Telemetry {
    Telemetry::new(&TelemetryConfig::for_pools([pool("a"), pool("b")])).unwrap()
}

/// The value of the series of `family` whose labels are `labels`, if it is exported.
fn value(t: &Telemetry, family: Family, labels: &[(&str, &str)]) -> Option<PointValue> {
    t.points(family)
        .into_iter()
        .find(|p| {
            p.labels.len() == labels.len()
                && p.labels
                    .iter()
                    .zip(labels)
                    .all(|(a, b)| a.0 == b.0 && a.1 == b.1)
        })
        .map(|p| p.value)
}

fn count(t: &Telemetry, family: Family, labels: &[(&str, &str)]) -> u64 {
    match value(t, family, labels) {
        Some(PointValue::Counter(n)) => n,
        other => panic!("{family:?} {labels:?} is {other:?}, expected a counter"),
    }
}

fn histogram(t: &Telemetry, family: Family, labels: &[(&str, &str)]) -> Option<SeriesSnapshot> {
    match value(t, family, labels)? {
        PointValue::Histogram(h) => Some(h),
        other => panic!("{family:?} {labels:?} is {other:?}, expected a histogram"),
    }
}

fn bucket_of(ns: u64) -> usize {
    DURATION_BOUNDS_NS.partition_point(|&b| b < ns)
}

#[test]
fn a_delivered_transfer_lands_in_its_pool_method_and_size_class() {
    let t = telemetry();
    t.record(&transfer(pool("a"), Method::Grpc, 8192, 0, 100.0));
    let ag = [("pool", "a"), ("method", "grpc")];
    assert_eq!(count(&t, Family::Transfers, &ag), 1);
    assert_eq!(count(&t, Family::TransferBytes, &ag), 8192);
    assert_eq!(
        count(
            &t,
            Family::Transfers,
            &[("pool", "a"), ("method", "zero_copy")]
        ),
        0
    );
    assert_eq!(
        count(&t, Family::Transfers, &[("pool", "b"), ("method", "grpc")]),
        0
    );
    let h = histogram(
        &t,
        Family::TransferDuration,
        &[
            ("pool", "a"),
            ("method", "grpc"),
            ("size_class", "4KiB-16KiB"),
        ],
    )
    .expect("a duration series");
    assert_eq!(h.count(), 1);
    assert_eq!(
        h.counts[bucket_of(100_000)],
        1,
        "100 µs is in the 100 µs bucket"
    );
    assert_eq!(h.sum(), 100_000);
    assert_eq!(
        t.points(Family::TransferDuration).len(),
        1,
        "one series, no other"
    );
    assert_eq!(
        count(
            &t,
            Family::Decisions,
            &[("method", "grpc"), ("reason", "rule.fixed_policy")]
        ),
        1
    );
    assert_eq!(t.points(Family::Decisions).len(), 2 * ReasonCode::ALL.len());
    let queue = histogram(&t, Family::QueueDuration, &[("pool", "a")]).unwrap();
    assert_eq!(queue.counts[0], 1, "no queueing is in the first bucket");
}

#[test]
fn a_pool_without_a_slot_is_counted_as_other() {
    let t = telemetry();
    let before = t.points(Family::Transfers).len();
    assert!(
        t.points(Family::Transfers)
            .iter()
            .all(|p| p.labels[0].1 != "other"),
        "other appears only once used"
    );
    t.record(&transfer(
        pool("unlisted"),
        Method::ZeroCopy,
        1 << 20,
        0,
        70.0,
    ));
    t.record(&transfer(
        pool("another"),
        Method::ZeroCopy,
        1 << 20,
        0,
        70.0,
    ));
    let oz = [("pool", "other"), ("method", "zero_copy")];
    assert_eq!(count(&t, Family::Transfers, &oz), 2);
    assert_eq!(t.points(Family::Transfers).len(), before + 2);
    let h = histogram(
        &t,
        Family::TransferDuration,
        &[
            ("pool", "other"),
            ("method", "zero_copy"),
            ("size_class", "1MiB-4MiB"),
        ],
    )
    .unwrap();
    assert_eq!(h.count(), 2);
    assert!(
        !t.set_pool_threshold(pool("unlisted"), 1),
        "no threshold kept for other"
    );
    assert!(t.points(Family::PoolThreshold).is_empty());
}

#[test]
fn failures_are_counted_by_kind_and_kept_out_of_bytes_and_durations() {
    let t = telemetry();
    let mut failed = transfer(pool("b"), Method::Grpc, 4096, 0, 5_000.0);
    failed.fail(FailureKind::Timeout);
    t.record(&failed);
    let mut no_kind = transfer(pool("b"), Method::Grpc, 4096, 0, 5_000.0);
    no_kind.success = false;
    t.record(&no_kind);
    let bg = [("pool", "b"), ("method", "grpc")];
    assert_eq!(
        count(&t, Family::Transfers, &bg),
        2,
        "failures are transfers"
    );
    assert_eq!(count(&t, Family::TransferBytes, &bg), 0);
    assert!(t.points(Family::TransferDuration).is_empty());
    assert_eq!(
        count(&t, Family::Failures, &[("pool", "b"), ("kind", "timeout")]),
        1
    );
    assert_eq!(
        count(&t, Family::Failures, &[("pool", "b"), ("kind", "internal")]),
        1,
        "a failure without a kind is internal"
    );
    assert_eq!(
        count(&t, Family::Failures, &[("pool", "a"), ("kind", "timeout")]),
        0
    );
}

#[test]
fn fallbacks_explorations_replies_and_decision_time_are_counted() {
    let t = telemetry();
    let mut m = transfer(pool("a"), Method::Grpc, 1 << 16, 0, 300.0);
    m.fallback = Some(FallbackReason::ShmExhausted);
    m.explored = true;
    m.decided_method = Method::ZeroCopy;
    m.decision_ns = 700;
    m.queued_us = 2_000.0;
    m.reply = Some(ReplyRecord {
        method: Method::ZeroCopy,
        size: 12345,
        latency_us: 40.0,
        inline: false,
    });
    t.record(&m);
    assert_eq!(
        count(
            &t,
            Family::Fallbacks,
            &[("pool", "a"), ("reason", "shm_exhausted")]
        ),
        1
    );
    assert_eq!(
        count(
            &t,
            Family::Fallbacks,
            &[("pool", "a"), ("reason", "timeout")]
        ),
        0
    );
    assert_eq!(
        count(&t, Family::Explorations, &[("method", "zero_copy")]),
        1
    );
    assert_eq!(
        count(&t, Family::ReplyBytes, &[("method", "zero_copy")]),
        12345
    );
    let reply = histogram(&t, Family::ReplyDuration, &[("method", "zero_copy")]).unwrap();
    assert_eq!(reply.counts[bucket_of(40_000)], 1);
    let decision = histogram(&t, Family::DecisionDuration, &[]).unwrap();
    assert_eq!(decision.counts[3], 1, "700 ns is in the 1 µs bucket");
    assert_eq!(decision.sum(), 700);
    let queue = histogram(&t, Family::QueueDuration, &[("pool", "a")]).unwrap();
    assert_eq!(queue.counts[bucket_of(2_000_000)], 1);
    assert_eq!(
        count(
            &t,
            Family::Decisions,
            &[("method", "zero_copy"), ("reason", "rule.fixed_policy")]
        ),
        1,
        "decisions count the decided method"
    );
}

#[test]
fn odd_latencies_are_counted_as_invalid_and_stay_out_of_the_histograms() {
    let t = telemetry();
    for latency in [f64::NAN, -1.0, f64::INFINITY] {
        t.record(&transfer(pool("a"), Method::Grpc, 1, 0, latency));
    }
    let mut queued = transfer(pool("a"), Method::Grpc, 1, 0, 1.0);
    queued.queued_us = f64::NAN;
    t.record(&queued);
    assert_eq!(count(&t, Family::InvalidMeasurements, &[]), 4);
    let h = histogram(
        &t,
        Family::TransferDuration,
        &[("pool", "a"), ("method", "grpc"), ("size_class", "0-1KiB")],
    )
    .unwrap();
    assert_eq!(h.count(), 1, "only the valid latency");
    assert_eq!(
        count(&t, Family::Transfers, &[("pool", "a"), ("method", "grpc")]),
        4
    );
}

#[test]
fn gauges_hold_what_was_set_last() {
    let t = telemetry();
    let gauge = |f: Family, labels: &[(&str, &str)]| match value(&t, f, labels) {
        Some(PointValue::Gauge(v)) => Some(v),
        None => None,
        other => panic!("{f:?} is {other:?}"),
    };
    assert_eq!(gauge(Family::ModelAccuracy, &[]), None, "unknown until set");
    assert_eq!(
        gauge(Family::BuildInfo, &[("version", env!("CARGO_PKG_VERSION"))]),
        Some(1.0)
    );
    t.set_load(3, 7);
    assert!(t.set_pool_threshold(pool("b"), 65536));
    t.set_shm(ShmUsage {
        segments: 4,
        held_bytes: 1 << 24,
        budget_bytes: 1 << 30,
    });
    t.set_model(ModelStatus {
        learning_enabled: true,
        active: true,
        version: 9,
        validation_accuracy: Some(0.93),
    });
    t.add_drift_events(2);
    t.add_drift_events(1);
    t.set_degraded(true);
    assert_eq!(gauge(Family::InFlight, &[]), Some(3.0));
    assert_eq!(gauge(Family::Queued, &[]), Some(7.0));
    assert_eq!(
        gauge(Family::PoolThreshold, &[("pool", "b")]),
        Some(65536.0)
    );
    assert_eq!(gauge(Family::PoolThreshold, &[("pool", "a")]), None);
    assert_eq!(gauge(Family::ShmSegments, &[]), Some(4.0));
    assert_eq!(gauge(Family::ShmHeld, &[]), Some(16_777_216.0));
    assert_eq!(gauge(Family::ShmBudget, &[]), Some(1_073_741_824.0));
    assert_eq!(gauge(Family::ModelActive, &[]), Some(1.0));
    assert_eq!(gauge(Family::ModelVersion, &[]), Some(9.0));
    assert_eq!(gauge(Family::ModelAccuracy, &[]), Some(0.93));
    assert_eq!(gauge(Family::Degraded, &[]), Some(1.0));
    assert_eq!(count(&t, Family::DriftEvents, &[]), 3);
    t.set_model(ModelStatus {
        learning_enabled: true,
        active: false,
        version: 9,
        validation_accuracy: Some(1.5),
    });
    assert_eq!(gauge(Family::ModelActive, &[]), Some(0.0));
    assert_eq!(
        gauge(Family::ModelAccuracy, &[]),
        None,
        "out of range is unknown"
    );
}

#[test]
fn every_family_has_labels_in_its_declared_order() {
    let t = telemetry();
    let mut m = transfer(pool("zz"), Method::ZeroCopy, 1 << 20, 0, 50.0);
    m.fallback = Some(FallbackReason::Timeout);
    m.decision_ns = 1;
    m.reply = Some(ReplyRecord {
        method: Method::Grpc,
        size: 1,
        latency_us: 1.0,
        inline: false,
    });
    t.record(&m);
    t.set_model(ModelStatus {
        learning_enabled: true,
        active: true,
        version: 1,
        validation_accuracy: Some(0.5),
    });
    t.set_pool_threshold(pool("a"), 1);
    let mut failed = m;
    failed.fail(FailureKind::Refused);
    t.record(&failed);
    for f in Family::ALL {
        let points = t.points(*f);
        assert!(!points.is_empty(), "{f:?} has no series");
        for p in points {
            let names: Vec<&str> = p.labels.iter().map(|l| l.0).collect();
            assert_eq!(names, f.def().labels, "{f:?}");
        }
    }
}

#[test]
fn the_sink_meets_the_metrics_sink_contract() {
    conformance::metrics::any_record_is_taken_from_any_thread(telemetry());
}

#[test]
fn records_from_many_threads_add_up_across_shards() {
    let t = std::sync::Arc::new(telemetry());
    let threads: Vec<_> = (0..2 * SHARDS)
        .map(|_| {
            let t = t.clone();
            std::thread::spawn(move || {
                for _ in 0..500 {
                    t.record(&transfer(pool("a"), Method::Grpc, 8192, 0, 100.0));
                }
            })
        })
        .collect();
    for it in threads {
        it.join().unwrap();
    }
    let n = 2 * SHARDS as u64 * 500;
    let ag = [("pool", "a"), ("method", "grpc")];
    assert_eq!(count(&t, Family::Transfers, &ag), n);
    assert_eq!(count(&t, Family::TransferBytes, &ag), n * 8192);
    let h = histogram(
        &t,
        Family::TransferDuration,
        &[
            ("pool", "a"),
            ("method", "grpc"),
            ("size_class", "4KiB-16KiB"),
        ],
    )
    .unwrap();
    assert_eq!((h.count(), h.sum()), (n, n * 100_000));
    let used = t
        .shards
        .iter()
        .filter(|s| s.transfers.iter().any(|a| a.load(Relaxed) > 0))
        .count();
    assert!(used > 1, "threads spread over the shards, {used} used");
}

#[test]
fn a_pool_added_by_a_reload_gets_its_own_series_from_then_on() {
    let t = telemetry();
    let late = |n| transfer(pool("c"), Method::Grpc, 4096, n, 50.0);
    t.record(&late(0));
    let grpc = [("pool", "other"), ("method", "grpc")];
    assert_eq!(count(&t, Family::Transfers, &grpc), 1, "not configured yet");
    assert_eq!(
        value(&t, Family::Transfers, &[("pool", "c"), ("method", "grpc")]),
        None
    );

    assert_eq!(t.add_pools([pool("a"), pool("c"), pool("other")]), 0);
    let own = [("pool", "c"), ("method", "zero_copy")];
    assert_eq!(
        count(&t, Family::Transfers, &own),
        0,
        "present at zero at once"
    );
    t.record(&late(1));
    t.record(&late(2));
    assert_eq!(
        count(&t, Family::Transfers, &[("pool", "c"), ("method", "grpc")]),
        2
    );
    assert_eq!(
        count(&t, Family::Transfers, &grpc),
        1,
        "what came before stays"
    );
    assert!(t.set_pool_threshold(pool("c"), 1 << 20));

    let many = (0..perf_core::config::MAX_POOLS).map(|i| pool(&format!("p{i}")));
    assert_eq!(t.add_pools(many), 3, "a, b and c hold three of the slots");
}
