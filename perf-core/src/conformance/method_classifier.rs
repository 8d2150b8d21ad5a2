//! The contract of every [`MethodClassifier`]: it has a name; every verdict's confidence is a
//! probability of at least one half (the pick is the likelier method); classifying changes
//! nothing, so the same question gets the same answer.

use super::{spread_of_requests, spread_of_systems};
use crate::request::{DecisionContext, Timestamp, ZeroCopyAvailability};
use crate::seams::MethodClassifier;

fn contexts() -> Vec<DecisionContext> {
    spread_of_systems()
        .into_iter()
        .enumerate()
        .map(|(i, system)| DecisionContext {
            now: Timestamp::from_secs(3600 * 7 * i as u64),
            system,
            zero_copy: ZeroCopyAvailability::Pooled,
        })
        .collect()
}

/// The classifier has a name for rationales.
pub fn it_has_a_name(classifier: &dyn MethodClassifier) {
    assert!(!classifier.name().trim().is_empty());
}

/// Over requests of 1 byte to 1 GiB and machines from idle to saturated, every verdict's
/// confidence is finite and in 0.5..=1.0; returns how many requests got one.
pub fn verdicts_are_probabilities_of_the_likelier_method(
    classifier: &dyn MethodClassifier,
) -> usize {
    let mut answered = 0;
    for ctx in contexts() {
        for request in spread_of_requests() {
            if let Some(v) = classifier.classify(&request, &ctx) {
                answered += 1;
                assert!(
                    v.confidence.is_finite() && (0.5..=1.0).contains(&v.confidence),
                    "confidence {} for {request:?}",
                    v.confidence
                );
            }
        }
    }
    answered
}

/// Asking twice gives the same verdict.
pub fn classifying_changes_nothing(classifier: &dyn MethodClassifier) {
    for ctx in contexts() {
        for request in spread_of_requests() {
            let first = classifier.classify(&request, &ctx);
            assert_eq!(first, classifier.classify(&request, &ctx), "{request:?}");
        }
    }
}

/// Stamps out the [`MethodClassifier`] suite as tests in a module `$name`: `$make` is
/// evaluated once per test and gives the classifier; `$answers` says whether it must answer
/// some of the suite's requests (a trained model) or none (no model in force).
#[macro_export]
macro_rules! method_classifier_conformance {
    ($name:ident, $make:expr, answers: $answers:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::conformance::method_classifier as suite;

            #[test]
            fn it_has_a_name() {
                suite::it_has_a_name(&$make);
            }
            #[test]
            fn verdicts_are_probabilities_of_the_likelier_method() {
                let answered = suite::verdicts_are_probabilities_of_the_likelier_method(&$make);
                assert_eq!(answered > 0, $answers, "{answered} verdicts");
            }
            #[test]
            fn classifying_changes_nothing() {
                suite::classifying_changes_nothing(&$make);
            }
        }
    };
}
