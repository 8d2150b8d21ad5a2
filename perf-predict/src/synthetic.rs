//! Transfers drawn from a known linear cost model with noise, for tests, benches and demos.

use perf_core::rng::SplitMix;
use perf_core::{
    Compression, DataType, Format, Method, Name, ReasonCode, SystemState, Timestamp,
    TransferMetrics,
};

/// A known cost model: `fixed + cached_MiB * cached + bulk_MiB * bulk`
/// microseconds, times `1 + noise * N(0, 1)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyntheticModel {
    /// The method the transfers use.
    pub method: Method,
    /// Fixed cost, µs.
    pub fixed_us: f64,
    /// µs per MiB up to `knot_bytes`.
    pub cached_us_per_mib: f64,
    /// µs per MiB beyond `knot_bytes`.
    pub bulk_us_per_mib: f64,
    /// Where the slope changes, bytes.
    pub knot_bytes: u64,
    /// Relative standard deviation of the multiplicative noise.
    pub noise: f64,
}

impl SyntheticModel {
    /// The noiseless latency of `size` bytes, µs.
    pub fn latency_us(&self, size: u64) -> f64 {
        let mib = (1u64 << 20) as f64;
        let cached = self.knot_bytes.min(size) as f64 / mib;
        let bulk = size.saturating_sub(self.knot_bytes) as f64 / mib;
        self.fixed_us + cached * self.cached_us_per_mib + bulk * self.bulk_us_per_mib
    }
}

/// `n` transfers to the default pool, sizes log-uniform from 1 KiB to 1 GiB,
/// one per millisecond; CPU time is half the latency and memory twice the
/// size (gRPC) or the size (zero-copy). The same seed gives the same samples.
pub fn samples(model: &SyntheticModel, n: usize, seed: u64) -> Vec<TransferMetrics> {
    let rng = SplitMix::new(seed);
    (0..n)
        .map(|i| {
            let log2 = 10.0 + 20.0 * rng.next_f64();
            let size = log2.exp2() as u64;
            let latency = model.latency_us(size) * (1.0 + model.noise * normal(&rng)).max(0.05);
            let memory = match model.method {
                Method::Grpc => 2 * size,
                Method::ZeroCopy => size,
            };
            TransferMetrics {
                started_at: Timestamp(1_000_000 * i as u64),
                pool: Name::DEFAULT_POOL,
                method: model.method,
                decided_method: model.method,
                reason: ReasonCode::CostAnalysis,
                explored: false,
                propensity: 1.0,
                policy_version: 1,
                size,
                data_type: DataType::Bytes,
                format: Format::Raw,
                compression: Compression::None,
                session: 0,
                latency_us: latency,
                throughput_bps: size as f64 / (latency / 1e6),
                memory_bytes: memory,
                cpu_time_us: latency / 2.0,
                decision_ns: 0,
                predicted_latency_us: None,
                system: SystemState::IDLE,
                fallback: None,
                success: true,
                failure: None,
                queued_us: 0.0,
                reply: None,
                experiment: None,
            }
        })
        .collect()
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &SplitMix) -> f64 {
    let u = 1.0 - rng.next_f64();
    let v = rng.next_f64();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}
