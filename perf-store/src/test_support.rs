//! Helpers for the unit tests of this crate: sample transfers.

use perf_core::{
    DecisionContext, FixedPolicy, Method, SystemState, Timestamp, TransferMetrics, TransferPolicy,
    TransferRequest,
};

/// A 4 KiB gRPC transfer to the default pool, started at `secs`, with `latency_us`.
pub(crate) fn metrics(secs: u64, latency_us: f64) -> TransferMetrics {
    let req = TransferRequest::new(4096);
    let d = FixedPolicy(Method::Grpc).decide(&req, &DecisionContext::idle(Timestamp(0)));
    TransferMetrics::new(
        &req,
        &d,
        Method::Grpc,
        latency_us,
        Timestamp::from_secs(secs),
        SystemState::IDLE,
    )
}
