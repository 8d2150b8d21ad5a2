//! The host runtime under load, over real gRPC on real Unix sockets to in-process workers:
//! admission instead of failures, every transfer recorded, a dead worker's transfers retried on
//! a live one, and a busy segment pool waited for instead of degrading to gRPC.

use std::sync::Arc;
use std::time::Duration;

use perf_core::{
    Config, Controller, FailureKind, FixedPolicy, Method, ReasonCode, TransferPolicy,
    TransferRequest,
};
use perf_platform::MemfdShm;
use perf_transport::grpc::{Endpoint, ServiceConfig, TransferService};
use perf_transport::{
    Host, HostConfig, ReferenceReader, Secret, SegmentPool, SegmentPoolConfig, TransferError,
};

mod own_runtime;

use own_runtime::{Records, Served};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// An in-process worker serving the transfer protocol on a Unix socket, on a runtime of its
/// own.
struct Worker;

impl Worker {
    async fn start(secret: Option<&Secret>, config: ServiceConfig) -> Served {
        let mut service = TransferService::new(config).unwrap();
        if let Some(secret) = secret {
            let reader = ReferenceReader::new(
                Arc::new(MemfdShm::default()),
                secret.clone(),
                Some(std::process::id()),
            );
            service = service.with_reference_handler(Arc::new(reader));
        }
        Served::start(service, 1).await
    }
}

fn payload(len: usize, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(2_654_435_761) ^ seed) as u8)
        .collect()
}

fn pool(budget: u64) -> SegmentPool {
    let config = SegmentPoolConfig {
        budget_bytes: budget,
        ..SegmentPoolConfig::default()
    };
    SegmentPool::new(Arc::new(MemfdShm::default()), config).unwrap()
}

/// Sizes spread log-uniformly over `lo..=hi`, the same for every run.
fn sizes(n: usize, lo: usize, hi: usize) -> Vec<usize> {
    let (llo, lhi) = ((lo as f64).ln(), (hi as f64).ln());
    (0..n)
        .map(|i| {
            let u =
                ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
            ((llo + u * (lhi - llo)).exp() as usize).clamp(lo, hi)
        })
        .collect()
}

