//! Recording through `StoreSink`: nothing lost unless counted, bounded memory, flush semantics and
//! a failing backend.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use perf_core::{
    DecisionContext, FixedPolicy, Method, MetricsSink, Name, SampleFilter, SystemState, Timestamp,
    TransferMetrics, TransferPolicy, TransferRequest,
};
use perf_store::{
    Backend, FlakyBackend, Granularity, MemoryBackend, MemoryConfig, SinkConfig, StoreSink,
};

fn metrics(pool: &str, method: Method, nanos: u64, latency_us: f64) -> TransferMetrics {
    let req = TransferRequest::new(4096).with_pool(Name::new(pool).unwrap());
    let d = FixedPolicy(method).decide(&req, &DecisionContext::idle(Timestamp(0)));
    TransferMetrics::new(
        &req,
        &d,
        method,
        latency_us,
        Timestamp(nanos),
        SystemState::IDLE,
    )
}

/// Commits only when asked: no interval or size trigger fires during a test.
fn flush_only() -> SinkConfig {
    SinkConfig {
        flush_interval: Duration::from_secs(60),
        batch_records: 1_000_000,
        ..SinkConfig::default()
    }
}

/// Every stored bucket of `g`, the count of transfers they hold.
fn stored_count(backend: &dyn Backend, g: Granularity) -> u64 {
    backend
        .buckets(g, 0, u64::MAX)
        .unwrap()
        .iter()
        .map(|(_, b)| b.count())
        .sum()
}

#[test]
fn a_million_records_from_two_threads_are_committed_or_counted() {
    let backend = Arc::new(MemoryBackend::new(MemoryConfig {
        max_samples: 100_000,
        ..MemoryConfig::default()
    }));
    let capacity = 4096;
    let sink = Arc::new(
        StoreSink::new(
            backend.clone(),
            SinkConfig {
                queue_capacity: capacity,
                ..SinkConfig::default()
            },
        )
        .unwrap(),
    );
    let per_thread = 500_000u64;
    let producers: Vec<_> = (0..2u64)
        .map(|t| {
            let sink = Arc::clone(&sink);
            thread::spawn(move || {
                let mut max_queued = 0;
                for i in 0..per_thread {
                    // Spread over about 2 hours, so that buckets close and leave memory.
                    let nanos = (i * 2 + t) * 7_000_000;
                    let method = if i % 3 == 0 {
                        Method::ZeroCopy
                    } else {
                        Method::Grpc
                    };
                    sink.record(&metrics("p", method, nanos, (i % 1000) as f64 + 1.0));
                    if i % 10_000 == 0 {
                        max_queued = max_queued.max(sink.stats().queued);
                    }
                }
                max_queued
            })
        })
        .collect();
    let max_queued = producers
        .into_iter()
        .map(|p| p.join().unwrap())
        .max()
        .unwrap();
    sink.flush();
    let stats = sink.stats();
    assert_eq!(stats.recorded, 2 * per_thread);
    assert_eq!(stats.recorded, stats.committed + stats.dropped, "{stats:?}");
    assert!(stats.committed > 0);
    assert!(max_queued <= capacity as u64, "queued {max_queued}");
    assert_eq!(stats.queued, 0);
    assert_eq!(stats.pending_samples, 0);
    // About two hours at 1 s with 5 s of grace: a handful of seconds, minutes and hours stay.
    assert!(stats.open_buckets < 50, "{stats:?}");
    for g in Granularity::ALL {
        assert_eq!(stored_count(backend.as_ref(), g), stats.committed, "{g:?}");
    }
    assert_eq!(
        backend.sample_count() as u64,
        stats.committed.min(100_000),
        "the backend keeps its bound"
    );
}

#[test]
fn flush_waits_for_everything_recorded_before_it() {
    let backend = Arc::new(MemoryBackend::default());
    let sink = StoreSink::new(backend.clone(), flush_only()).unwrap();
    sink.flush();
    assert_eq!(backend.sample_count(), 0);
    for round in 1..=3u64 {
        for i in 0..1000 {
            sink.record(&metrics("p", Method::Grpc, i * 1_000_000, 10.0));
        }
        sink.flush();
        assert_eq!(backend.sample_count() as u64, round * 1000);
        assert_eq!(
            stored_count(backend.as_ref(), Granularity::Hour),
            round * 1000
        );
    }
    let stats = sink.stats();
    assert_eq!(
        (stats.recorded, stats.committed, stats.dropped),
        (3000, 3000, 0)
    );
    assert!(sink.try_flush().is_ok());
}

