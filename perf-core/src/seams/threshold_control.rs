//! The `ThresholdControl` seam: what the learning engine reads and moves of a policy's pool
//! thresholds, so that it needs no concrete controller.

use crate::decision::ThresholdBreakdown;
use crate::name::Name;
use crate::request::SystemState;
use crate::threshold::{Proposal, ThresholdChange, ThresholdError};

/// Reads a pool's effective threshold and moves it, bounded and logged.
///
/// The [`Controller`](crate::Controller) implements it; learning talks to the policy through it.
pub trait ThresholdControl: Send + Sync {
    /// The effective threshold of `pool` under `system`; a pool that is not configured is
    /// [`ThresholdError::UnknownPool`].
    fn threshold(
        &self,
        pool: Name,
        system: &SystemState,
    ) -> Result<ThresholdBreakdown, ThresholdError>;
    /// Moves `pool`'s threshold toward `proposal.target`, bounded per step and overall; the
    /// change is logged and persisted before it takes effect, and an error changes nothing.
    fn propose(
        &self,
        pool: Name,
        proposal: &Proposal<'_>,
    ) -> Result<ThresholdChange, ThresholdError>;
}
