//! Learned corrections: what the physics fit cannot express, per size class and per load band.

use perf_core::{Method, Name, SystemState};
use perf_predict::synthetic::samples;
use perf_predict::{Learner, ModelConfig, evaluate, size_class};

use super::grpc_truth;

const KIB: u64 = 1 << 10;

/// Latency 40 % above the physics between 64 and 256 KiB (size class 3): the
/// correction of that class learns it, and predictions there become accurate;
/// with corrections off they stay 40 % low.
#[test]
fn a_correction_learns_what_the_fit_cannot_express() {
    let truth = grpc_truth(0.03);
    let mut data = samples(&truth, 6000, 21);
    for m in &mut data {
        if size_class(m.size) == 3 {
            m.latency_us *= 1.4;
        }
    }
    let size = 128 * KIB;
    let want = truth.latency_us(size) * 1.4;
    let learner = Learner::new("test", ModelConfig::default()).unwrap();
    learner.update_batch(&data);
    let snap = learner.snapshot();
    let model = snap.model(Name::DEFAULT_POOL, Method::Grpc).unwrap();
    let factor = model.correction(snap.config(), size, 0.0);
    assert!(factor > 1.2, "{factor}");
    let e = snap
        .estimate(Name::DEFAULT_POOL, Method::Grpc, size)
        .unwrap();
    assert!((e.latency_us / want - 1.0).abs() < 0.05, "{e:?} vs {want}");
    let (lo, hi) = e.interval_us.unwrap();
    assert!(lo < want && want < hi, "{lo} {want} {hi}");

    let off = ModelConfig {
        corrections: false,
        ..ModelConfig::default()
    };
    assert_eq!(model.correction(&off, size, 0.0), 1.0);
    let bare = model.estimate(&off, size);
    assert!(bare.latency_us < 0.9 * want, "{bare:?} vs {want}");

    let with = evaluate(&data, &ModelConfig::default(), 0.8).unwrap();
    let without = evaluate(&data, &off, 0.8).unwrap();
    assert!(
        with.within_15pct > without.within_15pct + 0.05,
        "{with:?} {without:?}"
    );
}

/// Transfers under a busy CPU (90 %) take 1.5 times as long: the corrections
/// of the top load band learn it, so the estimate depends on the load asked
/// about, while a quiet machine's estimate stays on the physics.
#[test]
fn corrections_make_the_estimate_depend_on_load() {
    let truth = grpc_truth(0.03);
    let mut data = samples(&truth, 8000, 22);
    for (i, m) in data.iter_mut().enumerate() {
        if i % 2 == 1 {
            m.system.cpu_utilization = 0.9;
            m.latency_us *= 1.5;
        } else {
            m.system.cpu_utilization = 0.1;
        }
    }
    let learner = Learner::new("test", ModelConfig::default()).unwrap();
    learner.update_batch(&data);
    let snap = learner.snapshot();
    let busy = SystemState {
        cpu_utilization: 0.9,
        ..SystemState::IDLE
    };
    let quiet = SystemState {
        cpu_utilization: 0.1,
        ..SystemState::IDLE
    };
    for size in [4 * KIB, 256 * KIB, 8 << 20, 256 << 20] {
        let at = |system: &SystemState| {
            snap.estimate_under(Name::DEFAULT_POOL, Method::Grpc, size, system)
                .unwrap()
                .latency_us
                / truth.latency_us(size)
        };
        let (b, q) = (at(&busy), at(&quiet));
        assert!(
            (b - 1.5).abs() < 0.1 && (q - 1.0).abs() < 0.1,
            "{size}: {b} {q}"
        );
    }
    let e = evaluate(&data, &ModelConfig::default(), 0.8).unwrap();
    assert!(e.within_15pct > 0.9, "{e:?}");
}
