//! The telemetry as its exporters show it: Prometheus text and OTLP to a real receiver.

mod otlp;
mod prometheus;

use perf_core::conformance::{pool, transfer};
use perf_core::{FailureKind, FallbackReason, Method, MetricsSink, ReplyRecord};
use perf_monitor::{ModelStatus, ShmUsage, Telemetry, TelemetryConfig};

/// Telemetry for pools `a` and `b`, after `rounds` rounds of the same traffic: per round three
/// delivered gRPC transfers of 4 KiB to `a` (100 µs), one zero-copy transfer of 1 MiB to `b`
/// (250 µs, with a 2 ms wait and a reply), one gRPC fallback to an unconfigured pool, and one
/// failure; with every gauge set.
pub fn busy_telemetry(rounds: u64) -> Telemetry {
    let t = Telemetry::new(&TelemetryConfig {
        pools: vec![pool("a"), pool("b")],
        version: "1.2.3".to_owned(),
    })
    .unwrap();
    feed(&t, rounds);
    t.set_load(2, 5);
    assert!(t.set_pool_threshold(pool("a"), 65536));
    t.set_shm(ShmUsage {
        segments: 3,
        held_bytes: 3 << 20,
        budget_bytes: 1 << 30,
    });
    t.set_model(ModelStatus {
        learning_enabled: true,
        active: true,
        version: 4,
        validation_accuracy: Some(0.875),
    });
    t.add_drift_events(1);
    t.set_degraded(false);
    t
}

/// Records `rounds` rounds of the traffic [`busy_telemetry`] describes.
pub fn feed(t: &Telemetry, rounds: u64) {
    for _ in 0..rounds {
        for _ in 0..3 {
            let mut m = transfer(pool("a"), Method::Grpc, 4096, 0, 100.0);
            m.decision_ns = 800;
            t.record(&m);
        }
        let mut big = transfer(pool("b"), Method::ZeroCopy, 1 << 20, 0, 250.0);
        big.queued_us = 2_000.0;
        big.reply = Some(ReplyRecord {
            method: Method::ZeroCopy,
            size: 512,
            latency_us: 30.0,
            inline: false,
        });
        t.record(&big);
        let mut fell_back = transfer(pool("unlisted"), Method::Grpc, 8 << 20, 0, 9_000.0);
        fell_back.decided_method = Method::ZeroCopy;
        fell_back.explored = true;
        fell_back.fallback = Some(FallbackReason::ShmExhausted);
        t.record(&fell_back);
        let mut failed = transfer(pool("a"), Method::Grpc, 4096, 0, 5_000.0);
        failed.fail(FailureKind::Unavailable);
        t.record(&failed);
    }
}
