//! Hot reload under concurrency: every decision sees one whole policy version.
//!
//! Invalid reloads change nothing, and threshold history survives reloads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use perf_core::config::{Condition, PoolSettings, Rule};
use perf_core::{
    Config, Controller, Decision, DecisionContext, Goal, Method, MetricsQuery, Name, Reason,
    ReasonCode, SystemState, TransferRequest,
};

use crate::support::{MIB, NOW, config_with, idle};

/// Sizes that tell the two policies apart: floor, threshold, marginal gain and ceiling.
const SIZES: [u64; 4] = [2 * MIB, 12 * MIB, 24 * MIB, 768 * MIB];

/// Policy A: the defaults, without exploration.
fn config_a() -> Config {
    config_with(PoolSettings {
        exploration_rate: 0.0,
        ..PoolSettings::default()
    })
}

/// Policy B differs from A in goal, floor, threshold, marginal gain and ceiling at once.
fn config_b() -> Config {
    config_with(PoolSettings {
        goal: Goal::Balanced,
        floor: 4 * MIB,
        threshold: 16 * MIB,
        marginal_gain: 0.99,
        ceiling: 512 * MIB,
        exploration_rate: 0.0,
        ..PoolSettings::default()
    })
}

/// What `config` decides for each of [`SIZES`], with the version blanked.
fn expected(config: Config) -> [Decision; 4] {
    let c = Controller::new(config).unwrap();
    SIZES.map(|size| Decision {
        policy_version: 0,
        ..c.decide(&TransferRequest::new(size), &idle())
    })
}

#[test]
fn the_two_policies_differ_in_every_size_checked() {
    let a = expected(config_a());
    let b = expected(config_b());
    let codes = |d: &[Decision; 4]| d.map(|d| (d.method, d.reason.code()));
    assert_eq!(
        codes(&a),
        [
            (Method::Grpc, ReasonCode::BelowThreshold),
            (Method::ZeroCopy, ReasonCode::CostAnalysis),
            (Method::ZeroCopy, ReasonCode::CostAnalysis),
            (Method::ZeroCopy, ReasonCode::CostAnalysis),
        ]
    );
    assert_eq!(
        codes(&b),
        [
            (Method::Grpc, ReasonCode::BelowFloor),
            (Method::Grpc, ReasonCode::BelowThreshold),
            (Method::Grpc, ReasonCode::MarginalGain),
            (Method::ZeroCopy, ReasonCode::AboveCeiling),
        ]
    );
    assert_eq!(b[0].reason, Reason::BelowFloor { floor: 4 * MIB });
    assert!(matches!(
        b[2].reason,
        Reason::MarginalGain { marginal, .. } if marginal == 0.99
    ));
    for (a, b) in a.iter().zip(&b) {
        assert_ne!((a.goal, a.threshold.base), (b.goal, b.threshold.base));
    }
}

#[test]
fn concurrent_decisions_see_one_whole_policy_across_reloads() {
    const RELOADS: u64 = 200;
    const DECIDERS: usize = 2;
    let a = expected(config_a());
    let b = expected(config_b());
    let c = Controller::new(config_a()).unwrap();
    let stop = AtomicBool::new(false);
    let decided = AtomicU64::new(0);

    let seen: Vec<[u64; 2]> = thread::scope(|s| {
        let deciders: Vec<_> = (0..DECIDERS)
            .map(|t| {
                let (c, stop, decided, a, b) = (&c, &stop, &decided, &a, &b);
                s.spawn(move || {
                    // Decisions seen under policy A and under policy B.
                    let mut seen = [0u64; 2];
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) {
                        let k = i % SIZES.len();
                        let d = c.decide(&TransferRequest::new(SIZES[k]), &idle());
                        let (want, which) = if d.policy_version % 2 == 1 {
                            (a[k], 0)
                        } else {
                            (b[k], 1)
                        };
                        let blanked = Decision {
                            policy_version: 0,
                            ..d
                        };
                        assert_eq!(
                            blanked,
                            want,
                            "version {} decided {} MiB as neither policy would: {}",
                            d.policy_version,
                            SIZES[k] / MIB,
                            d.rationale()
                        );
                        seen[which] += 1;
                        i += 1;
                        decided.fetch_add(1, Ordering::Relaxed);
                    }
                    seen
                })
            })
            .collect();

        'reloads: for n in 0..RELOADS {
            // Let the deciders make some decisions under each version; stop
            // early when one of them has failed.
            let before = decided.load(Ordering::Relaxed);
            while decided.load(Ordering::Relaxed) < before + 64 {
                if deciders.iter().any(|h| h.is_finished()) {
                    break 'reloads;
                }
                thread::yield_now();
            }
            let next = if n % 2 == 0 { config_b() } else { config_a() };
            assert_eq!(c.reload(next).unwrap(), n + 2);
        }
        stop.store(true, Ordering::Relaxed);
        deciders.into_iter().map(|h| h.join().unwrap()).collect()
    });

    assert_eq!(c.version(), RELOADS + 1);
    assert_eq!(
        c.config().pools[&Name::DEFAULT_POOL].settings,
        config_a().pools[&Name::DEFAULT_POOL].settings
    );
    for s in &seen {
        assert!(
            s[0] > 0 && s[1] > 0,
            "each decider saw both policies: {seen:?}"
        );
    }
    // Counters live across reloads: every decision was counted once.
    let total: u64 = seen.iter().flatten().sum();
    assert_eq!(total, decided.load(Ordering::Relaxed));
    assert_eq!(c.counts(Name::DEFAULT_POOL).unwrap().total, total);
}

