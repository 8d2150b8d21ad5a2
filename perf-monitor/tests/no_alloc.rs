//! The record path allocates nothing: `Telemetry::record` and `DecisionLog::observe` run under an
//! allocator that counts every allocation made on the calling thread while it is forbidden.
//! (A binary of its own, since the allocator is the whole binary's.)

use assert_no_alloc::{AllocDisabler, assert_no_alloc, reset_violation_count, violation_count};
use perf_core::conformance::{pool, transfer};
use perf_core::{
    DecisionContext, FailureKind, FallbackReason, FixedPolicy, Method, MetricsSink, ReplyRecord,
    Timestamp, TransferPolicy, TransferRequest,
};
use perf_monitor::{DecisionLog, DecisionLogConfig, Telemetry, TelemetryConfig};

#[global_allocator]
static ALLOCATOR: AllocDisabler = AllocDisabler;

#[test]
fn recording_transfers_and_observing_decisions_allocate_nothing() {
    let telemetry = Telemetry::new(&TelemetryConfig::for_pools([pool("a"), pool("b")])).unwrap();
    let log = DecisionLog::new(&DecisionLogConfig {
        sample_rate: 0.5,
        recent: 16,
    })
    .unwrap();
    let mut delivered = transfer(pool("a"), Method::ZeroCopy, 3 << 20, 0, 420.0);
    delivered.decision_ns = 900;
    delivered.queued_us = 12.0;
    delivered.fallback = Some(FallbackReason::ShmError);
    delivered.reply = Some(ReplyRecord {
        method: Method::Grpc,
        size: 256,
        latency_us: 35.0,
        inline: false,
    });
    let mut failed = transfer(pool("b"), Method::Grpc, 4096, 0, f64::NAN);
    failed.fail(FailureKind::Timeout);
    let unlisted = transfer(pool("unlisted"), Method::Grpc, 900, 0, 95.0);
    let decision = FixedPolicy(Method::ZeroCopy).decide(
        &TransferRequest::new(1 << 20),
        &DecisionContext::idle(Timestamp(0)),
    );

    // The check catches an allocation, so a pass below means something.
    reset_violation_count();
    assert_no_alloc(|| std::hint::black_box(vec![1u8; 64]));
    assert_eq!(violation_count(), 1, "the allocator counts allocations");

    reset_violation_count();
    assert_no_alloc(|| {
        for _ in 0..100 {
            telemetry.record(&delivered);
            telemetry.record(&failed);
            telemetry.record(&unlisted);
            log.observe(&decision);
        }
    });
    assert_eq!(violation_count(), 0, "allocations on the record path");
    assert_eq!(log.recent(100).len(), 16);
    assert!(
        telemetry
            .prometheus_text()
            .contains(r#"perfopt_transfers_total{pool="other",method="grpc"} 100"#)
    );
}
