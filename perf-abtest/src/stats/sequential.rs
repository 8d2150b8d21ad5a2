//! The always-valid sequential test: a normal-mixture mSPRT p-value and confidence sequence,
//! as gbstats' `SequentialTwoSidedTTest`.
//!
//! With `N` the total sample count of both variants, `V` the variance of the estimated
//! difference and `rho` the mixing parameter, the asymptotic confidence sequence of
//! Waudby-Smith et al. (2023, eq. 9) has half-width
//!
//! ```text
//! sqrt(N V) * sqrt(2 (N rho^2 + 1) / (N rho)^2 * ln(sqrt(N rho^2 + 1) / alpha))
//! ```
//!
//! and the always-valid p-value is the inverse of the mixture likelihood ratio (Johari et al.'s
//! mSPRT with a normal mixture, eq. 155 there), capped at 1:
//!
//! ```text
//! p = min(1, sqrt(N rho^2 + 1) * exp(-rho^2 N d^2 / (2 V (N rho^2 + 1))))
//! ```
//!
//! `rho` minimises the half-width at `N` equal to the tuning sample size (eq. 161):
//! `rho = sqrt((-2 ln alpha + ln(-2 ln alpha + 1)) / tuning)`. Both stay valid however often
//! the experiment is looked at: the chance that any look ever excludes a true zero
//! difference is at most `alpha`.

use serde::{Deserialize, Serialize};

use super::{Estimate, Interval, Pair, StatsError, Summary, check_alpha};

/// gbstats' default tuning sample size: the total count of both variants at which the
/// confidence sequence is narrowest.
pub const DEFAULT_TUNING_SAMPLE_SIZE: f64 = 5000.0;

/// The level and tuning of a sequential test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SequentialConfig {
    /// The significance level, valid over every look.
    pub alpha: f64,
    /// The total sample count of both variants that the mixing parameter is tuned for.
    pub tuning_sample_size: f64,
}

impl Default for SequentialConfig {
    fn default() -> Self {
        Self {
            alpha: 0.05,
            tuning_sample_size: DEFAULT_TUNING_SAMPLE_SIZE,
        }
    }
}

impl SequentialConfig {
    /// The mixing parameter `rho` tuned for [`Self::tuning_sample_size`].
    pub fn rho(&self) -> f64 {
        let l = -2.0 * self.alpha.ln();
        ((l + (l + 1.0).ln()) / self.tuning_sample_size).sqrt()
    }
}

/// The result of a look at a sequential test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SequentialTest {
    /// The configuration the test was computed with.
    pub config: SequentialConfig,
    /// The mixing parameter used.
    pub rho: f64,
    /// `treatment.mean - control.mean` with its confidence sequence and always-valid p-value.
    pub absolute: Estimate,
    /// `treatment.mean / control.mean - 1` with the delta-method variance, its confidence
    /// sequence and always-valid p-value; `None` when the control's mean is zero.
    pub relative: Option<Estimate>,
}

/// Looks at the sequential test of `treatment` against `control`.
pub fn sequential_test(
    control: &Summary,
    treatment: &Summary,
    config: SequentialConfig,
) -> Result<SequentialTest, StatsError> {
    check_alpha(config.alpha)?;
    let tuning = config.tuning_sample_size;
    if !(tuning.is_finite() && tuning > 0.0) {
        return Err(StatsError::InvalidTuning(tuning));
    }
    let pair = Pair::new(control, treatment)?;
    let rho = config.rho();
    let n = pair.total();
    let rho2 = rho * rho;
    let tr2p1 = n * rho2 + 1.0;
    let estimate = |(value, variance): (f64, f64)| -> Estimate {
        let s2 = variance * n;
        let half_width = s2.sqrt()
            * (2.0 * tr2p1 * (tr2p1.sqrt() / config.alpha).ln() / (n * rho).powi(2)).sqrt();
        let st2 = value * value * n / variance;
        let p_value = (tr2p1.sqrt() * (-rho2 * st2 / (2.0 * tr2p1)).exp()).min(1.0);
        Estimate {
            estimate: value,
            std_error: variance.sqrt(),
            ci: Interval::around(value, half_width),
            p_value,
        }
    };
    Ok(SequentialTest {
        config,
        rho,
        absolute: estimate(pair.absolute()),
        relative: pair.relative().map(estimate),
    })
}
