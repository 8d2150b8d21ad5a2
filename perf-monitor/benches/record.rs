//! The cost of `Telemetry::record`, the telemetry's share of every transfer: a delivered
//! transfer with a reply, a failed one, and one to a pool without a slot, from one thread and
//! from two at once; and the decision log's `observe`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use perf_core::conformance::{pool, transfer};
use perf_core::{DecisionContext, FixedPolicy, Timestamp, TransferPolicy, TransferRequest};
use perf_core::{FailureKind, Method, MetricsSink, ReplyRecord};
use perf_monitor::{DecisionLog, DecisionLogConfig, Telemetry, TelemetryConfig};

fn telemetry() -> Telemetry {
    let pools = ["default", "ingest", "frames", "tensors", "batch"].map(pool);
    Telemetry::new(&TelemetryConfig::for_pools(pools)).unwrap()
}

fn record(c: &mut Criterion) {
    let t = telemetry();
    let mut delivered = transfer(pool("tensors"), Method::ZeroCopy, 3 << 20, 0, 420.0);
    delivered.decision_ns = 900;
    delivered.queued_us = 12.0;
    delivered.reply = Some(ReplyRecord {
        method: Method::Grpc,
        size: 256,
        latency_us: 35.0,
        inline: true,
    });
    let mut failed = transfer(pool("ingest"), Method::Grpc, 4096, 0, 5_000.0);
    failed.fail(FailureKind::Timeout);
    let unlisted = transfer(pool("unlisted-pool-name"), Method::Grpc, 900, 0, 95.0);

    let mut g = c.benchmark_group("telemetry_record");
    g.bench_function("delivered_with_reply", |b| {
        b.iter(|| t.record(black_box(&delivered)))
    });
    g.bench_function("failed", |b| b.iter(|| t.record(black_box(&failed))));
    g.bench_function("unlisted_pool", |b| {
        b.iter(|| t.record(black_box(&unlisted)))
    });
    // The same record from a second thread at once: the cost when cores share the counters.
    let shared = Arc::new(telemetry());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let other = {
        let (shared, stop) = (shared.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                shared.record(black_box(&delivered));
            }
        })
    };
    g.bench_function("delivered_contended", |b| {
        b.iter(|| shared.record(black_box(&delivered)))
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    other.join().unwrap();
    g.finish();
}

/// The decision log's share: a sampled-out decision kept in the ring, with no subscriber.
fn observe(c: &mut Criterion) {
    let log = DecisionLog::new(&DecisionLogConfig::default()).unwrap();
    let decision = FixedPolicy(Method::ZeroCopy).decide(
        &TransferRequest::new(3 << 20),
        &DecisionContext::idle(Timestamp(0)),
    );
    c.bench_function("decision_log_observe", |b| {
        b.iter(|| log.observe(black_box(&decision)))
    });
}

criterion_group!(benches, record, observe);
criterion_main!(benches);
