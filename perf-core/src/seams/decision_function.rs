//! The `DecisionFunction` seam: a user's rule that may read metrics; any closure of the right
//! shape is one.

use super::MetricsQuery;
use crate::request::{DecisionContext, TransferRequest};
use crate::vocab::Method;

/// A user-defined decision function (R6.3): it may read metrics and return a
/// method, or `None` to let the next rule decide.
pub trait DecisionFunction: Send + Sync {
    /// Decides, or passes.
    fn decide(
        &self,
        request: &TransferRequest,
        ctx: &DecisionContext,
        metrics: &dyn MetricsQuery,
    ) -> Option<Method>;
}

impl<F> DecisionFunction for F
where
    F: Fn(&TransferRequest, &DecisionContext, &dyn MetricsQuery) -> Option<Method> + Send + Sync,
{
    fn decide(
        &self,
        request: &TransferRequest,
        ctx: &DecisionContext,
        metrics: &dyn MetricsQuery,
    ) -> Option<Method> {
        self(request, ctx, metrics)
    }
}
