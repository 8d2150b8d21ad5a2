//! What the learning engine reports: its events (each one an explanation) and its status.

use perf_core::{Name, Timestamp};
use serde::{Deserialize, Serialize};

use crate::model::Evaluation;

/// What happened to the model; every event is also an explanation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// A model passed validation and decides from now on.
    Published {
        /// Its version.
        version: u64,
        /// Why it was trained.
        trigger: Trigger,
        /// Held-out results.
        validation: Evaluation,
    },
    /// A trained model failed validation and was not published.
    Rejected {
        /// Why it was trained.
        trigger: Trigger,
        /// Held-out results.
        validation: Evaluation,
    },
    /// Training failed.
    TrainingFailed {
        /// The error.
        error: String,
    },
    /// A stored model could not be used; the rules decide (an alert).
    LoadFailed {
        /// Why.
        error: String,
    },
    /// A stored model was loaded and decides.
    Loaded {
        /// Its version.
        version: u64,
    },
    /// Saving the model failed; it still decides in this process.
    SaveFailed {
        /// Why.
        error: String,
    },
    /// The workload changed (an alert).
    Drift {
        /// Which test fired.
        test: String,
        /// Its statistic.
        statistic: f64,
    },
    /// The published model lost accuracy and was dropped; the rules decide
    /// (an alert).
    Dropped {
        /// Its accuracy on the last live pairs.
        live_accuracy: f64,
    },
    /// A pool's threshold moved toward the measured crossover.
    ThresholdMoved {
        /// The pool.
        pool: Name,
        /// The measured crossover, bytes.
        crossover: u64,
        /// The threshold before, bytes.
        from: u64,
        /// The threshold after, bytes.
        to: u64,
        /// Expected latency gain over the old threshold (fraction).
        expected_gain: f64,
    },
}

impl EventKind {
    /// Whether an operator should hear of it.
    pub fn is_alert(&self) -> bool {
        matches!(
            self,
            EventKind::LoadFailed { .. }
                | EventKind::Drift { .. }
                | EventKind::Dropped { .. }
                | EventKind::SaveFailed { .. }
                | EventKind::TrainingFailed { .. }
        )
    }
}

/// Why a training ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Enough samples for a first model.
    FirstModel,
    /// Drift was detected.
    Drift,
    /// The model was dropped for lost accuracy.
    LostAccuracy,
    /// Periodic refresh.
    Refresh,
    /// Asked for.
    Requested,
}

/// One event, timed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When.
    pub at: Timestamp,
    /// The transfers observed by then.
    pub observed: u64,
    /// The paired samples seen by then.
    pub paired: u64,
    /// What.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// A summary for `perfopt model status` and run reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Whether learning may publish models.
    pub enabled: bool,
    /// Whether a model decides now.
    pub active: bool,
    /// Its version (0 when none).
    pub version: u64,
    /// Samples it was trained on.
    pub trained_on: usize,
    /// Its held-out results at training.
    pub validation: Option<Evaluation>,
    /// Its accuracy on the live pairs since it was published.
    pub live_accuracy: Option<f64>,
    /// Transfers observed.
    pub observed: u64,
    /// Transfers from before the engine started, folded in by `replay`.
    pub replayed: u64,
    /// Failed transfers among the observed and replayed ones: counted, never taken as samples.
    #[serde(default)]
    pub failed: u64,
    /// Paired samples gathered (live and bench).
    pub paired: u64,
    /// Paired samples kept for training.
    pub window: usize,
    /// Trainings run.
    pub trainings: u64,
    /// Drifts detected.
    pub drifts: u64,
    /// Paired samples needed for the first model.
    pub min_samples: usize,
}
