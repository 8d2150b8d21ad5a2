//! One method's cost model for one pool: latency, CPU and memory fits, residuals and per-class counts.

use perf_core::TransferMetrics;
use serde::{Deserialize, Serialize};

use crate::correction::ClassCorrection;
use crate::error::PredictError;
use crate::quantile::ResidualWindow;
use crate::rls::{FEATURES, Rls};

const MIB: f64 = (1u64 << 20) as f64;

/// Size classes: one per factor of 4 from under 4 KiB (class 0) to 1 GiB and more (class 10).
pub const SIZE_CLASSES: usize = 11;

/// The size class of `size`: 0 below 4 KiB, then one per factor of 4, 10 from 1 GiB on.
pub fn size_class(size: u64) -> usize {
    let log2 = 63 - size.max(1024).leading_zeros() as usize;
    ((log2 - 10) / 2).min(SIZE_CLASSES - 1)
}

/// The smallest size in class `class`, in bytes.
pub fn class_floor(class: usize) -> u64 {
    if class == 0 { 0 } else { 1 << (10 + 2 * class) }
}

/// How models learn and when they are trusted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Forgetting factor of the fits, 0.9 to 1.0 (1.0 forgets nothing);
    /// 0.999 weighs roughly the last thousand transfers.
    pub forgetting: f64,
    /// Where the per-byte cost changes slope (bytes): below it a payload
    /// stays in cache (gRPC's `grpc_cache_bytes`, 2 MiB by default).
    pub knot_bytes: u64,
    /// A model is used for a size only after this many samples in its size class.
    pub min_class_samples: u64,
    /// Residuals a model needs before it gives intervals.
    pub min_residuals: usize,
    /// The coverage of prediction intervals, e.g. 0.90.
    pub interval: f64,
    /// A relative interval width (high minus low, over the estimate) at which
    /// confidence falls to zero.
    pub max_relative_width: f64,
    /// Whether latency corrections per size class and load band are applied
    /// (each only where it has predicted better than the bare fit); they are
    /// learned either way.
    pub corrections: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            forgetting: 0.999,
            knot_bytes: 2 << 20,
            min_class_samples: 20,
            min_residuals: 20,
            interval: 0.90,
            max_relative_width: 1.0,
            corrections: true,
        }
    }
}

impl ModelConfig {
    /// Checks every field, reporting the first that is out of range.
    pub fn validate(&self) -> Result<(), PredictError> {
        let bad = |field: &'static str, expected: &'static str, got: String| {
            Err(PredictError::InvalidConfig {
                field,
                expected,
                got,
            })
        };
        if !(0.9..=1.0).contains(&self.forgetting) {
            return bad("forgetting", "0.9 to 1.0", self.forgetting.to_string());
        }
        if !(4096..=1 << 40).contains(&self.knot_bytes) {
            return bad("knot_bytes", "4096 to 2^40", self.knot_bytes.to_string());
        }
        if !(1..=1_000_000).contains(&self.min_class_samples) {
            return bad(
                "min_class_samples",
                "1 to 1000000",
                self.min_class_samples.to_string(),
            );
        }
        if !(5..=crate::quantile::RESIDUAL_WINDOW).contains(&self.min_residuals) {
            return bad("min_residuals", "5 to 256", self.min_residuals.to_string());
        }
        if !(self.interval > 0.5 && self.interval < 1.0) {
            return bad(
                "interval",
                "above 0.5 and below 1.0",
                self.interval.to_string(),
            );
        }
        if !(self.max_relative_width > 0.0 && self.max_relative_width.is_finite()) {
            return bad(
                "max_relative_width",
                "a positive number",
                self.max_relative_width.to_string(),
            );
        }
        Ok(())
    }

    /// The physics basis of a size: a fixed cost, MiB moved at the cached
    /// rate (up to the knot), and MiB moved beyond it.
    pub fn features(&self, size: u64) -> [f64; FEATURES] {
        let knot = self.knot_bytes.min(size) as f64 / MIB;
        let bulk = size.saturating_sub(self.knot_bytes) as f64 / MIB;
        [1.0, knot, bulk]
    }
}

