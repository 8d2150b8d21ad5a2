//! Thresholds and counts: load bends the effective threshold, adjustments and resets move
//! decisions, and every decision is counted by method and reason.

use std::collections::BTreeMap;

use perf_core::ZeroCopyAvailability::Pooled;
use perf_core::{
    ChangeKind, Controller, Method, Name, ReasonCode, SystemState, ThresholdError, TransferRequest,
};

use crate::support::{
    BUSY_AND_FULL, BUSY_CPU, FULL_MEMORY, GIB, IDLE, KIB, MIB, NOW, config_with, ctx, expect,
    goal_pools, idle, name, settings,
};

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
