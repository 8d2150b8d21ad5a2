//! Rules and decision functions: priorities, the pools a rule reaches, functions that read
//! metrics, and priority clashes refused at build.

use std::sync::Arc;

use perf_core::config::Condition;
use perf_core::{
    ConfigErrors, Controller, ControllerError, DataType, Method, Name, Reason, ReasonCode,
    TransferRequest,
};

use crate::support::{
    FakeQuery, KIB, MIB, NOW, add_pool, config_with, config_with_large_grpc_rule, expect, idle,
    name, rule, settings, zero_copy_when_grpc_is_slow,
};

#[test]
fn the_higher_priority_rule_wins_and_is_named() {
    use Method::{Grpc, ZeroCopy};
    let large_grpc = |priority| {
        rule(
            "large-grpc",
            priority,
            Grpc,
            Condition {
                size_min: Some(64 * MIB),
                ..Condition::default()
            },
        )
    };
    let tensors = |priority| {
        rule(
            "tensors-zero-copy",
            priority,
            ZeroCopy,
            Condition {
                data_types: vec![DataType::Tensor],
                ..Condition::default()
            },
        )
    };
    let build = |large: i32, tensor: i32| {
        let mut cfg = config_with(settings());
        // A pool rule and a global rule, listed lowest priority first.
        cfg.pools.get_mut(&Name::DEFAULT_POOL).unwrap().rules = vec![large_grpc(large)];
        cfg.rules = vec![tensors(tensor)];
        Controller::new(cfg).unwrap()
    };
    let tensor_big = TransferRequest::new(256 * MIB).with_data_type(DataType::Tensor);
    let bytes_big = TransferRequest::new(256 * MIB);
    let tensor_small = TransferRequest::new(4 * KIB).with_data_type(DataType::Tensor);

    let c = build(10, 20);
    let d = expect(&c, tensor_big, idle(), ZeroCopy, ReasonCode::Rule);
    assert_eq!(
        d.reason,
        Reason::Rule {
            name: name("tensors-zero-copy"),
            priority: 20
        }
    );
    assert_eq!(d.reason.rule_name(), Some(name("tensors-zero-copy")));
    let d = expect(&c, bytes_big, idle(), Grpc, ReasonCode::Rule);
    assert_eq!(d.reason.rule_name(), Some(name("large-grpc")));
    // Rules come before the quick path.
    expect(&c, tensor_small, idle(), ZeroCopy, ReasonCode::Rule);
    expect(
        &c,
        TransferRequest::new(4 * KIB),
        idle(),
        Grpc,
        ReasonCode::BelowFloor,
    );

    // Swapping the priorities swaps the winner of the overlap.
    let c = build(20, 10);
    let d = expect(&c, tensor_big, idle(), Grpc, ReasonCode::Rule);
    assert_eq!(
        d.reason,
        Reason::Rule {
            name: name("large-grpc"),
            priority: 20
        }
    );
    expect(&c, tensor_small, idle(), ZeroCopy, ReasonCode::Rule);
}

#[test]
fn a_global_rule_applies_only_to_the_pools_it_lists() {
    let ml = name("ml");
    let mut cfg = config_with(settings());
    add_pool(&mut cfg, ml, settings());
    cfg.rules.push(rule(
        "ml-numpy",
        5,
        Method::ZeroCopy,
        Condition {
            formats: vec![perf_core::Format::Numpy],
            size_max: Some(8 * MIB),
            pools: vec![ml],
            ..Condition::default()
        },
    ));
    let c = Controller::new(cfg).unwrap();
    let numpy = TransferRequest::new(2 * MIB).with_format(perf_core::Format::Numpy);
    expect(
        &c,
        numpy.with_pool(ml),
        idle(),
        Method::ZeroCopy,
        ReasonCode::Rule,
    );
    expect(&c, numpy, idle(), Method::Grpc, ReasonCode::BelowThreshold);
    // The bounds are inclusive.
    let edge = TransferRequest::new(8 * MIB).with_format(perf_core::Format::Numpy);
    expect(
        &c,
        edge.with_pool(ml),
        idle(),
        Method::ZeroCopy,
        ReasonCode::Rule,
    );
    let over = TransferRequest::new(8 * MIB + 1).with_format(perf_core::Format::Numpy);
    expect(
        &c,
        over.with_pool(ml),
        idle(),
        Method::Grpc,
        ReasonCode::BelowThreshold,
    );
}

