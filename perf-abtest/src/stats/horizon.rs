//! The fixed-horizon guard: Welch's test only once the planned sample size is reached.

use serde::{Deserialize, Serialize};

use super::{StatsError, Summary, WelchTest, check_alpha, welch_test};

/// The outcome of a fixed-horizon look.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum HorizonOutcome {
    /// The planned sample size is not reached: no conclusion may be drawn yet.
    NotYet {
        /// The planned sample size per variant.
        planned_per_variant: u64,
        /// The control samples still needed.
        control_needed: u64,
        /// The treatment samples still needed.
        treatment_needed: u64,
    },
    /// Both variants reached the plan: Welch's test, valid for this one look.
    Ready(WelchTest),
}

/// Welch's test of `treatment` against `control` at level `alpha` if both have at least
/// `planned_per_variant` samples, and otherwise how many samples each still needs. A
/// fixed-horizon test is valid only when it is evaluated once, at its horizon: looking
/// earlier and stopping at the first significant result inflates the false-positive rate,
/// which is what [`HorizonOutcome::NotYet`] guards against (use the sequential test to look
/// as often as wanted).
pub fn fixed_horizon_test(
    control: &Summary,
    treatment: &Summary,
    planned_per_variant: u64,
    alpha: f64,
) -> Result<HorizonOutcome, StatsError> {
    check_alpha(alpha)?;
    if planned_per_variant < 2 {
        return Err(StatsError::InvalidHorizon(planned_per_variant));
    }
    let control_needed = planned_per_variant.saturating_sub(control.n);
    let treatment_needed = planned_per_variant.saturating_sub(treatment.n);
    if control_needed > 0 || treatment_needed > 0 {
        return Ok(HorizonOutcome::NotYet {
            planned_per_variant,
            control_needed,
            treatment_needed,
        });
    }
    welch_test(control, treatment, alpha).map(HorizonOutcome::Ready)
}
