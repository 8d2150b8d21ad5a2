//! A/A simulation: 1,000 experiments whose variants draw from the same skewed latency
//! distribution, looked at after every 1,000 samples per variant up to 10,000.
//!
//! The sequential test must keep its false-positive rate (any look significant) at most
//! alpha plus three binomial standard deviations; the fixed-horizon test looked at on every
//! look must be shown to exceed that bound; the fixed-horizon test evaluated only at its
//! horizon must stay within it. The measured rates are printed to stderr.

use perf_abtest::stats::{
    HorizonOutcome, SequentialConfig, Summary, fixed_horizon_test, sequential_test, welch_test,
};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_distr::{Distribution, LogNormal};

const EXPERIMENTS: u64 = 1_000;
const LOOK_EVERY: u64 = 1_000;
const HORIZON: u64 = 10_000;
const ALPHA: f64 = 0.05;

#[test]
fn sequential_testing_keeps_the_false_positive_rate_under_peeking() {
    // Latencies in microseconds: log-normal with median 100 us and a long right tail
    // (sigma = 1: mean 165 us, p99 about 1,000 us).
    let latency = LogNormal::new(100f64.ln(), 1.0).expect("valid parameters");
    let config = SequentialConfig {
        alpha: ALPHA,
        ..SequentialConfig::default()
    };
    let mut sequential_hits = 0u64;
    let mut peeking_hits = 0u64;
    let mut horizon_hits = 0u64;
    for experiment in 0..EXPERIMENTS {
        // rand 0.8's SmallRng (Xoshiro256++ on 64-bit targets), fast enough in a debug
        // build; its stream is fixed by the version Cargo.lock pins.
        let mut rng = SmallRng::seed_from_u64(0xaa00_0000 + experiment);
        let mut control = Summary::new();
        let mut treatment = Summary::new();
        let mut sequential_fired = false;
        let mut peeking_fired = false;
        while control.n < HORIZON {
            for _ in 0..LOOK_EVERY {
                control.push(latency.sample(&mut rng));
                treatment.push(latency.sample(&mut rng));
            }
            let seq = sequential_test(&control, &treatment, config).expect("valid summaries");
            sequential_fired |= seq.absolute.p_value < ALPHA;
            let peek = welch_test(&control, &treatment, ALPHA).expect("valid summaries");
            peeking_fired |= peek.absolute.p_value < ALPHA;
            match fixed_horizon_test(&control, &treatment, HORIZON, ALPHA).expect("valid summaries")
            {
                HorizonOutcome::NotYet { .. } => assert!(control.n < HORIZON),
                HorizonOutcome::Ready(res) => {
                    assert_eq!(control.n, HORIZON);
                    horizon_hits += u64::from(res.absolute.p_value < ALPHA);
                }
            }
        }
        sequential_hits += u64::from(sequential_fired);
        peeking_hits += u64::from(peeking_fired);
    }
    let rate = |hits: u64| hits as f64 / EXPERIMENTS as f64;
    let bound = ALPHA + 3.0 * (ALPHA * (1.0 - ALPHA) / EXPERIMENTS as f64).sqrt();
    eprintln!(
        "A/A over {EXPERIMENTS} experiments, {} looks each, alpha {ALPHA}, bound {bound:.4}: \
         sequential (any look) {:.3}, fixed peeked at every look {:.3}, fixed at the horizon {:.3}",
        HORIZON / LOOK_EVERY,
        rate(sequential_hits),
        rate(peeking_hits),
        rate(horizon_hits),
    );
    assert!(
        rate(sequential_hits) <= bound,
        "sequential {}",
        rate(sequential_hits)
    );
    assert!(rate(peeking_hits) > bound, "peeking {}", rate(peeking_hits));
    assert!(
        rate(horizon_hits) <= bound,
        "horizon {}",
        rate(horizon_hits)
    );
}
