//! The seam traits other crates implement, one file per trait beside its Noop or fixed
//! implementation.

mod decision_function;
mod method_classifier;
mod metrics_query;
mod metrics_sink;
mod model_store;
mod platform_shm;
mod predictor;
mod resource_probe;
mod threshold_control;
mod threshold_store;
mod transfer_policy;

pub use decision_function::DecisionFunction;
pub use method_classifier::{MethodClassifier, NoopClassifier, Verdict};
pub use metrics_query::{
    MetricsQuery, NoopQuery, Percentiles, QueryError, SampleFilter, SeriesPoint, SeriesQuery,
};
pub use metrics_sink::{MetricsSink, NoopSink};
pub use model_store::{
    MAX_MODEL_BYTES, MemoryModelStore, ModelStore, ModelStoreError, NoopModelStore, StoredModel,
    check_model,
};
pub use platform_shm::{NoShm, PlatformShm, SegmentId, ShmError, ShmSegment, ShmView};
pub use predictor::{FixedPredictor, NoopPredictor, Prediction, Predictor};
pub use resource_probe::{FixedProbe, ResourceProbe};
pub use threshold_control::ThresholdControl;
pub use threshold_store::{MemoryThresholdStore, NoopThresholdStore, ThresholdStore};
pub use transfer_policy::{FixedPolicy, TransferPolicy};
