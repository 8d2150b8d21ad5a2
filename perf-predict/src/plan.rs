//! Capacity planning (R10.5) as pure functions: latency percentiles, resources and the first bottleneck.

use perf_core::config::CostCoefficients;
use perf_core::cost::calibrated_estimates;
use perf_core::decision::MethodEstimate;
use perf_core::rng::SplitMix;
use perf_core::{MAX_SIZE, Method, Name, SystemState, TransferRequest, ZeroCopyAvailability};
use serde::Serialize;

use crate::error::PredictError;
use crate::learner::ModelSnapshot;
use crate::quantile::quantile_sorted;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// Most sizes an explicit list may hold.
pub const MAX_LISTED_SIZES: usize = 64;

/// The sizes of the transfers a workload sends.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SizeDistribution {
    /// Log-uniform between two sizes, inclusive.
    LogUniform {
        /// Smallest size in bytes.
        min: u64,
        /// Largest size in bytes.
        max: u64,
    },
    /// Each listed size equally often.
    Choice(Vec<u64>),
}

impl SizeDistribution {
    /// `mixed`: log-uniform 1 KiB to 64 MiB (as `perfopt run --workload mixed`).
    pub const MIXED: SizeDistribution = SizeDistribution::LogUniform {
        min: KIB,
        max: 64 * MIB,
    };
    /// `small`: log-uniform 1 KiB to 1 MiB.
    pub const SMALL: SizeDistribution = SizeDistribution::LogUniform { min: KIB, max: MIB };
    /// `large`: log-uniform 4 MiB to 256 MiB.
    pub const LARGE: SizeDistribution = SizeDistribution::LogUniform {
        min: 4 * MIB,
        max: 256 * MIB,
    };

    /// Reads `mixed`, `small`, `large`, one size (`64MiB`), a log-uniform
    /// range (`1KiB..64MiB`) or a list (`4KiB,1MiB,64MiB`); sizes from 1 byte to 1 TiB.
    pub fn parse(text: &str) -> Result<SizeDistribution, PredictError> {
        let bad = || PredictError::SizeDistribution(text.to_string());
        let size = |t: &str| {
            perf_core::parse_size(t)
                .ok()
                .filter(|s| (1..=MAX_SIZE).contains(s))
                .ok_or_else(bad)
        };
        let t = text.trim();
        match t {
            "mixed" => return Ok(SizeDistribution::MIXED),
            "small" => return Ok(SizeDistribution::SMALL),
            "large" => return Ok(SizeDistribution::LARGE),
            _ => {}
        }
        if let Some((a, b)) = t.split_once("..") {
            let (min, max) = (size(a)?, size(b)?);
            if min > max {
                return Err(bad());
            }
            return Ok(SizeDistribution::LogUniform { min, max });
        }
        let sizes: Vec<u64> = t.split(',').map(size).collect::<Result<_, _>>()?;
        if sizes.len() > MAX_LISTED_SIZES {
            return Err(bad());
        }
        Ok(SizeDistribution::Choice(sizes))
    }

    /// One size drawn with `rng`.
    pub fn sample(&self, rng: &SplitMix) -> u64 {
        match self {
            SizeDistribution::LogUniform { min, max } => {
                let (lo, hi) = ((*min as f64).ln(), (*max as f64).ln());
                ((lo + rng.next_f64() * (hi - lo)).exp().round() as u64).clamp(*min, *max)
            }
            SizeDistribution::Choice(sizes) => {
                sizes[(rng.next_u64() % sizes.len() as u64) as usize]
            }
        }
    }
}

/// Per-method costs for planning: learned where a model is trusted, calibrated otherwise.
pub trait CostModel {
    /// The estimate of `method` for `size` bytes, and whether it is learned.
    fn estimate(&self, method: Method, size: u64) -> (MethodEstimate, bool);
}

/// The static coefficients, on an idle machine with pooled segments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibrated(pub CostCoefficients);

