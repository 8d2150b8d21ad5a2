//! The sample-ratio-mismatch check: do the observed counts per variant fit the split?
//!
//! A chi-square goodness-of-fit test of the counts against the split's weights, graded as
//! Statsig grades its "exposures are balanced" health check:
//!
//! - red when `p < 0.001` and some variant's observed share is at least 0.1 percentage point
//!   (0.001) away from its weight: the assignment or the logging is broken, and no winner may
//!   be declared;
//! - yellow when `p < 0.01` otherwise (`0.001 <= p < 0.01`, or a smaller p-value with every
//!   share within 0.1 point, which is a real but harmless imbalance);
//! - green when `p >= 0.01`.

use serde::{Deserialize, Serialize};

use super::StatsError;
use super::distributions::chi_square_sf;
use crate::assign::Split;

/// Below this p-value a mismatch is a warning.
pub const SRM_YELLOW_P: f64 = 0.01;
/// Below this p-value, with a deviation of at least [`SRM_RED_DEVIATION`], a mismatch is an alert.
pub const SRM_RED_P: f64 = 0.001;
/// The smallest absolute deviation of an observed share from its weight that makes a
/// mismatch below [`SRM_RED_P`] an alert.
pub const SRM_RED_DEVIATION: f64 = 0.001;

/// How bad a sample-ratio mismatch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SrmGrade {
    /// The counts fit the split.
    Green,
    /// A possible mismatch to watch; results may still be read.
    Yellow,
    /// A mismatch: the experiment is biased and its results must not be acted on.
    Red,
}

impl SrmGrade {
    /// Whether this grade forbids declaring a winner (only red does).
    pub fn blocks_winner(self) -> bool {
        self == SrmGrade::Red
    }
}

/// The result of the sample-ratio check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SrmCheck {
    /// Pearson's chi-square statistic (infinite when a variant of weight 0 has observations).
    pub chi_square: f64,
    /// Its degrees of freedom: the number of variants with a non-zero weight, minus one.
    pub df: u64,
    /// The p-value of the counts under the split.
    pub p_value: f64,
    /// The largest absolute difference between a variant's observed share and its weight.
    pub max_deviation: f64,
    /// The grade (see the module docs).
    pub grade: SrmGrade,
}

/// Checks the `observed` counts per variant (in the split's order) against `split`.
pub fn srm_check(observed: &[u64], split: &Split) -> Result<SrmCheck, StatsError> {
    let weights = split.weights();
    if observed.len() != weights.len() {
        return Err(StatsError::CountMismatch {
            expected: weights.len(),
            got: observed.len(),
        });
    }
    // Counts are far below 2^53, so the conversions are exact.
    let total: f64 = observed.iter().map(|&n| n as f64).sum();
    if total == 0.0 {
        return Err(StatsError::NoObservations);
    }
    let mut chi_square = 0.0;
    let mut cells = 0u64;
    let mut max_deviation: f64 = 0.0;
    for (&count, &weight) in observed.iter().zip(weights) {
        let count = count as f64;
        max_deviation = max_deviation.max((count / total - weight).abs());
        if weight == 0.0 {
            if count > 0.0 {
                chi_square = f64::INFINITY;
            }
            continue;
        }
        cells += 1;
        let expected = total * weight;
        chi_square += (count - expected).powi(2) / expected;
    }
    let df = cells.saturating_sub(1);
    let p_value = if chi_square.is_infinite() {
        0.0
    } else if df == 0 {
        1.0
    } else {
        // `df` is a small count of variants, exact as f64.
        chi_square_sf(chi_square, df as f64)?
    };
    let grade = if p_value >= SRM_YELLOW_P {
        SrmGrade::Green
    } else if p_value < SRM_RED_P && max_deviation >= SRM_RED_DEVIATION {
        SrmGrade::Red
    } else {
        SrmGrade::Yellow
    };
    Ok(SrmCheck {
        chi_square,
        df,
        p_value,
        max_deviation,
        grade,
    })
}
