//! End-to-end tests of perf-predict: recovery of known models, intervals, the Predictor seam
//! and its conformance suite, versions, saved models and planning.

mod accuracy;
mod conformance;
mod corrections;
mod persist;
mod replies;

use std::sync::Arc;

use perf_core::seams::Predictor;
use perf_core::{
    Config, Controller, DecisionContext, EstimateSource, Method, Name, SystemState, Timestamp,
    TransferRequest,
};
use perf_predict::synthetic::{SyntheticModel, samples};
use perf_predict::{
    Bottleneck, Calibrated, LearnedOrCalibrated, Learner, ModelConfig, PlanInput, PredictError,
    SizeDistribution, WhatIf, evaluate, plan, what_if,
};

const MIB: u64 = 1 << 20;

fn grpc_truth(noise: f64) -> SyntheticModel {
    SyntheticModel {
        method: Method::Grpc,
        fixed_us: 95.0,
        cached_us_per_mib: 350.0,
        bulk_us_per_mib: 1100.0,
        knot_bytes: 2 * MIB,
        noise,
    }
}

fn zero_copy_truth(noise: f64) -> SyntheticModel {
    SyntheticModel {
        method: Method::ZeroCopy,
        fixed_us: 47.0,
        cached_us_per_mib: 50.0,
        bulk_us_per_mib: 55.0,
        knot_bytes: 2 * MIB,
        noise,
    }
}

fn trained(noise: f64, n: usize) -> Learner {
    let learner = Learner::new("test", ModelConfig::default()).unwrap();
    learner.update_batch(&samples(&grpc_truth(noise), n, 1));
    learner.update_batch(&samples(&zero_copy_truth(noise), n, 2));
    learner
}

/// From noisy samples of a known model over 1 KiB..1 GiB, the fit recovers
/// the coefficients, and on held-out data the 90 % intervals cover close to
/// 90 % while nearly every prediction is within 15 %.
#[test]
fn recovers_a_known_model_with_calibrated_intervals() {
    let truth = grpc_truth(0.05);
    let data = samples(&truth, 5000, 42);
    let learner = Learner::new("test", ModelConfig::default()).unwrap();
    learner.update_batch(&data);
    let snap = learner.snapshot();
    let c = snap
        .model(Name::DEFAULT_POOL, Method::Grpc)
        .unwrap()
        .latency_coefficients();
    let want = [
        truth.fixed_us,
        truth.cached_us_per_mib,
        truth.bulk_us_per_mib,
    ];
    for (got, want) in c.iter().zip(want) {
        assert!((got - want).abs() / want < 0.05, "{c:?} vs {want}");
    }

    let e = evaluate(&data, &ModelConfig::default(), 0.8).unwrap();
    assert_eq!((e.train, e.test, e.predicted), (4000, 1000, 1000));
    assert_eq!(e.with_interval, 1000);
    assert!((0.85..=0.95).contains(&e.coverage), "{e:?}");
    assert!(e.within_15pct > 0.95, "{e:?}");
    assert!(e.median_relative_error < 0.06, "{e:?}");
}

/// With noise of 25 % the interval still covers about 90 %, but fewer
/// predictions are within 15 %: the evaluation reports both honestly.
#[test]
fn noisy_data_widens_intervals_and_lowers_confidence() {
    let noisy = samples(&grpc_truth(0.25), 5000, 5);
    let e = evaluate(&noisy, &ModelConfig::default(), 0.8).unwrap();
    assert!((0.85..=0.95).contains(&e.coverage), "{e:?}");
    assert!(e.within_15pct < 0.6, "{e:?}");

    let quiet = trained(0.02, 3000).snapshot();
    let loud = trained(0.25, 3000).snapshot();
    let size = 8 * MIB;
    let q = quiet
        .estimate(Name::DEFAULT_POOL, Method::Grpc, size)
        .unwrap();
    let l = loud
        .estimate(Name::DEFAULT_POOL, Method::Grpc, size)
        .unwrap();
    let width = |e: &perf_predict::ModelEstimate| {
        let (lo, hi) = e.interval_us.unwrap();
        (hi - lo) / e.latency_us
    };
    assert!(width(&l) > 3.0 * width(&q), "{l:?} {q:?}");
    assert!(
        q.confidence > 0.8 && l.confidence < q.confidence,
        "{q:?} {l:?}"
    );
}

