//! The contract of every [`Predictor`]: it has a name; every prediction it gives is finite,
//! each estimate inside its own interval, its confidence between 0 and 1; predicting changes
//! nothing, so the same question gets the same answer.

use super::{spread_of_requests, spread_of_systems};
use crate::decision::MethodEstimate;
use crate::seams::{Prediction, Predictor};

/// Why `e` is not a sound estimate, if it is not.
fn unsound(e: &MethodEstimate) -> Option<String> {
    let parts = [
        e.latency_us,
        e.setup_us,
        e.transfer_us,
        e.page_fault_us,
        e.cleanup_us,
        e.cpu_us,
    ];
    if parts.iter().any(|v| !v.is_finite() || *v < 0.0) {
        return Some(format!("a part is negative or not finite: {e:?}"));
    }
    if let Some((low, high)) = e.interval_us {
        if !(low.is_finite() && high.is_finite()) {
            return Some(format!("interval ({low}, {high}) is not finite"));
        }
        if !(low <= e.latency_us && e.latency_us <= high) {
            return Some(format!(
                "estimate {} is outside its interval ({low}, {high})",
                e.latency_us
            ));
        }
    }
    None
}

/// Checks one prediction as the contract asks.
pub fn assert_sound(p: &Prediction) {
    for (method, e) in [("zero-copy", &p.zero_copy), ("gRPC", &p.grpc)] {
        if let Some(why) = unsound(e) {
            panic!("{method}: {why}");
        }
    }
    assert!(
        p.confidence.is_finite() && (0.0..=1.0).contains(&p.confidence),
        "confidence {}",
        p.confidence
    );
}

/// The predictor has a name for rationales.
pub fn it_has_a_name(predictor: &dyn Predictor) {
    assert!(!predictor.name().trim().is_empty());
}

/// Over requests of 1 byte to 1 GiB and machines from idle to saturated, every prediction is
/// sound ([`assert_sound`]); returns how many requests got one.
pub fn predictions_are_finite_and_inside_their_intervals(predictor: &dyn Predictor) -> usize {
    let mut answered = 0;
    for system in spread_of_systems() {
        for request in spread_of_requests() {
            if let Some(p) = predictor.predict(&request, &system) {
                answered += 1;
                assert_sound(&p);
            }
        }
    }
    answered
}

/// Asking twice gives the same answer.
pub fn predicting_changes_nothing(predictor: &dyn Predictor) {
    for system in spread_of_systems() {
        for request in spread_of_requests() {
            let first = predictor.predict(&request, &system);
            assert_eq!(first, predictor.predict(&request, &system), "{request:?}");
        }
    }
}

/// Stamps out the [`Predictor`] suite as tests in a module `$name`: `$make` is evaluated once
/// per test and gives the predictor; `$answers` says whether it must answer some of the
/// suite's requests (a trained or fixed predictor) or none (one that knows nothing).
#[macro_export]
macro_rules! predictor_conformance {
    ($name:ident, $make:expr, answers: $answers:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::conformance::predictor as suite;

            #[test]
            fn it_has_a_name() {
                suite::it_has_a_name(&$make);
            }
            #[test]
            fn predictions_are_finite_and_inside_their_intervals() {
                let answered = suite::predictions_are_finite_and_inside_their_intervals(&$make);
                assert_eq!(answered > 0, $answers, "{answered} predictions");
            }
            #[test]
            fn predicting_changes_nothing() {
                suite::predicting_changes_nothing(&$make);
            }
        }
    };
}
