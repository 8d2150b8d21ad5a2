//! Per-size-class corrections of a cost model: a factor learned from its recent residuals, used only while it proves better out of sample.

use serde::{Deserialize, Serialize};

use crate::eval::ACCURATE_WITHIN;
use crate::quantile::quantile_sorted;

/// How many recent ratios of measured to modelled latency a size class keeps.
pub const CORRECTION_WINDOW: usize = 32;

/// Ratios a class needs before its correction is tried.
const MIN_RATIOS: usize = 8;

/// The weight of the newest comparison in a correction's score (about the last 16 count).
const SCORE_WEIGHT: f64 = 1.0 / 16.0;

/// The correction of one size class: the median of the last
/// [`CORRECTION_WINDOW`] ratios of measured to modelled latency.
///
/// Before each ratio is added, the correction that was in force and the bare
/// model both predicted that transfer without having seen it; the score is a
/// moving average of "corrected within 15 %" minus "bare within 15 %", and the
/// correction is applied only while that score is positive, i.e. only where it
/// measurably helps on data it was not fitted to. O(1) per update, no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct ClassCorrection {
    /// Natural logs of measured over modelled latency, a ring.
    log_ratios: [f64; CORRECTION_WINDOW],
    len: usize,
    next: usize,
    /// `exp(median(log_ratios))` once [`MIN_RATIOS`] are known, else 1.
    factor: f64,
    /// Moving average of (corrected within 15 %) - (bare within 15 %), -1 to 1.
    score: f64,
}

impl Default for ClassCorrection {
    fn default() -> Self {
        ClassCorrection {
            log_ratios: [0.0; CORRECTION_WINDOW],
            len: 0,
            next: 0,
            factor: 1.0,
            score: 0.0,
        }
    }
}

impl ClassCorrection {
    /// The factor to multiply the model's latency by: 1 unless the correction
    /// has proved better than the bare model.
    pub(crate) fn factor(&self) -> f64 {
        if self.score > 0.0 { self.factor } else { 1.0 }
    }

    /// Learns from one transfer whose bare model latency was `modelled` (taken
    /// before the model learns from it) and whose measured latency was `measured`.
    pub(crate) fn observe(&mut self, modelled: f64, measured: f64) {
        if !(modelled > 0.0 && measured > 0.0 && modelled.is_finite() && measured.is_finite()) {
            return;
        }
        if self.len >= MIN_RATIOS {
            let hit =
                |p: f64| f64::from(u8::from((measured - p).abs() <= ACCURATE_WITHIN * measured));
            let gain = hit(modelled * self.factor) - hit(modelled);
            self.score += SCORE_WEIGHT * (gain - self.score);
        }
        self.log_ratios[self.next] = (measured / modelled).ln();
        self.next = (self.next + 1) % CORRECTION_WINDOW;
        self.len = (self.len + 1).min(CORRECTION_WINDOW);
        if self.len >= MIN_RATIOS {
            let mut sorted = self.log_ratios;
            let sorted = &mut sorted[..self.len];
            sorted.sort_unstable_by(f64::total_cmp);
            self.factor = quantile_sorted(sorted, 0.5).exp();
        }
    }

    /// Checks a correction read from outside (a saved model).
    pub(crate) fn check(&self) -> Result<(), String> {
        let ring_ok = self.len <= CORRECTION_WINDOW
            && self.next < CORRECTION_WINDOW
            && (self.len == CORRECTION_WINDOW || self.next == self.len);
        if !ring_ok {
            return Err(format!(
                "correction ring position {} with {} ratios",
                self.next, self.len
            ));
        }
        if self.log_ratios.iter().any(|r| !r.is_finite()) {
            return Err("a correction ratio is not finite".to_string());
        }
        if !(self.factor.is_finite() && self.factor > 0.0) {
            return Err(format!("correction factor {} is not positive", self.factor));
        }
        if !(-1.0..=1.0).contains(&self.score) {
            return Err(format!("correction score {}, expected -1 to 1", self.score));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consistent_bias_is_learned_and_applied_once_it_helps() {
        let mut c = ClassCorrection::default();
        // The model says 100, the truth is 130 every time.
        for _ in 0..(MIN_RATIOS - 1) {
            c.observe(100.0, 130.0);
        }
        assert_eq!(c.factor(), 1.0, "too few ratios");
        c.observe(100.0, 130.0);
        assert!((c.factor - 1.3).abs() < 1e-12);
        assert_eq!(c.factor(), 1.0, "not yet proved");
        c.observe(100.0, 130.0);
        assert!(c.score > 0.0);
        assert!((c.factor() - 1.3).abs() < 1e-12);
    }

    #[test]
    fn a_correction_that_does_not_help_is_not_applied() {
        let mut c = ClassCorrection::default();
        // Half the transfers at the model's 100, half at 300: the median
        // ratio, the square root of 3, misses both, while the bare model hits
        // half of them; the score never turns positive.
        for i in 0..200 {
            let measured = if i % 2 == 0 { 100.0 } else { 300.0 };
            c.observe(100.0, measured);
            assert!(c.score <= 0.0, "{c:?}");
        }
        assert_eq!(c.factor(), 1.0);
        assert!(c.check().is_ok());
    }

    /// Golden values from R: `median(0:9)` is 4.5 and `median(28:59)` is 43.5.
    #[test]
    fn the_factor_is_the_median_of_the_last_ratios() {
        let mut c = ClassCorrection::default();
        // Log ratios 0 .. 9.
        for i in 0..10 {
            c.observe(1.0, f64::from(i).exp());
        }
        assert!((c.factor.ln() - 4.5).abs() < 1e-12, "{}", c.factor.ln());
        // Log ratios 20 .. 59: the window keeps the last 32, 28 .. 59.
        for i in 20..60 {
            c.observe(1.0, f64::from(i).exp());
        }
        assert!((c.factor.ln() - 43.5).abs() < 1e-9, "{}", c.factor.ln());
        assert!(c.check().is_ok());
    }
}
