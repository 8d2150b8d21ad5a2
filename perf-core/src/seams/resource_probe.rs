//! The `ResourceProbe` seam: samples of the machine's resources, and a probe that always
//! reports the same state.

use crate::request::SystemState;

/// Samples the machine's resources; implementations cache, so a call is cheap.
pub trait ResourceProbe: Send + Sync {
    /// The latest sample.
    fn sample(&self) -> SystemState;
}

/// A probe that always reports the same state.
#[derive(Debug, Clone, Copy)]
pub struct FixedProbe(pub SystemState);

impl Default for FixedProbe {
    fn default() -> Self {
        FixedProbe(SystemState::IDLE)
    }
}

impl ResourceProbe for FixedProbe {
    fn sample(&self) -> SystemState {
        self.0
    }
}
