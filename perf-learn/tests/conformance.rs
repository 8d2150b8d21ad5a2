//! perf-core's conformance suites run against perf-learn's implementations of the seams: the
//! learned classifier (with no model, and with a trained one) and the background engine as a
//! metrics sink.

use perf_core::Timestamp;
use perf_learn::synthetic::{Physics, Workload};
use perf_learn::{
    BackgroundEngine, Classifier, LearnConfig, LearnedClassifier, LearningEngine, TreeConfig,
};

fn trained() -> LearnedClassifier {
    let mut w = Workload::new(Physics::default(), 11);
    let model = Classifier::train(&w.pairs(2000), &TreeConfig::default(), Timestamp(1)).unwrap();
    LearnedClassifier::fixed(model)
}

perf_core::method_classifier_conformance!(
    classifier_without_a_model,
    LearningEngine::new(LearnConfig::default()).classifier(),
    answers: false
);
perf_core::method_classifier_conformance!(trained_classifier, trained(), answers: true);
perf_core::metrics_sink_conformance!(
    background_engine,
    BackgroundEngine::start(LearningEngine::new(LearnConfig::default()))
);
