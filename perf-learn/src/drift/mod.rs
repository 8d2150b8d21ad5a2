//! Drift detection: the two-sample Kolmogorov–Smirnov test, a Page–Hinkley change detector and
//! a monitor that tells when one feature's recent values stop looking like its training values.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

mod kolmogorov;

pub use kolmogorov::kolmogorov_sf;

/// At most this many reference values are kept by [`FeatureDrift`].
pub const MAX_REFERENCE: usize = 2048;

/// The largest window [`FeatureDrift`] accepts.
pub const MAX_WINDOW: usize = 4096;

/// A parameter of a drift detector that is out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DriftError {
    /// The Page–Hinkley tolerance is negative or not finite.
    #[error("expected a finite delta of at least 0, got {0}")]
    Delta(f64),
    /// The Page–Hinkley threshold is not positive or not finite.
    #[error("expected a finite lambda above 0, got {0}")]
    Lambda(f64),
    /// The reference sample has no values.
    #[error("expected a reference sample with at least one value, got none")]
    EmptyReference,
    /// The reference sample holds a NaN.
    #[error("expected a reference sample without NaN, got a NaN at index {0}")]
    NanInReference(usize),
    /// The window is empty or larger than [`MAX_WINDOW`].
    #[error("expected a window of 1 to {MAX_WINDOW} values, got {0}")]
    Window(usize),
    /// The significance level is not strictly between 0 and 1.
    #[error("expected alpha strictly between 0 and 1, got {0}")]
    Alpha(f64),
}

/// The result of a two-sided two-sample Kolmogorov–Smirnov test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KsTest {
    /// `D = sup |F_a - F_b|`, the largest distance between the two empirical distribution
    /// functions, in `[0, 1]`.
    pub statistic: f64,
    /// The probability, if both samples came from one continuous distribution, of a statistic
    /// at least this large, in `[0, 1]`.
    pub p_value: f64,
    /// The size of the first sample.
    pub n: usize,
    /// The size of the second sample.
    pub m: usize,
}

/// The two-sided two-sample Kolmogorov–Smirnov test of `a` against `b`.
///
/// The statistic is exact, ties included: both empirical distribution functions are compared
/// after every distinct value, as `scipy.stats.ks_2samp` does, and comes out bit for bit the
/// same as scipy's.
///
/// The p-value is the one `scipy.stats.ks_2samp(a, b, method='asymp')` returns (scipy 1.17):
/// `scipy.stats.kstwo.sf(D, round(en))`, the exact distribution of the one-sample statistic for
/// `round(en)` values, with `en = n·m / (n + m)` and ties of the rounding going to even. See
/// [`kolmogorov_sf`] for how closely it agrees with scipy. This is not the classical
/// limit `Q_KS(√en · D)`. The one departure from scipy: for two samples of one value each
/// (`en = 0.5`, which rounds to 0) scipy returns NaN and this returns 1, the exact p-value.
///
/// Returns `None` when either sample is empty or holds a NaN. Infinities are ordinary values.
pub fn ks_two_sample(a: &[f64], b: &[f64]) -> Option<KsTest> {
    if a.is_empty() || b.is_empty() || a.iter().chain(b).any(|x| x.is_nan()) {
        return None;
    }
    let a = sorted(a);
    let b = sorted(b);
    Some(ks_sorted(&a, &b))
}

/// A streaming Page–Hinkley detector of a change in the mean of a series, such as a model's
/// prediction error.
///
/// With `x̄_t` the mean of the values seen so far (`x_t` included), it keeps
/// `m_t = Σ (x_i - x̄_i - delta)` and `M_t = min(0, m_1, …, m_t)`, and raises an alarm when
/// `m_t - M_t > lambda`: the series has risen by more than `delta` on average for long enough.
/// A two-sided detector ([`PageHinkley::two_sided`]) also watches the mirror statistic for a
/// fall. No alarm is raised before `min_samples` values; after an alarm the detector starts
/// afresh, as after [`PageHinkley::reset`]. Values that are not finite are ignored.
#[derive(Debug, Clone)]
pub struct PageHinkley {
    delta: f64,
    lambda: f64,
    min_samples: u64,
    two_sided: bool,
    samples: u64,
    mean: f64,
    rise: f64,
    rise_min: f64,
    fall: f64,
    fall_max: f64,
}

impl PageHinkley {
    /// A detector of increases of the mean by more than `delta`, alarming when the cumulative
    /// excess passes `lambda`, and never before `min_samples` values.
    pub fn new(delta: f64, lambda: f64, min_samples: u64) -> Result<PageHinkley, DriftError> {
        if !(delta.is_finite() && delta >= 0.0) {
            return Err(DriftError::Delta(delta));
        }
        if !(lambda.is_finite() && lambda > 0.0) {
            return Err(DriftError::Lambda(lambda));
        }
        Ok(PageHinkley {
            delta,
            lambda,
            min_samples,
            two_sided: false,
            samples: 0,
            mean: 0.0,
            rise: 0.0,
            rise_min: 0.0,
            fall: 0.0,
            fall_max: 0.0,
        })
    }

    /// Like [`PageHinkley::new`], but also alarms when the mean falls by more than `delta`.
    pub fn two_sided(delta: f64, lambda: f64, min_samples: u64) -> Result<PageHinkley, DriftError> {
        let mut it = PageHinkley::new(delta, lambda, min_samples)?;
        it.two_sided = true;
        Ok(it)
    }