#[test]
fn evaluation_sorts_by_time_and_rejects_too_little_data() {
    let mut data = samples(&grpc_truth(0.05), 1000, 9);
    data.reverse();
    let e = evaluate(&data, &ModelConfig::default(), 0.8).unwrap();
    assert!(e.within_15pct > 0.9, "{e:?}");
    assert!(matches!(
        evaluate(&data[..5], &ModelConfig::default(), 0.8),
        Err(PredictError::TooFewSamples { got: 5, .. })
    ));
    assert!(evaluate(&data, &ModelConfig::default(), 1.0).is_err());
}

/// Below enough samples per size class the predictor says nothing, so the
/// controller keeps its calibrated coefficients; once confident, the
/// controller's cost analysis uses the learned estimates, with intervals.
#[test]
fn controller_switches_from_calibrated_to_learned_estimates() {
    let learner = Learner::new("test", ModelConfig::default()).unwrap();
    let predictor = Arc::new(learner.predictor());
    let controller = Controller::builder(Config::default())
        .predictor(predictor.clone())
        .build()
        .unwrap();
    let request = TransferRequest::new(8 * MIB);
    let ctx = DecisionContext::idle(Timestamp::from_secs(1));
    assert_eq!(
        controller.estimate(&request, &ctx).source,
        EstimateSource::Calibrated
    );

    learner.update_batch(&samples(&grpc_truth(0.03), 60, 3));
    learner.update_batch(&samples(&zero_copy_truth(0.03), 60, 4));
    // 60 samples over 11 size classes: too few in the request's class.
    assert!(predictor.predict(&request, &SystemState::IDLE).is_none());

    learner.update_batch(&samples(&grpc_truth(0.03), 3000, 5));
    learner.update_batch(&samples(&zero_copy_truth(0.03), 3000, 6));
    let p = predictor.predict(&request, &SystemState::IDLE).unwrap();
    assert!(p.confidence >= 0.8 && p.confidence <= 1.0, "{p:?}");
    assert!(p.samples >= 20);
    let (lo, hi) = p.grpc.interval_us.unwrap();
    let truth = grpc_truth(0.0).latency_us(8 * MIB);
    assert!(lo < truth && truth < hi, "{lo} {truth} {hi}");
    let e = controller.estimate(&request, &ctx);
    assert_eq!(e.source, EstimateSource::Predicted);
    assert!(e.zero_copy.latency_us < e.grpc.latency_us);

    // A pool without the request's data says nothing.
    let other = request.with_pool(Name::new("other").unwrap());
    assert!(predictor.predict(&other, &SystemState::IDLE).is_none());
}

#[test]
fn versions_count_updates_and_rollback_restores_the_previous_model() {
    let learner = Learner::new("test", ModelConfig::default()).unwrap();
    assert_eq!(learner.version(), 0);
    assert!(matches!(
        learner.rollback(),
        Err(PredictError::NoPreviousVersion(0))
    ));
    let good = samples(&grpc_truth(0.02), 2000, 8);
    assert_eq!(learner.update_batch(&good), 2000);
    assert_eq!(learner.version(), 1);
    let before = learner
        .snapshot()
        .estimate(Name::DEFAULT_POOL, Method::Grpc, 64 * MIB)
        .unwrap();

    // A bad batch: everything ten times slower.
    let mut bad = samples(&grpc_truth(0.02), 2000, 9);
    for m in &mut bad {
        m.latency_us *= 10.0;
    }
    learner.update_batch(&bad);
    assert_eq!(learner.version(), 2);
    let after_bad = learner
        .snapshot()
        .estimate(Name::DEFAULT_POOL, Method::Grpc, 64 * MIB)
        .unwrap();
    assert!(after_bad.latency_us > 3.0 * before.latency_us);

    assert_eq!(learner.rollback().unwrap(), 1);
    assert_eq!(learner.version(), 1);
    let restored = learner
        .snapshot()
        .estimate(Name::DEFAULT_POOL, Method::Grpc, 64 * MIB)
        .unwrap();
    assert_eq!(restored, before);
    assert!(learner.rollback().is_err());
    learner.update(&good[0]);
    assert_eq!(learner.version(), 3);

    // Failed transfers and fallbacks teach nothing and publish nothing.
    let mut failed = good[1];
    failed.success = false;
    assert!(!learner.update(&failed));
    assert_eq!(learner.version(), 3);
}

