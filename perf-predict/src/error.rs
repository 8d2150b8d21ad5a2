//! Why a model, an evaluation, a saved model or a capacity plan could not be made or read.

use perf_core::ModelStoreError;

/// Why a model, an evaluation, a saved model or a capacity plan could not be made or read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PredictError {
    /// A setting is out of range.
    #[error("invalid {field}: expected {expected}, got {got}")]
    InvalidConfig {
        /// The setting.
        field: &'static str,
        /// What is accepted.
        expected: &'static str,
        /// What came.
        got: String,
    },
    /// A rollback was asked for, but no earlier version is kept.
    #[error("no previous model version to roll back to (current version {0})")]
    NoPreviousVersion(u64),
    /// Too few usable samples for an evaluation.
    #[error("too few samples to evaluate: expected at least {expected}, got {got}")]
    TooFewSamples {
        /// The least accepted.
        expected: usize,
        /// How many usable samples came.
        got: usize,
    },
    /// A size distribution could not be read.
    #[error(
        "invalid size distribution {0:?}: expected mixed, small, large, a size (64MiB), a range (1KiB..64MiB) or a list (4KiB,1MiB)"
    )]
    SizeDistribution(String),
    /// Saved cost models that cannot be used: damaged, truncated or inconsistent.
    #[error("cost model file rejected: {0}")]
    CorruptModel(String),
    /// Saved cost models in another layout version.
    #[error("cost model file has layout version {found}, this build reads version {expected}")]
    IncompatibleModel {
        /// The layout version in the file.
        found: u32,
        /// The layout version this build reads.
        expected: u32,
    },
    /// Saved cost models measured on another platform.
    #[error("cost models were measured on platform {found:?}, expected models of {expected:?}")]
    OtherPlatform {
        /// The platform in the file.
        found: String,
        /// The platform asked for.
        expected: String,
    },
    /// The model store failed.
    #[error(transparent)]
    Store(#[from] ModelStoreError),
}
