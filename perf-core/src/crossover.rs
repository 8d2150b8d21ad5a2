//! The crossover: the payload size from which zero-copy keeps beating gRPC, read from latencies
//! measured with both methods.
//!
//! This is the one definition every part of perfopt reports and acts on: `perfopt bench` and
//! `perfopt model collect` print it, and the learning engine moves pool thresholds toward it.
//!
//! **Definition.** Group the measured latencies by payload size. At one size zero-copy *wins*
//! when the median of its latencies there is strictly below the median of gRPC's. The
//! crossover is the smallest measured size from which zero-copy wins at that size and at every
//! larger measured size. There is none when zero-copy does not win at the largest size that
//! both methods were measured at.
//!
//! **Noise.** Medians, not means, so that one slow transfer (a page fault storm, a preempted
//! thread) does not decide a size; a tie is no win; a size where only one method was measured
//! says nothing and is skipped; a latency that is not a finite number is left out; and a win
//! below a loss does not count, since a threshold set there would send the sizes in between
//! the slower way.

use std::collections::BTreeMap;

use crate::vocab::Method;

/// One latency measured for one transfer: its payload size, the method that carried it, and
/// how long it took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// Payload bytes.
    pub size: u64,
    /// How it travelled.
    pub method: Method,
    /// Its latency, in microseconds (any unit works, as long as all are the same).
    pub latency_us: f64,
}

impl Measured {
    /// A latency of `method` at `size` bytes.
    pub fn new(size: u64, method: Method, latency_us: f64) -> Measured {
        Measured {
            size,
            method,
            latency_us,
        }
    }
}

/// The crossover of `measured` (see the [module docs](self)): the smallest size from which
/// zero-copy's median latency is below gRPC's at that size and at every larger size measured by
/// both methods; `None` when zero-copy does not win at the largest such size, or when no size
/// was measured by both.
pub fn crossover(measured: impl IntoIterator<Item = Measured>) -> Option<u64> {
    let mut by_size: BTreeMap<u64, [Vec<f64>; 2]> = BTreeMap::new();
    for m in measured {
        if !m.latency_us.is_finite() {
            continue;
        }
        let slot = match m.method {
            Method::Grpc => 0,
            Method::ZeroCopy => 1,
        };
        by_size.entry(m.size).or_default()[slot].push(m.latency_us);
    }
    let mut from = None;
    for (&size, [grpc, zero_copy]) in by_size.iter_mut().rev() {
        let (Some(grpc), Some(zero_copy)) = (median(grpc), median(zero_copy)) else {
            continue;
        };
        if zero_copy < grpc {
            from = Some(size);
        } else {
            break;
        }
    }
    from
}

/// The median of `xs` (sorted in place): the middle value, or the mean of the two middle ones;
/// `None` when empty.
pub fn median(xs: &mut [f64]) -> Option<f64> {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(xs[n / 2]),
        _ => Some((xs[n / 2 - 1] + xs[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    /// One latency per method at each `(size, grpc, zero_copy)`.
    fn pairs(rows: &[(u64, f64, f64)]) -> Vec<Measured> {
        rows.iter()
            .flat_map(|&(size, g, z)| {
                [
                    Measured::new(size, Method::Grpc, g),
                    Measured::new(size, Method::ZeroCopy, z),
                ]
            })
            .collect()
    }

    #[test]
    fn the_crossover_is_where_zero_copy_keeps_winning() {
        // Faster at 2, slower at 4, faster from 8 on: the win at 2 does not count.
        let rows = [
            (1, 100.0, 120.0),
            (2, 110.0, 100.0),
            (4, 130.0, 140.0),
            (8, 170.0, 120.0),
            (16, 250.0, 130.0),
        ];
        assert_eq!(crossover(pairs(&rows)), Some(8));
        // Faster everywhere: the smallest size.
        let fast = [(1, 100.0, 50.0), (2, 110.0, 60.0), (16, 250.0, 90.0)];
        assert_eq!(crossover(pairs(&fast)), Some(1));
        // Slower at the largest size: none in range, whatever happens below it.
        let slow = [(1, 100.0, 50.0), (2, 110.0, 60.0), (16, 250.0, 300.0)];
        assert_eq!(crossover(pairs(&slow)), None);
        assert_eq!(crossover(Vec::new()), None);
    }

    #[test]
    fn each_size_is_decided_by_medians_so_one_outlier_does_not_decide_it() {
        let mut m = pairs(&[(4, 100.0, 90.0), (4, 100.0, 90.0), (8, 100.0, 80.0)]);
        // One zero-copy transfer at 4 took a thousand times longer: its median still wins.
        m.push(Measured::new(4, Method::ZeroCopy, 90_000.0));
        assert_eq!(crossover(m.clone()), Some(4));
        // A second one moves the median of four (90, 90, 90k, 90k) above gRPC's.
        m.push(Measured::new(4, Method::ZeroCopy, 90_000.0));
        assert_eq!(crossover(m), Some(8));
    }

    #[test]
    fn a_tie_is_no_win() {
        // At 2 the methods win one pair each: medians 100 and 105.
        let rows = [
            (1, 100.0, 90.0),
            (2, 100.0, 120.0),
            (2, 100.0, 90.0),
            (4, 100.0, 90.0),
        ];
        assert_eq!(crossover(pairs(&rows)), Some(4));
        assert_eq!(crossover(pairs(&[(4, 100.0, 100.0)])), None);
    }

    #[test]
    fn sizes_one_method_lacks_and_unusable_latencies_are_skipped() {
        let mut m = pairs(&[(4, 200.0, 100.0), (16, 250.0, 90.0)]);
        // Only zero-copy at 8 and a slow one only at 32: neither says anything.
        m.push(Measured::new(8, Method::ZeroCopy, 1e9));
        m.push(Measured::new(32, Method::ZeroCopy, 1e9));
        // A NaN latency at 16 would otherwise be compared.
        m.push(Measured::new(16, Method::ZeroCopy, f64::NAN));
        m.push(Measured::new(16, Method::ZeroCopy, f64::NAN));
        assert_eq!(crossover(m.clone()), Some(4));
        // The order of the measurements does not matter.
        m.reverse();
        assert_eq!(crossover(m), Some(4));
    }
}
