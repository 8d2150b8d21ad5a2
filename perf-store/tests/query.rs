//! Queries over stored buckets: merged histograms equal histograms of merged samples, coarse
//! granularities equal the merge of fine ones, filters by pool and method, invalid requests.

use std::sync::Arc;

use perf_core::{
    DecisionContext, FixedPolicy, Method, MetricsQuery, Name, QueryError, SampleFilter,
    SystemState, Timestamp, TransferMetrics, TransferPolicy, TransferRequest,
};
use perf_store::query::point;
use perf_store::{
    Aggregator, AggregatorConfig, Backend, Bucket, Granularity, MemoryBackend, StoreQuery,
};
use proptest::prelude::*;

fn metrics(pool: &str, method: Method, nanos: u64, latency_us: f64) -> TransferMetrics {
    let req = TransferRequest::new(1 << 16).with_pool(Name::new(pool).unwrap());
    let d = FixedPolicy(method).decide(&req, &DecisionContext::idle(Timestamp(0)));
    let mut m = TransferMetrics::new(
        &req,
        &d,
        method,
        latency_us,
        Timestamp(nanos),
        SystemState::IDLE,
    );
    m.decision_ns = (latency_us as u64) * 3 + 100;
    m.memory_bytes = 1 << 16;
    m
}

fn query(from_secs: u64, to_secs: u64, granularity_secs: u32) -> perf_core::SeriesQuery {
    perf_core::SeriesQuery {
        pool: None,
        method: None,
        from: Timestamp::from_secs(from_secs),
        to: Timestamp::from_secs(to_secs),
        granularity_secs,
    }
}

/// Stores `samples` through an aggregator, committing after every `chunk` of them.
fn store(samples: &[TransferMetrics], chunk: usize) -> Arc<MemoryBackend> {
    let backend = Arc::new(MemoryBackend::default());
    let mut agg = Aggregator::new(AggregatorConfig {
        grace_secs: 0,
        ..AggregatorConfig::default()
    });
    for part in samples.chunks(chunk.max(1)) {
        for m in part {
            agg.record(m);
        }
        agg.commit(backend.as_ref()).unwrap();
    }
    backend
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn merged_histograms_equal_the_histogram_of_merged_samples(
        latencies in prop::collection::vec(1u32..5_000_000, 1..400),
        split in 0usize..400,
    ) {
        let samples: Vec<_> = latencies
            .iter()
            .map(|&l| metrics("p", Method::Grpc, 0, f64::from(l)))
            .collect();
        let split = split.min(samples.len());
        let (mut left, mut right, mut whole) = (Bucket::default(), Bucket::default(), Bucket::default());
        samples[..split].iter().for_each(|m| left.record(m));
        samples[split..].iter().for_each(|m| right.record(m));
        samples.iter().for_each(|m| whole.record(m));
        left.merge(&right);
        // Integer latencies sum exactly in any order, so the latency measure is equal whole.
        prop_assert_eq!(&left.latency_us, &whole.latency_us);
        for (a, b) in [
            (&left.throughput_kib_s, &whole.throughput_kib_s),
            (&left.decision_ns, &whole.decision_ns),
            (&left.memory_bytes, &whole.memory_bytes),
        ] {
            prop_assert!(a.histogram == b.histogram);
            prop_assert_eq!(a.stats.count, b.stats.count);
            prop_assert_eq!(a.stats.min, b.stats.min);
            prop_assert_eq!(a.stats.max, b.stats.max);
            prop_assert!((a.stats.sum - b.stats.sum).abs() <= 1e-9 * b.stats.sum.abs());
        }
        let (a, b) = (point(Timestamp(0), &left), point(Timestamp(0), &whole));
        prop_assert_eq!(a.latency_us, b.latency_us);
        prop_assert_eq!(a.decision_ns, b.decision_ns);
        prop_assert_eq!(a.throughput_bps.p99, b.throughput_bps.p99);
    }

    #[test]
    fn an_hour_equals_the_merge_of_its_minutes_and_seconds(
        events in prop::collection::vec((0u64..7200, 1u32..100_000, 0u8..4), 1..200),
        chunk in 1usize..100,
    ) {
        let samples: Vec<_> = events
            .iter()
            .map(|&(secs, latency, who)| {
                let pool = if who & 1 == 0 { "a" } else { "b" };
                let method = if who & 2 == 0 { Method::Grpc } else { Method::ZeroCopy };
                metrics(pool, method, secs * 1_000_000_000 + 1, f64::from(latency))
            })
            .collect();
        let q = StoreQuery::new(store(&samples, chunk));
        let hours = q.merged_buckets(&query(0, 7200, 3600)).unwrap();
        let minutes = q.merged_buckets(&query(0, 7200, 60)).unwrap();
        let seconds = q.merged_buckets(&query(0, 7200, 1)).unwrap();
        for (&start, hour) in &hours {
            let mut from_minutes = Bucket::default();
            for (_, b) in minutes.range(start..start + 3600) {
                from_minutes.merge(b);
            }
            let mut from_seconds = Bucket::default();
            for (_, b) in seconds.range(start..start + 3600) {
                from_seconds.merge(b);
            }
            let mut truth = Bucket::default();
            for m in samples.iter().filter(|m| m.started_at.as_nanos() / 1_000_000_000 / 3600 == start / 3600) {
                truth.record(m);
            }
            for other in [&from_minutes, &from_seconds, &truth] {
                prop_assert_eq!(hour.count(), other.count());
                prop_assert!(hour.latency_us.histogram == other.latency_us.histogram);
                let (a, b) = (point(Timestamp(0), hour), point(Timestamp(0), other));
                prop_assert_eq!(a.latency_us.p50, b.latency_us.p50);
                prop_assert_eq!(a.latency_us.p99, b.latency_us.p99);
                prop_assert_eq!(a.decision_ns.p99, b.decision_ns.p99);
            }
        }
        let total: u64 = hours.values().map(Bucket::count).sum();
        prop_assert_eq!(total, samples.len() as u64);
        let series = q.series(&query(0, 7200, 3600)).unwrap();
        prop_assert_eq!(series.len(), hours.len());
        prop_assert_eq!(q.summary(&query(0, 7200, 60)).unwrap().latency_us.count, total);
    }
}

