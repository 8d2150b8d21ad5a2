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
    MAX_STATS_BUCKETS, MAX_STATS_SINCE_SECS, MetricsQuery, NoopQuery, Percentiles, QueryError,
    SampleFilter, SeriesPoint, SeriesQuery, StatsRequest,
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

#[cfg(test)]
mod tests {
    /// Every file of this folder, as compiled.
    const FILES: [(&str, &str); 11] = [
        ("decision_function", include_str!("decision_function.rs")),
        ("method_classifier", include_str!("method_classifier.rs")),
        ("metrics_query", include_str!("metrics_query.rs")),
        ("metrics_sink", include_str!("metrics_sink.rs")),
        ("model_store", include_str!("model_store.rs")),
        ("platform_shm", include_str!("platform_shm.rs")),
        ("predictor", include_str!("predictor.rs")),
        ("resource_probe", include_str!("resource_probe.rs")),
        ("threshold_control", include_str!("threshold_control.rs")),
        ("threshold_store", include_str!("threshold_store.rs")),
        ("transfer_policy", include_str!("transfer_policy.rs")),
    ];

    #[test]
    fn the_seam_table_of_the_crate_docs_names_every_trait_and_its_suite_exists() {
        let table: Vec<&str> = include_str!("../lib.rs")
            .lines()
            .filter(|l| l.starts_with("//! | [`"))
            .collect();
        let suites = include_str!("../conformance/mod.rs");
        let mut traits = 0;
        for (file, text) in FILES {
            // A sink and the query that reads it share one suite.
            let suite = file.strip_suffix("_sink").or(file.strip_suffix("_query"));
            assert!(
                suites.contains(&format!("pub mod {};", suite.unwrap_or(file))),
                "no conformance suite for {file}"
            );
            for name in text.lines().filter_map(|l| l.strip_prefix("pub trait ")) {
                let name = name.split([':', ' ', '<']).next().unwrap_or(name);
                traits += 1;
                assert!(
                    table.iter().any(|row| row.contains(&format!("[`{name}`]"))),
                    "the seam table in lib.rs does not name {name} of seams/{file}.rs"
                );
            }
        }
        assert_eq!(traits, 13, "traits found in seams/");
        assert_eq!(
            table.len(),
            11,
            "one row per seam, ShmSegment and ShmView with PlatformShm"
        );
    }
}
