//! Shared fixtures of the decision tests: loads, configurations, a fake metrics store, and
//! `expect`, which checks one decision and the invariants every decision keeps.

use std::sync::{Arc, Mutex};

use perf_core::config::{Condition, PoolConfig, PoolSettings, Rule};
use perf_core::{
    Config, Controller, Decision, DecisionContext, Goal, Method, MetricsQuery, Name, Percentiles,
    QueryError, Reason, ReasonCode, SampleFilter, SeriesPoint, SeriesQuery, SystemState, Timestamp,
    TransferMetrics, TransferRequest, ZeroCopyAvailability,
};

pub(crate) const KIB: u64 = 1 << 10;
pub(crate) const MIB: u64 = 1 << 20;
pub(crate) const GIB: u64 = 1 << 30;

pub(crate) const NOW: Timestamp = Timestamp::from_secs(1_700_000_000);

/// The four loads the tables run under: idle, busy CPU, full memory, and both.
pub(crate) const IDLE: SystemState = SystemState::IDLE;
pub(crate) const BUSY_CPU: SystemState = SystemState {
    cpu_utilization: 0.95,
    ..SystemState::IDLE
};
pub(crate) const FULL_MEMORY: SystemState = SystemState {
    memory_used: 0.95,
    ..SystemState::IDLE
};
pub(crate) const BUSY_AND_FULL: SystemState = SystemState {
    cpu_utilization: 0.95,
    memory_used: 0.95,
    ..SystemState::IDLE
};
pub(crate) const LOADS: [SystemState; 4] = [IDLE, BUSY_CPU, FULL_MEMORY, BUSY_AND_FULL];

/// A valid name; panics on an invalid one.
pub(crate) fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

/// A context at `NOW` with the given load and zero-copy availability.
pub(crate) fn ctx(system: SystemState, zero_copy: ZeroCopyAvailability) -> DecisionContext {
    DecisionContext {
        now: NOW,
        system,
        zero_copy,
    }
}

/// An idle machine at `NOW`, with a pooled segment available.
pub(crate) fn idle() -> DecisionContext {
    DecisionContext::idle(NOW)
}

/// Default settings without exploration, so that every table row is deterministic.
pub(crate) fn settings() -> PoolSettings {
    PoolSettings {
        exploration_rate: 0.0,
        ..PoolSettings::default()
    }
}

/// A configuration whose default pool has `settings`.
pub(crate) fn config_with(settings: PoolSettings) -> Config {
    let mut cfg = Config::default();
    cfg.pools.get_mut(&Name::DEFAULT_POOL).unwrap().settings = settings;
    cfg
}

/// Adds a pool with `settings` and no rules to `cfg`.
pub(crate) fn add_pool(cfg: &mut Config, pool: Name, settings: PoolSettings) {
    cfg.pools.insert(
        pool,
        PoolConfig {
            settings,
            rules: Vec::new(),
        },
    );
}

/// A rule named `rule_name` that sends what matches `condition` by `method`.
pub(crate) fn rule(rule_name: &str, priority: i32, method: Method, condition: Condition) -> Rule {
    Rule {
        name: name(rule_name),
        priority,
        condition,
        method,
    }
}

/// One pool per goal, named after it, with default settings and no exploration.
pub(crate) fn goal_pools() -> (Controller, [(Goal, Name); 4]) {
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

/// Decides `request` in `context`, asserts the method and reason code, checks the
/// decision's invariants and returns it.
#[track_caller]
pub(crate) fn expect(
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

/// A metrics store that reports one gRPC p99 latency and remembers the queries.
pub(crate) struct FakeQuery {
    grpc_p99_us: f64,
    pub(crate) queries: Mutex<Vec<SeriesQuery>>,
}

impl FakeQuery {
    pub(crate) fn new(grpc_p99_us: f64) -> Arc<FakeQuery> {
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
pub(crate) fn zero_copy_when_grpc_is_slow(
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

/// The default settings with a pool rule of priority 10 sending 64 MiB and more by gRPC.
pub(crate) fn config_with_large_grpc_rule() -> Config {
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