/// How many bands of CPU utilisation the latency corrections are kept for.
pub const LOAD_BANDS: usize = 4;

/// The band of a CPU utilisation: quarters, 0 below 25 % to 3 from 75 %;
/// unknown (not finite) counts as 0, beyond 0..=1 as the nearest end.
pub fn load_band(cpu_utilization: f64) -> usize {
    ((utilization(cpu_utilization) * LOAD_BANDS as f64) as usize).min(LOAD_BANDS - 1)
}

/// A CPU utilisation clamped to 0..=1; 0 when unknown (not finite).
fn utilization(u: f64) -> f64 {
    if u.is_finite() {
        u.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// The weight of the newest utilisation in a model's recent load.
const RECENT_LOAD_WEIGHT: f64 = 1.0 / 32.0;

/// Smallest scales of the relative weighting: 1 µs, 1 µs, 4 KiB.
const LATENCY_FLOOR_US: f64 = 1.0;
const CPU_FLOOR_US: f64 = 1.0;
const MEMORY_FLOOR_MIB: f64 = 4096.0 / MIB;

/// Fits one row with relative weighting. Once the fit has settled, rows are
/// scaled by its own prediction rather than the measurement, which keeps the
/// fit unbiased under multiplicative noise (weighting by the measurement
/// pulls it toward small values).
fn fit(rls: &mut Rls, x: &[f64; FEATURES], y: f64, floor: f64) {
    if rls.samples() as usize >= FEATURES * 3 {
        let p = rls.predict(x).max(floor);
        rls.update(x, y.min(p * SPIKE_RATIO), p);
    } else {
        rls.update(x, y, y.max(floor));
    }
}

/// A settled fit learns at most this many times its own prediction from one
/// row: a scheduling spike of 100x teaches as much as one of 2x.
const SPIKE_RATIO: f64 = 2.0;

/// The learned cost of one method for one pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodModel {
    latency: Rls,
    cpu: Rls,
    memory: Rls,
    /// A moving average of the CPU utilisation of recent transfers (0 to 1).
    recent_load: f64,
    /// Multiplicative corrections of the latency per size class and load band.
    corrections: [[ClassCorrection; LOAD_BANDS]; SIZE_CLASSES],
    /// Relative residuals of the corrected latency, for the intervals.
    residuals: ResidualWindow,
    /// Interval quantiles of the relative residuals, refreshed on every update.
    band: Option<(f64, f64)>,
    classes: [u64; SIZE_CLASSES],
    samples: u64,
}

/// What a model says about one size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelEstimate {
    /// Expected latency in microseconds.
    pub latency_us: f64,
    /// The fixed part of that latency (the fitted intercept, corrected), microseconds.
    pub fixed_us: f64,
    /// The prediction interval of the latency, when enough residuals exist.
    pub interval_us: Option<(f64, f64)>,
    /// Payload bytes per second at that latency.
    pub throughput_bps: f64,
    /// Expected extra memory held, bytes.
    pub memory_bytes: u64,
    /// Expected CPU time on both sides, microseconds.
    pub cpu_us: f64,
    /// Samples the model has seen in this size's class.
    pub class_samples: u64,
    /// Samples the model has seen in all.
    pub samples: u64,
    /// 0.0 (do not use) to 1.0: rises with samples in the class, falls with interval width.
    pub confidence: f64,
}

impl MethodModel {
    /// An empty model.
    pub fn new(config: &ModelConfig) -> MethodModel {
        MethodModel {
            latency: Rls::new(config.forgetting),
            cpu: Rls::new(config.forgetting),
            memory: Rls::new(config.forgetting),
            recent_load: 0.0,
            corrections: [[ClassCorrection::default(); LOAD_BANDS]; SIZE_CLASSES],
            residuals: ResidualWindow::default(),
            band: None,
            classes: [0; SIZE_CLASSES],
            samples: 0,
        }
    }

