//! Decision-table tests of `Controller::decide`, one step of the decision order at a time.
//!
//! They cover the quick path, the cost analysis under each goal and load, forced
//! paths, rules and decision functions, predictors, threshold moves, exploration
//! and the rationale text. Every table row runs without exploration.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use perf_core::config::{Condition, CostCoefficients, PoolConfig, PoolSettings, Rule};
use perf_core::{
    ChangeKind, Config, ConfigErrors, Controller, ControllerError, DataType, Decision,
    DecisionContext, EstimateSource, FixedPolicy, FixedPredictor, Goal, Locality, Method,
    MethodEstimate, MetricsQuery, Name, Percentiles, Prediction, QueryError, Reason, ReasonCode,
    SampleFilter, SeriesPoint, SeriesQuery, SystemState, ThresholdError, Timestamp,
    TransferMetrics, TransferPolicy, TransferRequest, ZeroCopyAvailability,
};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

const NOW: Timestamp = Timestamp::from_secs(1_700_000_000);

const IDLE: SystemState = SystemState::IDLE;
const BUSY_CPU: SystemState = SystemState {
    cpu_utilization: 0.95,
    ..SystemState::IDLE
};
const FULL_MEMORY: SystemState = SystemState {
    memory_used: 0.95,
    ..SystemState::IDLE
};
const BUSY_AND_FULL: SystemState = SystemState {
    cpu_utilization: 0.95,
    memory_used: 0.95,
    ..SystemState::IDLE
};
const LOADS: [SystemState; 4] = [IDLE, BUSY_CPU, FULL_MEMORY, BUSY_AND_FULL];

use ZeroCopyAvailability::{Fresh, Pooled};

fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

fn ctx(system: SystemState, zero_copy: ZeroCopyAvailability) -> DecisionContext {
    DecisionContext {
        now: NOW,
        system,
        zero_copy,
    }
}

fn idle() -> DecisionContext {
    DecisionContext::idle(NOW)
}

/// Default settings without exploration, so that every table row is deterministic.
fn settings() -> PoolSettings {
    PoolSettings {
        exploration_rate: 0.0,
        ..PoolSettings::default()
    }
}

/// A configuration whose default pool has `settings`.
fn config_with(settings: PoolSettings) -> Config {
    let mut cfg = Config::default();
    cfg.pools.get_mut(&Name::DEFAULT_POOL).unwrap().settings = settings;
    cfg
}

fn add_pool(cfg: &mut Config, pool: Name, settings: PoolSettings) {
    cfg.pools.insert(
        pool,
        PoolConfig {
            settings,
            rules: Vec::new(),
        },
    );
}

fn rule(rule_name: &str, priority: i32, method: Method, condition: Condition) -> Rule {
    Rule {
        name: name(rule_name),
        priority,
        condition,
        method,
    }
}

/// One pool per goal, named after it, with default settings and no exploration.
fn goal_pools() -> (Controller, [(Goal, Name); 4]) {
    let mut cfg = config_with(settings());
    let pools = [
        (Goal::MinimizeLatency, name("latency")),
        (Goal::MaximizeThroughput, name("throughput")),
        (Goal::MinimizeMemory, name("memory")),
        (Goal::Balanced, name("balanced")),
    ];
    for (goal, pool) in pools {
        add_pool(&mut cfg, pool, PoolSettings { goal, ..settings() });
    }
    (Controller::new(cfg).unwrap(), pools)
}

/// Checks the invariants every decision keeps, whatever its reason.
fn check_consistent(d: &Decision) {
    match d.reason.code().step() {
        perf_core::Step::CostAnalysis => {
            let e = d.estimates.expect("the cost analysis keeps its estimates");
            match d.reason {
                Reason::CostAnalysis { gain } if d.method == Method::ZeroCopy => {
                    assert_eq!(gain, e.zero_copy_gain, "{d:?}");
                }
                Reason::CostAnalysis { gain } => {
                    assert_eq!(gain, -e.zero_copy_gain, "{d:?}");
                    assert!(e.zero_copy_gain <= 0.0, "{d:?}");
                }
                Reason::MarginalGain { gain, marginal } => {
                    assert_eq!(d.method, Method::Grpc);
                    assert!(gain > 0.0 && gain < marginal, "{d:?}");
                }
                Reason::BelowThreshold => {
                    assert_eq!(d.method, Method::Grpc);
                    assert!(d.size < d.threshold.effective, "{d:?}");
                }
                _ => unreachable!("{d:?}"),
            }
        }
        perf_core::Step::Exploration => {}
        _ => {
            assert_eq!(d.estimates, None, "only the cost analysis estimates: {d:?}");
            assert_eq!((d.confidence, d.propensity), (1.0, 1.0), "{d:?}");
        }
    }
}