/// Submits one transfer per size from its own task, all at once, and checks that every one
/// was delivered, verified and recorded exactly once, within the host's bounds.
async fn all_at_once(n: usize, hi: usize) {
    let secret = Secret::generate().unwrap();
    let workers = [
        Worker::start(Some(&secret), ServiceConfig::default()).await,
        Worker::start(Some(&secret), ServiceConfig::default()).await,
    ];
    let records = Arc::new(Records::default());
    let policy: Arc<dyn TransferPolicy> = Arc::new(Controller::new(Config::default()).unwrap());
    let host = Host::builder(policy)
        .zero_copy(pool(1 << 30))
        .secret(secret)
        .sink(records.clone())
        .connect(workers[0].endpoint.clone())
        .connect(workers[1].endpoint.clone())
        .start()
        .await
        .unwrap();
    let data: Arc<Vec<u8>> = Arc::new(payload(hi, 7));
    let mut tasks = Vec::new();
    for (i, len) in sizes(n, KIB, hi).into_iter().enumerate() {
        let host = host.clone();
        let data = data.clone();
        tasks.push(tokio::spawn(async move {
            let request = TransferRequest::new(len as u64).with_session(i as u64);
            host.transfer(&request, &data[..len]).await
        }));
    }
    let mut delivered = 0;
    for task in tasks {
        let outcome = task.await.unwrap().unwrap();
        assert!(outcome.metrics.success);
        delivered += 1;
    }
    assert_eq!(delivered, n);
    let stats = host.stats();
    assert_eq!(
        (stats.delivered, stats.failed, stats.retried),
        (n as u64, 0, 0)
    );
    assert!(stats.peak_in_flight <= host.capacity(), "{stats:?}");
    assert_eq!(
        host.capacity(),
        2 * HostConfig::RECOMMENDED_IN_FLIGHT_PER_WORKER
    );
    // Both workers took a share.
    assert!(stats.workers.iter().all(|w| w.carried > 0), "{stats:?}");
    let records = records.all();
    assert_eq!(records.len(), n, "every transfer recorded once");
    assert!(records.iter().all(|r| r.success && r.failure.is_none()));
    // Callers beyond the host's room waited, and that wait is reported apart.
    assert!(records.iter().any(|r| r.queued_us > 0.0));
    assert!(
        !records
            .iter()
            .any(|r| r.reason == ReasonCode::ZeroCopyUnavailable),
        "a busy pool is waited for, never taken for an unavailable one"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_submitted_all_at_once_are_all_delivered_and_recorded() {
    if std::env::var_os("PERFOPT_SLOW_TESTS").is_some() {
        all_at_once(10_000, 16 * MIB).await;
    } else {
        all_at_once(2_000, MIB).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_transfer_is_recorded_as_failed_with_its_kind_and_not_retried() {
    let config = ServiceConfig {
        max_inline_bytes: 64 * KIB as u64,
        ..ServiceConfig::default()
    };
    let worker = Worker::start(None, config).await;
    let records = Arc::new(Records::default());
    let host = Host::builder(Arc::new(FixedPolicy(Method::Grpc)))
        .sink(records.clone())
        .connect(worker.endpoint.clone())
        .start()
        .await
        .unwrap();
    let big = payload(256 * KIB, 1);
    let err = host
        .transfer(&TransferRequest::new(0), &big)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), FailureKind::Refused, "{err}");
    let small = payload(KIB, 2);
    host.transfer(&TransferRequest::new(0), &small)
        .await
        .unwrap();
    let stats = host.stats();
    assert_eq!((stats.delivered, stats.failed, stats.retried), (1, 1, 0));
    let records = records.all();
    assert_eq!(records.len(), 2);
    let failed = &records[0];
    assert!(!failed.success);
    assert_eq!(failed.failure, Some(FailureKind::Refused));
    assert_eq!(failed.size, big.len() as u64);
    assert!(!failed.is_evidence());
    assert!(records[1].success && records[1].is_evidence());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_whose_worker_dies_is_recorded_and_carried_by_the_other_worker() {
    let mut dying = Worker::start(None, ServiceConfig::default()).await;
    let steady = Worker::start(None, ServiceConfig::default()).await;
    let records = Arc::new(Records::default());
    let host = Host::builder(Arc::new(FixedPolicy(Method::Grpc)))
        .sink(records.clone())
        .connect(dying.endpoint.clone())
        .connect(steady.endpoint.clone())
        .start()
        .await
        .unwrap();
    let data = payload(64 * KIB, 3);
    for _ in 0..8 {
        host.transfer(&TransferRequest::new(0), &data)
            .await
            .unwrap();
    }
    dying.kill().await;
    // Every transfer still arrives: those sent to the dead worker are tried again.
    for _ in 0..32 {
        let outcome = host
            .transfer(&TransferRequest::new(0), &data)
            .await
            .unwrap();
        assert!(outcome.metrics.success);
    }
    let stats = host.stats();
    assert_eq!(stats.delivered, 40, "{stats:?}");
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert!(
        stats.retried >= 1,
        "the dead worker's transfer was retried: {stats:?}"
    );
    let records = records.all();
    let failed: Vec<_> = records.iter().filter(|r| !r.success).collect();
    assert_eq!(
        failed.len() as u64,
        stats.retried,
        "each failed attempt is recorded"
    );
    assert!(
        failed
            .iter()
            .all(|r| r.failure == Some(FailureKind::Unavailable)),
        "{failed:?}"
    );
    assert_eq!(records.len() as u64, 40 + stats.retried);
    // The dead worker is out of service until it comes back.
    assert_eq!(stats.live_workers, 1, "{stats:?}");
    assert!(stats.workers[0].last_error.is_some(), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_worker_left_a_transfer_fails_as_unavailable_after_the_wait_and_is_recorded() {
    let mut only = Worker::start(None, ServiceConfig::default()).await;
    let records = Arc::new(Records::default());
    let host = Host::builder(Arc::new(FixedPolicy(Method::Grpc)))
        .sink(records.clone())
        .connect(only.endpoint.clone())
        .config(HostConfig {
            worker_wait: Duration::from_millis(300),
            ..HostConfig::default()
        })
        .start()
        .await
        .unwrap();
    only.kill().await;
    let data = payload(KIB, 4);
    let err = host
        .transfer(&TransferRequest::new(0), &data)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), FailureKind::Unavailable, "{err}");
    assert!(
        matches!(err, TransferError::NoWorker { .. }),
        "the retry found no live worker: {err}"
    );
    let stats = host.stats();
    assert_eq!((stats.delivered, stats.failed, stats.retried), (0, 1, 1));
    let records = records.all();
    assert_eq!(
        records.len(),
        2,
        "the failed attempt and the unplaced retry"
    );
    assert!(records.iter().all(|r| !r.success));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_segment_pool_makes_large_transfers_wait_for_a_segment_not_fall_back() {
    let secret = Secret::generate().unwrap();
    let worker = Worker::start(Some(&secret), ServiceConfig::default()).await;
    let records = Arc::new(Records::default());
    // Room for two 8 MiB segments at a time, with eight transfers in flight.
    let segments = pool(16 * MIB as u64);
    let host = Host::builder(Arc::new(FixedPolicy(Method::ZeroCopy)))
        .zero_copy(segments.clone())
        .secret(secret)
        .sink(records.clone())
        .connect(worker.endpoint.clone())
        .config(HostConfig {
            in_flight_per_worker: 8,
            executor: perf_transport::ExecutorConfig {
                segment_wait: Duration::from_secs(10),
                ..perf_transport::ExecutorConfig::default()
            },
            ..HostConfig::default()
        })
        .start()
        .await
        .unwrap();
    let data = Arc::new(payload(6 * MIB, 5));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (host, data) = (host.clone(), data.clone());
        tasks.push(tokio::spawn(async move {
            host.transfer(&TransferRequest::new(0), &data).await
        }));
    }
    for task in tasks {
        let outcome = task.await.unwrap().unwrap();
        assert_eq!(outcome.metrics.method, Method::ZeroCopy);
        assert_eq!(outcome.metrics.fallback, None);
    }
    let stats = segments.stats();
    assert!(stats.waited > 0, "the pool was busy: {stats:?}");
    assert_eq!(stats.waited, stats.waited_served, "{stats:?}");
    assert!(stats.held_bytes <= 16 * MIB as u64);
    assert_eq!(records.all().len(), 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loaned_segment_goes_through_the_host_without_a_copy() {
    let secret = Secret::generate().unwrap();
    let worker = Worker::start(Some(&secret), ServiceConfig::default()).await;
    let host = Host::builder(Arc::new(FixedPolicy(Method::ZeroCopy)))
        .zero_copy(pool(1 << 30))
        .secret(secret)
        .connect(worker.endpoint.clone())
        .start()
        .await
        .unwrap();
    let data = payload(3 * MIB, 6);
    let mut lease = host.loan(data.len()).unwrap();
    lease.as_mut_slice()[..data.len()].copy_from_slice(&data);
    let outcome = host
        .send_lease(&TransferRequest::new(0), lease, data.len())
        .await
        .unwrap();
    assert_eq!(outcome.metrics.method, Method::ZeroCopy);
    // The default pool samples; the worker speaks the extension.
    assert_eq!(outcome.verified, perf_core::Verification::Sampled);
    assert_eq!(
        outcome.ack.checksum,
        perf_transport::checksum::digest(&data, outcome.verified)
    );
}

#[tokio::test]
async fn a_host_without_workers_or_with_bounds_out_of_range_is_refused() {
    let err = Host::builder(Arc::new(FixedPolicy(Method::Grpc)))
        .start()
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid host configuration: no workers: spawn or connect at least one"
    );
    let err = Host::builder(Arc::new(FixedPolicy(Method::Grpc)))
        .config(HostConfig {
            in_flight_per_worker: 0,
            ..HostConfig::default()
        })
        .connect(Endpoint::parse("unix:/nonexistent/w.sock").unwrap())
        .start()
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid host configuration: in_flight_per_worker 0, expected 1 to 100000"
    );
}
