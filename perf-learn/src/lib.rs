//! Learning engine of perfopt: a classifier that learns which method is faster from paired
//! measurements, drift detection, and adaptive exploration.
//!
//! - Evidence ([`dataset`]): a [`PairedSample`] is one case measured by both methods under the
//!   same conditions, from `perfopt model collect` or from two live transfers of one size class
//!   close in time ([`Pairer`]); labels never come from the policy's own choices alone.
//! - Features ([`features`](mod@crate::features)): log size, data type, format, compression, CPU and memory
//!   pressure, shared memory free, hour of day, and moving averages of each method's recent
//!   slowdown ([`LoadTracker`]); z-score [`Normalizer`]; invalid rows are dropped and reported.
//! - The model ([`Classifier`]): a `linfa-trees` decision tree weighted by how much each pair's
//!   methods differ, compiled into a flat array with Laplace-smoothed leaf probabilities;
//!   prediction walks it without allocating. Files carry format, layout version, length and
//!   checksum; a damaged or incompatible file is rejected with a clear message.
//! - The engine ([`LearningEngine`], on its own thread as [`BackgroundEngine`]): trains from
//!   `min_samples` paired samples, publishes only a model that passes held-out validation
//!   (accuracy, regret, and no worse than always gRPC or always zero-copy) with one atomic swap
//!   read by [`LearnedClassifier`] (a `perf_core::MethodClassifier`); watches Page-Hinkley on
//!   live regret and Kolmogorov-Smirnov on CPU load ([`drift`]), retrains on drift, drops a
//!   model whose live accuracy falls below a floor (the rules decide until a retrained model
//!   passes), persists models in a `perf_core::ModelStore`, and moves pool thresholds toward
//!   the measured [`crossover`] through the policy's `perf_core::ThresholdControl` (a
//!   `Controller`, or anything that reads and moves thresholds). Every step is an [`Event`].
//!
//! Exploration (R4.5) lives in the controller: epsilon-greedy inside the ambiguous band, the
//! rate shrinking with a learned pick's confidence, each exploratory decision carrying its
//! propensity.

mod background;
pub mod dataset;
pub mod drift;
mod engine;
pub mod features;
mod model;
pub mod synthetic;

pub use background::{BackgroundEngine, QUEUE};
pub use dataset::{
    CSV_HEADER, DatasetError, Dropped, MAX_ROWS, PairedDataset, PairedSample, Pairer, Source,
    quarter_octave,
};
pub use engine::{
    BASELINE_TOLERANCE, Crossover, Event, EventKind, LearnConfig, LearnedClassifier,
    LearningEngine, MODEL_NAME, Status, Trigger, crossover,
};
pub use features::{
    Conditions, FEATURE_NAMES, FEATURES, FeatureVec, LoadTracker, Normalizer, features,
    hour_of_day, request_features,
};
pub use model::{
    Classifier, DECISIVE, Evaluation, LEAF, LearnError, MAX_NODES, MAX_REFERENCE, MODEL_FORMAT,
    MODEL_FORMAT_VERSION, Node, TreeConfig,
};

/// The file name of [`SHIPPED_DATASET`].
pub const SHIPPED_DATASET_NAME: &str = "paired-linux-2vcpu.csv";

/// Paired measurements shipped with perfopt: both methods carried for each case by
/// `perfopt model collect` on a 2-vCPU Linux VM, sizes 1 KiB to 256 MiB, idle and under CPU
/// load. `perfopt model evaluate` uses it when no other evidence is given.
pub const SHIPPED_DATASET: &str = include_str!("../data/paired-linux-2vcpu.csv");
