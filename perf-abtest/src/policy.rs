//! The experiment policy: the engine, with every session of a pool that runs an experiment
//! decided by the settings of the variant its hash assigns it.

use std::sync::Arc;

use perf_core::config::Experiment;
use perf_core::{Controller, Decision, DecisionContext, TransferPolicy, TransferRequest};

use crate::assign::{bucket_session, variant_of};

/// A [`TransferPolicy`] that decides as its [`Controller`] does, except in a pool that runs an
/// experiment of the controller's configuration now: there each session gets the variant that
/// [`assignment`] gives it, the variant's settings decide, and the decision (and so the
/// transfer's record) names the experiment and the variant.
///
/// Deciding allocates nothing and takes no lock: the configuration is the controller's
/// snapshot, swapped whole on reload, and the assignment hashes on the stack.
#[derive(Clone)]
pub struct ExperimentPolicy {
    controller: Arc<Controller>,
}

impl ExperimentPolicy {
    /// The policy over `controller`; its experiments follow the controller's configuration,
    /// reloads included.
    pub fn new(controller: Arc<Controller>) -> ExperimentPolicy {
        ExperimentPolicy { controller }
    }

    /// The controller that decides.
    pub fn controller(&self) -> &Arc<Controller> {
        &self.controller
    }
}

/// The variant of `experiment` that `request`'s session gets: the hash of the experiment's seed
/// and the session ([`bucket_session`], version 2) laid over the variants' weights in order.
/// The same seed, weights and session always give the same variant.
pub fn assignment(experiment: &Experiment, request: &TransferRequest) -> usize {
    let bucket = bucket_session(&experiment.seed, request.session);
    variant_of(experiment.variants.iter().map(|v| v.weight), bucket)
}

impl TransferPolicy for ExperimentPolicy {
    fn name(&self) -> &str {
        TransferPolicy::name(self.controller.as_ref())
    }

    fn decide(&self, request: &TransferRequest, ctx: &DecisionContext) -> Decision {
        self.controller.decide_assigned(request, ctx, &assignment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perf_core::{Config, ExperimentArm, Method, Name, Timestamp};

    const CONFIG: &str = r#"
version = 1

[pools.ml]
exploration_rate = 0.0

[[experiments]]
name = "low"
pool = "ml"
seed = "low-v1"

[[experiments.variants]]
name = "control"
weight = 10

[[experiments.variants]]
name = "one-mib"
weight = 90
threshold = "1MiB"
"#;

    fn policy() -> ExperimentPolicy {
        let config = Config::from_toml_str(CONFIG).unwrap();
        ExperimentPolicy::new(Arc::new(Controller::new(config).unwrap()))
    }

    #[test]
    fn sessions_keep_their_variant_and_the_shares_follow_the_weights() {
        let p = policy();
        let ml = Name::new("ml").unwrap();
        let ctx = DecisionContext::idle(Timestamp::from_secs(1_800_000_000));
        let mut counts = [0u64; 2];
        for session in 0..20_000u64 {
            let r = TransferRequest::new(4 << 20)
                .with_pool(ml)
                .with_session(session);
            let d = p.decide(&r, &ctx);
            let arm = d
                .experiment
                .expect("every session of ml is in the experiment");
            let index = usize::from(arm.variant.as_str() == "one-mib");
            counts[index] += 1;
            // The variant's settings decided: the control keeps the 10 MiB threshold.
            let expected = if index == 1 {
                Method::ZeroCopy
            } else {
                Method::Grpc
            };
            assert_eq!(d.method, expected, "{}", d.rationale());
            // The same session, asked again, lands in the same variant.
            assert_eq!(p.decide(&r, &ctx).experiment, Some(arm));
        }
        // 10 % of 20,000 is 2,000 with a binomial standard deviation of about 42.
        assert!(
            (counts[0] as f64 - 2_000.0).abs() < 5.0 * 42.5,
            "control got {} of 20,000",
            counts[0]
        );
    }

    #[test]
    fn the_assignment_is_pinned_to_the_hash() {
        let config = Config::from_toml_str(CONFIG).unwrap();
        let e = &config.experiments[0];
        // (session, bucket, variant) under seed "low-v1" and weights 10 / 90, from an
        // independent implementation of the version 2 hash (Python, FNV-1a 32 over
        // `seed + str(session)`, then over the decimal digits of that hash, mod 10,000).
        let pinned = [
            (0, 0.5888, 1),
            (1, 0.4615, 1),
            (2, 0.7137, 1),
            (3, 0.9777, 1),
            (7, 0.5293, 1),
            (42, 0.5106, 1),
            (99, 0.0825, 0),
            (1_000_000, 0.0818, 0),
        ];
        for (session, bucket, variant) in pinned {
            assert_eq!(
                bucket_session("low-v1", session),
                bucket,
                "session {session}"
            );
            let r = TransferRequest::new(1).with_session(session);
            assert_eq!(assignment(e, &r), variant, "session {session}");
        }
        let arm = |variant: &str| ExperimentArm {
            experiment: Name::new("low").unwrap(),
            variant: Name::new(variant).unwrap(),
        };
        let p = policy();
        let ctx = DecisionContext::idle(Timestamp::from_secs(1_800_000_000));
        let ml = Name::new("ml").unwrap();
        let decide = |session| {
            p.decide(
                &TransferRequest::new(1 << 20)
                    .with_pool(ml)
                    .with_session(session),
                &ctx,
            )
            .experiment
        };
        assert_eq!(decide(99), Some(arm("control")));
        assert_eq!(decide(3), Some(arm("one-mib")));
    }
}