impl CostModel for Calibrated {
    fn estimate(&self, method: Method, size: u64) -> (MethodEstimate, bool) {
        let (zc, grpc) = calibrated_estimates(
            &self.0,
            &TransferRequest::new(size),
            ZeroCopyAvailability::Pooled,
            &SystemState::IDLE,
        );
        let e = match method {
            Method::ZeroCopy => zc,
            Method::Grpc => grpc,
        };
        (e, false)
    }
}

/// Learned models of one pool where they have enough samples in the size's
/// class, the calibrated coefficients elsewhere.
#[derive(Debug, Clone, Copy)]
pub struct LearnedOrCalibrated<'a> {
    /// The learned models.
    pub snapshot: &'a ModelSnapshot,
    /// The pool whose models are used.
    pub pool: Name,
    /// The fallback.
    pub costs: CostCoefficients,
}

impl CostModel for LearnedOrCalibrated<'_> {
    fn estimate(&self, method: Method, size: u64) -> (MethodEstimate, bool) {
        match self.snapshot.estimate(self.pool, method, size) {
            Some(e) if self.snapshot.usable(&e) => (
                MethodEstimate {
                    latency_us: e.latency_us,
                    setup_us: e.fixed_us,
                    transfer_us: e.latency_us - e.fixed_us,
                    memory_bytes: e.memory_bytes,
                    cpu_us: e.cpu_us,
                    interval_us: e.interval_us,
                    ..MethodEstimate::default()
                },
                true,
            ),
            _ => Calibrated(self.costs).estimate(method, size),
        }
    }
}

/// Ceilings of the machine's shared resources.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ResourceLimits {
    /// Bytes per second memory can copy (a hot memcpy: about 20 GB/s on the reference VM).
    pub memory_copy_bps: f64,
    /// Bytes per second one socket carries (a raw Unix socket: 1 GiB in 226 ms).
    pub socket_bps: f64,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        ResourceLimits {
            memory_copy_bps: 20e9,
            socket_bps: (1u64 << 30) as f64 / 0.226,
        }
    }
}

/// Copies of the payload per method: zero-copy writes it into the segment
/// once; gRPC encodes it, and the kernel copies it into and out of the socket.
const ZERO_COPY_COPIES: f64 = 1.0;
const GRPC_COPIES: f64 = 3.0;

/// What to plan for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanInput {
    /// Transfers per second, above 0 and at most 10^9.
    pub rate_per_s: f64,
    /// Their sizes.
    pub sizes: SizeDistribution,
    /// Worker processes, each serving one transfer at a time (1 to 4096).
    pub workers: u32,
    /// CPU cores the host and workers share.
    pub cores: f64,
    /// Sizes at or above this go zero-copy, smaller ones by gRPC.
    pub threshold: u64,
    /// Shared memory the host may hold at once, bytes.
    pub shm_budget: u64,
    /// The machine's ceilings.
    pub limits: ResourceLimits,
    /// Monte Carlo draws of sizes (100 to 1,000,000).
    pub draws: usize,
    /// Seeds the draws; the same seed gives the same forecast.
    pub seed: u64,
}

impl PlanInput {
    /// A plan with the defaults: 2 cores, the 10 MiB default threshold, a
    /// 1 GiB shared-memory budget, 20,000 draws.
    pub fn new(rate_per_s: f64, sizes: SizeDistribution, workers: u32) -> PlanInput {
        PlanInput {
            rate_per_s,
            sizes,
            workers,
            cores: 2.0,
            threshold: 10 * MIB,
            shm_budget: 1 << 30,
            limits: ResourceLimits::default(),
            draws: 20_000,
            seed: 1,
        }
    }