    /// Takes the next value; true when it completes a change, after which the detector has
    /// been reset.
    pub fn update(&mut self, x: f64) -> bool {
        if !x.is_finite() {
            return false;
        }
        self.samples += 1;
        self.mean += (x - self.mean) / self.samples as f64;
        self.rise += x - self.mean - self.delta;
        self.rise_min = self.rise_min.min(self.rise);
        if self.two_sided {
            self.fall += x - self.mean + self.delta;
            self.fall_max = self.fall_max.max(self.fall);
        }
        let alarm = self.samples >= self.min_samples && self.statistic() > self.lambda;
        if alarm {
            self.reset();
        }
        alarm
    }

    /// Forgets every value seen, keeping the parameters.
    pub fn reset(&mut self) {
        self.samples = 0;
        self.mean = 0.0;
        self.rise = 0.0;
        self.rise_min = 0.0;
        self.fall = 0.0;
        self.fall_max = 0.0;
    }

    /// How many values were taken since the last reset or alarm.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The current Page–Hinkley statistic `m_t - M_t` (for a two-sided detector, the larger of
    /// it and its mirror), which an alarm needs above `lambda`.
    pub fn statistic(&self) -> f64 {
        let rise = self.rise - self.rise_min;
        if self.two_sided {
            rise.max(self.fall_max - self.fall)
        } else {
            rise
        }
    }
}

/// Whether one feature's recent values differ from its reference values, by a
/// Kolmogorov–Smirnov test over a sliding window.
///
/// Memory is bounded: at most [`MAX_REFERENCE`] reference values (a larger reference is thinned
/// to evenly spaced order statistics, which keeps its shape but makes the test a little more
/// conservative) and `window` recent values.
#[derive(Debug, Clone)]
pub struct FeatureDrift {
    reference: Vec<f64>,
    recent: VecDeque<f64>,
    window: usize,
    alpha: f64,
}

/// The verdict of [`FeatureDrift::check`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DriftCheck {
    /// The test of the reference (first sample) against the window (second sample).
    pub test: KsTest,
    /// True when the p-value is below the significance level.
    pub drifted: bool,
}

impl FeatureDrift {
    /// A monitor comparing the last `window` values pushed with `reference` at significance
    /// level `alpha`.
    pub fn new(reference: &[f64], window: usize, alpha: f64) -> Result<FeatureDrift, DriftError> {
        if reference.is_empty() {
            return Err(DriftError::EmptyReference);
        }
        if let Some(i) = reference.iter().position(|x| x.is_nan()) {
            return Err(DriftError::NanInReference(i));
        }
        if window == 0 || window > MAX_WINDOW {
            return Err(DriftError::Window(window));
        }
        if !(alpha > 0.0 && alpha < 1.0) {
            return Err(DriftError::Alpha(alpha));
        }
        let all = sorted(reference);
        let reference = if all.len() <= MAX_REFERENCE {
            all
        } else {
            // The midpoints of MAX_REFERENCE equal strata of the sorted values.
            let (len, cap) = (all.len() as u128, MAX_REFERENCE as u128);
            (0..cap)
                .map(|i| all[((2 * i + 1) * len / (2 * cap)) as usize])
                .collect()
        };
        Ok(FeatureDrift {
            reference,
            recent: VecDeque::with_capacity(window),
            window,
            alpha,
        })
    }

    /// Adds a recent value, dropping the oldest once the window is full. NaN is ignored.
    pub fn push(&mut self, x: f64) {
        if x.is_nan() {
            return;
        }
        if self.recent.len() == self.window {
            self.recent.pop_front();
        }
        self.recent.push_back(x);
    }

    /// How many recent values the window holds.
    pub fn len(&self) -> usize {
        self.recent.len()
    }

    /// True when no recent value was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }

    /// The reference values kept, sorted.
    pub fn reference(&self) -> &[f64] {
        &self.reference
    }

    /// Tests the window against the reference; `None` until the window is full.
    ///
    /// Each call is one test at level `alpha`; calling it after every push repeats nearly the
    /// same test many times, so callers should check about once per window or lower `alpha`.
    pub fn check(&self) -> Option<DriftCheck> {
        if self.recent.len() < self.window {
            return None;
        }
        let recent: Vec<f64> = self.recent.iter().copied().collect();
        let test = ks_sorted(&self.reference, &sorted(&recent));
        Some(DriftCheck {
            test,
            drifted: test.p_value < self.alpha,
        })
    }
}

/// A sorted copy of values that hold no NaN.
fn sorted(values: &[f64]) -> Vec<f64> {
    let mut out = values.to_vec();
    out.sort_unstable_by(f64::total_cmp);
    out
}

/// The test on two sorted, non-empty samples without NaN.
fn ks_sorted(a: &[f64], b: &[f64]) -> KsTest {
    let (n, m) = (a.len(), b.len());
    let (nf, mf) = (n as f64, m as f64);
    let (mut i, mut j) = (0, 0);
    let mut statistic: f64 = 0.0;
    // After one sample is used up the distance only shrinks, so stop there.
    while i < n && j < m {
        let v = a[i].min(b[j]);
        while i < n && a[i] <= v {
            i += 1;
        }
        while j < m && b[j] <= v {
            j += 1;
        }
        statistic = statistic.max((i as f64 / nf - j as f64 / mf).abs());
    }
    let (big, small) = (nf.max(mf), nf.min(mf));
    let en = big * small / (big + small);
    // Two samples of one value each round to an effective size of 0; D is then 1 with
    // probability 1, so the exact p-value is 1.
    let p_value = match en.round_ties_even() as usize {
        0 => 1.0,
        rounded => kolmogorov_sf(rounded, statistic),
    };
    KsTest {
        statistic,
        p_value,
        n,
        m,
    }
}
