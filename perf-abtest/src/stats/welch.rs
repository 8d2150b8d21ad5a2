//! Welch's unequal-variance t-test of treatment against control.

use serde::{Deserialize, Serialize};

use super::distributions::{t_quantile, t_sf};
use super::{Estimate, Interval, Pair, StatsError, Summary, check_alpha};

/// The result of Welch's t-test: the statistic, its Welch–Satterthwaite degrees of freedom,
/// and the absolute and relative differences with their intervals at level `1 - alpha`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WelchTest {
    /// The significance level the intervals were computed at.
    pub alpha: f64,
    /// The t statistic of the absolute difference.
    pub t: f64,
    /// The Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// `treatment.mean - control.mean`, with the confidence interval and two-sided p-value of
    /// Welch's test (as `scipy.stats.ttest_ind(equal_var=False)` and R's `t.test`).
    pub absolute: Estimate,
    /// `treatment.mean / control.mean - 1`, with the delta-method standard error and the
    /// interval and p-value of gbstats' frequentist engine on that scale (same degrees of
    /// freedom); `None` when the control's mean is zero.
    pub relative: Option<Estimate>,
}

/// Welch's two-sided t-test of `treatment` against `control` at level `alpha`.
pub fn welch_test(
    control: &Summary,
    treatment: &Summary,
    alpha: f64,
) -> Result<WelchTest, StatsError> {
    check_alpha(alpha)?;
    let pair = Pair::new(control, treatment)?;
    let df = pair.welch_df();
    let quantile = t_quantile(1.0 - alpha / 2.0, df)?;
    let estimate = |(value, variance): (f64, f64)| -> Result<Estimate, StatsError> {
        let std_error = variance.sqrt();
        let t = value / std_error;
        Ok(Estimate {
            estimate: value,
            std_error,
            ci: Interval::around(value, quantile * std_error),
            p_value: 2.0 * t_sf(t.abs(), df)?,
        })
    };
    let absolute = estimate(pair.absolute())?;
    let relative = pair.relative().map(estimate).transpose()?;
    Ok(WelchTest {
        alpha,
        t: absolute.estimate / absolute.std_error,
        df,
        absolute,
        relative,
    })
}
