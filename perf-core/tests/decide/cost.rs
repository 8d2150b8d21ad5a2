//! The cost analysis: the decision table over goals, load and availability, how goals weigh
//! the estimates, fresh against pooled segments, and the marginal gain.

use std::collections::BTreeMap;

use perf_core::ZeroCopyAvailability::{Fresh, Pooled};
use perf_core::config::{CostCoefficients, PoolSettings};
use perf_core::{Controller, EstimateSource, Goal, Method, Reason, ReasonCode, TransferRequest};

use crate::support::{
    BUSY_AND_FULL, BUSY_CPU, FULL_MEMORY, GIB, IDLE, MIB, add_pool, config_with, ctx, expect,
    goal_pools, idle, name, settings,
};

/// The decision table of the cost analysis over sizes, goals, load and availability.
#[test]
fn the_cost_analysis_weighs_goal_load_and_availability() {
    use Method::{Grpc, ZeroCopy};
    use ReasonCode::{BelowThreshold, CostAnalysis};
    let (c, pools) = goal_pools();
    let pool_of = |goal: Goal| pools.iter().find(|(g, _)| *g == goal).unwrap().1;
    let every = None;
    let latency = Some(Goal::MinimizeLatency);
    let throughput = Some(Goal::MaximizeThroughput);
    let memory = Some(Goal::MinimizeMemory);
    let balanced = Some(Goal::Balanced);
    // Size, goal (every goal when `None`), load, availability, method, reason.
    #[rustfmt::skip]
    let rows = [
        // Under the threshold on an idle machine, gRPC whatever zero-copy would gain.
        (6 * MIB, every, IDLE, Pooled, Grpc, BelowThreshold),
        (6 * MIB, every, IDLE, Fresh, Grpc, BelowThreshold),
        (10 * MIB - 1, every, IDLE, Pooled, Grpc, BelowThreshold),
        // Above it, pooled zero-copy is cheaper under every goal and load.
        (10 * MIB, every, IDLE, Pooled, ZeroCopy, CostAnalysis),
        (12 * MIB, every, IDLE, Pooled, ZeroCopy, CostAnalysis),
        (12 * MIB, every, BUSY_CPU, Pooled, ZeroCopy, CostAnalysis),
        (12 * MIB, every, FULL_MEMORY, Pooled, ZeroCopy, CostAnalysis),
        (12 * MIB, every, BUSY_AND_FULL, Pooled, ZeroCopy, CostAnalysis),
        (256 * MIB, every, IDLE, Pooled, ZeroCopy, CostAnalysis),
        (GIB, every, BUSY_AND_FULL, Pooled, ZeroCopy, CostAnalysis),
        // A fresh segment pays page faults but still beats gRPC on an idle machine.
        (12 * MIB, every, IDLE, Fresh, ZeroCopy, CostAnalysis),
        (256 * MIB, every, IDLE, Fresh, ZeroCopy, CostAnalysis),
        (GIB, every, BUSY_CPU, Fresh, ZeroCopy, CostAnalysis),
        // Under memory pressure its page faults cost four times as much: gRPC
        // wins on latency and throughput, zero-copy still wins on memory (it
        // holds one copy where gRPC holds two).
        (12 * MIB, latency, FULL_MEMORY, Fresh, Grpc, CostAnalysis),
        (12 * MIB, throughput, FULL_MEMORY, Fresh, Grpc, CostAnalysis),
        (12 * MIB, memory, FULL_MEMORY, Fresh, ZeroCopy, CostAnalysis),
        (256 * MIB, latency, FULL_MEMORY, Fresh, Grpc, CostAnalysis),
        (256 * MIB, throughput, FULL_MEMORY, Fresh, Grpc, CostAnalysis),
        (256 * MIB, memory, FULL_MEMORY, Fresh, ZeroCopy, CostAnalysis),
        (256 * MIB, balanced, FULL_MEMORY, Fresh, ZeroCopy, CostAnalysis),
        // Both scarce: the threshold is 3.75 MiB, pooled wins, fresh loses on latency.
        (4 * MIB, every, BUSY_AND_FULL, Pooled, ZeroCopy, CostAnalysis),
        (6 * MIB, latency, BUSY_AND_FULL, Fresh, Grpc, CostAnalysis),
        (6 * MIB, balanced, BUSY_AND_FULL, Fresh, Grpc, CostAnalysis),
        (6 * MIB, memory, BUSY_AND_FULL, Fresh, ZeroCopy, CostAnalysis),
    ];
    for (size, goal, load, zc, method, code) in rows {
        let goals: Vec<Goal> = goal.map_or_else(|| Goal::ALL.to_vec(), |g| vec![g]);
        for goal in goals {
            let d = expect(
                &c,
                TransferRequest::new(size).with_pool(pool_of(goal)),
                ctx(load, zc),
                method,
                code,
            );
            assert_eq!((d.goal, d.pool_configured), (goal, true));
            let e = d.estimates.unwrap();
            assert_eq!(e.source, EstimateSource::Calibrated);
            assert_eq!(d.propensity, 1.0, "no exploration at rate 0");
            if code == CostAnalysis {
                assert!(d.confidence > 0.5 && d.confidence <= 1.0, "{d:?}");
            }
        }
    }
}