    fn validate(&self) -> Result<(), PredictError> {
        let bad = |field, expected, got: String| {
            Err(PredictError::InvalidConfig {
                field,
                expected,
                got,
            })
        };
        if !(self.rate_per_s > 0.0 && self.rate_per_s <= 1e9) {
            return bad(
                "rate",
                "above 0 and at most 1e9 per second",
                self.rate_per_s.to_string(),
            );
        }
        if !(1..=4096).contains(&self.workers) {
            return bad("workers", "1 to 4096", self.workers.to_string());
        }
        if !(self.cores > 0.0 && self.cores <= 4096.0) {
            return bad("cores", "above 0 and at most 4096", self.cores.to_string());
        }
        if self.shm_budget == 0 {
            return bad("shm_budget", "at least 1 byte", "0".to_string());
        }
        if !(100..=1_000_000).contains(&self.draws) {
            return bad("draws", "100 to 1000000", self.draws.to_string());
        }
        let l = &self.limits;
        if !(l.memory_copy_bps > 0.0 && l.socket_bps > 0.0) {
            return bad("limits", "positive bandwidths", format!("{l:?}"));
        }
        Ok(())
    }
}

/// The resource that saturates first as the rate grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bottleneck {
    /// Every worker is busy: transfers queue.
    Workers,
    /// CPU time, mostly gRPC serialization.
    Cpu,
    /// Memory bandwidth for copying payloads.
    MemoryBandwidth,
    /// The shared-memory budget.
    ShmBudget,
    /// The socket carrying gRPC messages.
    Socket,
}

impl Bottleneck {
    /// A short readable name.
    pub const fn label(self) -> &'static str {
        match self {
            Bottleneck::Workers => "workers",
            Bottleneck::Cpu => "CPU (serialization)",
            Bottleneck::MemoryBandwidth => "memory bandwidth",
            Bottleneck::ShmBudget => "shared-memory budget",
            Bottleneck::Socket => "socket",
        }
    }
}

/// Utilisation of each resource, 1.0 meaning saturated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Utilization {
    /// Busy workers over workers.
    pub workers: f64,
    /// Busy cores over cores.
    pub cpu: f64,
    /// Bytes copied per second over the memory copy rate.
    pub memory_bandwidth: f64,
    /// Mean shared memory held over the budget.
    pub shm_budget: f64,
    /// gRPC bytes per second over the socket rate.
    pub socket: f64,
}

impl Utilization {
    fn highest(&self) -> (Bottleneck, f64) {
        [
            (Bottleneck::Workers, self.workers),
            (Bottleneck::Cpu, self.cpu),
            (Bottleneck::MemoryBandwidth, self.memory_bandwidth),
            (Bottleneck::ShmBudget, self.shm_budget),
            (Bottleneck::Socket, self.socket),
        ]
        .into_iter()
        .fold((Bottleneck::Workers, f64::MIN), |a, b| {
            if b.1 > a.1 { b } else { a }
        })
    }
}

/// What a workload will cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    /// The input it answers.
    pub input: PlanInput,
    /// Share of transfers going zero-copy.
    pub zero_copy_share: f64,
    /// Share of cost estimates that came from learned models.
    pub learned_share: f64,
    /// Mean service time of one transfer (no queueing), µs.
    pub mean_service_us: f64,
    /// Median latency including queueing, µs; `None` when saturated.
    pub latency_p50_us: Option<f64>,
    /// 99th percentile latency including queueing, µs; `None` when saturated.
    pub latency_p99_us: Option<f64>,
    /// Probability that a transfer waits for a worker (Erlang C).
    pub wait_probability: f64,
    /// CPU cores kept busy.
    pub cpu_cores_busy: f64,
    /// Mean shared memory held by transfers in flight, bytes (Little's law).
    pub shm_held_bytes: f64,
    /// Payload bytes copied per second.
    pub memory_copy_bps: f64,
    /// gRPC payload bytes per second through the socket.
    pub socket_bps: f64,
    /// Utilisation of each resource.
    pub utilization: Utilization,
    /// The resource that saturates first.
    pub bottleneck: Bottleneck,
    /// The rate at which that resource saturates.
    pub max_rate_per_s: f64,
    /// Whether some resource is already saturated at this rate.
    pub saturated: bool,
}