#[track_caller]
fn expect(
    c: &Controller,
    request: TransferRequest,
    context: DecisionContext,
    method: Method,
    code: ReasonCode,
) -> Decision {
    let d = c.decide(&request, &context);
    assert_eq!(
        (d.method, d.reason.code()),
        (method, code),
        "size {} in pool {} under {:?}, {:?}: {}",
        request.size,
        request.pool,
        context.system,
        context.zero_copy,
        d.rationale()
    );
    check_consistent(&d);
    d
}

#[test]
fn the_quick_path_ignores_goal_load_and_availability() {
    let (c, pools) = goal_pools();
    for (goal, pool) in pools {
        for load in LOADS {
            for zc in [Pooled, Fresh] {
                for size in [0, 4 * KIB, MIB - 1] {
                    let d = expect(
                        &c,
                        TransferRequest::new(size).with_pool(pool),
                        ctx(load, zc),
                        Method::Grpc,
                        ReasonCode::BelowFloor,
                    );
                    assert_eq!(d.reason, Reason::BelowFloor { floor: MIB });
                    assert_eq!(d.goal, goal);
                }
                // Above the ceiling zero-copy wins even where the cost analysis
                // would pick gRPC (a fresh segment under memory pressure).
                for size in [GIB + 1, 2 * GIB] {
                    let d = expect(
                        &c,
                        TransferRequest::new(size).with_pool(pool),
                        ctx(load, zc),
                        Method::ZeroCopy,
                        ReasonCode::AboveCeiling,
                    );
                    assert_eq!(d.reason, Reason::AboveCeiling { ceiling: GIB });
                }
            }
        }
    }
    // The bounds themselves belong to the cost analysis.
    expect(
        &c,
        TransferRequest::new(MIB),
        idle(),
        Method::Grpc,
        ReasonCode::BelowThreshold,
    );
    expect(
        &c,
        TransferRequest::new(GIB),
        idle(),
        Method::ZeroCopy,
        ReasonCode::CostAnalysis,
    );
}

#[test]
fn load_and_memory_pressure_bend_the_effective_threshold() {
    let (c, pools) = goal_pools();
    let cases = [
        (IDLE, 1.0, 10 * MIB),
        (BUSY_CPU, 0.5, 5 * MIB),
        (FULL_MEMORY, 0.75, 15 * MIB / 2),
        (BUSY_AND_FULL, 0.375, 15 * MIB / 4),
    ];
    for (load, resources, effective) in cases {
        let t = c.threshold(Name::DEFAULT_POOL, &load).unwrap();
        assert_eq!((t.base, t.history), (10 * MIB, 1.0));
        assert_eq!(
            (t.resources, t.effective),
            (resources, effective),
            "{load:?}"
        );
        for (_, pool) in pools {
            let d = expect(
                &c,
                TransferRequest::new(effective - 1).with_pool(pool),
                ctx(load, Pooled),
                Method::Grpc,
                ReasonCode::BelowThreshold,
            );
            assert_eq!(d.threshold, t);
            expect(
                &c,
                TransferRequest::new(effective).with_pool(pool),
                ctx(load, Pooled),
                Method::ZeroCopy,
                ReasonCode::CostAnalysis,
            );
        }
    }
    // High CPU halves the threshold, so 6 MiB flips to zero-copy; full memory
    // takes it to 7.5 MiB, so 8 MiB flips too.
    for (_, pool) in pools {
        let six = TransferRequest::new(6 * MIB).with_pool(pool);
        let eight = TransferRequest::new(8 * MIB).with_pool(pool);
        expect(
            &c,
            six,
            ctx(IDLE, Pooled),
            Method::Grpc,
            ReasonCode::BelowThreshold,
        );
        expect(
            &c,
            six,
            ctx(BUSY_CPU, Pooled),
            Method::ZeroCopy,
            ReasonCode::CostAnalysis,
        );
        expect(
            &c,
            six,
            ctx(FULL_MEMORY, Pooled),
            Method::Grpc,
            ReasonCode::BelowThreshold,
        );
        expect(
            &c,
            eight,
            ctx(IDLE, Pooled),
            Method::Grpc,
            ReasonCode::BelowThreshold,
        );
        expect(
            &c,
            eight,
            ctx(FULL_MEMORY, Pooled),
            Method::ZeroCopy,
            ReasonCode::CostAnalysis,
        );
    }
    // Little free shared memory doubles the threshold: 12 MiB stays on gRPC.
    let short_of_shm = SystemState {
        shm_free: 30 * MIB,
        ..IDLE
    };
    let d = expect(
        &c,
        TransferRequest::new(12 * MIB),
        ctx(short_of_shm, Pooled),
        Method::Grpc,
        ReasonCode::BelowThreshold,
    );
    assert_eq!(d.threshold.effective, 20 * MIB);
}

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