#[test]
fn series_and_samples_filter_by_pool_and_method() {
    let mut samples = Vec::new();
    for i in 0..400u64 {
        let pool = if i % 2 == 0 { "a" } else { "b" };
        let method = if i % 4 < 2 {
            Method::Grpc
        } else {
            Method::ZeroCopy
        };
        samples.push(metrics(pool, method, i * 500_000_000, 100.0 + i as f64));
    }
    let backend = store(&samples, 37);
    let q = StoreQuery::new(backend.clone());
    let count = |pool: Option<&str>, method: Option<Method>| {
        let mut sq = query(0, 200, 60);
        sq.pool = pool.map(|p| Name::new(p).unwrap());
        sq.method = method;
        q.series(&sq)
            .unwrap()
            .iter()
            .map(|p| p.latency_us.count)
            .sum::<u64>()
    };
    assert_eq!(count(None, None), 400);
    assert_eq!(count(Some("a"), None), 200);
    assert_eq!(count(None, Some(Method::ZeroCopy)), 200);
    assert_eq!(count(Some("a"), Some(Method::Grpc)), 100);
    assert_eq!(count(Some("nobody"), None), 0);

    // 200 s of data at 60 s: buckets start at 0, 60, 120 and 180.
    let points = q.series(&query(0, 200, 60)).unwrap();
    let starts: Vec<_> = points.iter().map(|p| p.start).collect();
    assert_eq!(starts, [0, 60, 120, 180].map(Timestamp::from_secs));
    assert_eq!(points[0].latency_us.count, 120);
    assert_eq!(points[0].latency_us.min, 100.0);
    assert_eq!(points[0].memory_bytes.p50, 65536.0);
    // A width no coarser granularity tiles (90 s) is read from 1 s buckets.
    let ninety = q.series(&query(0, 200, 90)).unwrap();
    assert_eq!(ninety[0].latency_us.count, 180);
    // A range is rounded down to the stored granularity: [30, 90) at 1 s holds 120 samples.
    let part = q.summary(&query(30, 90, 1)).unwrap();
    assert_eq!(part.latency_us.count, 120);

    let filter = SampleFilter {
        pool: Some(Name::new("b").unwrap()),
        method: Some(Method::ZeroCopy),
        ..SampleFilter::default()
    };
    let got = q.samples(&filter, 10).unwrap();
    assert_eq!(got.len(), 10);
    assert!(
        got.iter()
            .all(|m| m.pool.as_str() == "b" && m.method == Method::ZeroCopy)
    );
    assert!(got[0].started_at > got[9].started_at, "newest first");
    let profile = q.profile(&SampleFilter::default(), 1000).unwrap();
    assert_eq!(profile.samples, 400);
    assert_eq!(profile.by_size.len(), 1);
}

