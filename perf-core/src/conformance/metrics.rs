//! The contract of every [`MetricsSink`] and of a sink with the [`MetricsQuery`] that reads
//! what it recorded: records are taken from any thread without blocking and without panicking,
//! whatever their values; once flushed, recorded transfers are found by pool, method and time
//! range, newest first; failed transfers are counted apart and their latency is in no measure
//! and no sample.

use std::sync::Arc;

use super::{Keeps, pool, transfer};
use crate::metrics::{FailureKind, TransferMetrics};
use crate::name::Name;
use crate::request::Timestamp;
use crate::seams::{MetricsQuery, MetricsSink, QueryError, SampleFilter, SeriesQuery};
use crate::vocab::Method;

const SEC: u64 = 1_000_000_000;

fn series(pool: Option<Name>, method: Option<Method>, from: u64, to: u64) -> SeriesQuery {
    SeriesQuery {
        pool,
        method,
        from: Timestamp::from_secs(from),
        to: Timestamp::from_secs(to),
        granularity_secs: 60,
    }
}

/// A sink takes records with odd values (zero, NaN, infinite latency, huge sizes) and records
/// from several threads at once without panicking, and `flush` returns.
pub fn any_record_is_taken_from_any_thread<K: MetricsSink + 'static>(sink: K) {
    let sink = Arc::new(sink);
    let p = pool("odd");
    for latency in [0.0, f64::NAN, f64::INFINITY, -1.0, 1e300] {
        sink.record(&transfer(p, Method::Grpc, 1, 0, latency));
    }
    let mut failed = transfer(p, Method::ZeroCopy, u64::MAX, u64::MAX, 5.0);
    failed.fail(FailureKind::Timeout);
    sink.record(&failed);
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let sink = sink.clone();
            std::thread::spawn(move || {
                for i in 0..500 {
                    sink.record(&transfer(p, Method::Grpc, 4096, t * SEC + i, 100.0));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a recording thread panicked");
    }
    sink.flush();
}

/// Once flushed, recorded transfers are found by pool, method and time range: series points
/// hold exactly their latencies and the samples are the records, newest first.
pub fn recorded_transfers_are_queryable_by_pool_method_and_range<K, Q>(
    open: impl Fn() -> (K, Q),
    keeps: Keeps,
) where
    K: MetricsSink,
    Q: MetricsQuery,
{
    let (sink, query) = open();
    let (a, b) = (pool("a"), pool("b"));
    let mut recorded = Vec::new();
    for i in 0..10u64 {
        recorded.push(transfer(
            a,
            Method::Grpc,
            4096,
            10 * SEC + i,
            100.0 + i as f64,
        ));
    }
    recorded.push(transfer(a, Method::ZeroCopy, 8 << 20, 20 * SEC, 50.0));
    recorded.push(transfer(b, Method::Grpc, 4096, 70 * SEC, 300.0));
    for m in &recorded {
        sink.record(m);
    }
    sink.flush();

    let all = query.series(&series(None, None, 0, 120)).unwrap();
    let a_grpc = query
        .series(&series(Some(a), Some(Method::Grpc), 0, 120))
        .unwrap();
    let b_only = query.series(&series(Some(b), None, 0, 120)).unwrap();
    let late = query.series(&series(None, None, 60, 120)).unwrap();
    let newest = query.samples(&SampleFilter::default(), 3).unwrap();
    let zero_copy = query
        .samples(
            &SampleFilter {
                pool: Some(a),
                method: Some(Method::ZeroCopy),
                ..SampleFilter::default()
            },
            100,
        )
        .unwrap();
    let since = query
        .samples(
            &SampleFilter {
                since: Timestamp::from_secs(20),
                ..SampleFilter::default()
            },
            100,
        )
        .unwrap();
    let small = query
        .samples(
            &SampleFilter {
                sizes: Some((0, 4096)),
                ..SampleFilter::default()
            },
            100,
        )
        .unwrap();
    if keeps == Keeps::Nothing {
        for points in [&all, &a_grpc, &b_only, &late] {
            assert!(points.is_empty(), "a query of nothing found {points:?}");
        }
        for samples in [&newest, &zero_copy, &since, &small] {
            assert!(samples.is_empty(), "a query of nothing found {samples:?}");
        }
        return;
    }
    let counts = |points: &[crate::seams::SeriesPoint]| -> Vec<(u64, u64)> {
        points
            .iter()
            .map(|p| (p.start.as_nanos() / SEC, p.latency_us.count))
            .collect()
    };
    assert_eq!(counts(&all), [(0, 11), (60, 1)]);
    assert_eq!(counts(&a_grpc), [(0, 10)]);
    assert_eq!(
        (a_grpc[0].latency_us.min, a_grpc[0].latency_us.max),
        (100.0, 109.0)
    );
    assert!((a_grpc[0].latency_us.mean - 104.5).abs() < 1e-9);
    assert_eq!(counts(&b_only), [(60, 1)]);
    assert_eq!(b_only[0].latency_us.max, 300.0);
    assert_eq!(counts(&late), [(60, 1)], "the range is from..to");
    assert_eq!(
        newest,
        [recorded[11], recorded[10], recorded[9]],
        "newest first"
    );
    assert_eq!(zero_copy, [recorded[10]]);
    assert_eq!(since, [recorded[11], recorded[10]]);
    assert_eq!(small.len(), 11, "sizes is an inclusive range");
}

/// Failed transfers are counted apart in each point (`failed`), their latency (the time until
/// they failed) is in no measure, and no sample is a failed transfer.
pub fn failures_are_counted_apart_from_latency<K, Q>(open: impl Fn() -> (K, Q), keeps: Keeps)
where
    K: MetricsSink,
    Q: MetricsQuery,
{
    let (sink, query) = open();
    let p = pool("failing");
    for i in 0..5u64 {
        sink.record(&transfer(p, Method::Grpc, 4096, SEC + i, 100.0));
    }
    for (i, kind) in [FailureKind::Timeout, FailureKind::Refused]
        .into_iter()
        .enumerate()
    {
        let mut m = transfer(p, Method::Grpc, 4096, 2 * SEC + i as u64, 30_000_000.0);
        m.fail(kind);
        sink.record(&m);
    }
    // A bucket of failures alone.
    let mut lone = transfer(p, Method::ZeroCopy, 4096, 90 * SEC, 30_000_000.0);
    lone.fail(FailureKind::Unavailable);
    sink.record(&lone);
    sink.flush();

    let points = query.series(&series(Some(p), None, 0, 120)).unwrap();
    let samples = query.samples(&SampleFilter::default(), 100).unwrap();
    if keeps == Keeps::Nothing {
        assert!(points.is_empty() && samples.is_empty());
        return;
    }
    let seen: Vec<_> = points
        .iter()
        .map(|p| (p.start.as_nanos() / SEC, p.latency_us.count, p.failed))
        .collect();
    assert_eq!(seen, [(0, 5, 2), (60, 0, 1)]);
    assert_eq!(
        points[0].latency_us.max, 100.0,
        "a failed latency is in the measures"
    );
    assert_eq!(samples.len(), 5, "samples are delivered transfers only");
    assert!(samples.iter().all(TransferMetrics::is_evidence));
}

/// A query with an empty range or a granularity outside 1 to 3600 s is
/// [`QueryError::Invalid`] naming the value; a source with no data may instead answer with
/// nothing.
pub fn invalid_queries_are_refused<Q: MetricsQuery>(query: &Q, keeps: Keeps) {
    let mut zero = series(None, None, 0, 60);
    zero.granularity_secs = 0;
    let mut wide = series(None, None, 0, 60);
    wide.granularity_secs = 3601;
    for (bad, value) in [
        (zero, "0"),
        (wide, "3601"),
        (series(None, None, 60, 60), "60"),
        (series(None, None, 60, 0), "60"),
    ] {
        match query.series(&bad) {
            Err(QueryError::Invalid(why)) => assert!(why.contains(value), "{why}"),
            Ok(points) if keeps == Keeps::Nothing => assert!(points.is_empty()),
            other => panic!("{bad:?} gave {other:?}"),
        }
    }
}

/// Stamps out the suite of a sink with its query as tests in a module `$name`: `$open` is
/// evaluated once per test and gives the opener (`impl Fn() -> (impl MetricsSink, impl
/// MetricsQuery)`, the query reading what the sink records) over a fresh state; `$keeps` is a
/// [`Keeps`].
#[macro_export]
macro_rules! metrics_conformance {
    ($name:ident, $open:expr, $keeps:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::conformance::metrics as suite;

            #[test]
            fn any_record_is_taken_from_any_thread() {
                suite::any_record_is_taken_from_any_thread(($open)().0);
            }
            #[test]
            fn recorded_transfers_are_queryable_by_pool_method_and_range() {
                suite::recorded_transfers_are_queryable_by_pool_method_and_range($open, $keeps);
            }
            #[test]
            fn failures_are_counted_apart_from_latency() {
                suite::failures_are_counted_apart_from_latency($open, $keeps);
            }
            #[test]
            fn invalid_queries_are_refused() {
                suite::invalid_queries_are_refused(&($open)().1, $keeps);
            }
        }
    };
}

/// Stamps out the suite of a sink without a query of its own as tests in a module `$name`:
/// `$make` is evaluated once per test and gives the sink.
#[macro_export]
macro_rules! metrics_sink_conformance {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn any_record_is_taken_from_any_thread() {
                $crate::conformance::metrics::any_record_is_taken_from_any_thread($make);
            }
        }
    };
}
