//! The measured crossover of paired samples ([`perf_core::crossover`]), and what a threshold
//! set there would save.

use perf_core::Method;
use perf_core::crossover::Measured;
use serde::{Deserialize, Serialize};

use crate::dataset::PairedSample;

/// The size from which zero-copy should carry a pool's transfers, measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Crossover {
    /// The size from which zero-copy keeps winning in the samples
    /// ([`perf_core::crossover::crossover`]), bytes.
    pub crossover: u64,
    /// Latency saved over the samples by a threshold at `crossover` (gRPC below it, zero-copy
    /// from it on) against one at `current`, as a fraction of the latter's total; negative
    /// when it would cost more.
    pub expected_gain: f64,
}

/// The crossover of `samples`, each pair counting as one latency of each method at its size,
/// and its gain over a threshold at `current`; `None` when there is none
/// (zero-copy does not win at the largest size, or there are no samples).
pub fn crossover(samples: &[PairedSample], current: u64) -> Option<Crossover> {
    let measured = samples.iter().flat_map(|s| {
        [
            Measured::new(s.size, Method::Grpc, s.grpc_us),
            Measured::new(s.size, Method::ZeroCopy, s.zero_copy_us),
        ]
    });
    let at = perf_core::crossover::crossover(measured)?;
    let total = |threshold: u64| -> f64 {
        samples
            .iter()
            .map(|s| {
                if s.size < threshold {
                    s.grpc_us
                } else {
                    s.zero_copy_us
                }
            })
            .sum()
    };
    let now = total(current);
    Some(Crossover {
        crossover: at,
        expected_gain: if now > 0.0 {
            (now - total(at)) / now
        } else {
            0.0
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{Physics, Workload};

    #[test]
    fn the_gain_is_what_moving_the_threshold_saves_over_the_samples() {
        let mut w = Workload::new(Physics::default(), 3);
        w.physics.noise = 0.0;
        let pairs = w.pairs(500);
        let c = crossover(&pairs, 10 << 20).unwrap();
        let total = |t: u64| -> f64 {
            pairs
                .iter()
                .map(|s| {
                    if s.size < t {
                        s.grpc_us
                    } else {
                        s.zero_copy_us
                    }
                })
                .sum()
        };
        let expected = (total(10 << 20) - total(c.crossover)) / total(10 << 20);
        assert!((c.expected_gain - expected).abs() < 1e-12, "{c:?}");
        assert!(c.expected_gain > 0.0, "{c:?}");
        // Already at the crossover: nothing to gain.
        let there = crossover(&pairs, c.crossover).unwrap();
        assert_eq!(there.expected_gain, 0.0);
        // From a threshold far below it, moving up saves latency too.
        assert!(crossover(&pairs, 1).unwrap().expected_gain > 0.0);
    }
}
