//! The calibration profile `perfopt bench --write-profile` writes: the library's fit
//! ([`perf_core::calibrate`]) of the measured medians, and a `[measured]` table saying what the
//! run was.

use std::time::{Duration, UNIX_EPOCH};

use perf_core::CostCoefficients;
use perf_core::calibrate::{Calibration, Measured, calibrate};
use perfopt::platform::PlatformInfo;

use super::report::{BenchMethod, Crossovers, Results};

/// The medians `results` measured, as the fit takes them.
fn measured(results: &Results) -> Measured {
    Measured {
        grpc: results.series(BenchMethod::Grpc),
        pooled: results.series(BenchMethod::ZeroCopyPooled),
        fresh: results.series(BenchMethod::ZeroCopyFresh),
        smallest_segment: perfopt::transport::pool::MIN_CLASS as u64,
    }
}

/// The coefficients fitted to `results`, starting from `defaults`.
pub(crate) fn fit(results: &Results, defaults: CostCoefficients) -> Calibration {
    calibrate(&measured(results), defaults)
}

/// A UTC time as `2025-01-31T12:00:00Z`, from seconds since the Unix epoch.
pub(crate) fn utc_timestamp(unix_secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix_secs)).to_string()
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
pub(crate) fn measured_table(facts: &RunFacts<'_>, fit: &Calibration) -> toml::Table {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use perf_core::Config;
    use perf_core::calibrate::profile_text;

    use super::super::report::Row;
    use super::*;

    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;

    /// A run with one sample per method and size.
    fn run(sizes: &[u64]) -> Results {
        let mut rows = Vec::new();
        for &size in sizes {
            for (method, us) in [
                (BenchMethod::Grpc, 100.0 + size as f64 * 0.001),
                (BenchMethod::ZeroCopyPooled, 40.0 + size as f64 * 0.0001),
                (BenchMethod::ZeroCopyFresh, 60.0 + size as f64 * 0.0003),
                (BenchMethod::Memcpy, 0.2 + size as f64 * 0.0001),
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

    #[test]
    fn the_fit_takes_each_method_s_medians() {
        let m = measured(&run(&[2 * KIB, KIB]));
        assert_eq!(m.grpc, [(KIB, 100.0 + 1.024), (2 * KIB, 100.0 + 2.048)]);
        assert_eq!(m.pooled.len(), 2);
        assert_eq!(m.fresh[0].0, KIB);
        assert!(
            fit(&run(&[KIB, 2 * KIB]), CostCoefficients::default())
                .fitted
                .contains(&"grpc_call_us")
        );
    }

    #[test]
    fn the_measured_table_describes_the_run_and_reads_back() {
        let fit = fit(&run(&[KIB, 2 * KIB]), CostCoefficients::default());
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