#[test]
fn forced_paths_win_over_everything_else() {
    use Method::{Grpc, ZeroCopy};
    let mut cfg = config_with(settings());
    // A rule that would send everything by zero-copy: the forced step comes first.
    cfg.rules
        .push(rule("all-zero-copy", 100, ZeroCopy, Condition::default()));
    let c = Controller::new(cfg).unwrap();
    let no_shm = ctx(IDLE, ZeroCopyAvailability::Unavailable);
    let shm_short = ctx(
        SystemState {
            shm_free: 100 * MIB,
            ..IDLE
        },
        Pooled,
    );
    let big = TransferRequest::new(256 * MIB);
    let tiny = TransferRequest::new(4 * KIB);
    let huge = TransferRequest::new(2 * GIB);
    let remote = big.with_locality(Locality::Remote);
    use ReasonCode::{Override, RemoteWorker, ZeroCopyUnavailable};
    #[rustfmt::skip]
    let cases = [
        (big.with_override(Grpc), idle(), Grpc, Override),
        (huge.with_override(Grpc), idle(), Grpc, Override),
        (tiny.with_override(ZeroCopy), idle(), ZeroCopy, Override),
        (remote, idle(), Grpc, RemoteWorker),
        (remote.with_override(ZeroCopy), idle(), Grpc, RemoteWorker),
        (big, no_shm, Grpc, ZeroCopyUnavailable),
        (big, shm_short, Grpc, ZeroCopyUnavailable),
        // An override to zero-copy cannot conjure shared memory.
        (big.with_override(ZeroCopy), no_shm, Grpc, ZeroCopyUnavailable),
        (big.with_override(ZeroCopy), shm_short, Grpc, ZeroCopyUnavailable),
        // Exactly enough free shared memory is enough.
        (TransferRequest::new(100 * MIB), shm_short, ZeroCopy, ReasonCode::Rule),
    ];
    for (request, context, method, code) in cases {
        expect(&c, request, context, method, code);
    }
}

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

/// A metrics store that reports one gRPC p99 latency and remembers the queries.
struct FakeQuery {
    grpc_p99_us: f64,
    queries: Mutex<Vec<SeriesQuery>>,
}

impl FakeQuery {
    fn new(grpc_p99_us: f64) -> Arc<FakeQuery> {
        Arc::new(FakeQuery {
            grpc_p99_us,
            queries: Mutex::new(Vec::new()),
        })
    }
}

impl MetricsQuery for FakeQuery {
    fn series(&self, query: &SeriesQuery) -> Result<Vec<SeriesPoint>, QueryError> {
        self.queries.lock().unwrap().push(*query);
        if query.method != Some(Method::Grpc) {
            return Ok(Vec::new());
        }
        Ok(vec![SeriesPoint {
            start: query.from,
            latency_us: Percentiles {
                count: 100,
                p99: self.grpc_p99_us,
                ..Percentiles::default()
            },
            ..SeriesPoint::default()
        }])
    }

