//! Calibration: the cost model's coefficients fitted to measured transfer latencies, and the
//! profile text that carries them.
//!
//! `perfopt bench` measures each size by gRPC, by zero-copy through a pooled (pre-faulted)
//! segment and through a fresh one; [`calibrate`] turns the medians into [`CostCoefficients`],
//! and [`profile_text`] writes them as a profile [`Config::parse_profile`] reads back. A library
//! user who measures their own transfers calibrates the same way.

use crate::Config;
use crate::CostCoefficients;

/// The page size the cost model charges first-touch faults by.
const PAGE: u64 = 4096;
/// The largest value the profile parser accepts for a cost.
const MAX_COST: f64 = 1e9;
/// Sizes from which a fresh segment's extra cost is mostly page faults.
const LARGE: u64 = 1 << 20;
/// Sizes from which a fresh segment's extra cost is fitted when fewer than two are `LARGE`.
const MEDIUM: u64 = 64 << 10;

/// Measured medians, as `(size in bytes, median latency in microseconds)`, smallest size
/// first, one series per way of carrying a payload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    /// Inline gRPC.
    pub grpc: Vec<(u64, f64)>,
    /// Zero-copy through a pooled, pre-faulted segment.
    pub pooled: Vec<(u64, f64)>,
    /// Zero-copy through a fresh segment per transfer.
    pub fresh: Vec<(u64, f64)>,
    /// The smallest segment the pool creates: up to it, a fresh segment costs the same.
    pub smallest_segment: u64,
}

/// Coefficients fitted to a run, and which of them were measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// The coefficients: fitted where measured, the defaults elsewhere.
    pub costs: CostCoefficients,
    /// The names of the fitted coefficients.
    pub fitted: Vec<&'static str>,
}

impl Calibration {
    /// The names of the coefficients kept at their defaults.
    pub fn kept(&self) -> Vec<&'static str> {
        COEFFICIENTS
            .iter()
            .copied()
            .filter(|c| !self.fitted.contains(c))
            .collect()
    }
}

/// Every coefficient, by its name in the profile.
pub const COEFFICIENTS: [&str; 12] = [
    "grpc_call_us",
    "grpc_ns_per_byte",
    "grpc_cached_ns_per_byte",
    "grpc_cache_bytes",
    "grpc_cpu_share",
    "grpc_memory_factor",
    "zero_copy_notify_us",
    "memcpy_ns_per_byte",
    "segment_create_us",
    "page_fault_us",
    "segment_cleanup_us",
    "pool_return_us",
];

/// `config` with `costs` (a machine's calibration) when it states no costs of its own: it names
/// no `profile` and its `[costs]` are the built-in defaults. A configuration with costs of its
/// own is returned as it is.
pub fn apply_calibration(mut config: Config, costs: &CostCoefficients) -> Config {
    if config.profile.is_none() && config.costs == CostCoefficients::default() {
        config.costs = *costs;
    }
    config
}

/// A measured value as the parser accepts it; None when it is not a number.
fn cost(x: f64) -> Option<f64> {
    x.is_finite().then(|| x.clamp(0.0, MAX_COST))
}

/// The ordinary least-squares line through `points`, as `(slope, intercept)`; None for fewer
/// than two points or when every x is the same.
pub fn least_squares(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    if sxx <= 0.0 || !sxx.is_finite() {
        return None;
    }
    let slope = sxy / sxx;
    Some((slope, mean_y - slope * mean_x))
}

/// The least-squares slope of `points` (bytes, microseconds) in nanoseconds per byte.
fn ns_per_byte(points: &[(u64, f64)]) -> Option<f64> {
    let xy: Vec<(f64, f64)> = points.iter().map(|&(s, us)| (s as f64, us)).collect();
    // A slope of zero or less is noise over too narrow a range, not a cost: the default stays.
    least_squares(&xy)
        .filter(|(slope, _)| *slope > 0.0)
        .and_then(|(slope, _)| cost(slope * 1000.0))
}

