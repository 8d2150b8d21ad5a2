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
//! | `transport` | [`transport`] | segment pool, zero-copy references, gRPC transport (implies `platform`) |
//! | `platform` | [`platform`] | shared-memory backends, resource probe, platform detection |
//! | `store` | [`store`] | metrics time series, percentiles, persistence |
//! | `learn` | [`learn`] | classifier, drift detection, exploration |
//! | `predict` | [`predict`] | latency, throughput and memory models, capacity planning |
//! | `abtest` | [`abtest`] | experiments between policies |
//! | `monitor` | [`monitor`] | telemetry, exporters, regression detection |
//!
//! The platform layer itself is always built, whatever the features: the facade
//! reads configuration files and calibration profiles through its bounded
//! reader (regular files only, so a FIFO or `/dev/zero` given as a file is an
//! error, never a hang) and, on Linux, samples resources with its probe. The
//! `platform` feature only adds its API as the [`platform`] module.
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

mod optimizer;
mod watch;

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
pub use optimizer::{ShmStatus, SweepOutcome};
/// What a path given as a file turned out to be when it is not a regular file
/// (see [`OptimizerError::NotRegular`]).
pub use perf_platform::FileKind;
pub use watch::{ConfigWatcher, ReloadCallback, ReloadEvent};

/// The vocabulary, the seam traits and the decision engine.
pub use perf_core as core;
pub use perf_core::{
    Compression, Config, ConfigErrors, Controller, DataType, Decision, DecisionContext, Format,
    Goal, Locality, Method, MetricsSink, Name, Reason, SystemState, Timestamp, TransferMetrics,
    TransferRequest, ZeroCopyAvailability,
};

/// Shared-memory backends, resource probe and platform detection.
#[cfg(feature = "platform")]
pub use perf_platform as platform;

/// Segment pool, zero-copy references and the gRPC transport.
#[cfg(feature = "transport")]
pub use perf_transport as transport;

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
