//! Streaming per-variant summaries: count, mean and sample variance.

use serde::{Deserialize, Serialize};

/// The count, mean and sample variance (divisor `n - 1`) of a variant's observations, kept
/// by Welford's streaming update so that no sample is stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The number of observations.
    pub n: u64,
    /// Their mean (0 when there are none).
    pub mean: f64,
    /// Their sample variance with divisor `n - 1` (0 below two observations).
    pub variance: f64,
}

impl Summary {
    /// An empty summary.
    pub fn new() -> Self {
        Self::default()
    }

    /// The summary of `values`.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut it = Self::new();
        for x in values {
            it.push(x);
        }
        it
    }

    /// The sum of squared deviations from the mean.
    fn m2(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            // Counts are far below 2^53, so the conversion is exact.
            self.variance * (self.n - 1) as f64
        }
    }

    fn set_m2(&mut self, m2: f64) {
        self.variance = if self.n < 2 {
            0.0
        } else {
            m2 / (self.n - 1) as f64
        };
    }

    /// Adds one observation.
    pub fn push(&mut self, x: f64) {
        let m2 = self.m2();
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.set_m2(m2 + delta * (x - self.mean));
    }

    /// Adds all observations of `other` (Chan et al.'s pairwise update), as if they had been
    /// pushed here.
    pub fn merge(&mut self, other: &Summary) {
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *other;
            return;
        }
        let (n_a, n_b) = (self.n as f64, other.n as f64);
        let n = n_a + n_b;
        let delta = other.mean - self.mean;
        let m2 = self.m2() + other.m2() + delta * delta * n_a * n_b / n;
        self.mean += delta * n_b / n;
        self.n += other.n;
        self.set_m2(m2);
    }

    /// The standard error of the mean, `sqrt(variance / n)` (0 when empty).
    pub fn std_error(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            (self.variance / self.n as f64).sqrt()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_gives_the_two_pass_mean_and_variance() {
        let xs = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        let s = Summary::of(xs);
        assert_eq!(s.n, 8);
        assert!((s.mean - 5.0).abs() < 1e-15);
        // Sum of squared deviations 32, divided by n - 1 = 7.
        assert!((s.variance - 32.0 / 7.0).abs() < 1e-14);
    }

    #[test]
    fn merge_equals_pushing_everything() {
        let xs: Vec<f64> = (0..1000)
            .map(|i| ((i * 7919) % 1013) as f64 * 0.37)
            .collect();
        let whole = Summary::of(xs.iter().copied());
        let mut left = Summary::of(xs[..313].iter().copied());
        left.merge(&Summary::of(xs[313..].iter().copied()));
        assert_eq!(left.n, whole.n);
        assert!((left.mean - whole.mean).abs() < 1e-12 * whole.mean.abs());
        assert!((left.variance - whole.variance).abs() < 1e-10 * whole.variance);
        let mut empty = Summary::new();
        empty.merge(&whole);
        assert_eq!(empty, whole);
        empty.merge(&Summary::new());
        assert_eq!(empty, whole);
    }

    #[test]
    fn small_summaries_have_zero_variance() {
        assert_eq!(Summary::new().std_error(), 0.0);
        let one = Summary::of([3.0]);
        assert_eq!((one.n, one.mean, one.variance), (1, 3.0, 0.0));
    }
}
