//! Experiments: in a pool that runs one, the assigned variant's settings decide and the decision
//! names the experiment and the variant; outside its pool and window nothing changes.

use perf_core::{
    Config, Controller, ExperimentArm, Method, ReasonCode, Timestamp, TransferRequest,
};

use crate::support::{MIB, idle, name};

/// Pool `ml` at the default 10 MiB threshold, split 50/50 with a variant at 1 MiB, from
/// 2023-11-14 (the tests' `NOW` is 1,700,000,000 s) for a day.
const CONFIG: &str = r#"
version = 1

[pools.ml]
exploration_rate = 0.0

[[experiments]]
name = "low"
pool = "ml"
start = 2023-11-14T00:00:00Z
stop = 2023-11-15T00:00:00Z

[[experiments.variants]]
name = "control"
weight = 50

[[experiments.variants]]
name = "one-mib"
weight = 50
threshold = "1MiB"
"#;

fn controller() -> Controller {
    Controller::new(Config::from_toml_str(CONFIG).unwrap()).unwrap()
}

/// Odd sessions to the second variant, even ones to the control.
fn by_parity(_: &perf_core::config::Experiment, r: &TransferRequest) -> usize {
    (r.session % 2) as usize
}

fn arm(variant: &str) -> Option<ExperimentArm> {
    Some(ExperimentArm {
        experiment: name("low"),
        variant: name(variant),
    })
}

#[test]
fn the_assigned_variant_decides_with_its_settings_and_is_named() {
    let c = controller();
    let ml = name("ml");
    let request = |session| {
        TransferRequest::new(4 * MIB)
            .with_pool(ml)
            .with_session(session)
    };

    let control = c.decide_assigned(&request(2), &idle(), &by_parity);
    assert_eq!(control.experiment, arm("control"));
    assert_eq!(control.threshold.base, 10 * MIB);
    assert_eq!(
        (control.method, control.reason.code()),
        (Method::Grpc, ReasonCode::BelowThreshold)
    );

    let low = c.decide_assigned(&request(3), &idle(), &by_parity);
    assert_eq!(low.experiment, arm("one-mib"));
    assert_eq!(low.threshold.base, MIB);
    assert_eq!(low.method, Method::ZeroCopy, "{}", low.rationale());
    assert!(
        low.rationale()
            .to_string()
            .ends_with("; experiment \"low\", variant \"one-mib\""),
        "{}",
        low.rationale()
    );

    // Both are counted in the pool's decisions.
    assert_eq!(c.counts(ml).unwrap().total, 2);
    // An assignment past the last variant is held to it.
    let past = c.decide_assigned(&request(0), &idle(), &|_, _| 7);
    assert_eq!(past.experiment, arm("one-mib"));
}

#[test]
fn outside_its_pool_its_window_or_an_assigner_nothing_is_split() {
    let c = controller();
    let ml = name("ml");
    let in_ml = TransferRequest::new(4 * MIB).with_pool(ml).with_session(3);
    // `decide` knows no assignment: the pool as configured.
    let plain = c.decide(&in_ml, &idle());
    assert_eq!((plain.experiment, plain.threshold.base), (None, 10 * MIB));
    // Another pool.
    let other = c.decide_assigned(
        &TransferRequest::new(4 * MIB).with_session(3),
        &idle(),
        &by_parity,
    );
    assert_eq!(other.experiment, None);
    // Before the start and at the stop.
    for secs in [1_699_920_000 - 1, 1_700_006_400] {
        let ctx = perf_core::DecisionContext::idle(Timestamp::from_secs(secs));
        let d = c.decide_assigned(&in_ml, &ctx, &by_parity);
        assert_eq!(d.experiment, None, "at {secs} s");
        assert_eq!(d.threshold.base, 10 * MIB);
    }
    let started = perf_core::DecisionContext::idle(Timestamp::from_secs(1_699_920_000));
    assert_eq!(
        c.decide_assigned(&in_ml, &started, &by_parity).experiment,
        arm("one-mib")
    );
}

#[test]
fn a_reload_without_the_experiment_ends_it() {
    let c = controller();
    let ml = name("ml");
    let in_ml = TransferRequest::new(4 * MIB).with_pool(ml).with_session(3);
    assert!(
        c.decide_assigned(&in_ml, &idle(), &by_parity)
            .experiment
            .is_some()
    );
    let without = CONFIG.split("[[experiments]]").next().unwrap();
    c.reload_toml(without).unwrap();
    let d = c.decide_assigned(&in_ml, &idle(), &by_parity);
    assert_eq!((d.experiment, d.threshold.base), (None, 10 * MIB));
}
