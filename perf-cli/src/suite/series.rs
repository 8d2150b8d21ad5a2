//! One measured series of a scenario: its samples, counts and resources, and its JSON with a
//! summary (quantiles by perf-predict's type 7, as R and numpy interpolate).

use perfopt::predict::quantile_sorted;
use serde_json::{Value, json};

/// The most samples a series writes; more are thinned evenly (the summary uses them all).
pub(crate) const MAX_WRITTEN: usize = 5000;

/// What a series' samples measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Latency per transfer (or call) in microseconds: lower is better.
    Micros,
    /// Throughput per window in MiB/s: higher is better.
    MibPerSec,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Micros => "us",
            Unit::MibPerSec => "mib_s",
        }
    }
}

/// One series as it is measured.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub(crate) id: String,
    pub(crate) method: &'static str,
    pub(crate) size: Option<u64>,
    pub(crate) in_flight: usize,
    pub(crate) workers: usize,
    pub(crate) load: &'static str,
    pub(crate) verify: Option<&'static str>,
    pub(crate) unit: Unit,
    pub(crate) samples: Vec<f64>,
    /// Latency of each transfer when `samples` are throughput windows.
    pub(crate) latency_us: Vec<f64>,
    /// Time each transfer waited for room, microseconds.
    pub(crate) queued_us: Vec<f64>,
    pub(crate) transfers: u64,
    pub(crate) failed: u64,
    pub(crate) fallbacks: u64,
    pub(crate) lost: u64,
    /// Payload bytes moved.
    pub(crate) bytes: u64,
    /// Wall time of the series, seconds (0 when not measured as one stretch).
    pub(crate) wall_s: f64,
    pub(crate) cpu_host_s: Option<f64>,
    pub(crate) cpu_workers_s: Option<f64>,
    pub(crate) peak_rss_bytes: Option<u64>,
    pub(crate) peak_shm_bytes: Option<u64>,
}

impl Series {
    /// An empty series.
    pub(crate) fn new(id: impl Into<String>, method: &'static str, unit: Unit) -> Series {
        Series {
            id: id.into(),
            method,
            size: None,
            in_flight: 1,
            workers: 1,
            load: "idle",
            verify: None,
            unit,
            samples: Vec::new(),
            latency_us: Vec::new(),
            queued_us: Vec::new(),
            transfers: 0,
            failed: 0,
            fallbacks: 0,
            lost: 0,
            bytes: 0,
            wall_s: 0.0,
            cpu_host_s: None,
            cpu_workers_s: None,
            peak_rss_bytes: None,
            peak_shm_bytes: None,
        }
    }

    /// Adds `s` seconds of CPU to a side's total.
    pub(crate) fn add_cpu(total: &mut Option<f64>, s: f64) {
        *total = Some(total.unwrap_or(0.0) + s);
    }

    /// The series as the results JSON has it.
    pub(crate) fn to_json(&self) -> Value {
        let per_s = |n: f64| (self.wall_s > 0.0).then(|| n / self.wall_s);
        let mut v = json!({
            "id": self.id,
            "method": self.method,
            "size": self.size,
            "in_flight": self.in_flight,
            "workers": self.workers,
            "load": self.load,
            "verify": self.verify,
            "unit": self.unit.name(),
            "samples": thin(&self.samples, MAX_WRITTEN),
            "summary": summary(&self.samples),
            "throughput_mib_s": per_s(self.bytes as f64 / (1u64 << 20) as f64),
            "transfers_per_s": per_s(self.transfers as f64),
            "transfers": self.transfers,
            "failed": self.failed,
            "fallbacks": self.fallbacks,
            "lost": self.lost,
            "cpu_host_s": self.cpu_host_s,
            "cpu_workers_s": self.cpu_workers_s,
            "peak_rss_bytes": self.peak_rss_bytes,
            "peak_shm_bytes": self.peak_shm_bytes,
        });
        if !self.latency_us.is_empty() {
            v["latency_us"] = summary(&self.latency_us);
        }
        if !self.queued_us.is_empty() {
            v["queued_us"] = summary(&self.queued_us);
        }
        v
    }
}

/// Count, mean, min, p50, p95, p99, p99.9 and max of `samples` (nulls when empty).
pub(crate) fn summary(samples: &[f64]) -> Value {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return json!({"count": 0, "mean": null, "min": null, "p50": null, "p95": null,
                      "p99": null, "p999": null, "max": null});
    }
    let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
    json!({
        "count": sorted.len(),
        "mean": mean,
        "min": sorted[0],
        "p50": quantile_sorted(&sorted, 0.50),
        "p95": quantile_sorted(&sorted, 0.95),
        "p99": quantile_sorted(&sorted, 0.99),
        "p999": quantile_sorted(&sorted, 0.999),
        "max": sorted[sorted.len() - 1],
    })
}

/// At most `max` of `xs`, evenly spaced, in their order.
pub(crate) fn thin(xs: &[f64], max: usize) -> Vec<f64> {
    if xs.len() <= max {
        return xs.to_vec();
    }
    (0..max).map(|i| xs[i * xs.len() / max]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_uses_every_sample_and_thinning_keeps_the_spread() {
        let xs: Vec<f64> = (1..=10_000).map(f64::from).collect();
        let s = summary(&xs);
        assert_eq!(s["count"], 10_000);
        assert_eq!(s["max"], 10_000.0);
        let thinned = thin(&xs, MAX_WRITTEN);
        assert_eq!(thinned.len(), MAX_WRITTEN);
        assert_eq!(thinned[0], 1.0);
        assert_eq!(thinned[MAX_WRITTEN - 1], 9_999.0);
        assert_eq!(summary(&[])["p50"], Value::Null);
    }
}