/// The probability that an arrival waits in an M/M/c queue with `servers`
/// servers and `offered` load in Erlangs (arrival rate x mean service time);
/// 1.0 when `offered >= servers`. Computed through the Erlang B recurrence,
/// which stays stable for thousands of servers.
pub fn erlang_c(servers: u32, offered: f64) -> f64 {
    let c = f64::from(servers);
    if offered <= 0.0 {
        return 0.0;
    }
    if offered >= c {
        return 1.0;
    }
    let mut b = 1.0;
    for k in 1..=servers {
        b = offered * b / (f64::from(k) + offered * b);
    }
    c * b / (c - offered * (1.0 - b))
}

/// Forecasts latency percentiles, resources and the first bottleneck for `input`.
///
/// Sizes are drawn from the distribution with a seeded generator, each
/// transfer's method follows the threshold, and its cost comes from `model`.
/// Queueing for workers follows M/G/c: the Erlang C wait probability, with
/// waits exponential and scaled by `(1 + cv^2) / 2` for the service time's
/// variability (Allen-Cunneen).
pub fn plan(input: &PlanInput, model: &dyn CostModel) -> Result<Forecast, PredictError> {
    input.validate()?;
    let rng = SplitMix::new(input.seed);
    let n = input.draws;
    let mut service = Vec::with_capacity(n);
    let (mut zc, mut learned) = (0usize, 0usize);
    let (mut cpu_us, mut shm_byte_us, mut copied, mut socket) = (0.0, 0.0, 0.0, 0.0);
    for _ in 0..n {
        let size = input.sizes.sample(&rng);
        let method = if size >= input.threshold {
            Method::ZeroCopy
        } else {
            Method::Grpc
        };
        let (e, from_model) = model.estimate(method, size);
        learned += usize::from(from_model);
        service.push(e.latency_us);
        cpu_us += e.cpu_us;
        match method {
            Method::ZeroCopy => {
                zc += 1;
                shm_byte_us += e.memory_bytes as f64 * e.latency_us;
                copied += size as f64 * ZERO_COPY_COPIES;
            }
            Method::Grpc => {
                copied += size as f64 * GRPC_COPIES;
                socket += size as f64;
            }
        }
    }
    let nf = n as f64;
    let rate = input.rate_per_s;
    let mean_s = service.iter().sum::<f64>() / nf;
    let var_s = service.iter().map(|s| (s - mean_s).powi(2)).sum::<f64>() / nf;
    let offered = rate * mean_s / 1e6;
    let c = f64::from(input.workers);
    let utilization = Utilization {
        workers: offered / c,
        cpu: rate * cpu_us / nf / 1e6 / input.cores,
        memory_bandwidth: rate * copied / nf / input.limits.memory_copy_bps,
        shm_budget: rate * shm_byte_us / nf / 1e6 / input.shm_budget as f64,
        socket: rate * socket / nf / input.limits.socket_bps,
    };
    let (bottleneck, highest) = utilization.highest();
    let saturated = highest >= 1.0;
    let wait_probability = erlang_c(input.workers, offered);
    let (latency_p50_us, latency_p99_us) = if saturated {
        (None, None)
    } else {
        let cv2 = if mean_s > 0.0 {
            var_s / (mean_s * mean_s)
        } else {
            0.0
        };
        let wait_mean = mean_s / (c - offered) * (1.0 + cv2) / 2.0;
        for s in &mut service {
            if rng.next_f64() < wait_probability {
                *s += -wait_mean * (1.0 - rng.next_f64()).ln();
            }
        }
        service.sort_unstable_by(f64::total_cmp);
        (
            Some(quantile_sorted(&service, 0.5)),
            Some(quantile_sorted(&service, 0.99)),
        )
    };
    Ok(Forecast {
        input: input.clone(),
        zero_copy_share: zc as f64 / nf,
        learned_share: learned as f64 / nf,
        mean_service_us: mean_s,
        latency_p50_us,
        latency_p99_us,
        wait_probability,
        cpu_cores_busy: rate * cpu_us / nf / 1e6,
        shm_held_bytes: rate * shm_byte_us / nf / 1e6,
        memory_copy_bps: rate * copied / nf,
        socket_bps: rate * socket / nf,
        utilization,
        bottleneck,
        max_rate_per_s: if highest > 0.0 {
            rate / highest
        } else {
            f64::INFINITY
        },
        saturated,
    })
}