    /// Samples seen in all.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Samples seen per size class.
    pub fn class_samples(&self) -> &[u64; SIZE_CLASSES] {
        &self.classes
    }

    /// The latency coefficients of the physics fit (before corrections):
    /// fixed µs, µs per cached MiB, µs per MiB beyond the knot.
    pub fn latency_coefficients(&self) -> [f64; FEATURES] {
        self.latency.coefficients()
    }

    /// The relative residual quantiles bounding the interval, if known.
    pub fn band(&self) -> Option<(f64, f64)> {
        self.band
    }

    /// The latency correction factor in force for `size` under
    /// `cpu_utilization`: 1.0 where none has proved better than the fit, or
    /// when `config` turns corrections off.
    pub fn correction(&self, config: &ModelConfig, size: u64, cpu_utilization: f64) -> f64 {
        if config.corrections {
            self.corrections[size_class(size)][load_band(cpu_utilization)].factor()
        } else {
            1.0
        }
    }

    /// A moving average of the CPU utilisation of recent transfers.
    pub fn recent_load(&self) -> f64 {
        self.recent_load
    }

    /// Learns from one transfer; the residuals are taken before anything
    /// learns from it (honest, out-of-sample residuals). O(1): the windows are bounded.
    pub fn update(&mut self, config: &ModelConfig, m: &TransferMetrics) {
        let x = config.features(m.size);
        if self.latency.samples() as usize >= FEATURES * 3 {
            let bare = self.latency.predict(&x).max(LATENCY_FLOOR_US);
            let load = m.system.cpu_utilization;
            let correction = &mut self.corrections[size_class(m.size)][load_band(load)];
            let predicted = if config.corrections {
                bare * correction.factor()
            } else {
                bare
            };
            self.residuals.push((m.latency_us - predicted) / predicted);
            correction.observe(bare, m.latency_us);
        }
        let load = utilization(m.system.cpu_utilization);
        self.recent_load = if self.samples == 0 {
            load
        } else {
            self.recent_load + RECENT_LOAD_WEIGHT * (load - self.recent_load)
        };
        fit(&mut self.latency, &x, m.latency_us, LATENCY_FLOOR_US);
        fit(&mut self.cpu, &x, m.cpu_time_us, CPU_FLOOR_US);
        fit(
            &mut self.memory,
            &x,
            m.memory_bytes as f64 / MIB,
            MEMORY_FLOOR_MIB,
        );
        self.refresh_band(config);
        self.classes[size_class(m.size)] += 1;
        self.samples += 1;
    }

