//! Held-out evaluation of the models: a time-ordered train/test split, accuracy and interval coverage.

use perf_core::TransferMetrics;
use serde::Serialize;

use crate::error::PredictError;
use crate::learner::{Learner, usable_sample};
use crate::model::{ModelConfig, ModelEstimate};
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
    /// The held-out samples again, predicted in time order by models that
    /// go on learning, each before they learn from it (as a running learner
    /// does): the fraction within 15 %.
    pub online_within_15pct: f64,
    /// The coverage of the intervals in that online pass.
    pub online_coverage: f64,
}

/// Counts of one pass over held-out samples.
#[derive(Default)]
struct Tally {
    predicted: usize,
    accurate: usize,
    with_interval: usize,
    covered: usize,
}

impl Tally {
    /// Scores `estimate` against the measured `m`; returns the relative error.
    fn score(&mut self, m: &TransferMetrics, estimate: &ModelEstimate) -> f64 {
        let err = (m.latency_us - estimate.latency_us).abs() / m.latency_us;
        self.predicted += 1;
        self.accurate += usize::from(err <= ACCURATE_WITHIN);
        if let Some((lo, hi)) = estimate.interval_us {
            self.with_interval += 1;
            self.covered += usize::from((lo..=hi).contains(&m.latency_us));
        }
        err
    }
}

fn fraction(k: usize, n: usize) -> f64 {
    if n == 0 { 0.0 } else { k as f64 / n as f64 }
}

/// Trains on the oldest `train_fraction` of the usable `samples` (ordered by
/// start time, whatever order they come in) and measures predictions on the rest.
///
/// The models are frozen during the test, so every test prediction is out of
/// sample; each is made under the CPU utilisation recorded with the transfer.
/// A second, online pass predicts the same samples with models that learn
/// from each one after predicting it.
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
    let mut frozen = Tally::default();
    for m in test {
        if let Some(e) = snap.estimate_under(m.pool, m.method, m.size, &m.system) {
            errors.push(frozen.score(m, &e));
        }
    }
    let mut online = Tally::default();
    for m in test {
        let current = learner.snapshot();
        if let Some(e) = current.estimate_under(m.pool, m.method, m.size, &m.system) {
            online.score(m, &e);
        }
        learner.update(m);
    }
    errors.sort_unstable_by(f64::total_cmp);
    Ok(Evaluation {
        train: train.len(),
        test: test.len(),
        predicted: frozen.predicted,
        within_15pct: fraction(frozen.accurate, frozen.predicted),
        coverage: fraction(frozen.covered, frozen.with_interval),
        nominal_coverage: config.interval,
        with_interval: frozen.with_interval,
        median_relative_error: quantile_sorted(&errors, 0.5),
        online_within_15pct: fraction(online.accurate, online.predicted),
        online_coverage: fraction(online.covered, online.with_interval),
    })
}
