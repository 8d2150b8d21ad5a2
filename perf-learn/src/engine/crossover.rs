//! The measured crossover: the size threshold that minimises total latency over paired samples.

use serde::{Deserialize, Serialize};

use crate::dataset::PairedSample;

/// The size from which zero-copy should carry a pool's transfers, measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Crossover {
    /// The threshold that minimises total latency over the samples, bytes.
    pub crossover: u64,
    /// Latency saved against `current`, as a fraction of its total.
    pub expected_gain: f64,
}

/// The size threshold (gRPC below, zero-copy from it on) that minimises total
/// latency over `samples`, and its gain over `current`; `None` without samples.
pub fn crossover(samples: &[PairedSample], current: u64) -> Option<Crossover> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted: Vec<&PairedSample> = samples.iter().collect();
    sorted.sort_by_key(|s| s.size);
    let total = |t: u64| -> f64 {
        sorted
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
    // Every cut between two distinct sizes, plus "all zero-copy" and "all gRPC".
    let zc_total: f64 = sorted.iter().map(|s| s.zero_copy_us).sum();
    let (mut best_t, mut best) = (sorted[0].size, zc_total);
    let mut running = zc_total;
    for (i, s) in sorted.iter().enumerate() {
        running += s.grpc_us - s.zero_copy_us;
        let next = sorted
            .get(i + 1)
            .map_or(s.size.saturating_add(1), |n| n.size);
        if next != s.size && running < best {
            best = running;
            best_t = next;
        }
    }
    let now = total(current);
    Some(Crossover {
        crossover: best_t,
        expected_gain: if now > 0.0 { (now - best) / now } else { 0.0 },
    })
}
