//! Predictive models of perfopt: latency, throughput and memory per pool and method, with
//! prediction intervals, a lock-free `Predictor`, held-out evaluation and capacity planning.
//!
//! - [`Learner`] keeps one [`MethodModel`] per pool x method (the platform is the learner's):
//!   latency, CPU time and memory as `fixed + cached_MiB * a + bulk_MiB * b` (the physics of
//!   `perf_core::cost`, with a knot where the payload leaves the cache), fitted online by
//!   recursive least squares on relative errors ([`Rls`]: forgetting factor, guarded
//!   covariance, O(1) per update, sound from 1 KiB to 1 GiB). A settled fit learns at most
//!   twice its own prediction from one transfer, so scheduling spikes (x100 at 1 KiB on a
//!   loaded machine) do not drag it. Throughput follows from latency.
//!   Every published state has a version; [`Learner::rollback`] restores the previous one.
//! - Load enters through learned corrections: per size class and band of CPU utilisation
//!   ([`load_band`]), the median of the last [`CORRECTION_WINDOW`] ratios of measured to
//!   fitted latency, applied only while it has predicted better than the bare fit on
//!   transfers it had not seen (a moving score of both, within 15 %). A load term inside the
//!   fit was tried and did not help on held-out real transfers.
//! - Intervals come from empirical quantiles ([`quantile_sorted`], type 7) of the last
//!   [`RESIDUAL_WINDOW`] out-of-sample relative residuals, around both the corrected and the
//!   bare fit; [`evaluate`] measures their real coverage and the share of predictions within
//!   15 % on a time-ordered held-out split, with frozen models and online.
//! - [`LearnedPredictor`] implements `perf_core::Predictor`: it loads an `ArcSwap` snapshot,
//!   never locks or allocates, and answers only when both methods have enough samples in the
//!   request's size class; its confidence rises with those samples and falls with interval
//!   width, so the controller keeps its calibrated coefficients until then.
//! - [`Learner::encode`] and [`Learner::decode`] write and check the models (a header with
//!   layout version, length and FNV-1a checksum, then JSON); [`Learner::save`] and
//!   [`Learner::load`] keep them in a `perf_core::ModelStore` under [`COST_MODELS_NAME`], so
//!   that they survive restarts.
//! - [`CostModelFeed`] is a `MetricsSink` that updates a learner on its own thread in batches
//!   (bounded queue, drops counted); failed transfers are no evidence and are skipped and
//!   counted, by the feed and by [`Learner::update_batch`] alike.
//! - [`plan`] and [`what_if`] forecast latency percentiles, CPU, shared memory held, and the
//!   first [`Bottleneck`] for a rate, a [`SizeDistribution`] and a worker count (R10.5).
//!
//! Not modelled: page faults of fresh segments (`TransferMetrics` does not say whether a
//! segment was fresh), and data type, format and compression as features.
//!
//! Measured on the paired dataset of this machine (perf-learn's `paired-linux-2vcpu.csv`,
//! test `accuracy_on_the_shipped_paired_dataset`): the target of 90 % within 15 % is
//! not reached; see that test for the figures and what limits them.

mod correction;
mod error;
mod eval;
mod feed;
mod learner;
mod model;
mod persist;
mod plan;
mod quantile;
mod rls;
pub mod synthetic;

pub use correction::CORRECTION_WINDOW;
pub use error::PredictError;
pub use eval::{ACCURATE_WITHIN, Evaluation, MIN_EVALUATION_SAMPLES, evaluate};
pub use feed::{CostModelFeed, FEED_QUEUE};
pub use learner::{LearnedPredictor, Learner, ModelKey, ModelSnapshot, usable_sample};
pub use model::{
    LOAD_BANDS, MethodModel, ModelConfig, ModelEstimate, SIZE_CLASSES, class_floor, load_band,
    size_class,
};
pub use persist::{
    COST_MODELS_FORMAT, COST_MODELS_FORMAT_VERSION, COST_MODELS_NAME, host_platform,
};
pub use plan::{
    Bottleneck, Calibrated, CostModel, Forecast, LearnedOrCalibrated, MAX_LISTED_SIZES, PlanInput,
    ResourceLimits, SizeDistribution, Utilization, WhatIf, WhatIfReport, erlang_c, plan, what_if,
};
pub use quantile::{RESIDUAL_WINDOW, ResidualWindow, quantile_sorted};
pub use rls::{FEATURES, Rls};