#[test]
fn goals_weigh_the_same_estimates_differently() {
    // With a marginal gain of 25 %, a fresh 12 MiB segment on an idle machine
    // pays on latency (gain 0.30), memory (0.46) and balanced (0.30), but not
    // on throughput (0.21), where gRPC's CPU time is close to the page faults.
    let marginal = PoolSettings {
        marginal_gain: 0.25,
        ..settings()
    };
    let mut cfg = config_with(marginal);
    for goal in Goal::ALL {
        add_pool(
            &mut cfg,
            name(goal.as_str()),
            PoolSettings {
                goal: *goal,
                ..marginal
            },
        );
    }
    let c = Controller::new(cfg).unwrap();
    let decide = |goal: Goal| {
        let request = TransferRequest::new(12 * MIB).with_pool(name(goal.as_str()));
        c.decide(&request, &ctx(IDLE, Fresh))
    };
    let gains: BTreeMap<Goal, f64> = Goal::ALL
        .iter()
        .map(|g| (*g, decide(*g).estimates.unwrap().zero_copy_gain))
        .collect();
    let expected = [
        (Goal::MinimizeLatency, 0.295),
        (Goal::MaximizeThroughput, 0.208),
        (Goal::MinimizeMemory, 0.459),
        (Goal::Balanced, 0.304),
    ];
    for (goal, gain) in expected {
        assert!((gains[&goal] - gain).abs() < 0.005, "{goal}: {gains:?}");
    }
    for goal in [Goal::MinimizeLatency, Goal::MinimizeMemory, Goal::Balanced] {
        let d = decide(goal);
        assert_eq!(d.method, Method::ZeroCopy, "{goal}: {}", d.rationale());
        assert_eq!(d.reason, Reason::CostAnalysis { gain: gains[&goal] });
    }
    let d = decide(Goal::MaximizeThroughput);
    assert_eq!(d.method, Method::Grpc, "{}", d.rationale());
    assert_eq!(
        d.reason,
        Reason::MarginalGain {
            gain: gains[&Goal::MaximizeThroughput],
            marginal: 0.25
        }
    );
}

