//! Held-out evaluation of the models: a time-ordered train/test split, accuracy and interval coverage.

use perf_core::TransferMetrics;
use serde::Serialize;

use crate::error::PredictError;
use crate::learner::{Learner, usable_sample};
use crate::model::ModelConfig;
use crate::quantile::quantile_sorted;

/// A prediction within this fraction of the measured latency counts as accurate.
pub const ACCURATE_WITHIN: f64 = 0.15;

/// The fewest usable samples an evaluation accepts.
pub const MIN_EVALUATION_SAMPLES: usize = 10;

/// How well models trained on the older samples predict the newer ones.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Evaluation {
    /// Samples the models were trained on (the oldest ones).
    pub train: usize,
    /// Held-out samples (the newest ones).
    pub test: usize,
    /// Held-out samples that had a model to predict them.
    pub predicted: usize,
    /// Fraction of predicted samples whose estimate is within 15 % of the measured latency.
    pub within_15pct: f64,
    /// Fraction of predicted samples with an interval whose interval holds the measured latency.
    pub coverage: f64,
    /// The coverage the intervals aim for (e.g. 0.90).
    pub nominal_coverage: f64,
    /// Predicted samples that had an interval.
    pub with_interval: usize,
    /// Median of `|measured - predicted| / measured`.
    pub median_relative_error: f64,
}

/// Trains on the oldest `train_fraction` of the usable `samples` (ordered by
/// start time, whatever order they come in) and measures predictions on the rest.
///
/// The models are frozen during the test, so every test prediction is out of sample.
pub fn evaluate(
    samples: &[TransferMetrics],
    config: &ModelConfig,
    train_fraction: f64,
) -> Result<Evaluation, PredictError> {
    if !(train_fraction > 0.0 && train_fraction < 1.0) {
        return Err(PredictError::InvalidConfig {
            field: "train_fraction",
            expected: "above 0 and below 1",
            got: train_fraction.to_string(),
        });
    }
    let mut usable: Vec<TransferMetrics> = samples
        .iter()
        .filter(|m| usable_sample(m))
        .copied()
        .collect();
    if usable.len() < MIN_EVALUATION_SAMPLES {
        return Err(PredictError::TooFewSamples {
            expected: MIN_EVALUATION_SAMPLES,
            got: usable.len(),
        });
    }
    usable.sort_by_key(|m| m.started_at);
    let split =
        ((usable.len() as f64 * train_fraction).round() as usize).clamp(1, usable.len() - 1);
    let (train, test) = usable.split_at(split);
    let learner = Learner::new("evaluation", *config)?;
    learner.update_batch(train);
    let snap = learner.snapshot();
    let mut errors = Vec::with_capacity(test.len());
    let (mut accurate, mut covered, mut with_interval) = (0usize, 0usize, 0usize);
    for m in test {
        let Some(e) = snap.estimate(m.pool, m.method, m.size) else {
            continue;
        };
        let err = (m.latency_us - e.latency_us).abs() / m.latency_us;
        errors.push(err);
        if err <= ACCURATE_WITHIN {
            accurate += 1;
        }
        if let Some((lo, hi)) = e.interval_us {
            with_interval += 1;
            if (lo..=hi).contains(&m.latency_us) {
                covered += 1;
            }
        }
    }
    errors.sort_unstable_by(f64::total_cmp);
    let frac = |k: usize, n: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    Ok(Evaluation {
        train: train.len(),
        test: test.len(),
        predicted: errors.len(),
        within_15pct: frac(accurate, errors.len()),
        coverage: frac(covered, with_interval),
        nominal_coverage: config.interval,
        with_interval,
        median_relative_error: quantile_sorted(&errors, 0.5),
    })
}
