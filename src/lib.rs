//! perfopt decides, for every payload a host hands to a worker process,
//! whether it travels through shared memory (zero-copy) or as a gRPC message,
//! and explains each decision.
//!
//! This crate is the facade: it re-exports the parts as modules and wires them
//! together with [`Optimizer::builder`]. The decision engine ([`core`]) is
//! always there; the other parts sit behind additive cargo features, all on by
//! default:
//!
//! | feature | module | what it brings |
//! |---|---|---|
//! | `transport` | [`transport`], [`worker`] | segment pool, zero-copy references, gRPC transport (implies `platform`); the worker API |
//! | `platform` | [`platform`] | shared-memory backends, resource probe, platform detection |
//! | `store` | [`store`] | metrics time series, percentiles, persistence |
//! | `learn` | [`learn`] | classifier, drift detection, exploration |
//! | `predict` | [`predict`] | latency, throughput and memory models, capacity planning |
//! | `abtest` | [`abtest`] | experiments between policies |
//! | `monitor` | [`monitor`] | telemetry, exporters, regression detection |
//!
//! One more feature is off by default and only for tests of performance gates:
//! `delay-injection` makes `PERFOPT_INJECT_ZERO_COPY_DELAY_US` add that many microseconds to
//! every zero-copy transfer (see the `transport` crate's docs); without it the hook does not
//! exist.
//!
//! The platform layer itself is always built, whatever the features: the facade
//! reads configuration files and calibration profiles through its bounded
//! reader (regular files only, so a FIFO or `/dev/zero` given as a file is an
//! error, never a hang) and, on Linux, samples resources with its probe. The
//! `platform` feature only adds its API as the [`platform`] module.
//!
//! ## What the builder wires
//!
//! With the default features, [`Optimizer::builder`] wires everything
//! `perfopt run` does, so a library user can do all it does:
//!
//! | part | feature | builder | what happens |
//! |---|---|---|---|
//! | metrics store | `store` | `.data_dir(dir)`, `.require_store()` | records go to the redb store of `dir`; when it cannot be opened they go to memory and [`Optimizer::store_status`] and [`Optimizer::warnings`] say why (`.require_store()` makes it an error); without a directory they go to memory. [`Optimizer::metrics`] and [`Optimizer::store_query`] answer either way |
//! | calibration | `store` | `.data_dir(dir)` | the data directory's calibration profile ([`CALIBRATION_FILE`], written by `perfopt calibrate` or [`calibrate_data_dir`]) gives the cost coefficients wherever the configuration states none of its own (no `profile`, the built-in `[costs]`), across reloads; [`Optimizer::calibration`] says whether it does |
//! | thresholds | `store` | `.data_dir(dir)` | adjustments and their history persist in the store and are restored at build |
//! | retention | `store` | `.retention(..)`, `.cleanup_every(..)` | with a durable store: a clean-up at build, then every 10 minutes on a background thread ([`Optimizer::retention`]) |
//! | cost models | `predict` | `.cost_models(on)` | on by default with a data directory: the saved models are restored (a model that does not load is said and replaced), every record feeds them off the transfer's path (failed transfers skipped), the engine uses their predictor once confident, and they are saved at stop |
//! | learning | `learn` | `.learning(config)` | the classifier trains in the background; with a durable store, models persist and the transfers stored by earlier runs are replayed at build |
//! | shared memory | `transport` | `.named_segments(on)`, `.shm_budget(bytes)` | stale named segments are swept ([`Optimizer::shm_status`]), then the backend (memfd by default) and a segment pool within the budget are made ([`Optimizer::segment_pool`]) |
//! | monitoring | `monitor` | `.decision_log(config)` | every record feeds the telemetry ([`Optimizer::telemetry`]: Prometheus text, OTLP) and a tally of outcomes ([`Optimizer::tally`]); every decision of [`Optimizer::policy`] (which the host runtime decides with) goes to the decision log ([`Optimizer::decision_log`]); with `transport` too, [`daemon`] serves the HTTP endpoints over the optimizer and its host, as `perfopt serve` does |
//!
//! Some parts are wanted without an optimizer, and the facade makes them the
//! same way: `segment_pool` (feature `transport`) makes a segment pool on the
//! optimizer's shared-memory backend, for a host runtime that carries by a
//! fixed method, as `perfopt bench` and `perfopt model collect` measure;
//! `stored_classifier`, `stored_pairs`, `train_classifier` (`store` and
//! `learn`) and `stored_cost_models` (`store` and `predict`) read the learned
//! parts a data directory's store holds, or train on it, never creating a
//! store only to read it; `OptimizerBuilder::classifier` lets such a stored
//! classifier decide. The decisions a configuration change would flip come
//! from `core::Config::diff`.
//!
//! [`Optimizer::shutdown`] flushes the store, finishes the learning engine
//! and the cost models' feed, saves the models, stops retention and returns a
//! [`ShutdownReport`]; dropping the optimizer does the same, best-effort.
//! [`Optimizer::fixed_thresholds_policy`] gives the policy to compare the
//! engine against: the same configuration with learning off everywhere.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use perfopt::Optimizer;
//!
//! let optimizer = Optimizer::builder()
//!     .data_dir(dir.path())
//!     .learning(perfopt::learn::LearnConfig::default())
//!     .build()?;
//! assert!(optimizer.store_status().is_persistent());
//! // Decide, connect executors with `optimizer.segment_pool()`, record...
//! let report = optimizer.shutdown();
//! assert_eq!(report.store.flush_error, None);
//! assert!(report.cost_models.unwrap().saved_as.is_some());
//! # Ok::<(), perfopt::OptimizerError>(())
//! ```
//!
//! ```
//! use perfopt::{Optimizer, TransferRequest, Method};
//!
//! let optimizer = Optimizer::builder().build().unwrap();
//! let small = optimizer.decide(&TransferRequest::new(4 << 10));
//! let large = optimizer.decide(&TransferRequest::new(2 << 30));
//! assert_eq!(small.method, Method::Grpc);
//! assert_eq!(large.method, Method::ZeroCopy);
//! println!("{}", large.rationale());
//! ```

