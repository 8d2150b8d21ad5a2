//! Predictive models of perfopt: latency, throughput and memory per pool and method, with
//! prediction intervals, a lock-free `Predictor`, held-out evaluation and capacity planning.
//!
//! - [`Learner`] keeps one [`MethodModel`] per pool x method (the platform is the learner's):
//!   latency, CPU time and memory as `fixed + cached_MiB * a + bulk_MiB * b` (the physics of
//!   `perf_core::cost`, with a knot where the payload leaves the cache), fitted online by
//!   recursive least squares on relative errors ([`Rls`]: forgetting factor, guarded
//!   covariance, O(1) per update, sound from 1 KiB to 1 GiB). Throughput follows from latency.
//!   Every published state has a version; [`Learner::rollback`] restores the previous one.
//! - Intervals come from empirical quantiles ([`quantile_sorted`], type 7) of the last
//!   [`RESIDUAL_WINDOW`] out-of-sample relative residuals; [`evaluate`] measures their real
//!   coverage and the share of predictions within 15 % on a time-ordered held-out split.
//! - [`LearnedPredictor`] implements `perf_core::Predictor`: it loads an `ArcSwap` snapshot,
//!   never locks or allocates, and answers only when both methods have enough samples in the
//!   request's size class; its confidence rises with those samples and falls with interval
//!   width, so the controller keeps its calibrated coefficients until then.
//! - [`plan`] and [`what_if`] forecast latency percentiles, CPU, shared memory held, and the
//!   first [`Bottleneck`] for a rate, a [`SizeDistribution`] and a worker count (R10.5).
//!
//! Not modelled: page faults of fresh segments (`TransferMetrics` does not say whether a
//! segment was fresh), and data type, format, compression and load as features.

mod error;
mod eval;
mod learner;
mod model;
mod plan;
mod quantile;
mod rls;
pub mod synthetic;

pub use error::PredictError;
pub use eval::{ACCURATE_WITHIN, Evaluation, MIN_EVALUATION_SAMPLES, evaluate};
pub use learner::{LearnedPredictor, Learner, ModelKey, ModelSnapshot, usable_sample};
pub use model::{MethodModel, ModelConfig, ModelEstimate, SIZE_CLASSES, class_floor, size_class};
pub use plan::{
    Bottleneck, Calibrated, CostModel, Forecast, LearnedOrCalibrated, MAX_LISTED_SIZES, PlanInput,
    ResourceLimits, SizeDistribution, Utilization, WhatIf, WhatIfReport, erlang_c, plan, what_if,
};
pub use quantile::{RESIDUAL_WINDOW, ResidualWindow, quantile_sorted};
pub use rls::{FEATURES, Rls};
