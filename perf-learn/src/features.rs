//! Features of one transfer: what the payload is and the conditions it meets.

use std::sync::atomic::{AtomicU64, Ordering};

use perf_core::cost::calibrated_estimates;
use perf_core::{
    Compression, CostCoefficients, DataType, Format, Method, SystemState, Timestamp,
    TransferRequest, ZeroCopyAvailability,
};
use serde::{Deserialize, Serialize};

/// How many features a transfer has.
pub const FEATURES: usize = 10;

/// The features' names, in order.
pub const FEATURE_NAMES: [&str; FEATURES] = [
    "log2_size",
    "data_type",
    "format",
    "compression",
    "cpu_utilization",
    "memory_used",
    "log2_shm_free",
    "hour_of_day",
    "grpc_slowdown",
    "zero_copy_slowdown",
];

/// One transfer's features, in the order of [`FEATURE_NAMES`].
pub type FeatureVec = [f64; FEATURES];

/// The conditions a transfer meets besides its payload.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Conditions {
    /// CPU utilisation, 0 to 1.
    pub cpu_utilization: f64,
    /// Fraction of memory in use, 0 to 1.
    pub memory_used: f64,
    /// Free shared memory in bytes.
    pub shm_free: u64,
    /// Hour of day (UTC), 0 to 23.
    pub hour: u8,
    /// Recent gRPC latency over its calibrated estimate, as a natural log
    /// (0 when gRPC runs as calibrated; see [`LoadTracker`]).
    pub grpc_slowdown: f64,
    /// The same for zero-copy.
    pub zero_copy_slowdown: f64,
}

impl Conditions {
    /// Conditions from a system sample, the time and the recent slowdowns.
    pub fn new(system: &SystemState, now: Timestamp, load: &LoadTracker) -> Conditions {
        Conditions {
            cpu_utilization: system.cpu_utilization,
            memory_used: system.memory_used,
            shm_free: system.shm_free,
            hour: hour_of_day(now),
            grpc_slowdown: load.slowdown(Method::Grpc),
            zero_copy_slowdown: load.slowdown(Method::ZeroCopy),
        }
    }
}

/// The hour of day (UTC) of `t`.
pub fn hour_of_day(t: Timestamp) -> u8 {
    ((t.as_nanos() / 3_600_000_000_000) % 24) as u8
}

/// The largest shared-memory figure that still counts (1 PiB); more says nothing new.
const SHM_FREE_CAP: u64 = 1 << 50;

/// Builds the feature vector of one transfer.
pub fn features(
    size: u64,
    data_type: DataType,
    format: Format,
    compression: Compression,
    c: &Conditions,
) -> FeatureVec {
    [
        (size.max(1) as f64).log2(),
        data_type as u8 as f64,
        format as u8 as f64,
        compression as u8 as f64,
        c.cpu_utilization.clamp(0.0, 1.0),
        c.memory_used.clamp(0.0, 1.0),
        (c.shm_free.min(SHM_FREE_CAP) as f64 + 1.0).log2(),
        f64::from(c.hour % 24),
        c.grpc_slowdown,
        c.zero_copy_slowdown,
    ]
}

/// Features of a request under `conditions`.
pub fn request_features(request: &TransferRequest, conditions: &Conditions) -> FeatureVec {
    features(
        request.size,
        request.data_type,
        request.format,
        request.compression,
        conditions,
    )
}

/// Moving averages of how much slower than calibrated each method ran lately:
/// an exponentially weighted mean of `ln(measured / calibrated)` per method.
///
/// Readers (the decision path) load two atomics; writers are the learning
/// engine's thread or a collector, one at a time.
#[derive(Debug)]
pub struct LoadTracker {
    costs: CostCoefficients,
    alpha: f64,
    grpc: AtomicU64,
    zero_copy: AtomicU64,
}

/// A slowdown figure is kept within e^±5 (x148), so one wild sample cannot
/// dominate the average.
const SLOWDOWN_LIMIT: f64 = 5.0;

impl LoadTracker {
    /// A tracker against `costs`, weighting each new sample by `alpha` (0..1].
    pub fn new(costs: CostCoefficients, alpha: f64) -> LoadTracker {
        LoadTracker {
            costs,
            alpha: alpha.clamp(1e-3, 1.0),
            grpc: AtomicU64::new(0f64.to_bits()),
            zero_copy: AtomicU64::new(0f64.to_bits()),
        }
    }

    fn cell(&self, method: Method) -> &AtomicU64 {
        match method {
            Method::Grpc => &self.grpc,
            Method::ZeroCopy => &self.zero_copy,
        }
    }

    /// The current average for `method` (natural log of the ratio).
    pub fn slowdown(&self, method: Method) -> f64 {
        f64::from_bits(self.cell(method).load(Ordering::Relaxed))
    }