mod calibration;
#[cfg(all(feature = "monitor", feature = "transport"))]
pub mod daemon;
#[cfg(feature = "abtest")]
pub mod experiments;
#[cfg(feature = "monitor")]
pub mod export;
mod optimizer;
#[cfg(all(
    feature = "store",
    any(feature = "learn", feature = "predict", feature = "abtest")
))]
mod stored;
mod watch;

pub use calibration::{
    CALIBRATION_FILE, CalibrationStatus, calibration_path, data_dir_calibration, fitted_crossover,
};
#[cfg(all(feature = "store", feature = "learn", feature = "transport"))]
pub use calibration::{Calibrated, CalibrationError, CalibrationRun, calibrate_data_dir};
#[cfg(feature = "learn")]
pub use optimizer::LearningReport;
#[cfg(feature = "store")]
pub use optimizer::{CLEANUP_EVERY, RetentionReport, StoreReport, StoreStatus};
#[cfg(feature = "predict")]
pub use optimizer::{CostModelsOrigin, CostModelsReport};
pub use optimizer::{
    Optimizer, OptimizerBuilder, OptimizerError, ShutdownReport, load_config, load_profile,
};
#[cfg(feature = "transport")]
pub use optimizer::{ShmStatus, SweepOutcome, segment_pool};
#[cfg(feature = "monitor")]
pub use optimizer::{Tally, TallyCounts};
/// What a path given as a file turned out to be when it is not a regular file
/// (see [`OptimizerError::NotRegular`]).
pub use perf_platform::FileKind;
#[cfg(all(
    feature = "store",
    any(feature = "learn", feature = "predict", feature = "abtest")
))]
pub use stored::*;
pub use watch::{ConfigWatcher, ReloadCallback, ReloadEvent};

/// The vocabulary, the seam traits and the decision engine.
pub use perf_core as core;
pub use perf_core::{
    Compression, Config, ConfigErrors, Controller, DataType, Decision, DecisionContext, Format,
    Goal, Locality, Method, MetricsSink, Name, Reason, SystemState, Timestamp, TransferMetrics,
    TransferRequest, Verification, ZeroCopyAvailability,
};

/// Shared-memory backends, resource probe and platform detection.
#[cfg(feature = "platform")]
pub use perf_platform as platform;

/// Segment pool, zero-copy references and the gRPC transport.
#[cfg(feature = "transport")]
pub use perf_transport as transport;

/// Workers that do real work: a [`worker::Handler`] receives each payload as a checked,
/// zero-copy view and may reply; [`worker::serve`] runs it under the spawn contract, and
/// `Host::call` gets the reply.
#[cfg(feature = "transport")]
pub use perf_transport::worker;

/// Metrics time series, percentiles and persistence.
#[cfg(feature = "store")]
pub use perf_store as store;

/// The learning engine.
#[cfg(feature = "learn")]
pub use perf_learn as learn;

/// Models of latency, throughput and memory, and capacity planning.
#[cfg(feature = "predict")]
pub use perf_predict as predict;

/// A/B experiments between policies.
#[cfg(feature = "abtest")]
pub use perf_abtest as abtest;

/// Telemetry, exporters, dashboards and regression detection.
#[cfg(feature = "monitor")]
pub use perf_monitor as monitor;
