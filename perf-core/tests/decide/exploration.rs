//! Exploration: only inside the band around the threshold, at the configured rate, clipped
//! to floor and ceiling, and reproducible from the seed.

use perf_core::ZeroCopyAvailability::Pooled;
use perf_core::config::PoolSettings;
use perf_core::{Controller, Name, Reason, ReasonCode, SystemState, TransferRequest};

use crate::support::{BUSY_CPU, GIB, IDLE, KIB, MIB, config_with, ctx, idle};

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
