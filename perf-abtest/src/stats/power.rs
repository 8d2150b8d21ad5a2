//! Power and minimum sample size of the two-sided two-sample t-test, as R's `power.t.test`.
//!
//! With `n` samples per variant, `nu = 2 (n - 1)` degrees of freedom, the critical value
//! `q = qt(1 - alpha / 2, nu)` and the noncentrality `sqrt(n / 2) * |effect| / std_dev`, the
//! power is the noncentral t's probability above `q`. As in R's default (`strict = FALSE`),
//! rejections in the wrong direction (below `-q`) are not counted: they do not detect the
//! effect. statsmodels' `TTestIndPower` counts them, which gives slightly more power
//! (and so slightly smaller sample sizes) for small effects.

use serde::{Deserialize, Serialize};

use super::StatsError;
use super::distributions::{noncentral_t_cdf, t_quantile};

/// The largest sample size per variant the solver considers.
const MAX_SAMPLE_SIZE: f64 = 1e12;

/// The inputs of a power analysis of a two-sided, two-sample t-test with equal sample sizes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PowerAnalysis {
    /// The absolute difference of means to detect (its sign does not matter).
    pub effect: f64,
    /// The common standard deviation of an observation.
    pub std_dev: f64,
    /// The significance level.
    pub alpha: f64,
}

impl PowerAnalysis {
    fn check(&self) -> Result<(), StatsError> {
        if !(self.effect.is_finite() && self.effect != 0.0) {
            return Err(StatsError::InvalidPowerInput {
                name: "effect",
                expected: "a finite non-zero number",
                got: self.effect,
            });
        }
        if !(self.std_dev.is_finite() && self.std_dev > 0.0) {
            return Err(StatsError::InvalidPowerInput {
                name: "std_dev",
                expected: "a finite number > 0",
                got: self.std_dev,
            });
        }
        super::check_alpha(self.alpha)
    }

    fn power_unchecked(&self, n: f64) -> Result<f64, StatsError> {
        let nu = 2.0 * (n - 1.0);
        let q = t_quantile(1.0 - self.alpha / 2.0, nu)?;
        let ncp = (n / 2.0).sqrt() * self.effect.abs() / self.std_dev;
        Ok(1.0 - noncentral_t_cdf(q, nu, ncp)?)
    }

    /// The power with `n_per_variant` samples in each variant (at least 2; fractional sizes
    /// are allowed, as R's).
    pub fn power(&self, n_per_variant: f64) -> Result<f64, StatsError> {
        self.check()?;
        if !(n_per_variant.is_finite() && n_per_variant >= 2.0) {
            return Err(StatsError::InvalidPowerInput {
                name: "n_per_variant",
                expected: "a finite number >= 2",
                got: n_per_variant,
            });
        }
        self.power_unchecked(n_per_variant)
    }

    /// The sample size per variant at which the power is `power` (in `(alpha, 1)`), as a
    /// fractional number like R's `n`; round it up for a plan. It is 2 when two samples per
    /// variant already give that power.
    pub fn sample_size(&self, power: f64) -> Result<f64, StatsError> {
        self.check()?;
        if !(power > self.alpha / 2.0 && power < 1.0) {
            return Err(StatsError::InvalidPowerInput {
                name: "power",
                expected: "in (alpha / 2, 1)",
                got: power,
            });
        }
        let mut low = 2.0;
        if self.power_unchecked(low)? >= power {
            return Ok(low);
        }
        let mut high = 4.0;
        while self.power_unchecked(high)? < power {
            low = high;
            high *= 2.0;
            if high > MAX_SAMPLE_SIZE {
                return Err(StatsError::InvalidPowerInput {
                    name: "power",
                    expected: "reachable with at most 1e12 samples per variant",
                    got: power,
                });
            }
        }
        // Bisection: the power grows with n. 200 halvings reach f64 resolution.
        for _ in 0..200 {
            let mid = 0.5 * (low + high);
            if mid <= low || mid >= high {
                break;
            }
            if self.power_unchecked(mid)? < power {
                low = mid;
            } else {
                high = mid;
            }
        }
        Ok(0.5 * (low + high))
    }
}