    fn samples(
        &self,
        _filter: &SampleFilter,
        _limit: usize,
    ) -> Result<Vec<TransferMetrics>, QueryError> {
        Ok(Vec::new())
    }
}

/// Sends payloads of 2 MiB and more by zero-copy while gRPC's p99 over the
/// last minute is above 5 ms; passes otherwise.
fn zero_copy_when_grpc_is_slow(
    request: &TransferRequest,
    ctx: &DecisionContext,
    metrics: &dyn MetricsQuery,
) -> Option<Method> {
    if request.size < 2 * MIB {
        return None;
    }
    let query = SeriesQuery {
        pool: Some(request.pool),
        method: Some(Method::Grpc),
        from: Timestamp(ctx.now.as_nanos() - 60_000_000_000),
        to: ctx.now,
        granularity_secs: 60,
    };
    let p99 = metrics
        .series(&query)
        .ok()?
        .iter()
        .map(|p| p.latency_us.p99)
        .fold(0.0, f64::max);
    (p99 > 5_000.0).then_some(Method::ZeroCopy)
}

fn config_with_large_grpc_rule() -> Config {
    let mut cfg = config_with(settings());
    cfg.pools.get_mut(&Name::DEFAULT_POOL).unwrap().rules = vec![rule(
        "large-grpc",
        10,
        Method::Grpc,
        Condition {
            size_min: Some(64 * MIB),
            ..Condition::default()
        },
    )];
    cfg
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

#[test]
fn an_unknown_pool_is_decided_by_the_default_pool() {
    let ml = name("ml");
    let mut cfg = config_with(settings());
    add_pool(
        &mut cfg,
        ml,
        PoolSettings {
            goal: Goal::Balanced,
            threshold: 4 * MIB,
            ..settings()
        },
    );
    let c = Controller::new(cfg).unwrap();
    let analytics = name("analytics");
    let d = expect(
        &c,
        TransferRequest::new(6 * MIB).with_pool(analytics),
        idle(),
        Method::Grpc,
        ReasonCode::BelowThreshold,
    );
    assert_eq!(d.pool, Name::DEFAULT_POOL);
    assert!(!d.pool_configured);
    assert_eq!(
        (d.goal, d.threshold.base),
        (Goal::MinimizeLatency, 10 * MIB)
    );
    let d = expect(
        &c,
        TransferRequest::new(6 * MIB).with_pool(ml),
        idle(),
        Method::ZeroCopy,
        ReasonCode::CostAnalysis,
    );
    assert_eq!(
        (d.pool, d.pool_configured, d.goal),
        (ml, true, Goal::Balanced)
    );
    assert!(c.has_pool(ml) && !c.has_pool(analytics));
    assert_eq!(c.counts(analytics), None);
    assert!(matches!(
        c.threshold(analytics, &IDLE),
        Err(ThresholdError::UnknownPool(_))
    ));
}

fn prediction(zero_copy_us: f64, grpc_us: f64, confidence: f64) -> Prediction {
    let estimate = |latency_us: f64| MethodEstimate {
        latency_us,
        memory_bytes: 4 * MIB,
        cpu_us: latency_us / 2.0,
        interval_us: Some((latency_us * 0.9, latency_us * 1.1)),
        ..MethodEstimate::default()
    };
    Prediction {
        zero_copy: estimate(zero_copy_us),
        grpc: estimate(grpc_us),
        confidence,
        samples: 500,
    }
}

#[test]
fn a_confident_predictor_replaces_the_calibrated_estimates() {
    let build = |p: Prediction, learning: bool| {
        Controller::builder(config_with(PoolSettings {
            learning,
            ..settings()
        }))
        .predictor(Arc::new(FixedPredictor(p)))
        .build()
        .unwrap()
    };
    let below = TransferRequest::new(4 * MIB);

    // Confident (0.9 >= 0.8) and zero-copy 10x cheaper: 4 MiB goes zero-copy.
    let confident = prediction(300.0, 3_000.0, 0.9);
    let c = build(confident, true);
    let d = expect(
        &c,
        below,
        idle(),
        Method::ZeroCopy,
        ReasonCode::CostAnalysis,
    );
    let e = d.estimates.unwrap();
    assert_eq!(e.source, EstimateSource::Predicted);
    assert_eq!((e.zero_copy, e.grpc), (confident.zero_copy, confident.grpc));
    assert!((e.zero_copy_gain - 0.9).abs() < 1e-9, "{e:?}");
    assert!(
        (d.confidence - 0.9).abs() < 1e-9,
        "scaled by the predictor's confidence"
    );
    // A confident prediction that gRPC is cheaper wins above the threshold too.
    let c = build(prediction(3_000.0, 300.0, 0.9), true);
    expect(
        &c,
        TransferRequest::new(64 * MIB),
        idle(),
        Method::Grpc,
        ReasonCode::CostAnalysis,
    );
    // The quick path still comes first.
    expect(
        &c,
        TransferRequest::new(2 * GIB),
        idle(),
        Method::ZeroCopy,
        ReasonCode::AboveCeiling,
    );

    // Low confidence: the calibrated estimates and the threshold decide.
    let c = build(prediction(300.0, 3_000.0, 0.5), true);
    let d = expect(&c, below, idle(), Method::Grpc, ReasonCode::BelowThreshold);
    assert_eq!(d.estimates.unwrap().source, EstimateSource::Calibrated);

    // Learning off: the predictor is ignored however confident.
    let c = build(confident, false);
    let d = expect(&c, below, idle(), Method::Grpc, ReasonCode::BelowThreshold);
    assert_eq!(d.estimates.unwrap().source, EstimateSource::Calibrated);
}

#[test]
fn learning_off_disables_exploration_and_threshold_moves() {
    let explorative = PoolSettings {
        exploration_rate: 0.5,
        ..PoolSettings::default()
    };
    let on = Controller::new(config_with(explorative)).unwrap();
    let off = Controller::new(config_with(PoolSettings {
        learning: false,
        ..explorative
    }))
    .unwrap();
    let explored = |c: &Controller| {
        (0..1000)
            .map(|i| c.decide(&TransferRequest::new(8 * MIB + i), &idle()))
            .filter(|d| d.reason.is_exploration())
            .count()
    };
    assert!(explored(&on) > 400, "the band explores at rate 0.5");
    assert_eq!(explored(&off), 0);
    let d = off.decide(&TransferRequest::new(8 * MIB), &idle());
    assert_eq!(d.propensity, 1.0);
    let err = off
        .adjust_threshold(Name::DEFAULT_POOL, 2 * MIB, "crossover", 0.1, NOW)
        .unwrap_err();
    assert!(matches!(err, ThresholdError::LearningOff(_)), "{err:?}");
}

/// Sizes spread log-uniformly over 1 KiB..2 GiB, from a fixed xorshift sequence.
fn log_uniform_sizes(n: usize, mut state: u64) -> impl Iterator<Item = u64> {
    let (lo, hi) = ((KIB as f64).ln(), ((2 * GIB) as f64).ln());
    (0..n).map(move |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let u = (state >> 11) as f64 / (1u64 << 53) as f64;
        (lo + u * (hi - lo)).exp() as u64
    })
}

