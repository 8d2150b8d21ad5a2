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
//! - [`policy`]: [`ExperimentPolicy`], the `perf_core::TransferPolicy` that runs the
//!   configuration's `[[experiments]]`: in a pool that runs one, each session's variant (by
//!   [`assignment`], the hash above over the variants' weights) decides with its settings
//!   through `Controller::decide_assigned`, and the decision and the transfer's record name the
//!   experiment and the variant. It allocates nothing and takes no lock.
//! - [`report`]: an experiment's report from its records: per variant the transfers, failures,
//!   fallbacks, the metric's mean, p50, p95 and p99; each treatment against the control by the
//!   mode's test (sequential, always valid, or Welch's) or, for `p95_latency`, a seeded
//!   bootstrap, Bonferroni-corrected over the treatments; the sample-ratio check; and a
//!   recommendation (promote, keep the control, or inconclusive with the samples still
//!   needed) with its reason. A red sample ratio blocks any winner, and no winner is named
//!   before `min_samples` per variant.
//!
//! - [`offline`]: the offline evaluation of a candidate from logged decisions and their
//!   propensities: inverse propensity scoring, its self-normalised form and the doubly robust
//!   estimator, each with its interval, and the effective sample size; checked against a
//!   reference computation and, on simulated logs with a known truth, for coverage.
//!
//! Promotion and rollback of a winner live in the facade (`perfopt::experiments`), which
//! edits the configuration file. Next: `perfopt ab simulate`, which feeds [`offline`] from a
//! data directory's transfers and a candidate configuration, and its validation against live
//! runs.

pub mod assign;
pub mod offline;
pub mod policy;
pub mod report;
pub mod stats;

pub use policy::{ExperimentPolicy, assignment};
pub use report::{ExperimentReport, Recommendation, ReportError, report};
