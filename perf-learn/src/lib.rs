//! Learning engine of perfopt: a classifier that learns which method is best, drift detection
//! and exploration.
//!
//! This crate will own the model trained, from 1,000 samples on (configurable), on the data
//! characteristics each transfer carries (size, type, format, compression), offered to the
//! decision engine through the `Predictor` and `TransferPolicy` traits of `perf-core`; the
//! statistical detection of workload drift that triggers retraining; exploration of the other
//! method in a bounded, adaptive share of decisions inside the ambiguous band, each logged with
//! its propensity; and the fallback to the rule-based path, with an alert, when a model degrades,
//! fails to load or errors. Threshold moves it proposes are bounded and logged with their reason.
//!
//! Not implemented yet. It will cover R4.1 to R4.6 (learning), the learned side of R3.4 and, with
//! `perf-core`, R1.3 (thresholds that follow the measured crossover).
