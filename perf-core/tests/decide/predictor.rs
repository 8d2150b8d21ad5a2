//! Predictors and the learning switch: a confident predictor replaces the calibrated
//! estimates, and learning off ignores it and stops exploration and threshold moves.

use std::sync::Arc;

use perf_core::config::PoolSettings;
use perf_core::{
    Controller, EstimateSource, FixedPredictor, Method, MethodEstimate, Name, Prediction,
    ReasonCode, ThresholdError, TransferRequest,
};

use crate::support::{GIB, MIB, NOW, config_with, expect, idle, settings};

fn prediction(zero_copy_us: f64, grpc_us: f64, confidence: f64) -> Prediction {
    let estimate = |latency_us: f64| MethodEstimate {
        latency_us,
        memory_bytes: 4 * MIB,
        cpu_us: latency_us / 2.0,
        interval_us: Some((latency_us * 0.9, latency_us * 1.1)),
        ..MethodEstimate::default()
    };
    Prediction {
        zero_copy: estimate(zero_copy_us),
        grpc: estimate(grpc_us),
        confidence,
        samples: 500,
    }
}

#[test]
fn a_confident_predictor_replaces_the_calibrated_estimates() {
    let build = |p: Prediction, learning: bool| {
        Controller::builder(config_with(PoolSettings {
            learning,
            ..settings()
        }))
        .predictor(Arc::new(FixedPredictor(p)))
        .build()
        .unwrap()
    };
    let below = TransferRequest::new(4 * MIB);

    // Confident (0.9 >= 0.8) and zero-copy 10x cheaper: 4 MiB goes zero-copy.
    let confident = prediction(300.0, 3_000.0, 0.9);
    let c = build(confident, true);
    let d = expect(
        &c,
        below,
        idle(),
        Method::ZeroCopy,
        ReasonCode::CostAnalysis,
    );
    let e = d.estimates.unwrap();
    assert_eq!(e.source, EstimateSource::Predicted);
    assert_eq!((e.zero_copy, e.grpc), (confident.zero_copy, confident.grpc));
    assert!((e.zero_copy_gain - 0.9).abs() < 1e-9, "{e:?}");
    assert!(
        (d.confidence - 0.9).abs() < 1e-9,
        "scaled by the predictor's confidence"
    );
    // A confident prediction that gRPC is cheaper wins above the threshold too.
    let c = build(prediction(3_000.0, 300.0, 0.9), true);
    expect(
        &c,
        TransferRequest::new(64 * MIB),
        idle(),
        Method::Grpc,
        ReasonCode::CostAnalysis,
    );
    // The quick path still comes first.
    expect(
        &c,
        TransferRequest::new(2 * GIB),
        idle(),
        Method::ZeroCopy,
        ReasonCode::AboveCeiling,
    );

    // Low confidence: the calibrated estimates and the threshold decide.
    let c = build(prediction(300.0, 3_000.0, 0.5), true);
    let d = expect(&c, below, idle(), Method::Grpc, ReasonCode::BelowThreshold);
    assert_eq!(d.estimates.unwrap().source, EstimateSource::Calibrated);

    // Learning off: the predictor is ignored however confident.
    let c = build(confident, false);
    let d = expect(&c, below, idle(), Method::Grpc, ReasonCode::BelowThreshold);
    assert_eq!(d.estimates.unwrap().source, EstimateSource::Calibrated);
}

#[test]
fn learning_off_disables_exploration_and_threshold_moves() {
    let explorative = PoolSettings {
        exploration_rate: 0.5,
        ..PoolSettings::default()
    };
    let on = Controller::new(config_with(explorative)).unwrap();
    let off = Controller::new(config_with(PoolSettings {
        learning: false,
        ..explorative
    }))
    .unwrap();
    let explored = |c: &Controller| {
        (0..1000)
            .map(|i| c.decide(&TransferRequest::new(8 * MIB + i), &idle()))
            .filter(|d| d.reason.is_exploration())
            .count()
    };
    assert!(explored(&on) > 400, "the band explores at rate 0.5");
    assert_eq!(explored(&off), 0);
    let d = off.decide(&TransferRequest::new(8 * MIB), &idle());
    assert_eq!(d.propensity, 1.0);
    let err = off
        .adjust_threshold(Name::DEFAULT_POOL, 2 * MIB, "crossover", 0.1, NOW)
        .unwrap_err();
    assert!(matches!(err, ThresholdError::LearningOff(_)), "{err:?}");
}