fn check_exploration(rate: f64, system: SystemState, tolerance: f64) {
    let s = PoolSettings {
        exploration_rate: rate,
        ..PoolSettings::default()
    };
    let c = Controller::builder(config_with(s))
        .seed(42)
        .build()
        .unwrap();
    let context = ctx(system, Pooled);
    let effective = c.threshold(Name::DEFAULT_POOL, &system).unwrap().effective as f64;
    let band_lo = (effective / s.exploration_band).max(s.floor as f64);
    let band_hi = (effective * s.exploration_band).min(s.ceiling as f64);
    let (mut in_band, mut explored) = (0u32, 0u32);
    for size in log_uniform_sizes(100_000, 0x9E37_79B9_7F4A_7C15) {
        let request = TransferRequest::new(size);
        let d = c.decide(&request, &context);
        let inside = size as f64 >= band_lo && size as f64 <= band_hi;
        if !inside {
            assert!(
                !d.reason.is_exploration(),
                "explored outside the band: {d:?}"
            );
            assert_eq!(d.propensity, 1.0, "{d:?}");
            continue;
        }
        in_band += 1;
        let greedy = c.preview(&request, &context);
        if let Reason::Exploration { greedy: g, epsilon } = d.reason {
            explored += 1;
            assert_eq!((g, epsilon, d.propensity), (greedy.method, rate, rate));
            assert_eq!(d.method, greedy.method.other());
        } else {
            assert_eq!((d.method, d.reason), (greedy.method, greedy.reason));
            assert!((d.propensity - (1.0 - rate)).abs() < 1e-12, "{d:?}");
        }
    }
    let share = f64::from(explored) / f64::from(in_band);
    assert!(in_band > 5_000, "too few in-band decisions: {in_band}");
    assert!(
        (share - rate).abs() < tolerance,
        "explored {explored} of {in_band} in-band decisions ({share:.4}), expected {rate}"
    );
    let counts = c.counts(Name::DEFAULT_POOL).unwrap();
    assert_eq!(counts.total, 100_000);
    let by_reason: u64 = counts.by_reason[&ReasonCode::Exploration].values().sum();
    assert_eq!(by_reason, u64::from(explored));
}

