//! The facade end to end: an optimizer connects to a worker and carries real transfers by both methods.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use perfopt::core::FixedProbe;
use perfopt::platform::MemfdShm;
use perfopt::transport::checksum::digest;
use perfopt::transport::grpc::{ClientConfig, checksum};
use perfopt::transport::{SegmentPool, SegmentPoolConfig};
use perfopt::{Method, MetricsSink, Optimizer, TransferMetrics, TransferRequest};

use crate::in_process::InProcessWorker;

#[derive(Default)]
struct Count(AtomicU64);

impl MetricsSink for Count {
    fn record(&self, _m: &TransferMetrics) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optimizer_carries_small_payloads_by_grpc_and_large_ones_by_zero_copy() {
    let worker = InProcessWorker::start(None).await;

    let count = Arc::new(Count::default());
    let optimizer = Optimizer::builder()
        .probe(Arc::new(FixedProbe::default()))
        .sink(count.clone())
        .build()
        .unwrap();
    let pool =
        SegmentPool::new(Arc::new(MemfdShm::default()), SegmentPoolConfig::default()).unwrap();
    let executor = optimizer
        .connect(
            &worker.endpoint,
            ClientConfig::default(),
            Some((pool, worker.secret.clone())),
        )
        .await
        .unwrap();

    let small = vec![7u8; 4 << 10];
    let out = executor
        .transfer(&TransferRequest::new(0), &small)
        .await
        .unwrap();
    assert_eq!(out.metrics.method, Method::Grpc);
    assert_eq!(out.ack.checksum, checksum(&small));

    let large: Vec<u8> = (0..(48 << 20)).map(|i| (i % 253) as u8).collect();
    let out = executor
        .transfer(&TransferRequest::new(0), &large)
        .await
        .unwrap();
    assert_eq!(
        out.metrics.method,
        Method::ZeroCopy,
        "{}",
        out.decision.rationale()
    );
    // The default pool verifies by the sample.
    assert_eq!(out.verified, perfopt::Verification::Sampled);
    assert_eq!(out.ack.checksum, digest(&large, out.verified));
    assert!(out.metrics.latency_us > 0.0 && out.metrics.throughput_bps > 0.0);
    assert_eq!(count.0.load(Ordering::Relaxed), 2);
}
