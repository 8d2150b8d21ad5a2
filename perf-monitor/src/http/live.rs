//! What the dashboard plots live: cumulative readings of the telemetry, and the window between
//! two readings (rates, decisions by reason, latency percentiles from the delta of the
//! duration histograms' buckets).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::catalog::Family;
use crate::telemetry::{PointValue, Telemetry};

/// The methods, in the telemetry's label spelling.
pub const METHODS: [&str; 2] = ["zero_copy", "grpc"];

/// One method's cumulative counts in one pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct MethodCounts {
    transfers: u64,
    bytes: u64,
    /// Delivered transfers per duration bucket (merged over size classes; the last is `+Inf`).
    duration: Vec<u64>,
    /// The sum of their durations, ns.
    duration_ns: u64,
}

/// One pool's cumulative counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PoolCounts {
    methods: [MethodCounts; 2],
    fallbacks: u64,
    failures: u64,
}

/// The telemetry's counters and histograms at one moment, cumulative since it was built.
/// Readings are cheap (a few small vectors); [`TelemetryReading::window`] compares two.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryReading {
    pools: BTreeMap<String, PoolCounts>,
    /// Transfers by decided method and reason, over every pool.
    decisions: BTreeMap<(String, String), u64>,
    drift_events: u64,
}

fn method_index(label: &str) -> Option<usize> {
    METHODS.iter().position(|m| *m == label)
}

fn label<'a>(labels: &'a [(&'static str, String)], name: &str) -> &'a str {
    labels
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, v)| v.as_str())
}