/// Fits the coefficients to `measured`, starting from `defaults`:
///
/// - `grpc_cached_ns_per_byte` and `grpc_ns_per_byte`: least-squares slopes of the gRPC
///   medians at sizes up to and above `grpc_cache_bytes` (two sizes or more each);
/// - `grpc_call_us`: the smallest gRPC median less its per-byte part;
/// - `memcpy_ns_per_byte`: the slope of the pooled zero-copy medians: what zero-copy costs
///   per byte, the host's write into the segment and the worker's read of it together;
/// - `zero_copy_notify_us`: the smallest pooled median less its copy;
/// - `page_fault_us`: the slope of (fresh - pooled) per 4 KiB page from 1 MiB up (from 64 KiB
///   up when fewer than two sizes are that large);
/// - `segment_create_us`: (fresh - pooled) less page faults and cleanup, the median over the
///   sizes up to the smallest pooled segment (the smallest size when none is that small), so
///   the model gives the measured fresh latency there.
///
/// What cannot be measured keeps its default; everything is clamped to what the profile
/// parser accepts.
pub fn calibrate(measured: &Measured, defaults: CostCoefficients) -> Calibration {
    let mut c = defaults;
    let mut fitted = Vec::new();
    let mut set = |slot: &mut f64, name: &'static str, value: Option<f64>| {
        if let Some(v) = value {
            *slot = v;
            fitted.push(name);
        }
    };

    let grpc = &measured.grpc;
    let (cached, bulk): (Vec<_>, Vec<_>) = grpc.iter().partition(|p| p.0 <= c.grpc_cache_bytes);
    set(
        &mut c.grpc_cached_ns_per_byte,
        "grpc_cached_ns_per_byte",
        ns_per_byte(&cached),
    );
    set(
        &mut c.grpc_ns_per_byte,
        "grpc_ns_per_byte",
        ns_per_byte(&bulk),
    );
    let call = grpc.first().and_then(|&(size, us)| {
        let first = size.min(c.grpc_cache_bytes) as f64;
        let rest = size.saturating_sub(c.grpc_cache_bytes) as f64;
        cost(us - (first * c.grpc_cached_ns_per_byte + rest * c.grpc_ns_per_byte) / 1000.0)
    });
    set(&mut c.grpc_call_us, "grpc_call_us", call);

    let pooled = &measured.pooled;
    set(
        &mut c.memcpy_ns_per_byte,
        "memcpy_ns_per_byte",
        ns_per_byte(pooled),
    );
    let notify = pooled
        .first()
        .and_then(|&(size, us)| cost(us - size as f64 * c.memcpy_ns_per_byte / 1000.0));
    set(&mut c.zero_copy_notify_us, "zero_copy_notify_us", notify);

    // What a fresh segment costs beyond a pooled one, per size.
    let extra: Vec<(u64, f64)> = measured
        .fresh
        .iter()
        .filter_map(|&(size, fresh)| {
            let p = pooled.iter().find(|p| p.0 == size)?;
            Some((size, fresh - p.1))
        })
        .collect();
    let per_page = |from: u64| -> Option<f64> {
        let xy: Vec<(f64, f64)> = extra
            .iter()
            .filter(|p| p.0 >= from)
            .map(|&(size, us)| (size.div_ceil(PAGE) as f64, us))
            .collect();
        least_squares(&xy).and_then(|(slope, _)| cost(slope))
    };
    set(
        &mut c.page_fault_us,
        "page_fault_us",
        per_page(LARGE).or_else(|| per_page(MEDIUM)),
    );
    // Up to the smallest pooled class every fresh segment is the same: take the median there.
    let mut fixed: Vec<f64> = extra
        .iter()
        .enumerate()
        .filter(|(i, p)| *i == 0 || p.0 <= measured.smallest_segment)
        .map(|(_, &(size, us))| us - size.div_ceil(PAGE) as f64 * c.page_fault_us)
        .collect();
    let create =
        crate::crossover::median(&mut fixed).and_then(|us| cost(us - c.segment_cleanup_us));
    set(&mut c.segment_create_us, "segment_create_us", create);

    Calibration { costs: c, fitted }
}

/// Why a calibration's profile does not read back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProfileError {
    /// The text does not parse as a profile.
    #[error("the profile does not read back: {0}")]
    Unreadable(String),
    /// It parses to other coefficients.
    #[error("the profile reads back as {found:?}, expected {expected:?}")]
    Differs {
        /// What it reads back as.
        found: Box<CostCoefficients>,
        /// What was written.
        expected: Box<CostCoefficients>,
    },
}

