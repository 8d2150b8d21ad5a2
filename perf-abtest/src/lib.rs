//! A/B testing of perfopt: the assignment of sessions to variants and the statistics that
//! compare them.
//!
//! What exists now (R9.6 and the statistics of R9):
//!
//! - [`assign`]: the deterministic, versioned assignment of a session to a variant. A
//!   session's bucket is GrowthBook's version 2 hash of the experiment's seed and the session
//!   id ([`assign::bucket_session`], a stable contract, [`assign::HASH_VERSION`]), and a
//!   [`assign::Split`] of variant weights maps the bucket to a variant. Neither allocates.
//! - [`stats`]: per-variant [`stats::Summary`]s kept by a streaming update; Welch's t-test
//!   with the absolute and relative differences and their intervals
//!   ([`stats::welch_test`]); the always-valid sequential test, a normal-mixture mSPRT with
//!   its confidence sequence as gbstats computes it ([`stats::sequential_test`]); the
//!   fixed-horizon guard that refuses to conclude before the planned sample size
//!   ([`stats::fixed_horizon_test`]); the sample-ratio-mismatch check graded green, yellow or
//!   red ([`stats::srm_check`]); and power and minimum sample size
//!   ([`stats::PowerAnalysis`]). Each is golden-tested against R, scipy, statsmodels or
//!   gbstats, and every result is serde-serialisable.
//!
//! What comes next: the experiment policy (a `perf_core::TransferPolicy` that sends each
//! session to its variant's policy), the experiment's configuration and its lifecycle
//! (start, the recommendation of a winner, promotion and rollback), and the report of
//! `perfopt ab report`.

pub mod assign;
pub mod policy;
pub mod report;
pub mod stats;

pub use policy::{ExperimentPolicy, assignment};
pub use report::{ExperimentReport, Recommendation, ReportError, report};
