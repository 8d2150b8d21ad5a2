//! Empirical quantiles (Hyndman-Fan type 7) and the bounded window of residuals they read.

use serde::{Deserialize, Serialize};

/// How many recent residuals a model keeps for its intervals.
pub const RESIDUAL_WINDOW: usize = 256;

/// The `p` quantile of `sorted` (ascending, not empty) by linear interpolation
/// between order statistics: Hyndman and Fan's type 7, R's default
/// `quantile(x, p)` and numpy's default `np.quantile(x, p)`.
///
/// `p` is clamped to 0..=1; an empty slice gives NaN.
pub fn quantile_sorted(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let h = (n - 1) as f64 * p.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// The last [`RESIDUAL_WINDOW`] relative residuals `(measured - predicted) / predicted`
/// of one model, in a fixed ring: no allocation after construction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResidualWindow {
    values: Vec<f64>,
    next: usize,
}

impl Default for ResidualWindow {
    fn default() -> Self {
        ResidualWindow {
            values: Vec::with_capacity(RESIDUAL_WINDOW),
            next: 0,
        }
    }
}

impl ResidualWindow {
    /// Adds one residual, dropping the oldest when full; non-finite values are ignored.
    pub fn push(&mut self, r: f64) {
        if !r.is_finite() {
            return;
        }
        if self.values.len() < RESIDUAL_WINDOW {
            self.values.push(r);
        } else {
            self.values[self.next] = r;
        }
        self.next = (self.next + 1) % RESIDUAL_WINDOW;
    }

    /// How many residuals the window holds.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Checks a window read from outside (a saved model): at most
    /// [`RESIDUAL_WINDOW`] finite values and a consistent ring position; then
    /// reserves the full window so that later pushes do not allocate.
    pub(crate) fn check(&mut self) -> Result<(), String> {
        let n = self.values.len();
        if n > RESIDUAL_WINDOW {
            return Err(format!("{n} residuals, expected at most {RESIDUAL_WINDOW}"));
        }
        let next_ok = if n < RESIDUAL_WINDOW {
            self.next == n % RESIDUAL_WINDOW
        } else {
            self.next < RESIDUAL_WINDOW
        };
        if !next_ok {
            return Err(format!(
                "residual ring position {} with {n} residuals",
                self.next
            ));
        }
        if let Some(r) = self.values.iter().find(|r| !r.is_finite()) {
            return Err(format!("residual {r} is not finite"));
        }
        self.values.reserve_exact(RESIDUAL_WINDOW - n);
        Ok(())
    }

    /// The `lo` and `hi` quantiles of the residuals, sorted on the stack.
    pub fn quantiles(&self, lo: f64, hi: f64) -> Option<(f64, f64)> {
        if self.values.is_empty() {
            return None;
        }
        let mut buf = [0.0; RESIDUAL_WINDOW];
        let sorted = &mut buf[..self.values.len()];
        sorted.copy_from_slice(&self.values);
        sorted.sort_unstable_by(f64::total_cmp);
        Some((quantile_sorted(sorted, lo), quantile_sorted(sorted, hi)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values of type 7 quantiles.
    ///
    /// - R: `quantile(1:10, c(0.05, 0.5, 0.95))` gives 1.45, 5.5, 9.55, and
    ///   `quantile(1:4, 0.9)` gives 3.7 (R documentation, `?quantile`, type 7 default).
    /// - numpy: the `np.quantile` documentation example, `a = [[10, 7, 4], [3, 2, 1]]`,
    ///   gives 3.5 over all values and `[6.5, 4.5, 2.5]` along axis 0.
    #[test]
    fn matches_r_and_numpy() {
        let one_to_ten: Vec<f64> = (1..=10).map(f64::from).collect();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(quantile_sorted(&one_to_ten, 0.05), 1.45));
        assert!(close(quantile_sorted(&one_to_ten, 0.5), 5.5));
        assert!(close(quantile_sorted(&one_to_ten, 0.95), 9.55));
        assert!(close(quantile_sorted(&[1.0, 2.0, 3.0, 4.0], 0.9), 3.7));
        assert!(close(
            quantile_sorted(&[1.0, 2.0, 3.0, 4.0, 7.0, 10.0], 0.5),
            3.5
        ));
        for (col, want) in [([3.0, 10.0], 6.5), ([2.0, 7.0], 4.5), ([1.0, 4.0], 2.5)] {
            assert!(close(quantile_sorted(&col, 0.5), want));
        }
        assert!(close(quantile_sorted(&one_to_ten, 0.0), 1.0));
        assert!(close(quantile_sorted(&one_to_ten, 1.0), 10.0));
        assert!(quantile_sorted(&[], 0.5).is_nan());
    }

    #[test]
    fn window_keeps_the_most_recent_values() {
        let mut w = ResidualWindow::default();
        assert_eq!(w.quantiles(0.05, 0.95), None);
        for i in 0..(RESIDUAL_WINDOW + 100) {
            w.push(i as f64);
        }
        w.push(f64::NAN);
        assert_eq!(w.len(), RESIDUAL_WINDOW);
        let (lo, hi) = w.quantiles(0.0, 1.0).unwrap();
        assert_eq!((lo, hi), (100.0, (RESIDUAL_WINDOW + 99) as f64));
    }
}