impl Telemetry {
    /// Its counters and histograms now, for the dashboard's windows.
    pub fn reading(&self) -> TelemetryReading {
        let mut r = TelemetryReading::default();
        let counters = |family| {
            self.points(family)
                .into_iter()
                .filter_map(|p| match p.value {
                    PointValue::Counter(n) => Some((p.labels, n)),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        for (family, bytes) in [(Family::Transfers, false), (Family::TransferBytes, true)] {
            for (labels, n) in counters(family) {
                let Some(m) = method_index(label(&labels, "method")) else {
                    continue;
                };
                let row = r
                    .pools
                    .entry(label(&labels, "pool").to_owned())
                    .or_default();
                if bytes {
                    row.methods[m].bytes = n;
                } else {
                    row.methods[m].transfers = n;
                }
            }
        }
        for (labels, n) in counters(Family::Fallbacks) {
            let row = r
                .pools
                .entry(label(&labels, "pool").to_owned())
                .or_default();
            row.fallbacks += n;
        }
        for (labels, n) in counters(Family::Failures) {
            let row = r
                .pools
                .entry(label(&labels, "pool").to_owned())
                .or_default();
            row.failures += n;
        }
        for (labels, n) in counters(Family::Decisions) {
            let key = (
                label(&labels, "method").to_owned(),
                label(&labels, "reason").to_owned(),
            );
            *r.decisions.entry(key).or_default() += n;
        }
        r.drift_events = counters(Family::DriftEvents).iter().map(|(_, n)| n).sum();
        let width = Family::TransferDuration.bounds_ns().len() + 1;
        for p in self.points(Family::TransferDuration) {
            let PointValue::Histogram(h) = p.value else {
                continue;
            };
            let Some(m) = method_index(label(&p.labels, "method")) else {
                continue;
            };
            let row = r
                .pools
                .entry(label(&p.labels, "pool").to_owned())
                .or_default();
            let counts = &mut row.methods[m];
            counts.duration.resize(width, 0);
            for (total, n) in counts.duration.iter_mut().zip(&h.counts) {
                *total = total.wrapping_add(*n);
            }
            counts.duration_ns = counts.duration_ns.wrapping_add(h.sum());
        }
        r
    }
}

/// The value at quantile `q` of the bucket counts `counts` over upper bounds `bounds` (the last
/// count is the `+Inf` bucket), interpolated linearly within its bucket as Prometheus'
/// `histogram_quantile` does; a value in the `+Inf` bucket is the highest bound. `None` when
/// `counts` holds nothing.
pub fn bucket_quantile(bounds: &[u64], counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 || bounds.is_empty() {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (i, &n) in counts.iter().enumerate() {
        if n > 0 && (below + n) as f64 >= rank {
            let Some(&upper) = bounds.get(i) else {
                return bounds.last().map(|&b| b as f64);
            };
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] as f64 };
            let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
            return Some(lower + (upper as f64 - lower) * within);
        }
        below += n;
    }
    bounds.last().map(|&b| b as f64)
}

impl TelemetryReading {
    /// The pools that have series, by label.
    pub fn pools(&self) -> impl Iterator<Item = &str> {
        self.pools.keys().map(String::as_str)
    }

    /// The counts of `pool` (every pool when `None`), cumulative.
    fn of(&self, pool: Option<&str>) -> PoolCounts {
        let mut out = PoolCounts::default();
        for (name, row) in &self.pools {
            if pool.is_some_and(|p| p != name) {
                continue;
            }
            for (o, m) in out.methods.iter_mut().zip(&row.methods) {
                o.transfers += m.transfers;
                o.bytes += m.bytes;
                o.duration_ns = o.duration_ns.wrapping_add(m.duration_ns);
                if o.duration.len() < m.duration.len() {
                    o.duration.resize(m.duration.len(), 0);
                }
                for (a, b) in o.duration.iter_mut().zip(&m.duration) {
                    *a += b;
                }
            }
            out.fallbacks += row.fallbacks;
            out.failures += row.failures;
        }
        out
    }

    /// The cumulative totals of `pool` (every pool when `None`): transfers and bytes per method,
    /// fallbacks, failures, drift events.
    pub fn totals(&self, pool: Option<&str>) -> Value {
        let c = self.of(pool);
        let methods: serde_json::Map<String, Value> = METHODS
            .iter()
            .zip(&c.methods)
            .map(|(name, m)| {
                (
                    (*name).to_owned(),
                    json!({ "transfers": m.transfers, "bytes": m.bytes }),
                )
            })
            .collect();
        json!({
            "transfers": c.methods.iter().map(|m| m.transfers).sum::<u64>(),
            "bytes": c.methods.iter().map(|m| m.bytes).sum::<u64>(),
            "fallbacks": c.fallbacks,
            "failures": c.failures,
            "drift_events": self.drift_events,
            "methods": methods,
        })
    }

    /// What happened between `earlier` and this reading, `secs` seconds apart, in `pool` (every
    /// pool when `None`; decisions by reason are counted over every pool):
    ///
    /// ```json
    /// { "secs": 1.0, "transfers": 50, "transfers_per_s": 50.0, "bytes_per_s": 1.2e8,
    ///   "fallbacks": 0, "failures": 0, "drift_events": 0,
    ///   "methods": { "zero_copy": { "transfers": 40, "bytes": 1.1e8, "bytes_per_s": 1.1e8,
    ///                               "mean_ms": 0.4, "p50_ms": 0.3, "p95_ms": 0.9, "p99_ms": 1.0 },
    ///                "grpc": { ... } },
    ///   "decisions": { "size_threshold": { "zero_copy": 40, "grpc": 10 } } }
    /// ```
    ///
    /// Percentiles come from the delta of the duration buckets (`null` without a delivered
    /// transfer of that method in the window). A counter that went back (a new telemetry)
    /// counts from zero.
    pub fn window(&self, earlier: &TelemetryReading, secs: f64, pool: Option<&str>) -> Value {
        let secs = if secs.is_finite() && secs > 0.0 {
            secs
        } else {
            1.0
        };
        let (now, then) = (self.of(pool), earlier.of(pool));
        let delta = |a: u64, b: u64| a.checked_sub(b).unwrap_or(a);
        let bounds = Family::TransferDuration.bounds_ns();
        let ms = |ns: Option<f64>| ns.map(|v| v / 1e6);
        let mut methods = serde_json::Map::new();
        let (mut transfers, mut bytes) = (0, 0);
        for (i, name) in METHODS.iter().enumerate() {
            let (a, b) = (&now.methods[i], &then.methods[i]);
            let n = delta(a.transfers, b.transfers);
            let by = delta(a.bytes, b.bytes);
            transfers += n;
            bytes += by;
            let counts: Vec<u64> = a
                .duration
                .iter()
                .enumerate()
                .map(|(k, &c)| delta(c, b.duration.get(k).copied().unwrap_or(0)))
                .collect();
            let delivered: u64 = counts.iter().sum();
            let mean = (delivered > 0)
                .then(|| delta(a.duration_ns, b.duration_ns) as f64 / delivered as f64 / 1e6);
            methods.insert(
                (*name).to_owned(),
                json!({
                    "transfers": n,
                    "bytes": by,
                    "bytes_per_s": by as f64 / secs,
                    "mean_ms": mean,
                    "p50_ms": ms(bucket_quantile(bounds, &counts, 0.50)),
                    "p95_ms": ms(bucket_quantile(bounds, &counts, 0.95)),
                    "p99_ms": ms(bucket_quantile(bounds, &counts, 0.99)),
                }),
            );
        }
        let mut decisions: BTreeMap<&str, serde_json::Map<String, Value>> = BTreeMap::new();
        for ((method, reason), &n) in &self.decisions {
            let before = earlier
                .decisions
                .get(&(method.clone(), reason.clone()))
                .copied()
                .unwrap_or(0);
            let d = delta(n, before);
            if d > 0 {
                decisions
                    .entry(reason.as_str())
                    .or_default()
                    .insert(method.clone(), json!(d));
            }
        }
        json!({
            "secs": secs,
            "transfers": transfers,
            "transfers_per_s": transfers as f64 / secs,
            "bytes_per_s": bytes as f64 / secs,
            "fallbacks": delta(now.fallbacks, then.fallbacks),
            "failures": delta(now.failures, then.failures),
            "drift_events": delta(self.drift_events, earlier.drift_events),
            "methods": methods,
            "decisions": decisions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TelemetryConfig;
    use perf_core::conformance::transfer;
    use perf_core::{Method, MetricsSink, Name, TransferMetrics};

    fn delivered(pool: Name, method: Method, size: u64, latency_us: f64) -> TransferMetrics {
        transfer(pool, method, size, 0, latency_us)
    }

    /// Decisions for `method` in a window, over every reason.
    fn decided(window: &Value, method: &str) -> u64 {
        let reasons = window["decisions"].as_object().unwrap();
        reasons.values().filter_map(|r| r[method].as_u64()).sum()
    }

    #[test]
    fn a_quantile_interpolates_within_its_bucket() {
        let bounds = [10, 20, 40];
        assert_eq!(bucket_quantile(&bounds, &[0, 0, 0, 0], 0.5), None);
        assert_eq!(bucket_quantile(&bounds, &[0, 4, 0, 0], 0.5), Some(15.0));
        assert_eq!(bucket_quantile(&bounds, &[1, 0, 1, 0], 1.0), Some(40.0));
        assert_eq!(bucket_quantile(&bounds, &[0, 0, 0, 3], 0.5), Some(40.0));
        assert_eq!(bucket_quantile(&bounds, &[2, 0, 0, 0], 0.0), Some(0.0));
    }

    #[test]
    fn a_window_counts_what_happened_between_two_readings() {
        let batch = Name::new("batch").unwrap();
        let t = Telemetry::new(&TelemetryConfig::for_pools([Name::DEFAULT_POOL, batch])).unwrap();
        t.record(&delivered(Name::DEFAULT_POOL, Method::Grpc, 100, 3.0));
        let before = t.reading();
        for _ in 0..10 {
            t.record(&delivered(
                Name::DEFAULT_POOL,
                Method::ZeroCopy,
                1000,
                200.0,
            ));
        }
        t.record(&delivered(batch, Method::Grpc, 500, 3000.0));
        let after = t.reading();
        let all = after.window(&before, 2.0, None);
        assert_eq!(all["transfers"], 11);
        assert_eq!(all["transfers_per_s"], 5.5);
        assert_eq!(all["bytes_per_s"], 5250.0);
        let zc = &all["methods"]["zero_copy"];
        assert_eq!(zc["transfers"], 10);
        assert_eq!(zc["mean_ms"], 0.2);
        // 200 µs lies in the bucket from 100 to 250 µs.
        let p50 = zc["p50_ms"].as_f64().unwrap();
        assert!((0.1..=0.25).contains(&p50), "{p50}");
        assert_eq!(decided(&all, "zero_copy"), 10);
        assert_eq!(decided(&all, "grpc"), 1);
        let default = after.window(&before, 2.0, Some("default"));
        assert_eq!(default["transfers"], 10);
        assert!(default["methods"]["grpc"]["p50_ms"].is_null());
        let b = after.window(&before, 2.0, Some("batch"));
        let p99 = b["methods"]["grpc"]["p99_ms"].as_f64().unwrap();
        assert!((2.5..=5.0).contains(&p99), "{p99}");
        assert_eq!(after.totals(None)["transfers"], 12);
        assert_eq!(after.totals(Some("batch"))["bytes"], 500);
        assert_eq!(after.pools().collect::<Vec<_>>(), ["batch", "default"]);
    }
}