/// A change to try against a plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct WhatIf {
    /// Another zero-copy threshold, bytes.
    pub threshold: Option<u64>,
    /// Another shared-memory budget, bytes.
    pub shm_budget: Option<u64>,
    /// Another worker count.
    pub workers: Option<u32>,
}

/// Two forecasts: as planned, and with the change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WhatIfReport {
    /// The forecast as planned.
    pub base: Forecast,
    /// The forecast with the change.
    pub changed: Forecast,
}

/// Forecasts `input` as it is and with `change`, from the same draws.
pub fn what_if(
    input: &PlanInput,
    model: &dyn CostModel,
    change: &WhatIf,
) -> Result<WhatIfReport, PredictError> {
    let mut other = input.clone();
    other.threshold = change.threshold.unwrap_or(input.threshold);
    other.shm_budget = change.shm_budget.unwrap_or(input.shm_budget);
    other.workers = change.workers.unwrap_or(input.workers);
    Ok(WhatIfReport {
        base: plan(input, model)?,
        changed: plan(&other, model)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values of Erlang C, P(wait) in M/M/c.
    ///
    /// M/M/1: P(wait) = rho (textbook identity). c = 2, A = 1: 1/3 by hand
    /// from `C = (A^c/c! * c/(c-A)) / (sum_{k<c} A^k/k! + A^c/c! * c/(c-A))`.
    /// Published Erlang C table values: 10 Erlangs on 11 agents gives 68.21 %
    /// (the standard call-centre example), 8 Erlangs on 10 servers 40.92 %;
    /// both agree with exact rational arithmetic of the formula above.
    #[test]
    fn erlang_c_matches_published_values() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-4;
        assert!(close(erlang_c(1, 0.5), 0.5));
        assert!(close(erlang_c(2, 1.0), 1.0 / 3.0));
        assert!(close(erlang_c(11, 10.0), 0.682_118));
        assert!(close(erlang_c(10, 8.0), 0.409_180));
        assert!(close(erlang_c(5, 3.5), 0.377_838));
        assert_eq!(erlang_c(4, 4.0), 1.0);
        assert_eq!(erlang_c(4, 0.0), 0.0);
        let big = erlang_c(4000, 3900.0);
        assert!(big.is_finite() && (0.0..1.0).contains(&big));
    }

    #[test]
    fn distributions_parse_and_stay_in_bounds() {
        assert_eq!(
            SizeDistribution::parse("mixed").unwrap(),
            SizeDistribution::MIXED
        );
        assert_eq!(
            SizeDistribution::parse("1KiB..4KiB").unwrap(),
            SizeDistribution::LogUniform {
                min: 1024,
                max: 4096
            }
        );
        assert_eq!(
            SizeDistribution::parse("64MiB").unwrap(),
            SizeDistribution::Choice(vec![64 << 20])
        );
        for bad in ["", "huge", "4KiB..1KiB", "0", "1KiB,,2KiB", "2TiB"] {
            assert!(SizeDistribution::parse(bad).is_err(), "{bad}");
        }
        let rng = SplitMix::new(3);
        let d = SizeDistribution::MIXED;
        let draws: Vec<u64> = (0..10_000).map(|_| d.sample(&rng)).collect();
        assert!(draws.iter().all(|s| (KIB..=64 * MIB).contains(s)));
        // Log-uniform: half the draws fall below the geometric midpoint, 256 KiB.
        let below = draws.iter().filter(|s| **s < 256 * KIB).count();
        assert!((4700..5300).contains(&below), "{below}");
    }
}
