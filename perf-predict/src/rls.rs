//! Recursive least squares with a forgetting factor, relative weighting and a guarded covariance.

use serde::{Deserialize, Serialize};

/// How many features a cost model has: fixed, cached per-MiB and bulk per-MiB.
pub const FEATURES: usize = 3;

/// The prior variance of each coefficient: wide enough that a few samples
/// override the zero start, small enough to stay far from overflow.
const PRIOR_VARIANCE: f64 = 1e12;

/// The covariance trace never exceeds this, so that directions the data does
/// not excite cannot wind up under forgetting.
const MAX_TRACE: f64 = FEATURES as f64 * PRIOR_VARIANCE;

/// An online linear fit `y ~ theta . x` that minimises the exponentially
/// forgotten sum of squared *relative* errors, `sum lambda^(n-i) ((y_i - theta . x_i) / s_i)^2`.
///
/// Dividing each row by its scale `s_i` (the measured value, floored) makes a
/// 1 KiB transfer and a 1 GiB one count alike, which keeps the fit sound over
/// six orders of magnitude. One update is O(1): a few dozen flops on a 3x3
/// matrix. The covariance is kept symmetric, its trace bounded, and it is
/// reset to the prior if it ever stops being positive or finite.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rls {
    theta: [f64; FEATURES],
    p: [[f64; FEATURES]; FEATURES],
    lambda: f64,
    n: u64,
    resets: u64,
}

impl Rls {
    /// A fit with all coefficients at zero and forgetting factor `lambda` (0.9 to 1.0).
    pub fn new(lambda: f64) -> Rls {
        Rls {
            theta: [0.0; FEATURES],
            p: prior(),
            lambda,
            n: 0,
            resets: 0,
        }
    }

    /// The fitted coefficients.
    pub fn coefficients(&self) -> [f64; FEATURES] {
        self.theta
    }

    /// How many rows were fitted.
    pub fn samples(&self) -> u64 {
        self.n
    }

    /// How many times the covariance had to be reset to the prior.
    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// The fitted value at `x`.
    pub fn predict(&self, x: &[f64; FEATURES]) -> f64 {
        dot(&self.theta, x)
    }

    /// Fits one row `(x, y)` weighted by `1 / scale^2`; rows with a
    /// non-finite value or a scale that is not positive are ignored.
    pub fn update(&mut self, x: &[f64; FEATURES], y: f64, scale: f64) {
        if !(y.is_finite() && scale.is_finite() && scale > 0.0 && x.iter().all(|v| v.is_finite())) {
            return;
        }
        let z: [f64; FEATURES] = std::array::from_fn(|i| x[i] / scale);
        let target = y / scale;
        let pz: [f64; FEATURES] = std::array::from_fn(|i| dot(&self.p[i], &z));
        let denom = self.lambda + dot(&z, &pz);
        if !(denom.is_finite() && denom > 0.0) {
            self.reset();
            return;
        }
        let gain: [f64; FEATURES] = std::array::from_fn(|i| pz[i] / denom);
        let err = target - dot(&self.theta, &z);
        for (t, g) in self.theta.iter_mut().zip(gain) {
            *t += g * err;
        }
        for (row, g) in self.p.iter_mut().zip(gain) {
            for (v, pzj) in row.iter_mut().zip(pz) {
                *v = (*v - g * pzj) / self.lambda;
            }
        }
        self.n += 1;
        self.guard();
    }

    /// Uses forgetting factor `lambda` (0.9 to 1.0) from now on.
    pub(crate) fn set_forgetting(&mut self, lambda: f64) {
        self.lambda = lambda;
    }

    /// Checks a fit read from outside (a saved model): finite coefficients, a
    /// finite, symmetric covariance with a positive diagonal and a bounded
    /// trace, and a forgetting factor in range.
    pub(crate) fn check(&self) -> Result<(), String> {
        if let Some(t) = self.theta.iter().find(|t| !t.is_finite()) {
            return Err(format!("coefficient {t} is not finite"));
        }
        if !(0.9..=1.0).contains(&self.lambda) {
            return Err(format!(
                "forgetting factor {}, expected 0.9 to 1.0",
                self.lambda
            ));
        }
        let mut trace = 0.0;
        for i in 0..FEATURES {
            if !(self.p[i][i].is_finite() && self.p[i][i] > 0.0) {
                return Err(format!(
                    "covariance diagonal {} is not finite and positive",
                    self.p[i][i]
                ));
            }
            trace += self.p[i][i];
            for j in 0..FEATURES {
                if !self.p[i][j].is_finite() || self.p[i][j] != self.p[j][i] {
                    return Err("covariance is not finite and symmetric".to_string());
                }
            }
        }
        if trace > MAX_TRACE * (1.0 + 1e-9) {
            return Err(format!("covariance trace {trace} is above {MAX_TRACE}"));
        }
        Ok(())
    }

