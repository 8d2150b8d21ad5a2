//! The forced step shared by every policy, and a fixed baseline policy.

use crate::config::PoolSettings;
use crate::decision::{Decision, Reason, ThresholdBreakdown};
use crate::request::{DecisionContext, TransferRequest, ZeroCopyAvailability};
use crate::seams::TransferPolicy;
use crate::vocab::{Locality, Method};

/// The forced step: caller override, remote worker, no shared memory.
pub fn forced(request: &TransferRequest, ctx: &DecisionContext) -> Option<(Method, Reason)> {
    if request.override_method == Some(Method::Grpc) {
        return Some((Method::Grpc, Reason::Override));
    }
    if request.locality == Locality::Remote {
        return Some((Method::Grpc, Reason::RemoteWorker));
    }
    if ctx.zero_copy == ZeroCopyAvailability::Unavailable || ctx.system.shm_free < request.size {
        return Some((Method::Grpc, Reason::ZeroCopyUnavailable));
    }
    if request.override_method == Some(Method::ZeroCopy) {
        return Some((Method::ZeroCopy, Reason::Override));
    }
    None
}

/// A baseline policy that always picks one method, unless forced.
#[derive(Debug, Clone, Copy)]
pub struct FixedPolicy(pub Method);

impl TransferPolicy for FixedPolicy {
    fn name(&self) -> &str {
        match self.0 {
            Method::ZeroCopy => "always-zero-copy",
            Method::Grpc => "always-grpc",
        }
    }
    fn decide(&self, request: &TransferRequest, ctx: &DecisionContext) -> Decision {
        let (method, reason) = forced(request, ctx).unwrap_or((self.0, Reason::Fixed));
        let settings = PoolSettings::default();
        Decision {
            method,
            reason,
            pool: request.pool,
            pool_configured: false,
            goal: settings.goal,
            size: request.size,
            threshold: ThresholdBreakdown {
                base: settings.threshold,
                history: 1.0,
                resources: 1.0,
                effective: settings.threshold,
            },
            estimates: None,
            confidence: 1.0,
            propensity: 1.0,
            policy_version: 0,
            decided_at: ctx.now,
        }
    }
}
