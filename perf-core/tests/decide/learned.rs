//! A learned classifier in the cost-analysis step: it decides once confident, only for pools
//! that learn, never ahead of forced choices, rules or the quick path; exploration shrinks
//! where it is sure and logs the propensity it used.

use std::sync::Arc;

use perf_core::ZeroCopyAvailability::Pooled;
use perf_core::config::PoolSettings;
use perf_core::{
    Controller, DecisionContext, Method, MethodClassifier, Reason, TransferRequest, Verdict,
};

use crate::support::{IDLE, KIB, MIB, config_with, ctx, idle};

/// Always answers with the same verdict.
struct Always(Verdict);

impl MethodClassifier for Always {
    fn name(&self) -> &str {
        "always"
    }
    fn classify(&self, _request: &TransferRequest, _ctx: &DecisionContext) -> Option<Verdict> {
        Some(self.0)
    }
}

fn verdict(method: Method, confidence: f64) -> Arc<Always> {
    Arc::new(Always(Verdict {
        method,
        confidence,
        model_version: 7,
    }))
}

fn controller(settings: PoolSettings, classifier: Arc<Always>) -> Controller {
    Controller::builder(config_with(settings))
        .classifier(classifier)
        .seed(11)
        .build()
        .unwrap()
}

fn quiet() -> PoolSettings {
    PoolSettings {
        exploration_rate: 0.0,
        ..PoolSettings::default()
    }
}

#[test]
fn a_confident_verdict_replaces_the_threshold() {
    // 4 MiB is under the 10 MiB default threshold: the rules pick gRPC.
    let request = TransferRequest::new(4 * MIB);
    let rules = Controller::new(config_with(quiet())).unwrap();
    assert_eq!(rules.decide(&request, &idle()).method, Method::Grpc);

    let c = controller(quiet(), verdict(Method::ZeroCopy, 0.9));
    let d = c.decide(&request, &idle());
    assert_eq!(d.method, Method::ZeroCopy);
    assert_eq!(
        d.reason,
        Reason::Learned {
            confidence: 0.9,
            model_version: 7
        }
    );
    assert_eq!(d.reason.code().as_str(), "cost_analysis.learned_classifier");
    assert!(
        d.estimates.is_some(),
        "the estimates stay for the rationale"
    );
    let text = d.rationale().to_string();
    assert!(text.contains("model v7") && text.contains("90 %"), "{text}");
}

#[test]
fn an_unsure_verdict_or_a_pool_that_does_not_learn_keeps_the_rules() {
    let request = TransferRequest::new(4 * MIB);
    // Under the default 0.7 minimum confidence.
    let unsure = controller(quiet(), verdict(Method::ZeroCopy, 0.65));
    assert_eq!(unsure.decide(&request, &idle()).method, Method::Grpc);

    let no_learning = PoolSettings {
        learning: false,
        ..quiet()
    };
    let off = controller(no_learning, verdict(Method::ZeroCopy, 0.99));
    let d = off.decide(&request, &idle());
    assert_eq!(d.method, Method::Grpc);
    assert!(!matches!(d.reason, Reason::Learned { .. }), "{d:?}");
}

#[test]
fn forced_choices_and_the_quick_path_come_first() {
    let c = controller(quiet(), verdict(Method::ZeroCopy, 0.99));
    let overridden = TransferRequest::new(4 * MIB).with_override(Method::Grpc);
    assert_eq!(c.decide(&overridden, &idle()).reason, Reason::Override);
    let none = c.decide(
        &TransferRequest::new(4 * MIB),
        &ctx(IDLE, perf_core::ZeroCopyAvailability::Unavailable),
    );
    assert_eq!(none.reason, Reason::ZeroCopyUnavailable);
    // Below the default 64 KiB floor.
    let small = c.decide(&TransferRequest::new(4 * KIB), &idle());
    assert!(
        matches!(small.reason, Reason::BelowFloor { .. }),
        "{small:?}"
    );
}

/// The share of explorations among `n` decisions of `request`, and the
/// propensities logged.
fn explore_share(c: &Controller, request: TransferRequest, n: u32) -> (f64, f64, f64) {
    let context = ctx(IDLE, Pooled);
    let (mut explored, mut p_explore, mut p_greedy) = (0u32, 0.0, 0.0);
    for _ in 0..n {
        let d = c.decide(&request, &context);
        if let Reason::Exploration { epsilon, .. } = d.reason {
            explored += 1;
            assert_eq!(d.propensity, epsilon);
            p_explore = d.propensity;
        } else {
            p_greedy = d.propensity;
        }
    }
    (f64::from(explored) / f64::from(n), p_explore, p_greedy)
}

#[test]
fn exploration_shrinks_where_the_classifier_is_sure() {
    let s = PoolSettings::default(); // 5 % exploration
    let request = TransferRequest::new(12 * MIB); // inside the band around 10 MiB
    let n = 100_000;

    // Sure (0.98): the share floors at exploration_min_share (0.2) -> 1 %.
    let sure = controller(s, verdict(Method::ZeroCopy, 0.98));
    let (share, p_explore, p_greedy) = explore_share(&sure, request, n);
    assert!((share - 0.01).abs() < 0.002, "share {share}");
    assert!((p_explore - 0.01).abs() < 1e-12 && (p_greedy - 0.99).abs() < 1e-12);

    // Less sure (0.75): 2 x (1 - 0.75) = 0.5 of the rate -> 2.5 %.
    let unsure = controller(s, verdict(Method::ZeroCopy, 0.75));
    let (share, p_explore, _) = explore_share(&unsure, request, n);
    assert!((share - 0.025).abs() < 0.003, "share {share}");
    assert!((p_explore - 0.025).abs() < 1e-12);

    // The static rules explore at the full rate.
    let rules = Controller::builder(config_with(s))
        .seed(11)
        .build()
        .unwrap();
    let (share, p_explore, _) = explore_share(&rules, request, n);
    assert!((share - 0.05).abs() < 0.004, "share {share}");
    assert_eq!(p_explore, 0.05);
}