/// The profile text for `calibration`, with `measured` as its `[measured]` table (what the
/// run was: date, machine, sizes), checked to read back to the same coefficients.
pub fn profile_text(
    calibration: &Calibration,
    measured: toml::Table,
) -> Result<String, ProfileError> {
    let text = calibration.costs.to_profile_toml(measured);
    match Config::parse_profile(&text) {
        Ok(back) if back == calibration.costs => Ok(text),
        Ok(back) => Err(ProfileError::Differs {
            found: Box::new(back),
            expected: Box::new(calibration.costs),
        }),
        Err(e) => Err(ProfileError::Unreadable(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;

    /// A synthetic run that follows the cost model exactly.
    fn modelled(c: &CostCoefficients, sizes: &[u64]) -> Measured {
        let mut m = Measured {
            smallest_segment: 64 * KIB,
            ..Measured::default()
        };
        for &size in sizes {
            let s = size as f64;
            let cached = size.min(c.grpc_cache_bytes) as f64;
            let grpc = c.grpc_call_us
                + (cached * c.grpc_cached_ns_per_byte + (s - cached) * c.grpc_ns_per_byte) / 1000.0;
            let pooled = c.zero_copy_notify_us + s * c.memcpy_ns_per_byte / 1000.0;
            let fresh = pooled
                + c.segment_create_us
                + c.segment_cleanup_us
                + size.div_ceil(PAGE) as f64 * c.page_fault_us;
            m.grpc.push((size, grpc));
            m.pooled.push((size, pooled));
            m.fresh.push((size, fresh));
        }
        m
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-6 * b.abs().max(1.0)
    }

    #[test]
    fn a_run_that_follows_the_model_fits_back_its_coefficients() {
        let truth = CostCoefficients {
            grpc_call_us: 120.0,
            grpc_ns_per_byte: 1.7,
            grpc_cached_ns_per_byte: 0.5,
            zero_copy_notify_us: 30.0,
            memcpy_ns_per_byte: 0.09,
            segment_create_us: 12.0,
            page_fault_us: 0.8,
            ..CostCoefficients::default()
        };
        let sizes: Vec<u64> = (0..19).map(|i| KIB << i).collect();
        let fit = calibrate(&modelled(&truth, &sizes), CostCoefficients::default());
        let c = fit.costs;
        assert!(close(c.grpc_call_us, 120.0), "{c:?}");
        assert!(close(c.grpc_ns_per_byte, 1.7), "{c:?}");
        assert!(close(c.grpc_cached_ns_per_byte, 0.5), "{c:?}");
        assert!(close(c.zero_copy_notify_us, 30.0), "{c:?}");
        assert!(close(c.memcpy_ns_per_byte, 0.09), "{c:?}");
        assert!(close(c.page_fault_us, 0.8), "{c:?}");
        assert!(close(c.segment_create_us, 12.0), "{c:?}");
        assert_eq!(fit.fitted.len(), 7);
        assert_eq!(
            fit.kept(),
            [
                "grpc_cache_bytes",
                "grpc_cpu_share",
                "grpc_memory_factor",
                "segment_cleanup_us",
                "pool_return_us"
            ]
        );
    }

    #[test]
    fn what_a_small_run_cannot_measure_keeps_its_default() {
        let truth = CostCoefficients {
            grpc_call_us: 80.0,
            ..CostCoefficients::default()
        };
        // Nothing above the cache size and only one size from 64 KiB up.
        let sizes = [KIB, 4 * KIB, 16 * KIB, 64 * KIB];
        let fit = calibrate(&modelled(&truth, &sizes), CostCoefficients::default());
        let d = CostCoefficients::default();
        assert_eq!(fit.costs.grpc_ns_per_byte, d.grpc_ns_per_byte);
        assert_eq!(fit.costs.page_fault_us, d.page_fault_us);
        assert!(close(fit.costs.grpc_call_us, 80.0));
        assert!(!fit.fitted.contains(&"page_fault_us"));
        assert!(fit.kept().contains(&"grpc_ns_per_byte"));
    }

    #[test]
    fn noisy_measurements_are_clamped_to_what_the_parser_accepts() {
        // The fresh segment is cheaper than the pooled one: a negative cost, clamped to 0.
        let mut m = modelled(&CostCoefficients::default(), &[KIB, 2 * MIB, 4 * MIB]);
        for p in &mut m.fresh {
            p.1 = 1.0;
        }
        let fit = calibrate(&m, CostCoefficients::default());
        assert_eq!(fit.costs.segment_create_us, 0.0);
        assert_eq!(fit.costs.page_fault_us, 0.0);
        let text = profile_text(&fit, toml::Table::new()).unwrap();
        assert_eq!(Config::parse_profile(&text).unwrap(), fit.costs);
    }

    #[test]
    fn least_squares_fits_back_a_synthetic_line() {
        let points: Vec<(f64, f64)> = [1.0, 2.0, 4.0, 8.0, 1024.0]
            .iter()
            .map(|&x| (x, 95.0 + 0.34 * x))
            .collect();
        let (slope, intercept) = least_squares(&points).unwrap();
        assert!((slope - 0.34).abs() < 1e-9, "{slope}");
        assert!((intercept - 95.0).abs() < 1e-9, "{intercept}");
        assert_eq!(least_squares(&points[..1]), None);
        assert_eq!(least_squares(&[(2.0, 1.0), (2.0, 3.0)]), None);
    }
}