#[test]
fn invalid_granularities_and_limits_are_errors_naming_the_value() {
    let q = StoreQuery::new(Arc::new(MemoryBackend::default()));
    for g in [0, 3601, 7200] {
        match q.series(&query(0, 3600, g)) {
            Err(QueryError::Invalid(msg)) => assert!(msg.contains(&format!("{g} s")), "{msg}"),
            other => panic!("granularity {g}: {other:?}"),
        }
    }
    assert!(q.series(&query(0, 3600, 3600)).unwrap().is_empty());
    assert!(matches!(
        q.samples(&SampleFilter::default(), 2_000_000),
        Err(QueryError::Invalid(_))
    ));
}

#[test]
fn a_failing_backend_read_is_a_store_error() {
    struct Broken;
    impl Backend for Broken {
        fn commit(&self, _: &perf_store::Batch) -> Result<(), perf_store::StoreError> {
            Ok(())
        }
        fn buckets(
            &self,
            _: Granularity,
            _: u64,
            _: u64,
        ) -> Result<Vec<(perf_store::BucketKey, Bucket)>, perf_store::StoreError> {
            Err(perf_store::StoreError::Corrupt("bad page".into()))
        }
        fn samples(
            &self,
            _: &SampleFilter,
            _: usize,
        ) -> Result<Vec<TransferMetrics>, perf_store::StoreError> {
            Err(perf_store::StoreError::Io("read failed".into()))
        }
        fn evidence(
            &self,
            _: &SampleFilter,
            _: usize,
        ) -> Result<Vec<TransferMetrics>, perf_store::StoreError> {
            Err(perf_store::StoreError::Io("read failed".into()))
        }
    }
    let q = StoreQuery::new(Arc::new(Broken));
    let err = q.series(&query(0, 60, 1)).unwrap_err();
    assert!(
        matches!(&err, QueryError::Store(s) if s.contains("bad page")),
        "{err}"
    );
    assert!(matches!(
        q.samples(&SampleFilter::default(), 1),
        Err(QueryError::Store(_))
    ));
}

/// 100 delivered gRPC transfers of 100..200 us, then failed ones with latencies far above:
/// 3 timeouts and 1 refusal of pool `a` by gRPC, 2 unavailable of pool `b` by zero-copy.
fn with_failures() -> Vec<TransferMetrics> {
    let mut samples: Vec<_> = (0..100u64)
        .map(|i| metrics("a", Method::Grpc, i * 100_000_000, 100.0 + i as f64))
        .collect();
    for (i, (pool, method, kind)) in [
        ("a", Method::Grpc, perf_core::FailureKind::Timeout),
        ("a", Method::Grpc, perf_core::FailureKind::Timeout),
        ("a", Method::Grpc, perf_core::FailureKind::Timeout),
        ("a", Method::Grpc, perf_core::FailureKind::Refused),
        ("b", Method::ZeroCopy, perf_core::FailureKind::Unavailable),
        ("b", Method::ZeroCopy, perf_core::FailureKind::Unavailable),
    ]
    .into_iter()
    .enumerate()
    {
        let mut m = metrics(pool, method, 20_000_000_000 + i as u64, 30_000_000.0);
        m.fail(kind);
        m.queued_us = 250.0;
        samples.push(m);
    }
    samples
}

/// Checks what a query over the transfers of [`with_failures`] shows.
fn failures_are_counted_and_never_latency(backend: Arc<dyn Backend>) {
    use perf_core::FailureKind;
    let q = StoreQuery::new(backend.clone());
    let total = q.summary(&query(0, 60, 60)).unwrap();
    assert_eq!(total.latency_us.count, 100, "delivered transfers only");
    assert_eq!(total.latency_us.max, 199.0, "no failed latency");
    assert!(total.latency_us.p99 < 200.0, "{}", total.latency_us.p99);
    let totals = q.series_totals(&query(0, 60, 60)).unwrap();
    assert_eq!(totals.len(), 2, "one series per pool and method");
    let (a, b) = {
        let mut it = totals.iter();
        (it.next().unwrap(), it.next().unwrap())
    };
    assert_eq!((a.0.pool.as_str(), a.0.method), ("a", Method::Grpc));
    assert_eq!((a.1.delivered(), a.1.failed()), (100, 4));
    assert_eq!(a.1.failures.of(FailureKind::Timeout), 3);
    assert_eq!(a.1.failures.of(FailureKind::Refused), 1);
    assert_eq!((b.0.pool.as_str(), b.0.method), ("b", Method::ZeroCopy));
    assert_eq!((b.1.delivered(), b.1.failed()), (0, 2));
    assert_eq!(b.1.failures.of(FailureKind::Unavailable), 2);
    assert_eq!(
        b.1.queued_us.stats.sum, 500.0,
        "failed transfers queued too"
    );
    // A series of failures alone is still a point: it has transfers, though no latency.
    let mut only_b = query(0, 60, 60);
    only_b.pool = Some(Name::new("b").unwrap());
    let buckets = q.merged_buckets(&only_b).unwrap();
    assert_eq!(buckets.len(), 1);
    assert_eq!(buckets[&0].failed(), 2);
    assert_eq!(q.series(&only_b).unwrap()[0].latency_us.count, 0);
    // Consumers of the query seam never get a failed transfer as a sample.
    let evidence = q.samples(&SampleFilter::default(), 1000).unwrap();
    assert_eq!(evidence.len(), 100);
    assert!(evidence.iter().all(TransferMetrics::is_evidence));
    let newest = q.samples(&SampleFilter::default(), 5).unwrap();
    assert_eq!(newest.len(), 5, "the limit counts delivered transfers");
    assert_eq!(newest[0].latency_us, 199.0);
    assert_eq!(
        q.profile(&SampleFilter::default(), 1000).unwrap().samples,
        100
    );
    // The raw records keep every transfer, failed ones with their kind.
    let raw = backend.samples(&SampleFilter::default(), 1000).unwrap();
    assert_eq!(raw.len(), 106);
    assert_eq!(raw[0].failure, Some(FailureKind::Unavailable));
    assert_eq!(raw[0].queued_us, 250.0);
}