#[test]
fn invalid_settings_are_refused_with_the_field_named() {
    let bad = ModelConfig {
        min_class_samples: 0,
        ..ModelConfig::default()
    };
    let e = Learner::new("test", bad).unwrap_err().to_string();
    assert!(e.starts_with("invalid min_class_samples"), "{e}");
}

/// A mixed workload at 500/s on 4 workers fits the reference machine; ten
/// times the rate saturates it, and the bottleneck is named.
#[test]
fn plan_forecasts_latency_resources_and_the_bottleneck() {
    let model = Calibrated(perf_core::CostCoefficients::default());
    let input = PlanInput::new(500.0, SizeDistribution::MIXED, 4);
    let f = plan(&input, &model).unwrap();
    assert!(!f.saturated, "{f:?}");
    let (p50, p99) = (f.latency_p50_us.unwrap(), f.latency_p99_us.unwrap());
    assert!(p50 > 0.0 && p99 > p50, "{f:?}");
    assert!(f.cpu_cores_busy > 0.0 && f.shm_held_bytes > 0.0);
    assert!((0.0..1.0).contains(&f.wait_probability));
    assert!(f.max_rate_per_s > 500.0);
    assert_eq!(plan(&input, &model).unwrap(), f, "same seed, same forecast");

    let busy = plan(
        &PlanInput::new(f.max_rate_per_s * 1.5, SizeDistribution::MIXED, 4),
        &model,
    )
    .unwrap();
    assert!(busy.saturated && busy.latency_p99_us.is_none());
    assert_eq!(busy.bottleneck, f.bottleneck);

    // All gRPC at 256 MiB on many workers: serialization CPU saturates first.
    let mut grpc_only = PlanInput::new(20.0, SizeDistribution::Choice(vec![256 * MIB]), 64);
    grpc_only.threshold = u64::MAX;
    assert_eq!(
        plan(&grpc_only, &model).unwrap().bottleneck,
        Bottleneck::Cpu
    );

    // All zero-copy with a tiny budget: the shared-memory budget is first.
    let mut tight = PlanInput::new(200.0, SizeDistribution::Choice(vec![64 * MIB]), 64);
    tight.shm_budget = 64 * MIB;
    let t = plan(&tight, &model).unwrap();
    assert_eq!(t.bottleneck, Bottleneck::ShmBudget, "{t:?}");

    // What if the budget were 16 GiB: the budget stops being the bottleneck.
    let w = what_if(
        &tight,
        &model,
        &WhatIf {
            shm_budget: Some(16 << 30),
            ..WhatIf::default()
        },
    )
    .unwrap();
    assert_eq!(w.base, t);
    assert!(w.changed.utilization.shm_budget < t.utilization.shm_budget / 100.0);
    assert_ne!(w.changed.bottleneck, Bottleneck::ShmBudget);

    // What if every mixed transfer went by gRPC: more CPU, less shared memory.
    let w = what_if(
        &input,
        &model,
        &WhatIf {
            threshold: Some(u64::MAX),
            ..WhatIf::default()
        },
    )
    .unwrap();
    assert_eq!(w.changed.zero_copy_share, 0.0);
    assert!(w.changed.cpu_cores_busy > w.base.cpu_cores_busy);
    assert_eq!(w.changed.shm_held_bytes, 0.0);

    let bad = PlanInput::new(0.0, SizeDistribution::MIXED, 4);
    assert!(plan(&bad, &model).unwrap_err().to_string().contains("rate"));
}

#[test]
fn plan_uses_learned_models_where_they_are_trusted() {
    let learner = trained(0.03, 3000);
    let snap = learner.snapshot();
    let model = LearnedOrCalibrated {
        snapshot: &snap,
        pool: Name::DEFAULT_POOL,
        costs: perf_core::CostCoefficients::default(),
    };
    let f = plan(&PlanInput::new(100.0, SizeDistribution::MIXED, 4), &model).unwrap();
    assert!(f.learned_share > 0.95, "{f:?}");
    let other = LearnedOrCalibrated {
        pool: Name::new("empty").unwrap(),
        ..model
    };
    let g = plan(&PlanInput::new(100.0, SizeDistribution::MIXED, 4), &other).unwrap();
    assert_eq!(g.learned_share, 0.0);
}
