//! The cost of the learned classifier on the decision path: one `classify` call, and a
//! controller decision with and without it (target under 5 µs, spec ceiling 1 ms).

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use perf_core::{
    Config, Controller, DecisionContext, MethodClassifier, SystemState, Timestamp, TransferRequest,
    ZeroCopyAvailability,
};
use perf_learn::synthetic::{Physics, Workload};
use perf_learn::{LearnConfig, LearningEngine};

fn bench(c: &mut Criterion) {
    let mut engine = LearningEngine::new(LearnConfig {
        min_samples: 2000,
        ..LearnConfig::default()
    });
    let mut w = Workload::new(Physics::default(), 1);
    for i in 0..2000 {
        w.cpu = if i % 2 == 0 { 0.05 } else { 0.9 };
        engine.add_paired(&[w.pair()]);
    }
    assert!(engine.status().active, "{:?}", engine.status());
    let classifier = engine.classifier();
    let learned = Controller::builder(Config::default())
        .classifier(Arc::new(classifier.clone()))
        .build()
        .expect("default config is valid");
    let rules = Controller::new(Config::default()).expect("default config is valid");
    let ctx = DecisionContext {
        now: Timestamp::from_secs(1_700_000_000),
        system: SystemState::IDLE,
        zero_copy: ZeroCopyAvailability::Pooled,
    };
    let request = TransferRequest::new(1 << 20);
    c.bench_function("classify", |b| {
        b.iter(|| classifier.classify(std::hint::black_box(&request), &ctx))
    });
    c.bench_function("decide_with_classifier", |b| {
        b.iter(|| learned.decide(std::hint::black_box(&request), &ctx))
    });
    c.bench_function("decide_rules_only", |b| {
        b.iter(|| rules.decide(std::hint::black_box(&request), &ctx))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
