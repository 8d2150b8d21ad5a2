//! A metrics sink that summarises a run: counts, percentiles per method, reasons, fallbacks.

use std::collections::BTreeMap;
use std::sync::Mutex;

use hdrhistogram::Histogram;
use perf_core::{FailureKind, FallbackReason, Method, MetricsSink, ReasonCode, TransferMetrics};
use serde_json::{Value, json};

/// Percentiles of one measure.
fn hist() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is a valid precision")
}

#[derive(Default)]
struct PerMethod {
    latency_ns: Option<Histogram<u64>>,
    throughput_kib_s: Option<Histogram<u64>>,
    count: u64,
    bytes: u64,
}

#[derive(Default)]
struct State {
    methods: BTreeMap<Method, PerMethod>,
    reasons: BTreeMap<(Method, ReasonCode), u64>,
    pools: BTreeMap<String, u64>,
    fallbacks: BTreeMap<FallbackReason, u64>,
    failures: BTreeMap<(Method, FailureKind), u64>,
    decision_ns: Option<Histogram<u64>>,
    queued_ns: Option<Histogram<u64>>,
}

/// Collects every transfer of a run into histograms; memory stays bounded
/// whatever the number of transfers.
#[derive(Default)]
pub(crate) struct Summary(Mutex<State>);

impl MetricsSink for Summary {
    fn record(&self, m: &TransferMetrics) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let _ = s
            .queued_ns
            .get_or_insert_with(hist)
            .record((m.queued_us * 1000.0) as u64);
        if !m.is_evidence() {
            // A failed attempt is counted, never taken as a latency.
            let kind = m.failure.unwrap_or(FailureKind::Internal);
            *s.failures.entry((m.method, kind)).or_default() += 1;
            return;
        }
        let per = s.methods.entry(m.method).or_default();
        per.count += 1;
        per.bytes += m.size;
        let _ = per
            .latency_ns
            .get_or_insert_with(hist)
            .record((m.latency_us * 1000.0) as u64);
        let _ = per
            .throughput_kib_s
            .get_or_insert_with(hist)
            .record((m.throughput_bps / 1024.0) as u64);
        *s.reasons.entry((m.decided_method, m.reason)).or_default() += 1;
        *s.pools.entry(m.pool.to_string()).or_default() += 1;
        if let Some(f) = m.fallback {
            *s.fallbacks.entry(f).or_default() += 1;
        }
        let _ = s.decision_ns.get_or_insert_with(hist).record(m.decision_ns);
    }
}

fn pct(h: &Option<Histogram<u64>>, q: f64) -> u64 {
    h.as_ref().map_or(0, |h| h.value_at_quantile(q))
}

impl Summary {
    /// Transfers recorded so far.
    pub(crate) fn transfers(&self) -> u64 {
        let s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.methods.values().map(|m| m.count).sum()
    }

    /// The summary as JSON: `transfers` (delivered), `bytes`, `by_method`, `by_pool`,
    /// `by_reason`, per-method latency and throughput percentiles, fallbacks, failed attempts
    /// by method and kind, decision time and time queued for admission.
    pub(crate) fn to_json(&self) -> Value {
        let s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let transfers: u64 = s.methods.values().map(|m| m.count).sum();
        let bytes: u64 = s.methods.values().map(|m| m.bytes).sum();
        let by_method: BTreeMap<String, u64> = s
            .methods
            .iter()
            .map(|(k, v)| (k.to_string(), v.count))
            .collect();
        let mut by_reason: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for ((method, reason), n) in &s.reasons {
            by_reason
                .entry(reason.to_string())
                .or_default()
                .insert(method.to_string(), *n);
        }
        let methods: BTreeMap<String, Value> = s
            .methods
            .iter()
            .map(|(k, v)| {
                let lat = |q| pct(&v.latency_ns, q) as f64 / 1000.0;
                let thr = |q| pct(&v.throughput_kib_s, q) as f64 / 1024.0;
                let value = json!({
                    "transfers": v.count,
                    "bytes": v.bytes,
                    "latency_us": {"p50": lat(0.5), "p99": lat(0.99), "max": lat(1.0)},
                    "throughput_mib_s": {"p50": thr(0.5), "p99": thr(0.99)},
                });
                (k.to_string(), value)
            })
            .collect();
        let fallbacks: BTreeMap<String, u64> = s
            .fallbacks
            .iter()
            .map(|(k, v)| {
                let name = serde_json::to_value(k)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                (name, *v)
            })
            .collect();
        let mut failed_attempts: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for ((method, kind), n) in &s.failures {
            failed_attempts
                .entry(method.to_string())
                .or_default()
                .insert(kind.to_string(), *n);
        }
        let queued = |q| pct(&s.queued_ns, q) as f64 / 1000.0;
        json!({
            "transfers": transfers,
            "bytes": bytes,
            "by_method": by_method,
            "by_pool": s.pools,
            "by_reason": by_reason,
            "methods": methods,
            "fallbacks": fallbacks,
            "failed_attempts": failed_attempts,
            "queued_us": {
                "p50": queued(0.5),
                "p95": queued(0.95),
                "p99": queued(0.99),
                "max": queued(1.0),
            },
            "decision_ns": {
                "p50": pct(&s.decision_ns, 0.5),
                "p99": pct(&s.decision_ns, 0.99),
                "max": pct(&s.decision_ns, 1.0),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    perf_core::metrics_sink_conformance!(summary_sink, Summary::default());
}
