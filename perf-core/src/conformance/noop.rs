//! The suites run against perf-core's own implementations: the Noop, fixed and in-memory
//! ones, and the controller.

use super::Keeps;
use crate::config::Config;
use crate::controller::Controller;
use crate::decision::MethodEstimate;
use crate::name::Name;
use crate::request::{DecisionContext, SystemState, TransferRequest};
use crate::seams::{
    FixedPolicy, FixedPredictor, FixedProbe, MemoryModelStore, MemoryThresholdStore, MetricsQuery,
    NoShm, NoopClassifier, NoopModelStore, NoopPredictor, NoopQuery, NoopSink, NoopThresholdStore,
    Prediction,
};
use crate::vocab::Method;

crate::transfer_policy_conformance!(fixed_zero_copy_policy, FixedPolicy(Method::ZeroCopy));
crate::transfer_policy_conformance!(fixed_grpc_policy, FixedPolicy(Method::Grpc));
crate::transfer_policy_conformance!(
    controller_policy,
    Controller::new(Config::default()).unwrap()
);

fn big_goes_zero_copy(
    request: &TransferRequest,
    _ctx: &DecisionContext,
    metrics: &dyn MetricsQuery,
) -> Option<Method> {
    let busy = metrics
        .samples(&crate::seams::SampleFilter::default(), 1)
        .is_ok_and(|s| !s.is_empty());
    (request.size > 1 << 20 && !busy).then_some(Method::ZeroCopy)
}

crate::decision_function_conformance!(closure_function, big_goes_zero_copy);

crate::metrics_conformance!(noop_metrics, || (NoopSink, NoopQuery), Keeps::Nothing);

fn estimate(latency_us: f64) -> MethodEstimate {
    MethodEstimate {
        latency_us,
        setup_us: 10.0,
        transfer_us: latency_us - 10.0,
        page_fault_us: 0.0,
        cleanup_us: 0.0,
        memory_bytes: 4096,
        cpu_us: latency_us / 2.0,
        interval_us: Some((latency_us * 0.8, latency_us * 1.25)),
    }
}

crate::predictor_conformance!(noop_predictor, NoopPredictor, answers: false);
crate::predictor_conformance!(
    fixed_predictor,
    FixedPredictor(Prediction {
        zero_copy: estimate(60.0),
        grpc: estimate(120.0),
        confidence: 0.9,
        samples: 1000,
    }),
    answers: true
);

crate::method_classifier_conformance!(noop_classifier, NoopClassifier, answers: false);

crate::threshold_store_conformance!(noop_threshold_store, || NoopThresholdStore, Keeps::Nothing);
crate::threshold_store_conformance!(
    memory_threshold_store,
    {
        let store = MemoryThresholdStore::default();
        move || store.clone()
    },
    Keeps::Everything
);

crate::model_store_conformance!(noop_model_store, || NoopModelStore, Keeps::Nothing);
crate::model_store_conformance!(
    memory_model_store,
    {
        let store = MemoryModelStore::default();
        move || store.clone()
    },
    Keeps::Everything
);

crate::threshold_control_conformance!(
    controller_thresholds,
    Controller::new(Config::default()).unwrap(),
    pool: Name::DEFAULT_POOL
);

crate::resource_probe_conformance!(fixed_idle_probe, FixedProbe::default());
crate::resource_probe_conformance!(
    fixed_busy_probe,
    FixedProbe(SystemState {
        cpu_utilization: 1.0,
        memory_used: 1.0,
        memory_available: 0,
        shm_free: 0,
        ..SystemState::IDLE
    })
);

#[test]
fn no_shm_refuses_everything() {
    super::platform_shm::a_backend_without_shared_memory_refuses_everything(&NoShm);
}

#[test]
fn the_suites_see_a_broken_implementation() {
    // A predictor whose estimate lies outside its interval breaks the contract.
    let mut bad = estimate(100.0);
    bad.interval_us = Some((1.0, 2.0));
    let broken = FixedPredictor(Prediction {
        zero_copy: bad,
        grpc: estimate(100.0),
        confidence: 0.5,
        samples: 1,
    });
    let caught = std::panic::catch_unwind(|| {
        super::predictor::predictions_are_finite_and_inside_their_intervals(&broken)
    });
    assert!(caught.is_err(), "an estimate outside its interval passed");
}
