//! The contract of every [`TransferPolicy`]: it has a name; the forced step comes first
//! (caller override, remote worker, no shared memory); every decision describes the request
//! and the moment it was made for, names the step that made it in its reason, carries a
//! confidence and a propensity that are probabilities, and explains itself.

use super::{spread_of_requests, spread_of_systems};
use crate::decision::{Reason, Step};
use crate::request::{DecisionContext, Timestamp, TransferRequest, ZeroCopyAvailability};
use crate::seams::TransferPolicy;
use crate::vocab::{Locality, Method};

fn contexts() -> Vec<DecisionContext> {
    let mut out = Vec::new();
    for (i, system) in spread_of_systems().into_iter().enumerate() {
        for zero_copy in [ZeroCopyAvailability::Pooled, ZeroCopyAvailability::Fresh] {
            out.push(DecisionContext {
                now: Timestamp::from_secs(100 + i as u64),
                system,
                zero_copy,
            });
        }
    }
    out
}

/// The policy has a name for reports and experiments.
pub fn it_has_a_name(policy: &dyn TransferPolicy) {
    assert!(!policy.name().trim().is_empty());
}

/// A caller's override, a remote worker and unavailable shared memory decide first, and the
/// decision's reason says the forced step made it.
pub fn the_forced_step_comes_first(policy: &dyn TransferPolicy) {
    let now = DecisionContext::idle(Timestamp::from_secs(5));
    let unavailable = DecisionContext {
        zero_copy: ZeroCopyAvailability::Unavailable,
        ..now
    };
    for request in spread_of_requests() {
        let cases = [
            (request.with_override(Method::Grpc), now, Method::Grpc),
            (request.with_locality(Locality::Remote), now, Method::Grpc),
            (request, unavailable, Method::Grpc),
            (
                request.with_override(Method::ZeroCopy),
                now,
                Method::ZeroCopy,
            ),
        ];
        for (r, ctx, method) in cases {
            let d = policy.decide(&r, &ctx);
            assert_eq!(
                (d.method, d.reason.step()),
                (method, Step::Forced),
                "{r:?} in {ctx:?}: {}",
                d.rationale()
            );
        }
    }
}

/// Over requests of 1 byte to 1 GiB and machines from idle to saturated, each decision is for
/// the request's size (and pool, when configured) at the context's time, names its step in
/// its reason, has a confidence in 0..=1 and a propensity in (0, 1], and a rationale that
/// starts with the method it chose.
pub fn every_decision_names_its_reason_step(policy: &dyn TransferPolicy) {
    for ctx in contexts() {
        for request in spread_of_requests() {
            check(policy, &request, &ctx);
        }
    }
}

fn check(policy: &dyn TransferPolicy, request: &TransferRequest, ctx: &DecisionContext) {
    let d = policy.decide(request, ctx);
    let why = d.rationale().to_string();
    assert_eq!(d.size, request.size, "{why}");
    assert_eq!(d.decided_at, ctx.now, "{why}");
    if d.pool_configured {
        assert_eq!(d.pool, request.pool, "{why}");
    }
    assert_eq!(d.reason.step(), d.reason.code().step());
    assert!(
        d.confidence.is_finite() && (0.0..=1.0).contains(&d.confidence),
        "confidence {}: {why}",
        d.confidence
    );
    assert!(
        d.propensity.is_finite() && d.propensity > 0.0 && d.propensity <= 1.0,
        "propensity {}: {why}",
        d.propensity
    );
    let label = format!("{}: ", d.method.label());
    assert!(why.starts_with(&label) && why.len() > label.len(), "{why}");
    if let Reason::Exploration { greedy, epsilon } = d.reason {
        assert_eq!(
            d.method,
            greedy.other(),
            "an exploration tries the other method"
        );
        assert!(epsilon > 0.0 && epsilon <= 1.0, "epsilon {epsilon}");
    }
}

/// Stamps out the [`TransferPolicy`] suite as tests in a module `$name`: `$make` is evaluated
/// once per test and gives the policy.
#[macro_export]
macro_rules! transfer_policy_conformance {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::conformance::transfer_policy as suite;

            #[test]
            fn it_has_a_name() {
                suite::it_has_a_name(&$make);
            }
            #[test]
            fn the_forced_step_comes_first() {
                suite::the_forced_step_comes_first(&$make);
            }
            #[test]
            fn every_decision_names_its_reason_step() {
                suite::every_decision_names_its_reason_step(&$make);
            }
        }
    };
}
