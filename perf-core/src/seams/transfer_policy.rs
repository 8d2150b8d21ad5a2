//! The `TransferPolicy` seam: decide(request, context) -> Decision, and a fixed baseline policy.

use crate::config::PoolSettings;
use crate::decision::{Decision, Reason, ThresholdBreakdown};
use crate::policy::{forced, reply_threshold};
use crate::request::{DecisionContext, TransferRequest};
use crate::vocab::Method;

/// Decides how one transfer travels.
pub trait TransferPolicy: Send + Sync {
    /// The policy's name, as shown in reports and experiments.
    fn name(&self) -> &str;
    /// Decides for `request` in `ctx`; must not block, allocate or do IO.
    fn decide(&self, request: &TransferRequest, ctx: &DecisionContext) -> Decision;
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
        let fixed = TransferRequest {
            override_method: request.override_method.or(Some(self.0)),
            ..*request
        };
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
            reply_threshold: reply_threshold(
                &fixed,
                ctx,
                None,
                settings.threshold,
                (settings.floor, settings.ceiling),
            ),
            verify: settings.verify,
            estimates: None,
            confidence: 1.0,
            propensity: 1.0,
            policy_version: 0,
            decided_at: ctx.now,
            experiment: None,
        }
    }
}