    /// Checks a model read from outside (a saved model) and adopts `config`'s
    /// forgetting factor and interval coverage, so that loaded models learn
    /// and answer as fresh ones would.
    pub(crate) fn check_and_configure(&mut self, config: &ModelConfig) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.recent_load) {
            return Err(format!("recent load {}, expected 0 to 1", self.recent_load));
        }
        for (class, bands) in self.corrections.iter().enumerate() {
            for (band, c) in bands.iter().enumerate() {
                c.check()
                    .map_err(|e| format!("size class {class}, load band {band}: {e}"))?;
            }
        }
        for (what, fit) in [
            ("latency", &mut self.latency),
            ("cpu", &mut self.cpu),
            ("memory", &mut self.memory),
        ] {
            fit.check().map_err(|e| format!("{what} fit: {e}"))?;
            fit.set_forgetting(config.forgetting);
        }
        self.residuals.check()?;
        let counted: u64 = self.classes.iter().sum();
        if counted != self.samples {
            return Err(format!(
                "{} samples, but {counted} counted by size class",
                self.samples
            ));
        }
        self.refresh_band(config);
        Ok(())
    }

    fn refresh_band(&mut self, config: &ModelConfig) {
        let tail = (1.0 - config.interval) / 2.0;
        self.band = (self.residuals.len() >= config.min_residuals)
            .then(|| self.residuals.quantiles(tail, 1.0 - tail))
            .flatten();
    }

    /// The model's estimate for `size` at the CPU utilisation it saw most
    /// recently (a moving average); no allocation.
    pub fn estimate(&self, config: &ModelConfig, size: u64) -> ModelEstimate {
        self.estimate_under(config, size, self.recent_load)
    }

    /// The model's estimate for `size` under `cpu_utilization` (0 to 1): the
    /// physics fit times the correction of that size class and load band, if
    /// one is in force, with an interval from the recent residuals that
    /// spans both the corrected and the bare fit; no allocation.
    pub fn estimate_under(
        &self,
        config: &ModelConfig,
        size: u64,
        cpu_utilization: f64,
    ) -> ModelEstimate {
        let x = config.features(size);
        let factor = self.correction(config, size, cpu_utilization);
        let bare = self.latency.predict(&x).max(LATENCY_FLOOR_US);
        let latency_us = bare * factor;
        // A correction learned from the recent transfers of a class may stop
        // holding (a machine changes mode); the interval spans both fits.
        let (low, high) = (latency_us.min(bare), latency_us.max(bare));
        let interval_us = self
            .band
            .map(|(lo, hi)| ((low * (1.0 + lo)).max(0.0), high * (1.0 + hi)));
        let class_samples = self.classes[size_class(size)];
        let confidence = match interval_us {
            Some((lo, hi)) if class_samples >= config.min_class_samples => {
                let n = class_samples as f64;
                let width = (hi - lo) / latency_us;
                let by_width = (1.0 - width / config.max_relative_width).clamp(0.0, 1.0);
                n / (n + 10.0) * by_width
            }
            _ => 0.0,
        };
        ModelEstimate {
            latency_us,
            fixed_us: (self.latency.coefficients()[0] * factor).clamp(0.0, latency_us),
            interval_us,
            throughput_bps: size as f64 / (latency_us / 1e6),
            memory_bytes: (self.memory.predict(&x).max(0.0) * MIB) as u64,
            cpu_us: self.cpu.predict(&x).max(0.0),
            class_samples,
            samples: self.samples,
            confidence,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_step_by_factors_of_four() {
        assert_eq!(size_class(0), 0);
        assert_eq!(size_class(1024), 0);
        assert_eq!(size_class(4095), 0);
        assert_eq!(size_class(4096), 1);
        assert_eq!(size_class(1 << 20), 5);
        assert_eq!(size_class(64 << 20), 8);
        assert_eq!(size_class(1 << 30), 10);
        assert_eq!(size_class(u64::MAX), 10);
        for c in 1..SIZE_CLASSES {
            assert_eq!(size_class(class_floor(c)), c);
            assert_eq!(size_class(class_floor(c) - 1), c - 1);
        }
    }

    #[test]
    fn config_is_validated_field_by_field() {
        assert!(ModelConfig::default().validate().is_ok());
        let bad = ModelConfig {
            forgetting: 1.5,
            ..ModelConfig::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("forgetting") && e.contains("1.5"), "{e}");
        let bad = ModelConfig {
            interval: 1.0,
            ..ModelConfig::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn load_bands_are_quarters() {
        assert_eq!(load_band(0.0), 0);
        assert_eq!(load_band(0.2499), 0);
        assert_eq!(load_band(0.25), 1);
        assert_eq!(load_band(0.6), 2);
        assert_eq!(load_band(0.75), 3);
        assert_eq!(load_band(1.0), 3);
        assert_eq!(load_band(7.0), 3);
        assert_eq!(load_band(-1.0), 0);
        assert_eq!(load_band(f64::NAN), 0);
    }

    #[test]
    fn features_split_at_the_knot() {
        let c = ModelConfig::default();
        assert_eq!(c.features(1 << 20), [1.0, 1.0, 0.0]);
        assert_eq!(c.features(64 << 20), [1.0, 2.0, 62.0]);
    }
}
