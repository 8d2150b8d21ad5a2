//! Statistics of an experiment: per-variant summaries, Welch's t-test, the always-valid
//! sequential test, the fixed-horizon guard, the sample-ratio-mismatch check and power.
//!
//! Every test compares a treatment with a control, each given as a [`Summary`]; differences
//! are `treatment - control` and relative differences `treatment / control - 1`.

mod distributions;
mod horizon;
mod power;
mod sequential;
mod srm;
mod summary;
mod welch;

use serde::{Deserialize, Serialize};

pub use horizon::{HorizonOutcome, fixed_horizon_test};
pub use power::PowerAnalysis;
pub use sequential::{
    DEFAULT_TUNING_SAMPLE_SIZE, SequentialConfig, SequentialTest, sequential_test,
};
pub use srm::{SRM_RED_DEVIATION, SRM_RED_P, SRM_YELLOW_P, SrmCheck, SrmGrade, srm_check};
pub use summary::Summary;
pub use welch::{WelchTest, welch_test};

/// Why a statistic could not be computed from its inputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// A significance level outside `(0, 1)`.
    #[error("alpha must be in (0, 1), got {0}")]
    InvalidAlpha(f64),
    /// A variant with too few samples for a sample variance.
    #[error("the {variant} needs at least 2 samples, got {n}")]
    TooFewSamples {
        /// Which variant: "control" or "treatment".
        variant: &'static str,
        /// Its sample count.
        n: u64,
    },
    /// A summary whose mean or variance is not a finite number, or whose variance is negative.
    #[error(
        "the {variant} summary must have a finite mean and a finite variance >= 0, got mean {mean} and variance {variance}"
    )]
    InvalidSummary {
        /// Which variant: "control" or "treatment".
        variant: &'static str,
        /// Its mean.
        mean: f64,
        /// Its variance.
        variance: f64,
    },
    /// Both variants without variance, so that the difference has no standard error.
    #[error("the difference has no standard error: both variants have variance 0")]
    ZeroVariance,
    /// Degrees of freedom that are not a positive finite number.
    #[error("degrees of freedom must be a finite number > 0, got {0}")]
    DegreesOfFreedom(f64),
    /// A sequential test's tuning sample size that is not a positive finite number.
    #[error("the tuning sample size must be a finite number > 0, got {0}")]
    InvalidTuning(f64),
    /// A fixed horizon below 2 samples per variant.
    #[error("the planned sample size per variant must be at least 2, got {0}")]
    InvalidHorizon(u64),
    /// Observed counts that do not match the split's variants.
    #[error("expected {expected} observed counts, one per variant of the split, got {got}")]
    CountMismatch {
        /// The split's number of variants.
        expected: usize,
        /// The number of counts given.
        got: usize,
    },
    /// No observations at all.
    #[error("the sample-ratio check needs at least one observation, got 0")]
    NoObservations,
    /// A power analysis input out of its domain.
    #[error("{name} must be {expected}, got {got}")]
    InvalidPowerInput {
        /// The input's name.
        name: &'static str,
        /// What it must be.
        expected: &'static str,
        /// The value given.
        got: f64,
    },
}

/// A closed interval `[low, high]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The lower end.
    pub low: f64,
    /// The upper end.
    pub high: f64,
}

impl Interval {
    /// The interval `center ± half_width`.
    fn around(center: f64, half_width: f64) -> Self {
        Self {
            low: center - half_width,
            high: center + half_width,
        }
    }

    /// Whether `x` lies in the interval.
    pub fn contains(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }
}

/// An estimated difference between treatment and control on one scale (absolute or
/// relative), with its standard error, its interval at the test's level and the two-sided
/// p-value of "no difference" on that scale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The point estimate.
    pub estimate: f64,
    /// Its standard error.
    pub std_error: f64,
    /// The interval at level `1 - alpha`: a confidence interval for Welch's test, a
    /// confidence sequence for the sequential test.
    pub ci: Interval,
    /// The two-sided p-value of a zero difference.
    pub p_value: f64,
}

impl Estimate {
    /// Whether the interval excludes zero, i.e. the difference is significant at the test's
    /// level.
    pub fn is_significant(&self) -> bool {
        !self.ci.contains(0.0)
    }
}

/// Checks that `alpha` is a significance level.
fn check_alpha(alpha: f64) -> Result<(), StatsError> {
    if alpha > 0.0 && alpha < 1.0 {
        Ok(())
    } else {
        Err(StatsError::InvalidAlpha(alpha))
    }
}

/// The means and variances of the two variants after validation.
#[derive(Debug, Clone, Copy)]
struct Pair {
    n_c: f64,
    mean_c: f64,
    var_c: f64,
    n_t: f64,
    mean_t: f64,
    var_t: f64,
}

impl Pair {
    fn new(control: &Summary, treatment: &Summary) -> Result<Self, StatsError> {
        for (variant, s) in [("control", control), ("treatment", treatment)] {
            if s.n < 2 {
                return Err(StatsError::TooFewSamples { variant, n: s.n });
            }
            if !s.mean.is_finite() || !s.variance.is_finite() || s.variance < 0.0 {
                return Err(StatsError::InvalidSummary {
                    variant,
                    mean: s.mean,
                    variance: s.variance,
                });
            }
        }
        if control.variance == 0.0 && treatment.variance == 0.0 {
            return Err(StatsError::ZeroVariance);
        }
        // Sample counts are far below 2^53, so the conversions are exact.
        Ok(Self {
            n_c: control.n as f64,
            mean_c: control.mean,
            var_c: control.variance,
            n_t: treatment.n as f64,
            mean_t: treatment.mean,
            var_t: treatment.variance,
        })
    }

    /// The absolute difference and its variance.
    fn absolute(&self) -> (f64, f64) {
        (
            self.mean_t - self.mean_c,
            self.var_t / self.n_t + self.var_c / self.n_c,
        )
    }

    /// The relative difference and its delta-method variance, as gbstats computes them;
    /// `None` when the control's mean is zero.
    fn relative(&self) -> Option<(f64, f64)> {
        if self.mean_c == 0.0 {
            return None;
        }
        let m2 = self.mean_c * self.mean_c;
        let estimate = (self.mean_t - self.mean_c) / self.mean_c;
        let variance = self.var_t / (m2 * self.n_t)
            + self.var_c * self.mean_t * self.mean_t / (m2 * m2 * self.n_c);
        Some((estimate, variance))
    }

    /// The Welch–Satterthwaite degrees of freedom.
    fn welch_df(&self) -> f64 {
        let a = self.var_t / self.n_t;
        let b = self.var_c / self.n_c;
        (a + b).powi(2) / (a * a / (self.n_t - 1.0) + b * b / (self.n_c - 1.0))
    }

    /// The total sample count of both variants.
    fn total(&self) -> f64 {
        self.n_c + self.n_t
    }
}
