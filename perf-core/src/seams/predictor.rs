//! The `Predictor` seam: per-method cost estimates with intervals, a predictor that never
//! answers and one that always gives the same answer.

use serde::{Deserialize, Serialize};

use crate::decision::MethodEstimate;
use crate::name::Name;
use crate::request::{SystemState, TransferRequest};

/// Learned per-method estimates for one request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Zero-copy estimate, with its interval.
    pub zero_copy: MethodEstimate,
    /// gRPC estimate, with its interval.
    pub grpc: MethodEstimate,
    /// How sure the model is, 0.0 to 1.0.
    pub confidence: f64,
    /// How many samples the model has seen for this kind of request.
    pub samples: u64,
}

/// Predicts per-method costs from what was measured before.
pub trait Predictor: Send + Sync {
    /// The model's name and version, for rationales.
    fn name(&self) -> &str;
    /// Estimates for `request`, or `None` when the model knows nothing useful;
    /// must not block, allocate or do IO.
    fn predict(&self, request: &TransferRequest, system: &SystemState) -> Option<Prediction>;
    /// The reply size from which replies from `pool`'s workers come back faster by shared
    /// memory than by gRPC, measured on replies that came by either route, or `None` while the
    /// model is not sure (or has not seen both); must not block, allocate or do IO.
    fn reply_crossover(&self, pool: Name) -> Option<u64> {
        let _ = pool;
        None
    }
}

/// A predictor that never predicts: the engine uses its calibrated coefficients.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopPredictor;

impl Predictor for NoopPredictor {
    fn name(&self) -> &str {
        "none"
    }
    fn predict(&self, _request: &TransferRequest, _system: &SystemState) -> Option<Prediction> {
        None
    }
}

/// A predictor that returns the same prediction for every request.
#[derive(Debug, Clone, Copy)]
pub struct FixedPredictor(pub Prediction);

impl Predictor for FixedPredictor {
    fn name(&self) -> &str {
        "fixed"
    }
    fn predict(&self, _request: &TransferRequest, _system: &SystemState) -> Option<Prediction> {
        Some(self.0)
    }
}
