//! What the learning engine may do, and when: every knob with a safe default.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::TreeConfig;

/// How much more total latency than the better of always gRPC and always
/// zero-copy a model may show on held-out pairs and still be published.
pub const BASELINE_TOLERANCE: f64 = 0.005;

/// The name the classifier is saved under in a [`perf_core::ModelStore`].
pub const MODEL_NAME: &str = "method-classifier";

/// How the engine learns. Every field has a safe default.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LearnConfig {
    /// Off: the engine gathers evidence but never publishes a model.
    pub enabled: bool,
    /// Paired samples needed before the first training.
    pub min_samples: usize,
    /// The most recent paired samples kept for training.
    pub max_samples: usize,
    /// Share of samples trained on; the rest validate.
    pub train_fraction: f64,
    /// A model is published only with at least this held-out accuracy,
    pub min_accuracy: f64,
    /// at most this regret (extra latency over the oracle, fraction), and a
    /// total latency on the held-out pairs no worse than always gRPC and
    /// always zero-copy (within [`BASELINE_TOLERANCE`]).
    pub max_regret: f64,
    /// A published model whose accuracy on the last `live_window` live pairs
    /// falls this far below its validation accuracy (or below
    /// `min_accuracy`, whichever is lower) is dropped; the rules decide until a
    /// retrained model passes validation.
    pub live_accuracy_drop: f64,
    /// Live pairs the accuracy floor looks at.
    pub live_window: usize,
    /// Retrain after this many new paired samples even without drift.
    pub retrain_every: usize,
    /// After drift, retrain once this many new paired samples have arrived.
    pub retrain_after_drift: usize,
    /// Significance of the feature-distribution drift test.
    pub drift_alpha: f64,
    /// Recent values the drift test compares with the training set.
    pub drift_window: usize,
    /// One value per this much time enters the drift test (the resource
    /// probe's own interval, so that each value is a new sample).
    pub drift_sample_every: Duration,
    /// Two transfers pair only if at most this far apart.
    pub pair_max_age: Duration,
    /// ... and with CPU utilisation at most this far apart.
    pub pair_max_cpu_gap: f64,
    /// How the tree grows.
    pub tree: TreeConfig,
    /// Seed of the train/validation split.
    pub seed: u64,
    /// Moves pools' thresholds toward the measured crossover.
    pub adjust_thresholds: bool,
}

impl Default for LearnConfig {
    fn default() -> Self {
        LearnConfig {
            enabled: true,
            min_samples: 1000,
            max_samples: 20_000,
            train_fraction: 0.8,
            min_accuracy: 0.75,
            max_regret: 0.05,
            live_accuracy_drop: 0.15,
            live_window: 200,
            retrain_every: 5_000,
            retrain_after_drift: 200,
            drift_alpha: 0.001,
            drift_window: 32,
            drift_sample_every: Duration::from_secs(1),
            pair_max_age: Duration::from_secs(30),
            pair_max_cpu_gap: 0.25,
            tree: TreeConfig::default(),
            seed: 0x5EED,
            adjust_thresholds: true,
        }
    }
}
