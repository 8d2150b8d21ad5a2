//! Zero-copy end to end: pool, signed references, a worker reading in place, and every fallback to gRPC.

use std::sync::Arc;

use perf_core::{
    Config, Controller, FallbackReason, FixedPolicy, FixedProbe, Method, ReasonCode,
    TransferRequest, Verification,
};
use perf_platform::{MemfdShm, NamedShm, NamedShmConfig};
use perf_transport::grpc::{
    ClientConfig, Endpoint, Listener, ServiceConfig, TransferService, WorkerClient, checksum,
};
use perf_transport::{
    Executor, ExecutorConfig, LeaseKind, ReferenceReader, Secret, SegmentPool, SegmentPoolConfig,
};
use tokio::sync::oneshot;

const MIB: usize = 1 << 20;

struct Worker {
    endpoint: Endpoint,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn worker(reader: Option<ReferenceReader>) -> Worker {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = Endpoint::Unix(dir.path().join("w.sock"));
    let listener = Listener::bind(&endpoint).await.unwrap();
    let mut service = TransferService::new(ServiceConfig::default()).unwrap();
    if let Some(r) = reader {
        service = service.with_reference_handler(Arc::new(r));
    }
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(listener.serve(service, async {
        let _ = stopped.await;
    }));
    Worker {
        endpoint,
        _stop: stop,
        _dir: dir,
    }
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn executor(
    w: &Worker,
    policy: Arc<dyn perf_core::TransferPolicy>,
    pool: SegmentPool,
    secret: Secret,
) -> Executor {
    // These tests prove the bytes arrive intact: every byte is checksummed.
    let config = ExecutorConfig {
        verify: Some(Verification::Checksum),
        ..ExecutorConfig::default()
    };
    executor_with(w, policy, pool, secret, config).await
}

async fn executor_with(
    w: &Worker,
    policy: Arc<dyn perf_core::TransferPolicy>,
    pool: SegmentPool,
    secret: Secret,
    config: ExecutorConfig,
) -> Executor {
    let client = WorkerClient::connect(&w.endpoint, ClientConfig::default())
        .await
        .unwrap();
    Executor::connect(
        policy,
        client,
        Some((pool, secret)),
        Arc::new(FixedProbe::default()),
        config,
    )
    .await
    .unwrap()
}

fn memfd_pool(budget: u64) -> SegmentPool {
    let config = SegmentPoolConfig {
        budget_bytes: budget,
        ..SegmentPoolConfig::default()
    };
    SegmentPool::new(Arc::new(MemfdShm::default()), config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_copy_transfers_arrive_intact_and_reuse_pooled_segments() {
    let secret = Secret::generate().unwrap();
    let reader = ReferenceReader::new(
        Arc::new(MemfdShm::default()),
        secret.clone(),
        Some(std::process::id()),
    );
    let w = worker(Some(reader)).await;
    let pool = memfd_pool(1 << 30);
    let ex = executor(
        &w,
        Arc::new(FixedPolicy(Method::ZeroCopy)),
        pool.clone(),
        secret,
    )
    .await;
    assert!(ex.peer().zero_copy);
    for (i, len) in [1024, 256 << 10, 3 * MIB, 17 * MIB].into_iter().enumerate() {
        let data = payload(len, i as u8);
        for round in 0..2 {
            let out = ex
                .transfer(&TransferRequest::new(len as u64), &data)
                .await
                .unwrap();
            assert_eq!(out.metrics.method, Method::ZeroCopy, "{len} round {round}");
            assert_eq!(out.metrics.fallback, None);
            assert_eq!(out.ack.checksum, checksum(&data));
            assert_eq!(out.ack.length, len as u64);
        }
    }
    let stats = pool.stats();
    assert_eq!(stats.created, 4, "{stats:?}");
    assert_eq!(
        stats.reused, 4,
        "the second round reuses every segment: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loaned_segment_is_sent_without_a_copy() {
    let secret = Secret::generate().unwrap();
    let reader = ReferenceReader::new(Arc::new(MemfdShm::default()), secret.clone(), None);
    let w = worker(Some(reader)).await;
    let ex = executor(
        &w,
        Arc::new(FixedPolicy(Method::ZeroCopy)),
        memfd_pool(1 << 30),
        secret,
    )
    .await;
    let mut lease = ex.loan(5 * MIB).unwrap();
    assert_eq!(lease.kind(), LeaseKind::Created);
    let data = payload(5 * MIB, 9);
    lease.as_mut_slice()[..data.len()].copy_from_slice(&data);
    let out = ex
        .send_lease(&TransferRequest::new(0), lease, data.len())
        .await
        .unwrap();
    assert_eq!(out.metrics.method, Method::ZeroCopy);
    assert_eq!(out.metrics.size, data.len() as u64);
    assert_eq!(out.ack.checksum, checksum(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_another_secret_refuses_and_the_transfer_falls_back_to_grpc() {
    let reader = ReferenceReader::new(
        Arc::new(MemfdShm::default()),
        Secret::generate().unwrap(),
        None,
    );
    let w = worker(Some(reader)).await;
    let ex = executor(
        &w,
        Arc::new(FixedPolicy(Method::ZeroCopy)),
        memfd_pool(1 << 30),
        Secret::generate().unwrap(),
    )
    .await;
    let data = payload(2 * MIB, 3);
    let out = ex.transfer(&TransferRequest::new(0), &data).await.unwrap();
    assert_eq!(out.decision.method, Method::ZeroCopy);
    assert_eq!(out.metrics.method, Method::Grpc);
    assert_eq!(out.metrics.fallback, Some(FallbackReason::ReferenceRefused));
    assert_eq!(out.ack.checksum, checksum(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_makes_the_decision_choose_grpc() {
    let secret = Secret::generate().unwrap();
    let reader = ReferenceReader::new(Arc::new(MemfdShm::default()), secret.clone(), None);
    let w = worker(Some(reader)).await;
    let controller = Arc::new(Controller::new(Config::default()).unwrap());
    let ex = executor(&w, controller, memfd_pool(4 * MIB as u64), secret).await;
    // 64 MiB is above the default threshold but the 4 MiB budget cannot hold it.
    let data = payload(64 * MIB, 1);
    let out = ex.transfer(&TransferRequest::new(0), &data).await.unwrap();
    assert_eq!(out.decision.reason.code(), ReasonCode::ZeroCopyUnavailable);
    assert_eq!(out.metrics.method, Method::Grpc);
    assert_eq!(out.ack.checksum, checksum(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_zero_copy_gets_everything_by_grpc() {
    let w = worker(None).await;
    let secret = Secret::generate().unwrap();
    let ex = executor(
        &w,
        Arc::new(FixedPolicy(Method::ZeroCopy)),
        memfd_pool(1 << 30),
        secret,
    )
    .await;
    assert!(ex.pool().is_none());
    let data = payload(MIB, 5);
    let out = ex.transfer(&TransferRequest::new(0), &data).await.unwrap();
    assert_eq!(out.decision.reason.code(), ReasonCode::ZeroCopyUnavailable);
    assert_eq!(out.metrics.method, Method::Grpc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_segments_carry_transfers_and_are_unlinked_when_released() {
    let shm_dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let named = || {
        NamedShm::new(NamedShmConfig {
            dir: shm_dir.path().to_path_buf(),
            prefix: "perfopttest".into(),
            ..NamedShmConfig::default()
        })
        .unwrap()
    };
    let secret = Secret::generate().unwrap();
    let reader = ReferenceReader::new(Arc::new(named()), secret.clone(), None);
    let w = worker(Some(reader)).await;
    let config = SegmentPoolConfig {
        max_class: 16 * MIB,
        ..SegmentPoolConfig::default()
    };
    let pool = SegmentPool::new(Arc::new(named()), config).unwrap();
    let ex = executor(
        &w,
        Arc::new(FixedPolicy(Method::ZeroCopy)),
        pool.clone(),
        secret,
    )
    .await;
    let data = payload(20 * MIB, 7);
    let out = ex.transfer(&TransferRequest::new(0), &data).await.unwrap();
    assert_eq!(out.metrics.method, Method::ZeroCopy);
    assert_eq!(out.ack.checksum, checksum(&data));
    // 20 MiB is above the largest class: a one-off segment, gone once sent.
    assert_eq!(pool.stats().one_off, 1);
    let left = std::fs::read_dir(shm_dir.path()).unwrap().count();
    assert_eq!(left, 0, "the one-off segment was unlinked");
}

/// A signed reference to the first `len` bytes of `lease`, valid for a minute.
fn signed(lease: &perf_transport::Lease, len: usize, secret: &Secret) -> perf_transport::Reference {
    let mut r = perf_transport::Reference {
        transfer_id: 99,
        segment: lease.id().clone(),
        segment_inode: lease.inode(),
        segment_len: lease.len() as u64,
        offset: 0,
        length: len as u64,
        format: "raw".into(),
        expires_unix_ms: perf_transport::reader::now_unix_ms() + 60_000,
        token: [0; 32],
    };
    r.sign(secret);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_stream_must_announce_the_whole_payload_in_order() {
    let secret = Secret::generate().unwrap();
    let reader = ReferenceReader::new(Arc::new(MemfdShm::default()), secret.clone(), None);
    let w = worker(Some(reader)).await;
    let client = WorkerClient::connect(&w.endpoint, ClientConfig::default())
        .await
        .unwrap();
    let pool = memfd_pool(1 << 30);
    let mut lease = pool.acquire(8 * MIB).unwrap();
    let data = payload(8 * MIB, 4);
    lease.as_mut_slice()[..data.len()].copy_from_slice(&data);
    let reference = signed(&lease, data.len(), &secret);

    // In order and complete: the worker's checksum is the payload's.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    for ready in [MIB, 5 * MIB, 8 * MIB] {
        tx.send(ready as u64).await.unwrap();
    }
    drop(tx);
    let ack = client.send_reference_stream(&reference, rx).await.unwrap();
    assert_eq!(ack.checksum, checksum(&data));

    // Stopping early is refused.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(3 * MIB as u64).await.unwrap();
    drop(tx);
    let err = client
        .send_reference_stream(&reference, rx)
        .await
        .unwrap_err();
    assert_eq!(
        err.rejection_code(),
        Some(perf_transport::grpc::Code::InvalidArgument),
        "{err}"
    );

    // Going backwards, or beyond the payload, is refused.
    for steps in [[4 * MIB, 2 * MIB], [MIB, 9 * MIB]] {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        for ready in steps {
            tx.send(ready as u64).await.unwrap();
        }
        drop(tx);
        let err = client
            .send_reference_stream(&reference, rx)
            .await
            .unwrap_err();
        assert_eq!(
            err.rejection_code(),
            Some(perf_transport::grpc::Code::OutOfRange),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_verification_delivers_over_a_real_worker_and_the_pool_default_samples() {
    use perf_transport::checksum::digest;
    let secret = Secret::generate().unwrap();
    let reader = ReferenceReader::new(
        Arc::new(MemfdShm::default()),
        secret.clone(),
        Some(std::process::id()),
    );
    let w = worker(Some(reader)).await;
    let pool = memfd_pool(1 << 30);
    let modes = [
        Some(Verification::Checksum),
        Some(Verification::Sampled),
        Some(Verification::None),
        None,
    ];
    for verify in modes {
        let config = ExecutorConfig {
            verify,
            ..ExecutorConfig::default()
        };
        let policy = Arc::new(FixedPolicy(Method::ZeroCopy));
        let ex = executor_with(&w, policy, pool.clone(), secret.clone(), config).await;
        assert!(ex.peer().speaks("verify"), "{:?}", ex.peer());
        // The default pool samples.
        let want = verify.unwrap_or(Verification::Sampled);
        for len in [100 << 10, 9 * MIB + 5] {
            let data = payload(len, len as u8);
            let out = ex
                .transfer(&TransferRequest::new(len as u64), &data)
                .await
                .unwrap();
            assert_eq!(out.metrics.method, Method::ZeroCopy, "{want} {len}");
            assert_eq!(out.metrics.fallback, None, "{want} {len}");
            assert!(out.metrics.success);
            assert_eq!(out.verified, want);
            assert_eq!(out.ack.checksum, digest(&data, want), "{want} {len}");
            assert_eq!(out.ack.length, len as u64);
        }
    }
}
