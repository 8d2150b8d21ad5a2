//! The vocabulary, the seam traits and the decision engine of perfopt.
//!
//! perf-core does no IO: time ([`Timestamp`]) and resources ([`SystemState`])
//! come in as arguments, and for a given RNG seed the same inputs give the same
//! decisions. Other crates implement the seam traits; every trait has a Noop
//! or fixed implementation here so that the engine runs on its own.

pub mod config;
pub mod decision;
pub mod metrics;
pub mod name;
pub mod request;
pub mod size;
pub mod vocab;

pub use config::{
    Config, ConfigError, ConfigErrors, CostCoefficients, Policy, PoolConfig, PoolSettings,
};
pub use decision::{
    Decision, EstimateSource, Estimates, MethodEstimate, Rationale, Reason, ReasonCode, Step,
    ThresholdBreakdown,
};
pub use metrics::{FailureKind, FallbackReason, TransferMetrics};
pub use name::{Name, NameError};
pub use request::{DecisionContext, SystemState, Timestamp, TransferRequest, ZeroCopyAvailability};
pub use size::{HumanMicros, HumanSize, MAX_SIZE, SizeError, parse_size};
pub use vocab::{Compression, DataType, Format, Goal, Locality, Method, UnknownName};

pub mod controller;
pub mod cost;
pub mod crossover;
pub mod learned;
pub mod policy;
pub mod rng;
pub mod seams;
pub mod threshold;

pub use controller::{Controller, ControllerBuilder, ControllerError, DecisionCounts};
pub use learned::{
    EnvelopeError, MAX_MODEL_BYTES, MemoryModelStore, MethodClassifier, ModelStore,
    ModelStoreError, NoopClassifier, NoopModelStore, StoredModel, Verdict, check_model, fnv64,
    open_model, seal_model,
};
pub use policy::{FixedPolicy, forced};
pub use seams::{
    DecisionFunction, FixedPredictor, FixedProbe, MetricsQuery, MetricsSink, NoShm, NoopPredictor,
    NoopQuery, NoopSink, Percentiles, PlatformShm, Prediction, Predictor, QueryError,
    ResourceProbe, SampleFilter, SegmentId, SeriesPoint, SeriesQuery, ShmError, ShmSegment,
    ShmView, TransferPolicy,
};
pub use threshold::{
    ChangeKind, MemoryThresholdStore, NoopThresholdStore, Proposal, ThresholdChange,
    ThresholdError, ThresholdManager, ThresholdStore,
};
