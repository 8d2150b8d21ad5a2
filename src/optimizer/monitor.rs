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
    /// Whether the decision log's sample rate follows the configuration in force.
    follows_config: bool,
}

impl Monitor {
    /// Telemetry with series for the pools of `controller`'s configuration, and a decision log:
    /// `log` when given, else one whose sample rate is the configuration's
    /// `monitor.decision_sample_rate`.
    pub(crate) fn new(
        controller: &Controller,
        log: Option<&DecisionLogConfig>,
    ) -> Result<Monitor, OptimizerError> {
        let pools = controller
            .config()
            .pools
            .keys()
            .copied()
            .collect::<Vec<_>>();
        let telemetry = Telemetry::new(&TelemetryConfig::for_pools(pools))?;
        let from_config = DecisionLogConfig {
            sample_rate: controller.config().monitor.decision_sample_rate,
            ..DecisionLogConfig::default()
        };
        let decisions = DecisionLog::new(log.unwrap_or(&from_config))?;
        Ok(Monitor {
            telemetry: Arc::new(telemetry),
            decisions: Arc::new(decisions),
            tally: Arc::new(Tally::default()),
            follows_config: log.is_none(),
        })
    }

    /// The engine's policy over `controller`, each decision also handed to the decision log.
    /// `policy` decides (the controller, or the experiment policy over it); `controller` is
    /// the engine whose configuration the log and telemetry follow.
    pub(crate) fn observed(
        &self,
        controller: Arc<Controller>,
        policy: Arc<dyn TransferPolicy>,
    ) -> Observed {
        Observed {
            version: AtomicU64::new(controller.version()),
            controller,
            policy,
            log: self.decisions.clone(),
            telemetry: self.telemetry.clone(),
            follows_rate: self.follows_config,
        }
    }
}

/// The engine's policy, with each decision also handed to the decision log. When the
/// configuration's version changes (a reload by file, by the API or by a library call), the
/// first decision under the new one gives the pools it adds series of their own in the
/// telemetry and, unless the builder fixed it, sets the log's sample rate from `monitor`: once
/// per version, off the steady path.
pub(crate) struct Observed {
    controller: Arc<Controller>,
    policy: Arc<dyn TransferPolicy>,
    log: Arc<DecisionLog>,
    telemetry: Arc<Telemetry>,
    /// Whether the sample rate follows the configuration.
    follows_rate: bool,
    /// The configuration version followed last.
    version: AtomicU64,
}

impl Observed {
    #[cold]
    fn follow(&self, version: u64) {
        self.version.store(version, Relaxed);
        let config = self.controller.config();
        if self.follows_rate {
            // The configuration was validated, so its rate is in range.
            let _ = self
                .log
                .set_sample_rate(config.monitor.decision_sample_rate);
        }
        // At most MAX_POOLS pools validate, so each finds a slot unless pools since removed
        // hold them; those left over are counted under `pool="other"`.
        self.telemetry.add_pools(config.pools.keys().copied());
    }
}

impl TransferPolicy for Observed {
    fn name(&self) -> &str {
        TransferPolicy::name(self.controller.as_ref())
    }
    fn decide(&self, request: &TransferRequest, ctx: &DecisionContext) -> Decision {
        let d = self.policy.decide(request, ctx);
        if self.version.load(Relaxed) != d.policy_version {
            self.follow(d.policy_version);
        }
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
