//! The configuration's `[monitor]` table as a library user meets it: the decision log's sample
//! rate comes from it and follows each reload, unless the builder set the rate itself.

use std::sync::Arc;

use perfopt::core::{DecisionContext, FixedProbe, Timestamp, TransferRequest};
use perfopt::monitor::DecisionLogConfig;
use perfopt::{Optimizer, OptimizerBuilder};

fn config(rate: f64) -> String {
    format!("version = 1\n[monitor]\ndecision_sample_rate = {rate}\n")
}

fn built(builder: OptimizerBuilder, rate: f64) -> Optimizer {
    let optimizer = builder
        .probe(Arc::new(FixedProbe::default()))
        .build()
        .unwrap();
    optimizer.reload_config(&config(rate)).unwrap();
    optimizer
}

/// One decision through the optimizer's policy, the one the host runtime uses.
fn decide(optimizer: &Optimizer) {
    let _ = optimizer.policy().decide(
        &TransferRequest::new(4096),
        &DecisionContext::idle(Timestamp(0)),
    );
}

#[test]
fn the_sample_rate_follows_the_configuration_from_the_next_decision() {
    let optimizer = built(Optimizer::builder(), 0.25);
    assert_eq!(optimizer.decision_log().sample_rate(), 0.01, "the default");
    decide(&optimizer);
    assert_eq!(optimizer.decision_log().sample_rate(), 0.25);
    optimizer.reload_config(&config(0.0)).unwrap();
    decide(&optimizer);
    assert_eq!(optimizer.decision_log().sample_rate(), 0.0);
    assert!(optimizer.reload_config(&config(3.0)).is_err());
    decide(&optimizer);
    assert_eq!(
        optimizer.decision_log().sample_rate(),
        0.0,
        "a refused configuration changes nothing"
    );
}

#[test]
fn a_rate_given_to_the_builder_stays_through_reloads() {
    let builder = Optimizer::builder().decision_log(DecisionLogConfig {
        sample_rate: 0.5,
        recent: 16,
    });
    let optimizer = built(builder, 0.25);
    decide(&optimizer);
    assert_eq!(optimizer.decision_log().sample_rate(), 0.5);
}

#[test]
fn a_pool_a_reload_adds_gets_series_of_its_own() {
    use perfopt::core::conformance::transfer;
    use perfopt::{Method, Name};
    let optimizer = built(Optimizer::builder(), 0.01);
    let ml = Name::new("ml").unwrap();
    optimizer.record(&transfer(ml, Method::Grpc, 4096, 0, 50.0));
    let text = optimizer.telemetry().prometheus_text();
    assert!(text.contains(r#"perfopt_transfers_total{pool="other",method="grpc"} 1"#));
    assert!(!text.contains(r#"pool="ml""#), "not configured yet");

    optimizer
        .reload_config("version = 1\n[pools.ml]\nthreshold = \"4MiB\"\n")
        .unwrap();
    decide(&optimizer);
    optimizer.record(&transfer(ml, Method::Grpc, 4096, 1, 50.0));
    let text = optimizer.telemetry().prometheus_text();
    assert!(
        text.contains(r#"perfopt_transfers_total{pool="ml",method="grpc"} 1"#),
        "{text}"
    );
}
