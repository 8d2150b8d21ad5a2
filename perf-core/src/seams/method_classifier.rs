//! The `MethodClassifier` seam: which method wins for a request, with what confidence, and a
//! classifier that never answers.

use serde::{Deserialize, Serialize};

use crate::request::{DecisionContext, TransferRequest};
use crate::vocab::Method;

/// A learned classifier's pick for one request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The method the model expects to be faster.
    pub method: Method,
    /// The model's probability that `method` is faster, 0.5 to 1.0.
    pub confidence: f64,
    /// The version of the model that answered.
    pub model_version: u64,
}

/// Names the faster method for a request, from paired measurements of both.
pub trait MethodClassifier: Send + Sync {
    /// The model's name, for rationales and reports.
    fn name(&self) -> &str;
    /// The pick for `request`, or `None` when no validated model is in force;
    /// must not block, allocate or do IO.
    fn classify(&self, request: &TransferRequest, ctx: &DecisionContext) -> Option<Verdict>;
}

/// A classifier that never answers: the cost analysis decides.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopClassifier;

impl MethodClassifier for NoopClassifier {
    fn name(&self) -> &str {
        "none"
    }
    fn classify(&self, _request: &TransferRequest, _ctx: &DecisionContext) -> Option<Verdict> {
        None
    }
}
