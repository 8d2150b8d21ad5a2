//! What the optimizer did by the time it stopped: the report of [`crate::Optimizer::shutdown`].

use serde::Serialize;

/// What the metrics store did.
#[cfg(feature = "store")]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreReport {
    /// Where records went.
    pub status: crate::StoreStatus,
    /// Records handed to the store.
    pub recorded: u64,
    /// Records whose aggregates are committed.
    pub committed: u64,
    /// Records dropped because the store's queue was full.
    pub dropped: u64,
    /// Commits that failed.
    pub failed_commits: u64,
    /// Why the final flush failed, when it did.
    pub flush_error: Option<String>,
}

/// What the learning engine did.
#[cfg(feature = "learn")]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LearningReport {
    /// Where the engine stands (observed and replayed transfers, model, drifts).
    pub status: perf_learn::Status,
    /// Records dropped because the engine fell behind.
    pub dropped: u64,
}

/// The report of a stopped optimizer: each part's counts and errors.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShutdownReport {
    /// The metrics store, flushed.
    #[cfg(feature = "store")]
    pub store: StoreReport,
    /// The learning engine, finished, when learning was on.
    #[cfg(feature = "learn")]
    pub learning: Option<LearningReport>,
    /// The cost models, saved where they persist, when they were on.
    #[cfg(feature = "predict")]
    pub cost_models: Option<crate::CostModelsReport>,
    /// Retention, stopped, when the store persists.
    #[cfg(feature = "store")]
    pub retention: Option<crate::RetentionReport>,
}
