//! Predictive models of perfopt: latency, throughput and memory by data characteristics, with
//! confidence intervals, and capacity planning.
//!
//! This crate will own regression models that update incrementally from new samples and predict,
//! per method, the latency, throughput and memory of a transfer with a confidence interval; they
//! reach the decision engine through the `Predictor` trait of `perf-core`, which uses them only
//! when they are confident. It will also own capacity planning (what-if questions, scale
//! forecasts and the bottleneck to expect) and the prediction API that other tools call. Every
//! interval written by hand will have golden tests against values from R or scipy.
//!
//! Not implemented yet. It will cover R10.1 to R10.6 (predictive models) and, with `perf-core`,
//! R3.1 and R3.4 (per-method estimates, learned where history exists).