#[test]
fn exploration_happens_only_in_the_band_at_the_configured_rate() {
    // About 9,500 of 100,000 log-uniform sizes fall in [5 MiB, 20 MiB]; the
    // tolerances are a little over two standard errors at 5 % and three at 20 %.
    check_exploration(0.05, IDLE, 0.005);
    check_exploration(0.2, IDLE, 0.013);
    // Under high CPU the band follows the halved threshold: [2.5 MiB, 10 MiB].
    check_exploration(0.05, BUSY_CPU, 0.005);
}

#[test]
fn the_band_is_clipped_to_floor_and_ceiling() {
    // A threshold near the floor: the band would reach down to 1 MiB but the
    // floor is 2 MiB, and sizes under it never explore.
    let s = PoolSettings {
        floor: 2 * MIB,
        threshold: 3 * MIB,
        ceiling: 4 * MIB,
        exploration_rate: 0.5,
        exploration_band: 4.0,
        ..PoolSettings::default()
    };
    let c = Controller::new(config_with(s)).unwrap();
    for size in (MIB..5 * MIB).step_by(4099) {
        let d = c.decide(&TransferRequest::new(size), &idle());
        let inside = (2 * MIB..=4 * MIB).contains(&size);
        assert_eq!(d.propensity != 1.0, inside, "{d:?}");
    }
}

#[test]
fn the_same_seed_gives_the_same_decisions() {
    let s = PoolSettings {
        exploration_rate: 0.3,
        ..PoolSettings::default()
    };
    let run = |seed: u64| {
        let c = Controller::builder(config_with(s))
            .seed(seed)
            .build()
            .unwrap();
        log_uniform_sizes(20_000, 7)
            .map(|size| c.decide(&TransferRequest::new(size), &idle()))
            .collect::<Vec<_>>()
    };
    let a = run(7);
    assert!(a.iter().any(|d| d.reason.is_exploration()));
    assert_eq!(a, run(7));
    assert_ne!(a, run(8));
}

#[test]
fn threshold_adjustments_move_decisions_and_reset_brings_them_back() {
    let c = Controller::new(config_with(settings())).unwrap();
    let eight = TransferRequest::new(8 * MIB);
    expect(&c, eight, idle(), Method::Grpc, ReasonCode::BelowThreshold);

    // One step moves at most 25 %: toward 2 MiB the threshold lands at 7.5 MiB.
    let change = c
        .adjust_threshold(Name::DEFAULT_POOL, 2 * MIB, "measured crossover", 0.1, NOW)
        .unwrap();
    assert_eq!(
        (change.kind, change.from_factor, change.to_factor),
        (ChangeKind::Adjust, 1.0, 0.75)
    );
    assert_eq!(change.to_bytes, 15 * MIB / 2);
    let d = expect(
        &c,
        eight,
        idle(),
        Method::ZeroCopy,
        ReasonCode::CostAnalysis,
    );
    assert_eq!(
        (d.threshold.history, d.threshold.effective),
        (0.75, 15 * MIB / 2)
    );
    assert_eq!(c.threshold(Name::DEFAULT_POOL, &IDLE).unwrap(), d.threshold);

    let reset = c
        .reset_thresholds(Some(Name::DEFAULT_POOL), "operator reset", NOW)
        .unwrap();
    assert_eq!(reset.len(), 1);
    assert_eq!(
        (reset[0].kind, reset[0].to_factor),
        (ChangeKind::Reset, 1.0)
    );
    expect(&c, eight, idle(), Method::Grpc, ReasonCode::BelowThreshold);
    let history = c.threshold_history();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].reason, "measured crossover");

    let unknown = name("unknown");
    assert!(matches!(
        c.adjust_threshold(unknown, MIB, "x", 0.0, NOW),
        Err(ThresholdError::UnknownPool(_))
    ));
    assert!(matches!(
        c.reset_thresholds(Some(unknown), "x", NOW),
        Err(ThresholdError::UnknownPool(_))
    ));
}