    /// Folds in one measured transfer; ignores sizes of 0 and latencies that
    /// are not positive and finite.
    pub fn observe(&self, method: Method, size: u64, latency_us: f64) {
        if size == 0 || !(latency_us.is_finite() && latency_us > 0.0) {
            return;
        }
        let request = TransferRequest::new(size);
        let (zc, grpc) = calibrated_estimates(
            &self.costs,
            &request,
            ZeroCopyAvailability::Pooled,
            &SystemState::IDLE,
        );
        let expected = match method {
            Method::Grpc => grpc.latency_us,
            Method::ZeroCopy => zc.latency_us,
        };
        if !(expected.is_finite() && expected > 0.0) {
            return;
        }
        let x = (latency_us / expected)
            .ln()
            .clamp(-SLOWDOWN_LIMIT, SLOWDOWN_LIMIT);
        let cell = self.cell(method);
        let old = f64::from_bits(cell.load(Ordering::Relaxed));
        let new = old + self.alpha * (x - old);
        cell.store(new.to_bits(), Ordering::Relaxed);
    }
}

impl Default for LoadTracker {
    fn default() -> Self {
        LoadTracker::new(CostCoefficients::default(), 0.1)
    }
}

/// Per-feature mean and standard deviation of a training set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalizer {
    /// Means.
    pub mean: FeatureVec,
    /// Standard deviations (1 where a feature does not vary).
    pub std: FeatureVec,
}

impl Normalizer {
    /// Fits the means and deviations of `rows`; the identity for no rows.
    pub fn fit(rows: &[FeatureVec]) -> Normalizer {
        let mut mean = [0.0; FEATURES];
        let mut std = [1.0; FEATURES];
        if rows.is_empty() {
            return Normalizer { mean, std };
        }
        let n = rows.len() as f64;
        for j in 0..FEATURES {
            let m = rows.iter().map(|r| r[j]).sum::<f64>() / n;
            let var = rows.iter().map(|r| (r[j] - m).powi(2)).sum::<f64>() / n;
            mean[j] = m;
            std[j] = if var > 1e-24 { var.sqrt() } else { 1.0 };
        }
        Normalizer { mean, std }
    }

    /// `x` in standard units of the training set.
    pub fn apply(&self, x: &FeatureVec) -> FeatureVec {
        let mut out = [0.0; FEATURES];
        for j in 0..FEATURES {
            out[j] = (x[j] - self.mean[j]) / self.std[j];
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_follow_their_names() {
        let c = Conditions {
            cpu_utilization: 0.5,
            memory_used: 2.0,
            shm_free: u64::MAX,
            hour: 13,
            grpc_slowdown: 0.25,
            zero_copy_slowdown: -0.5,
        };
        let f = features(
            1 << 20,
            DataType::Tensor,
            Format::Arrow,
            Compression::Zstd,
            &c,
        );
        assert_eq!(f[0], 20.0);
        assert_eq!(f[1], DataType::Tensor as u8 as f64);
        assert_eq!(f[4], 0.5);
        assert_eq!(f[5], 1.0, "clamped");
        assert!((f[6] - 50.0).abs() < 1e-9, "capped at 1 PiB: {}", f[6]);
        assert_eq!(f[7], 13.0);
        assert_eq!((f[8], f[9]), (0.25, -0.5));
    }

    #[test]
    fn hour_of_day_wraps() {
        assert_eq!(hour_of_day(Timestamp::from_secs(0)), 0);
        assert_eq!(hour_of_day(Timestamp::from_secs(25 * 3600 + 59)), 1);
    }

    #[test]
    fn tracker_moves_toward_the_measured_slowdown() {
        let t = LoadTracker::new(CostCoefficients::default(), 0.5);
        let (_, grpc) = calibrated_estimates(
            &CostCoefficients::default(),
            &TransferRequest::new(1 << 20),
            ZeroCopyAvailability::Pooled,
            &SystemState::IDLE,
        );
        for _ in 0..30 {
            t.observe(Method::Grpc, 1 << 20, grpc.latency_us * 2.0);
        }
        assert!((t.slowdown(Method::Grpc) - 2f64.ln()).abs() < 1e-6);
        assert_eq!(t.slowdown(Method::ZeroCopy), 0.0);
        t.observe(Method::Grpc, 0, 1.0);
        t.observe(Method::Grpc, 1, f64::NAN);
        assert!((t.slowdown(Method::Grpc) - 2f64.ln()).abs() < 1e-6);
    }

    #[test]
    fn normalizer_centres_and_scales() {
        let rows = [[1.0; FEATURES], [3.0; FEATURES]];
        let n = Normalizer::fit(&rows);
        assert_eq!(n.apply(&rows[0])[0], -1.0);
        assert_eq!(n.apply(&rows[1])[9], 1.0);
        let flat = Normalizer::fit(&[[2.0; FEATURES]]);
        assert_eq!(flat.apply(&[2.0; FEATURES]), [0.0; FEATURES]);
    }
}