#[test]
fn fresh_segments_cost_page_faults_that_pooled_ones_do_not() {
    let c = Controller::new(config_with(settings())).unwrap();
    let request = TransferRequest::new(12 * MIB);
    let pooled = c.estimate(&request, &ctx(IDLE, Pooled));
    let fresh = c.estimate(&request, &ctx(IDLE, Fresh));
    assert_eq!(pooled.zero_copy.page_fault_us, 0.0);
    // 3072 pages of 4 KiB at 2.6 µs each.
    assert!((fresh.zero_copy.page_fault_us - 3072.0 * 2.6).abs() < 1e-6);
    assert_eq!(
        pooled.zero_copy.memory_bytes,
        16 * MIB,
        "the next power of two"
    );
    assert_eq!(fresh.zero_copy.memory_bytes, 12 * MIB);
    assert_eq!(pooled.grpc, fresh.grpc, "availability does not change gRPC");
    assert!(fresh.zero_copy_gain < pooled.zero_copy_gain);
    // Memory pressure quadruples the page faults: the fresh segment loses.
    let d = expect(
        &c,
        request,
        ctx(FULL_MEMORY, Fresh),
        Method::Grpc,
        ReasonCode::CostAnalysis,
    );
    let e = d.estimates.unwrap();
    assert!((e.zero_copy.page_fault_us - 4.0 * 3072.0 * 2.6).abs() < 1e-6);
    assert!((e.zero_copy_gain + 0.180).abs() < 0.005, "{e:?}");
    expect(
        &c,
        request,
        ctx(FULL_MEMORY, Pooled),
        Method::ZeroCopy,
        ReasonCode::CostAnalysis,
    );
}

#[test]
fn a_small_gain_falls_back_to_grpc() {
    // A high marginal gain: 12 MiB pooled gains 0.945, under 0.99.
    let c = Controller::new(config_with(PoolSettings {
        marginal_gain: 0.99,
        ..settings()
    }))
    .unwrap();
    let d = expect(
        &c,
        TransferRequest::new(12 * MIB),
        idle(),
        Method::Grpc,
        ReasonCode::MarginalGain,
    );
    let Reason::MarginalGain { gain, marginal } = d.reason else {
        unreachable!()
    };
    assert_eq!(marginal, 0.99);
    assert!((gain - 0.945).abs() < 0.005, "{gain}");

    // Coefficients where copying into a segment costs almost what gRPC does:
    // 12 MiB at 0.95 ns/B is 12.0 ms against gRPC's 12.3 ms, a 2.8 % gain.
    let mut cfg = config_with(settings());
    cfg.costs = CostCoefficients {
        memcpy_ns_per_byte: 0.95,
        ..CostCoefficients::default()
    };
    let c = Controller::new(cfg).unwrap();
    let d = expect(
        &c,
        TransferRequest::new(12 * MIB),
        idle(),
        Method::Grpc,
        ReasonCode::MarginalGain,
    );
    let Reason::MarginalGain { gain, marginal } = d.reason else {
        unreachable!()
    };
    assert_eq!(marginal, 0.05);
    assert!((gain - 0.0278).abs() < 0.001, "{gain}");
    let e = d.estimates.unwrap();
    assert!(e.zero_copy.latency_us < e.grpc.latency_us);
}

/// A calibration decides wherever a configuration states no costs of its own, across reloads;
/// a configuration with costs of its own keeps them.
#[test]
fn a_calibration_replaces_only_the_built_in_costs() {
    let calibrated = CostCoefficients {
        grpc_ns_per_byte: 9.0,
        ..CostCoefficients::default()
    };
    let own = CostCoefficients {
        grpc_ns_per_byte: 0.5,
        ..CostCoefficients::default()
    };
    let c = Controller::builder(perf_core::Config::default())
        .calibration(calibrated)
        .build()
        .unwrap();
    assert_eq!(c.config().costs, calibrated);
    assert_eq!(c.calibration(), Some(&calibrated));
    let grpc_us = |c: &Controller| {
        c.estimate(&TransferRequest::new(64 * MIB), &ctx(IDLE, Pooled))
            .grpc
            .latency_us
    };
    let with_calibration = grpc_us(&c);

    let with_costs = perf_core::Config {
        costs: own,
        ..perf_core::Config::default()
    };
    c.reload(with_costs).unwrap();
    assert_eq!(c.config().costs, own);
    assert!(grpc_us(&c) < with_calibration);

    assert_eq!(c.effective(perf_core::Config::default()).costs, calibrated);
    c.reload(perf_core::Config::default()).unwrap();
    assert_eq!(c.config().costs, calibrated);
    assert_eq!(grpc_us(&c), with_calibration);

    let with_profile = perf_core::Config {
        profile: Some("machine.toml".into()),
        ..perf_core::Config::default()
    };
    c.reload(with_profile).unwrap();
    assert_eq!(c.config().costs, CostCoefficients::default());
}
