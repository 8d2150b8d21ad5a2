//! The cost of one `Predictor::predict` call on trained models (the decision path's budget is 5 µs).

use criterion::{Criterion, criterion_group, criterion_main};
use perf_core::seams::Predictor;
use perf_core::{Method, SystemState, TransferRequest};
use perf_predict::synthetic::{SyntheticModel, samples};
use perf_predict::{Learner, ModelConfig};

fn bench(c: &mut Criterion) {
    let learner = Learner::new("bench", ModelConfig::default()).expect("default config is valid");
    for (method, fixed, per_mib) in [(Method::Grpc, 95.0, 1100.0), (Method::ZeroCopy, 47.0, 50.0)] {
        let model = SyntheticModel {
            method,
            fixed_us: fixed,
            cached_us_per_mib: per_mib,
            bulk_us_per_mib: per_mib,
            knot_bytes: 2 << 20,
            noise: 0.05,
        };
        learner.update_batch(&samples(&model, 4000, 7));
    }
    let predictor = learner.predictor();
    let request = TransferRequest::new(8 << 20);
    assert!(predictor.predict(&request, &SystemState::IDLE).is_some());
    c.bench_function("learned_predict", |b| {
        b.iter(|| predictor.predict(std::hint::black_box(&request), &SystemState::IDLE))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