fn never(
    _request: &TransferRequest,
    _ctx: &DecisionContext,
    _metrics: &dyn MetricsQuery,
) -> Option<Method> {
    None
}

/// Policy B with a rule at `priority`, which clashes with the function registered at 7.
fn config_b_with_rule(priority: i32) -> Config {
    let mut cfg = config_b();
    cfg.rules.push(Rule {
        name: Name::new("big-zero-copy").unwrap(),
        priority,
        condition: Condition {
            size_min: Some(64 * MIB),
            ..Condition::default()
        },
        method: Method::ZeroCopy,
    });
    cfg
}

#[test]
fn an_invalid_reload_changes_nothing() {
    let c = Controller::builder(config_a())
        .function(Name::new("never").unwrap(), 7, &[], Arc::new(never))
        .build()
        .unwrap();
    let a = expected(config_a());
    let check_policy_a = |c: &Controller| {
        for (k, size) in SIZES.into_iter().enumerate() {
            let d = c.decide(&TransferRequest::new(size), &idle());
            assert_eq!(
                Decision {
                    policy_version: 0,
                    ..d
                },
                a[k]
            );
        }
    };
    check_policy_a(&c);

    // A rule whose priority clashes with the registered function.
    let err = c.reload(config_b_with_rule(7)).unwrap_err();
    assert_eq!(err.0[0].path, "functions.never.priority", "{err}");
    assert_eq!(c.version(), 1);
    check_policy_a(&c);

    // A configuration without the default pool.
    let mut no_default = config_b();
    let settings = no_default.pools.remove(&Name::DEFAULT_POOL).unwrap();
    no_default.pools.insert(Name::new("ml").unwrap(), settings);
    let err = c.reload(no_default).unwrap_err();
    assert_eq!(err.0[0].path, "pools", "{err}");
    assert_eq!(c.version(), 1);
    check_policy_a(&c);

    // Broken TOML, and well-formed TOML with an unknown goal, are refused
    // before anything is compiled.
    let err = c
        .reload_toml("version = 1\n[defaults\ngoal = \"balanced\"\n")
        .unwrap_err();
    assert_eq!(err.0[0].path, "(file)", "{err}");
    assert_eq!(c.version(), 1);
    let err = c
        .reload_toml("version = 1\n[defaults]\ngoal = \"fastest\"\n")
        .unwrap_err();
    assert_eq!(err.0[0].path, "defaults.goal", "{err}");
    assert_eq!(c.version(), 1);
    check_policy_a(&c);

    // A valid reload still goes through afterwards, and takes the next version.
    assert_eq!(c.reload(config_b_with_rule(8)).unwrap(), 2);
    let d = c.decide(&TransferRequest::new(128 * MIB), &idle());
    assert_eq!((d.policy_version, d.reason.code()), (2, ReasonCode::Rule));
}

#[test]
fn threshold_adjustments_survive_reloads() {
    let c = Controller::new(config_a()).unwrap();
    c.adjust_threshold(Name::DEFAULT_POOL, 2 * MIB, "measured crossover", 0.1, NOW)
        .unwrap();
    let eight = TransferRequest::new(8 * MIB);
    assert_eq!(c.decide(&eight, &idle()).method, Method::ZeroCopy);

    // Policy B has a 16 MiB base: the history factor applies to it.
    c.reload(config_b()).unwrap();
    let t = c.threshold(Name::DEFAULT_POOL, &SystemState::IDLE).unwrap();
    assert_eq!((t.base, t.history, t.effective), (16 * MIB, 0.75, 12 * MIB));
    let d = c.decide(&TransferRequest::new(12 * MIB), &idle());
    assert_eq!((d.threshold.history, d.goal), (0.75, Goal::Balanced));
    // At the threshold the cost analysis runs, and B's marginal gain of 0.99 refuses.
    assert_eq!(
        d.reason.code(),
        ReasonCode::MarginalGain,
        "{}",
        d.rationale()
    );

    // A failed reload keeps it, and so does going back to A.
    assert!(
        c.reload(Config {
            pools: Default::default(),
            ..config_a()
        })
        .is_err()
    );
    c.reload(config_a()).unwrap();
    let d = c.decide(&eight, &idle());
    assert_eq!(
        (d.threshold.history, d.threshold.effective),
        (0.75, 15 * MIB / 2)
    );
    assert_eq!(
        (d.method, d.reason.code()),
        (Method::ZeroCopy, ReasonCode::CostAnalysis)
    );
    assert_eq!(c.threshold_history().len(), 1);
}
