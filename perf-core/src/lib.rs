//! The vocabulary, the seam traits and the decision engine of perfopt.
//!
//! perf-core does no IO: time ([`Timestamp`]) and resources ([`SystemState`])
//! come in as arguments, and for a given RNG seed the same inputs give the same
//! decisions. Other crates implement the seam traits; every trait has a Noop
//! or fixed implementation here so that the engine runs on its own.
//!
//! ## Seams
//!
//! One file per trait in `seams/`, beside its Noop or fixed implementation; crates reach each
//! other only through these traits. With the `conformance` feature, `perf_core::conformance` holds one
//! suite per trait, run against every implementation.
//!
//! | trait | role | implementations |
//! |---|---|---|
//! | [`TransferPolicy`] | decide(request, context) -> Decision | [`Controller`] (core), [`FixedPolicy`] (core) |
//! | [`DecisionFunction`] | a user's rule, may read metrics | user code (any `Fn(&TransferRequest, &DecisionContext, &dyn MetricsQuery) -> Option<Method>`) |
//! | [`MetricsSink`] | record(&TransferMetrics), never blocks | `StoreSink` (store), `BackgroundEngine` (learn), `CostModelFeed` (predict), `Telemetry` (monitor), `Tally` (facade), `Summary` (cli), [`NoopSink`] (core) |
//! | [`MetricsQuery`] | percentiles/series/samples by pool, method, range | `StoreQuery` (store), [`NoopQuery`] (core) |
//! | [`Predictor`] | per-method cost estimates with intervals | `LearnedPredictor` (predict), [`FixedPredictor`], [`NoopPredictor`] (core) |
//! | [`MethodClassifier`] | which method wins, with confidence | `LearnedClassifier` (learn), [`NoopClassifier`] (core) |
//! | [`ThresholdStore`] | persist threshold history | `RedbThresholdStore` (store), [`MemoryThresholdStore`], [`NoopThresholdStore`] (core) |
//! | [`ModelStore`] | persist trained models, versioned | `RedbModelStore` (store), [`MemoryModelStore`], [`NoopModelStore`] (core) |
//! | [`ThresholdControl`] | read and move a pool's threshold (what learning needs of the policy) | [`Controller`] (core) |
//! | [`PlatformShm`] (with [`ShmSegment`], [`ShmView`]) | create / open / seal / unlink segments | `MemfdShm`, `NamedShm`, `SystemShm`, `InProcessShm`, `PosixShm` (macOS), `WindowsShm` (platform), [`NoShm`] (core) |
//! | [`ResourceProbe`] | sample() -> SystemState | `ProcProbe` (platform), [`FixedProbe`] (core) |

pub mod config;
pub mod decision;
pub mod metrics;
pub mod name;
pub mod request;
pub mod size;
pub mod vocab;

pub use config::{
    Config, ConfigError, ConfigErrors, CostCoefficients, MonitorSettings, Policy, PoolConfig,
    PoolSettings,
};
pub use decision::{
    Decision, EstimateSource, Estimates, ExperimentArm, MethodEstimate, Rationale, Reason,
    ReasonCode, Step, ThresholdBreakdown,
};
pub use metrics::{FailureKind, FallbackReason, ReplyRecord, TransferMetrics};
pub use name::{Name, NameError};
pub use request::{DecisionContext, SystemState, Timestamp, TransferRequest, ZeroCopyAvailability};
pub use size::{HumanMicros, HumanSize, MAX_SIZE, SizeError, parse_size};
pub use vocab::{
    Compression, DataType, Direction, Format, Goal, Locality, Method, UnknownName, Verification,
};

pub mod calibrate;
pub mod controller;
pub mod cost;
pub mod crossover;
pub mod envelope;
pub mod policy;
pub mod rng;
pub mod seams;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod threshold;

pub use controller::{Controller, ControllerBuilder, ControllerError, DecisionCounts};
pub use envelope::{EnvelopeError, fnv64, open_model, seal_model};
pub use policy::forced;
pub use seams::{
    DecisionFunction, FixedPolicy, FixedPredictor, FixedProbe, MAX_MODEL_BYTES, MemoryModelStore,
    MemoryThresholdStore, MethodClassifier, MetricsQuery, MetricsSink, ModelStore, ModelStoreError,
    NoShm, NoopClassifier, NoopModelStore, NoopPredictor, NoopQuery, NoopSink, NoopThresholdStore,
    Percentiles, PlatformShm, Prediction, Predictor, QueryError, ResourceProbe, SampleFilter,
    SegmentId, SeriesPoint, SeriesQuery, ShmError, ShmSegment, ShmView, StatsRequest, StoredModel,
    ThresholdControl, ThresholdStore, TransferPolicy, Verdict, check_model,
};
pub use threshold::{ChangeKind, Proposal, ThresholdChange, ThresholdError, ThresholdManager};
