//! One method's cost model for one pool: latency, CPU and memory fits, residuals and per-class counts.

use perf_core::TransferMetrics;
use serde::{Deserialize, Serialize};

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

/// Smallest scales of the relative weighting: 1 µs, 1 µs, 4 KiB.
const LATENCY_FLOOR_US: f64 = 1.0;
const CPU_FLOOR_US: f64 = 1.0;
const MEMORY_FLOOR_MIB: f64 = 4096.0 / MIB;

/// Fits one row with relative weighting. Once the fit has settled, rows are
/// scaled by its own prediction rather than the measurement, which keeps the
/// fit unbiased under multiplicative noise (weighting by the measurement
/// pulls it toward small values).
fn fit(rls: &mut Rls, x: &[f64; FEATURES], y: f64, floor: f64) {
    let scale = if rls.samples() as usize >= FEATURES * 3 {
        rls.predict(x)
    } else {
        y
    };
    rls.update(x, y, scale.max(floor));
}

/// The learned cost of one method for one pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodModel {
    latency: Rls,
    cpu: Rls,
    memory: Rls,
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
    /// The fixed part of that latency (the fitted intercept), microseconds.
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

    /// The latency coefficients: fixed µs, µs per cached MiB, µs per MiB beyond the knot.
    pub fn latency_coefficients(&self) -> [f64; FEATURES] {
        self.latency.coefficients()
    }

    /// The relative residual quantiles bounding the interval, if known.
    pub fn band(&self) -> Option<(f64, f64)> {
        self.band
    }

    /// Learns from one transfer; the residual is taken before the fit moves
    /// (an honest, out-of-sample residual). O(1): the window is bounded.
    pub fn update(&mut self, config: &ModelConfig, m: &TransferMetrics) {
        let x = config.features(m.size);
        if self.latency.samples() as usize >= FEATURES * 3 {
            let predicted = self.latency.predict(&x).max(LATENCY_FLOOR_US);
            self.residuals.push((m.latency_us - predicted) / predicted);
        }
        fit(&mut self.latency, &x, m.latency_us, LATENCY_FLOOR_US);
        fit(&mut self.cpu, &x, m.cpu_time_us, CPU_FLOOR_US);
        fit(
            &mut self.memory,
            &x,
            m.memory_bytes as f64 / MIB,
            MEMORY_FLOOR_MIB,
        );
        let tail = (1.0 - config.interval) / 2.0;
        self.band = (self.residuals.len() >= config.min_residuals)
            .then(|| self.residuals.quantiles(tail, 1.0 - tail))
            .flatten();
        self.classes[size_class(m.size)] += 1;
        self.samples += 1;
    }

    /// The model's estimate for `size`; no allocation.
    pub fn estimate(&self, config: &ModelConfig, size: u64) -> ModelEstimate {
        let x = config.features(size);
        let latency_us = self.latency.predict(&x).max(LATENCY_FLOOR_US);
        let interval_us = self
            .band
            .map(|(lo, hi)| ((latency_us * (1.0 + lo)).max(0.0), latency_us * (1.0 + hi)));
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
            fixed_us: self.latency.coefficients()[0].clamp(0.0, latency_us),
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
    fn features_split_at_the_knot() {
        let c = ModelConfig::default();
        assert_eq!(c.features(1 << 20), [1.0, 1.0, 0.0]);
        assert_eq!(c.features(64 << 20), [1.0, 2.0, 62.0]);
    }
}