#[test]
fn counts_total_every_decision_by_method_and_reason() {
    let c = Controller::new(config_with(settings())).unwrap();
    let sizes = [
        4 * KIB,
        64 * KIB,
        512 * KIB,
        2 * GIB,
        6 * MIB,
        8 * MIB,
        12 * MIB,
    ];
    for size in sizes {
        c.decide(&TransferRequest::new(size), &idle());
    }
    let forced = TransferRequest::new(12 * MIB).with_override(Method::Grpc);
    c.decide(&forced, &idle());
    c.decide(&forced, &idle());
    // A preview is not counted.
    c.preview(&TransferRequest::new(4 * KIB), &idle());

    let counts = c.counts(Name::DEFAULT_POOL).unwrap();
    assert_eq!(counts.total, 9);
    assert_eq!(counts.by_method[&Method::Grpc], 7);
    assert_eq!(counts.by_method[&Method::ZeroCopy], 2);
    let reason = |code| counts.by_reason.get(&code).cloned().unwrap_or_default();
    assert_eq!(
        reason(ReasonCode::BelowFloor),
        BTreeMap::from([(Method::Grpc, 3)])
    );
    assert_eq!(
        reason(ReasonCode::AboveCeiling),
        BTreeMap::from([(Method::ZeroCopy, 1)])
    );
    assert_eq!(
        reason(ReasonCode::BelowThreshold),
        BTreeMap::from([(Method::Grpc, 2)])
    );
    assert_eq!(
        reason(ReasonCode::CostAnalysis),
        BTreeMap::from([(Method::ZeroCopy, 1)])
    );
    assert_eq!(
        reason(ReasonCode::Override),
        BTreeMap::from([(Method::Grpc, 2)])
    );
    assert_eq!(
        counts.by_reason.len(),
        5,
        "only non-zero entries: {counts:?}"
    );
}

/// The first decision of `c` for `request` that explores.
fn first_exploration(c: &Controller, request: TransferRequest) -> Decision {
    (0..1000)
        .map(|_| c.decide(&request, &idle()))
        .find(|d| d.reason.is_exploration())
        .expect("an exploration within 1000 draws at rate 0.5")
}