#[test]
fn concurrent_flushes_all_return_and_drop_flushes_the_rest() {
    let backend = Arc::new(MemoryBackend::default());
    let sink = Arc::new(StoreSink::new(backend.clone(), flush_only()).unwrap());
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            let sink = Arc::clone(&sink);
            thread::spawn(move || {
                for i in 0..200 {
                    sink.record(&metrics("p", Method::ZeroCopy, (t * 200 + i) * 1000, 5.0));
                    if i % 50 == 0 {
                        sink.flush();
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    sink.record(&metrics("p", Method::ZeroCopy, 0, 5.0));
    drop(Arc::into_inner(sink).unwrap());
    assert_eq!(backend.sample_count(), 801, "drop commits what is left");
    assert_eq!(stored_count(backend.as_ref(), Granularity::Second), 801);
}

#[test]
fn a_failing_backend_loses_nothing_committed_and_reports_the_error() {
    let backend = Arc::new(FlakyBackend::failing(0));
    let sink = StoreSink::new(backend.clone(), flush_only()).unwrap();
    for i in 0..100 {
        sink.record(&metrics("p", Method::Grpc, i * 1_000_000, 10.0));
    }
    sink.try_flush().unwrap();
    backend.fail_next(3);
    for i in 100..300 {
        sink.record(&metrics("p", Method::Grpc, i * 1_000_000, 20.0));
    }
    for attempt in 1..=3 {
        let err = sink.try_flush().unwrap_err();
        assert!(err.to_string().contains("no space left"), "{err}");
        let stats = sink.stats();
        assert_eq!(stats.failed_commits, attempt);
        assert_eq!(stats.last_error, Some(err));
        assert_eq!(stats.committed, 100);
        assert_eq!(stats.pending_samples, 200);
        assert_eq!(
            backend.inner.sample_count(),
            100,
            "what was committed stays"
        );
        assert_eq!(stored_count(&backend.inner, Granularity::Hour), 100);
    }
    sink.try_flush().unwrap();
    let stats = sink.stats();
    assert_eq!(stats.committed, 300);
    assert_eq!(stats.last_error, None);
    assert_eq!(stats.failed_commits, 3);
    assert_eq!(backend.inner.sample_count(), 300);
    for g in Granularity::ALL {
        assert_eq!(stored_count(&backend.inner, g), 300, "{g:?}");
    }
    let final_stats = sink.close().unwrap();
    assert_eq!(final_stats.recorded, 300);
}

#[test]
fn a_long_failure_drops_oldest_raw_samples_but_keeps_aggregates() {
    let backend = Arc::new(FlakyBackend::failing(u32::MAX));
    let sink = StoreSink::new(
        backend.clone(),
        SinkConfig {
            max_pending_samples: 50,
            ..flush_only()
        },
    )
    .unwrap();
    for i in 0..120u64 {
        sink.record(&metrics("p", Method::Grpc, i * 1_000_000_000, i as f64));
    }
    assert!(sink.try_flush().is_err());
    let stats = sink.stats();
    assert_eq!((stats.samples_dropped, stats.pending_samples), (70, 50));
    backend.fail_next(0);
    sink.try_flush().unwrap();
    let stats = sink.stats();
    assert_eq!(
        stats.committed, 120,
        "aggregates of every record are committed"
    );
    assert_eq!(stored_count(&backend.inner, Granularity::Minute), 120);
    let kept = backend
        .inner
        .samples(&SampleFilter::default(), 1000)
        .unwrap();
    assert_eq!(kept.len(), 50);
    assert_eq!(
        kept.last().unwrap().latency_us,
        70.0,
        "the oldest were dropped"
    );
}

#[test]
fn the_interval_commits_without_a_flush_and_retries_after_failures() {
    let backend = Arc::new(FlakyBackend::failing(2));
    let sink = StoreSink::new(
        backend.clone(),
        SinkConfig {
            flush_interval: Duration::from_millis(5),
            ..SinkConfig::default()
        },
    )
    .unwrap();
    sink.record(&metrics("p", Method::Grpc, 0, 1.0));
    // Polls until the timer has retried past both failures and the drain thread
    // has counted the commit (it does so just after the backend's write);
    // bounded so that a bug fails the test.
    for _ in 0..2000 {
        if backend.inner.sample_count() == 1 && sink.stats().committed == 1 {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(backend.inner.sample_count(), 1);
    let stats = sink.stats();
    assert_eq!((stats.committed, stats.failed_commits), (1, 2));
    assert_eq!(stats.last_error, None);
}

#[test]
fn over_redb_everything_flushed_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = Arc::new(perf_store::RedbBackend::open(dir.path()).unwrap());
    let sink = StoreSink::new(first, flush_only()).unwrap();
    for i in 0..500u64 {
        sink.record(&metrics("p", Method::Grpc, i * 10_000_000, 10.0 + i as f64));
    }
    sink.close().unwrap();
    // A second sink in the same hour adds to the stored buckets instead of replacing them.
    let second = Arc::new(perf_store::RedbBackend::open(dir.path()).unwrap());
    let sink = StoreSink::new(second.clone(), flush_only()).unwrap();
    sink.record(&metrics("p", Method::Grpc, 0, 1.0));
    sink.try_flush().unwrap();
    for g in Granularity::ALL {
        assert_eq!(stored_count(second.as_ref(), g), 501, "{g:?}");
    }
    let newest = second.samples(&SampleFilter::default(), 1000).unwrap();
    assert_eq!(newest.len(), 501);
}
