//! Fits the cost model's coefficients to what `perfopt bench` measured, and writes the calibration profile.

use perf_core::{Config, CostCoefficients};
use perfopt::platform::PlatformInfo;

use super::report::{BenchMethod, Crossovers, Results};
use super::stats::least_squares;
use crate::measure::median;

/// The page size the cost model charges first-touch faults by.
const PAGE: u64 = 4096;
/// The largest value the profile parser accepts for a cost.
const MAX_COST: f64 = 1e9;
/// The smallest segment the pool creates: up to it, a fresh segment costs the same.
const SMALLEST_SEGMENT: u64 = perfopt::transport::pool::MIN_CLASS as u64;
/// Sizes from which a fresh segment's extra cost is mostly page faults.
const LARGE: u64 = 1 << 20;

/// Coefficients fitted to a run, and which of them were measured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fit {
    /// The coefficients: fitted where measured, the defaults elsewhere.
    pub(crate) costs: CostCoefficients,
    /// The names of the fitted coefficients.
    pub(crate) fitted: Vec<&'static str>,
}

impl Fit {
    /// The names of the coefficients kept at their defaults.
    pub(crate) fn kept(&self) -> Vec<&'static str> {
        COEFFICIENTS
            .iter()
            .copied()
            .filter(|c| !self.fitted.contains(c))
            .collect()
    }
}

const COEFFICIENTS: [&str; 12] = [
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

/// A measured value as the parser accepts it; None when it is not a number.
fn cost(x: f64) -> Option<f64> {
    x.is_finite().then(|| x.clamp(0.0, MAX_COST))
}

/// The least-squares slope of `points` (bytes, microseconds) in nanoseconds per byte.
fn ns_per_byte(points: &[(u64, f64)]) -> Option<f64> {
    let xy: Vec<(f64, f64)> = points.iter().map(|&(s, us)| (s as f64, us)).collect();
    // A slope of zero or less is noise over too narrow a range, not a cost:
    // the default stays.
    least_squares(&xy)
        .filter(|(slope, _)| *slope > 0.0)
        .and_then(|(slope, _)| cost(slope * 1000.0))
}

/// Fits the coefficients to `results`, starting from `defaults`:
///
/// - `grpc_cached_ns_per_byte` and `grpc_ns_per_byte`: least-squares slopes of the gRPC
///   medians at sizes up to and above `grpc_cache_bytes` (two sizes or more each);
/// - `grpc_call_us`: the smallest gRPC median less its per-byte part;
/// - `memcpy_ns_per_byte`: the slope of the pooled zero-copy medians: what zero-copy costs
///   per byte, the host's write into the segment and the worker's read of it together (the
///   plain memcpy is measured beside it as the physical ceiling, not fitted);
/// - `zero_copy_notify_us`: the smallest pooled median less its copy;
/// - `page_fault_us`: the slope of (fresh - pooled) per 4 KiB page from 1 MiB up (from 64 KiB
///   up when fewer than two sizes are that large);
/// - `segment_create_us`: (fresh - pooled) less page faults and cleanup, the median over the
///   sizes up to the smallest pooled segment (64 KiB; the smallest size when none is that
///   small), so the model gives the measured fresh latency there.
///
/// What cannot be measured keeps its default; everything is clamped to what the profile
/// parser accepts.
pub(crate) fn fit(results: &Results, defaults: CostCoefficients) -> Fit {
    let mut c = defaults;
    let mut fitted = Vec::new();
    let mut set = |slot: &mut f64, name: &'static str, value: Option<f64>| {
        if let Some(v) = value {
            *slot = v;
            fitted.push(name);
        }
    };

    let grpc = results.series(BenchMethod::Grpc);
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

    let pooled = results.series(BenchMethod::ZeroCopyPooled);
    set(
        &mut c.memcpy_ns_per_byte,
        "memcpy_ns_per_byte",
        ns_per_byte(&pooled),
    );
    let notify = pooled
        .first()
        .and_then(|&(size, us)| cost(us - size as f64 * c.memcpy_ns_per_byte / 1000.0));
    set(&mut c.zero_copy_notify_us, "zero_copy_notify_us", notify);

    // What a fresh segment costs beyond a pooled one, per size.
    let extra: Vec<(u64, f64)> = results
        .series(BenchMethod::ZeroCopyFresh)
        .into_iter()
        .filter_map(|(size, fresh)| {
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
        per_page(LARGE).or_else(|| per_page(64 << 10)),
    );
    // Up to the smallest pooled class every fresh segment is the same: take the median there.
    let fixed: Vec<f64> = extra
        .iter()
        .enumerate()
        .filter(|(i, p)| *i == 0 || p.0 <= SMALLEST_SEGMENT)
        .map(|(_, &(size, us))| us - size.div_ceil(PAGE) as f64 * c.page_fault_us)
        .collect();
    let create = median(&fixed).and_then(|us| cost(us - c.segment_cleanup_us));
    set(&mut c.segment_create_us, "segment_create_us", create);

    Fit { costs: c, fitted }
}

/// A UTC time as `2025-01-31T12:00:00Z`, from seconds since the Unix epoch.
pub(crate) fn utc_timestamp(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let secs = unix_secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// What the profile records about the run that made it.
pub(crate) struct RunFacts<'a> {
    /// When it ran, in seconds since the Unix epoch.
    pub(crate) unix_secs: u64,
    /// The machine.
    pub(crate) platform: &'a PlatformInfo,
    /// The shared-memory backend of the segments.
    pub(crate) shm_backend: &'a str,
    /// Each size with its timed repeats.
    pub(crate) sizes: &'a [(u64, u32)],
    /// Untimed transfers before the timed ones.
    pub(crate) warmups: u32,
    /// Where zero-copy started to win.
    pub(crate) crossovers: &'a Crossovers,
}

/// The profile's `[measured]` table: date, platform, kernel, sizes, repeats, what was fitted
/// and the crossovers found.
pub(crate) fn measured_table(facts: &RunFacts<'_>, fit: &Fit) -> toml::Table {
    let strings =
        |items: &[&str]| toml::Value::Array(items.iter().map(|s| toml::Value::from(*s)).collect());
    let int = |n: u64| toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX));
    let ints = |items: &mut dyn Iterator<Item = u64>| toml::Value::Array(items.map(int).collect());
    let p = facts.platform;
    let mut t = toml::Table::new();
    t.insert("date".into(), utc_timestamp(facts.unix_secs).into());
    t.insert("platform".into(), format!("{} {}", p.os, p.arch).into());
    t.insert("kernel".into(), p.kernel_release.clone().into());
    t.insert("cpus".into(), int(p.cpus as u64));
    t.insert("shm_backend".into(), facts.shm_backend.into());
    t.insert("sizes".into(), ints(&mut facts.sizes.iter().map(|s| s.0)));
    let repeats = &mut facts.sizes.iter().map(|s| u64::from(s.1));
    t.insert("repeats".into(), ints(repeats));
    t.insert("warmups".into(), int(facts.warmups.into()));
    t.insert("fitted".into(), strings(&fit.fitted));
    t.insert("kept_defaults".into(), strings(&fit.kept()));
    for (key, at) in [
        ("crossover_zero_copy_pooled", facts.crossovers.pooled),
        ("crossover_zero_copy_fresh", facts.crossovers.fresh),
    ] {
        if let Some(size) = at {
            t.insert(key.into(), int(size));
        }
    }
    t
}