#[test]
fn rationale_of_every_reason() {
    use Method::{Grpc, ZeroCopy};
    let (ml, scripted) = (name("ml"), name("scripted"));
    let mut cfg = config_with_large_grpc_rule();
    add_pool(&mut cfg, ml, settings());
    add_pool(&mut cfg, scripted, settings());
    let c = Controller::builder(cfg)
        .metrics(FakeQuery::new(9_000.0))
        .function(
            name("slow-grpc"),
            15,
            &[scripted],
            Arc::new(zero_copy_when_grpc_is_slow),
        )
        .build()
        .unwrap();
    // Copying into a segment costs almost what gRPC does, for a small gain.
    let mut close = config_with(settings());
    close.costs.memcpy_ns_per_byte = 0.95;
    let marginal = Controller::new(close).unwrap();
    let explorer = Controller::builder(config_with(PoolSettings {
        exploration_rate: 0.5,
        ..PoolSettings::default()
    }))
    .seed(3)
    .build()
    .unwrap();

    let big = TransferRequest::new(256 * MIB);
    let size = TransferRequest::new;
    #[rustfmt::skip]
    let decisions: Vec<(&str, Decision)> = vec![
        ("override", c.decide(&big.with_override(Grpc), &idle())),
        ("remote", c.decide(&big.with_locality(Locality::Remote), &idle())),
        ("unavailable", c.decide(&big, &ctx(IDLE, ZeroCopyAvailability::Unavailable))),
        ("rule", c.decide(&big, &idle())),
        ("function", c.decide(&size(4 * MIB).with_pool(scripted), &idle())),
        ("fixed", FixedPolicy(ZeroCopy).decide(&size(4 * KIB), &idle())),
        ("below floor", c.decide(&size(4 * KIB), &idle())),
        ("above ceiling", c.decide(&size(2 * GIB).with_pool(ml), &idle())),
        ("below threshold", c.decide(&size(6 * MIB), &idle())),
        ("cost analysis zero-copy", c.decide(&big.with_pool(ml), &idle())),
        ("cost analysis grpc", c.decide(&size(12 * MIB), &ctx(FULL_MEMORY, Fresh))),
        ("marginal gain", marginal.decide(&size(12 * MIB), &idle())),
        ("exploration", first_exploration(&explorer, size(12 * MIB))),
    ];
    let mut text = String::new();
    for (label, d) in &decisions {
        writeln!(text, "{label} ({}): {}", d.reason.code(), d.rationale()).unwrap();
    }
    let codes: Vec<ReasonCode> = decisions.iter().map(|(_, d)| d.reason.code()).collect();
    for code in ReasonCode::ALL {
        assert!(codes.contains(&code), "no rationale for {code}:\n{text}");
    }

    // The shape of the cost-analysis rationale for 256 MiB in pool ml.
    let (_, ml_big) = decisions
        .iter()
        .find(|(label, _)| *label == "cost analysis zero-copy")
        .unwrap();
    assert_eq!(
        ml_big.rationale().to_string(),
        "zero-copy: 22x lower estimated latency (13.5 ms vs 294 ms) and 50 % less memory; \
         pool ml, goal minimize_latency"
    );
    insta::assert_snapshot!("rationales", text);
}

/// When the chosen method costs more in some resource, the rationale must say
/// how much more relative to the cheaper method: 24 MiB of gRPC buffers
/// against a 12 MiB segment is 100 % more memory (not "50 % more"), and
/// 33.3 ms against 21.7 ms is 53 % higher latency (not "35 % higher").
/// `compare` in decision.rs divides by the larger value in both cases.
#[test]
fn rationale_states_how_much_dearer_the_chosen_method_is() {
    let (c, pools) = goal_pools();
    let pool_of = |goal: Goal| pools.iter().find(|(g, _)| *g == goal).unwrap().1;

    // gRPC chosen, holding twice the memory of the fresh segment.
    let request = TransferRequest::new(12 * MIB).with_pool(pool_of(Goal::MinimizeLatency));
    let d = expect(
        &c,
        request,
        ctx(FULL_MEMORY, Fresh),
        Method::Grpc,
        ReasonCode::CostAnalysis,
    );
    let e = d.estimates.unwrap();
    assert_eq!(
        (e.grpc.memory_bytes, e.zero_copy.memory_bytes),
        (24 * MIB, 12 * MIB)
    );
    let text = d.rationale().to_string();
    assert!(
        text.contains("100 % more memory") || text.contains("2.0x more memory"),
        "gRPC holds twice the memory of zero-copy here: {text}"
    );

    // Zero-copy chosen for memory, at a latency 1.53 times gRPC's.
    let request = TransferRequest::new(12 * MIB).with_pool(pool_of(Goal::MinimizeMemory));
    let d = expect(
        &c,
        request,
        ctx(BUSY_AND_FULL, Fresh),
        Method::ZeroCopy,
        ReasonCode::CostAnalysis,
    );
    let e = d.estimates.unwrap();
    let ratio = e.zero_copy.latency_us / e.grpc.latency_us;
    assert!((ratio - 1.53).abs() < 0.01, "{ratio}");
    let text = d.rationale().to_string();
    assert!(
        text.contains("53 % higher estimated latency")
            || text.contains("1.5x higher estimated latency"),
        "zero-copy is 53 % slower than gRPC here: {text}"
    );
}
