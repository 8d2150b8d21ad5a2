//! Histograms with fixed buckets in atomics: one observation is two relaxed atomic additions.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds of the transfer, queue and reply duration buckets, in nanoseconds (10 µs to 30 s).
pub(crate) const DURATION_BOUNDS_NS: &[u64] = &[
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
];

/// Upper bounds of the decision duration buckets, in nanoseconds (100 ns to 1 ms).
pub(crate) const DECISION_BOUNDS_NS: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];

/// Nanoseconds per second: values are kept in nanoseconds and exported in seconds.
pub(crate) const NS_PER_SEC: f64 = 1e9;

/// A family of histogram series with the same buckets; per series and bucket, the count of
/// observations and the sum of their values (so an exporter can replay a bucket's mean).
#[derive(Debug)]
pub(crate) struct AtomicHistogram {
    bounds: &'static [u64],
    counts: Box<[AtomicU64]>,
    sums: Box<[AtomicU64]>,
}

/// What one series holds at one moment: per bucket (the last is `+Inf`), count and sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeriesSnapshot {
    pub(crate) counts: Vec<u64>,
    pub(crate) sums: Vec<u64>,
}

impl SeriesSnapshot {
    /// Observations in all buckets.
    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// This series and `other` (of the same buckets) together.
    pub(crate) fn merged(&self, other: &SeriesSnapshot) -> SeriesSnapshot {
        let add = |a: &[u64], b: &[u64]| a.iter().zip(b).map(|(x, y)| x.wrapping_add(*y)).collect();
        SeriesSnapshot {
            counts: add(&self.counts, &other.counts),
            sums: add(&self.sums, &other.sums),
        }
    }

    /// The sum of all observations.
    pub(crate) fn sum(&self) -> u64 {
        self.sums.iter().fold(0u64, |a, b| a.wrapping_add(*b))
    }
}

impl AtomicHistogram {
    /// `series` series over buckets with upper bounds `bounds` (ascending) and `+Inf`.
    pub(crate) fn new(bounds: &'static [u64], series: usize) -> AtomicHistogram {
        let n = series * (bounds.len() + 1);
        AtomicHistogram {
            bounds,
            counts: (0..n).map(|_| AtomicU64::new(0)).collect(),
            sums: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The index of the bucket that takes `value`: the first whose bound is at least `value`
    /// (bounds are inclusive, as Prometheus' `le` and OpenTelemetry's explicit buckets are).
    #[inline]
    pub(crate) fn bucket(&self, value: u64) -> usize {
        self.bounds.partition_point(|&b| b < value)
    }

    /// Adds one observation of `value` to `series`.
    #[inline]
    pub(crate) fn observe(&self, series: usize, value: u64) {
        let i = series * (self.bounds.len() + 1) + self.bucket(value);
        self.counts[i].fetch_add(1, Relaxed);
        self.sums[i].fetch_add(value, Relaxed);
    }

    /// The current counts and sums of `series`, or `None` when it has no observation.
    pub(crate) fn series(&self, series: usize) -> Option<SeriesSnapshot> {
        let width = self.bounds.len() + 1;
        let range = series * width..(series + 1) * width;
        let counts: Vec<u64> = self.counts[range.clone()]
            .iter()
            .map(|c| c.load(Relaxed))
            .collect();
        if counts.iter().all(|&c| c == 0) {
            return None;
        }
        let sums = self.sums[range].iter().map(|s| s.load(Relaxed)).collect();
        Some(SeriesSnapshot { counts, sums })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observation_lands_in_the_first_bucket_whose_bound_holds_it() {
        let h = AtomicHistogram::new(DURATION_BOUNDS_NS, 3);
        h.observe(1, 0);
        h.observe(1, 10_000);
        h.observe(1, 10_001);
        h.observe(1, u64::MAX / 2);
        assert_eq!(h.series(0), None, "other series untouched");
        assert_eq!(h.series(2), None);
        let s = h.series(1).unwrap();
        assert_eq!(s.counts.len(), DURATION_BOUNDS_NS.len() + 1);
        assert_eq!(
            (s.counts[0], s.counts[1]),
            (2, 1),
            "10 µs is in the 10 µs bucket"
        );
        assert_eq!(s.counts[DURATION_BOUNDS_NS.len()], 1, "past 30 s is +Inf");
        assert_eq!(s.count(), 4);
        assert_eq!(s.sums[0], 10_000);
        assert_eq!(s.sum(), 10_000 + 10_001 + u64::MAX / 2);
    }

    #[test]
    fn bounds_ascend_strictly() {
        for bounds in [DURATION_BOUNDS_NS, DECISION_BOUNDS_NS] {
            assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
        }
    }
}