#[test]
fn failed_transfers_are_counted_by_series_and_kind_and_never_latency_in_memory() {
    failures_are_counted_and_never_latency(store(&with_failures(), 7));
}

#[test]
fn failed_transfers_are_counted_by_series_and_kind_and_never_latency_in_redb() {
    let dir = tempfile::tempdir().unwrap();
    {
        let backend = perf_store::RedbBackend::open(dir.path()).unwrap();
        let mut agg = Aggregator::new(AggregatorConfig::default());
        for m in with_failures() {
            agg.record(&m);
        }
        agg.commit(&backend).unwrap();
        failures_are_counted_and_never_latency(Arc::new(backend));
    }
    let reader = perf_store::RedbReader::open(dir.path()).unwrap();
    failures_are_counted_and_never_latency(Arc::new(reader));
}

/// The statistics report of `perfopt stats`: totals, per method and per bucket agree with the
/// stored transfers, it goes through JSON and back unchanged, and bad bounds are refused.
#[test]
fn the_stats_report_counts_what_is_stored_and_round_trips_through_json() {
    use perf_core::StatsRequest;
    use perf_store::StatsReport;
    let q = StoreQuery::new(store(&with_failures(), 16));
    let request = StatsRequest {
        pool: None,
        method: None,
        since_secs: 60,
        granularity_secs: 10,
        profile: true,
    };
    let report = StatsReport::read(&q, &request, Timestamp::from_secs(59)).unwrap();
    assert_eq!(
        (report.total_transfers, report.delivered, report.failed),
        (106, 100, 6)
    );
    assert_eq!(report.failures_by_kind["timeout"], 3);
    assert_eq!(report.failures_by_kind["unavailable"], 2);
    assert_eq!(report.latency_us.max, 199.0, "no failed latency");
    let methods: Vec<(Method, u64)> = report
        .by_method
        .iter()
        .map(|m| (m.method, m.transfers))
        .collect();
    assert_eq!(methods, [(Method::ZeroCopy, 2), (Method::Grpc, 104)]);
    let starts: Vec<u64> = report.buckets.iter().map(|b| b.start_unix_s).collect();
    assert_eq!(starts, [0, 20], "buckets with no transfer are left out");
    assert_eq!(report.buckets.iter().map(|b| b.count).sum::<u64>(), 106);
    assert_eq!(report.profile.as_ref().unwrap().samples, 100);
    let back: StatsReport = serde_json::from_value(serde_json::to_value(&report).unwrap()).unwrap();
    assert_eq!(back, report);

    let only_b = StatsRequest {
        pool: Some(Name::new("b").unwrap()),
        profile: false,
        ..request
    };
    let b = StatsReport::read(&q, &only_b, Timestamp::from_secs(59)).unwrap();
    assert_eq!((b.total_transfers, b.failed, b.profile), (2, 2, None));

    for (since_secs, granularity_secs, what) in [
        (0, 1, "since"),
        (60, 0, "granularity"),
        (200_001, 2, "buckets"),
    ] {
        let bad = StatsRequest {
            since_secs,
            granularity_secs,
            ..request
        };
        match StatsReport::read(&q, &bad, Timestamp::from_secs(59)) {
            Err(QueryError::Invalid(why)) => assert!(why.contains(what), "{why}"),
            other => panic!("{bad:?} gave {other:?}"),
        }
    }
}