#[test]
fn a_decision_function_reads_metrics_and_takes_its_place_among_the_rules() {
    let slow = FakeQuery::new(9_000.0);
    let c = Controller::builder(config_with_large_grpc_rule())
        .metrics(slow.clone())
        .function(
            name("slow-grpc"),
            15,
            &[],
            Arc::new(zero_copy_when_grpc_is_slow),
        )
        .build()
        .unwrap();
    // Below the threshold the function moves 4 MiB to zero-copy.
    let d = expect(
        &c,
        TransferRequest::new(4 * MIB),
        idle(),
        Method::ZeroCopy,
        ReasonCode::Function,
    );
    assert_eq!(
        d.reason,
        Reason::Function {
            name: name("slow-grpc"),
            priority: 15
        }
    );
    let q = *slow.queries.lock().unwrap().last().unwrap();
    assert_eq!(
        (q.pool, q.method, q.to),
        (Some(Name::DEFAULT_POOL), Some(Method::Grpc), NOW)
    );
    // It outranks the rule of priority 10.
    expect(
        &c,
        TransferRequest::new(256 * MIB),
        idle(),
        Method::ZeroCopy,
        ReasonCode::Function,
    );
    // When it passes, the next steps decide.
    expect(
        &c,
        TransferRequest::new(MIB + 1),
        idle(),
        Method::Grpc,
        ReasonCode::BelowThreshold,
    );
    assert_eq!(
        slow.queries.lock().unwrap().len(),
        2,
        "a pass below 2 MiB reads nothing"
    );

    // With fast gRPC it passes everywhere.
    let fast = FakeQuery::new(900.0);
    let c = Controller::builder(config_with_large_grpc_rule())
        .metrics(fast.clone())
        .function(
            name("slow-grpc"),
            15,
            &[],
            Arc::new(zero_copy_when_grpc_is_slow),
        )
        .build()
        .unwrap();
    expect(
        &c,
        TransferRequest::new(4 * MIB),
        idle(),
        Method::Grpc,
        ReasonCode::BelowThreshold,
    );
    expect(
        &c,
        TransferRequest::new(256 * MIB),
        idle(),
        Method::Grpc,
        ReasonCode::Rule,
    );
    assert_eq!(fast.queries.lock().unwrap().len(), 2);

    // Under the rule's priority, the rule decides what it matches first.
    let c = Controller::builder(config_with_large_grpc_rule())
        .metrics(FakeQuery::new(9_000.0))
        .function(
            name("slow-grpc"),
            5,
            &[],
            Arc::new(zero_copy_when_grpc_is_slow),
        )
        .build()
        .unwrap();
    expect(
        &c,
        TransferRequest::new(256 * MIB),
        idle(),
        Method::Grpc,
        ReasonCode::Rule,
    );
    expect(
        &c,
        TransferRequest::new(4 * MIB),
        idle(),
        Method::ZeroCopy,
        ReasonCode::Function,
    );

    // A function for another pool leaves this one alone.
    let ml = name("ml");
    let mut cfg = config_with_large_grpc_rule();
    add_pool(&mut cfg, ml, settings());
    let c = Controller::builder(cfg)
        .metrics(FakeQuery::new(9_000.0))
        .function(
            name("slow-grpc"),
            15,
            &[ml],
            Arc::new(zero_copy_when_grpc_is_slow),
        )
        .build()
        .unwrap();
    expect(
        &c,
        TransferRequest::new(4 * MIB),
        idle(),
        Method::Grpc,
        ReasonCode::BelowThreshold,
    );
    let request = TransferRequest::new(4 * MIB).with_pool(ml);
    expect(&c, request, idle(), Method::ZeroCopy, ReasonCode::Function);
}

#[test]
fn a_function_whose_priority_clashes_is_rejected_at_build() {
    let err = Controller::builder(config_with_large_grpc_rule())
        .function(
            name("clash"),
            10,
            &[],
            Arc::new(zero_copy_when_grpc_is_slow),
        )
        .build()
        .unwrap_err();
    let ControllerError::Config(ConfigErrors(errors)) = err else {
        panic!("expected a configuration error, got {err:?}")
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "functions.clash.priority");
    assert_eq!(errors[0].value, "10");
    assert!(errors[0].expected.contains("large-grpc"), "{errors:?}");

    // Two functions clash with each other as well.
    let err = Controller::builder(config_with(settings()))
        .function(name("one"), 3, &[], Arc::new(zero_copy_when_grpc_is_slow))
        .function(name("two"), 3, &[], Arc::new(zero_copy_when_grpc_is_slow))
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, ControllerError::Config(ConfigErrors(e)) if e[0].path == "functions.two.priority"),
        "{err:?}"
    );

    // The same priority in a pool the rule does not reach is no clash.
    let ml = name("ml");
    let mut cfg = config_with_large_grpc_rule();
    add_pool(&mut cfg, ml, settings());
    Controller::builder(cfg)
        .function(
            name("ml-only"),
            10,
            &[ml],
            Arc::new(zero_copy_when_grpc_is_slow),
        )
        .build()
        .unwrap();
}
