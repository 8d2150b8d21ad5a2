//! perf-core's conformance suites run against perf-predict's implementations of the seams:
//! the learned predictor (untrained, and trained on both methods) and the cost models' feed as
//! a metrics sink.

use std::sync::Arc;

use perf_predict::{CostModelFeed, Learner, ModelConfig};

fn untrained() -> Learner {
    Learner::new("test", ModelConfig::default()).unwrap()
}

perf_core::predictor_conformance!(untrained_predictor, untrained().predictor(), answers: false);
perf_core::predictor_conformance!(
    trained_predictor,
    crate::trained(0.05, 3000).predictor(),
    answers: true
);
perf_core::metrics_sink_conformance!(cost_model_feed, CostModelFeed::start(Arc::new(untrained())));
