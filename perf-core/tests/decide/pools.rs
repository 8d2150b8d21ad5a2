//! Pools: a request for an unconfigured pool is decided by the default pool's settings.

use perf_core::config::PoolSettings;
use perf_core::{Controller, Goal, Method, Name, ReasonCode, ThresholdError, TransferRequest};

use crate::support::{IDLE, MIB, add_pool, config_with, expect, idle, name, settings};

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
