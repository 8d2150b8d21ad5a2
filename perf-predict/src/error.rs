//! Why a model, an evaluation or a capacity plan could not be made.

/// Why a model, an evaluation or a capacity plan could not be made.
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
}
