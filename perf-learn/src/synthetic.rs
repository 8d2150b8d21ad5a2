//! Synthetic workloads with a known crossover, for tests, examples and benches.
//!
//! Each method costs a fixed part plus a per-byte part, with log-normal noise:
//! gRPC `40 µs + 1 ns/B`, zero-copy `fixed + 0.2 ns/B`, where zero-copy's fixed
//! part is chosen so that the methods cross at [`Physics::crossover`] bytes.
//! A busy CPU (utilisation `u`) moves that crossover to `crossover * 16^u`.

use perf_core::{
    Compression, DataType, DecisionContext, FixedPolicy, Format, Method, Name, SystemState,
    Timestamp, TransferMetrics, TransferPolicy, TransferRequest, ZeroCopyAvailability,
};

use crate::dataset::{PairedSample, Source};
use crate::features::Conditions;

/// The cost model of a synthetic machine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Physics {
    /// Where the methods cross on an idle CPU, bytes.
    pub crossover: f64,
    /// Relative noise (standard deviation of the log latency).
    pub noise: f64,
}

impl Default for Physics {
    fn default() -> Self {
        Physics {
            crossover: 64.0 * 1024.0,
            noise: 0.05,
        }
    }
}

const GRPC_FIXED_US: f64 = 40.0;
const GRPC_US_PER_BYTE: f64 = 1e-3;
const ZERO_COPY_US_PER_BYTE: f64 = 0.2e-3;

impl Physics {
    /// Where the methods cross under CPU utilisation `cpu`, bytes.
    pub fn crossover_at(&self, cpu: f64) -> f64 {
        self.crossover * 16f64.powf(cpu.clamp(0.0, 1.0))
    }

    /// Noise-free latency of `method` for `size` bytes under `cpu`, microseconds.
    pub fn latency(&self, method: Method, size: u64, cpu: f64) -> f64 {
        let s = size as f64;
        match method {
            Method::Grpc => GRPC_FIXED_US + s * GRPC_US_PER_BYTE,
            Method::ZeroCopy => {
                let fixed = GRPC_FIXED_US
                    + self.crossover_at(cpu) * (GRPC_US_PER_BYTE - ZERO_COPY_US_PER_BYTE);
                fixed + s * ZERO_COPY_US_PER_BYTE
            }
        }
    }
}

/// A small deterministic generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(1e-300);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Log-uniform size in `[lo, hi]`.
    pub fn size(&mut self, lo: u64, hi: u64) -> u64 {
        let (a, b) = ((lo.max(1) as f64).ln(), (hi.max(lo) as f64).ln());
        ((a + self.next_f64() * (b - a)).exp() as u64).clamp(lo, hi)
    }
}

/// A generator of paired samples and live transfers on a [`Physics`].
#[derive(Debug, Clone)]
pub struct Workload {
    /// The machine.
    pub physics: Physics,
    /// CPU utilisation of the transfers generated next.
    pub cpu: f64,
    /// Smallest size, bytes.
    pub min_size: u64,
    /// Largest size, bytes.
    pub max_size: u64,
    /// The clock, nanoseconds since the epoch.
    pub now: u64,
    rng: Rng,
}

impl Workload {
    /// Sizes 1 KiB to 256 MiB on an idle CPU, seeded.
    pub fn new(physics: Physics, seed: u64) -> Workload {
        Workload {
            physics,
            cpu: 0.0,
            min_size: 1 << 10,
            max_size: 256 << 20,
            now: 1_700_000_000_000_000_000,
            rng: Rng::new(seed),
        }
    }

    fn noisy(&mut self, method: Method, size: u64) -> f64 {
        let cpu = self.cpu;
        self.physics.latency(method, size, cpu) * (self.physics.noise * self.rng.normal()).exp()
    }

    /// The CPU utilisation a probe reads: the workload's level, give or take 0.03.
    fn probed_cpu(&mut self) -> f64 {
        (self.cpu + 0.06 * (self.rng.next_f64() - 0.5)).clamp(0.0, 1.0)
    }

    fn conditions(&mut self) -> Conditions {
        Conditions {
            cpu_utilization: self.probed_cpu(),
            memory_used: 0.3,
            shm_free: 8 << 30,
            hour: 12,
            grpc_slowdown: 0.0,
            zero_copy_slowdown: 0.0,
        }
    }

    /// One paired sample (bench source), advancing the clock by 1 ms.
    pub fn pair(&mut self) -> PairedSample {
        self.now += 1_000_000;
        let size = self.rng.size(self.min_size, self.max_size);
        PairedSample {
            at: Timestamp(self.now),
            pool: Name::DEFAULT_POOL,
            size,
            data_type: DataType::Bytes,
            format: Format::Raw,
            compression: Compression::None,
            conditions: self.conditions(),
            grpc_us: self.noisy(Method::Grpc, size),
            zero_copy_us: self.noisy(Method::ZeroCopy, size),
            source: Source::Bench,
        }
    }

    /// `n` paired samples.
    pub fn pairs(&mut self, n: usize) -> Vec<PairedSample> {
        (0..n).map(|_| self.pair()).collect()
    }

    /// Two live transfers of one size, one by each method (in a random
    /// order), 1 ms apart, as the executor would record them.
    pub fn live_pair(&mut self) -> [TransferMetrics; 2] {
        let size = self.rng.size(self.min_size, self.max_size);
        let first = if self.rng.next_u64() & 1 == 0 {
            Method::Grpc
        } else {
            Method::ZeroCopy
        };
        [first, first.other()].map(|method| {
            self.now += 1_000_000;
            let latency = self.noisy(method, size);
            self.transfer(method, size, latency)
        })
    }

    /// A live transfer record.
    pub fn transfer(&mut self, method: Method, size: u64, latency_us: f64) -> TransferMetrics {
        let system = SystemState {
            cpu_utilization: self.probed_cpu(),
            memory_used: 0.3,
            memory_available: 16 << 30,
            shm_free: 8 << 30,
            sampled_at: Timestamp(self.now),
        };
        let request = TransferRequest::new(size);
        let ctx = DecisionContext {
            now: Timestamp(self.now),
            system,
            zero_copy: ZeroCopyAvailability::Pooled,
        };
        let decision = FixedPolicy(method).decide(&request, &ctx);
        TransferMetrics::new(
            &request,
            &decision,
            method,
            latency_us,
            Timestamp(self.now),
            system,
        )
    }
}
