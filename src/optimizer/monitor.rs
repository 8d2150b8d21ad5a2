//! The optimizer's monitoring parts: its telemetry (a sink of every record), the log of its
//! decisions, the policy that feeds that log, and a tally of outcomes for the degraded checks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use perf_core::{
    Controller, Decision, DecisionContext, MetricsSink, TransferMetrics, TransferPolicy,
    TransferRequest,
};
use perf_monitor::{DecisionLog, DecisionLogConfig, Telemetry, TelemetryConfig};

use super::OptimizerError;

/// The monitoring parts an optimizer is built with.
pub(crate) struct Monitor {
    pub(crate) telemetry: Arc<Telemetry>,
    pub(crate) decisions: Arc<DecisionLog>,
    pub(crate) tally: Arc<Tally>,
}

impl Monitor {
    /// Telemetry with series for the pools of `controller`'s configuration, and a decision log.
    pub(crate) fn new(
        controller: &Controller,
        log: &DecisionLogConfig,
    ) -> Result<Monitor, OptimizerError> {
        let pools = controller
            .config()
            .pools
            .keys()
            .copied()
            .collect::<Vec<_>>();
        let telemetry = Telemetry::new(&TelemetryConfig::for_pools(pools))?;
        let decisions = DecisionLog::new(log)?;
        Ok(Monitor {
            telemetry: Arc::new(telemetry),
            decisions: Arc::new(decisions),
            tally: Arc::new(Tally::default()),
        })
    }
}

/// The engine's policy, with each decision also handed to the decision log.
pub(crate) struct Observed {
    pub(crate) controller: Arc<Controller>,
    pub(crate) log: Arc<DecisionLog>,
}

impl TransferPolicy for Observed {
    fn name(&self) -> &str {
        TransferPolicy::name(self.controller.as_ref())
    }
    fn decide(&self, request: &TransferRequest, ctx: &DecisionContext) -> Decision {
        let d = self.controller.decide(request, ctx);
        self.log.observe(&d);
        d
    }
}

/// Counts of every record's outcome since the start: relaxed atomic additions.
#[derive(Debug, Default)]
pub struct Tally {
    transfers: AtomicU64,
    failed: AtomicU64,
    fell_back: AtomicU64,
}

/// What a [`Tally`] counted up to one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TallyCounts {
    /// Transfers recorded, delivered or failed.
    pub transfers: u64,
    /// Of those, the failed ones.
    pub failed: u64,
    /// Of those, the ones whose zero-copy attempt fell back to gRPC.
    pub fell_back: u64,
}

impl Tally {
    /// The counts now.
    pub fn counts(&self) -> TallyCounts {
        TallyCounts {
            transfers: self.transfers.load(Relaxed),
            failed: self.failed.load(Relaxed),
            fell_back: self.fell_back.load(Relaxed),
        }
    }
}

impl MetricsSink for Tally {
    fn record(&self, m: &TransferMetrics) {
        self.transfers.fetch_add(1, Relaxed);
        if !m.is_evidence() {
            self.failed.fetch_add(1, Relaxed);
        }
        if m.fallback.is_some() {
            self.fell_back.fetch_add(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use perf_core::conformance::transfer;
    use perf_core::{FailureKind, FallbackReason, Method, Name};

    use super::*;

    perf_core::metrics_sink_conformance!(tally_sink, Tally::default());

    #[test]
    fn the_tally_counts_every_record_its_failures_and_its_fallbacks() {
        let tally = Tally::default();
        let pool = Name::DEFAULT_POOL;
        tally.record(&transfer(pool, Method::ZeroCopy, 1 << 20, 0, 50.0));
        let mut fell_back = transfer(pool, Method::Grpc, 1 << 20, 1, 80.0);
        fell_back.fallback = Some(FallbackReason::ShmExhausted);
        tally.record(&fell_back);
        let mut failed = transfer(pool, Method::Grpc, 4096, 2, 10.0);
        failed.fail(FailureKind::Timeout);
        tally.record(&failed);
        assert_eq!(
            tally.counts(),
            TallyCounts {
                transfers: 3,
                failed: 1,
                fell_back: 1,
            }
        );
    }
}