    /// Keeps the covariance symmetric, bounded and positive.
    fn guard(&mut self) {
        for i in 0..FEATURES {
            for j in (i + 1)..FEATURES {
                let m = 0.5 * (self.p[i][j] + self.p[j][i]);
                self.p[i][j] = m;
                self.p[j][i] = m;
            }
        }
        let healthy = self.theta.iter().all(|t| t.is_finite())
            && (0..FEATURES).all(|i| self.p[i][i].is_finite() && self.p[i][i] > 0.0);
        if !healthy {
            self.reset();
            return;
        }
        let trace: f64 = (0..FEATURES).map(|i| self.p[i][i]).sum();
        if trace > MAX_TRACE {
            let k = MAX_TRACE / trace;
            for row in &mut self.p {
                for v in row {
                    *v *= k;
                }
            }
        }
    }

    /// Back to the prior covariance; finite coefficients are kept as the new start.
    fn reset(&mut self) {
        if !self.theta.iter().all(|t| t.is_finite()) {
            self.theta = [0.0; FEATURES];
        }
        self.p = prior();
        self.resets += 1;
    }
}

fn prior() -> [[f64; FEATURES]; FEATURES] {
    std::array::from_fn(|i| std::array::from_fn(|j| if i == j { PRIOR_VARIANCE } else { 0.0 }))
}

fn dot(a: &[f64; FEATURES], b: &[f64; FEATURES]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(mib: f64) -> [f64; FEATURES] {
        [1.0, mib.min(2.0), (mib - 2.0).max(0.0)]
    }

    #[test]
    fn recovers_exact_coefficients_from_1_kib_to_1_gib() {
        let truth = [80.0, 350.0, 1100.0];
        let mut fit = Rls::new(1.0);
        for i in 0..200 {
            // Sizes cycle over 2^10 .. 2^30 bytes.
            let mib = (1u64 << (10 + i % 21)) as f64 / (1 << 20) as f64;
            let x = row(mib);
            let y = dot(&truth, &x);
            fit.update(&x, y, y);
        }
        for (got, want) in fit.coefficients().iter().zip(truth) {
            assert!((got - want).abs() / want < 1e-6, "{got} vs {want}");
        }
        assert_eq!(fit.resets(), 0);
    }

    #[test]
    fn forgetting_follows_a_changed_machine() {
        let mut fit = Rls::new(0.98);
        for (truth, n) in [([100.0, 300.0, 1000.0], 300), ([50.0, 600.0, 2000.0], 300)] {
            for i in 0..n {
                let mib = (1u64 << (10 + i % 21)) as f64 / (1 << 20) as f64;
                let x = row(mib);
                let y = dot(&truth, &x);
                fit.update(&x, y, y);
            }
        }
        let c = fit.coefficients();
        assert!(
            (c[0] - 50.0).abs() < 0.5 && (c[2] - 2000.0).abs() < 20.0,
            "{c:?}"
        );
    }

    #[test]
    fn unexcited_directions_stay_bounded_and_bad_rows_are_ignored() {
        let mut fit = Rls::new(0.95);
        for _ in 0..10_000 {
            // Only 1 KiB rows: the per-MiB directions are never excited.
            let x = row(1.0 / 1024.0);
            fit.update(&x, 90.0, 90.0);
        }
        let trace: f64 = (0..FEATURES).map(|i| fit.p[i][i]).sum();
        assert!(trace <= MAX_TRACE * (1.0 + 1e-9) && trace.is_finite());
        assert!((fit.predict(&row(1.0 / 1024.0)) - 90.0).abs() < 1e-6);
        let before = fit;
        fit.update(&row(1.0), f64::NAN, 1.0);
        fit.update(&row(1.0), 1.0, 0.0);
        fit.update(&[f64::INFINITY, 0.0, 0.0], 1.0, 1.0);
        assert_eq!(fit, before);
    }
}