/// The profile text for `fit`, checked to read back to the same coefficients.
pub(crate) fn profile_text(fit: &Fit, measured: toml::Table) -> Result<String, String> {
    let text = fit.costs.to_profile_toml(measured);
    match Config::parse_profile(&text) {
        Ok(back) if back == fit.costs => Ok(text),
        Ok(back) => Err(format!(
            "the profile reads back as {back:?}, expected {:?}",
            fit.costs
        )),
        Err(e) => Err(format!("the profile does not read back: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::report::Row;
    use super::*;

    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;

    /// A synthetic run that follows the cost model exactly.
    fn modelled(c: &CostCoefficients, sizes: &[u64]) -> Results {
        let mut rows = Vec::new();
        for &size in sizes {
            let s = size as f64;
            let cached = size.min(c.grpc_cache_bytes) as f64;
            let grpc = c.grpc_call_us
                + (cached * c.grpc_cached_ns_per_byte + (s - cached) * c.grpc_ns_per_byte) / 1000.0;
            let memcpy = 0.2 + s * c.memcpy_ns_per_byte / 1000.0;
            let pooled = c.zero_copy_notify_us + s * c.memcpy_ns_per_byte / 1000.0;
            let fresh = pooled
                + c.segment_create_us
                + c.segment_cleanup_us
                + size.div_ceil(PAGE) as f64 * c.page_fault_us;
            for (method, us) in [
                (BenchMethod::Grpc, grpc),
                (BenchMethod::ZeroCopyPooled, pooled),
                (BenchMethod::ZeroCopyFresh, fresh),
                (BenchMethod::Memcpy, memcpy),
            ] {
                rows.push(Row {
                    size,
                    method,
                    samples_us: vec![us],
                    worker_us: Vec::new(),
                    anomalies: BTreeMap::new(),
                });
            }
        }
        Results { rows }
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
        let fit = fit(&modelled(&truth, &sizes), CostCoefficients::default());
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
        let fit = fit(&modelled(&truth, &sizes), CostCoefficients::default());
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
        let mut res = modelled(&CostCoefficients::default(), &[KIB, 2 * MIB, 4 * MIB]);
        for r in &mut res.rows {
            if r.method == BenchMethod::ZeroCopyFresh {
                r.samples_us = vec![1.0];
            }
        }
        let fit = fit(&res, CostCoefficients::default());
        assert_eq!(fit.costs.segment_create_us, 0.0);
        assert_eq!(fit.costs.page_fault_us, 0.0);
        let text = profile_text(&fit, toml::Table::new()).unwrap();
        assert_eq!(Config::parse_profile(&text).unwrap(), fit.costs);
    }

    #[test]
    fn the_measured_table_describes_the_run_and_reads_back() {
        let fit = fit(
            &modelled(&CostCoefficients::default(), &[KIB, 2 * KIB]),
            CostCoefficients::default(),
        );
        let platform = perfopt::platform::detect();
        let facts = RunFacts {
            unix_secs: 1_700_000_000,
            platform: &platform,
            shm_backend: "memfd",
            sizes: &[(KIB, 30), (2 * KIB, 30)],
            warmups: 2,
            crossovers: &Crossovers {
                pooled: Some(2 * KIB),
                fresh: None,
                default_threshold: 10 * MIB,
            },
        };
        let text = profile_text(&fit, measured_table(&facts, &fit)).unwrap();
        let back: toml::Table = text.parse().unwrap();
        let m = back["measured"].as_table().unwrap();
        assert_eq!(m["date"].as_str(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(m["sizes"].as_array().unwrap().len(), 2);
        assert_eq!(m["repeats"][0].as_integer(), Some(30));
        assert_eq!(m["crossover_zero_copy_pooled"].as_integer(), Some(2048));
        assert!(!m.contains_key("crossover_zero_copy_fresh"));
        assert!(m["fitted"].as_array().unwrap().len() >= 3);
        assert_eq!(Config::parse_profile(&text).unwrap(), fit.costs);
    }

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
    }
}
